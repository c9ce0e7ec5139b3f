//! How the engine follows the registry's feed through the shared consumer: the
//! projection is the engine's ingest ([`Engine`]'s `Projection`); between transactions
//! the customers the feed touched are classified (at once when caught up, at most every
//! `classify_interval` while replaying) and the population is refreshed on schedule.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clientela_runtime::feed::consumer::{Projection, Settle};
use clientela_runtime::time::now;
use clientela_runtime::{Error, WriteTx};
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::engine::{Engine, Standing};
use crate::projection::Change;

/// How often the engine classifies and refreshes while it follows the feed.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// The population is recomputed (and everyone classified again) once it is this old,
    /// after a batch; zero: after every batch.
    pub population_refresh: Duration,
    /// Once caught up, the population is also recomputed when the company revenue has
    /// moved by more than this share (basis points) since it was computed...
    pub population_drift_bp: i64,
    /// ...and it is at least this old.
    pub population_min_interval: Duration,
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
                self.refresh_if_due(false).await?;
                // Customers a previous run marked and did not get to.
                self.classify().await
            }
            Settle::CaughtUp => {
                self.classify().await?;
                self.refresh_if_due(true).await
            }
            Settle::Replaying => {
                let interval = self.schedule.classify_interval;
                if self
                    .timing(|t| classify_due(t.last_classified.elapsed(), t.last_pass, interval))?
                {
                    self.classify().await?;
                }
                self.refresh_if_due(false).await
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

    /// Refreshes the population when [`refresh_due`] says so; the stored population's
    /// age is what is measured, so a restart or another replica taking over the feed
    /// keeps the same schedule.
    async fn refresh_if_due(&self, caught_up: bool) -> Result<(), Error> {
        let standing = self.engine.population_standing().await?;
        let Some(why) = refresh_due(standing, caught_up, &self.schedule, now()) else {
            return Ok(());
        };
        let done = self.engine.reclassify(None, None, |_| {}).await?;
        tracing::info!(
            why,
            classified = done.classified,
            changes = done.changes,
            "population refreshed"
        );
        Ok(())
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

/// Why the population is to be recomputed now, if it is, from where the stored one
/// stands (None: no population yet). The first one waits for the initial replay to catch
/// up (computed over half a feed, it would band everyone against the wrong cut-offs and
/// then be recomputed at once); drift is looked at only once caught up, where every batch
/// is a few events (a replay moves the revenue all the time). A population stored with no
/// revenue ranks nobody who has some, so the first revenue refreshes it without waiting
/// for the minimum interval (a fresh install's first buyer read LOW for a minute).
fn refresh_due(
    standing: Option<Standing>,
    caught_up: bool,
    schedule: &Schedule,
    now: DateTime<Utc>,
) -> Option<&'static str> {
    let Some(standing) = standing else {
        return caught_up.then_some("first population");
    };
    let age = (now - standing.as_of).to_std().unwrap_or(Duration::ZERO);
    if age >= schedule.population_refresh {
        return Some("schedule");
    }
    if !caught_up {
        return None;
    }
    if standing.from_zero {
        return Some("first company revenue");
    }
    (standing.moved_bp > schedule.population_drift_bp && age >= schedule.population_min_interval)
        .then_some("company revenue moved")
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
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_population_is_refreshed_first_when_caught_up_then_by_age_or_drift() {
        let schedule = Schedule {
            population_refresh: Duration::from_secs(600),
            population_drift_bp: 200,
            population_min_interval: Duration::from_secs(60),
            classify_interval: Duration::from_secs(30),
        };
        let now = Utc.with_ymd_and_hms(2026, 12, 3, 12, 0, 0).unwrap();
        let ago = |secs| now - chrono::Duration::seconds(secs);
        let standing = |secs, baseline, current| Some(Standing::new(ago(secs), baseline, current));
        assert_eq!(
            refresh_due(None, false, &schedule, now),
            None,
            "not while replaying"
        );
        assert_eq!(
            refresh_due(None, true, &schedule, now),
            Some("first population")
        );
        assert_eq!(
            refresh_due(standing(600, 100, 100), false, &schedule, now),
            Some("schedule")
        );
        assert_eq!(
            refresh_due(standing(599, 10_000, 10_200), true, &schedule, now),
            None,
            "2 % is not more than 2 %"
        );
        assert_eq!(
            refresh_due(standing(60, 10_000, 9_799), true, &schedule, now),
            Some("company revenue moved")
        );
        assert_eq!(
            refresh_due(standing(59, 10_000, 15_000), true, &schedule, now),
            None,
            "no storm"
        );
        assert_eq!(
            refresh_due(standing(60, 10_000, 15_000), false, &schedule, now),
            None,
            "replaying"
        );
        // Computed before anyone bought: the first revenue does not wait a minute.
        assert_eq!(
            refresh_due(standing(1, 0, 1), true, &schedule, now),
            Some("first company revenue")
        );
        assert_eq!(
            refresh_due(standing(1, 0, 1), false, &schedule, now),
            None,
            "replaying"
        );
        assert_eq!(refresh_due(standing(1, 0, 0), true, &schedule, now), None);
    }

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
