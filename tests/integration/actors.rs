//! The actor runtime under fault injection, with instant stand-in stage work.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tubesum::adapters::{AdapterResult, CommandBus, DeliveryStream, StageCommand};
use tubesum::domain::{Stage, VideoId, VideoMeta};
use tubesum::stages::{StageError, StageResult, StageWork, instant};

use crate::helpers::{TestApp, poll_until, videos};

const CHANNEL: &str = "UCactorsactorsactorsacto";

pub(crate) fn metas(ids: &[&str]) -> Vec<VideoMeta> {
    ids.iter()
        .map(|id| VideoMeta { video_id: VideoId::parse(id).unwrap(), title: format!("video {id}"), published_at: None })
        .collect()
}

#[derive(Clone, Copy)]
pub(crate) enum Fault {
    None,
    PanicOnce,
    Fail { retryable: bool },
    Hang,
}

/// Wraps a stage: counts runs per video and injects a fault for one video.
pub(crate) struct Faulty {
    pub(crate) inner: Arc<dyn StageWork>,
    pub(crate) target: Option<VideoId>,
    pub(crate) fault: Fault,
    pub(crate) runs: Arc<Mutex<HashMap<String, u32>>>,
}

#[async_trait]
impl StageWork for Faulty {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let key = command.video_id.as_ref().map_or_else(|| "job".to_owned(), ToString::to_string);
        let n = {
            let mut runs = self.runs.lock().unwrap();
            let n = runs.entry(key).or_insert(0);
            *n += 1;
            *n
        };
        if command.video_id.is_some() && command.video_id == self.target {
            match self.fault {
                Fault::None => {}
                Fault::PanicOnce if n == 1 => panic!("injected panic"),
                Fault::PanicOnce => {}
                Fault::Fail { retryable: true } => return Err(StageError::Retryable("injected outage".into())),
                Fault::Fail { retryable: false } => {
                    return Err(StageError::Permanent("injected permanent error".into()));
                }
                Fault::Hang => std::future::pending::<()>().await,
            }
        }
        self.inner.run(command).await
    }
}

type Runs = HashMap<Stage, Arc<Mutex<HashMap<String, u32>>>>;

/// An app with instant stages, every stage counted, and `fault` at `stage` for `target`.
async fn app_with(env: &[(&str, String)], ids: &[&str], stage: Stage, target: &str, fault: Fault) -> (TestApp, Runs) {
    let mut runs = Runs::new();
    for s in Stage::ALL {
        runs.insert(*s, Arc::default());
    }
    let counters = runs.clone();
    let target = VideoId::parse(target).ok();
    let app = TestApp::spawn_with_stages(env, |ctx| {
        let mut stages = instant::stages(ctx, metas(ids));
        for s in Stage::ALL {
            let wrapped = Faulty {
                inner: stages.get(*s),
                target: target.clone(),
                fault: if *s == stage { fault } else { Fault::None },
                runs: counters[s].clone(),
            };
            stages = stages.with(*s, Arc::new(wrapped));
        }
        stages
    })
    .await;
    (app, runs)
}

fn runs_of(runs: &Runs, stage: Stage, key: &str) -> u32 {
    runs[&stage].lock().unwrap().get(key).copied().unwrap_or(0)
}

