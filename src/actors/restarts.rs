//! Restart bookkeeping shared by the supervisors (root, job supervisor, job).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::Backoff;

/// A supervisor's restart counts per child, and the backoff before each child's next restart.
#[derive(Debug)]
pub struct Restarts<K> {
    policy: Backoff,
    counts: HashMap<K, u32>,
    /// This node's running total for the supervisor's kind of child ([`RestartTotals`]).
    total: Arc<AtomicU64>,
}

/// Restarts since this node started, by what was restarted (the node's agent reports them).
#[derive(Debug, Default)]
pub struct RestartTotals {
    /// The root's children: the job supervisor, the stage pools, the event router.
    pub supervisors: Arc<AtomicU64>,
    pub jobs: Arc<AtomicU64>,
    pub videos: Arc<AtomicU64>,
}

impl RestartTotals {
    pub fn read(&self) -> [(&'static str, u64); 3] {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        [("supervisors", get(&self.supervisors)), ("jobs", get(&self.jobs)), ("videos", get(&self.videos))]
    }
}

impl<K: Hash + Eq> Restarts<K> {
    /// Restart bookkeeping that also counts into `total`.
    pub fn new(policy: Backoff, total: &Arc<AtomicU64>) -> Self {
        Self { policy, counts: HashMap::new(), total: total.clone() }
    }

    /// Counts one more restart of `child`; returns the restart number and the delay before it.
    pub fn next(&mut self, child: K) -> (u32, Duration) {
        self.total.fetch_add(1, Ordering::Relaxed);
        let count = self.counts.entry(child).or_insert(0);
        *count += 1;
        (*count, self.policy.delay(*count))
    }

    /// Restarts of `child` so far.
    pub fn count(&self, child: &K) -> u32 {
        self.counts.get(child).copied().unwrap_or(0)
    }

    pub fn forget(&mut self, child: &K) {
        self.counts.remove(child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_are_counted_per_child() {
        let total: Arc<AtomicU64> = Arc::default();
        let mut r = Restarts::new(Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) }, &total);
        assert_eq!(r.next("a").0, 1);
        let (n, d) = r.next("a");
        assert_eq!(n, 2);
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        assert_eq!(r.next("b").0, 1);
        assert_eq!((r.count(&"a"), r.count(&"c")), (2, 0));
        r.forget(&"a");
        assert_eq!(r.next("a").0, 1);
        assert_eq!(total.load(Ordering::Relaxed), 4, "the node's total keeps every restart");
    }
}
