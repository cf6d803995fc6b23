// @generated automatically by Diesel CLI, less `cache_outbox` and
// `idempotency_keys`, declared once in `huddle_serve::outbox` and
// `huddle_serve::idempotency` (the drift test adds them back).

diesel::table! {
    deleted_meetings (meeting_id) {
        meeting_id -> Uuid,
        deleted_at -> Timestamptz,
    }
}

diesel::table! {
    recordings (id) {
        id -> Uuid,
        meeting_id -> Uuid,
        egress_id -> Text,
        status -> Text,
        file_url -> Nullable<Text>,
        duration_seconds -> Nullable<Int8>,
        file_size_bytes -> Nullable<Int8>,
        error -> Nullable<Text>,
        started_at -> Timestamptz,
        ended_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::allow_tables_to_appear_in_same_query!(deleted_meetings, recordings,);
