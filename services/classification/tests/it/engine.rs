//! The engine on its own database: a replayed batch is refused, and the same events
//! under the same policy at the same instant give the same labels whatever the batching
//! or the order they arrived in (a property test over seeded random histories).

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use clientela_classification::engine::{Engine, REGISTRY_FEED};
use clientela_classification::facts::{
    ComplaintFact, PurchaseFact, ReferralFact, Standing, SurveyFact,
};
use clientela_classification::filter::Filter;
use clientela_classification::migration::Migrator;
use clientela_classification::policy::Policy;
use clientela_classification::projection::{Change, Profile};
use clientela_domain::taxonomy::{CustomerKind, SurveyKind};
use clientela_runtime::Db;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

fn as_of() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

async fn engine() -> (Engine, tempfile::TempDir) {
    let (url, dir) = clientela_testkit::sqlite_database();
    let db = Db::connect(&url, &Default::default()).await.unwrap();
    db.migrate::<Migrator>("test").await.unwrap();
    (
        Engine::new(db, &Policy::default(), as_of()).await.unwrap(),
        dir,
    )
}

/// A migrated PostgreSQL database, when the machine has PostgreSQL.
async fn postgres() -> Option<Db> {
    let url = clientela_testkit::postgres_database().await?;
    let db = Db::connect(&url, &Default::default()).await.unwrap();
    db.migrate::<Migrator>("test").await.unwrap();
    Some(db)
}

/// An engine over a fresh PostgreSQL database, when the machine has PostgreSQL.
async fn postgres_engine() -> Option<Engine> {
    let db = postgres().await?;
    Some(Engine::new(db, &Policy::default(), as_of()).await.unwrap())
}

fn profile(id: Uuid) -> Change {
    Change::Profile(Profile {
        id,
        standing: Standing::Prospect,
        kind: CustomerKind::Person,
        region: "Biobío".into(),
        audience_reach: 0,
        public_figure: false,
        decision_role: None,
        high_expectations: false,
        key_account: false,
        cost_to_serve: None,
        updated_at: as_of() - Duration::days(800),
    })
}

