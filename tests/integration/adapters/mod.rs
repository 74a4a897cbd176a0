//! The production adapters against live servers (started by `scripts/services.sh`): each passes
//! its port's conformance suite, plus what only that technology can get wrong. They fail, never
//! skip, when a server is missing.

#[cfg(feature = "kafka")]
mod kafka;
#[cfg(feature = "mongodb")]
mod mongodb;
#[cfg(all(feature = "postgres", feature = "rabbitmq", feature = "kafka"))]
mod outbox;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
