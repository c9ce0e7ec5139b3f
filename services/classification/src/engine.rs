//! The engine: applies batches of registry events to the facts and classifies the
//! customers they touched, in one transaction with the feed cursor; refreshes the
//! population and classifies everyone; keeps the policy versions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clientela_domain::taxonomy::CustomerKind;
use clientela_runtime::feed::consumer::{self, Cursor, Projection};
use clientela_runtime::{Db, Error, WriteTx};
use futures::future::BoxFuture;
use sea_orm::ConnectionTrait;
use tokio::sync::watch;
use uuid::Uuid;

use crate::classification::{Classification, Run, changes};
use crate::facts::CustomerFacts;
use crate::filter::Filter;
use crate::labels::Dimension;
use crate::policy::Policy;
use crate::population::{Population, Tally};
use crate::projection::{Change, Workspace, apply_to};
use crate::store::{
    self, Bucket, LabelChange, PolicyVersion, PopulationSnapshot, Record, Stamp, Stored,
    TransitionQuery,
};

/// The transaction lock held while applying the feed or writing classifications.
const FEED_LOCK: &str = "classification-feed";

/// Where the engine keeps its place in the registry's feed.
pub const REGISTRY_FEED: Cursor = Cursor {
    table: "feed_cursor",
    lock: FEED_LOCK,
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
    population: Arc<Population>,
    population_id: i64,
    as_of: DateTime<Utc>,
}

