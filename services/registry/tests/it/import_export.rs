//! Bulk: imports report every row's outcome, bad rows never stop good ones, re-running
//! changes nothing; exports stream every matching customer.

use clientela_proto::clientela::registry::v1 as pb;
use futures::StreamExt;

use crate::both_engines;
use crate::harness::*;

fn outcome(r: &pb::ImportRowResult) -> pb::ImportOutcome {
    pb::ImportOutcome::try_from(r.outcome).unwrap()
}

both_engines!(
    importing_customers_twice_changes_nothing_and_reports_each_row,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let row = |n: u32| pb::CreateCustomerRequest {
            customer: Some(person(n)),
            request_id: format!("erp-{n}"),
        };
        let batches = vec![
            pb::ImportCustomersRequest {
                rows: (0..3).map(row).collect(),
            },
            pb::ImportCustomersRequest {
                rows: vec![
                    row(3),
                    pb::CreateCustomerRequest {
                        customer: Some(pb::Customer {
                            display_name: String::new(),
                            ..person(4)
                        }),
                        request_id: "erp-4".into(),
                    },
                    row(5),
                ],
            },
        ];
        let run = |batches: Vec<pb::ImportCustomersRequest>| {
            let mut client = client.clone();
            async move {
                let mut responses = client
                    .import_customers(tokio_stream::iter(batches))
                    .await
                    .unwrap()
                    .into_inner();
                let mut results = Vec::new();
                while let Some(r) = responses.next().await {
                    results.extend(r.unwrap().results);
                }
                results
            }
        };
        let first = run(batches.clone()).await;
        assert_eq!(first.len(), 6);
        assert_eq!(
            first.iter().map(|r| r.row).collect::<Vec<_>>(),
            vec![0, 1, 2, 3, 4, 5]
        );
        let outcomes: Vec<_> = first.iter().map(outcome).collect();
        use pb::ImportOutcome::{Created, Failed, Unchanged};
        assert_eq!(
            outcomes,
            vec![Created, Created, Created, Created, Failed, Created]
        );
        assert_eq!(first[4].error_code, "INVALID_ARGUMENT");
        assert_eq!(first[4].field_violations[0].field, "customer.display_name");

        let second = run(batches).await;
        let outcomes: Vec<_> = second.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Unchanged, Unchanged, Unchanged, Unchanged, Failed, Unchanged
            ]
        );
        assert_eq!(second[0].name, first[0].name);
        let listed = client
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.customers.len(), 5);

        // Purchases for them, one bad.
        let p = |n: usize, order: &str| pb::RecordPurchaseRequest {
            parent: first[n].name.clone(),
            purchase: Some(purchase(order, 100, &[(1, 700, false)])),
        };
        let rows = vec![
            p(0, "I-1"),
            p(1, "I-2"),
            pb::RecordPurchaseRequest {
                parent: "customers/nope".into(),
                ..p(2, "I-3")
            },
            // Fail inside the batch's transaction: each in its own savepoint.
            pb::RecordPurchaseRequest {
                parent: "customers/00000000-0000-7000-8000-000000000000".into(),
                ..p(2, "I-4")
            },
            p(1, "I-1"),
            p(2, "I-5"),
        ];
        let mut responses = client
            .import_purchases(tokio_stream::iter(vec![
                pb::ImportPurchasesRequest { rows: rows.clone() },
                pb::ImportPurchasesRequest { rows },
            ]))
            .await
            .unwrap()
            .into_inner();
        let mut results = Vec::new();
        while let Some(r) = responses.next().await {
            results.extend(r.unwrap().results);
        }
        let outcomes: Vec<_> = results.iter().map(outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Created, Created, Failed, Failed, Failed, Created, // first run
                Unchanged, Unchanged, Failed, Failed, Failed, Unchanged, // second run
            ]
        );
        assert_eq!(results[2].field_violations[0].field, "parent");
        assert_eq!(results[3].error_code, "NOT_FOUND");
        assert_eq!(
            results[4].error_code, "ALREADY_EXISTS",
            "order I-1 belongs to another customer"
        );
        // The good rows of a batch with bad ones are all there: three purchases.
        let all = client
            .list_purchases(pb::ListPurchasesRequest {
                parent: "customers/-".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .purchases;
        assert_eq!(all.len(), 3);
    }
);

