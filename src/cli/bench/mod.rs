//! `tubesum bench pipeline --videos N`: the runtime's own overhead. A channel of N videos goes
//! through the real actor tree and the configured backends (embedded, or production with queues,
//! exchange and topics of its own) with no-op stage work ([`noop`]), so what is measured is
//! dispatch, persistence, queueing and event routing — not media.

pub mod api;
pub mod cluster;
pub mod cpu;
pub mod noop;
pub mod transcription;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;

use crate::actors::steps::Step;
use crate::app::settings::Backends;
use crate::app::{Pipeline, Settings, Wiring};
use crate::domain::{ChannelId, EventPayload, JobStatus, Stage, VideoId, VideoMeta};

/// Persisted transitions per video: dispatch + completion for each of the four video stages.
const TRANSITIONS_PER_VIDEO: usize = 8;
const CHANNEL: &str = "UCbenchbenchbenchbenchbe";

#[derive(Debug)]
pub struct Report {
    pub backends: Backends,
    pub videos: usize,
    pub elapsed: Duration,
    /// From the job's submission to its discovery's end (every video recorded and announced).
    pub discovery: Option<Duration>,
    /// Per video stage: (p50, p99) of the time from the previous stage's completion to this one's.
    pub latency: Vec<(Stage, Duration, Duration)>,
    /// Where that time goes: calls and total time of each step of the stages' round trips.
    pub steps: Vec<(Step, u64, Duration)>,
    /// CPU time by process over the run (tubesum, and the databases and brokers beside it).
    /// `None` where `/proc` cannot be read.
    pub cpu: Option<Vec<(String, Duration)>>,
}

impl Report {
    pub fn videos_per_second(&self) -> f64 {
        self.videos as f64 / self.elapsed.as_secs_f64()
    }

