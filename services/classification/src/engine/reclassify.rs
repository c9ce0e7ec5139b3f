//! How a Reclassify pages: the population computed first, then each page read and
//! classified on another thread while the one before it is written; and PreviewPolicy,
//! the same pages with nothing written.

use super::*;
use crate::revenue::window_hours;

/// `as_of` if it is not before the stored population's instant.
fn not_before(as_of: DateTime<Utc>, stored: Option<DateTime<Utc>>) -> Result<DateTime<Utc>, Error> {
    match stored {
        Some(stored) if as_of < stored => Err(Error::precondition(
            "AS_OF_BEFORE_STORED",
            format!(
                "as_of {} is before the stored labels' {}: labels never go back in time; \
                 PreviewPolicy shows a past instant",
                as_of.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                stored.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
        )),
        _ => Ok(as_of),
    }
}

/// The stored population's instant and how far the company revenue has moved from the
/// one it was stored with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Standing {
    pub as_of: DateTime<Utc>,
    /// Basis points of the revenue it was stored with (from none to some: `i64::MAX`).
    pub moved_bp: i64,
    /// It was stored with no company revenue and there is some now: it ranks no buyer
    /// with revenue, so a buyer's volume band and tier wait for the next one.
    pub from_zero: bool,
}

impl Standing {
    pub fn new(as_of: DateTime<Utc>, baseline: i64, current: i64) -> Self {
        let moved = i128::from(current) - i128::from(baseline);
        let moved_bp = match baseline {
            0 if moved == 0 => 0,
            0 => i64::MAX,
            base => {
                let bp = moved.abs() * i128::from(crate::policy::BP) / i128::from(base).abs();
                i64::try_from(bp).unwrap_or(i64::MAX)
            }
        };
        Standing {
            as_of,
            moved_bp,
            from_zero: baseline == 0 && current != 0,
        }
    }
}

impl Engine {
    /// The last population and the policy version it was computed under, for
    /// classifying at `as_of`: a result never mixes a policy with cut-offs computed
    /// under another (after a SetPolicy, until its refresh stores a population, the
    /// previous version goes on). With no population yet, `current`.
    pub(super) async fn run_at(
        &self,
        conn: &impl Conn,
        current: Arc<PolicyVersion>,
        as_of: DateTime<Utc>,
    ) -> Result<OwnedRun, Error> {
        let Some((population_id, snapshot)) = store::population(conn).await? else {
            return Ok(OwnedRun {
                policy: current,
                population: None,
                population_id: 0,
                as_of,
                revenue: Mutex::default(),
            });
        };
        let policy = if snapshot.policy_version == current.version {
            current
        } else {
            self.policy(snapshot.policy_version).await?
        };
        Ok(OwnedRun {
            policy,
            population: Some(Arc::new(snapshot)),
            population_id,
            as_of,
            revenue: Mutex::default(),
        })
    }

    /// The instant of the stored population, the latest the stored labels rest on.
    async fn stored_as_of(&self) -> Result<Option<DateTime<Utc>>, Error> {
        Ok(store::population(self.db.conn())
            .await?
            .map(|(_, p)| p.as_of))
    }

    /// Where the stored population stands against the company revenue now (under the
    /// current policy); None before the first population.
    pub async fn population_standing(&self) -> Result<Option<Standing>, Error> {
        let Some((_, snapshot)) = store::population(self.db.conn()).await? else {
            return Ok(None);
        };
        let policy = self.current_policy().await?;
        let now = clientela_runtime::time::now();
        let current = store::company_revenue(self.db.conn(), &policy.policy, now).await?;
        Ok(Some(Standing::new(
            snapshot.as_of,
            snapshot.baseline_revenue(),
            current,
        )))
    }

    /// FAILED_PRECONDITION if a Reclassify at `as_of` would take labels back in time;
    /// for the API to answer before it starts streaming ([`Engine::reclassify`] checks
    /// again under the feed lock).
    pub async fn check_reclassify_at(&self, as_of: DateTime<Utc>) -> Result<(), Error> {
        not_before(as_of, self.stored_as_of().await?).map(|_| ())
    }

