//! Ports: one trait per external concern, injected as `Arc<dyn Trait>`, and the error type every
//! implementation translates its driver's errors into. The implementations live in
//! [`crate::adapters`]; each passes the same conformance suite (`conformance`, compiled for tests
//! and with the `test-support` feature).
//!
//! | port              | what it holds or carries                                        |
//! |-------------------|-----------------------------------------------------------------|
//! | [`JobStore`]      | jobs, videos, stage attempts, job leases                        |
//! | [`ArtifactStore`] | transcripts and summaries                                       |
//! | [`MediaStore`]    | videos' media files between stages that run on different nodes  |
//! | [`CommandBus`]    | [`StageCommand`]s, one queue per stage, competing consumers     |
//! | [`EventBus`]      | [`DomainEvent`]s, fanned out to every subscriber or group       |
//! | [`WebhookStore`]  | webhook endpoints and their deliveries ([`webhooks`])           |
//! | [`WebhookSender`] | one signed POST of a delivery to an endpoint                    |
//!
//! Delivery is at-least-once by contract: a [`StageCommand`] carries the ids that make its handler
//! idempotent, a handler commits its result before acking, and a consumer may see a command or an
//! event twice (deduplicate by `command_id` / `event_id`).

#[cfg(any(test, feature = "test-support"))]
pub mod conformance;
pub mod subscriptions;
pub mod webhooks;

pub use webhooks::{AttemptResult, ClaimedDelivery, SendOutcome, WebhookRequest, WebhookSender, WebhookStore};

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use uuid::Uuid;

pub use subscriptions::SubscriptionStore;

use crate::domain::search::{FoundPassage, IndexedVideo, Passage, PassageKind, SearchQuery};
use crate::domain::{
    AttemptOutcome, AttemptProgress, AttemptRecord, ChannelId, DomainEvent, JobId, JobLease, JobRecord, JobStatus,
    NodeRecord, Stage, StageCommand, Summary, Transcript, VideoCounts, VideoId, VideoMeta, VideoRecord, VideoStatus,
    VideoUpdate,
};

/// Errors at the storage/broker edge, already translated from driver errors.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PortError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// A write refused because the record moved on without the writer (a job already final).
    #[error("{0}")]
    Stale(String),
    /// A write for a job refused because another process took the job over (its [`Fence`] no
    /// longer holds): the writer's actors for the job must stop.
    #[error("ownership lost: {0}")]
    OwnershipLost(String),
    #[error("{0}")]
    Other(String),
}

pub type PortResult<T> = Result<T, PortError>;

/// Who may write for a job: the owner that claimed it, at the epoch of that claim. Every claim
/// that changes a job's owner increments its epoch, so a process that lost the job (paused past
/// its lease, cut off from the database) has its writes refused once another one took it over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub owner: String,
    pub epoch: i64,
}

/// The error for a write whose fence no longer holds; `now` is the job's owner and epoch.
pub fn ownership_lost(job_id: JobId, fence: &Fence, now: (Option<&str>, i64)) -> PortError {
    let holder = now.0.unwrap_or("nobody");
    PortError::OwnershipLost(format!(
        "job {job_id} is held by {holder} at epoch {}, not by {} at epoch {}",
        now.1, fence.owner, fence.epoch
    ))
}

/// How [`JobStore::finish_job`] went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The status and its event, in one transaction (the outbox passes the event on).
    WithEvent,
    /// The status only: the caller publishes the event.
    StatusOnly,
    /// The job had ended already, with this status: nothing was written.
    AlreadyFinal(JobStatus),
}

/// [`JobStore::finish_job`] for a store that writes the status alone (the caller publishes the
/// event): [`Finish::StatusOnly`], or [`Finish::AlreadyFinal`] when the job had ended.
pub async fn finish_status_only(
    store: &(impl JobStore + ?Sized),
    job_id: JobId,
    status: JobStatus,
    error: Option<&str>,
    fence: Option<&Fence>,
) -> PortResult<Finish> {
    match store.set_job_status_fenced(job_id, status, error, fence).await {
        Ok(()) => Ok(Finish::StatusOnly),
        Err(PortError::Stale(_)) => already_final(store, job_id).await,
        Err(e) => Err(e),
    }
}