    pub fn transitions_per_second(&self) -> f64 {
        (self.videos * TRANSITIONS_PER_VIDEO) as f64 / self.elapsed.as_secs_f64()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "backends: {:?}, {} videos in {:.2} s", self.backends, self.videos, self.elapsed.as_secs_f64())?;
        writeln!(
            f,
            "  {:.1} videos/s, {:.1} stage transitions/s",
            self.videos_per_second(),
            self.transitions_per_second()
        )?;
        if let Some(discovery) = self.discovery {
            writeln!(f, "  discovery         {:>8.2} ms (submitted to every video recorded)", ms(discovery))?;
        }
        for (stage, p50, p99) in &self.latency {
            writeln!(f, "  {:<17} p50 {:>8.2} ms   p99 {:>8.2} ms", stage.as_str(), ms(*p50), ms(*p99))?;
        }
        writeln!(f, "  where it goes (each step of a stage's round trip; concurrent calls overlap):")?;
        for (step, calls, total) in &self.steps {
            let mean = if *calls == 0 { 0.0 } else { ms(*total) / *calls as f64 };
            let total = total.as_secs_f64();
            writeln!(f, "    {:<9} {calls:>7} calls   mean {mean:>8.2} ms   total {total:>8.2} s", step.as_str())?;
        }
        if let Some(spent) = &self.cpu {
            write!(f, "{}", cpu::lines(spent, self.elapsed, 8))?;
        }
        Ok(())
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A throwaway data dir, and queues, an exchange and topics of the run's own.
fn isolated(settings: &mut Settings) -> anyhow::Result<tempfile::TempDir> {
    let data = tempfile::tempdir().context("creating a temporary data dir")?;
    settings.data_dir = data.path().to_owned();
    let tag = uuid::Uuid::new_v4().simple().to_string();
    settings.amqp.queue_prefix = format!("bench-{tag}.");
    settings.amqp.events_exchange = format!("tubesum.bench.{tag}");
    settings.kafka.topic_prefix = format!("bench_{tag}_");
    Ok(data)
}

/// The configured backends with no-op stage work whose discovery lists `videos` synthetic videos.
async fn noop_wiring(settings: Settings, videos: usize) -> anyhow::Result<Wiring> {
    let wiring = Wiring::from_settings(settings).await?;
    let metas: Vec<VideoMeta> = (0..videos)
        .map(|i| {
            VideoMeta::new(VideoId::parse(&format!("bench{i:06}")).expect("valid synthetic id"), format!("video {i}"))
        })
        .collect();
    Ok(wiring.with_stages(|ctx| noop::stages(ctx, metas)))
}

/// Runs the benchmark on the settings' backends with a throwaway data dir.
pub async fn pipeline(mut settings: Settings, videos: usize) -> anyhow::Result<Report> {
    let _data = isolated(&mut settings)?;
    let backends = settings.backends;
    let wiring = noop_wiring(settings, videos).await?;
    let pipeline = Pipeline::start(wiring, Stage::ALL.to_vec()).await?;
    let mut events = pipeline.deps.events.subscribe().await?;
    let cpu = cpu::Reading::now();
    let (started, submitted_at) = (Instant::now(), Utc::now());
    let job = pipeline.submit(&ChannelId::parse(CHANNEL)?, true).await?;

    let mut discovered_at: Option<DateTime<Utc>> = None;
    let mut done: HashMap<VideoId, Vec<(Stage, DateTime<Utc>)>> = HashMap::new();
    let status = loop {
        let event = tokio::time::timeout(Duration::from_secs(300), events.next())
            .await
            .context("no progress for 300 s")?
            .context("event stream ended")??;
        if event.job_id != job.job_id {
            continue;
        }
        let stage = match &event.payload {
            EventPayload::DiscoveryCompleted { .. } => {
                discovered_at = Some(event.occurred_at);
                continue;
            }
            EventPayload::VideoDownloaded { .. } => Stage::Download,
            EventPayload::AudioExtracted { .. } => Stage::AudioExtraction,
            EventPayload::TranscriptionCompleted { .. } => Stage::Transcription,
            EventPayload::SummarizationCompleted { .. } => Stage::Summarization,
            EventPayload::JobFinished { status } => break *status,
            EventPayload::VideoDiscovered { .. } | EventPayload::StageFailed { .. } => continue,
        };
        if let Some(video) = event.video_id {
            done.entry(video).or_default().push((stage, event.occurred_at));
        }
    };
    let elapsed = started.elapsed();
    let cpu = cpu.map(|reading| reading.spent_since());
    let steps = pipeline.deps.steps.read();
    pipeline.shutdown().await;
    anyhow::ensure!(status == JobStatus::Completed, "the benchmark job ended {status}");

    let start = discovered_at.unwrap_or_else(Utc::now);
    let mut per_stage: HashMap<Stage, Vec<Duration>> = HashMap::new();
    for completions in done.values() {
        let mut previous = start;
        for (stage, at) in completions {
            per_stage.entry(*stage).or_default().push((*at - previous).to_std().unwrap_or_default());
            previous = *at;
        }
    }
    let latency = [Stage::Download, Stage::AudioExtraction, Stage::Transcription, Stage::Summarization]
        .into_iter()
        .filter_map(|stage| {
            let mut samples = per_stage.remove(&stage)?;
            samples.sort();
            Some((stage, percentile(&samples, 0.50), percentile(&samples, 0.99)))
        })
        .collect();
    let discovery = discovered_at.and_then(|at| (at - submitted_at).to_std().ok());
    Ok(Report { backends, videos, elapsed, discovery, latency, steps, cpu })
}

/// The nearest-rank percentile of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples[..1], 0.99), Duration::from_millis(1));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }

    #[test]
    fn the_workers_option_sizes_every_video_stage() {
        let mut settings = Settings::load(None, Vec::<(String, String)>::new()).unwrap().stages;
        let discovery = settings.workers(Stage::Discovery);
        settings.set_video_workers(7);
        for stage in Stage::ALL.iter().filter(|s| **s != Stage::Discovery) {
            assert_eq!(settings.workers(*stage), 7, "{stage}");
        }
        assert_eq!(settings.workers(Stage::Discovery), discovery);
    }

    #[tokio::test]
    async fn the_embedded_benchmark_runs_every_video_through() {
        let settings = Settings::load(None, Vec::<(String, String)>::new()).unwrap();
        let report = pipeline(settings, 20).await.unwrap();
        assert_eq!(report.videos, 20);
        assert_eq!(report.latency.len(), 4);
        assert!(report.videos_per_second() > 0.0);
        assert!(report.to_string().contains("transitions/s"));
        // Every video's four stages were persisted, dispatched, taken, worked, finished, published
        // and delivered at least once each.
        for (step, calls, _) in &report.steps {
            assert!(*calls >= 4 * 20, "{}: {calls} calls", step.as_str());
        }
        assert!(report.to_string().contains("persist"), "{report}");
        #[cfg(target_os = "linux")]
        assert!(report.to_string().contains("CPU by process"), "{report}");
    }
}
