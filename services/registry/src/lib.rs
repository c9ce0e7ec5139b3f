//! The customer registry: customers (people and organizations), their purchases,
//! returns, surveys, complaints and referrals, and the durable event feed of every change.

pub mod api;
pub mod migration;
pub mod model;
pub mod registry;
pub mod store;

use std::time::Duration;

use clientela_proto::clientela::registry::v1::customer_registry_service_server::CustomerRegistryServiceServer;
use clientela_runtime::service::{self, Service};
use clientela_runtime::{App, CommonSettings, DatabaseSettings, Db, ServeError};
use serde::Deserialize;

pub use api::RegistryApi;
pub(crate) use clientela_runtime::names;
pub use registry::Registry;

/// The gRPC service name.
pub const SERVICE_NAME: &str = "clientela.registry.v1.CustomerRegistryService";

/// The `[registry]` section of the settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistrySettings {
    /// Its database (`[registry.database]`).
    pub database: DatabaseSettings,
    /// How often feed watchers look for commits made by other replicas, in milliseconds.
    pub feed_poll_interval_ms: u64,
    /// Customers GetCustomer keeps in memory when the database is SQLite (0: none).
    pub customer_cache_capacity: usize,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings::default(),
            feed_poll_interval_ms: 1000,
            customer_cache_capacity: 100_000,
        }
    }
}

/// The registry, as the binary and the tests compose it.
#[derive(Debug, Clone, Copy)]
pub struct RegistryService;

impl Service for RegistryService {
    const NAME: &'static str = "registry";
    type Settings = RegistrySettings;
    type Migrator = migration::Migrator;
    type Handle = Registry;

    fn database(settings: &RegistrySettings) -> &DatabaseSettings {
        &settings.database
    }

    /// Handlers, access rules and health.
    async fn start(
        app: &mut App,
        settings: &RegistrySettings,
        db: Db,
    ) -> Result<Registry, ServeError> {
        let registry = Registry::new(db.clone())
            .await
            .map_err(service::start_failed::<Self>)?
            .with_customer_cache(settings.customer_cache_capacity)
            .with_wire_encoder(api::wire_encoder());
        let api = RegistryApi::new(
            registry.clone(),
            app.stopping(),
            Duration::from_millis(settings.feed_poll_interval_ms.max(10)),
        );
        app.add_service(
            CustomerRegistryServiceServer::new(api),
            api::method_access,
            Some(db),
        )
        .await?;
        Ok(registry)
    }
}

/// Connects to the registry's database and runs its migrations.
pub async fn open_database(
    common: &CommonSettings,
    settings: &RegistrySettings,
) -> Result<Db, ServeError> {
    service::open_database::<RegistryService>(common, settings).await
}

/// Adds the registry to a server: database, migrations, handlers, health.
pub async fn register(app: &mut App, settings: &RegistrySettings) -> Result<Registry, ServeError> {
    service::register::<RegistryService>(app, settings).await
}

/// Runs the registry alone until SIGTERM or ctrl-c.
pub async fn serve(common: CommonSettings, settings: RegistrySettings) -> Result<(), ServeError> {
    let signal = clientela_runtime::shutdown_signal();
    let mut app = App::bind(common).await?;
    register(&mut app, &settings).await?;
    app.serve(signal).await
}