/// [`Finish::AlreadyFinal`] with the job's status, for a store that found the job final.
pub async fn already_final(store: &(impl JobStore + ?Sized), job_id: JobId) -> PortResult<Finish> {
    match store.get_job(job_id).await? {
        Some(job) => Ok(Finish::AlreadyFinal(job.status)),
        None => Err(PortError::NotFound(format!("job {job_id}"))),
    }
}

/// Why a write for `job_id` that had to find it unfinished (and held under `fence`, when given)
/// changed nothing, from the job's row as it is now: `(status, owner, epoch)`, None when missing.
pub fn write_refused(job_id: JobId, fence: Option<&Fence>, row: Option<(String, Option<String>, i64)>) -> PortError {
    let Some((status, owner, epoch)) = row else {
        return PortError::NotFound(format!("job {job_id}"));
    };
    let unfinished = ["pending", "discovering", "running"].contains(&status.as_str());
    match fence {
        Some(fence) if unfinished => ownership_lost(job_id, fence, (owner.as_deref(), epoch)),
        _ => job_is_final(job_id, &status),
    }
}

/// Why a write of video `video_id` of `job_id` (under `fence`, when given) changed nothing: the
/// fence no longer holds on the job (its row as it is now: `(status, owner, epoch)`), or there is
/// no such video.
pub fn video_write_refused(
    job_id: JobId,
    video_id: &VideoId,
    fence: Option<&Fence>,
    row: Option<(String, Option<String>, i64)>,
) -> PortError {
    match (fence, row) {
        (Some(fence), Some((_, owner, epoch)))
            if owner.as_deref() != Some(fence.owner.as_str()) || epoch != fence.epoch =>
        {
            ownership_lost(job_id, fence, (owner.as_deref(), epoch))
        }
        _ => PortError::NotFound(format!("video {video_id} of job {job_id}")),
    }
}

/// A node's stage pools as a store keeps them: `download,transcription`.
pub fn stages_text(stages: &[Stage]) -> String {
    stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
}

/// [`stages_text`] read back.
pub fn parse_stages(raw: &str) -> PortResult<Vec<Stage>> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<Stage>().map_err(|e| PortError::Corrupt(format!("stage {s:?}: {e}"))))
        .collect()
}

/// The error for a write to a job that has ended.
pub fn job_is_final(job_id: JobId, status: &str) -> PortError {
    PortError::Stale(format!("job {job_id} has ended ({status}); its status is not changed"))
}

