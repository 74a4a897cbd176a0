//! Where a video's time goes between two stages: each step of a stage's round trip, timed where it
//! happens (calls and total time per step, for this process). `bench pipeline` prints them and
//! `/metrics` exposes them (`tubesum_step_calls_total`, `tubesum_step_microseconds_total`).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A step of one stage's round trip, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A VideoActor records a transition (the video's row).
    Persist,
    /// A VideoActor sends a stage command to its queue.
    Dispatch,
    /// A worker records that it took the command (the attempt's row).
    Take,
    /// The stage's own work.
    Work,
    /// The worker records how the attempt ended.
    Finish,
    /// The worker publishes the result (the outbox row, in production).
    Publish,
    /// From the result's making (so `finish` and `publish` included) to its VideoActor taking it:
    /// relay, broker, router, mailbox. Every result that reaches a VideoActor counts.
    Deliver,
}

impl Step {
    pub const ALL: [Step; 7] =
        [Step::Persist, Step::Dispatch, Step::Take, Step::Work, Step::Finish, Step::Publish, Step::Deliver];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Persist => "persist",
            Step::Dispatch => "dispatch",
            Step::Take => "take",
            Step::Work => "work",
            Step::Finish => "finish",
            Step::Publish => "publish",
            Step::Deliver => "deliver",
        }
    }
}

/// Calls and total time per step.
#[derive(Debug, Default)]
pub struct StepTimes {
    calls: [AtomicU64; 7],
    nanos: [AtomicU64; 7],
}

impl StepTimes {
    pub fn record(&self, step: Step, took: Duration) {
        let i = step as usize;
        self.calls[i].fetch_add(1, Ordering::Relaxed);
        self.nanos[i].fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Runs `work`, counting its time as `step`.
    pub async fn time<T>(&self, step: Step, work: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let out = work.await;
        self.record(step, started.elapsed());
        out
    }

    /// Each step: calls and total time so far.
    pub fn read(&self) -> Vec<(Step, u64, Duration)> {
        Step::ALL
            .iter()
            .map(|&step| {
                let i = step as usize;
                let nanos = self.nanos[i].load(Ordering::Relaxed);
                (step, self.calls[i].load(Ordering::Relaxed), Duration::from_nanos(nanos))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_step_counts_its_calls_and_time() {
        let steps = StepTimes::default();
        assert_eq!(steps.time(Step::Take, async { 7 }).await, 7);
        steps.record(Step::Deliver, Duration::from_millis(3));
        steps.record(Step::Deliver, Duration::from_millis(5));
        let read = steps.read();
        assert_eq!(read.len(), Step::ALL.len());
        let deliver = read.iter().find(|(s, ..)| *s == Step::Deliver).unwrap();
        assert_eq!((deliver.1, deliver.2), (2, Duration::from_millis(8)));
        assert_eq!(read.iter().find(|(s, ..)| *s == Step::Take).unwrap().1, 1);
        assert_eq!(read.iter().find(|(s, ..)| *s == Step::Work).unwrap().1, 0);
    }
}
