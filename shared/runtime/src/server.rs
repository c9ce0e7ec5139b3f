//! The life of one server process: bind, register services, serve health, reflection
//! and metrics beside them, and shut down gracefully on SIGTERM or ctrl-c.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::body::Body;
use tonic::server::NamedService;
use tonic::service::RoutesBuilder;
use tonic::transport::server::{ServerTlsConfig, TcpIncoming};
use tonic::transport::{Certificate, Identity};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::auth::{AuthLayer, Authenticator, MethodTable};
use crate::db::Db;
use crate::settings::{CommonSettings, ServerTlsSettings, non_empty};
use crate::telemetry::{RpcLayer, RpcMetrics};

/// The health service name the kubelet's liveness probe asks: SERVING while the process
/// runs, whatever its database does (a database outage should take a pod out of the load
/// balancer, not restart it).
pub const LIVENESS: &str = "liveness";

/// Why a server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// Settings that cannot work.
    #[error("configuration: {0}")]
    Config(String),
    /// The database could not be reached or migrated.
    #[error("database of {service}: {source}")]
    Database {
        /// Which service.
        service: String,
        source: sea_orm::DbErr,
    },
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// A bound, not yet serving, server. Services are added to it, then [`App::serve`] runs it.
pub struct App {
    settings: CommonSettings,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    health: HealthReporter,
    routes: RoutesBuilder,
    auth: Authenticator,
    /// Cancelled to ask the server to shut down (the same path as SIGTERM).
    shutdown_requested: CancellationToken,
    /// Cancelled once draining ends: background tasks and open streams stop.
    stopping: CancellationToken,
    services: Vec<(&'static str, Option<Db>)>,
    metrics: prometheus::Registry,
    /// Background work (feed consumers, reclassifications a call started): stopped by
    /// `stopping`, waited for before the pools close.
    tasks: TaskTracker,
    /// The listener's TLS, read from its files at bind.
    tls: Option<ServerTlsConfig>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("listen", &self.listener.local_addr().ok())
            .field(
                "services",
                &self.services.iter().map(|s| s.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl App {
    /// Checks the auth and TLS settings, then binds the gRPC and metrics listeners (so
    /// port 0 resolves to a real port that can be reported). Settings that cannot work
    /// fail before any port is bound: a refused server never listens, not even briefly.
    pub async fn bind(settings: CommonSettings) -> Result<Self, ServeError> {
        let addr = settings.server.listen;
        let auth = Authenticator::from_settings(&settings.auth).map_err(ServeError::Config)?;
        let tls = server_tls(&settings.server.tls).map_err(ServeError::Config)?;
        if auth.is_disabled() && !addr.ip().is_loopback() {
            return Err(ServeError::Config(format!(
                "no auth tokens are configured, which is allowed only on a loopback address, \
                 and {addr} is not one: configure [auth.tokens] or listen on 127.0.0.1"
            )));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let metrics_listener = match settings.server.metrics_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServeError::Bind { addr, source })?,
            ),
            None => None,
        };
        if auth.is_disabled() {
            tracing::warn!(
                "auth is off: no tokens configured; accepting every call on loopback only"
            );
        }
        let (health, _) = tonic_health::server::health_reporter();
        let shutdown_requested = CancellationToken::new();
        let stopping = CancellationToken::new();
        Ok(Self {
            settings,
            listener,
            metrics_listener,
            health,
            routes: RoutesBuilder::default(),
            auth,
            shutdown_requested,
            stopping,
            services: Vec::new(),
            metrics: prometheus::Registry::new(),
            tasks: TaskTracker::new(),
            tls,
        })
    }

    /// The gRPC address actually bound.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The metrics address actually bound, if metrics are on.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// Cancel it to shut the server down as SIGTERM would.
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown_requested.clone()
    }

    /// Cancelled when the server stops taking work: background tasks and long-lived
    /// streams watch it.
    pub fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }

    /// The Prometheus registry, for services' own metrics.
    pub fn metrics_registry(&self) -> &prometheus::Registry {
        &self.metrics
    }

    /// The shared settings.
    pub fn settings(&self) -> &CommonSettings {
        &self.settings
    }

    /// Where background work is spawned (`tasks().spawn(...)`). A task must end soon
    /// after [`App::stopping`] is cancelled: the server waits for them all (up to the
    /// shutdown grace) before it closes the databases.
    pub fn tasks(&self) -> TaskTracker {
        self.tasks.clone()
    }

