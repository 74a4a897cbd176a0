//! [`EventBus`] on RabbitMQ: a durable fanout exchange; each subscriber gets an exclusive,
//! auto-delete, server-named queue.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::BasicProperties;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicRejectOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use crate::adapters::settings::AmqpSettings;
use crate::domain::DomainEvent;
use crate::ports::{EventBus, EventStream, PortError, PortResult};

use super::connection::{Broker, Mandatory, Topology, unavailable};
use super::{JSON, PERSISTENT};

const SUBSCRIBER_PREFETCH: u16 = 256;

/// Domain events on a RabbitMQ fanout exchange.
pub struct RabbitEventBus {
    broker: Broker,
    exchange: String,
}

impl RabbitEventBus {
    /// Connects once (no retry) and declares the durable fanout exchange `exchange_name`.
    pub async fn connect(settings: &AmqpSettings, exchange_name: &str) -> PortResult<Self> {
        let topology = Topology::Events { exchange: exchange_name.to_owned() };
        let broker = Broker::connect(&settings.url, topology).await?;
        Ok(Self { broker, exchange: exchange_name.to_owned() })
    }

    /// How long `publish` and `subscribe` keep reconnecting before they fail ([`RECONNECT_TIMEOUT`](super::RECONNECT_TIMEOUT)).
    pub fn with_reconnect_timeout(mut self, timeout: Duration) -> Self {
        self.broker.reconnect_timeout = timeout;
        self
    }
}

#[async_trait]
impl EventBus for RabbitEventBus {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        let body = serde_json::to_vec(&event).map_err(|e| PortError::Other(format!("encoding event: {e}")))?;
        let properties = BasicProperties::default()
            .with_content_type(JSON.into())
            .with_delivery_mode(PERSISTENT)
            .with_message_id(event.event_id.to_string().into())
            .with_type(event.payload.kind().into());
        // No subscriber yet is fine: events are notifications.
        self.broker.publish(&self.exchange, "", &body, properties, Mandatory::No).await
    }

    async fn subscribe(&self) -> PortResult<EventStream> {
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
    async fn next_event(&mut self) -> Option<PortResult<DomainEvent>> {
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
                    return self.finish(PortError::Unavailable(format!("subscription to {exchange} was cancelled")));
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

    fn finish(&mut self, error: PortError) -> Option<PortResult<DomainEvent>> {
        self.finished = true;
        Some(Err(error))
    }
}
