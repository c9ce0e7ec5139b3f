//! How the engine follows the registry's feed through the shared consumer: the
//! projection is the engine's ingest ([`Engine`]'s `Projection`); between transactions
//! the customers the feed touched are classified (at once when caught up, at most every
//! `classify_interval` while replaying) and the population is refreshed on schedule.

use std::sync::Mutex;
use std::time::Duration;

use clientela_runtime::feed::consumer::{Projection, Settle};
use clientela_runtime::time::now;
use clientela_runtime::{Error, WriteTx};
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::engine::Engine;
use crate::projection::Change;

/// How often the engine classifies and refreshes while it follows the feed.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The population is recomputed (and everyone classified again) at most this often,
    /// after a batch; zero: after every batch.
    pub population_refresh: Duration,
    /// While the consumer catches up (full batches), the customers the feed touched are
    /// classified at most this often (and at most a fifth of the time: see
    /// [`classify_due`]); once it is caught up, after every batch.
    pub classify_interval: Duration,
}

/// The engine as the registry feed's projection.
#[derive(Debug)]
pub struct Following {
    engine: Engine,
    schedule: Schedule,
    timing: Mutex<Timing>,
}

#[derive(Debug)]
struct Timing {
    last_refresh: Option<Instant>,
    last_classified: Instant,
    /// How long the last pass over the marked customers took.
    last_pass: Duration,
}

impl Following {
    /// `engine` following the feed on `schedule`.
    pub fn new(engine: Engine, schedule: Schedule) -> Self {
        Self {
            engine,
            schedule,
            timing: Mutex::new(Timing {
                last_refresh: None,
                last_classified: Instant::now(),
                last_pass: Duration::ZERO,
            }),
        }
    }

    fn timing<T>(&self, f: impl FnOnce(&mut Timing) -> T) -> Result<T, Error> {
        let mut timing = self
            .timing
            .lock()
            .map_err(|_| Error::Internal("the consumer's timing lock was poisoned".into()))?;
        Ok(f(&mut timing))
    }

    async fn settle_now(&self, state: Settle) -> Result<(), Error> {
        match state {
            Settle::Connected => {
                self.refresh_if_due().await?;
                // Customers a previous run marked and did not get to.
                self.classify().await
            }
            Settle::CaughtUp => {
                self.classify().await?;
                self.refresh_if_due().await
            }
            Settle::Replaying => {
                let interval = self.schedule.classify_interval;
                if self
                    .timing(|t| classify_due(t.last_classified.elapsed(), t.last_pass, interval))?
                {
                    self.classify().await?;
                }
                self.refresh_if_due().await
            }
        }
    }

    async fn classify(&self) -> Result<(), Error> {
        let started = Instant::now();
        self.engine.classify_pending(now()).await?;
        self.timing(|t| {
            t.last_pass = started.elapsed();
            t.last_classified = Instant::now();
        })
    }

    async fn refresh_if_due(&self) -> Result<(), Error> {
        let every = self.schedule.population_refresh;
        if self.timing(|t| t.last_refresh.is_some_and(|at| at.elapsed() < every))? {
            return Ok(());
        }
        let done = self.engine.reclassify(None, None, |_| {}).await?;
        tracing::debug!(
            classified = done.classified,
            changes = done.changes,
            "population refreshed"
        );
        self.timing(|t| t.last_refresh = Some(Instant::now()))
    }
}

impl Projection for Following {
    type Event = Change;

    fn apply<'a>(
        &'a self,
        tx: &'a WriteTx,
        events: Vec<Change>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        self.engine.apply(tx, events)
    }

    fn settle(&self, state: Settle) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(self.settle_now(state))
    }
}

/// Whether a consumer still catching up classifies the customers it marked: once
/// `interval` has passed since the last pass ended, and once four times as long as that
/// pass took. A replay of a large base marks most customers in every interval; without
/// the second bound, classifying them would take more of the replay than applying the
/// feed (a million customers take about a minute).
fn classify_due(since_last: Duration, last_pass: Duration, interval: Duration) -> bool {
    since_last >= interval.max(last_pass * 4)
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
