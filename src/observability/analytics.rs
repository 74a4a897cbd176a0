//! The analytics consumer: per-stage counts, durations and failures, overall and per job, served as
//! `GET /analytics`, and the Prometheus counters of `GET /metrics` ([`super::metrics`]).
//!
//! Its consumer group is this process's own and starts from the oldest retained event, so each
//! process's `/analytics` covers the whole retained history.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroUsize;
use std::sync::Mutex;

use lru::LruCache;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::metrics::Metrics;
use super::{DEDUPE_WINDOW, Dedupe};
use crate::actors::EventSink;
use crate::domain::{DomainEvent, EventPayload, JobId, JobStatus, Stage};
/// Stage durations kept per stage for the percentiles of `/analytics`, overall and per job.
const DURATION_SAMPLES: usize = 10_000;
const JOB_DURATION_SAMPLES: usize = 1_000;
/// Jobs whose analytics are kept: those with the most recent events (older ones report nothing).
pub const JOBS_KEPT: usize = 1_000;

/// The stage an event reports the completion of.
pub(super) fn completed_stage(payload: &EventPayload) -> Option<Stage> {
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
    /// How many stage durations are kept for the percentiles.
    samples: usize,
    events: u64,
    by_type: HashMap<&'static str, u64>,
    stages: HashMap<Stage, StageTally>,
    videos_discovered: u64,
    captions_used: u64,
    jobs_finished: HashMap<JobStatus, u64>,
    last_event_at: Option<DateTime<Utc>>,
}

impl Tally {
    fn new(samples: usize) -> Self {
        Self { samples, ..Self::default() }
    }

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
        if let EventPayload::VideoDownloaded { captions: true, .. } = event.payload {
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
                if tally.durations_ms.len() > self.samples {
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
    /// The [`JOBS_KEPT`] jobs with the latest events.
    jobs: LruCache<JobId, Tally>,
}

/// The analytics consumer's aggregates, and this process's Prometheus [`Metrics`] fed by the same
/// events.
pub struct Analytics {
    state: Mutex<AnalyticsState>,
    metrics: Metrics,
}

impl Default for Analytics {
    fn default() -> Self {
        Self::new()
    }
}

impl Analytics {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(AnalyticsState {
                dedupe: Dedupe::new(DEDUPE_WINDOW),
                all: Tally::new(DURATION_SAMPLES),
                jobs: LruCache::new(NonZeroUsize::new(JOBS_KEPT).expect("not zero")),
            }),
            metrics: Metrics::new(),
        }
    }

    /// Everything counted so far, or only one job's events.
    pub fn report(&self, job_id: Option<JobId>) -> AnalyticsReport {
        let state = self.state.lock().expect("analytics lock");
        match job_id {
            None => state.all.report(None),
            Some(id) => state.jobs.peek(&id).map_or_else(|| Tally::default().report(Some(id)), |t| t.report(Some(id))),
        }
    }

    /// The Prometheus exposition: the event counters, plus the stage pools' current state and the
    /// event bus's backlog.
    pub fn render_prometheus(&self, now: super::metrics::Now<'_>) -> String {
        self.metrics.render(now)
    }
}

