//! Test and demo media: speech (espeak-ng), real containers, silence, music-like tones and garbage (ffmpeg).
//!
//! Every tool runs through `tokio::process` with an argv (never a shell), stdin closed or fed by us, stderr
//! captured, the child killed when dropped and bounded by [`TOOL_TIMEOUT`]. A tool that is not installed is a
//! [`MediaError::ToolMissing`]; one that fails is a [`MediaError::ToolFailed`] carrying the tail of its stderr.
//! These tools are required for the tests that use this module: they fail loudly rather than skip.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::Segment;

/// The text-to-speech tool, looked up on `PATH`.
pub const ESPEAK: &str = "espeak-ng";
/// The encoder, looked up on `PATH`.
pub const FFMPEG: &str = "ffmpeg";
/// espeak-ng voice: plain American English, which whisper transcribes reliably.
pub const VOICE: &str = "en-us";
/// Speaking rate in words per minute (espeak's default of 175 slurs more).
pub const WORDS_PER_MINUTE: u32 = 150;
/// The longest any single tool invocation may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(120);
/// Silence inserted between the sentences of [`speak_script`], in seconds.
pub const SENTENCE_GAP_SECONDS: f64 = 0.4;

const STDERR_TAIL_BYTES: usize = 2000;
const GARBAGE_BYTES: usize = 256 * 1024;

