//! `tubesum summarize CHANNEL`: one channel through an in-process pipeline, with a progress bar per
//! stage fed by the event bus, then Markdown ([`super::report`]).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use super::report;
use crate::app::{Pipeline, Settings, Wiring, shutdown_signal};
use crate::domain::{ChannelId, EventPayload, JobId, JobStatus, Stage, VideoStatus};
use crate::ports::EventStream;

/// Runs one channel through an in-process pipeline with progress bars, then writes Markdown.
pub async fn summarize_channel(settings: Settings, channel: &ChannelId, out: &Path, force: bool) -> anyhow::Result<()> {
    let pipeline = Pipeline::start(Wiring::from_settings(settings).await?, Stage::ALL.to_vec()).await?;
    let events = pipeline.deps.events.subscribe().await?;
    let job = pipeline.submit(channel, force).await?;
    let interrupted = tokio::select! {
        () = follow(events, job.job_id) => false,
        () = shutdown_signal() => true,
    };
    let job = pipeline.deps.store.get_job(job.job_id).await?.context("job vanished")?;
    let mut videos = Vec::new();
    for video in pipeline.deps.store.list_videos(job.job_id).await? {
        let summary = pipeline.deps.artifacts.get_summary(&video.video_id).await?;
        videos.push((video, summary));
    }
    pipeline.shutdown().await;
    if interrupted {
        bail!("interrupted: job {} is saved and resumes the next time tubesum starts", job.job_id);
    }
    let index = report::write(out, &job, &videos).with_context(|| format!("writing {}", out.display()))?;
    let summarized = videos.iter().filter(|(v, _)| v.status == VideoStatus::Summarized).count();
    println!("job {}: {} — {summarized}/{} videos summarized", job.job_id, job.status, videos.len());
    if let Some(error) = &job.error {
        println!("  {error}");
    }
    for (video, _) in videos.iter().filter(|(v, _)| v.error.is_some()) {
        println!("  {} {}: {}", video.video_id, video.status, video.error.as_deref().unwrap_or(""));
    }
    println!("wrote {}", index.display());
    if job.status == JobStatus::Failed {
        bail!("job failed");
    }
    Ok(())
}

/// Shows one progress bar per stage until the job finishes.
async fn follow(mut events: EventStream, job_id: JobId) {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix:>14} {bar:30} {pos}/{len} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    let discovery = multi.add(ProgressBar::new_spinner().with_prefix("discovery").with_message("listing the channel"));
    discovery.enable_steady_tick(Duration::from_millis(120));
    let bar = |name: &str| multi.add(ProgressBar::new(0).with_style(style.clone()).with_prefix(name.to_owned()));
    let bars = [bar("download"), bar("audio"), bar("transcription"), bar("summarization")];
    let index = |stage: Stage| match stage {
        Stage::Discovery => None,
        Stage::Download => Some(0),
        Stage::AudioExtraction => Some(1),
        Stage::Transcription => Some(2),
        Stage::Summarization => Some(3),
    };
    let mut failed: HashSet<String> = HashSet::new();
    while let Some(Ok(event)) = events.next().await {
        if event.job_id != job_id {
            continue;
        }
        match event.payload {
            EventPayload::DiscoveryCompleted { videos } => {
                discovery.finish_with_message(format!("{videos} videos"));
                for b in &bars {
                    b.set_length(videos as u64);
                }
            }
            EventPayload::VideoDownloaded { captions, reused } => {
                bars[0].inc(1);
                if captions || reused {
                    bars[1].inc(1);
                    bars[2].inc(1);
                }
            }
            EventPayload::AudioExtracted { .. } => bars[1].inc(1),
            EventPayload::TranscriptionCompleted { .. } => bars[2].inc(1),
            EventPayload::SummarizationCompleted { .. } => bars[3].inc(1),
            EventPayload::StageFailed { stage, reason, .. } => {
                if let Some(i) = index(stage) {
                    if let Some(video) = &event.video_id {
                        failed.insert(video.to_string());
                    }
                    bars[i].set_message(format!("(failures: {}) {}", failed.len(), first_line(&reason)));
                } else {
                    discovery.set_message(first_line(&reason));
                }
            }
            EventPayload::JobFinished { .. } => break,
            EventPayload::VideoDiscovered { .. } => {}
        }
    }
    discovery.finish_and_clear();
    for b in &bars {
        b.finish();
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or("").chars().take(80).collect()
}
