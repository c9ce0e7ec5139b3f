//! Determinism (TERRITORY.md): a new instance, given the same model and sellers, that
//! replays the registry's feed from zero makes the same assignments as the instance that
//! followed it live: the same sellers, intervals, causes and explanations, and the same
//! change feed in the same order.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use clientela_proto::clientela::registry::v1 as rpb;
use clientela_proto::clientela::territory::v1 as pb;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::cartera::{activate, add_seller, buy, customer_at, customer_in, history, move_to};
use crate::models::chile_2027;
use crate::replicas::changes;
use crate::sellers::seller;
use crate::*;

/// A port that refuses every connection until opened, then forwards each to a target:
/// the new instance starts with the feed out of reach, so its model and sellers are in
/// place before the first event arrives, as they were for the live one.
struct Gate {
    addr: SocketAddr,
    open: watch::Sender<Option<SocketAddr>>,
}

impl Gate {
    async fn bind() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (open, target) = watch::channel(None);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                // Dropped unanswered while closed: the consumer retries with backoff.
                let Some(to) = *target.borrow() else { continue };
                tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Self { addr, open }
    }

    fn open_to(&self, target: SocketAddr) {
        self.open.send_replace(Some(target));
    }
}

/// The same configuration on either instance: seed 003's model, sellers with little room
/// on the coast (so some buyers overflow and ties are broken), a specialist for the whole
/// country, activated.
async fn configure(client: &mut Client) {
    let model = chile_2027(client).await;
    for (name, token, codes, lines, capacity) in [
        ("Ana Rojas", "ana", &["CL-V"][..], &[][..], 3),
        ("Beto Soto", "beto", &["CL-V"], &[], 3),
        ("Carla Díaz", "carla", &["RM-SUR"], &[], 5),
        ("Dora Lagos", "dora", &["CL"], &["neumaticos"], 4),
        ("Nico Araya", "nico", &["CL-NORTE"], &[], 10),
    ] {
        let mut s = seller(name, token, codes, lines);
        s.capacity = capacity;
        add_seller(client, s).await;
    }
    activate(client, &model).await;
}