#[tokio::test]
async fn video_restarts_alone_after_a_transcription_panic() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"];
    let (app, runs) = app_with(&[], &ids, Stage::Transcription, "bbbbbbbbbbb", Fault::PanicOnce).await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    for (id, status, _, error) in videos(&job) {
        assert_eq!(status, "summarized", "{id}");
        assert_eq!(error, None);
    }
    // Only the panicking video retried its stage; it resumed from its persisted state (no
    // re-download), and nothing else ran twice: not the other videos, not the job's discovery.
    assert_eq!(runs_of(&runs, Stage::Transcription, "bbbbbbbbbbb"), 2);
    for id in ids {
        assert_eq!(runs_of(&runs, Stage::Download, id), 1, "{id} downloaded again");
        assert_eq!(runs_of(&runs, Stage::Summarization, id), 1);
    }
    assert_eq!(runs_of(&runs, Stage::Transcription, "aaaaaaaaaaa"), 1);
    assert_eq!(runs_of(&runs, Stage::Transcription, "ccccccccccc"), 1);
    assert_eq!(runs_of(&runs, Stage::Discovery, "job"), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn video_fails_after_max_attempts_and_the_rest_are_summarized() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"];
    let (app, runs) = app_with(&[], &ids, Stage::Download, "bbbbbbbbbbb", Fault::Fail { retryable: true }).await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed_with_errors", "{job:#}");
    assert_eq!(job["counts"]["failed"], 1);
    assert_eq!(job["counts"]["summarized"], 2);
    let failed = videos(&job).into_iter().find(|v| v.0 == "bbbbbbbbbbb").unwrap();
    assert_eq!(failed.1, "failed");
    assert_eq!(failed.2, 3, "attempts");
    let error = failed.3.unwrap();
    assert!(error.contains("download failed after 3 attempts") && error.contains("injected outage"), "{error}");
    assert_eq!(runs_of(&runs, Stage::Download, "bbbbbbbbbbb"), 3);
    assert_eq!(runs_of(&runs, Stage::Transcription, "bbbbbbbbbbb"), 0);
    app.shutdown().await;
}

#[tokio::test]
async fn a_permanent_error_is_not_retried() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let (app, runs) = app_with(&[], &ids, Stage::Summarization, "aaaaaaaaaaa", Fault::Fail { retryable: false }).await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed_with_errors");
    let failed = videos(&job).into_iter().find(|v| v.0 == "aaaaaaaaaaa").unwrap();
    assert_eq!((failed.1.as_str(), failed.2), ("failed", 1));
    assert!(failed.3.unwrap().contains("injected permanent error"));
    assert_eq!(runs_of(&runs, Stage::Summarization, "aaaaaaaaaaa"), 1);
    app.shutdown().await;
}

#[tokio::test]
async fn a_hung_stage_times_out_and_is_retried_then_failed() {
    let env = [
        ("TUBESUM_STAGES__AUDIO_EXTRACTION__TIMEOUT_SECS", "1".to_owned()),
        ("TUBESUM_STAGES__MAX_ATTEMPTS", "2".to_owned()),
    ];
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let (app, runs) = app_with(&env, &ids, Stage::AudioExtraction, "bbbbbbbbbbb", Fault::Hang).await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed_with_errors");
    let failed = videos(&job).into_iter().find(|v| v.0 == "bbbbbbbbbbb").unwrap();
    assert_eq!(failed.2, 2);
    assert!(failed.3.unwrap().contains("did not finish within 1 s"));
    assert_eq!(runs_of(&runs, Stage::AudioExtraction, "bbbbbbbbbbb"), 2);
    app.shutdown().await;
}

#[tokio::test]
async fn cancelling_a_job_cancels_its_unfinished_videos() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let (app, runs) = app_with(&[], &ids, Stage::Download, "bbbbbbbbbbb", Fault::Hang).await;
    let job_id = app.submit(CHANNEL, false).await;
    // Wait until the hung download is running, then cancel.
    assert!(
        poll_until(Duration::from_secs(20), || async { runs_of(&runs, Stage::Download, "bbbbbbbbbbb") == 1 }).await
    );
    let response = app.client.delete(app.url(&format!("/jobs/{job_id}"))).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let job = app.wait_for_job(&job_id, Duration::from_secs(20)).await;
    assert_eq!(job["status"], "cancelled");
    let hung = videos(&job).into_iter().find(|v| v.0 == "bbbbbbbbbbb").unwrap();
    assert_eq!(hung.1, "cancelled");
    // A second cancel is a conflict.
    let again = app.client.delete(app.url(&format!("/jobs/{job_id}"))).send().await.unwrap();
    assert_eq!(again.status(), 409);
    app.shutdown().await;
}

