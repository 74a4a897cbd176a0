//! Support for the actors' own tests: ports on the embedded adapters (a temporary SQLite file,
//! in-process buses), stage work from a closure, a probe actor that records what it is sent, a
//! supervisor that records what happens to its children, and polling with a deadline.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ractor::{Actor, ActorProcessingErr, ActorRef, Message, SupervisionEvent};
use tokio::sync::mpsc;

use super::Deps;
use crate::adapters::embedded::{InProcessCommandBus, InProcessEventBus, SqliteStore};
use crate::domain::{ChannelId, JobId, Stage, StageCommand, VideoId, VideoMeta, VideoStatus, VideoUpdate, workflow};
use crate::stages::settings::StagePoolSettings;
use crate::stages::{StageResult, StageWork, Stages, StagesSettings};

/// The owner the actor tests claim jobs as.
pub const TEST_NODE: &str = "test-node";

/// The runtime's settings for tests: short deadlines, fast backoff.
pub fn settings(workers: usize, timeout_secs: u64) -> StagesSettings {
    let pool = || StagePoolSettings { workers, timeout_secs };
    StagesSettings {
        max_attempts: 3,
        backoff_initial_ms: 10,
        backoff_max_ms: 50,
        job_lease_secs: 30,
        heartbeat_ms: 50,
        discovery: pool(),
        download: pool(),
        audio_extraction: pool(),
        transcription: pool(),
        summarization: pool(),
    }
}

/// Actor dependencies on the embedded adapters, every stage doing `work`.
pub struct TestPorts {
    pub deps: Deps,
    _dir: tempfile::TempDir,
}

impl TestPorts {
    pub async fn new(settings: StagesSettings, work: Arc<dyn StageWork>) -> TestPorts {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("t.sqlite")).await.expect("sqlite"));
        let stages = Stages {
            discovery: work.clone(),
            download: work.clone(),
            audio_extraction: work.clone(),
            transcription: work.clone(),
            summarization: work,
            media: crate::stages::Media::in_dir(dir.path().join("media"), store.clone()),
        };
        let deps = Deps {
            settings: Arc::new(settings),
            store: store.clone(),
            artifacts: store,
            commands: Arc::new(InProcessCommandBus::default()),
            events: Arc::new(InProcessEventBus::default()),
            stages,
            running: Arc::default(),
            restarts: Arc::default(),
            board: Arc::default(),
            feed: Arc::default(),
            steps: Arc::default(),
        };
        TestPorts { deps, _dir: dir }
    }

    /// This test process's fence on `job` (claimed for it if not yet).
    pub async fn fence(&self, job: JobId) -> crate::ports::Fence {
        let lease = Duration::from_secs(600);
        self.deps.store.claim_job(job, TEST_NODE, lease).await.expect("claim").expect("the job is claimable")
    }

    /// A job with one recorded video.
    pub async fn job_with_video(&self, video: &str) -> (JobId, VideoId) {
        let job = JobId::new();
        let channel = ChannelId::parse("UCactorsactorsactorsacto").unwrap();
        self.deps.store.create_job(job, &channel, false, None).await.unwrap();
        let video_id = VideoId::parse(video).unwrap();
        let meta = VideoMeta::new(video_id.clone(), "t");
        self.deps.store.add_videos(job, &[meta]).await.unwrap();
        (job, video_id)
    }

    /// A command a worker takes as current: its job and video recorded, the video in the stage.
    pub async fn current_command(&self, stage: Stage, video: &str) -> StageCommand {
        let (job, video_id) = self.job_with_video(video).await;
        let in_stage =
            *VideoStatus::ALL.iter().find(|s| workflow::in_flight(**s) == Some(stage)).expect("a video-level stage");
        let update = VideoUpdate { status: in_stage, attempts: 1, error: None };
        self.deps.store.update_video(job, &video_id, &update).await.unwrap();
        StageCommand::new(job, Some(video_id), stage, 1)
    }

    /// The next command on a stage's queue (acknowledged), within five seconds.
    pub async fn next_command(&self, stage: Stage) -> StageCommand {
        use futures::StreamExt;
        let mut queue = self.deps.commands.consume(stage, 1).await.unwrap();
        let delivery = tokio::time::timeout(Duration::from_secs(5), queue.next())
            .await
            .unwrap_or_else(|_| panic!("no {stage} command within 5 s"))
            .expect("queue open")
            .expect("delivery");
        delivery.acker.ack().await.unwrap();
        delivery.command
    }
}

/// Stage work from an async closure.
pub struct FnWork<F>(pub F);

#[async_trait]
impl<F, Fut> StageWork for FnWork<F>
where
    F: Fn(StageCommand) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = StageResult> + Send,
{
    async fn run(&self, command: &StageCommand) -> StageResult {
        (self.0)(command.clone()).await
    }
}

/// Sets its flag when dropped: shows that a future holding it was dropped (cancelled).
pub struct DropFlag(pub Arc<std::sync::atomic::AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// An actor that passes every message it is sent to a channel.
pub struct Probe<M>(PhantomData<fn() -> M>);

impl<M: Message> Probe<M> {
    /// Spawns one under `name`; the receiver gets its messages.
    pub async fn spawn(name: Option<String>) -> (ActorRef<M>, mpsc::UnboundedReceiver<M>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(name, Probe(PhantomData), tx).await.expect("probe starts");
        (actor, rx)
    }
}

impl<M: Message> Actor for Probe<M> {
    type Msg = M;
    type State = mpsc::UnboundedSender<M>;
    type Arguments = mpsc::UnboundedSender<M>;

    async fn pre_start(&self, _: ActorRef<M>, tx: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(&self, _: ActorRef<M>, msg: M, tx: &mut Self::State) -> Result<(), ActorProcessingErr> {
        let _ = tx.send(msg);
        Ok(())
    }
}

/// What happened to a supervised child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEnd {
    Terminated,
    Failed(String),
}

/// A supervisor that reports how its children end, and restarts none.
pub struct Watcher;

impl Watcher {
    pub async fn spawn() -> (ActorRef<()>, mpsc::UnboundedReceiver<ChildEnd>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (actor, _) = Actor::spawn(None, Watcher, tx).await.expect("watcher starts");
        (actor, rx)
    }
}

impl Actor for Watcher {
    type Msg = ();
    type State = mpsc::UnboundedSender<ChildEnd>;
    type Arguments = mpsc::UnboundedSender<ChildEnd>;

    async fn pre_start(&self, _: ActorRef<()>, tx: Self::Arguments) -> Result<Self::State, ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle_supervisor_evt(
        &self,
        _: ActorRef<()>,
        event: SupervisionEvent,
        tx: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorTerminated(..) => {
                let _ = tx.send(ChildEnd::Terminated);
            }
            SupervisionEvent::ActorFailed(_, error) => {
                let _ = tx.send(ChildEnd::Failed(error.to_string()));
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {}
            #[cfg(feature = "cluster")]
            SupervisionEvent::PidLifecycleEvent(_) => {}
        }
        Ok(())
    }
}

/// Waits for the next item of `rx`, failing the test after five seconds.
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.expect("nothing within 5 s").expect("sender alive")
}

/// Polls `check` every 10 ms until it holds, or panics naming `what` after five seconds.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    eventually_async(what, || std::future::ready(check())).await;
}

/// [`eventually`] for a check that must await (a store read, an actor call).
pub async fn eventually_async<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let until = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < until, "not within 5 s: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
