//! The scenarios: what each one seeds, and the request it sends over and over.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clientela_proto::clientela::common::v1::Money;
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use futures::StreamExt;
use tokio::sync::Mutex;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use crate::drive::{Stats, closed_loop, histogram, join, micros, percentiles};

/// Knobs every scenario reads.
#[derive(Debug, Clone)]
pub struct Load {
    /// Requests in flight.
    pub concurrency: usize,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Measured window.
    pub duration: Duration,
    /// Customers seeded for the read scenarios.
    pub customers: u64,
    /// Rows of the import scenario.
    pub rows: u64,
    /// Events of the feed scenario.
    pub events: u64,
}

const ROWS_PER_BATCH: u64 = 1000;

fn registry(channel: Channel) -> CustomerRegistryServiceClient<Channel> {
    CustomerRegistryServiceClient::new(channel).max_decoding_message_size(64 << 20)
}

/// `baseline`: grpc.health.v1.Health/Check on a bare tonic server: the stack's limit.
pub async fn baseline(channels: &[Channel], load: &Load) -> Stats {
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        |channel, _, _| async move {
            HealthClient::new(channel)
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await?;
            Ok(1)
        },
    )
    .await
}

fn seed_customer(i: u64) -> pb::CreateCustomerRequest {
    pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            kind: pb::CustomerKind::Person as i32,
            display_name: format!("Cliente {i}"),
            emails: vec![format!("cliente{i}@example.cl")],
            tags: if i.is_multiple_of(10) {
                vec!["bench".into()]
            } else {
                Vec::new()
            },
            address: Some(pb::Address {
                country_code: "CL".into(),
                region: format!("Región {}", i % 16),
                ..Default::default()
            }),
            ..Default::default()
        }),
        request_id: format!("seed-{i}"),
    }
}

/// Creates `count` customers through ImportCustomers (4 streams) and returns their names.
pub async fn seed_customers(channels: &[Channel], count: u64) -> anyhow::Result<Vec<String>> {
    let streams = 4.min(count.max(1));
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mut client = registry(channels[s as usize % channels.len()].clone());
        let ids: Vec<u64> = (0..count).filter(|i| i % streams == s).collect();
        tasks.push(tokio::spawn(async move {
            let batches: Vec<pb::ImportCustomersRequest> = ids
                .chunks(ROWS_PER_BATCH as usize)
                .map(|chunk| pb::ImportCustomersRequest {
                    rows: chunk.iter().map(|i| seed_customer(*i)).collect(),
                })
                .collect();
            let mut responses = client
                .import_customers(tokio_stream::iter(batches))
                .await?
                .into_inner();
            let mut names = Vec::new();
            while let Some(response) = responses.next().await {
                for r in response?.results {
                    anyhow::ensure!(
                        !r.name.is_empty(),
                        "seeding failed: {} {}",
                        r.error_code,
                        r.error_message
                    );
                    names.push(r.name);
                }
            }
            anyhow::Ok(names)
        }));
    }
    let mut names = Vec::new();
    for task in tasks {
        names.extend(task.await??);
    }
    Ok(names)
}

/// `registry-get`: GetCustomer of a random seeded customer.
pub async fn registry_get(channels: &[Channel], load: &Load, names: Arc<Vec<String>>) -> Stats {
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        move |channel, _, _| {
            let name = names[rand::random_range(0..names.len())].clone();
            async move {
                registry(channel)
                    .get_customer(pb::GetCustomerRequest { name })
                    .await?;
                Ok(1)
            }
        },
    )
    .await
}

