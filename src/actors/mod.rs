//! The actor runtime (ractor) and its supervision tree.
//!
//! ```text
//! RootSupervisor                        restarts a failed child after capped backoff + jitter
//! ├─ EventRouter                        event bus → the JobActor / VideoActor an event is about
//! ├─ StagePool{stage} × 5               consumes its stage's queue, N workers, publishes results
//! │    discovery | download | audio_extraction | transcription | summarization
//! ├─ EventConsumer{analytics, event-log, webhooks}
//! │                                     its own consumer group each, feeding an [`EventSink`]
//! │                                     (webhooks: a pending delivery per interested webhook)
//! ├─ WebhookDispatcher                  claims due webhook deliveries, POSTs them signed (bounded
//! │                                     concurrency, own tasks), retries with backoff
//! ├─ JobSupervisor                      one JobActor per job it holds a lease on; restarts a failed one
//! │  └─ JobActor{job_id}                runs discovery, then one VideoActor per video;
//! │     │                               ends the job when every video is final
//! │     └─ VideoActor{job_id,video_id}  drives `domain::workflow` through the stage pools;
//! │                                     restarted alone, from its persisted state, when it fails
//! └─ SubscriptionSupervisor             one SubscriptionActor per subscription it holds a lease on
//!    └─ SubscriptionActor{id}           polls its channel's feed; a job for each batch of new uploads
//! ```
//!
//! Every state transition is persisted before the next stage's command is sent. A stage failure
//! makes the VideoActor fail on purpose (after recording the error); its JobActor re-spawns it after
//! a backoff, and `pre_start` reloads the persisted state and re-dispatches the stage with the next
//! attempt number. After `stages.max_attempts`, or on a permanent error, the video is `failed` and
//! the job goes on. A panic anywhere in a VideoActor is handled the same way. Nothing above the
//! failed actor restarts.
//!
//! The ports (stores, buses) are shared `Arc<dyn Port>`s in [`Deps`]; the actors that hold a
//! long-lived subscription (EventRouter, StagePools, EventConsumers) pump it with [`pump`] and fail
//! when it breaks, and the RootSupervisor re-creates them with backoff (the WebhookDispatcher too,
//! when the store fails it). The runtime knows nothing
//! of which adapters are behind the ports, nor of what the event sinks do with events.

pub mod board;
pub mod consumer;
pub mod feed;
pub mod job;
pub mod job_supervisor;
#[cfg(feature = "cluster")]
pub mod node_agent;
pub mod pump;
pub mod restarts;
pub mod root;
pub mod router;
pub mod snapshot;
pub mod stage_pool;
pub mod steps;
pub mod subscriptions;
#[cfg(test)]
mod testing;
pub mod video;
pub mod webhooks;

use std::sync::Arc;

pub use consumer::{EventConsumerArgs, EventSink};
pub use stage_pool::{PoolStats, RunningStages};

use crate::domain::{DomainEvent, EventPayload, JobId, JobStatus, VideoId};
use crate::ports::{ArtifactStore, CommandBus, EventBus, Fence, Finish, JobStore, PortError, PortResult};
use crate::stages::{Stages, StagesSettings};

/// What actors share (read-only): the runtime's settings, the ports, and the stage work.
#[derive(Clone)]
pub struct Deps {
    /// `[stages]`: pool sizes, deadlines, attempts, backoff, job leases.
    pub settings: Arc<StagesSettings>,
    pub store: Arc<dyn JobStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub commands: Arc<dyn CommandBus>,
    pub events: Arc<dyn EventBus>,
    pub stages: Stages,
    /// The stage executions running in this process, by job (to stop a cancelled job's).
    pub running: Arc<RunningStages>,
    /// The supervisors' restarts so far.
    pub restarts: Arc<restarts::RestartTotals>,
    /// Job and video actors' stage and waiting events, for the node's snapshot.
    pub board: Arc<board::Board>,
    /// The events this process has seen, numbered, for live views (`text/event-stream`).
    pub feed: Arc<feed::Feed>,
    /// Time per step of the stages' round trips.
    pub steps: Arc<steps::StepTimes>,
}

impl Deps {
    /// Ends a job: writes its final status and publishes `job_finished` (a stable id, so a repeat
    /// after a crash is seen once). With the outbox the two are one transaction; otherwise the
    /// event follows the status (the in-process bus keeps nothing across a crash anyway). A job
    /// that has ended already keeps its status, and nothing is published: the status it ended
    /// with is returned.
    /// `fence`: the caller's claim on the job, when it runs it (a write refused once another
    /// process took the job over).
    pub async fn finish_job(
        &self,
        job_id: JobId,
        status: JobStatus,
        error: Option<&str>,
        fence: Option<&Fence>,
    ) -> PortResult<JobStatus> {
        let event = DomainEvent::new(job_id, None, EventPayload::JobFinished { status }).stable();
        match self.store.finish_job_fenced(job_id, status, error, &event, fence).await? {
            Finish::WithEvent => Ok(status),
            Finish::StatusOnly => {
                self.events.publish(event).await?;
                Ok(status)
            }
            Finish::AlreadyFinal(ended) => Ok(ended),
        }
    }
}

/// Whether an actor failed because its process no longer holds the job (another took it over).
pub fn ownership_lost(error: &ractor::ActorProcessingErr) -> bool {
    matches!(error.downcast_ref::<PortError>(), Some(PortError::OwnershipLost(_)))
}

/// Registry name of a job's actor.
pub fn job_actor_name(job_id: JobId) -> String {
    format!("job:{job_id}")
}

/// Registry name of a video's actor within a job.
pub fn video_actor_name(job_id: JobId, video_id: &VideoId) -> String {
    format!("video:{job_id}:{video_id}")
}

/// Turns any error into ractor's processing error.
pub fn fail(msg: impl Into<String>) -> ractor::ActorProcessingErr {
    msg.into().into()
}