/// Job and video state.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Records a pending job; with `holder`, already leased to that process for that long, so that
    /// the process it was submitted to runs it and no other claims it before that one's first claim.
    async fn create_job(
        &self,
        job_id: JobId,
        channel_id: &ChannelId,
        force: bool,
        holder: Option<(&str, Duration)>,
    ) -> PortResult<JobRecord>;
    async fn get_job(&self, job_id: JobId) -> PortResult<Option<JobRecord>>;
    /// Newest first: every job, or `channel`'s; with how many there are in all.
    async fn list_jobs(
        &self,
        channel: Option<&ChannelId>,
        limit: u32,
        offset: u32,
    ) -> PortResult<(Vec<JobRecord>, u64)>;
    /// Sets an unfinished job's status. A final status is never changed: [`PortError::Stale`]
    /// when the job is final, [`PortError::NotFound`] when there is none.
    async fn set_job_status(&self, job_id: JobId, status: JobStatus, error: Option<&str>) -> PortResult<()> {
        self.set_job_status_fenced(job_id, status, error, None).await
    }
    /// [`JobStore::set_job_status`], written only while `fence` (when given) holds:
    /// [`PortError::OwnershipLost`] when another process took the job over.
    async fn set_job_status_fenced(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        fence: Option<&Fence>,
    ) -> PortResult<()>;
    /// Ends a job, once: its final status and the event that reports it, written only while the
    /// job is unfinished (a job ends with the first final status written; a later one changes
    /// nothing). A store with a transactional outbox writes both in one transaction.
    async fn finish_job(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        event: &DomainEvent,
    ) -> PortResult<Finish> {
        self.finish_job_fenced(job_id, status, error, event, None).await
    }
    /// [`JobStore::finish_job`], written only while `fence` (when given) holds.
    async fn finish_job_fenced(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        event: &DomainEvent,
        fence: Option<&Fence>,
    ) -> PortResult<Finish> {
        let _ = event;
        finish_status_only(self, job_id, status, error, fence).await
    }
    /// Unfinished jobs no process holds a live lease on (never claimed, released, whose holder
    /// stopped renewing, or whose holder's node has since registered a new incarnation: it
    /// restarted), oldest first: the jobs a process may resume.
    async fn claimable_jobs(&self) -> PortResult<Vec<JobId>>;
    /// Takes, or extends, `owner`'s lease on an unfinished job for `lease`, and returns the fence
    /// its writes for the job carry (the epoch goes up when the owner changes). None when the job
    /// is final or missing, or another owner holds a lease on it that has not run out (a lease of
    /// an incarnation its node replaced by registering again has).
    async fn claim_job(&self, job_id: JobId, owner: &str, lease: Duration) -> PortResult<Option<Fence>>;
    /// Extends every lease `owner` holds on an unfinished job; returns those jobs. A job `owner`
    /// runs that is missing from the answer was finished, cancelled or taken over elsewhere.
    async fn renew_leases(&self, owner: &str, lease: Duration) -> PortResult<Vec<JobId>>;
    /// Gives up `owner`'s lease on a job, so that another process may claim it at once.
    async fn release_job(&self, job_id: JobId, owner: &str) -> PortResult<()>;
    /// Registers a running node, replacing the row of an earlier incarnation of the same name.
    async fn register_node(&self, node: &NodeRecord) -> PortResult<()>;
    /// Records that `node` (a boot id) is alive; false when it has no row (a newer incarnation of
    /// its name replaced it, or it was forgotten).
    async fn node_heartbeat(&self, node: &str) -> PortResult<bool>;
    /// Every registered node, by name, with the store's clock now (to age heartbeats by).
    async fn list_nodes(&self) -> PortResult<(Vec<NodeRecord>, chrono::DateTime<chrono::Utc>)>;
    /// Removes `node`'s row (it is stopping), or every row silent for longer than `silent` when
    /// `node` is None; returns how many.
    async fn forget_nodes(&self, node: Option<&str>, silent: Duration) -> PortResult<u64>;
    /// Who holds each unfinished job (only `job`, when given), oldest first.
    async fn job_leases(&self, job: Option<JobId>) -> PortResult<Vec<JobLease>>;
    /// Records that `owner` took a stage command (a redelivered command overwrites its row).
    async fn attempt_started(&self, command: &StageCommand, owner: &str) -> PortResult<()>;
    /// A worker takes `command`: if it is still wanted, records its attempt as started by `owner`
    /// (as [`JobStore::attempt_started`]) and returns true; if not, records nothing and returns
    /// false. Wanted: its job exists and has not ended, and its video is in the command's stage
    /// with no later attempt sent (for discovery: the job is discovering). One step, so a worker
    /// pays one round trip for the check and the record.
    async fn take_command(&self, command: &StageCommand, owner: &str) -> PortResult<bool>;
    /// Records that the attempt `command_id` is still being worked on.
    async fn attempt_heartbeat(&self, command_id: Uuid) -> PortResult<()>;
    /// Where attempt `attempt` of `stage` for `video_id` (None: the job's discovery) stands: not
    /// taken yet, running, silent for longer than `silence`, or finished longer than `silence` ago
    /// (an attempt that finished more recently reads as running: its result may still be on its
    /// way). With several commands for one attempt (a re-sent command), the latest taken counts.
    async fn attempt_progress(
        &self,
        job_id: JobId,
        video_id: Option<&VideoId>,
        stage: Stage,
        attempt: u32,
        silence: Duration,
    ) -> PortResult<AttemptProgress>;
    /// Records how a stage command ended.
    async fn attempt_finished(&self, command_id: Uuid, outcome: AttemptOutcome, error: Option<&str>) -> PortResult<()>;
    /// Closes as `interrupted` (with `reason`) the attempts still open that `owner` started (its
    /// process is stopping) or that show no sign of life since `silent_since` (their process
    /// died); returns how many.
    async fn interrupt_attempts(
        &self,
        owner: Option<&str>,
        silent_since: chrono::DateTime<chrono::Utc>,
        reason: &str,
    ) -> PortResult<u64>;
    /// A page of a job's stage attempts, oldest first, and how many the job has in all.
    async fn attempts_page(&self, job_id: JobId, limit: u32, offset: u32) -> PortResult<(Vec<AttemptRecord>, u64)>;
    /// Every stage attempt of a job, oldest first.
    async fn list_attempts(&self, job_id: JobId) -> PortResult<Vec<AttemptRecord>> {
        Ok(self.attempts_page(job_id, u32::MAX, 0).await?.0)
    }
    /// Records discovered videos; videos already recorded for the job are left as they are.
    async fn add_videos(&self, job_id: JobId, videos: &[VideoMeta]) -> PortResult<()>;
    /// A page of a job's videos in discovery order, only those in `status` when given.
    async fn videos_page(
        &self,
        job_id: JobId,
        status: Option<VideoStatus>,
        limit: u32,
        offset: u32,
    ) -> PortResult<Vec<VideoRecord>>;
    /// Every video of a job, in discovery order.
    async fn list_videos(&self, job_id: JobId) -> PortResult<Vec<VideoRecord>> {
        self.videos_page(job_id, None, u32::MAX, 0).await
    }
    /// How many of a job's videos are in each status (statuses with none are left out), and how
    /// many changes its videos have seen.
    async fn video_counts(&self, job_id: JobId) -> PortResult<VideoCounts>;
    /// The job and its [`video_counts`](Self::video_counts), read together (one round trip
    /// where the store can: what every poll of a job's page reads first).
    async fn job_with_counts(&self, job_id: JobId) -> PortResult<Option<(JobRecord, VideoCounts)>> {
        let Some(job) = self.get_job(job_id).await? else {
            return Ok(None);
        };
        Ok(Some((job, self.video_counts(job_id).await?)))
    }
    async fn get_video(&self, job_id: JobId, video_id: &VideoId) -> PortResult<Option<VideoRecord>>;
    /// The unfinished jobs that still need this video's media: those in which it has not been
    /// transcribed yet and has not ended. Media is deleted only when none is left.
    async fn jobs_needing_media(&self, video_id: &VideoId) -> PortResult<Vec<JobId>>;
    async fn update_video(&self, job_id: JobId, video_id: &VideoId, update: &VideoUpdate) -> PortResult<()> {
        self.update_video_fenced(job_id, video_id, update, None).await
    }
    /// [`JobStore::update_video`], written only while `fence` (when given) holds:
    /// [`PortError::OwnershipLost`] when another process took the job over.
    async fn update_video_fenced(
        &self,
        job_id: JobId,
        video_id: &VideoId,
        update: &VideoUpdate,
        fence: Option<&Fence>,
    ) -> PortResult<()>;

    /// Files `passages` as what the search index holds of `video`'s `kind` (its transcript, or
    /// its summary and key points), in place of what it held: one transaction.
    async fn index_passages(&self, video: &IndexedVideo, kind: PassageKind, passages: &[Passage]) -> PortResult<()>;
    /// The passages that match `query`, best first (full-text: stemmed words, `"a phrase"`,
    /// `-excluded`); each with a snippet whose matches are marked.
    async fn search(&self, query: &SearchQuery) -> PortResult<Vec<FoundPassage>>;
}