impl OwnedRun {
    fn borrow(&self) -> Run<'_> {
        Run {
            policy: &self.policy.policy,
            policy_version: self.policy.version,
            population: &self.population,
            population_id: self.population_id,
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
    populations: Arc<Mutex<HashMap<i64, Arc<Population>>>>,
    /// Customers read, classified and written per transaction.
    page: u64,
}

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
        let changes = store::changes_outbox(db.clone()).await?;
        Ok(Self {
            db,
            changes,
            policies: Arc::default(),
            populations: Arc::default(),
            page: DEFAULT_PAGE,
        })
    }

    /// The same engine classifying `page` customers per transaction (at least one).
    pub fn with_page(mut self, page: u64) -> Self {
        self.page = page.max(1);
        self
    }

    /// The database.
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

    /// Applies the changes of the registry events after `after` up to `last` to the facts
    /// and marks the customers whose classification they may change (see
    /// [`Engine::classify_pending`]), through the shared consumer's transaction (see
    /// [`consumer::apply`]). ABORTED when the cursor is no longer at `after` (another
    /// consumer got there first): nothing is written.
    pub async fn ingest(
        &self,
        after: i64,
        last: i64,
        events: Vec<Change>,
    ) -> Result<Ingested, Error> {
        let customers = consumer::apply(&self.db, REGISTRY_FEED, after, last, self, events).await?;
        Ok(Ingested {
            cursor: Ord::max(after, last),
            customers,
        })
    }

    /// Classifies at `as_of` the customers whose facts changed since they were last
    /// classified, a page per transaction.
    pub async fn classify_pending(&self, as_of: DateTime<Utc>) -> Result<Progress, Error> {
        let mut done = Progress::default();
        loop {
            // Read before the feed lock is taken: a transaction holding it must not wait
            // for another of the pool's connections, which may all be waiting for it.
            let policy = self.current_policy().await?;
            let tx = self.db.begin_write().await?;
            let conn = tx.conn();
            clientela_runtime::db::transaction_lock(conn, FEED_LOCK).await?;
            let ids = store::pending(conn, self.page).await?;
            let Some(last) = ids.last().copied() else {
                // Ended here rather than by the drop, whose rollback (and the release of
                // PostgreSQL's feed lock) runs later, on a task of the pool's.
                tx.rollback().await?;
                return Ok(done);
            };
            let facts = store::load_facts(conn, &ids).await?;
            let run = Self::run_at(conn, policy, as_of).await?;
            let recorded = classify_and_record(&tx, &self.changes, &run.borrow(), &facts).await?;
            store::clear_pending(conn, None, last).await?;
            tx.commit().await?;
            done.classified += recorded.stored as i64;
            done.changes += recorded.changes.len() as i64;
        }
    }

    /// `policy` and the last population, for classifying at `as_of`.
    async fn run_at(
        conn: &impl ConnectionTrait,
        policy: Arc<PolicyVersion>,
        as_of: DateTime<Utc>,
    ) -> Result<OwnedRun, Error> {
        let (population_id, population) = match store::population(conn).await? {
            Some((id, p)) => (id, p.population),
            None => (0, Population::default()),
        };
        Ok(OwnedRun {
            policy,
            population: Arc::new(population),
            population_id,
            as_of,
        })
    }

    /// Recomputes the population at `as_of` and classifies every customer against it
    /// (or only those `only` accepts), reporting progress after each page.
    pub async fn reclassify(
        &self,
        as_of: DateTime<Utc>,
        only: Option<&Filter>,
        mut progress: impl FnMut(Progress),
    ) -> Result<Progress, Error> {
        let started = Instant::now();
        let policy = self.current_policy().await?;
        let population = self
            .compute_population(&policy.policy, policy.version, as_of)
            .await?;
        let population_took = started.elapsed();
        let mut done = Progress {
            total: population.population.customers,
            ..Progress::default()
        };
        let tx = self.db.begin_write().await?;
        let population_id = store::save_population(tx.conn(), &population).await?;
        tx.commit().await?;
        let owned = Arc::new(OwnedRun {
            policy,
            population: Arc::new(population.population),
            population_id,
            as_of,
        });
        // Each page is read and classified on another thread while the page before it is
        // written: the two halves of the work take about as long, so two cores do a
        // page in the time of one half (docs/BENCHMARKS.md).
        let ahead = |after| tokio::spawn(prepare(self.db.clone(), owned.clone(), after, self.page));
        let mut next = ahead(None);
        let mut after = None;
        // Where the time goes, logged at the end: waiting for pages read ahead means the
        // reading half bounds the run, else the writing half does.
        let mut waited = Duration::ZERO;
        // The numbers of this run's own writing transactions: a page compared ahead is
        // still compared against what is stored if only they have written since.
        let mut ours = BTreeSet::new();
        loop {
            let waiting = Instant::now();
            let Some(page) = next.await.map_err(joined)?? else {
                break;
            };
            waited += waiting.elapsed();
            next = ahead(Some(page.last));
            let run = owned.borrow();
            let tx = self.db.begin_write().await?;
            let conn = tx.conn();
            // Serialized with feed batches and other reclassifications (other replicas,
            // Reclassify calls): what each page replaces is read inside the lock, or read
            // ahead and found unchanged inside it, so a change is never recorded twice.
            clientela_runtime::db::transaction_lock(conn, FEED_LOCK).await?;
            let (classified, whole) = if store::feed_cursor(conn).await? == page.cursor {
                // Everyone in the page's range is classified now, on current facts.
                // A whole page of a full Reclassify: the results it keeps are stamped by
                // range, with the comparison read ahead if nobody else wrote since.
                let whole = match only {
                    None => {
                        store::clear_pending(conn, after, page.last).await?;
                        let replaced = match page.compared {
                            Some(c) => {
                                let writes = store::classification_writes(conn).await?;
                                ((c.writes + 1)..=writes)
                                    .all(|n| ours.contains(&n))
                                    .then_some(c.replaced)
                            }
                            None => None,
                        };
                        Some(Page {
                            after,
                            last: page.last,
                            replaced,
                        })
                    }
                    Some(_) => None,
                };
                (page.classified, whole)
            } else {
                // The feed moved on since the page was read: its facts are read again
                // inside the lock (customers the feed added meanwhile stay marked, and are
                // classified once it is quiet; their results are not the page's).
                let ids: Vec<Uuid> = page.classified.iter().map(|c| c.id).collect();
                let mut facts = store::load_facts(conn, &ids).await?;
                facts.sort_unstable_by_key(|f| f.id);
                (classify_all(conn, &run, &facts).await?, None)
            };
            after = Some(page.last);
            let recorded = record(&tx, &self.changes, &run, classified, only, whole).await?;
            tx.commit().await?;
            ours.insert(recorded.write);
            done.classified += recorded.stored as i64;
            done.changes += recorded.changes.len() as i64;
            progress(done);
        }
        tracing::info!(
            classified = done.classified,
            changes = done.changes,
            total_ms = started.elapsed().as_millis() as u64,
            population_ms = population_took.as_millis() as u64,
            waiting_for_pages_ms = waited.as_millis() as u64,
            "reclassified"
        );
        Ok(done)
    }

    /// The population's cut-offs over every live customer at `as_of`.
    async fn compute_population(
        &self,
        policy: &Policy,
        policy_version: i64,
        as_of: DateTime<Utc>,
    ) -> Result<PopulationSnapshot, Error> {
        let mut tally = Tally::default();
        each_page(&self.db, self.page, as_of, |page, firsts| {
            for f in page.iter().filter(|f| f.is_live()) {
                let features = f.features(as_of, policy, &|id| firsts.get(&id).copied());
                tally.add(f.id, &features);
            }
        })
        .await?;
        Ok(PopulationSnapshot {
            policy_version,
            as_of,
            population: tally.finish(policy),
        })
    }

    /// The current classification of `customer`; NOT_FOUND when the engine has none
    /// (unknown, archived or merged).
    pub async fn classification(&self, customer: Uuid) -> Result<Classification, Error> {
        let stored = match self
            .db
            .sqlite_read(|conn| store::sqlite_classification(conn, customer))
        {
            Some(read) => read?.map(store::StoredRow::decode).transpose()?,
            None => store::load_classifications(self.db.conn(), &[customer])
                .await?
                .pop(),
        };
        let stored = stored.ok_or_else(|| Error::NotFound {
            resource: "classification",
            name: format!("customers/{customer}"),
        })?;
        self.render(stored).await
    }

    /// A stored classification, with its explanations: the rules run again on its
    /// inputs, under its policy version and population, at its instant.
    async fn render(&self, stored: Stored) -> Result<Classification, Error> {
        match stored {
            Stored::Rendered(c) => Ok(*c),
            Stored::Inputs {
                customer,
                policy_version,
                population_id,
                as_of,
                region,
                inputs,
            } => {
                let policy = self.policy(policy_version).await?;
                let population = self.population(population_id).await?;
                let run = Run {
                    policy: &policy.policy,
                    policy_version,
                    population: &population,
                    population_id,
                    as_of,
                };
                Ok(run.render(customer, &region, &inputs))
            }
        }
    }

    /// Population `id` (0, or one no longer stored: none).
    async fn population(&self, id: i64) -> Result<Arc<Population>, Error> {
        // Populations never change once stored, so a read one is kept.
        if let Some(p) = self.populations.lock().map_err(poisoned)?.get(&id) {
            return Ok(p.clone());
        }
        let p = Arc::new(
            store::population_by_id(self.db.conn(), id)
                .await?
                .map(|p| p.population)
                .unwrap_or_default(),
        );
        self.populations
            .lock()
            .map_err(poisoned)?
            .insert(id, p.clone());
        Ok(p)
    }

    /// What `candidate` would change against the current policy, both at `as_of`, with
    /// up to `sample` customers per dimension. Writes nothing.
    pub async fn preview(
        &self,
        candidate: &Policy,
        as_of: DateTime<Utc>,
        sample: usize,
    ) -> Result<Preview, Error> {
        let current = self.current_policy().await?;
        let now_pop = self
            .compute_population(&current.policy, current.version, as_of)
            .await?;
        let cand_pop = self.compute_population(candidate, 0, as_of).await?;
        let now_run = Run {
            policy: &current.policy,
            policy_version: current.version,
            population: &now_pop.population,
            population_id: 0,
            as_of,
        };
        let cand_run = Run {
            policy: candidate,
            policy_version: 0,
            population: &cand_pop.population,
            population_id: 0,
            as_of,
        };
        let mut impacts: BTreeMap<Dimension, Impact> = BTreeMap::new();
        let mut preview = Preview::default();
        each_page(&self.db, self.page, as_of, |page, firsts| {
            for f in page {
                let (Some(a), Some(b)) =
                    (now_run.classify(f, firsts), cand_run.classify(f, firsts))
                else {
                    continue;
                };
                preview.total += 1;
                let (a, b) = (a.0, b.0);
                let moved = changes(f.id, Some(&a), Some(&b), as_of, 0);
                let dims: BTreeSet<Dimension> = moved.iter().map(|c| c.dimension).collect();
                for c in &moved {
                    let impact = impacts.entry(c.dimension).or_default();
                    *impact
                        .transitions
                        .entry((c.old_label.clone(), c.new_label.clone()))
                        .or_default() += 1;
                }
                for d in dims {
                    let impact = impacts.entry(d).or_default();
                    impact.changed += 1;
                    if impact.sample.len() < sample {
                        impact.sample.push(f.id);
                    }
                }
            }
        })
        .await?;
        preview.impacts = Dimension::ALL
            .iter()
            .map(|d| (*d, impacts.remove(d).unwrap_or_default()))
            .collect();
        Ok(preview)
    }

    /// A page of classifications passing `filter`, after customer `after`.
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<Classification>, Error> {
        let mut out = Vec::new();
        for stored in store::list_classifications(self.db.conn(), filter, after, limit).await? {
            out.push(self.render(stored).await?);
        }
        Ok(out)
    }

    /// Customers and revenue per label of `dimension`.
    pub async fn distribution(
        &self,
        dimension: Dimension,
        by_region: bool,
    ) -> Result<Vec<Bucket>, Error> {
        store::distribution(self.db.conn(), dimension, by_region).await
    }

    /// Label changes matching `q` after sequence `after`.
    pub async fn transitions(
        &self,
        q: &TransitionQuery,
        after: i64,
        limit: u64,
    ) -> Result<Vec<LabelChange>, Error> {
        store::transitions(self.db.conn(), q, after, limit).await
    }

    /// Up to `limit` label changes after `after`.
    pub async fn changes_after(&self, after: i64, limit: u64) -> Result<Vec<LabelChange>, Error> {
        self.changes.read_after(after, limit).await
    }
}

