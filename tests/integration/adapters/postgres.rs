//! The PostgreSQL job store against the local server (`POSTGRES_TEST_URL`, default
//! `postgres://postgres@127.0.0.1:5432`, trust auth): the job store conformance suite, the outbox
//! transaction, error translation. Each test works in a fresh database of its own.

use secrecy::SecretString;

use tubesum::adapters::postgres::PgStore;
use tubesum::adapters::postgres::testing::TestDatabase;
use tubesum::adapters::settings::DatabaseSettings;
use tubesum::domain::{ChannelId, DomainEvent, JobId, JobStatus};
use tubesum::ports::{Finish, JobStore, PortError, conformance};

#[tokio::test]
async fn postgres_job_store_conforms() {
    let db = TestDatabase::create().await;
    conformance::job_store(&db.store().await).await;
    db.drop_now().await;
}

#[tokio::test]
async fn postgres_subscription_store_conforms() {
    let db = TestDatabase::create().await;
    conformance::subscription_store(&db.store().await).await;
    db.drop_now().await;
}

#[tokio::test]
async fn postgres_webhook_store_conforms() {
    let db = TestDatabase::create().await;
    conformance::webhook_store(&db.store().await).await;
    db.drop_now().await;
}

#[tokio::test]
async fn a_job_ends_with_its_event_in_one_transaction() {
    use tubesum::adapters::postgres::outbox;
    use tubesum::domain::EventPayload;
    let db = TestDatabase::create().await;
    let channel = ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap();
    let finished = |job| DomainEvent::new(job, None, EventPayload::JobFinished { status: JobStatus::Completed });

    let plain = db.store().await;
    let job = JobId::new();
    plain.create_job(job, &channel, false, None).await.unwrap();
    let ended = plain.finish_job(job, JobStatus::Completed, None, &finished(job)).await.unwrap();
    assert_eq!(ended, Finish::StatusOnly, "no outbox");
    assert_eq!(outbox::pending(plain.pool()).await.unwrap(), 0);

    let store = db.store().await.with_outbox(&["fanout", "kafka"]);
    let job = JobId::new();
    store.create_job(job, &channel, false, None).await.unwrap();
    let event = finished(job);
    assert_eq!(store.finish_job(job, JobStatus::Failed, Some("gone"), &event).await.unwrap(), Finish::WithEvent);
    let record = store.get_job(job).await.unwrap().unwrap();
    assert_eq!((record.status, record.error.as_deref()), (JobStatus::Failed, Some("gone")));
    assert_eq!(outbox::published_at(store.pool(), event.event_id).await.unwrap(), Some(None), "pending");
    // A job ends once: a later final status (a race with a cancel, say) changes nothing.
    let late = DomainEvent::new(job, None, EventPayload::JobFinished { status: JobStatus::Cancelled });
    let again = store.finish_job(job, JobStatus::Cancelled, None, &late).await.unwrap();
    assert_eq!(again, Finish::AlreadyFinal(JobStatus::Failed));
    assert_eq!(store.get_job(job).await.unwrap().unwrap().status, JobStatus::Failed);
    assert_eq!(outbox::published_at(store.pool(), late.event_id).await.unwrap(), None, "no event for it");
    let missing = JobId::new();
    assert!(store.finish_job(missing, JobStatus::Failed, None, &finished(missing)).await.is_err());
    assert_eq!(outbox::pending(store.pool()).await.unwrap(), 1, "nothing enqueued for a missing job");
    db.drop_now().await;
}

#[tokio::test]
async fn migrations_are_idempotent_and_duplicates_translate() {
    let db = TestDatabase::create().await;
    let store = db.store().await;
    let again = db.store().await;
    let job = JobId::new();
    let channel = ChannelId::parse("UCabcdefghijklmnopqrstuv").unwrap();
    store.create_job(job, &channel, false, None).await.unwrap();
    let err = again.create_job(job, &channel, false, None).await.unwrap_err();
    assert!(matches!(err, PortError::AlreadyExists(_)), "{err}");
    db.drop_now().await;
}

#[tokio::test]
async fn an_unreachable_database_fails_fast_without_leaking_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let settings = DatabaseSettings {
        url: SecretString::from(format!("postgres://user:hunter2@127.0.0.1:{port}/db")),
        max_connections: 1,
        outbox_retention_hours: 0,
        write_batch: 256,
    };
    let err = PgStore::connect(&settings).await.err().expect("nothing listens there");
    let msg = err.to_string();
    assert!(matches!(err, PortError::Unavailable(_)));
    assert!(msg.contains(&format!("127.0.0.1:{port}")) && !msg.contains("hunter2"), "{msg}");
}
