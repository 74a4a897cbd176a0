//! Ports: one trait per external concern, injected as `Arc<dyn Trait>`; one file per technology.
//!
//! | port            | embedded (default)        | production (see the production-backends issue) |
//! |-----------------|---------------------------|-------------------------------------------------|
//! | [`JobStore`]      | SQLite ([`sqlite`])        | PostgreSQL ([`postgres`])                         |
//! | [`ArtifactStore`] | SQLite ([`sqlite`])        | MongoDB ([`mongo`])                               |
//! | [`CommandBus`]    | in-process ([`in_process`]) | RabbitMQ queues + retry/DLQ ([`rabbitmq`])        |
//! | [`EventBus`]      | in-process ([`in_process`]) | outbox ([`outbox`]) → RabbitMQ fanout ([`rabbitmq`]) + Kafka ([`kafka`]) |
//!
//! Delivery is at-least-once by contract: a [`StageCommand`] carries the ids that make its handler
//! idempotent, a handler commits its result before acking, and a consumer may see a command or an
//! event twice (deduplicate by `command_id` / `event_id`).

pub mod conformance;
pub mod in_process;
pub mod kafka;
pub mod mongo;
pub mod outbox;
pub mod postgres;
pub mod rabbitmq;
pub mod sqlite;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::Stream;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{
    AttemptOutcome, ChannelId, JobId, JobStatus, Stage, Summary, Transcript, TranscriptSource, VideoId, VideoMeta,
    VideoStatus,
};

/// Errors at the storage/broker edge, already translated from driver errors.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Other(String),
}

pub type AdapterResult<T> = Result<T, AdapterError>;

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

/// Job and video state.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    async fn create_job(&self, job_id: JobId, channel_id: &ChannelId, force: bool) -> AdapterResult<JobRecord>;
    async fn get_job(&self, job_id: JobId) -> AdapterResult<Option<JobRecord>>;
    /// Newest first.
    async fn list_jobs(&self, limit: u32, offset: u32) -> AdapterResult<(Vec<JobRecord>, u64)>;
    async fn set_job_status(&self, job_id: JobId, status: JobStatus, error: Option<&str>) -> AdapterResult<()>;
    /// Ends a job: its final status and the event that reports it. A store with a transactional
    /// outbox writes both in one transaction and returns true; otherwise it writes the status and
    /// returns false, and the caller publishes the event.
    async fn finish_job(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        event: &DomainEvent,
    ) -> AdapterResult<bool> {
        let _ = event;
        self.set_job_status(job_id, status, error).await?;
        Ok(false)
    }
    /// Unfinished jobs no process holds a live lease on (never claimed, released, or whose holder
    /// stopped renewing), oldest first: the jobs a process may resume.
    async fn claimable_jobs(&self) -> AdapterResult<Vec<JobId>>;
    /// Takes, or extends, `owner`'s lease on an unfinished job for `lease`. False when the job is
    /// final or missing, or another owner holds a lease on it that has not run out.
    async fn claim_job(&self, job_id: JobId, owner: &str, lease: Duration) -> AdapterResult<bool>;
    /// Extends every lease `owner` holds on an unfinished job; returns those jobs. A job `owner`
    /// runs that is missing from the answer was finished, cancelled or taken over elsewhere.
    async fn renew_leases(&self, owner: &str, lease: Duration) -> AdapterResult<Vec<JobId>>;
    /// Gives up `owner`'s lease on a job, so that another process may claim it at once.
    async fn release_job(&self, job_id: JobId, owner: &str) -> AdapterResult<()>;
    /// Records that `owner` took a stage command (a redelivered command overwrites its row).
    async fn attempt_started(&self, command: &StageCommand, owner: &str) -> AdapterResult<()>;
    /// Records how a stage command ended.
    async fn attempt_finished(
        &self,
        command_id: Uuid,
        outcome: AttemptOutcome,
        error: Option<&str>,
    ) -> AdapterResult<()>;
    /// A job's stage attempts, oldest first.
    async fn list_attempts(&self, job_id: JobId) -> AdapterResult<Vec<AttemptRecord>>;
    /// Records discovered videos; videos already recorded for the job are left as they are.
    async fn add_videos(&self, job_id: JobId, videos: &[VideoMeta]) -> AdapterResult<()>;
    async fn list_videos(&self, job_id: JobId) -> AdapterResult<Vec<VideoRecord>>;
    async fn get_video(&self, job_id: JobId, video_id: &VideoId) -> AdapterResult<Option<VideoRecord>>;
    async fn update_video(&self, job_id: JobId, video_id: &VideoId, update: &VideoUpdate) -> AdapterResult<()>;
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

/// Transcripts and summaries, one of each per video (the latest wins).
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    async fn put_transcript(&self, transcript: &Transcript) -> AdapterResult<()>;
    async fn get_transcript(&self, video_id: &VideoId) -> AdapterResult<Option<Transcript>>;
    async fn put_summary(&self, summary: &Summary) -> AdapterResult<()>;
    async fn get_summary(&self, video_id: &VideoId) -> AdapterResult<Option<Summary>>;
}

/// Work for one stage. The ids make the handler idempotent: a redelivery of a command whose
/// result is already committed does no work again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageCommand {
    pub command_id: Uuid,
    pub job_id: JobId,
    /// None for discovery, which is job-level.
    pub video_id: Option<VideoId>,
    pub stage: Stage,
    pub attempt: u32,
}

impl StageCommand {
    pub fn new(job_id: JobId, video_id: Option<VideoId>, stage: Stage, attempt: u32) -> Self {
        Self { command_id: Uuid::now_v7(), job_id, video_id, stage, attempt }
    }
}

