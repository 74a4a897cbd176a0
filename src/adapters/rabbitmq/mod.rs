//! RabbitMQ implementations of [`CommandBus`](crate::ports::CommandBus) and [`EventBus`](crate::ports::EventBus) (lapin).
//!
//! # Command topology
//! Per stage queue `q` (`download_queue`, …, prefixed by `queue_prefix`), all durable and declared
//! on every (re)connect, routed through the default exchange:
//! ```text
//!  send ──► q ──► consumer ─┬─ ack ──────────────────────────────────► done
//!           ▲               ├─ nack(requeue), deliveries < max ──► q.retry  (x-message-ttl = retry_delay_ms)
//!           └───────────────┼── dead-lettered when the TTL expires ──┘
//!                           ├─ nack(requeue), deliveries = max ──┐
//!                           ├─ nack(no requeue) ─────────────────┼──► q.dlq
//!                           └─ poison message ───────────────────┘
//! ```
//! A poison message is one that does not decode as a command of `q`'s stage; it is never yielded.
//!
//! Moving a message to `q.retry` or `q.dlq` is a confirmed republish followed by an ack of the
//! original, so a crash in between duplicates the command instead of losing it (handlers are
//! idempotent). Headers set on the republished copy:
//! - `x-tubesum-deliveries`: how many times the command has been delivered, 1 when absent;
//! - `x-tubesum-reason`: why it was last given back (the DLQ's copy says why it was dead-lettered).
//!
//! Messages are JSON, persistent (delivery mode 2) and published with confirms: `send` returns
//! only once the broker has the command (a broker nack is an error).
//!
//! # Events
//! A durable fanout exchange (`tubesum.events`). Each subscriber gets an exclusive, auto-delete,
//! server-named queue; an event is acked when the subscriber asks for the next one, so it is seen at
//! least once per subscription (deduplicate by `event_id`). Events published while a subscriber is
//! disconnected are not seen by it: durable state lives in the stores, events are notifications.
//!
//! # Reconnection
//! lapin does not recover a connection after a broker restart (lapin issue #450; its own
//! `enable_auto_recover` is not used here), so each bus keeps one connection and one confirm-mode
//! publishing channel behind a lock. An operation that finds them dead reconnects with capped
//! exponential backoff for up to [`RECONNECT_TIMEOUT`] and redeclares the topology first.
//! A consumer's stream ends with an `Err` when its channel or connection dies; consumers recover by
//! calling `consume`/`subscribe` again, which for stage queues is the StagePool's supervisor
//! restart (the pool fails, the RootSupervisor re-creates it after a backoff, `pre_start` consumes
//! again). Unacked deliveries of a dead channel are redelivered by the broker.

mod command_bus;
mod connection;
mod event_bus;

pub use command_bus::{DELIVERIES_HEADER, REASON_HEADER, RabbitCommandBus, StageQueues, delivery_count};
pub use connection::RECONNECT_TIMEOUT;
pub use event_bus::RabbitEventBus;

/// Messages are persistent (delivery mode 2), so they survive a broker restart.
const PERSISTENT: u8 = 2;
const JSON: &str = "application/json";
