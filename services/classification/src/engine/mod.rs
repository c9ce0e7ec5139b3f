//! The engine: applies batches of registry events to the facts and classifies the
//! customers they touched, in one transaction with the feed cursor; refreshes the
//! population and classifies everyone; keeps the policy versions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clientela_domain::taxonomy::CustomerKind;
use clientela_runtime::feed::consumer::{self, Cursor, Projection};
use clientela_runtime::{Conn, Db, Error, WriteTx};
use futures::future::BoxFuture;
use tokio::sync::watch;
use uuid::Uuid;

use crate::classification::{Classification, Run, changes};
use crate::classification::{LabelChange, TransitionQuery};
use crate::facts::CustomerFacts;
use crate::filter::Filter;
use crate::labels::Dimension;
use crate::policy::{Policy, PolicyVersion};
use crate::population::{PopulationSnapshot, Tally};
use crate::projection::{Change, Workspace};
use crate::revenue::RevenueDelta;
use crate::store::{self, Bucket, Record, Stamp, Stored};

/// The transaction lock every transaction that writes facts or classifications waits
/// for: feed batches, Reclassify pages and the passes over marked customers take turns.
const FEED_LOCK: &str = "classification-feed";

/// Where the engine keeps its place in the registry's feed. Its lock is the consumers'
/// own, tried (another replica consuming gets FEED_BUSY and backs off); a Reclassify
/// page never takes it, so a Reclassify only delays a batch, it does not refuse it.
pub const REGISTRY_FEED: Cursor = Cursor {
    table: "feed_cursor",
    lock: "classification-registry-consumer",
};

/// Customers classified per transaction by default (see [`Engine::with_page`]): each
/// transaction has a fixed cost (the write gate, the feed lock, the cursor read, the
/// commit) that pages of 1,000 paid a millisecond of per page at a million customers;
/// the feed waits for at most one page (tens of milliseconds).
pub const DEFAULT_PAGE: u64 = 4_000;

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ingested {
    /// The feed cursor after the batch.
    pub cursor: i64,
    /// Customers marked to be classified again.
    pub customers: usize,
}

/// A policy version, a population and an instant, owned.
struct OwnedRun {
    policy: Arc<PolicyVersion>,
    /// None: no population computed yet.
    population: Option<Arc<PopulationSnapshot>>,
    population_id: i64,
    as_of: DateTime<Utc>,
    /// The company revenue at `as_of` and the feed cursor it was read at: the ledger
    /// changes only with the cursor, so the pages of a run read while the feed is quiet
    /// share one sum of its ~8,800 hourly rows instead of one each.
    revenue: Mutex<Option<(i64, i64)>>,
}

impl OwnedRun {
    /// The company revenue at `as_of` if it was read at feed `cursor`.
    fn revenue_at(&self, cursor: i64) -> Option<i64> {
        let known = *self.revenue.lock().ok()?;
        known.and_then(|(at, revenue)| (at == cursor).then_some(revenue))
    }

    fn remember_revenue(&self, cursor: i64, revenue: i64) {
        if let Ok(mut known) = self.revenue.lock() {
            *known = Some((cursor, revenue));
        }
    }

    /// The company revenue at `as_of` in `conn`'s view, where the feed cursor is `cursor`.
    async fn company_revenue(&self, conn: &impl Conn, cursor: i64) -> Result<i64, Error> {
        if let Some(revenue) = self.revenue_at(cursor) {
            return Ok(revenue);
        }
        let revenue = store::company_revenue(conn, &self.policy.policy, self.as_of).await?;
        self.remember_revenue(cursor, revenue);
        Ok(revenue)
    }

    /// The run, measuring shares against `company_revenue` (read with the facts it
    /// classifies).
    fn borrow(&self, company_revenue: i64) -> Run<'_> {
        Run {
            policy: &self.policy.policy,
            policy_version: self.policy.version,
            population: self.population.as_deref(),
            population_id: self.population_id,
            company_revenue,
            as_of: self.as_of,
        }
    }
}

/// Progress of [`Engine::reclassify`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Customers classified so far.
    pub classified: i64,
    /// Customers to classify.
    pub total: i64,
    /// Label changes recorded so far.
    pub changes: i64,
}

/// What a candidate policy would change in one dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    /// Customers whose label would change.
    pub changed: i64,
    /// (from, to) → customers.
    pub transitions: BTreeMap<(String, String), i64>,
    /// The first customers (in id order) that would change.
    pub sample: Vec<Uuid>,
}

/// What a candidate policy would change, per dimension.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preview {
    /// Customers evaluated.
    pub total: i64,
    /// Per dimension, in [`Dimension::ALL`] order.
    pub impacts: Vec<(Dimension, Impact)>,
}

/// The classification engine over its database.
#[derive(Clone, Debug)]
pub struct Engine {
    db: Db,
    changes: store::Changes,
    policies: Arc<Mutex<HashMap<i64, Arc<PolicyVersion>>>>,
    populations: Arc<Mutex<HashMap<i64, Option<Arc<PopulationSnapshot>>>>>,
    /// The last `classified_through` read, and when: reads that ask for no sequence (or
    /// one already reached) answer from it while it is fresh, instead of one more query
    /// per call (docs/BENCHMARKS.md). It only grows, so a stale value is an
    /// underestimate, which is what the answer promises ("at least this").
    classified: Arc<Mutex<(i64, Instant)>>,
    /// Customers read, classified and written per transaction.
    page: u64,
}

/// How long a read `classified_through` answers reads that need no more.
const CLASSIFIED_FRESH: Duration = Duration::from_millis(100);

/// A task reading ahead panicked or was cancelled.
fn joined(e: tokio::task::JoinError) -> Error {
    Error::Internal(format!("a task reading ahead: {e}"))
}

