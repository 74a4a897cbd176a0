//! This process's Prometheus registry (`GET /metrics`): counters and histograms fed by the
//! analytics consumer's events, and gauges of the stage pools and the event backlog set when the
//! exposition is rendered. A local recorder, not the process-wide one, so several pipelines in one
//! process (tests) keep their numbers apart.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

use super::analytics::completed_stage;
use crate::actors::PoolStats;
use crate::actors::steps::Step;
use crate::domain::{DomainEvent, EventPayload};
use crate::stages::media::MediaTraffic;

/// What the exposition reads of the process as it is rendered: the pools' gauges, the event bus's
/// backlog and dead letters, the media moved through the shared media store, and the time spent
/// per step of the stages' round trips.
#[derive(Default)]
pub struct Now<'a> {
    pub pools: &'a [PoolStats],
    pub backlog: Option<u64>,
    pub dead: Option<u64>,
    pub media: MediaTraffic,
    pub steps: &'a [(Step, u64, std::time::Duration)],
}

pub struct Metrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // Seconds-scale buckets from a few milliseconds (instant stages) to two hours (transcription).
        let buckets = [0.005, 0.025, 0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 7200.0];
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &buckets)
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        Self { recorder, handle }
    }

    /// Counts one (deduplicated) event.
    pub fn record(&self, event: &DomainEvent) {
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
                EventPayload::VideoDiscovered { .. }
                | EventPayload::VideoDownloaded { .. }
                | EventPayload::AudioExtracted { .. }
                | EventPayload::TranscriptionCompleted { .. }
                | EventPayload::SummarizationCompleted { .. }
                | EventPayload::DiscoveryCompleted { .. } => {}
            }
        });
    }

    /// The text exposition, with what the process reads of itself now ([`Now`]).
    pub fn render(&self, now: Now<'_>) -> String {
        let Now { pools, backlog, dead, media, steps } = now;
        metrics::with_local_recorder(&self.recorder, || {
            for (step, calls, took) in steps {
                metrics::counter!("tubesum_step_calls_total", "step" => step.as_str()).absolute(*calls);
                let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
                metrics::counter!("tubesum_step_microseconds_total", "step" => step.as_str()).absolute(micros);
            }
            for (direction, files, bytes) in [
                ("stored", media.stored_files, media.stored_bytes),
                ("fetched", media.fetched_files, media.fetched_bytes),
            ] {
                metrics::counter!("tubesum_media_files_total", "direction" => direction).absolute(files);
                metrics::counter!("tubesum_media_bytes_total", "direction" => direction).absolute(bytes);
            }
            for pool in pools {
                let stage = pool.stage.as_str();
                metrics::gauge!("tubesum_pool_workers", "stage" => stage).set(pool.workers as f64);
                metrics::gauge!("tubesum_pool_running", "stage" => stage).set(pool.running as f64);
            }
            if let Some(pending) = backlog {
                metrics::gauge!("tubesum_outbox_pending").set(pending as f64);
            }
            if let Some(dead) = dead {
                metrics::gauge!("tubesum_outbox_dead_letters").set(dead as f64);
            }
        });
        self.handle.render()
    }
}