/// A search hit as a store's row gives it: `(video_id, channel_id, title, kind, start, snippet,
/// rank)`; a row that does not decode is [`PortError::Corrupt`].
pub fn found_passage(
    (video_id, channel_id, title, kind, start, snippet, rank): (String, String, String, String, f64, String, f64),
) -> PortResult<FoundPassage> {
    let corrupt = |what: &str, raw: &str| PortError::Corrupt(format!("search passage: {what} {raw:?}"));
    Ok(FoundPassage {
        video_id: VideoId::parse(&video_id).map_err(|_| corrupt("video id", &video_id))?,
        channel_id: ChannelId::parse(&channel_id).map_err(|_| corrupt("channel id", &channel_id))?,
        title,
        kind: kind.parse().map_err(|_| corrupt("kind", &kind))?,
        start,
        snippet,
        rank,
    })
}

/// Transcripts and summaries, one of each per video (the latest wins).
#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    async fn put_transcript(&self, transcript: &Transcript) -> PortResult<()>;
    async fn get_transcript(&self, video_id: &VideoId) -> PortResult<Option<Transcript>>;
    async fn put_summary(&self, summary: &Summary) -> PortResult<()>;
    async fn get_summary(&self, video_id: &VideoId) -> PortResult<Option<Summary>>;
    /// Which of `video_ids` have a summary: one question for a whole channel's videos, not one
    /// per video.
    async fn summarized(&self, video_ids: &[VideoId]) -> PortResult<std::collections::HashSet<VideoId>>;
}