fn purchase(customer: Uuid, id: Uuid, days_ago: i64, total: i64) -> Change {
    Change::Purchase {
        customer,
        purchase: PurchaseFact {
            id,
            at: as_of() - Duration::days(days_ago),
            currency_code: "CLP".into(),
            total_minor: total,
            discounted: total % 3 == 0,
            returns: Vec::new(),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_is_refused_and_counts_once() {
    let (engine, _dir) = engine().await;
    replayed_batch_counts_once(engine).await;
}

/// The same on PostgreSQL (the consumers' lock is an advisory lock there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_batch_is_refused_and_counts_once_on_postgres() {
    let Some(engine) = postgres_engine().await else {
        return;
    };
    replayed_batch_counts_once(engine).await;
}

async fn replayed_batch_counts_once(engine: Engine) {
    let c = Uuid::now_v7();
    let batch = vec![profile(c), purchase(c, Uuid::now_v7(), 3, 1_000)];
    let done = engine.ingest(0, 2, batch.clone()).await.unwrap();
    assert_eq!(done.cursor, 2);
    assert_eq!(done.customers, 1);
    let replay = engine.ingest(0, 2, batch).await.unwrap_err();
    assert!(
        matches!(replay, clientela_runtime::Error::Aborted { .. }),
        "{replay:?}"
    );
    assert_eq!(engine.feed_cursor().await.unwrap(), 2);
    // The batch only marked the customer; classifying the marked ones takes it.
    assert!(engine.classification(c).await.is_err());
    let done = engine.classify_pending(as_of()).await.unwrap();
    assert_eq!((done.classified, done.changes > 0), (1, true));
    assert_eq!(
        engine.classify_pending(as_of()).await.unwrap().classified,
        0
    );
    let classified = engine.classification(c).await.unwrap();
    assert_eq!(classified.features.purchases_total, 1);
    assert_eq!(classified.features.revenue_in_window, 1_000);
}

/// A random history of `customers`: purchases, returns after them, surveys,
/// complaints opened and resolved, referrals.
fn history(rng: &mut StdRng, customers: &[Uuid]) -> Vec<Change> {
    let mut out: Vec<Change> = customers.iter().map(|c| profile(*c)).collect();
    let mut purchases = Vec::new();
    for _ in 0..120 {
        let c = customers[rng.random_range(0..customers.len())];
        match rng.random_range(0..10) {
            0..=4 => {
                let id = Uuid::now_v7();
                let days = rng.random_range(0..500);
                let total = rng.random_range(1..50) * 1_000;
                purchases.push((c, id, days, total));
                out.push(purchase(c, id, days, total));
            }
            5 if !purchases.is_empty() => {
                let (c, p, days, total) = purchases[rng.random_range(0..purchases.len())];
                out.push(Change::Return {
                    customer: c,
                    purchase: p,
                    id: Uuid::now_v7(),
                    at: as_of() - Duration::days(rng.random_range(0..=days)),
                    amount_minor: if rng.random_bool(0.5) {
                        total
                    } else {
                        total / 2
                    },
                });
            }
            6 => out.push(Change::Survey {
                customer: c,
                survey: SurveyFact {
                    id: Uuid::now_v7(),
                    at: as_of() - Duration::days(rng.random_range(0..400)),
                    kind: if rng.random_bool(0.5) {
                        SurveyKind::Nps
                    } else {
                        SurveyKind::Csat
                    },
                    score: rng.random_range(1..=5),
                },
            }),
            7 => {
                let complaint = ComplaintFact {
                    id: Uuid::now_v7(),
                    opened_at: as_of() - Duration::days(rng.random_range(10..400)),
                    resolved_at: None,
                };
                out.push(Change::Complaint {
                    customer: c,
                    complaint: complaint.clone(),
                });
                if rng.random_bool(0.5) {
                    out.push(Change::Complaint {
                        customer: c,
                        complaint: ComplaintFact {
                            resolved_at: Some(complaint.opened_at + Duration::days(5)),
                            ..complaint
                        },
                    });
                }
            }
            _ => {
                let referred = customers[rng.random_range(0..customers.len())];
                if referred != c {
                    out.push(Change::Referral {
                        referrer: c,
                        referral: ReferralFact {
                            id: Uuid::now_v7(),
                            referred,
                            at: as_of() - Duration::days(rng.random_range(0..400)),
                        },
                    });
                }
            }
        }
    }
    out
}

/// Ingests `changes` in batches of `size` (classifying the customers each batch touched
/// when `each` is set), then classifies everyone at `as_of`.
async fn classify(changes: &[Change], size: usize, each: bool, customers: &[Uuid]) -> Vec<String> {
    let (engine, _dir) = engine().await;
    let mut after = 0;
    for batch in changes.chunks(size) {
        let last = after + batch.len() as i64;
        engine.ingest(after, last, batch.to_vec()).await.unwrap();
        if each {
            engine.classify_pending(as_of()).await.unwrap();
        }
        after = last;
    }
    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    let mut out = Vec::new();
    for c in customers {
        // A merged customer has none: NOT_FOUND, compared like a classification.
        let got = engine.classification(*c).await;
        out.push(format!("{got:?}"));
    }
    out
}

/// Asserts equal classifications, showing the first customer that differs.
fn same(got: &[String], want: &[String], case: &str) {
    assert_eq!(got.len(), want.len(), "{case}");
    if let Some((g, w)) = got.iter().zip(want).find(|(g, w)| g != w) {
        assert_eq!(g, w, "{case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_events_give_the_same_labels_whatever_the_batching_or_order() {
    for seed in 0..12 {
        let mut rng = StdRng::seed_from_u64(seed);
        let customers: Vec<Uuid> = (0..10).map(|_| Uuid::now_v7()).collect();
        let changes = history(&mut rng, &customers);
        let one_batch = classify(&changes, changes.len(), false, &customers).await;
        let batch_size = rng.random_range(1..20);
        same(
            &classify(&changes, batch_size, true, &customers).await,
            &one_batch,
            &format!("seed {seed}: batches of {batch_size}"),
        );
        // A merge in the middle of a batch: what comes before it is applied first, what
        // comes after it sees the merged history.
        let mut merged = changes.clone();
        merged.push(Change::Merged {
            survivor: customers[0],
            merged: customers[1],
        });
        merged.push(purchase(customers[0], Uuid::now_v7(), 3, 7_000));
        merged.extend(history(&mut rng, &customers[2..]));
        let merged_one_batch = classify(&merged, merged.len(), false, &customers).await;
        same(
            &classify(&merged, batch_size, false, &customers).await,
            &merged_one_batch,
            &format!("seed {seed}: a merge, batches of {batch_size}"),
        );
        assert!(
            merged_one_batch[1].starts_with("Err(NotFound"),
            "seed {seed}: the tombstone is not classified: {}",
            merged_one_batch[1]
        );
        // Another arrival order: shuffled, purchases first (a return needs its purchase).
        let mut shuffled = changes.clone();
        shuffled.shuffle(&mut rng);
        shuffled.sort_by_key(|c| !matches!(c, Change::Purchase { .. }));
        same(
            &classify(&shuffled, 7, seed % 2 == 0, &customers).await,
            &one_batch,
            &format!("seed {seed}: shuffled"),
        );
    }
}

/// On a SQLite file GetClassification reads its row on the calling thread, outside
/// sqlx's pool; ListClassifications reads through the pool. Both give the same result,
/// with its instant, policy version and population.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_read_gives_what_the_pool_reads() {
    let (engine, _dir) = engine().await;
    assert!(
        engine
            .db()
            .sqlite_read(|_| Ok(()))
            .is_some_and(|r| r.is_ok()),
        "a SQLite file has point reads"
    );
    let mut rng = StdRng::seed_from_u64(21);
    let customers: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    let changes = history(&mut rng, &customers);
    engine
        .ingest(0, changes.len() as i64, changes)
        .await
        .unwrap();
    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    let listed = engine.list(&Filter::default(), None, 100).await.unwrap();
    assert_eq!(listed.classifications.len(), customers.len());
    for expected in listed.classifications {
        assert_eq!(
            engine.classification(expected.customer).await.unwrap(),
            expected
        );
    }
    let unknown = engine.classification(Uuid::now_v7()).await.unwrap_err();
    assert!(
        matches!(unknown, clientela_runtime::Error::NotFound { .. }),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_replica_applies_the_feed_at_a_time_on_postgres() {
    use sea_orm::TransactionTrait;
    let Some(db) = postgres().await else {
        return;
    };
    // Two replicas start together: one stores the policy, both go on.
    let policy = Policy::default();
    let (a, b) = tokio::join!(
        Engine::new(db.clone(), &policy, as_of()),
        Engine::new(db.clone(), &policy, as_of()),
    );
    let (engine, _other) = (a.unwrap(), b.unwrap());
    assert_eq!(engine.current_policy().await.unwrap().version, 1);
    // Another replica is in the middle of a batch: it holds the consumers' lock.
    let busy = db.conn().begin().await.unwrap();
    assert!(
        clientela_runtime::db::try_transaction_lock(&busy, REGISTRY_FEED.lock)
            .await
            .unwrap()
    );
    let c = Uuid::now_v7();
    let refused = engine.ingest(0, 1, vec![profile(c)]).await.unwrap_err();
    assert!(
        matches!(
            refused,
            clientela_runtime::Error::Aborted {
                reason: "FEED_BUSY",
                ..
            }
        ),
        "{refused:?}"
    );
    busy.rollback().await.unwrap();
    engine.ingest(0, 1, vec![profile(c)]).await.unwrap();
    assert_eq!(engine.feed_cursor().await.unwrap(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facts_from_before_the_binary_form_are_rebuilt_from_the_feed() {
    use sea_orm::ConnectionTrait;
    use sea_orm_migration::MigratorTrait;
    let (url, _dir) = clientela_testkit::sqlite_database();
    let db = Db::connect(&url, &Default::default()).await.unwrap();
    // A database of the first schema, part way through the feed, facts in JSON.
    Migrator::up(db.conn(), Some(1)).await.unwrap();
    for sql in [
        "INSERT INTO facts (customer_id, body) VALUES (x'0123456789abcdef0123456789abcdef', '{}')",
        "UPDATE feed_cursor SET last_sequence = 42",
        "INSERT INTO classifications (customer_id, policy_version, as_of, region, \
         lifecycle_stage, activity, satisfaction, volume, influence, account_tier, rfm_segment, \
         traits, revenue_in_window, body) VALUES (x'11111111111111111111111111111111', 1, \
         '2026-01-01T00:00:00Z', 'Maule', 'FREQUENT', 'ACTIVE', '', 'HIGH', 'NONE', 'KEY', \
         'CHAMPIONS', ',PRICE_SENSITIVE,', 5, '{}')",
    ] {
        db.conn().execute_unprepared(sql).await.unwrap();
    }
    db.migrate::<Migrator>("test").await.unwrap();
    // The codes a reclassification compares with are filled from the label columns.
    let codes: String = db
        .conn()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "SELECT codes FROM classifications",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "codes")
        .unwrap();
    assert_eq!(
        codes,
        "FREQUENT|ACTIVE||HIGH|NONE|KEY|CHAMPIONS|,PRICE_SENSITIVE,"
    );
    drop(db);
    // A new process on the migrated database, as after an upgrade.
    let db = Db::connect(&url, &Default::default()).await.unwrap();
    let engine = Engine::new(db, &Policy::default(), as_of()).await.unwrap();
    // The engine replays the feed from the start into the new form.
    assert_eq!(engine.feed_cursor().await.unwrap(), 0);
    let c = Uuid::now_v7();
    engine
        .ingest(
            0,
            2,
            vec![profile(c), purchase(c, Uuid::now_v7(), 3, 1_000)],
        )
        .await
        .unwrap();
    engine.classify_pending(as_of()).await.unwrap();
    let classified = engine.classification(c).await.unwrap();
    assert_eq!(classified.features.purchases_total, 1);
    // Results written before results were stored as their inputs still read: the JSON
    // LZ4-compressed in `data`, and before that plain in `body`.
    let json = serde_json::to_string(&classified).unwrap();
    for (data, body) in [
        (
            Some(lz4_flex::compress_prepend_size(json.as_bytes())),
            String::new(),
        ),
        (None, json),
    ] {
        let updated = engine
            .db()
            .conn()
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Sqlite,
                "UPDATE classifications SET inputs = NULL, data = ?, body = ? WHERE customer_id = ?",
                [data.into(), body.into(), c.into()],
            ))
            .await
            .unwrap();
        assert_eq!(updated.rows_affected(), 1);
        assert_eq!(engine.classification(c).await.unwrap(), classified);
    }
}

/// A Reclassify reads and classifies each page ahead, outside the feed lock; a page whose
/// facts the feed changed in the meantime is read again inside it. Whatever the
/// interleaving, once the feed is quiet every result counts every purchase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclassify_while_the_feed_moves_leaves_no_result_behind_the_facts() {
    let (engine, _dir) = engine().await;
    reclassify_while_the_feed_moves(engine).await;
}

/// The same on PostgreSQL: no page is read ahead in one snapshot there, and the feed
/// lock is an advisory lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reclassify_while_the_feed_moves_leaves_no_result_behind_the_facts_on_postgres() {
    let Some(engine) = postgres_engine().await else {
        return;
    };
    reclassify_while_the_feed_moves(engine).await;
}

async fn reclassify_while_the_feed_moves(engine: Engine) {
    // Pages of a thousand: the 2,500 customers span three.
    let engine = engine.with_page(1_000);
    let mut rng = StdRng::seed_from_u64(11);
    let customers: Vec<Uuid> = (0..2_500).map(|_| Uuid::now_v7()).collect();
    let mut expected: std::collections::HashMap<Uuid, i64> = HashMap::new();
    let mut base = Vec::new();
    for c in &customers {
        base.push(profile(*c));
        base.push(purchase(*c, Uuid::now_v7(), 40, 1_000));
        expected.insert(*c, 1);
    }
    let mut cursor = base.len() as i64;
    engine.ingest(0, cursor, base).await.unwrap();
    let mut batches = Vec::new();
    for _ in 0..200 {
        let batch: Vec<Change> = (0..5)
            .map(|_| {
                let c = customers[rng.random_range(0..customers.len())];
                *expected.get_mut(&c).unwrap() += 1;
                purchase(c, Uuid::now_v7(), rng.random_range(1..30), 2_000)
            })
            .collect();
        batches.push(batch);
    }
    let feed = {
        let engine = engine.clone();
        tokio::spawn(async move {
            for batch in batches {
                let last = cursor + batch.len() as i64;
                engine.ingest(cursor, last, batch).await.unwrap();
                cursor = last;
                tokio::task::yield_now().await;
            }
        })
    };
    let done = engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    assert_eq!(done.classified, customers.len() as i64);
    feed.await.unwrap();
    engine.classify_pending(as_of()).await.unwrap();
    for c in &customers {
        let got = engine.classification(*c).await.unwrap();
        assert_eq!(got.features.purchases_total, expected[c], "customer {c}");
    }
}

/// Two Reclassify calls at once (two operators, or two replicas): each page's labels are
/// read ahead, outside the lock; a page whose labels the other wrote in the meantime is
/// read again inside it. Whatever the interleaving, the history records each change once:
/// every change starts from the label the one before it left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reclassifications_at_once_record_each_label_change_once() {
    let (engine, _dir) = engine().await;
    two_reclassifications_at_once(engine).await;
}

/// The same on PostgreSQL, where every page is compared in the database inside the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_reclassifications_at_once_record_each_label_change_once_on_postgres() {
    let Some(engine) = postgres_engine().await else {
        return;
    };
    two_reclassifications_at_once(engine).await;
}

async fn two_reclassifications_at_once(engine: Engine) {
    // Pages of a thousand: the 3,000 customers span three.
    let engine = engine.with_page(1_000);
    let mut rng = StdRng::seed_from_u64(12);
    let customers: Vec<Uuid> = (0..3_000).map(|_| Uuid::now_v7()).collect();
    let mut base = Vec::new();
    for c in &customers {
        base.push(profile(*c));
        for _ in 0..rng.random_range(0..6) {
            base.push(purchase(
                *c,
                Uuid::now_v7(),
                rng.random_range(1..400),
                1_000,
            ));
        }
    }
    engine.ingest(0, base.len() as i64, base).await.unwrap();
    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    // Two runs at once at a later instant (labels never go back in time, so both
    // move forward): every change they record is recorded once.
    let later = Some(as_of() + Duration::days(200));
    let (a, b) = tokio::join!(
        engine.reclassify(later, None, |_| {}),
        engine.reclassify(later, None, |_| {}),
    );
    assert_eq!(a.unwrap().classified, customers.len() as i64);
    assert_eq!(b.unwrap().classified, customers.len() as i64);
    let refused = engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{refused}");
    let history = engine.changes_after(0, 1_000_000).await.unwrap();
    let mut last: HashMap<(Uuid, String, String), String> = HashMap::new();
    for change in &history {
        let dimension = format!("{:?}", change.dimension);
        let key = if dimension == "Trait" {
            // A trait is gained ("" -> T) and lost (T -> ""): alternately.
            let t = format!("{}{}", change.old_label, change.new_label);
            (change.customer, dimension, t)
        } else {
            (change.customer, dimension, String::new())
        };
        let before = last
            .insert(key, change.new_label.clone())
            .unwrap_or_default();
        assert_eq!(before, change.old_label, "{change:?} recorded twice");
    }
    // Both instants left their mark: the later one moved some labels.
    assert!(history.iter().any(|c| !c.old_label.is_empty()));
}

/// A full Reclassify writes only the results that moved; the others are stamped with
/// its instant by page. Every result then reports the later run, with the explanations
/// of that instant (days since the last purchase counted to it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_reclassify_stamps_every_result_it_keeps() {
    let (engine, _dir) = engine().await;
    stamps_every_result_it_keeps(engine).await;
}

