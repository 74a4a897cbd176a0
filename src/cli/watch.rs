//! `tubesum watch CHANNEL`: subscribes to a channel in the configured store, then runs the pipeline
//! in the foreground, printing what its polls submit and what comes out, until Ctrl-C.

use futures::StreamExt;

use crate::app::subscriptions::{SubscribeError, subscribe};
use crate::app::{Pipeline, Settings, Wiring, shutdown_signal};
use crate::domain::{EventPayload, Stage};

/// What `tubesum watch` was asked.
pub struct Watch {
    /// The channel: id, URL or handle.
    pub channel: String,
    pub interval_secs: Option<u64>,
    pub backfill: bool,
    /// Record the subscription and stop (a running `tubesum serve` on the same store polls it).
    pub add_only: bool,
}

pub async fn run(settings: Settings, watch: Watch) -> anyhow::Result<()> {
    let channel = crate::app::resolve_channel(&settings.youtube, &watch.channel).await?;
    let wiring = Wiring::from_settings(settings).await?;
    let store = wiring.subscriptions.clone();
    let settings = &wiring.settings.subscriptions;
    let subscription = match subscribe(store.as_ref(), settings, &channel, watch.interval_secs, watch.backfill).await {
        Ok(created) => {
            println!("subscribed to {channel}: {}", created.subscription_id);
            created
        }
        Err(SubscribeError::Exists(existing)) => {
            println!("already subscribed to {channel}: {}", existing.subscription_id);
            *existing
        }
        Err(e) => return Err(e.into()),
    };
    let every = subscription.interval_secs;
    if watch.add_only {
        println!("every {every} s, by whichever `tubesum serve` on this store holds it");
        return Ok(());
    }
    if !wiring.settings.subscriptions.enabled {
        anyhow::bail!("subscriptions.enabled is false: this process would poll nothing (use --add-only)");
    }
    let pipeline = Pipeline::start(wiring, Stage::ALL.to_vec()).await?;
    let mut events = pipeline.deps.events.subscribe().await?;
    println!(
        "watching every {every} s (new uploads only{}); Ctrl-C to stop",
        if subscription.backfill { ", after a backfill" } else { "" }
    );
    let report = async {
        while let Some(event) = events.next().await {
            let Ok(event) = event else { continue };
            let video = event.video_id.as_ref().map(ToString::to_string).unwrap_or_default();
            match &event.payload {
                EventPayload::SummarizationCompleted { .. } => println!("summarized {video} (job {})", event.job_id),
                EventPayload::StageFailed { stage, retryable: false, reason, .. } => {
                    println!("failed {video} at {stage} (job {}): {reason}", event.job_id)
                }
                EventPayload::JobFinished { status } => println!("job {}: {status}", event.job_id),
                _ => {}
            }
        }
    };
    tokio::select! {
        () = report => {}
        () = shutdown_signal() => {}
    }
    pipeline.shutdown().await;
    Ok(())
}
