-- Callback deliveries: the unit sent to a session's callback_url. A delivery's body (and event_id) is
-- fixed when it is created, so a retry sends the same event again; recognition events are batched
-- into deliveries of up to 100, every session_status event is a delivery of its own.
CREATE TABLE deliveries (
    delivery_id      bigserial PRIMARY KEY,
    event_id         uuid NOT NULL UNIQUE,
    session_id       bigint NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    type             text NOT NULL,
    body             jsonb NOT NULL,   -- without sent_at, which is stamped at each attempt
    status           text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    last_status      int,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    delivered_at     timestamptz
);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_session_idx ON deliveries (session_id, delivery_id);

ALTER TABLE events ADD COLUMN delivery_id bigint REFERENCES deliveries (delivery_id) ON DELETE SET NULL;
CREATE INDEX events_unbatched_idx ON events (id) WHERE delivery_id IS NULL;
