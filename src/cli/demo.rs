//! `tubesum demo` (the `demo` feature): a small channel made locally with espeak-ng and ffmpeg,
//! served on loopback by the YouTube stand-in, summarized end to end. No internet.

use std::path::Path;

use anyhow::{Context, bail};
use youtube_standin::StandIn;

use super::summarize::summarize_channel;
use crate::app::Settings;
use crate::domain::ChannelId;
use crate::stages::settings::TranscriptionBackend;

/// `tubesum demo`: a local channel made with espeak-ng and ffmpeg, served on loopback.
pub async fn run(mut settings: Settings, out: &Path) -> anyhow::Result<()> {
    let ct2 = &settings.ctranslate2.model;
    if settings.transcription.backend == TranscriptionBackend::Ctranslate2 && !ct2.join("model.bin").is_file() {
        bail!(
            "the CTranslate2 Whisper model is missing at {}: run scripts/setup.sh (it installs \
             faster-whisper tiny.en there), or point ctranslate2.model / TUBESUM_CTRANSLATE2__MODEL at a \
             faster-whisper model directory",
            ct2.display()
        );
    }
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
    let channel = youtube_standin::demo::demo_channel(media.path()).await?;
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
