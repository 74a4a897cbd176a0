-- A video's length where discovery's listing states it (the Data API, yt-dlp): over-long videos
-- fail before anything is downloaded, and the job's page shows it.
ALTER TABLE job_videos ADD COLUMN duration_secs integer;
