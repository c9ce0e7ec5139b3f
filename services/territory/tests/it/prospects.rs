//! A territory's prospect list and a seller's claim of a prospect, through a server
//! with auth on: a sales token lists and claims only in the territories it covers, and
//! never takes a prospect another seller develops.

use std::time::Duration;

use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::cartera::{activate, add_seller, buy, coverage, customer_at, move_to};
use crate::models::chile_2027;
use crate::sellers::seller;
use crate::*;

fn list(territory: &str, unclaimed_only: bool, page_size: i32) -> pb::ListProspectsRequest {
    pb::ListProspectsRequest {
        territory: territory.into(),
        unclaimed_only,
        page_size,
        page_token: String::new(),
    }
}

/// Claims `customer` for `seller` ("" for the caller itself) as token `token`.
async fn claim_as(
    client: &mut Client,
    customer: &str,
    seller: &str,
    token: &str,
) -> Result<pb::Assignment, tonic::Status> {
    let request = pb::ClaimProspectRequest {
        customer: customer.into(),
        seller: seller.into(),
        reason: String::new(),
        request_id: String::new(),
    };
    client
        .claim_prospect(as_token(request, token))
        .await
        .map(|r| r.into_inner().assignment.unwrap_or_default())
}

async fn listed(
    client: &mut Client,
    request: tonic::Request<pb::ListProspectsRequest>,
) -> Vec<String> {
    client
        .list_prospects(request)
        .await
        .unwrap()
        .into_inner()
        .prospects
        .into_iter()
        .map(|p| p.customer)
        .collect()
}

