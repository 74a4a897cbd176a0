//! The decoupled event consumers: analytics (per-stage counts, durations and failures, served as
//! `GET /analytics` and Prometheus `GET /metrics`) and the structured event log (JSON lines).
//!
//! Both read the event stream through their own consumer group (Kafka in production, the
//! in-process bus embedded; see [`crate::actors::consumer`]) and deduplicate by `event_id`, since
//! delivery is at-least-once. The analytics group is this process's own and starts from the oldest
//! retained event, so each process's `/analytics` covers the whole retained history; the event log
//! group is shared by every process, so each event is logged once in the cluster.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};
use serde::Serialize;
use utoipa::ToSchema;

use crate::actors::root::PoolStats;
use crate::adapters::{DomainEvent, EventPayload};
use crate::domain::{JobId, JobStatus, Stage};

/// Something fed every event a consumer group delivers.
pub trait EventSink: Send + Sync + 'static {
    /// A short name for logs and the actor tree.
    fn name(&self) -> &'static str;
    /// Handles one delivery (possibly a duplicate).
    fn accept(&self, event: &DomainEvent);
}

/// Remembers the last `capacity` event ids, to drop redeliveries.
pub struct Dedupe {
    seen: HashSet<uuid::Uuid>,
    order: VecDeque<uuid::Uuid>,
    capacity: usize,
}

impl Dedupe {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// True the first time an id is seen (within the window).
    pub fn first(&mut self, id: uuid::Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

/// How many recent event ids the consumers remember for deduplication.
const DEDUPE_WINDOW: usize = 200_000;
/// Stage durations kept per stage for the percentiles of `/analytics`.
const DURATION_SAMPLES: usize = 10_000;

/// The stage an event reports the completion of.
fn completed_stage(payload: &EventPayload) -> Option<Stage> {
    match payload {
        EventPayload::DiscoveryCompleted { .. } => Some(Stage::Discovery),
        EventPayload::VideoDownloaded { .. } => Some(Stage::Download),
        EventPayload::AudioExtracted { .. } => Some(Stage::AudioExtraction),
        EventPayload::TranscriptionCompleted { .. } => Some(Stage::Transcription),
        EventPayload::SummarizationCompleted { .. } => Some(Stage::Summarization),
        EventPayload::VideoDiscovered { .. } | EventPayload::StageFailed { .. } | EventPayload::JobFinished { .. } => {
            None
        }
    }
}

#[derive(Default)]
struct StageTally {
    completed: u64,
    failed: u64,
    /// Failures that were not retryable.
    permanent: u64,
    durations_ms: VecDeque<u64>,
    duration_total_ms: u128,
    duration_count: u64,
    duration_max_ms: u64,
}

#[derive(Default)]
struct Tally {
    events: u64,
    by_type: HashMap<&'static str, u64>,
    stages: HashMap<Stage, StageTally>,
    videos_discovered: u64,
    captions_used: u64,
    jobs_finished: HashMap<JobStatus, u64>,
    last_event_at: Option<DateTime<Utc>>,
}

impl Tally {
    fn add(&mut self, event: &DomainEvent) {
        self.events += 1;
        *self.by_type.entry(event.payload.kind()).or_default() += 1;
        self.last_event_at = self.last_event_at.max(Some(event.occurred_at));
        match &event.payload {
            EventPayload::VideoDiscovered { .. } => self.videos_discovered += 1,
            EventPayload::JobFinished { status } => *self.jobs_finished.entry(*status).or_default() += 1,
            EventPayload::StageFailed { stage, retryable, .. } => {
                let tally = self.stages.entry(*stage).or_default();
                tally.failed += 1;
                tally.permanent += u64::from(!retryable);
            }
            _ => {}
        }
        if let EventPayload::VideoDownloaded { captions: true } = event.payload {
            self.captions_used += 1;
        }
        if let Some(stage) = completed_stage(&event.payload) {
            let tally = self.stages.entry(stage).or_default();
            tally.completed += 1;
            if let Some(ms) = event.duration_ms {
                tally.duration_count += 1;
                tally.duration_total_ms += u128::from(ms);
                tally.duration_max_ms = tally.duration_max_ms.max(ms);
                tally.durations_ms.push_back(ms);
                if tally.durations_ms.len() > DURATION_SAMPLES {
                    tally.durations_ms.pop_front();
                }
            }
        }
    }

    fn report(&self, job_id: Option<JobId>) -> AnalyticsReport {
        let none = StageTally::default();
        let stages = Stage::ALL
            .iter()
            .map(|stage| {
                let t = self.stages.get(stage).unwrap_or(&none);
                let mut sorted: Vec<u64> = t.durations_ms.iter().copied().collect();
                sorted.sort_unstable();
                let pct =
                    |p: f64| (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize]);
                StageAnalytics {
                    stage: *stage,
                    completed: t.completed,
                    failed: t.failed,
                    permanent_failures: t.permanent,
                    duration_ms: DurationStats {
                        count: t.duration_count,
                        mean: (t.duration_count > 0)
                            .then(|| (t.duration_total_ms / u128::from(t.duration_count)) as u64),
                        p50: pct(0.50),
                        p99: pct(0.99),
                        max: (t.duration_count > 0).then_some(t.duration_max_ms),
                    },
                }
            })
            .collect();
        let mut events_by_type: Vec<(String, u64)> = self.by_type.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
        events_by_type.sort();
        let mut jobs_finished: Vec<(String, u64)> =
            self.jobs_finished.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        jobs_finished.sort();
        AnalyticsReport {
            job_id,
            events: self.events,
            events_by_type: events_by_type.into_iter().collect(),
            videos_discovered: self.videos_discovered,
            captions_used: self.captions_used,
            jobs_finished: jobs_finished.into_iter().collect(),
            stages,
            last_event_at: self.last_event_at,
        }
    }
}

/// Per-stage duration statistics in milliseconds (percentiles over the most recent samples).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DurationStats {
    pub count: u64,
    pub mean: Option<u64>,
    pub p50: Option<u64>,
    pub p99: Option<u64>,
    pub max: Option<u64>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageAnalytics {
    pub stage: Stage,
    pub completed: u64,
    /// Failed attempts (each retry counts).
    pub failed: u64,
    /// Failed attempts that were not retryable.
    pub permanent_failures: u64,
    pub duration_ms: DurationStats,
}

/// What the analytics consumer has counted, overall or for one job.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AnalyticsReport {
    #[schema(value_type = Option<String>)]
    pub job_id: Option<JobId>,
    /// Distinct events seen (duplicates are not counted).
    pub events: u64,
    pub events_by_type: std::collections::BTreeMap<String, u64>,
    pub videos_discovered: u64,
    pub captions_used: u64,
    pub jobs_finished: std::collections::BTreeMap<String, u64>,
    pub stages: Vec<StageAnalytics>,
    pub last_event_at: Option<DateTime<Utc>>,
}

