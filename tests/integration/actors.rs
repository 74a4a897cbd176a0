//! The actor runtime end to end under fault injection, with no-op stage work: panics, failures,
//! hangs, cancels, restarts, leases across processes, and what the event consumers make of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tubesum::cli::bench::noop;
use tubesum::domain::{DomainEvent, Stage, StageCommand, VideoId};
use tubesum::stages::{StageError, StageResult, StageWork};

use crate::helpers::{TestApp, metas, poll_until, videos};

const CHANNEL: &str = "UCactorsactorsactorsacto";

#[derive(Clone, Copy)]
pub(crate) enum Fault {
    None,
    PanicOnce,
    Fail {
        retryable: bool,
    },
    Hang,
    /// Runs only once the flag is down.
    HoldWhile(&'static std::sync::atomic::AtomicBool),
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
                Fault::HoldWhile(flag) => {
                    while flag.load(std::sync::atomic::Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }
        self.inner.run(command).await
    }
}

type Runs = HashMap<Stage, Arc<Mutex<HashMap<String, u32>>>>;

/// An app with no-op stages, every stage counted, and `fault` at `stage` for `target`.
async fn app_with(env: &[(&str, String)], ids: &[&str], stage: Stage, target: &str, fault: Fault) -> (TestApp, Runs) {
    let mut runs = Runs::new();
    for s in Stage::ALL {
        runs.insert(*s, Arc::default());
    }
    let counters = runs.clone();
    let target = VideoId::parse(target).ok();
    let videos = metas(ids);
    let app = TestApp::builder()
        .env(env)
        .stages(move |ctx| {
            let mut stages = noop::stages(ctx, videos);
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
        .spawn()
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
    // The old console's address leads to the ops page, which shows the job's line.
    let page = app.client.get(app.url("/console")).send().await.unwrap();
    assert_eq!(page.url().path(), "/ui/ops");
    let page = page.text().await.unwrap();
    assert!(page.contains(&format!("run-{job_id}")) && page.contains("pool:download"), "{page}");
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
    let app = TestApp::builder()
        .data(data)
        .stages(move |ctx| {
            let stages = noop::stages(ctx, metas(&ids));
            let download =
                Faulty { inner: stages.get(Stage::Download), target: None, fault: Fault::None, runs: counter };
            stages.with(Stage::Download, Arc::new(download))
        })
        .spawn()
        .await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    assert!(runs2.lock().unwrap().is_empty(), "downloads were redone: {:?}", runs2.lock().unwrap());
    app.shutdown().await;
}

/// A job whose holder died (it never released its lease) is resumed by another process only once
/// the lease has run out.
#[tokio::test]
async fn a_dead_process_job_resumes_when_its_lease_runs_out() {
    use tubesum::ports::JobStore;
    let data = tempfile::tempdir().unwrap();
    let env = [("TUBESUM_STAGES__JOB_LEASE_SECS", "1".to_owned())];
    let store = tubesum::adapters::embedded::SqliteStore::open(&crate::helpers::settings(&data, &env).database_path())
        .await
        .unwrap();
    let job_id = tubesum::domain::JobId::new();
    store.create_job(job_id, &tubesum::domain::ChannelId::parse(CHANNEL).unwrap(), false, None).await.unwrap();
    let claimed_at = chrono::Utc::now();
    assert!(store.claim_job(job_id, "dead-node", Duration::from_secs(3)).await.unwrap().is_some());

    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let app = TestApp::builder().data(data).env(&env).noop_stages(&ids).spawn().await;
    let job = app.wait_for_job(&job_id.to_string(), Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed", "{job:#}");
    let attempts = store.list_attempts(job_id).await.unwrap();
    assert_eq!(attempts.len(), 1 + 4 * ids.len(), "{attempts:#?}");
    for attempt in &attempts {
        assert!(
            attempt.started_at >= claimed_at + chrono::Duration::seconds(3),
            "started before the lease ran out: {attempt:?}"
        );
        assert_ne!(attempt.claimed_by, "dead-node");
        assert_eq!(attempt.outcome, Some(tubesum::domain::AttemptOutcome::Succeeded));
    }
    let (_, listed) = app.get_json(&format!("/jobs/{job_id}/attempts")).await;
    assert_eq!(listed["attempts"].as_array().unwrap().len(), attempts.len());
    assert_eq!(listed["total"], attempts.len() as u64);
    app.shutdown().await;
}

/// A job cancelled through a process that does not run it stops where it runs.
#[tokio::test]
async fn a_job_cancelled_through_another_process_stops_where_it_runs() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    let env = [("TUBESUM_STAGES__JOB_LEASE_SECS", "1".to_owned())];
    let (runner, runs) = app_with(&env, &ids, Stage::Transcription, "bbbbbbbbbbb", Fault::Hang).await;
    let job_id = runner.submit(CHANNEL, false).await;
    assert!(
        poll_until(Duration::from_secs(20), || async { runs_of(&runs, Stage::Transcription, "bbbbbbbbbbb") == 1 })
            .await
    );
    // Another process on the same database (its own pools and buses) serves the API call.
    let mut other_env = env.to_vec();
    other_env.push(("TUBESUM_DATA_DIR", runner.data.path().display().to_string()));
    let other = TestApp::builder().env(&other_env).noop_stages(&ids).spawn().await;
    let response = other.client.delete(other.url(&format!("/jobs/{job_id}"))).send().await.unwrap();
    assert_eq!(response.status(), 202);

    let job = runner.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "cancelled", "{job:#}");
    let gone = poll_until(Duration::from_secs(20), || async {
        let (_, tree) = runner.get_json("/console/tree").await;
        !tree.to_string().contains(&format!("job:{job_id}"))
    })
    .await;
    assert!(gone, "the job's actors stopped where it ran");
    let (_, job) = runner.get_json(&format!("/jobs/{job_id}")).await;
    let hung = videos(&job).into_iter().find(|v| v.0 == "bbbbbbbbbbb").unwrap();
    assert_eq!(hung.1, "cancelled", "{job:#}");
    other.shutdown().await;
    runner.shutdown().await;
}

/// The analytics consumer counts each stage per video with its duration; `/metrics` says the same
/// in Prometheus' format; the event log holds each event once.
#[tokio::test]
async fn analytics_metrics_and_the_event_log_follow_the_events() {
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb", "ccccccccccc"];
    let (app, _) = app_with(&[], &ids, Stage::Download, "ccccccccccc", Fault::Fail { retryable: false }).await;
    let job_id = app.submit(CHANNEL, false).await;
    let job = app.wait_for_job(&job_id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "completed_with_errors", "{job:#}");

    let path = format!("/analytics?job_id={job_id}");
    let counted = poll_until(Duration::from_secs(20), || async {
        let (_, a) = app.get_json(&path).await;
        a["jobs_finished"]["completed_with_errors"] == 1
    })
    .await;
    assert!(counted, "the analytics consumer saw the job finish");
    let (status, a) = app.get_json(&path).await;
    assert_eq!(status, 200);
    let stage = |name: &str| a["stages"].as_array().unwrap().iter().find(|s| s["stage"] == name).unwrap().clone();
    assert_eq!(stage("discovery")["completed"], 1);
    assert_eq!((stage("download")["completed"].as_u64(), stage("download")["failed"].as_u64()), (Some(2), Some(1)));
    assert_eq!(stage("download")["permanent_failures"], 1);
    for name in ["audio_extraction", "transcription", "summarization"] {
        assert_eq!(stage(name)["completed"], 2, "{name}: {a:#}");
        assert_eq!(stage(name)["duration_ms"]["count"], 2, "{name}: {a:#}");
        assert!(stage(name)["duration_ms"]["p99"].is_u64(), "{name}: {a:#}");
    }
    assert_eq!(a["videos_discovered"], 3);
    let (status, _) = app.get_json("/analytics?job_id=nope").await;
    assert_eq!(status, 400);

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    for line in [
        r#"tubesum_stage_completed_total{stage="summarization"} 2"#,
        r#"tubesum_stage_failed_total{stage="download",retryable="false"} 1"#,
        r#"tubesum_stage_duration_seconds_count{stage="transcription"} 2"#,
        r#"tubesum_jobs_finished_total{status="completed_with_errors"} 1"#,
        r#"tubesum_pool_workers{stage="download"}"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }

    let log = app.data.path().join("events.jsonl");
    let logged = poll_until(Duration::from_secs(20), || async {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("job_finished"))
    })
    .await;
    assert!(logged, "the event log has the job's events");
    let events: Vec<DomainEvent> =
        std::fs::read_to_string(&log).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut ids_seen: Vec<_> = events.iter().map(|e| e.event_id).collect();
    ids_seen.sort();
    ids_seen.dedup();
    assert_eq!(ids_seen.len(), events.len(), "each event logged once");
    // discovered ×3, discovery_completed, downloaded ×2, failed, then 3 stages ×2, job_finished.
    assert_eq!(events.len(), 3 + 1 + 2 + 1 + 6 + 1, "{events:#?}");
    app.shutdown().await;
}

/// Cancelling a job that no process here runs ends it in the store and reports `job_finished`.
#[tokio::test]
async fn cancelling_a_job_run_elsewhere_reports_its_end() {
    use tubesum::ports::JobStore;
    let data = tempfile::tempdir().unwrap();
    let store = tubesum::adapters::embedded::SqliteStore::open(&crate::helpers::settings(&data, &[]).database_path())
        .await
        .unwrap();
    let job_id = tubesum::domain::JobId::new();
    store.create_job(job_id, &tubesum::domain::ChannelId::parse(CHANNEL).unwrap(), false, None).await.unwrap();
    assert!(store.claim_job(job_id, "elsewhere", Duration::from_secs(600)).await.unwrap().is_some());
    let app = TestApp::builder().data(data).noop_stages(&["aaaaaaaaaaa"]).spawn().await;

    let response = app.client.delete(app.url(&format!("/jobs/{job_id}"))).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let job = app.wait_for_job(&job_id.to_string(), Duration::from_secs(10)).await;
    assert_eq!(job["status"], "cancelled");
    let path = format!("/analytics?job_id={job_id}");
    let reported = poll_until(Duration::from_secs(10), || async {
        app.get_json(&path).await.1["jobs_finished"]["cancelled"] == 1
    })
    .await;
    assert!(reported, "{:#}", app.get_json(&path).await.1);
    app.shutdown().await;
}

/// Stage work that takes `delay` before doing the inner work.
pub(crate) struct Slow {
    pub(crate) inner: Arc<dyn StageWork>,
    pub(crate) delay: Duration,
}

#[async_trait]
impl StageWork for Slow {
    async fn run(&self, command: &StageCommand) -> StageResult {
        tokio::time::sleep(self.delay).await;
        self.inner.run(command).await
    }
}

/// The settings of a long channel through one slow download worker: each download takes 50 ms,
/// so the 300th waits ~15 s in the queue, fifteen times the download's 1 s limit.
pub(crate) fn long_queue_env() -> Vec<(&'static str, String)> {
    vec![
        ("TUBESUM_STAGES__DOWNLOAD__WORKERS", "1".into()),
        ("TUBESUM_STAGES__DOWNLOAD__TIMEOUT_SECS", "1".into()),
        ("TUBESUM_STAGES__HEARTBEAT_MS", "1000".into()),
    ]
}

/// `n` video ids of a long channel.
pub(crate) fn long_channel(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("longq{i:06}")).collect()
}

/// Stages for a long channel: no-op work, downloads taking 50 ms.
pub(crate) fn long_queue_stages(ctx: &tubesum::stages::StageContext, ids: &[String]) -> tubesum::stages::Stages {
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let stages = noop::stages(ctx, metas(&ids));
    let slow = Slow { inner: stages.get(Stage::Download), delay: Duration::from_millis(50) };
    stages.with(Stage::Download, Arc::new(slow))
}

/// Every video summarized, and one attempt per (video, stage): no command timed out in its queue.
pub(crate) async fn assert_each_stage_ran_once(app: &TestApp, job_id: &str, videos: usize) {
    let job = app.wait_for_job(job_id, Duration::from_secs(180)).await;
    assert_eq!(job["status"], "completed", "{:#}", job["counts"]);
    assert_eq!(job["counts"]["summarized"], videos as u64);
    // More than one page of attempts: read them all, page by page.
    let mut attempts = Vec::new();
    loop {
        let (_, page) = app.get_json(&format!("/jobs/{job_id}/attempts?limit=500&offset={}", attempts.len())).await;
        let rows = page["attempts"].as_array().unwrap();
        attempts.extend(rows.iter().cloned());
        if rows.is_empty() || attempts.len() as u64 == page["total"] {
            assert_eq!(attempts.len() as u64, page["total"], "pages add up to the total");
            break;
        }
    }
    let mut per: HashMap<(String, String), u32> = HashMap::new();
    for a in &attempts {
        let key = (a["video_id"].as_str().unwrap_or("(job)").to_owned(), a["stage"].as_str().unwrap().to_owned());
        *per.entry(key).or_default() += 1;
        assert_eq!(a["attempt"], 1, "{a}");
    }
    assert_eq!(per.len(), 1 + 4 * videos, "one discovery and four stages per video");
    let repeated: Vec<_> = per.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "stages that ran more than once: {repeated:?}");
}

/// A channel of 300 videos and one download worker: time waiting in the queue fails nothing and
/// spends no attempt; the download's time limit counts from when a worker starts it.
#[tokio::test]
async fn a_long_queue_times_nothing_out_and_each_stage_runs_once() {
    let ids = long_channel(300);
    let stage_ids = ids.clone();
    let app =
        TestApp::builder().env(&long_queue_env()).stages(move |ctx| long_queue_stages(ctx, &stage_ids)).spawn().await;
    let job_id = app.submit(CHANNEL, false).await;
    assert_each_stage_ran_once(&app, &job_id, ids.len()).await;
    app.shutdown().await;
}

/// Attempts running when the process stops are closed as `interrupted` at the shutdown; those a
/// process that died left open are closed when a process starts.
#[tokio::test]
async fn interrupted_attempts_are_closed_at_shutdown_and_at_the_next_start() {
    use tubesum::adapters::embedded::SqliteStore;
    use tubesum::domain::{AttemptOutcome, ChannelId, JobId, JobStatus};
    use tubesum::ports::JobStore;

    let ids = ["aaaaaaaaaaa"];
    let (app, runs) = app_with(&[], &ids, Stage::Transcription, "aaaaaaaaaaa", Fault::Hang).await;
    let job_id = app.submit(CHANNEL, false).await;
    let running = || async { runs_of(&runs, Stage::Transcription, "aaaaaaaaaaa") == 1 };
    assert!(poll_until(Duration::from_secs(20), running).await);
    let data = app.stop_keeping_data().await;
    let db = crate::helpers::settings(&data, &[]).database_path();
    let store = SqliteStore::open(&db).await.unwrap();
    let attempts = store.list_attempts(job_id.parse().unwrap()).await.unwrap();
    let hung = attempts.iter().find(|a| a.stage == Stage::Transcription).expect("the hung attempt");
    assert_eq!(hung.outcome, Some(AttemptOutcome::Interrupted), "{attempts:?}");
    assert!(hung.error.as_deref().unwrap().contains("the process stopped"), "{hung:?}");
    assert!(attempts.iter().all(|a| a.outcome.is_some()), "none left open: {attempts:?}");

    // A process that died (no shutdown) left an attempt open; the next start closes it.
    let job = JobId::new();
    store.create_job(job, &ChannelId::parse(CHANNEL).unwrap(), false, None).await.unwrap();
    store.set_job_status(job, JobStatus::Completed, None).await.unwrap();
    let left_open = StageCommand::new(job, Some(VideoId::parse("bbbbbbbbbbb").unwrap()), Stage::Download, 1);
    store.attempt_started(&left_open, "a-process-that-died").await.unwrap();
    let env = [("TUBESUM_STAGES__HEARTBEAT_MS", "20".to_owned())];
    tokio::time::sleep(Duration::from_millis(100)).await; // silent for longer than 3 heartbeats
    let next = TestApp::builder().env(&env).data(data).noop_stages(&ids).spawn().await;
    let attempts = store.list_attempts(job).await.unwrap();
    assert_eq!(attempts[0].outcome, Some(AttemptOutcome::Interrupted), "{attempts:?}");
    assert!(attempts[0].error.as_deref().unwrap().contains("signs of life"), "{attempts:?}");
    next.shutdown().await;
}

/// Fencing: a process whose job another process took over (it stalled past its lease, say) has
/// its next write for the job refused, stops the job's actors ("ownership lost") and leaves the
/// job to the new owner: nothing it wrote after the takeover landed.
#[tokio::test]
async fn a_process_that_lost_its_job_writes_nothing_more_and_stops_its_actors() {
    use tubesum::adapters::embedded::SqliteStore;
    use tubesum::domain::JobStatus;
    use tubesum::ports::JobStore;

    static HELD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);
    let ids = ["aaaaaaaaaaa", "bbbbbbbbbbb"];
    // Long leases: this process's renewals would notice the takeover too, but not in this test.
    let env = [("TUBESUM_STAGES__JOB_LEASE_SECS", "600".to_owned())];
    let (app, runs) = app_with(&env, &ids, Stage::Transcription, "bbbbbbbbbbb", Fault::HoldWhile(&HELD)).await;
    let job_id = app.submit(CHANNEL, false).await;
    let running = || async { runs_of(&runs, Stage::Transcription, "bbbbbbbbbbb") == 1 };
    assert!(poll_until(Duration::from_secs(20), running).await);

