//! `tubesum bench transcription --minutes 10 --minutes 120`: the peak memory of transcribing
//! audio of each length with local whisper, to show it does not grow with the length. Each file is
//! 16 kHz mono WAV: five minutes of tone (one transcription window, decoded by whisper like
//! speech) and silence after it (read window by window, and skipped as silent), so every length
//! decodes the same and differs only in how much is read. Peak RSS is the process's high-water mark
//! (`VmHWM`), reset before each length once the model is loaded.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::app::Settings;
use crate::stages::audio::SAMPLE_RATE;
use crate::stages::transcription::whisper_recognizer;

/// One length's figures.
#[derive(Debug)]
pub struct Run {
    pub minutes: u32,
    /// What reading the whole file as f32 samples would hold.
    pub whole_file_mb: f64,
    pub peak_rss_mb: f64,
    pub segments: usize,
    pub elapsed: Duration,
}

pub async fn transcription(settings: Settings, minutes: &[u32]) -> anyhow::Result<Vec<Run>> {
    let recognizer = whisper_recognizer(&settings.stage_settings()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let dir = tempfile::tempdir()?;
    // Loads the model (a silent file is not decoded), so each length is measured with it loaded.
    let warm_up = dir.path().join("warm-up.wav");
    write_test_audio(&warm_up, 0, 1)?;
    recognizer.transcribe(&warm_up).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut runs = Vec::new();
    for &length in minutes {
        let wav = dir.path().join(format!("{length}min.wav"));
        write_test_audio(&wav, TONE_SECS, length * 60).with_context(|| format!("writing {}", wav.display()))?;
        reset_peak_rss()?;
        let started = Instant::now();
        let recognized = recognizer.transcribe(&wav).await.map_err(|e| anyhow::anyhow!("{e}"))?;
        runs.push(Run {
            minutes: length,
            whole_file_mb: f64::from(length) * 60.0 * f64::from(SAMPLE_RATE) * 4.0 / 1e6,
            peak_rss_mb: peak_rss_kb()? as f64 / 1024.0,
            segments: recognized.segments.len(),
            elapsed: started.elapsed(),
        });
        std::fs::remove_file(&wav)?;
    }
    Ok(runs)
}

pub fn print(runs: &[Run]) {
    println!("| audio | as f32 whole | peak RSS | segments | time |");
    println!("|---|---|---|---|---|");
    for run in runs {
        println!(
            "| {} min | {:.0} MB | {:.0} MB | {} | {:.1} s |",
            run.minutes,
            run.whole_file_mb,
            run.peak_rss_mb,
            run.segments,
            run.elapsed.as_secs_f64()
        );
    }
}

/// Tone at the start of every file: one whole transcription window.
const TONE_SECS: u32 = 300;

/// `seconds` of 16-bit mono 16 kHz audio: a 440 Hz tone for the first `tone_secs`, silence after.
fn write_test_audio(path: &Path, tone_secs: u32, seconds: u32) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec)?;
    let tone_samples = tone_secs * SAMPLE_RATE;
    let step = 2.0 * std::f32::consts::PI * 440.0 / SAMPLE_RATE as f32;
    for i in 0..seconds * SAMPLE_RATE {
        let sample = if i < tone_samples { ((i as f32 * step).sin() * 6000.0) as i16 } else { 0 };
        writer.write_sample(sample)?;
    }
    writer.finalize()?;
    Ok(())
}

/// Resets the high-water mark of this process's resident memory (Linux: `clear_refs` 5).
fn reset_peak_rss() -> anyhow::Result<()> {
    std::fs::write("/proc/self/clear_refs", "5").context("resetting the peak RSS (Linux only)")
}

fn peak_rss_kb() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/self/status")
}
