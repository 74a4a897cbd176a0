//! tubesum's integration tests: one binary (each test binary links the whole tree).
//!
//! Real yt-dlp, ffmpeg, espeak-ng and whisper (tiny.en) run here; YouTube is the local stand-in
//! and the LLM an OpenAI-compatible test server. Required tools missing = failing tests. The
//! production adapters and stack run against the live servers `scripts/services.sh` starts; those
//! modules are compiled only with the features they test (all of them in the default build).

mod actors;
mod adapters;
mod api;
mod browser;
mod cli;
#[cfg(feature = "production")]
mod cluster;
mod console;
mod delivery;
#[cfg(feature = "production")]
mod faults;
mod helpers;
mod layers;
mod live;
mod llm;
mod media;
mod models;
mod pipeline;
#[cfg(feature = "production")]
mod production;
mod subscriptions;
mod webhooks;
