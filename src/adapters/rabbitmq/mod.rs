//! RabbitMQ implementations of [`CommandBus`] and [`EventBus`] (lapin).
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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{
    Acker, AdapterError, AdapterResult, CommandBus, Delivery, DeliveryStream, DomainEvent, EventBus, EventStream,
    StageCommand,
};
use crate::actors::backoff::Backoff;
use crate::config::{AmqpSettings, redact_url};
use crate::domain::Stage;

/// Delivery count carried by a republished command (1 when absent).
pub const DELIVERIES_HEADER: &str = "x-tubesum-deliveries";
/// Why a command was last given back (retry) or dead-lettered (DLQ).
pub const REASON_HEADER: &str = "x-tubesum-reason";
/// How long an operation keeps reconnecting to a broker that went away before it fails.
pub const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

const RECONNECT_BACKOFF: Backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A publish whose confirm takes longer counts as a broken link.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
const PERSISTENT: u8 = 2;
const JSON: &str = "application/json";
const SUBSCRIBER_PREFETCH: u16 = 256;

/// Stage work queues on RabbitMQ, with a delayed-retry queue and a dead-letter queue per stage.
pub struct RabbitCommandBus {
    broker: Broker,
    queues: HashMap<Stage, Arc<StageQueues>>,
    max_deliveries: u32,
}

/// The three queues of one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageQueues {
    pub work: String,
    pub retry: String,
    pub dlq: String,
}

impl StageQueues {
    pub fn new(queue_prefix: &str, stage: Stage) -> Self {
        let work = format!("{queue_prefix}{}", stage.queue_name());
        Self { retry: format!("{work}.retry"), dlq: format!("{work}.dlq"), work }
    }
}

impl RabbitCommandBus {
    /// Connects once (no retry: a wrong URL fails start-up at once) and declares every stage's queues.
    pub async fn connect(settings: &AmqpSettings, queue_prefix: &str) -> AdapterResult<Self> {
        let queues: HashMap<_, _> =
            Stage::ALL.iter().map(|&stage| (stage, Arc::new(StageQueues::new(queue_prefix, stage)))).collect();
        let topology = Topology::Commands {
            queues: Stage::ALL.iter().map(|stage| queues[stage].clone()).collect(),
            retry_delay_ms: settings.retry_delay_ms,
        };
        let broker = Broker::connect(&settings.url, topology).await?;
        Ok(Self { broker, queues, max_deliveries: settings.max_deliveries.max(1) })
    }

    /// How long `send` and `consume` keep reconnecting before they fail ([`RECONNECT_TIMEOUT`]).
    pub fn with_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.broker.reconnect_timeout = timeout;
        self
    }

    pub fn queues(&self, stage: Stage) -> &StageQueues {
        // Every stage has queues: built from Stage::ALL.
        &self.queues[&stage]
    }
}

#[async_trait]
impl CommandBus for RabbitCommandBus {
    async fn send(&self, command: StageCommand) -> AdapterResult<()> {
        let body = serde_json::to_vec(&command).map_err(|e| AdapterError::Other(format!("encoding command: {e}")))?;
        let properties = BasicProperties::default()
            .with_content_type(JSON.into())
            .with_delivery_mode(PERSISTENT)
            .with_message_id(command.command_id.to_string().into());
        self.broker.publish("", &self.queues(command.stage).work, &body, properties, Mandatory::Yes).await
    }

    async fn consume(&self, stage: Stage, prefetch: usize) -> AdapterResult<DeliveryStream> {
        let queues = self.queues[&stage].clone();
        let prefetch = u16::try_from(prefetch.max(1)).unwrap_or(u16::MAX);
        let (link, channel) = self.broker.channel(prefetch).await?;
        let consumer = async {
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            let options = BasicConsumeOptions { no_ack: false, ..Default::default() };
            channel.basic_consume(queues.work.as_str().into(), "".into(), options, FieldTable::default()).await
        }
        .await;
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                // Reconnect (and redeclare) on the next try: the queue may have been deleted.
                self.broker.forget(&link).await;
                return Err(unavailable(&format!("consuming {}", queues.work), &e));
            }
        };
        tracing::debug!(queue = %queues.work, prefetch, "consuming");
        let state =
            CommandConsumer { consumer, channel, stage, queues, max_deliveries: self.max_deliveries, finished: false };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let item = state.next_delivery().await?;
            Some((item, state))
        });
        Ok(stream.boxed())
    }
}

struct CommandConsumer {
    consumer: lapin::Consumer,
    channel: Channel,
    stage: Stage,
    queues: Arc<StageQueues>,
    max_deliveries: u32,
    finished: bool,
}

impl CommandConsumer {
    /// The next decodable command; poison messages are dead-lettered on the way.
    async fn next_delivery(&mut self) -> Option<AdapterResult<Delivery>> {
        if self.finished {
            return None;
        }
        loop {
            let delivery = match self.consumer.next().await {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return self.finish(unavailable(&format!("consumer of {}", self.queues.work), &e)),
                None => {
                    let queue = &self.queues.work;
                    return self.finish(AdapterError::Unavailable(format!("consumer of {queue} was cancelled")));
                }
            };
            let acker = RabbitAcker {
                channel: self.channel.clone(),
                acker: delivery.acker,
                deliveries: delivery_count(&delivery.properties),
                body: delivery.data,
                properties: delivery.properties,
                queues: self.queues.clone(),
                max_deliveries: self.max_deliveries,
            };
            match decode_command(&acker.body, self.stage) {
                Ok(command) => return Some(Ok(Delivery { command, acker: Box::new(acker) })),
                Err(reason) => {
                    tracing::warn!(queue = %self.queues.work, %reason, "dead-lettering a poison message");
                    if let Err(e) = acker.dead_letter(&reason).await {
                        return self.finish(e);
                    }
                }
            }
        }
    }

