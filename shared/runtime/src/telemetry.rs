//! Logs, traces and metrics: the tracing subscriber, a span and Prometheus metrics per
//! RPC, spans exported over OTLP when a collector is configured, and the W3C trace
//! context (OpenTelemetry's propagator) that follows a request from service to service.

use std::collections::HashSet;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::settings::{LogFormat, LogSettings, TraceSettings};

/// What [`init_tracing`] set up: the span exporter, when one is configured. Shut it
/// down last, so the spans still buffered are sent.
#[derive(Debug)]
#[must_use = "shut it down at exit, or buffered spans are lost"]
pub struct Telemetry {
    provider: SdkTracerProvider,
    exporting: bool,
}

impl Telemetry {
    /// Whether spans leave the process (an OTLP endpoint is configured).
    pub fn exporting(&self) -> bool {
        self.exporting
    }

    /// Sends the spans still buffered and stops the exporter.
    pub fn shutdown(self) {
        if self.exporting
            && let Err(error) = self.provider.shutdown()
        {
            tracing::warn!(%error, "flushing the trace exporter");
        }
    }
}

/// Installs the global tracing subscriber: logs to stderr, and spans to OpenTelemetry,
/// exported over OTLP/gRPC when `traces.otlp_endpoint` is set. Spans are made either way,
/// so the W3C trace context reaches the logs and the services called. Safe to call more
/// than once (tests): later calls keep the first subscriber. Call it inside the Tokio
/// runtime (the exporter runs on it).
pub fn init_tracing(log: &LogSettings, traces: &TraceSettings) -> Result<Telemetry, String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let telemetry = tracer_provider(traces)?;
    let tracer = telemetry.provider.tracer("clientela");
    let filter = EnvFilter::try_new(&log.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = || tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_opentelemetry::layer().with_tracer(tracer));
    let result = match log.format {
        LogFormat::Json => subscriber
            .with(fmt().json().with_current_span(true))
            .try_init(),
        LogFormat::Text => subscriber.with(fmt()).try_init(),
    };
    // Err means a subscriber exists already; keeping it is what we want.
    drop(result);
    Ok(telemetry)
}

/// The tracer provider of `traces`. Without an endpoint nothing is exported and traces
/// this process starts are not sampled (their ids still propagate); a caller's sampled
/// trace stays sampled, so a service in between never breaks a trace another exports.
fn tracer_provider(traces: &TraceSettings) -> Result<Telemetry, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    use opentelemetry_sdk::trace::{Sampler, span_processor_with_async_runtime};
    let endpoint = traces.otlp_endpoint.trim();
    if endpoint.is_empty() {
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff)))
            .build();
        return Ok(Telemetry {
            provider,
            exporting: false,
        });
    }
    let bad = |why: &str| format!("traces.otlp_endpoint {endpoint:?}: {why}");
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none_or(str::is_empty) {
        return Err(bad(
            "must be http://host:port (a collector's OTLP/gRPC receiver, usually :4317; \
             https is not supported by this build)",
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| format!("traces.otlp_endpoint {endpoint:?}: {e}"))?;
    // The batch processor on the Tokio runtime: the SDK's default one exports from a
    // thread of its own, where tonic's channel finds no reactor.
    let processor = span_processor_with_async_runtime::BatchSpanProcessor::builder(
        exporter,
        opentelemetry_sdk::runtime::Tokio,
    )
    .build();
    let name = match traces.service_name.trim() {
        "" => "clientela".to_owned(),
        name => name.to_owned(),
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_resource(Resource::builder().with_service_name(name).build())
        .build();
    Ok(Telemetry {
        provider,
        exporting: true,
    })
}

/// The W3C trace id of the current span, as 32 hex digits; None outside a trace.
pub fn current_trace_id() -> Option<String> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let ids = span.span_context();
    ids.is_valid().then(|| ids.trace_id().to_string())
}

/// Reads a W3C `traceparent` (and `tracestate`) from request headers.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the trace context into a call's metadata.
struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// A tonic client interceptor that sends the current span's trace context on (W3C
/// `traceparent`), so a call made while serving a request, or while following a feed,
/// continues the same trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&cx, &mut MetadataInjector(req.metadata_mut()));
        });
        Ok(req)
    }
}

/// Per-method RPC metrics, in the naming of go-grpc-prometheus.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    latency: HistogramVec,
    /// The paths labelled by their own name; any other path is [`UNKNOWN`], so a caller
    /// inventing method names cannot grow the metrics (or the server's memory).
    known: Arc<HashSet<String>>,
}

/// The service and method label of every path the server does not serve.
pub const UNKNOWN: &str = "unknown";