/// The engine's projection of the registry's feed: facts, and the customers to classify
/// again. Runs of changes without a merge are applied a slice of customers at a time, in
/// id order: each customer's facts are read and written once per run, and the pages of
/// the projection are visited in order rather than at random (what bounds ingest at a
/// million customers: docs/BENCHMARKS.md). A merge goes on its own.
impl Projection for Engine {
    type Event = Change;

    fn apply<'a>(
        &'a self,
        tx: &'a WriteTx,
        events: Vec<Change>,
    ) -> BoxFuture<'a, Result<usize, Error>> {
        Box::pin(async move {
            let conn = tx.conn();
            let mut marked = 0;
            let mut run = Vec::new();
            for change in events {
                if change.is_merge() {
                    marked += apply_run(conn, std::mem::take(&mut run)).await?;
                    marked += apply_merge(conn, change).await?;
                } else {
                    run.push(change);
                }
            }
            marked += apply_run(conn, run).await?;
            Ok(marked)
        })
    }
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

/// Walks every customer's facts in id order, a page at a time, with when the customers
/// each page referred first bought (by `as_of`). The next page is read while `visit`
/// works on one.
async fn each_page(
    db: &Db,
    size: u64,
    as_of: DateTime<Utc>,
    mut visit: impl FnMut(&[CustomerFacts], &HashMap<Uuid, DateTime<Utc>>),
) -> Result<(), Error> {
    type Page = (Vec<CustomerFacts>, HashMap<Uuid, DateTime<Utc>>);
    async fn read(
        db: Db,
        after: Option<Uuid>,
        size: u64,
        as_of: DateTime<Utc>,
    ) -> Result<Page, Error> {
        let page = facts_page(&db, after, size).await?;
        let known: HashMap<Uuid, &CustomerFacts> = page.iter().map(|f| (f.id, f)).collect();
        let firsts = first_purchases(db.conn(), &page, &known, as_of).await?;
        Ok((page, firsts))
    }
    let mut next = tokio::spawn(read(db.clone(), None, size, as_of));
    loop {
        let (page, firsts) = next.await.map_err(joined)??;
        let Some(last) = page.last() else {
            return Ok(());
        };
        next = tokio::spawn(read(db.clone(), Some(last.id), size, as_of));
        visit(&page, &firsts);
    }
}

