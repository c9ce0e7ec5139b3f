//! The invariants of TERRITORY.md through the real services and databases: random
//! sequences of registry events (customers, purchases in one or two lines, moves, merges,
//! archives) and of manual commands (pins, unpins, transfers, offboardings, activations of
//! another model), each checked, after the service has applied it, over every customer's
//! whole history: one open interval per slot and none overlapping, exactly one PRIMARY per
//! live buyer, covering it from its first purchase without a gap, nothing left open on an
//! archived or merged customer, and no automatic choice past the chosen seller's capacity.
//! The same checks run on the in-memory book over many more seeds (`cartera.rs`).

use std::collections::{HashMap, HashSet};

use clientela_proto::clientela::registry::v1 as rpb;
use clientela_proto::clientela::territory::v1 as pb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tonic::Code;

use crate::cartera::{activate, add_seller, address, buy, created_in, customer_at, history};
use crate::determinism::caught_up;
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

const HOUSE: &str = "sellers/00000000-0000-7000-8000-000000000001";

const PLACES: [(&str, &str); 5] = [
    ("Región de Valparaíso", "Viña del Mar"),
    ("Región de Valparaíso", "Quilpué"),
    ("Región Metropolitana", "La Florida"),
    ("Antofagasta", "Calama"),
    ("Región Metropolitana", "Providencia"),
];

/// What the test knows of the registry's customers.
#[derive(Default)]
struct Known {
    customers: Vec<String>,
    /// Customers who have bought.
    bought: HashSet<String>,
    /// Archived, or merged into another.
    gone: HashSet<String>,
    /// Survivors of a merge: they may have inherited a purchase.
    survivors: HashSet<String>,
    /// The registry's last event sequence.
    last: i64,
}

/// A refusal the caller may get for a command that cannot be done now (a seller who
/// left, a customer without a purchase, nobody to hand over to); anything else fails.
fn refused(e: &tonic::Status) {
    assert!(
        matches!(
            e.code(),
            Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument
        ),
        "not a refusal: {e:?}"
    );
}

/// Checks every invariant over every customer's history, as the service answers now.
async fn check(client: &mut Client, known: &Known, step: usize) {
    for c in &known.customers {
        let intervals = history(client, c).await;
        let mut slots: HashMap<(i32, &str), Vec<&pb::Assignment>> = HashMap::new();
        for a in &intervals {
            slots
                .entry((a.role, a.product_line.as_str()))
                .or_default()
                .push(a);
            let automatic = matches!(
                a.cause(),
                pb::AssignmentCause::Rule | pb::AssignmentCause::Handover
            );
            if automatic
                && a.seller != HOUSE
                && a.end_cause() != pb::AssignmentEndCause::Continued
                && let Some(e) = &a.explanation
                && let Some(me) = e.considered.iter().find(|s| s.seller == a.seller)
            {
                assert!(
                    me.load + a.weight <= me.capacity,
                    "step {step}: {c} given past capacity: {a:?}"
                );
            }
        }
        for (slot, mut list) in slots {
            list.retain(|a| a.valid_to != a.valid_from);
            list.sort_by_key(|a| a.valid_from.map(|t| (t.seconds, t.nanos)));
            assert!(
                list.iter().filter(|a| a.valid_to.is_none()).count() <= 1,
                "step {step}: {c} has two open in {slot:?}"
            );
            for pair in list.windows(2) {
                let end = pair[0].valid_to.expect("only the last may be open");
                let next = pair[1].valid_from.expect("a start");
                assert!(
                    (end.seconds, end.nanos) <= (next.seconds, next.nanos),
                    "step {step}: {c} overlaps in {slot:?}: {pair:?}"
                );
            }
        }
        let open: Vec<&pb::Assignment> =
            intervals.iter().filter(|a| a.valid_to.is_none()).collect();
        if known.gone.contains(c) {
            assert!(open.is_empty(), "step {step}: {c} is gone: {open:?}");
            continue;
        }
        let primaries = open
            .iter()
            .filter(|a| a.role() == pb::AssignmentRole::Primary)
            .count();
        if known.bought.contains(c) {
            assert_eq!(primaries, 1, "step {step}: {c}, a buyer: {open:?}");
            let mut spans: Vec<_> = intervals
                .iter()
                .filter(|a| a.role() == pb::AssignmentRole::Primary)
                .filter(|a| a.valid_to != a.valid_from)
                .map(|a| (a.valid_from, a.valid_to))
                .collect();
            spans.sort_by_key(|s| s.0.map(|t| (t.seconds, t.nanos)));
            for pair in spans.windows(2) {
                assert_eq!(pair[0].1, pair[1].0, "step {step}: {c} has a gap");
            }
        } else if !known.survivors.contains(c) {
            assert_eq!(primaries, 0, "step {step}: {c} never bought: {open:?}");
        } else {
            assert!(primaries <= 1, "step {step}: {c}: {open:?}");
        }
    }
}

