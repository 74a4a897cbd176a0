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
/// say) or can fail implements it itself. The pump asks its stream for the next item only once
/// `take` has returned: a stream that acknowledges an item when asked for the next one (the Kafka
/// consumer does) acknowledges only what was taken. A drain's error ends the pump, the item
/// unacknowledged.
#[async_trait]
pub trait Drain<T>: Send + 'static {
    async fn take(&mut self, item: T) -> Result<(), String>;
}

#[async_trait]
impl<T: Send + 'static, F: FnMut(T) + Send + 'static> Drain<T> for F {
    async fn take(&mut self, item: T) -> Result<(), String> {
        self(item);
        Ok(())
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
                Some(Ok(item)) => {
                    if let Err(e) = drain.take(item).await {
                        break format!("could not take an item: {e}");
                    }
                }
                Some(Err(e)) => break format!("stream error: {e}"),
                None => break "stream closed".to_owned(),
            }
        };
        let _ = actor.cast(ended(reason));
    });
    Pump { _task: AbortOnDropHandle::new(task) }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::actors::testing::{DropFlag, Probe, eventually, next};
    use crate::ports::PortError;

    #[tokio::test]
    async fn a_pump_drains_its_stream_then_tells_its_actor_why_it_ended() {
        let (actor, mut told) = Probe::<String>::spawn(None).await;
        let taken = Arc::new(Mutex::new(Vec::new()));
        let sink = taken.clone();
        let stream = futures::stream::iter([Ok(1), Ok(2), Err(PortError::Unavailable("broker gone".into())), Ok(3)]);
        let _pump = spawn(actor.clone(), Box::pin(stream), move |n: i32| sink.lock().unwrap().push(n), |r| r);
        assert_eq!(next(&mut told).await, "stream error: backend unavailable: broker gone");
        assert_eq!(*taken.lock().unwrap(), [1, 2], "nothing after the error");

        let _pump = spawn(actor.clone(), Box::pin(futures::stream::empty::<PortResult<i32>>()), |_| {}, |r| r);
        assert_eq!(next(&mut told).await, "stream closed");
        actor.stop(None);
    }

    #[tokio::test]
    async fn dropping_a_pump_drops_its_stream_and_its_drain() {
        let (actor, _told) = Probe::<String>::spawn(None).await;
        let (stream_dropped, drain_dropped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let guard = DropFlag(stream_dropped.clone());
        let stream = futures::stream::pending::<PortResult<()>>().map(move |item| {
            let _ = &guard;
            item
        });
        let held = DropFlag(drain_dropped.clone());
        let pump = spawn(
            actor.clone(),
            Box::pin(stream),
            move |()| {
                let _ = &held;
            },
            |r| r,
        );
        drop(pump);
        eventually("the stream is dropped", || stream_dropped.load(std::sync::atomic::Ordering::SeqCst)).await;
        eventually("the drain is dropped", || drain_dropped.load(std::sync::atomic::Ordering::SeqCst)).await;
        actor.stop(None);
    }
}
