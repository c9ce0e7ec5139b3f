//! PreviewRealignment and ApplyRealignment: a preview shows who would move where and
//! which pins win, writing nothing; its apply does exactly that (streaming progress),
//! answers a retry with what it did, and is ABORTED once the model, the sellers or the
//! moves it would make changed.

use clientela_proto::clientela::territory::v1 as pb;
use futures::StreamExt;
use tonic::Code;

use crate::cartera::{
    add_seller, assign, buyer, coast_buyers, coverage, coverage_when, move_to, primary_seller,
};
use crate::models::{countries, seed_003};
use crate::sellers::seller;
use crate::*;

async fn preview(
    client: &mut Client,
    model: &str,
) -> Result<pb::PreviewRealignmentResponse, tonic::Status> {
    client
        .preview_realignment(pb::PreviewRealignmentRequest {
            territory_model: model.into(),
            max_moves: 0,
        })
        .await
        .map(|r| r.into_inner())
}

/// Every message of an apply; Err if the stream ended with one.
pub async fn apply(
    client: &mut Client,
    token: &str,
) -> Result<Vec<pb::ApplyRealignmentResponse>, tonic::Status> {
    let mut stream = client
        .apply_realignment(pb::ApplyRealignmentRequest {
            preview_token: token.into(),
        })
        .await?
        .into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.next().await {
        out.push(message?);
    }
    Ok(out)
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_realignment_applies_exactly_what_its_preview_showed,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        // Model 1: the whole country, one seller.
        let first = new_model(&mut client, "Chile 2026").await;
        add(&mut client, &first, "CL", "", countries(&["cl"]))
            .await
            .unwrap();
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL"], &[])).await;
        client
            .activate_territory_model(pb::ActivateTerritoryModelRequest {
                name: first.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        let coast = coast_buyers(&mut client, &mut registry, &ana).await;
        let (city, had) = buyer(
            &mut client,
            &mut registry,
            "Santiago 1",
            "Región Metropolitana",
            "Providencia",
        )
        .await;
        assert_eq!(had, ana);
        // One coastal customer is Ana's by hand, pinned.
        assign(
            &mut client,
            pb::AssignCustomerRequest {
                customer: coast[2].clone(),
                seller: ana.clone(),
                role: pb::AssignmentRole::Primary as i32,
                reason: "she has known them for years".into(),
                pin: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();

        // Nothing changed: re-running the active model's rules moves nobody.
        let idle = preview(&mut client, &first.name).await.unwrap();
        assert_eq!((idle.customers, idle.assignments_moved), (4, 0));

        // Model 2 (seed 003) with a seller for the V Región: the coast would go to Beto,
        // but the pin holds; Santiago stays with Ana (CL-RM has nobody: CL's seller).
        let second = new_model(&mut client, "Chile 2027").await;
        seed_003(&mut client, &second).await;
        let beto = add_seller(&mut client, seller("Beto Soto", "beto", &["CL-V"], &[])).await;
        let shown = preview(&mut client, &second.name).await.unwrap();
        assert_eq!(shown.customers, 4);
        assert_eq!(shown.customers_placed, 4);
        assert_eq!(shown.assignments_moved, 2, "{shown:?}");
        assert_eq!((shown.overflowed, shown.to_house), (0, 0));
        assert_eq!(shown.pins_held, 1);
        assert_eq!(shown.pins[0].customer, coast[2]);
        let mut moved: Vec<&str> = shown.moves.iter().map(|m| m.customer.as_str()).collect();
        moved.sort_unstable();
        let mut expected = vec![coast[0].as_str(), coast[1].as_str()];
        expected.sort_unstable();
        assert_eq!(moved, expected);
        for m in &shown.moves {
            assert_eq!(
                (m.from_seller.as_str(), m.to_seller.as_str()),
                (ana.as_str(), beto.as_str())
            );
            assert_eq!(m.territory_code, "CL-V");
            assert_eq!(m.cause, pb::AssignmentCause::Rule as i32);
        }
        let shifts: Vec<(&str, i64, i64, i64, i64)> = shown
            .sellers
            .iter()
            .map(|s| {
                (
                    s.seller.as_str(),
                    s.load_before,
                    s.load_after,
                    s.gained,
                    s.lost,
                )
            })
            .collect();
        assert!(shifts.contains(&(ana.as_str(), 4, 2, 0, 2)), "{shifts:?}");
        assert!(shifts.contains(&(beto.as_str(), 0, 2, 2, 0)), "{shifts:?}");
        // A preview writes nothing.
        assert_eq!(
            primary_seller(&coverage(&mut client, &coast[0]).await.unwrap()),
            ana
        );
        let still = client
            .get_territory_model(pb::GetTerritoryModelRequest {
                name: second.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .territory_model
            .unwrap();
        assert_eq!(still.state, pb::TerritoryModelState::Planning as i32);

        // Applied: progress, then the last message with what it did.
        let messages = apply(&mut client, &shown.preview_token).await.unwrap();
        let last = messages.last().unwrap();
        assert!(last.done);
        assert!(messages[..messages.len() - 1].iter().all(|m| !m.done));
        assert_eq!(last.assignments_moved, shown.assignments_moved);
        assert_eq!((last.customers_done, last.customers_placed), (4, 4));
        assert_eq!(last.pins_held, 1);
        assert_eq!(last.archived_model, first.name);
        assert_eq!(
            last.territory_model.as_ref().unwrap().state,
            pb::TerritoryModelState::Active as i32
        );
        for c in &coast[..2] {
            assert_eq!(
                primary_seller(&coverage(&mut client, c).await.unwrap()),
                beto
            );
        }
        assert_eq!(
            primary_seller(&coverage(&mut client, &coast[2]).await.unwrap()),
            ana
        );
        assert_eq!(
            primary_seller(&coverage(&mut client, &city).await.unwrap()),
            ana
        );

        // The same token again (a retry after a lost answer): what it did, nothing more.
        let again = apply(&mut client, &shown.preview_token).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].assignments_moved, last.assignments_moved);
        assert_eq!(again[0].archived_model, first.name);

        // A seller joins CL-RM: Santiago would move to her. The seller is edited before
        // the apply: stale.
        let carla = add_seller(&mut client, seller("Carla Díaz", "carla", &["CL-RM"], &[])).await;
        let rebalance = preview(&mut client, &second.name).await.unwrap();
        assert_eq!(rebalance.assignments_moved, 1);
        assert_eq!(rebalance.moves[0].customer, city);
        assert_eq!(rebalance.moves[0].to_seller, carla);
        client
            .update_seller(pb::UpdateSellerRequest {
                seller: Some(pb::Seller {
                    name: carla.clone(),
                    capacity: 50,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["capacity".into()],
                }),
            })
            .await
            .unwrap();
        let stale = apply(&mut client, &rebalance.preview_token)
            .await
            .unwrap_err();
        assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
        assert!(stale.message().contains("preview again"), "{stale:?}");

        // Previewed again; then the customer moves to the coast (the feed hands it to
        // Beto): the apply would move nothing the preview showed. Aborted, nothing done.
        let rebalance = preview(&mut client, &second.name).await.unwrap();
        assert_eq!(rebalance.assignments_moved, 1);
        move_to(&mut registry, &city, "Región de Valparaíso", "Concón").await;
        coverage_when(&mut client, &city, |c| primary_seller(c) == beto).await;
        let stale = apply(&mut client, &rebalance.preview_token)
            .await
            .unwrap_err();
        assert_eq!(stale.code(), Code::Aborted, "{stale:?}");
        assert!(stale.message().contains("customers changed"), "{stale:?}");
        assert_eq!(
            primary_seller(&coverage(&mut client, &city).await.unwrap()),
            beto
        );

        // Bad input.
        let bad = apply(&mut client, "not-a-token").await.unwrap_err();
        assert_eq!(violation(&bad), "preview_token");
        let bad = apply(&mut client, "").await.unwrap_err();
        assert_eq!(violation(&bad), "preview_token");
        let archived = preview(&mut client, &first.name).await.unwrap_err();
        assert_eq!(archived.code(), Code::FailedPrecondition);
        let unknown = preview(
            &mut client,
            "territoryModels/01a23854-fb68-7732-80dd-cc2fe40a10b7",
        )
        .await
        .unwrap_err();
        assert_eq!(unknown.code(), Code::NotFound);
        let malformed = preview(&mut client, "models/1").await.unwrap_err();
        assert_eq!(violation(&malformed), "territory_model");
    }
);
