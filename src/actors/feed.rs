//! Feed: the domain events this process has seen (the event router hands it each one), numbered
//! in the order they arrived and kept for a while, so that live views (the API's
//! `text/event-stream` routes) follow them, and a client that reconnects resumes right after the
//! last event it saw (`Last-Event-ID`) with no gap and no repeat.
//!
//! An event's id is `{incarnation}-{seq}`: `seq` counts this process's events from 1, and the
//! incarnation (random per process) tells them from an earlier process's, whose numbering a
//! restart forgets. An id that is not this process's, or whose successors are no longer kept,
//! cannot be resumed from: the caller says so to its client, who reloads the state instead.
//! Redeliveries (the bus delivers at least once) of an event still kept are dropped.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::DomainEvent;

pub struct Feed {
    incarnation: String,
    /// The most events kept.
    capacity: usize,
    kept: Mutex<Kept>,
    /// The newest event's `seq` (0 before the first), for followers to wait on.
    latest: watch::Sender<u64>,
    /// Cancelled when the process stops serving: every follower ends.
    closing: CancellationToken,
}

#[derive(Default)]
struct Kept {
    events: VecDeque<(u64, Arc<DomainEvent>)>,
    ids: HashSet<Uuid>,
    latest: u64,
}

/// Events kept when no size is configured (`server.event_history`).
pub const DEFAULT_HISTORY: usize = 20_000;

impl Default for Feed {
    fn default() -> Self {
        Self::new(DEFAULT_HISTORY)
    }
}

impl Feed {
    /// A feed that keeps the latest `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        let incarnation = Uuid::new_v4().simple().to_string()[..8].to_owned();
        let (latest, _) = watch::channel(0);
        Self {
            incarnation,
            capacity: capacity.max(1),
            kept: Mutex::default(),
            latest,
            closing: CancellationToken::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers and keeps `event`, unless it is a redelivery of one still kept.
    pub fn push(&self, event: &DomainEvent) {
        let seq = {
            let mut kept = self.lock();
            if !kept.ids.insert(event.event_id) {
                return;
            }
            kept.latest += 1;
            let seq = kept.latest;
            kept.events.push_back((seq, Arc::new(event.clone())));
            if kept.events.len() > self.capacity
                && let Some((_, old)) = kept.events.pop_front()
            {
                kept.ids.remove(&old.event_id);
            }
            seq
        };
        self.latest.send_replace(seq);
    }

    /// The newest event's `seq` (0 before the first).
    pub fn latest(&self) -> u64 {
        *self.latest.borrow()
    }

    /// Changes whenever an event is kept.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.latest.subscribe()
    }

    /// Ends every follower (the process stops serving).
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// The id of this process's `seq`-th event.
    pub fn id(&self, seq: u64) -> String {
        format!("{}-{seq}", self.incarnation)
    }

    /// Where a client that last saw the event `last_event_id` resumes: after that event's `seq`,
    /// or `None` when the id is not this process's or events after it are no longer kept.
    pub fn resume_after(&self, last_event_id: &str) -> Option<u64> {
        let (incarnation, seq) = last_event_id.trim().split_once('-')?;
        let seq: u64 = seq.parse().ok()?;
        if incarnation != self.incarnation {
            return None;
        }
        let kept = self.lock();
        let oldest = kept.events.front().map_or(kept.latest + 1, |(seq, _)| *seq);
        (seq <= kept.latest && seq + 1 >= oldest).then_some(seq)
    }

    /// The kept events after `after` that `wanted` takes, oldest first, at most `most`; with the
    /// `seq` looked at last (where the next call starts, so events not wanted are passed over once).
    pub fn after(
        &self,
        after: u64,
        wanted: impl Fn(&DomainEvent) -> bool,
        most: usize,
    ) -> (Vec<(u64, Arc<DomainEvent>)>, u64) {
        let kept = self.lock();
        // Seqs are consecutive: the first one after `after` is found by arithmetic.
        let skip = kept.events.front().map_or(0, |(oldest, _)| (after + 1).saturating_sub(*oldest) as usize);
        let mut found = Vec::new();
        for (seq, event) in kept.events.iter().skip(skip) {
            if found.len() == most {
                return (found, seq - 1);
            }
            if wanted(event) {
                found.push((*seq, event.clone()));
            }
        }
        (found, kept.latest.max(after))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventPayload, JobId};

    fn event(job: JobId) -> DomainEvent {
        DomainEvent::new(job, None, EventPayload::DiscoveryCompleted { videos: 1 })
    }

    #[test]
    fn events_are_numbered_once_and_resumed_after_without_gap_or_repeat() {
        let feed = Feed::new(3);
        let job = JobId::new();
        let first = event(job);
        feed.push(&first);
        feed.push(&first); // a redelivery
        let events: Vec<_> = (0..3).map(|_| event(job)).collect();
        events.iter().for_each(|e| feed.push(e));
        assert_eq!(feed.latest(), 4, "the redelivery is not numbered");

        // Kept: 2, 3, 4. Resuming after 1 misses nothing; after 0 event 1 is gone.
        assert_eq!(feed.resume_after(&feed.id(1)), Some(1));
        assert_eq!(feed.resume_after(&feed.id(0)), None, "event 1 is no longer kept");
        assert_eq!(feed.resume_after(&feed.id(5)), None, "not yet numbered");
        assert_eq!(feed.resume_after("0badcafe-2"), None, "another process's numbering");
        assert_eq!(feed.resume_after("nonsense"), None);

        let (after, last) = feed.after(2, |_| true, 10);
        assert_eq!((after.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(), last), (vec![3, 4], 4));
        let ids: Vec<Uuid> = feed.after(1, |_| true, 10).0.iter().map(|(_, e)| e.event_id).collect();
        assert_eq!(ids, events.iter().map(|e| e.event_id).collect::<Vec<_>>());
        let (none, last) = feed.after(4, |_| true, 10);
        assert_eq!((none.len(), last), (0, 4));
        let (one, last) = feed.after(1, |_| true, 1);
        assert_eq!((one.len(), last), (1, 2), "at most `most`, and the next call starts after it");
        let other = JobId::new();
        let (none, last) = feed.after(0, |e| e.job_id == other, 10);
        assert_eq!((none.len(), last), (0, 4), "passed over, not wanted");
    }
}