/// The same on PostgreSQL (its comparison and range update are its own SQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_reclassify_stamps_every_result_it_keeps_on_postgres() {
    let Some(engine) = postgres_engine().await else {
        return;
    };
    stamps_every_result_it_keeps(engine).await;
}

async fn stamps_every_result_it_keeps(engine: Engine) {
    // Pages of a thousand: the 2,500 customers span three.
    let engine = engine.with_page(1_000);
    let customers: Vec<Uuid> = (0..2_500).map(|_| Uuid::now_v7()).collect();
    let mut base = Vec::new();
    for (n, c) in customers.iter().enumerate() {
        base.push(profile(*c));
        if n % 5 != 0 {
            base.push(purchase(*c, Uuid::now_v7(), 10 + (n % 300) as i64, 1_000));
        }
    }
    engine.ingest(0, base.len() as i64, base).await.unwrap();
    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    let later = as_of() + Duration::days(1);
    let done = engine.reclassify(Some(later), None, |_| {}).await.unwrap();
    assert_eq!(done.classified, customers.len() as i64);
    for (n, c) in customers.iter().enumerate() {
        let got = engine.classification(*c).await.unwrap();
        assert_eq!(got.as_of, later, "customer {n}");
        if n % 5 != 0 {
            let since = format!("{}.00 days", 11 + (n % 300));
            let activity = &got.labels.activity.explanation_en;
            assert!(activity.contains(&since), "customer {n}: {activity}");
        }
    }
}