/// The feed both instances read: creations in five places (one abroad), first and later
/// purchases in one or two lines, prospects who never buy, moves to the north, a merge and
/// an archive. The customers, and the registry's last event sequence.
async fn drive(registry: &mut Registry) -> (Vec<String>, i64) {
    let places = [
        ("Región de Valparaíso", "Viña del Mar"),
        ("Región de Valparaíso", "Quilpué"),
        ("Región Metropolitana", "La Florida"),
        ("Antofagasta", "Calama"),
        ("Región Metropolitana", "Providencia"),
    ];
    let mut customers = Vec::new();
    for i in 0..24 {
        let (region, locality) = places[i % places.len()];
        customers.push(customer_at(registry, &format!("Cliente {i}"), region, locality).await);
    }
    for (i, c) in customers.iter().enumerate() {
        if i % 7 == 6 {
            continue; // a prospect
        }
        let lines: &[&str] = if i % 3 == 0 {
            &["lubricantes", "neumaticos"]
        } else {
            &["lubricantes"]
        };
        buy(registry, c, &format!("o-{i}"), 0, lines).await;
    }
    for (i, c) in customers.iter().enumerate() {
        if i % 6 == 1 {
            move_to(registry, c, "Antofagasta", "Calama").await;
        }
        if i % 4 == 2 {
            buy(registry, c, &format!("o-{i}-b"), 0, &["neumaticos"]).await;
        }
    }
    registry
        .merge_customers(rpb::MergeCustomersRequest {
            survivor: customers[7].clone(),
            merged: customers[2].clone(),
            dry_run: false,
        })
        .await
        .unwrap();
    registry
        .archive_customer(rpb::ArchiveCustomerRequest {
            name: customers[4].clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let abroad = customer_in(
        registry,
        "Importadora Andes",
        rpb::Address {
            country_code: "AR".into(),
            region: "Mendoza".into(),
            ..Default::default()
        },
    )
    .await;
    let last = buy(registry, &abroad, "o-abroad", 0, &["lubricantes"]).await;
    customers.push(abroad);
    (customers, last)
}

/// Waits until `client`'s service has applied the registry's feed up to `last`.
pub(crate) async fn caught_up(client: &mut Client, customer: &str, last: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reached = client
            .get_coverage(pb::GetCoverageRequest {
                customer: customer.into(),
                ..Default::default()
            })
            .await
            .map_or(0, |c| c.into_inner().event_sequence);
        if reached >= last {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the feed stayed at {reached} of {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Seller names by their token names (ids differ between instances; the house is the
/// same everywhere).
async fn tokens(client: &mut Client) -> Arc<HashMap<String, String>> {
    let sellers = client
        .list_sellers(pb::ListSellersRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .sellers;
    Arc::new(
        sellers
            .into_iter()
            .map(|s| {
                let token = if s.token_name.is_empty() {
                    "house".to_owned()
                } else {
                    s.token_name
                };
                (s.name, token)
            })
            .collect(),
    )
}

/// An assignment as two instances can compare it: sellers by token, no ids.
fn comparable(a: &pb::Assignment, tokens: &HashMap<String, String>) -> String {
    let seller = |name: &str| tokens.get(name).cloned().unwrap_or_else(|| name.to_owned());
    let explanation = a.explanation.as_ref().map(|e| {
        let considered: Vec<(String, i64, i64)> = e
            .considered
            .iter()
            .map(|c| (seller(&c.seller), c.load, c.capacity))
            .collect();
        (
            e.rule.clone(),
            e.territory_code.clone(),
            considered,
            e.tie_break_en.clone(),
        )
    });
    format!(
        "{} {:?} {} from {:?} to {:?} {:?} end {:?} in {} v{} pinned {} weight {} {:?}",
        seller(&a.seller),
        a.role(),
        a.product_line,
        a.valid_from,
        a.valid_to,
        a.cause(),
        a.end_cause(),
        a.territory_code,
        a.model_version,
        a.pinned,
        a.weight,
        explanation,
    )
}

fn comparable_change(c: &pb::AssignmentChange, tokens: &HashMap<String, String>) -> String {
    format!(
        "{} {:?} {} {} {:?} {} {:?} {:?} {:?}",
        c.sequence,
        c.kind(),
        c.customer,
        tokens
            .get(&c.seller)
            .map_or(c.seller.as_str(), String::as_str),
        c.role(),
        c.product_line,
        c.time,
        c.cause(),
        c.end_cause(),
    )
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    replaying_the_feed_from_zero_into_a_new_instance_gives_the_same_assignments,
    |app: TestApp| async move {
        let (mut live, mut registry) = (app.client.clone(), app.registry.clone());
        configure(&mut live).await;
        let (customers, last) = drive(&mut registry).await;
        caught_up(&mut live, &customers[0], last).await;

        let (url, _dir) = clientela_testkit::database(app.engine).await.unwrap();
        let gate = Gate::bind().await;
        let fresh = spawn_territory(&url, &format!("http://{}", gate.addr)).await;
        let mut replayed = fresh.client.clone();
        configure(&mut replayed).await;
        gate.open_to(app.addr);
        caught_up(&mut replayed, &customers[0], last).await;

        let (live_tokens, replayed_tokens) = (tokens(&mut live).await, tokens(&mut replayed).await);
        let mut intervals = 0;
        for c in &customers {
            let was: Vec<String> = history(&mut live, c)
                .await
                .iter()
                .map(|a| comparable(a, &live_tokens))
                .collect();
            let is: Vec<String> = history(&mut replayed, c)
                .await
                .iter()
                .map(|a| comparable(a, &replayed_tokens))
                .collect();
            assert_eq!(was, is, "{c}'s assignments");
            intervals += was.len();
        }
        // The feed made the kinds of assignment the test is about.
        assert!(intervals > customers.len(), "{intervals} intervals");
        let was: Vec<String> = changes(&mut live)
            .await
            .iter()
            .map(|c| comparable_change(c, &live_tokens))
            .collect();
        let is: Vec<String> = changes(&mut replayed)
            .await
            .iter()
            .map(|c| comparable_change(c, &replayed_tokens))
            .collect();
        assert_eq!(was, is, "the change feeds");
        for needed in [
            "Overflow",
            "Specialist",
            "AddressChange",
            "Merge",
            "Archived",
        ] {
            assert!(
                was.iter().any(|c| c.contains(needed)),
                "no {needed} among {was:#?}"
            );
        }
    }
);
