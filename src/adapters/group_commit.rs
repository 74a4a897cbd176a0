//! Group commit: the small writes of many callers, gathered while the previous batch is being
//! written, go to the database together, as one statement or one transaction, so a thousand
//! VideoActors moving at once pay for a few commits, not a thousand. Nothing is weakened: each
//! caller's write is committed before its `submit` returns, exactly as when it wrote alone, and a
//! write that fails fails only its own caller (the store decides per write). An idle store writes
//! at once: the batch is whatever has queued up, never a timer's worth.
//!
//! Reads batch the same way: a caller's key goes in, its own value comes out (`O`), and a thousand
//! lookups queued behind one round trip go to the database as one query.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::domain::{AttemptOutcome, JobId, StageCommand, VideoId, VideoUpdate};
use crate::ports::{Fence, PortError, PortResult, video_write_refused};

/// Writes (or reads) a batch; one result per write, in order.
#[async_trait]
pub trait Apply<W, O = ()>: Send + Sync + 'static {
    async fn apply(&self, writes: &[W]) -> Vec<PortResult<O>>;
}

/// The queue of one kind of write, and the task that applies it batch by batch.
pub struct GroupCommit<W, O = ()> {
    queue: mpsc::Sender<Queued<W, O>>,
    /// With batches of one, each caller writes itself, at once (no queue, no writer task).
    alone: Option<Arc<dyn Apply<W, O>>>,
}

struct Queued<W, O> {
    write: W,
    done: oneshot::Sender<PortResult<O>>,
}

fn no_result<O>() -> PortResult<O> {
    Err(PortError::Other("a write got no result".into()))
}

impl<W: Send + 'static, O: Send + 'static> GroupCommit<W, O> {
    /// Starts the writer task (on the current Tokio runtime): batches of at most `most`. It ends
    /// when the last handle is dropped, after what is queued.
    pub fn start(apply: impl Apply<W, O>, most: usize) -> Self {
        let most = most.max(1);
        let (queue, mut incoming) = mpsc::channel::<Queued<W, O>>(most * 4);
        if most == 1 {
            return Self { queue, alone: Some(Arc::new(apply)) };
        }
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(most);
            while incoming.recv_many(&mut batch, most).await > 0 {
                let (writes, done): (Vec<W>, Vec<_>) = batch.drain(..).map(|q| (q.write, q.done)).unzip();
                let mut results = apply.apply(&writes).await.into_iter();
                for done in done {
                    let result = results.next().unwrap_or_else(no_result);
                    // A caller that went away (its actor stopped) no longer needs the answer.
                    let _ = done.send(result);
                }
            }
        });
        Self { queue, alone: None }
    }

    /// Queues `write` and waits until it is committed (or refused).
    pub async fn submit(&self, write: W) -> PortResult<O> {
        if let Some(apply) = &self.alone {
            return apply.apply(std::slice::from_ref(&write)).await.pop().unwrap_or_else(no_result);
        }
        let (done, result) = oneshot::channel();
        let stopped = || PortError::Unavailable("the store's writer has stopped".into());
        self.queue.send(Queued { write, done }).await.map_err(|_| stopped())?;
        result.await.map_err(|_| stopped())?
    }
}

/// One video-row write, as both stores queue it for their group commit.
pub struct VideoWrite {
    pub job_id: JobId,
    pub video_id: VideoId,
    pub update: VideoUpdate,
    pub fence: Option<Fence>,
}

impl VideoWrite {
    pub fn new(job_id: JobId, video_id: &VideoId, update: &VideoUpdate, fence: Option<&Fence>) -> Self {
        Self { job_id, video_id: video_id.clone(), update: update.clone(), fence: fence.cloned() }
    }

    /// The error for this write having changed nothing; `holder` is its job's status, owner
    /// and epoch (read only for a fenced write).
    pub fn refused(&self, holder: Option<(String, Option<String>, i64)>) -> PortError {
        video_write_refused(self.job_id, &self.video_id, self.fence.as_ref(), holder)
    }
}

/// A stage attempt's row written as a worker takes its command, or as the attempt ends.
pub enum AttemptWrite {
    /// With `checked`, only if the command is still wanted (see
    /// [`JobStore::take_command`](crate::ports::JobStore::take_command)); refused with
    /// [`PortError::Stale`] if not.
    Started {
        command: StageCommand,
        owner: String,
        checked: bool,
    },
    Finished {
        command_id: Uuid,
        outcome: AttemptOutcome,
        error: Option<String>,
    },
}

impl AttemptWrite {
    pub fn command_id(&self) -> Uuid {
        match self {
            AttemptWrite::Started { command, .. } => command.command_id,
            AttemptWrite::Finished { command_id, .. } => *command_id,
        }
    }

