//! Customers: create, get, list, update with masks and etags, archive and restore,
//! duplicates and merges.

use clientela_proto::clientela::registry::v1 as pb;
use prost_types::FieldMask;
use tonic::Code;

use crate::both_engines;
use crate::harness::*;

both_engines!(
    a_new_customer_is_a_prospect_with_canonical_values,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let created = create(
            &mut client,
            pb::Customer {
                kind: pb::CustomerKind::Organization as i32,
                display_name: "  Lubricantes del Sur  ".into(),
                legal_name: "Lubricantes del Sur SpA".into(),
                tax_id: Some(pb::TaxId {
                    country_code: "cl".into(),
                    value: "76.086.428-5".into(),
                }),
                emails: vec!["Ventas@LubriSur.CL".into()],
                phones: vec!["+56 9 1234 5678".into()],
                address: Some(pb::Address {
                    country_code: "CL".into(),
                    region: "Región de Valparaíso".into(),
                    locality: "Viña del Mar".into(),
                    ..Default::default()
                }),
                tags: vec!["mayorista".into(), "mayorista".into()],
                business_kind: pb::BusinessKind::B2b as i32,
                ..Default::default()
            },
        )
        .await;
        assert!(created.name.starts_with("customers/"));
        assert_eq!(created.status, pb::CustomerStatus::Prospect as i32);
        assert_eq!(created.display_name, "Lubricantes del Sur");
        let tax = created.tax_id.clone().unwrap();
        assert_eq!(
            (tax.country_code.as_str(), tax.value.as_str()),
            ("CL", "76086428-5")
        );
        assert_eq!(created.phones, vec!["+56912345678"]);
        assert_eq!(created.tags, vec!["mayorista"]);
        assert_eq!(created.language_code, "es");
        assert!(!created.etag.is_empty());

        let got = client
            .get_customer(pb::GetCustomerRequest {
                name: created.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(got, created);
    }
);

both_engines!(
    create_is_idempotent_on_request_id,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let request = pb::CreateCustomerRequest {
            customer: Some(person(1)),
            request_id: "crm-import-77".into(),
        };
        let first = client
            .create_customer(request.clone())
            .await
            .unwrap()
            .into_inner();
        let second = client.create_customer(request).await.unwrap().into_inner();
        assert!(first.created);
        assert!(!second.created);
        assert_eq!(first.customer, second.customer);
        // The write is visible at its event's sequence; the replay, at the head then.
        assert_eq!(first.event_sequence, 1);
        assert_eq!(second.event_sequence, 1);
        let events = drain_feed(&mut client, 0, 1).await;
        assert_eq!(events.len(), 1);
        let all = client
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.customers.len(), 1);
    }
);

both_engines!(
    a_request_id_reused_with_another_request_is_already_exists,
    |app: TestApp| async move {
        use tonic_types::StatusExt;
        let mut client = app.client.clone();
        let reason = |status: &tonic::Status| {
            assert_eq!(status.code(), tonic::Code::AlreadyExists, "{status:?}");
            status
                .get_error_details()
                .error_info()
                .unwrap()
                .reason
                .clone()
        };
        let created = client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(person(1)),
                request_id: "r-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(created.created);
        // Normalised the same (the name is trimmed): the same request.
        let same = client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    display_name: "  Persona 1 ".into(),
                    ..person(1)
                }),
                request_id: "r-1".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!same.created);
        assert_eq!(same.customer, created.customer);
        let other = client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(person(2)),
                request_id: "r-1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(reason(&other), "REQUEST_ID_REUSED");
        assert!(other.message().contains("\"r-1\""), "{}", other.message());

        let a = created.customer.unwrap().name;
        let b = create(&mut client, person(3)).await.name;
        // One instant for every call: computed per call, a retry that crossed a second
        // was another request (seen once in CI on PostgreSQL).
        let answered = ts(5);
        let survey = |parent: &str, score: i32| pb::RecordSurveyRequest {
            parent: parent.into(),
            survey: Some(pb::Survey {
                kind: pb::SurveyKind::Nps as i32,
                score,
                occur_time: Some(answered),
                ..Default::default()
            }),
            request_id: "s-1".into(),
        };
        assert!(
            client
                .record_survey(survey(&a, 9))
                .await
                .unwrap()
                .into_inner()
                .created
        );
        assert!(
            !client
                .record_survey(survey(&a, 9))
                .await
                .unwrap()
                .into_inner()
                .created
        );
        for bad in [survey(&a, 3), survey(&b, 9)] {
            let refused = client.record_survey(bad).await.unwrap_err();
            assert_eq!(reason(&refused), "REQUEST_ID_REUSED");
        }

        let complaint = |parent: &str, subject: &str| pb::OpenComplaintRequest {
            parent: parent.into(),
            complaint: Some(pb::Complaint {
                subject: subject.into(),
                ..Default::default()
            }),
            request_id: "c-1".into(),
        };
        let opened = client
            .open_complaint(complaint(&a, "Demora"))
            .await
            .unwrap();
        // No open time given: a retry later is still the same request.
        let again = client
            .open_complaint(complaint(&a, "Demora"))
            .await
            .unwrap();
        assert_eq!(opened.into_inner().complaint, again.into_inner().complaint);
        let refused = client
            .open_complaint(complaint(&a, "Otra cosa"))
            .await
            .unwrap_err();
        assert_eq!(reason(&refused), "REQUEST_ID_REUSED");
    }
);

