//! The actor runtime over ports that misbehave the way brokers do: a queue consumer that breaks, a
//! result that outlives the broker's ack timeout, results published while nobody listened.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tubesum::cli::bench::noop;
use tubesum::domain::{DomainEvent, Stage, StageCommand, VideoId};
use tubesum::ports::{CommandBus, DeliveryStream, EventBus, EventStream, PortError, PortResult};
use tubesum::stages::{StageResult, StageWork};

use crate::actors::{Fault, Faulty};
use crate::helpers::{TestApp, metas, poll_until};

const CHANNEL: &str = "UCdeliverydeliverydelive";

/// A command bus whose first consumer of one stage breaks at once (a lost broker connection).
struct BreaksOnce {
    inner: Arc<dyn CommandBus>,
    stage: Stage,
    consumers: Arc<Mutex<u32>>,
}

#[async_trait]
impl CommandBus for BreaksOnce {
    async fn send(&self, command: StageCommand) -> PortResult<()> {
        self.inner.send(command).await
    }

    async fn consume(&self, stage: Stage, prefetch: usize) -> PortResult<DeliveryStream> {
        if stage == self.stage {
            let n = {
                let mut consumers = self.consumers.lock().unwrap();
                *consumers += 1;
                *consumers
            };
            if n == 1 {
                return Ok(Box::pin(futures::stream::empty()));
            }
        }
        self.inner.consume(stage, prefetch).await
    }
}

#[tokio::test]
async fn a_stage_pool_whose_consumer_breaks_is_restarted() {
    let consumers = Arc::new(Mutex::new(0));
    let seen = consumers.clone();
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let app = TestApp::builder()
        .noop_stages(&ids)
        .adjust(|deps| {
            deps.commands =
                Arc::new(BreaksOnce { inner: deps.commands.clone(), stage: Stage::Summarization, consumers: seen });
        })
        .spawn()
        .await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert!(*consumers.lock().unwrap() >= 2, "the summarization pool was restarted and consumed again");
    app.shutdown().await;
}

/// A command bus that records which stages' deliveries were acknowledged.
struct RecordsAcks {
    inner: Arc<dyn CommandBus>,
    acked: Arc<Mutex<Vec<Stage>>>,
}

struct RecordingAcker {
    inner: Box<dyn tubesum::ports::Acker>,
    stage: Stage,
    acked: Arc<Mutex<Vec<Stage>>>,
}

#[async_trait]
impl tubesum::ports::Acker for RecordingAcker {
    async fn ack(&self) -> PortResult<()> {
        self.acked.lock().unwrap().push(self.stage);
        self.inner.ack().await
    }
    async fn nack(&self, requeue: bool, reason: &str) -> PortResult<()> {
        self.inner.nack(requeue, reason).await
    }
}

#[async_trait]
impl CommandBus for RecordsAcks {
    async fn send(&self, command: StageCommand) -> PortResult<()> {
        self.inner.send(command).await
    }
    async fn consume(&self, stage: Stage, prefetch: usize) -> PortResult<DeliveryStream> {
        use futures::StreamExt;
        let acked = self.acked.clone();
        let stream = self.inner.consume(stage, prefetch).await?.map(move |d| {
            d.map(|d| tubesum::ports::Delivery {
                acker: Box::new(RecordingAcker { inner: d.acker, stage, acked: acked.clone() }),
                command: d.command,
            })
        });
        Ok(Box::pin(stream))
    }
}

#[tokio::test]
async fn long_stages_are_acknowledged_when_taken_short_ones_when_done() {
    let acked: Arc<Mutex<Vec<Stage>>> = Arc::default();
    let seen = acked.clone();
    let downloads: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let audio: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let (d, a) = (downloads.clone(), audio.clone());
    // Video a hangs in download (a 40-minute stage): acknowledged anyway. Video b hangs in audio
    // extraction (a 10-minute stage): not acknowledged while it runs.
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let env = [
        ("TUBESUM_STAGES__DOWNLOAD__TIMEOUT_SECS", "2400".to_owned()),
        ("TUBESUM_STAGES__AUDIO_EXTRACTION__TIMEOUT_SECS", "600".to_owned()),
    ];
    let app = TestApp::builder()
        .env(&env)
        .stages(move |ctx| {
            let stages = noop::stages(ctx, metas(&ids));
            let hang_a = Faulty {
                inner: stages.get(Stage::Download),
                target: VideoId::parse(ids[0]).ok(),
                fault: Fault::Hang,
                runs: d,
            };
            let hang_b = Faulty {
                inner: stages.get(Stage::AudioExtraction),
                target: VideoId::parse(ids[1]).ok(),
                fault: Fault::Hang,
                runs: a,
            };
            stages.with(Stage::Download, Arc::new(hang_a)).with(Stage::AudioExtraction, Arc::new(hang_b))
        })
        .adjust(|deps| deps.commands = Arc::new(RecordsAcks { inner: deps.commands.clone(), acked: seen }))
        .spawn()
        .await;
    app.submit(CHANNEL, false).await;
    assert!(poll_until(Duration::from_secs(20), || async { audio.lock().unwrap().contains_key(ids[1]) }).await);
    assert!(downloads.lock().unwrap().contains_key(ids[0]));
    let count = |stage| acked.lock().unwrap().iter().filter(|s| **s == stage).count();
    assert_eq!(count(Stage::Download), 2, "both downloads acknowledged, the hung one included");
    assert_eq!(count(Stage::AudioExtraction), 0, "a short stage is acknowledged only when done");
    assert_eq!(count(Stage::Discovery), 1, "discovery was acknowledged after it finished");
    app.shutdown().await;
}