async fn run(app: TestApp, seed: u64, steps: usize) {
    let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = chile_2027(&mut client).await;
    let mut sellers = Vec::new();
    for (name, token, codes, lines, capacity) in [
        ("Ana Rojas", "ana", &["CL-V"][..], &[][..], 3),
        ("Beto Soto", "beto", &["CL-V"], &[], 2),
        ("Carla Díaz", "carla", &["RM-SUR", "CL-RM"], &[], 4),
        ("Dora Lagos", "dora", &["CL"], &["neumaticos"], 3),
        ("Nico Araya", "nico", &["CL-NORTE"], &[], 4),
        ("Olga Pérez", "olga", &["CL-NORTE", "CL-V"], &[], 3),
    ] {
        let mut s = seller(name, token, codes, lines);
        s.capacity = capacity;
        sellers.push(add_seller(&mut client, s).await);
    }
    activate(&mut client, &model).await;
    let mut known = Known::default();
    let first = customer_at(&mut registry, "Cliente 0", PLACES[0].0, PLACES[0].1).await;
    known.last = buy(&mut registry, &first, "o-0", 2, &["lubricantes"]).await;
    known.customers.push(first.clone());
    known.bought.insert(first.clone());
    let mut pins: Vec<String> = Vec::new();
    let mut pinned_ever = 0;
    let live = |known: &Known| -> Vec<String> {
        known
            .customers
            .iter()
            .filter(|c| !known.gone.contains(*c))
            .cloned()
            .collect()
    };
    for step in 0..steps {
        let customers = live(&known);
        let pick =
            |rng: &mut StdRng, from: &[String]| from[rng.random_range(0..from.len())].clone();
        match rng.random_range(0..100) {
            // A new customer.
            0..20 => {
                let (region, locality) = PLACES[rng.random_range(0..PLACES.len())];
                // Checked once the feed brought it: its history is NOT_FOUND before.
                let (c, sequence) = created_in(
                    &mut registry,
                    &format!("Cliente {step}"),
                    address(region, locality),
                )
                .await;
                known.last = sequence;
                known.customers.push(c);
            }
            // A purchase, at a later instant than every one before.
            20..50 => {
                let c = pick(&mut rng, &customers);
                let lines: &[&str] = match rng.random_range(0..3) {
                    0 => &["lubricantes", "neumaticos"],
                    1 => &["neumaticos"],
                    _ => &["lubricantes"],
                };
                known.last = buy(&mut registry, &c, &format!("o-{step}"), 1, lines).await;
                known.bought.insert(c);
            }
            // A move.
            50..60 => {
                let c = pick(&mut rng, &customers);
                let (region, locality) = PLACES[rng.random_range(0..PLACES.len())];
                known.last = registry
                    .update_customer(rpb::UpdateCustomerRequest {
                        customer: Some(rpb::Customer {
                            name: c,
                            address: Some(address(region, locality)),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["address".into()],
                        }),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .event_sequence;
            }
            // A pin to any seller, who may have left.
            60..70 => {
                let pinned = client
                    .assign_customer(pb::AssignCustomerRequest {
                        customer: pick(&mut rng, &customers),
                        seller: pick(&mut rng, &sellers),
                        role: pb::AssignmentRole::Primary as i32,
                        reason: "asked for by the customer".into(),
                        pin: true,
                        ..Default::default()
                    })
                    .await;
                match pinned {
                    Ok(done) => {
                        pins.push(done.into_inner().assignment.unwrap().name);
                        pinned_ever += 1;
                    }
                    Err(e) => refused(&e),
                }
            }
            70..75 if !pins.is_empty() => {
                let name = pins.swap_remove(rng.random_range(0..pins.len()));
                if let Err(e) = client
                    .unpin_assignment(pb::UnpinAssignmentRequest {
                        name,
                        request_id: String::new(),
                    })
                    .await
                {
                    refused(&e);
                }
            }
            // A cartera handed on by the rules.
            75..83 => {
                if let Err(e) = client
                    .transfer_cartera(pb::TransferCarteraRequest {
                        seller: pick(&mut rng, &sellers),
                        reason: "rebalancing".into(),
                        ..Default::default()
                    })
                    .await
                {
                    refused(&e);
                }
            }
            83..87 => {
                if let Err(e) = client
                    .offboard_seller(pb::OffboardSellerRequest {
                        seller: pick(&mut rng, &sellers),
                        reason: "leaves the company".into(),
                        ..Default::default()
                    })
                    .await
                {
                    refused(&e);
                }
            }
            // Another model (a copy of the active one) activated: everyone realigned.
            87..92 => {
                let copy = client
                    .create_territory_model(pb::CreateTerritoryModelRequest {
                        territory_model: Some(pb::TerritoryModel {
                            display_name: format!("Chile 2027, step {step}"),
                            ..Default::default()
                        }),
                        copy_from: model.name.clone(),
                        request_id: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .territory_model
                    .unwrap();
                activate(&mut client, &copy).await;
                model = copy;
            }
            92..96 if customers.len() > 2 => {
                let survivor = pick(&mut rng, &customers);
                let merged = pick(&mut rng, &customers);
                if survivor != merged {
                    let done = registry
                        .merge_customers(rpb::MergeCustomersRequest {
                            survivor: survivor.clone(),
                            merged: merged.clone(),
                            dry_run: false,
                        })
                        .await
                        .unwrap();
                    known.last = done.into_inner().event_sequence;
                    known.gone.insert(merged);
                    known.survivors.insert(survivor);
                }
            }
            96..100 if customers.len() > 2 => {
                let c = pick(&mut rng, &customers);
                known.last = registry
                    .archive_customer(rpb::ArchiveCustomerRequest {
                        name: c.clone(),
                        etag: String::new(),
                    })
                    .await
                    .unwrap()
                    .into_inner()
                    .event_sequence;
                known.gone.insert(c);
            }
            _ => continue,
        }
        caught_up(&mut client, &first, known.last).await;
        check(&mut client, &known, step).await;
    }
    assert!(
        known.bought.len() > 5 && pinned_ever > 0,
        "seed {seed} exercised too little: {} buyers, {pinned_ever} pins",
        known.bought.len()
    );
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    random_feed_events_and_commands_keep_every_invariant_in_the_database,
    |app: TestApp| async move {
        run(app, 15, 150).await;
    }
);