both_engines!(
    fifty_concurrent_creates_with_one_request_id_make_one_customer,
    |app: TestApp| async move {
        let calls = (0..50).map(|_| {
            let mut client = app.client.clone();
            async move {
                client
                    .create_customer(pb::CreateCustomerRequest {
                        customer: Some(person(7)),
                        request_id: "race-1".into(),
                    })
                    .await
                    .map(|r| r.into_inner())
            }
        });
        let answers = futures::future::join_all(calls).await;
        let created: Vec<_> = answers
            .iter()
            .map(|a| a.as_ref().expect("every caller gets the customer"))
            .collect();
        assert_eq!(created.iter().filter(|a| a.created).count(), 1);
        assert!(created.iter().all(|a| a.customer == created[0].customer));
        let mut client = app.client.clone();
        let all = client
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(all.customers.len(), 1);
    }
);

both_engines!(
    a_live_tax_id_is_unique_but_an_archived_one_does_not_block,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let with_rut = |n| pb::Customer {
            tax_id: Some(pb::TaxId {
                country_code: "CL".into(),
                value: "11.111.111-1".into(),
            }),
            ..person(n)
        };
        let first = create(&mut client, with_rut(1)).await;
        let dup = client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(with_rut(2)),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(dup.code(), Code::AlreadyExists);

        client
            .archive_customer(pb::ArchiveCustomerRequest {
                name: first.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap();
        let second = create(&mut client, with_rut(2)).await;
        assert_ne!(second.name, first.name);

        // Restoring the first would duplicate the live tax id.
        let restore = client
            .restore_customer(pb::RestoreCustomerRequest {
                name: first.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(restore.code(), Code::AlreadyExists);
    }
);

both_engines!(
    update_writes_only_the_masked_fields_and_checks_the_etag,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let created = create(&mut client, person(1)).await;
        let mut change = created.clone();
        change.display_name = "Persona Uno".into();
        change.emails = vec!["otra@example.cl".into()];
        let updated = client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(change.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(updated.display_name, "Persona Uno");
        assert_eq!(
            updated.emails, created.emails,
            "emails were not in the mask"
        );
        assert_ne!(updated.etag, created.etag);

        // The old etag is stale now.
        let stale = client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(change),
                update_mask: Some(FieldMask {
                    paths: vec!["emails".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_eq!(stale.code(), Code::Aborted);

        let bad_path = client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(updated.clone()),
                update_mask: Some(FieldMask {
                    paths: vec!["status".into()],
                }),
            })
            .await
            .unwrap_err();
        assert_invalid(&bad_path, "update_mask.paths[0]");
    }
);

both_engines!(
    cost_to_serve_and_the_account_flags_are_validated_fields,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let created = create(
            &mut client,
            pb::Customer {
                cost_to_serve: Some(money("CLP", 25_000)),
                key_account: true,
                ..person(1)
            },
        )
        .await;
        assert_eq!(created.cost_to_serve, Some(money("CLP", 25_000)));
        assert!(created.key_account && !created.high_expectations);

        // Each is a FieldMask path of its own.
        let updated = client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(pb::Customer {
                    high_expectations: true,
                    cost_to_serve: None,
                    ..created.clone()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["high_expectations".into(), "cost_to_serve".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert!(updated.high_expectations && updated.key_account);
        assert_eq!(updated.cost_to_serve, None, "cleared");
        let got = client
            .get_customer(pb::GetCustomerRequest {
                name: created.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(got, updated);

        for (cost, field) in [
            (money("XXY", 1), "customer.cost_to_serve.currency_code"),
            (money("CLP", -1), "customer.cost_to_serve.amount_minor"),
        ] {
            let bad = client
                .create_customer(pb::CreateCustomerRequest {
                    customer: Some(pb::Customer {
                        cost_to_serve: Some(cost),
                        ..person(2)
                    }),
                    request_id: String::new(),
                })
                .await
                .unwrap_err();
            assert_invalid(&bad, field);
        }
        // The attributes these were read from before are refused, naming the field.
        let legacy = client
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    attributes: [("key_account".to_owned(), "true".to_owned())].into(),
                    ..person(3)
                }),
                request_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_invalid(&legacy, "customer.attributes[\"key_account\"]");
        assert!(
            legacy.message().contains("set customer.key_account"),
            "{}",
            legacy.message()
        );
    }
);

both_engines!(
    archived_customers_are_read_only_until_restored,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let created = create(&mut client, person(1)).await;
        let archived = client
            .archive_customer(pb::ArchiveCustomerRequest {
                name: created.name.clone(),
                etag: created.etag.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(archived.status, pb::CustomerStatus::Archived as i32);
        let purchase = client
            .record_purchase(pb::RecordPurchaseRequest {
                parent: created.name.clone(),
                purchase: Some(purchase("o-1", 60, &[(1, 1000, false)])),
            })
            .await
            .unwrap_err();
        assert_eq!(purchase.code(), Code::FailedPrecondition);
        let listed = client
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(
            listed.customers.is_empty(),
            "archived customers are not listed by default"
        );
        let restored = client
            .restore_customer(pb::RestoreCustomerRequest {
                name: created.name.clone(),
                etag: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(restored.status, pb::CustomerStatus::Prospect as i32);
    }
);

both_engines!(list_filters_orders_and_pages, |app: TestApp| async move {
    let mut client = app.client.clone();
    for n in 0..7 {
        let mut c = person(n);
        if n % 2 == 0 {
            c.tags = vec!["Voz".into()];
            c.address = Some(pb::Address {
                country_code: "CL".into(),
                region: "Región del Biobío".into(),
                ..Default::default()
            });
        }
        if n == 3 {
            c.display_name = "Ñandú Peñalolén".into();
        }
        create(&mut client, c).await;
    }
    let by_tag = client
        .list_customers(pb::ListCustomersRequest {
            tag: "voz".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_tag.customers.len(), 4);
    let by_region = client
        .list_customers(pb::ListCustomersRequest {
            region: "region del biobio".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_region.customers.len(), 4);
    let by_text = client
        .list_customers(pb::ListCustomersRequest {
            query: "PENALOLEN".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_text.customers.len(), 1);
    assert_eq!(by_text.customers[0].display_name, "Ñandú Peñalolén");

    // Pages of 3, by name descending, cover every customer once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_customers(pb::ListCustomersRequest {
                page_size: 3,
                page_token: token.clone(),
                order_by: "display_name desc".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        seen.extend(page.customers.into_iter().map(|c| c.display_name));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 7);

    // A token is bound to its query.
    let page = client
        .list_customers(pb::ListCustomersRequest {
            page_size: 2,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let misuse = client
        .list_customers(pb::ListCustomersRequest {
            page_token: page.next_page_token,
            tag: "voz".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_invalid(&misuse, "page_token");
});

both_engines!(
    duplicates_are_found_and_merged_with_their_history,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let a = create(
            &mut client,
            pb::Customer {
                phones: vec!["+56 2 2345 6789".into()],
                ..person(1)
            },
        )
        .await;
        let b = create(
            &mut client,
            pb::Customer {
                emails: vec!["PERSONA1@example.cl".into()],
                phones: vec!["+56223456789".into()],
                legal_name: "Persona Uno Ltda".into(),
                ..person(2)
            },
        )
        .await;
        let found = client
            .find_duplicates(pb::FindDuplicatesRequest {
                name: a.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .candidates;
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].customer.as_ref().unwrap().name, b.name);
        let mut matched = found[0].matched_on.clone();
        matched.sort();
        assert_eq!(matched, vec!["email", "phone"]);

        buy(&mut client, &b.name, "o-b-1", &[(2, 5000, false)]).await;
        client
            .record_survey(pb::RecordSurveyRequest {
                parent: b.name.clone(),
                survey: Some(pb::Survey {
                    kind: pb::SurveyKind::Nps as i32,
                    score: 9,
                    occur_time: Some(ts(10)),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap();

        let dry = client
            .merge_customers(pb::MergeCustomersRequest {
                survivor: a.name.clone(),
                merged: b.name.clone(),
                dry_run: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(dry.dry_run);
        assert_eq!((dry.moved_purchases, dry.moved_surveys), (1, 1));
        let still = client
            .get_customer(pb::GetCustomerRequest {
                name: b.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(
            still.status,
            pb::CustomerStatus::Customer as i32,
            "a dry run changes nothing"
        );

        let done = client
            .merge_customers(pb::MergeCustomersRequest {
                survivor: a.name.clone(),
                merged: b.name.clone(),
                dry_run: false,
            })
            .await
            .unwrap()
            .into_inner();
        let survivor = done.survivor.unwrap();
        assert_eq!(survivor.status, pb::CustomerStatus::Customer as i32);
        assert_eq!(
            survivor.legal_name, "Persona Uno Ltda",
            "blank fields are filled from the merged customer"
        );
        let tomb = client
            .get_customer(pb::GetCustomerRequest {
                name: b.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(tomb.status, pb::CustomerStatus::Merged as i32);
        assert_eq!(tomb.merged_into, a.name);
        let purchases = client
            .list_purchases(pb::ListPurchasesRequest {
                parent: a.name.clone(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .purchases;
        assert_eq!(purchases.len(), 1);
        assert!(purchases[0].name.starts_with(&a.name));
        let again = client
            .merge_customers(pb::MergeCustomersRequest {
                survivor: a.name.clone(),
                merged: b.name.clone(),
                dry_run: false,
            })
            .await
            .unwrap_err();
        assert_eq!(again.code(), Code::FailedPrecondition);
    }
);

both_engines!(
    get_customer_reflects_every_write_at_once,
    |app: TestApp| async move {
        // On SQLite GetCustomer reads through a cache; every write must show at once.
        let mut client = app.client.clone();
        let get = |name: String| {
            let mut client = app.client.clone();
            async move {
                client
                    .get_customer(pb::GetCustomerRequest { name })
                    .await
                    .unwrap()
                    .into_inner()
                    .customer
                    .unwrap()
            }
        };
        let a = create(&mut client, person(1)).await;
        let b = create(&mut client, person(2)).await;
        assert_eq!(get(a.name.clone()).await, a);

        buy(&mut client, &a.name, "CACHE-1", &[(1, 1000, false)]).await;
        let bought = get(a.name.clone()).await;
        assert_eq!(bought.status, pb::CustomerStatus::Customer as i32);

        let mut change = bought.clone();
        change.display_name = "Persona Cambiada".into();
        let updated = client
            .update_customer(pb::UpdateCustomerRequest {
                customer: Some(change),
                update_mask: Some(FieldMask {
                    paths: vec!["display_name".into()],
                }),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap();
        assert_eq!(get(a.name.clone()).await, updated);

        assert_eq!(get(b.name.clone()).await, b);
        client
            .merge_customers(pb::MergeCustomersRequest {
                survivor: a.name.clone(),
                merged: b.name.clone(),
                dry_run: false,
            })
            .await
            .unwrap();
        assert_eq!(
            get(b.name.clone()).await.status,
            pb::CustomerStatus::Merged as i32
        );

        // Readers racing a writer never leave an old version behind.
        let mut current = get(a.name.clone()).await;
        for n in 0..20 {
            let readers: Vec<_> = (0..8).map(|_| tokio::spawn(get(a.name.clone()))).collect();
            let mut change = current.clone();
            change.display_name = format!("Persona {n}");
            current = client
                .update_customer(pb::UpdateCustomerRequest {
                    customer: Some(change),
                    update_mask: Some(FieldMask {
                        paths: vec!["display_name".into()],
                    }),
                })
                .await
                .unwrap()
                .into_inner()
                .customer
                .unwrap();
            for r in readers {
                r.await.unwrap();
            }
            assert_eq!(get(a.name.clone()).await, current, "after update {n}");
        }
    }
);
