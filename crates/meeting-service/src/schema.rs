// @generated automatically by Diesel CLI, less `cache_outbox` and
// `idempotency_keys`, declared once in `huddle_serve::outbox` and
// `huddle_serve::idempotency` (the drift test adds them back).

diesel::table! {
    meeting_deletions (meeting_id) {
        meeting_id -> Uuid,
        deleted_at -> Timestamptz,
        attempts -> Int4,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    meetings (id) {
        id -> Uuid,
        title -> Text,
        description -> Nullable<Text>,
        status -> Text,
        host_id -> Uuid,
        invite_code -> Text,
        scheduled_at -> Timestamptz,
        started_at -> Nullable<Timestamptz>,
        ended_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    participants (id) {
        id -> Uuid,
        meeting_id -> Uuid,
        user_id -> Uuid,
        joined_at -> Timestamptz,
        left_at -> Nullable<Timestamptz>,
    }
}

diesel::joinable!(participants -> meetings (meeting_id));

diesel::allow_tables_to_appear_in_same_query!(meeting_deletions, meetings, participants,);
