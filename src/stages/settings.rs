//! The stages' settings: the sections of the configuration the stage work reads (`[youtube]`,
//! `[discovery]`, `[download]`, `[audio]`, `[transcription]`, `[whisper]`,
//! `[openai_transcription]`, `[llm]`, `[summary]`) and `[stages]`, the pools' sizes, deadlines and
//! retry policy, which the actor runtime reads too. Loading and layering them is the app's job.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::{Backoff, Stage};

/// Everything the stage work is configured by.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// Where videos' media live while they are worked on (`data_dir/media`).
    pub media_dir: PathBuf,
    pub youtube: YoutubeSettings,
    pub discovery: DiscoverySettings,
    pub download: DownloadSettings,
    pub audio: AudioSettings,
    pub transcription: TranscriptionSettings,
    pub whisper: WhisperSettings,
    pub ctranslate2: Ctranslate2Settings,
    pub openai_transcription: OpenAiTranscriptionSettings,
    pub llm: LlmSettings,
    pub summary: SummarySettings,
    pub stages: StagesSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YoutubeSettings {
    /// `{channel_id}` is replaced.
    pub feed_url: String,
    /// `{video_id}` is replaced.
    pub video_url: String,
    /// `{channel_id}` is replaced; listed with `yt-dlp --flat-playlist -J`.
    pub channel_url: String,
    /// `{handle}` is replaced: the page that names a handle's channel id.
    pub handle_url: String,
    /// The YouTube Data API v3 (`discovery.mode = "data_api"`): its base URL.
    pub data_api_url: String,
    /// The Data API key (a secret: sent as the `X-Goog-Api-Key` header, never in a URL or a
    /// message).
    #[serde(default)]
    pub api_key: Option<secrecy::SecretString>,
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    Feed,
    YtDlp,
    /// The YouTube Data API v3: the channel's uploads playlist, paged (needs `youtube.api_key`).
    DataApi,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    pub mode: DiscoveryMode,
    pub max_videos: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadSettings {
    pub yt_dlp: PathBuf,
    pub format: String,
    pub max_filesize: String,
    pub timeout_secs: u64,
    /// Longer videos fail before their media is downloaded (0: no limit).
    pub max_duration_secs: u64,
    pub keep_media: bool,
    pub keep_failed_media: bool,
    /// Media travels between nodes through the artifacts' store where it can (MongoDB), so
    /// the stages of one video may run on nodes with disks of their own.
    pub share_media: bool,
    /// The bound of this node's local media, in MiB, where media travels through a shared store.
    pub media_cache_mb: u64,
}

impl DownloadSettings {
    /// The reason a video `seconds` long is refused, if it is.
    pub fn too_long(&self, seconds: f64) -> Option<String> {
        let max = self.max_duration_secs;
        (max > 0 && seconds > max as f64).then(|| {
            format!("the video is {} long, over download.max_duration_secs = {max} s", human_duration(seconds))
        })
    }
}

/// `2 h 03 min 05 s`, `4 min 10 s`, `12 s`.
pub fn human_duration(seconds: f64) -> String {
    let total = seconds.round() as u64;
    let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
    match (h, m) {
        (0, 0) => format!("{s} s"),
        (0, _) => format!("{m} min {s:02} s"),
        _ => format!("{h} h {m:02} min {s:02} s"),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSettings {
    pub ffmpeg: PathBuf,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TranscriptionBackend {
    /// Whisper on CTranslate2 (faster-whisper's engine): a faster-whisper model directory.
    Ctranslate2,
    /// whisper.cpp: a ggml model file.
    Whisper,
    Openai,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CaptionsPolicy {
    Prefer,
    Never,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TranscriptionSettings {
    pub backend: TranscriptionBackend,
    pub captions: CaptionsPolicy,
    pub language: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhisperSettings {
    pub model: PathBuf,
    pub threads: u16,
    pub no_speech_threshold: f32,
    pub beam_size: u16,
    /// whisper.cpp's flash attention (fused attention kernels).
    pub flash_attention: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ctranslate2Settings {
    /// A faster-whisper (CTranslate2) model directory: `model.bin`, `config.json`, `vocabulary.txt`.
    pub model: PathBuf,
    pub compute_type: Ct2ComputeType,
    /// Threads per decode (CTranslate2's intra-op threads).
    pub threads: u16,
    pub no_speech_threshold: f32,
    /// 0 or 1 = greedy decoding; >1 = beam search with that width.
    pub beam_size: u16,
}

/// The types CTranslate2 computes in on a CPU, as it names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ct2ComputeType {
    /// As the model was converted.
    Default,
    /// The fastest this CPU supports.
    Auto,
    Float32,
    Int8,
    Int8Float32,
    Int16,
}

impl Ct2ComputeType {
    /// As the settings spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Default => "default",
            Self::Auto => "auto",
            Self::Float32 => "float32",
            Self::Int8 => "int8",
            Self::Int8Float32 => "int8_float32",
            Self::Int16 => "int16",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiTranscriptionSettings {
    pub base_url: String,
    pub model: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    pub timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSettings {
    /// Empty means: use the offline summarizer.
    pub base_url: String,
    pub model: String,
    #[serde(default)]
    pub api_key: Option<SecretString>,
    pub max_chunk_tokens: usize,
    pub temperature: f32,
    pub timeout_secs: u64,
}

impl LlmSettings {
    pub fn enabled(&self) -> bool {
        !self.base_url.trim().is_empty()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SummarySettings {
    pub max_sentences: usize,
    pub max_key_points: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagesSettings {
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    /// How long a process's claim on a job lasts without renewal (renewed every third of it). When
    /// a process dies, another takes its unfinished jobs over after at most this long.
    pub job_lease_secs: u64,
    /// How often a worker records that the attempt it runs is alive; an attempt silent for three
    /// of these is taken for lost (its worker died) and retried.
    pub heartbeat_ms: u64,
    pub discovery: StagePoolSettings,
    pub download: StagePoolSettings,
    pub audio_extraction: StagePoolSettings,
    pub transcription: StagePoolSettings,
    pub summarization: StagePoolSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StagePoolSettings {
    /// 0 = one per CPU core.
    pub workers: usize,
    pub timeout_secs: u64,
}

impl StagesSettings {
    pub fn pool(&self, stage: Stage) -> &StagePoolSettings {
        match stage {
            Stage::Discovery => &self.discovery,
            Stage::Download => &self.download,
            Stage::AudioExtraction => &self.audio_extraction,
            Stage::Transcription => &self.transcription,
            Stage::Summarization => &self.summarization,
        }
    }

    /// How often a running attempt's worker records a sign of life.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }

    /// How long a running attempt may stay silent before it is taken for lost.
    pub fn silence(&self) -> Duration {
        self.heartbeat() * 3
    }

    pub fn job_lease(&self) -> Duration {
        Duration::from_secs(self.job_lease_secs.max(1))
    }

    /// Sets the pool size of every video stage (not discovery's).
    pub fn set_video_workers(&mut self, workers: usize) {
        for pool in [&mut self.download, &mut self.audio_extraction, &mut self.transcription, &mut self.summarization] {
            pool.workers = workers;
        }
    }

    /// The effective number of workers of a stage's pool (at least one).
    pub fn workers(&self, stage: Stage) -> usize {
        match self.pool(stage).workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }

    pub fn timeout(&self, stage: Stage) -> Duration {
        Duration::from_secs(self.pool(stage).timeout_secs.max(1))
    }

    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_videos_over_the_limit_are_too_long() {
        let settings = |max_duration_secs| DownloadSettings {
            yt_dlp: "yt-dlp".into(),
            format: "bestaudio".into(),
            max_filesize: "1G".into(),
            timeout_secs: 60,
            max_duration_secs,
            keep_media: false,
            keep_failed_media: false,
            share_media: true,
            media_cache_mb: 4096,
        };
        assert_eq!(settings(3600).too_long(3600.0), None);
        let reason = settings(3600).too_long(7385.0).unwrap();
        assert!(reason.contains("2 h 03 min 05 s") && reason.contains("download.max_duration_secs = 3600"), "{reason}");
        assert_eq!(settings(0).too_long(1e9), None, "0 is no limit");
    }
}
