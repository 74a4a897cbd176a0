//! Capped exponential backoff with jitter, as a pure function (the random draw is a parameter) so
//! the policy is unit-tested. Stage retries, supervisor restarts and broker reconnects all use it.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The ceiling before jitter for the `attempt`-th retry (1-based): initial · 2^(attempt-1), capped.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.initial.saturating_mul(1u32 << exp).min(self.max)
    }

    /// The delay for the `attempt`-th retry, given `unit` uniformly drawn from [0, 1): between half
    /// the ceiling and the ceiling ("equal jitter"), so retries never bunch at zero.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let unit = unit.clamp(0.0, 1.0);
        ceiling / 2 + ceiling.mul_f64(unit / 2.0)
    }

    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Backoff {
        Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(2) }
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = policy();
        assert_eq!(b.ceiling(1), Duration::from_millis(100));
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(5), Duration::from_millis(1600));
        assert_eq!(b.ceiling(6), Duration::from_secs(2));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(2));
        assert_eq!(b.ceiling(0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_between_half_and_full_ceiling() {
        let b = policy();
        for attempt in 1..10 {
            let c = b.ceiling(attempt);
            assert_eq!(b.delay_with(attempt, 0.0), c / 2);
            assert_eq!(b.delay_with(attempt, 1.0), c);
            let d = b.delay(attempt);
            assert!(d >= c / 2 && d <= c, "{d:?} outside [{:?}, {c:?}]", c / 2);
        }
    }
}