fn poisoned<T>(_: T) -> Error {
    Error::Internal("a lock was poisoned".into())
}

impl Engine {
    /// The engine over a migrated database. With no policy stored yet, `initial` becomes
    /// version 1; a different `initial` later (an edited policy file) becomes a new version.
    pub async fn new(db: Db, initial: &Policy, now: DateTime<Utc>) -> Result<Self, Error> {
        // Replicas starting together may race to store the same version: the loser reads
        // again and finds the policy there.
        let mut attempts = 0;
        loop {
            match store_initial_policy(&db, initial, now).await {
                Err(Error::Aborted { .. }) if attempts < 3 => attempts += 1,
                outcome => break outcome?,
            }
        }
        fill_company_revenue(&db).await?;
        let changes = store::changes_outbox(db.clone()).await?;
        Ok(Self {
            db,
            changes,
            policies: Arc::default(),
            populations: Arc::default(),
            classified: Arc::new(Mutex::new((
                0,
                Instant::now()
                    .checked_sub(CLASSIFIED_FRESH)
                    .unwrap_or_else(Instant::now),
            ))),
            page: DEFAULT_PAGE,
        })
    }

    /// The same engine classifying `page` customers per transaction (at least one).
    pub fn with_page(mut self, page: u64) -> Self {
        self.page = page.max(1);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Wakes change-feed watchers when changes commit.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.changes.subscribe()
    }

    /// The registry feed position the facts include.
    pub async fn feed_cursor(&self) -> Result<i64, Error> {
        consumer::position(&self.db, REGISTRY_FEED).await
    }

    /// The current policy version.
    pub async fn current_policy(&self) -> Result<Arc<PolicyVersion>, Error> {
        let version = store::current_policy_version(self.db.conn())
            .await?
            .ok_or_else(|| Error::Internal("no classification policy stored".into()))?;
        self.policy(version).await
    }

    /// The `as_of` of a request (`field`), checked by the current policy.
    pub async fn as_of(
        &self,
        requested: Option<DateTime<Utc>>,
        field: &str,
    ) -> Result<DateTime<Utc>, Error> {
        let policy = self.current_policy().await?;
        let horizon = store::horizon(self.db.conn()).await?;
        Ok(policy
            .policy
            .as_of(requested, clientela_runtime::time::now(), horizon)
            .map_err(|e| e.under(field))?)
    }

    /// Policy version `version`; NOT_FOUND if there is none.
    pub async fn policy(&self, version: i64) -> Result<Arc<PolicyVersion>, Error> {
        // Versions never change once stored, so a read one is kept.
        if let Some(p) = self.policies.lock().map_err(poisoned)?.get(&version) {
            return Ok(p.clone());
        }
        let p = Arc::new(
            store::policy(self.db.conn(), Some(version))
                .await?
                .ok_or_else(|| Error::NotFound {
                    resource: "policy version",
                    name: version.to_string(),
                })?,
        );
        self.policies
            .lock()
            .map_err(poisoned)?
            .insert(version, p.clone());
        Ok(p)
    }

    /// Stores `policy` as the next version; with `expected`, ABORTED unless that is the
    /// current version.
    pub async fn set_policy(
        &self,
        policy: &Policy,
        expected: Option<i64>,
    ) -> Result<PolicyVersion, Error> {
        let tx = self.db.begin_write().await?;
        let current = store::policy(tx.conn(), None)
            .await?
            .map_or(0, |p| p.version);
        if let Some(expected) = expected
            && expected != current
        {
            return Err(Error::Aborted {
                reason: "POLICY_VERSION_CHANGED",
                message: format!(
                    "the current policy version is {current}, not {expected}: read it and retry"
                ),
            });
        }
        let stored =
            store::insert_policy(tx.conn(), current, policy, clientela_runtime::time::now())
                .await?;
        tx.commit().await?;
        Ok(stored)
    }
}

/// Fills the company revenue ledger from the facts of an engine upgraded with facts
/// already stored (the migration cannot read them), once, under the feed lock: a pass
/// over the facts instead of replaying the whole feed.
async fn fill_company_revenue(db: &Db) -> Result<(), Error> {
    if store::company_revenue_complete(db.conn()).await? {
        return Ok(());
    }
    let started = Instant::now();
    let tx = db.begin_write().await?;
    let conn = tx.conn();
    clientela_runtime::db::transaction_lock(conn, FEED_LOCK).await?;
    if store::company_revenue_complete(conn).await? {
        return Ok(());
    }
    let mut revenue = RevenueDelta::default();
    let mut after = None;
    let mut customers = 0;
    loop {
        let page = store::facts_page(conn, after, DEFAULT_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        customers += page.len();
        for f in &page {
            revenue.add(f, 1);
        }
    }
    store::add_company_revenue(conn, revenue).await?;
    store::mark_company_revenue_complete(conn).await?;
    tx.commit().await?;
    tracing::info!(
        customers,
        took_ms = started.elapsed().as_millis() as u64,
        "company revenue ledger filled from the facts"
    );
    Ok(())
}

/// Stores `initial` as the next policy version unless it is the current one.
async fn store_initial_policy(db: &Db, initial: &Policy, now: DateTime<Utc>) -> Result<(), Error> {
    let tx = db.begin_write().await?;
    match store::policy(tx.conn(), None).await? {
        Some(c) if c.policy == *initial => {}
        other => {
            let version = other.map_or(0, |c| c.version);
            store::insert_policy(tx.conn(), version, initial, now).await?;
            tracing::info!(version = version + 1, "classification policy stored");
        }
    }
    tx.commit().await?;
    Ok(())
}

mod ingest;
mod reads;
mod reclassify;
mod record;

pub use reads::{FILTER_SCAN_MAX, Listed};
pub use reclassify::Standing;

use record::*;
