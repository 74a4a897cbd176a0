//! Typed settings, layered: `config/default.toml` (compiled in) → an optional file → environment
//! (`TUBESUM_<SECTION>__<KEY>`). Unknown keys anywhere are an error.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use secrecy::SecretString;
use serde::Deserialize;

use crate::domain::Stage;

pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");
pub const ENV_PREFIX: &str = "TUBESUM_";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub backends: Backends,
    /// Per-port overrides of `backends`.
    pub ports: PortSettings,
    pub event_log: EventLogSettings,
    pub server: ServerSettings,
    pub youtube: YoutubeSettings,
    pub discovery: DiscoverySettings,
    pub download: DownloadSettings,
    pub audio: AudioSettings,
    pub transcription: TranscriptionSettings,
    pub whisper: WhisperSettings,
    pub openai_transcription: OpenAiTranscriptionSettings,
    pub llm: LlmSettings,
    pub summary: SummarySettings,
    pub stages: StagesSettings,
    pub database: DatabaseSettings,
    pub mongodb: MongoSettings,
    pub amqp: AmqpSettings,
    pub kafka: KafkaSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backends {
    Embedded,
    Production,
}

/// Which backend serves each port; unset ones follow `backends`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSettings {
    /// Jobs, videos, stage attempts: SQLite (embedded) or PostgreSQL (production).
    pub store: Option<Backends>,
    /// Transcripts and summaries: SQLite (embedded) or MongoDB (production).
    pub artifacts: Option<Backends>,
    /// Stage queues: in-process (embedded) or RabbitMQ (production).
    pub commands: Option<Backends>,
    /// Domain events: in-process (embedded) or the PostgreSQL outbox relayed to the RabbitMQ fanout
    /// exchange and Kafka (production; needs `store` on production too).
    pub events: Option<Backends>,
}

/// The backend each port uses, after the overrides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortBackends {
    pub store: Backends,
    pub artifacts: Backends,
    pub commands: Backends,
    pub events: Backends,
}

impl Settings {
    /// The backend of each port: `ports.<port>` where set, else `backends`.
    pub fn port_backends(&self) -> PortBackends {
        let or = |port: Option<Backends>| port.unwrap_or(self.backends);
        PortBackends {
            store: or(self.ports.store),
            artifacts: or(self.ports.artifacts),
            commands: or(self.ports.commands),
            events: or(self.ports.events),
        }
    }

