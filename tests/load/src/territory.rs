//! `territory`: the registry's feed applied to the territory service's projection in this
//! process, in transactions of `--base-batch` events as its consumer applies them while
//! replaying: every customer's profile (placed in one of 500 territories in three
//! levels), then the purchases (the first of each customer opens its PRIMARY among 2,000
//! sellers; a tenth carry a specialist line).

use std::time::Instant;

use chrono::{Duration, TimeZone, Utc};
use clientela_runtime::Db;
use clientela_territory::cartera::{Change, Standing};
use clientela_territory::locate::{Criteria, Place};
use clientela_territory::migration::Migrator;
use clientela_territory::model::{SellerFields, SellerStatus, TerritoryFields};
use clientela_territory::territories::Territories;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::drive::Stats;

/// Regions under the country, and zones under each region: 1 + 20 + 20 × 24 = 501.
const REGIONS: usize = 20;
const ZONES: usize = 24;
/// Sellers, one zone each; every twentieth also a battery specialist.
const SELLERS: usize = 2_000;

fn criteria(regions: &[String], localities: &[String]) -> Criteria {
    Criteria {
        country_codes: if regions.is_empty() && localities.is_empty() {
            vec!["CL".into()]
        } else {
            Vec::new()
        },
        regions: regions.to_vec(),
        localities: localities.to_vec(),
        postal_code_prefixes: Vec::new(),
    }
}

/// The service over a fresh database at `url` with the model active and the sellers in
/// place.
async fn prepared(url: &str, customers: u64) -> anyhow::Result<Territories> {
    let db = Db::connect(url, &Default::default()).await?;
    db.migrate::<Migrator>("clientela-territory-migrations")
        .await?;
    let territories = Territories::open(db).await?;
    let model = forest(&territories, "Chile", 0).await?;
    staffed(&territories, model, customers).await?;
    Ok(territories)
}

/// A PLANNING model of the 501 territories, each zone's locality `shift` zones on (a
/// redrawn map: 0 is the map the customers are placed on).
async fn forest(territories: &Territories, name: &str, shift: usize) -> anyhow::Result<Uuid> {
    let (model, _) = territories.create_model(name.into(), None, None).await?;
    let add = |code: String, parent: Option<String>, c: Criteria| TerritoryFields {
        display_name: code.clone(),
        parent_code: parent,
        criteria: c,
        priority: 0,
    };
    territories
        .create_territory(
            model.id,
            "CL".into(),
            add("CL".into(), None, criteria(&[], &[])),
        )
        .await?;
    for r in 0..REGIONS {
        let region = format!("R{r}");
        territories
            .create_territory(
                model.id,
                region.clone(),
                add(
                    region.clone(),
                    Some("CL".into()),
                    criteria(&[format!("r{r}")], &[]),
                ),
            )
            .await?;
        for z in 0..ZONES {
            let zone = format!("R{r}-Z{z}");
            territories
                .create_territory(
                    model.id,
                    zone.clone(),
                    add(
                        zone.clone(),
                        Some(region.clone()),
                        criteria(&[], &[format!("l{r}-{}", (z + shift) % ZONES)]),
                    ),
                )
                .await?;
        }
    }
    Ok(model.id)
}

/// The sellers, one zone each, and the model activated.
async fn staffed(territories: &Territories, model: Uuid, customers: u64) -> anyhow::Result<()> {
    // Room for everyone with a margin: the choice is the least loaded, not overflow.
    let capacity = (customers as i64 * 2 / SELLERS as i64).max(10);
    for n in 0..SELLERS {
        let zone = n % (REGIONS * ZONES);
        territories
            .create_seller(
                SellerFields {
                    display_name: format!("Seller {n}"),
                    email: None,
                    token_name: None,
                    specialties: if n % 20 == 0 {
                        vec!["baterias".into()]
                    } else {
                        Vec::new()
                    },
                    territory_codes: vec![format!("R{}-Z{}", zone / ZONES, zone % ZONES)],
                    kam: false,
                    capacity,
                    status: SellerStatus::Active,
                },
                None,
            )
            .await?;
    }
    territories.activate_model(model, None).await?;
    Ok(())
}

