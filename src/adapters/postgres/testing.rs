//! A fresh, migrated PostgreSQL database per test (the adapters' live tests, the production
//! integration tests). Compiled with the `test-support` feature.

use secrecy::SecretString;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use super::PgStore;
use crate::adapters::settings::DatabaseSettings;

/// The server tests use: `$POSTGRES_TEST_URL` or the local one (trust auth).
pub fn server_url() -> String {
    std::env::var("POSTGRES_TEST_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

pub struct TestDatabase {
    pub name: String,
    pub settings: DatabaseSettings,
}

impl TestDatabase {
    /// Creates `tubesum_test_<uuid>`; panics with a clear message when PostgreSQL is unreachable.
    pub async fn create() -> TestDatabase {
        let server = server_url();
        let name = format!("tubesum_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&format!("{server}/postgres"))
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL is required at {server} (start it, or set POSTGRES_TEST_URL): {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = SecretString::from(format!("{server}/{name}"));
        let settings = DatabaseSettings { url, max_connections: 5, outbox_retention_hours: 0, write_batch: 256 };
        TestDatabase { name, settings }
    }

    pub async fn store(&self) -> PgStore {
        PgStore::connect(&self.settings).await.expect("connect to the test database")
    }

    pub async fn drop_now(self) {
        if let Ok(mut admin) = PgConnection::connect(&format!("{}/postgres", server_url())).await {
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)))
                .execute(&mut admin)
                .await;
        }
    }
}
