-- Jobs, the videos each job drives, stage attempts, and the transactional outbox of domain events.
CREATE TABLE jobs (
    job_id      UUID PRIMARY KEY,
    channel_id  TEXT NOT NULL,
    force       BOOLEAN NOT NULL DEFAULT FALSE,
    status      TEXT NOT NULL,
    error       TEXT,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at DESC, job_id DESC);
CREATE INDEX jobs_unfinished ON jobs (created_at) WHERE status IN ('pending', 'discovering', 'running');

CREATE TABLE job_videos (
    job_id       UUID NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    video_id     TEXT NOT NULL,
    title        TEXT NOT NULL,
    published_at TIMESTAMPTZ,
    position     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    updated_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (job_id, video_id)
);

-- One row per stage command taken by a worker: who claimed it and how it ended.
CREATE TABLE stage_attempts (
    command_id  UUID PRIMARY KEY,
    job_id      UUID NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    video_id    TEXT,
    stage       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    claimed_by  TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    outcome     TEXT
);
CREATE INDEX stage_attempts_video ON stage_attempts (job_id, video_id, stage);

-- Domain events, written in the transaction of the change they report; a relay publishes them.
CREATE TABLE outbox (
    id           BIGSERIAL PRIMARY KEY,
    event_id     UUID NOT NULL UNIQUE,
    topic        TEXT NOT NULL,
    key          TEXT,
    payload      JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
