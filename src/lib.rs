//! tubesum turns a YouTube channel into per-video transcripts and summaries.
//!
//! A job discovers a channel's videos; each video goes through download → audio extraction →
//! transcription → summarization under a supervised actor tree (see [`actors`]). State lives behind
//! ports ([`adapters`]): embedded SQLite + in-process queues by default.

pub mod actors;
pub mod adapters;
pub mod analytics;
pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod models;
pub mod pipeline;
pub mod report;
pub mod stages;
pub mod standin;
pub mod summarize;
pub mod telemetry;
