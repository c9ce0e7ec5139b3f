//! Territory & cartera (docs/TERRITORY.md): territory models, their hierarchy of
//! territories with the address criteria that place customers in them, sellers, and
//! the assignments that follow the registry's feed and the classification engine's
//! account tiers.

pub mod api;
pub mod assign;
pub mod cartera;
pub mod coverage;
pub mod explain;
pub mod following;
pub mod handover;
pub mod locate;
pub mod manual;
pub mod migration;
pub mod model;
pub mod prospects;
pub mod realign;
pub mod sellers;
pub mod store;
pub mod territories;
pub mod worklist;

use clientela_proto::clientela::classification::v1::classification_service_server;
use clientela_proto::clientela::registry::v1::customer_registry_service_server;
use clientela_proto::clientela::territory::v1::territory_service_server::TerritoryServiceServer;
use std::path::PathBuf;
use std::time::Duration;

use clientela_runtime::feed::consumer::{Batching, Consumer, Source};
use clientela_runtime::feed::upstream::{LabelChanges, RegistryEvents};
use clientela_runtime::service::{self, Service};
use clientela_runtime::settings::ClientTlsSettings;
use clientela_runtime::{App, CommonSettings, DatabaseSettings, Db, Secret, ServeError};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::following::{CLASSIFICATION_FEED, Following, REGISTRY_FEED};

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
    /// The classification engine whose label feed (account tiers: KAMs) it follows;
    /// empty: this process's own address.
    pub classification_url: String,
    /// Bearer token for the classification engine.
    pub classification_token: Option<Secret>,
    /// A file holding that token; used when `classification_token` is not set.
    pub classification_token_file: Option<PathBuf>,
    /// TLS to the classification engine.
    pub classification_tls: ClientTlsSettings,
    /// Days a KAM stays after its account's tier falls below KEY (a tier that
    /// flickers does not churn the KAM).
    pub kam_grace_days: i64,
    /// How often ended grace periods close their KAMs and waiting key accounts are
    /// offered to KAM sellers, in seconds.
    pub kam_sweep_interval_secs: u64,
    /// Registry events per batch.
    pub feed_batch: i32,
    /// While the consumer replays a long feed, registry events applied per transaction.
    pub feed_commit_events: usize,
    /// How often change-feed watchers look for other replicas' commits, in milliseconds.
    pub feed_poll_interval_ms: u64,
    /// Customers whose purchases are known to change nothing, kept between feed batches
    /// on SQLite (0: none).
    pub settled_cache_capacity: usize,
}

impl Default for TerritorySettings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings::default(),
            registry_url: String::new(),
            registry_token: None,
            registry_token_file: None,
            registry_tls: ClientTlsSettings::default(),
            classification_url: String::new(),
            classification_token: None,
            classification_token_file: None,
            classification_tls: ClientTlsSettings::default(),
            kam_grace_days: cartera::DEFAULT_KAM_GRACE_DAYS,
            kam_sweep_interval_secs: 60,
            feed_batch: 2000,
            feed_commit_events: 100_000,
            feed_poll_interval_ms: 1000,
            settled_cache_capacity: territories::DEFAULT_SETTLED_CACHE_CAPACITY,
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

    /// Handlers, access rules, health, the consumers of the registry's and the label
    /// feed, and the KAM sweep (which stop with the server).
    async fn start(
        app: &mut App,
        settings: &TerritorySettings,
        db: Db,
    ) -> Result<Territories, ServeError> {
        if !(0..=3650).contains(&settings.kam_grace_days) {
            return Err(ServeError::Config(format!(
                "territory.kam_grace_days {}: must be between 0 and 3650",
                settings.kam_grace_days
            )));
        }
        let territories = Territories::open(db.clone())
            .await
            .map_err(service::start_failed::<TerritoryService>)?
            .with_kam_grace_days(settings.kam_grace_days)
            .with_settled_cache(settings.settled_cache_capacity);
        let batching = Batching::of_settings(settings.feed_batch, settings.feed_commit_events);
        let registry = Consumer {
            source: Source::of_settings(
                app,
                "territory.registry",
                customer_registry_service_server::SERVICE_NAME,
                &settings.registry_url,
                settings.registry_token.as_ref(),
                settings.registry_token_file.as_deref(),
                &settings.registry_tls,
            )?,
            upstream: RegistryEvents::new(following::change_from),
            projection: Following(territories.clone()),
            db: db.clone(),
            cursor: REGISTRY_FEED,
            batching,
        };
        let classification = Source::of_settings(
            app,
            "territory.classification",
            classification_service_server::SERVICE_NAME,
            &settings.classification_url,
            settings.classification_token.as_ref(),
            settings.classification_token_file.as_deref(),
            &settings.classification_tls,
        )?;
        let labels = Consumer {
            source: classification.clone(),
            upstream: LabelChanges::new(following::label_from),
            projection: Following(territories.clone()),
            db: db.clone(),
            cursor: CLASSIFICATION_FEED,
            batching,
        };
        app.tasks().spawn(registry.run(app.stopping()));
        app.tasks().spawn(labels.run(app.stopping()));
        app.tasks().spawn(sweep_kams(
            territories.clone(),
            Duration::from_secs(settings.kam_sweep_interval_secs.max(1)),
            app.stopping(),
        ));
        app.add_service(
            TerritoryServiceServer::new(
                TerritoryApi::new(
                    territories.clone(),
                    app.stopping(),
                    Duration::from_millis(settings.feed_poll_interval_ms.max(10)),
                )
                .with_classification(classification.lazy_channel()),
            ),
            api::method_access,
            Some(db),
        )
        .await?;
        Ok(territories)
    }
}

/// Every `every`: ends the KAMs whose grace period is over and offers waiting key
/// accounts to KAM sellers. A failure is logged and tried again next time.
async fn sweep_kams(territories: Territories, every: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match territories.sweep_kams(clientela_runtime::time::now()).await {
            Ok(0) => {}
            Ok(changed) => tracing::info!(changed, "KAM sweep"),
            Err(error) => tracing::warn!(%error, "KAM sweep failed; retrying next time"),
        }
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