/// `registry-list`: pages of 50 customers tagged "bench", each task walking the pages.
pub async fn registry_list(channels: &[Channel], load: &Load) -> Stats {
    let tokens: Arc<Vec<Mutex<String>>> = Arc::new(
        (0..load.concurrency.max(1))
            .map(|_| Mutex::new(String::new()))
            .collect(),
    );
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        move |channel, task, _| {
            let tokens = tokens.clone();
            async move {
                let mut token = tokens[task].lock().await;
                let page = registry(channel)
                    .list_customers(pb::ListCustomersRequest {
                        page_size: 50,
                        page_token: token.clone(),
                        tag: "bench".into(),
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                *token = page.next_page_token;
                Ok(1)
            }
        },
    )
    .await
}

fn purchase(parent: &str, order_id: String) -> pb::RecordPurchaseRequest {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    pb::RecordPurchaseRequest {
        parent: parent.to_owned(),
        purchase: Some(pb::Purchase {
            order_id,
            occur_time: Some(prost_types::Timestamp {
                seconds: i64::try_from(now).unwrap_or(0) - 60,
                nanos: 0,
            }),
            channel: pb::SalesChannel::Online as i32,
            lines: vec![pb::PurchaseLine {
                product_line: "lubricantes".into(),
                sku: "LUB-1".into(),
                quantity: 2,
                unit_price: Some(Money {
                    currency_code: "CLP".into(),
                    amount_minor: 12_990,
                }),
                discounted: false,
                returned_quantity: 0,
            }],
            ..Default::default()
        }),
    }
}

/// `registry-purchase`: RecordPurchase with a new order id each time (a durable write
/// and its outbox event).
pub async fn registry_purchase(
    channels: &[Channel],
    load: &Load,
    names: Arc<Vec<String>>,
) -> Stats {
    let run: u32 = rand::random();
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        move |channel, task, n| {
            let parent = names[(task + n as usize) % names.len()].clone();
            async move {
                registry(channel)
                    .record_purchase(purchase(&parent, format!("bench-{run}-{task}-{n}")))
                    .await?;
                Ok(1)
            }
        },
    )
    .await
}

/// `registry-import`: `load.rows` purchases through ImportPurchases, in batches of 1,000
/// rows, over `load.concurrency.min(channels)` client streams. Latency is per batch.
pub async fn registry_import(
    channels: &[Channel],
    load: &Load,
    names: Arc<Vec<String>>,
    label: &str,
) -> Stats {
    let streams = channels.len().min(load.concurrency.max(1)) as u64;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..streams {
        let mut client = registry(channels[s as usize].clone());
        let names = names.clone();
        let label = label.to_owned();
        let rows = load.rows / streams + u64::from(s < load.rows % streams);
        tasks.push(tokio::spawn(async move {
            let (tx, rx) = tokio::sync::mpsc::channel::<pb::ImportPurchasesRequest>(4);
            let sent_at = Arc::new(Mutex::new(std::collections::VecDeque::new()));
            let producer = {
                let sent_at = sent_at.clone();
                tokio::spawn(async move {
                    let mut row = 0;
                    while row < rows {
                        let n = ROWS_PER_BATCH.min(rows - row);
                        let batch = pb::ImportPurchasesRequest {
                            rows: (row..row + n)
                                // Stream s takes every streams-th customer, so together
                                // the streams cover all of them.
                                .map(|r| {
                                    purchase(
                                        &names[((r * streams + s) as usize) % names.len()],
                                        format!("{label}-{s}-{r}"),
                                    )
                                })
                                .collect(),
                        };
                        sent_at.lock().await.push_back(Instant::now());
                        if tx.send(batch).await.is_err() {
                            break;
                        }
                        row += n;
                    }
                })
            };
            let mut stats = Stats::default();
            let mut hist = histogram();
            match client
                .import_purchases(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
            {
                Ok(response) => {
                    let mut responses = response.into_inner();
                    while let Some(batch) = responses.next().await {
                        let sent = sent_at.lock().await.pop_front();
                        match batch {
                            Ok(batch) => {
                                if let Some(sent) = sent {
                                    let _ = hist.record(micros(sent));
                                }
                                stats.requests += 1;
                                for r in batch.results {
                                    if r.outcome == pb::ImportOutcome::Failed as i32 {
                                        stats.errors += 1;
                                        stats.first_error.get_or_insert(format!(
                                            "{}: {}",
                                            r.error_code, r.error_message
                                        ));
                                    } else {
                                        stats.items += 1;
                                    }
                                }
                            }
                            Err(status) => {
                                stats.errors += 1;
                                stats.first_error.get_or_insert(format!("{status:?}"));
                                break;
                            }
                        }
                    }
                }
                Err(status) => {
                    stats.errors += 1;
                    stats.first_error = Some(format!("{status:?}"));
                }
            }
            let _ = producer.await;
            (stats, hist)
        }));
    }
    let (mut total, hist) = join(tasks).await;
    total.seconds = start.elapsed().as_secs_f64();
    percentiles(&mut total, &hist);
    total
}

/// `feed`: WatchEvents from the start, one consumer, until it has read `expected` events.
/// Latency is per response message (a batch of up to 5,000 events).
pub async fn feed(channels: &[Channel], expected: u64) -> Stats {
    let start = Instant::now();
    let mut stats = Stats::default();
    let mut hist = histogram();
    let mut stream = match registry(channels[0].clone())
        .watch_events(pb::WatchEventsRequest {
            after_sequence: 0,
            max_batch_size: 5000,
        })
        .await
    {
        Ok(s) => s.into_inner(),
        Err(status) => {
            stats.errors = 1;
            stats.first_error = Some(format!("{status:?}"));
            return stats;
        }
    };
    let mut last = Instant::now();
    while stats.items < expected {
        match tokio::time::timeout(Duration::from_secs(30), stream.next()).await {
            Ok(Some(Ok(batch))) => {
                let _ = hist.record(micros(last));
                last = Instant::now();
                stats.requests += 1;
                stats.items += batch.events.len() as u64;
            }
            other => {
                stats.errors += 1;
                stats.first_error = Some(format!("feed ended early: {other:?}"));
                break;
            }
        }
    }
    stats.seconds = start.elapsed().as_secs_f64();
    percentiles(&mut stats, &hist);
    stats
}

/// The `n`th request's pick of `names`: multiplicative hashing spreads consecutive
/// requests over the whole list, not over neighbouring (cached) rows.
fn spread(names: &[String], n: u64) -> String {
    names[(n.wrapping_mul(2_654_435_761) as usize) % names.len().max(1)].clone()
}

/// `class-get`: GetClassification of random customers of the generated base.
pub async fn classification_get(
    channels: &[Channel],
    load: &Load,
    names: Arc<Vec<String>>,
) -> Stats {
    use clientela_proto::clientela::classification::v1 as cpb;
    use clientela_proto::clientela::classification::v1::classification_service_client::ClassificationServiceClient;
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        move |channel, _, n| {
            let name = spread(&names, n);
            async move {
                ClassificationServiceClient::new(channel)
                    .get_classification(cpb::GetClassificationRequest {
                        customer: name,
                        min_event_sequence: 0,
                    })
                    .await?;
                Ok(1)
            }
        },
    )
    .await
}