both_engines!(
    export_streams_every_matching_customer,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        for n in 0..1203 {
            let mut c = person(n);
            if n % 3 == 0 {
                c.tags = vec!["export".into()];
            }
            create(&mut client, c).await;
        }
        let count = |tag: &str| {
            let mut client = client.clone();
            let tag = tag.to_owned();
            async move {
                let mut stream = client
                    .export_customers(pb::ExportCustomersRequest {
                        tag,
                        ..Default::default()
                    })
                    .await
                    .unwrap()
                    .into_inner();
                let mut names = std::collections::HashSet::new();
                while let Some(batch) = stream.next().await {
                    for c in batch.unwrap().customers {
                        assert!(names.insert(c.name), "exported twice");
                    }
                }
                names.len()
            }
        };
        assert_eq!(count("").await, 1203);
        assert_eq!(count("export").await, 401);
    }
);

both_engines!(
    overlapping_concurrent_imports_record_each_order_once,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let mut customers = Vec::new();
        for n in 0..20 {
            customers.push(create(&mut client, person(n)).await);
        }
        let start = drain_feed(&mut client, 0, 20).await.len() as i64;
        let rows: Vec<_> = (0..200)
            .map(|n| pb::RecordPurchaseRequest {
                parent: customers[n % 20].name.clone(),
                purchase: Some(purchase(&format!("OV-{n}"), 100, &[(1, 700, false)])),
            })
            .collect();
        // Four streams import the same 200 orders at once, each starting elsewhere, in
        // batches of 50: their batches collide on order ids and on customers.
        let streams: Vec<_> = (0..4)
            .map(|s| {
                let mut client = client.clone();
                let mut rows = rows.clone();
                rows.rotate_left(s * 50 + 7);
                tokio::spawn(async move {
                    let batches: Vec<_> = rows
                        .chunks(50)
                        .map(|c| pb::ImportPurchasesRequest { rows: c.to_vec() })
                        .collect();
                    let mut responses = client
                        .import_purchases(tokio_stream::iter(batches))
                        .await
                        .unwrap()
                        .into_inner();
                    let mut outcomes = Vec::new();
                    while let Some(r) = responses.next().await {
                        outcomes.extend(r.unwrap().results);
                    }
                    (rows, outcomes)
                })
            })
            .collect();
        let mut created = std::collections::HashMap::<String, usize>::new();
        for s in streams {
            let (rows, outcomes) = s.await.unwrap();
            assert_eq!(outcomes.len(), 200);
            for (row, result) in rows.iter().zip(&outcomes) {
                let order = row.purchase.as_ref().unwrap().order_id.clone();
                match outcome(result) {
                    pb::ImportOutcome::Created => *created.entry(order).or_default() += 1,
                    pb::ImportOutcome::Unchanged => {
                        created.entry(order).or_default();
                    }
                    other => panic!("{order}: {other:?} {}", result.error_message),
                }
            }
        }
        assert_eq!(created.len(), 200);
        assert!(created.values().all(|n| *n == 1), "{created:?}");
        // The feed has each purchase once and each customer's first-purchase change once.
        let events = drain_feed(&mut client, start, start + 220).await;
        use pb::event::Payload;
        let purchases = events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::PurchaseRecorded(_))))
            .count();
        let updates = events
            .iter()
            .filter(|e| matches!(e.payload, Some(Payload::CustomerUpdated(_))))
            .count();
        assert_eq!((purchases, updates, events.len()), (200, 20, 220));
        assert_feed_quiet_after(&mut client, start + 220).await;
    }
);