    fn finish(&mut self, error: AdapterError) -> Option<AdapterResult<Delivery>> {
        self.finished = true;
        Some(Err(error))
    }
}

fn decode_command(body: &[u8], stage: Stage) -> Result<StageCommand, String> {
    let command: StageCommand = serde_json::from_slice(body).map_err(|e| format!("invalid command: {e}"))?;
    if command.stage != stage {
        return Err(format!("invalid command: a {} command on the {stage} queue", command.stage));
    }
    Ok(command)
}

/// Reads [`DELIVERIES_HEADER`]; 1 when absent or not a positive integer.
fn delivery_count(properties: &BasicProperties) -> u32 {
    let value = properties.headers().as_ref().and_then(|h| h.inner().get(DELIVERIES_HEADER).cloned());
    let count = match value {
        Some(AMQPValue::LongLongInt(n)) => n,
        Some(AMQPValue::LongInt(n)) => n.into(),
        Some(AMQPValue::LongUInt(n)) => n.into(),
        Some(AMQPValue::ShortInt(n)) => n.into(),
        Some(AMQPValue::ShortUInt(n)) => n.into(),
        Some(AMQPValue::ShortShortInt(n)) => n.into(),
        Some(AMQPValue::ShortShortUInt(n)) => n.into(),
        _ => 1,
    };
    u32::try_from(count).unwrap_or(1).max(1)
}

/// Settles one delivery; moving it to the retry queue or the DLQ happens on the consumer's own
/// channel, so a dead channel fails both the republish and the ack and the broker redelivers.
struct RabbitAcker {
    channel: Channel,
    acker: lapin::Acker,
    body: Vec<u8>,
    properties: BasicProperties,
    queues: Arc<StageQueues>,
    deliveries: u32,
    max_deliveries: u32,
}

impl RabbitAcker {
    async fn dead_letter(&self, reason: &str) -> AdapterResult<()> {
        tracing::warn!(queue = %self.queues.work, deliveries = self.deliveries, reason, "command dead-lettered");
        self.move_to(&self.queues.dlq, self.deliveries, reason).await
    }

    /// Republishes a copy with the given headers (confirmed), then acks the original. If the copy
    /// cannot be published, the original is given straight back to the queue instead.
    async fn move_to(&self, queue: &str, deliveries: u32, reason: &str) -> AdapterResult<()> {
        let mut headers = self.properties.headers().clone().unwrap_or_default();
        headers.insert(DELIVERIES_HEADER.into(), AMQPValue::LongLongInt(deliveries.into()));
        headers.insert(REASON_HEADER.into(), AMQPValue::LongString(reason.into()));
        let properties = self.properties.clone().with_headers(headers).with_delivery_mode(PERSISTENT);
        match publish_confirmed(&self.channel, "", queue, &self.body, properties, Mandatory::Yes).await {
            Ok(()) => self.settle_ack().await,
            Err(failure) => {
                let requeue = BasicNackOptions { requeue: true, multiple: false };
                if let Err(e) = self.acker.nack(requeue).await {
                    tracing::warn!(queue = %self.queues.work, error = %e, "could not give the command back");
                }
                Err(failure.into_error(queue))
            }
        }
    }

    async fn settle_ack(&self) -> AdapterResult<()> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdapterError::Other(format!(
                "a delivery from {} was already settled or its channel closed (it will be redelivered)",
                self.queues.work
            ))),
            Err(e) => Err(unavailable(&format!("acking a delivery from {}", self.queues.work), &e)),
        }
    }
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(&self) -> AdapterResult<()> {
        self.settle_ack().await
    }

    async fn nack(&self, requeue: bool, reason: &str) -> AdapterResult<()> {
        if requeue && self.deliveries < self.max_deliveries {
            tracing::debug!(queue = %self.queues.work, deliveries = self.deliveries, reason, "command retried later");
            self.move_to(&self.queues.retry, self.deliveries + 1, reason).await
        } else {
            self.dead_letter(reason).await
        }
    }
}

/// Domain events on a RabbitMQ fanout exchange.
pub struct RabbitEventBus {
    broker: Broker,
    exchange: String,
}

impl RabbitEventBus {
    /// Connects once (no retry) and declares the durable fanout exchange `exchange_name`.
    pub async fn connect(settings: &AmqpSettings, exchange_name: &str) -> AdapterResult<Self> {
        let topology = Topology::Events { exchange: exchange_name.to_owned() };
        let broker = Broker::connect(&settings.url, topology).await?;
        Ok(Self { broker, exchange: exchange_name.to_owned() })
    }

    /// How long `publish` and `subscribe` keep reconnecting before they fail ([`RECONNECT_TIMEOUT`]).
    pub fn with_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.broker.reconnect_timeout = timeout;
        self
    }
}