/// What a stored media file was when its producer stored it; a reader checks what it fetched
/// against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaInfo {
    /// The file's name in a video's media directory (`source.webm`, `audio.wav`).
    pub file_name: String,
    pub size: u64,
    /// Lowercase hex SHA-256 of the contents.
    pub sha256: String,
}

/// A file's contents, streamed in chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<bytes::Bytes>> + Send>>;

/// Videos' media files, where every node can fetch them: what one stage made on one node, the next
/// stage reads on another. A file is named by its video and its kind (`source`, `audio`); one of
/// each per video (the latest put wins). Contents are streamed both ways, never held whole.
#[async_trait]
pub trait MediaStore: Send + Sync + 'static {
    /// Stores `body` as the video's `kind`, recorded with `info`, replacing an earlier one. The
    /// file is visible to readers only once complete.
    async fn put(&self, video_id: &VideoId, kind: &str, info: &MediaInfo, body: ByteStream) -> PortResult<()>;
    /// The video's `kind` as recorded, and its contents; None when there is none.
    async fn open(&self, video_id: &VideoId, kind: &str) -> PortResult<Option<(MediaInfo, ByteStream)>>;
    /// Deletes every file of the video; returns how many there were.
    async fn delete(&self, video_id: &VideoId) -> PortResult<u64>;
}

/// Acknowledgement of a delivery, called only after the handler's result is committed.
#[async_trait]
pub trait Acker: Send + Sync {
    async fn ack(&self) -> PortResult<()>;
    /// Gives the command back: `requeue` false dead-letters it (or drops it where there is no DLQ).
    async fn nack(&self, requeue: bool, reason: &str) -> PortResult<()>;
}

pub struct Delivery {
    pub command: StageCommand,
    pub acker: Box<dyn Acker>,
}

pub type DeliveryStream = Pin<Box<dyn Stream<Item = PortResult<Delivery>> + Send>>;

/// Stage work queues (competing consumers).
#[async_trait]
pub trait CommandBus: Send + Sync + 'static {
    async fn send(&self, command: StageCommand) -> PortResult<()>;
    /// Consumes a stage's queue with at most `prefetch` unacknowledged deliveries.
    async fn consume(&self, stage: Stage, prefetch: usize) -> PortResult<DeliveryStream>;
}

pub type EventStream = Pin<Box<dyn Stream<Item = PortResult<DomainEvent>> + Send>>;

/// Domain events, fanned out to every subscriber.
#[async_trait]
pub trait EventBus: Send + Sync + 'static {
    async fn publish(&self, event: DomainEvent) -> PortResult<()>;
    async fn subscribe(&self) -> PortResult<EventStream>;
    /// A subscription as a member of consumer group `group`: each group sees every event, and the
    /// members of one group share them. Where the bus has no groups, every subscriber sees every
    /// event.
    async fn subscribe_group(&self, group: &str) -> PortResult<EventStream> {
        let _ = group;
        self.subscribe().await
    }
    /// Events published but not yet passed on to every broker (a transactional outbox's backlog),
    /// for the metrics; `None` where the bus keeps no backlog.
    async fn backlog(&self) -> PortResult<Option<u64>> {
        Ok(None)
    }
    /// Events the bus gave up passing on to a broker (undecodable, or refused too often), kept
    /// aside for an operator; `None` where the bus keeps none.
    async fn dead_letters(&self) -> PortResult<Option<u64>> {
        Ok(None)
    }
}
