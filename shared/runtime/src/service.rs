//! One way to declare a service, so the binary, the tests and the benchmarks compose
//! every service the same way: its name, its settings section, its migrations, and what
//! it adds to an [`App`].

use std::future::Future;

use sea_orm_migration::MigratorTrait;
use serde::de::DeserializeOwned;

use crate::settings::{CommonSettings, DatabaseSettings};
use crate::{App, Db, ServeError};

/// A Clientela service.
pub trait Service {
    /// Its short name: the settings section (`[registry]`), the SQLite file under
    /// `data_dir` (`registry.db`) and the name in logs and errors.
    const NAME: &'static str;

    /// Its settings section.
    type Settings: DeserializeOwned + Default + std::fmt::Debug + Clone + Send + Sync;

    /// Its migrations.
    type Migrator: MigratorTrait;

    /// What registering it hands back (its logic, for tests and benchmarks).
    type Handle;

    /// Its database's settings, within its section.
    fn database(settings: &Self::Settings) -> &DatabaseSettings;

    /// Adds it to `app` over its migrated database: handlers, access rules, health, and
    /// background tasks (spawned on [`App::tasks`]).
    fn start(
        app: &mut App,
        settings: &Self::Settings,
        db: Db,
    ) -> impl Future<Output = Result<Self::Handle, ServeError>> + Send;
}

/// Connects to `S`'s database and runs its pending migrations.
pub async fn open_database<S: Service>(
    common: &CommonSettings,
    settings: &S::Settings,
) -> Result<Db, ServeError> {
    let failed = |source| ServeError::Database {
        service: S::NAME.into(),
        source,
    };
    let database = S::database(settings);
    let url = database
        .resolved_url(&common.data_dir, S::NAME)
        .map_err(|e| failed(sea_orm::DbErr::Custom(e)))?;
    let db = Db::connect(url.expose(), database).await.map_err(failed)?;
    db.migrate::<S::Migrator>(&format!("clientela-{}-migrations", S::NAME))
        .await
        .map_err(failed)?;
    Ok(db)
}

/// Opens `S`'s database and adds `S` to `app`.
pub async fn register<S: Service>(
    app: &mut App,
    settings: &S::Settings,
) -> Result<S::Handle, ServeError> {
    let db = open_database::<S>(app.settings(), settings).await?;
    let handle = S::start(app, settings, db).await?;
    tracing::info!(service = S::NAME, "ready");
    Ok(handle)
}

/// The error of a service whose logic could not start over its database.
pub fn start_failed<S: Service>(error: impl std::fmt::Display) -> ServeError {
    ServeError::Database {
        service: S::NAME.into(),
        source: sea_orm::DbErr::Custom(error.to_string()),
    }
}
