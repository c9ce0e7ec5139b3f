//! Typed settings shared by every server: built-in defaults, then an optional file, then
//! `CLIENTELA__SECTION__KEY` environment variables (the `config` crate's layering).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::DeserializeOwned;

/// Loads settings of type `T` from its serde defaults, an optional TOML file and the
/// environment. `T` is usually the binary's settings, which embed [`CommonSettings`].
pub fn load<T: DeserializeOwned>(file: Option<&Path>) -> Result<T, config::ConfigError> {
    load_from(file, std::env::vars())
}

/// As [`load`], with an explicit environment (tests use it to avoid process-wide state).
pub fn load_from<T: DeserializeOwned>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, config::ConfigError> {
    let mut builder = config::Config::builder();
    if let Some(path) = file {
        builder = builder.add_source(config::File::from(path).required(true));
    }
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(key, _)| key.starts_with("CLIENTELA__"))
        .collect();
    builder = builder.add_source(
        config::Environment::with_prefix("CLIENTELA")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    builder.build()?.try_deserialize()
}

/// Settings every server reads, whatever services it runs.
#[derive(Debug, Clone, Deserialize)]
// No deny_unknown_fields here: it is flattened beside each service's own section.
#[serde(default)]
pub struct CommonSettings {
    /// Network, timeouts and shutdown.
    pub server: ServerSettings,
    /// Log format and filter.
    pub log: LogSettings,
    /// Where spans are exported.
    pub traces: TraceSettings,
    /// Bearer tokens and their roles.
    pub auth: AuthSettings,
    /// Where the embedded SQLite databases live when a service has no database URL.
    pub data_dir: PathBuf,
}

impl Default for CommonSettings {
    fn default() -> Self {
        Self {
            server: ServerSettings::default(),
            log: LogSettings::default(),
            traces: TraceSettings::default(),
            auth: AuthSettings::default(),
            data_dir: PathBuf::from("./data"),
        }
    }
}

/// Network, timeouts and shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// gRPC listen address; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Prometheus `/metrics` listen address; `None` (set it to "") turns metrics off.
    #[serde(deserialize_with = "optional_addr")]
    pub metrics_listen: Option<SocketAddr>,
    /// Deadline for one unary RPC, in seconds (the client's grpc-timeout wins if shorter).
    pub request_timeout_secs: u64,
    /// On SIGTERM, seconds to report NOT_SERVING before refusing new work, so that load
    /// balancers notice first.
    pub drain_delay_secs: u64,
    /// On SIGTERM, seconds that in-flight requests get to finish.
    pub shutdown_grace_secs: u64,
    /// Seconds between database health checks.
    pub health_check_interval_secs: u64,
    /// TLS for the gRPC listener (off unless a certificate and key are given).
    pub tls: ServerTlsSettings,
}

/// TLS of the gRPC listener: on when `cert_file` and `key_file` are set; with
/// `client_ca_file` too, every client must present a certificate that CA signed (mutual
/// TLS). Health and reflection are served over the same TLS.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// The server's certificate chain, PEM.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// The CA that signs client certificates, PEM; none: clients are not asked for one.
    pub client_ca_file: Option<PathBuf>,
}

impl ServerTlsSettings {
    /// Whether TLS is configured (a certificate or a key names a file).
    pub fn enabled(&self) -> bool {
        non_empty(&self.cert_file).is_some() || non_empty(&self.key_file).is_some()
    }
}

/// TLS of a client calling another service (a feed consumer): the CA that signed the
/// server's certificate, and for mutual TLS this client's certificate and key.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// The CA that signs the server's certificate, PEM (required for `https://`).
    pub ca_file: Option<PathBuf>,
    /// This client's certificate chain, PEM, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// Its private key, PEM.
    pub key_file: Option<PathBuf>,
    /// The name to check the server's certificate against; empty: the URL's host.
    pub domain: String,
}

/// `path` unless it is unset or empty (an environment variable set to "").
pub fn non_empty(path: &Option<PathBuf>) -> Option<&Path> {
    path.as_deref().filter(|p| !p.as_os_str().is_empty())
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            request_timeout_secs: 30,
            drain_delay_secs: 0,
            shutdown_grace_secs: 20,
            health_check_interval_secs: 5,
            tls: ServerTlsSettings::default(),
        }
    }
}

fn optional_addr<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let raw = Option::<String>::deserialize(d)?;
    match raw.as_deref().map(str::trim) {
        None | Some("") | Some("off") => Ok(None),
        Some(addr) => addr.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogSettings {
    /// `text` (human-readable) or `json`.
    pub format: LogFormat,
    /// A tracing `EnvFilter` directive, e.g. `info,clientela_registry=debug`.
    pub filter: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".to_owned(),
        }
    }
}

/// Spans exported over OTLP (off by default).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TraceSettings {
    /// OTLP/gRPC endpoint of a collector, e.g. `http://otel-collector:4317`; empty: no
    /// span leaves the process (trace ids still reach the logs and the services called).
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans; empty: `clientela`.
    pub service_name: String,
}

