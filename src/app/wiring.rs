//! Wiring: the adapter the settings choose for each port (`backends`, `ports.*`), connected, plus
//! the real stage work — everything the actor runtime needs, as [`Deps`].
//!
//! A production backend this build was compiled without (see the cargo features in `Cargo.toml`)
//! is refused before anything connects, with a message naming the feature; one that cannot be
//! reached fails start-up at once, naming the port and the URL tried (without secrets).

use std::sync::Arc;

use anyhow::Context;
use tokio_util::task::AbortOnDropHandle;

use super::settings::{Backends, PortBackends, Settings};
use crate::actors::Deps;
use crate::actors::feed::Feed;
use crate::adapters::embedded::{InProcessCommandBus, InProcessEventBus, SqliteStore};
use crate::ports::{ArtifactStore, CommandBus, EventBus, JobStore, SubscriptionStore, WebhookStore};
use crate::stages::{StageContext, Stages};

/// The ports one database serves: the job store, subscriptions, webhooks.
type Stores = (Arc<dyn JobStore>, Arc<dyn SubscriptionStore>, Arc<dyn WebhookStore>);

/// The ports and stage work, ready for a pipeline.
pub struct Wiring {
    pub settings: Arc<Settings>,
    pub deps: Deps,
    /// Watched channels (the job store's database).
    pub subscriptions: Arc<dyn SubscriptionStore>,
    /// Webhooks and their deliveries: in the job store's database.
    pub webhooks: Arc<dyn WebhookStore>,
    /// Adapter tasks that live as long as the adapters (the outbox relay); aborted on drop.
    pub(super) background: Vec<AbortOnDropHandle<()>>,
}

impl Wiring {
    /// Connects the backends the settings choose, with the real stages.
    pub async fn from_settings(mut settings: Settings) -> anyhow::Result<Wiring> {
        resolve_tools(&mut settings);
        let settings = Arc::new(settings);
        let ports = settings.port_backends();
        require_features(ports)?;
        let sqlite = match (ports.store, ports.artifacts) {
            (Backends::Production, Backends::Production) => None,
            _ => Some(Arc::new(open_sqlite(&settings).await?)),
        };
        let embedded = || sqlite.clone().expect("opened when a port is embedded");
        let mut background = Vec::new();

        let production = match ports.store {
            Backends::Embedded => None,
            Backends::Production => Some(production::Store::connect(&settings, ports.events).await?),
        };
        let (store, subscriptions, webhooks): Stores = match &production {
            None => (embedded(), embedded(), embedded()),
            Some(pg) => pg.ports(),
        };
        let (artifacts, media): (Arc<dyn ArtifactStore>, _) = match ports.artifacts {
            Backends::Embedded => (embedded(), None),
            Backends::Production => production::artifacts(&settings).await?,
        };
        let commands: Arc<dyn CommandBus> = match ports.commands {
            Backends::Embedded => Arc::new(InProcessCommandBus::default()),
            Backends::Production => production::commands(&settings).await?,
        };
        let events: Arc<dyn EventBus> = match (ports.events, &production) {
            (Backends::Embedded, _) => Arc::new(InProcessEventBus::default()),
            (Backends::Production, Some(pg)) => production::events(&settings, pg, &mut background).await?,
            (Backends::Production, None) => {
                anyhow::bail!("production events need the production store (the outbox)")
            }
        };
        let ctx = StageContext::new(settings.stage_settings(), store, artifacts, media);
        let stages = Stages::real(&ctx).map_err(|e| anyhow::anyhow!("{e}"))?;
        let deps = Deps {
            settings: Arc::new(settings.stages.clone()),
            store: ctx.store,
            artifacts: ctx.artifacts,
            commands,
            events,
            stages,
            running: Arc::default(),
            restarts: Arc::default(),
            board: Arc::default(),
            feed: Arc::new(Feed::new(settings.server.event_history)),
            steps: Arc::default(),
        };
        Ok(Wiring { settings, deps, subscriptions, webhooks, background })
    }

    /// What the stage work is built from (tests and the benchmark build their own stages on it).
    pub fn stage_context(&self) -> StageContext {
        StageContext {
            settings: Arc::new(self.settings.stage_settings()),
            store: self.deps.store.clone(),
            artifacts: self.deps.artifacts.clone(),
            media: self.deps.stages.media.clone(),
        }
    }

    /// Replaces the stage work.
    pub fn with_stages(mut self, make: impl FnOnce(&StageContext) -> Stages) -> Wiring {
        self.deps.stages = make(&self.stage_context());
        self
    }
}

/// The embedded database under `data_dir`.
async fn open_sqlite(settings: &Settings) -> anyhow::Result<SqliteStore> {
    let db = settings.database_path();
    SqliteStore::open(&db).await.with_context(|| format!("opening {}", db.display()))
}