fn archived(id: Uuid) -> Change {
    let Change::Profile(mut p) = profile(id) else {
        unreachable!()
    };
    p.standing = Standing::Archived;
    p.updated_at = as_of() - Duration::days(1);
    Change::Profile(p)
}

/// TAXONOMY "Population-relative labels must never be false": the company revenue a
/// share is measured against moves with every event (purchases, returns, archives,
/// merges), so a customer who buys after the population was computed is not above
/// 100 %; before the first population the labels that need it are unspecified and the
/// result names none; after it, every result names the one it rests on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_are_of_the_revenue_the_facts_hold_and_results_name_their_population() {
    let (engine, _dir) = engine().await;
    shares_and_populations(engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shares_are_of_the_revenue_the_facts_hold_and_results_name_their_population_on_postgres() {
    let Some(engine) = postgres_engine().await else {
        return;
    };
    shares_and_populations(engine).await;
}

async fn shares_and_populations(engine: Engine) {
    use clientela_classification::store;
    use clientela_domain::taxonomy::AccountTier;
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let pa = Uuid::now_v7();
    let ledger = |engine: &Engine| {
        let engine = engine.clone();
        async move {
            store::company_revenue(engine.db().conn(), &Policy::default(), as_of())
                .await
                .unwrap()
        }
    };
    let moved_bp = |engine: &Engine| {
        let engine = engine.clone();
        async move {
            let standing = engine.population_standing().await.unwrap();
            standing.expect("a population").moved_bp
        }
    };
    let base = vec![
        profile(a),
        purchase(a, pa, 10, 1_000),
        profile(b),
        purchase(b, Uuid::now_v7(), 10, 3_000),
    ];
    engine.ingest(0, 4, base).await.unwrap();
    engine.classify_pending(as_of()).await.unwrap();
    let before = engine.classification(b).await.unwrap();
    assert_eq!(before.population, None);
    assert_eq!(before.labels.volume.label, None);
    assert_eq!(before.labels.volume.rule, "volume.no_population");
    assert_eq!(before.labels.account_tier.rule, "tier.no_population");
    assert!(
        before
            .labels
            .account_tier
            .explanation_en
            .contains("no population computed yet"),
        "{}",
        before.labels.account_tier.explanation_en
    );
    // The share itself is known: it needs no cut-off.
    assert_eq!(
        (before.company_revenue, before.share_of_sales_bp),
        (4_000, 7_500)
    );
    assert!(engine.population_standing().await.unwrap().is_none());

    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    let b1 = engine.classification(b).await.unwrap();
    let population = b1.population.expect("names its population");
    assert_eq!((population.id, population.as_of), (1, as_of()));
    assert_eq!(population.policy_version, 1);
    assert_eq!(b1.labels.account_tier.label, Some(AccountTier::Boss));
    assert_eq!(moved_bp(&engine).await, 0);

    // C buys 6,000 after the population: 60 % of the 10,000 the facts hold, not 150 % of
    // the population's 4,000; banded against that population at once.
    let c_events = vec![profile(c), purchase(c, Uuid::now_v7(), 5, 6_000)];
    engine.ingest(4, 6, c_events).await.unwrap();
    engine.classify_pending(as_of()).await.unwrap();
    let c1 = engine.classification(c).await.unwrap();
    assert_eq!((c1.company_revenue, c1.share_of_sales_bp), (10_000, 6_000));
    assert_eq!(c1.population.map(|p| p.id), Some(1));
    assert_eq!(c1.labels.account_tier.label, Some(AccountTier::Boss));
    let moved = moved_bp(&engine).await;
    assert_eq!(moved, 15_000, "from 4,000 to 10,000");

    // A returns everything and B is archived: both leave the company revenue.
    let a_return = Change::Return {
        customer: a,
        purchase: pa,
        id: Uuid::now_v7(),
        at: as_of() - Duration::days(2),
        amount_minor: 1_000,
    };
    engine
        .ingest(6, 8, vec![a_return, archived(b)])
        .await
        .unwrap();
    assert_eq!(ledger(&engine).await, 6_000);
    // A merge moves revenue between customers and leaves the company's as it was.
    let merge = Change::Merged {
        survivor: a,
        merged: c,
    };
    engine.ingest(8, 9, vec![merge]).await.unwrap();
    assert_eq!(ledger(&engine).await, 6_000);
    engine.classify_pending(as_of()).await.unwrap();
    let survivor = engine.classification(a).await.unwrap();
    assert_eq!(
        (survivor.company_revenue, survivor.share_of_sales_bp),
        (6_000, 10_000)
    );

    // A refresh starts from the same revenue the ledger holds.
    engine.reclassify(None, None, |_| {}).await.unwrap();
    let moved = moved_bp(&engine).await;
    assert_eq!(moved, 0);
    let refreshed = engine.classification(a).await.unwrap();
    assert_eq!(refreshed.population.map(|p| p.id), Some(2));
}

/// Between a SetPolicy and the refresh it starts, the feed's classifications go on under
/// the policy the stored population was computed with: a result never mixes one policy's
/// rules with cut-offs computed under another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_classifies_under_the_policy_of_the_population_until_it_is_refreshed() {
    let (engine, _dir) = engine().await;
    let c = Uuid::now_v7();
    engine
        .ingest(
            0,
            2,
            vec![profile(c), purchase(c, Uuid::now_v7(), 3, 1_000)],
        )
        .await
        .unwrap();
    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    let candidate = Policy {
        description: "a shorter window".into(),
        window_days: 200,
        ..Policy::default()
    };
    assert_eq!(
        engine.set_policy(&candidate, None).await.unwrap().version,
        2
    );
    engine
        .ingest(2, 3, vec![purchase(c, Uuid::now_v7(), 2, 500)])
        .await
        .unwrap();
    engine.classify_pending(as_of()).await.unwrap();
    let got = engine.classification(c).await.unwrap();
    assert_eq!(got.policy_version, 1);
    assert_eq!(got.population.map(|p| p.policy_version), Some(1));
    engine.reclassify(None, None, |_| {}).await.unwrap();
    let got = engine.classification(c).await.unwrap();
    assert_eq!(got.policy_version, 2);
    assert_eq!(
        got.population.map(|p| (p.id, p.policy_version)),
        Some((2, 2))
    );
}