/// Customers whose facts [`apply_run`] reads and writes in one go.
const PROJECTION_SLICE: usize = 5_000;

/// Applies `changes` (no merge among them) a slice of customers at a time, in id order,
/// each customer's changes in feed order; returns how many customers were marked.
async fn apply_run(conn: &impl ConnectionTrait, changes: Vec<Change>) -> Result<usize, Error> {
    let mut keyed: Vec<(Uuid, usize)> = changes
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            let mut named = c.customers();
            named.dedup();
            named.into_iter().map(move |id| (id, i))
        })
        .collect();
    keyed.sort_unstable();
    let mut uses = vec![0u8; changes.len()];
    for (_, i) in &keyed {
        uses[*i] += 1;
    }
    let mut changes: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    let mut marked = 0;
    let mut rest = keyed.as_slice();
    while !rest.is_empty() {
        // The slice ends where a customer's changes end.
        let mut end = 0;
        let mut customers = 0;
        while end < rest.len() && customers < PROJECTION_SLICE {
            let id = rest[end].0;
            end += rest[end..].iter().take_while(|(c, _)| *c == id).count();
            customers += 1;
        }
        let (slice, after) = rest.split_at(end);
        rest = after;
        let mut ids: Vec<Uuid> = slice.iter().map(|(id, _)| *id).collect();
        ids.dedup();
        let mut facts: HashMap<Uuid, CustomerFacts> = store::load_facts(conn, &ids)
            .await?
            .into_iter()
            .map(|f| (f.id, f))
            .collect();
        for (id, i) in slice {
            // A referral names two customers: the one of them served first gets a copy.
            uses[*i] -= 1;
            let change = if uses[*i] > 0 {
                changes[*i].clone()
            } else {
                changes[*i].take()
            }
            .ok_or_else(|| Error::Internal("a change applied twice to one customer".into()))?;
            let f = facts
                .entry(*id)
                .or_insert_with(|| CustomerFacts::new(*id, CustomerKind::Person));
            apply_to(f, change);
        }
        let changed: Vec<&CustomerFacts> = ids.iter().filter_map(|id| facts.get(id)).collect();
        marked += save_and_mark(conn, changed).await?;
    }
    Ok(marked)
}

