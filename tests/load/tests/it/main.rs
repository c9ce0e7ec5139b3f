//! Every benchmark scenario runs for a second at a small scale, against SQLite and
//! PostgreSQL, with no error: the benchmarks cannot rot between the runs that measure.
//! (Figures come from docs/BENCHMARKS.md runs, never from assertions here.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_runs_briefly_without_errors() {
    let mut engines = vec!["--engine", "sqlite"];
    // Start (or find) the throwaway cluster here only to learn whether PostgreSQL exists.
    if clientela_testkit::postgres_database().await.is_some() {
        engines.extend(["--engine", "postgres"]);
    }
    let out = Command::new(env!("CARGO_BIN_EXE_clientela-load"))
        .args([
            "baseline",
            "registry-get",
            "registry-list",
            "registry-purchase",
            "registry-import",
            "feed",
            "classification",
        ])
        .args(&engines)
        .args([
            "--warmup-secs",
            "0.2",
            "--duration-secs",
            "1",
            "--customers",
            "300",
            "--rows",
            "2000",
            "--base-customers",
            "200",
            "--base-purchases",
            "2000",
        ])
        .args([
            "--events",
            "3000",
            "--concurrency",
            "8",
            "--connections",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reports: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Five registry scenarios and four classification ones (ingest, reclassify, refresh,
    // get) per engine, and the baseline.
    let expected = 1 + 9 * (engines.len() / 2);
    assert_eq!(reports.len(), expected, "{stdout}");
    for r in &reports {
        assert!(r["requests"].as_u64().unwrap() > 0, "{r}");
        assert_eq!(r["errors"].as_u64().unwrap(), 0, "{r}");
        assert!(r["server_peak_rss_kib"].as_u64().unwrap() > 0, "{r}");
    }
    let import = reports
        .iter()
        .find(|r| r["scenario"] == "registry-import")
        .unwrap();
    assert_eq!(
        import["items"].as_u64().unwrap(),
        2000,
        "every imported row is accounted for"
    );
    let feed = reports.iter().find(|r| r["scenario"] == "feed").unwrap();
    assert!(feed["items"].as_u64().unwrap() >= 3000, "{feed}");
    for scenario in ["class-reclassify", "class-refresh"] {
        let run = reports.iter().find(|r| r["scenario"] == scenario).unwrap();
        assert_eq!(
            run["items"].as_u64().unwrap(),
            200,
            "everyone classified: {run}"
        );
    }
}