    /// Recomputes the population at `as_of` (`None`: now, or the last population's
    /// instant if that is later) and classifies every customer against it (or only those
    /// `only` accepts), reporting progress after each page. Stored labels never go back
    /// in time: an `as_of` before the last population's is FAILED_PRECONDITION (asking
    /// about the past is what [`Engine::preview`] is for).
    pub async fn reclassify(
        &self,
        as_of: Option<DateTime<Utc>>,
        only: Option<&Filter>,
        mut progress: impl FnMut(Progress),
    ) -> Result<Progress, Error> {
        let started = Instant::now();
        let stored = self.stored_as_of().await?;
        let as_of = match as_of {
            Some(at) => not_before(at, stored)?,
            None => {
                let now = clientela_runtime::time::now();
                stored.map_or(now, |s| s.max(now))
            }
        };
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
        // Populations are numbered after the last one: two runs at once (two replicas)
        // take the next number in turn, not the same one (PostgreSQL; SQLite's write gate
        // already serializes them).
        clientela_runtime::db::transaction_lock(tx.conn(), FEED_LOCK).await?;
        // Again inside the lock: another run may have stored a later one meanwhile.
        let stored = store::population(tx.conn()).await?.map(|(_, p)| p.as_of);
        not_before(as_of, stored)?;
        let mut population = population;
        let revenue = store::company_revenue(tx.conn(), &policy.policy, as_of).await?;
        let cursor = store::feed_cursor(tx.conn()).await?;
        population.company_revenue = Some(revenue);
        let population_id = store::save_population(tx.conn(), &population).await?;
        tx.commit().await?;
        let owned = Arc::new(OwnedRun {
            policy,
            population: Some(Arc::new(population)),
            population_id,
            as_of,
            revenue: Mutex::new(Some((cursor, revenue))),
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
            let tx = self.db.begin_write().await?;
            let conn = tx.conn();
            // Serialized with feed batches and other reclassifications (other replicas,
            // Reclassify calls): what each page replaces is read inside the lock, or read
            // ahead and found unchanged inside it, so a change is never recorded twice.
            clientela_runtime::db::transaction_lock(conn, FEED_LOCK).await?;
            let cursor = store::feed_cursor(conn).await?;
            let (classified, whole, revenue) = if cursor == page.cursor {
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
                (page.classified, whole, page.company_revenue)
            } else {
                // The feed moved on since the page was read: its facts are read again
                // inside the lock (customers the feed added meanwhile stay marked, and are
                // classified once it is quiet; their results are not the page's).
                let ids: Vec<Uuid> = page.classified.iter().map(|c| c.id).collect();
                let mut facts = store::load_facts(conn, &ids).await?;
                facts.sort_unstable_by_key(|f| f.id);
                let revenue = owned.company_revenue(conn, cursor).await?;
                (
                    classify_all(conn, &owned.borrow(revenue), &facts).await?,
                    None,
                    revenue,
                )
            };
            let run = owned.borrow(revenue);
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
    pub(super) async fn compute_population(
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
            company_revenue: None,
        })
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
        // A past instant: the company revenue is the tally's, exact at `as_of` (the
        // ledger knows every return made since).
        let now_run = Run {
            policy: &current.policy,
            policy_version: current.version,
            population: Some(&now_pop),
            population_id: 0,
            company_revenue: now_pop.population.revenue_in_window,
            as_of,
        };
        let cand_run = Run {
            policy: candidate,
            policy_version: 0,
            population: Some(&cand_pop),
            population_id: 0,
            company_revenue: cand_pop.population.revenue_in_window,
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
}

/// Walks every customer's facts in id order, a page at a time, with when the customers
/// each page referred first bought (by `as_of`). The next page is read while `visit`
/// works on one.
pub(super) async fn each_page(
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
        let page = store::read_facts_page(&db, after, size).await?;
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

/// A page of customers read and classified ahead of its transaction.
pub(super) struct Prepared {
    /// The feed cursor read before the facts (or with them): when it has not moved by the
    /// time the page is written, the facts were current.
    pub(super) cursor: i64,
    /// The company revenue read with the facts (after the cursor), which their shares
    /// are measured against.
    pub(super) company_revenue: i64,
    /// The page's last customer.
    pub(super) last: Uuid,
    /// Its customers, classified.
    pub(super) classified: Vec<Classified>,
    /// Their results compared with the stored ones, when read together (SQLite).
    pub(super) compared: Option<Compared>,
}

/// A page's new results compared with the stored ones, read in one snapshot.
pub(super) struct Compared {
    /// [`store::classification_writes`] in that snapshot.
    pub(super) writes: i64,
    /// The customers whose results moved (as [`store::differing`] returns them).
    pub(super) replaced: HashMap<Uuid, store::Replaced>,
}

/// Reads the page of customers after `after` and classifies them (None: no more). From
/// a SQLite file the stored results are read in the same snapshot and compared here,
/// off the writer's path.
pub(super) async fn prepare(
    db: Db,
    run: Arc<OwnedRun>,
    after: Option<Uuid>,
    size: u64,
) -> Result<Option<Prepared>, Error> {
    let conn = db.conn();
    let policy = &run.policy.policy;
    let window = (
        policy.currency_code.clone(),
        window_hours(policy, run.as_of),
    );
    let known = *run.revenue.lock().map_err(poisoned)?;
    let (cursor, revenue, page, stored) =
        match store::read_page_with_results(&db, after, size, window, known).await {
            Some(page) => {
                let page = page?;
                run.remember_revenue(page.cursor, page.company_revenue);
                let stored = Some((page.writes, page.stored));
                (page.cursor, page.company_revenue, page.facts, stored)
            }
            None => {
                let cursor = store::feed_cursor(conn).await?;
                let revenue = run.company_revenue(conn, cursor).await?;
                let facts = store::facts_page(conn, after, size).await?;
                (cursor, revenue, facts, None)
            }
        };
    let Some(last) = page.last().map(|f| f.id) else {
        return Ok(None);
    };
    let classified = classify_all(conn, &run.borrow(revenue), &page).await?;
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
        company_revenue: revenue,
        last,
        classified,
        compared,
    }))
}
