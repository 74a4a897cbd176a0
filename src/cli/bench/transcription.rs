//! `tubesum bench transcription [FILES]`: the configured engine's speed (times real time) and word
//! error rate on audio files, or on the stand-in's speech (espeak-ng) when none are given, so a
//! user can choose model, quantization, threads and workers on their own machine.
//!
//! `tubesum bench transcription --minutes 10 --minutes 120`: the peak memory of transcribing
//! audio of each length with the configured local engine, to show it does not grow with the
//! length. Each file is 16 kHz mono WAV: five minutes of tone (one transcription window, decoded
//! like speech) and silence after it (read window by window, and skipped as silent), so every length
//! decodes the same and differs only in how much is read. Peak RSS is the process's high-water mark
//! (`VmHWM`), reset before each length once the model is loaded.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::app::Settings;
use crate::stages::audio::SAMPLE_RATE;
use crate::stages::settings::{StageSettings, TranscriptionBackend};
use crate::stages::transcription::{Recognizer, join_text, recognizer};

/// Audio to transcribe, 16 kHz mono WAV, and what is said in it where known.
struct Sample {
    name: String,
    wav: PathBuf,
    audio_secs: f64,
    reference: Option<String>,
}

/// How one file went.
#[derive(Debug)]
pub struct Measured {
    pub name: String,
    pub audio_secs: f64,
    pub elapsed: Duration,
    pub wer: Option<Wer>,
    /// What the engine heard.
    pub text: String,
}

/// Words of the reference text, and the word edits (substitutions, insertions, deletions) that
/// turn the transcript into it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Wer {
    pub errors: usize,
    pub words: usize,
}

impl Wer {
    /// Word error rate, in percent.
    pub fn percent(self) -> f64 {
        match (self.errors, self.words) {
            (0, _) => 0.0,
            (_, 0) => 100.0,
            (errors, words) => 100.0 * errors as f64 / words as f64,
        }
    }
}

impl std::ops::Add for Wer {
    type Output = Wer;
    fn add(self, other: Wer) -> Wer {
        Wer { errors: self.errors + other.errors, words: self.words + other.words }
    }
}

/// The word error rate of `hypothesis` against `reference`, both normalized (lower case,
/// punctuation dropped, hyphens split words), by word-level edit distance.
pub fn wer(reference: &str, hypothesis: &str) -> Wer {
    let reference = words(reference);
    let hypothesis = words(hypothesis);
    Wer { errors: strsim::generic_levenshtein(&reference, &hypothesis), words: reference.len() }
}

fn words(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| c.is_whitespace() || c == '-' || c == '—')
        .map(|word| word.chars().filter(|c| c.is_alphanumeric() || *c == '\'').collect::<String>())
        .map(|word| word.trim_matches('\'').to_owned())
        .filter(|word| !word.is_empty())
        .collect()
}

/// The speed run's figures: each file, and all of them together over `workers` at once.
#[derive(Debug)]
pub struct Speed {
    pub engine: String,
    pub workers: usize,
    pub files: Vec<Measured>,
    pub wall: Duration,
}

impl Speed {
    /// Seconds of audio in all files.
    pub fn audio_secs(&self) -> f64 {
        self.files.iter().map(|f| f.audio_secs).sum()
    }

    /// Seconds of audio transcribed per second of wall time, all files together.
    pub fn times_real_time(&self) -> f64 {
        self.audio_secs() / self.wall.as_secs_f64()
    }

    /// The word error rate over every file with a reference text.
    pub fn wer(&self) -> Option<Wer> {
        self.files.iter().filter_map(|f| f.wer).reduce(|a, b| a + b)
    }
}

impl std::fmt::Display for Speed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = if self.workers == 1 { "" } else { "s" };
        writeln!(f, "engine: {}; {} worker{plural} at once", self.engine, self.workers)?;
        writeln!(f, "| file | audio | time | speed | WER |")?;
        writeln!(f, "|---|---|---|---|---|")?;
        let wer = |w: Option<Wer>| match w {
            Some(w) => format!("{:.1} % ({} of {} words)", w.percent(), w.errors, w.words),
            None => "— (no reference text)".to_owned(),
        };
        for file in &self.files {
            let secs = file.elapsed.as_secs_f64();
            writeln!(
                f,
                "| {} | {:.1} s | {secs:.2} s | {:.1}× real time | {} |",
                file.name,
                file.audio_secs,
                file.audio_secs / secs,
                wer(file.wer)
            )?;
        }
        writeln!(
            f,
            "| all | {:.1} s | {:.2} s | {:.1}× real time | {} |",
            self.audio_secs(),
            self.wall.as_secs_f64(),
            self.times_real_time(),
            wer(self.wer())
        )
    }
}

