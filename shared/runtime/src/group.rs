//! Group commit: concurrent unary writes that arrive while a transaction is running
//! are queued and then committed together, in one transaction, by the batch function
//! the service already has for imports.
//!
//! A write that finds the queue idle runs at once, alone (no timer, no added latency);
//! under load each commit carries everything that queued behind the previous one, so
//! the cost of a commit (an fsync, SQLite's single writer) is shared. Each item gets
//! exactly the result it would have had alone: the batch function must answer row by
//! row, as the import paths do.
//!
//! Written here rather than taken from a crate: `dataloader` and `scuffle-batching`
//! batch keyed loads (keys deduplicated into a set, answers through a map) and wait on a
//! timer (scuffle's default is 5 ms). Writes need every call answered in order,
//! duplicates included, with its own error, and no wait when the queue is idle.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::Error;

type Job<I, O> = (I, oneshot::Sender<Result<O, Error>>);

/// A queue of writes of one kind, committed in groups.
#[derive(Debug)]
pub struct GroupCommit<I, O> {
    queue: mpsc::Sender<Job<I, O>>,
}

impl<I, O> Clone for GroupCommit<I, O> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> GroupCommit<I, O> {
    /// Starts the queue. `run` commits a batch of at most `max_batch` items and answers
    /// each in order (`Err` as a whole: nothing committed, every caller gets that
    /// error). At most `parallel` batches run at once: 1 where writers serialize anyway
    /// (SQLite), more where they do not. The queue stops when every handle is dropped,
    /// after the batches already taken have finished.
    pub fn start<F, Fut>(max_batch: usize, parallel: usize, run: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Vec<Result<O, Error>>, Error>> + Send + 'static,
    {
        let max_batch = max_batch.max(1);
        let parallel = parallel.max(1);
        let (queue, mut jobs) = mpsc::channel::<Job<I, O>>(max_batch * parallel * 2);
        let run = Arc::new(run);
        let slots = Arc::new(Semaphore::new(parallel));
        tokio::spawn(async move {
            loop {
                // Take a slot first: while every slot is busy, writes accumulate in the
                // queue and the next batch takes them all.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    break;
                };
                let Some(first) = jobs.recv().await else {
                    break;
                };
                let mut batch = Vec::with_capacity(max_batch.min(64));
                batch.push(first);
                while batch.len() < max_batch {
                    match jobs.try_recv() {
                        Ok(job) => batch.push(job),
                        Err(_) => break,
                    }
                }
                let run = run.clone();
                tokio::spawn(async move {
                    let _slot = slot;
                    let (items, replies): (Vec<I>, Vec<_>) = batch.into_iter().unzip();
                    tracing::trace!(size = items.len(), "group commit");
                    answer(run(items).await, replies);
                });
            }
        });
        Self { queue }
    }

    /// Queues `item` and waits for its own result.
    pub async fn call(&self, item: I) -> Result<O, Error> {
        let (reply, result) = oneshot::channel();
        self.queue
            .send((item, reply))
            .await
            .map_err(|_| Error::Unavailable("the server is shutting down".into()))?;
        result
            .await
            .map_err(|_| Error::Internal("a group commit ended without an answer".into()))?
    }
}

/// Hands each caller its result. A caller that went away (cancelled) is skipped: what
/// was committed stays committed.
fn answer<O>(
    outcome: Result<Vec<Result<O, Error>>, Error>,
    replies: Vec<oneshot::Sender<Result<O, Error>>>,
) {
    match outcome {
        Ok(results) => {
            let mut results = results.into_iter();
            for reply in replies {
                let result = results.next().unwrap_or_else(|| {
                    Err(Error::Internal(
                        "a batch returned fewer results than rows".into(),
                    ))
                });
                let _ = reply.send(result);
            }
        }
        Err(e) => {
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_result_and_writes_share_batches() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let group = GroupCommit::start(16, 1, move |items: Vec<i64>| {
            let seen = seen.clone();
            async move {
                seen.lock().unwrap().push(items.len());
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(items
                    .into_iter()
                    .map(|i| {
                        if i % 7 == 0 {
                            Err(Error::invalid("item", format!("{i} is a multiple of 7")))
                        } else {
                            Ok(i * 10)
                        }
                    })
                    .collect())
            }
        });
        let calls: Vec<_> = (1..=100)
            .map(|i| {
                let group = group.clone();
                tokio::spawn(async move { (i, group.call(i).await) })
            })
            .collect();
        for call in calls {
            let (i, result) = call.await.unwrap();
            if i % 7 == 0 {
                assert!(matches!(result, Err(Error::InvalidArgument(_))), "{i}");
            } else {
                assert_eq!(result.unwrap(), i * 10);
            }
        }
        let sizes = sizes.lock().unwrap();
        assert_eq!(sizes.iter().sum::<usize>(), 100);
        assert!(sizes.iter().all(|s| *s <= 16), "{sizes:?}");
        assert!(
            sizes.len() < 100,
            "100 concurrent writes never shared a batch: {sizes:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_batch_fails_every_caller_in_it() {
        let runs = Arc::new(AtomicUsize::new(0));
        let counted = runs.clone();
        let group = GroupCommit::start(8, 2, move |_items: Vec<u8>| {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Err::<Vec<Result<u8, Error>>, _>(Error::Unavailable("database down".into())) }
        });
        let result = group.call(1).await;
        assert!(matches!(result, Err(Error::Unavailable(m)) if m == "database down"));
        assert_eq!(runs.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_short_answer_is_an_internal_error_not_a_hang() {
        let group = GroupCommit::start(8, 1, |_items: Vec<u8>| async {
            Ok::<Vec<Result<u8, Error>>, Error>(Vec::new())
        });
        assert!(matches!(group.call(1).await, Err(Error::Internal(_))));
    }
}
