//! `tubesum models import-ct2 --quantize q8_0`: the real tiny.en, quantized, loads in the
//! whisper.cpp tubesum links and transcribes speech; its blocks are the bytes ggml itself writes.

use std::path::Path;
use std::time::Duration;

use tokio::process::Command;
use tubesum::stages::audio;
use tubesum::stages::transcription::whisper_recognizer;
use youtube_standin::media;

use crate::cli::binary;
use crate::helpers::{ct2_model_dir, settings, stdout_of};

/// tiny.en in q8_0: the f16 file (77,704,698 bytes) with its 36,430,848 matrix weights in 34-byte
/// blocks of 32 instead of 2 bytes each (the unit tests derive it from the hparams).
const TINY_EN_Q8_0_BYTES: u64 = 43_550_778;

#[tokio::test]
async fn a_q8_0_model_transcribes_speech() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("ggml-tiny.en-q8_0.bin");
    let stdout = stdout_of(
        Command::new(binary())
            .args(["models", "import-ct2"])
            .arg(ct2_model_dir())
            .arg(&model)
            .args(["--quantize", "q8_0"]),
    )
    .await;
    assert!(stdout.contains("167 tensors (65 in q8_0)"), "{stdout}");
    assert_eq!(std::fs::metadata(&model).unwrap().len(), TINY_EN_Q8_0_BYTES);

    // About 5 s of speech, at the 16 kHz mono the transcription stage reads.
    let spoken = dir.path().join("spoken.wav");
    media::speak("Sunlight looks white, but it is a mixture of every color of the rainbow.", &spoken).await.unwrap();
    let wav = dir.path().join("audio.wav");
    audio::extract(Path::new("ffmpeg"), &spoken, &wav, Duration::from_secs(60)).await.unwrap();

    // One whisper thread (the test settings), as in CI.
    let data = tempfile::tempdir().unwrap();
    let settings = settings(&data, &[("TUBESUM_WHISPER__MODEL", model.display().to_string())]);
    let recognizer = whisper_recognizer(&settings.stage_settings()).unwrap();
    let recognized = recognizer.transcribe(&wav).await.unwrap();
    let text = recognized.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(" ").to_lowercase();
    for word in ["sunlight", "white", "mixture", "rainbow"] {
        assert!(text.contains(word), "{word:?} not in {text:?}");
    }
}

// ggml, linked in by whisper-rs-sys (whisper-rs re-exports its bindings only with `raw-api`).
#[cfg(feature = "whisper")]
unsafe extern "C" {
    fn ggml_quantize_chunk(
        ggml_type: std::ffi::c_uint,
        src: *const f32,
        dst: *mut std::ffi::c_void,
        start: i64,
        nrows: i64,
        n_per_row: i64,
        imatrix: *const f32,
    ) -> usize;
}

/// Our q8_0 and q5_1 blocks against ggml's own quantizer (the one whisper.cpp's quantize tool
/// calls), on rows with both signs, an all-zero block and halves that round.
#[cfg(feature = "whisper")]
#[test]
fn q8_0_and_q5_1_blocks_are_the_bytes_ggml_writes() {
    use whisper_models::quant::GgmlType;

    let (rows, n) = (3, 128);
    let mut x: u32 = 7;
    let mut values: Vec<f32> = (0..rows * n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x % 2001) as f32 / 1000.0 - 1.0
        })
        .collect();
    values[..32].fill(0.0);
    values[40] = 0.5;
    values[41] = -0.5;
    for ours in [GgmlType::Q8_0, GgmlType::Q5_1] {
        let mut expected = vec![0u8; ours.row_bytes(rows * n)];
        // SAFETY: `values` holds rows × n floats and `expected` the bytes of as many quantized
        // values; q8_0 and q5_1 take no importance matrix.
        let written = unsafe {
            ggml_quantize_chunk(
                ours.id().try_into().unwrap(),
                values.as_ptr(),
                expected.as_mut_ptr().cast(),
                0,
                rows as i64,
                n as i64,
                std::ptr::null(),
            )
        };
        assert_eq!(written, expected.len());
        let mut actual = Vec::new();
        for row in values.chunks(n) {
            ours.encode_row(row, &mut actual);
        }
        assert!(actual == expected, "{ours} differs from ggml's");
    }
}
