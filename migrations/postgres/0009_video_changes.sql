-- Each video row counts its own updates: a job's sum of them goes up with every change to any of
-- its videos, so GET /jobs/{id} can say "not modified" (ETag) without reading the videos.
ALTER TABLE job_videos ADD COLUMN changes BIGINT NOT NULL DEFAULT 0;
