//! The running pipeline: the wired ports under a live actor tree, and what the API and the CLI ask
//! of it (submit, cancel, pool counters, metrics, the tree itself).

use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorCell, ActorRef};
use serde::Serialize;
use tokio_util::task::AbortOnDropHandle;
use utoipa::ToSchema;

use super::settings::Settings;
use super::wiring::Wiring;
use crate::actors::root::{RootArgs, RootMsg, RootSupervisor};
use crate::actors::{Deps, EventConsumerArgs, PoolStats};
use crate::domain::{ChannelId, ChannelRef, JobId, JobRecord, JobStatus, Stage};
use crate::observability::{Analytics, EventLog};
use crate::ports::PortError;
use crate::stages::settings::YoutubeSettings;

pub struct Pipeline {
    pub settings: Arc<Settings>,
    pub deps: Deps,
    /// This process's name in job leases and stage attempts.
    pub node: String,
    /// The analytics consumer's aggregates (`/analytics`, `/metrics`).
    pub analytics: Arc<Analytics>,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
    /// The adapters' own tasks (the outbox relay), stopped with the pipeline.
    _background: Vec<AbortOnDropHandle<()>>,
}

/// What cancelling a job did.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Cancelling,
    AlreadyFinished(JobStatus),
    NotFound,
}

/// A node of the live actor tree (ops console).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActorNode {
    pub name: String,
    pub id: String,
    pub status: String,
    #[schema(no_recursion)]
    pub children: Vec<ActorNode>,
}

impl Pipeline {
    /// Starts the actor tree with the given stage pools; unfinished jobs resume.
    pub async fn start(wiring: Wiring, stages: Vec<Stage>) -> anyhow::Result<Pipeline> {
        let Wiring { settings, deps, background } = wiring;
        static INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let instance = format!("p{}", INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let node = node_name(&instance);
        let analytics = Arc::new(Analytics::new());
        // Groups are namespaced like the topics, so deployments sharing a broker stay apart.
        let prefix = &settings.kafka.topic_prefix;
        let consumers = vec![
            // This process's own group, from the oldest retained event: complete totals here.
            EventConsumerArgs { group: format!("{prefix}tubesum-analytics-{node}"), sink: analytics.clone() },
            // One group for the cluster: each event is logged once.
            EventConsumerArgs {
                group: format!("{prefix}tubesum-event-log"),
                sink: Arc::new(EventLog::new(settings.event_log_path())),
            },
        ];
        let root = RootSupervisor { deps: deps.clone() };
        let name = format!("{instance}/root-supervisor");
        let args = RootArgs { stages, instance, node: node.clone(), consumers };
        let (root, handle) =
            Actor::spawn(Some(name), root, args).await.map_err(|e| anyhow::anyhow!("starting the actor tree: {e}"))?;
        Ok(Pipeline { settings, deps, node, analytics, root, handle, _background: background })
    }

    /// Records a job and starts it.
    /// The channel that `input` names: its id, a channel URL, or a handle (`@name`, resolved
    /// through YouTube's channel page).
    pub async fn resolve_channel(&self, input: &str) -> Result<ChannelId, ChannelError> {
        resolve_channel(&self.settings.youtube, input).await
    }

    pub async fn submit(&self, channel_id: &ChannelId, force: bool) -> Result<JobRecord, PortError> {
        let job = self.deps.store.create_job(JobId::new(), channel_id, force).await?;
        self.root
            .cast(RootMsg::StartJob(job.job_id))
            .map_err(|e| PortError::Unavailable(format!("actor tree: {e}")))?;
        Ok(job)
    }

    /// Cancels a job: the cancel is recorded first (the job ends `cancelled`, and from then on its
    /// queued commands are dropped when taken), then its actors stop, cancelling its videos and
    /// discarding their media, and the stages it runs here are stopped. Where another process
    /// runs it, that process learns it at its next lease renewal, and its stages at their next
    /// heartbeat.
    pub async fn cancel(&self, job_id: JobId) -> Result<CancelOutcome, PortError> {
        let Some(job) = self.deps.store.get_job(job_id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if job.status.is_final() {
            return Ok(CancelOutcome::AlreadyFinished(job.status));
        }
        // Not fenced: a cancel is a user's, whichever process runs the job.
        let ended = self.deps.finish_job(job_id, JobStatus::Cancelled, None, None).await?;
        if ended != JobStatus::Cancelled {
            return Ok(CancelOutcome::AlreadyFinished(ended));
        }
        let _ = ractor::call_t!(self.root, RootMsg::CancelJob, 5_000, job_id);
        let stopped = self.deps.running.cancel(job_id);
        tracing::info!(%job_id, stopped, "job cancelled");
        Ok(CancelOutcome::Cancelling)
    }

    /// The running pools' counters.
    pub async fn pool_stats(&self) -> Vec<PoolStats> {
        ractor::call_t!(self.root, RootMsg::PoolStats, 2_000).unwrap_or_default()
    }

    /// The Prometheus exposition of this process: event analytics, pools, the event backlog.
    pub async fn prometheus(&self) -> String {
        let pools = self.pool_stats().await;
        let backlog = self.deps.events.backlog().await.ok().flatten();
        let dead = self.deps.events.dead_letters().await.ok().flatten();
        self.analytics.render_prometheus(&pools, backlog, dead, self.deps.stages.media.traffic())
    }

    /// A snapshot of the live actor tree.
    pub fn tree(&self) -> ActorNode {
        snapshot(&self.root.get_cell())
    }

    /// Stops the tree: jobs first (their state is persisted and resumes on the next start).
    pub async fn shutdown(self) {
        let _ = ractor::call_t!(self.root, RootMsg::Shutdown, 30_000);
        let _ = tokio::time::timeout(Duration::from_secs(10), self.handle).await;
    }
}

/// `host/pid/instance-random`: unique per running tree, readable in the job and attempt tables.
fn node_name(instance: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}/{}/{instance}-{}", std::process::id(), &random[..8])
}

fn snapshot(cell: &ActorCell) -> ActorNode {
    let mut children: Vec<ActorNode> = cell.get_children().iter().map(snapshot).collect();
    children.sort_by(|a, b| a.name.cmp(&b.name));
    ActorNode {
        name: cell.get_name().unwrap_or_else(|| "(unnamed)".into()),
        id: cell.get_id().to_string(),
        status: format!("{:?}", cell.get_status()).to_lowercase(),
        children,
    }
}

/// Why a channel named by a user cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error(transparent)]
    Invalid(#[from] crate::domain::IdError),
    #[error(transparent)]
    Handle(#[from] crate::stages::discovery::HandleError),
}

/// [`Pipeline::resolve_channel`], for callers without a pipeline yet.
pub async fn resolve_channel(youtube: &YoutubeSettings, input: &str) -> Result<ChannelId, ChannelError> {
    match ChannelRef::parse(input)? {
        ChannelRef::Id(id) => Ok(id),
        ChannelRef::Handle(handle) => {
            let id = crate::stages::discovery::resolve_handle(youtube, &handle).await?;
            tracing::info!(%handle, channel_id = %id, "resolved a handle");
            Ok(id)
        }
    }
}
