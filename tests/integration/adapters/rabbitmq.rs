//! The RabbitMQ command and event buses against the local broker (`AMQP_TEST_URL`, default
//! `amqp://guest:guest@127.0.0.1:5672/%2f`): these fail, never skip, when it is not running
//! (`rabbitmq-server -detached`). Each declares its own queues or exchange under a unique name and
//! deletes them at the end, even when it fails.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use lapin::message::BasicGetMessage;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use secrecy::SecretString;
use tokio::sync::RwLock;
use tokio::time::Instant;
use uuid::Uuid;

use tubesum::adapters::rabbitmq::{
    DELIVERIES_HEADER, REASON_HEADER, RabbitCommandBus, RabbitEventBus, StageQueues, delivery_count,
};
use tubesum::adapters::settings::{AmqpSettings, redact_url};
use tubesum::domain::{DomainEvent, EventPayload, JobId, Stage, StageCommand, VideoId};
use tubesum::ports::{CommandBus, Delivery, DeliveryStream, EventBus, PortError, conformance};

const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// What the buses promise on the wire: persistent messages (delivery mode 2) of JSON.
const PERSISTENT: u8 = 2;
const JSON: &str = "application/json";
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
    Connection::connect(&url(), ConnectionProperties::default()).await.unwrap_or_else(|e| panic!("{}", unreachable(e)))
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
        for (queue, args) in
            [(&queues.work, FieldTable::default()), (&queues.retry, retry_args), (&queues.dlq, FieldTable::default())]
        {
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
    let settings =
        AmqpSettings { url: SecretString::from(format!("amqp://tubesum:s3cr3t@127.0.0.1:{port}/%2f")), ..settings() };
    let started = Instant::now();
    let errors = [
        RabbitCommandBus::connect(&settings, "unused.").await.err(),
        RabbitEventBus::connect(&settings, "unused").await.err(),
    ];
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    for error in errors {
        let Some(PortError::Unavailable(message)) = error else { panic!("expected Unavailable, got {error:?}") };
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
        assert!(matches!(refused, Err(PortError::Unavailable(_))), "{refused:?}");
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
