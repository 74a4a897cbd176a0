//! Whisper models: fetching ggml files and converting CTranslate2 (faster-whisper) models to ggml.

pub mod ct2;
pub mod fetch;
pub mod ggml;
pub mod mel;
