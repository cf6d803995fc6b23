-- Deleted meetings whose data in other services (chats, recording) has not
-- been deleted yet. Written in the meeting's delete transaction; the deletion
-- relay (crates/meeting-service/src/cascade.rs) asks every owning service to
-- delete its rows and removes the entry once all of them acknowledged.
CREATE TABLE meeting_deletions (
    meeting_id uuid PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    last_error text
);
