//! The running pipeline: the adapters wired to the actor tree, and what the API and CLI ask of it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorCell, ActorRef};
use serde::Serialize;
use utoipa::ToSchema;

use crate::actors::Deps;
use crate::actors::consumer::EventConsumerArgs;
use crate::actors::root::{PoolStats, RootArgs, RootMsg, RootSupervisor};
use crate::adapters::in_process::{InProcessCommandBus, InProcessEventBus};
use crate::adapters::kafka::KafkaEventBus;
use crate::adapters::mongo::MongoArtifactStore;
use crate::adapters::outbox::{self, OutboxEventBus, Sink};
use crate::adapters::postgres::PgStore;
use crate::adapters::rabbitmq::{RabbitCommandBus, RabbitEventBus};
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::{AdapterError, JobRecord};
use crate::adapters::{ArtifactStore, CommandBus, EventBus, JobStore};
use crate::analytics::{Analytics, EventLog};
use crate::config::{Backends, Settings};
use crate::domain::{ChannelId, JobId, JobStatus, Stage};
use crate::stages::{StageContext, Stages};
use secrecy::ExposeSecret;
use tokio_util::task::AbortOnDropHandle;

impl Deps {
    /// The backends the settings choose for each port (`backends`, `ports.*`), with the real
    /// stages. Fails at once, naming what is missing and the URL tried (without secrets), when a
    /// production backend cannot be reached.
    pub async fn from_settings(mut settings: Settings) -> anyhow::Result<Deps> {
        resolve_tools(&mut settings);
        let settings = Arc::new(settings);
        let ports = settings.port_backends();
        let what = |port: &str| format!("{port} on the production backend (backends / ports.{port} = \"production\")");
        let mut background = Vec::new();
        let sqlite = match (ports.store, ports.artifacts) {
            (Backends::Production, Backends::Production) => None,
            _ => Some(Arc::new(open_sqlite(&settings).await?)),
        };
        let embedded = || sqlite.clone().expect("opened when a port is embedded");

        // The outbox lives in the production store; events go through it when they are production too.
        let (store, outbox): (Arc<dyn JobStore>, _) = match ports.store {
            Backends::Embedded => (embedded(), None),
            Backends::Production => {
                let pg = PgStore::connect(&settings.database).await.with_context(|| what("store"))?;
                if ports.events == Backends::Production {
                    let pool = pg.pool().clone();
                    (Arc::new(pg.with_outbox(&OUTBOX_SINKS)), Some(pool))
                } else {
                    (Arc::new(pg), None)
                }
            }
        };
        let artifacts: Arc<dyn ArtifactStore> = match ports.artifacts {
            Backends::Embedded => embedded(),
            Backends::Production => Arc::new(
                MongoArtifactStore::connect(settings.mongodb.url.expose_secret(), &settings.mongodb.database)
                    .await
                    .with_context(|| what("artifacts"))?,
            ),
        };
        let commands: Arc<dyn CommandBus> = match ports.commands {
            Backends::Embedded => Arc::new(InProcessCommandBus::default()),
            Backends::Production => Arc::new(
                RabbitCommandBus::connect(&settings.amqp, &settings.amqp.queue_prefix)
                    .await
                    .with_context(|| what("commands"))?,
            ),
        };
        let events: Arc<dyn EventBus> = match (ports.events, outbox.clone()) {
            (Backends::Embedded, _) => Arc::new(InProcessEventBus::default()),
            (Backends::Production, Some(pool)) => {
                let fanout: Arc<dyn EventBus> = Arc::new(
                    RabbitEventBus::connect(&settings.amqp, &settings.amqp.events_exchange)
                        .await
                        .with_context(|| what("events"))?,
                );
                let kafka: Arc<dyn EventBus> =
                    Arc::new(KafkaEventBus::connect(&settings.kafka).await.with_context(|| what("events"))?);
                let sinks = [Sink::new(OUTBOX_SINKS[0], fanout.clone()), Sink::new(OUTBOX_SINKS[1], kafka.clone())];
                let hours = settings.database.outbox_retention_hours;
                let retention = (hours > 0).then(|| Duration::from_secs(hours.saturating_mul(3600)));
                let backoff = settings.stages.backoff();
                let relay = outbox::run_relay(pool.clone(), sinks.to_vec(), Duration::from_secs(1), backoff, retention);
                background.push(AbortOnDropHandle::new(tokio::spawn(relay)));
                Arc::new(OutboxEventBus::new(pool, &sinks, fanout, kafka))
            }
            (Backends::Production, None) => anyhow::bail!("production events need the production store (the outbox)"),
        };
        let ctx = StageContext { settings: settings.clone(), store: store.clone(), artifacts: artifacts.clone() };
        let stages = Stages::real(&ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Deps { settings, store, artifacts, commands, events, stages, background: Arc::new(background), outbox })
    }
}

