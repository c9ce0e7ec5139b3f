//! Territory & cartera (docs/TERRITORY.md): territory models, their hierarchy of
//! territories with the address criteria that place customers in them. Sellers,
//! assignments and carteras are built on these.

pub mod api;
pub mod locate;
pub mod migration;
pub mod model;
pub mod sellers;
pub mod store;
pub mod territories;

use clientela_proto::clientela::territory::v1::territory_service_server::TerritoryServiceServer;
use clientela_runtime::service::{self, Service};
use clientela_runtime::{App, CommonSettings, DatabaseSettings, Db, ServeError};
use serde::Deserialize;

pub use api::TerritoryApi;
pub use territories::Territories;

/// The gRPC service name.
pub const SERVICE_NAME: &str = "clientela.territory.v1.TerritoryService";

/// The `[territory]` section of the settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TerritorySettings {
    /// Its database (`[territory.database]`).
    pub database: DatabaseSettings,
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

    /// Handlers, access rules and health.
    async fn start(
        app: &mut App,
        _settings: &TerritorySettings,
        db: Db,
    ) -> Result<Territories, ServeError> {
        let territories = Territories::new(db.clone());
        app.add_service(
            TerritoryServiceServer::new(TerritoryApi::new(territories.clone())),
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
