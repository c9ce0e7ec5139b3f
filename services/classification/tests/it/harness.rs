//! `spawn_app`: the registry and the classification engine on 127.0.0.1:0 over fresh
//! databases, the engine following the registry's feed and refreshing the population
//! after every batch; clients for both, and helpers to write histories.

use std::time::Duration;

use clientela_classification::ClassificationSettings;
use clientela_proto::clientela::classification::v1 as cpb;
use clientela_proto::clientela::classification::v1::classification_service_client::ClassificationServiceClient;
use clientela_proto::clientela::common::v1::Money;
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use clientela_registry::RegistrySettings;
use clientela_runtime::{App, CommonSettings, Secret};
use clientela_testkit::Engine;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub type Registry = CustomerRegistryServiceClient<Channel>;
pub type Classifier = ClassificationServiceClient<Channel>;

pub struct TestApp {
    pub registry: Registry,
    pub classifier: Classifier,
    shutdown: CancellationToken,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Both services over fresh databases of `engine`; `None` without PostgreSQL.
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    spawn_app_with(engine, |_| {}).await
}

/// As [`spawn_app`], with the consumer reading the feed two events at a time and gathering
/// four per transaction, as it does when it replays a long feed (classifying only once
/// caught up or quiet).
pub async fn spawn_replaying_app(engine: Engine) -> Option<TestApp> {
    spawn_app_with(engine, |c| {
        c.feed_batch = 2;
        c.feed_commit_events = 4;
        c.classify_interval_secs = 3_600;
    })
    .await
}

/// As [`spawn_app`], with the population refreshed on its schedule only after an hour,
/// but whenever the company revenue moves more than 2 %, however recent.
pub async fn spawn_drift_app(engine: Engine) -> Option<TestApp> {
    spawn_app_with(engine, |c| {
        c.population_refresh_secs = 3_600;
        c.population_drift_bp = 200;
        c.population_min_interval_secs = 0;
    })
    .await
}

/// As [`spawn_app`], with the population refreshed only after an hour, by schedule or by
/// drift: what a fresh install's first purchase meets when nothing else refreshes it.
pub async fn spawn_slow_refresh_app(engine: Engine) -> Option<TestApp> {
    spawn_app_with(engine, |c| {
        c.population_refresh_secs = 3_600;
        c.population_min_interval_secs = 3_600;
    })
    .await
}

async fn spawn_app_with(
    engine: Engine,
    tweak: impl FnOnce(&mut ClassificationSettings),
) -> Option<TestApp> {
    // Warnings (a consumer retrying, a skipped event) show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,clientela_classification=debug")
        .with_test_writer()
        .try_init();
    let (registry_url, dir1) = clientela_testkit::database(engine).await?;
    let (classification_url, dir2) = clientela_testkit::database(engine).await?;
    let mut common = CommonSettings::default();
    common.server.listen = "127.0.0.1:0".parse().unwrap();
    common.server.metrics_listen = None;
    common.server.shutdown_grace_secs = 5;
    let mut registry = RegistrySettings::default();
    registry.database.url = Secret::new(registry_url);
    registry.feed_poll_interval_ms = 50;
    let mut classification = ClassificationSettings::default();
    classification.database.url = Secret::new(classification_url);
    classification.population_refresh_secs = 0;
    classification.feed_poll_interval_ms = 50;
    tweak(&mut classification);
    let mut app = App::bind(common).await.unwrap();
    clientela_registry::register(&mut app, &registry)
        .await
        .unwrap();
    clientela_classification::register(&mut app, &classification)
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let shutdown = app.shutdown_handle();
    tokio::spawn(app.serve(std::future::pending()));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Some(TestApp {
        registry: CustomerRegistryServiceClient::new(channel.clone()),
        classifier: ClassificationServiceClient::new(channel),
        shutdown,
        _dirs: [dir1, dir2].into_iter().flatten().collect(),
    })
}

/// Runs a scenario against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        clientela_testkit::both_engines!($crate::harness::spawn_app, $name, $body);
    };
}

pub fn ts(seconds_ago: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: chrono::Utc::now().timestamp() - seconds_ago,
        nanos: 0,
    }
}

pub const DAY: i64 = 86_400;

/// A new person.
pub async fn person(registry: &mut Registry, name: &str) -> pb::Customer {
    registry
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                kind: pb::CustomerKind::Person as i32,
                display_name: name.into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
}

/// A purchase `days_ago` of one line: `quantity` × `price` CLP.
pub async fn buy(
    registry: &mut Registry,
    customer: &pb::Customer,
    order_id: &str,
    days_ago: i64,
    quantity: i64,
    price: i64,
    discounted: bool,
) -> pb::Purchase {
    registry
        .record_purchase(pb::RecordPurchaseRequest {
            parent: customer.name.clone(),
            purchase: Some(pb::Purchase {
                order_id: order_id.into(),
                occur_time: Some(ts(days_ago * DAY + 60)),
                channel: pb::SalesChannel::Store as i32,
                lines: vec![pb::PurchaseLine {
                    product_line: "lubricantes".into(),
                    sku: "LUB-1".into(),
                    quantity,
                    unit_price: Some(Money {
                        currency_code: "CLP".into(),
                        amount_minor: price,
                    }),
                    discounted,
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .purchase
        .unwrap()
}

/// An answer to a survey of `kind`, `days_ago`.
pub async fn survey(
    registry: &mut Registry,
    customer: &pb::Customer,
    kind: pb::SurveyKind,
    score: i32,
    days_ago: i64,
) {
    registry
        .record_survey(pb::RecordSurveyRequest {
            parent: customer.name.clone(),
            survey: Some(pb::Survey {
                kind: kind as i32,
                score,
                occur_time: Some(ts(days_ago * DAY + 60)),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap();
}

/// The customer's classification once `ready` holds of it (the engine follows the
/// feed asynchronously); panics with the last one seen after 30 s.
pub async fn classified(
    classifier: &mut Classifier,
    customer: &pb::Customer,
    ready: impl Fn(&cpb::Classification) -> bool,
) -> cpb::Classification {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut last;
    loop {
        let got = classifier
            .get_classification(cpb::GetClassificationRequest {
                customer: customer.name.clone(),
                min_event_sequence: 0,
            })
            .await;
        match got {
            Ok(r) => {
                let c = r.into_inner().classification.unwrap();
                if ready(&c) {
                    return c;
                }
                last = format!("{c:#?}");
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
                last = format!("{status:?}");
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not classified as expected in 60 s; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The label code of a result.
pub fn code(result: &Option<cpb::LabelResult>) -> &str {
    result
        .as_ref()
        .and_then(|r| r.label.as_ref())
        .map_or("", |l| l.code.as_str())
}

/// The trait codes.
pub fn traits(c: &cpb::Classification) -> Vec<&str> {
    c.traits
        .iter()
        .filter_map(|t| t.label.as_ref().map(|l| l.code.as_str()))
        .collect()
}

/// The current policy.
pub async fn current_policy(classifier: &mut Classifier) -> cpb::Policy {
    classifier
        .get_policy(cpb::GetPolicyRequest { version: 0 })
        .await
        .unwrap()
        .into_inner()
        .policy
        .unwrap()
}
