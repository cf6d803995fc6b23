DROP INDEX chat_messages_outbox_idx;
ALTER TABLE chat_messages DROP COLUMN held, DROP COLUMN outbox_id;
