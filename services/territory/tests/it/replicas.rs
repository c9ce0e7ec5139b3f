//! Two replicas of the territory service on one PostgreSQL database, both following one
//! registry, while manual commands race the feed on either: every buyer still has
//! exactly one PRIMARY at every instant, intervals never overlap, a pin set while the
//! feed runs stands, both replicas answer alike, and the change feed holds every change
//! once, gap-free.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::cartera::{activate, add_seller, buy, coverage, coverage_when, customer_at, history};
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

/// Pins `customer` to `seller` as its PRIMARY as soon as the service knows it has bought
/// (the feed may not have brought the purchase yet), within 15 s.
async fn pin_when_bought(client: &mut Client, customer: &str, seller: &str) -> pb::Assignment {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let tried = client
            .assign_customer(pb::AssignCustomerRequest {
                customer: customer.into(),
                seller: seller.into(),
                role: pb::AssignmentRole::Primary as i32,
                reason: "the customer asked for Beto".into(),
                pin: true,
                request_id: format!("pin-{customer}"),
                ..Default::default()
            })
            .await;
        match tried {
            Ok(done) => return done.into_inner().assignment.unwrap(),
            // Not brought by the feed yet, or its purchase not yet: the feed is behind.
            Err(e) if matches!(e.code(), Code::NotFound | Code::FailedPrecondition) => {
                assert!(tokio::time::Instant::now() < deadline, "{e:?}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("pinning {customer}: {e:?}"),
        }
    }
}

fn seconds(t: &Option<prost_types::Timestamp>) -> Option<(i64, i32)> {
    t.as_ref().map(|t| (t.seconds, t.nanos))
}

/// Every change on `client`'s WatchAssignmentChanges, once no more comes for a second.
pub async fn changes(client: &mut Client) -> Vec<pb::AssignmentChange> {
    let mut watch = client
        .watch_assignment_changes(pb::WatchAssignmentChangesRequest {
            after_sequence: 0,
            max_batch_size: 5000,
        })
        .await
        .unwrap()
        .into_inner();
    let mut out = Vec::new();
    while let Ok(batch) = tokio::time::timeout(Duration::from_secs(1), watch.message()).await {
        out.extend(batch.unwrap().unwrap().changes);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_one_postgresql_race_manual_commands_against_the_feed() {
    let Some(app) = spawn_app(clientela_testkit::Engine::Postgres).await else {
        return;
    };
    let replica = spawn_replica(&app).await;
    let (mut a, mut b, mut registry) = (
        app.client.clone(),
        replica.client.clone(),
        app.registry.clone(),
    );
    let model = chile_2027(&mut a).await;
    let ana = add_seller(&mut a, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
    let beto = add_seller(&mut b, seller("Beto Soto", "beto", &["CL-V"], &[])).await;
    let elena = add_seller(&mut b, seller("Elena Paz", "elena", &["CL-RM"], &[])).await;
    activate(&mut b, &model).await;

    // Forty buyers on the coast and in Santiago; every fifth is pinned to Beto by hand on
    // replica B while both replicas follow the feed.
    let mut buyers = Vec::new();
    let mut pins = Vec::new();
    for i in 0..40 {
        let (region, locality) = if i % 2 == 0 {
            ("Región de Valparaíso", "Viña del Mar")
        } else {
            ("Región Metropolitana", "Providencia")
        };
        let c = customer_at(&mut registry, &format!("Cliente {i}"), region, locality).await;
        buy(&mut registry, &c, &format!("o-{i}"), 3, &["lubricantes"]).await;
        if i % 5 == 0 {
            let (mut b, c, beto) = (b.clone(), c.clone(), beto.clone());
            pins.push(tokio::spawn(async move {
                pin_when_bought(&mut b, &c, &beto).await
            }));
        }
        buyers.push(c);
    }
    // A transfer on replica A races the feed too: Elena's Santiago customers so far go
    // to Beto, who does not cover Santiago, so by name.
    let transfer = a
        .transfer_cartera(pb::TransferCarteraRequest {
            seller: elena.clone(),
            to_seller: beto.clone(),
            reason: "Elena is on holiday".into(),
            request_id: "holiday-1".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut pinned = BTreeMap::new();
    for pin in pins {
        let p = pin.await.unwrap();
        assert_eq!(p.seller, beto);
        pinned.insert(p.customer.clone(), p);
    }

    // Both replicas answer alike once the feed is through.
    for c in &buyers {
        let on_a = coverage_when(&mut a, c, |c| c.primary.is_some()).await;
        let on_b = coverage_when(&mut b, c, |got| got.primary == on_a.primary).await;
        let held = |c: &pb::GetCoverageResponse| {
            (
                c.territory_path.clone(),
                c.primary.clone(),
                c.specialists.clone(),
                c.kam.clone(),
            )
        };
        assert_eq!(held(&on_a), held(&on_b), "{c}");
        let primary = on_a.primary.unwrap();
        if pinned.contains_key(c) {
            assert_eq!(primary.seller, beto, "the pin stands: {c}");
            assert!(primary.pinned, "{c}");
        } else {
            assert!(
                [&ana, &beto, &elena].contains(&&primary.seller),
                "{c}: {primary:?}"
            );
        }
    }
    assert!(
        transfer
            .handed
            .iter()
            .all(|h| h.assignment.as_ref().unwrap().seller == beto),
        "{transfer:?}"
    );

    // Every buyer: one PRIMARY at every instant, intervals that never overlap.
    let mut opened = 0;
    for c in &buyers {
        let mut primaries: Vec<pb::Assignment> = history(&mut b, c)
            .await
            .into_iter()
            .filter(|a| a.role == pb::AssignmentRole::Primary as i32)
            .collect();
        primaries.sort_by_key(|a| seconds(&a.valid_from));
        assert_eq!(
            primaries.iter().filter(|a| a.valid_to.is_none()).count(),
            1,
            "{c}: {primaries:?}"
        );
        for pair in primaries.windows(2) {
            assert_eq!(
                seconds(&pair[0].valid_to),
                seconds(&pair[1].valid_from),
                "{c}: one PRIMARY hands to the next without a gap or an overlap"
            );
        }
        opened += primaries.len();
        assert!(coverage(&mut b, c).await.unwrap().primary.is_some());
    }

    // The change feed, read from either replica: the same, gap-free, each change once.
    let on_a = changes(&mut a).await;
    let on_b = changes(&mut b).await;
    assert_eq!(on_a, on_b);
    let sequences: Vec<i64> = on_a.iter().map(|c| c.sequence).collect();
    assert_eq!(sequences, (1..=on_a.len() as i64).collect::<Vec<_>>());
    let mut seen = HashSet::new();
    for c in &on_a {
        assert!(seen.insert((c.assignment.clone(), c.kind)), "twice: {c:?}");
    }
    let primary_opens = on_a
        .iter()
        .filter(|c| {
            c.kind == pb::AssignmentChangeKind::Opened as i32
                && c.role == pb::AssignmentRole::Primary as i32
        })
        .count();
    assert_eq!(
        primary_opens, opened,
        "every PRIMARY opened once on the feed"
    );
}