struct AnalyticsState {
    dedupe: Dedupe,
    all: Tally,
    jobs: HashMap<JobId, Tally>,
}

/// The analytics consumer's aggregates and this process's Prometheus registry.
pub struct Analytics {
    state: Mutex<AnalyticsState>,
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Analytics {
    fn default() -> Self {
        Self::new()
    }
}

impl Analytics {
    pub fn new() -> Self {
        // Seconds-scale buckets from a few milliseconds (instant stages) to two hours (transcription).
        let buckets = [0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 7200.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        Self {
            state: Mutex::new(AnalyticsState {
                dedupe: Dedupe::new(DEDUPE_WINDOW),
                all: Tally::default(),
                jobs: HashMap::new(),
            }),
            recorder,
            handle,
        }
    }

    /// Everything counted so far, or only one job's events.
    pub fn report(&self, job_id: Option<JobId>) -> AnalyticsReport {
        let state = self.state.lock().expect("analytics lock");
        match job_id {
            None => state.all.report(None),
            Some(id) => state.jobs.get(&id).map_or_else(|| Tally::default().report(Some(id)), |t| t.report(Some(id))),
        }
    }

    /// The Prometheus exposition: the event counters, plus the stage pools' current state.
    pub fn render_prometheus(&self, pools: &[PoolStats], outbox_pending: Option<u64>) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            for pool in pools {
                let stage = pool.stage.as_str();
                metrics::gauge!("tubesum_pool_workers", "stage" => stage).set(pool.workers as f64);
                metrics::gauge!("tubesum_pool_running", "stage" => stage).set(pool.running as f64);
            }
            if let Some(pending) = outbox_pending {
                metrics::gauge!("tubesum_outbox_pending").set(pending as f64);
            }
        });
        self.handle.render()
    }
}

impl EventSink for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    fn accept(&self, event: &DomainEvent) {
        {
            let mut state = self.state.lock().expect("analytics lock");
            if !state.dedupe.first(event.event_id) {
                return;
            }
            state.all.add(event);
            state.jobs.entry(event.job_id).or_default().add(event);
        }
        metrics::with_local_recorder(&self.recorder, || {
            metrics::counter!("tubesum_events_total", "type" => event.payload.kind()).increment(1);
            if let Some(stage) = completed_stage(&event.payload) {
                metrics::counter!("tubesum_stage_completed_total", "stage" => stage.as_str()).increment(1);
                if let Some(ms) = event.duration_ms {
                    metrics::histogram!("tubesum_stage_duration_seconds", "stage" => stage.as_str())
                        .record(ms as f64 / 1000.0);
                }
            }
            match &event.payload {
                EventPayload::StageFailed { stage, retryable, .. } => {
                    let retryable = if *retryable { "true" } else { "false" };
                    metrics::counter!("tubesum_stage_failed_total", "stage" => stage.as_str(), "retryable" => retryable)
                        .increment(1);
                }
                EventPayload::JobFinished { status } => {
                    metrics::counter!("tubesum_jobs_finished_total", "status" => status.as_str()).increment(1);
                }
                _ => {}
            }
        });
    }
}

