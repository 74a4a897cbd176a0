//! Transcription: the extracted audio → a timed transcript, with local Whisper on CTranslate2
//! (default) or whisper.cpp, or an OpenAI-compatible transcription API. A video whose download
//! already stored captions is never sent here. Silence and music must not become invented text:
//! silent audio is not decoded at all, and what whisper itself marks as probably-not-speech, or
//! segments that are only a sound annotation ("\[Music\]", "(applause)", "♪"), are dropped. An
//! empty transcript is a valid result.

use std::path::Path;
use std::sync::Arc;
#[cfg(any(feature = "whisper", feature = "ctranslate2"))]
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use serde::Deserialize;

use super::media::MediaKind;
use super::{StageContext, StageError, StageResult, StageWork, audio, video_of};
use crate::domain::{DomainEvent, EventPayload, Segment, StageCommand, Transcript, TranscriptSource};
use crate::stages::settings::{StageSettings, TranscriptionBackend};

/// Peak amplitude below which audio counts as silence (about -60 dBFS).
const SILENCE_PEAK: f32 = 0.001;

/// Audio is transcribed 5 minutes at a time (19 MB of samples), however long the video.
#[cfg(any(feature = "whisper", feature = "ctranslate2"))]
const WINDOW_SECS: u32 = 300;

/// A speech-to-text engine.
#[async_trait]
pub trait Recognizer: Send + Sync + 'static {
    /// Transcribes 16 kHz mono WAV at `wav`.
    async fn transcribe(&self, wav: &Path) -> Result<Recognized, StageError>;
}

pub struct Recognized {
    pub source: TranscriptSource,
    pub language: Option<String>,
    pub segments: Vec<Segment>,
}

pub struct Transcription {
    ctx: StageContext,
    recognizer: Arc<dyn Recognizer>,
}

impl Transcription {
    pub fn new(ctx: StageContext) -> Result<Self, StageError> {
        let recognizer = recognizer(&ctx.settings)?;
        Ok(Self { ctx, recognizer })
    }
}

/// The engine the settings choose (`transcription.backend`).
pub fn recognizer(settings: &StageSettings) -> Result<Arc<dyn Recognizer>, StageError> {
    Ok(match settings.transcription.backend {
        TranscriptionBackend::Ctranslate2 => ctranslate2_recognizer(settings)?,
        TranscriptionBackend::Whisper => whisper_recognizer(settings)?,
        TranscriptionBackend::Openai => Arc::new(OpenAiRecognizer::new(settings)),
    })
}

#[cfg(feature = "whisper")]
pub use whisper::build_features as whisper_build_features;

#[cfg(feature = "ctranslate2")]
mod ctranslate2;

/// Whisper on CTranslate2 as the settings configure it: one replica per transcription worker.
#[cfg(feature = "ctranslate2")]
pub fn ctranslate2_recognizer(settings: &StageSettings) -> Result<Arc<dyn Recognizer>, StageError> {
    Ok(Arc::new(ctranslate2::Ct2Recognizer::new(
        settings.ctranslate2.clone(),
        settings.transcription.language.clone(),
        settings.stages.workers(crate::domain::Stage::Transcription),
    )))
}

/// Whisper on CTranslate2 as the settings configure it.
#[cfg(not(feature = "ctranslate2"))]
pub fn ctranslate2_recognizer(_: &StageSettings) -> Result<Arc<dyn Recognizer>, StageError> {
    Err(StageError::Permanent(
        "this build of tubesum has no CTranslate2 (built without the `ctranslate2` feature); \
         set transcription.backend = \"whisper\" or \"openai\""
            .into(),
    ))
}