/// A redrawn map (every zone's locality moves to the next zone, so every customer moves
/// and its PRIMARY with it) previewed and then applied: (preview, apply), items being
/// customers; with the preview's peak resident set and the moves.
pub async fn realign(territories: &Territories) -> anyhow::Result<(Stats, u64, Stats, u64)> {
    let model = forest(territories, "Chile redrawn", 1).await?;
    // Markers at debug, to aim a profiler at one phase.
    tracing::debug!("realignment preview started");
    let started = Instant::now();
    let preview = territories.preview_realignment(model, 100).await?;
    let previewed = Stats {
        requests: 1,
        items: preview.customers,
        seconds: started.elapsed().as_secs_f64(),
        ..Stats::default()
    };
    let preview_peak = crate::own_rss_kib().1;
    crate::reset_peak_rss();
    tracing::debug!("realignment apply started");
    let started = Instant::now();
    let applied = territories.apply_realignment(&preview.token, None).await?;
    tracing::debug!("realignment applied");
    anyhow::ensure!(
        applied.moved == preview.moved,
        "applied {} moves, previewed {}",
        applied.moved,
        preview.moved
    );
    Ok((
        previewed,
        preview_peak,
        Stats {
            requests: 1,
            items: applied.customers,
            seconds: started.elapsed().as_secs_f64(),
            ..Stats::default()
        },
        applied.moved,
    ))
}

/// Applies the feed of `customers` and `purchases` in transactions of `batch` events;
/// items are events. The service and the customers' ids, for what is measured next.
pub async fn ingest(
    url: &str,
    customers: u64,
    purchases: u64,
    batch: usize,
) -> anyhow::Result<(Stats, Territories, Vec<Uuid>)> {
    let territories = prepared(url, customers).await?;
    let mut rng = StdRng::seed_from_u64(11);
    let ids: Vec<Uuid> = (0..customers)
        .map(|_| Uuid::from_u128(rng.random::<u128>()))
        .collect();
    let start_at = Utc
        .with_ymd_and_hms(2024, 11, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let started = Instant::now();
    let (mut events, mut batches) = (0u64, 0u64);
    let mut pending: Vec<Change> = Vec::with_capacity(batch);
    let mut flush = |pending: Vec<Change>| {
        events += pending.len() as u64;
        batches += 1;
        let territories = territories.clone();
        async move {
            let tx = territories.db().begin_write().await?;
            territories.apply_changes(&tx, pending).await?;
            let committing = Instant::now();
            tx.commit().await?;
            tracing::debug!(
                commit_ms = committing.elapsed().as_millis() as u64,
                "committed"
            );
            anyhow::Ok(())
        }
    };
    for id in &ids {
        let (r, z) = (rng.random_range(0..REGIONS), rng.random_range(0..ZONES));
        pending.push(Change::Profile {
            id: *id,
            standing: Standing::Prospect,
            place: Place::new("CL", &format!("r{r}"), &format!("l{r}-{z}"), ""),
            at: start_at,
        });
        if pending.len() == batch {
            flush(std::mem::take(&mut pending)).await?;
        }
    }
    for n in 0..purchases {
        let customer = ids[rng.random_range(0..ids.len())];
        let at = start_at + Duration::seconds((n * 6) as i64);
        let lines = if rng.random_bool(0.1) {
            vec!["baterias".to_owned(), "lubricantes".to_owned()]
        } else {
            vec!["lubricantes".to_owned()]
        };
        pending.push(Change::Purchase {
            customer,
            at,
            lines,
        });
        if pending.len() == batch {
            flush(std::mem::take(&mut pending)).await?;
        }
    }
    if !pending.is_empty() {
        flush(pending).await?;
    }
    let stats = Stats {
        requests: batches,
        items: events,
        seconds: started.elapsed().as_secs_f64(),
        ..Stats::default()
    };
    Ok((stats, territories, ids))
}
