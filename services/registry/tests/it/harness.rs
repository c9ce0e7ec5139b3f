//! `spawn_app`: the registry on 127.0.0.1:0 over a fresh database, and a connected client.

use std::net::SocketAddr;

use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use clientela_registry::RegistrySettings;
use clientela_runtime::{App, CommonSettings, ServeError};
use clientela_testkit::Engine;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub type Client = CustomerRegistryServiceClient<Channel>;

pub struct TestApp {
    pub addr: SocketAddr,
    pub client: Client,
    pub url: String,
    shutdown: CancellationToken,
    task: Option<JoinHandle<Result<(), ServeError>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestApp {
    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) -> (String, Option<tempfile::TempDir>) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
        (self.url.clone(), self._dir.take())
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn settings() -> CommonSettings {
    let mut common = CommonSettings::default();
    common.server.listen = "127.0.0.1:0".parse().unwrap();
    common.server.metrics_listen = None;
    common.server.shutdown_grace_secs = 5;
    common
}

/// The registry over the database at `url`, with the given common settings.
pub async fn spawn_with(
    url: String,
    dir: Option<tempfile::TempDir>,
    common: CommonSettings,
) -> TestApp {
    let mut registry = RegistrySettings::default();
    registry.database.url = clientela_runtime::Secret::new(url.clone());
    registry.feed_poll_interval_ms = 50;
    let mut app = App::bind(common).await.unwrap();
    clientela_registry::register(&mut app, &registry)
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let shutdown = app.shutdown_handle();
    let task = tokio::spawn(app.serve(std::future::pending()));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    TestApp {
        addr,
        client: CustomerRegistryServiceClient::new(channel),
        url,
        shutdown,
        task: Some(task),
        _dir: dir,
    }
}

/// The registry over a fresh database of `engine`; `None` when PostgreSQL is unavailable.
pub async fn spawn_app(engine: Engine) -> Option<TestApp> {
    let (url, dir) = clientela_testkit::database(engine).await?;
    Some(spawn_with(url, dir, settings()).await)
}

/// Runs a scenario against SQLite and against PostgreSQL.
#[macro_export]
macro_rules! both_engines {
    ($name:ident, $body:expr) => {
        clientela_testkit::both_engines!($crate::harness::spawn_app, $name, $body);
    };
}

/// A valid person, unique by `n`.
pub fn person(n: u32) -> pb::Customer {
    pb::Customer {
        kind: pb::CustomerKind::Person as i32,
        display_name: format!("Persona {n}"),
        emails: vec![format!("persona{n}@example.cl")],
        ..Default::default()
    }
}

pub async fn create(client: &mut Client, customer: pb::Customer) -> pb::Customer {
    client
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(customer),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap()
}

pub fn ts(seconds_ago: i64) -> prost_types::Timestamp {
    let now = chrono::Utc::now().timestamp();
    prost_types::Timestamp {
        seconds: now - seconds_ago,
        nanos: 0,
    }
}

pub fn money(currency: &str, amount_minor: i64) -> clientela_proto::clientela::common::v1::Money {
    clientela_proto::clientela::common::v1::Money {
        currency_code: currency.into(),
        amount_minor,
    }
}

/// A purchase of `lines` (quantity, unit price in CLP, discounted).
pub fn purchase(order_id: &str, seconds_ago: i64, lines: &[(i64, i64, bool)]) -> pb::Purchase {
    pb::Purchase {
        order_id: order_id.into(),
        occur_time: Some(ts(seconds_ago)),
        channel: pb::SalesChannel::Store as i32,
        lines: lines
            .iter()
            .map(|(q, p, d)| pb::PurchaseLine {
                product_line: "lubricantes".into(),
                sku: "LUB-1".into(),
                quantity: *q,
                unit_price: Some(money("CLP", *p)),
                discounted: *d,
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

pub async fn buy(
    client: &mut Client,
    customer: &str,
    order_id: &str,
    lines: &[(i64, i64, bool)],
) -> pb::Purchase {
    client
        .record_purchase(pb::RecordPurchaseRequest {
            parent: customer.into(),
            purchase: Some(purchase(order_id, 3600, lines)),
        })
        .await
        .unwrap()
        .into_inner()
        .purchase
        .unwrap()
}

/// The fields named by a status's BadRequest details.
pub fn violated_fields(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Asserts an INVALID_ARGUMENT naming `field`.
pub fn assert_invalid(status: &tonic::Status, field: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let fields = violated_fields(status);
    assert!(
        fields.iter().any(|f| f == field),
        "expected a violation of {field}, got {fields:?} ({})",
        status.message()
    );
}

/// Reads the whole feed after `after` until it is idle for a moment.
pub async fn drain_feed(client: &mut Client, after: i64, expected_last: i64) -> Vec<pb::Event> {
    use futures::StreamExt;
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after_sequence: after,
            max_batch_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut events = Vec::new();
    while events.last().map_or(after, |e: &pb::Event| e.sequence) < expected_last {
        let next = tokio::time::timeout(std::time::Duration::from_secs(20), stream.next())
            .await
            .expect("the feed stalled")
            .expect("the feed ended")
            .unwrap();
        events.extend(next.events);
    }
    events
}

/// Asserts that no event follows `sequence`: a sentinel customer is created, and its
/// event must be the very next one. (Waiting a while for nothing would pass whenever the
/// feed is merely slow.) The sentinel's own event is left on the feed.
pub async fn assert_feed_quiet_after(client: &mut Client, sequence: i64) {
    let sentinel = create(client, person(4_000_000_000)).await;
    let next = drain_feed(client, sequence, sequence + 1).await;
    let first = &next[0];
    let created = match &first.payload {
        Some(pb::event::Payload::CustomerCreated(c)) => c.name == sentinel.name,
        _ => false,
    };
    assert!(
        first.sequence == sequence + 1 && created,
        "unexpected events after {sequence}: {next:?}"
    );
}