/// A local engine's run over the WAV at `wav`: on a blocking thread, one window of audio in memory
/// at a time, silent windows not decoded at all; `decode` turns a window's samples into segments
/// (timed from the window's start). The decode runs on a blocking thread, which dropping this
/// future (a timeout, a pool stopped) cannot stop: the flag `decode` is given is set then, and
/// the engine abandons the work.
#[cfg(any(feature = "whisper", feature = "ctranslate2"))]
async fn transcribe_windows<F>(wav: &Path, language: String, engine: &str, decode: F) -> Result<Recognized, StageError>
where
    F: Fn(&[f32], &AtomicBool) -> Result<Vec<Segment>, StageError> + Send + 'static,
{
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let flag = cancel.0.clone();
    let wav = wav.to_owned();
    let result = tokio::task::spawn_blocking(move || {
        let mut segments = Vec::new();
        for window in audio::Windows::open(&wav, WINDOW_SECS)? {
            let window = window?;
            if is_silent(&window.samples) {
                continue;
            }
            let decoded = decode(&window.samples, &flag)?;
            segments.extend(decoded.into_iter().map(|s| s.shifted(window.start_secs)));
        }
        Ok(Recognized { source: TranscriptSource::Whisper, language: Some(language), segments })
    })
    .await
    .map_err(|e| StageError::Retryable(format!("{engine} worker crashed: {e}")))?;
    drop(cancel);
    result
}

/// Sets its flag when dropped: the stage's future went away before the decode ended.
#[cfg(any(feature = "whisper", feature = "ctranslate2"))]
struct CancelOnDrop(Arc<AtomicBool>);

#[cfg(any(feature = "whisper", feature = "ctranslate2"))]
impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Local whisper.cpp as the settings configure it.
#[cfg(feature = "whisper")]
pub fn whisper_recognizer(settings: &StageSettings) -> Result<Arc<dyn Recognizer>, StageError> {
    Ok(Arc::new(whisper::WhisperRecognizer::new(settings.whisper.clone(), settings.transcription.language.clone())))
}

/// Local whisper.cpp as the settings configure it.
#[cfg(not(feature = "whisper"))]
pub fn whisper_recognizer(_: &StageSettings) -> Result<Arc<dyn Recognizer>, StageError> {
    Err(StageError::Permanent(
        "this build of tubesum has no local whisper (built without the `whisper` feature); \
         set transcription.backend = \"openai\""
            .into(),
    ))
}

#[async_trait]
impl StageWork for Transcription {
    async fn run(&self, command: &StageCommand) -> StageResult {
        let video_id = video_of(command)?;
        let lock = self.ctx.media.lock(video_id).await?;
        let transcript = match self.ctx.artifacts.get_transcript(video_id).await? {
            // This job's, or (unless forced) one another job made meanwhile: not made again.
            Some(t) if self.ctx.may_reuse(command, t.job_id).await? => t,
            _ => {
                let wav = lock.fetch(MediaKind::Audio).await?;
                let recognized = self.recognizer.transcribe(&wav).await?;
                let segments = clean_segments(recognized.segments);
                let transcript = Transcript {
                    video_id: video_id.clone(),
                    source: recognized.source,
                    language: recognized.language,
                    text: join_text(&segments),
                    segments,
                    job_id: command.job_id,
                };
                self.ctx.store_transcript(&transcript).await?;
                transcript
            }
        };
        Ok(vec![DomainEvent::new(
            command.job_id,
            Some(video_id.clone()),
            EventPayload::TranscriptionCompleted { source: transcript.source, segments: transcript.segments.len() },
        )])
    }
}

pub fn join_text(segments: &[Segment]) -> String {
    segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ")
}

/// Trims segments and drops those that are empty or only a non-speech annotation.
pub fn clean_segments(segments: Vec<Segment>) -> Vec<Segment> {
    segments
        .into_iter()
        .filter_map(|mut s| {
            s.text = s.text.trim().to_owned();
            (!is_non_speech(&s.text)).then_some(s)
        })
        .collect()
}

