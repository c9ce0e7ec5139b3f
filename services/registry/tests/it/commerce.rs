//! Purchases, returns, surveys, complaints and referrals.

use clientela_proto::clientela::registry::v1 as pb;
use tonic::Code;

use crate::both_engines;
use crate::harness::*;

both_engines!(
    a_first_purchase_makes_a_prospect_a_customer,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let c = create(&mut client, person(1)).await;
        let response = client
            .record_purchase(pb::RecordPurchaseRequest {
                parent: c.name.clone(),
                purchase: Some(purchase("ORD-1", 60, &[(2, 12990, false), (1, 5000, true)])),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(response.created);
        let p = response.purchase.unwrap();
        assert_eq!(p.total.unwrap().amount_minor, 2 * 12990 + 5000);
        let after = client
            .get_customer(pb::GetCustomerRequest {
                name: c.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(after.status, pb::CustomerStatus::Customer as i32);
    }
);

both_engines!(an_order_id_is_recorded_once, |app: TestApp| async move {
    let mut client = app.client.clone();
    let c = create(&mut client, person(1)).await;
    let other = create(&mut client, person(2)).await;
    let request = pb::RecordPurchaseRequest {
        parent: c.name.clone(),
        purchase: Some(purchase("ORD-9", 60, &[(1, 1000, false)])),
    };
    let first = client
        .record_purchase(request.clone())
        .await
        .unwrap()
        .into_inner();
    let again = client.record_purchase(request).await.unwrap().into_inner();
    assert!(first.created && !again.created);
    assert_eq!(first.purchase, again.purchase);
    // The same order id for another customer is a conflict, not a silent no-op.
    let conflict = client
        .record_purchase(pb::RecordPurchaseRequest {
            parent: other.name.clone(),
            purchase: Some(purchase("ORD-9", 60, &[(1, 1000, false)])),
        })
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), Code::AlreadyExists);
    let listed = client
        .list_purchases(pb::ListPurchasesRequest {
            parent: "customers/-".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.purchases.len(), 1);
});

both_engines!(
    returns_never_exceed_what_was_bought,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let c = create(&mut client, person(1)).await;
        let p = buy(
            &mut client,
            &c.name,
            "ORD-R",
            &[(3, 1000, false), (1, 500, false)],
        )
        .await;
        let ret = |id: &str, lines: Vec<pb::ReturnLine>| pb::RecordReturnRequest {
            purchase: p.name.clone(),
            r#return: Some(pb::Return {
                return_id: id.into(),
                occur_time: Some(ts(10)),
                lines,
                ..Default::default()
            }),
        };
        let partial = client
            .record_return(ret(
                "R-1",
                vec![pb::ReturnLine {
                    line_number: 1,
                    quantity: 2,
                }],
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(partial.r#return.unwrap().amount.unwrap().amount_minor, 2000);
        let after = partial.purchase.unwrap();
        assert_eq!(after.returned.unwrap().amount_minor, 2000);
        assert_eq!(after.lines[0].returned_quantity, 2);

        let too_many = client
            .record_return(ret(
                "R-2",
                vec![pb::ReturnLine {
                    line_number: 1,
                    quantity: 2,
                }],
            ))
            .await
            .unwrap_err();
        assert_eq!(too_many.code(), Code::FailedPrecondition);
        let no_line = client
            .record_return(ret(
                "R-3",
                vec![pb::ReturnLine {
                    line_number: 3,
                    quantity: 1,
                }],
            ))
            .await
            .unwrap_err();
        assert_invalid(&no_line, "return.lines[0].line_number");

        // Empty lines: everything that is left.
        let rest = client
            .record_return(ret("R-4", vec![]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            rest.r#return.unwrap().amount.unwrap().amount_minor,
            1000 + 500
        );
        let nothing_left = client.record_return(ret("R-5", vec![])).await.unwrap_err();
        assert_eq!(nothing_left.code(), Code::FailedPrecondition);
        // Idempotent on return_id.
        let replay = client
            .record_return(ret(
                "R-1",
                vec![pb::ReturnLine {
                    line_number: 1,
                    quantity: 2,
                }],
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!replay.created);
        let returns = client
            .list_returns(pb::ListReturnsRequest {
                parent: c.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .returns;
        assert_eq!(returns.len(), 2);
    }
);

both_engines!(
    surveys_complaints_and_referrals_are_recorded,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let a = create(&mut client, person(1)).await;
        let b = create(&mut client, person(2)).await;
        let survey = client
            .record_survey(pb::RecordSurveyRequest {
                parent: a.name.clone(),
                survey: Some(pb::Survey {
                    kind: pb::SurveyKind::Csat as i32,
                    score: 5,
                    occur_time: Some(ts(5)),
                    comment: "¡Excelente!".into(),
                    ..Default::default()
                }),
                request_id: "s-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(survey.created);

        let opened = client
            .open_complaint(pb::OpenComplaintRequest {
                parent: a.name.clone(),
                complaint: Some(pb::Complaint {
                    subject: "Pedido incompleto".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .complaint
            .unwrap();
        assert_eq!(opened.state, pb::ComplaintState::Open as i32);
        let resolved = client
            .resolve_complaint(pb::ResolveComplaintRequest {
                name: opened.name.clone(),
                resolution: "Reenviado".into(),
                etag: opened.etag.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .complaint
            .unwrap();
        assert_eq!(resolved.state, pb::ComplaintState::Resolved as i32);
        assert!(resolved.resolve_time.is_some());
        let twice = client
            .resolve_complaint(pb::ResolveComplaintRequest {
                name: opened.name.clone(),
                resolution: "otra vez".into(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(twice.code(), Code::FailedPrecondition);

        let referral = client
            .record_referral(pb::RecordReferralRequest {
                parent: a.name.clone(),
                referral: Some(pb::Referral {
                    referred: b.name.clone(),
                    occur_time: Some(ts(3)),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(referral.created);
        let by_other = client
            .record_referral(pb::RecordReferralRequest {
                parent: b.name.clone(),
                referral: Some(pb::Referral {
                    referred: a.name.clone(),
                    occur_time: Some(ts(3)),
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(by_other.created, "a may be referred by b once");
        let c = create(&mut client, person(3)).await;
        let stolen = client
            .record_referral(pb::RecordReferralRequest {
                parent: c.name.clone(),
                referral: Some(pb::Referral {
                    referred: b.name.clone(),
                    occur_time: Some(ts(3)),
                    ..Default::default()
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(stolen.code(), Code::AlreadyExists);

        let surveys = client
            .list_surveys(pb::ListSurveysRequest {
                parent: a.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let complaints = client
            .list_complaints(pb::ListComplaintsRequest {
                parent: a.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let referrals = client
            .list_referrals(pb::ListReferralsRequest {
                parent: a.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            (
                surveys.surveys.len(),
                complaints.complaints.len(),
                referrals.referrals.len()
            ),
            (1, 1, 1)
        );
        assert_eq!(referrals.referrals[0].referred, b.name);
    }
);

both_engines!(history_lists_page_newest_first, |app: TestApp| async move {
    let mut client = app.client.clone();
    let c = create(&mut client, person(1)).await;
    for n in 0..5 {
        client
            .record_purchase(pb::RecordPurchaseRequest {
                parent: c.name.clone(),
                purchase: Some(purchase(&format!("P-{n}"), 1000 - n, &[(1, 100, false)])),
            })
            .await
            .unwrap();
    }
    let mut orders = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_purchases(pb::ListPurchasesRequest {
                parent: c.name.clone(),
                page_size: 2,
                page_token: token,
            })
            .await
            .unwrap()
            .into_inner();
        orders.extend(page.purchases.into_iter().map(|p| p.order_id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(orders, vec!["P-4", "P-3", "P-2", "P-1", "P-0"]);
});

both_engines!(
    concurrent_writes_to_one_customer_queue_instead_of_failing,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let c = create(&mut client, person(1)).await;
        // Sixteen first purchases at once: one of them turns the prospect into a customer,
        // none of them fails.
        let buys: Vec<_> = (0..16)
            .map(|n| {
                let mut client = client.clone();
                let parent = c.name.clone();
                tokio::spawn(async move {
                    client
                        .record_purchase(pb::RecordPurchaseRequest {
                            parent,
                            purchase: Some(purchase(&format!("C-{n}"), 60, &[(5, 100, false)])),
                        })
                        .await
                })
            })
            .collect();
        let mut purchases = Vec::new();
        for b in buys {
            purchases.push(b.await.unwrap().unwrap().into_inner().purchase.unwrap());
        }
        // Ten returns of one unit each against a purchase of five: exactly five succeed.
        let target = purchases[0].name.clone();
        let returns: Vec<_> = (0..10)
            .map(|n| {
                let mut client = client.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    client
                        .record_return(pb::RecordReturnRequest {
                            purchase: target,
                            r#return: Some(pb::Return {
                                return_id: format!("CR-{n}"),
                                occur_time: Some(ts(5)),
                                lines: vec![pb::ReturnLine {
                                    line_number: 1,
                                    quantity: 1,
                                }],
                                ..Default::default()
                            }),
                        })
                        .await
                })
            })
            .collect();
        let mut ok = 0;
        for r in returns {
            match r.await.unwrap() {
                Ok(_) => ok += 1,
                Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
            }
        }
        assert_eq!(ok, 5);
        let listed = client
            .list_purchases(pb::ListPurchasesRequest {
                parent: c.name.clone(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .purchases;
        let returned = listed.iter().find(|p| p.name == target).unwrap();
        assert_eq!(returned.lines[0].returned_quantity, 5);
        assert_eq!(listed.len(), 16);
    }
);

both_engines!(
    races_on_one_etag_crossing_merges_and_returns_have_one_winner,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let a = create(&mut client, person(1)).await;
        let b = create(&mut client, person(2)).await;

        // Ten updates with the same etag: one applies, the others are ABORTED.
        let updates = (0..10).map(|i| {
            let mut client = app.client.clone();
            let customer = pb::Customer {
                display_name: format!("Renamed {i}"),
                ..a.clone()
            };
            async move {
                client
                    .update_customer(pb::UpdateCustomerRequest {
                        customer: Some(customer),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec!["display_name".into()],
                        }),
                    })
                    .await
            }
        });
        let answers = futures::future::join_all(updates).await;
        assert_eq!(
            answers.iter().filter(|a| a.is_ok()).count(),
            1,
            "{answers:?}"
        );
        for refused in answers.iter().filter_map(|a| a.as_ref().err()) {
            assert_eq!(refused.code(), Code::Aborted, "{refused:?}");
        }

        // A into B and B into A at once: exactly one merge happens.
        let merge = |survivor: &str, merged: &str| {
            let mut client = app.client.clone();
            let request = pb::MergeCustomersRequest {
                survivor: survivor.into(),
                merged: merged.into(),
                dry_run: false,
            };
            async move { client.merge_customers(request).await }
        };
        let (ab, ba) = tokio::join!(merge(&a.name, &b.name), merge(&b.name, &a.name));
        assert!(ab.is_ok() != ba.is_ok(), "{ab:?} {ba:?}");
        let refused = ab.as_ref().err().or(ba.as_ref().err()).unwrap();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        let survivor = if ab.is_ok() { &a.name } else { &b.name };

        // Returns of 2 + 2 of 3 bought, at once: one is recorded, never both.
        let p = buy(&mut client, survivor, "ORD-RACE", &[(3, 1000, false)]).await;
        let returns = (0..2).map(|i| {
            let mut client = app.client.clone();
            let request = pb::RecordReturnRequest {
                purchase: p.name.clone(),
                r#return: Some(pb::Return {
                    return_id: format!("RACE-{i}"),
                    occur_time: Some(ts(10)),
                    lines: vec![pb::ReturnLine {
                        line_number: 1,
                        quantity: 2,
                    }],
                    ..Default::default()
                }),
            };
            async move { client.record_return(request).await }
        });
        let answers = futures::future::join_all(returns).await;
        assert_eq!(
            answers.iter().filter(|a| a.is_ok()).count(),
            1,
            "{answers:?}"
        );
        let refused = answers.iter().find_map(|a| a.as_ref().err()).unwrap();
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    }
);