    /// Adds a gRPC service, with its method access table and its database (whose health
    /// the server watches). Call it once the service's migrations have run: the service
    /// reports SERVING from here on. A table without a rule for one of the service's
    /// methods is refused: who may call a method is decided when it is added, not left
    /// to a default.
    pub async fn add_service<S>(
        &mut self,
        service: S,
        methods: MethodTable,
        db: Option<Db>,
    ) -> Result<(), ServeError>
    where
        S: tower::Service<http::Request<Body>, Error = Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        let missing = crate::auth::methods_without_rule(S::NAME, methods);
        if !missing.is_empty() {
            return Err(ServeError::Config(format!(
                "{} has no access rule for {}",
                S::NAME,
                missing.join(", ")
            )));
        }
        self.routes.add_service(service);
        self.auth = self.auth.clone().with_service(S::NAME, methods);
        self.health
            .set_service_status(S::NAME, ServingStatus::Serving)
            .await;
        self.services.push((S::NAME, db));
        Ok(())
    }

    /// The gRPC services added so far, by full name.
    pub fn service_names(&self) -> Vec<&'static str> {
        self.services.iter().map(|(name, _)| *name).collect()
    }

    /// Serves until `signal` resolves or [`App::shutdown_handle`] is cancelled, then
    /// drains: health turns NOT_SERVING, new work stops after `drain_delay_secs`,
    /// in-flight requests get `shutdown_grace_secs` to finish, pools close.
    pub async fn serve(self, signal: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let Self {
            settings,
            listener,
            metrics_listener,
            health,
            routes,
            auth,
            shutdown_requested,
            stopping,
            services,
            metrics,
            tasks,
            tls,
        } = self;
        let server_settings = &settings.server;

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(clientela_proto::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
                // google.rpc.BadRequest and ErrorInfo, so grpcurl and buf curl print the
                // details of an error instead of "not recognized".
                .register_encoded_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let health_service =
            tonic_health::server::HealthService::from_health_reporter(health.clone());

        let mut routes = routes;
        routes
            .add_service(tonic_health::pb::health_server::HealthServer::new(
                health_service,
            ))
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha);
        health.set_service_status("", ServingStatus::Serving).await;
        health
            .set_service_status(LIVENESS, ServingStatus::Serving)
            .await;

        let rpc_layer = RpcLayer::new(RpcMetrics::new(&metrics)?);
        let metrics_task =
            metrics_listener.map(|l| tokio::spawn(serve_metrics(l, metrics, stopping.clone())));
        let watchdog = tokio::spawn(watch_databases(
            health.clone(),
            services.clone(),
            Duration::from_secs(server_settings.health_check_interval_secs.max(1)),
            stopping.clone(),
        ));

        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = tls {
            builder = builder.tls_config(tls)?;
        }
        let server = builder
            .timeout(Duration::from_secs(
                server_settings.request_timeout_secs.max(1),
            ))
            .tcp_nodelay(true)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .layer(rpc_layer)
            .layer(AuthLayer(auth))
            .add_routes(routes.routes())
            // The builder's `tcp_nodelay` applies only to listeners tonic binds itself; an
            // accepted socket with Nagle on held every response written in two parts
            // (a few KB) for the client's delayed ACK: 44 ms each (docs/BENCHMARKS.md).
            .serve_with_incoming_shutdown(
                TcpIncoming::from(listener).with_nodelay(Some(true)),
                async {
                    let _ = stop_rx.await;
                },
            );
        tokio::pin!(server);

        tokio::select! {
            result = &mut server => {
                stopping.cancel();
                join_tasks(tasks, Duration::from_secs(server_settings.shutdown_grace_secs.max(1))).await;
                return result.map_err(ServeError::from);
            }
            () = signal => tracing::info!("shutdown signal received"),
            () = shutdown_requested.cancelled() => tracing::info!("shutdown requested"),
        }

        // 1. Tell load balancers and the kubelet first.
        health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        for (name, _) in &services {
            health
                .set_service_status(*name, ServingStatus::NotServing)
                .await;
        }
        watchdog.abort();
        let drain = Duration::from_secs(server_settings.drain_delay_secs);
        if !drain.is_zero() {
            tracing::info!(?drain, "draining: NOT_SERVING, still answering");
            // Keep serving while the load balancers notice.
            let _ = tokio::time::timeout(drain, &mut server).await;
        }
        // 2. Stop taking work; end streams and background tasks.
        stopping.cancel();
        let _ = stop_tx.send(());
        // 3. Let in-flight requests finish.
        let grace = Duration::from_secs(server_settings.shutdown_grace_secs.max(1));
        match tokio::time::timeout(grace, &mut server).await {
            Ok(result) => result?,
            Err(_) => tracing::warn!(?grace, "grace period over; closing with requests in flight"),
        }
        // 4. Close what we hold: background tasks end before their databases close.
        join_tasks(tasks, grace).await;
        if let Some(task) = metrics_task {
            let _ = task.await;
        }
        for (name, db) in &services {
            if let Some(db) = db
                && let Err(error) = db.close().await
            {
                tracing::warn!(service = name, %error, "closing the database pool failed");
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The listener's TLS from its files; None when it is off. Mistakes are reported with
/// the setting and the file, at start-up.
fn server_tls(settings: &ServerTlsSettings) -> Result<Option<ServerTlsConfig>, String> {
    if !settings.enabled() {
        return Ok(None);
    }
    let (Some(cert), Some(key)) = (
        non_empty(&settings.cert_file),
        non_empty(&settings.key_file),
    ) else {
        return Err("server.tls needs both cert_file and key_file".into());
    };
    let mut config = ServerTlsConfig::new().identity(Identity::from_pem(
        read_pem("server.tls.cert_file", cert)?,
        read_pem("server.tls.key_file", key)?,
    ));
    if let Some(ca) = non_empty(&settings.client_ca_file) {
        config = config.client_ca_root(Certificate::from_pem(read_pem(
            "server.tls.client_ca_file",
            ca,
        )?));
    }
    // Parsed now, so a key that does not fit its certificate stops the start, not the
    // first connection.
    tonic::transport::Server::builder()
        .tls_config(config.clone())
        .map_err(|e| format!("server.tls: {e}"))?;
    Ok(Some(config))
}

/// A PEM file's content; `setting` names it in the error.
pub fn read_pem(setting: &str, path: &std::path::Path) -> Result<Vec<u8>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("{setting} {}: {e}", path.display()))?;
    if !pem.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(format!("{setting} {}: not a PEM file", path.display()));
    }
    Ok(pem)
}

