//! The embedded command and event buses: bounded in-process channels.
//!
//! Nothing here survives the process; durability comes from the state store, from which jobs are
//! resumed at start (see the JobSupervisor).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{Mutex, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::domain::{DomainEvent, Stage, StageCommand};
use crate::ports::{Acker, CommandBus, Delivery, DeliveryStream, EventBus, EventStream, PortError, PortResult};

/// Queue capacity per stage: a full queue makes senders wait (backpressure, not memory growth).
const QUEUE_CAPACITY: usize = 10_000;
const SUBSCRIBER_CAPACITY: usize = 4_096;

struct Queue {
    tx: mpsc::Sender<StageCommand>,
    rx: Arc<Mutex<mpsc::Receiver<StageCommand>>>,
}

/// In-process stage queues; several consumers of one stage compete for its commands.
pub struct InProcessCommandBus {
    queues: HashMap<Stage, Queue>,
}

impl Default for InProcessCommandBus {
    fn default() -> Self {
        let queues = Stage::ALL
            .iter()
            .map(|stage| {
                let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
                (*stage, Queue { tx, rx: Arc::new(Mutex::new(rx)) })
            })
            .collect();
        Self { queues }
    }
}

impl InProcessCommandBus {
    fn queue(&self, stage: Stage) -> &Queue {
        // Every stage has a queue: built from Stage::ALL.
        &self.queues[&stage]
    }
}

struct InProcessAcker {
    command: StageCommand,
    requeue: mpsc::Sender<StageCommand>,
}

#[async_trait]
impl Acker for InProcessAcker {
    async fn ack(&self) -> PortResult<()> {
        Ok(())
    }

    async fn nack(&self, requeue: bool, reason: &str) -> PortResult<()> {
        if requeue {
            self.requeue
                .send(self.command.clone())
                .await
                .map_err(|_| PortError::Unavailable("command queue closed".into()))
        } else {
            tracing::warn!(stage = %self.command.stage, command_id = %self.command.command_id, reason, "command dropped");
            Ok(())
        }
    }
}

#[async_trait]
impl CommandBus for InProcessCommandBus {
    async fn send(&self, command: StageCommand) -> PortResult<()> {
        self.queue(command.stage)
            .tx
            .send(command)
            .await
            .map_err(|_| PortError::Unavailable("command queue closed".into()))
    }

    async fn consume(&self, stage: Stage, _prefetch: usize) -> PortResult<DeliveryStream> {
        let queue = self.queue(stage);
        let rx = queue.rx.clone();
        let requeue = queue.tx.clone();
        let stream = futures::stream::unfold((rx, requeue), |(rx, requeue)| async move {
            let command = rx.lock().await.recv().await?;
            let acker = Box::new(InProcessAcker { command: command.clone(), requeue: requeue.clone() });
            Some((Ok(Delivery { command, acker: acker as Box<dyn Acker> }), (rx, requeue)))
        });
        Ok(stream.boxed())
    }
}

/// In-process fan-out of domain events to every subscriber.
#[derive(Default)]
pub struct InProcessEventBus {
    subscribers: StdMutex<Vec<mpsc::Sender<DomainEvent>>>,
}

#[async_trait]
impl EventBus for InProcessEventBus {
    async fn publish(&self, event: DomainEvent) -> PortResult<()> {
        let subscribers: Vec<_> = self.subscribers.lock().expect("subscriber list poisoned").clone();
        let mut closed = false;
        for tx in &subscribers {
            closed |= tx.send(event.clone()).await.is_err();
        }
        if closed {
            self.subscribers.lock().expect("subscriber list poisoned").retain(|tx| !tx.is_closed());
        }
        Ok(())
    }

    async fn subscribe(&self) -> PortResult<EventStream> {
        let (tx, rx) = mpsc::channel(SUBSCRIBER_CAPACITY);
        self.subscribers.lock().expect("subscriber list poisoned").push(tx);
        Ok(ReceiverStream::new(rx).map(Ok).boxed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::conformance;

    #[tokio::test]
    async fn in_process_command_bus_conforms() {
        conformance::command_bus(&InProcessCommandBus::default()).await;
    }

    #[tokio::test]
    async fn in_process_event_bus_conforms() {
        conformance::event_bus(&InProcessEventBus::default()).await;
    }
}
