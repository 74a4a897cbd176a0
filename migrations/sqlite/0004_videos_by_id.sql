-- Which jobs still need a video's media (media shared by jobs of one channel).
CREATE INDEX job_videos_video ON job_videos (video_id);