    /// The structured event log's file, if any.
    pub fn event_log_path(&self) -> Option<PathBuf> {
        (!self.event_log.path.as_os_str().is_empty()).then(|| self.data_dir.join(&self.event_log.path))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventLogSettings {
    /// JSON-lines file of every domain event, relative to `data_dir` (empty: traces only).
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub url: SecretString,
    pub max_connections: u32,
    /// How long events stay in the outbox once every broker has them (0 = for ever).
    pub outbox_retention_hours: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSettings {
    pub url: SecretString,
    pub database: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    pub url: SecretString,
    pub retry_delay_ms: u64,
    pub max_deliveries: u32,
    pub events_exchange: String,
    pub queue_prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    pub brokers: String,
    pub topic_prefix: String,
}

/// A URL with its password replaced by `***`, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    #[serde(default)]
    pub api_token: Option<SecretString>,
    pub max_body_bytes: usize,
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
    pub request_timeout_secs: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscoveryMode {
    Feed,
    YtDlp,
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
    pub keep_media: bool,
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

    pub fn job_lease(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.job_lease_secs.max(1))
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

    pub fn backoff(&self) -> crate::actors::backoff::Backoff {
        crate::actors::backoff::Backoff {
            initial: Duration::from_millis(self.backoff_initial_ms),
            max: Duration::from_millis(self.backoff_max_ms),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(Box<figment::Error>),
    #[error("invalid configuration: {0}")]
    Rule(String),
}

impl Settings {
    /// Loads the layered settings. `env` is the process environment (or a test's map): only
    /// `TUBESUM_*` variables are read, and each must name a known key.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Settings, ConfigError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        for (name, raw) in env {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = key.to_ascii_lowercase().replace("__", ".");
            let value: Value = raw.parse().unwrap_or_else(|never| match never {});
            let value = match value {
                // Keep text that looks like a number as text when the key holds text
                // (figment would otherwise refuse e.g. an all-digit token).
                Value::Num(..) if is_text_key(&key) => Value::from(raw),
                other => other,
            };
            figment = figment.merge(Serialized::default(&key, value));
        }
        let settings: Settings = figment.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))?;
        settings.validate()?;
        Ok(settings)
    }

    /// The process environment's settings, with an optional file.
    pub fn from_env(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::load(file, std::env::vars())
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let rule = |ok: bool, msg: &str| if ok { Ok(()) } else { Err(ConfigError::Rule(msg.into())) };
        rule(self.youtube.feed_url.contains("{channel_id}"), "youtube.feed_url must contain {channel_id}")?;
        rule(self.youtube.video_url.contains("{video_id}"), "youtube.video_url must contain {video_id}")?;
        rule(self.youtube.channel_url.contains("{channel_id}"), "youtube.channel_url must contain {channel_id}")?;
        rule(self.stages.max_attempts >= 1, "stages.max_attempts must be at least 1")?;
        rule(self.whisper.threads >= 1, "whisper.threads must be at least 1")?;
        rule(self.llm.max_chunk_tokens >= 200, "llm.max_chunk_tokens must be at least 200")?;
        rule(
            (0.0..=1.0).contains(&self.whisper.no_speech_threshold),
            "whisper.no_speech_threshold must be between 0 and 1",
        )?;
        let ports = self.port_backends();
        rule(
            ports.events == Backends::Embedded || ports.store == Backends::Production,
            "production events need the production store: the outbox lives in PostgreSQL (set ports.store = \"production\")",
        )?;
        Ok(())
    }

    pub fn media_dir(&self) -> PathBuf {
        self.data_dir.join("media")
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("tubesum.sqlite")
    }
}

fn is_text_key(key: &str) -> bool {
    key.ends_with("api_key")
        || key.ends_with("api_token")
        || key.ends_with("_url")
        || key.ends_with(".model")
        || key.ends_with(".language")
        || key.ends_with("max_filesize")
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn defaults_load() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("./data"));
        assert_eq!(s.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.stages.max_attempts, 3);
        assert!(!s.llm.enabled());
        assert!(s.server.api_token.is_none());
        assert!(s.stages.workers(Stage::Transcription) >= 1);
        assert_eq!(s.stages.workers(Stage::Download), 2);
    }

    #[test]
    fn file_overrides_defaults_and_env_overrides_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "data_dir = \"/from/file\"\n[llm]\nmodel = \"file-model\"\n").unwrap();
        let s = Settings::load(Some(&file), env(&[("TUBESUM_LLM__MODEL", "env-model"), ("OTHER_VAR", "x")])).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/from/file"));
        assert_eq!(s.llm.model, "env-model");
    }

    #[test]
    fn env_sets_nested_and_top_level_keys() {
        let s = Settings::load(
            None,
            env(&[
                ("TUBESUM_DATA_DIR", "/tmp/x"),
                ("TUBESUM_YOUTUBE__FEED_URL", "http://127.0.0.1:1/f?c={channel_id}"),
                ("TUBESUM_STAGES__DOWNLOAD__WORKERS", "7"),
                ("TUBESUM_SERVER__API_TOKEN", "12345"),
                ("TUBESUM_DOWNLOAD__KEEP_MEDIA", "true"),
            ]),
        )
        .unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(s.youtube.feed_url, "http://127.0.0.1:1/f?c={channel_id}");
        assert_eq!(s.stages.workers(Stage::Download), 7);
        assert_eq!(s.server.api_token.unwrap().expose_secret(), "12345");
        assert!(s.download.keep_media);
    }

    #[test]
    fn unknown_keys_are_errors() {
        let err = Settings::load(None, env(&[("TUBESUM_LLM__BASEURL", "x")])).unwrap_err();
        assert!(err.to_string().contains("baseurl"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.toml");
        std::fs::write(&file, "[whisper]\nthreds = 2\n").unwrap();
        let err = Settings::load(Some(&file), env(&[])).unwrap_err();
        assert!(err.to_string().contains("threds"), "{err}");
    }

    #[test]
    fn bad_values_and_missing_files_are_errors() {
        assert!(Settings::load(None, env(&[("TUBESUM_DISCOVERY__MODE", "magic")])).is_err());
        assert!(Settings::load(None, env(&[("TUBESUM_YOUTUBE__VIDEO_URL", "http://x/")])).is_err());
        let err = Settings::load(Some(Path::new("/no/such.toml")), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    #[test]
    fn passwords_are_redacted_from_urls() {
        assert_eq!(redact_url("amqp://guest:guest@host:5672/%2f"), "amqp://guest:***@host:5672/%2f");
        assert_eq!(redact_url("postgres://postgres@127.0.0.1/db"), "postgres://postgres@127.0.0.1/db");
        assert_eq!(redact_url("mongodb://u:p@a:1,b:2/?x=1"), "mongodb://u:***@a:1,b:2/?x=1");
    }

    #[test]
    fn backends_default_to_embedded() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.backends, Backends::Embedded);
        let s = Settings::load(None, env(&[("TUBESUM_BACKENDS", "production")])).unwrap();
        assert_eq!(s.backends, Backends::Production);
    }

    #[test]
    fn ports_follow_backends_unless_overridden() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert_eq!(s.port_backends().store, Backends::Embedded);
        let s =
            Settings::load(None, env(&[("TUBESUM_BACKENDS", "production"), ("TUBESUM_PORTS__COMMANDS", "embedded")]))
                .unwrap();
        let ports = s.port_backends();
        assert_eq!(
            (ports.store, ports.artifacts, ports.commands, ports.events),
            (Backends::Production, Backends::Production, Backends::Embedded, Backends::Production)
        );
        assert!(Settings::load(None, env(&[("TUBESUM_PORTS__STORE", "oracle")])).is_err());
        let err = Settings::load(None, env(&[("TUBESUM_PORTS__EVENTS", "production")])).unwrap_err();
        assert!(err.to_string().contains("outbox"), "{err}");
        assert_eq!(s.event_log_path(), Some(s.data_dir.join("events.jsonl")));
        let s = Settings::load(None, env(&[("TUBESUM_EVENT_LOG__PATH", "")])).unwrap();
        assert_eq!(s.event_log_path(), None);
    }

    #[test]
    fn secrets_are_not_printed() {
        let s = Settings::load(None, env(&[("TUBESUM_LLM__API_KEY", "sk-very-secret")])).unwrap();
        assert!(!format!("{s:?}").contains("sk-very-secret"));
    }
}
