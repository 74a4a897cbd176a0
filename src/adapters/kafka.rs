//! Domain events on Kafka (rdkafka): one topic per event type (`video_discovered`,
//! `video_downloaded`, `audio_extracted`, `transcription_completed`, `summarization_completed`,
//! plus `discovery_completed`, `stage_failed`, `job_finished`), JSON values with `event_id`,
//! `occurred_at`, `job_id`, `video_id` and the payload, keyed by video id (job id for job events).
//! The producer is idempotent with `acks=all`; no Kafka transactions (the outbox gives atomicity).
//! Consumers poll on their own task and feed a bounded channel.

use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::adapters::settings::KafkaSettings;
use crate::domain::DomainEvent;
use crate::ports::{EventBus, EventStream, PortError, PortResult};

/// Every event type, i.e. every topic (before the prefix).
pub const TOPICS: &[&str] = &[
    "video_discovered",
    "video_downloaded",
    "audio_extracted",
    "transcription_completed",
    "summarization_completed",
    "discovery_completed",
    "stage_failed",
    "job_finished",
];

pub struct KafkaEventBus {
    settings: KafkaSettings,
    producer: FutureProducer,
}

impl KafkaEventBus {
    /// Connects (failing fast when no broker answers) and creates the topics that are missing.
    pub async fn connect(settings: &KafkaSettings) -> PortResult<Self> {
        let unavailable =
            |e: &dyn std::fmt::Display| PortError::Unavailable(format!("Kafka at {}: {e}", settings.brokers));
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &settings.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(|e| unavailable(&e))?;
        let probe = producer.clone();
        tokio::task::spawn_blocking(move || probe.client().fetch_metadata(None, Duration::from_secs(10)))
            .await
            .map_err(|e| unavailable(&e))?
            .map_err(|e| unavailable(&e))?;
        let bus = Self { settings: settings.clone(), producer };
        bus.create_topics().await?;
        Ok(bus)
    }

    fn topic(&self, kind: &str) -> String {
        format!("{}{kind}", self.settings.topic_prefix)
    }

    async fn create_topics(&self) -> PortResult<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .create()
            .map_err(|e| PortError::Unavailable(format!("Kafka admin: {e}")))?;
        let names: Vec<String> = TOPICS.iter().map(|t| self.topic(t)).collect();
        let topics: Vec<NewTopic<'_>> =
            names.iter().map(|name| NewTopic::new(name, 1, TopicReplication::Fixed(1))).collect();
        let results = admin
            .create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
            .await
            .map_err(|e| PortError::Unavailable(format!("creating Kafka topics: {e}")))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => return Err(PortError::Unavailable(format!("creating topic {topic}: {code}"))),
            }
        }
        Ok(())
    }

    /// A consumer of every event topic in consumer group `group` (each group sees every event),
    /// from the group's committed offsets or else from the earliest event.
    ///
    /// An event is acknowledged only once the subscriber is done with it: its offset is stored
    /// when the stream is asked for the next event (the pump asks only after its drain took the
    /// event), and stored offsets are committed every few seconds and when the consumer closes.
    /// A subscriber that stops midway leaves its last event uncommitted, and the group sees it again.
    pub async fn consume(&self, group: &str) -> PortResult<EventStream> {
        let consumer: StreamConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.settings.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| PortError::Unavailable(format!("Kafka consumer: {e}")))?;
        let names: Vec<String> = TOPICS.iter().map(|t| self.topic(t)).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        consumer.subscribe(&refs).map_err(|e| PortError::Unavailable(format!("subscribing: {e}")))?;
        // One event in hand at a time: the task waits for the subscriber to be done with it.
        let (tx, rx) = tokio::sync::mpsc::channel::<(PortResult<DomainEvent>, Option<Done>)>(1);
        tokio::spawn(async move {
            let mut messages = consumer.stream();
            loop {
                // Ends with the subscriber: the consumer leaves its group instead of lingering.
                let message = tokio::select! {
                    () = tx.closed() => break,
                    message = messages.next() => match message {
                        Some(message) => message,
                        None => break,
                    },
                };
                let m = match message {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = tx.send((Err(PortError::Unavailable(format!("Kafka: {e}"))), None)).await;
                        break;
                    }
                };
                let event = match m.payload().map(serde_json::from_slice::<DomainEvent>) {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => {
                        // Nothing would ever take it: pass over it, acknowledged.
                        tracing::warn!(topic = m.topic(), offset = m.offset(), error = %e, "skipping an undecodable event");
                        store(&consumer, &m);
                        continue;
                    }
                    None => {
                        store(&consumer, &m);
                        continue;
                    }
                };
                let (done, taken) = tokio::sync::oneshot::channel();
                if tx.send((Ok(event), Some(done))).await.is_err() || taken.await.is_err() {
                    break; // the subscriber went away before it was done: not acknowledged
                }
                store(&consumer, &m);
            }
            drop(messages);
            // Closing commits the stored offsets and leaves the group, round trips to the broker:
            // not on an async worker.
            tokio::task::spawn_blocking(move || drop(consumer));
        });
        let events = futures::stream::unfold((rx, None::<Done>), |(mut rx, previous)| async move {
            // Asked for the next event: the subscriber is done with the previous one.
            if let Some(done) = previous {
                let _ = done.send(());
            }
            let (item, done) = rx.recv().await?;
            Some((item, (rx, done)))
        });
        Ok(events.boxed())
    }
}

