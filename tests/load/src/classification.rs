//! The classification scenarios, on a generated base of customers and purchases:
//! `classification-ingest` applies the feed's changes to the engine in this process
//! (events into the projection, in batches as the consumer does), then a full Reclassify
//! is timed, then GetClassification is driven over gRPC against a server on the same
//! database. `--csv` also writes the purchases for `scripts/rfm_abc.py` (DuckDB, pandas).

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, Duration, TimeZone, Utc};
use clientela_classification::engine::Engine;
use clientela_classification::facts::{PurchaseFact, Standing};
use clientela_classification::migration::Migrator;
use clientela_classification::policy::Policy;
use clientela_classification::projection::{Change, Profile};
use clientela_domain::taxonomy::CustomerKind;
use clientela_runtime::Db;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sea_orm::ConnectionTrait as _;
use uuid::Uuid;

use crate::drive::Stats;

/// The instant the base is classified at.
pub fn as_of() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Days of history.
const DAYS: i64 = 730;

/// The generated base: `customers` ids and `purchases` spread over two years.
pub struct Base {
    /// Customer ids.
    pub customers: Vec<Uuid>,
    /// Purchases to generate.
    pub purchases: u64,
    /// Seed.
    pub seed: u64,
}

impl Base {
    /// A base of `customers` with `purchases` in all.
    pub fn new(customers: u64, purchases: u64, seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let customers = (0..customers)
            .map(|_| Uuid::from_u128(rng.random::<u128>()))
            .collect();
        Self {
            customers,
            purchases,
            seed,
        }
    }

    /// The feed in order, a batch at a time: every customer's profile, then the
    /// purchases day by day (random customers, amounts and discounts). `visit` gets each
    /// batch; the purchases also go to `csv` if given.
    pub async fn feed<F, Fut>(
        &self,
        batch: usize,
        mut csv: Option<&mut dyn Write>,
        mut visit: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut(Vec<Change>) -> Fut,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let mut rng = StdRng::seed_from_u64(self.seed + 1);
        let start = as_of() - Duration::days(DAYS);
        let mut pending: Vec<Change> = Vec::with_capacity(batch);
        for id in &self.customers {
            pending.push(Change::Profile(Profile {
                id: *id,
                standing: Standing::Prospect,
                kind: CustomerKind::Person,
                region: format!("R{}", id.as_u128() % 16),
                audience_reach: 0,
                public_figure: false,
                decision_role: None,
                high_expectations: false,
                key_account: false,
                cost_to_serve: None,
                updated_at: start,
            }));
            if pending.len() == batch {
                visit(std::mem::take(&mut pending)).await?;
            }
        }
        if let Some(out) = csv.as_deref_mut() {
            writeln!(out, "customer_id,occurred_at,amount_minor")?;
        }
        let per_day = self.purchases / DAYS as u64;
        let mut made = 0;
        for day in 0..DAYS {
            let today = if day == DAYS - 1 {
                self.purchases - made
            } else {
                per_day
            };
            for n in 0..today {
                let customer = self.customers[rng.random_range(0..self.customers.len())];
                let at = start + Duration::days(day) + Duration::seconds((n % 86_400) as i64);
                let total = rng.random_range(1..200) * 1_000;
                if let Some(out) = csv.as_deref_mut() {
                    writeln!(out, "{customer},{},{total}", at.to_rfc3339())?;
                }
                pending.push(Change::Purchase {
                    customer,
                    purchase: PurchaseFact {
                        id: Uuid::from_u128(rng.random::<u128>()),
                        at,
                        currency_code: "CLP".into(),
                        total_minor: total,
                        discounted: rng.random_bool(0.2),
                        returns: Vec::new(),
                    },
                });
                if pending.len() == batch {
                    visit(std::mem::take(&mut pending)).await?;
                }
            }
            made += today;
        }
        if !pending.is_empty() {
            visit(pending).await?;
        }
        Ok(())
    }
}

/// An engine over a fresh, migrated database at `url`.
pub async fn engine(url: &str) -> anyhow::Result<Engine> {
    let db = Db::connect(url, &Default::default()).await?;
    db.migrate::<Migrator>("clientela-classification-migrations")
        .await?;
    Ok(Engine::new(db, &Policy::default(), as_of()).await?)
}

/// Writes a copy of the engine's SQLite database to `path` (`VACUUM INTO`: consistent,
/// and compact).
pub async fn save_copy(engine: &Engine, path: &Path) -> anyhow::Result<()> {
    let target = path
        .to_str()
        .context("the path is not UTF-8")?
        .replace('\'', "''");
    engine
        .db()
        .conn()
        .execute_unprepared(&format!("VACUUM INTO '{target}'"))
        .await?;
    // Written back now, not by the kernel during the scenarios measured next.
    std::fs::File::open(path)?.sync_all()?;
    Ok(())
}

/// Applies the base's feed in batches of `batch`; items are events.
pub async fn ingest(
    engine: &Engine,
    base: &Base,
    batch: usize,
    csv: Option<&Path>,
) -> anyhow::Result<Stats> {
    let mut file = match csv {
        Some(path) => Some(std::io::BufWriter::new(std::fs::File::create(path)?)),
        None => None,
    };
    let start = Instant::now();
    let mut after = 0i64;
    let mut events = 0u64;
    let mut batches = 0u64;
    base.feed(
        batch,
        file.as_mut().map(|f| f as &mut dyn Write),
        |changes| {
            let last = after + changes.len() as i64;
            let from = after;
            after = last;
            events += changes.len() as u64;
            batches += 1;
            async move {
                engine.ingest(from, last, changes).await?;
                Ok(())
            }
        },
    )
    .await?;
    Ok(Stats {
        requests: batches,
        items: events,
        seconds: start.elapsed().as_secs_f64(),
        ..Stats::default()
    })
}

/// A full Reclassify `days` after [`as_of`]; items are customers.
pub async fn reclassify(engine: &Engine, days: i64) -> anyhow::Result<Stats> {
    let start = Instant::now();
    let done = engine
        .reclassify(Some(as_of() + Duration::days(days)), None, |_| {})
        .await?;
    Ok(Stats {
        requests: 1,
        items: u64::try_from(done.classified).unwrap_or(0),
        seconds: start.elapsed().as_secs_f64(),
        ..Stats::default()
    })
}
