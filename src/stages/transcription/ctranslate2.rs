//! Whisper on CTranslate2 (the engine faster-whisper runs on), through `ct2rs`: a faster-whisper
//! model directory (`model.bin`, `config.json`, `vocabulary.txt`) decoded with CTranslate2's int8
//! kernels. The log-mel spectrogram is computed here ([`whisper_models::mel`]) and the 30-second
//! windows are walked as faster-whisper walks them (seek to the last timestamp, the previous
//! window's tokens as the prompt), so both engines hear the same input the same way.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use ct2rs::sys::{ComputeType, Config, Device, StorageView, Whisper, WhisperOptions};
use tokio::sync::OnceCell;
use whisper_models::mel::{self, HOP_LENGTH, N_FFT, SAMPLE_RATE};

use super::{Recognized, Recognizer};
use crate::domain::Segment;
use crate::stages::StageError;
use crate::stages::settings::{Ct2ComputeType, Ctranslate2Settings};

/// Frames in one of Whisper's 30-second windows.
const WINDOW_FRAMES: usize = 3000;
/// Samples in one window.
const WINDOW_SAMPLES: usize = WINDOW_FRAMES * HOP_LENGTH;
/// At most this many of the previous windows' tokens prompt the next one (Whisper's context is
/// 448 tokens; openai-whisper and faster-whisper keep half of it for the prompt).
const PROMPT_TOKENS: usize = 223;
/// A window is silence when its no-speech probability is above the threshold and its tokens are
/// this unlikely on average (faster-whisper's `log_prob_threshold`); a decode this unlikely is
/// tried again hotter.
const LOG_PROB_THRESHOLD: f32 = -1.0;
/// Text that compresses better than this is a decode stuck repeating itself: tried again hotter
/// (faster-whisper's `compression_ratio_threshold`).
const COMPRESSION_RATIO_THRESHOLD: f32 = 2.4;
/// Greedy (or beam search) first, then sampling ever hotter while the text fails either test
/// (faster-whisper's and whisper.cpp's temperature fallback).
const TEMPERATURES: [f32; 6] = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0];
/// Above 0: the best of this many samples.
const BEST_OF: usize = 5;

/// The loaded model, shared by the pool's workers: one CTranslate2 replica each.
struct Model {
    whisper: Whisper,
    vocabulary: Vocabulary,
    filters: Vec<f32>,
    n_mels: usize,
    /// What every window's prompt ends in: `<|startoftranscript|>`, and for a multilingual model
    /// the language and the task.
    start_of_transcript: Vec<String>,
}

/// The model's tokens (`vocabulary.txt`).
struct Vocabulary {
    /// Each token's bytes, by id.
    bytes: Vec<Vec<u8>>,
    /// Ids from here on are special (`<|endoftext|>`, timestamps…), not text.
    end_of_text: usize,
}

impl Vocabulary {
    fn new(bytes: Vec<Vec<u8>>) -> Option<Self> {
        let end_of_text = bytes.iter().position(|t| t == b"<|endoftext|>")?;
        Some(Self { bytes, end_of_text })
    }

    /// The text of `ids`: their bytes (special tokens left out) read as UTF-8, trimmed.
    fn text(&self, ids: &[usize]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter(|&&id| id < self.end_of_text)
            .filter_map(|&id| self.bytes.get(id))
            .flatten()
            .copied()
            .collect();
        String::from_utf8_lossy(&bytes).trim().to_owned()
    }
}

/// CTranslate2's Whisper as the settings configure it; the model is loaded on first use.
pub struct Ct2Recognizer {
    settings: Ctranslate2Settings,
    language: String,
    replicas: usize,
    model: OnceCell<Arc<Model>>,
}

impl Ct2Recognizer {
    /// `replicas`: decodes that may run at once (the transcription pool's workers).
    pub fn new(settings: Ctranslate2Settings, language: String, replicas: usize) -> Self {
        Self { settings, language, replicas: replicas.max(1), model: OnceCell::new() }
    }

    async fn model(&self) -> Result<Arc<Model>, StageError> {
        let (settings, language, replicas) = (self.settings.clone(), self.language.clone(), self.replicas);
        self.model
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || load(&settings, &language, replicas).map(Arc::new))
                    .await
                    .map_err(|e| StageError::Retryable(format!("model loader crashed: {e}")))?
            })
            .await
            .cloned()
    }
}

