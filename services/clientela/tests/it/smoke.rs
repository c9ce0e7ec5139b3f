//! Starts `clientela serve` as a user would and talks to it with real tools.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::Process;

struct Server {
    process: Process,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("CLIENTELA__SERVER__LISTEN", "127.0.0.1:0".to_owned()),
            (
                "CLIENTELA__SERVER__METRICS_LISTEN",
                "127.0.0.1:0".to_owned(),
            ),
            ("CLIENTELA__DATA_DIR", dir.path().display().to_string()),
            ("CLIENTELA__LOG__FORMAT", "json".to_owned()),
        ]
        .map(|(k, v)| (k.to_owned(), v));
        let process = Process::spawn(&["serve"], &env);
        let addr = process.addr.clone();
        Self {
            process,
            addr,
            _dir: dir,
        }
    }

    fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.terminate();
        let start = Instant::now();
        loop {
            if let Some(status) = self.process.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the server did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CLIENTELA_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "{name} is required (CLIENTELA_REQUIRE_TOOLS=1) but not installed"
        );
        eprintln!("skipping: {name} is not installed");
    }
    found
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const CREATE: &str = r#"{"customer":{"kind":"CUSTOMER_KIND_ORGANIZATION","display_name":"Ferretería Los Andes","tax_id":{"country_code":"CL","value":"76.086.428-5"},"emails":["compras@losandes.cl"]}}"#;

#[test]
fn grpcurl_lists_creates_gets_and_checks_health() {
    if !tool("grpcurl") {
        return;
    }
    let server = Server::start();
    let a = server.addr.as_str();
    let services = run("grpcurl", &["-plaintext", a, "list"]);
    for s in [
        "clientela.registry.v1.CustomerRegistryService",
        "grpc.health.v1.Health",
    ] {
        assert!(services.contains(s), "{services}");
    }
    let described = run(
        "grpcurl",
        &[
            "-plaintext",
            a,
            "describe",
            "clientela.registry.v1.Customer",
        ],
    );
    assert!(described.contains("display_name"), "{described}");
    let created = json(&run(
        "grpcurl",
        &[
            "-plaintext",
            "-d",
            CREATE,
            a,
            "clientela.registry.v1.CustomerRegistryService/CreateCustomer",
        ],
    ));
    let name = created["customer"]["name"].as_str().unwrap().to_owned();
    assert_eq!(created["customer"]["taxId"]["value"], "76086428-5");
    let got = json(&run(
        "grpcurl",
        &[
            "-plaintext",
            "-d",
            &format!(r#"{{"name":"{name}"}}"#),
            a,
            "clientela.registry.v1.CustomerRegistryService/GetCustomer",
        ],
    ));
    assert_eq!(got["customer"]["displayName"], "Ferretería Los Andes");
    let health = json(&run(
        "grpcurl",
        &["-plaintext", a, "grpc.health.v1.Health/Check"],
    ));
    assert_eq!(health["status"], "SERVING");
    // Bad input: a clear error naming the field, not INTERNAL.
    let out = Command::new("grpcurl")
        .args([
            "-plaintext",
            "-d",
            r#"{"customer":{"kind":"CUSTOMER_KIND_PERSON"}}"#,
            a,
            "clientela.registry.v1.CustomerRegistryService/CreateCustomer",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("InvalidArgument")
            && err.contains("customer.display_name"),
        "{err}"
    );
    // The details print: reflection serves the google.rpc types.
    assert!(
        err.contains(r#""@type":"type.googleapis.com/google.rpc.BadRequest""#)
            && !err.contains("not recognized"),
        "{err}"
    );
}

#[test]
fn buf_curl_lists_creates_and_gets_over_reflection_v1() {
    if !tool("buf") {
        return;
    }
    let server = Server::start();
    let base = format!("http://{}", server.addr);
    let curl = |extra: &[&str]| {
        let mut args = vec!["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
        args.extend_from_slice(extra);
        run("buf", &args)
    };
    let services = curl(&["--list-services", &base]);
    assert!(
        services.contains("clientela.registry.v1.CustomerRegistryService"),
        "{services}"
    );
    let created = json(&curl(&[
        "--data",
        CREATE,
        &format!("{base}/clientela.registry.v1.CustomerRegistryService/CreateCustomer"),
    ]));
    let name = created["customer"]["name"].as_str().unwrap().to_owned();
    let got = json(&curl(&[
        "--data",
        &format!(r#"{{"name":"{name}"}}"#),
        &format!("{base}/clientela.registry.v1.CustomerRegistryService/GetCustomer"),
    ]));
    assert_eq!(got["customer"]["name"], name.as_str());
    let health = json(&curl(&[
        "--data",
        "{}",
        &format!("{base}/grpc.health.v1.Health/Check"),
    ]));
    assert_eq!(health["status"], "SERVING");
}

/// The README's grpcurl examples, run exactly as written (with the test server's address).
#[test]
fn the_readme_examples_work_as_written() {
    if !tool("grpcurl") || !tool("jq") {
        return;
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let block = readme
        .split("<!-- examples:begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- examples:end -->").next())
        .expect("the README has an examples block");
    let script: String = block
        .lines()
        .filter(|l| !l.starts_with("```"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(script.contains("grpcurl"), "{script}");
    let server = Server::start();
    let script = format!(
        "set -euo pipefail\n{}",
        script.replace("localhost:50051", &server.addr)
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "README examples failed:\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("SERVING"), "{stdout}");
    // The classification read named the purchase's sequence: it saw the purchase.
    assert!(stdout.contains(r#""code": "BUYER""#), "{stdout}");
    // Whether the activation or the feed placed it, the customer's PRIMARY is the seller
    // of V Región, chosen by the rule.
    assert!(
        stdout.contains(
            r#""ruleEn": "the least loaded of the sellers of territory CL-V with capacity left""#
        ),
        "{stdout}"
    );
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut server = Server::start();
    let status = server.terminate();
    assert!(status.success(), "{status:?}");
}

#[test]
fn settings_print_without_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_clientela"))
        .arg("settings")
        .env(
            "CLIENTELA__REGISTRY__DATABASE__URL",
            "postgres://app:hunter2@db/registry",
        )
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("registry") && !text.contains("hunter2"),
        "{text}"
    );
}
