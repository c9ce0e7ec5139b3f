//! The `clientela` binary: runs any subset of Clientela's services in one process
//! (all of them by default, on SQLite), or migrates their databases.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clientela::{Service, Settings};

/// mimalloc rather than the system allocator: see the workspace manifest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings: Settings = clientela_runtime::settings::load(cli.config.as_deref())
        .with_context(|| "cannot read the settings")?;
    let telemetry =
        clientela_runtime::telemetry::init_tracing(&settings.common.log, &settings.common.traces)
            .map_err(anyhow::Error::msg)?;
    let outcome = match cli.command {
        Command::Settings => {
            println!("{settings:#?}");
            Ok(())
        }
        Command::Migrate { services } => clientela::migrate(&settings, services).await,
        Command::Serve { services } => clientela::serve(&settings, services).await,
    };
    // Last, so the spans of the shutdown itself are sent too.
    telemetry.shutdown();
    Ok(outcome?)
}