#[tokio::test]
async fn the_live_actor_tree_shows_jobs_and_videos() {
    let ids = ["aaaaaaaaaaa"];
    let (app, runs) = app_with(&[], &ids, Stage::Download, "aaaaaaaaaaa", Fault::Hang).await;
    let job_id = app.submit(CHANNEL, false).await;
    assert!(
        poll_until(Duration::from_secs(20), || async { runs_of(&runs, Stage::Download, "aaaaaaaaaaa") == 1 }).await
    );
    let (status, tree) = app.get_json("/console/tree").await;
    assert_eq!(status, 200);
    let text = tree.to_string();
    for name in ["root-supervisor", "event-router", "pool:download", "pool:transcription", "job-supervisor"] {
        assert!(text.contains(name), "{name} missing from {tree:#}");
    }
    assert!(text.contains(&format!("job:{job_id}")), "{tree:#}");
    assert!(text.contains(&format!("video:{job_id}:aaaaaaaaaaa")), "{tree:#}");
    let download = tree["pools"].as_array().unwrap().iter().find(|p| p["stage"] == "download").unwrap();
    assert_eq!(download["running"], 1);
    let page = app.client.get(app.url("/console")).send().await.unwrap();
    assert!(page.text().await.unwrap().contains("live actor tree"));
    app.shutdown().await;
}

#[tokio::test]
async fn unfinished_jobs_resume_after_a_restart() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let (app, runs) = app_with(&[], &ids, Stage::Transcription, "bbbbbbbbbbb", Fault::Hang).await;
    let job_id = app.submit(CHANNEL, false).await;
    assert!(
        poll_until(Duration::from_secs(20), || async { runs_of(&runs, Stage::Transcription, "bbbbbbbbbbb") == 1 })
            .await
    );
    let data = app.stop_keeping_data().await;

    // A new process on the same data: the job resumes where it was, without redoing downloads.
    let runs2: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let counter = runs2.clone();
    let app = TestApp::spawn_with_stages_in(data, &[], |ctx| {
        let stages = instant::stages(ctx, metas(&ids));
        let download = Faulty { inner: stages.get(Stage::Download), target: None, fault: Fault::None, runs: counter };
        stages.with(Stage::Download, Arc::new(download))
    })
    .await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert!(runs2.lock().unwrap().is_empty(), "downloads were redone: {:?}", runs2.lock().unwrap());
    app.shutdown().await;
}

/// A command bus whose first consumer of one stage breaks at once (a lost broker connection).
struct BreaksOnce {
    inner: Arc<dyn CommandBus>,
    stage: Stage,
    consumers: Arc<Mutex<u32>>,
}

#[async_trait]
impl CommandBus for BreaksOnce {
    async fn send(&self, command: StageCommand) -> AdapterResult<()> {
        self.inner.send(command).await
    }

    async fn consume(&self, stage: Stage, prefetch: usize) -> AdapterResult<DeliveryStream> {
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
    let app = TestApp::spawn_custom(
        tempfile::tempdir().unwrap(),
        &[],
        |ctx| instant::stages(ctx, metas(&ids)),
        |deps| {
            deps.commands =
                Arc::new(BreaksOnce { inner: deps.commands.clone(), stage: Stage::Summarization, consumers: seen });
        },
    )
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
    inner: Box<dyn tubesum::adapters::Acker>,
    stage: Stage,
    acked: Arc<Mutex<Vec<Stage>>>,
}

#[async_trait]
impl tubesum::adapters::Acker for RecordingAcker {
    async fn ack(&self) -> AdapterResult<()> {
        self.acked.lock().unwrap().push(self.stage);
        self.inner.ack().await
    }
    async fn nack(&self, requeue: bool, reason: &str) -> AdapterResult<()> {
        self.inner.nack(requeue, reason).await
    }
}

#[async_trait]
impl CommandBus for RecordsAcks {
    async fn send(&self, command: StageCommand) -> AdapterResult<()> {
        self.inner.send(command).await
    }
    async fn consume(&self, stage: Stage, prefetch: usize) -> AdapterResult<DeliveryStream> {
        use futures::StreamExt;
        let acked = self.acked.clone();
        let stream = self.inner.consume(stage, prefetch).await?.map(move |d| {
            d.map(|d| tubesum::adapters::Delivery {
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
    let app = TestApp::spawn_custom(
        tempfile::tempdir().unwrap(),
        &env,
        |ctx| {
            let stages = instant::stages(ctx, metas(&ids));
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
        },
        |deps| deps.commands = Arc::new(RecordsAcks { inner: deps.commands.clone(), acked: seen }),
    )
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
