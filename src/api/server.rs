//! The HTTP application: binds the listener, starts the pipeline over the wired ports, serves the
//! [routes](super::router) until told to stop, then stops the actor tree (jobs resume on the next
//! start).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use super::AppState;
use crate::app::{Pipeline, Settings, Wiring};
use crate::domain::Stage;
use crate::stages::summarization::summarizer;

pub struct Application {
    listener: TcpListener,
    pub pipeline: Arc<Pipeline>,
    state: AppState,
    max_body_bytes: usize,
}

impl Application {
    /// Connects the configured backends, runs the given stage pools, and binds
    /// `settings.server.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings, stages: Vec<Stage>) -> anyhow::Result<Application> {
        Application::start(Wiring::from_settings(settings).await?, stages).await
    }

    /// Starts on ports already wired (tests inject fakes here), running the given stage pools.
    pub async fn start(wiring: Wiring, stages: Vec<Stage>) -> anyhow::Result<Application> {
        let settings = wiring.settings.clone();
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let mut pipeline = Pipeline::start(wiring, stages).await?;
        let address = listener.local_addr().context("the bound listener's address")?;
        pipeline.announce(format!("http://{address}")).await.context("registering this node")?;
        let pipeline = Arc::new(pipeline);
        let state = AppState {
            pipeline: pipeline.clone(),
            summarizer: summarizer::from_settings(&settings.llm, &settings.summary),
            asker: crate::app::ask::Asker::from_settings(&settings.llm),
            summarize_slots: Arc::new(tokio::sync::Semaphore::new(settings.server.summarize_text_concurrency)),
            summarize_max_chars: settings.server.summarize_text_max_chars,
            api_token: settings.server.api_token.clone(),
            pages: Arc::default(),
            events_keep_alive: std::time::Duration::from_millis(settings.server.events_keep_alive_ms),
        };
        Ok(Application { listener, pipeline, state, max_body_bytes: settings.server.max_body_bytes })
    }

    pub fn address(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Serves until `shutdown` resolves, then stops the actor tree (jobs resume on next start).
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let router = super::router(self.state, self.max_body_bytes);
        // Event streams never end by themselves: they are closed first, so the server can stop.
        let closing = self.pipeline.deps.feed.closing();
        let shutdown = async move {
            shutdown.await;
            closing.cancel();
        };
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await.context("http server")?;
        // Stopped even while a connection still winding down holds the pipeline.
        self.pipeline.shutdown().await;
        Ok(())
    }
}