/// The outbox's sinks in production: the RabbitMQ fanout exchange and Kafka.
const OUTBOX_SINKS: [&str; 2] = ["fanout", "kafka"];

/// The embedded database under `data_dir`.
async fn open_sqlite(settings: &Settings) -> anyhow::Result<SqliteStore> {
    let db = settings.database_path();
    SqliteStore::open(&db).await.with_context(|| format!("opening {}", db.display()))
}

/// yt-dlp and ffmpeg as the stages will run them (bare names found on PATH or in ./.venv/bin).
fn resolve_tools(settings: &mut Settings) {
    settings.download.yt_dlp = crate::stages::process::resolve(&settings.download.yt_dlp);
    settings.audio.ffmpeg = crate::stages::process::resolve(&settings.audio.ffmpeg);
}

pub struct Pipeline {
    pub deps: Deps,
    /// This process's name in job leases and stage attempts.
    pub node: String,
    /// The analytics consumer's aggregates (`/analytics`, `/metrics`).
    pub analytics: Arc<Analytics>,
    root: ActorRef<RootMsg>,
    handle: tokio::task::JoinHandle<()>,
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
    pub async fn start(deps: Deps, stages: Vec<Stage>) -> anyhow::Result<Pipeline> {
        static INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let instance = format!("p{}", INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let node = node_name(&instance);
        let analytics = Arc::new(Analytics::new());
        // Groups are namespaced like the topics, so deployments sharing a broker stay apart.
        let prefix = &deps.settings.kafka.topic_prefix;
        let consumers = vec![
            // This process's own group, from the oldest retained event: complete totals here.
            EventConsumerArgs { group: format!("{prefix}tubesum-analytics-{node}"), sink: analytics.clone() },
            // One group for the cluster: each event is logged once.
            EventConsumerArgs {
                group: format!("{prefix}tubesum-event-log"),
                sink: Arc::new(EventLog::new(deps.settings.event_log_path())),
            },
        ];
        let root = RootSupervisor { deps: deps.clone() };
        let name = format!("{instance}/root-supervisor");
        let args = RootArgs { stages, instance, node: node.clone(), consumers };
        let (root, handle) =
            Actor::spawn(Some(name), root, args).await.map_err(|e| anyhow::anyhow!("starting the actor tree: {e}"))?;
        Ok(Pipeline { deps, node, analytics, root, handle })
    }

    /// Records a job and starts it.
    pub async fn submit(&self, channel_id: &ChannelId, force: bool) -> Result<JobRecord, AdapterError> {
        let job = self.deps.store.create_job(JobId::new(), channel_id, force).await?;
        self.root
            .cast(RootMsg::StartJob(job.job_id))
            .map_err(|e| AdapterError::Unavailable(format!("actor tree: {e}")))?;
        Ok(job)
    }

    pub async fn cancel(&self, job_id: JobId) -> Result<CancelOutcome, AdapterError> {
        let Some(job) = self.deps.store.get_job(job_id).await? else {
            return Ok(CancelOutcome::NotFound);
        };
        if job.status.is_final() {
            return Ok(CancelOutcome::AlreadyFinished(job.status));
        }
        let running = ractor::call_t!(self.root, RootMsg::CancelJob, 5_000, job_id).unwrap_or(false);
        if !running {
            // Not running here: cancel it in the store. Where another process runs it, that
            // process cancels it at its next lease renewal and reports it; where none does, this
            // is the job's end, reported here (a stable id: consumers see it once either way).
            self.deps.finish_job(job_id, JobStatus::Cancelled, None).await?;
        }
        Ok(CancelOutcome::Cancelling)
    }

    /// The running pools' counters.
    pub async fn pool_stats(&self) -> Vec<PoolStats> {
        ractor::call_t!(self.root, RootMsg::PoolStats, 2_000).unwrap_or_default()
    }

    /// The Prometheus exposition of this process: event analytics, pools, outbox backlog.
    pub async fn prometheus(&self) -> String {
        let pools = self.pool_stats().await;
        let pending = match &self.deps.outbox {
            Some(pool) => outbox::pending(pool).await.ok().map(|n| n as u64),
            None => None,
        };
        self.analytics.render_prometheus(&pools, pending)
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
