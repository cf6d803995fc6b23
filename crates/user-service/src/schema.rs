// @generated automatically by Diesel CLI, less `cache_outbox` and
// `idempotency_keys`, declared once in `huddle_serve::outbox` and
// `huddle_serve::idempotency` (the drift test adds them back).

diesel::table! {
    users (id) {
        id -> Uuid,
        name -> Text,
        email -> Text,
        image -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}
