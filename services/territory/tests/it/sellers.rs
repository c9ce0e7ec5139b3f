//! Sellers as the sales manager sets them up: the house seller of a fresh install,
//! token names that name one seller, statuses, filters and pages.

use clientela_proto::clientela::territory::v1 as pb;
use tonic::Code;

use crate::*;

pub fn seller(name: &str, token: &str, codes: &[&str], lines: &[&str]) -> pb::Seller {
    pb::Seller {
        display_name: name.into(),
        email: format!("{}@lubrisur.cl", token.to_lowercase()),
        token_name: token.into(),
        territory_codes: codes.iter().map(|c| (*c).to_owned()).collect(),
        specialties: lines.iter().map(|c| (*c).to_owned()).collect(),
        capacity: 100,
        ..Default::default()
    }
}

async fn create(
    client: &mut Client,
    s: pb::Seller,
    request_id: &str,
) -> Result<pb::CreateSellerResponse, tonic::Status> {
    client
        .create_seller(pb::CreateSellerRequest {
            seller: Some(s),
            request_id: request_id.into(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn list(client: &mut Client, request: pb::ListSellersRequest) -> Vec<String> {
    client
        .list_sellers(request)
        .await
        .unwrap()
        .into_inner()
        .sellers
        .into_iter()
        .map(|s| s.display_name)
        .collect()
}

clientela_testkit::both_engines!(
    crate::spawn_app,
    a_fresh_install_has_the_house_seller_and_it_only_changes_its_name,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let sellers = client
            .list_sellers(pb::ListSellersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .sellers;
        assert_eq!(sellers.len(), 1);
        let house = &sellers[0];
        assert!(house.house);
        assert_eq!(house.status, pb::SellerStatus::Active as i32);
        let refused = client
            .update_seller(pb::UpdateSellerRequest {
                seller: Some(pb::Seller {
                    name: house.name.clone(),
                    capacity: 10,
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::FailedPrecondition);
        let renamed = client
            .update_seller(pb::UpdateSellerRequest {
                seller: Some(pb::Seller {
                    name: house.name.clone(),
                    display_name: "Lubricantes del Sur (empresa)".into(),
                    etag: house.etag.clone(),
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await
            .unwrap()
            .into_inner()
            .seller
            .unwrap();
        assert_eq!(renamed.display_name, "Lubricantes del Sur (empresa)");
        assert!(renamed.house);
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    sellers_are_validated_and_their_tokens_name_one_seller,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let ana = create(
            &mut client,
            seller("Ana Rojas", "ana", &["CL-V"], &["Lubricantes"]),
            "s-ana",
        )
        .await
        .unwrap();
        assert!(ana.created);
        let ana = ana.seller.unwrap();
        assert_eq!(
            ana.status,
            pb::SellerStatus::Active as i32,
            "ACTIVE when not set"
        );
        assert!(!ana.house);
        // A retry is the same seller; the same key with another body is refused.
        let again = create(
            &mut client,
            seller("Ana Rojas", "ana", &["CL-V"], &["Lubricantes"]),
            "s-ana",
        )
        .await
        .unwrap();
        assert!(!again.created);
        assert_eq!(again.seller.unwrap().name, ana.name);
        let reused = create(
            &mut client,
            seller("Ana R.", "ana", &["CL-V"], &[]),
            "s-ana",
        )
        .await
        .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);
        // One token, one seller.
        let taken = create(&mut client, seller("Otra Ana", "ana", &[], &[]), "")
            .await
            .unwrap_err();
        assert_eq!(taken.code(), Code::AlreadyExists);
        assert!(taken.message().contains(&ana.name), "{}", taken.message());

        for (field, bad) in [
            (
                "seller.display_name",
                pb::Seller {
                    display_name: String::new(),
                    ..seller("x", "b1", &[], &[])
                },
            ),
            (
                "seller.email",
                pb::Seller {
                    email: "not-an-email".into(),
                    ..seller("x", "b2", &[], &[])
                },
            ),
            (
                "seller.token_name",
                pb::Seller {
                    token_name: "two words".into(),
                    ..seller("x", "b3", &[], &[])
                },
            ),
            (
                "seller.territory_codes[0]",
                seller("x", "b4", &["cl-v"], &[]),
            ),
            (
                "seller.capacity",
                pb::Seller {
                    capacity: -1,
                    ..seller("x", "b5", &[], &[])
                },
            ),
            (
                "seller.status",
                pb::Seller {
                    status: pb::SellerStatus::Departed as i32,
                    ..seller("x", "b6", &[], &[])
                },
            ),
            (
                "seller.status",
                pb::Seller {
                    status: 99,
                    ..seller("x", "b7", &[], &[])
                },
            ),
        ] {
            let status = create(&mut client, bad, "").await.unwrap_err();
            assert_eq!(violation(&status), field);
        }
    }
);

clientela_testkit::both_engines!(
    crate::spawn_app,
    sellers_are_listed_by_territory_specialty_and_status_in_pages,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let ana = create(
            &mut client,
            seller("Ana Rojas", "ana", &["CL-V", "CL-RM"], &["Lubricantes"]),
            "",
        )
        .await
        .unwrap()
        .seller
        .unwrap();
        create(
            &mut client,
            seller("Bruno Díaz", "bruno", &["CL-RM"], &["Neumáticos"]),
            "",
        )
        .await
        .unwrap();
        create(
            &mut client,
            seller("Carla Soto", "carla", &["CL-NORTE"], &[]),
            "",
        )
        .await
        .unwrap();
        let rm = list(
            &mut client,
            pb::ListSellersRequest {
                territory_code: "CL-RM".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(rm, ["Ana Rojas", "Bruno Díaz"]);
        let tyres = list(
            &mut client,
            pb::ListSellersRequest {
                specialty: "NEUMATICOS".into(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(tyres, ["Bruno Díaz"], "case and accents aside");

        // ON_LEAVE through the mask; a stale etag is ABORTED.
        let leave = |etag: &str| pb::UpdateSellerRequest {
            seller: Some(pb::Seller {
                name: ana.name.clone(),
                status: pb::SellerStatus::OnLeave as i32,
                etag: etag.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["status".into()],
            }),
        };
        let on_leave = client
            .update_seller(leave(&ana.etag))
            .await
            .unwrap()
            .into_inner()
            .seller
            .unwrap();
        assert_eq!(on_leave.status, pb::SellerStatus::OnLeave as i32);
        assert_eq!(
            on_leave.territory_codes, ana.territory_codes,
            "not in the mask: kept"
        );
        let stale = client.update_seller(leave(&ana.etag)).await.unwrap_err();
        assert_eq!(stale.code(), Code::Aborted);
        let departed = client
            .update_seller(pb::UpdateSellerRequest {
                seller: Some(pb::Seller {
                    name: ana.name.clone(),
                    status: pb::SellerStatus::Departed as i32,
                    ..Default::default()
                }),
                update_mask: None,
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&departed), "seller.status");
        let on_leave_only = list(
            &mut client,
            pb::ListSellersRequest {
                statuses: vec![pb::SellerStatus::OnLeave as i32],
                ..Default::default()
            },
        )
        .await;
        assert_eq!(on_leave_only, ["Ana Rojas"]);

        // Pages: the house first, then by name; a token is bound to its filters.
        let first = client
            .list_sellers(pb::ListSellersRequest {
                page_size: 2,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(first.sellers[0].house);
        assert_eq!(first.sellers[1].display_name, "Ana Rojas");
        let rest = list(
            &mut client,
            pb::ListSellersRequest {
                page_size: 2,
                page_token: first.next_page_token.clone(),
                ..Default::default()
            },
        )
        .await;
        assert_eq!(rest, ["Bruno Díaz", "Carla Soto"]);
        let other = client
            .list_sellers(pb::ListSellersRequest {
                page_token: first.next_page_token,
                specialty: "lubricantes".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(violation(&other), "page_token");
        let missing = client
            .get_seller(pb::GetSellerRequest {
                name: "sellers/0192f0c1-0000-7000-8000-000000000000".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), Code::NotFound);
    }
);

// The registry's rule for request keys, under concurrency: twenty callers retrying one
// create at once make one seller, and every one of them gets it.
clientela_testkit::both_engines!(
    crate::spawn_app,
    twenty_concurrent_creates_with_one_request_id_make_one_seller,
    |app: TestApp| async move {
        let calls = (0..20).map(|_| {
            let mut client = app.client.clone();
            async move {
                create(
                    &mut client,
                    seller("Dora Paz", "dora", &["CL-V"], &[]),
                    "s-dora",
                )
                .await
                .unwrap()
            }
        });
        let answers = futures::future::join_all(calls).await;
        assert_eq!(answers.iter().filter(|a| a.created).count(), 1);
        let names: std::collections::BTreeSet<String> = answers
            .into_iter()
            .map(|a| a.seller.unwrap().name)
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        let mut client = app.client.clone();
        let listed = list(&mut client, pb::ListSellersRequest::default()).await;
        assert_eq!(listed.len(), 2, "the house and Dora: {listed:?}");
    }
);
