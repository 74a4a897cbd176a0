//! The running pipeline: the adapters wired to the actor tree, and what the API and CLI ask of it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ractor::{Actor, ActorCell, ActorRef};
use serde::Serialize;
use utoipa::ToSchema;

use crate::actors::Deps;
use crate::actors::root::{PoolStats, RootArgs, RootMsg, RootSupervisor};
use crate::adapters::EventBus;
use crate::adapters::in_process::{InProcessCommandBus, InProcessEventBus};
use crate::adapters::kafka::KafkaEventBus;
use crate::adapters::mongo::MongoArtifactStore;
use crate::adapters::outbox::{self, OutboxEventBus};
use crate::adapters::postgres::PgStore;
use crate::adapters::rabbitmq::{RabbitCommandBus, RabbitEventBus};
use crate::adapters::sqlite::SqliteStore;
use crate::adapters::{AdapterError, JobRecord};
use crate::config::{Backends, Settings};
use crate::domain::{ChannelId, JobId, JobStatus, Stage};
use crate::stages::{StageContext, Stages};
use secrecy::ExposeSecret;
use tokio_util::task::AbortOnDropHandle;

impl Deps {
    /// The backends the settings choose, with the real stages.
    pub async fn from_settings(settings: Settings) -> anyhow::Result<Deps> {
        match settings.backends {
            Backends::Embedded => Deps::embedded(settings).await,
            Backends::Production => Deps::production(settings).await,
        }
    }

    /// PostgreSQL (state, outbox), MongoDB (artifacts), RabbitMQ (stage queues, event fanout) and
    /// Kafka (events). Fails at once, naming what is missing and the URL tried (without secrets),
    /// when any of them cannot be reached.
    pub async fn production(mut settings: Settings) -> anyhow::Result<Deps> {
        resolve_tools(&mut settings);
        let settings = Arc::new(settings);
        let production = "production backends (backends = \"production\")";
        let store = Arc::new(PgStore::connect(&settings.database).await.with_context(|| production)?);
        let artifacts = Arc::new(
            MongoArtifactStore::connect(settings.mongodb.url.expose_secret(), &settings.mongodb.database)
                .await
                .with_context(|| production)?,
        );
        let commands = Arc::new(
            RabbitCommandBus::connect(&settings.amqp, &settings.amqp.queue_prefix).await.with_context(|| production)?,
        );
        let fanout: Arc<dyn EventBus> = Arc::new(
            RabbitEventBus::connect(&settings.amqp, &settings.amqp.events_exchange)
                .await
                .with_context(|| production)?,
        );
        let kafka: Arc<dyn EventBus> =
            Arc::new(KafkaEventBus::connect(&settings.kafka).await.with_context(|| production)?);
        let pool = store.pool().clone();
        let relay = tokio::spawn(outbox::run_relay(
            pool.clone(),
            vec![fanout.clone(), kafka],
            Duration::from_secs(1),
            settings.stages.backoff(),
        ));
        let ctx = StageContext { settings: settings.clone(), store: store.clone(), artifacts: artifacts.clone() };
        let stages = Stages::real(&ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Deps {
            settings,
            store,
            artifacts,
            commands,
            events: Arc::new(OutboxEventBus::new(pool, fanout)),
            stages,
            background: Arc::new(vec![AbortOnDropHandle::new(relay)]),
        })
    }

    /// The embedded backends under `data_dir` with the real stages.
    pub async fn embedded(mut settings: Settings) -> anyhow::Result<Deps> {
        resolve_tools(&mut settings);
        let settings = Arc::new(settings);
        let db = settings.database_path();
        let store = Arc::new(SqliteStore::open(&db).await.with_context(|| format!("opening {}", db.display()))?);
        let ctx = StageContext { settings: settings.clone(), store: store.clone(), artifacts: store.clone() };
        let stages = Stages::real(&ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(Deps {
            settings,
            store: store.clone(),
            artifacts: store,
            commands: Arc::new(InProcessCommandBus::default()),
            events: Arc::new(InProcessEventBus::default()),
            stages,
            background: Arc::default(),
        })
    }
}

/// yt-dlp and ffmpeg as the stages will run them (bare names found on PATH or in ./.venv/bin).
fn resolve_tools(settings: &mut Settings) {
    settings.download.yt_dlp = crate::stages::process::resolve(&settings.download.yt_dlp);
    settings.audio.ffmpeg = crate::stages::process::resolve(&settings.audio.ffmpeg);
}

pub struct Pipeline {
    pub deps: Deps,
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
        let root = RootSupervisor { deps: deps.clone() };
        let name = format!("{instance}/root-supervisor");
        let (root, handle) = Actor::spawn(Some(name), root, RootArgs { stages, instance })
            .await
            .map_err(|e| anyhow::anyhow!("starting the actor tree: {e}"))?;
        Ok(Pipeline { deps, root, handle })
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
            // Not running here (e.g. waiting for a restart): cancel it in the store.
            self.deps.store.set_job_status(job_id, JobStatus::Cancelled, None).await?;
        }
        Ok(CancelOutcome::Cancelling)
    }

    /// The running pools' counters.
    pub async fn pool_stats(&self) -> Vec<PoolStats> {
        ractor::call_t!(self.root, RootMsg::PoolStats, 2_000).unwrap_or_default()
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
