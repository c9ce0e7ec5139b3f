//! `clientela-load`: drives Clientela's gRPC services with a closed-loop load (N requests
//! in flight over M HTTP/2 connections), after a warm-up, for a fixed duration, and
//! prints requests/s, latency percentiles, errors and the server's peak memory.

mod classification;
mod drive;
mod scenarios;
mod server;
mod territory;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::drive::{Stats, connect};
use crate::scenarios::Load;
use crate::server::ServerProcess;

/// mimalloc rather than the system allocator: see the workspace manifest.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(
    name = "clientela-load",
    about = "Benchmark scenarios for Clientela (see docs/BENCHMARKS.md)."
)]
struct Cli {
    /// Scenarios to run, in order.
    #[arg(
        value_enum,
        required_unless_present_any = [
            "baseline_server",
            "registry_server",
            "classification_server",
            "territory_server"
        ]
    )]
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
    /// Customers of the classification base.
    #[arg(long, default_value_t = 1_000_000)]
    base_customers: u64,
    /// Purchases of the classification base.
    #[arg(long, default_value_t = 10_000_000)]
    base_purchases: u64,
    /// Registry events per classification ingest transaction (the consumer's
    /// feed_commit_events while it replays the feed).
    #[arg(long, default_value_t = 500_000)]
    base_batch: usize,
    /// Also write the classification base's purchases to this CSV (for
    /// tests/load/scripts/rfm_abc.py).
    #[arg(long)]
    csv: Option<PathBuf>,
    /// A SQLite file holding the classification base, ingested and classified once
    /// (SQLite only): when it exists, a copy of it is used and the ingest and first
    /// Reclassify are skipped; when it does not, it is written after them. For measuring
    /// the refresh and GetClassification again without building the base each time.
    #[arg(long)]
    base_db: Option<PathBuf>,
    /// Pin the server to this CPU (with taskset); pin this process with `taskset -c N`.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Pin this process to this CPU (with taskset) once the classification scenarios
    /// that run in it (ingest, Reclassify: measured on every core) are done, before it
    /// drives the server.
    #[arg(long)]
    client_cpu: Option<usize>,
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
    /// Internal: run the classification engine (configured by CLIENTELA__ variables).
    #[arg(long, hide = true)]
    classification_server: bool,
    /// Internal: run the territory service (configured by CLIENTELA__ variables).
    #[arg(long, hide = true)]
    territory_server: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Scenario {
    Baseline,
    RegistryGet,
    RegistryList,
    RegistryPurchase,
    RegistryImport,
    Feed,
    /// Ingest of the generated base, full Reclassify, then GetClassification.
    Classification,
    /// The same base's feed into the territory service's projection (500 territories,
    /// 2,000 sellers).
    Territory,
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
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
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
        None => ServerProcess::spawn_self("--registry-server", &env, cli.server_cpu, Some(data)),
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

/// This process's resident memory now and at its peak, KiB.
pub(crate) fn own_rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The territory ingest on one engine, in this process.
async fn run_territory(cli: &Cli, load: &Load, engine: Engine) -> anyhow::Result<bool> {
    let (url, _dir, engine_name) = match engine {
        Engine::Sqlite => {
            let (url, dir) = clientela_testkit::sqlite_database();
            (url, Some(dir), "sqlite")
        }
        Engine::Postgres => (
            clientela_testkit::postgres_database()
                .await
                .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not available here"))?,
            None,
            "postgres",
        ),
    };
    let (idle, _) = own_rss_kib();
    let (stats, territories, customers) =
        territory::ingest(&url, cli.base_customers, cli.base_purchases, cli.base_batch).await?;
    let report = |scenario: &'static str, stats: &Stats, rss: (u64, u64), concurrency| {
        print(
            cli,
            &Report {
                scenario,
                engine: engine_name,
                concurrency,
                connections: if concurrency > 1 { cli.connections } else { 0 },
                stats,
                rps: stats.rps(),
                items_per_second: stats.items_per_second(),
                vs_baseline: None,
                server_idle_rss_kib: rss.0,
                server_peak_rss_kib: rss.1,
            },
        );
    };
    report("territory-ingest", &stats, (idle, own_rss_kib().1), 1);
    reset_peak_rss();
    let (preview, preview_peak, apply, moved) = territory::realign(&territories).await?;
    report("territory-preview", &preview, (idle, preview_peak), 1);
    report("territory-apply", &apply, (idle, own_rss_kib().1), 1);
    println!("realignment of a redrawn map: {moved} assignments moved");
    drop(territories);

    // The reads, against a server on the same database that follows nothing.
    let data = tempfile::tempdir()?;
    let nowhere = "http://127.0.0.1:9".to_owned();
    let env = vec![
        ("CLIENTELA__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("CLIENTELA__SERVER__METRICS_LISTEN", String::new()),
        ("CLIENTELA__DATA_DIR", data.path().display().to_string()),
        ("CLIENTELA__LOG__FILTER", "error".to_owned()),
        ("CLIENTELA__TERRITORY__DATABASE__URL", url.clone()),
        ("CLIENTELA__TERRITORY__REGISTRY_URL", nowhere.clone()),
        ("CLIENTELA__TERRITORY__CLASSIFICATION_URL", nowhere),
    ];
    let server = ServerProcess::spawn_self("--territory-server", &env, cli.server_cpu, Some(data))?;
    let (server_idle, _) = server.rss_kib();
    let channels = connect(&server.addr, cli.connections).await?;
    let names: Vec<String> = customers
        .iter()
        .map(|id| format!("customers/{id}"))
        .collect();
    let coverage = scenarios::territory_coverage(&channels, load, Arc::new(names)).await;
    report(
        "territory-coverage",
        &coverage,
        (server_idle, server.rss_kib().1),
        cli.concurrency,
    );
    let sellers = Arc::new(scenarios::seller_names(&channels[0]).await?);
    let cartera = scenarios::territory_cartera(&channels, load, sellers.clone(), false).await;
    report(
        "territory-cartera",
        &cartera,
        (server_idle, server.rss_kib().1),
        cli.concurrency,
    );
    let full = scenarios::territory_cartera(&channels, load, sellers.clone(), true).await;
    report(
        "territory-cartera-full",
        &full,
        (server_idle, server.rss_kib().1),
        cli.concurrency,
    );
    // The same pages at a sales team's pace (a few carteras opened at once), where the
    // latency is the page's own, not the queue's at saturation.
    let paced = Load {
        concurrency: CARTERA_PACED_IN_FLIGHT,
        ..load.clone()
    };
    let few = scenarios::territory_cartera(&channels, &paced, sellers, false).await;
    report(
        "territory-cartera-4",
        &few,
        (server_idle, server.rss_kib().1),
        CARTERA_PACED_IN_FLIGHT,
    );
    Ok([coverage, cartera, full, few]
        .iter()
        .any(|s| s.errors > 0 || s.items == 0))
}

/// ListCartera's requests in flight at a sales team's pace.
const CARTERA_PACED_IN_FLIGHT: usize = 4;

/// Resets this process's peak resident set (VmHWM), so the next figure is one phase's.
pub(crate) fn reset_peak_rss() {
    // Linux only; elsewhere the peak stays the process's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The classification scenarios on one engine: ingest and Reclassify in this process,
/// then GetClassification against a server on the same database. True if one failed.
async fn run_classification(
    cli: &Cli,
    load: &Load,
    engine: Engine,
    baseline_rps: Option<f64>,
) -> anyhow::Result<bool> {
    let (url, _dir) = match engine {
        Engine::Sqlite => {
            let (url, dir) = clientela_testkit::sqlite_database();
            (url, Some(dir))
        }
        Engine::Postgres => (
            clientela_testkit::postgres_database()
                .await
                .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not available here"))?,
            None,
        ),
    };
    let engine_name = if engine == Engine::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    let base = classification::Base::new(cli.base_customers, cli.base_purchases, 7);
    let saved_base = match (&cli.base_db, &_dir) {
        (Some(path), Some(dir)) => Some((path.as_path(), dir.path().join("test.db"))),
        (Some(_), None) => anyhow::bail!("--base-db is for SQLite only"),
        (None, _) => None,
    };
    let reuse = saved_base.as_ref().is_some_and(|(saved, _)| saved.exists());
    if let (true, Some((saved, file))) = (reuse, &saved_base) {
        std::fs::copy(saved, file)?;
        // Written back now, not by the kernel during the measured scenarios.
        std::fs::File::open(file)?.sync_all()?;
    }
    let classifier = classification::engine(&url).await?;
    let (idle, _) = own_rss_kib();
    let report = |name: &str, stats: &Stats, rss: (u64, u64), vs: Option<f64>| {
        print(
            cli,
            &Report {
                scenario: name,
                engine: engine_name,
                concurrency: cli.concurrency,
                connections: cli.connections,
                stats,
                rps: stats.rps(),
                items_per_second: stats.items_per_second(),
                vs_baseline: vs,
                server_idle_rss_kib: rss.0,
                server_peak_rss_kib: rss.1,
            },
        );
    };
    let mut measured = Vec::new();
    if !reuse {
        let ingested =
            classification::ingest(&classifier, &base, cli.base_batch, cli.csv.as_deref()).await?;
        report("class-ingest", &ingested, (idle, own_rss_kib().1), None);
        // The first classification of everyone (each label recorded as a change from
        // none), then the next day's (what a policy change or the scheduled refresh does).
        let reclassified = classification::reclassify(&classifier, 0).await?;
        report(
            "class-reclassify",
            &reclassified,
            (idle, own_rss_kib().1),
            None,
        );
        if let Some((saved, _)) = &saved_base {
            classification::save_copy(&classifier, saved).await?;
        }
        measured.extend([ingested, reclassified]);
    }
    let refreshed = classification::reclassify(&classifier, 1).await?;
    report("class-refresh", &refreshed, (idle, own_rss_kib().1), None);
    drop(classifier);

    let data = tempfile::tempdir()?;
    let env = vec![
        ("CLIENTELA__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
        ("CLIENTELA__SERVER__METRICS_LISTEN", String::new()),
        ("CLIENTELA__DATA_DIR", data.path().display().to_string()),
        ("CLIENTELA__LOG__FILTER", "error".to_owned()),
        ("CLIENTELA__CLASSIFICATION__DATABASE__URL", url.clone()),
        // Nothing listens there: the server only answers, it does not follow a feed.
        (
            "CLIENTELA__CLASSIFICATION__REGISTRY_URL",
            "http://127.0.0.1:9".to_owned(),
        ),
    ];
    if let Some(cpu) = cli.client_cpu {
        // `taskset -a` walks the process's threads; one that ends meanwhile (a finished
        // blocking thread) fails the walk with "No such process", so try again.
        let pin = || {
            std::process::Command::new("taskset")
                .args([
                    "-a",
                    "-p",
                    "-c",
                    &cpu.to_string(),
                    &std::process::id().to_string(),
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
        };
        let mut pinned = pin()?.success();
        for _ in 0..4 {
            if pinned {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            pinned = pin()?.success();
        }
        anyhow::ensure!(pinned, "taskset could not pin this process to CPU {cpu}");
    }
    let server =
        ServerProcess::spawn_self("--classification-server", &env, cli.server_cpu, Some(data))?;
    let (server_idle, _) = server.rss_kib();
    let channels = connect(&server.addr, cli.connections).await?;
    let names: Vec<String> = base
        .customers
        .iter()
        .map(|id| format!("customers/{id}"))
        .collect();
    let got = scenarios::classification_get(&channels, load, Arc::new(names)).await;
    report(
        "class-get",
        &got,
        (server_idle, server.rss_kib().1),
        baseline_rps.map(|b| got.rps() / b),
    );
    measured.extend([refreshed, got]);
    Ok(measured.iter().any(|s| s.errors > 0 || s.items == 0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.baseline_server {
        return baseline_server().await;
    }
    if cli.registry_server || cli.classification_server || cli.territory_server {
        let settings: clientela::Settings = clientela_runtime::settings::load(None)?;
        let telemetry = clientela_runtime::telemetry::init_tracing(
            &settings.common.log,
            &settings.common.traces,
        )
        .map_err(anyhow::Error::msg)?;
        let service = if cli.registry_server {
            clientela::Service::Registry
        } else if cli.classification_server {
            clientela::Service::Classification
        } else {
            clientela::Service::Territory
        };
        let served = clientela::serve(&settings, vec![service]).await;
        telemetry.shutdown();
        return Ok(served?);
    }
    // The scenarios that run in this process log as the services would (RUST_LOG=info
    // shows where a Reclassify spends its time); warnings only by default.
    let _telemetry = clientela_runtime::telemetry::init_tracing(
        &clientela_runtime::settings::LogSettings {
            filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            ..Default::default()
        },
        &clientela_runtime::settings::TraceSettings::default(),
    )
    .map_err(anyhow::Error::msg)?;
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
            if scenario == Scenario::Classification {
                failed |= run_classification(&cli, &load, engine, baseline_rps).await?;
                continue;
            }
            if scenario == Scenario::Territory {
                failed |= run_territory(&cli, &load, engine).await?;
                continue;
            }
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
                ServerProcess::spawn_self("--baseline-server", &[], cli.server_cpu, None)?
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
                Scenario::Classification | Scenario::Territory => {
                    unreachable!("run in this process")
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
