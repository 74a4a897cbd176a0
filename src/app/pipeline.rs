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
use crate::actors::job::{JobActors, JobMsg};
use crate::actors::root::{RootArgs, RootMsg, RootSupervisor};
use crate::actors::snapshot::{NodeFacts, NodeSnapshot};
use crate::actors::subscriptions::Watch;
use crate::actors::webhooks::{WebhookDispatcherArgs, WebhookSink};
use crate::actors::{Deps, EventConsumerArgs, PoolStats, job_actor_name};
use crate::adapters::webhooks::HttpWebhookSender;
use crate::domain::{ChannelId, ChannelRef, JobId, JobRecord, JobStatus, NodeRecord, Stage};
use crate::observability::{Analytics, EventLog};
use crate::ports::{PortError, SubscriptionStore};
use crate::stages::discovery::UploadsFeed;
use crate::stages::settings::YoutubeSettings;

pub struct Pipeline {
    pub settings: Arc<Settings>,
    pub deps: Deps,
    /// Watched channels.
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// This process's name in job leases and stage attempts (`{name}#{incarnation}`).
    pub node: String,
    /// How this process registered among the nodes.
    record: NodeRecord,
    /// This node in the ractor_cluster cluster, when `cluster.listen` is set.
    #[cfg(feature = "cluster")]
    cluster: Option<super::cluster::Cluster>,
    /// The analytics consumer's aggregates (`/analytics`, `/metrics`).
    pub analytics: Arc<Analytics>,
    /// The registered webhooks (`/webhooks`).
    pub webhooks: super::webhooks::Webhooks,
    root: ActorRef<RootMsg>,
    /// When the tree started (the node's uptime).
    started: std::time::Instant,
    /// The root actor's task, taken by the first [`Pipeline::shutdown`].
    handle: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
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
        let Wiring { settings, deps, subscriptions, webhooks, background } = wiring;
        static INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let instance = format!("p{}", INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let name = node_name(&settings.cluster.node_name, &instance);
        let incarnation = uuid::Uuid::new_v4().simple().to_string();
        let node = NodeRecord::node_id(&name, &incarnation[..12]);
        let record = NodeRecord {
            name,
            node: node.clone(),
            http_addr: None,
            cluster_addr: cluster_address(&settings)?,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            stages: stages.clone(),
            started_at: chrono::Utc::now(),
            heartbeat_at: chrono::Utc::now(),
        };
        deps.store.register_node(&record).await.map_err(|e| anyhow::anyhow!("registering this node: {e}"))?;
        let analytics = Arc::new(Analytics::new());
        // Groups are namespaced like the topics, so deployments sharing a broker stay apart.
        let prefix = &settings.kafka.topic_prefix;
        let mut consumers = vec![
            // This process's own group, from the oldest retained event: complete totals here.
            EventConsumerArgs { group: format!("{prefix}tubesum-analytics-{node}"), sink: analytics.clone() },
            // One group for the cluster: each event is logged once.
            EventConsumerArgs {
                group: format!("{prefix}tubesum-event-log"),
                sink: Arc::new(EventLog::new(settings.event_log_path())),
            },
        ];
        let sender = HttpWebhookSender::new(&settings.webhooks).map_err(|e| anyhow::anyhow!(e))?;
        let dispatcher = WebhookDispatcherArgs {
            store: webhooks.clone(),
            sender: Arc::new(sender),
            settings: Arc::new(settings.webhooks.clone()),
            wake: Arc::default(),
        };
        // One group for the cluster: each event makes its deliveries once (and they are unique
        // per webhook and event anyway).
        let sink = Arc::new(WebhookSink::new(webhooks.clone(), dispatcher.wake.clone()));
        consumers.push(EventConsumerArgs { group: format!("{prefix}tubesum-webhooks"), sink });
        let webhooks = super::webhooks::Webhooks::new(webhooks, settings.webhooks.allow_private_addresses);
        let root = RootSupervisor { deps: deps.clone() };
        let name = format!("{instance}/root-supervisor");
        let watch = match settings.subscriptions.enabled {
            true => Some(Watch {
                store: subscriptions.clone(),
                feed: UploadsFeed::new(&settings.youtube).map_err(|e| anyhow::anyhow!("{e}"))?,
                settings: settings.subscriptions.clone(),
            }),
            false => None,
        };
        let args = RootArgs { stages, instance, node: node.clone(), consumers, watch, webhooks: dispatcher };
        let (root, handle) =
            Actor::spawn(Some(name), root, args).await.map_err(|e| anyhow::anyhow!("starting the actor tree: {e}"))?;
        #[cfg(feature = "cluster")]
        let cluster = super::cluster::Cluster::start(&settings.cluster, &record, &deps, root.clone()).await?;
        Ok(Pipeline {
            settings,
            deps,
            subscriptions,
            node,
            record,
            analytics,
            webhooks,
            root,
            started: std::time::Instant::now(),
            handle: std::sync::Mutex::new(Some(handle)),
            #[cfg(feature = "cluster")]
            cluster,
            _background: background,
        })
    }