/// On PostgreSQL a large import leaves the planner statistics of what it loaded fresh,
/// instead of waiting for autovacuum (a freshly loaded table plans as if empty).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_import_refreshes_planner_statistics_on_postgres() {
    use sea_orm::ConnectionTrait;
    let Some(app) = spawn_app(clientela_testkit::Engine::Postgres).await else {
        return;
    };
    let db = clientela_runtime::Db::connect(&app.url, &Default::default())
        .await
        .unwrap();
    let analyzed = || async {
        db.conn()
            .query_one_raw(sea_orm::Statement::from_string(
                sea_orm::DbBackend::Postgres,
                "SELECT count(*) FROM pg_stat_user_tables \
                 WHERE relname IN ('customers', 'customer_keys') AND last_analyze IS NOT NULL",
            ))
            .await
            .unwrap()
            .unwrap()
            .try_get_by_index::<i64>(0)
            .unwrap()
    };
    assert_eq!(analyzed().await, 0, "nothing analyzed before the import");
    let rows = 10_000u32;
    let batches: Vec<pb::ImportCustomersRequest> = (0..rows)
        .collect::<Vec<_>>()
        .chunks(1000)
        .map(|chunk| pb::ImportCustomersRequest {
            rows: chunk
                .iter()
                .map(|&n| pb::CreateCustomerRequest {
                    customer: Some(person(n)),
                    request_id: format!("bulk-{n}"),
                })
                .collect(),
        })
        .collect();
    let mut client = app.client.clone();
    let mut responses = client
        .import_customers(tokio_stream::iter(batches))
        .await
        .unwrap()
        .into_inner();
    let mut created = 0;
    while let Some(r) = responses.next().await {
        created += r
            .unwrap()
            .results
            .iter()
            .filter(|r| outcome(r) == pb::ImportOutcome::Created)
            .count();
    }
    assert_eq!(created, rows as usize);
    // The refresh runs once the client has its last answer.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while analyzed().await < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "statistics not refreshed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

both_engines!(
    an_import_stream_that_breaks_ends_with_an_error_counting_its_rows,
    |app: TestApp| async move {
        use prost::Message;
        let batch = |from: u32| {
            pb::ImportCustomersRequest {
                rows: (from..from + 2)
                    .map(|n| pb::CreateCustomerRequest {
                        customer: Some(person(n)),
                        request_id: format!("broken-{n}"),
                    })
                    .collect(),
            }
            .encode_to_vec()
        };
        let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let grpc = tonic::client::Grpc::new(channel);
        let open =
            async |messages: Vec<Vec<u8>>| {
                let mut grpc = grpc.clone();
                grpc.ready().await.unwrap();
                let path = "/clientela.registry.v1.CustomerRegistryService/ImportCustomers";
                let mut responses = grpc
                    .streaming(
                        tonic::Request::new(tokio_stream::iter(messages)),
                        path.parse().unwrap(),
                        clientela_testkit::RawCodec,
                    )
                    .await
                    .unwrap()
                    .into_inner();
                let mut answers = Vec::new();
                while let Some(answer) = responses.next().await {
                    answers.push(answer.map(|bytes| {
                        pb::ImportCustomersResponse::decode(bytes.as_slice()).unwrap()
                    }));
                }
                answers
            };

        // The second message is not protobuf: the first batch stays, the third never runs.
        let answers = open(vec![batch(0), vec![0xff; 8], batch(10)]).await;
        assert_eq!(answers.len(), 2, "{answers:?}");
        assert_eq!(answers[0].as_ref().unwrap().results.len(), 2);
        let status = answers[1].as_ref().unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
        assert!(
            status
                .message()
                .starts_with("the import stopped after 2 rows; resend from row 2"),
            "{}",
            status.message()
        );
        let mut client = app.client.clone();
        let listed = client
            .list_customers(pb::ListCustomersRequest::default())
            .await
            .unwrap()
            .into_inner()
            .customers;
        assert_eq!(listed.len(), 2, "only the first batch was imported");

        // Too many rows in one message: refused as a whole, the stream ends saying so.
        let many = pb::ImportCustomersRequest {
            rows: vec![pb::CreateCustomerRequest::default(); 1001],
        }
        .encode_to_vec();
        let answers = open(vec![many]).await;
        let status = answers[0].as_ref().unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status.message().contains("at most 1000 rows per message"),
            "{status:?}"
        );
    }
);
