//! Audio extraction: ffmpeg turns whatever was downloaded (mp4/AAC, webm/Opus, m4a, …) into
//! 16 kHz mono 16-bit PCM WAV, the input whisper wants, at `media/{video_id}/audio.wav`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::{StageContext, StageError, StageResult, StageWork, download::source_file, process, video_of};
use crate::domain::{DomainEvent, EventPayload, Stage, StageCommand};

pub const SAMPLE_RATE: u32 = 16_000;

pub struct AudioExtraction {
    ctx: StageContext,
}

impl AudioExtraction {
    pub fn new(ctx: StageContext) -> Self {
        Self { ctx }
    }
}

/// The extracted audio of a video.
pub fn audio_path(video_dir: &Path) -> PathBuf {
    video_dir.join("audio.wav")
}

#[async_trait]
impl StageWork for AudioExtraction {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let video_id = video_of(command)?;
        let lock = self.ctx.media.lock(video_id).await?;
        let dir = lock.video_dir();
        let out = audio_path(&dir);
        if !out.exists() {
            let source = source_file(&dir).await.ok_or_else(|| {
                StageError::Permanent(format!("no downloaded media for {video_id} in {}", dir.display()))
            })?;
            let timeout = Duration::from_secs(self.ctx.settings.audio.timeout_secs)
                .min(self.ctx.settings.stages.timeout(Stage::AudioExtraction));
            extract(&self.ctx.settings.audio.ffmpeg, &source, &out, timeout).await?;
        }
        let seconds = wav_seconds(&out)?;
        // For media whose length yt-dlp did not know before the download.
        if let Some(reason) = self.ctx.settings.download.too_long(seconds) {
            return Err(StageError::Permanent(format!("{video_id}: {reason}")));
        }
        Ok(vec![DomainEvent::new(command.job_id, Some(video_id.clone()), EventPayload::AudioExtracted { seconds })])
    }
}

/// Runs ffmpeg into a temporary file and renames it into place, so `out` is always complete.
pub async fn extract(ffmpeg: &Path, source: &Path, out: &Path, timeout: Duration) -> Result<(), StageError> {
    let tmp = out.with_extension("wav.tmp");
    let rate = SAMPLE_RATE.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "-nostdin".as_ref(),
        "-hide_banner".as_ref(),
        "-loglevel".as_ref(),
        "error".as_ref(),
        "-y".as_ref(),
        "-i".as_ref(),
        source.as_os_str(),
        "-vn".as_ref(),
        "-ac".as_ref(),
        "1".as_ref(),
        "-ar".as_ref(),
        rate.as_ref(),
        "-c:a".as_ref(),
        "pcm_s16le".as_ref(),
        "-f".as_ref(),
        "wav".as_ref(),
        tmp.as_os_str(),
    ];
    let result = process::run(ffmpeg, args, timeout).await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(match e {
            process::ProcessError::Failed { .. } => StageError::Permanent(format!(
                "ffmpeg could not extract audio from {}: {e}",
                source.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
            )),
            process::ProcessError::NotFound { .. } => StageError::Permanent(e.to_string()),
            process::ProcessError::TimedOut { .. } => StageError::Retryable(e.to_string()),
        });
    }
    tokio::fs::rename(&tmp, out).await.map_err(|e| StageError::Retryable(format!("moving audio into place: {e}")))
}

/// The duration of a WAV file, from its header.
pub fn wav_seconds(path: &Path) -> Result<f64, StageError> {
    let reader =
        hound::WavReader::open(path).map_err(|e| StageError::Permanent(format!("reading {}: {e}", path.display())))?;
    let spec = reader.spec();
    Ok(f64::from(reader.duration()) / f64::from(spec.sample_rate))
}

/// Reads a 16 kHz mono 16-bit WAV as f32 samples in [-1, 1].
pub fn read_samples(path: &Path) -> Result<Vec<f32>, StageError> {
    let mut reader =
        hound::WavReader::open(path).map_err(|e| StageError::Permanent(format!("reading {}: {e}", path.display())))?;
    let spec = reader.spec();
    if spec.channels != 1 || spec.sample_rate != SAMPLE_RATE || spec.bits_per_sample != 16 {
        return Err(StageError::Permanent(format!(
            "{} is not 16 kHz mono 16-bit audio ({} Hz, {} channels, {} bits)",
            path.display(),
            spec.sample_rate,
            spec.channels,
            spec.bits_per_sample
        )));
    }
    reader
        .samples::<i16>()
        .map(|s| s.map(|v| f32::from(v) / 32768.0))
        .collect::<Result<_, _>>()
        .map_err(|e| StageError::Permanent(format!("reading {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn garbage_input_is_a_permanent_error_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("source.mp4");
        std::fs::write(&src, b"this is not a media file at all").unwrap();
        let out = dir.path().join("audio.wav");
        let err = extract(Path::new("ffmpeg"), &src, &out, Duration::from_secs(60)).await.unwrap_err();
        assert!(!err.is_retryable());
        assert!(err.to_string().contains("ffmpeg could not extract audio"), "{err}");
        assert!(!out.exists());
        assert!(!out.with_extension("wav.tmp").exists());
    }

    #[tokio::test]
    async fn a_generated_tone_becomes_16k_mono_wav() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("source.webm");
        let status = tokio::process::Command::new("ffmpeg")
            .args([
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=2",
                "-ac",
                "2",
                "-ar",
                "48000",
                "-c:a",
                "libopus",
            ])
            .arg(&src)
            .status()
            .await
            .expect("ffmpeg is installed");
        assert!(status.success());
        let out = dir.path().join("audio.wav");
        extract(Path::new("ffmpeg"), &src, &out, Duration::from_secs(60)).await.unwrap();
        let seconds = wav_seconds(&out).unwrap();
        assert!((seconds - 2.0).abs() < 0.1, "{seconds}");
        let samples = read_samples(&out).unwrap();
        assert!((samples.len() as i64 - 32_000).abs() < 1_600);
        assert!(samples.iter().any(|s| s.abs() > 0.05));
    }
}