/// Why generating media failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{tool} is not installed or not on PATH (it is required to generate test media)")]
    ToolMissing {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("could not run {tool}")]
    Spawn {
        tool: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{tool} failed ({status}): {stderr_tail}")]
    ToolFailed { tool: &'static str, status: ExitStatus, stderr_tail: String },
    #[error("{tool} timed out after {}s", timeout.as_secs())]
    TimedOut { tool: &'static str, timeout: Duration },
    #[error("{tool} reported success but wrote nothing to {}", path.display())]
    EmptyOutput { tool: &'static str, path: PathBuf },
    #[error("io error on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unexpected wav layout in {}: {reason}", path.display())]
    BadWav { path: PathBuf, reason: &'static str },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The containers the demo and tests serve, mirroring what YouTube hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    /// MP4 with an AAC audio track and a small solid-colour video track, so audio extraction from a real
    /// video container is exercised.
    Mp4Aac,
    /// WebM with a single Opus audio track (YouTube's usual audio-only format).
    WebmOpus,
    /// M4A (MP4 audio-only) with a single AAC track.
    M4a,
}

impl Container {
    /// File extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Container::Mp4Aac => "mp4",
            Container::WebmOpus => "webm",
            Container::M4a => "m4a",
        }
    }

    /// The Content-Type a server sends for this container.
    pub fn content_type(self) -> &'static str {
        match self {
            Container::Mp4Aac => "video/mp4",
            Container::WebmOpus => "audio/webm",
            Container::M4a => "audio/mp4",
        }
    }
}

/// Speaks `text` into a WAV file (22.05 kHz mono s16) with espeak-ng.
pub async fn speak(text: &str, out_wav: &Path) -> Result<(), MediaError> {
    if text.trim().is_empty() {
        return Err(MediaError::InvalidArgument("nothing to speak".into()));
    }
    let speed = WORDS_PER_MINUTE.to_string();
    let args: Vec<OsString> = vec![
        "-v".into(),
        VOICE.into(),
        "-s".into(),
        speed.into(),
        "-w".into(),
        out_wav.as_os_str().to_owned(),
        // Text arrives on stdin, so it can never be mistaken for an option.
        "--stdin".into(),
    ];
    run_tool(ESPEAK, &args, Some(text.as_bytes())).await?;
    ensure_written(ESPEAK, out_wav).await
}

/// Speaks `sentences` one after another into one WAV file, with [`SENTENCE_GAP_SECONDS`] of silence between
/// them, and returns one caption [`Segment`] per sentence carrying its exact text and timing.
///
/// Each sentence is synthesised to a `<out stem>.partN.wav` next to `out_wav`, removed afterwards.
pub async fn speak_script(sentences: &[&str], out_wav: &Path) -> Result<Vec<Segment>, MediaError> {
    if sentences.is_empty() {
        return Err(MediaError::InvalidArgument("no sentences to speak".into()));
    }
    let mut parts = Vec::with_capacity(sentences.len());
    for (i, sentence) in sentences.iter().enumerate() {
        let part = out_wav.with_extension(format!("part{i}.wav"));
        let spoken = speak(sentence, &part).await;
        let read = match spoken {
            Ok(()) => read_file(&part).await,
            Err(e) => Err(e),
        };
        // Best-effort cleanup: the part is scratch either way.
        let _ = tokio::fs::remove_file(&part).await;
        let wav = wav::parse(&read?).map_err(|reason| MediaError::BadWav { path: part, reason })?;
        parts.push(wav);
    }

    let wav::Joined { wav: joined, spans } = wav::join(&parts, SENTENCE_GAP_SECONDS)
        .map_err(|reason| MediaError::BadWav { path: out_wav.to_owned(), reason })?;
    tokio::fs::write(out_wav, joined).await.map_err(|source| MediaError::Io { path: out_wav.to_owned(), source })?;

    Ok(sentences
        .iter()
        .zip(spans)
        .map(|(text, (start, end))| Segment { start, end, text: (*text).to_owned() })
        .collect())
}

/// Encodes `input` (any audio ffmpeg reads) into `out` as `container`.
pub async fn encode(input: &Path, out: &Path, container: Container) -> Result<(), MediaError> {
    let mut args = ffmpeg_prelude();
    args.extend(["-i".into(), ffmpeg_path(input)]);
    let codec_args: &[&str] = match container {
        Container::Mp4Aac => &[
            "-f",
            "lavfi",
            "-i",
            "color=c=0x2a4d69:s=320x180:r=15",
            "-map",
            "0:a:0",
            "-map",
            "1:v:0",
            "-shortest",
            // ffmpeg's native MPEG-4 encoder is in every build; the codec does not matter to audio extraction.
            "-c:v",
            "mpeg4",
            "-q:v",
            "8",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-movflags",
            "+faststart",
            "-f",
            "mp4",
        ],
        Container::WebmOpus => &["-vn", "-c:a", "libopus", "-b:a", "48k", "-f", "webm"],
        Container::M4a => &["-vn", "-c:a", "aac", "-b:a", "96k", "-movflags", "+faststart", "-f", "ipod"],
    };
    args.extend(codec_args.iter().map(OsString::from));
    args.push(ffmpeg_path(out));
    run_tool(FFMPEG, &args, None).await?;
    ensure_written(FFMPEG, out).await
}

/// Writes `seconds` of digital silence (16 kHz mono) to `out`; the format follows `out`'s extension.
pub async fn silence(seconds: f32, out: &Path) -> Result<(), MediaError> {
    let seconds = check_seconds(seconds)?;
    lavfi_audio("anullsrc=r=16000:cl=mono", &seconds, out).await
}

/// Writes `seconds` of a music-like stand-in to `out`: a major chord on `hz` (root, major third, fifth) with a
/// slow tremolo, no speech at all. The format follows `out`'s extension.
pub async fn tone(seconds: f32, hz: u32, out: &Path) -> Result<(), MediaError> {
    let seconds = check_seconds(seconds)?;
    if !(20..=8000).contains(&hz) {
        return Err(MediaError::InvalidArgument(format!("tone frequency {hz} Hz is outside 20..=8000")));
    }
    let root = f64::from(hz);
    // No commas: they would split the lavfi filter graph.
    let source = format!(
        "aevalsrc=exprs=(0.6+0.4*sin(2*PI*3*t))*(0.25*sin(2*PI*{root}*t)+0.2*sin(2*PI*{third}*t)+0.2*sin(2*PI*{fifth}*t)):s=44100",
        third = root * 1.25,
        fifth = root * 1.5,
    );
    lavfi_audio(&source, &seconds, out).await
}

/// Writes a broken "mp4" to `out`: an `ftyp` box claiming ISO MP4, then filler with no `moov`, so
/// every tool recognises the container and fails to decode it. Deterministic (random bytes can
/// happen to look like MPEG audio frames).
pub async fn garbage(out: &Path) -> Result<(), MediaError> {
    let mut bytes = Vec::with_capacity(GARBAGE_BYTES);
    bytes.extend_from_slice(&[0, 0, 0, 0x18]);
    bytes.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2");
    while bytes.len() < GARBAGE_BYTES {
        bytes.extend_from_slice(b"this is not media data ");
    }
    tokio::fs::write(out, bytes).await.map_err(|source| MediaError::Io { path: out.to_owned(), source })
}

fn check_seconds(seconds: f32) -> Result<String, MediaError> {
    if seconds.is_finite() && seconds > 0.0 && seconds <= 3600.0 {
        Ok(format!("{seconds:.3}"))
    } else {
        Err(MediaError::InvalidArgument(format!("duration {seconds}s is outside (0, 3600]")))
    }
}

async fn lavfi_audio(source: &str, seconds: &str, out: &Path) -> Result<(), MediaError> {
    let mut args = ffmpeg_prelude();
    args.extend(["-f", "lavfi", "-i", source, "-t", seconds].map(OsString::from));
    args.push(ffmpeg_path(out));
    run_tool(FFMPEG, &args, None).await?;
    ensure_written(FFMPEG, out).await
}

fn ffmpeg_prelude() -> Vec<OsString> {
    ["-nostdin", "-hide_banner", "-loglevel", "error", "-y"].map(OsString::from).to_vec()
}

/// `file:` keeps ffmpeg from reading a path as an option (`-x.wav`) or a protocol (`http:x.wav`).
fn ffmpeg_path(path: &Path) -> OsString {
    let mut arg = OsString::from("file:");
    arg.push(path.as_os_str());
    arg
}

async fn read_file(path: &Path) -> Result<Vec<u8>, MediaError> {
    tokio::fs::read(path).await.map_err(|source| MediaError::Io { path: path.to_owned(), source })
}

async fn ensure_written(tool: &'static str, path: &Path) -> Result<(), MediaError> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if meta.len() > 0 => Ok(()),
        Ok(_) => Err(MediaError::EmptyOutput { tool, path: path.to_owned() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(MediaError::EmptyOutput { tool, path: path.to_owned() }),
        Err(source) => Err(MediaError::Io { path: path.to_owned(), source }),
    }
}

/// Runs `tool` with `args`, optionally feeding `stdin`, and maps every way it can go wrong.
async fn run_tool(tool: &'static str, args: &[OsString], stdin: Option<&[u8]>) -> Result<(), MediaError> {
    let mut child = Command::new(tool)
        .args(args.iter().map(OsString::as_os_str).collect::<Vec<&OsStr>>())
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| match source.kind() {
            io::ErrorKind::NotFound => MediaError::ToolMissing { tool, source },
            _ => MediaError::Spawn { tool, source },
        })?;

    let pipe = child.stdin.take();
    let feed = async move {
        if let (Some(mut pipe), Some(bytes)) = (pipe, stdin) {
            pipe.write_all(bytes).await?;
            pipe.shutdown().await?;
        }
        Ok::<(), io::Error>(())
    };
    // Dropping this future on timeout drops the child, which kills it.
    let run = async move { tokio::join!(feed, child.wait_with_output()) };
    let (fed, output) = tokio::time::timeout(TOOL_TIMEOUT, run)
        .await
        .map_err(|_| MediaError::TimedOut { tool, timeout: TOOL_TIMEOUT })?;
    let output = output.map_err(|source| MediaError::Spawn { tool, source })?;
    if !output.status.success() {
        return Err(MediaError::ToolFailed { tool, status: output.status, stderr_tail: stderr_tail(&output.stderr) });
    }
    fed.map_err(|source| MediaError::Spawn { tool, source })
}

fn stderr_tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        return "(no stderr)".to_owned();
    }
    let start = text.len().saturating_sub(STDERR_TAIL_BYTES);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    text[start..].to_owned()
}

