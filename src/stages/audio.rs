//! Audio extraction: ffmpeg turns whatever was downloaded (mp4/AAC, webm/Opus, m4a, …) into
//! 16 kHz mono 16-bit PCM WAV, the input whisper wants, at `media/{video_id}/audio.wav`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;

use super::media::MediaKind;
use super::{StageContext, StageError, StageResult, StageWork, process, video_of};
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
        let out = match MediaKind::Audio.local(&lock.video_dir()).await {
            // Extracted here already; stored for the other nodes unless it is there too.
            Some(out) => {
                if !lock.has_shared(MediaKind::Audio).await? {
                    lock.publish(MediaKind::Audio, &out).await?;
                }
                out
            }
            // Extracted on another node (a redelivered command).
            None if lock.has_shared(MediaKind::Audio).await? => lock.fetch(MediaKind::Audio).await?,
            None => self.extract(&lock).await?,
        };
        let seconds = wav_seconds(&out)?;
        // For media whose length yt-dlp did not know before the download.
        if let Some(reason) = self.ctx.settings.download.too_long(seconds) {
            return Err(StageError::Permanent(format!("{video_id}: {reason}")));
        }
        Ok(vec![DomainEvent::new(command.job_id, Some(video_id.clone()), EventPayload::AudioExtracted { seconds })])
    }
}

impl AudioExtraction {
    /// Extracts the audio of the locked video from its download (fetched when it is elsewhere)
    /// and stores it for the other nodes.
    async fn extract(&self, lock: &super::media::MediaLock) -> Result<PathBuf, StageError> {
        let source = lock.fetch(MediaKind::Source).await?;
        let out = audio_path(&lock.video_dir());
        let timeout = Duration::from_secs(self.ctx.settings.audio.timeout_secs)
            .min(self.ctx.settings.stages.timeout(Stage::AudioExtraction));
        extract(&self.ctx.settings.audio.ffmpeg, &source, &out, timeout).await?;
        lock.publish(MediaKind::Audio, &out).await?;
        Ok(out)
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

/// How far back from a window's end its cut may move to fall in a pause.
const CUT_SEARCH_SECS: u32 = 10;
/// The frame whose energy picks the cut: 100 ms.
const CUT_FRAME: usize = (SAMPLE_RATE / 10) as usize;

/// A 16 kHz mono 16-bit WAV read as f32 samples in [-1, 1], one window at a time, so memory stays
/// at one window however long the file. Each window but the last ends in the quietest 100 ms of
/// its last 10 s (a pause, mostly), so words are rarely cut in two; the rest starts the next one.
pub struct Windows {
    path: PathBuf,
    reader: hound::WavReader<std::io::BufReader<std::fs::File>>,
    window: usize,
    carry: Vec<f32>,
    /// Samples before the next window.
    position: usize,
}

/// A window of audio and where it starts in the file.
pub struct Window {
    pub start_secs: f64,
    pub samples: Vec<f32>,
}

impl Windows {
    pub fn open(path: &Path, window_secs: u32) -> Result<Self, StageError> {
        let reader = hound::WavReader::open(path)
            .map_err(|e| StageError::Permanent(format!("reading {}: {e}", path.display())))?;
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
        let window = (window_secs.max(2 * CUT_SEARCH_SECS) * SAMPLE_RATE) as usize;
        Ok(Self { path: path.to_owned(), reader, window, carry: Vec::new(), position: 0 })
    }

    fn read(&mut self, mut samples: Vec<f32>) -> Result<(Vec<f32>, bool), StageError> {
        let wanted = self.window - samples.len();
        samples.reserve(wanted);
        for sample in self.reader.samples::<i16>().take(wanted) {
            let sample = sample.map_err(|e| StageError::Permanent(format!("reading {}: {e}", self.path.display())))?;
            samples.push(f32::from(sample) / 32768.0);
        }
        let full = samples.len() == self.window;
        Ok((samples, full))
    }
}

impl Iterator for Windows {
    type Item = Result<Window, StageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let carry = std::mem::take(&mut self.carry);
        let (mut samples, full) = match self.read(carry) {
            Ok(read) => read,
            Err(e) => return Some(Err(e)),
        };
        if samples.is_empty() {
            return None;
        }
        if full {
            let cut = quietest_cut(&samples, (CUT_SEARCH_SECS * SAMPLE_RATE) as usize);
            self.carry = samples.split_off(cut);
        }
        let start_secs = self.position as f64 / f64::from(SAMPLE_RATE);
        self.position += samples.len();
        Some(Ok(Window { start_secs, samples }))
    }
}

/// Where to end a full window: the middle of the quietest 100 ms frame of its last `search` samples.
fn quietest_cut(samples: &[f32], search: usize) -> usize {
    let from = samples.len().saturating_sub(search);
    let energy = |frame: &[f32]| frame.iter().map(|s| s * s).sum::<f32>();
    samples[from..]
        .chunks_exact(CUT_FRAME)
        .enumerate()
        .min_by(|(_, a), (_, b)| energy(a).total_cmp(&energy(b)))
        .map_or(samples.len(), |(i, _)| from + i * CUT_FRAME + CUT_FRAME / 2)
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
        let samples: Vec<f32> = Windows::open(&out, 600).unwrap().flat_map(|w| w.unwrap().samples).collect();
        assert!((samples.len() as i64 - 32_000).abs() < 1_600);
        assert!(samples.iter().any(|s| s.abs() > 0.05));
    }

    /// 50 s of tone with a pause at 17.3 s and one at 33.1 s, read in 20 s windows.
    #[test]
    fn long_audio_is_read_in_windows_cut_in_its_pauses() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audio.wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: SAMPLE_RATE,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::create(&path, spec).unwrap();
        let rate = SAMPLE_RATE as usize;
        let in_pause = |i: usize| [17.3, 33.1].iter().any(|p| (i as f64 / rate as f64 - p).abs() < 0.1);
        for i in 0..50 * rate {
            let tone = ((i as f32 * 0.05).sin() * 8000.0) as i16;
            writer.write_sample(if in_pause(i) { 0 } else { tone }).unwrap();
        }
        writer.finalize().unwrap();

        let windows: Vec<Window> = Windows::open(&path, 20).unwrap().map(Result::unwrap).collect();
        let starts: Vec<f64> = windows.iter().map(|w| w.start_secs).collect();
        assert_eq!(starts.len(), 3, "{starts:?}");
        for (start, pause) in starts.iter().zip([0.0, 17.3, 33.1]) {
            assert!((start - pause).abs() <= 0.1, "cut in the pauses, not every 20 s: {starts:?}");
        }
        assert!(windows.iter().all(|w| w.samples.len() <= 20 * rate), "no window over its size");
        let total: usize = windows.iter().map(|w| w.samples.len()).sum();
        assert_eq!(total, 50 * rate, "every sample once");
        let cut = (starts[1] * rate as f64).round() as usize;
        assert_eq!(windows[1].samples[0], 0.0, "the next window starts in the pause (sample {cut})");
    }
}