/// An event bus whose subscriptions can be broken and refused, to lose events on purpose.
struct Unreliable {
    inner: Arc<dyn EventBus>,
    /// While true, live subscriptions end with an error and new ones are refused.
    down: Arc<std::sync::atomic::AtomicBool>,
    published: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl EventBus for Unreliable {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        self.published.lock().unwrap().push(format!(
            "{}:{}",
            event.payload.kind(),
            event.video_id.as_ref().map_or("", |v| v.as_str())
        ));
        self.inner.publish(event).await
    }

    async fn subscribe(&self) -> PortResult<EventStream> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        if self.down.load(Ordering::SeqCst) {
            return Err(PortError::Unavailable("broker down".into()));
        }
        let down = self.down.clone();
        let inner = self.inner.subscribe().await?;
        // Ends (with an error) at the first event after the bus went down, like a dead channel.
        let stream =
            inner
                .map(move |e| {
                    if down.load(Ordering::SeqCst) { Err(PortError::Unavailable("connection lost".into())) } else { e }
                })
                .take_while(|e| std::future::ready(e.is_ok()))
                .chain(futures::stream::once(async { Err(PortError::Unavailable("connection lost".into())) }));
        Ok(Box::pin(stream))
    }
}

/// A stage that waits for a gate to open before doing its work.
pub(crate) struct Gated {
    pub(crate) inner: Arc<dyn StageWork>,
    pub(crate) gate: Arc<tokio::sync::Semaphore>,
    pub(crate) runs: Arc<Mutex<u32>>,
}

#[async_trait]
impl StageWork for Gated {
    async fn run(&self, command: &StageCommand) -> StageResult {
        *self.runs.lock().unwrap() += 1;
        drop(self.gate.acquire().await);
        self.inner.run(command).await
    }
}

/// Results published while the event router was away are asked for again once it is back: the
/// job completes without waiting for the stage deadline (two hours for transcription).
#[tokio::test]
async fn results_missed_while_the_router_was_away_are_asked_for_again() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let ids = ["aaaaaaaaaaa"];
    let down = Arc::new(AtomicBool::new(false));
    let published = Arc::new(Mutex::new(Vec::new()));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let runs = Arc::new(Mutex::new(0));
    let (down2, published2, gate2, runs2) = (down.clone(), published.clone(), gate.clone(), runs.clone());
    let app = TestApp::builder()
        .env(&[("TUBESUM_STAGES__TRANSCRIPTION__TIMEOUT_SECS", "7200".into())])
        .stages(move |ctx| {
            let stages = noop::stages(ctx, metas(&ids));
            let gated = Gated { inner: stages.get(Stage::Transcription), gate: gate2, runs: runs2 };
            stages.with(Stage::Transcription, Arc::new(gated))
        })
        .adjust(move |deps| {
            deps.events = Arc::new(Unreliable { inner: deps.events.clone(), down: down2, published: published2 });
        })
        .spawn()
        .await;
    let job_id = app.submit(CHANNEL, false).await;
    assert!(poll_until(Duration::from_secs(20), || async { *runs.lock().unwrap() == 1 }).await);

    // The bus goes down; the transcription finishes and its result reaches no subscriber.
    down.store(true, Ordering::SeqCst);
    gate.add_permits(1000);
    let done = "transcription_completed:aaaaaaaaaaa".to_owned();
    assert!(poll_until(Duration::from_secs(20), || async { published.lock().unwrap().contains(&done) }).await);
    down.store(false, Ordering::SeqCst);

    let job = app.wait_for_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert_eq!(*runs.lock().unwrap(), 2, "asked again once, after the router came back");
    app.shutdown().await;
}
