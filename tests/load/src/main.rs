//! `clientela-load`: drives Clientela's gRPC services with a closed-loop load (N requests
//! in flight over M HTTP/2 connections), after a warm-up, for a fixed duration, and
//! prints requests/s, latency percentiles, errors and the server's peak memory.

mod drive;
mod scenarios;
mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::drive::{Stats, connect};
use crate::scenarios::Load;
use crate::server::ServerProcess;

#[derive(Parser, Debug)]
#[command(
    name = "clientela-load",
    about = "Benchmark scenarios for Clientela (see docs/BENCHMARKS.md)."
)]
struct Cli {
    /// Scenarios to run, in order.
    #[arg(value_enum, required_unless_present_any = ["baseline_server", "registry_server"])]
    scenarios: Vec<Scenario>,
    /// Database engines to run the registry scenarios against.
    #[arg(long, value_enum, default_value = "sqlite")]
    engine: Vec<Engine>,
    /// Requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// HTTP/2 connections they share.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Warm-up seconds (not measured).
    #[arg(long, default_value_t = 2.0)]
    warmup_secs: f64,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    duration_secs: f64,
    /// Customers seeded for registry-get and registry-list.
    #[arg(long, default_value_t = 100_000)]
    customers: u64,
    /// Rows of registry-import.
    #[arg(long, default_value_t = 1_000_000)]
    rows: u64,
    /// Events of feed.
    #[arg(long, default_value_t = 1_000_000)]
    events: u64,
    /// Pin the server to this CPU (with taskset); pin this process with `taskset -c N`.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// A clientela binary to benchmark instead of this build's own registry server
    /// (the same libraries, served by this executable in a child process).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Print one JSON object per scenario instead of a table row.
    #[arg(long)]
    json: bool,
    /// Internal: run the bare baseline server and print its address.
    #[arg(long, hide = true)]
    baseline_server: bool,
    /// Internal: run the registry (configured by CLIENTELA__ variables) and print its address.
    #[arg(long, hide = true)]
    registry_server: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Baseline,
    RegistryGet,
    RegistryList,
    RegistryPurchase,
    RegistryImport,
    Feed,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum Engine {
    Sqlite,
    Postgres,
}

#[derive(serde::Serialize)]
struct Report<'a> {
    scenario: &'a str,
    engine: &'a str,
    concurrency: usize,
    connections: usize,
    #[serde(flatten)]
    stats: &'a Stats,
    rps: f64,
    items_per_second: f64,
    vs_baseline: Option<f64>,
    server_idle_rss_kib: u64,
    server_peak_rss_kib: u64,
}

/// The bare tonic server of the baseline: the same transport settings as Clientela's
/// servers (timeout, TCP_NODELAY, HTTP/2 keep-alive), only grpc.health.v1 behind it.
async fn baseline_server() -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("clientela listening on {}", listener.local_addr()?);
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    tonic::transport::Server::builder()
        .timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .add_service(service)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
        .await?;
    Ok(())
}

