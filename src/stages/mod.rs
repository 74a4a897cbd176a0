//! The work of each stage, with no actor plumbing: a [`StageWork`] takes a [`StageCommand`],
//! commits its result (artifacts, files, discovered videos) and returns the domain events that
//! report it. Every implementation is idempotent: a redelivered command whose result is already
//! committed returns the same events without redoing the work.

pub mod audio;
pub mod discovery;
pub mod download;
pub mod media;
pub mod process;
pub mod settings;
pub mod summarization;
pub mod transcription;

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::search::{self, IndexedVideo, PassageKind};
use crate::domain::{DomainEvent, JobId, Stage, StageCommand, Summary, Transcript, VideoId};
use crate::ports::{ArtifactStore, JobStore, MediaStore, PortError};
pub use media::Media;
pub use settings::{StageSettings, StagesSettings};

/// A failed attempt at a stage, classified for the retry policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// Worth another attempt (network trouble, a timeout, a busy backend).
    #[error("{0}")]
    Retryable(String),
    /// Will fail the same way again (not found, bad media, bad configuration).
    #[error("{0}")]
    Permanent(String),
    /// What the stage works on is gone (its media was lost): stage `redo`, which makes it, must run
    /// again first. Spends no attempt of this stage.
    #[error("{reason}")]
    Missing { redo: Stage, reason: String },
}

impl StageError {
    pub fn is_retryable(&self) -> bool {
        match self {
            StageError::Retryable(_) | StageError::Missing { .. } => true,
            StageError::Permanent(_) => false,
        }
    }

    /// The earlier stage to run again, for [`StageError::Missing`].
    pub fn redo(&self) -> Option<Stage> {
        match self {
            StageError::Missing { redo, .. } => Some(*redo),
            StageError::Retryable(_) | StageError::Permanent(_) => None,
        }
    }
}

impl From<PortError> for StageError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Unavailable(_) | PortError::Other(_) => StageError::Retryable(e.to_string()),
            PortError::NotFound(_)
            | PortError::AlreadyExists(_)
            | PortError::Corrupt(_)
            | PortError::Stale(_)
            | PortError::OwnershipLost(_) => StageError::Permanent(e.to_string()),
        }
    }
}

pub type StageResult = Result<Vec<DomainEvent>, StageError>;

/// One stage's work.
#[async_trait]
pub trait StageWork: Send + Sync + 'static {
    async fn run(&self, command: &StageCommand) -> StageResult;
}

/// The five stages' work, as injected into the stage pools, and where their media lives.
#[derive(Clone)]
pub struct Stages {
    pub discovery: Arc<dyn StageWork>,
    pub download: Arc<dyn StageWork>,
    pub audio_extraction: Arc<dyn StageWork>,
    pub transcription: Arc<dyn StageWork>,
    pub summarization: Arc<dyn StageWork>,
    pub media: Media,
}

impl Stages {
    pub fn get(&self, stage: Stage) -> Arc<dyn StageWork> {
        match stage {
            Stage::Discovery => self.discovery.clone(),
            Stage::Download => self.download.clone(),
            Stage::AudioExtraction => self.audio_extraction.clone(),
            Stage::Transcription => self.transcription.clone(),
            Stage::Summarization => self.summarization.clone(),
        }
    }

    /// Replaces one stage's work (tests inject faults this way).
    pub fn with(mut self, stage: Stage, work: Arc<dyn StageWork>) -> Self {
        match stage {
            Stage::Discovery => self.discovery = work,
            Stage::Download => self.download = work,
            Stage::AudioExtraction => self.audio_extraction = work,
            Stage::Transcription => self.transcription = work,
            Stage::Summarization => self.summarization = work,
        }
        self
    }

    /// The real stages, from settings.
    pub fn real(ctx: &StageContext) -> Result<Self, StageError> {
        Ok(Self {
            discovery: Arc::new(discovery::Discovery::new(ctx.clone())?),
            download: Arc::new(download::Download::new(ctx.clone())?),
            audio_extraction: Arc::new(audio::AudioExtraction::new(ctx.clone())),
            transcription: Arc::new(transcription::Transcription::new(ctx.clone())?),
            summarization: Arc::new(summarization::Summarization::new(ctx.clone())?),
            media: ctx.media.clone(),
        })
    }
}

/// What every stage may use.
#[derive(Clone)]
pub struct StageContext {
    pub settings: Arc<StageSettings>,
    pub store: Arc<dyn JobStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
    pub media: Media,
}

impl StageContext {
    /// `shared` carries media between nodes (None: this host's `media_dir` is the only copy).
    pub fn new(
        settings: StageSettings,
        store: Arc<dyn JobStore>,
        artifacts: Arc<dyn ArtifactStore>,
        shared: Option<Arc<dyn MediaStore>>,
    ) -> Self {
        let media = Media::new(&settings, store.clone(), shared);
        Self { settings: Arc::new(settings), store, artifacts, media }
    }

    /// Stores a video's transcript and files it in the search index (under the video's title and
    /// channel, as its job knows them).
    pub async fn store_transcript(&self, transcript: &Transcript) -> Result<(), StageError> {
        self.artifacts.put_transcript(transcript).await?;
        let video = self.indexed_video(transcript.job_id, &transcript.video_id).await?;
        let passages = search::transcript_passages(&transcript.segments);
        Ok(self.store.index_passages(&video, PassageKind::Transcript, &passages).await?)
    }

    /// Stores a video's summary and files it (and its key points) in the search index.
    pub async fn store_summary(&self, summary: &Summary) -> Result<(), StageError> {
        self.artifacts.put_summary(summary).await?;
        let video = self.indexed_video(summary.job_id, &summary.video_id).await?;
        Ok(self.store.index_passages(&video, PassageKind::Summary, &search::summary_passages(summary)).await?)
    }

    async fn indexed_video(&self, job_id: JobId, video_id: &VideoId) -> Result<IndexedVideo, StageError> {
        let job = self
            .store
            .get_job(job_id)
            .await?
            .ok_or_else(|| StageError::Permanent(format!("job {job_id} does not exist")))?;
        let title = self.store.get_video(job_id, video_id).await?.map_or_else(|| video_id.to_string(), |v| v.title);
        Ok(IndexedVideo { video_id: video_id.clone(), channel_id: job.channel_id, title })
    }

    /// Whether a stage may report an artifact of this video that `made_by` stored instead of
    /// making its own: its own job's, or any job's unless this job is forced.
    pub async fn may_reuse(&self, command: &StageCommand, made_by: JobId) -> Result<bool, StageError> {
        if made_by == command.job_id {
            return Ok(true);
        }
        let job = self.store.get_job(command.job_id).await?;
        Ok(job.is_some_and(|job| !job.force))
    }
}

/// The video id of a video-level command.
pub fn video_of(command: &StageCommand) -> Result<&VideoId, StageError> {
    command
        .video_id
        .as_ref()
        .ok_or_else(|| StageError::Permanent(format!("{} command without a video id", command.stage)))
}

/// Fills `{name}` placeholders of a URL template.
pub fn fill(template: &str, name: &str, value: &str) -> String {
    template.replace(&format!("{{{name}}}"), value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_errors_are_classified() {
        assert!(StageError::from(PortError::Unavailable("db down".into())).is_retryable());
        assert!(!StageError::from(PortError::Corrupt("bad row".into())).is_retryable());
    }

    #[test]
    fn templates_are_filled() {
        assert_eq!(fill("http://x/f?c={channel_id}", "channel_id", "UC1"), "http://x/f?c=UC1");
    }
}
