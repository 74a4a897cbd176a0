//! One broker connection per bus, re-established on demand (lapin does not recover from a broker
//! restart), the topology declared on every (re)connect, and confirmed publishing.

use std::sync::Arc;
use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::command_bus::StageQueues;
use crate::adapters::settings::redact_url;
use crate::domain::Backoff;
use crate::ports::{PortError, PortResult};

/// How long an operation keeps reconnecting to a broker that went away before it fails.
pub const RECONNECT_TIMEOUT: Duration = Duration::from_secs(30);

const RECONNECT_BACKOFF: Backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(5) };
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A publish whose confirm takes longer counts as a broken link.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// What a bus declares on every (re)connect.
pub(super) enum Topology {
    Commands { queues: Vec<Arc<StageQueues>>, retry_delay_ms: u64 },
    Events { exchange: String },
}

impl Topology {
    pub(super) async fn declare(&self, channel: &Channel) -> Result<(), String> {
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

pub(super) fn declare_error(what: &str, error: &lapin::Error) -> String {
    let hint = if error.to_string().contains("PRECONDITION_FAILED") {
        " (it exists with other arguments, e.g. another retry_delay_ms: delete it to redeclare it)"
    } else {
        ""
    };
    format!("declaring {what}: {error}{hint}")
}

/// A live connection and its confirm-mode publishing channel.
pub(super) struct Link {
    connection: Connection,
    publisher: Channel,
}

impl Link {
    pub(super) fn is_open(&self) -> bool {
        self.connection.status().connected() && self.publisher.status().connected()
    }
}

/// One broker connection, re-established on demand: lapin does not recover from a broker restart.
pub(super) struct Broker {
    url: SecretString,
    redacted: String,
    topology: Topology,
    link: Mutex<Option<Arc<Link>>>,
    pub(super) reconnect_timeout: Duration,
}

impl Broker {
    pub(super) async fn connect(url: &SecretString, topology: Topology) -> PortResult<Self> {
        let broker = Self {
            url: url.clone(),
            redacted: redact_url(url.expose_secret()),
            topology,
            link: Mutex::new(None),
            reconnect_timeout: RECONNECT_TIMEOUT,
        };
        let link = broker.open().await.map_err(PortError::Unavailable)?;
        *broker.link.lock().await = Some(Arc::new(link));
        Ok(broker)
    }

    /// Connects, opens the publishing channel and declares the topology: one attempt.
    pub(super) async fn open(&self) -> Result<Link, String> {
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
    pub(super) async fn link(&self, deadline: Instant) -> PortResult<Arc<Link>> {
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
                        return Err(PortError::Unavailable(format!("{e} (gave up reconnecting)")));
                    }
                }
            }
        }
    }

    /// Drops `link` (if still the current one) so that the next operation reconnects.
    pub(super) async fn forget(&self, link: &Arc<Link>) {
        let mut current = self.link.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, link)) {
            *current = None;
        }
    }

    /// A confirmed, persistent publish, retried across reconnects until the reconnect timeout.
    pub(super) async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
        mandatory: Mandatory,
    ) -> PortResult<()> {
        let mut retry = Retry::new(Instant::now() + self.reconnect_timeout);
        loop {
            let link = self.link(retry.deadline).await?;
            match publish_confirmed(&link.publisher, exchange, routing_key, body, properties.clone(), mandatory).await {
                Ok(()) => return Ok(()),
                Err(PublishFailure::Refused(reason)) => return Err(PortError::Other(reason)),
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
    pub(super) async fn channel(&self, prefetch: u16) -> PortResult<(Arc<Link>, Channel)> {
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
pub(super) struct Retry {
    deadline: Instant,
    attempt: u32,
}

impl Retry {
    pub(super) fn new(deadline: Instant) -> Self {
        Self { deadline, attempt: 0 }
    }

    /// Sleeps before the next attempt; false when that would pass the deadline.
    pub(super) async fn wait(&mut self) -> bool {
        self.attempt += 1;
        let delay = RECONNECT_BACKOFF.delay(self.attempt);
        if Instant::now() + delay > self.deadline {
            return false;
        }
        tokio::time::sleep(delay).await;
        true
    }
}

pub(super) enum PublishFailure {
    /// The broker answered and refused the message: retrying will not help.
    Refused(String),
    /// The channel or connection failed, or the message was unroutable (a deleted queue is
    /// redeclared on reconnect): worth retrying on a fresh link.
    Broken(String),
}

impl PublishFailure {
    pub(super) fn message(&self) -> &str {
        match self {
            PublishFailure::Refused(m) | PublishFailure::Broken(m) => m,
        }
    }

    pub(super) fn into_error(self, target: &str) -> PortError {
        match self {
            PublishFailure::Refused(m) => PortError::Other(m),
            PublishFailure::Broken(m) => PortError::Unavailable(format!("publishing to {target}: {m}")),
        }
    }
}

/// Whether a message that reaches no queue is an error (it comes back to the publisher).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mandatory {
    Yes,
    No,
}

/// Publishes a message and waits for the broker's confirm.
pub(super) async fn publish_confirmed(
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

pub(super) fn unavailable(what: &str, error: &lapin::Error) -> PortError {
    PortError::Unavailable(format!("{what}: {error}"))
}
