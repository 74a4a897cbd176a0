//! Typed settings, layered: `config/default.toml` (compiled in) → an optional file → environment
//! (`TUBESUM_<SECTION>__<KEY>`). Unknown keys anywhere are an error.
//!
//! The sections belong to the layers that read them ([`crate::stages::settings`],
//! [`crate::adapters::settings`]); this module composes, loads and validates them, and hands each
//! layer its own part ([`Settings::stage_settings`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::Value;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::actors::subscriptions::SubscriptionSettings;
use crate::adapters::settings::{AmqpSettings, DatabaseSettings, KafkaSettings, MongoSettings, WebhookSettings};
use crate::stages::settings::{
    AudioSettings, Ctranslate2Settings, DiscoverySettings, DownloadSettings, LlmSettings, OpenAiTranscriptionSettings,
    StageSettings, StagesSettings, SummarySettings, TranscriptionSettings, WhisperSettings, YoutubeSettings,
};

pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");
pub const ENV_PREFIX: &str = "TUBESUM_";
/// Variables under [`ENV_PREFIX`] that are not settings: the log filter (read by the telemetry).
const NOT_SETTINGS: &[&str] = &["TUBESUM_LOG"];

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
    pub ctranslate2: Ctranslate2Settings,
    pub openai_transcription: OpenAiTranscriptionSettings,
    pub llm: LlmSettings,
    pub summary: SummarySettings,
    pub stages: StagesSettings,
    pub database: DatabaseSettings,
    pub mongodb: MongoSettings,
    pub amqp: AmqpSettings,
    pub kafka: KafkaSettings,
    pub cluster: ClusterSettings,
    pub subscriptions: SubscriptionSettings,
    pub webhooks: WebhookSettings,
}

/// How this process names itself among the deployment's nodes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// Stable across restarts, unique among the nodes (empty: `{hostname}/{pid}`, new each start).
    pub node_name: String,
    /// Where this node's ractor_cluster server listens (`0.0.0.0:7100`); empty: not clustered.
    pub listen: String,
    /// The address the other nodes dial (`host:port`); empty: `listen` (this host's name when it
    /// listens on every interface).
    pub advertise: String,
    /// The secret every node of the cluster shares; required with `listen`.
    pub cookie: secrecy::SecretString,
    /// PEM files for TLS on the cluster port (all three, or none: plain TCP): the CA that signs
    /// every node's certificate, and this node's certificate chain and private key. Each node
    /// proves itself to the other with its certificate (mutual TLS).
    pub tls_ca: String,
    pub tls_cert: String,
    pub tls_key: String,
}

impl ClusterSettings {
    /// Whether the cluster port speaks TLS.
    pub fn tls(&self) -> bool {
        !self.tls_cert.is_empty()
    }
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