/// "/package.Service/Method" of every method in the descriptor set, and of the health
/// and reflection services.
fn known_paths() -> HashSet<String> {
    let standard = [
        (
            "grpc.health.v1.Health",
            vec!["Check".to_owned(), "Watch".to_owned()],
        ),
        (
            "grpc.reflection.v1.ServerReflection",
            vec!["ServerReflectionInfo".to_owned()],
        ),
        (
            "grpc.reflection.v1alpha.ServerReflection",
            vec!["ServerReflectionInfo".to_owned()],
        ),
    ]
    .map(|(service, methods)| (service.to_owned(), methods));
    crate::auth::described_services()
        .into_iter()
        .chain(standard)
        .flat_map(|(service, methods)| {
            methods
                .into_iter()
                .map(move |method| format!("/{service}/{method}"))
        })
        .collect()
}

impl RpcMetrics {
    /// Registers the metrics in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let started = IntCounterVec::new(
            Opts::new("grpc_server_started_total", "RPCs started on the server."),
            &["grpc_service", "grpc_method"],
        )?;
        let handled = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "RPCs completed on the server, by status code.",
            ),
            &["grpc_service", "grpc_method", "grpc_code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Time to the response headers of an RPC (the whole call for unary RPCs).",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ]),
            &["grpc_service", "grpc_method"],
        )?;
        registry.register(Box::new(started.clone()))?;
        registry.register(Box::new(handled.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self {
            started,
            handled,
            latency,
            known: Arc::new(known_paths()),
        })
    }
}

/// Tower layer: a span per RPC (method, status, duration, trace id), its metrics, and
/// the trace context made current for the handler.
#[derive(Clone, Debug)]
pub struct RpcLayer {
    metrics: Arc<RpcMetrics>,
}