/// True for text such as "", "\[BLANK_AUDIO\]", "(music playing)", "♪ ♪", "*applause*".
pub fn is_non_speech(text: &str) -> bool {
    let mut rest = text.trim();
    loop {
        rest = rest.trim_start_matches(|c: char| c.is_whitespace() || "♪♫♬-.…".contains(c));
        if rest.is_empty() {
            return true;
        }
        let close = match rest.chars().next() {
            Some('[') => ']',
            Some('(') => ')',
            Some('*') => '*',
            _ => return false,
        };
        match rest[1..].find(close) {
            Some(end) => rest = &rest[end + 2..],
            None => return false,
        }
    }
}

pub fn is_silent(samples: &[f32]) -> bool {
    samples.iter().all(|s| s.abs() < SILENCE_PEAK)
}

#[cfg(feature = "whisper")]
mod whisper {
    use std::ffi::c_void;
    use std::path::Path;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use async_trait::async_trait;
    use tokio::sync::OnceCell;
    use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters};

    use super::{Recognized, Recognizer};
    use crate::domain::Segment;
    use crate::stages::StageError;
    use crate::stages::settings::WhisperSettings;

    /// OpenBLAS's own thread pool, sized like whisper's (`whisper.threads` per decode): left at
    /// its default (one thread per core) it would busy-wait beside the other workers' decodes.
    /// Process-wide; set before the model's first use.
    #[cfg(feature = "openblas")]
    fn openblas_threads(threads: u16) {
        unsafe extern "C" {
            fn openblas_set_num_threads(threads: std::ffi::c_int);
        }
        // SAFETY: OpenBLAS's documented setter, linked in with the `openblas` feature; it only
        // sizes the library's thread pool.
        unsafe { openblas_set_num_threads(std::ffi::c_int::from(threads.max(1))) };
    }

    /// What whisper.cpp was compiled with, as its backends report it (e.g. `CPU: AVX2 AVX512
    /// LLAMAFILE`): the features that are on, so a benchmark says what it measured.
    pub fn build_features() -> String {
        features_on(whisper_rs::print_system_info())
    }

    /// `WHISPER : COREML = 0 | CPU : SSE3 = 1 | AVX = 1 | …` → `CPU: SSE3 AVX`.
    fn features_on(info: &str) -> String {
        let mut backends: Vec<(String, Vec<&str>)> = Vec::new();
        for part in info.split('|').map(str::trim).filter(|p| !p.is_empty()) {
            let feature = match part.split_once(" : ") {
                Some((backend, feature)) => {
                    backends.push((backend.trim().to_owned(), Vec::new()));
                    feature
                }
                None => part,
            };
            if let (Some((_, on)), Some((name, value))) = (backends.last_mut(), feature.split_once('='))
                && value.trim() != "0"
            {
                on.push(name.trim());
            }
        }
        backends
            .iter()
            .filter(|(_, on)| !on.is_empty())
            .map(|(backend, on)| format!("{backend}: {}", on.join(" ")))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// whisper.cpp through whisper-rs; the model is loaded once, on first use, and shared by the
    /// pool's workers (each decodes with its own state on a blocking thread).
    pub struct WhisperRecognizer {
        settings: WhisperSettings,
        language: String,
        context: OnceCell<Arc<WhisperContext>>,
    }

    impl WhisperRecognizer {
        pub fn new(settings: WhisperSettings, language: String) -> Self {
            whisper_rs::install_logging_hooks();
            Self { settings, language, context: OnceCell::new() }
        }

        async fn context(&self) -> Result<Arc<WhisperContext>, StageError> {
            let model = self.settings.model.clone();
            let flash_attention = self.settings.flash_attention;
            #[cfg(feature = "openblas")]
            let threads = self.settings.threads;
            self.context
                .get_or_try_init(|| async move {
                    if !model.is_file() {
                        return Err(StageError::Permanent(format!(
                            "whisper model not found at {}: run `tubesum models fetch tiny.en` or \
                             `tubesum models import-ct2 DIR OUT`, or set whisper.model",
                            model.display()
                        )));
                    }
                    tokio::task::spawn_blocking(move || {
                        #[cfg(feature = "openblas")]
                        openblas_threads(threads);
                        let mut params = WhisperContextParameters::default();
                        params.use_gpu(false);
                        params.flash_attn(flash_attention);
                        WhisperContext::new_with_params(&model, params).map(Arc::new).map_err(|e| {
                            StageError::Permanent(format!("cannot load whisper model {}: {e}", model.display()))
                        })
                    })
                    .await
                    .map_err(|e| StageError::Retryable(format!("model loader crashed: {e}")))?
                })
                .await
                .cloned()
        }
    }

    #[async_trait]
    impl Recognizer for WhisperRecognizer {
        async fn transcribe(&self, wav: &Path) -> Result<Recognized, StageError> {
            let context = self.context().await?;
            let (settings, language) = (self.settings.clone(), self.language.clone());
            // whisper.cpp checks the flag through its abort callback.
            super::transcribe_windows(wav, language.clone(), "whisper", move |samples, cancel| {
                decode(&context, &settings, &language, samples, cancel)
            })
            .await
        }
    }

    /// whisper.cpp's abort callback: true once the decode's cancel flag is set.
    unsafe extern "C" fn abort_when_cancelled(data: *mut c_void) -> bool {
        // SAFETY: `data` points at the AtomicBool `decode` borrows for as long as
        // whisper.cpp may call this (the whole `full` call).
        unsafe { &*(data as *const AtomicBool) }.load(Ordering::Relaxed)
    }

    /// Decodes `samples`; whisper.cpp abandons the decode (an error) once `cancel` is set.
    fn decode(
        context: &WhisperContext,
        settings: &WhisperSettings,
        language: &str,
        samples: &[f32],
        cancel: &AtomicBool,
    ) -> Result<Vec<Segment>, StageError> {
        let failed = |e: whisper_rs::WhisperError| StageError::Retryable(format!("whisper failed: {e}"));
        let mut state = context.create_state().map_err(failed)?;
        let strategy = match settings.beam_size {
            0 | 1 => SamplingStrategy::Greedy { best_of: 1 },
            n => SamplingStrategy::BeamSearch { beam_size: i32::from(n), patience: -1.0 },
        };
        let mut params = FullParams::new(strategy);
        params.set_n_threads(i32::from(settings.threads));
        params.set_language(Some(language));
        params.set_translate(false);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
        params.set_suppress_blank(true);
        params.set_suppress_nst(true);
        params.set_no_speech_thold(settings.no_speech_threshold);
        // whisper-rs's set_abort_callback_safe passes its closure under the wrong type; this
        // callback reads the flag directly. SAFETY: `cancel` outlives the `full` call below.
        unsafe {
            params.set_abort_callback(Some(abort_when_cancelled));
            params.set_abort_callback_user_data(std::ptr::from_ref(cancel) as *mut c_void);
        }
        state.full(params, samples).map_err(failed)?;
        let mut out = Vec::new();
        for segment in state.as_iter() {
            if segment.no_speech_probability() > settings.no_speech_threshold {
                continue;
            }
            let text = segment.to_str_lossy().map_err(failed)?.trim().to_owned();
            // Timestamps are in centiseconds.
            out.push(Segment {
                start: segment.start_timestamp() as f64 / 100.0,
                end: segment.end_timestamp() as f64 / 100.0,
                text,
            });
        }
        Ok(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The model the tests use: `$WHISPER_MODEL` or `models/ggml-tiny.en.bin` (scripts/setup.sh).
        fn context() -> WhisperContext {
            let model = std::env::var_os("WHISPER_MODEL").map(std::path::PathBuf::from).unwrap_or_else(|| {
                std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/ggml-tiny.en.bin")
            });
            assert!(model.is_file(), "whisper model {} missing: run scripts/setup.sh", model.display());
            let mut params = WhisperContextParameters::default();
            params.use_gpu(false);
            WhisperContext::new_with_params(&model, params).expect("model loads")
        }

        fn settings() -> WhisperSettings {
            WhisperSettings {
                model: "unused".into(),
                threads: 1,
                no_speech_threshold: 0.6,
                beam_size: 1,
                flash_attention: false,
            }
        }

        #[test]
        fn build_features_name_what_is_on() {
            let info = "WHISPER : COREML = 0 | OPENVINO = 0 | CPU : SSE3 = 1 | AVX512 = 1 | AMX = 0 | LLAMAFILE = 1 | ";
            assert_eq!(features_on(info), "CPU: SSE3 AVX512 LLAMAFILE");
            assert_eq!(features_on(""), "");
        }

        /// The CPU backend's matrix products go through llamafile's tinyBLAS (`GGML_LLAMAFILE`,
        /// set in .cargo/config.toml): the encoder's attention, which OpenBLAS does not take;
        /// transcription takes 10–20 % less time with it. A build that lost the setting fails here.
        #[test]
        fn whisper_is_built_with_llamafile() {
            let features = build_features();
            assert!(features.contains("CPU: ") && features.contains("LLAMAFILE"), "{features}");
        }

        /// whisper.cpp consults the flag after each encoder window and decoder step, so a
        /// cancelled decode stops within one of those instead of running the whole file. (An
        /// uncancelled decode ending well is what the pipeline tests show.)
        #[test]
        fn a_cancelled_decode_is_abandoned_by_whisper() {
            let context = context();
            let cancelled = Arc::new(AtomicBool::new(true));
            let err = decode(&context, &settings(), "en", &crate::stages::transcription::tests::noise(60), &cancelled)
                .expect_err("whisper went on");
            assert!(err.to_string().contains("whisper failed"), "{err}");
        }
    }
}

/// An OpenAI-compatible `/audio/transcriptions` endpoint (`verbose_json` with segment
/// timestamps). Audio longer than the API's upload limit is sent in pieces whose timestamps are
/// shifted back into place.
pub struct OpenAiRecognizer {
    client: async_openai::Client<async_openai::config::OpenAIConfig>,
    model: String,
    language: String,
    piece_seconds: u32,
}

/// 10 minutes of 16 kHz 16-bit mono is 19.2 MB, under the usual 25 MB upload limit.
const OPENAI_PIECE_SECONDS: u32 = 600;

impl OpenAiRecognizer {
    pub fn new(settings: &StageSettings) -> Self {
        let s = &settings.openai_transcription;
        let client = crate::stages::summarization::llm::openai_client(&s.base_url, s.api_key.as_ref(), s.timeout_secs);
        Self {
            client,
            model: s.model.clone(),
            language: settings.transcription.language.clone(),
            piece_seconds: OPENAI_PIECE_SECONDS,
        }
    }

    async fn transcribe_piece(&self, name: String, wav: Vec<u8>) -> Result<VerboseTranscript, StageError> {
        use async_openai::types::audio::{
            AudioInput, AudioResponseFormat, CreateTranscriptionRequest, TimestampGranularity,
        };
        let request = CreateTranscriptionRequest {
            file: AudioInput::from_vec_u8(name, wav),
            model: self.model.clone(),
            language: (self.language != "auto").then(|| self.language.clone()),
            response_format: Some(AudioResponseFormat::VerboseJson),
            timestamp_granularities: Some(vec![TimestampGranularity::Segment]),
            ..Default::default()
        };
        let bytes = self
            .client
            .audio()
            .transcription()
            .create_raw(request)
            .await
            .map_err(crate::stages::summarization::llm::classify_openai_error)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| StageError::Permanent(format!("transcription API answered an unexpected body: {e}")))
    }
}

