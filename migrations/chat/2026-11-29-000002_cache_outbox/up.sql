-- Cache invalidations recorded in the same transaction as the write that
-- causes them; applied and deleted by the service (crates/serve/src/outbox.rs).
CREATE TABLE cache_outbox (
    id bigserial PRIMARY KEY,
    invalidation text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