    /// Submits a start (see [`AttemptWrite::Started`]): whether it was recorded.
    pub async fn start(
        writer: &GroupCommit<AttemptWrite>,
        command: &StageCommand,
        owner: &str,
        checked: bool,
    ) -> PortResult<bool> {
        let write = AttemptWrite::Started { command: command.clone(), owner: owner.to_owned(), checked };
        match writer.submit(write).await {
            Ok(()) => Ok(true),
            Err(PortError::Stale(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// Applies video-row writes with `write`, which writes a round and returns the (job, video) rows
/// it changed (see [`by_rounds`]); a write whose row did not change is answered by `refused`
/// (which tells why: no such video, or the job moved on without the writer).
pub async fn apply_video_writes<'w, F, Fut, R, RFut>(
    writes: &'w [VideoWrite],
    write: F,
    refused: R,
) -> Vec<PortResult<()>>
where
    F: Fn(Vec<&'w VideoWrite>) -> Fut,
    Fut: std::future::Future<Output = PortResult<HashSet<(JobId, String)>>>,
    R: Fn(&'w VideoWrite) -> RFut,
    RFut: std::future::Future<Output = PortError>,
{
    let key = |w: &VideoWrite| (w.job_id, w.video_id.clone());
    let written =
        |w: &VideoWrite, done: &HashSet<(JobId, String)>| done.contains(&(w.job_id, w.video_id.as_str().to_owned()));
    let outcomes = by_rounds(writes, key, write, written).await;
    let mut results = Vec::with_capacity(writes.len());
    for (w, outcome) in writes.iter().zip(outcomes) {
        results.push(match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err(refused(w).await),
            Err(e) => Err(e),
        });
    }
    results
}

/// Applies attempt writes with `write`, which writes a round and returns the commands whose start
/// it recorded (see [`by_rounds`]); a checked start that was not recorded was not wanted.
pub async fn apply_attempts<'w, F, Fut>(writes: &'w [AttemptWrite], write: F) -> Vec<PortResult<()>>
where
    F: Fn(Vec<&'w AttemptWrite>) -> Fut,
    Fut: std::future::Future<Output = PortResult<HashSet<Uuid>>>,
{
    let taken = |w: &AttemptWrite, recorded: &HashSet<Uuid>| match w {
        AttemptWrite::Started { command, checked: true, .. } if !recorded.contains(&command.command_id) => {
            Err(PortError::Stale(format!("command {} is no longer wanted", command.command_id)))
        }
        _ => Ok(()),
    };
    by_rounds(writes, AttemptWrite::command_id, write, taken).await.into_iter().map(|r| r.and_then(|t| t)).collect()
}

/// Applies a batch round by round (see [`rounds`]): `write` writes one round (as one statement)
/// and returns what it did, from which `judge` tells each write's outcome. A round the database
/// refuses as a whole (a row it cannot take) is written again one write at a time, so only the
/// write it cannot take fails.
pub async fn by_rounds<'w, W, K, R, T, F, Fut>(
    writes: &'w [W],
    key: impl Fn(&W) -> K,
    write: F,
    judge: impl Fn(&W, &R) -> T,
) -> Vec<PortResult<T>>
where
    K: Eq + std::hash::Hash,
    F: Fn(Vec<&'w W>) -> Fut,
    Fut: std::future::Future<Output = PortResult<R>>,
{
    let mut results: Vec<Option<PortResult<T>>> = writes.iter().map(|_| None).collect();
    for round in rounds(writes, key) {
        let batch: Vec<&W> = round.iter().map(|&i| &writes[i]).collect();
        match write(batch.clone()).await {
            Ok(done) => {
                for (&i, w) in round.iter().zip(batch) {
                    results[i] = Some(Ok(judge(w, &done)));
                }
            }
            Err(e) if batch.len() == 1 => results[round[0]] = Some(Err(e)),
            Err(_) => {
                for (&i, w) in round.iter().zip(batch) {
                    results[i] = Some(write(vec![w]).await.map(|done| judge(w, &done)));
                }
            }
        }
    }
    results.into_iter().map(|r| r.unwrap_or_else(no_result)).collect()
}

/// `items` split into rounds in which no key repeats, each in the items' order: one statement
/// per round updates each row once (a row listed twice in one `UPDATE … FROM` is updated with
/// either, unpredictably).
pub fn rounds<T, K: Eq + std::hash::Hash>(items: &[T], key: impl Fn(&T) -> K) -> Vec<Vec<usize>> {
    let mut rounds: Vec<(HashSet<K>, Vec<usize>)> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let k = key(item);
        // After the last round holding this key, so a key's writes keep their order.
        let after = rounds.iter().rposition(|(keys, _)| keys.contains(&k)).map_or(0, |r| r + 1);
        match rounds.get_mut(after) {
            Some((keys, members)) => {
                keys.insert(k);
                members.push(i);
            }
            None => rounds.push((HashSet::from([k]), vec![i])),
        }
    }
    rounds.into_iter().map(|(_, members)| members).collect()
}

/// Consecutive runs of `items` whose sizes add up to at most `limit` (an item over it alone).
pub fn by_size<T: Copy>(items: &[T], size: impl Fn(&T) -> usize, limit: usize) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut total = 0;
    for item in items {
        let bytes = size(item);
        match runs.last_mut() {
            Some(run) if total + bytes <= limit => run.push(*item),
            _ => {
                runs.push(vec![*item]);
                total = 0;
            }
        }
        total += bytes;
    }
    runs
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn runs_hold_what_fits_and_an_item_over_the_limit_alone() {
        let sizes = [3, 4, 2, 9, 1, 1];
        assert_eq!(by_size(&sizes, |s| *s, 8), [vec![3, 4], vec![2], vec![9], vec![1, 1]]);
        assert_eq!(by_size(&[0usize; 0], |s| *s, 8), Vec::<Vec<usize>>::new());
    }

    /// Records each batch; refuses odd numbers.
    struct Recorder {
        batches: Arc<Mutex<Vec<Vec<u32>>>>,
        entered: Arc<std::sync::atomic::AtomicUsize>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    #[async_trait]
    impl Apply<u32> for Recorder {
        async fn apply(&self, writes: &[u32]) -> Vec<PortResult<()>> {
            self.entered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            // Held until the test lets batches through, so that writes queue up behind.
            let _permit = self.gate.acquire().await.unwrap();
            self.batches.lock().unwrap().push(writes.to_vec());
            writes.iter().map(|w| if w % 2 == 0 { Ok(()) } else { Err(PortError::Stale(format!("{w}"))) }).collect()
        }
    }

    #[tokio::test]
    async fn writes_queued_behind_a_batch_go_together_and_each_gets_its_own_result() {
        let batches = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let recorder = Recorder { batches: batches.clone(), entered: entered.clone(), gate: gate.clone() };
        let writer = Arc::new(GroupCommit::start(recorder, 3));
        let first = tokio::spawn({
            let writer = writer.clone();
            async move { writer.submit(0).await }
        });
        // The first write is taken alone and held; the next five queue up meanwhile.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while entered.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < deadline, "the first write was not taken");
            tokio::task::yield_now().await;
        }
        let rest: Vec<_> = (1..=5)
            .map(|w| {
                let writer = writer.clone();
                tokio::spawn(async move { writer.submit(w).await })
            })
            .collect();
        while writer.queue.max_capacity() - writer.queue.capacity() < 5 {
            assert!(std::time::Instant::now() < deadline, "the writes did not queue");
            tokio::task::yield_now().await;
        }
        gate.add_permits(10);
        assert!(first.await.unwrap().is_ok());
        let results: Vec<bool> =
            futures::future::join_all(rest).await.into_iter().map(|r| r.unwrap().is_ok()).collect();
        assert_eq!(results, [false, true, false, true, false], "each write's own result");
        assert_eq!(*batches.lock().unwrap(), [vec![0], vec![1, 2, 3], vec![4, 5]], "at most 3 at once, in order");
    }

    #[tokio::test]
    async fn batches_of_one_are_written_by_each_caller() {
        let gate = Arc::new(tokio::sync::Semaphore::new(10));
        let entered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let writer = GroupCommit::start(Recorder { batches: batches.clone(), entered, gate }, 1);
        assert!(writer.submit(2).await.is_ok());
        assert!(writer.submit(3).await.is_err());
        assert_eq!(*batches.lock().unwrap(), [vec![2], vec![3]]);
    }

    #[tokio::test]
    async fn a_round_refused_as_a_whole_is_written_again_one_by_one() {
        let statements = Mutex::new(Vec::new());
        let write = |batch: Vec<&u32>| {
            let batch: Vec<u32> = batch.into_iter().copied().collect();
            statements.lock().unwrap().push(batch.clone());
            async move {
                if batch.contains(&3) {
                    return Err(PortError::Other("the database cannot take 3".into()));
                }
                Ok(batch.iter().sum::<u32>())
            }
        };
        let results = by_rounds(&[1u32, 2, 3, 4, 2], |w| *w, write, |w, sum| (*w, *sum)).await;
        let got: Vec<Option<(u32, u32)>> = results.into_iter().map(Result::ok).collect();
        assert_eq!(got, [Some((1, 1)), Some((2, 2)), None, Some((4, 4)), Some((2, 2))], "only 3 fails");
        let statements = statements.into_inner().unwrap();
        assert_eq!(statements, [vec![1, 2, 3, 4], vec![1], vec![2], vec![3], vec![4], vec![2]]);
    }

    #[test]
    fn a_key_written_twice_goes_in_a_later_round() {
        let keys = ["a", "b", "a", "c", "a", "b"];
        assert_eq!(rounds(&keys, |k| *k), [vec![0, 1, 3], vec![2, 5], vec![4]]);
        assert_eq!(rounds(&["x"; 0], |k| *k), Vec::<Vec<usize>>::new());
    }
}
