//! No-op stage work: commits the same kind of results as the real stages (videos, transcripts,
//! summaries) at once and without media, so the actor runtime and the backends are measured on
//! their own (the benchmark) or exercised without media (tests). Never part of the real pipeline.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{
    DomainEvent, EventPayload, KeyPoint, Segment, Stage, StageCommand, Summary, Transcript, TranscriptSource,
    VideoMeta, moment_url,
};
use crate::stages::{StageContext, StageError, StageResult, StageWork, Stages, video_of};

/// One no-op stage.
pub struct NoopWork {
    stage: Stage,
    ctx: StageContext,
    /// What discovery "finds".
    videos: Arc<Vec<VideoMeta>>,
}

/// All five stages, no-op; discovery lists `videos` for every channel.
pub fn stages(ctx: &StageContext, videos: Vec<VideoMeta>) -> Stages {
    let videos = Arc::new(videos);
    let make = |stage| Arc::new(NoopWork { stage, ctx: ctx.clone(), videos: videos.clone() }) as Arc<dyn StageWork>;
    Stages {
        discovery: make(Stage::Discovery),
        download: make(Stage::Download),
        audio_extraction: make(Stage::AudioExtraction),
        transcription: make(Stage::Transcription),
        summarization: make(Stage::Summarization),
        media: ctx.media.clone(),
    }
}

#[async_trait]
impl StageWork for NoopWork {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let job_id = command.job_id;
        let event = |payload| Ok(vec![DomainEvent::new(job_id, command.video_id.clone(), payload)]);
        match self.stage {
            Stage::Discovery => {
                self.ctx.store.add_videos(job_id, &self.videos).await?;
                let mut events: Vec<DomainEvent> = self
                    .videos
                    .iter()
                    .map(|v| {
                        let payload =
                            EventPayload::VideoDiscovered { title: v.title.clone(), published_at: v.published_at };
                        DomainEvent::new(job_id, Some(v.video_id.clone()), payload)
                    })
                    .collect();
                events.push(DomainEvent::new(
                    job_id,
                    None,
                    EventPayload::DiscoveryCompleted { videos: self.videos.len() },
                ));
                Ok(events)
            }
            Stage::Download => event(EventPayload::VideoDownloaded { captions: false, reused: false }),
            Stage::AudioExtraction => event(EventPayload::AudioExtracted { seconds: 60.0 }),
            Stage::Transcription => {
                let video_id = video_of(command)?.clone();
                let segments = vec![
                    Segment { start: 0.0, end: 5.0, text: format!("This is video {video_id}.") },
                    Segment { start: 5.0, end: 10.0, text: "It says very little.".into() },
                ];
                let transcript = Transcript {
                    text: segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" "),
                    video_id,
                    source: TranscriptSource::Whisper,
                    language: Some("en".into()),
                    segments,
                    job_id,
                };
                self.ctx.artifacts.put_transcript(&transcript).await?;
                event(EventPayload::TranscriptionCompleted { source: transcript.source, segments: 2 })
            }
            Stage::Summarization => {
                let video_id = video_of(command)?.clone();
                let transcript = self
                    .ctx
                    .artifacts
                    .get_transcript(&video_id)
                    .await?
                    .ok_or_else(|| StageError::Permanent(format!("no transcript for {video_id}")))?;
                let key_points = transcript
                    .segments
                    .iter()
                    .take(1)
                    .map(|s| KeyPoint { text: s.text.clone(), start: s.start, url: moment_url(&video_id, s.start) })
                    .collect();
                let summary =
                    Summary { video_id, summary: transcript.text, key_points, summarizer: "noop".into(), job_id };
                self.ctx.artifacts.put_summary(&summary).await?;
                event(EventPayload::SummarizationCompleted { summarizer: summary.summarizer })
            }
        }
    }
}
