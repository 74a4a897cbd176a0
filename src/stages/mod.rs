//! The work of each stage, with no actor plumbing: a [`StageWork`] takes a [`StageCommand`],
//! commits its result (artifacts, files, discovered videos) and returns the domain events that
//! report it. Every implementation is idempotent: a redelivered command whose result is already
//! committed returns the same events without redoing the work.

pub mod audio;
pub mod discovery;
pub mod download;
pub mod process;
pub mod settings;
pub mod summarization;
pub mod transcription;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::{DomainEvent, Stage, StageCommand, VideoId};
use crate::ports::{ArtifactStore, JobStore, PortError};
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
}

impl StageError {
    pub fn is_retryable(&self) -> bool {
        match self {
            StageError::Retryable(_) => true,
            StageError::Permanent(_) => false,
        }
    }
}

impl From<PortError> for StageError {
    fn from(e: PortError) -> Self {
        match e {
            PortError::Unavailable(_) | PortError::Other(_) => StageError::Retryable(e.to_string()),
            PortError::NotFound(_) | PortError::AlreadyExists(_) | PortError::Corrupt(_) | PortError::Stale(_) => {
                StageError::Permanent(e.to_string())
            }
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

/// The media directory of this host's videos (`data_dir/media/{video_id}`), and what becomes of a
/// video's media when the video ends without a summary.
#[derive(Debug, Clone, Default)]
pub struct Media {
    dir: Option<PathBuf>,
    keep_failed: bool,
}

impl Media {
    pub fn new(settings: &StageSettings) -> Self {
        let download = &settings.download;
        Self { dir: Some(settings.media_dir.clone()), keep_failed: download.keep_media || download.keep_failed_media }
    }

    /// Deletes the media of a video that ended `status` without a summary: always when it was
    /// cancelled, when it failed unless `download.keep_failed_media` (or `keep_media`) says to keep it.
    pub async fn discard(&self, video_id: &VideoId, status: crate::domain::VideoStatus) {
        use crate::domain::VideoStatus;
        let Some(dir) = &self.dir else { return };
        if status == VideoStatus::Failed && self.keep_failed {
            return;
        }
        let path = dir.join(video_id.as_str());
        match tokio::fs::remove_dir_all(&path).await {
            Ok(()) => tracing::debug!(%video_id, %status, "media deleted"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(%video_id, path = %path.display(), error = %e, "could not delete media"),
        }
    }
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
            media: Media::new(&ctx.settings),
        })
    }
}

/// What every stage may use.
#[derive(Clone)]
pub struct StageContext {
    pub settings: Arc<StageSettings>,
    pub store: Arc<dyn JobStore>,
    pub artifacts: Arc<dyn ArtifactStore>,
}

impl StageContext {
    /// `data_dir/media/{video_id}`: the video's downloaded media and extracted audio.
    pub fn video_dir(&self, video_id: &VideoId) -> PathBuf {
        self.settings.media_dir.join(video_id.as_str())
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

    #[tokio::test]
    async fn a_cancelled_videos_media_is_deleted_a_failed_ones_kept_when_asked() {
        use crate::domain::VideoStatus;
        let dir = tempfile::tempdir().unwrap();
        let video = VideoId::parse("aaaaaaaaaaa").unwrap();
        let make = || std::fs::create_dir_all(dir.path().join("aaaaaaaaaaa/x")).unwrap();
        let exists = || dir.path().join("aaaaaaaaaaa").exists();
        let media = |keep_failed| Media { dir: Some(dir.path().to_owned()), keep_failed };
        make();
        media(true).discard(&video, VideoStatus::Failed).await;
        assert!(exists(), "kept for debugging");
        media(true).discard(&video, VideoStatus::Cancelled).await;
        assert!(!exists(), "a cancelled video's media is always deleted");
        make();
        media(false).discard(&video, VideoStatus::Failed).await;
        assert!(!exists());
        media(false).discard(&video, VideoStatus::Failed).await; // nothing there: nothing to do
    }

    #[test]
    fn templates_are_filled() {
        assert_eq!(fill("http://x/f?c={channel_id}", "channel_id", "UC1"), "http://x/f?c=UC1");
    }
}
