//! The application: [`settings`] loaded and layered, the ports [`wiring`] they choose, and the
//! running [`pipeline`] (the actor tree over those ports, with the observability consumers), plus
//! the process-level [`shutdown_signal`]. The HTTP server ([`crate::api`]) and the command line
//! ([`crate::cli`]) sit on top.

pub mod ask;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod digest;
pub mod export;
pub mod pipeline;
pub mod search;
pub mod settings;
pub mod subscriptions;
pub mod webhooks;
pub mod wiring;

pub use pipeline::{ChannelError, Pipeline, resolve_channel};
pub use settings::Settings;
pub use wiring::Wiring;

/// This host's name (`HOSTNAME`, else `/etc/hostname`, else `localhost`).
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
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
