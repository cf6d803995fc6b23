-- The answers of creating requests sent with an `Idempotency-Key`, kept in
-- the write's own transaction (crates/serve/src/idempotency.rs): a retry
-- finds the first answer here whatever happened to Redis or the request.
-- Swept after 24 hours.
CREATE TABLE idempotency_keys (
    caller text NOT NULL,
    key text NOT NULL,
    request_hash bytea NOT NULL,
    answer bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
