//! The implementations of the [ports](crate::ports): one module per technology. The embedded
//! adapters are always compiled; each production driver sits behind its cargo feature, so a
//! laptop build carries none of them.
//!
//! | port                                    | embedded ([`embedded`])  | production                                   | feature    |
//! |-----------------------------------------|--------------------------|----------------------------------------------|------------|
//! | [`JobStore`](crate::ports::JobStore)           | SQLite                   | PostgreSQL (`postgres`)                      | `postgres` |
//! | [`ArtifactStore`](crate::ports::ArtifactStore) | SQLite                   | MongoDB (`mongodb`)                          | `mongodb`  |
//! | [`MediaStore`](crate::ports::MediaStore)       | none: `data_dir/media` only | MongoDB, chunked (`mongodb::media`)       | `mongodb`  |
//! | [`CommandBus`](crate::ports::CommandBus)       | bounded in-process queues | RabbitMQ queues + retry/DLQ (`rabbitmq`)    | `rabbitmq` |
//! | [`EventBus`](crate::ports::EventBus)           | in-process fan-out       | PostgreSQL outbox → RabbitMQ fanout + Kafka (`kafka`) | `postgres`, `rabbitmq`, `kafka` |
//! | [`WebhookStore`](crate::ports::WebhookStore)   | SQLite                   | PostgreSQL (follows `ports.store`)           | `postgres` |
//! | [`WebhookSender`](crate::ports::WebhookSender) | HTTP ([`webhooks`]), the same everywhere |                          |            |
//!
//! Every adapter translates its driver's errors into [`PortError`](crate::ports::PortError) here,
//! once, and passes the port's conformance suite (`ports::conformance`).

pub mod embedded;
pub mod group_commit;
pub mod settings;
pub mod webhooks;

#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

pub use settings::{AmqpSettings, DatabaseSettings, KafkaSettings, MongoSettings, WebhookSettings, redact_url};
