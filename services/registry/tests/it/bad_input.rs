//! Every RPC walked through its bad inputs: each gets the right code, INVALID_ARGUMENT
//! names the field, and no rejected request changes anything.

use std::future::Future;
use std::pin::Pin;

use clientela_proto::clientela::registry::v1 as pb;
use prost_types::FieldMask;
use tonic::{Code, Status};

use crate::both_engines;
use crate::harness::*;

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

struct Case {
    what: &'static str,
    call: Call,
    code: Code,
    field: Option<&'static str>,
}

fn case<F, Fut, T>(
    what: &'static str,
    client: &Client,
    code: Code,
    field: Option<&'static str>,
    f: F,
) -> Case
where
    F: FnOnce(Client) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, Status>> + Send + 'static,
{
    let fut = f(client.clone());
    Case {
        what,
        call: Box::pin(async move { fut.await.map(|_| ()) }),
        code,
        field,
    }
}

fn with(mut c: pb::Customer, f: impl FnOnce(&mut pb::Customer)) -> pb::Customer {
    f(&mut c);
    c
}

fn create_req(c: pb::Customer) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(c),
        request_id: String::new(),
    }
}

fn purchase_req(parent: &str, f: impl FnOnce(&mut pb::Purchase)) -> pb::RecordPurchaseRequest {
    let mut p = purchase("BAD-1", 60, &[(1, 1000, false), (1, 500, false)]);
    f(&mut p);
    pb::RecordPurchaseRequest {
        parent: parent.into(),
        purchase: Some(p),
    }
}

const INVALID: Code = Code::InvalidArgument;

