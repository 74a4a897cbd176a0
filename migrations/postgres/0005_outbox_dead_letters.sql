-- A sink's publish attempts of an event that its broker refused (not for being away), and the
-- events moved aside for good: undecodable, or refused too often. A dead letter never holds back
-- the events behind it; it stays (with its outbox row) until an operator deletes it.
ALTER TABLE outbox_pending ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox_pending ADD COLUMN last_error TEXT;

CREATE TABLE outbox_dead (
    outbox_id BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    sink      TEXT NOT NULL,
    error     TEXT NOT NULL,
    dead_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (sink, outbox_id)
);