#[async_trait]
impl EventBus for RabbitEventBus {
    async fn publish(&self, event: DomainEvent) -> AdapterResult<()> {
        let body = serde_json::to_vec(&event).map_err(|e| AdapterError::Other(format!("encoding event: {e}")))?;
        let properties = BasicProperties::default()
            .with_content_type(JSON.into())
            .with_delivery_mode(PERSISTENT)
            .with_message_id(event.event_id.to_string().into())
            .with_type(event.payload.kind().into());
        // No subscriber yet is fine: events are notifications.
        self.broker.publish(&self.exchange, "", &body, properties, Mandatory::No).await
    }

    async fn subscribe(&self) -> AdapterResult<EventStream> {
        let (link, channel) = self.broker.channel(SUBSCRIBER_PREFETCH).await?;
        let consumer = async {
            let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
            let queue = channel.queue_declare("".into(), options, FieldTable::default()).await?;
            let name = queue.name().clone();
            let bind = QueueBindOptions::default();
            channel
                .queue_bind(name.clone(), self.exchange.as_str().into(), "".into(), bind, FieldTable::default())
                .await?;
            let options = BasicConsumeOptions { no_ack: false, ..Default::default() };
            channel.basic_consume(name, "".into(), options, FieldTable::default()).await
        }
        .await;
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                self.broker.forget(&link).await;
                return Err(unavailable(&format!("subscribing to {}", self.exchange), &e));
            }
        };
        let state = EventSubscription { consumer, exchange: self.exchange.clone(), pending: None, finished: false };
        let stream = futures::stream::unfold(state, |mut state| async move {
            let item = state.next_event().await?;
            Some((item, state))
        });
        Ok(stream.boxed())
    }
}

struct EventSubscription {
    consumer: lapin::Consumer,
    exchange: String,
    /// The event last yielded, acked when the subscriber comes back for the next one.
    pending: Option<lapin::Acker>,
    finished: bool,
}

impl EventSubscription {
    async fn next_event(&mut self) -> Option<AdapterResult<DomainEvent>> {
        if self.finished {
            return None;
        }
        if let Some(acker) = self.pending.take()
            && let Err(e) = acker.ack(BasicAckOptions::default()).await
        {
            return self.finish(unavailable(&format!("acking an event from {}", self.exchange), &e));
        }
        loop {
            let delivery = match self.consumer.next().await {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return self.finish(unavailable(&format!("subscription to {}", self.exchange), &e)),
                None => {
                    let exchange = &self.exchange;
                    return self.finish(AdapterError::Unavailable(format!("subscription to {exchange} was cancelled")));
                }
            };
            match serde_json::from_slice::<DomainEvent>(&delivery.data) {
                Ok(event) => {
                    self.pending = Some(delivery.acker);
                    return Some(Ok(event));
                }
                Err(e) => {
                    tracing::warn!(exchange = %self.exchange, error = %e, "dropping an undecodable event");
                    let drop_it = BasicRejectOptions { requeue: false };
                    if let Err(e) = delivery.acker.reject(drop_it).await {
                        return self.finish(unavailable(&format!("rejecting an event from {}", self.exchange), &e));
                    }
                }
            }
        }
    }

    fn finish(&mut self, error: AdapterError) -> Option<AdapterResult<DomainEvent>> {
        self.finished = true;
        Some(Err(error))
    }
}

/// What a bus declares on every (re)connect.
enum Topology {
    Commands { queues: Vec<Arc<StageQueues>>, retry_delay_ms: u64 },
    Events { exchange: String },
}

impl Topology {
    async fn declare(&self, channel: &Channel) -> Result<(), String> {
        match self {
            Topology::Commands { queues, retry_delay_ms } => {
                for queues in queues {
                    let mut retry_args = FieldTable::default();
                    let ttl = i64::try_from(*retry_delay_ms).unwrap_or(i64::MAX);
                    retry_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
                    retry_args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
                    retry_args
                        .insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queues.work.as_str().into()));
                    for (queue, args) in [
                        (&queues.work, FieldTable::default()),
                        (&queues.retry, retry_args),
                        (&queues.dlq, FieldTable::default()),
                    ] {
                        channel
                            .queue_declare(queue.as_str().into(), QueueDeclareOptions::durable(), args)
                            .await
                            .map_err(|e| declare_error(&format!("queue {queue}"), &e))?;
                    }
                }
            }
            Topology::Events { exchange } => {
                let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
                channel
                    .exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, options, FieldTable::default())
                    .await
                    .map_err(|e| declare_error(&format!("exchange {exchange}"), &e))?;
            }
        }
        Ok(())
    }
}

fn declare_error(what: &str, error: &lapin::Error) -> String {
    let hint = if error.to_string().contains("PRECONDITION_FAILED") {
        " (it exists with other arguments, e.g. another retry_delay_ms: delete it to redeclare it)"
    } else {
        ""
    };
    format!("declaring {what}: {error}{hint}")
}

/// A live connection and its confirm-mode publishing channel.
struct Link {
    connection: Connection,
    publisher: Channel,
}