/// Applies a merge, with every customer it touches loaded first.
async fn apply_merge(conn: &impl ConnectionTrait, change: Change) -> Result<usize, Error> {
    let mut work = Workspace::default();
    for f in store::load_facts(conn, &change.customers()).await? {
        work.insert(f);
    }
    let needed: Vec<Uuid> = work
        .also_needed(&change)
        .into_iter()
        .filter(|id| !work.has(*id))
        .collect();
    for f in store::load_facts(conn, &needed).await? {
        work.insert(f);
    }
    work.apply(change);
    save_and_mark(conn, work.changed().collect()).await
}

/// Writes `changed` (in id order) and marks them, and the customers who referred them
/// (a first purchase changes their converted referrals), to be classified again; returns
/// how many were marked.
async fn save_and_mark(
    conn: &impl ConnectionTrait,
    changed: Vec<&CustomerFacts>,
) -> Result<usize, Error> {
    store::save_facts(conn, changed.iter().copied()).await?;
    let mut touched: BTreeSet<Uuid> = changed.iter().map(|f| f.id).collect();
    touched.extend(changed.iter().flat_map(|f| f.referred_by.iter().copied()));
    let marked = touched.len();
    store::mark_pending(conn, touched).await?;
    Ok(marked)
}

/// When the customers `facts` referred first bought (by `as_of`), from `known` or the
/// store.
async fn first_purchases(
    conn: &impl ConnectionTrait,
    facts: &[CustomerFacts],
    known: &HashMap<Uuid, &CustomerFacts>,
    as_of: DateTime<Utc>,
) -> Result<HashMap<Uuid, DateTime<Utc>>, Error> {
    let referred: BTreeSet<Uuid> = facts
        .iter()
        .flat_map(|f| f.referrals.iter().map(|r| r.referred))
        .collect();
    let mut out = HashMap::new();
    let mut missing = Vec::new();
    for id in referred {
        match known.get(&id) {
            Some(f) => {
                if let Some(at) = f.first_purchase_at(as_of) {
                    out.insert(id, at);
                }
            }
            None => missing.push(id),
        }
    }
    for f in store::load_facts(conn, &missing).await? {
        if let Some(at) = f.first_purchase_at(as_of) {
            out.insert(f.id, at);
        }
    }
    Ok(out)
}

