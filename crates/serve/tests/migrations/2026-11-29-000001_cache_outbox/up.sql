-- Cache invalidations recorded in the same transaction as the write that
-- causes them (a copy of the services' table for the kit's own tests).
CREATE TABLE cache_outbox (
    id bigserial PRIMARY KEY,
    invalidation text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