impl Link {
    fn is_open(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// One broker connection, re-established on demand: lapin does not recover from a broker restart.
struct Broker {
    url: SecretString,
    redacted: String,
    topology: Topology,
    link: Mutex<Option<Arc<Link>>>,
    reconnect_timeout: Duration,
}

impl Broker {
    async fn connect(url: &SecretString, topology: Topology) -> AdapterResult<Self> {
        let broker = Self {
            url: url.clone(),
            redacted: redact_url(url.expose_secret()),
            topology,
            link: Mutex::new(None),
            reconnect_timeout: RECONNECT_TIMEOUT,
        };
        let link = broker.open().await.map_err(AdapterError::Unavailable)?;
        *broker.link.lock().await = Some(Arc::new(link));
        Ok(broker)
    }

    /// Connects, opens the publishing channel and declares the topology: one attempt.
    async fn open(&self) -> Result<Link, String> {
        let properties = ConnectionProperties::default().with_connection_name("tubesum".into());
        let connection = match tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(self.url.expose_secret(), properties),
        )
        .await
        {
            Ok(Ok(connection)) => connection,
            Ok(Err(e)) => return Err(format!("rabbitmq at {}: {e}", self.redacted)),
            Err(_) => return Err(format!("rabbitmq at {}: no connection within {CONNECT_TIMEOUT:?}", self.redacted)),
        };
        let publisher = async {
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>(channel)
        }
        .await
        .map_err(|e| format!("rabbitmq at {}: opening a channel: {e}", self.redacted))?;
        self.topology.declare(&publisher).await.map_err(|e| format!("rabbitmq at {}: {e}", self.redacted))?;
        Ok(Link { connection, publisher })
    }

    /// The live link, reconnecting with backoff until `deadline` if it died.
    async fn link(&self, deadline: Instant) -> AdapterResult<Arc<Link>> {
        let mut current = self.link.lock().await;
        if let Some(link) = current.as_ref().filter(|link| link.is_open()) {
            return Ok(link.clone());
        }
        let mut retry = Retry::new(deadline);
        loop {
            let attempt = retry.attempt + 1;
            match self.open().await {
                Ok(link) => {
                    tracing::info!(url = %self.redacted, attempt, "connected to rabbitmq");
                    let link = Arc::new(link);
                    *current = Some(link.clone());
                    return Ok(link);
                }
                Err(e) => {
                    tracing::warn!(url = %self.redacted, attempt, error = %e, "rabbitmq unavailable");
                    if !retry.wait().await {
                        return Err(AdapterError::Unavailable(format!("{e} (gave up reconnecting)")));
                    }
                }
            }
        }
    }

    /// Drops `link` (if still the current one) so that the next operation reconnects.
    async fn forget(&self, link: &Arc<Link>) {
        let mut current = self.link.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, link)) {
            *current = None;
        }
    }

    /// A confirmed, persistent publish, retried across reconnects until the reconnect timeout.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: Mandatory,
    ) -> AdapterResult<()> {
        let mut retry = Retry::new(Instant::now() + self.reconnect_timeout);
        loop {
            let link = self.link(retry.deadline).await?;
            match publish_confirmed(&link.publisher, exchange, routing_key, body, properties.clone(), mandatory).await {
                Ok(()) => return Ok(()),
                Err(PublishFailure::Refused(reason)) => return Err(AdapterError::Other(reason)),
                Err(failure @ PublishFailure::Broken(_)) => {
                    tracing::warn!(url = %self.redacted, routing_key, error = %failure.message(), "publish failed");
                    self.forget(&link).await;
                    if !retry.wait().await {
                        return Err(failure.into_error(routing_key));
                    }
                }
            }
        }
    }

    /// A new channel on the live link (for a consumer), with `prefetch` unacked deliveries at most.
    async fn channel(&self, prefetch: u16) -> AdapterResult<(Arc<Link>, Channel)> {
        let mut retry = Retry::new(Instant::now() + self.reconnect_timeout);
        loop {
            let link = self.link(retry.deadline).await?;
            let channel = async {
                let channel = link.connection.create_channel().await?;
                channel.basic_qos(prefetch, BasicQosOptions::default()).await?;
                Ok::<_, lapin::Error>(channel)
            }
            .await;
            match channel {
                Ok(channel) => return Ok((link, channel)),
                Err(e) => {
                    self.forget(&link).await;
                    if !retry.wait().await {
                        return Err(unavailable(&format!("rabbitmq at {}: opening a channel", self.redacted), &e));
                    }
                }
            }
        }
    }
}

/// Backoff between attempts until a deadline.
struct Retry {
    deadline: Instant,
    attempt: u32,
}

impl Retry {
    fn new(deadline: Instant) -> Self {
        Self { deadline, attempt: 0 }
    }

    /// Sleeps before the next attempt; false when that would pass the deadline.
    async fn wait(&mut self) -> bool {
        self.attempt += 1;
        let delay = RECONNECT_BACKOFF.delay(self.attempt);
        if Instant::now() + delay > self.deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        true
    }
}

enum PublishFailure {
    /// The broker answered and refused the message: retrying will not help.
    Refused(String),
    /// The channel or connection failed, or the message was unroutable (a deleted queue is
    /// redeclared on reconnect): worth retrying on a fresh link.
    Broken(String),
}