/// Up to `size` customers' facts after `after`, in id order.
async fn facts_page(db: &Db, after: Option<Uuid>, size: u64) -> Result<Vec<CustomerFacts>, Error> {
    if !db.has_sqlite_reads() {
        return store::facts_page(db.conn(), after, size).await;
    }
    read_sqlite(db, move |conn| store::sqlite_facts_page(conn, after, size)).await
}

/// Runs `read` on a SQLite file's read-only connection (the database must have them:
/// [`Db::has_sqlite_reads`]) on a blocking thread. A scan read so, decoding each row where
/// SQLite holds it, skips sqlx's hand-off of every row to the calling task, which was
/// most of a full scan's cost (docs/BENCHMARKS.md).
async fn read_sqlite<T: Send + 'static>(
    db: &Db,
    read: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<Result<T, Error>> + Send + 'static,
) -> Result<T, Error> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.sqlite_read(read))
        .await
        .map_err(joined)?
    {
        Some(read) => read?,
        None => Err(Error::Internal("the database has no SQLite reads".into())),
    }
}

/// A page of customers read and classified ahead of its transaction.
struct Prepared {
    /// The feed cursor read before the facts (or with them): when it has not moved by the
    /// time the page is written, the facts were current.
    cursor: i64,
    /// The page's last customer.
    last: Uuid,
    /// Its customers, classified.
    classified: Vec<Classified>,
    /// Their results compared with the stored ones, when read together (SQLite).
    compared: Option<Compared>,
}

/// A page's new results compared with the stored ones, read in one snapshot.
struct Compared {
    /// [`store::classification_writes`] in that snapshot.
    writes: i64,
    /// The customers whose results moved (as [`store::differing`] returns them).
    replaced: HashMap<Uuid, store::Replaced>,
}

/// Reads the page of customers after `after` and classifies them (None: no more). From
/// a SQLite file the stored results are read in the same snapshot and compared here,
/// off the writer's path.
async fn prepare(
    db: Db,
    run: Arc<OwnedRun>,
    after: Option<Uuid>,
    size: u64,
) -> Result<Option<Prepared>, Error> {
    let conn = db.conn();
    let (cursor, page, stored) = if db.has_sqlite_reads() {
        let page = read_sqlite(&db, move |conn| store::sqlite_page(conn, after, size)).await?;
        (page.cursor, page.facts, Some((page.writes, page.stored)))
    } else {
        let cursor = store::feed_cursor(conn).await?;
        (cursor, store::facts_page(conn, after, size).await?, None)
    };
    let Some(last) = page.last().map(|f| f.id) else {
        return Ok(None);
    };
    let classified = classify_all(conn, &run.borrow(), &page).await?;
    let compared = stored.map(|(writes, stored)| Compared {
        writes,
        replaced: classified
            .iter()
            .filter_map(|c| {
                store::Replaced::between(stored.get(&c.id), c.new.as_ref()).map(|r| (c.id, r))
            })
            .collect(),
    });
    Ok(Some(Prepared {
        cursor,
        last,
        classified,
        compared,
    }))
}

/// A customer classified: what to store, or None when no longer live.
struct Classified {
    id: Uuid,
    new: Option<Record>,
}

/// Classifies `facts` under `run`.
async fn classify_all(
    conn: &impl ConnectionTrait,
    run: &Run<'_>,
    facts: &[CustomerFacts],
) -> Result<Vec<Classified>, Error> {
    let known: HashMap<Uuid, &CustomerFacts> = facts.iter().map(|f| (f.id, f)).collect();
    let firsts = first_purchases(conn, facts, &known, run.as_of).await?;
    facts
        .iter()
        .map(|f| {
            let new = run
                .classify(f, &firsts)
                .map(|(codes, inputs)| Record::new(f.id, f.region.clone(), codes, &inputs))
                .transpose()?;
            Ok(Classified { id: f.id, new })
        })
        .collect()
}

