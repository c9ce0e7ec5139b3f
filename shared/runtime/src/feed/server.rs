//! The server side of a change feed (`Watch…(after_sequence)`): everything after a
//! sequence number in batches, then live, woken by local commits or by polling (other
//! replicas' commits are only seen by polling), until the client leaves or the server
//! stops, which ends the stream with UNAVAILABLE: "reconnect elsewhere", never a
//! normal end a client could take for the end of the feed.

use std::future::Future;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::Error;

/// Batch size when the client asks for 0.
pub const DEFAULT_BATCH: u64 = 500;
/// Largest batch.
pub const MAX_BATCH: u64 = 5_000;

/// Checks a watch request: the sequence to start after and the batch size (0 means
/// [`DEFAULT_BATCH`], capped at [`MAX_BATCH`]).
pub fn check_request(after_sequence: i64, max_batch_size: i32) -> Result<u64, Error> {
    if after_sequence < 0 {
        return Err(Error::invalid("after_sequence", "must not be negative"));
    }
    match u64::try_from(max_batch_size) {
        Err(_) => Err(Error::invalid("max_batch_size", "must not be negative")),
        Ok(0) => Ok(DEFAULT_BATCH),
        Ok(n) => Ok(n.min(MAX_BATCH)),
    }
}

/// How a feed is read.
pub struct Feed<F> {
    /// Up to `limit` items after a sequence number, in order.
    pub fetch: F,
    /// Changes when a local commit adds items.
    pub woken: watch::Receiver<i64>,
    /// Ends the stream.
    pub stopping: CancellationToken,
    /// How often to look for items without being woken.
    pub poll: Duration,
}

/// The status an open stream ends with when the server shuts down.
pub fn shutting_down() -> Status {
    Status::unavailable(
        "the server is shutting down: reconnect and resume after the last sequence received",
    )
}

/// Ends a stream with [`shutting_down`]; a client that reads nothing for a second gets
/// the stream cut instead (the server is going away either way).
async fn end_shutting_down<T>(tx: &mpsc::Sender<Result<T, Status>>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), tx.send(Err(shutting_down()))).await;
}

/// Streams batches of the items after `after`; `sequence` tells an item's number.
pub fn watch<T, F, Fut>(
    feed: Feed<F>,
    mut after: i64,
    batch: u64,
    sequence: fn(&T) -> i64,
) -> ReceiverStream<Result<Vec<T>, Status>>
where
    T: Send + 'static,
    F: Fn(i64, u64) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<T>, Error>> + Send,
{
    let Feed {
        fetch,
        mut woken,
        stopping,
        poll,
    } = feed;
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        loop {
            if stopping.is_cancelled() {
                end_shutting_down(&tx).await;
                break;
            }
            match fetch(after, batch).await {
                Ok(items) if !items.is_empty() => {
                    after = items.last().map_or(after, sequence);
                    let full = items.len() as u64 == batch;
                    tokio::select! {
                        () = stopping.cancelled() => {
                            end_shutting_down(&tx).await;
                            break;
                        }
                        sent = tx.send(Ok(items)) => if sent.is_err() { break },
                    }
                    if full {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = tx.send(Err(Status::from(e))).await;
                    break;
                }
            }
            // Caught up: wait for a local commit, the poll interval, or the end.
            tokio::select! {
                () = stopping.cancelled() => {
                    end_shutting_down(&tx).await;
                    break;
                }
                () = tx.closed() => break,
                _ = woken.changed() => {}
                () = tokio::time::sleep(poll) => {}
            }
        }
    });
    ReceiverStream::new(rx)
}