fn start_registry(
    cli: &Cli,
    engine: Engine,
    db_url: Option<String>,
) -> anyhow::Result<ServerProcess> {
    let data = tempfile::tempdir()?;
    let mut env = vec![
        ("CLIENTELA__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("CLIENTELA__SERVER__METRICS_LISTEN", String::new()),
        ("CLIENTELA__DATA_DIR", data.path().display().to_string()),
        // Per-request info logs would measure the terminal, not the service.
        ("CLIENTELA__LOG__FILTER", "warn".to_owned()),
        (
            "CLIENTELA__REGISTRY__DATABASE__MAX_CONNECTIONS",
            "16".to_owned(),
        ),
    ];
    if let (Engine::Postgres, Some(url)) = (engine, db_url) {
        env.push(("CLIENTELA__REGISTRY__DATABASE__URL", url));
    }
    match &cli.server_bin {
        Some(bin) => ServerProcess::spawn(
            bin,
            &["serve", "registry"],
            &env,
            cli.server_cpu,
            Some(data),
        ),
        None => {
            let me = std::env::current_exe()?;
            ServerProcess::spawn(
                &me,
                &["--registry-server"],
                &env,
                cli.server_cpu,
                Some(data),
            )
        }
    }
}

fn print(cli: &Cli, report: &Report<'_>) {
    if cli.json {
        println!("{}", serde_json::to_string(report).unwrap_or_default());
        return;
    }
    let s = report.stats;
    println!(
        "{:<18} {:<8} {:>10.0}/s {:>12.0} items/s  p50 {:>7.2} ms  p90 {:>7.2} ms  p99 {:>7.2} ms  max {:>8.2} ms  errors {:>5}  rss idle {:>6} KiB peak {:>7} KiB{}{}",
        report.scenario,
        report.engine,
        report.rps,
        report.items_per_second,
        s.p50_us as f64 / 1000.0,
        s.p90_us as f64 / 1000.0,
        s.p99_us as f64 / 1000.0,
        s.max_us as f64 / 1000.0,
        s.errors,
        report.server_idle_rss_kib,
        report.server_peak_rss_kib,
        report
            .vs_baseline
            .map(|r| format!("  {:.0}% of baseline", r * 100.0))
            .unwrap_or_default(),
        s.first_error
            .as_ref()
            .map(|e| format!("  first error: {e}"))
            .unwrap_or_default(),
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.baseline_server {
        return baseline_server().await;
    }
    if cli.registry_server {
        let settings: clientela::Settings = clientela_runtime::settings::load(None)?;
        clientela_runtime::telemetry::init_tracing(&settings.common.log);
        clientela::serve(&settings, vec![clientela::Service::Registry]).await?;
        return Ok(());
    }
    let load = Load {
        concurrency: cli.concurrency,
        warmup: Duration::from_secs_f64(cli.warmup_secs),
        duration: Duration::from_secs_f64(cli.duration_secs),
        customers: cli.customers,
        rows: cli.rows,
        events: cli.events,
    };
    let mut baseline_rps: Option<f64> = None;
    let mut failed = false;
    for scenario in cli.scenarios.clone() {
        let engines: Vec<Engine> = if scenario == Scenario::Baseline {
            vec![Engine::Sqlite]
        } else {
            cli.engine.clone()
        };
        for engine in engines {
            let name = scenario
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default();
            let engine_name = if scenario == Scenario::Baseline {
                "-"
            } else if engine == Engine::Sqlite {
                "sqlite"
            } else {
                "postgres"
            };
            let server = if scenario == Scenario::Baseline {
                let me = std::env::current_exe()?;
                ServerProcess::spawn(&me, &["--baseline-server"], &[], cli.server_cpu, None)?
            } else {
                let url = match engine {
                    Engine::Postgres => Some(
                        clientela_testkit::postgres_database()
                            .await
                            .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not available here"))?,
                    ),
                    Engine::Sqlite => None,
                };
                start_registry(&cli, engine, url)?
            };
            let (idle_rss, _) = server.rss_kib();
            let channels = connect(&server.addr, cli.connections).await?;
            let stats = match scenario {
                Scenario::Baseline => scenarios::baseline(&channels, &load).await,
                Scenario::RegistryGet => {
                    let names =
                        Arc::new(scenarios::seed_customers(&channels, load.customers).await?);
                    scenarios::registry_get(&channels, &load, names).await
                }
                Scenario::RegistryList => {
                    scenarios::seed_customers(&channels, load.customers).await?;
                    scenarios::registry_list(&channels, &load).await
                }
                Scenario::RegistryPurchase => {
                    let names = Arc::new(
                        scenarios::seed_customers(&channels, 1000.min(load.customers.max(1)))
                            .await?,
                    );
                    scenarios::registry_purchase(&channels, &load, names).await
                }
                Scenario::RegistryImport => {
                    let names = Arc::new(
                        scenarios::seed_customers(&channels, 1000.min(load.customers.max(1)))
                            .await?,
                    );
                    scenarios::registry_import(&channels, &load, names, "import").await
                }
                Scenario::Feed => {
                    let customers = 1000.min(load.events.max(1));
                    let names = Arc::new(scenarios::seed_customers(&channels, customers).await?);
                    let purchases = load.events.saturating_sub(2 * customers).max(customers);
                    let seeding = Load {
                        rows: purchases,
                        ..load.clone()
                    };
                    let seeded =
                        scenarios::registry_import(&channels, &seeding, names, "feed").await;
                    anyhow::ensure!(
                        seeded.errors == 0,
                        "seeding the feed failed: {:?}",
                        seeded.first_error
                    );
                    scenarios::feed(&channels, customers + purchases + customers).await
                }
            };
            let (_, peak_rss) = server.rss_kib();
            if scenario == Scenario::Baseline {
                baseline_rps = Some(stats.rps());
            }
            let vs_baseline = match scenario {
                Scenario::Baseline => None,
                _ => baseline_rps.map(|b| stats.rps() / b),
            };
            failed |= stats.errors > 0 || stats.requests == 0;
            print(
                &cli,
                &Report {
                    scenario: &name,
                    engine: engine_name,
                    concurrency: cli.concurrency,
                    connections: cli.connections,
                    stats: &stats,
                    rps: stats.rps(),
                    items_per_second: stats.items_per_second(),
                    vs_baseline,
                    server_idle_rss_kib: idle_rss,
                    server_peak_rss_kib: peak_rss,
                },
            );
        }
    }
    anyhow::ensure!(!failed, "a scenario had errors or no successful request");
    Ok(())
}