#[derive(Deserialize)]
struct VerboseTranscript {
    language: Option<String>,
    #[serde(default)]
    text: String,
    #[serde(default)]
    segments: Vec<VerboseSegment>,
}

#[derive(Deserialize)]
struct VerboseSegment {
    start: f64,
    end: f64,
    text: String,
    #[serde(default)]
    no_speech_prob: Option<f64>,
}

#[async_trait]
impl Recognizer for OpenAiRecognizer {
    async fn transcribe(&self, wav: &Path) -> Result<Recognized, StageError> {
        let mut reader = audio::Windows::open(wav, self.piece_seconds)?;
        let mut segments = Vec::new();
        let mut language = None;
        for i in 0.. {
            // Read on a blocking thread, one piece in memory at a time.
            let piece;
            (reader, piece) = tokio::task::spawn_blocking(move || {
                let piece = reader.next();
                (reader, piece)
            })
            .await
            .map_err(|e| StageError::Retryable(format!("reading audio crashed: {e}")))?;
            let Some(piece) = piece.transpose()? else { break };
            if is_silent(&piece.samples) {
                continue;
            }
            let offset = piece.start_secs;
            let bytes = encode_wav(&piece.samples)?;
            let answer = self.transcribe_piece(format!("audio-{i}.wav"), bytes).await?;
            language = language.or(answer.language);
            if answer.segments.is_empty() && !answer.text.trim().is_empty() {
                segments.push(Segment {
                    start: offset,
                    end: offset + piece.samples.len() as f64 / f64::from(audio::SAMPLE_RATE),
                    text: answer.text.trim().to_owned(),
                });
            }
            segments.extend(
                answer.segments.into_iter().filter(|s| s.no_speech_prob.is_none_or(|p| p <= 0.6)).map(|s| Segment {
                    start: s.start + offset,
                    end: s.end + offset,
                    text: s.text,
                }),
            );
        }
        Ok(Recognized { source: TranscriptSource::OpenAi, language, segments })
    }
}

