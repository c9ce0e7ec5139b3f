//! Offboarding and transfers (TERRITORY.md invariant 8): a seller leaving hands every
//! customer to successors with capacity, atomically, or is refused listing who would be
//! left without one; a transfer hands part of a cartera on; and who was responsible at
//! an earlier instant is still answered after two handovers.

use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::cartera::{
    activate, add_seller, buy, buyer, coast_buyers, coast_sellers, coverage, coverage_when,
    customer_at, history, primary_seller,
};
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

const HOUSE: &str = "sellers/00000000-0000-7000-8000-000000000001";

fn offboard(
    seller: &str,
    successor: &str,
    allow_house: bool,
    dry_run: bool,
) -> pb::OffboardSellerRequest {
    pb::OffboardSellerRequest {
        seller: seller.into(),
        successor: successor.into(),
        reason: "leaves the company".into(),
        allow_house,
        dry_run,
        request_id: String::new(),
    }
}

fn now() -> prost_types::Timestamp {
    let t = chrono::Utc::now();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

async fn primary_at(client: &mut Client, customer: &str, at: &prost_types::Timestamp) -> String {
    let c = client
        .get_coverage(pb::GetCoverageRequest {
            customer: customer.into(),
            as_of: Some(*at),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    primary_seller(&c).to_owned()
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_seller_leaving_hands_every_customer_to_a_successor_with_capacity,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        let elena = add_seller(&mut client, seller("Elena Paz", "elena", &["CL-RM"], &[])).await;
        activate(&mut client, &model).await;
        let coast = coast_buyers(&mut client, &mut registry, &ana).await;
        let (city, had) = buyer(
            &mut client,
            &mut registry,
            "Santiago",
            "Región Metropolitana",
            "Providencia",
        )
        .await;
        assert_eq!(had, elena);
        let march_31 = now();

        // Two sellers join the coast, one with room for a single customer.
        let mut small = seller("Beto Soto", "beto", &["CL-V"], &[]);
        small.capacity = 1;
        let beto = add_seller(&mut client, small).await;
        let carla = add_seller(&mut client, seller("Carla Díaz", "carla", &["CL-V"], &[])).await;

        // A dry run shows the plan and writes nothing.
        let plan = client
            .offboard_seller(offboard(&ana, "", false, true))
            .await
            .unwrap()
            .into_inner();
        assert!(plan.dry_run);
        assert_eq!(plan.handed_count, 3);
        assert_eq!(
            plan.seller.as_ref().unwrap().status,
            pb::SellerStatus::Active as i32
        );
        assert_eq!(
            primary_seller(&coverage(&mut client, &coast[0]).await.unwrap()),
            ana
        );

        // Offboarded: every customer handed on, never past a successor's capacity.
        let done = client
            .offboard_seller(offboard(&ana, "", false, false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            done.seller.as_ref().unwrap().status,
            pb::SellerStatus::Departed as i32
        );
        assert_eq!(done.handed_count, 3);
        let mut to: Vec<String> = done
            .handed
            .iter()
            .map(|h| h.assignment.as_ref().unwrap().seller.clone())
            .collect();
        to.sort();
        let mut expected = vec![beto.clone(), carla.clone(), carla.clone()];
        expected.sort();
        assert_eq!(
            to, expected,
            "Beto takes one (his capacity), Carla the rest"
        );
        for h in &done.handed {
            let (old, new) = (h.previous.as_ref().unwrap(), h.assignment.as_ref().unwrap());
            assert_eq!(old.seller, ana);
            assert_eq!(old.end_cause, pb::AssignmentEndCause::Handover as i32);
            assert_eq!(new.cause, pb::AssignmentCause::Handover as i32);
            assert_eq!(old.valid_to, new.valid_from, "no gap");
            assert_eq!(new.reason, "leaves the company");
        }
        for c in &coast {
            let now_with = primary_seller(&coverage(&mut client, c).await.unwrap()).to_owned();
            assert!([beto.as_str(), carla.as_str()].contains(&now_with.as_str()));
        }
        let after_first = now();
        // Offboarding again: nothing left to do.
        let again = client
            .offboard_seller(offboard(&ana, "", false, false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again.handed_count, 0);

        // A transfer: one of Carla's customers to a new seller, by name.
        let dario = add_seller(&mut client, seller("Darío Vega", "dario", &["CL-V"], &[])).await;
        let carlas: Vec<&String> = coast
            .iter()
            .filter(|c| {
                done.handed.iter().any(|h| {
                    let a = h.assignment.as_ref().unwrap();
                    &a.customer == *c && a.seller == carla
                })
            })
            .collect();
        let moved = carlas[0].clone();
        let transfer = pb::TransferCarteraRequest {
            seller: carla.clone(),
            to_seller: dario.clone(),
            customers: vec![moved.clone()],
            reason: "Darío takes the Viña accounts".into(),
            ..Default::default()
        };
        let shown = client
            .transfer_cartera(pb::TransferCarteraRequest {
                dry_run: true,
                ..transfer.clone()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(shown.handed_count, 1);
        assert_eq!(
            primary_seller(&coverage(&mut client, &moved).await.unwrap()),
            carla
        );
        let moved_now = client
            .transfer_cartera(transfer.clone())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(moved_now.handed_count, 1);
        let explained = moved_now.handed[0]
            .assignment
            .as_ref()
            .unwrap()
            .explanation
            .clone()
            .unwrap();
        assert_eq!(explained.rule, "HANDOVER");
        assert!(explained.rule_en.contains(&carla), "{explained:?}");
        assert_eq!(
            primary_seller(&coverage(&mut client, &moved).await.unwrap()),
            dario
        );

        // Who was responsible on "March 31st", after two handovers: Ana, still.
        assert_eq!(primary_at(&mut client, &moved, &march_31).await, ana);
        assert_eq!(primary_at(&mut client, &moved, &after_first).await, carla);
        let intervals: Vec<String> = history(&mut client, &moved)
            .await
            .into_iter()
            .filter(|a| a.role == pb::AssignmentRole::Primary as i32)
            .map(|a| a.seller)
            .collect();
        assert_eq!(intervals, [ana.clone(), carla.clone(), dario.clone()]);

        // Elena is the only one covering Santiago: she cannot leave it without a
        // successor, unless the house may take it.
        let refused = client
            .offboard_seller(offboard(&elena, "", false, false))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert!(refused.message().contains(&city), "{refused:?}");
        assert!(refused.message().contains("PRIMARY"), "{refused:?}");
        assert_eq!(
            primary_seller(&coverage(&mut client, &city).await.unwrap()),
            elena
        );
        let housed = client
            .offboard_seller(offboard(&elena, "", true, false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(housed.handed_count, 1);
        assert_eq!(
            primary_seller(&coverage(&mut client, &city).await.unwrap()),
            HOUSE
        );

        // Bad input.
        let err = client
            .offboard_seller(pb::OffboardSellerRequest {
                reason: String::new(),
                ..offboard(&carla, "", false, true)
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "reason");
        let err = client
            .offboard_seller(offboard(&carla, &carla, false, true))
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "successor");
        let err = client
            .offboard_seller(offboard(
                "sellers/01a23854-fb68-7732-80dd-cc2fe40a10b7",
                "",
                false,
                true,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = client
            .offboard_seller(offboard(HOUSE, "", false, true))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        let err = client
            .offboard_seller(offboard(&carla, &ana, false, true))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "a departed successor");
        let err = client
            .transfer_cartera(pb::TransferCarteraRequest {
                customers: vec![city.clone()],
                ..transfer.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "customers[0]");
        let err = client
            .transfer_cartera(pb::TransferCarteraRequest {
                customers: vec!["customers/x".into()],
                ..transfer.clone()
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "customers[0]");
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    two_offboardings_at_once_never_leave_a_customer_with_a_departed_seller,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let (ana, beto) = coast_sellers(&mut client).await;
        let mut coast = Vec::new();
        for i in 0..6 {
            let c = customer_at(
                &mut registry,
                &format!("Costa {i}"),
                "Región de Valparaíso",
                "Viña del Mar",
            )
            .await;
            buy(&mut registry, &c, &format!("o-{i}"), 2, &["lubricantes"]).await;
            coast.push(c);
        }
        for c in &coast {
            coverage_when(&mut client, c, |c| c.primary.is_some()).await;
        }
        // Each would hand everything to the other: only one can go.
        let (mut a, mut b) = (client.clone(), client.clone());
        let (first, second) = tokio::join!(
            a.offboard_seller(offboard(&ana, "", false, false)),
            b.offboard_seller(offboard(&beto, "", false, false)),
        );
        let outcomes = [first.map(|_| ()), second.map(|_| ())];
        assert_eq!(
            outcomes.iter().filter(|o| o.is_ok()).count(),
            1,
            "{outcomes:?}"
        );
        let refused = outcomes.iter().find_map(|o| o.as_ref().err()).unwrap();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        let stayed = if outcomes[0].is_ok() { &beto } else { &ana };
        for c in &coast {
            assert_eq!(
                primary_seller(&coverage(&mut client, c).await.unwrap()),
                stayed
            );
        }
    }
);

/// GetCoverage once the feed has applied event `seq`.
async fn coverage_after(client: &mut Client, customer: &str, seq: i64) -> pb::GetCoverageResponse {
    client
        .get_coverage(pb::GetCoverageRequest {
            customer: customer.into(),
            min_event_sequence: seq,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_settled_customer_whose_specialist_left_gets_the_next_one_at_its_next_purchase,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        coast_sellers(&mut client).await;
        let sara = add_seller(
            &mut client,
            seller("Sara Vera", "sara", &["CL-V"], &["baterias"]),
        )
        .await;
        let buyer = customer_at(&mut registry, "Rita", "Región de Valparaíso", "Quilpué").await;
        let seq = buy(&mut registry, &buyer, "o-1", 3, &["baterias"]).await;
        let first = coverage_after(&mut client, &buyer, seq).await;
        assert_eq!(first.specialists.len(), 1);
        assert_eq!(first.specialists[0].seller, sara);
        // A purchase that changes nothing: on SQLite the customer is now known settled,
        // with its specialist, between feed batches.
        let seq = buy(&mut registry, &buyer, "o-2", 2, &["baterias"]).await;
        assert_eq!(
            coverage_after(&mut client, &buyer, seq).await.specialists,
            first.specialists
        );

        // Sara leaves with nobody to take her line: her specialist assignment ends.
        let left = client
            .offboard_seller(offboard(&sara, "", false, false))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(left.ended_count, 1, "{left:?}");
        let tomas = add_seller(
            &mut client,
            seller("Tomás Paz", "tomas", &["CL-V"], &["baterias"]),
        )
        .await;
        // The next purchase in the line finds no specialist and takes the new one: the
        // customer was read again, not taken as settled.
        let seq = buy(&mut registry, &buyer, "o-3", 1, &["baterias"]).await;
        let now = coverage_after(&mut client, &buyer, seq).await;
        assert_eq!(now.specialists.len(), 1, "{now:?}");
        assert_eq!(now.specialists[0].seller, tomas);
    }
);