/// What to transcribe, and how.
#[derive(Debug, Default)]
pub struct SpeedRun {
    /// Audio or video files; none: the stand-in's speech.
    pub files: Vec<PathBuf>,
    /// Files transcribed at once.
    pub workers: usize,
    /// Where to leave the audio as transcribed (16 kHz mono `NAME.wav`, with `NAME.txt`, its
    /// reference text), for another engine to be measured on.
    pub keep_audio: Option<PathBuf>,
}

/// Transcribes the files (any audio or video ffmpeg reads; `talk.mp3`'s reference text is
/// `talk.txt` beside it) with the configured engine, `workers` files at once, after loading the
/// model. No files: the stand-in's demo speech, spoken by espeak-ng, with its scripts as
/// reference.
pub async fn speed(settings: Settings, run: &SpeedRun) -> anyhow::Result<Speed> {
    let workers = run.workers;
    anyhow::ensure!(workers >= 1, "--workers must be at least 1");
    let stage_settings = settings.stage_settings();
    let engine = describe(&stage_settings);
    let recognizer = recognizer(&stage_settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    let temporary = tempfile::tempdir()?;
    let dir = match &run.keep_audio {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            dir.as_path()
        }
        None => temporary.path(),
    };
    let samples =
        if run.files.is_empty() { spoken(&settings, dir).await? } else { given(&settings, &run.files, dir).await? };
    if run.keep_audio.is_some() {
        for sample in &samples {
            if let Some(reference) = &sample.reference {
                std::fs::write(sample.wav.with_extension("txt"), reference)?;
            }
        }
    }
    // Loads the model (a silent file is not decoded), so the files are timed with it loaded.
    let warm_up = temporary.path().join("warm-up.wav");
    write_test_audio(&warm_up, 0, 1)?;
    recognizer.transcribe(&warm_up).await.map_err(|e| anyhow::anyhow!("{e}"))?;

    let queue = Arc::new(std::sync::Mutex::new(samples.into_iter().enumerate().collect::<Vec<_>>()));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, recognizer) = (queue.clone(), recognizer.clone());
        tasks.spawn(async move { transcribe_all(&*recognizer, &queue).await });
    }
    let mut files = Vec::new();
    while let Some(done) = tasks.join_next().await {
        files.extend(done.context("a worker crashed")??);
    }
    let wall = started.elapsed();
    files.sort_by_key(|(i, _)| *i);
    Ok(Speed { engine, workers, files: files.into_iter().map(|(_, m)| m).collect(), wall })
}

type Queue = std::sync::Mutex<Vec<(usize, Sample)>>;

/// One worker: takes the next file until none are left.
async fn transcribe_all(recognizer: &dyn Recognizer, queue: &Queue) -> anyhow::Result<Vec<(usize, Measured)>> {
    let mut done = Vec::new();
    loop {
        let next = queue.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let Some((i, sample)) = next else { return Ok(done) };
        let started = Instant::now();
        let recognized =
            recognizer.transcribe(&sample.wav).await.map_err(|e| anyhow::anyhow!("{}: {e}", sample.name))?;
        let elapsed = started.elapsed();
        let text = join_text(&crate::stages::transcription::clean_segments(recognized.segments));
        let wer = sample.reference.as_deref().map(|reference| wer(reference, &text));
        done.push((i, Measured { name: sample.name, audio_secs: sample.audio_secs, elapsed, wer, text }));
    }
}

fn describe(settings: &StageSettings) -> String {
    let threads = |n: u16| if n == 1 { "1 thread".to_owned() } else { format!("{n} threads") };
    match settings.transcription.backend {
        TranscriptionBackend::Ctranslate2 => {
            let c = &settings.ctranslate2;
            #[cfg(not(feature = "ctranslate2"))]
            let build = " (not built in)";
            #[cfg(feature = "ctranslate2")]
            let build = "";
            format!(
                "Whisper on CTranslate2{build}, {}, {}, {} per file, beam {}",
                c.model.display(),
                c.compute_type.name(),
                threads(c.threads),
                c.beam_size
            )
        }
        TranscriptionBackend::Whisper => {
            let w = &settings.whisper;
            let threads = threads(w.threads);
            #[cfg(feature = "whisper")]
            let build = format!(" (built with {})", crate::stages::transcription::whisper_build_features());
            #[cfg(not(feature = "whisper"))]
            let build = " (not built in)";
            format!("whisper.cpp{build}, {}, {threads} per file, beam {}", w.model.display(), w.beam_size)
        }
        TranscriptionBackend::Openai => {
            let s = &settings.openai_transcription;
            format!("OpenAI-compatible API at {}, model {}", s.base_url, s.model)
        }
    }
}

