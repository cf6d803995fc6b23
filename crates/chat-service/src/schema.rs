// @generated automatically by Diesel CLI, less `cache_outbox` and
// `idempotency_keys`, declared once in `huddle_serve::outbox` and
// `huddle_serve::idempotency` (the drift test adds them back).

diesel::table! {
    chat_meetings (meeting_id) {
        meeting_id -> Uuid,
        last_sent_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    chat_messages (id) {
        id -> Uuid,
        meeting_id -> Uuid,
        user_id -> Uuid,
        message -> Text,
        sent_at -> Timestamptz,
        outbox_id -> Nullable<Int8>,
        held -> Bool,
    }
}

diesel::allow_tables_to_appear_in_same_query!(chat_meetings, chat_messages,);
