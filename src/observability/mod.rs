//! What tubesum tells the people who run it: the decoupled event consumers — [`analytics`]
//! (`/analytics`) with its Prometheus [`metrics`] (`/metrics`), and the structured [`event_log`] —
//! and the process's [`telemetry`] (tracing).
//!
//! The consumers are [`EventSink`](crate::actors::EventSink)s fed by the actor runtime's
//! EventConsumers, each through its own consumer group (Kafka in production, the in-process bus
//! embedded). Delivery is at-least-once, so each deduplicates by `event_id`.

pub mod analytics;
pub mod event_log;
pub mod metrics;
pub mod telemetry;

use std::collections::{HashSet, VecDeque};

pub use analytics::{Analytics, AnalyticsReport};
pub use event_log::EventLog;

/// How many recent event ids the consumers remember for deduplication.
const DEDUPE_WINDOW: usize = 200_000;

/// Remembers the last `capacity` event ids, to drop redeliveries.
pub struct Dedupe {
    seen: HashSet<uuid::Uuid>,
    order: VecDeque<uuid::Uuid>,
    capacity: usize,
}

impl Dedupe {
    pub fn new(capacity: usize) -> Self {
        Self { seen: HashSet::new(), order: VecDeque::new(), capacity: capacity.max(1) }
    }

    /// Whether an id was seen already (within the window), without recording it.
    pub fn seen(&self, id: uuid::Uuid) -> bool {
        self.seen.contains(&id)
    }

    /// True the first time an id is seen (within the window).
    pub fn first(&mut self, id: uuid::Uuid) -> bool {
        if !self.seen.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.capacity
            && let Some(old) = self.order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::domain::{DomainEvent, EventPayload, JobId, VideoId};

    /// An event about one video of `job`, with a stage duration.
    pub(crate) fn event(job: JobId, payload: EventPayload, ms: Option<u64>) -> DomainEvent {
        let mut e = DomainEvent::new(job, Some(VideoId::parse("aaaaaaaaaaa").unwrap()), payload);
        e.duration_ms = ms;
        e
    }

    #[test]
    fn dedupe_forgets_beyond_its_window() {
        let mut d = Dedupe::new(2);
        let ids: Vec<_> = (0..3).map(|_| uuid::Uuid::new_v4()).collect();
        assert!(d.first(ids[0]) && d.first(ids[1]) && !d.first(ids[0]));
        assert!(d.first(ids[2]));
        assert!(d.first(ids[0]), "the oldest id left the window");
    }
}
