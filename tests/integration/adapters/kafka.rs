//! The Kafka event bus against the local Kafka-protocol broker (`KAFKA_TEST_BROKERS`, default
//! `127.0.0.1:9092`; `scripts/services.sh` starts one). Each test uses topics of its own.

use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tubesum::adapters::kafka::KafkaEventBus;
use tubesum::adapters::settings::KafkaSettings;
use tubesum::domain::{DomainEvent, EventPayload, JobId, JobStatus};
use tubesum::ports::{EventBus, PortError, conformance};

/// `$KAFKA_TEST_BROKERS` or the local broker; a unique topic prefix per test.
pub fn test_settings() -> KafkaSettings {
    KafkaSettings {
        brokers: std::env::var("KAFKA_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
        topic_prefix: format!("t{}_", uuid::Uuid::new_v4().simple()),
    }
}

#[tokio::test]
async fn kafka_event_bus_conforms() {
    let bus = KafkaEventBus::connect(&test_settings())
        .await
        .unwrap_or_else(|e| panic!("a Kafka-protocol broker is required (scripts/services.sh starts one): {e}"));
    conformance::event_bus(&bus).await;
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = KafkaSettings { brokers: format!("127.0.0.1:{port}"), topic_prefix: String::new() };
    let err = KafkaEventBus::connect(&settings).await.err().expect("nothing listens there");
    assert!(matches!(err, PortError::Unavailable(_)));
    assert!(err.to_string().contains(&format!("127.0.0.1:{port}")), "{err}");
}

/// Where group `group` has committed to in `topic` (partition 0), once it gets to `want`.
async fn committed_reaches(settings: &KafkaSettings, group: &str, topic: &str, want: i64) {
    let reader: BaseConsumer =
        ClientConfig::new().set("bootstrap.servers", &settings.brokers).set("group.id", group).create().unwrap();
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let committed = reader.committed_offsets(wanted.clone(), Duration::from_secs(5)).unwrap();
        let offset = committed.find_partition(topic, 0).map(|p| p.offset());
        if offset == Some(Offset::Offset(want)) {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{group} committed {offset:?}, never {want}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event log's guarantee: an event is committed only once its subscriber asked for the next
/// one (it is done with it); one it was still holding when it stopped comes again.
#[tokio::test]
async fn an_event_is_acknowledged_only_once_its_subscriber_is_done_with_it() {
    let settings = test_settings();
    let bus = KafkaEventBus::connect(&settings).await.expect("a Kafka-protocol broker");
    let finished = || DomainEvent::new(JobId::new(), None, EventPayload::JobFinished { status: JobStatus::Completed });
    let (a, b, c) = (finished(), finished(), finished());
    for event in [&a, &b] {
        bus.publish(event.clone()).await.unwrap();
    }
    let group = format!("ack-{}", uuid::Uuid::new_v4().simple());
    async fn next(events: &mut tubesum::ports::EventStream) -> DomainEvent {
        let next = tokio::time::timeout(Duration::from_secs(30), events.next()).await;
        next.expect("an event in time").expect("open").expect("no error")
    }
    // Holding `a` when it stops: nothing is acknowledged, `a` comes again.
    let mut events = bus.subscribe_group(&group).await.unwrap();
    assert_eq!(next(&mut events).await, a);
    drop(events);
    let mut events = bus.subscribe_group(&group).await.unwrap();
    assert_eq!(next(&mut events).await, a, "the event it held is delivered again");
    assert_eq!(next(&mut events).await, b, "asking for b acknowledges a");
    bus.publish(c.clone()).await.unwrap();
    assert_eq!(next(&mut events).await, c, "asking for c acknowledges b");
    drop(events);
    let topic = format!("{}job_finished", settings.topic_prefix);
    committed_reaches(&settings, &group, &topic, 2).await;
    let mut events = bus.subscribe_group(&group).await.unwrap();
    assert_eq!(next(&mut events).await, c, "c was held, not done: it comes again, and nothing before it");
}
