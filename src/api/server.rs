//! Application: settings → adapters → actor tree → HTTP API, with graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::actors::Deps;
use crate::api::{self, AppState};
use crate::config::Settings;
use crate::domain::Stage;
use crate::pipeline::Pipeline;
use crate::summarize;

pub struct Application {
    listener: TcpListener,
    pub pipeline: Arc<Pipeline>,
    state: AppState,
    max_body_bytes: usize,
}

impl Application {
    /// Builds the configured backends, runs the given stage pools, and binds
    /// `settings.server.listen` (port 0 picks a free port).
    pub async fn build(settings: Settings, stages: Vec<Stage>) -> anyhow::Result<Application> {
        let deps = Deps::from_settings(settings).await?;
        Application::with_deps_and_stages(deps, stages).await
    }

    /// Builds with the given adapters and stages (tests inject fakes here), running every pool.
    pub async fn with_deps(deps: Deps) -> anyhow::Result<Application> {
        Application::with_deps_and_stages(deps, Stage::ALL.to_vec()).await
    }

    pub async fn with_deps_and_stages(deps: Deps, stages: Vec<Stage>) -> anyhow::Result<Application> {
        let settings = deps.settings.clone();
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        let pipeline = Arc::new(Pipeline::start(deps, stages).await?);
        let state = AppState {
            pipeline: pipeline.clone(),
            summarizer: summarize::from_settings(&settings),
            api_token: settings.server.api_token.clone(),
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
        let router = api::router(self.state, self.max_body_bytes);
        axum::serve(self.listener, router).with_graceful_shutdown(shutdown).await.context("http server")?;
        match Arc::try_unwrap(self.pipeline) {
            Ok(pipeline) => pipeline.shutdown().await,
            Err(_) => tracing::warn!("pipeline still referenced at shutdown"),
        }
        Ok(())
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = term => {} }
    tracing::info!("shutting down");
}