    /// Records a job and starts it.
    /// The channel that `input` names: its id, a channel URL, or a handle (`@name`, resolved
    /// through YouTube's channel page).
    pub async fn resolve_channel(&self, input: &str) -> Result<ChannelId, ChannelError> {
        resolve_channel(&self.settings.youtube, input).await
    }

    pub async fn submit(&self, channel_id: &ChannelId, force: bool) -> Result<JobRecord, PortError> {
        // Held by this process from the start: no other claims it before this one's first claim.
        let holder = Some((self.node.as_str(), self.deps.settings.job_lease()));
        let job = self.deps.store.create_job(JobId::new(), channel_id, force, holder).await?;
        self.root
            .cast(RootMsg::StartJob(job.job_id))
            .map_err(|e| PortError::Unavailable(format!("actor tree: {e}")))?;
        Ok(job)
    }

    /// Looks for claimable jobs and subscriptions now (a subscription was just made), not at the
    /// next lease round.
    pub fn check_leases(&self) {
        let _ = self.root.cast(RootMsg::CheckLeases);
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
        let owner = self.deps.store.job_leases(Some(job_id)).await?.into_iter().next().and_then(|l| l.owner);
        // Not fenced: a cancel is a user's, whichever process runs the job.
        let ended = self.deps.finish_job(job_id, JobStatus::Cancelled, None, None).await?;
        if ended != JobStatus::Cancelled {
            return Ok(CancelOutcome::AlreadyFinished(ended));
        }
        let _ = ractor::call_t!(self.root, RootMsg::CancelJob, 5_000, job_id);
        let stopped = self.deps.running.cancel(job_id);
        tracing::info!(%job_id, stopped, "job cancelled");
        if let Some(owner) = owner.filter(|owner| *owner != self.node) {
            self.cancel_at(&owner, job_id).await;
        }
        Ok(CancelOutcome::Cancelling)
    }

    /// Tells the node that runs the job to stop it now, through its agent; where it cannot be
    /// reached, it learns at its next lease renewal (the cancel is recorded).
    async fn cancel_at(&self, owner: &str, job_id: JobId) {
        #[cfg(feature = "cluster")]
        if let Some(cluster) = &self.cluster {
            let op = crate::actors::node_agent::AgentOp::CancelJob { job_id };
            match cluster.ask(owner, op, Duration::from_secs(2)).await {
                Some(answer) => tracing::info!(%job_id, %owner, ?answer, "cancel passed to the job's node"),
                None => {
                    tracing::warn!(%job_id, %owner, "the job's node is not reachable; it stops the job at its next lease renewal")
                }
            }
            return;
        }
        tracing::debug!(%job_id, %owner, "not clustered: the job's node stops it at its next lease renewal");
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
        let steps = self.deps.steps.read();
        let media = self.deps.stages.media.traffic();
        self.analytics.render_prometheus(crate::observability::metrics::Now {
            pools: &pools,
            backlog,
            dead,
            media,
            steps: &steps,
        })
    }

    /// A snapshot of the live actor tree.
    pub fn tree(&self) -> ActorNode {
        snapshot(&self.root.get_cell())
    }

    /// This node's own report: actors by kind, supervisors, pools, one line per job (bounded).
    pub async fn snapshot(&self) -> NodeSnapshot {
        let facts = NodeFacts { node: &self.node, stages: &self.record.stages, started: self.started };
        crate::actors::snapshot::take(&self.deps, &self.root, facts).await
    }

    /// The job's VideoActors, when its actors run in this process; `None` when they do not (or
    /// its JobActor did not answer within 2 s).
    pub async fn job_actors(&self, job_id: JobId) -> Option<JobActors> {
        let job: ActorRef<JobMsg> = ractor::registry::where_is(job_actor_name(job_id))?.into();
        ractor::call_t!(job, JobMsg::Actors, 2000).ok()
    }