/// Just enough RIFF/WAVE to join espeak-ng's PCM output.
mod wav {
    pub(super) struct Pcm {
        pub fmt: Vec<u8>,
        pub byte_rate: u32,
        pub block_align: u16,
        pub data: Vec<u8>,
    }

    fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
        Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    }

    fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
    }

    pub(super) fn parse(bytes: &[u8]) -> Result<Pcm, &'static str> {
        if bytes.get(0..4) != Some(b"RIFF") || bytes.get(8..12) != Some(b"WAVE") {
            return Err("not a riff/wave file");
        }
        let (mut fmt, mut data) = (None, None);
        let mut pos = 12;
        while let Some(size) = le_u32(bytes, pos + 4) {
            let body = pos + 8;
            // Streaming writers leave oversized lengths: clamp to what is there.
            let end = body.saturating_add(size as usize).min(bytes.len());
            match &bytes[pos..pos + 4] {
                b"fmt " => fmt = Some(bytes[body..end].to_vec()),
                b"data" => data = Some(bytes[body..end].to_vec()),
                _ => {}
            }
            pos = end + (end - body) % 2;
        }
        let fmt = fmt.ok_or("no fmt chunk")?;
        let data = data.ok_or("no data chunk")?;
        if le_u16(&fmt, 0) != Some(1) {
            return Err("not integer pcm");
        }
        let byte_rate = le_u32(&fmt, 8).filter(|&r| r > 0).ok_or("bad byte rate")?;
        let block_align = le_u16(&fmt, 12).filter(|&a| a > 0).ok_or("bad block align")?;
        Ok(Pcm { fmt, byte_rate, block_align, data })
    }

    /// A joined WAV file and each part's (start, end) in seconds.
    pub(super) struct Joined {
        pub wav: Vec<u8>,
        pub spans: Vec<(f64, f64)>,
    }

    /// Concatenates `parts` (same format) with `gap` seconds of silence between them.
    pub(super) fn join(parts: &[Pcm], gap: f64) -> Result<Joined, &'static str> {
        let first = parts.first().ok_or("nothing to join")?;
        if parts.iter().any(|p| p.fmt != first.fmt) {
            return Err("parts differ in format");
        }
        let rate = f64::from(first.byte_rate);
        let align = usize::from(first.block_align);
        let gap_bytes = ((gap * rate) as usize) / align * align;

        let mut data = Vec::new();
        let mut spans = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                data.resize(data.len() + gap_bytes, 0);
            }
            let start = data.len() as f64 / rate;
            data.extend_from_slice(&part.data[..part.data.len() / align * align]);
            spans.push((start, data.len() as f64 / rate));
        }

        let data_len = u32::try_from(data.len()).map_err(|_| "joined audio too long")?;
        let fmt_len = u32::try_from(first.fmt.len()).map_err(|_| "fmt chunk too long")?;
        let mut out = Vec::with_capacity(data.len() + first.fmt.len() + 28);
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(4 + 8 + fmt_len + fmt_len % 2 + 8 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&fmt_len.to_le_bytes());
        out.extend_from_slice(&first.fmt);
        if fmt_len % 2 == 1 {
            out.push(0);
        }
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        out.extend_from_slice(&data);
        Ok(Joined { wav: out, spans })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::process::Stdio;

    use tokio::process::Command;

    /// `ffprobe`'s view of a file: (format name, duration, [(codec_type, codec_name)]).
    pub(crate) async fn probe(path: &Path) -> Result<(String, f64, Vec<(String, String)>), String> {
        let output = Command::new("ffprobe")
            .args(["-v", "error", "-show_entries", "format=format_name,duration:stream=codec_type,codec_name"])
            .args(["-of", "json"])
            .arg(path)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| format!("ffprobe is required: {e}"))?;
        if !output.status.success() {
            return Err(String::from_utf8_lossy(&output.stderr).into_owned());
        }
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
        let format = json["format"]["format_name"].as_str().unwrap_or_default().to_owned();
        let duration = json["format"]["duration"].as_str().and_then(|d| d.parse().ok()).unwrap_or(0.0);
        let streams = json["streams"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                (field("codec_type"), field("codec_name"))
            })
            .collect();
        Ok((format, duration, streams))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::probe;
    use super::*;

    fn streams(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(t, c)| ((*t).to_owned(), (*c).to_owned())).collect()
    }

    #[tokio::test]
    async fn speech_encodes_into_every_container() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("speech.wav");
        speak("The quick brown fox jumps over the lazy dog.", &wav).await.expect("espeak-ng");
        let (format, duration, found) = probe(&wav).await.expect("ffprobe wav");
        assert_eq!(format, "wav");
        assert!(duration > 1.0, "speech too short: {duration}");
        assert_eq!(found, streams(&[("audio", "pcm_s16le")]));

        let cases = [
            (Container::Mp4Aac, vec![("audio", "aac"), ("video", "mpeg4")]),
            (Container::WebmOpus, vec![("audio", "opus")]),
            (Container::M4a, vec![("audio", "aac")]),
        ];
        for (container, expected) in cases {
            let out = dir.path().join(format!("speech.{}", container.extension()));
            encode(&wav, &out, container).await.expect("ffmpeg encode");
            let (_, encoded, mut found) = probe(&out).await.expect("ffprobe encoded");
            found.sort();
            assert_eq!(found, streams(&expected), "{container:?}");
            assert!((encoded - duration).abs() < 0.5, "{container:?}: {encoded} vs {duration}");
        }
    }

    #[tokio::test]
    async fn script_captions_follow_the_sentences() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wav = dir.path().join("script.wav");
        let sentences = ["First sentence here.", "And a second one."];
        let segments = speak_script(&sentences, &wav).await.expect("speak script");
        assert_eq!(segments.len(), 2);
        assert_eq!(segments[0].text, sentences[0]);
        assert_eq!(segments[0].start, 0.0);
        assert!(segments[0].end > 0.5);
        assert!(segments[1].start >= segments[0].end + SENTENCE_GAP_SECONDS - 0.01);
        let (_, duration, _) = probe(&wav).await.expect("ffprobe script");
        assert!((duration - segments[1].end).abs() < 0.01, "{duration} vs {}", segments[1].end);
        let mut left = tokio::fs::read_dir(dir.path()).await.expect("read dir");
        let mut names = Vec::new();
        while let Some(entry) = left.next_entry().await.expect("dir entry") {
            names.push(entry.file_name());
        }
        assert_eq!(names, vec![OsString::from("script.wav")], "part files left behind");
    }

    #[tokio::test]
    async fn silence_tone_and_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let quiet = dir.path().join("quiet.wav");
        silence(2.5, &quiet).await.expect("silence");
        let (_, duration, found) = probe(&quiet).await.expect("ffprobe silence");
        assert!((duration - 2.5).abs() < 0.05, "{duration}");
        assert_eq!(found, streams(&[("audio", "pcm_s16le")]));

        let music = dir.path().join("music.m4a");
        tone(3.0, 220, &music).await.expect("tone");
        let (_, duration, found) = probe(&music).await.expect("ffprobe tone");
        assert!((duration - 3.0).abs() < 0.1, "{duration}");
        assert_eq!(found, streams(&[("audio", "aac")]));

        let junk = dir.path().join("junk.mp4");
        garbage(&junk).await.expect("garbage");
        assert!(probe(&junk).await.is_err(), "ffprobe should reject garbage");
    }

    #[tokio::test]
    async fn bad_arguments_and_failures_are_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("x.wav");
        assert!(matches!(speak("  ", &out).await, Err(MediaError::InvalidArgument(_))));
        assert!(matches!(silence(0.0, &out).await, Err(MediaError::InvalidArgument(_))));
        assert!(matches!(silence(f32::NAN, &out).await, Err(MediaError::InvalidArgument(_))));
        assert!(matches!(tone(1.0, 5, &out).await, Err(MediaError::InvalidArgument(_))));

        let missing = dir.path().join("missing.wav");
        let err = encode(&missing, &dir.path().join("o.mp4"), Container::M4a).await.unwrap_err();
        match &err {
            MediaError::ToolFailed { tool, stderr_tail, .. } => {
                assert_eq!(*tool, FFMPEG);
                assert!(stderr_tail.contains("missing.wav"), "{stderr_tail}");
            }
            other => panic!("expected ToolFailed, got {other:?}"),
        }
        assert!(err.to_string().starts_with("ffmpeg failed"), "{err}");

        let err = run_tool("tubesum-no-such-tool", &[], None).await.unwrap_err();
        assert!(matches!(err, MediaError::ToolMissing { .. }), "{err:?}");
    }

    #[test]
    fn wav_join_inserts_gaps_and_reports_spans() {
        // 1 kHz mono u8-sized blocks: byte_rate 2000 (s16), block_align 2.
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&1u16.to_le_bytes()); // pcm
        fmt.extend_from_slice(&1u16.to_le_bytes()); // mono
        fmt.extend_from_slice(&1000u32.to_le_bytes());
        fmt.extend_from_slice(&2000u32.to_le_bytes());
        fmt.extend_from_slice(&2u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        let part = |len: usize| wav::Pcm { fmt: fmt.clone(), byte_rate: 2000, block_align: 2, data: vec![1; len] };
        let wav::Joined { wav: bytes, spans } = wav::join(&[part(2000), part(1000)], 0.5).expect("join");
        assert_eq!(spans, vec![(0.0, 1.0), (1.5, 2.0)]);
        let parsed = wav::parse(&bytes).expect("reparse");
        assert_eq!(parsed.data.len(), 4000);
        assert_eq!(parsed.fmt, fmt);
        assert!(wav::parse(b"RIFF\0\0\0\0WAVE").is_err());
        assert!(wav::parse(b"not a wav").is_err());
    }

    #[test]
    fn stderr_tail_keeps_the_end() {
        let long = "é".repeat(STDERR_TAIL_BYTES);
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.len() <= STDERR_TAIL_BYTES && tail.chars().all(|c| c == 'é'));
        assert_eq!(stderr_tail(b"  \n"), "(no stderr)");
    }
}
