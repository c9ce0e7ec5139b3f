//! The classification engine as a service: its settings, database, handlers and the
//! consumer of the registry's feed.

use std::path::PathBuf;
use std::time::Duration;

use clientela_proto::clientela::classification::v1::classification_service_server::ClassificationServiceServer;
use clientela_runtime::feed::consumer::{Batching, Consumer, Source};
use clientela_runtime::feed::upstream::RegistryEvents;
use clientela_runtime::service::{self, Service};
use clientela_runtime::settings::ClientTlsSettings;
use clientela_runtime::{App, CommonSettings, DatabaseSettings, Db, Secret, ServeError};
use serde::Deserialize;

use crate::api::{self, ClassificationApi};
use crate::engine::{Engine, REGISTRY_FEED};
use crate::feed::{Following, Schedule};
use crate::migration;
use crate::policy::Policy;

/// The `[classification]` section of the settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClassificationSettings {
    /// Its database (`[classification.database]`).
    pub database: DatabaseSettings,
    /// The registry whose feed it follows, `http://host:port`; empty: this process's own
    /// address (the all-in-one `clientela serve`).
    pub registry_url: String,
    /// Bearer token for the registry, when the registry's auth is on.
    pub registry_token: Option<Secret>,
    /// A file holding that token (a mounted Kubernetes Secret); used when
    /// `registry_token` is not set.
    pub registry_token_file: Option<PathBuf>,
    /// TLS to the registry (`https://` URLs): its CA, and a client certificate for
    /// mutual TLS.
    pub registry_tls: ClientTlsSettings,
    /// A JSON policy file; the fields it leaves out keep docs/CLASSIFICATION.md's defaults. When it
    /// differs from the current policy it becomes a new version at start-up.
    pub policy_file: Option<PathBuf>,
    /// The population (ABC, KEY, RFM, share of sales) is recomputed and everyone
    /// classified again at most this often, in seconds (0: after every feed batch).
    pub population_refresh_secs: u64,
    /// Once caught up with the feed, the population is also recomputed when the company
    /// revenue has moved by more than this share since it was computed, in basis points
    /// (TAXONOMY's `population_drift`, 200 = 2 %)...
    pub population_drift_bp: i64,
    /// ...and it is at least this many seconds old (so a busy feed is no storm).
    pub population_min_interval_secs: u64,
    /// Customers classified per transaction (by Reclassify, the scheduled refresh and
    /// the consumer).
    pub classify_page: u64,
    /// Registry events per batch.
    pub feed_batch: i32,
    /// While the consumer replays a long feed, registry events applied per transaction
    /// (batches are gathered until there are this many).
    pub feed_commit_events: usize,
    /// While the consumer catches up with the feed, the customers it touched are
    /// classified at most this often, in seconds; once caught up, after every batch.
    pub classify_interval_secs: u64,
    /// How often change-feed watchers look for other replicas' commits, in milliseconds.
    pub feed_poll_interval_ms: u64,
}

impl Default for ClassificationSettings {
    fn default() -> Self {
        Self {
            database: DatabaseSettings::default(),
            registry_url: String::new(),
            registry_token: None,
            registry_token_file: None,
            registry_tls: ClientTlsSettings::default(),
            policy_file: None,
            population_refresh_secs: 600,
            population_drift_bp: 200,
            population_min_interval_secs: 60,
            classify_page: crate::engine::DEFAULT_PAGE,
            feed_batch: 2000,
            feed_commit_events: 500_000,
            classify_interval_secs: 30,
            feed_poll_interval_ms: 1000,
        }
    }
}

/// Connects to the engine's database and runs its migrations.
pub async fn open_database(
    common: &CommonSettings,
    settings: &ClassificationSettings,
) -> Result<Db, ServeError> {
    service::open_database::<ClassificationService>(common, settings).await
}

/// The policy of the settings: the file's, or docs/CLASSIFICATION.md's defaults.
pub fn initial_policy(settings: &ClassificationSettings) -> Result<Policy, ServeError> {
    let Some(path) = &settings.policy_file else {
        return Ok(Policy::default());
    };
    let bad = |why: String| ServeError::Config(format!("policy_file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let policy: Policy = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let violations = policy.violations("policy");
    if !violations.is_empty() {
        let list: Vec<String> = violations
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        return Err(bad(list.join("; ")));
    }
    Ok(policy)
}

/// The classification engine, as the binary and the tests compose it.
#[derive(Debug, Clone, Copy)]
pub struct ClassificationService;

impl Service for ClassificationService {
    const NAME: &'static str = "classification";
    type Settings = ClassificationSettings;
    type Migrator = migration::Migrator;
    type Handle = Engine;

    fn database(settings: &ClassificationSettings) -> &DatabaseSettings {
        &settings.database
    }

    /// Handlers, access rules, health, and the consumer of the registry's feed (which
    /// stops with the server).
    async fn start(
        app: &mut App,
        settings: &ClassificationSettings,
        db: Db,
    ) -> Result<Engine, ServeError> {
        let policy = initial_policy(settings)?;
        let engine = Engine::new(db.clone(), &policy, clientela_runtime::time::now())
            .await
            .map_err(service::start_failed::<ClassificationService>)?
            .with_page(settings.classify_page);
        let source = Source::of_settings(
            app,
            "classification.registry",
            clientela_proto::clientela::registry::v1::customer_registry_service_server::SERVICE_NAME,
            &settings.registry_url,
            settings.registry_token.as_ref(),
            settings.registry_token_file.as_deref(),
            &settings.registry_tls,
        )?;
        let following = Following::new(
            engine.clone(),
            Schedule {
                population_refresh: Duration::from_secs(settings.population_refresh_secs),
                population_drift_bp: settings.population_drift_bp.max(0),
                population_min_interval: Duration::from_secs(settings.population_min_interval_secs),
                classify_interval: Duration::from_secs(settings.classify_interval_secs),
            },
        );
        let consumer = Consumer {
            source,
            upstream: RegistryEvents::new(|e| api::convert::change_from(e).map(Some)),
            projection: following,
            db: db.clone(),
            cursor: REGISTRY_FEED,
            batching: Batching::of_settings(settings.feed_batch, settings.feed_commit_events),
        };
        app.tasks().spawn(consumer.run(app.stopping()));
        let api = ClassificationApi::new(
            engine.clone(),
            app.stopping(),
            Duration::from_millis(settings.feed_poll_interval_ms.max(10)),
            app.tasks(),
        );
        app.add_service(
            ClassificationServiceServer::new(api),
            api::method_access,
            Some(db),
        )
        .await?;
        Ok(engine)
    }
}

/// Adds the engine to a server: database, migrations, handlers, health, and the
/// consumer of the registry's feed (which stops with the server).
pub async fn register(
    app: &mut App,
    settings: &ClassificationSettings,
) -> Result<Engine, ServeError> {
    service::register::<ClassificationService>(app, settings).await
}
