-- A running attempt's last sign of life, renewed by its worker: an attempt silent for too long
-- lost its worker and is retried; one that has not started yet is only queued.
ALTER TABLE stage_attempts ADD COLUMN heartbeat_at TEXT;
CREATE INDEX stage_attempts_attempt ON stage_attempts (job_id, video_id, stage, attempt);