#[async_trait::async_trait]
impl EventSink for Analytics {
    fn name(&self) -> &'static str {
        "analytics"
    }

    async fn accept(&self, event: &DomainEvent) -> Result<(), String> {
        {
            let mut state = self.state.lock().expect("analytics lock");
            if !state.dedupe.first(event.event_id) {
                return Ok(());
            }
            state.all.add(event);
            state.jobs.get_or_insert_mut(event.job_id, || Tally::new(JOB_DURATION_SAMPLES)).add(event);
        }
        self.metrics.record(event);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TranscriptSource;
    use crate::observability::tests::event;

    fn feed(analytics: &Analytics, event: &DomainEvent) {
        futures::executor::block_on(analytics.accept(event)).expect("analytics take every event");
    }

    #[test]
    fn counts_stages_durations_failures_once_per_event() {
        let analytics = Analytics::new();
        let (job, other) = (JobId::new(), JobId::new());
        let downloaded = event(job, EventPayload::VideoDownloaded { captions: false, reused: false }, Some(200));
        feed(&analytics, &downloaded);
        feed(&analytics, &downloaded); // a redelivery
        feed(&analytics, &event(other, EventPayload::VideoDownloaded { captions: true, reused: false }, Some(400)));
        feed(
            &analytics,
            &event(
                job,
                EventPayload::StageFailed {
                    stage: Stage::Transcription,
                    attempt: 1,
                    retryable: false,
                    reason: "x".into(),
                    redo: None,
                },
                Some(5),
            ),
        );
        feed(
            &analytics,
            &event(
                job,
                EventPayload::TranscriptionCompleted { source: TranscriptSource::Whisper, segments: 3 },
                Some(1000),
            ),
        );
        feed(&analytics, &event(job, EventPayload::JobFinished { status: JobStatus::Completed }, None));

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

        let steps = [(crate::actors::steps::Step::Persist, 4, std::time::Duration::from_millis(1500))];
        let now = super::super::metrics::Now { backlog: Some(3), dead: Some(1), steps: &steps, ..Default::default() };
        let text = analytics.render_prometheus(now);
        assert!(text.contains(r#"tubesum_step_calls_total{step="persist"} 4"#), "{text}");
        assert!(text.contains(r#"tubesum_step_microseconds_total{step="persist"} 1500000"#), "{text}");
        assert!(text.contains(r#"tubesum_stage_completed_total{stage="download"} 2"#), "{text}");
        assert!(text.contains(r#"tubesum_stage_failed_total{stage="transcription",retryable="false"} 1"#), "{text}");
        assert!(text.contains(r#"tubesum_stage_duration_seconds_count{stage="download"} 2"#), "{text}");
        assert!(text.contains("tubesum_outbox_pending 3"), "{text}");
        assert!(text.contains("tubesum_outbox_dead_letters 1"), "{text}");
    }

    #[test]
    fn per_job_analytics_keep_only_the_most_recently_active_jobs() {
        let analytics = Analytics::new();
        let jobs: Vec<JobId> = (0..=JOBS_KEPT).map(|_| JobId::new()).collect();
        let (first, second) = (jobs[0], jobs[1]);
        for job in &jobs[..JOBS_KEPT] {
            feed(&analytics, &event(*job, EventPayload::VideoDownloaded { captions: false, reused: false }, Some(1)));
        }
        // The first job is active again: the second is now the least recent, and gives way.
        feed(&analytics, &event(first, EventPayload::AudioExtracted { seconds: 1.0 }, Some(1)));
        feed(
            &analytics,
            &event(jobs[JOBS_KEPT], EventPayload::VideoDownloaded { captions: false, reused: false }, Some(1)),
        );
        assert_eq!(analytics.state.lock().unwrap().jobs.len(), JOBS_KEPT);
        assert_eq!(analytics.report(Some(first)).events, 2);
        assert_eq!(analytics.report(Some(second)).events, 0, "evicted");
        assert_eq!(analytics.report(None).events, JOBS_KEPT as u64 + 2, "the overall tally keeps everything");
    }

    #[test]
    fn a_jobs_duration_samples_are_bounded() {
        let analytics = Analytics::new();
        let job = JobId::new();
        for ms in 0..(JOB_DURATION_SAMPLES as u64 + 10) {
            feed(&analytics, &event(job, EventPayload::VideoDownloaded { captions: false, reused: false }, Some(ms)));
        }
        let state = analytics.state.lock().unwrap();
        let tally = state.jobs.peek(&job).unwrap();
        assert_eq!(tally.stages[&Stage::Download].durations_ms.len(), JOB_DURATION_SAMPLES);
        assert_eq!(tally.stages[&Stage::Download].duration_count, JOB_DURATION_SAMPLES as u64 + 10);
    }
}
