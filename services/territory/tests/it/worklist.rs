//! The salesperson's worklist through the real services (seed 001's treatment on seed
//! 003's responsible salesperson's desk): a cartera's customers most urgent first, each
//! with the classification engine's actions in the language asked and the label and
//! explanation that called for each.

use std::time::Duration;

use clientela_proto::clientela::registry::v1 as rpb;
use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::cartera::{activate, add_seller, buy, buy_worth, buyer, customer_at};
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

fn worklist(seller: &str, language: &str, page_size: i32) -> pb::ListCarteraActionsRequest {
    pb::ListCarteraActionsRequest {
        seller: seller.into(),
        language_code: language.into(),
        page_size,
        page_token: String::new(),
    }
}

async fn items(
    client: &mut Client,
    request: tonic::Request<pb::ListCarteraActionsRequest>,
) -> Vec<pb::CarteraWorkItem> {
    client
        .list_cartera_actions(request)
        .await
        .unwrap()
        .into_inner()
        .items
}

clientela_testkit::both_engines!(
    crate::spawn_sales_app,
    a_salesperson_s_worklist_puts_the_dissatisfied_first_then_the_key_accounts,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        add_seller(&mut client, seller("Beto Soto", "beto", &["CL-RM"], &[])).await;
        activate(&mut client, &model).await;
        let region = "Región de Valparaíso";
        // The big buyer first: the top of the population is it from the start.
        let big = customer_at(&mut registry, "Minera Grande", region, "Quintero").await;
        buy_worth(
            &mut registry,
            &big,
            "o-big",
            1,
            &["lubricantes"],
            10_000_000,
        )
        .await;
        let (calm, _) = buyer(&mut client, &mut registry, "Tranquila", region, "Quilpué").await;
        let (upset, _) = buyer(
            &mut client,
            &mut registry,
            "Molesto",
            region,
            "Viña del Mar",
        )
        .await;
        registry
            .open_complaint(rpb::OpenComplaintRequest {
                parent: upset.clone(),
                complaint: Some(rpb::Complaint {
                    subject: "el pedido llegó incompleto".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();
        buy(&mut registry, &calm, "o-calm-2", 1, &["lubricantes"]).await;

        // Wait until the labels have come through the label feed.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let listed = loop {
            let got = items(&mut client, tonic::Request::new(worklist(&ana, "es", 0))).await;
            let urgency = |c: &str| got.iter().find(|i| i.customer == c).map(|i| i.urgency);
            if got.len() == 3
                && urgency(&upset) == Some(pb::CarteraUrgency::Attention as i32)
                && urgency(&big) == Some(pb::CarteraUrgency::KeyAccount as i32)
                && urgency(&calm) == Some(pb::CarteraUrgency::Routine as i32)
                && got[..2].iter().all(|i| !i.actions.is_empty())
            {
                break got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "worklist never settled: {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let order: Vec<&str> = listed.iter().map(|i| i.customer.as_str()).collect();
        assert_eq!(order, [upset.as_str(), big.as_str(), calm.as_str()]);
        assert_eq!(listed[2].urgency, pb::CarteraUrgency::Routine as i32);
        for item in &listed {
            assert_eq!(item.held.len(), 1, "Ana's PRIMARY");
            assert_eq!(item.held[0].role, pb::AssignmentRole::Primary as i32);
        }
        // The dissatisfied customer's treatment, in Spanish, with the label and why.
        let first = &listed[0];
        assert!(first.urgency_reason.contains("reclamo"), "{first:?}");
        let treatment = first
            .actions
            .iter()
            .find(|a| a.label.as_ref().is_some_and(|l| l.code == "DISSATISFIED"))
            .unwrap_or_else(|| panic!("{first:#?}"));
        let label = treatment.label.as_ref().unwrap();
        assert_eq!(label.code, "DISSATISFIED");
        assert!(!label.label_es.is_empty());
        assert!(treatment.action.contains("Escucha activa"), "{treatment:?}");
        assert!(!treatment.explanation.is_empty(), "{treatment:?}");
        assert!(listed[1].urgency_reason.contains("BOSS"), "{:?}", listed[1]);
        // In English.
        let english = items(&mut client, tonic::Request::new(worklist(&ana, "en", 0))).await;
        let treatment = english[0]
            .actions
            .iter()
            .find(|a| a.label.as_ref().is_some_and(|l| l.code == "DISSATISFIED"))
            .unwrap();
        assert!(!treatment.action.is_empty());
        assert_ne!(
            treatment.action,
            listed[0]
                .actions
                .iter()
                .find(|a| a.label.as_ref().is_some_and(|l| l.code == "DISSATISFIED"))
                .unwrap()
                .action
        );

        // Page by page, the same order.
        let pages = every_page(
            worklist(&ana, "es", 1),
            |r| &mut r.page_token,
            async |r| {
                let page = client.list_cartera_actions(r).await.unwrap().into_inner();
                let customers = page.items.into_iter().map(|i| i.customer).collect();
                (customers, page.next_page_token)
            },
        )
        .await;
        assert_eq!(pages.concat(), order);

        // Ana reads her own (seller left empty); Beto may not read hers.
        let own = items(&mut client, as_token(worklist("", "es", 0), "ana")).await;
        assert_eq!(own.len(), 3);
        let err = client
            .list_cartera_actions(as_token(worklist(&ana, "es", 0), "beto"))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied);
        // Bad input.
        let err = client
            .list_cartera_actions(worklist(&ana, "fr", 0))
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "language_code");
        let err = client
            .list_cartera_actions(worklist("", "es", 0))
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "seller");
        let err = client
            .list_cartera_actions(worklist(
                "sellers/01a23854-fb68-7732-80dd-cc2fe40a10b7",
                "",
                0,
            ))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
    }
);