/// The logging consumer: each event once, as a `tubesum::event_log` trace and, when a path is
/// set, one JSON line in that file (appended; created if missing).
pub struct EventLog {
    path: Option<PathBuf>,
    state: Mutex<(Dedupe, Option<std::fs::File>)>,
}

impl EventLog {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self { path, state: Mutex::new((Dedupe::new(DEDUPE_WINDOW), None)) }
    }

    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }
}

impl EventSink for EventLog {
    fn name(&self) -> &'static str {
        "event-log"
    }

    fn accept(&self, event: &DomainEvent) {
        let mut state = self.state.lock().expect("event log lock");
        let (dedupe, file) = &mut *state;
        if !dedupe.first(event.event_id) {
            return;
        }
        let line = match serde_json::to_string(event) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "could not encode an event for the event log");
                return;
            }
        };
        tracing::info!(
            target: "tubesum::event_log",
            event_id = %event.event_id,
            r#type = event.payload.kind(),
            job_id = %event.job_id,
            video_id = event.video_id.as_ref().map(|v| v.as_str()),
            event = %line,
        );
        let Some(path) = &self.path else { return };
        if file.is_none() {
            if let Some(parent) = path.parent() {
                let _ = std::fs::create_dir_all(parent);
            }
            match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not open the event log");
                    return;
                }
            }
        }
        if let Some(f) = file
            && let Err(e) = writeln!(f, "{line}")
        {
            tracing::warn!(path = %path.display(), error = %e, "could not append to the event log");
            *file = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{TranscriptSource, VideoId};

    fn event(job: JobId, payload: EventPayload, ms: Option<u64>) -> DomainEvent {
        let mut e = DomainEvent::new(job, Some(VideoId::parse("aaaaaaaaaaa").unwrap()), payload);
        e.duration_ms = ms;
        e
    }

    #[test]
    fn counts_stages_durations_failures_once_per_event() {
        let analytics = Analytics::new();
        let (job, other) = (JobId::new(), JobId::new());
        let downloaded = event(job, EventPayload::VideoDownloaded { captions: false }, Some(200));
        analytics.accept(&downloaded);
        analytics.accept(&downloaded); // a redelivery
        analytics.accept(&event(other, EventPayload::VideoDownloaded { captions: true }, Some(400)));
        analytics.accept(&event(
            job,
            EventPayload::StageFailed { stage: Stage::Transcription, attempt: 1, retryable: false, reason: "x".into() },
            Some(5),
        ));
        analytics.accept(&event(
            job,
            EventPayload::TranscriptionCompleted { source: TranscriptSource::Whisper, segments: 3 },
            Some(1000),
        ));
        analytics.accept(&event(job, EventPayload::JobFinished { status: JobStatus::Completed }, None));

        let all = analytics.report(None);
        assert_eq!(all.events, 5);
        let download = &all.stages[1];
        assert_eq!((download.stage, download.completed, download.failed), (Stage::Download, 2, 0));
        assert_eq!(download.duration_ms.count, 2);
        assert_eq!((download.duration_ms.mean, download.duration_ms.max), (Some(300), Some(400)));
        assert_eq!(download.duration_ms.p50, Some(400), "nearest rank of two samples");
        let transcription = &all.stages[3];
        assert_eq!((transcription.completed, transcription.failed, transcription.permanent_failures), (1, 1, 1));
        assert_eq!(all.captions_used, 1);
        assert_eq!(all.jobs_finished.get("completed"), Some(&1));
        assert_eq!(all.events_by_type.get("video_downloaded"), Some(&2));

        let one = analytics.report(Some(job));
        assert_eq!((one.events, one.stages[1].completed), (4, 1));
        assert_eq!(analytics.report(Some(JobId::new())).events, 0);

        let text = analytics.render_prometheus(&[], Some(3));
        assert!(text.contains(r#"tubesum_stage_completed_total{stage="download"} 2"#), "{text}");
        assert!(text.contains(r#"tubesum_stage_failed_total{stage="transcription",retryable="false"} 1"#), "{text}");
        assert!(text.contains(r#"tubesum_stage_duration_seconds_count{stage="download"} 2"#), "{text}");
        assert!(text.contains("tubesum_outbox_pending 3"), "{text}");
    }

    #[test]
    fn the_event_log_writes_each_event_once_as_json_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/events.jsonl");
        let log = EventLog::new(Some(path.clone()));
        let job = JobId::new();
        let a = event(job, EventPayload::AudioExtracted { seconds: 1.5 }, Some(10));
        let b = event(job, EventPayload::JobFinished { status: JobStatus::Failed }, None);
        for e in [&a, &b, &a] {
            log.accept(e);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<DomainEvent> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines, vec![a, b]);
    }

    #[test]
    fn dedupe_forgets_beyond_its_window() {
        let mut d = Dedupe::new(2);
        let ids: Vec<_> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
        assert!(d.first(ids[0]) && d.first(ids[1]) && !d.first(ids[0]));
        assert!(d.first(ids[2]));
        assert!(d.first(ids[0]), "the oldest id left the window");
    }
}