impl PublishFailure {
    fn message(&self) -> &str {
        match self {
            PublishFailure::Refused(m) | PublishFailure::Broken(m) => m,
        }
    }

    fn into_error(self, target: &str) -> AdapterError {
        match self {
            PublishFailure::Refused(m) => AdapterError::Other(m),
            PublishFailure::Broken(m) => AdapterError::Unavailable(format!("publishing to {target}: {m}")),
        }
    }
}

/// Whether a message that reaches no queue is an error (it comes back to the publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mandatory {
    Yes,
    No,
}

/// Publishes a message and waits for the broker's confirm.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
    mandatory: Mandatory,
) -> Result<(), PublishFailure> {
    let options = BasicPublishOptions { mandatory: mandatory == Mandatory::Yes, immediate: false };
    let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, async {
        channel.basic_publish(exchange.into(), routing_key.into(), options, body, properties).await?.await
    })
    .await
    .map_err(|_| PublishFailure::Broken(format!("no publisher confirm within {CONFIRM_TIMEOUT:?}")))?
    .map_err(|e| PublishFailure::Broken(e.to_string()))?;
    match confirmation {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => {
            Err(PublishFailure::Broken(format!("unroutable to {routing_key:?}: {}", returned.reply_text)))
        }
        Confirmation::Nack(_) => {
            Err(PublishFailure::Refused(format!("the broker refused a message for {routing_key:?}")))
        }
        Confirmation::NotRequested => Err(PublishFailure::Refused("publisher confirms are not enabled".into())),
    }
}

fn unavailable(what: &str, error: &lapin::Error) -> AdapterError {
    AdapterError::Unavailable(format!("{what}: {error}"))
}

