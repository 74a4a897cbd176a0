//! What the job store keeps: a job, its videos, and the stage attempts workers made.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{AttemptOutcome, ChannelId, JobId, JobStatus, Stage, VideoId, VideoStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_id: JobId,
    pub channel_id: ChannelId,
    pub force: bool,
    pub status: JobStatus,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VideoRecord {
    pub job_id: JobId,
    pub video_id: VideoId,
    pub title: String,
    pub published_at: Option<DateTime<Utc>>,
    /// Order in which discovery listed it (newest first for feeds).
    pub position: i64,
    pub status: VideoStatus,
    /// Attempts made at the stage the video is in (1 on first dispatch).
    pub attempts: u32,
    pub error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// A state change of one video in one job.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoUpdate {
    pub status: VideoStatus,
    pub attempts: u32,
    pub error: Option<String>,
}

/// One stage command as a worker took it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttemptRecord {
    #[schema(value_type = String)]
    pub command_id: Uuid,
    #[schema(value_type = Option<String>)]
    pub video_id: Option<VideoId>,
    pub stage: Stage,
    pub attempt: u32,
    /// The process (node id) whose worker took it.
    pub claimed_by: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// None while it runs (or when its process died running it).
    pub outcome: Option<AttemptOutcome>,
    pub error: Option<String>,
}
