//! Reads: a customer's classification rendered with the population it rests on,
//! listings, distributions, transitions and the change feed.

use super::*;
use crate::classification::Codes;
use crate::filter::Subject;

/// Results a listing reads per call, at most, when its filter names features the
/// database does not hold (each is decoded and evaluated).
pub const FILTER_SCAN_MAX: u64 = 10_000;
/// Of those, read per query.
const FILTER_SCAN_PAGE: u64 = 1_000;

/// A page of [`Engine::list`].
#[derive(Debug, Default)]
pub struct Listed {
    pub classifications: Vec<Classification>,
    /// Where the next page starts (None: no more).
    pub resume_after: Option<Uuid>,
}

impl Engine {
    /// The registry sequence up to which every event's customers are classified (as
    /// stored, so any replica reads the same).
    pub async fn classified_through(&self) -> Result<i64, Error> {
        let stored = store::classified_through(self.db.conn()).await?;
        let mut known = self.classified.lock().map_err(poisoned)?;
        *known = (known.0.max(stored), Instant::now());
        Ok(known.0)
    }

    /// [`Engine::classified_through`] as last read, if that was recent and reached `min`.
    pub fn classified_through_cached(&self, min: i64) -> Option<i64> {
        let known = self.classified.lock().ok()?;
        (known.0 >= min && known.1.elapsed() < CLASSIFIED_FRESH).then_some(known.0)
    }

    /// The current classification of `customer`; NOT_FOUND when the engine has none
    /// (unknown, archived or merged).
    pub async fn classification(&self, customer: Uuid) -> Result<Classification, Error> {
        let stored = store::read_classification(&self.db, customer).await?;
        let stored = stored.ok_or_else(|| Error::NotFound {
            resource: "classification",
            name: format!("customers/{customer}"),
        })?;
        self.render(stored).await
    }

    /// A stored classification, with its explanations: the rules run again on its
    /// inputs, under its policy version and population, at its instant.
    pub(super) async fn render(&self, stored: Stored) -> Result<Classification, Error> {
        match stored {
            Stored::Rendered(c) => Ok(*c),
            Stored::Inputs {
                customer,
                policy_version,
                population_id,
                company_revenue,
                as_of,
                region,
                inputs,
            } => {
                let policy = self.policy(policy_version).await?;
                let population = self.population(population_id).await?;
                let run = Run {
                    policy: &policy.policy,
                    policy_version,
                    population: population.as_deref(),
                    population_id,
                    // Stored before the ledger was kept: measured against the population's.
                    company_revenue: company_revenue.unwrap_or_else(|| {
                        population
                            .as_ref()
                            .map_or(0, |p| p.population.revenue_in_window)
                    }),
                    as_of,
                };
                Ok(run.render(customer, &region, &inputs))
            }
        }
    }

    /// Population `id` (0, or one no longer stored: none).
    pub(super) async fn population(
        &self,
        id: i64,
    ) -> Result<Option<Arc<PopulationSnapshot>>, Error> {
        // Populations never change once stored, so a read one is kept.
        if let Some(p) = self.populations.lock().map_err(poisoned)?.get(&id) {
            return Ok(p.clone());
        }
        let p = match id {
            0 => None,
            id => store::population_by_id(self.db.conn(), id)
                .await?
                .map(Arc::new),
        };
        self.populations
            .lock()
            .map_err(poisoned)?
            .insert(id, p.clone());
        Ok(p)
    }

    /// Up to `limit` classifications passing `filter`, after customer `after`. A filter
    /// the database applies whole reads one page; one on features it does not hold reads
    /// on, evaluating each result, until the page is full or [`FILTER_SCAN_MAX`] results
    /// were read (the listing then resumes after the last read, AIP-158: a page may be
    /// short and still have a next one).
    pub async fn list(
        &self,
        filter: &Filter,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Listed, Error> {
        let conn = self.db.conn();
        let mut listed = Listed::default();
        if filter.is_exact() {
            for stored in store::list_classifications(conn, filter, after, limit).await? {
                listed.classifications.push(self.render(stored).await?);
            }
            if listed.classifications.len() as u64 == limit {
                listed.resume_after = listed.classifications.last().map(|c| c.customer);
            }
            return Ok(listed);
        }
        let (mut cursor, mut scanned) = (after, 0);
        loop {
            let read = FILTER_SCAN_PAGE.min(FILTER_SCAN_MAX - scanned);
            let page = store::list_classifications(conn, filter, cursor, read).await?;
            scanned += page.len() as u64;
            let full = page.len() as u64 == read;
            for stored in page {
                let c = self.render(stored).await?;
                cursor = Some(c.customer);
                let codes = Codes::of(&c.labels);
                let subject = Subject {
                    region: &c.region,
                    codes: &codes,
                    features: &c.features,
                    share_of_sales_bp: c.share_of_sales_bp,
                    company_revenue: c.company_revenue,
                };
                if filter.matches(&subject) {
                    listed.classifications.push(c);
                    if listed.classifications.len() as u64 == limit {
                        listed.resume_after = cursor;
                        return Ok(listed);
                    }
                }
            }
            if !full {
                return Ok(listed);
            }
            if scanned >= FILTER_SCAN_MAX {
                listed.resume_after = cursor;
                return Ok(listed);
            }
        }
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