/// Against the local RabbitMQ (`AMQP_TEST_URL`, default `amqp://guest:guest@127.0.0.1:5672/%2f`):
/// these fail, never skip, when it is not running (`rabbitmq-server -detached`). Each declares its
/// own queues or exchange under a unique name and deletes them at the end, even when it fails.
#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::panic::AssertUnwindSafe;

    use futures::FutureExt;
    use lapin::message::BasicGetMessage;
    use lapin::options::{BasicGetOptions, ExchangeDeleteOptions, QueueDeleteOptions};
    use tokio::sync::RwLock;
    use uuid::Uuid;

    use super::*;
    use crate::adapters::{EventPayload, conformance};
    use crate::domain::{JobId, VideoId};

    const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
    const RETRY_DELAY: Duration = Duration::from_millis(200);
    const MAX_DELIVERIES: u32 = 3;

    /// The restart test stops the broker: it holds this for writing, every other test for reading.
    static BROKER: RwLock<()> = RwLock::const_new(());

    fn url() -> String {
        std::env::var("AMQP_TEST_URL").unwrap_or_else(|_| DEFAULT_URL.into())
    }

    fn settings() -> AmqpSettings {
        AmqpSettings {
            url: SecretString::from(url()),
            retry_delay_ms: RETRY_DELAY.as_millis() as u64,
            max_deliveries: MAX_DELIVERIES,
            events_exchange: "tubesum.events".into(),
            queue_prefix: String::new(),
        }
    }

    fn unreachable(e: impl std::fmt::Display) -> String {
        format!("RabbitMQ must be running at {} (start it with `rabbitmq-server -detached`): {e}", redact_url(&url()))
    }

    fn unique_name() -> String {
        format!("tubesum-test-{}", Uuid::new_v4().simple())
    }

    async fn command_bus(prefix: &str) -> RabbitCommandBus {
        RabbitCommandBus::connect(&settings(), prefix).await.unwrap_or_else(|e| panic!("{}", unreachable(e)))
    }

    async fn event_bus(exchange: &str) -> RabbitEventBus {
        RabbitEventBus::connect(&settings(), exchange).await.unwrap_or_else(|e| panic!("{}", unreachable(e)))
    }

    /// A plain connection to inspect the broker with.
    async fn raw_connection() -> Connection {
        Connection::connect(&url(), ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{}", unreachable(e)))
    }

    /// Runs `test`, then `cleanup`, even if `test` panicked.
    async fn isolated(test: impl Future<Output = ()>, cleanup: impl Future<Output = ()>) {
        let outcome = AssertUnwindSafe(test).catch_unwind().await;
        cleanup.await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    async fn delete_queues(prefix: &str) {
        let connection = raw_connection().await;
        let channel = connection.create_channel().await.expect("channel");
        for stage in Stage::ALL {
            let q = StageQueues::new(prefix, *stage);
            for queue in [q.work, q.retry, q.dlq] {
                if let Err(e) = channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await {
                    eprintln!("could not delete {queue}: {e}");
                }
            }
        }
    }

    async fn delete_exchange(exchange: &str) {
        let connection = raw_connection().await;
        let channel = connection.create_channel().await.expect("channel");
        if let Err(e) = channel.exchange_delete(exchange.into(), ExchangeDeleteOptions::default()).await {
            eprintln!("could not delete {exchange}: {e}");
        }
    }

    /// Polls `queue` until it holds a message.
    async fn get_within(channel: &Channel, queue: &str, within: Duration) -> BasicGetMessage {
        let deadline = Instant::now() + within;
        loop {
            let got = channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }).await.expect("basic_get");
            if let Some(message) = got {
                return message;
            }
            assert!(Instant::now() < deadline, "nothing in {queue} within {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn next_delivery(stream: &mut DeliveryStream) -> Delivery {
        tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .expect("delivery within 10 s")
            .expect("stream open")
            .expect("delivery ok")
    }

    fn header(properties: &BasicProperties, key: &str) -> Option<AMQPValue> {
        properties.headers().as_ref()?.inner().get(key).cloned()
    }

    fn reason(properties: &BasicProperties) -> String {
        match header(properties, REASON_HEADER) {
            Some(AMQPValue::LongString(s)) => s.to_string(),
            other => panic!("no {REASON_HEADER} header: {other:?}"),
        }
    }

    async fn message_count(connection: &Connection, queue: &str) -> u32 {
        let channel = connection.create_channel().await.expect("channel");
        let passive = QueueDeclareOptions { passive: true, ..Default::default() };
        channel.queue_declare(queue.into(), passive, FieldTable::default()).await.expect("queue exists").message_count()
    }

    fn download(job: JobId, id: &str) -> StageCommand {
        StageCommand::new(job, Some(VideoId::parse(id).unwrap()), Stage::Download, 1)
    }

    #[tokio::test]
    async fn rabbit_command_bus_conforms() {
        let _shared = BROKER.read().await;
        let prefix = format!("{}.", unique_name());
        let bus = command_bus(&prefix).await;
        isolated(conformance::command_bus(&bus), delete_queues(&prefix)).await;
    }

    #[tokio::test]
    async fn rabbit_event_bus_conforms() {
        let _shared = BROKER.read().await;
        let exchange = unique_name();
        let bus = event_bus(&exchange).await;
        isolated(conformance::event_bus(&bus), delete_exchange(&exchange)).await;
    }

    #[tokio::test]
    async fn requeued_command_comes_back_after_the_retry_delay_with_its_count_incremented() {
        let _shared = BROKER.read().await;
        let prefix = format!("{}.", unique_name());
        let bus = command_bus(&prefix).await;
        let test = async {
            let raw = raw_connection().await;
            let inspect = raw.create_channel().await.unwrap();
            let command = download(JobId::new(), "aaaaaaaaaaa");
            let mut stream = bus.consume(Stage::Download, 1).await.unwrap();
            bus.send(command.clone()).await.unwrap();
            let delivery = next_delivery(&mut stream).await;
            // Stop consuming so that the retried copy stays in the queue for basic_get.
            drop(stream);
            let nacked_at = Instant::now();
            delivery.acker.nack(true, "flaky network").await.unwrap();

            let work = &bus.queues(Stage::Download).work;
            let message = get_within(&inspect, work, Duration::from_secs(10)).await;
            let waited = nacked_at.elapsed();
            // Slack for the broker's millisecond timer.
            assert!(waited >= RETRY_DELAY - Duration::from_millis(10), "came back after {waited:?}");
            let again: StageCommand = serde_json::from_slice(&message.delivery.data).unwrap();
            assert_eq!(again, command);
            let properties = &message.delivery.properties;
            assert_eq!(delivery_count(properties), 2);
            assert_eq!(header(properties, DELIVERIES_HEADER), Some(AMQPValue::LongLongInt(2)));
            assert_eq!(reason(properties), "flaky network");
            assert_eq!(*properties.delivery_mode(), Some(PERSISTENT));
            message.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            assert_eq!(message_count(&raw, &bus.queues(Stage::Download).retry).await, 0);
        };
        isolated(test, delete_queues(&prefix)).await;
    }

    #[tokio::test]
    async fn command_is_dead_lettered_after_max_deliveries_or_when_not_retryable() {
        let _shared = BROKER.read().await;
        let prefix = format!("{}.", unique_name());
        let bus = command_bus(&prefix).await;
        let test = async {
            let raw = raw_connection().await;
            let inspect = raw.create_channel().await.unwrap();
            let queues = bus.queues(Stage::Download).clone();
            let mut stream = bus.consume(Stage::Download, 1).await.unwrap();

            let command = download(JobId::new(), "bbbbbbbbbbb");
            bus.send(command.clone()).await.unwrap();
            for attempt in 1..=MAX_DELIVERIES {
                let delivery = next_delivery(&mut stream).await;
                assert_eq!(delivery.command, command);
                delivery.acker.nack(true, &format!("failure {attempt}")).await.unwrap();
            }
            let dead = get_within(&inspect, &queues.dlq, Duration::from_secs(10)).await;
            assert_eq!(serde_json::from_slice::<StageCommand>(&dead.delivery.data).unwrap(), command);
            assert_eq!(reason(&dead.delivery.properties), format!("failure {MAX_DELIVERIES}"));
            assert_eq!(delivery_count(&dead.delivery.properties), MAX_DELIVERIES);
            assert_eq!(*dead.delivery.properties.delivery_mode(), Some(PERSISTENT));
            dead.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            // Moved, not copied: nothing is left to come back.
            assert_eq!(message_count(&raw, &queues.work).await, 0);
            assert_eq!(message_count(&raw, &queues.retry).await, 0);

            let hopeless = download(JobId::new(), "ccccccccccc");
            bus.send(hopeless.clone()).await.unwrap();
            let delivery = next_delivery(&mut stream).await;
            delivery.acker.nack(false, "video is private").await.unwrap();
            let dead = get_within(&inspect, &queues.dlq, Duration::from_secs(10)).await;
            assert_eq!(serde_json::from_slice::<StageCommand>(&dead.delivery.data).unwrap(), hopeless);
            assert_eq!(reason(&dead.delivery.properties), "video is private");
            assert_eq!(delivery_count(&dead.delivery.properties), 1);
            dead.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            assert_eq!(message_count(&raw, &queues.retry).await, 0);
        };
        isolated(test, delete_queues(&prefix)).await;
    }

    #[tokio::test]
    async fn poison_message_is_dead_lettered_and_not_yielded() {
        let _shared = BROKER.read().await;
        let prefix = format!("{}.", unique_name());
        let bus = command_bus(&prefix).await;
        let test = async {
            let raw = raw_connection().await;
            let inspect = raw.create_channel().await.unwrap();
            let queues = bus.queues(Stage::Download).clone();
            // Confirmed, so that they are queued before the good command sent on another connection.
            inspect.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
            let wrong_stage = serde_json::to_vec(&StageCommand::new(JobId::new(), None, Stage::Discovery, 1)).unwrap();
            for body in [&b"{not json"[..], &wrong_stage] {
                let options = BasicPublishOptions::default();
                let confirm = inspect
                    .basic_publish("".into(), queues.work.as_str().into(), options, body, BasicProperties::default())
                    .await
                    .unwrap();
                assert!(confirm.await.unwrap().is_ack());
            }
            let good = download(JobId::new(), "ddddddddddd");
            bus.send(good.clone()).await.unwrap();

            let mut stream = bus.consume(Stage::Download, 4).await.unwrap();
            let delivery = next_delivery(&mut stream).await;
            assert_eq!(delivery.command, good, "poison messages are not yielded");
            delivery.acker.ack().await.unwrap();

            let first = get_within(&inspect, &queues.dlq, Duration::from_secs(10)).await;
            assert_eq!(first.delivery.data, b"{not json");
            assert!(reason(&first.delivery.properties).starts_with("invalid command: "));
            let second = get_within(&inspect, &queues.dlq, Duration::from_secs(10)).await;
            let why = reason(&second.delivery.properties);
            assert!(why.starts_with("invalid command: a discovery command on the download queue"), "{why}");
            for message in [first, second] {
                message.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();
            }
            assert_eq!(message_count(&raw, &queues.work).await, 0);
        };
        isolated(test, delete_queues(&prefix)).await;
    }

    #[tokio::test]
    async fn messages_are_persistent_and_queues_and_exchange_durable() {
        let _shared = BROKER.read().await;
        let prefix = format!("{}.", unique_name());
        let exchange = unique_name();
        let commands = command_bus(&prefix).await;
        let events = event_bus(&exchange).await;
        let test = async {
            let raw = raw_connection().await;
            let inspect = raw.create_channel().await.unwrap();
            let queues = commands.queues(Stage::Summarization).clone();
            let command = StageCommand::new(JobId::new(), None, Stage::Summarization, 1);
            commands.send(command.clone()).await.unwrap();
            let message = get_within(&inspect, &queues.work, Duration::from_secs(10)).await;
            let properties = &message.delivery.properties;
            assert_eq!(*properties.delivery_mode(), Some(PERSISTENT));
            assert_eq!(properties.content_type().as_ref().map(|c| c.as_str()), Some(JSON));
            assert_eq!(
                properties.message_id().as_ref().map(|m| m.as_str().to_owned()),
                Some(command.command_id.to_string())
            );
            message.delivery.acker.ack(BasicAckOptions::default()).await.unwrap();

            // Redeclaring as transient is refused only because the broker holds them durable.
            let mut retry_args = FieldTable::default();
            retry_args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(RETRY_DELAY.as_millis() as i64));
            retry_args.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("".into()));
            retry_args.insert("x-dead-letter-routing-key".into(), AMQPValue::LongString(queues.work.as_str().into()));
            for (queue, args) in [
                (&queues.work, FieldTable::default()),
                (&queues.retry, retry_args),
                (&queues.dlq, FieldTable::default()),
            ] {
                let channel = raw.create_channel().await.unwrap();
                let transient = QueueDeclareOptions { durable: false, ..Default::default() };
                let refused = channel.queue_declare(queue.as_str().into(), transient, args).await.unwrap_err();
                assert!(refused.to_string().contains("inequivalent arg 'durable'"), "{queue}: {refused}");
            }
            let channel = raw.create_channel().await.unwrap();
            let transient = ExchangeDeclareOptions { durable: false, ..Default::default() };
            let refused = channel
                .exchange_declare(exchange.as_str().into(), ExchangeKind::Fanout, transient, FieldTable::default())
                .await
                .unwrap_err();
            assert!(refused.to_string().contains("inequivalent arg 'durable'"), "{exchange}: {refused}");

            let exclusive = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
            let tap = inspect.queue_declare("".into(), exclusive, FieldTable::default()).await.unwrap();
            let bind = QueueBindOptions::default();
            inspect
                .queue_bind(tap.name().clone(), exchange.as_str().into(), "".into(), bind, FieldTable::default())
                .await
                .unwrap();
            let event = DomainEvent::new(JobId::new(), None, EventPayload::DiscoveryCompleted { videos: 3 });
            events.publish(event.clone()).await.unwrap();
            let message = get_within(&inspect, tap.name().as_str(), Duration::from_secs(10)).await;
            assert_eq!(*message.delivery.properties.delivery_mode(), Some(PERSISTENT));
            assert_eq!(serde_json::from_slice::<DomainEvent>(&message.delivery.data).unwrap(), event);
        };
        let cleanup = async {
            delete_queues(&prefix).await;
            delete_exchange(&exchange).await;
        };
        isolated(test, cleanup).await;
    }

    #[tokio::test]
    async fn connect_to_a_closed_port_fails_fast_with_the_password_redacted() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let settings = AmqpSettings {
            url: SecretString::from(format!("amqp://tubesum:s3cr3t@127.0.0.1:{port}/%2f")),
            ..settings()
        };
        let started = Instant::now();
        let errors = [
            RabbitCommandBus::connect(&settings, "unused.").await.err(),
            RabbitEventBus::connect(&settings, "unused").await.err(),
        ];
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
        for error in errors {
            let Some(AdapterError::Unavailable(message)) = error else { panic!("expected Unavailable, got {error:?}") };
            assert!(message.contains(&format!("amqp://tubesum:***@127.0.0.1:{port}")), "{message}");
            assert!(!message.contains("s3cr3t"), "{message}");
        }
    }

    /// Starts the broker's application again if the test stops before doing it.
    struct RestartGuard {
        armed: bool,
    }

    impl Drop for RestartGuard {
        fn drop(&mut self) {
            if self.armed {
                let _ = std::process::Command::new("rabbitmqctl").arg("start_app").status();
            }
        }
    }

    async fn rabbitmqctl(command: &str) {
        let output = tokio::process::Command::new("rabbitmqctl")
            .arg(command)
            .output()
            .await
            .unwrap_or_else(|e| panic!("running rabbitmqctl {command}: {e}"));
        assert!(output.status.success(), "rabbitmqctl {command}: {}", String::from_utf8_lossy(&output.stderr));
    }

    /// Waits for the broker's AMQP port to accept connections again.
    async fn wait_for_port(within: Duration) {
        let uri: lapin::uri::AMQPUri = url().parse().expect("AMQP_TEST_URL parses");
        let address = format!("{}:{}", uri.authority.host, uri.authority.port);
        let deadline = Instant::now() + within;
        while tokio::net::TcpStream::connect(&address).await.is_err() {
            assert!(Instant::now() < deadline, "{address} not back within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn send_and_consume_recover_after_a_broker_restart() {
        let _exclusive = BROKER.write().await;
        let prefix = format!("{}.", unique_name());
        let exchange = unique_name();
        let commands = command_bus(&prefix).await;
        let impatient = command_bus(&prefix).await.with_reconnect_timeout(Duration::from_secs(1));
        let events = event_bus(&exchange).await;
        let test = async {
            let job = JobId::new();
            let mut old_consumer = commands.consume(Stage::Discovery, 1).await.unwrap();
            let mut old_subscription = events.subscribe().await.unwrap();
            let before = download(job, "eeeeeeeeeee");
            commands.send(before.clone()).await.unwrap();

            let mut guard = RestartGuard { armed: true };
            rabbitmqctl("stop_app").await;
            let ended = tokio::time::timeout(Duration::from_secs(10), old_consumer.next()).await;
            assert!(matches!(ended, Ok(Some(Err(_)))), "the consumer's stream ends with an error");
            let ended = tokio::time::timeout(Duration::from_secs(10), old_subscription.next()).await;
            assert!(matches!(ended, Ok(Some(Err(_)))), "the subscription ends with an error");
            // While the broker is down, a send keeps reconnecting only for the reconnect timeout.
            let started = Instant::now();
            let refused = impatient.send(download(job, "ggggggggggg")).await;
            assert!(matches!(refused, Err(AdapterError::Unavailable(_))), "{refused:?}");
            assert!(started.elapsed() < Duration::from_secs(5), "gave up after {:?}", started.elapsed());
            rabbitmqctl("start_app").await;
            guard.armed = false;
            wait_for_port(Duration::from_secs(60)).await;

            let after = download(job, "fffffffffff");
            commands.send(after.clone()).await.expect("send reconnects");
            let mut consumer = commands.consume(Stage::Download, 2).await.expect("consume reconnects");
            for expected in [before, after] {
                let delivery = next_delivery(&mut consumer).await;
                assert_eq!(delivery.command, expected, "persistent commands survive the restart, in order");
                delivery.acker.ack().await.unwrap();
            }

            let mut subscription = events.subscribe().await.expect("subscribe reconnects");
            let event = DomainEvent::new(job, None, EventPayload::DiscoveryCompleted { videos: 2 });
            events.publish(event.clone()).await.expect("publish reconnects");
            let got = tokio::time::timeout(Duration::from_secs(10), subscription.next()).await;
            assert_eq!(got.expect("event within 10 s").expect("stream open").expect("event ok"), event);
        };
        let cleanup = async {
            delete_queues(&prefix).await;
            delete_exchange(&exchange).await;
        };
        isolated(test, cleanup).await;
    }
}
