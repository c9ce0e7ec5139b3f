//! Assignments as the registry's events make them: a first purchase gets a PRIMARY from
//! the sellers of the customer's territory (the house when nobody covers it), purchase
//! lines their specialists, a move or an activation hands customers on, an archive or a
//! merge ends them; and every interval stays, so any past instant can be asked about.

use std::time::Duration;

use clientela_proto::clientela::common::v1::Money;
use clientela_proto::clientela::registry::v1 as rpb;
use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

const HOUSE: &str = "sellers/00000000-0000-7000-8000-000000000001";

pub fn address(region: &str, locality: &str) -> rpb::Address {
    rpb::Address {
        country_code: "CL".into(),
        region: region.into(),
        locality: locality.into(),
        ..Default::default()
    }
}

pub async fn customer_at(
    registry: &mut Registry,
    name: &str,
    region: &str,
    locality: &str,
) -> String {
    customer_in(registry, name, address(region, locality)).await
}

/// A new person living at `address`; their name.
pub async fn customer_in(registry: &mut Registry, name: &str, address: rpb::Address) -> String {
    created_in(registry, name, address).await.0
}

/// A new person living at `address`; their name and the feed sequence of their creation.
pub async fn created_in(
    registry: &mut Registry,
    name: &str,
    address: rpb::Address,
) -> (String, i64) {
    let created = registry
        .create_customer(rpb::CreateCustomerRequest {
            customer: Some(rpb::Customer {
                kind: rpb::CustomerKind::Person as i32,
                display_name: name.into(),
                address: Some(address),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    (created.customer.unwrap().name, created.event_sequence)
}

/// A new customer at (`region`, `locality`) who has bought once (in "lubricantes"),
/// once its PRIMARY is seen; and that PRIMARY's seller.
pub async fn buyer(
    client: &mut Client,
    registry: &mut Registry,
    name: &str,
    region: &str,
    locality: &str,
) -> (String, String) {
    let c = customer_at(registry, name, region, locality).await;
    buy(registry, &c, &format!("o-{name}"), 2, &["lubricantes"]).await;
    let got = coverage_when(client, &c, |c| c.primary.is_some()).await;
    let seller = primary_seller(&got).to_owned();
    (c, seller)
}

/// Three buyers on the coast (Región de Valparaíso), each of whose PRIMARY is `seller`.
pub async fn coast_buyers(
    client: &mut Client,
    registry: &mut Registry,
    seller: &str,
) -> Vec<String> {
    let mut coast = Vec::new();
    for (i, locality) in ["Viña del Mar", "Quilpué", "Valparaíso"].iter().enumerate() {
        let name = format!("Costa {i}");
        let (c, had) = buyer(client, registry, &name, "Región de Valparaíso", locality).await;
        assert_eq!(had, seller, "{name}'s PRIMARY");
        coast.push(c);
    }
    coast
}

/// A purchase `days_ago` with one line per product line; the registry's event sequence
/// after it.
pub async fn buy(
    registry: &mut Registry,
    customer: &str,
    order: &str,
    days_ago: i64,
    lines: &[&str],
) -> i64 {
    buy_worth(registry, customer, order, days_ago, lines, 10_000).await
}

/// The same, each line worth `amount_minor` CLP.
pub async fn buy_worth(
    registry: &mut Registry,
    customer: &str,
    order: &str,
    days_ago: i64,
    lines: &[&str],
    amount_minor: i64,
) -> i64 {
    registry
        .record_purchase(rpb::RecordPurchaseRequest {
            parent: customer.into(),
            purchase: Some(rpb::Purchase {
                order_id: order.into(),
                occur_time: Some(prost_types::Timestamp {
                    seconds: chrono::Utc::now().timestamp() - days_ago * 86_400 - 60,
                    nanos: 0,
                }),
                channel: rpb::SalesChannel::Store as i32,
                lines: lines
                    .iter()
                    .map(|line| rpb::PurchaseLine {
                        product_line: (*line).into(),
                        quantity: 1,
                        unit_price: Some(Money {
                            currency_code: "CLP".into(),
                            amount_minor,
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .event_sequence
}

pub async fn coverage(
    client: &mut Client,
    customer: &str,
) -> Result<pb::GetCoverageResponse, tonic::Status> {
    client
        .get_coverage(pb::GetCoverageRequest {
            customer: customer.into(),
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner())
}

/// The coverage once `done` holds (the feed is followed asynchronously), within 15 s.
pub async fn coverage_when(
    client: &mut Client,
    customer: &str,
    done: impl Fn(&pb::GetCoverageResponse) -> bool,
) -> pb::GetCoverageResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(c) = coverage(client, customer).await
            && done(&c)
        {
            return c;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "coverage of {customer} never matched: {:?}",
            coverage(client, customer).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn primary_seller(c: &pb::GetCoverageResponse) -> &str {
    c.primary.as_ref().map_or("", |p| p.seller.as_str())
}

pub async fn add_seller(client: &mut Client, s: pb::Seller) -> String {
    client
        .create_seller(pb::CreateSellerRequest {
            seller: Some(s),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .seller
        .unwrap()
        .name
}

/// Chile 2027, active, with Ana Rojas and Beto Soto covering the V Región: their names.
pub async fn coast_sellers(client: &mut Client) -> (String, String) {
    let model = chile_2027(client).await;
    let ana = add_seller(client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
    let beto = add_seller(client, seller("Beto Soto", "beto", &["CL-V"], &[])).await;
    activate(client, &model).await;
    (ana, beto)
}

pub async fn activate(
    client: &mut Client,
    model: &pb::TerritoryModel,
) -> pb::ActivateTerritoryModelResponse {
    client
        .activate_territory_model(pb::ActivateTerritoryModelRequest {
            name: model.name.clone(),
            etag: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
}

pub async fn history(client: &mut Client, customer: &str) -> Vec<pb::Assignment> {
    client
        .list_assignment_history(pb::ListAssignmentHistoryRequest {
            customer: customer.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .assignments
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_first_purchase_gets_the_least_loaded_seller_of_its_territory,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        let beto = add_seller(&mut client, seller("Beto Soto", "beto", &["CL-V"], &[])).await;
        let activated = activate(&mut client, &model).await;
        assert_eq!(
            activated.territory_model.unwrap().state,
            pb::TerritoryModelState::Active as i32
        );

        let first = customer_at(
            &mut registry,
            "Carla",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        let prospect = coverage_when(&mut client, &first, |c| !c.territory_path.is_empty()).await;
        assert_eq!(prospect.territory_path, ["CL", "CL-V"]);
        assert!(prospect.primary.is_none(), "a prospect has no PRIMARY");

        buy(&mut registry, &first, "o-1", 3, &["lubricantes"]).await;
        let covered = coverage_when(&mut client, &first, |c| c.primary.is_some()).await;
        let primary = covered.primary.unwrap();
        assert_eq!(primary.cause, pb::AssignmentCause::Rule as i32);
        assert_eq!(primary.territory_code, "CL-V");
        assert_eq!(primary.territory_model, model.name);
        let explanation = primary.explanation.unwrap();
        assert_eq!(explanation.territory_code, "CL-V");
        assert_eq!(
            (explanation.considered.len(), explanation.considered_count),
            (2, 2)
        );
        assert_eq!(explanation.rule, "LEAST_LOADED");
        assert_eq!(
            explanation.rule_en,
            "the least loaded of the sellers of territory CL-V with capacity left"
        );
        assert_eq!(
            explanation.rule_es,
            "el de menor carga entre los vendedores del territorio CL-V con capacidad disponible"
        );
        assert_eq!(
            explanation.tie_break_en,
            "2 tied on load and turn: the lowest id"
        );
        assert_eq!(
            explanation.tie_break_es,
            "2 empatados en carga y turno: el id menor"
        );
        let explained = client
            .explain_assignment(pb::ExplainAssignmentRequest {
                name: primary.name.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let names = explained.considered_display_names;
        assert_eq!(names.len(), 2);
        assert!(names.contains(&"Ana Rojas".to_owned()) && names.contains(&"Beto Soto".to_owned()));
        // In the order of the choice: the chosen one first.
        assert_eq!(names[0], explained.seller_display_name);
        // From the purchase's own instant: responsible from the first purchase on.
        let bought = primary.valid_from.unwrap().seconds;
        assert!(
            (chrono::Utc::now().timestamp() - 3 * 86_400 - 60 - bought).abs() <= 1,
            "valid from the purchase"
        );
        let first_seller = primary.seller.clone();

        // The next buyer goes to the other seller (least loaded), a second purchase of
        // the first changes nothing.
        let second = customer_at(&mut registry, "Diego", "Región de Valparaíso", "Quilpué").await;
        buy(&mut registry, &second, "o-2", 1, &["lubricantes"]).await;
        buy(&mut registry, &first, "o-3", 1, &["lubricantes"]).await;
        let other = coverage_when(&mut client, &second, |c| c.primary.is_some()).await;
        assert_ne!(primary_seller(&other), first_seller);
        assert!([ana.as_str(), beto.as_str()].contains(&primary_seller(&other)));
        assert_eq!(history(&mut client, &first).await.len(), 1);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    an_explanation_stored_as_json_before_its_bytes_reads_the_same,
    |app: TestApp| async move {
        use sea_orm::sea_query::{Expr, ExprTrait, Query};
        use sea_orm::{ConnectionTrait, Value};

        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        coast_sellers(&mut client).await;
        let buyer = customer_at(
            &mut registry,
            "Carla",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        buy(&mut registry, &buyer, "o-1", 3, &["lubricantes"]).await;
        let stored = coverage_when(&mut client, &buyer, |c| c.primary.is_some()).await;
        let explanation = stored.primary.clone().unwrap().explanation.unwrap();
        assert_eq!(explanation.considered.len(), 2);

        // As rows were written before explanation_bytes: JSON, no bytes.
        let uuid = |name: &str| name.rsplit('/').next().unwrap().to_owned();
        let considered: Vec<String> = explanation
            .considered
            .iter()
            .map(|c| {
                format!(
                    r#"{{"seller":"{}","load":{},"capacity":{}}}"#,
                    uuid(&c.seller),
                    c.load,
                    c.capacity
                )
            })
            .collect();
        let json = format!(
            r#"{{"rule":{{"kind":"least_loaded"}},"territory":"CL-V","considered":[{}],"considered_count":2,"tie_break":{{"kind":"lowest_id","tied":2}}}}"#,
            considered.join(",")
        );
        let db = sea_orm::Database::connect(app.territory_url.as_str())
            .await
            .unwrap();
        let update = Query::update()
            .table("assignments")
            .value("explanation", json)
            .value("explanation_bytes", Value::Bytes(None))
            .and_where(Expr::col("customer_id").eq(uuid::Uuid::parse_str(&uuid(&buyer)).unwrap()))
            .to_owned();
        assert_eq!(db.execute(&update).await.unwrap().rows_affected(), 1);
        db.close().await.unwrap();
        let read = coverage(&mut client, &buyer).await.unwrap();
        assert_eq!(read.primary, stored.primary);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_customer_described_by_the_label_feed_first_reads_and_buys_as_any_other,
    |app: TestApp| async move {
        use sea_orm::ConnectionTrait;
        use sea_orm::sea_query::{Expr, ExprTrait, Query};

        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        coast_sellers(&mut client).await;
        add_seller(
            &mut client,
            seller("Bruno Paz", "bruno", &[], &["Baterías"]),
        )
        .await;
        let buyer = customer_at(&mut registry, "Dora", "Región de Valparaíso", "Quilpué").await;
        buy(&mut registry, &buyer, "o-1", 3, &["lubricantes"]).await;
        let stored = coverage_when(&mut client, &buyer, |c| c.primary.is_some()).await;
        // A customer the label feed named before the registry's profile of it: stored
        // with the earliest instant as its profile's (on SQLite, as rows written before
        // NEVER_PROFILED hold it).
        let never = if app.territory_url.starts_with("sqlite:") {
            chrono::DateTime::<chrono::Utc>::MIN_UTC
        } else {
            clientela_territory::cartera::NEVER_PROFILED
        };
        let id = uuid::Uuid::parse_str(buyer.rsplit('/').next().unwrap()).unwrap();
        let db = sea_orm::Database::connect(app.territory_url.as_str())
            .await
            .unwrap();
        let update = Query::update()
            .table("cartera_customers")
            .value("profile_at", never)
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        assert_eq!(db.execute(&update).await.unwrap().rows_affected(), 1);
        db.close().await.unwrap();
        let read = coverage(&mut client, &buyer).await.unwrap();
        assert_eq!(read.primary, stored.primary);
        // A feed batch reads it again: a purchase in a specialist line still applies.
        buy(&mut registry, &buyer, "o-2", 3, &["BATERIAS"]).await;
        let bought = coverage_when(&mut client, &buyer, |c| !c.specialists.is_empty()).await;
        assert_eq!(bought.primary, stored.primary);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    the_house_holds_whom_nobody_covers_until_an_activation_hands_them_on,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        // A fresh install: no model, no sellers. Invariant 1 from the first purchase.
        let buyer = customer_at(&mut registry, "Elena", "Región de Valparaíso", "Valparaíso").await;
        buy(&mut registry, &buyer, "o-1", 2, &["lubricantes"]).await;
        let housed = coverage_when(&mut client, &buyer, |c| c.primary.is_some()).await;
        assert_eq!(primary_seller(&housed), HOUSE);
        assert_eq!(housed.unassigned_reason, "no territory model is active");
        let why = housed
            .primary
            .as_ref()
            .unwrap()
            .explanation
            .clone()
            .unwrap();
        assert_eq!(why.rule, "HOUSE");
        assert!(why.rule_en.contains("company's own cartera"), "{why:?}");
        assert!(why.rule_es.contains("cartera de la empresa"), "{why:?}");
        // Listed as a violation until a seller takes it, with the unassigned address.
        let violations = client
            .list_coverage_violations(pb::ListCoverageViolationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .violations;
        // (The only buyer is BOSS too, waiting for a KAM whenever its tier arrives:
        // the KAM scenarios look at that.)
        let kinds: Vec<(i32, &str)> = violations
            .iter()
            .filter(|v| v.kind != pb::CoverageViolationKind::KamWanted as i32)
            .map(|v| (v.kind, v.customer.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                (
                    pb::CoverageViolationKind::HouseCartera as i32,
                    buyer.as_str()
                ),
                (
                    pb::CoverageViolationKind::UnassignedAddress as i32,
                    buyer.as_str()
                ),
            ]
        );
        let before = prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        };
        tokio::time::sleep(Duration::from_millis(1100)).await;

        let model = chile_2027(&mut client).await;
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL"], &[])).await;
        let done = activate(&mut client, &model).await;
        assert_eq!((done.customers_placed, done.assignments_moved), (1, 1));
        let now = coverage(&mut client, &buyer).await.unwrap();
        assert_eq!(primary_seller(&now), ana, "the parent territory's seller");
        let left = client
            .list_coverage_violations(pb::ListCoverageViolationsRequest::default())
            .await
            .unwrap()
            .into_inner()
            .violations;
        assert!(
            left.iter()
                .all(|v| v.kind == pb::CoverageViolationKind::KamWanted as i32),
            "{left:?}"
        );
        assert_eq!(now.territory_path, ["CL", "CL-V"]);

        // History keeps the house's interval, closed by the realignment, and the past
        // instant still answers with it.
        let intervals = history(&mut client, &buyer).await;
        assert_eq!(intervals.len(), 2);
        assert_eq!(intervals[0].seller, HOUSE);
        assert_eq!(
            intervals[0].end_cause,
            pb::AssignmentEndCause::Realignment as i32
        );
        assert_eq!(intervals[0].valid_to, intervals[1].valid_from, "no gap");
        let then = client
            .get_coverage(pb::GetCoverageRequest {
                customer: buyer.clone(),
                as_of: Some(before),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(primary_seller(&then), HOUSE);

        // The same three changes on the service's own feed, in order.
        let mut watch = client
            .watch_assignment_changes(pb::WatchAssignmentChangesRequest {
                after_sequence: 0,
                max_batch_size: 100,
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap().changes;
        let seen: Vec<(i64, i32, &str, i32, i32)> = first
            .iter()
            .map(|c| (c.sequence, c.kind, c.seller.as_str(), c.cause, c.end_cause))
            .collect();
        use pb::AssignmentChangeKind as K;
        assert_eq!(
            seen,
            [
                (
                    1,
                    K::Opened as i32,
                    HOUSE,
                    pb::AssignmentCause::Rule as i32,
                    0
                ),
                (
                    2,
                    K::Closed as i32,
                    HOUSE,
                    0,
                    pb::AssignmentEndCause::Realignment as i32
                ),
                (
                    3,
                    K::Opened as i32,
                    ana.as_str(),
                    pb::AssignmentCause::Rule as i32,
                    0
                ),
            ]
        );
        assert_eq!(first[0].assignment, intervals[0].name);
        drop(watch);

        // Activating it again changes nothing; a second model archives the first.
        assert_eq!(activate(&mut client, &model).await.assignments_moved, 0);
        let next = new_model(&mut client, "Chile 2028").await;
        let replaced = activate(&mut client, &next).await;
        assert_eq!(replaced.archived_model, model.name);
        let archived = client
            .get_territory_model(pb::GetTerritoryModelRequest {
                name: model.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .territory_model
            .unwrap();
        assert_eq!(archived.state, pb::TerritoryModelState::Archived as i32);
        let err = client
            .activate_territory_model(pb::ActivateTerritoryModelRequest {
                name: model.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        // An empty model places nobody: the customer is back on the house's cartera.
        let empty = coverage(&mut client, &buyer).await.unwrap();
        assert_eq!(primary_seller(&empty), HOUSE);
        assert_eq!(empty.unassigned_reason, "the model has no territories");
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    two_product_lines_give_two_specialists_and_one_primary,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let primary = add_seller(&mut client, seller("Ana Rojas", "ana", &["RM-SUR"], &[])).await;
        let solar = add_seller(
            &mut client,
            seller("Sol Díaz", "sol", &["CL-RM"], &["Paneles Solares"]),
        )
        .await;
        // A specialist with no territory serves the whole company.
        let batteries = add_seller(
            &mut client,
            seller("Bruno Paz", "bruno", &[], &["Baterías"]),
        )
        .await;
        activate(&mut client, &model).await;

        let buyer = customer_at(
            &mut registry,
            "Fernanda",
            "Región Metropolitana",
            "La Florida",
        )
        .await;
        buy(
            &mut registry,
            &buyer,
            "o-1",
            1,
            &["paneles solares", "BATERIAS", "cables"],
        )
        .await;
        let c = coverage_when(&mut client, &buyer, |c| c.specialists.len() == 2).await;
        assert_eq!(primary_seller(&c), primary);
        let lines: Vec<(&str, &str)> = c
            .specialists
            .iter()
            .map(|s| (s.product_line.as_str(), s.seller.as_str()))
            .collect();
        assert_eq!(
            lines,
            [
                ("baterias", batteries.as_str()),
                ("paneles solares", solar.as_str())
            ]
        );
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_move_hands_the_customer_to_the_new_territorys_seller_and_an_archive_ends_it,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let coast = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        let north = add_seller(
            &mut client,
            seller("Nico Araya", "nico", &["CL-NORTE"], &[]),
        )
        .await;
        activate(&mut client, &model).await;
        let buyer = customer_at(
            &mut registry,
            "Gabriel",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        buy(&mut registry, &buyer, "o-1", 1, &["lubricantes"]).await;
        coverage_when(&mut client, &buyer, |c| primary_seller(c) == coast).await;

        move_to(&mut registry, &buyer, "Antofagasta", "Calama").await;
        let c = coverage_when(&mut client, &buyer, |c| primary_seller(c) == north).await;
        assert_eq!(c.territory_path, ["CL", "CL-NORTE"]);
        let intervals = history(&mut client, &buyer).await;
        assert_eq!(
            intervals[0].end_cause,
            pb::AssignmentEndCause::AddressChange as i32
        );

        registry
            .archive_customer(rpb::ArchiveCustomerRequest {
                name: buyer.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        coverage_when(&mut client, &buyer, |c| c.primary.is_none()).await;
        let intervals = history(&mut client, &buyer).await;
        assert_eq!(intervals.len(), 2);
        assert!(
            intervals.iter().all(|a| a.valid_to.is_some()),
            "both closed"
        );
        assert_eq!(
            intervals[1].end_cause,
            pb::AssignmentEndCause::Archived as i32
        );
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_merge_ends_the_tombstones_assignments_and_the_survivor_keeps_its_own,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        coast_sellers(&mut client).await;
        let kept = customer_at(
            &mut registry,
            "Hugo",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        let gone = customer_at(
            &mut registry,
            "Hugo B.",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        buy(&mut registry, &kept, "o-1", 2, &["lubricantes"]).await;
        buy(&mut registry, &gone, "o-2", 1, &["lubricantes"]).await;
        let survivor = coverage_when(&mut client, &kept, |c| c.primary.is_some()).await;
        coverage_when(&mut client, &gone, |c| c.primary.is_some()).await;

        registry
            .merge_customers(rpb::MergeCustomersRequest {
                survivor: kept.clone(),
                merged: gone.clone(),
                dry_run: false,
            })
            .await
            .unwrap();
        coverage_when(&mut client, &gone, |c| c.primary.is_none()).await;
        let tombstone = history(&mut client, &gone).await;
        assert_eq!(tombstone.len(), 1);
        assert_eq!(tombstone[0].end_cause, pb::AssignmentEndCause::Merge as i32);
        let after = coverage(&mut client, &kept).await.unwrap();
        assert_eq!(primary_seller(&after), primary_seller(&survivor));
        assert_eq!(history(&mut client, &kept).await.len(), 1);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    coverage_and_history_refuse_bad_names_and_unknown_customers,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let err = coverage(&mut client, "customers/not-a-uuid")
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "customer");
        let err = coverage(
            &mut client,
            "customers/0190a5a4-0000-7000-8000-000000000000",
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        let err = client
            .list_assignment_history(pb::ListAssignmentHistoryRequest::default())
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "customer");
        let err = client
            .list_assignment_history(pb::ListAssignmentHistoryRequest {
                customer: "customers/0190a5a4-0000-7000-8000-000000000000".into(),
                seller: HOUSE.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "seller");
        let house = client
            .list_assignment_history(pb::ListAssignmentHistoryRequest {
                seller: HOUSE.into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(house.assignments.is_empty());
        let err = client
            .activate_territory_model(pb::ActivateTerritoryModelRequest {
                name: "territoryModels/0190a5a4-0000-7000-8000-000000000000".into(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
);

pub async fn assign(
    client: &mut Client,
    request: pb::AssignCustomerRequest,
) -> Result<pb::AssignCustomerResponse, tonic::Status> {
    client
        .assign_customer(request)
        .await
        .map(|r| r.into_inner())
}

pub async fn move_to(registry: &mut Registry, customer: &str, region: &str, locality: &str) {
    registry
        .update_customer(rpb::UpdateCustomerRequest {
            customer: Some(rpb::Customer {
                name: customer.into(),
                address: Some(address(region, locality)),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["address".into()],
            }),
        })
        .await
        .unwrap();
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_pin_beats_the_rules_until_it_is_unpinned,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let mut small = seller("Ana Rojas", "ana", &["CL-V"], &[]);
        small.capacity = 1;
        let coast = add_seller(&mut client, small).await;
        let north = add_seller(
            &mut client,
            seller("Nico Araya", "nico", &["CL-NORTE"], &[]),
        )
        .await;
        activate(&mut client, &model).await;
        let buyer = customer_at(&mut registry, "Ignacia", "Antofagasta", "Calama").await;
        buy(&mut registry, &buyer, "o-1", 1, &["lubricantes"]).await;
        coverage_when(&mut client, &buyer, |c| primary_seller(c) == north).await;

        let asked = pb::AssignCustomerRequest {
            customer: buyer.clone(),
            seller: coast.clone(),
            role: pb::AssignmentRole::Primary as i32,
            reason: "she buys for the Viña branch".into(),
            pin: true,
            ..Default::default()
        };
        let done = assign(&mut client, asked.clone()).await.unwrap();
        let pinned = done.assignment.unwrap();
        assert_eq!(pinned.cause, pb::AssignmentCause::Manual as i32);
        assert!(pinned.pinned);
        assert_eq!(pinned.actor, "anonymous (auth off)");
        assert_eq!(pinned.reason, "she buys for the Viña branch");
        let replaced = done.replaced.unwrap();
        assert_eq!(replaced.seller, north);
        assert_eq!(replaced.end_cause, pb::AssignmentEndCause::Manual as i32);
        assert!(!done.over_capacity, "one customer of one");
        // Asked again: what stands is answered, nothing changes.
        let again = assign(&mut client, asked).await.unwrap();
        assert_eq!(again.assignment.unwrap().name, pinned.name);
        assert!(again.replaced.is_none());

        // A move does not undo the pin; a manual assignment may take a seller past
        // capacity, and says so.
        move_to(&mut registry, &buyer, "Región Metropolitana", "Providencia").await;
        let other = customer_at(
            &mut registry,
            "Julio",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        buy(&mut registry, &other, "o-2", 1, &["lubricantes"]).await;
        let overflowed = coverage_when(&mut client, &other, |c| c.primary.is_some()).await;
        assert_eq!(
            overflowed.primary.as_ref().unwrap().cause,
            pb::AssignmentCause::Overflow as i32
        );
        let page = client
            .list_coverage_violations(pb::ListCoverageViolationsRequest {
                kind: pb::CoverageViolationKind::Overflow as i32,
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.violations.len(), 1);
        assert_eq!(page.violations[0].customer, other);
        let rest = client
            .list_coverage_violations(pb::ListCoverageViolationsRequest {
                kind: pb::CoverageViolationKind::Overflow as i32,
                page_size: 1,
                page_token: page.next_page_token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(rest.violations.is_empty() && rest.next_page_token.is_empty());
        let over = client
            .list_coverage_violations(pb::ListCoverageViolationsRequest {
                kind: pb::CoverageViolationKind::OverCapacity as i32,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .violations;
        assert_eq!(over.len(), 1);
        assert_eq!(over[0].seller, coast);
        assert_eq!(over[0].detail, "carries 2 against a capacity of 1");
        let held =
            coverage_when(&mut client, &buyer, |c| c.territory_path == ["CL", "CL-RM"]).await;
        assert_eq!(primary_seller(&held), coast, "the pin stands");
        let third = customer_at(&mut registry, "Karla", "Región de Valparaíso", "Quilpué").await;
        buy(&mut registry, &third, "o-3", 1, &["lubricantes"]).await;
        coverage_when(&mut client, &third, |c| c.primary.is_some()).await;
        let over = assign(
            &mut client,
            pb::AssignCustomerRequest {
                customer: third.clone(),
                seller: north.clone(),
                role: pb::AssignmentRole::Primary as i32,
                reason: "asked for Nico".into(),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert!(!over.over_capacity, "Nico has room");

        // Unpinned, the next move follows the rules again.
        let unpinned = client
            .unpin_assignment(pb::UnpinAssignmentRequest {
                name: pinned.name.clone(),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .assignment
            .unwrap();
        assert!(!unpinned.pinned);
        assert_eq!(unpinned.seller, coast);
        assert_eq!(unpinned.reason, "unpinned");
        let err = client
            .unpin_assignment(pb::UnpinAssignmentRequest {
                name: pinned.name.clone(),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        move_to(&mut registry, &buyer, "Antofagasta", "Calama").await;
        coverage_when(&mut client, &buyer, |c| primary_seller(c) == north).await;
        let kinds: Vec<(String, i32)> = history(&mut client, &buyer)
            .await
            .into_iter()
            .map(|a| (a.seller, a.end_cause))
            .collect();
        assert_eq!(
            kinds,
            [
                (north.clone(), pb::AssignmentEndCause::Manual as i32),
                (coast.clone(), pb::AssignmentEndCause::Manual as i32),
                (coast.clone(), pb::AssignmentEndCause::AddressChange as i32),
                (north.clone(), pb::AssignmentEndCause::Unspecified as i32),
            ]
        );
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    manual_assignments_refuse_what_the_rules_forbid,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let ana = add_seller(
            &mut client,
            seller("Ana Rojas", "ana", &["CL-V"], &["Baterías"]),
        )
        .await;
        let prospect = customer_at(
            &mut registry,
            "Luis",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        coverage_when(&mut client, &prospect, |_| true).await;
        let base = pb::AssignCustomerRequest {
            customer: prospect.clone(),
            seller: ana.clone(),
            role: pb::AssignmentRole::Primary as i32,
            reason: "why not".into(),
            ..Default::default()
        };
        let bad = |f: fn(&mut pb::AssignCustomerRequest)| {
            let mut r = base.clone();
            f(&mut r);
            r
        };
        for (request, field) in [
            (bad(|r| r.role = 0), "role"),
            (bad(|r| r.reason = "  ".into()), "reason"),
            (bad(|r| r.product_line = "baterias".into()), "product_line"),
            (
                bad(|r| r.role = pb::AssignmentRole::Specialist as i32),
                "product_line",
            ),
            (
                bad(|r| {
                    r.pin_expire_time = Some(prost_types::Timestamp {
                        seconds: 4_000_000_000,
                        nanos: 0,
                    })
                }),
                "pin_expire_time",
            ),
            (
                bad(|r| {
                    r.pin = true;
                    r.pin_expire_time = Some(prost_types::Timestamp {
                        seconds: 1_000_000_000,
                        nanos: 0,
                    });
                }),
                "pin_expire_time",
            ),
            (bad(|r| r.seller = "sellers/nope".into()), "seller"),
            (bad(|r| r.role = pb::AssignmentRole::Kam as i32), "seller"),
        ] {
            let err = assign(&mut client, request).await.unwrap_err();
            assert_eq!(violation(&err), field, "{err:?}");
        }
        let err = assign(&mut client, base.clone()).await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "a prospect has no PRIMARY: {err:?}"
        );
        let err = assign(
            &mut client,
            bad(|r| r.seller = "sellers/0190a5a4-0000-7000-8000-000000000000".into()),
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let claimed = assign(
            &mut client,
            bad(|r| r.role = pb::AssignmentRole::Prospector as i32),
        )
        .await
        .unwrap();
        assert_eq!(
            claimed.assignment.unwrap().role,
            pb::AssignmentRole::Prospector as i32
        );
        let c = coverage(&mut client, &prospect).await.unwrap();
        assert_eq!(c.prospector.unwrap().seller, ana);
        let err = assign(&mut client, bad(|r| r.seller = HOUSE.into()))
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "still a prospect: {err:?}"
        );
    }
);

clientela_testkit::both_engines!(
    crate::spawn_sales_app,
    a_sales_token_sees_its_own_cartera_and_its_territories_prospects_only,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = client
            .create_territory_model(as_token(
                pb::CreateTerritoryModelRequest {
                    territory_model: Some(pb::TerritoryModel {
                        display_name: "Chile".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                "ops",
            ))
            .await
            .unwrap()
            .into_inner()
            .territory_model
            .unwrap();
        for (code, parent, criteria) in [
            ("CL", "", crate::models::countries(&["CL"])),
            (
                "CL-V",
                "CL",
                crate::models::regions(&["Región de Valparaíso"]),
            ),
            ("CL-NORTE", "CL", crate::models::regions(&["Antofagasta"])),
        ] {
            client
                .create_territory(as_token(
                    pb::CreateTerritoryRequest {
                        parent: model.name.clone(),
                        territory: Some(pb::Territory {
                            code: code.into(),
                            display_name: code.into(),
                            parent_code: parent.into(),
                            criteria: Some(criteria),
                            ..Default::default()
                        }),
                    },
                    "ops",
                ))
                .await
                .unwrap();
        }
        let mut sellers = Vec::new();
        for (name, token, code) in [("Ana", "ana", "CL-V"), ("Beto", "beto", "CL-NORTE")] {
            let s = client
                .create_seller(as_token(
                    pb::CreateSellerRequest {
                        seller: Some(seller(name, token, &[code], &[])),
                        request_id: String::new(),
                    },
                    "ops",
                ))
                .await
                .unwrap()
                .into_inner()
                .seller
                .unwrap()
                .name;
            sellers.push(s);
        }
        let (ana, beto) = (sellers[0].clone(), sellers[1].clone());
        client
            .activate_territory_model(as_token(
                pb::ActivateTerritoryModelRequest {
                    name: model.name.clone(),
                    etag: String::new(),
                },
                "ops",
            ))
            .await
            .unwrap();
        let create = |name: &str, region: &str| {
            as_token(
                rpb::CreateCustomerRequest {
                    customer: Some(rpb::Customer {
                        kind: rpb::CustomerKind::Person as i32,
                        display_name: name.into(),
                        address: Some(address(region, "")),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                },
                "ops",
            )
        };
        let buyer = registry
            .create_customer(create("Mario", "Región de Valparaíso"))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap()
            .name;
        let prospect = registry
            .create_customer(create("Nora", "Antofagasta"))
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap()
            .name;
        let seq = registry
            .record_purchase(as_token(
                rpb::RecordPurchaseRequest {
                    parent: buyer.clone(),
                    purchase: Some(rpb::Purchase {
                        order_id: "o-1".into(),
                        occur_time: Some(prost_types::Timestamp {
                            seconds: chrono::Utc::now().timestamp() - 60,
                            nanos: 0,
                        }),
                        lines: vec![rpb::PurchaseLine {
                            product_line: "lubricantes".into(),
                            quantity: 1,
                            unit_price: Some(Money {
                                currency_code: "CLP".into(),
                                amount_minor: 1000,
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                },
                "ops",
            ))
            .await
            .unwrap()
            .into_inner()
            .event_sequence;
        let cover = |customer: &str, token: &str| {
            as_token(
                pb::GetCoverageRequest {
                    customer: customer.into(),
                    min_event_sequence: seq,
                    ..Default::default()
                },
                token,
            )
        };
        let mine = client
            .get_coverage(cover(&buyer, "ana"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(primary_seller(&mine), ana);
        for (customer, token) in [(&prospect, "ana"), (&buyer, "beto")] {
            let err = client
                .get_coverage(cover(customer, token))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{token}: {err:?}");
        }
        client
            .get_coverage(cover(&prospect, "beto"))
            .await
            .expect("a prospect of Beto's territory");
        client
            .get_coverage(cover(&buyer, "bi"))
            .await
            .expect("readonly reads everything");
        let err = client
            .get_coverage(cover(&buyer, "ghost"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        assert!(err.message().contains("names no seller"), "{err:?}");

        let cartera = |seller: &str, token: &str| {
            as_token(
                pb::ListCarteraRequest {
                    seller: seller.into(),
                    ..Default::default()
                },
                token,
            )
        };
        let own = client
            .list_cartera(cartera(&ana, "ana"))
            .await
            .unwrap()
            .into_inner();
        let customers: Vec<&str> = own
            .assignments
            .iter()
            .map(|a| a.customer.as_str())
            .collect();
        assert_eq!(customers, [buyer.as_str()]);
        let err = client
            .list_cartera(cartera(&beto, "ana"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let err = client
            .list_assignment_history(as_token(
                pb::ListAssignmentHistoryRequest {
                    seller: beto.clone(),
                    ..Default::default()
                },
                "ana",
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        let empty = client
            .list_cartera(cartera(&beto, "bi"))
            .await
            .unwrap()
            .into_inner();
        assert!(empty.assignments.is_empty(), "a prospect is no cartera");
        let err = client
            .assign_customer(as_token(
                pb::AssignCustomerRequest {
                    customer: buyer.clone(),
                    seller: ana.clone(),
                    role: pb::AssignmentRole::Primary as i32,
                    reason: "mine".into(),
                    ..Default::default()
                },
                "ana",
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
    }
);

/// Every page of `request`'s cartera: (customer, role) pairs.
async fn cartera_pages(client: &mut Client, request: pb::ListCarteraRequest) -> Vec<(String, i32)> {
    let size = request.page_size as usize;
    let pages = every_page(
        request,
        |r| &mut r.page_token,
        async |r| {
            let page = client.list_cartera(r).await.unwrap().into_inner();
            let pairs = page
                .assignments
                .into_iter()
                .map(|a| (a.customer, a.role))
                .collect();
            (pairs, page.next_page_token)
        },
    )
    .await;
    assert!(pages.iter().all(|p| p.len() <= size));
    pages.concat()
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_cartera_is_listed_in_pages_by_role_territory_and_past_instant,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let ana = add_seller(
            &mut client,
            seller("Ana Rojas", "ana", &["CL-V", "RM-SUR"], &["neumaticos"]),
        )
        .await;
        activate(&mut client, &model).await;
        let mut buyers = Vec::new();
        for (i, (region, locality)) in [
            ("Región de Valparaíso", "Viña del Mar"),
            ("Región de Valparaíso", "Quilpué"),
            ("Región Metropolitana", "La Florida"),
            ("Región de Valparaíso", "Valparaíso"),
        ]
        .into_iter()
        .enumerate()
        {
            let c = customer_at(&mut registry, &format!("Cliente {i}"), region, locality).await;
            let lines: &[&str] = if i == 0 {
                &["lubricantes", "neumaticos"]
            } else {
                &["lubricantes"]
            };
            buy(&mut registry, &c, &format!("o-{i}"), 1, lines).await;
            coverage_when(&mut client, &c, |g| g.primary.is_some()).await;
            buyers.push(c);
        }
        let before_move = prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp(),
            nanos: 0,
        };
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // The last one moves north, where Ana sells nothing: the house takes it.
        move_to(&mut registry, &buyers[3], "Antofagasta", "Calama").await;
        coverage_when(&mut client, &buyers[3], |g| {
            g.primary.as_ref().is_some_and(|p| p.seller != ana)
        })
        .await;

        let request = |role: pb::AssignmentRole, territory: &str| pb::ListCarteraRequest {
            seller: ana.clone(),
            role: role as i32,
            territory_code: territory.into(),
            page_size: 2,
            ..Default::default()
        };
        let (primary, specialist) = (
            pb::AssignmentRole::Primary as i32,
            pb::AssignmentRole::Specialist as i32,
        );
        let mut now =
            cartera_pages(&mut client, request(pb::AssignmentRole::Unspecified, "")).await;
        let mut expected = vec![
            (buyers[0].clone(), primary),
            (buyers[0].clone(), specialist),
            (buyers[1].clone(), primary),
            (buyers[2].clone(), primary),
        ];
        // By customer, in pages of two.
        expected.sort_by(|a, b| a.0.cmp(&b.0));
        let mut by_customer = now.clone();
        by_customer.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(now, by_customer, "ordered by customer");
        now.sort();
        expected.sort();
        assert_eq!(now, expected);
        assert_eq!(
            cartera_pages(&mut client, request(pb::AssignmentRole::Specialist, "")).await,
            [(buyers[0].clone(), specialist)]
        );
        assert_eq!(
            cartera_pages(
                &mut client,
                request(pb::AssignmentRole::Unspecified, "RM-SUR")
            )
            .await,
            [(buyers[2].clone(), primary)]
        );
        // Before the move the fourth was hers, and a later page answers for that instant.
        let mut then = request(pb::AssignmentRole::Primary, "");
        then.as_of = Some(before_move);
        let mut past: Vec<String> = cartera_pages(&mut client, then.clone())
            .await
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        past.sort();
        let mut all = buyers.clone();
        all.sort();
        assert_eq!(past, all);
        // Before anything was bought: nothing.
        then.as_of = Some(prost_types::Timestamp {
            seconds: chrono::Utc::now().timestamp() - 30 * 86_400,
            nanos: 0,
        });
        assert!(cartera_pages(&mut client, then).await.is_empty());

        // BASIC by default: the why stays with ExplainAssignment, unless FULL asks.
        let listed = |view: pb::AssignmentView| pb::ListCarteraRequest {
            seller: ana.clone(),
            view: view as i32,
            ..Default::default()
        };
        let basic = client
            .list_cartera(listed(pb::AssignmentView::Unspecified))
            .await
            .unwrap()
            .into_inner();
        assert!(basic.assignments.iter().all(|a| a.explanation.is_none()));
        let full = client
            .list_cartera(listed(pb::AssignmentView::Full))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(full.assignments.len(), basic.assignments.len());
        for (f, b) in full.assignments.iter().zip(&basic.assignments) {
            let e = f.explanation.as_ref().expect("FULL explains");
            assert_eq!((e.rule.as_str(), e.considered_count), ("LEAST_LOADED", 1));
            assert_eq!(
                pb::Assignment {
                    explanation: None,
                    ..f.clone()
                },
                *b
            );
        }
        let mut bad = listed(pb::AssignmentView::Full);
        bad.view = 9;
        let err = client.list_cartera(bad).await.unwrap_err();
        assert_eq!(
            (err.code(), crate::violation(&err).as_str()),
            (Code::InvalidArgument, "view")
        );

        let err = client
            .list_cartera(pb::ListCarteraRequest {
                seller: "sellers/01890000-0000-7000-8000-000000000000".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "{err:?}");
        assert!(err.message().contains("seller"), "{err:?}");
    }
);
