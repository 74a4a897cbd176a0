//! The command line (clap): `serve`, `summarize`, `search`, `watch`, `demo` (with the `demo` feature), `models fetch`,
//! `models import-ct2`, `bench pipeline`. The top layer: it reads the settings and drives the
//! HTTP application ([`crate::api`]) or an in-process pipeline ([`crate::app`]).

pub mod bench;
#[cfg(feature = "demo")]
pub mod demo;
pub mod report;
pub mod search;
pub mod summarize;
pub mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use whisper_models::ggml::WeightType;

use crate::api::Application;
use crate::app::{Settings, shutdown_signal};
use crate::domain::Stage;

#[derive(Debug, Parser)]
#[command(name = "tubesum", version = version(), about = "Turns a YouTube channel into per-video transcripts and summaries.")]
pub struct Cli {
    /// A TOML file layered over config/default.toml (environment variables TUBESUM_* override both).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Runs the HTTP API and the pipeline.
    Serve {
        /// Address to listen on (default: server.listen, 127.0.0.1:8080).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The stage pools this process runs: `all` (default), `none` (API only), or a list such
        /// as `transcription,summarization`. Processes sharing production backends split the work.
        #[arg(long, default_value = "all", value_parser = parse_stages)]
        stages: StageSet,
    },
    /// Summarizes one channel in-process and writes Markdown (a file per video and an index).
    Summarize {
        /// The channel: its id (UC…), its URL, or its handle (@name).
        channel_id: String,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Redo videos that earlier runs already summarized.
        #[arg(long)]
        force: bool,
    },
    /// Searches every transcript and summary (the job store's index): ranked passages with a
    /// snippet and a link to their moment. `--reindex` files what is already stored in the index
    /// again first (for data stored before the index existed).
    Search {
        /// Words (stemmed), "a phrase", -excluded.
        #[arg(required_unless_present = "reindex")]
        query: Option<String>,
        /// Only this channel's videos: its id, URL or @handle.
        #[arg(long)]
        channel: Option<String>,
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        #[arg(long)]
        reindex: bool,
    },
    /// Watches a channel for new uploads: subscribes to it in the configured store (an existing
    /// subscription is kept), then runs the pipeline here, summarizing each new upload its feed
    /// shows, until Ctrl-C. `tubesum serve` polls the store's subscriptions as well.
    Watch {
        /// The channel: its id (UC…), its URL, or its handle (@name).
        channel: String,
        /// Seconds between polls (default: subscriptions.default_interval_secs).
        #[arg(long)]
        interval: Option<u64>,
        /// Summarize the uploads already in the feed too (default: only those that appear later).
        #[arg(long)]
        backfill: bool,
        /// Only record the subscription (a running `tubesum serve` on the same store polls it).
        #[arg(long)]
        add_only: bool,
    },
    /// Builds a small demo channel locally (espeak-ng speech, ffmpeg media), serves it on loopback
    /// and summarizes it: the whole pipeline, no internet.
    #[cfg(feature = "demo")]
    Demo {
        #[arg(long, default_value = "out/demo")]
        out: PathBuf,
    },
    /// Whisper models.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// N videos with instant stage work through the real actor tree and the configured backends
    /// (`backends`): videos/s, stage transitions/s and p50/p99 stage latency.
    Pipeline {
        #[arg(long, default_value_t = 200)]
        videos: usize,
        /// Workers of each video stage's pool (default: as configured). With instant stage work
        /// a pool of 2 is bound by its round trips' latency; more workers measure capacity.
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Takeover after `kill -9` of a job's node: N `tubesum serve` processes on the configured
    /// PostgreSQL, as a ractor_cluster cluster and as plain processes side by side; p50/p95 over
    /// repeated kills.
    Cluster {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        #[arg(long, default_value_t = 10)]
        kills: usize,
        #[arg(long, default_value_t = 6)]
        lease_secs: u64,
    },
    /// `GET /jobs/{id}` of a finished job of N videos under wrk: the whole page, and revalidation
    /// with its ETag.
    Api {
        #[arg(long, default_value_t = 1000)]
        videos: usize,
        #[arg(long, default_value_t = 2)]
        threads: u32,
        #[arg(long, default_value_t = 16)]
        connections: u32,
        #[arg(long, default_value_t = 10)]
        seconds: u32,
    },
    /// Speed (times real time) and word error rate of the configured transcription engine on
    /// audio files (`talk.txt` beside `talk.mp3` is its reference text), or on the stand-in's
    /// espeak-ng speech when none are named. With `--minutes`: the peak memory of the configured
    /// local engine on generated audio of each length instead.
    Transcription {
        /// Audio or video files (anything ffmpeg reads).
        files: Vec<PathBuf>,
        /// Files transcribed at once (as the transcription pool's workers do).
        #[arg(long, default_value_t = 1)]
        workers: usize,
        /// Also print what was heard in each file.
        #[arg(long)]
        text: bool,
        /// Leave the audio as transcribed in this directory (16 kHz mono WAV, each with its
        /// reference text as .txt), to measure another engine on the same input.
        #[arg(long)]
        keep_audio: Option<PathBuf>,
        /// Measure peak memory on generated audio of this many minutes (repeatable).
        #[arg(long = "minutes", conflicts_with_all = ["files", "workers", "text", "keep_audio"])]
        minutes: Vec<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Downloads a ggml model (e.g. tiny.en, base, small.en) and verifies its checksum.
    Fetch {
        name: String,
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        #[arg(long, default_value = whisper_models::fetch::DEFAULT_BASE_URL)]
        base_url: String,
    },
    /// Converts a faster-whisper / CTranslate2 Whisper model directory into a ggml file.
    ImportCt2 {
        dir: PathBuf,
        out: PathBuf,
        /// How the weight matrices are stored: f16 (as whisper.cpp's converter writes), or
        /// quantized as whisper.cpp's `quantize` tool would: q8_0 (8.5 bits a weight; tiny.en
        /// 44 MB instead of 78) or q5_1 (6 bits a weight; tiny.en 32 MB).
        #[arg(long, value_enum, default_value_t = Quantize::F16)]
        quantize: Quantize,
    },
}

/// `models import-ct2 --quantize`: whisper.cpp's names for the weight types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Quantize {
    #[value(name = "f16")]
    F16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q5_1")]
    Q5_1,
}

impl From<Quantize> for WeightType {
    fn from(q: Quantize) -> Self {
        match q {
            Quantize::F16 => Self::F16,
            Quantize::Q8_0 => Self::Q8_0,
            Quantize::Q5_1 => Self::Q5_1,
        }
    }
}

/// `tubesum --version`: the version and what this build carries (its cargo features).
fn version() -> &'static str {
    static VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let carried = [
            ("postgres", cfg!(feature = "postgres")),
            ("rabbitmq", cfg!(feature = "rabbitmq")),
            ("kafka", cfg!(feature = "kafka")),
            ("mongodb", cfg!(feature = "mongodb")),
        ];
        let backends: Vec<&str> =
            std::iter::once("embedded").chain(carried.iter().filter(|(_, on)| *on).map(|(name, _)| *name)).collect();
        let engines: Vec<&str> =
            [("CTranslate2", cfg!(feature = "ctranslate2")), ("whisper.cpp", cfg!(feature = "whisper"))]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(name, _)| *name)
                .collect();
        let whisper = if engines.is_empty() {
            "no local whisper".to_owned()
        } else {
            format!("local whisper: {}", engines.join(", "))
        };
        format!("{} (backends: {}; {whisper})", env!("CARGO_PKG_VERSION"), backends.join(", "))
    });
    &VERSION
}

