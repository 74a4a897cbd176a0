//! Whisper model files for whisper.cpp, as `tubesum models` uses them: [`fetch`] downloads a ggml
//! model and verifies its published SHA-1; [`ggml::import_ct2`] converts a faster-whisper
//! (CTranslate2) model directory, read by [`ct2`], into a ggml file with the [`mel`] filters
//! whisper.cpp expects, its weight matrices in f16 or quantized by [`quant`] (q8_0, q5_1). A tool
//! beside the pipeline: tubesum's transcription only loads the result.

pub mod ct2;
pub mod fetch;
pub mod ggml;
pub mod mel;
pub mod quant;
mod tensors;
