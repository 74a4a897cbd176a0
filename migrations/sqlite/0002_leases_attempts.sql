-- Job ownership (kept for parity with PostgreSQL: an embedded database has one process) and one
-- row per stage command taken by a worker.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until TEXT;

CREATE TABLE stage_attempts (
    command_id  TEXT PRIMARY KEY NOT NULL,
    job_id      TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    video_id    TEXT,
    stage       TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    claimed_by  TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    outcome     TEXT,
    error       TEXT
);
CREATE INDEX stage_attempts_video ON stage_attempts (job_id, video_id, stage);
