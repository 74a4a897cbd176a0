//! tubesum turns a YouTube channel into per-video transcripts and summaries.
//!
//! A job discovers a channel's videos; each video goes through download → audio extraction →
//! transcription → summarization under a supervised actor tree (see [`actors`]). State lives behind
//! ports ([`ports`]), served by embedded SQLite and in-process queues by default, or by the
//! production backends (PostgreSQL, MongoDB, RabbitMQ, Kafka; [`adapters`]).
//!
//! # Layers
//!
//! The modules form a stack; each uses only the ones below it (`tests/integration/layers.rs`
//! checks every `crate::` path against this order and fails on an upward or sideways use):
//!
//! ```text
//! cli            the command line: serve, summarize, demo, bench, models
//!  └ api         HTTP routes and the HTTP application (server)
//!     └ app      settings, wiring (ports from settings), the running pipeline
//!        └ observability   analytics, Prometheus metrics, event log, tracing
//!           └ actors       the supervision tree (below)
//!              ├ adapters  embedded/, postgres/, rabbitmq/, kafka, mongodb (each behind its feature)
//!              └ stages    discovery, download, audio, transcription, summarization (the work, no actors)
//!                 └ ports  JobStore, ArtifactStore, CommandBus, EventBus; their conformance suites
//!                    └ domain   ids, statuses, messages, records, the video workflow, backoff
//! ```
//!
//! `adapters` and `stages` are peers: neither uses the other. Two tools live beside the crate,
//! in `crates/`: the local YouTube stand-in (tests, and `tubesum demo`) and the Whisper model
//! fetcher/converter (`tubesum models`).
//!
//! # Supervision tree
//!
//! ```text
//! RootSupervisor                        restarts a failed child after capped backoff + jitter
//! ├─ EventRouter                        event bus → the JobActor / VideoActor an event is about
//! ├─ StagePool{stage} × 5               consumes its stage's queue with N workers, publishes results
//! ├─ EventConsumer{analytics, event-log} own consumer groups: /analytics, /metrics, events.jsonl
//! └─ JobSupervisor                      one JobActor per job this process holds the lease on
//!    └─ JobActor{job_id}                runs discovery, then one VideoActor per video
//!       └─ VideoActor{job_id,video_id}  drives the video workflow through the stage pools;
//!                                       restarted alone, from its persisted state, when it fails
//! ```

pub mod actors;
pub mod adapters;
pub mod api;
pub mod app;
pub mod cli;
pub mod domain;
pub mod observability;
pub mod ports;
pub mod stages;
