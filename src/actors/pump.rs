//! The stream pump the long-lived consumers share (EventRouter, EventConsumer, StagePool): a task
//! that hands each item of a port's stream to a [`Drain`] and, when the stream ends or fails, casts
//! a message built from the reason to its actor, which then fails on purpose so that its
//! supervisor re-creates it (and `pre_start` subscribes again). The task belongs to the actor's
//! state: dropping the [`Pump`] (the actor stopped or failed) aborts it, and with it whatever the
//! drain owns.

use std::pin::Pin;

use async_trait::async_trait;
use futures::{Stream, StreamExt};
use ractor::{ActorRef, Message};
use tokio_util::task::AbortOnDropHandle;

use crate::ports::PortResult;

/// Where a pump puts each item. Any `FnMut(T)` is one; a drain that must wait (for a free worker,
/// say) implements it itself.
#[async_trait]
pub trait Drain<T>: Send + 'static {
    async fn take(&mut self, item: T);
}

#[async_trait]
impl<T: Send + 'static, F: FnMut(T) + Send + 'static> Drain<T> for F {
    async fn take(&mut self, item: T) {
        self(item)
    }
}

/// A running pump; aborted when dropped.
pub struct Pump {
    _task: AbortOnDropHandle<()>,
}

/// Pumps `stream` into `drain` on a task of its own until the stream ends or yields an error,
/// then casts `ended(reason)` to `actor`.
pub fn spawn<T, M>(
    actor: ActorRef<M>,
    mut stream: Pin<Box<dyn Stream<Item = PortResult<T>> + Send>>,
    mut drain: impl Drain<T>,
    ended: fn(String) -> M,
) -> Pump
where
    T: Send + 'static,
    M: Message,
{
    let task = tokio::spawn(async move {
        let reason = loop {
            match stream.next().await {
                Some(Ok(item)) => drain.take(item).await,
                Some(Err(e)) => break format!("stream error: {e}"),
                None => break "stream closed".to_owned(),
            }
        };
        let _ = actor.cast(ended(reason));
    });
    Pump { _task: AbortOnDropHandle::new(task) }
}
