//! Test harness: a throwaway PostgreSQL cluster started from the system's `initdb` and
//! `postgres`, a fresh database per test, and SQLite files in temporary folders.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};

use sea_orm::ConnectionTrait;

pub mod raw;
pub use raw::RawCodec;

/// Set to `1` to make a missing PostgreSQL a test failure instead of a skip (CI does).
pub const REQUIRE_ENV: &str = "CLIENTELA_REQUIRE_POSTGRES";
/// Set to `1` to keep PostgreSQL durable (fsync on); tests turn it off for speed,
/// benchmarks turn it back on so that a commit means what it means in production.
pub const DURABLE_ENV: &str = "CLIENTELA_TEST_POSTGRES_DURABLE";
/// Set to a server URL (`postgres://user@host:port`) to use it instead of a throwaway cluster.
pub const URL_ENV: &str = "CLIENTELA_TEST_POSTGRES_URL";

/// The cluster of this test process. The shell that owns it reads our stdin; when this
/// process exits, stdin closes and the shell stops PostgreSQL and deletes its files. No
/// test can leak a server, even when it panics.
struct Cluster {
    base_url: String,
    _keeper: Mutex<(Child, ChildStdin)>,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();

const SCRIPT: &str = r#"
set -eu
bin=$(dirname "$(readlink -f "$(command -v initdb || echo /nonexistent)")")
if [ ! -x "$bin/postgres" ]; then
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
fi
dir=$(mktemp -d /tmp/clientela-pg.XXXXXX)
"$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-locale --no-sync >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
"$bin/postgres" -D "$dir/data" -p "$PORT" -k "$dir" -c listen_addresses=127.0.0.1 \
  $PG_SPEED_OPTS -c max_connections=300 \
  >"$dir/postgres.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then echo READY; break; fi
  sleep 0.1
done
cat >/dev/null || true
kill -INT "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
rm -rf "$dir"
"#;

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()
        .map(|a| a.port())
}

fn start_cluster() -> Result<Cluster, String> {
    if let Ok(url) = std::env::var(URL_ENV) {
        return Ok(Cluster {
            base_url: url.trim_end_matches('/').to_owned(),
            _keeper: Mutex::new(dummy_keeper()?),
        });
    }
    if Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .map(|o| !o.status.success())
        .unwrap_or(true)
    {
        return Err("initdb is not on PATH".into());
    }
    let port = free_port().ok_or("no free port")?;
    // initdb refuses to run as root: as root, run the cluster as the postgres user.
    let mut command = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", "sh", "-c", SCRIPT]);
        c
    } else {
        let mut c = Command::new("sh");
        c.args(["-c", SCRIPT]);
        c
    };
    let speed = if std::env::var(DURABLE_ENV).as_deref() == Ok("1") {
        ""
    } else {
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    let mut child = command
        .env("PORT", port.to_string())
        .env("PG_SPEED_OPTS", speed)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the PostgreSQL script: {e}"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    if line.trim() != "READY" {
        return Err("PostgreSQL did not start (see the output above)".into());
    }
    Ok(Cluster {
        base_url: format!("postgres://postgres@127.0.0.1:{port}"),
        _keeper: Mutex::new((child, stdin)),
    })
}

fn dummy_keeper() -> Result<(Child, ChildStdin), String> {
    let mut child = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let stdin = child.stdin.take().ok_or("no stdin")?;
    Ok((child, stdin))
}

/// A URL of a new, empty PostgreSQL database, or `None` (after saying why) when no
/// PostgreSQL can be started here. With `CLIENTELA_REQUIRE_POSTGRES=1`, it panics instead.
pub async fn postgres_database() -> Option<String> {
    let cluster = CLUSTER.get_or_init(|| match start_cluster() {
        Ok(c) => Some(c),
        Err(why) => {
            assert!(
                std::env::var(REQUIRE_ENV).as_deref() != Ok("1"),
                "PostgreSQL is required ({REQUIRE_ENV}=1) but could not be started: {why}"
            );
            eprintln!("skipping PostgreSQL tests: {why}");
            None
        }
    });
    let cluster = cluster.as_ref()?;
    let name = format!("t_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{}/postgres", cluster.base_url))
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test cluster: {e}"));
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database: {e}"));
    let _ = admin.close().await;
    Some(format!("{}/{name}", cluster.base_url))
}

/// A SQLite database URL in a new temporary folder (kept alive by the returned guard).
pub fn sqlite_database() -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("cannot create a temp dir: {e}"));
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("test.db").display());
    (url, dir)
}

/// The two engines every store test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// SQLite file.
    Sqlite,
    /// Throwaway PostgreSQL.
    Postgres,
}

/// A database of `engine`, or `None` if PostgreSQL is unavailable and not required.
pub async fn database(engine: Engine) -> Option<(String, Option<tempfile::TempDir>)> {
    match engine {
        Engine::Sqlite => {
            let (url, dir) = sqlite_database();
            Some((url, Some(dir)))
        }
        Engine::Postgres => postgres_database().await.map(|url| (url, None)),
    }
}

/// Defines a test module `$name` running `$body` (an async closure taking what
/// `$spawn(engine)` returns) once on SQLite and once on PostgreSQL (skipped when
/// PostgreSQL is unavailable, as [`database`] says).
#[macro_export]
macro_rules! both_engines {
    ($spawn:path, $name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let app = $spawn($crate::Engine::Sqlite).await.unwrap();
                ($body)(app).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = $spawn($crate::Engine::Postgres).await {
                    ($body)(app).await;
                }
            }
        }
    };
}
