// @generated automatically by Diesel CLI, less `cache_outbox`, which is
// declared once in `huddle_serve::outbox` (the drift test adds it back).

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
