//! The territory service through its gRPC API, on SQLite and PostgreSQL, beside the
//! registry and the classification engine whose feeds it follows (as in `clientela
//! serve`): models and their life, the hierarchy kept a forest, idempotent creates,
//! etags, where an address belongs, and the assignments the feeds make.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod access;
mod cartera;
mod determinism;
mod handover;
mod kam;
mod models;
mod properties;
mod prospects;
mod realign;
mod replicas;
mod requests;
mod seeds;
mod sellers;
mod worklist;

use clientela_classification::ClassificationSettings;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use clientela_proto::clientela::territory::v1 as pb;
use clientela_proto::clientela::territory::v1::territory_service_client::TerritoryServiceClient;
use clientela_registry::RegistrySettings;
use clientela_runtime::{App, CommonSettings, Secret};
use clientela_territory::TerritorySettings;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub type Client = TerritoryServiceClient<Authed>;
pub type Registry = CustomerRegistryServiceClient<Authed>;

/// The tests' channel: with auth on, calls that carry no token of their own are made
/// as the first token given (so the shared helpers work as an admin).
pub type Authed = tonic::service::interceptor::InterceptedService<Channel, DefaultToken>;

#[derive(Clone)]
pub struct DefaultToken(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for DefaultToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(token) = &self.0
            && !request.metadata().contains_key("authorization")
        {
            request
                .metadata_mut()
                .insert("authorization", token.clone());
        }
        Ok(request)
    }
}

