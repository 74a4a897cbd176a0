//! Restart bookkeeping shared by the supervisors (root, job supervisor, job).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use crate::domain::Backoff;

/// A supervisor's restart counts per child, and the backoff before each child's next restart.
#[derive(Debug)]
pub struct Restarts<K> {
    policy: Backoff,
    counts: HashMap<K, u32>,
}

impl<K: Hash + Eq> Restarts<K> {
    pub fn new(policy: Backoff) -> Self {
        Self { policy, counts: HashMap::new() }
    }

    /// Counts one more restart of `child`; returns the restart number and the delay before it.
    pub fn next(&mut self, child: K) -> (u32, Duration) {
        let count = self.counts.entry(child).or_insert(0);
        *count += 1;
        (*count, self.policy.delay(*count))
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
        let mut r = Restarts::new(Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) });
        assert_eq!(r.next("a").0, 1);
        let (n, d) = r.next("a");
        assert_eq!(n, 2);
        assert!(d >= Duration::from_millis(100) && d <= Duration::from_millis(200));
        assert_eq!(r.next("b").0, 1);
        r.forget(&"a");
        assert_eq!(r.next("a").0, 1);
    }
}
