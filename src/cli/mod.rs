//! The command line (clap): `serve`, `summarize`, `demo`, `models fetch`, `models import-ct2`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::actors::Deps;
use crate::adapters::{EventPayload, EventStream};
use crate::app::{Application, shutdown_signal};
use crate::config::{Settings, TranscriptionBackend};
use crate::domain::{ChannelId, JobId, Stage};
use crate::models;
use crate::pipeline::Pipeline;
use crate::report;
use crate::standin::{self, StandIn};

#[derive(Debug, Parser)]
#[command(name = "tubesum", version, about = "Turns a YouTube channel into per-video transcripts and summaries.")]
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
        /// The channel id (UC…).
        channel_id: String,
        #[arg(long, default_value = "out")]
        out: PathBuf,
        /// Redo videos that earlier runs already summarized.
        #[arg(long)]
        force: bool,
    },
    /// Builds a small demo channel locally (espeak-ng speech, ffmpeg media), serves it on loopback
    /// and summarizes it: the whole pipeline, no internet.
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
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// Downloads a ggml model (e.g. tiny.en, base, small.en) and verifies its checksum.
    Fetch {
        name: String,
        #[arg(long, default_value = "models")]
        dir: PathBuf,
        #[arg(long, default_value = models::fetch::DEFAULT_BASE_URL)]
        base_url: String,
    },
    /// Converts a faster-whisper / CTranslate2 Whisper model directory into a ggml file.
    ImportCt2 { dir: PathBuf, out: PathBuf },
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
            let app = Application::build(settings, stages.0).await?;
            tracing::info!(address = %app.address(), "tubesum listening");
            eprintln!("tubesum listening on http://{} (ops console: /console)", app.address());
            app.run_until(shutdown_signal()).await
        }
        Command::Summarize { channel_id, out, force } => {
            let channel = ChannelId::parse(channel_id.trim())?;
            let settings = Settings::from_env(cli.config.as_deref())?;
            summarize_channel(settings, &channel, &out, force).await
        }
        Command::Demo { out } => demo(Settings::from_env(cli.config.as_deref())?, &out).await,
        Command::Bench(BenchCommand::Pipeline { videos }) => {
            let report = crate::bench::pipeline(Settings::from_env(cli.config.as_deref())?, videos).await?;
            print!("{report}");
            Ok(())
        }
        Command::Models(ModelsCommand::Fetch { name, dir, base_url }) => {
            let path = models::fetch::fetch(&name, &dir, &base_url).await?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Models(ModelsCommand::ImportCt2 { dir, out }) => {
            let report = tokio::task::spawn_blocking(move || models::ggml::import_ct2(&dir, &out).map(|r| (r, out)))
                .await
                .context("converter crashed")??;
            let (report, out) = report;
            println!(
                "{}: whisper {} model, {} tensors, {} vocabulary tokens, {} bytes",
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

/// Runs one channel through an in-process pipeline with progress bars, then writes Markdown.
pub async fn summarize_channel(settings: Settings, channel: &ChannelId, out: &Path, force: bool) -> anyhow::Result<()> {
    let deps = Deps::from_settings(settings).await?;
    let pipeline = Pipeline::start(deps, Stage::ALL.to_vec()).await?;
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
    let summarized = videos.iter().filter(|(v, _)| v.status == crate::domain::VideoStatus::Summarized).count();
    println!("job {}: {} — {summarized}/{} videos summarized", job.job_id, job.status, videos.len());
    if let Some(error) = &job.error {
        println!("  {error}");
    }
    for (video, _) in videos.iter().filter(|(v, _)| v.error.is_some()) {
        println!("  {} {}: {}", video.video_id, video.status, video.error.as_deref().unwrap_or(""));
    }
    println!("wrote {}", index.display());
    if job.status == crate::domain::JobStatus::Failed {
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
            EventPayload::VideoDownloaded { captions } => {
                bars[0].inc(1);
                if captions {
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

/// `tubesum demo`: a local channel made with espeak-ng and ffmpeg, served on loopback.
async fn demo(mut settings: Settings, out: &Path) -> anyhow::Result<()> {
    if settings.transcription.backend == TranscriptionBackend::Whisper && !settings.whisper.model.is_file() {
        bail!(
            "the whisper model {} is missing: run `tubesum models fetch tiny.en` (or `tubesum models import-ct2 DIR {}`), \
             or point whisper.model / TUBESUM_WHISPER__MODEL at a ggml model",
            settings.whisper.model.display(),
            settings.whisper.model.display()
        );
    }
    let media = tempfile::tempdir().context("creating a temporary directory")?;
    eprintln!("building the demo channel (espeak-ng + ffmpeg)…");
    let channel = standin::demo::demo_channel(media.path()).await?;
    let channel_id = ChannelId::parse(&channel.id)?;
    let server = StandIn::start(vec![channel]).await.context("starting the local YouTube stand-in")?;
    settings.youtube.feed_url = server.feed_url_template();
    settings.youtube.video_url = server.video_url_template();
    settings.youtube.channel_url = server.channel_url_template();
    eprintln!("serving the demo channel at {}", server.base_url());
    // Forced, so every run shows the whole pipeline rather than reusing earlier summaries.
    let result = summarize_channel(settings, &channel_id, out, true).await;
    let _ = server.shutdown().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

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