/// Log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For a terminal.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Bearer tokens. With none configured, auth is off, which is allowed only on loopback.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// Named tokens, e.g. `[auth.tokens.ops] role = "admin"` with the secret in
    /// `CLIENTELA__AUTH__TOKENS__OPS__SECRET` or a file named by `secret_file`.
    pub tokens: BTreeMap<String, TokenSettings>,
}

/// One bearer token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// `admin`, `sales`, `service` or `readonly` (checked when the server starts).
    pub role: String,
    /// The token itself (from the environment, never a committed file).
    #[serde(default)]
    pub secret: Option<Secret>,
    /// A file holding the token (a mounted Kubernetes Secret).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// A database connection for one service.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://user@host/db` or `sqlite://path?mode=rwc`; empty means a SQLite file
    /// named after the service under `data_dir`. It may hold a password: it is a secret.
    pub url: Secret,
    /// A file holding the URL (a mounted Kubernetes Secret); used when `url` is empty.
    pub url_file: Option<PathBuf>,
    /// Connection pool size.
    pub max_connections: u32,
    /// Seconds to wait for a pooled connection before answering UNAVAILABLE.
    pub acquire_timeout_secs: u64,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: Secret::default(),
            url_file: None,
            max_connections: 10,
            acquire_timeout_secs: 5,
        }
    }
}

impl DatabaseSettings {
    /// The URL to connect to: `url`, else the content of `url_file`, else
    /// `sqlite://{data_dir}/{service}.db`.
    pub fn resolved_url(&self, data_dir: &Path, service: &str) -> Result<Secret, String> {
        if !self.url.expose().trim().is_empty() {
            return Ok(Secret::new(self.url.expose().trim()));
        }
        if let Some(path) = self.url_file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
            let url = std::fs::read_to_string(path).map_err(|e| {
                format!("cannot read the database URL file {}: {e}", path.display())
            })?;
            return Ok(Secret::new(url.trim()));
        }
        let path = data_dir.join(format!("{service}.db"));
        Ok(Secret::new(format!("sqlite://{}?mode=rwc", path.display())))
    }
}

/// A secret string: `Debug` and `Display` print `[redacted]`, so it never reaches a log.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, Default)]
    #[serde(default)]
    struct App {
        #[serde(flatten)]
        common: CommonSettings,
        registry: DatabaseSettings,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_file_or_environment() {
        let app: App = load_from(None, env(&[])).unwrap();
        assert_eq!(app.common.server.listen.port(), 50051);
        assert_eq!(app.common.log.format, LogFormat::Text);
        assert!(app.common.auth.tokens.is_empty());
        assert_eq!(
            app.registry
                .resolved_url(Path::new("./data"), "registry")
                .unwrap()
                .expose(),
            "sqlite://./data/registry.db?mode=rwc"
        );
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let dir = std::env::temp_dir().join(format!("clientela-settings-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(
            &file,
            "[server]\nlisten = \"0.0.0.0:7000\"\n[log]\nformat = \"json\"\n",
        )
        .unwrap();
        let app: App = load_from(
            Some(&file),
            env(&[
                ("CLIENTELA__SERVER__LISTEN", "127.0.0.1:0"),
                ("CLIENTELA__REGISTRY__URL", "postgres://u:pw@db/registry"),
                ("CLIENTELA__REGISTRY__MAX_CONNECTIONS", "3"),
                ("CLIENTELA__AUTH__TOKENS__OPS__ROLE", "admin"),
                ("CLIENTELA__AUTH__TOKENS__OPS__SECRET", "s3cret"),
                ("CLIENTELA__SERVER__METRICS_LISTEN", ""),
                ("OTHER_VAR", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(app.common.server.listen.port(), 0);
        assert_eq!(app.common.log.format, LogFormat::Json);
        assert_eq!(app.common.server.metrics_listen, None);
        assert_eq!(app.registry.max_connections, 3);
        let ops = &app.common.auth.tokens["ops"];
        assert_eq!(ops.role, "admin");
        assert_eq!(ops.secret.as_ref().unwrap().expose(), "s3cret");
        let printed = format!("{app:?}");
        assert!(!printed.contains("s3cret"), "secret leaked: {printed}");
        assert!(
            !printed.contains("pw@db"),
            "database password leaked: {printed}"
        );
    }

    #[test]
    fn the_database_url_can_come_from_a_file() {
        let dir = std::env::temp_dir().join(format!("clientela-url-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("uri");
        std::fs::write(&file, "postgresql://app:pw@db:5432/app\n").unwrap();
        let settings = DatabaseSettings {
            url_file: Some(file),
            ..DatabaseSettings::default()
        };
        let url = settings
            .resolved_url(Path::new("./data"), "registry")
            .unwrap();
        assert_eq!(url.expose(), "postgresql://app:pw@db:5432/app");
        let missing = DatabaseSettings {
            url_file: Some(dir.join("nope")),
            ..DatabaseSettings::default()
        };
        assert!(
            missing
                .resolved_url(Path::new("./data"), "registry")
                .is_err()
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load_from::<App>(None, env(&[("CLIENTELA__SERVER__LISTN", "x")])).unwrap_err();
        assert!(err.to_string().contains("listn"), "{err}");
    }
}
