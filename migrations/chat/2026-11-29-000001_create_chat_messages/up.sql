-- One row per meeting that has (had) messages: posts to a meeting lock its
-- row, so they are serialized per meeting and each gets a sent_at later than
-- the previous one's. Commit order is then (sent_at, id) order, which is what
-- lets a stream read "everything after the last one I sent" from Postgres
-- without missing a message that committed late. `deleted_at` is the
-- tombstone of a deleted meeting: a post checks it under the same lock, so
-- a post racing the delete either lands before it (and is deleted with the
-- rest) or is refused; no row is left behind.
CREATE TABLE chat_meetings (
    meeting_id uuid PRIMARY KEY,
    last_sent_at timestamptz NOT NULL,
    deleted_at timestamptz
);

CREATE TABLE chat_messages (
    id uuid PRIMARY KEY,
    meeting_id uuid NOT NULL,
    user_id uuid NOT NULL,
    message text NOT NULL CHECK (char_length(message) BETWEEN 1 AND 2000),
    sent_at timestamptz NOT NULL
);

-- The window, the history pages and the stream all read by this key.
CREATE INDEX chat_messages_meeting_sent_idx ON chat_messages (meeting_id, sent_at, id);