    /// The stage work's part of the settings.
    pub fn stage_settings(&self) -> StageSettings {
        StageSettings {
            media_dir: self.media_dir(),
            youtube: self.youtube.clone(),
            discovery: self.discovery.clone(),
            download: self.download.clone(),
            audio: self.audio.clone(),
            transcription: self.transcription.clone(),
            whisper: self.whisper.clone(),
            ctranslate2: self.ctranslate2.clone(),
            openai_transcription: self.openai_transcription.clone(),
            llm: self.llm.clone(),
            summary: self.summary.clone(),
            stages: self.stages.clone(),
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
pub struct ServerSettings {
    pub listen: SocketAddr,
    #[serde(default)]
    pub api_token: Option<SecretString>,
    pub max_body_bytes: usize,
    /// Serve without a token on an address other than loopback: refused unless this says so.
    pub allow_unauthenticated: bool,
    /// The longest text `POST /summarize-text` takes, in characters (bounds its LLM calls).
    pub summarize_text_max_chars: usize,
    /// `POST /summarize-text` requests served at once; more get 429.
    pub summarize_text_concurrency: usize,
    /// Events kept for live views to resume from (`Last-Event-ID` of `GET /events`,
    /// `GET /jobs/{id}/events`); about 1 KB each.
    pub event_history: usize,
    /// How often a live view with nothing to send sends a keep-alive comment, in milliseconds.
    pub events_keep_alive_ms: u64,
}

impl ServerSettings {
    /// Refuses to serve an open API beyond this machine: listening on a non-loopback address
    /// needs `api_token`, or `allow_unauthenticated = true` said on purpose.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        if self.api_token.is_some() || self.listen.ip().is_loopback() || self.allow_unauthenticated {
            return Ok(());
        }
        Err(ConfigError::Rule(format!(
            "refusing to serve {} without a token: anyone who reaches it could submit and cancel jobs. \
             Set server.api_token (TUBESUM_SERVER__API_TOKEN), listen on 127.0.0.1, or set \
             server.allow_unauthenticated = true (TUBESUM_SERVER__ALLOW_UNAUTHENTICATED) if a proxy in \
             front authenticates",
            self.listen
        )))
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
            let Some(key) = name.strip_prefix(ENV_PREFIX).filter(|_| !NOT_SETTINGS.contains(&name.as_str())) else {
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
        rule(
            self.discovery.mode != crate::stages::settings::DiscoveryMode::DataApi
                || self.youtube.api_key.as_ref().is_some_and(|k| !k.expose_secret().trim().is_empty()),
            "discovery.mode = \"data_api\" needs youtube.api_key (set TUBESUM_YOUTUBE__API_KEY)",
        )?;
        rule(self.stages.max_attempts >= 1, "stages.max_attempts must be at least 1")?;
        rule(!self.cluster.node_name.contains('#'), "cluster.node_name must not contain '#'")?;
        let tls = [&self.cluster.tls_ca, &self.cluster.tls_cert, &self.cluster.tls_key];
        rule(
            tls.iter().all(|f| f.is_empty()) || tls.iter().all(|f| !f.is_empty()),
            "cluster.tls_ca, cluster.tls_cert and cluster.tls_key go together: set all three, or none",
        )?;
        rule(
            self.cluster.listen.is_empty() || !secrecy::ExposeSecret::expose_secret(&self.cluster.cookie).is_empty(),
            "cluster.cookie must be set when cluster.listen is (the secret every node shares)",
        )?;
        rule(
            self.cluster.listen.is_empty() || self.cluster.listen.parse::<std::net::SocketAddr>().is_ok(),
            "cluster.listen must be an address such as 0.0.0.0:7100",
        )?;
        rule(self.whisper.threads >= 1, "whisper.threads must be at least 1")?;
        rule(self.ctranslate2.threads >= 1, "ctranslate2.threads must be at least 1")?;
        rule(
            (0.0..=1.0).contains(&self.ctranslate2.no_speech_threshold),
            "ctranslate2.no_speech_threshold must be between 0 and 1",
        )?;
        rule(self.llm.max_chunk_tokens >= 200, "llm.max_chunk_tokens must be at least 200")?;
        rule(
            (0.0..=1.0).contains(&self.whisper.no_speech_threshold),
            "whisper.no_speech_threshold must be between 0 and 1",
        )?;
        rule(
            self.server.api_token.as_ref().is_none_or(|t| !t.expose_secret().trim().is_empty()),
            "server.api_token must not be empty (leave it unset to serve without authentication on loopback)",
        )?;
        rule(self.server.summarize_text_concurrency >= 1, "server.summarize_text_concurrency must be at least 1")?;
        rule(self.server.event_history >= 1, "server.event_history must be at least 1")?;
        rule(self.server.events_keep_alive_ms >= 10, "server.events_keep_alive_ms must be at least 10")?;
        rule(self.webhooks.max_attempts >= 1, "webhooks.max_attempts must be at least 1")?;
        rule(self.webhooks.concurrency >= 1, "webhooks.concurrency must be at least 1")?;
        rule(self.webhooks.timeout_secs >= 1, "webhooks.timeout_secs must be at least 1")?;
        rule(self.webhooks.backoff_initial_ms >= 1, "webhooks.backoff_initial_ms must be at least 1")?;
        rule(self.webhooks.poll_interval_ms >= 10, "webhooks.poll_interval_ms must be at least 10")?;
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
    use crate::domain::Stage;
    use crate::stages::settings::{Ct2ComputeType, TranscriptionBackend};
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
        // Local Whisper on CTranslate2 in int8, faster-whisper's CPU default.
        assert_eq!(s.transcription.backend, TranscriptionBackend::Ctranslate2);
        assert_eq!(s.ctranslate2.compute_type, Ct2ComputeType::Int8);
        assert_eq!(s.ctranslate2.model, PathBuf::from("./models/ct2-tiny.en"));
    }

    #[test]
    fn ctranslate2_settings_are_spelled_as_ctranslate2_names_them() {
        let s = Settings::load(
            None,
            env(&[
                ("TUBESUM_CTRANSLATE2__COMPUTE_TYPE", "int8_float32"),
                ("TUBESUM_TRANSCRIPTION__BACKEND", "whisper"),
            ]),
        )
        .unwrap();
        assert_eq!(s.ctranslate2.compute_type, Ct2ComputeType::Int8Float32);
        assert_eq!(s.ctranslate2.compute_type.name(), "int8_float32");
        assert_eq!(s.transcription.backend, TranscriptionBackend::Whisper);
        assert!(Settings::load(None, env(&[("TUBESUM_CTRANSLATE2__COMPUTE_TYPE", "float16")])).is_err());
        let err = Settings::load(None, env(&[("TUBESUM_CTRANSLATE2__THREADS", "0")])).unwrap_err();
        assert!(err.to_string().contains("ctranslate2.threads"), "{err}");
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

    /// The log filter shares the prefix; it is not a setting and must not be refused as one.
    #[test]
    fn the_log_filter_is_not_read_as_a_setting() {
        let s = Settings::load(None, env(&[("TUBESUM_LOG", "debug"), ("TUBESUM_DATA_DIR", "/tmp/y")])).unwrap();
        assert_eq!(s.data_dir, PathBuf::from("/tmp/y"));
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
        let keyless = Settings::load(None, env(&[("TUBESUM_DISCOVERY__MODE", "data_api")])).unwrap_err();
        assert!(keyless.to_string().contains("youtube.api_key"), "{keyless}");
        let keyed = env(&[("TUBESUM_DISCOVERY__MODE", "data_api"), ("TUBESUM_YOUTUBE__API_KEY", "AIza-secret")]);
        let s = Settings::load(None, keyed).unwrap();
        assert!(!format!("{s:?}").contains("AIza-secret"), "the key is a secret");
        let err = Settings::load(Some(Path::new("/no/such.toml")), env(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
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

    #[test]
    fn an_open_api_is_served_on_loopback_only_unless_said_so() {
        let load = |pairs: &[(&str, &str)]| Settings::load(None, env(pairs)).unwrap().server;
        assert!(load(&[]).check_exposure().is_ok(), "127.0.0.1 by default");
        let open = load(&[("TUBESUM_SERVER__LISTEN", "0.0.0.0:8080")]);
        let err = open.check_exposure().unwrap_err().to_string();
        assert!(err.contains("server.api_token") && err.contains("server.allow_unauthenticated"), "{err}");
        let with_token = [("TUBESUM_SERVER__LISTEN", "0.0.0.0:8080"), ("TUBESUM_SERVER__API_TOKEN", "t0ken")];
        assert!(load(&with_token).check_exposure().is_ok());
        let on_purpose = [("TUBESUM_SERVER__LISTEN", "[::]:8080"), ("TUBESUM_SERVER__ALLOW_UNAUTHENTICATED", "true")];
        assert!(load(&on_purpose).check_exposure().is_ok());
        assert!(load(&[("TUBESUM_SERVER__LISTEN", "[::1]:8080")]).check_exposure().is_ok());
    }

    #[test]
    fn webhooks_refuse_private_addresses_unless_told_and_retry_within_bounds() {
        let s = Settings::load(None, env(&[])).unwrap();
        assert!(!s.webhooks.allow_private_addresses, "private addresses are refused by default");
        assert!(s.webhooks.max_attempts > 1 && s.webhooks.concurrency >= 1);
        let s = Settings::load(None, env(&[("TUBESUM_WEBHOOKS__ALLOW_PRIVATE_ADDRESSES", "true")])).unwrap();
        assert!(s.webhooks.allow_private_addresses);
        let err = Settings::load(None, env(&[("TUBESUM_WEBHOOKS__MAX_ATTEMPTS", "0")])).unwrap_err();
        assert!(err.to_string().contains("webhooks.max_attempts"), "{err}");
    }

    #[test]
    fn an_empty_token_is_refused() {
        for token in ["", "  "] {
            let err = Settings::load(None, env(&[("TUBESUM_SERVER__API_TOKEN", token)])).unwrap_err();
            assert!(err.to_string().contains("server.api_token must not be empty"), "{err}");
        }
    }
}