fn compute_type(of: Ct2ComputeType) -> ComputeType {
    match of {
        Ct2ComputeType::Default => ComputeType::DEFAULT,
        Ct2ComputeType::Auto => ComputeType::AUTO,
        Ct2ComputeType::Float32 => ComputeType::FLOAT32,
        Ct2ComputeType::Int8 => ComputeType::INT8,
        Ct2ComputeType::Int8Float32 => ComputeType::INT8_FLOAT32,
        Ct2ComputeType::Int16 => ComputeType::INT16,
    }
}

/// CTranslate2 allocates its buffers (a few MB each: the encoder's activations, the attention's
/// scores) with the C library's malloc, afresh for every window. glibc serves blocks that large
/// with their own mmap and unmaps them when freed, so every window faulted in and zeroed new pages:
/// 15–20 % of the decode time on the development box (README, Benchmark). Above these thresholds
/// it still does; below them the freed blocks stay in the heap for the next window. Process-wide;
/// Rust's own allocations go through mimalloc and are unaffected.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_decode_buffers_mapped() {
    use std::ffi::c_int;
    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;
    // SAFETY: glibc's documented tuning call; it only changes thresholds of later allocations.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 64 << 20);
        mallopt(M_TRIM_THRESHOLD, 128 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_decode_buffers_mapped() {}

/// The prompt's start for `language`: an English-only model takes none (whatever the setting), a
/// multilingual one the language's token, which must be one of its languages.
fn start_of_transcript(multilingual: bool, language: &str, vocabulary: &Vocabulary) -> Result<Vec<String>, StageError> {
    if !multilingual {
        return Ok(vec!["<|startoftranscript|>".into()]);
    }
    let token = format!("<|{language}|>");
    if language == "auto" || !vocabulary.bytes.iter().any(|t| t == token.as_bytes()) {
        return Err(StageError::Permanent(format!(
            "transcription.language {language:?} is not one of this multilingual model's languages (a code \
             such as \"en\" or \"de\"; the CTranslate2 engine does not detect the language: set it, or use \
             transcription.backend = \"whisper\" for \"auto\")"
        )));
    }
    Ok(vec!["<|startoftranscript|>".into(), token, "<|transcribe|>".into()])
}

fn load(settings: &Ctranslate2Settings, language: &str, replicas: usize) -> Result<Model, StageError> {
    let dir = &settings.model;
    for file in ["model.bin", "config.json", "vocabulary.txt"] {
        if !dir.join(file).is_file() {
            return Err(StageError::Permanent(format!(
                "no CTranslate2 Whisper model in {} ({file} is missing): run scripts/setup.sh \
                 (it installs faster-whisper tiny.en there), or set ctranslate2.model to a \
                 faster-whisper model directory",
                dir.display()
            )));
        }
    }
    let cannot = |e: &dyn std::fmt::Display| {
        StageError::Permanent(format!("cannot load the CTranslate2 model in {}: {e}", dir.display()))
    };
    let vocabulary = whisper_models::ct2::read_vocabulary(&dir.join("vocabulary.txt")).map_err(|e| cannot(&e))?;
    let vocabulary = Vocabulary::new(vocabulary).ok_or_else(|| cannot(&"its vocabulary has no <|endoftext|>"))?;
    let config = Config {
        device: Device::CPU,
        compute_type: compute_type(settings.compute_type),
        // On the CPU, one replica per listed device index: each decode gets its own.
        device_indices: vec![0; replicas],
        num_threads_per_replica: usize::from(settings.threads.max(1)),
        ..Config::default()
    };
    keep_decode_buffers_mapped();
    let whisper = Whisper::new(dir, config).map_err(|e| cannot(&e))?;
    let n_mels = whisper.n_mels();
    Ok(Model {
        start_of_transcript: start_of_transcript(whisper.is_multilingual(), language, &vocabulary)?,
        filters: mel::mel_filters(SAMPLE_RATE, N_FFT, n_mels),
        n_mels,
        whisper,
        vocabulary,
    })
}

#[async_trait]
impl Recognizer for Ct2Recognizer {
    async fn transcribe(&self, wav: &Path) -> Result<Recognized, StageError> {
        let model = self.model().await?;
        let settings = self.settings.clone();
        // CTranslate2 cannot be stopped inside a 30-second window: a cancelled decode stops
        // before the next one.
        super::transcribe_windows(wav, self.language.clone(), "CTranslate2", move |samples, cancel| {
            decode(&model, &settings, samples, cancel)
        })
        .await
    }
}

/// What one 30-second window decoded to.
struct Decoded {
    /// Token strings as CTranslate2 names them (`<|1.24|>` for a timestamp), and their ids.
    tokens: Vec<String>,
    ids: Vec<usize>,
    no_speech: f32,
    avg_log_prob: f32,
}

/// `<|1.24|>` → 1.24.
fn timestamp(token: &str) -> Option<f64> {
    token.strip_prefix("<|")?.strip_suffix("|>")?.parse().ok()
}

/// Transcribes `samples` (at most a few minutes) window by window, as faster-whisper does.
fn decode(
    model: &Model,
    settings: &Ctranslate2Settings,
    samples: &[f32],
    cancel: &AtomicBool,
) -> Result<Vec<Segment>, StageError> {
    // Whisper's input: the audio and 30 s of silence after it, so the last window is whole.
    let spectrogram = mel::log_mel_spectrogram(samples, WINDOW_SAMPLES, &model.filters, model.n_mels);
    let frames = spectrogram.len() / model.n_mels;
    let content_frames = samples.len() / HOP_LENGTH;

    let mut history: Vec<String> = Vec::new();
    let mut segments = Vec::new();
    let mut seek = 0;
    while seek < content_frames {
        if cancel.load(Ordering::Relaxed) {
            return Err(StageError::Retryable("transcription cancelled".into()));
        }
        let size = WINDOW_FRAMES.min(content_frames - seek);
        // The window's frames; past the content, zeros (as faster-whisper's pad_or_trim).
        let mut features = vec![0f32; model.n_mels * WINDOW_FRAMES];
        for (row, out) in features.chunks_mut(WINDOW_FRAMES).enumerate() {
            let from = row * frames + seek;
            out[..size].copy_from_slice(&spectrogram[from..from + size]);
        }
        let mut prompt: Vec<String> = Vec::with_capacity(1 + PROMPT_TOKENS + model.start_of_transcript.len());
        if !history.is_empty() {
            prompt.push("<|startofprev|>".to_owned());
            prompt.extend_from_slice(&history[history.len().saturating_sub(PROMPT_TOKENS)..]);
        }
        prompt.extend_from_slice(&model.start_of_transcript);
        let (decoded, temperature) = generate_with_fallback(model, settings, &mut features, &prompt)?;

        let offset = seek as f64 / 100.0;
        if is_silence(&decoded, settings.no_speech_threshold) {
            seek += size;
            continue;
        }
        seek += split(&model.vocabulary, &decoded, offset, size, &mut segments);
        history.extend(decoded.tokens);
        // Text sampled this hot is not trusted as the next window's context.
        if temperature > 0.5 {
            history.clear();
        }
    }
    Ok(segments)
}

/// No speech: the model says so and its tokens are unlikely.
fn is_silence(decoded: &Decoded, no_speech_threshold: f32) -> bool {
    decoded.no_speech > no_speech_threshold && decoded.avg_log_prob < LOG_PROB_THRESHOLD
}

/// `text`'s length over its zlib-compressed length: ~1.5–2 for speech, more for a loop.
fn compression_ratio(text: &str) -> f32 {
    use std::io::Write;
    if text.is_empty() {
        return 0.0;
    }
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(text.as_bytes()).expect("writing to memory");
    let compressed = encoder.finish().expect("writing to memory");
    text.len() as f32 / compressed.len() as f32
}

/// Whether a decode is to be tried again hotter: its text (of that compression ratio) repeats
/// itself or is too unlikely, unless it is silence (which no temperature turns into speech).
fn needs_fallback(decoded: &Decoded, ratio: f32, no_speech_threshold: f32) -> bool {
    let failed = ratio > COMPRESSION_RATIO_THRESHOLD || decoded.avg_log_prob < LOG_PROB_THRESHOLD;
    failed && !is_silence(decoded, no_speech_threshold)
}

/// Decodes one window at each of [`TEMPERATURES`] until one passes; if none does, the likeliest
/// of those that do not repeat themselves (or of all). Returns it and its temperature.
fn generate_with_fallback(
    model: &Model,
    settings: &Ctranslate2Settings,
    features: &mut [f32],
    prompt: &[String],
) -> Result<(Decoded, f32), StageError> {
    let mut tried: Vec<(Decoded, f32, bool)> = Vec::new();
    for temperature in TEMPERATURES {
        let decoded = generate(model, settings, features, prompt, temperature)?;
        let ratio = compression_ratio(&model.vocabulary.text(&decoded.ids));
        if !needs_fallback(&decoded, ratio, settings.no_speech_threshold) {
            return Ok((decoded, temperature));
        }
        tried.push((decoded, temperature, ratio > COMPRESSION_RATIO_THRESHOLD));
    }
    let likeliest = |candidates: Vec<(Decoded, f32, bool)>| {
        candidates.into_iter().max_by(|a, b| a.0.avg_log_prob.total_cmp(&b.0.avg_log_prob))
    };
    let (fluent, looping): (Vec<_>, Vec<_>) = tried.into_iter().partition(|(_, _, repeats)| !repeats);
    let best = if fluent.is_empty() { likeliest(looping) } else { likeliest(fluent) };
    let (decoded, temperature, _) = best.expect("at least one temperature was tried");
    Ok((decoded, temperature))
}

/// Runs the model on one window of `features` (`n_mels` × [`WINDOW_FRAMES`]): at temperature 0
/// greedy or beam search, above it the likeliest of [`BEST_OF`] samples.
fn generate(
    model: &Model,
    settings: &Ctranslate2Settings,
    features: &mut [f32],
    prompt: &[String],
    temperature: f32,
) -> Result<Decoded, StageError> {
    let failed = |e: anyhow::Error| StageError::Retryable(format!("CTranslate2 failed: {e}"));
    let view = StorageView::new(&[1, model.n_mels, WINDOW_FRAMES], features, Device::CPU).map_err(failed)?;
    let scored = WhisperOptions { return_scores: true, return_no_speech_prob: true, ..WhisperOptions::default() };
    let options = if temperature > 0.0 {
        WhisperOptions {
            beam_size: 1,
            num_hypotheses: BEST_OF,
            sampling_topk: 0,
            sampling_temperature: temperature,
            ..scored
        }
    } else {
        WhisperOptions { beam_size: usize::from(settings.beam_size.max(1)), ..scored }
    };
    let mut results = model.whisper.generate(&view, &[prompt.to_vec()], &options).map_err(failed)?;
    let result = results.pop().ok_or_else(|| failed(anyhow::anyhow!("no result")))?;
    let (Some(tokens), Some(ids)) = (result.sequences.into_iter().next(), result.sequences_ids.into_iter().next())
    else {
        return Err(failed(anyhow::anyhow!("no sequence")));
    };
    // CTranslate2's score is the sum of log probabilities over the length; faster-whisper counts
    // the end-of-text token too.
    let length = tokens.len() as f32;
    let avg_log_prob = result.scores.first().map_or(0.0, |score| score * length / (length + 1.0));
    Ok(Decoded { tokens, ids, no_speech: result.no_speech_prob, avg_log_prob })
}

/// Appends the window's segments (between timestamp pairs) to `out`; returns the frames to seek
/// forward: to the last timestamp pair, or the whole window when the text ran to its end.
fn split(vocabulary: &Vocabulary, decoded: &Decoded, offset: f64, size: usize, out: &mut Vec<Segment>) -> usize {
    let stamps: Vec<Option<f64>> = decoded.tokens.iter().map(|t| timestamp(t)).collect();
    let n = stamps.len();
    let single_ending = n >= 2 && stamps[n - 2].is_none() && stamps[n - 1].is_some();
    let pairs: Vec<usize> = (1..n).filter(|&i| stamps[i].is_some() && stamps[i - 1].is_some()).collect();
    let mut push = |start: f64, end: f64, ids: &[usize]| {
        let text = vocabulary.text(ids);
        if !text.is_empty() {
            out.push(Segment { start: offset + start, end: offset + end, text });
        }
    };
    if pairs.is_empty() {
        // One segment: to the last timestamp if there is one, else the whole window.
        let end = stamps.iter().rev().flatten().next().copied().filter(|&t| t > 0.0);
        push(0.0, end.unwrap_or(size as f64 / 100.0), &decoded.ids);
        return size;
    }
    let last_pair = stamps[pairs[pairs.len() - 1] - 1].unwrap_or(0.0);
    let mut slices = pairs;
    if single_ending {
        slices.push(n);
    }
    let mut last = 0;
    for current in slices {
        let (start, end) = (stamps[last].unwrap_or(0.0), stamps[current - 1].unwrap_or(0.0));
        push(start, end, &decoded.ids[last..current]);
        last = current;
    }
    if single_ending { size } else { ((last_pair * 100.0).round() as usize).clamp(1, size) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few tokens, then the special ones: `<|endoftext|>` and timestamps.
    fn vocabulary() -> Vocabulary {
        let tokens: [&[u8]; 8] = [b"Hello", b" world", b".", b" Caf", b"\xc3", b"\xa9", b" Again", b"<|endoftext|>"];
        Vocabulary::new(tokens.iter().map(|t| t.to_vec()).collect()).unwrap()
    }

    /// Token strings and ids: text tokens by id, timestamps as `<|t|>` (id past the text).
    fn decoded(tokens: &[&str]) -> Decoded {
        let texts = ["Hello", " world", ".", " Caf", "Ã", "©", " Again"];
        let ids = tokens.iter().map(|t| texts.iter().position(|x| x == t).unwrap_or(100)).collect();
        Decoded { tokens: tokens.iter().map(|t| t.to_string()).collect(), ids, no_speech: 0.0, avg_log_prob: 0.0 }
    }

    fn segments(tokens: &[&str], offset: f64, size: usize) -> (Vec<(f64, f64, String)>, usize) {
        let mut out = Vec::new();
        let seek = split(&vocabulary(), &decoded(tokens), offset, size, &mut out);
        (out.into_iter().map(|s| (s.start, s.end, s.text)).collect(), seek)
    }

    #[test]
    fn text_leaves_special_tokens_out_and_joins_bytes_across_tokens() {
        let v = vocabulary();
        assert_eq!(v.text(&[0, 1, 7, 2]), "Hello world.");
        // "é" is two byte tokens: decoded together, not one replacement character each.
        assert_eq!(v.text(&[3, 4, 5]), "Café");
        assert_eq!(v.text(&[7, 100]), "");
    }

    #[test]
    fn timestamp_pairs_split_segments_and_a_single_ending_stamp_takes_the_whole_window() {
        let (out, seek) =
            segments(&["<|0.00|>", "Hello", " world", "<|1.50|>", "<|1.50|>", " Again", "<|3.00|>"], 10.0, 3000);
        assert_eq!(out, vec![(10.0, 11.5, "Hello world".into()), (11.5, 13.0, "Again".into())]);
        assert_eq!(seek, 3000);
    }

    #[test]
    fn text_cut_off_after_the_last_pair_is_decoded_again_from_there() {
        let (out, seek) = segments(&["<|0.00|>", "Hello", "<|1.50|>", "<|1.50|>", " Again"], 0.0, 3000);
        assert_eq!(out, vec![(0.0, 1.5, "Hello".into())]);
        // Seek to the pair (1.5 s = 150 frames): " Again" is heard again in the next window.
        assert_eq!(seek, 150);
    }

    #[test]
    fn without_timestamp_pairs_the_window_is_one_segment() {
        let (out, seek) = segments(&["Hello", " world"], 30.0, 2500);
        assert_eq!(out, vec![(30.0, 55.0, "Hello world".into())]);
        assert_eq!(seek, 2500);
        // Up to its last timestamp when it has one.
        let (out, _) = segments(&["<|0.00|>", "Hello", "<|4.20|>"], 0.0, 3000);
        assert_eq!(out, vec![(0.0, 4.2, "Hello".into())]);
        // Nothing said: no segment.
        assert_eq!(segments(&["<|0.00|>", "<|0.00|>"], 0.0, 3000).0, vec![]);
    }

    #[test]
    fn a_decode_that_loops_or_is_unlikely_is_tried_again_unless_it_is_silence() {
        let said = "The first bicycle was built in Germany in 1817. It had no pedals, so riders pushed it along.";
        let looping = "I don't know. ".repeat(20);
        assert!(compression_ratio(said) < COMPRESSION_RATIO_THRESHOLD, "{}", compression_ratio(said));
        assert!(compression_ratio(&looping) > COMPRESSION_RATIO_THRESHOLD, "{}", compression_ratio(&looping));
        assert_eq!(compression_ratio(""), 0.0);

        let with = |no_speech: f32, avg_log_prob: f32| Decoded { tokens: vec![], ids: vec![], no_speech, avg_log_prob };
        let (fluent, repeating) = (compression_ratio(said), compression_ratio(&looping));
        assert!(!needs_fallback(&with(0.01, -0.3), fluent, 0.6));
        assert!(needs_fallback(&with(0.01, -0.3), repeating, 0.6));
        assert!(needs_fallback(&with(0.01, -1.5), fluent, 0.6));
        // Silence: unlikely tokens where the model hears no speech are not decoded again.
        assert!(!needs_fallback(&with(0.9, -1.5), fluent, 0.6));
        assert!(is_silence(&with(0.9, -1.5), 0.6) && !is_silence(&with(0.9, -0.5), 0.6));
    }

    #[test]
    fn a_multilingual_model_is_prompted_with_a_language_it_knows() {
        let tokens: [&[u8]; 4] = [b"Hello", b"<|endoftext|>", b"<|en|>", b"<|de|>"];
        let vocabulary = Vocabulary::new(tokens.iter().map(|t| t.to_vec()).collect()).unwrap();
        assert_eq!(
            start_of_transcript(true, "de", &vocabulary).unwrap(),
            ["<|startoftranscript|>", "<|de|>", "<|transcribe|>"]
        );
        // An English-only model takes no language token, whatever the setting.
        assert_eq!(start_of_transcript(false, "auto", &vocabulary).unwrap(), ["<|startoftranscript|>"]);
        for unknown in ["xx", "auto"] {
            let err = start_of_transcript(true, unknown, &vocabulary).unwrap_err();
            assert!(matches!(err, StageError::Permanent(_)) && err.to_string().contains(unknown), "{err}");
        }
    }

    fn settings(model: std::path::PathBuf) -> Ctranslate2Settings {
        Ctranslate2Settings {
            model,
            compute_type: Ct2ComputeType::Int8,
            threads: 1,
            no_speech_threshold: 0.6,
            beam_size: 1,
        }
    }

    /// The model the tests use: `$CT2_MODEL_DIR` or `models/ct2-tiny.en` (scripts/setup.sh).
    fn model_dir() -> std::path::PathBuf {
        let dir = std::env::var_os("CT2_MODEL_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/ct2-tiny.en"));
        assert!(dir.join("model.bin").is_file(), "CTranslate2 model {} missing: run scripts/setup.sh", dir.display());
        dir
    }

    #[test]
    fn a_directory_without_a_model_is_a_permanent_error_that_says_what_to_do() {
        let empty = tempfile::tempdir().unwrap();
        let Err(err) = load(&settings(empty.path().to_owned()), "en", 1) else { panic!("loaded nothing") };
        assert!(matches!(err, StageError::Permanent(_)), "{err}");
        assert!(
            err.to_string().contains("model.bin is missing") && err.to_string().contains("scripts/setup.sh"),
            "{err}"
        );
    }

    /// A decode whose stage went away stops at the next window instead of running the file.
    #[test]
    fn a_cancelled_decode_stops_before_its_next_window() {
        let settings = settings(model_dir());
        let model = load(&settings, "en", 1).expect("tiny.en loads");
        let err = decode(&model, &settings, &crate::stages::transcription::tests::noise(60), &AtomicBool::new(true))
            .expect_err("decoded anyway");
        assert!(err.to_string().contains("cancelled"), "{err}");
    }
}