/// The files, converted to 16 kHz mono WAV, each with the text beside it if there is one.
async fn given(settings: &Settings, files: &[PathBuf], dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (i, file) in files.iter().enumerate() {
        anyhow::ensure!(file.is_file(), "{} is not a file", file.display());
        let reference_path = file.with_extension("txt");
        let reference = match std::fs::read_to_string(&reference_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", reference_path.display())),
        };
        let name = file.file_name().map_or_else(|| file.display().to_string(), |n| n.to_string_lossy().into_owned());
        let stem = file.file_stem().map_or_else(|| "audio".into(), |s| s.to_string_lossy().into_owned());
        samples.push(converted(settings, file, &dir.join(format!("{i:02}-{stem}.wav")), name, reference).await?);
    }
    Ok(samples)
}

/// The stand-in's demo speech: one file per demo video, its script the reference.
#[cfg(feature = "demo")]
async fn spoken(settings: &Settings, dir: &Path) -> anyhow::Result<Vec<Sample>> {
    let mut samples = Vec::new();
    for (id, sentences) in youtube_standin::demo::scripts() {
        let speech = dir.join(format!("{id}.speech.tmp"));
        youtube_standin::media::speak_script(sentences, &speech)
            .await
            .with_context(|| format!("speaking {id} with espeak-ng (Debian: apt install espeak-ng)"))?;
        let wav = dir.join(format!("{id}.wav"));
        let sample = converted(settings, &speech, &wav, id.to_owned(), Some(sentences.join(" "))).await;
        std::fs::remove_file(&speech).with_context(|| format!("removing {}", speech.display()))?;
        samples.push(sample?);
    }
    Ok(samples)
}

#[cfg(not(feature = "demo"))]
async fn spoken(_: &Settings, _: &Path) -> anyhow::Result<Vec<Sample>> {
    anyhow::bail!(
        "this build has no stand-in speech (built without the `demo` feature): name audio files to transcribe"
    )
}

/// `source` as 16 kHz mono WAV at `wav`, with ffmpeg (as the audio stage makes it).
async fn converted(
    settings: &Settings,
    source: &Path,
    wav: &Path,
    name: String,
    reference: Option<String>,
) -> anyhow::Result<Sample> {
    crate::stages::audio::extract(
        &settings.audio.ffmpeg,
        source,
        wav,
        Duration::from_secs(settings.audio.timeout_secs),
    )
    .await
    .map_err(|e| anyhow::anyhow!("converting {}: {e}", source.display()))?;
    let audio_secs = crate::stages::audio::wav_seconds(wav).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Sample { name, wav: wav.to_owned(), audio_secs, reference })
}

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
    let stage_settings = settings.stage_settings();
    anyhow::ensure!(
        stage_settings.transcription.backend != TranscriptionBackend::Openai,
        "--minutes measures a local engine's memory: set transcription.backend to ctranslate2 or whisper"
    );
    let recognizer = recognizer(&stage_settings).map_err(|e| anyhow::anyhow!("{e}"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_errors_are_edits_between_normalized_words() {
        let w = wer("The quick brown fox jumps over the lazy dog.", "the quick brown fox jumped over a lazy dog");
        assert_eq!(w, Wer { errors: 2, words: 9 });
        assert!((w.percent() - 22.2).abs() < 0.1, "{}", w.percent());
        assert_eq!(
            wer("High-wheel bicycles, don't fall!", "high wheel Bicycles don't fall."),
            Wer { errors: 0, words: 5 }
        );
        assert_eq!(wer("one two three", "one three"), Wer { errors: 1, words: 3 }, "a deletion");
        assert_eq!(wer("one two", ""), Wer { errors: 2, words: 2 });
        assert_eq!(wer("", "").percent(), 0.0);
        assert_eq!(wer("", "invented").percent(), 100.0);
    }

    #[test]
    fn the_report_totals_audio_over_wall_time_and_words_over_files() {
        let file = |name: &str, secs: f64, wer| Measured {
            name: name.into(),
            audio_secs: secs,
            elapsed: Duration::from_secs(2),
            wer,
            text: String::new(),
        };
        let speed = Speed {
            engine: "whisper.cpp".into(),
            workers: 2,
            files: vec![
                file("a.wav", 30.0, Some(Wer { errors: 1, words: 10 })),
                file("b.wav", 10.0, None),
                file("c.wav", 20.0, Some(Wer { errors: 2, words: 20 })),
            ],
            wall: Duration::from_secs(3),
        };
        assert!((speed.times_real_time() - 20.0).abs() < 1e-9);
        assert_eq!(speed.wer(), Some(Wer { errors: 3, words: 30 }));
        let text = speed.to_string();
        assert!(text.contains("2 workers at once"), "{text}");
        assert!(text.contains("| a.wav | 30.0 s | 2.00 s | 15.0× real time | 10.0 % (1 of 10 words) |"), "{text}");
        assert!(text.contains("| b.wav | 10.0 s | 2.00 s | 5.0× real time | — (no reference text) |"), "{text}");
        assert!(text.contains("| all | 60.0 s | 3.00 s | 20.0× real time | 10.0 % (3 of 30 words) |"), "{text}");
    }
}
