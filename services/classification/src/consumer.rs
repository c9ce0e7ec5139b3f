//! Follows the registry's feed: reads batches of events after the stored cursor,
//! applies each batch in one transaction with the new cursor (so a restart or a replay
//! never counts an event twice), classifies the customers the batches touched once it is
//! caught up (or every `classify_interval` while it catches up), and refreshes the
//! population on a schedule.

use std::time::Duration;

use clientela_proto::clientela::registry::v1 as registry;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use clientela_runtime::time::now;
use clientela_runtime::{Error, Secret};
use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use crate::api::convert::change_from;
use crate::engine::Engine;
use crate::projection::Change;

/// How the consumer reaches the registry and how often it refreshes the population.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// `http://host:port` of the registry.
    pub registry_url: String,
    /// Bearer token, when the registry's auth is on.
    pub token: Option<Secret>,
    /// Events per batch.
    pub batch: i32,
    /// While catching up, events applied per transaction (several batches).
    pub commit_events: usize,
    /// The population is recomputed (and everyone classified again) at most this often,
    /// after a batch; zero: after every batch.
    pub population_refresh: Duration,
    /// While the consumer catches up (full batches), the customers the feed touched are
    /// classified at most this often (and at most a fifth of the time: see
    /// [`classify_due`]); once it is caught up, after every batch.
    pub classify_interval: Duration,
}

/// Runs until `stopping` is cancelled, reconnecting with backoff after errors.
pub async fn run(engine: Engine, config: ConsumerConfig, stopping: CancellationToken) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(100);
    let mut backoff = FIRST_BACKOFF;
    let mut last_refresh: Option<Instant> = None;
    loop {
        let mut progressed = false;
        let outcome = tokio::select! {
            () = stopping.cancelled() => return,
            r = follow(&engine, &config, &mut last_refresh, &mut progressed) => r,
        };
        if progressed {
            // The feed moved on before this ended: the next try starts afresh.
            backoff = FIRST_BACKOFF;
        }
        match outcome {
            Ok(()) => backoff = FIRST_BACKOFF,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?backoff, "following the registry feed");
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        tokio::select! {
            () = stopping.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
    }
}

