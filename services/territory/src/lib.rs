//! Territory & cartera (docs/TERRITORY.md): territory models, their hierarchy of
//! territories with the address criteria that place customers in them. Sellers,
//! assignments and carteras are built on these.

pub mod api;
pub mod assign;
pub mod cartera;
pub mod coverage;
pub mod explain;
pub mod following;
pub mod locate;
pub mod manual;
pub mod migration;
pub mod model;
pub mod sellers;
pub mod store;
pub mod territories;

use clientela_proto::clientela::territory::v1::territory_service_server::TerritoryServiceServer;
use std::path::PathBuf;
use std::time::Duration;

use clientela_runtime::feed::consumer::{Batching, Consumer, Source};
use clientela_runtime::feed::registry::RegistryEvents;
use clientela_runtime::service::{self, Service};
use clientela_runtime::settings::ClientTlsSettings;
use clientela_runtime::{App, CommonSettings, DatabaseSettings, Db, Secret, ServeError};
use serde::Deserialize;

use crate::following::{Following, REGISTRY_FEED};

pub use api::TerritoryApi;
pub use territories::Territories;

/// The gRPC service name.
pub const SERVICE_NAME: &str = "clientela.territory.v1.TerritoryService";

/// The `[territory]` section of the settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TerritorySettings {
    /// Its database (`[territory.database]`).
    pub database: DatabaseSettings,
    /// The registry whose feed it follows, `http://host:port`; empty: this process's own
    /// address (the all-in-one `clientela serve`).
    pub registry_url: String,
    /// Bearer token for the registry, when the registry's auth is on.
    pub registry_token: Option<Secret>,
    /// A file holding that token (a mounted Kubernetes Secret); used when
    /// `registry_token` is not set.
    pub registry_token_file: Option<PathBuf>,
    /// TLS to the registry (`https://` URLs).
    pub registry_tls: ClientTlsSettings,
    /// Registry events per batch.
    pub feed_batch: i32,
    /// While the consumer replays a long feed, registry events applied per transaction.
    pub feed_commit_events: usize,
    /// How often change-feed watchers look for other replicas' commits, in milliseconds.
    pub feed_poll_interval_ms: u64,
}

impl Default for TerritorySettings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings::default(),
            registry_url: String::new(),
            registry_token: None,
            registry_token_file: None,
            registry_tls: ClientTlsSettings::default(),
            feed_batch: 2000,
            feed_commit_events: 100_000,
            feed_poll_interval_ms: 1000,
        }
    }
}

/// The territory service, as the binary and the tests compose it.
#[derive(Debug, Clone, Copy)]
pub struct TerritoryService;

impl Service for TerritoryService {
    const NAME: &'static str = "territory";
    type Settings = TerritorySettings;
    type Migrator = migration::Migrator;
    type Handle = Territories;

    fn database(settings: &TerritorySettings) -> &DatabaseSettings {
        &settings.database
    }

    /// Handlers, access rules, health, and the consumer of the registry's feed (which
    /// stops with the server).
    async fn start(
        app: &mut App,
        settings: &TerritorySettings,
        db: Db,
    ) -> Result<Territories, ServeError> {
        let territories = Territories::open(db.clone())
            .await
            .map_err(service::start_failed::<TerritoryService>)?;
        let source = Source::of_settings(
            app,
            "territory.registry",
            &settings.registry_url,
            settings.registry_token.as_ref(),
            settings.registry_token_file.as_deref(),
            &settings.registry_tls,
        )?;
        let consumer = Consumer {
            source,
            upstream: RegistryEvents::new(following::change_from),
            projection: Following(territories.clone()),
            db: db.clone(),
            cursor: REGISTRY_FEED,
            batching: Batching::of_settings(settings.feed_batch, settings.feed_commit_events),
        };
        app.tasks().spawn(consumer.run(app.stopping()));
        app.add_service(
            TerritoryServiceServer::new(TerritoryApi::new(
                territories.clone(),
                app.stopping(),
                Duration::from_millis(settings.feed_poll_interval_ms.max(10)),
            )),
            api::method_access,
            Some(db),
        )
        .await?;
        Ok(territories)
    }
}

/// Connects to the service's database and runs its migrations.
pub async fn open_database(
    common: &CommonSettings,
    settings: &TerritorySettings,
) -> Result<Db, ServeError> {
    service::open_database::<TerritoryService>(common, settings).await
}

/// Adds the territory service to a server: database, migrations, handlers, health.
pub async fn register(
    app: &mut App,
    settings: &TerritorySettings,
) -> Result<Territories, ServeError> {
    service::register::<TerritoryService>(app, settings).await
}