/// GetCoverage of customers spread over the whole base; items are answers.
pub async fn territory_coverage(
    channels: &[Channel],
    load: &Load,
    names: Arc<Vec<String>>,
) -> Stats {
    use clientela_proto::clientela::territory::v1 as tpb;
    use clientela_proto::clientela::territory::v1::territory_service_client::TerritoryServiceClient;
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        move |channel, _, n| {
            let name = spread(&names, n);
            async move {
                TerritoryServiceClient::new(channel)
                    .get_coverage(tpb::GetCoverageRequest {
                        customer: name,
                        ..Default::default()
                    })
                    .await?;
                Ok(1)
            }
        },
    )
    .await
}

/// Every seller's name but the house's.
pub async fn seller_names(channel: &Channel) -> anyhow::Result<Vec<String>> {
    use clientela_proto::clientela::territory::v1 as tpb;
    use clientela_proto::clientela::territory::v1::territory_service_client::TerritoryServiceClient;
    let mut client = TerritoryServiceClient::new(channel.clone());
    let (mut names, mut page_token) = (Vec::new(), String::new());
    loop {
        let page = client
            .list_sellers(tpb::ListSellersRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            })
            .await?
            .into_inner();
        names.extend(
            page.sellers
                .into_iter()
                .filter(|s| !s.house)
                .map(|s| s.name),
        );
        if page.next_page_token.is_empty() {
            return Ok(names);
        }
        page_token = page.next_page_token;
    }
}

/// ListCartera, a first page of 100, of sellers in turn, in the BASIC view or with
/// explanations (`full`); items are assignments listed.
pub async fn territory_cartera(
    channels: &[Channel],
    load: &Load,
    sellers: Arc<Vec<String>>,
    full: bool,
) -> Stats {
    use clientela_proto::clientela::territory::v1 as tpb;
    use clientela_proto::clientela::territory::v1::territory_service_client::TerritoryServiceClient;
    closed_loop(
        channels,
        load.concurrency,
        load.warmup,
        load.duration,
        move |channel, _, n| {
            let seller = spread(&sellers, n);
            async move {
                let page = TerritoryServiceClient::new(channel)
                    .list_cartera(tpb::ListCarteraRequest {
                        seller,
                        page_size: 100,
                        view: if full {
                            tpb::AssignmentView::Full
                        } else {
                            tpb::AssignmentView::Basic
                        } as i32,
                        ..Default::default()
                    })
                    .await?
                    .into_inner();
                Ok(page.assignments.len() as u64)
            }
        },
    )
    .await
}