both_engines!(
    every_rpc_rejects_bad_input_clearly_and_changes_nothing,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let a = create(&mut client, person(1)).await;
        let b = create(&mut client, person(2)).await;
        let p = buy(&mut client, &a.name, "GOOD-1", &[(1, 1000, false)]).await;
        let complaint = client
            .open_complaint(pb::OpenComplaintRequest {
                parent: a.name.clone(),
                complaint: Some(pb::Complaint {
                    subject: "Demora".into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .complaint
            .unwrap();
        let before = drain_feed(&mut client, 0, 5).await.len();
        let missing = "customers/00000000-0000-7000-8000-000000000000";
        let c = &client;
        let an = a.name.clone();

        let cases = vec![
            // CreateCustomer
            case(
                "no customer",
                c,
                INVALID,
                Some("customer"),
                |mut c| async move {
                    c.create_customer(pb::CreateCustomerRequest::default())
                        .await
                },
            ),
            case(
                "no kind",
                c,
                INVALID,
                Some("customer.kind"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| c.kind = 0)))
                        .await
                },
            ),
            case(
                "unknown kind",
                c,
                INVALID,
                Some("customer.kind"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| c.kind = 42)))
                        .await
                },
            ),
            case(
                "blank name",
                c,
                INVALID,
                Some("customer.display_name"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.display_name = "   ".into()
                    })))
                    .await
                },
            ),
            case(
                "long name",
                c,
                INVALID,
                Some("customer.display_name"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.display_name = "x".repeat(201)
                    })))
                    .await
                },
            ),
            case(
                "bad RUT check digit",
                c,
                INVALID,
                Some("customer.tax_id.value"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.tax_id = Some(pb::TaxId {
                            country_code: "CL".into(),
                            value: "12.345.678-9".into(),
                        })
                    })))
                    .await
                },
            ),
            case(
                "RUT with a multi-byte character",
                c,
                INVALID,
                Some("customer.tax_id.value"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.tax_id = Some(pb::TaxId {
                            country_code: "CL".into(),
                            value: "1234567ñ".into(),
                        })
                    })))
                    .await
                },
            ),
            case(
                "bad RFC",
                c,
                INVALID,
                Some("customer.tax_id.value"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.tax_id = Some(pb::TaxId {
                            country_code: "MX".into(),
                            value: "ABC991332XY1".into(),
                        })
                    })))
                    .await
                },
            ),
            case(
                "bad NIF",
                c,
                INVALID,
                Some("customer.tax_id.value"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.tax_id = Some(pb::TaxId {
                            country_code: "ES".into(),
                            value: "12345678A".into(),
                        })
                    })))
                    .await
                },
            ),
            case(
                "bad tax country",
                c,
                INVALID,
                Some("customer.tax_id.country_code"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.tax_id = Some(pb::TaxId {
                            country_code: "Chile".into(),
                            value: "1".into(),
                        })
                    })))
                    .await
                },
            ),
            case(
                "bad email",
                c,
                INVALID,
                Some("customer.emails[1]"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.emails.push("no-at-sign".into())
                    })))
                    .await
                },
            ),
            case(
                "bad phone",
                c,
                INVALID,
                Some("customer.phones[0]"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.phones = vec!["912345678".into()]
                    })))
                    .await
                },
            ),
            case(
                "address without country",
                c,
                INVALID,
                Some("customer.address.country_code"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.address = Some(pb::Address {
                            region: "Maule".into(),
                            ..Default::default()
                        })
                    })))
                    .await
                },
            ),
            case(
                "negative audience",
                c,
                INVALID,
                Some("customer.influence.audience_reach"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.influence = Some(pb::Influence {
                            audience_reach: -1,
                            ..Default::default()
                        })
                    })))
                    .await
                },
            ),
            case(
                "bad language",
                c,
                INVALID,
                Some("customer.language_code"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.language_code = "fr".into()
                    })))
                    .await
                },
            ),
            case(
                "bad attribute key",
                c,
                INVALID,
                Some("customer.attributes[\"Bad Key\"]"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.attributes.insert("Bad Key".into(), "v".into());
                    })))
                    .await
                },
            ),
            case(
                "too many tags",
                c,
                INVALID,
                Some("customer.tags"),
                |mut c| async move {
                    c.create_customer(create_req(with(person(9), |c| {
                        c.tags = (0..51).map(|i| format!("t{i}")).collect()
                    })))
                    .await
                },
            ),
            case(
                "long request id",
                c,
                INVALID,
                Some("request_id"),
                |mut c| async move {
                    c.create_customer(pb::CreateCustomerRequest {
                        customer: Some(person(9)),
                        request_id: "r".repeat(129),
                    })
                    .await
                },
            ),
            // GetCustomer
            case(
                "get without name",
                c,
                INVALID,
                Some("name"),
                |mut c| async move { c.get_customer(pb::GetCustomerRequest::default()).await },
            ),
            case(
                "get with a bad name",
                c,
                INVALID,
                Some("name"),
                |mut c| async move {
                    c.get_customer(pb::GetCustomerRequest {
                        name: "clientes/1".into(),
                    })
                    .await
                },
            ),
            case("get unknown", c, Code::NotFound, None, |mut c| async move {
                c.get_customer(pb::GetCustomerRequest {
                    name: missing.into(),
                })
                .await
            }),
            // ListCustomers
            case(
                "negative page size",
                c,
                INVALID,
                Some("page_size"),
                |mut c| async move {
                    c.list_customers(pb::ListCustomersRequest {
                        page_size: -1,
                        ..Default::default()
                    })
                    .await
                },
            ),
            case(
                "bad order",
                c,
                INVALID,
                Some("order_by"),
                |mut c| async move {
                    c.list_customers(pb::ListCustomersRequest {
                        order_by: "tax_id".into(),
                        ..Default::default()
                    })
                    .await
                },
            ),
            case(
                "forged token",
                c,
                INVALID,
                Some("page_token"),
                |mut c| async move {
                    c.list_customers(pb::ListCustomersRequest {
                        page_token: "abc".into(),
                        ..Default::default()
                    })
                    .await
                },
            ),
            case(
                "unknown status",
                c,
                INVALID,
                Some("statuses[0]"),
                |mut c| async move {
                    c.list_customers(pb::ListCustomersRequest {
                        statuses: vec![99],
                        ..Default::default()
                    })
                    .await
                },
            ),
            case(
                "unknown kind filter",
                c,
                INVALID,
                Some("kind"),
                |mut c| async move {
                    c.list_customers(pb::ListCustomersRequest {
                        kind: 7,
                        ..Default::default()
                    })
                    .await
                },
            ),
            // UpdateCustomer
            case(
                "update without customer",
                c,
                INVALID,
                Some("customer"),
                |mut c| async move {
                    c.update_customer(pb::UpdateCustomerRequest::default())
                        .await
                },
            ),
            case(
                "update with a bad name",
                c,
                INVALID,
                Some("customer.name"),
                |mut c| async move {
                    c.update_customer(pb::UpdateCustomerRequest {
                        customer: Some(person(9)),
                        update_mask: None,
                    })
                    .await
                },
            ),
            case(
                "update an output-only field",
                c,
                INVALID,
                Some("update_mask.paths[0]"),
                {
                    let a = a.clone();
                    |mut c| async move {
                        c.update_customer(pb::UpdateCustomerRequest {
                            customer: Some(a),
                            update_mask: Some(FieldMask {
                                paths: vec!["create_time".into()],
                            }),
                        })
                        .await
                    }
                },
            ),
            case(
                "update to a bad email",
                c,
                INVALID,
                Some("customer.emails[0]"),
                {
                    let a = a.clone();
                    |mut c| async move {
                        c.update_customer(pb::UpdateCustomerRequest {
                            customer: Some(with(a, |c| c.emails = vec!["@".into()])),
                            update_mask: Some(FieldMask {
                                paths: vec!["emails".into()],
                            }),
                        })
                        .await
                    }
                },
            ),
            case(
                "update unknown",
                c,
                Code::NotFound,
                None,
                |mut c| async move {
                    c.update_customer(pb::UpdateCustomerRequest {
                        customer: Some(with(person(9), |c| c.name = missing.into())),
                        update_mask: Some(FieldMask {
                            paths: vec!["display_name".into()],
                        }),
                    })
                    .await
                },
            ),
            case("update with a stale etag", c, Code::Aborted, None, {
                let a = a.clone();
                |mut c| async move {
                    c.update_customer(pb::UpdateCustomerRequest {
                        customer: Some(with(a, |c| {
                            c.etag = "\"0\"".into();
                            c.display_name = "X".into();
                        })),
                        update_mask: Some(FieldMask {
                            paths: vec!["display_name".into()],
                        }),
                    })
                    .await
                }
            }),
            // Archive, restore, duplicates, merge
            case(
                "archive unknown",
                c,
                Code::NotFound,
                None,
                |mut c| async move {
                    c.archive_customer(pb::ArchiveCustomerRequest {
                        name: missing.into(),
                        etag: String::new(),
                    })
                    .await
                },
            ),
            case(
                "restore a live customer with a stale etag",
                c,
                Code::Aborted,
                None,
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.restore_customer(pb::RestoreCustomerRequest {
                            name: n,
                            etag: "\"99\"".into(),
                        })
                        .await
                    }
                },
            ),
            case(
                "duplicates of unknown",
                c,
                Code::NotFound,
                None,
                |mut c| async move {
                    c.find_duplicates(pb::FindDuplicatesRequest {
                        name: missing.into(),
                    })
                    .await
                },
            ),
            case("merge into itself", c, INVALID, Some("merged"), {
                let n = an.clone();
                |mut c| async move {
                    c.merge_customers(pb::MergeCustomersRequest {
                        survivor: n.clone(),
                        merged: n,
                        dry_run: false,
                    })
                    .await
                }
            }),
            case("merge a bad survivor", c, INVALID, Some("survivor"), {
                let n = an.clone();
                |mut c| async move {
                    c.merge_customers(pb::MergeCustomersRequest {
                        survivor: "x".into(),
                        merged: n,
                        dry_run: true,
                    })
                    .await
                }
            }),
            case("merge unknown", c, Code::NotFound, None, {
                let n = an.clone();
                |mut c| async move {
                    c.merge_customers(pb::MergeCustomersRequest {
                        survivor: n,
                        merged: missing.into(),
                        dry_run: false,
                    })
                    .await
                }
            }),
            // RecordPurchase
            case(
                "purchase with a bad parent",
                c,
                INVALID,
                Some("parent"),
                |mut c| async move { c.record_purchase(purchase_req("customers/x", |_| {})).await },
            ),
            case("purchase missing", c, INVALID, Some("purchase"), {
                let n = an.clone();
                |mut c| async move {
                    c.record_purchase(pb::RecordPurchaseRequest {
                        parent: n,
                        purchase: None,
                    })
                    .await
                }
            }),
            case(
                "purchase without order id",
                c,
                INVALID,
                Some("purchase.order_id"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| p.order_id.clear()))
                            .await
                    }
                },
            ),
            case(
                "purchase without time",
                c,
                INVALID,
                Some("purchase.occur_time"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| p.occur_time = None))
                            .await
                    }
                },
            ),
            case(
                "5000 empty lines: refused for their number, not line by line",
                c,
                INVALID,
                Some("purchase.lines"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| {
                            p.lines = vec![pb::PurchaseLine::default(); 5_000];
                        }))
                        .await
                    }
                },
            ),
            case(
                "purchase at year -10000 (protobuf JSON cannot print it)",
                c,
                INVALID,
                Some("purchase.occur_time"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| {
                            p.occur_time = Some(prost_types::Timestamp {
                                seconds: -377_705_116_800,
                                nanos: 0,
                            })
                        }))
                        .await
                    }
                },
            ),
            case(
                "purchase in the future",
                c,
                INVALID,
                Some("purchase.occur_time"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| p.occur_time = Some(ts(-86_400))))
                            .await
                    }
                },
            ),
            case(
                "purchase without lines",
                c,
                INVALID,
                Some("purchase.lines"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| p.lines.clear()))
                            .await
                    }
                },
            ),
            case(
                "zero quantity",
                c,
                INVALID,
                Some("purchase.lines[0].quantity"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| p.lines[0].quantity = 0))
                            .await
                    }
                },
            ),
            case(
                "unknown currency",
                c,
                INVALID,
                Some("purchase.lines[0].unit_price.currency_code"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| {
                            p.lines[0].unit_price = Some(money("PESOS", 1))
                        }))
                        .await
                    }
                },
            ),
            case(
                "mixed currencies",
                c,
                INVALID,
                Some("purchase.lines[1].unit_price.currency_code"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| {
                            p.lines[1].unit_price = Some(money("USD", 1))
                        }))
                        .await
                    }
                },
            ),
            case(
                "negative price",
                c,
                INVALID,
                Some("purchase.lines[0].unit_price.amount_minor"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| {
                            p.lines[0].unit_price = Some(money("CLP", -5))
                        }))
                        .await
                    }
                },
            ),
            case(
                "overflowing total",
                c,
                INVALID,
                Some("purchase.lines[0]"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| {
                            p.lines[0].quantity = i64::MAX;
                        }))
                        .await
                    }
                },
            ),
            case(
                "purchase for unknown customer",
                c,
                Code::NotFound,
                None,
                |mut c| async move { c.record_purchase(purchase_req(missing, |_| {})).await },
            ),
            case(
                "order id reused with other content",
                c,
                Code::AlreadyExists,
                None,
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_purchase(purchase_req(&n, |p| p.order_id = "GOOD-1".into()))
                            .await
                    }
                },
            ),
            // RecordReturn
            case(
                "return with a bad purchase name",
                c,
                INVALID,
                Some("purchase"),
                |mut c| async move {
                    c.record_return(pb::RecordReturnRequest {
                        purchase: "purchases/1".into(),
                        r#return: Some(pb::Return {
                            return_id: "x".into(),
                            occur_time: Some(ts(1)),
                            ..Default::default()
                        }),
                    })
                    .await
                },
            ),
            case("return without id", c, INVALID, Some("return.return_id"), {
                let n = p.name.clone();
                |mut c| async move {
                    c.record_return(pb::RecordReturnRequest {
                        purchase: n,
                        r#return: Some(pb::Return {
                            occur_time: Some(ts(1)),
                            ..Default::default()
                        }),
                    })
                    .await
                }
            }),
            case(
                "return of zero units",
                c,
                INVALID,
                Some("return.lines[0].quantity"),
                {
                    let n = p.name.clone();
                    |mut c| async move {
                        c.record_return(pb::RecordReturnRequest {
                            purchase: n,
                            r#return: Some(pb::Return {
                                return_id: "z".into(),
                                occur_time: Some(ts(1)),
                                lines: vec![pb::ReturnLine {
                                    line_number: 1,
                                    quantity: 0,
                                }],
                                ..Default::default()
                            }),
                        })
                        .await
                    }
                },
            ),
            case(
                "return of more than bought",
                c,
                Code::FailedPrecondition,
                None,
                {
                    let n = p.name.clone();
                    |mut c| async move {
                        c.record_return(pb::RecordReturnRequest {
                            purchase: n,
                            r#return: Some(pb::Return {
                                return_id: "m".into(),
                                occur_time: Some(ts(1)),
                                lines: vec![pb::ReturnLine {
                                    line_number: 1,
                                    quantity: 2,
                                }],
                                ..Default::default()
                            }),
                        })
                        .await
                    }
                },
            ),
            case(
                "return against another customer's purchase",
                c,
                Code::NotFound,
                None,
                {
                    let n = p.name.replace(&an, &b.name);
                    |mut c| async move {
                        c.record_return(pb::RecordReturnRequest {
                            purchase: n,
                            r#return: Some(pb::Return {
                                return_id: "o".into(),
                                occur_time: Some(ts(1)),
                                ..Default::default()
                            }),
                        })
                        .await
                    }
                },
            ),
            // Surveys, complaints, referrals
            case("NPS above 10", c, INVALID, Some("survey.score"), {
                let n = an.clone();
                |mut c| async move {
                    c.record_survey(pb::RecordSurveyRequest {
                        parent: n,
                        survey: Some(pb::Survey {
                            kind: pb::SurveyKind::Nps as i32,
                            score: 11,
                            occur_time: Some(ts(1)),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await
                }
            }),
            case("CSAT of 0", c, INVALID, Some("survey.score"), {
                let n = an.clone();
                |mut c| async move {
                    c.record_survey(pb::RecordSurveyRequest {
                        parent: n,
                        survey: Some(pb::Survey {
                            kind: pb::SurveyKind::Csat as i32,
                            score: 0,
                            occur_time: Some(ts(1)),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await
                }
            }),
            case("survey without kind", c, INVALID, Some("survey.kind"), {
                let n = an.clone();
                |mut c| async move {
                    c.record_survey(pb::RecordSurveyRequest {
                        parent: n,
                        survey: Some(pb::Survey {
                            score: 5,
                            occur_time: Some(ts(1)),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await
                }
            }),
            case(
                "complaint without subject",
                c,
                INVALID,
                Some("complaint.subject"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.open_complaint(pb::OpenComplaintRequest {
                            parent: n,
                            complaint: Some(pb::Complaint::default()),
                            request_id: String::new(),
                        })
                        .await
                    }
                },
            ),
            case("resolution missing", c, INVALID, Some("resolution"), {
                let n = complaint.name.clone();
                |mut c| async move {
                    c.resolve_complaint(pb::ResolveComplaintRequest {
                        name: n,
                        resolution: String::new(),
                        etag: String::new(),
                    })
                    .await
                }
            }),
            case(
                "resolve a bad name",
                c,
                INVALID,
                Some("name"),
                |mut c| async move {
                    c.resolve_complaint(pb::ResolveComplaintRequest {
                        name: "complaints/1".into(),
                        resolution: "ok".into(),
                        etag: String::new(),
                    })
                    .await
                },
            ),
            case("resolve with a stale etag", c, Code::Aborted, None, {
                let n = complaint.name.clone();
                |mut c| async move {
                    c.resolve_complaint(pb::ResolveComplaintRequest {
                        name: n,
                        resolution: "ok".into(),
                        etag: "\"7\"".into(),
                    })
                    .await
                }
            }),
            case("self referral", c, INVALID, Some("referral.referred"), {
                let n = an.clone();
                |mut c| async move {
                    c.record_referral(pb::RecordReferralRequest {
                        parent: n.clone(),
                        referral: Some(pb::Referral {
                            referred: n,
                            occur_time: Some(ts(1)),
                            ..Default::default()
                        }),
                    })
                    .await
                }
            }),
            case(
                "referral of nobody",
                c,
                INVALID,
                Some("referral.referred"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_referral(pb::RecordReferralRequest {
                            parent: n,
                            referral: Some(pb::Referral {
                                occur_time: Some(ts(1)),
                                ..Default::default()
                            }),
                        })
                        .await
                    }
                },
            ),
            case(
                "referral of an unknown customer",
                c,
                INVALID,
                Some("referral.referred"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.record_referral(pb::RecordReferralRequest {
                            parent: n,
                            referral: Some(pb::Referral {
                                referred: missing.into(),
                                occur_time: Some(ts(1)),
                                ..Default::default()
                            }),
                        })
                        .await
                    }
                },
            ),
            // Lists
            case(
                "returns of everyone",
                c,
                INVALID,
                Some("parent"),
                |mut c| async move {
                    c.list_returns(pb::ListReturnsRequest {
                        parent: "customers/-".into(),
                        ..Default::default()
                    })
                    .await
                },
            ),
            case(
                "surveys of unknown",
                c,
                Code::NotFound,
                None,
                |mut c| async move {
                    c.list_surveys(pb::ListSurveysRequest {
                        parent: missing.into(),
                        ..Default::default()
                    })
                    .await
                },
            ),
            case(
                "complaints page token of another list",
                c,
                INVALID,
                Some("page_token"),
                {
                    let n = an.clone();
                    |mut c| async move {
                        c.list_complaints(pb::ListComplaintsRequest {
                            parent: n,
                            page_token: "eyJxIjoxLCJjIjpudWxsfQ".into(),
                            ..Default::default()
                        })
                        .await
                    }
                },
            ),
        ];

        let mut failures = Vec::new();
        for Case {
            what,
            call,
            code,
            field,
        } in cases
        {
            match call.await {
                Ok(()) => failures.push(format!("{what}: accepted")),
                Err(status) => {
                    if status.code() != code {
                        failures.push(format!(
                            "{what}: {:?} ({}) instead of {code:?}",
                            status.code(),
                            status.message()
                        ));
                    } else if let Some(field) = field
                        && !violated_fields(&status).iter().any(|f| f == field)
                    {
                        failures.push(format!(
                            "{what}: no violation of {field} in {:?} ({})",
                            violated_fields(&status),
                            status.message()
                        ));
                    }
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));

        // Nothing rejected reached the feed.
        assert_eq!(before, 5);
        assert_feed_quiet_after(&mut client, before as i64).await;
        let _ = b;
    }
);