/// yt-dlp and ffmpeg as the stages will run them (bare names found on PATH or in ./.venv/bin).
fn resolve_tools(settings: &mut Settings) {
    settings.download.yt_dlp = crate::stages::process::resolve(&settings.download.yt_dlp);
    settings.audio.ffmpeg = crate::stages::process::resolve(&settings.audio.ffmpeg);
}

/// The cargo features each port's production backend needs, and whether this build has them.
const FEATURES: [(&str, bool); 4] = [
    ("postgres", cfg!(feature = "postgres")),
    ("rabbitmq", cfg!(feature = "rabbitmq")),
    ("kafka", cfg!(feature = "kafka")),
    ("mongodb", cfg!(feature = "mongodb")),
];

/// Refuses settings that ask for a production backend this build does not have.
pub fn require_features(ports: PortBackends) -> anyhow::Result<()> {
    let wanted: [(&str, Backends, &[&str]); 4] = [
        ("store", ports.store, &["postgres"]),
        ("artifacts", ports.artifacts, &["mongodb"]),
        ("commands", ports.commands, &["rabbitmq"]),
        ("events", ports.events, &["postgres", "rabbitmq", "kafka"]),
    ];
    let mut missing: Vec<&str> = Vec::new();
    let mut ports_affected = Vec::new();
    for (port, backend, needs) in wanted {
        if backend != Backends::Production {
            continue;
        }
        let lacking: Vec<&str> =
            needs.iter().copied().filter(|f| FEATURES.iter().any(|(name, on)| name == f && !on)).collect();
        if !lacking.is_empty() {
            ports_affected.push(format!("ports.{port}"));
            for f in lacking {
                if !missing.contains(&f) {
                    missing.push(f);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let features = missing.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ");
    anyhow::bail!(
        "the production backend of {} needs the cargo feature{} {features}, which this tubesum was built \
         without; rebuild with the default features (`cargo build --release`) or add `--features {}`, \
         or set backends = \"embedded\"",
        ports_affected.join(", "),
        if missing.len() == 1 { "" } else { "s" },
        missing.join(",")
    )
}

/// The production adapters, each behind its feature; [`require_features`] has refused the ones
/// this build lacks before any of these is called.
mod production {
    use std::sync::Arc;

    #[cfg(feature = "postgres")]
    use anyhow::Context;
    use tokio_util::task::AbortOnDropHandle;

    use super::super::settings::{Backends, Settings};
    use crate::ports::{ArtifactStore, CommandBus, EventBus, MediaStore};

    /// What a production port was asked for that this build lacks (never reached: checked first).
    #[cfg(not(all(feature = "postgres", feature = "rabbitmq", feature = "kafka", feature = "mongodb")))]
    fn compiled_out(feature: &str) -> anyhow::Error {
        anyhow::anyhow!("this tubesum was built without the `{feature}` feature")
    }

    #[cfg(any(feature = "postgres", feature = "rabbitmq", feature = "kafka", feature = "mongodb"))]
    fn what(port: &str) -> String {
        format!("{port} on the production backend (backends / ports.{port} = \"production\")")
    }

    /// The PostgreSQL store, with the outbox when events are production too.
    pub struct Store {
        #[cfg(feature = "postgres")]
        pg: crate::adapters::postgres::PgStore,
    }

    /// The outbox's sinks in production: the RabbitMQ fanout exchange and Kafka.
    #[cfg(all(feature = "postgres", feature = "rabbitmq", feature = "kafka"))]
    const OUTBOX_SINKS: [&str; 2] = [crate::adapters::postgres::outbox::ROUTING_SINK, "kafka"];

    impl Store {
        #[cfg(feature = "postgres")]
        pub async fn connect(settings: &Settings, events: Backends) -> anyhow::Result<Store> {
            let pg =
                crate::adapters::postgres::PgStore::connect(&settings.database).await.with_context(|| what("store"))?;
            #[cfg(all(feature = "rabbitmq", feature = "kafka"))]
            let pg = if events == Backends::Production { pg.with_outbox(&OUTBOX_SINKS) } else { pg };
            #[cfg(not(all(feature = "rabbitmq", feature = "kafka")))]
            let _ = events;
            Ok(Store { pg })
        }

        #[cfg(not(feature = "postgres"))]
        pub async fn connect(_: &Settings, _: Backends) -> anyhow::Result<Store> {
            Err(compiled_out("postgres"))
        }

        /// The ports the job store's database serves: jobs, subscriptions, webhooks.
        pub fn ports(&self) -> super::Stores {
            #[cfg(feature = "postgres")]
            return (Arc::new(self.pg.clone()), Arc::new(self.pg.clone()), Arc::new(self.pg.clone()));
            #[cfg(not(feature = "postgres"))]
            unreachable!("a Store exists only with the postgres feature")
        }
    }

    /// The MongoDB artifact store, and its media store unless `download.share_media` is off.
    pub async fn artifacts(
        settings: &Settings,
    ) -> anyhow::Result<(Arc<dyn ArtifactStore>, Option<Arc<dyn MediaStore>>)> {
        #[cfg(feature = "mongodb")]
        {
            use secrecy::ExposeSecret;
            let mongo = &settings.mongodb;
            let store =
                crate::adapters::mongodb::MongoArtifactStore::connect(mongo.url.expose_secret(), &mongo.database)
                    .await
                    .with_context(|| what("artifacts"))?;
            let media: Option<Arc<dyn MediaStore>> = if settings.download.share_media {
                let media = crate::adapters::mongodb::media::MongoMediaStore::new(store.database())
                    .await
                    .with_context(|| what("artifacts"))?;
                Some(Arc::new(media))
            } else {
                None
            };
            Ok((Arc::new(store), media))
        }
        #[cfg(not(feature = "mongodb"))]
        {
            let _ = settings;
            Err(compiled_out("mongodb"))
        }
    }

    pub async fn commands(settings: &Settings) -> anyhow::Result<Arc<dyn CommandBus>> {
        #[cfg(feature = "rabbitmq")]
        {
            let amqp = &settings.amqp;
            let bus = crate::adapters::rabbitmq::RabbitCommandBus::connect(amqp, &amqp.queue_prefix)
                .await
                .with_context(|| what("commands"))?;
            Ok(Arc::new(bus))
        }
        #[cfg(not(feature = "rabbitmq"))]
        {
            let _ = settings;
            Err(compiled_out("rabbitmq"))
        }
    }

    /// Events through the PostgreSQL outbox, relayed to the RabbitMQ fanout exchange (which
    /// carries results back to the actors) and to Kafka (the event log's consumers), one relay
    /// loop per broker.
    pub async fn events(
        settings: &Settings,
        store: &Store,
        background: &mut Vec<AbortOnDropHandle<()>>,
    ) -> anyhow::Result<Arc<dyn EventBus>> {
        #[cfg(all(feature = "postgres", feature = "rabbitmq", feature = "kafka"))]
        {
            use std::time::Duration;

            use crate::adapters::kafka::KafkaEventBus;
            use crate::adapters::postgres::outbox::{self, OutboxEventBus, Sink};
            use crate::adapters::rabbitmq::RabbitEventBus;

            let amqp = &settings.amqp;
            let fanout: Arc<dyn EventBus> =
                Arc::new(RabbitEventBus::connect(amqp, &amqp.events_exchange).await.with_context(|| what("events"))?);
            let kafka: Arc<dyn EventBus> =
                Arc::new(KafkaEventBus::connect(&settings.kafka).await.with_context(|| what("events"))?);
            let sinks = [Sink::new(OUTBOX_SINKS[0], fanout.clone()), Sink::new(OUTBOX_SINKS[1], kafka.clone())];
            let hours = settings.database.outbox_retention_hours;
            let retention = (hours > 0).then(|| Duration::from_secs(hours.saturating_mul(3600)));
            let pool = store.pg.pool().clone();
            let relay = outbox::run_relay(
                pool.clone(),
                sinks.to_vec(),
                Duration::from_secs(1),
                settings.stages.backoff(),
                retention,
            );
            background.push(AbortOnDropHandle::new(tokio::spawn(relay)));
            Ok(Arc::new(OutboxEventBus::new(pool, &sinks, fanout, kafka, settings.database.write_batch)))
        }
        #[cfg(not(all(feature = "postgres", feature = "rabbitmq", feature = "kafka")))]
        {
            let _ = (settings, store, background);
            Err(compiled_out("postgres, rabbitmq and kafka"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(store: Backends, artifacts: Backends, commands: Backends, events: Backends) -> PortBackends {
        PortBackends { store, artifacts, commands, events }
    }

    #[test]
    fn the_embedded_backends_need_no_feature() {
        let e = Backends::Embedded;
        require_features(ports(e, e, e, e)).unwrap();
    }

    /// In the default build every production backend is there; in the embedded build (`cargo test
    /// --no-default-features --features embedded`) asking for one names the missing features.
    #[test]
    fn production_backends_need_their_features() {
        let (e, p) = (Backends::Embedded, Backends::Production);
        let all = require_features(ports(p, p, p, p));
        let store_only = require_features(ports(p, e, e, e));
        #[cfg(all(feature = "postgres", feature = "rabbitmq", feature = "kafka", feature = "mongodb"))]
        {
            all.unwrap();
            store_only.unwrap();
        }
        #[cfg(not(any(feature = "postgres", feature = "rabbitmq", feature = "kafka", feature = "mongodb")))]
        {
            let err = store_only.unwrap_err().to_string();
            assert!(err.contains("ports.store") && err.contains("`postgres`"), "{err}");
            assert!(!err.contains("mongodb"), "only what the store needs: {err}");
            let err = all.unwrap_err().to_string();
            for feature in ["`postgres`", "`rabbitmq`", "`kafka`", "`mongodb`"] {
                assert!(err.contains(feature), "{feature} missing from: {err}");
            }
            assert!(err.contains("--features postgres,mongodb,rabbitmq,kafka"), "{err}");
        }
    }
}
