//! [`CommandBus`] on RabbitMQ: a durable work queue per stage, with a delayed-retry queue and a
//! dead-letter queue (see the module doc of [`super`] for the topology).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel};

use crate::adapters::settings::AmqpSettings;
use crate::domain::{Stage, StageCommand};
use crate::ports::{Acker, CommandBus, Delivery, DeliveryStream, PortError, PortResult};

use super::connection::{Broker, Mandatory, Topology, publish_confirmed, unavailable};
use super::{JSON, PERSISTENT};

/// Delivery count carried by a republished command (1 when absent).
pub const DELIVERIES_HEADER: &str = "x-tubesum-deliveries";
/// Why a command was last given back (retry) or dead-lettered (DLQ).
pub const REASON_HEADER: &str = "x-tubesum-reason";

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
    pub async fn connect(settings: &AmqpSettings, queue_prefix: &str) -> PortResult<Self> {
        let queues: HashMap<_, _> =
            Stage::ALL.iter().map(|&stage| (stage, Arc::new(StageQueues::new(queue_prefix, stage)))).collect();
        let topology = Topology::Commands {
            queues: Stage::ALL.iter().map(|stage| queues[stage].clone()).collect(),
            retry_delay_ms: settings.retry_delay_ms,
        };
        let broker = Broker::connect(&settings.url, topology).await?;
        Ok(Self { broker, queues, max_deliveries: settings.max_deliveries.max(1) })
    }

    /// How long `send` and `consume` keep reconnecting before they fail ([`RECONNECT_TIMEOUT`](super::RECONNECT_TIMEOUT)).
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
    async fn send(&self, command: StageCommand) -> PortResult<()> {
        let body = serde_json::to_vec(&command).map_err(|e| PortError::Other(format!("encoding command: {e}")))?;
        let properties = BasicProperties::default()
            .with_content_type(JSON.into())
            .with_delivery_mode(PERSISTENT)
            .with_message_id(command.command_id.to_string().into());
        self.broker.publish("", &self.queues(command.stage).work, &body, properties, Mandatory::Yes).await
    }

    async fn consume(&self, stage: Stage, prefetch: usize) -> PortResult<DeliveryStream> {
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
    async fn next_delivery(&mut self) -> Option<PortResult<Delivery>> {
        if self.finished {
            return None;
        }
        loop {
            let delivery = match self.consumer.next().await {
                Some(Ok(delivery)) => delivery,
                Some(Err(e)) => return self.finish(unavailable(&format!("consumer of {}", self.queues.work), &e)),
                None => {
                    let queue = &self.queues.work;
                    return self.finish(PortError::Unavailable(format!("consumer of {queue} was cancelled")));
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

    fn finish(&mut self, error: PortError) -> Option<PortResult<Delivery>> {
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
pub fn delivery_count(properties: &BasicProperties) -> u32 {
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
    async fn dead_letter(&self, reason: &str) -> PortResult<()> {
        tracing::warn!(queue = %self.queues.work, deliveries = self.deliveries, reason, "command dead-lettered");
        self.move_to(&self.queues.dlq, self.deliveries, reason).await
    }

    /// Republishes a copy with the given headers (confirmed), then acks the original. If the copy
    /// cannot be published, the original is given straight back to the queue instead.
    async fn move_to(&self, queue: &str, deliveries: u32, reason: &str) -> PortResult<()> {
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

    async fn settle_ack(&self) -> PortResult<()> {
        match self.acker.ack(BasicAckOptions::default()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PortError::Other(format!(
                "a delivery from {} was already settled or its channel closed (it will be redelivered)",
                self.queues.work
            ))),
            Err(e) => Err(unavailable(&format!("acking a delivery from {}", self.queues.work), &e)),
        }
    }
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(&self) -> PortResult<()> {
        self.settle_ack().await
    }

    async fn nack(&self, requeue: bool, reason: &str) -> PortResult<()> {
        if requeue && self.deliveries < self.max_deliveries {
            tracing::debug!(queue = %self.queues.work, deliveries = self.deliveries, reason, "command retried later");
            self.move_to(&self.queues.retry, self.deliveries + 1, reason).await
        } else {
            self.dead_letter(reason).await
        }
    }
}
