//! The `clientela` binary: runs any subset of Clientela's services in one process
//! (all of them by default, on SQLite), or migrates their databases.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use clientela_registry::RegistrySettings;
use clientela_runtime::{App, CommonSettings};
use serde::Deserialize;

#[derive(Parser, Debug)]
#[command(
    name = "clientela",
    version,
    about = "Clientela: the customer backend for companies that sell."
)]
struct Cli {
    /// A TOML settings file; environment variables CLIENTELA__SECTION__KEY override it.
    #[arg(long, global = true, env = "CLIENTELA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serves the given services (all when none is named) on one port.
    Serve {
        /// Services to run.
        #[arg(value_enum)]
        services: Vec<Service>,
    },
    /// Runs the pending database migrations of the given services (all when none is named) and exits.
    Migrate {
        /// Services to migrate.
        #[arg(value_enum)]
        services: Vec<Service>,
    },
    /// Prints the effective settings (secrets redacted) and exits.
    Settings,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Service {
    /// The customer registry.
    Registry,
}

const ALL_SERVICES: &[Service] = &[Service::Registry];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Settings {
    #[serde(flatten)]
    common: CommonSettings,
    registry: RegistrySettings,
}

fn chosen(services: Vec<Service>) -> Vec<Service> {
    if services.is_empty() {
        ALL_SERVICES.to_vec()
    } else {
        services
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = clientela_runtime::settings::load(cli.config.as_deref())
        .with_context(|| "cannot read the settings")?;
    clientela_runtime::telemetry::init_tracing(&settings.common.log);
    match cli.command {
        Command::Settings => {
            println!("{settings:#?}");
            Ok(())
        }
        Command::Migrate { services } => {
            for service in chosen(services) {
                match service {
                    Service::Registry => {
                        clientela_registry::open_database(&settings.common, &settings.registry)
                            .await?;
                    }
                }
                tracing::info!(?service, "migrated");
            }
            Ok(())
        }
        Command::Serve { services } => {
            let signal = clientela_runtime::shutdown_signal();
            let mut app = App::bind(settings.common.clone()).await?;
            for service in chosen(services) {
                match service {
                    Service::Registry => {
                        clientela_registry::register(&mut app, &settings.registry).await?;
                    }
                }
            }
            if let Some(addr) = app.local_addr() {
                // Printed on stdout, one line, so scripts and tests can find the port.
                println!("clientela listening on {addr}");
                tracing::info!(%addr, metrics = ?app.metrics_addr(), "serving");
            }
            app.serve(signal).await?;
            Ok(())
        }
    }
}