/// One connection's worth of following: returns when the stream ends or fails, with
/// `progressed` set once a batch was applied.
async fn follow(
    engine: &Engine,
    config: &ConsumerConfig,
    last_refresh: &mut Option<Instant>,
    progressed: &mut bool,
) -> Result<(), Error> {
    let channel = Channel::from_shared(config.registry_url.clone())
        .map_err(|e| Error::Internal(format!("registry_url: {e}")))?
        .connect()
        .await
        .map_err(|e| Error::Unavailable(format!("registry: {e}")))?;
    let token = config
        .token
        .as_ref()
        .map(|t| MetadataValue::try_from(format!("Bearer {}", t.expose())))
        .transpose()
        .map_err(|_| Error::Internal("registry_token is not a valid header value".into()))?;
    let client = CustomerRegistryServiceClient::with_interceptor(
        channel,
        move |mut request: tonic::Request<()>| {
            if let Some(token) = &token {
                request
                    .metadata_mut()
                    .insert("authorization", token.clone());
            }
            Ok(request)
        },
    );
    let mut cursor = engine.feed_cursor().await?;
    let mut stream = client
        .clone()
        .watch_events(registry::WatchEventsRequest {
            after_sequence: cursor,
            max_batch_size: config.batch,
        })
        .await
        .map_err(feed_error)?
        .into_inner();
    refresh_if_due(engine, config, last_refresh).await?;
    // Customers a previous run marked and did not get to.
    engine.classify_pending(now()).await?;
    let mut last_classified = Instant::now();
    // How long the last pass over the marked customers took.
    let mut last_pass = Duration::ZERO;
    // While the consumer replays a long feed, several batches share one transaction: the
    // facts of a customer touched by many of them are then written once, and the pages of
    // the projection each carry more events (docs/BENCHMARKS.md).
    let mut buffered: Vec<Change> = Vec::new();
    let mut buffered_last = cursor;
    // Applied, not yet classified (a replay's batch between two classify intervals).
    let mut unclassified = false;
    loop {
        let next = if buffered.is_empty() && !unclassified {
            stream.next().await
        } else {
            match tokio::time::timeout(FLUSH_AFTER, stream.next()).await {
                Ok(next) => next,
                // Quiet, so caught up: what is buffered goes in now, and is classified.
                Err(_) => {
                    if !buffered.is_empty() {
                        cursor = flush(engine, cursor, buffered_last, &mut buffered).await?;
                        *progressed = true;
                    }
                    engine.classify_pending(now()).await?;
                    last_classified = Instant::now();
                    unclassified = false;
                    continue;
                }
            }
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(feed_error)?;
        let Some(last) = batch.events.last().map(|e| e.sequence) else {
            continue;
        };
        buffered.extend(batch.events.iter().filter_map(|e| {
            change_from(e)
                .inspect_err(|err| tracing::error!(error = %err, "skipping a registry event"))
                .ok()
        }));
        buffered_last = last;
        let caught_up = batch.events.len() < usize::try_from(config.batch).unwrap_or(0);
        if !caught_up && buffered.len() < config.commit_events {
            continue;
        }
        cursor = flush(engine, cursor, buffered_last, &mut buffered).await?;
        *progressed = true;
        unclassified = true;
        if caught_up
            || classify_due(
                last_classified.elapsed(),
                last_pass,
                config.classify_interval,
            )
        {
            let started = Instant::now();
            engine.classify_pending(now()).await?;
            last_pass = started.elapsed();
            last_classified = Instant::now();
            unclassified = false;
        }
        refresh_if_due(engine, config, last_refresh).await?;
    }
    Ok(())
}

/// Whether a consumer still catching up classifies the customers it marked: once
/// `interval` has passed since the last pass ended, and once four times as long as that
/// pass took. A replay of a large base marks most customers in every interval; without
/// the second bound, classifying them would take more of the replay than applying the
/// feed (a million customers take about a minute).
fn classify_due(since_last: Duration, last_pass: Duration, interval: Duration) -> bool {
    since_last >= interval.max(last_pass * 4)
}

/// How long buffered events wait for the next batch before they are applied.
const FLUSH_AFTER: Duration = Duration::from_millis(200);

/// Applies the buffered changes after `cursor` up to `last`; returns the new cursor.
async fn flush(
    engine: &Engine,
    cursor: i64,
    last: i64,
    buffered: &mut Vec<Change>,
) -> Result<i64, Error> {
    Ok(engine
        .ingest(cursor, last, std::mem::take(buffered))
        .await?
        .cursor)
}

fn feed_error(status: tonic::Status) -> Error {
    Error::Unavailable(format!("registry feed: {status}"))
}

async fn refresh_if_due(
    engine: &Engine,
    config: &ConsumerConfig,
    last_refresh: &mut Option<Instant>,
) -> Result<(), Error> {
    if last_refresh.is_some_and(|at| at.elapsed() < config.population_refresh) {
        return Ok(());
    }
    let done = engine.reclassify(now(), None, |_| {}).await?;
    tracing::debug!(
        classified = done.classified,
        changes = done.changes,
        "population refreshed"
    );
    *last_refresh = Some(Instant::now());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifying_while_catching_up_takes_at_most_a_fifth_of_the_time() {
        let interval = Duration::from_secs(30);
        let ended = Duration::from_secs;
        assert!(!classify_due(ended(29), Duration::ZERO, interval));
        assert!(classify_due(ended(31), Duration::ZERO, interval));
        assert!(classify_due(ended(31), Duration::from_secs(5), interval));
        // A pass of 60 s waits 240 s, not 30.
        assert!(!classify_due(ended(200), Duration::from_secs(60), interval));
        assert!(classify_due(ended(241), Duration::from_secs(60), interval));
    }
}