/// Acknowledgement of a delivery, called only after the handler's result is committed.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> AdapterResult<()>;
    /// Gives the command back: `requeue` false dead-letters it (or drops it where there is no DLQ).
    async fn nack(&self, requeue: bool, reason: &str) -> AdapterResult<()>;
}

pub struct Delivery {
    pub command: StageCommand,
    pub acker: Box<dyn Acker>,
}

pub type DeliveryStream = Pin<Box<dyn Stream<Item = AdapterResult<Delivery>> + Send>>;

/// Stage work queues (competing consumers).
#[async_trait]
pub trait CommandBus: Send + Sync + 'static {
    async fn send(&self, command: StageCommand) -> AdapterResult<()>;
    /// Consumes a stage's queue with at most `prefetch` unacknowledged deliveries.
    async fn consume(&self, stage: Stage, prefetch: usize) -> AdapterResult<DeliveryStream>;
}

/// A domain event: what happened to a job or a video.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub event_id: Uuid,
    pub occurred_at: DateTime<Utc>,
    pub job_id: JobId,
    pub video_id: Option<VideoId>,
    /// How long the stage worked on the command this event reports (stage results only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    #[serde(flatten)]
    pub payload: EventPayload,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventPayload {
    VideoDiscovered {
        title: String,
        published_at: Option<DateTime<Utc>>,
    },
    /// `captions`: the download stage found captions and stored them as the transcript.
    VideoDownloaded {
        captions: bool,
    },
    AudioExtracted {
        seconds: f64,
    },
    TranscriptionCompleted {
        source: TranscriptSource,
        segments: usize,
    },
    SummarizationCompleted {
        summarizer: String,
    },
    DiscoveryCompleted {
        videos: usize,
    },
    StageFailed {
        stage: Stage,
        attempt: u32,
        retryable: bool,
        reason: String,
    },
    JobFinished {
        status: JobStatus,
    },
}

impl EventPayload {
    /// The event's type name, also its Kafka topic.
    pub fn kind(&self) -> &'static str {
        match self {
            EventPayload::VideoDiscovered { .. } => "video_discovered",
            EventPayload::VideoDownloaded { .. } => "video_downloaded",
            EventPayload::AudioExtracted { .. } => "audio_extracted",
            EventPayload::TranscriptionCompleted { .. } => "transcription_completed",
            EventPayload::SummarizationCompleted { .. } => "summarization_completed",
            EventPayload::DiscoveryCompleted { .. } => "discovery_completed",
            EventPayload::StageFailed { .. } => "stage_failed",
            EventPayload::JobFinished { .. } => "job_finished",
        }
    }
}

/// Namespace of [`DomainEvent::stable`] ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x8f0c_54a1_6a43_4d8e_9a1f_4c1b_7d2e_3f60);

impl DomainEvent {
    pub fn new(job_id: JobId, video_id: Option<VideoId>, payload: EventPayload) -> Self {
        Self { event_id: Uuid::now_v7(), occurred_at: Utc::now(), job_id, video_id, duration_ms: None, payload }
    }

    /// Gives the event the id it has whenever it is produced again: a redelivered command or a
    /// re-dispatched stage whose work is already committed, a restarted actor. The id is derived
    /// from the job, the video and the event type, which happen once per job, so consumers that
    /// deduplicate by `event_id` see a redone stage once. A `stage_failed` event keeps its own id:
    /// each failed attempt is news.
    pub fn stable(mut self) -> Self {
        if !matches!(self.payload, EventPayload::StageFailed { .. }) {
            let video = self.video_id.as_ref().map_or("", VideoId::as_str);
            let name = format!("{}/{video}/{}", self.job_id, self.payload.kind());
            self.event_id = Uuid::new_v5(&EVENT_ID_NAMESPACE, name.as_bytes());
        }
        self
    }
}

pub type EventStream = Pin<Box<dyn Stream<Item = AdapterResult<DomainEvent>> + Send>>;

/// Domain events, fanned out to every subscriber.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    async fn publish(&self, event: DomainEvent) -> AdapterResult<()>;
    async fn subscribe(&self) -> AdapterResult<EventStream>;
    /// A subscription as a member of consumer group `group`: each group sees every event, and the
    /// members of one group share them. Where the bus has no groups, every subscriber sees every
    /// event.
    async fn subscribe_group(&self, group: &str) -> AdapterResult<EventStream> {
        let _ = group;
        self.subscribe().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stable_event_id_is_the_same_whenever_the_event_recurs() {
        let job = JobId::new();
        let video = Some(VideoId::parse("aaaaaaaaaaa").unwrap());
        let done = |seconds| DomainEvent::new(job, video.clone(), EventPayload::AudioExtracted { seconds }).stable();
        assert_eq!(done(1.0).event_id, done(2.0).event_id, "the same stage of the same video");
        let other_kind =
            DomainEvent::new(job, video.clone(), EventPayload::VideoDownloaded { captions: false }).stable();
        assert_ne!(done(1.0).event_id, other_kind.event_id);
        let other_job =
            DomainEvent::new(JobId::new(), video.clone(), EventPayload::AudioExtracted { seconds: 1.0 }).stable();
        assert_ne!(done(1.0).event_id, other_job.event_id);
        let failed = |attempt| {
            DomainEvent::new(
                job,
                video.clone(),
                EventPayload::StageFailed { stage: Stage::Download, attempt, retryable: true, reason: "x".into() },
            )
            .stable()
        };
        assert_ne!(failed(1).event_id, failed(1).event_id, "each failure is its own event");
    }
}