    // Another process takes the job over.
    let store = SqliteStore::open(&crate::helpers::settings(&app.data, &[]).database_path()).await.unwrap();
    let job: tubesum::domain::JobId = job_id.parse().unwrap();
    let here = store.list_attempts(job).await.unwrap()[0].claimed_by.clone();
    store.release_job(job, &here).await.unwrap();
    let takeover = store.claim_job(job, "process-b", Duration::from_secs(600)).await.unwrap().expect("taken over");
    let video = VideoId::parse("bbbbbbbbbbb").unwrap();
    let before = store.get_video(job, &video).await.unwrap().unwrap();

    // The held stage ends here: its result reaches this process's VideoActor, whose write is refused.
    HELD.store(false, std::sync::atomic::Ordering::SeqCst);
    let stopped = poll_until(Duration::from_secs(20), || async {
        let (_, tree) = app.get_json("/console/tree").await;
        !tree.to_string().contains(&format!("job:{job_id}"))
    })
    .await;
    assert!(stopped, "the job's actors stopped here");
    let after = store.get_video(job, &video).await.unwrap().unwrap();
    assert_eq!(after.status, before.status, "the stale process's transition did not land");
    let now = store.get_job(job).await.unwrap().unwrap();
    assert_eq!(now.status, JobStatus::Running, "not ended by the process that lost it");
    let held = store.claim_job(job, "process-b", Duration::from_secs(600)).await.unwrap();
    assert_eq!(held, Some(takeover), "still the new owner's, at its epoch");
    app.shutdown().await;
}
