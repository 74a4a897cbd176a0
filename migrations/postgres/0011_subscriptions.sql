-- Watched channels (subscriptions): one per channel, its poll state (the feed's validators, the
-- uploads already seen, newest first), and the process polling it (a lease, as for jobs).
-- `poll_requested` is set by a WebSub notification and cleared by the poller.
CREATE TABLE subscriptions (
    subscription_id UUID PRIMARY KEY,
    channel_id      TEXT NOT NULL UNIQUE,
    interval_secs   BIGINT NOT NULL,
    backfill        BOOLEAN NOT NULL DEFAULT false,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    etag            TEXT,
    last_modified   TEXT,
    seen            TEXT[] NOT NULL DEFAULT '{}',
    last_polled_at  TIMESTAMPTZ,
    last_outcome    TEXT,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_job_id     UUID,
    polls           BIGINT NOT NULL DEFAULT 0,
    jobs            BIGINT NOT NULL DEFAULT 0,
    poll_requested  BOOLEAN NOT NULL DEFAULT false,
    owner           TEXT,
    lease_until     TIMESTAMPTZ
);
