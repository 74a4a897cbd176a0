-- Jobs and the videos each job drives; transcripts and summaries per video.
CREATE TABLE jobs (
    job_id      TEXT PRIMARY KEY NOT NULL,
    channel_id  TEXT NOT NULL,
    force       INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    error       TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX jobs_created ON jobs (created_at DESC);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE job_videos (
    job_id       TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    video_id     TEXT NOT NULL,
    title        TEXT NOT NULL,
    published_at TEXT,
    position     INTEGER NOT NULL,
    status       TEXT NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    error        TEXT,
    updated_at   TEXT NOT NULL,
    PRIMARY KEY (job_id, video_id)
);

CREATE TABLE transcripts (
    video_id   TEXT PRIMARY KEY NOT NULL,
    job_id     TEXT NOT NULL,
    source     TEXT NOT NULL,
    language   TEXT,
    text       TEXT NOT NULL,
    segments   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE summaries (
    video_id   TEXT PRIMARY KEY NOT NULL,
    job_id     TEXT NOT NULL,
    summary    TEXT NOT NULL,
    key_points TEXT NOT NULL,
    summarizer TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