/// Waits up to `grace` for the background tasks, which were told to stop.
async fn join_tasks(tasks: TaskTracker, grace: Duration) {
    tasks.close();
    if tokio::time::timeout(grace, tasks.wait()).await.is_err() {
        tracing::warn!(
            running = tasks.len(),
            "background tasks did not stop in time"
        );
    }
}

/// Resolves on SIGTERM or ctrl-c (SIGINT). The handlers are installed when this is
/// called, not when the future is first polled, so call it before announcing the
/// server: a signal that arrives in between is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            match (term, int) {
                (Ok(mut term), Ok(mut int)) => {
                    tokio::select! {
                        _ = term.recv() => {}
                        _ = int.recv() => {}
                    }
                }
                (term, int) => {
                    tracing::warn!(
                        term = term.is_ok(),
                        int = int.is_ok(),
                        "cannot listen for signals; falling back to ctrl-c"
                    );
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn serve_metrics(
    listener: TcpListener,
    registry: prometheus::Registry,
    stop: CancellationToken,
) {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut body = String::new();
                let encoder = prometheus::TextEncoder::new();
                match encoder.encode_utf8(&registry.gather(), &mut body) {
                    Ok(()) => (
                        [(http::header::CONTENT_TYPE, prometheus::TEXT_FORMAT)],
                        body,
                    )
                        .into_response_parts(),
                    Err(error) => {
                        tracing::error!(%error, "cannot encode metrics");
                        ([(http::header::CONTENT_TYPE, "text/plain")], String::new())
                            .into_response_parts()
                    }
                }
            }
        }),
    );
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await;
    if let Err(error) = result {
        tracing::error!(%error, "metrics server failed");
    }
}

/// Helper so both arms of the metrics handler have one type.
trait IntoResponseParts {
    fn into_response_parts(self) -> axum::response::Response;
}

impl<T: axum::response::IntoResponse> IntoResponseParts for T {
    fn into_response_parts(self) -> axum::response::Response {
        self.into_response()
    }
}

/// Pings every service's database; a service whose database does not answer reports
/// NOT_SERVING (and so does the server as a whole) until it answers again.
async fn watch_databases(
    health: HealthReporter,
    services: Vec<(&'static str, Option<Db>)>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut was_healthy = vec![true; services.len()];
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let mut all_healthy = true;
        for (i, (name, db)) in services.iter().enumerate() {
            let Some(db) = db else { continue };
            let healthy = tokio::time::timeout(every, db.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            if healthy != was_healthy[i] {
                if healthy {
                    tracing::info!(service = name, "database reachable again");
                } else {
                    tracing::error!(service = name, "database unreachable: NOT_SERVING");
                }
                was_healthy[i] = healthy;
            }
            let status = if healthy {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            health.set_service_status(*name, status).await;
            all_healthy &= healthy;
        }
        let overall = if all_healthy {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        health.set_service_status("", overall).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_open_server_off_loopback_is_refused_before_it_binds() {
        // Hold the port: a server that bound before checking its settings would fail with
        // "cannot listen" instead, after having listened.
        let held = std::net::TcpListener::bind("0.0.0.0:0").expect("a free port");
        let mut settings = CommonSettings::default();
        settings.server.listen = held.local_addr().expect("its address");
        settings.server.metrics_listen = None;
        match App::bind(settings).await {
            Err(ServeError::Config(message)) => {
                assert!(message.contains("loopback"), "{message}");
            }
            Err(other) => panic!("refused for another reason: {other}"),
            Ok(_) => panic!("an open server listened off loopback"),
        }
    }
}
