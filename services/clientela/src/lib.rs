//! How the `clientela` binary composes Clientela's services: their settings in one
//! struct, and serving or migrating any subset of them. Benchmarks serve through here too.

use clientela_classification::ClassificationSettings;
use clientela_registry::RegistrySettings;
use clientela_runtime::{App, CommonSettings, ServeError};
use clientela_territory::TerritorySettings;
use serde::Deserialize;

/// A service the binary can run.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// The customer registry.
    Registry,
    /// The classification engine (follows the registry's feed).
    Classification,
    /// Territory models and their territories.
    Territory,
}

/// Every service, in start order.
pub const ALL_SERVICES: &[Service] = &[
    Service::Registry,
    Service::Classification,
    Service::Territory,
];

/// All settings: the shared sections and one section per service.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Server, log, auth, data_dir.
    #[serde(flatten)]
    pub common: CommonSettings,
    /// `[registry]`.
    pub registry: RegistrySettings,
    /// `[classification]`.
    pub classification: ClassificationSettings,
    /// `[territory]`.
    pub territory: TerritorySettings,
}

/// The services named, or all of them when none is.
pub fn chosen(services: Vec<Service>) -> Vec<Service> {
    if services.is_empty() {
        ALL_SERVICES.to_vec()
    } else {
        services
    }
}

/// Runs the pending migrations of `services`.
pub async fn migrate(settings: &Settings, services: Vec<Service>) -> Result<(), ServeError> {
    for service in chosen(services) {
        match service {
            Service::Registry => {
                clientela_registry::open_database(&settings.common, &settings.registry).await?;
            }
            Service::Classification => {
                clientela_classification::open_database(&settings.common, &settings.classification)
                    .await?;
            }
            Service::Territory => {
                clientela_territory::open_database(&settings.common, &settings.territory).await?;
            }
        }
        tracing::info!(?service, "migrated");
    }
    Ok(())
}

/// Binds the server and adds `services` to it, ready to serve.
pub async fn build(settings: &Settings, services: Vec<Service>) -> Result<App, ServeError> {
    let mut app = App::bind(settings.common.clone()).await?;
    for service in chosen(services) {
        match service {
            Service::Registry => {
                clientela_registry::register(&mut app, &settings.registry).await?;
            }
            Service::Classification => {
                clientela_classification::register(&mut app, &settings.classification).await?;
            }
            Service::Territory => {
                clientela_territory::register(&mut app, &settings.territory).await?;
            }
        }
    }
    Ok(app)
}

/// Serves `services` on one port until SIGTERM or ctrl-c. Prints
/// `clientela listening on ADDR` on stdout once it accepts calls.
pub async fn serve(settings: &Settings, services: Vec<Service>) -> Result<(), ServeError> {
    let signal = clientela_runtime::shutdown_signal();
    let app = build(settings, services).await?;
    if let Some(addr) = app.local_addr() {
        // One line on stdout, so scripts and tests can find the port.
        println!("clientela listening on {addr}");
        tracing::info!(%addr, metrics = ?app.metrics_addr(), "serving");
    }
    app.serve(signal).await
}
