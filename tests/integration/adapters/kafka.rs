//! The Kafka event bus against the local Kafka-protocol broker (`KAFKA_TEST_BROKERS`, default
//! `127.0.0.1:9092`; `scripts/services.sh` starts one). Each test uses topics of its own.

use tubesum::adapters::kafka::KafkaEventBus;
use tubesum::adapters::settings::KafkaSettings;
use tubesum::ports::{PortError, conformance};

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