    /// Stops the tree: jobs first (their state is persisted and resumes on the next start).
    /// Needs no ownership: whoever else still holds the pipeline (a request still winding down
    /// as the server stops) cannot keep the tree running.
    pub async fn shutdown(&self) {
        let _ = ractor::call_t!(self.root, RootMsg::Shutdown, 30_000);
        let handle = self.handle.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = tokio::time::timeout(Duration::from_secs(10), handle).await;
        }
        if let Err(e) = self.deps.store.forget_nodes(Some(&self.node), Duration::ZERO).await {
            tracing::warn!(error = %e, "could not deregister this node");
        }
    }

    /// Registers this node again with where its HTTP API listens.
    pub async fn announce(&mut self, http_addr: String) -> Result<(), PortError> {
        self.record.http_addr = Some(http_addr);
        self.deps.store.register_node(&self.record).await
    }

    /// The deployment's nodes as the store knows them, each with the jobs it holds, and the
    /// unfinished jobs no live node holds (with the time left on a dead holder's lease).
    pub async fn cluster(&self) -> Result<ClusterView, PortError> {
        let (nodes, now) = self.deps.store.list_nodes().await?;
        let leases = self.deps.store.job_leases(None).await?;
        let alive_within = chrono::Duration::from_std(self.deps.settings.job_lease()).unwrap_or(chrono::Duration::MAX);
        let nodes: Vec<ClusterNode> = nodes
            .into_iter()
            .map(|record| {
                let age = now.signed_duration_since(record.heartbeat_at);
                let jobs = leases
                    .iter()
                    .filter(|l| l.owner.as_deref() == Some(record.node.as_str()))
                    .map(|l| l.job_id)
                    .collect();
                ClusterNode {
                    incarnation: record.incarnation().to_owned(),
                    heartbeat_age_ms: age.num_milliseconds().max(0) as u64,
                    alive: age <= alive_within,
                    this_node: record.node == self.node,
                    jobs,
                    reachable: None,
                    snapshot: None,
                    record,
                }
            })
            .collect();
        let alive: Vec<&str> = nodes.iter().filter(|n| n.alive).map(|n| n.record.node.as_str()).collect();
        let orphaned = leases
            .into_iter()
            .filter(|l| l.owner.as_deref().is_some_and(|owner| !alive.contains(&owner)))
            .map(|l| OrphanedJob {
                job_id: l.job_id,
                owner: l.owner.unwrap_or_default(),
                lease_left_ms: l.left.map_or(0, |left| left.as_millis() as u64),
            })
            .collect();
        #[cfg(feature = "cluster")]
        let nodes = self.with_snapshots(nodes).await;
        Ok(ClusterView { node: self.node.clone(), clustered: self.clustered(), nodes, orphaned })
    }

    fn clustered(&self) -> bool {
        #[cfg(feature = "cluster")]
        return self.cluster.is_some();
        #[cfg(not(feature = "cluster"))]
        false
    }

    /// Each live node's own report, asked of its agent (one second each, all at once).
    #[cfg(feature = "cluster")]
    async fn with_snapshots(&self, mut nodes: Vec<ClusterNode>) -> Vec<ClusterNode> {
        use crate::actors::node_agent::{AgentAnswer, AgentOp};
        let Some(cluster) = &self.cluster else { return nodes };
        let asks = nodes.iter().map(|n| {
            let ask = n.alive.then(|| cluster.ask(&n.record.node, AgentOp::Snapshot, Duration::from_secs(1)));
            async move {
                match ask {
                    Some(ask) => ask.await,
                    None => None,
                }
            }
        });
        let answers = futures::future::join_all(asks).await;
        for (node, answer) in nodes.iter_mut().zip(answers) {
            node.reachable = Some(matches!(answer, Some(AgentAnswer::Snapshot(_))));
            if let Some(AgentAnswer::Snapshot(snapshot)) = answer {
                node.snapshot = Some(*snapshot);
            }
        }
        nodes
    }
}

/// `GET /cluster`: the deployment's nodes and the jobs no live node holds.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterView {
    /// The node that answered.
    pub node: String,
    /// Whether it runs a cluster node server (`cluster.listen`): then each live node's own report
    /// is included.
    pub clustered: bool,
    pub nodes: Vec<ClusterNode>,
    /// Unfinished jobs held by a node that is gone (no live heartbeat): they are taken over when
    /// their lease runs out (`lease_left_ms`), or at once if that node registered again.
    pub orphaned: Vec<OrphanedJob>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ClusterNode {
    #[serde(flatten)]
    pub record: NodeRecord,
    pub incarnation: String,
    /// Since its last heartbeat, by the store's clock.
    pub heartbeat_age_ms: u64,
    /// Heard from within one job lease.
    pub alive: bool,
    /// The node that answered.
    pub this_node: bool,
    /// The unfinished jobs it holds.
    #[schema(value_type = Vec<String>)]
    pub jobs: Vec<JobId>,
    /// Whether its agent answered through the cluster (absent when not clustered).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// Its own report: actors by kind, pools, the jobs whose actors run there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<NodeSnapshot>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrphanedJob {
    #[schema(value_type = String)]
    pub job_id: JobId,
    pub owner: String,
    pub lease_left_ms: u64,
}

/// Where the other nodes reach this one's cluster server, when clustered.
fn cluster_address(settings: &Settings) -> anyhow::Result<Option<String>> {
    #[cfg(feature = "cluster")]
    return super::cluster::advertised(&settings.cluster);
    #[cfg(not(feature = "cluster"))]
    {
        anyhow::ensure!(
            settings.cluster.listen.is_empty(),
            "cluster.listen is set, but this tubesum was built without the `cluster` feature"
        );
        Ok(None)
    }
}

/// This process's node name: the configured one, or `{hostname}/{pid}`; a second pipeline in one
/// process (tests) adds its instance.
fn node_name(configured: &str, instance: &str) -> String {
    let base = if configured.is_empty() {
        format!("{}/{}", super::hostname(), std::process::id())
    } else {
        configured.to_owned()
    };
    if instance == "p1" { base } else { format!("{base}/{instance}") }
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