/// Waits (the feed is followed asynchronously) until Beto's CL-RM lists `expected`.
async fn beto_lists(client: &mut Client, expected: &[String], what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut got = listed(client, as_token(list("CL-RM", false, 0), "beto")).await;
        got.sort();
        if got == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

clientela_testkit::both_engines!(
    crate::spawn_sales_app,
    a_seller_lists_and_claims_the_prospects_of_its_own_territories,
    |app: TestApp| async move {
        let (mut client, mut registry) = (app.client.clone(), app.registry.clone());
        let model = chile_2027(&mut client).await;
        let ana = add_seller(&mut client, seller("Ana Rojas", "ana", &["CL-V"], &[])).await;
        let beto = add_seller(&mut client, seller("Beto Soto", "beto", &["CL-RM"], &[])).await;
        let carla = add_seller(&mut client, seller("Carla Díaz", "carla", &["CL-V"], &[])).await;
        activate(&mut client, &model).await;
        let vina = customer_at(
            &mut registry,
            "Prospecto Viña",
            "Región de Valparaíso",
            "Viña del Mar",
        )
        .await;
        let valpo = customer_at(
            &mut registry,
            "Prospecto Valpo",
            "Región de Valparaíso",
            "Valparaíso",
        )
        .await;
        let santiago = customer_at(
            &mut registry,
            "Prospecto Santiago",
            "Región Metropolitana",
            "Providencia",
        )
        .await;
        let buyer = customer_at(
            &mut registry,
            "Compradora",
            "Región de Valparaíso",
            "Quilpué",
        )
        .await;
        buy(&mut registry, &buyer, "o-1", 1, &["lubricantes"]).await;
        let mut all = vec![vina.clone(), valpo.clone(), santiago.clone()];
        all.sort();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let got = listed(&mut client, tonic::Request::new(list("CL", false, 0))).await;
            if got == all
                && coverage(&mut client, &buyer)
                    .await
                    .is_ok_and(|c| c.primary.is_some())
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "prospects never listed: {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // Pages, by id.
        let pages = every_page(
            list("CL", false, 1),
            |r| &mut r.page_token,
            async |r| {
                let page = client.list_prospects(r).await.unwrap().into_inner();
                let customers = page.prospects.into_iter().map(|p| p.customer).collect();
                (customers, page.next_page_token)
            },
        )
        .await;
        assert!(pages.iter().all(|p| p.len() <= 1));
        assert_eq!(pages.concat(), all);

        // Ana sees the coast's prospects, not Santiago's nor the country's.
        let mut coast = vec![vina.clone(), valpo.clone()];
        coast.sort();
        assert_eq!(
            listed(&mut client, as_token(list("CL-V", false, 0), "ana")).await,
            coast
        );
        for territory in ["CL-RM", "CL"] {
            let err = client
                .list_prospects(as_token(list(territory, false, 0), "ana"))
                .await
                .unwrap_err();
            assert_eq!(err.code(), Code::PermissionDenied, "{territory}: {err:?}");
        }

        // She claims one: hers, and hers again if asked again.
        let claimed = claim_as(&mut client, &vina, "", "ana").await.unwrap();
        assert_eq!(claimed.seller, ana);
        assert_eq!(claimed.role, pb::AssignmentRole::Prospector as i32);
        assert_eq!(claimed.cause, pb::AssignmentCause::Manual as i32);
        assert_eq!(claimed.actor, "ana");
        let again = claim_as(&mut client, &vina, "", "ana").await.unwrap();
        assert_eq!(again.name, claimed.name);
        let seen = client
            .get_coverage(as_token(
                pb::GetCoverageRequest {
                    customer: vina.clone(),
                    ..Default::default()
                },
                "ana",
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(seen.prospector.unwrap().name, claimed.name);
        assert_eq!(
            listed(&mut client, as_token(list("CL-V", true, 0), "ana")).await,
            std::slice::from_ref(&valpo),
            "unclaimed only"
        );
        let with_prospector = client
            .list_prospects(as_token(list("CL-V", false, 0), "ana"))
            .await
            .unwrap()
            .into_inner()
            .prospects;
        let vina_listed = with_prospector.iter().find(|p| p.customer == vina).unwrap();
        assert_eq!(vina_listed.prospector.as_ref().unwrap().seller, ana);
        assert_eq!(vina_listed.territory_code, "CL-V");

        // Nobody takes it from her; nobody claims outside their territory or for others.
        let err = claim_as(&mut client, &vina, &carla, "ops")
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains(&ana), "{err:?}");
        for (customer, seller, token) in [
            (&vina, "", "beto"),
            (&santiago, "", "ana"),
            (&valpo, beto.as_str(), "ana"),
        ] {
            let err = claim_as(&mut client, customer, seller, token)
                .await
                .unwrap_err();
            assert_eq!(
                err.code(),
                Code::PermissionDenied,
                "{token} on {customer}: {err:?}"
            );
        }
        let err = claim_as(&mut client, &valpo, &ana, "bi").await.unwrap_err();
        assert_eq!(err.code(), Code::PermissionDenied, "readonly");
        let err = claim_as(&mut client, &valpo, "", "ghost")
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Code::PermissionDenied,
            "a token naming no seller"
        );
        let err = claim_as(&mut client, &buyer, "", "ana").await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::FailedPrecondition,
            "a buyer is no prospect"
        );
        // An admin claims for a seller it names.
        let err = claim_as(&mut client, &santiago, "", "ops")
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "seller");
        let by_admin = claim_as(&mut client, &santiago, &beto, "ops")
            .await
            .unwrap();
        assert_eq!(by_admin.seller, beto);
        assert_eq!(by_admin.actor, "ops");

        // A prospect that moves is listed where it went, and stays there through a move
        // within its territory (its row written without touching its indexes).
        move_to(&mut registry, &valpo, "Región Metropolitana", "Providencia").await;
        let mut expected = vec![santiago.clone(), valpo.clone()];
        expected.sort();
        beto_lists(&mut client, &expected, "never listed where it went").await;
        assert_eq!(
            listed(&mut client, as_token(list("CL-V", false, 0), "ana")).await,
            std::slice::from_ref(&vina)
        );
        move_to(&mut registry, &valpo, "Región Metropolitana", "Ñuñoa").await;
        let later = customer_at(&mut registry, "Marca", "Región Metropolitana", "Ñuñoa").await;
        expected.push(later);
        expected.sort();
        beto_lists(&mut client, &expected, "lost by a move within").await;

        // Bad input.
        let err = client.list_prospects(list("", false, 0)).await.unwrap_err();
        assert_eq!(violation(&err), "territory");
        let err = client
            .list_prospects(list("NOWHERE", false, 0))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        let err = client
            .list_prospects(list("CL", false, -1))
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "page_size");
        let err = claim_as(&mut client, "customers/nope", &ana, "ops")
            .await
            .unwrap_err();
        assert_eq!(violation(&err), "customer");
    }
);
