-- Watched channels (subscriptions): one per channel, its poll state (the feed's validators, the
-- uploads already seen as a JSON array, newest first), and the process polling it (a lease, as
-- for jobs). `poll_requested` is set by a WebSub notification and cleared by the poller.
CREATE TABLE subscriptions (
    subscription_id TEXT PRIMARY KEY,
    channel_id      TEXT NOT NULL UNIQUE,
    interval_secs   INTEGER NOT NULL,
    backfill        INTEGER NOT NULL DEFAULT 0,
    created_at      TEXT NOT NULL,
    etag            TEXT,
    last_modified   TEXT,
    seen            TEXT NOT NULL DEFAULT '[]',
    last_polled_at  TEXT,
    last_outcome    TEXT,
    last_error      TEXT,
    failures        INTEGER NOT NULL DEFAULT 0,
    last_job_id     TEXT,
    polls           INTEGER NOT NULL DEFAULT 0,
    jobs            INTEGER NOT NULL DEFAULT 0,
    poll_requested  INTEGER NOT NULL DEFAULT 0,
    owner           TEXT,
    lease_until     TEXT
);