fn encode_wav(samples: &[f32]) -> Result<Vec<u8>, StageError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: audio::SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut cursor = std::io::Cursor::new(Vec::with_capacity(samples.len() * 2 + 44));
    let write = |cursor: &mut std::io::Cursor<Vec<u8>>| -> Result<(), hound::Error> {
        let mut writer = hound::WavWriter::new(cursor, spec)?;
        for s in samples {
            writer.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
        }
        writer.finalize()
    };
    write(&mut cursor).map_err(|e| StageError::Permanent(format!("encoding audio: {e}")))?;
    Ok(cursor.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic hiss: not silence, so a local engine decodes it.
    pub(super) fn noise(seconds: usize) -> Vec<f32> {
        let mut x: u32 = 1;
        (0..seconds * 16_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x as f32 / u32::MAX as f32 - 0.5) * 0.2
            })
            .collect()
    }

    #[test]
    fn non_speech_annotations_are_recognised() {
        for text in ["", "  ", "[BLANK_AUDIO]", "(music playing)", "♪ ♪", "[Music] [Applause]", "*laughs*", "..."] {
            assert!(is_non_speech(text), "{text:?}");
        }
        for text in ["Hello there.", "[Music] and then we talk", "(1) first point", "♪ la la la"] {
            assert!(!is_non_speech(text), "{text:?}");
        }
    }

    #[test]
    fn clean_segments_trims_and_drops_annotations() {
        let seg = |t: &str| Segment { start: 0.0, end: 1.0, text: t.into() };
        let cleaned = clean_segments(vec![seg(" Bees make honey. "), seg("[MUSIC]"), seg("")]);
        assert_eq!(cleaned, vec![seg("Bees make honey.")]);
    }

    #[test]
    fn silence_is_detected() {
        assert!(is_silent(&[0.0; 16_000]));
        assert!(is_silent(&[]));
        let mut tone = vec![0.0; 16_000];
        tone[100] = 0.5;
        assert!(!is_silent(&tone));
    }

    #[test]
    fn wav_encoding_round_trips_through_hound() {
        let samples: Vec<f32> = (0..1600).map(|i| ((i as f32) / 10.0).sin() * 0.5).collect();
        let bytes = encode_wav(&samples).unwrap();
        let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(reader.spec().sample_rate, 16_000);
        assert_eq!(reader.len(), 1600);
    }
}