/// The stage pools a process runs.
#[derive(Debug, Clone)]
pub struct StageSet(pub Vec<Stage>);

fn parse_stages(raw: &str) -> Result<StageSet, String> {
    match raw.trim() {
        "all" => Ok(StageSet(Stage::ALL.to_vec())),
        "none" => Ok(StageSet(Vec::new())),
        list => {
            let mut stages = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let stage: Stage = name.parse().map_err(|_| {
                    let known: Vec<&str> = Stage::ALL.iter().map(|s| s.as_str()).collect();
                    format!("unknown stage {name:?}; stages are {}, or all / none", known.join(", "))
                })?;
                if !stages.contains(&stage) {
                    stages.push(stage);
                }
            }
            Ok(StageSet(stages))
        }
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { listen, stages } => {
            let mut settings = Settings::from_env(cli.config.as_deref())?;
            if let Some(listen) = listen {
                settings.server.listen = listen;
            }
            settings.server.check_exposure()?;
            let app = Application::build(settings, stages.0).await?;
            tracing::info!(address = %app.address(), "tubesum listening");
            eprintln!("tubesum listening on http://{} (ops console: /console)", app.address());
            app.run_until(shutdown_signal()).await
        }
        Command::Summarize { channel_id, out, force } => {
            let settings = Settings::from_env(cli.config.as_deref())?;
            let channel = crate::app::resolve_channel(&settings.youtube, &channel_id).await?;
            summarize::summarize_channel(settings, &channel, &out, force).await
        }
        Command::Search { query, channel, limit, reindex } => {
            let settings = Settings::from_env(cli.config.as_deref())?;
            let channel = match channel {
                Some(raw) => Some(crate::app::resolve_channel(&settings.youtube, &raw).await?),
                None => None,
            };
            search::run(settings, query.as_deref(), channel, limit, reindex).await
        }
        Command::Watch { channel, interval, backfill, add_only } => {
            let settings = Settings::from_env(cli.config.as_deref())?;
            watch::run(settings, watch::Watch { channel, interval_secs: interval, backfill, add_only }).await
        }
        #[cfg(feature = "demo")]
        Command::Demo { out } => demo::run(Settings::from_env(cli.config.as_deref())?, &out).await,
        Command::Bench(BenchCommand::Pipeline { videos, workers }) => {
            let mut settings = Settings::from_env(cli.config.as_deref())?;
            if let Some(workers) = workers {
                settings.stages.set_video_workers(workers);
            }
            let report = bench::pipeline(settings, videos).await?;
            print!("{report}");
            Ok(())
        }
        Command::Bench(BenchCommand::Api { videos, threads, connections, seconds }) => {
            let load = bench::api::Load { threads, connections, seconds };
            print!("{}", bench::api::api(Settings::from_env(cli.config.as_deref())?, videos, load).await?);
            Ok(())
        }
        Command::Bench(BenchCommand::Cluster { nodes, kills, lease_secs }) => {
            let settings = Settings::from_env(cli.config.as_deref())?;
            let plan = bench::cluster::Plan { nodes, kills, lease: std::time::Duration::from_secs(lease_secs) };
            print!("{}", bench::cluster::cluster(settings, cli.config.as_deref(), plan).await?);
            Ok(())
        }
        Command::Bench(BenchCommand::Transcription { files, workers, text, keep_audio, minutes }) => {
            let settings = Settings::from_env(cli.config.as_deref())?;
            if minutes.is_empty() {
                let run = bench::transcription::SpeedRun { files, workers, keep_audio };
                let speed = bench::transcription::speed(settings, &run).await?;
                print!("{speed}");
                if text {
                    for file in &speed.files {
                        println!("\n{}: {}", file.name, file.text);
                    }
                }
            } else {
                bench::transcription::print(&bench::transcription::transcription(settings, &minutes).await?);
            }
            Ok(())
        }
        Command::Models(ModelsCommand::Fetch { name, dir, base_url }) => {
            let path = whisper_models::fetch::fetch(&name, &dir, &base_url).await?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Models(ModelsCommand::ImportCt2 { dir, out, quantize }) => {
            let weights = WeightType::from(quantize);
            let report = tokio::task::spawn_blocking(move || {
                whisper_models::ggml::import_ct2(&dir, &out, weights).map(|r| (r, out))
            })
            .await
            .context("converter crashed")??;
            let (report, out) = report;
            let quantized = match report.n_quantized {
                0 => String::new(),
                n => format!(" ({n} in {})", report.weights),
            };
            println!(
                "{}: whisper {} model, {} tensors{quantized}, {} vocabulary tokens, {} bytes",
                out.display(),
                report.model_type,
                report.n_tensors,
                report.n_vocab,
                report.bytes_written
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ct2_takes_whisper_cpps_quantization_names() {
        let parse = |args: &[&str]| {
            let argv = ["tubesum", "models", "import-ct2", "dir", "out.bin"].iter().chain(args);
            match Cli::try_parse_from(argv).map(|cli| cli.command) {
                Ok(Command::Models(ModelsCommand::ImportCt2 { quantize, .. })) => Ok(WeightType::from(quantize)),
                Ok(other) => panic!("parsed as {other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(parse(&[]), Ok(WeightType::F16));
        for w in WeightType::ALL {
            assert_eq!(parse(&["--quantize", w.as_str()]), Ok(w));
        }
        let err = parse(&["--quantize", "q4_0"]).unwrap_err();
        assert!(err.contains("f16, q8_0, q5_1"), "{err}");
    }

    #[test]
    fn stage_sets_parse() {
        assert_eq!(parse_stages("all").unwrap().0, Stage::ALL.to_vec());
        assert!(parse_stages("none").unwrap().0.is_empty());
        assert_eq!(
            parse_stages("transcription, summarization,transcription").unwrap().0,
            vec![Stage::Transcription, Stage::Summarization]
        );
        let err = parse_stages("download,upload").unwrap_err();
        assert!(err.contains("upload") && err.contains("audio_extraction"), "{err}");
    }
}