/// Classifies `facts` under `run` and records the results (see [`record`]).
async fn classify_and_record(
    tx: &WriteTx,
    changes: &store::Changes,
    run: &Run<'_>,
    facts: &[CustomerFacts],
) -> Result<Recorded, Error> {
    let classified = classify_all(tx.conn(), run, facts).await?;
    record(tx, changes, run, classified, None, None).await
}

/// What [`record`] did.
struct Recorded {
    /// Customers whose results were stored (written or stamped).
    stored: usize,
    /// The label changes appended.
    changes: Vec<LabelChange>,
    /// The transaction's number among those that wrote classifications.
    write: i64,
}

/// A page of a full Reclassify: the customers after the first id up to the second are
/// exactly those classified; with their comparison read ahead, if still valid.
struct Page {
    after: Option<Uuid>,
    last: Uuid,
    replaced: Option<HashMap<Uuid, store::Replaced>>,
}

/// Stores `classified` (only the customers whose current classification `only`
/// accepts, if given), removes the results of customers no longer live, and appends the
/// label changes. With `page` (a page of a full Reclassify), the results that did not
/// move are stamped by one statement over the page's range rather than written one by
/// one, and a comparison read ahead is used as it is.
async fn record(
    tx: &WriteTx,
    outbox: &store::Changes,
    run: &Run<'_>,
    classified: Vec<Classified>,
    only: Option<&Filter>,
    page: Option<Page>,
) -> Result<Recorded, Error> {
    let conn = tx.conn();
    let write = store::count_write(conn).await?;
    // What each new classification replaces. A filter reads every stored
    // classification; else only those that differ come back, and a customer left out
    // kept its result (labels, inputs and region).
    let (range, ahead) = match page {
        Some(Page {
            after,
            last,
            replaced,
        }) => (Some((after, last)), replaced),
        None => (None, None),
    };
    let replaced: HashMap<Uuid, store::Replaced> = match (only, ahead) {
        (Some(_), _) => {
            let ids: Vec<Uuid> = classified.iter().map(|c| c.id).collect();
            let mut found = store::load_current(conn, &ids).await?;
            classified
                .iter()
                .map(|c| {
                    let stored = found.remove(&c.id);
                    let codes =
                        stored.as_ref().map(|s| &s.codes) != c.new.as_ref().map(|r| &r.codes_text);
                    (c.id, store::Replaced { stored, codes })
                })
                .collect()
        }
        (None, Some(replaced)) => replaced,
        (None, None) => {
            let candidates = classified.iter().map(|c| (c.id, c.new.as_ref())).collect();
            store::differing(conn, candidates).await?
        }
    };
    let mut records = Vec::new();
    let mut gone = Vec::new();
    let mut recorded = Vec::new();
    let mut kept = 0;
    for Classified { id, new } in classified {
        let previous = replaced.get(&id);
        let stored = previous.and_then(|p| p.stored.as_ref());
        if let Some(only) = only {
            let Some(current) = stored else { continue };
            if !only.matches(&current.region, &current.codes()?) {
                continue;
            }
        }
        let Some(mut new) = new else {
            if let Some(current) = stored {
                gone.push(id);
                let old = current.codes()?;
                recorded.extend(changes(id, Some(&old), None, run.as_of, run.policy_version));
            }
            continue;
        };
        new.codes_changed = previous.is_some_and(|p| p.codes);
        if new.codes_changed {
            let old = stored.map(store::Current::codes).transpose()?;
            recorded.extend(changes(
                id,
                old.as_ref(),
                Some(&new.codes),
                run.as_of,
                run.policy_version,
            ));
        }
        if previous.is_none() && range.is_some() {
            kept += 1;
        } else {
            records.push(new);
        }
    }
    let stamp = Stamp {
        policy_version: run.policy_version,
        population_id: run.population_id,
        as_of: run.as_of,
    };
    if let Some((after, last)) = range {
        store::stamp_range(conn, stamp, after, last).await?;
    }
    store::save_classifications(conn, stamp, &records).await?;
    store::delete_classifications(conn, &gone).await?;
    Ok(Recorded {
        stored: records.len() + kept,
        changes: store::append_changes(outbox, tx, recorded).await?,
        write,
    })
}
