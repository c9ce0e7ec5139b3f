//! The registry's feed into the facts: the engine as the shared consumer's projection,
//! and the pass that classifies the customers the feed touched.

use super::*;

impl Engine {
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
                // Nothing pending under the feed lock: every event the facts hold is
                // classified, which reads waiting for a sequence look for. Ended here
                // rather than by the drop, whose end (and the release of PostgreSQL's
                // feed lock) runs later, on a task of the pool's.
                let cursor = store::feed_cursor(conn).await?;
                store::mark_classified_through(conn, cursor).await?;
                tx.commit().await?;
                return Ok(done);
            };
            let facts = store::load_facts(conn, &ids).await?;
            let run = self.run_at(conn, policy, as_of).await?;
            let revenue = store::company_revenue(conn, &run.policy.policy, as_of).await?;
            let recorded =
                classify_and_record(&tx, &self.changes, &run.borrow(revenue), &facts).await?;
            store::clear_pending(conn, None, last).await?;
            tx.commit().await?;
            done.classified += recorded.stored as i64;
            done.changes += recorded.changes.len() as i64;
        }
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
            clientela_runtime::db::transaction_lock(conn, FEED_LOCK).await?;
            if let Some(earliest) = events.iter().filter_map(Change::instant).min() {
                store::lower_horizon(conn, earliest).await?;
            }
            let mut marked = 0;
            let mut run = Vec::new();
            let mut revenue = RevenueDelta::default();
            for change in events {
                if change.is_merge() {
                    marked += apply_run(conn, std::mem::take(&mut run), &mut revenue).await?;
                    marked += apply_merge(conn, change, &mut revenue).await?;
                } else {
                    run.push(change);
                }
            }
            marked += apply_run(conn, run, &mut revenue).await?;
            store::add_company_revenue(conn, revenue).await?;
            Ok(marked)
        })
    }
}

/// Customers whose facts [`apply_run`] reads and writes in one go.
pub(super) const PROJECTION_SLICE: usize = 5_000;

/// Applies `changes` (no merge among them) a slice of customers at a time, in id order,
/// each customer's changes in feed order, adding what they move to `revenue`; returns
/// how many customers were marked.
pub(super) async fn apply_run(
    conn: &impl Conn,
    changes: Vec<Change>,
    revenue: &mut RevenueDelta,
) -> Result<usize, Error> {
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
            revenue.apply(f, change);
        }
        let changed: Vec<&CustomerFacts> = ids.iter().filter_map(|id| facts.get(id)).collect();
        marked += save_and_mark(conn, changed).await?;
    }
    Ok(marked)
}

/// Applies a merge, with every customer it touches loaded first, adding what it moves to
/// `revenue` (the tombstone's purchases leave with it; the survivor's arrive).
pub(super) async fn apply_merge(
    conn: &impl Conn,
    change: Change,
    revenue: &mut RevenueDelta,
) -> Result<usize, Error> {
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
    for f in work.loaded() {
        revenue.add(f, -1);
    }
    work.apply(change);
    for f in work.loaded() {
        revenue.add(f, 1);
    }
    save_and_mark(conn, work.changed().collect()).await
}

/// Writes `changed` (in id order) and marks them, and the customers who referred them
/// (a first purchase changes their converted referrals), to be classified again; returns
/// how many were marked.
pub(super) async fn save_and_mark(
    conn: &impl Conn,
    changed: Vec<&CustomerFacts>,
) -> Result<usize, Error> {
    store::save_facts(conn, changed.iter().copied()).await?;
    let mut touched: BTreeSet<Uuid> = changed.iter().map(|f| f.id).collect();
    touched.extend(changed.iter().flat_map(|f| f.referred_by.iter().copied()));
    let marked = touched.len();
    store::mark_pending(conn, touched).await?;
    Ok(marked)
}