/// An engine upgraded with facts stored before the company revenue was kept fills the
/// ledger from them once at start-up, instead of replaying the feed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_engine_fills_the_company_revenue_from_its_facts() {
    use sea_orm::ConnectionTrait;
    let (engine, _dir) = engine().await;
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    let events = vec![
        profile(a),
        purchase(a, Uuid::now_v7(), 3, 1_000),
        profile(b),
        purchase(b, Uuid::now_v7(), 30, 2_500),
        purchase(b, Uuid::now_v7(), 400, 9_000),
    ];
    engine.ingest(0, 5, events).await.unwrap();
    let policy = Policy::default();
    let conn = engine.db().conn();
    let kept = clientela_classification::store::company_revenue(conn, &policy, as_of())
        .await
        .unwrap();
    assert_eq!(
        kept, 3_500,
        "the purchase 400 days ago is outside the window"
    );
    for sql in [
        "DELETE FROM company_revenue",
        "UPDATE company_revenue_ledger SET complete = FALSE",
    ] {
        conn.execute_unprepared(sql).await.unwrap();
    }
    let again = Engine::new(engine.db().clone(), &policy, as_of())
        .await
        .unwrap();
    let conn = again.db().conn();
    let filled = clientela_classification::store::company_revenue(conn, &policy, as_of())
        .await
        .unwrap();
    assert_eq!(filled, kept);
    assert!(
        clientela_classification::store::company_revenue_complete(conn)
            .await
            .unwrap()
    );
}

