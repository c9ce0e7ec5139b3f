//! Every command is idempotent by its `request_id` (TERRITORY.md invariant 9): the same
//! key again answers as the first call did and changes nothing; the key with another
//! request or another method is ALREADY_EXISTS; concurrent twins run once; a dry run
//! uses no key.

use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::cartera::{activate, add_seller, assign, buyer, coast_buyers, coast_sellers, history};
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_manual_assignment_sent_twice_is_made_once,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let (ana, beto) = coast_sellers(&mut client).await;
        let (customer, had) = buyer(
            &mut client,
            &mut registry,
            "Carla",
            "Región de Valparaíso",
            "Quilpué",
        )
        .await;
        let other = if had == ana { &beto } else { &ana };

        let request = pb::AssignCustomerRequest {
            customer: customer.clone(),
            seller: other.clone(),
            role: pb::AssignmentRole::Primary as i32,
            reason: "asked for by the customer".into(),
            pin: true,
            request_id: "crm-4711".into(),
            ..Default::default()
        };
        let first = assign(&mut client, request.clone()).await.unwrap();
        assert_eq!(first.replaced.as_ref().unwrap().seller, had);
        let again = assign(&mut client, request.clone()).await.unwrap();
        assert_eq!(
            again, first,
            "the first answer, replaced assignment included"
        );
        assert_eq!(history(&mut client, &customer).await.len(), 2);

        let mut changed = request.clone();
        changed.reason = "another reason".into();
        let err = assign(&mut client, changed).await.unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
        assert!(err.message().contains("crm-4711"), "{err:?}");
        let err = client
            .unpin_assignment(pb::UnpinAssignmentRequest {
                name: first.assignment.as_ref().unwrap().name.clone(),
                request_id: "crm-4711".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::AlreadyExists, "another method: {err:?}");

        let unpin = pb::UnpinAssignmentRequest {
            name: first.assignment.as_ref().unwrap().name.clone(),
            request_id: "crm-4712".into(),
        };
        let unpinned = client.unpin_assignment(unpin.clone()).await.unwrap();
        let twice = client.unpin_assignment(unpin).await.unwrap();
        assert_eq!(twice.into_inner(), unpinned.into_inner());
        assert_eq!(history(&mut client, &customer).await.len(), 3);

        let mut long = request;
        long.request_id = "x".repeat(129);
        let err = assign(&mut client, long).await.unwrap_err();
        assert_eq!(violation(&err), "request_id");
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    concurrent_twins_of_a_transfer_hand_the_cartera_on_once,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        activate(&mut client, &model).await;
        let coast = coast_buyers(&mut client, &mut registry, &ana).await;
        let beto = add_seller(&mut client, seller("Beto Soto", "beto", &["CL-V"], &[])).await;

        let transfer = |dry_run: bool| pb::TransferCarteraRequest {
            seller: ana.clone(),
            to_seller: beto.clone(),
            reason: "Ana moves to the north".into(),
            dry_run,
            request_id: "handover-2027-01".into(),
            ..Default::default()
        };
        // A dry run does nothing, so it keeps no key: the real call after it runs.
        let plan = client.transfer_cartera(transfer(true)).await.unwrap();
        assert_eq!(plan.into_inner().handed_count, 3);

        let calls = (0..8).map(|_| {
            let mut client = client.clone();
            let request = transfer(false);
            tokio::spawn(async move { client.transfer_cartera(request).await })
        });
        let mut answers = Vec::new();
        for call in calls {
            answers.push(call.await.unwrap().unwrap().into_inner());
        }
        assert_eq!(answers[0].handed_count, 3);
        assert!(!answers[0].dry_run);
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
        for c in &coast {
            let held: Vec<String> = history(&mut client, c)
                .await
                .iter()
                .map(|a| a.seller.clone())
                .collect();
            assert_eq!(held, [ana.clone(), beto.clone()], "handed once: {c}");
        }
    }
);
