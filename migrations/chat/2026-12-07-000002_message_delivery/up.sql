-- When a message may be streamed (crates/chat-service/src/stream.rs): only
-- once the cache effects its post recorded are applied (its outbox row,
-- `outbox_id`, is gone) or every replica was told to hold reads for them
-- (`held`). NULL: nothing to wait for (seeded rows, rows from before this).
ALTER TABLE chat_messages
    ADD COLUMN outbox_id bigint,
    ADD COLUMN held boolean NOT NULL DEFAULT false;

-- A hub starts before the oldest message still waiting: found from the few
-- pending outbox rows, not by scanning a meeting's messages.
CREATE INDEX chat_messages_outbox_idx ON chat_messages (outbox_id)
    WHERE outbox_id IS NOT NULL;