/// Tells the consumer task that the subscriber is done with an event.
type Done = tokio::sync::oneshot::Sender<()>;

/// Marks a message as done, for the next commit.
fn store(consumer: &StreamConsumer, message: &rdkafka::message::BorrowedMessage<'_>) {
    if let Err(e) = consumer.store_offset_from_message(message) {
        tracing::warn!(topic = message.topic(), error = %e, "could not store a consumed offset");
    }
}

#[async_trait]
impl EventBus for KafkaEventBus {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        let payload = serde_json::to_vec(&event).map_err(|e| PortError::Other(format!("encoding event: {e}")))?;
        let key = event.video_id.as_ref().map_or_else(|| event.job_id.to_string(), ToString::to_string);
        let topic = self.topic(event.payload.kind());
        self.producer
            .send(FutureRecord::to(&topic).key(&key).payload(&payload), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| PortError::Unavailable(format!("publishing to {topic}: {e}")))?;
        Ok(())
    }

    /// A fresh consumer group: this subscriber sees every event from the start of the topics.
    async fn subscribe(&self) -> PortResult<EventStream> {
        self.consume(&format!("tubesum-subscriber-{}", uuid::Uuid::new_v4())).await
    }

    async fn subscribe_group(&self, group: &str) -> PortResult<EventStream> {
        self.consume(group).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::EventPayload;

    #[test]
    fn every_event_type_has_a_topic() {
        let kinds = [
            EventPayload::VideoDiscovered { title: String::new(), published_at: None },
            EventPayload::VideoDownloaded { captions: false, reused: false },
            EventPayload::AudioExtracted { seconds: 0.0 },
            EventPayload::TranscriptionCompleted { source: crate::domain::TranscriptSource::Whisper, segments: 0 },
            EventPayload::SummarizationCompleted { summarizer: String::new() },
            EventPayload::DiscoveryCompleted { videos: 0 },
            EventPayload::StageFailed {
                stage: crate::domain::Stage::Download,
                attempt: 1,
                retryable: true,
                reason: String::new(),
                redo: None,
            },
            EventPayload::JobFinished { status: crate::domain::JobStatus::Completed },
        ];
        for k in &kinds {
            assert!(TOPICS.contains(&k.kind()), "{}", k.kind());
        }
        assert_eq!(kinds.len(), TOPICS.len());
    }
}