/// A filter on a feature the database does not hold is evaluated on each stored result,
/// at most FILTER_SCAN_MAX per call: a listing past that many non-matching results
/// returns a short (here empty) page that says where to resume, and the next finds the
/// matches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_on_stored_features_reads_a_bounded_number_of_results_per_call() {
    use clientela_classification::engine::FILTER_SCAN_MAX;
    let (engine, _dir) = engine().await;
    let mut customers: Vec<Uuid> = (0..FILTER_SCAN_MAX + 3).map(|_| Uuid::now_v7()).collect();
    customers.sort();
    let mut events = Vec::new();
    for (n, c) in customers.iter().enumerate() {
        events.push(profile(*c));
        events.push(purchase(*c, Uuid::now_v7(), 20, 1_000));
        if n as u64 >= FILTER_SCAN_MAX {
            events.push(purchase(*c, Uuid::now_v7(), 10, 1_000));
        }
    }
    engine.ingest(0, events.len() as i64, events).await.unwrap();
    engine
        .reclassify(Some(as_of()), None, |_| {})
        .await
        .unwrap();
    let filter = Filter::parse("purchases_total >= 2", "filter").unwrap();
    assert!(!filter.is_exact());
    let first = engine.list(&filter, None, 50).await.unwrap();
    assert!(first.classifications.is_empty());
    let resume = first.resume_after.expect("a next page");
    assert_eq!(resume, customers[FILTER_SCAN_MAX as usize - 1]);
    let second = engine.list(&filter, Some(resume), 50).await.unwrap();
    let found: Vec<Uuid> = second.classifications.iter().map(|c| c.customer).collect();
    assert_eq!(found, customers[FILTER_SCAN_MAX as usize..].to_vec());
    assert_eq!(second.resume_after, None);
    // A Reclassify filtered on the same feature classifies only those three again.
    let done = engine
        .reclassify(Some(as_of()), Some(&filter), |_| {})
        .await
        .unwrap();
    assert_eq!(done.classified, 3);
}