pub struct TestApp {
    pub client: Client,
    pub registry: Registry,
    /// The channel both clients use (no default token).
    pub channel: Channel,
    /// The service itself, for what runs on a schedule (the KAM sweep).
    pub territories: clientela_territory::Territories,
    /// Where the app listens, and the territory service's database (for a replica).
    pub addr: std::net::SocketAddr,
    pub territory_url: String,
    pub engine: clientela_testkit::Engine,
    shutdown: CancellationToken,
    _dirs: Vec<tempfile::TempDir>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The registry, the classification engine and the territory service over fresh
/// databases of `engine`; None without PostgreSQL.
pub async fn spawn_app(engine: clientela_testkit::Engine) -> Option<TestApp> {
    spawn_app_with_tokens(engine, &[]).await
}

/// The same with auth on: a token `{name}-secret-0123456789` per (name, role), the
/// territory service reading the registry's feed with the first `service` one.
pub async fn spawn_app_with_tokens(
    engine: clientela_testkit::Engine,
    tokens: &[(&str, clientela_runtime::auth::Role)],
) -> Option<TestApp> {
    // Warnings (a consumer retrying, a skipped event) show with a failing test's output.
    let _ = tracing_subscriber::fmt()
        .with_env_filter("warn,clientela_territory=debug")
        .with_test_writer()
        .try_init();
    let (registry_url, dir1) = clientela_testkit::database(engine).await?;
    let (url, dir2) = clientela_testkit::database(engine).await?;
    let (classification_url, dir3) = clientela_testkit::database(engine).await?;
    let mut common = common_settings();
    let mut registry = RegistrySettings::default();
    registry.database.url = Secret::new(registry_url);
    registry.feed_poll_interval_ms = 50;
    let mut classification = ClassificationSettings::default();
    classification.database.url = Secret::new(classification_url);
    classification.feed_poll_interval_ms = 50;
    let mut settings = TerritorySettings::default();
    settings.database.url = Secret::new(url.clone());
    // The sweep is run by the tests themselves, at the instants they choose.
    settings.kam_sweep_interval_secs = 3600;
    for (name, role) in tokens {
        common.auth.tokens.insert(
            (*name).into(),
            clientela_runtime::settings::TokenSettings {
                role: role.name().to_owned(),
                secret: Some(Secret::new(secret(name))),
                secret_file: None,
            },
        );
        if *role == clientela_runtime::auth::Role::Service && settings.registry_token.is_none() {
            settings.registry_token = Some(Secret::new(secret(name)));
            settings.classification_token = Some(Secret::new(secret(name)));
            classification.registry_token = Some(Secret::new(secret(name)));
        }
    }
    let mut app = App::bind(common).await.unwrap();
    clientela_registry::register(&mut app, &registry)
        .await
        .unwrap();
    clientela_classification::register(&mut app, &classification)
        .await
        .unwrap();
    let territories = clientela_territory::register(&mut app, &settings)
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let shutdown = app.shutdown_handle();
    tokio::spawn(app.serve(std::future::pending()));
    let token = DefaultToken(
        tokens
            .first()
            .map(|(name, _)| format!("Bearer {}", secret(name)).parse().unwrap()),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Some(TestApp {
        client: TerritoryServiceClient::with_interceptor(channel.clone(), token.clone()),
        registry: CustomerRegistryServiceClient::with_interceptor(channel.clone(), token),
        channel,
        territories,
        addr,
        territory_url: url,
        engine,
        shutdown,
        _dirs: [dir1, dir2, dir3].into_iter().flatten().collect(),
    })
}

/// A server on any free port, no metrics, a short shutdown.
fn common_settings() -> CommonSettings {
    let mut common = CommonSettings::default();
    common.server.listen = "127.0.0.1:0".parse().unwrap();
    common.server.metrics_listen = None;
    common.server.shutdown_grace_secs = 5;
    common
}

/// A territory service alone in its process (stopped when dropped).
pub struct Replica {
    pub client: Client,
    shutdown: CancellationToken,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A second territory service on `app`'s territory database, following `app`'s registry
/// and classification engine over the network (auth off).
pub async fn spawn_replica(app: &TestApp) -> Replica {
    spawn_territory(&app.territory_url, &format!("http://{}", app.addr)).await
}

/// A territory service alone in its process on `database_url`, following the registry
/// and the classification engine at `upstream` (auth off).
pub async fn spawn_territory(database_url: &str, upstream: &str) -> Replica {
    let common = common_settings();
    let mut settings = TerritorySettings::default();
    settings.database.url = Secret::new(database_url.to_owned());
    settings.kam_sweep_interval_secs = 3600;
    settings.registry_url = upstream.to_owned();
    settings.classification_url = upstream.to_owned();
    let mut replica = App::bind(common).await.unwrap();
    clientela_territory::register(&mut replica, &settings)
        .await
        .unwrap();
    let addr = replica.local_addr().unwrap();
    let shutdown = replica.shutdown_handle();
    tokio::spawn(replica.serve(std::future::pending()));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Replica {
        client: TerritoryServiceClient::with_interceptor(channel, DefaultToken(None)),
        shutdown,
    }
}

/// With tokens: `ops` admin, `svc` service, `bi` readonly, and the sales tokens `ana`,
/// `beto` and `ghost` (which names no seller).
pub async fn spawn_sales_app(engine: clientela_testkit::Engine) -> Option<TestApp> {
    use clientela_runtime::auth::Role;
    spawn_app_with_tokens(
        engine,
        &[
            ("ops", Role::Admin),
            ("svc", Role::Service),
            ("bi", Role::Readonly),
            ("ana", Role::Sales),
            ("beto", Role::Sales),
            ("ghost", Role::Sales),
        ],
    )
    .await
}

/// Token `name`'s secret.
pub fn secret(name: &str) -> String {
    format!("{name}-secret-0123456789")
}

/// `message` as token `name` sends it.
pub fn as_token<T>(message: T, name: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", secret(name)).parse().unwrap(),
    );
    request
}

/// A new PLANNING model.
pub async fn new_model(client: &mut Client, name: &str) -> pb::TerritoryModel {
    client
        .create_territory_model(pb::CreateTerritoryModelRequest {
            territory_model: Some(pb::TerritoryModel {
                display_name: name.into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .territory_model
        .unwrap()
}

/// Adds a territory.
pub async fn add(
    client: &mut Client,
    model: &pb::TerritoryModel,
    code: &str,
    parent: &str,
    criteria: pb::AddressCriteria,
) -> Result<pb::Territory, tonic::Status> {
    client
        .create_territory(pb::CreateTerritoryRequest {
            parent: model.name.clone(),
            territory: Some(pb::Territory {
                code: code.into(),
                display_name: format!("Territory {code}"),
                parent_code: parent.into(),
                criteria: Some(criteria),
                ..Default::default()
            }),
        })
        .await
        .map(|r| r.into_inner().territory.unwrap())
}

/// The first field violation of an INVALID_ARGUMENT.
pub fn violation(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    status
        .get_details_bad_request()
        .and_then(|b| b.field_violations.first().map(|f| f.field.clone()))
        .unwrap_or_default()
}

/// Every page of a List call from `request` on: `call` answers one page as its items and
/// next_page_token, which `token` puts back into the request.
pub async fn every_page<R: Clone, T>(
    mut request: R,
    token: fn(&mut R) -> &mut String,
    mut call: impl AsyncFnMut(R) -> (Vec<T>, String),
) -> Vec<Vec<T>> {
    let mut pages = Vec::new();
    loop {
        let (items, next) = call(request.clone()).await;
        pages.push(items);
        if next.is_empty() {
            return pages;
        }
        *token(&mut request) = next;
    }
}