impl RpcLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: RpcMetrics) -> Self {
        Self {
            metrics: Arc::new(metrics),
        }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        RpcService {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// See [`RpcLayer`].
#[derive(Clone, Debug)]
pub struct RpcService<S> {
    inner: S,
    metrics: Arc<RpcMetrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for RpcService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = self.metrics.clone();
        let path = req.uri().path().to_owned();
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&HeaderExtractor(req.headers()))
        });
        let (service, method) = if metrics.known.contains(&path) {
            let (service, method) = crate::auth::split_path(&path);
            (service.to_owned(), method.to_owned())
        } else {
            (UNKNOWN.to_owned(), UNKNOWN.to_owned())
        };
        let quiet = service.starts_with("grpc.");
        let span = if quiet {
            tracing::debug_span!("rpc", otel.name = %path, otel.kind = "server", rpc.system = "grpc", rpc.service = %service, rpc.method = %method, trace_id = tracing::field::Empty, caller = tracing::field::Empty, grpc.code = tracing::field::Empty, duration_ms = tracing::field::Empty)
        } else {
            tracing::info_span!("rpc", otel.name = %path, otel.kind = "server", rpc.system = "grpc", rpc.service = %service, rpc.method = %method, trace_id = tracing::field::Empty, caller = tracing::field::Empty, grpc.code = tracing::field::Empty, duration_ms = tracing::field::Empty)
        };
        if !span.is_disabled() {
            // Without the OpenTelemetry layer (a test's subscriber) there is no parent to
            // set; the span still logs.
            let _ = span.set_parent(parent);
            let cx = span.context();
            let ids = cx.span().span_context().clone();
            if ids.is_valid() {
                span.record("trace_id", ids.trace_id().to_string().as_str());
            }
        }
        metrics
            .started
            .with_label_values(&[&service, &method])
            .inc();
        let start = Instant::now();
        let fut = async move {
            let result = inner.call(req).await;
            let elapsed = start.elapsed();
            // Errors of unary RPCs travel in the headers (trailers-only responses); a
            // response without grpc-status in its headers started well, and its final status
            // is in the trailers, which a streaming response sends much later.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            let code_name = format!("{code:?}");
            metrics
                .handled
                .with_label_values(&[&service, &method, &code_name])
                .inc();
            metrics
                .latency
                .with_label_values(&[&service, &method])
                .observe(elapsed.as_secs_f64());
            let current = tracing::Span::current();
            current.record("grpc.code", code_name.as_str());
            current.record("duration_ms", elapsed.as_secs_f64() * 1000.0);
            if !quiet {
                match code {
                    tonic::Code::Ok => tracing::info!("rpc handled"),
                    // Anyone can send these, as fast as they like: at info they would
                    // let a caller without a token fill the log.
                    tonic::Code::Unauthenticated | tonic::Code::Unimplemented => {
                        tracing::debug!("rpc rejected")
                    }
                    tonic::Code::Internal | tonic::Code::Unknown | tonic::Code::DataLoss => {
                        tracing::error!("rpc failed")
                    }
                    _ => tracing::info!("rpc rejected"),
                }
            }
            result
        };
        fut.instrument(span).boxed()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A subscriber like [`init_tracing`]'s, exporting to memory, for this thread.
    fn recording() -> (
        opentelemetry_sdk::trace::InMemorySpanExporter,
        tracing::subscriber::DefaultGuard,
    ) {
        use tracing_subscriber::layer::SubscriberExt as _;
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        let exporter = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        (exporter, tracing::subscriber::set_default(subscriber))
    }

    #[test]
    fn the_interceptor_sends_the_current_trace_on() {
        use tonic::service::Interceptor;
        let (_exporter, _guard) = recording();
        let span = tracing::info_span!("caller");
        let _entered = span.enter();
        let trace = current_trace_id().unwrap();
        let req = PropagateTrace.call(tonic::Request::new(())).unwrap();
        let sent = req.metadata().get("traceparent").unwrap().to_str().unwrap();
        // 00-<trace id>-<span id>-<flags>
        let parts: Vec<&str> = sent.split('-').collect();
        assert_eq!(parts.len(), 4, "{sent}");
        assert_eq!(parts[1], trace);
    }

    #[test]
    fn an_endpoint_that_cannot_work_fails_at_start_up() {
        for bad in [
            "not-a-url",
            "collector:4317",
            "https://collector:4317",
            "http://",
        ] {
            let traces = TraceSettings {
                otlp_endpoint: bad.into(),
                service_name: String::new(),
            };
            let error = tracer_provider(&traces).unwrap_err();
            assert!(error.starts_with("traces.otlp_endpoint"), "{bad}: {error}");
        }
        let off = tracer_provider(&TraceSettings::default()).unwrap();
        assert!(!off.exporting());
    }

    #[test]
    fn outside_a_span_nothing_is_sent() {
        use tonic::service::Interceptor;
        let (_exporter, _guard) = recording();
        let req = PropagateTrace.call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get("traceparent").is_none());
        assert!(current_trace_id().is_none());
    }

    #[test]
    fn a_malformed_traceparent_starts_a_new_trace() {
        let (_exporter, _guard) = recording();
        let mut headers = http::HeaderMap::new();
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            headers.insert("traceparent", bad.parse().unwrap());
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&HeaderExtractor(&headers))
            });
            assert!(!parent.span().span_context().is_valid(), "{bad}");
        }
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", good.parse().unwrap());
        let parent = opentelemetry::global::get_text_map_propagator(|p| {
            p.extract(&HeaderExtractor(&headers))
        });
        assert_eq!(
            parent.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[tokio::test]
    async fn only_served_methods_get_a_label_of_their_own() {
        use tower::{Layer as _, ServiceExt as _};
        let registry = Registry::new();
        let layer = RpcLayer::new(RpcMetrics::new(&registry).unwrap());
        let answer = tower::service_fn(|_req: http::Request<()>| async {
            let response = http::Response::builder()
                .header("grpc-status", "16")
                .body(())
                .unwrap();
            Ok::<_, std::convert::Infallible>(response)
        });
        let service = layer.layer(answer);
        let known = "/clientela.registry.v1.CustomerRegistryService/GetCustomer";
        let mut paths = vec![known.to_owned()];
        paths.extend((0..200).map(|i| format!("/made.up.v{i}.Service/Method{i}")));
        for path in &paths {
            let req = http::Request::builder()
                .uri(path.as_str())
                .body(())
                .unwrap();
            service.clone().oneshot(req).await.unwrap();
        }
        let started = registry
            .gather()
            .into_iter()
            .find(|f| f.name() == "grpc_server_started_total")
            .unwrap();
        let mut series: Vec<(String, u64)> = started
            .get_metric()
            .iter()
            .map(|m| {
                let label = |name: &str| {
                    m.get_label()
                        .iter()
                        .find(|l| l.name() == name)
                        .map_or("", |l| l.value())
                        .to_owned()
                };
                let series = format!("{}/{}", label("grpc_service"), label("grpc_method"));
                (series, m.get_counter().get_value() as u64)
            })
            .collect();
        series.sort();
        assert_eq!(
            series,
            [
                (
                    "clientela.registry.v1.CustomerRegistryService/GetCustomer".to_owned(),
                    1
                ),
                ("unknown/unknown".to_owned(), 200)
            ]
        );
    }
}
