//! tubesum's integration tests: one binary (each test binary links the whole tree).
//!
//! Real yt-dlp, ffmpeg, espeak-ng and whisper (tiny.en) run here; YouTube is the local stand-in
//! and the LLM an OpenAI-compatible test server. Required tools missing = failing tests.

mod actors;
mod api;
mod cli;
mod faults;
mod helpers;
mod llm;
mod pipeline;
mod production;
