-- Webhooks out: endpoints registered for chosen events, and one delivery per (webhook, event).
-- `events`: the event kinds it asked for, as ",kind,kind," (matched with instr). Timestamps are
-- fixed-width RFC 3339 UTC text, so they compare as text.
CREATE TABLE webhooks (
    webhook_id TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL
);

-- status: pending | delivered | failed. A pending delivery is due at next_attempt_at; a dispatcher
-- that takes it moves next_attempt_at to the end of its claim and sets claim_token, and records the
-- outcome only under that token (a claim that ran out was taken over).
CREATE TABLE webhook_deliveries (
    delivery_id     TEXT PRIMARY KEY,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (webhook_id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,
    last_error      TEXT,
    next_attempt_at TEXT NOT NULL,
    claim_token     TEXT,
    created_at      TEXT NOT NULL,
    delivered_at    TEXT,
    UNIQUE (webhook_id, event_id)
);

CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_newest ON webhook_deliveries (webhook_id, delivery_id);
