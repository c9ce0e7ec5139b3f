//! Logs, traces and metrics: the tracing subscriber, a span and Prometheus metrics per
//! RPC, and the W3C `traceparent` that follows a request from service to service.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use futures::future::{BoxFuture, FutureExt};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

use crate::settings::{LogFormat, LogSettings};

/// Installs the global tracing subscriber. Safe to call more than once (tests): later
/// calls keep the first subscriber.
pub fn init_tracing(settings: &LogSettings) {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match settings.format {
        LogFormat::Json => builder.json().with_current_span(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    // Err means a subscriber exists already; keeping it is what we want.
    drop(result);
}

/// A W3C trace context (`traceparent: 00-<trace-id>-<parent-id>-<flags>`).
///
/// Written by hand rather than with the OpenTelemetry SDK: all we need is to carry one id
/// through gRPC metadata and into the logs, which is two hex fields; an exporter can be
/// added when there is a collector to export to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: u128,
    /// The span id of this hop, 8 bytes, never zero.
    pub span_id: u64,
    /// Sampled flag and friends.
    pub flags: u8,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// A new trace.
    pub fn new_root() -> Self {
        Self {
            trace_id: rand::random::<u128>().max(1),
            span_id: rand::random::<u64>().max(1),
            flags: 1,
        }
    }

    /// Parses a `traceparent` header; `None` if it is malformed (then a new trace starts).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2
            || version == "ff"
            || trace.len() != 32
            || parent.len() != 16
            || flags.len() != 2
        {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok().filter(|t| *t != 0)?;
        let span_id = u64::from_str_radix(parent, 16).ok().filter(|s| *s != 0)?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A child hop of the same trace.
    pub fn child(&self) -> Self {
        Self {
            span_id: rand::random::<u64>().max(1),
            ..*self
        }
    }

    /// The header value.
    pub fn to_header(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }

    /// The trace id as 32 hex digits (what logs show).
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    /// The context of the RPC being served on this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(|c| *c).ok()
    }
}

/// A tonic client interceptor that sends the current trace context on, so a call made
/// while serving a request continues the same trace.
#[derive(Clone, Copy, Debug, Default)]
pub struct PropagateTrace;

impl tonic::service::Interceptor for PropagateTrace {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let ctx = TraceContext::current().map_or_else(TraceContext::new_root, |c| c.child());
        if let Ok(value) = ctx.to_header().parse() {
            req.metadata_mut().insert("traceparent", value);
        }
        Ok(req)
    }
}

/// Per-method RPC metrics, in the naming of go-grpc-prometheus.
#[derive(Clone, Debug)]
pub struct RpcMetrics {
    started: IntCounterVec,
    handled: IntCounterVec,
    latency: HistogramVec,
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
        let ctx = req
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
            .map_or_else(TraceContext::new_root, |parent| parent.child());
        let (service, method) = crate::auth::split_path(&path);
        let (service, method) = (service.to_owned(), method.to_owned());
        let quiet = service.starts_with("grpc.");
        let span = if quiet {
            tracing::debug_span!("rpc", rpc.service = %service, rpc.method = %method, trace_id = %ctx.trace_id_hex(), caller = tracing::field::Empty, grpc.code = tracing::field::Empty, duration_ms = tracing::field::Empty)
        } else {
            tracing::info_span!("rpc", rpc.service = %service, rpc.method = %method, trace_id = %ctx.trace_id_hex(), caller = tracing::field::Empty, grpc.code = tracing::field::Empty, duration_ms = tracing::field::Empty)
        };
        metrics
            .started
            .with_label_values(&[&service, &method])
            .inc();
        let start = Instant::now();
        let fut = async move {
            let result = CURRENT.scope(ctx, inner.call(req)).await;
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

    #[test]
    fn traceparent_round_trips_and_children_keep_the_trace() {
        let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ctx = TraceContext::parse(header).unwrap();
        assert_eq!(ctx.to_header(), header);
        let child = ctx.child();
        assert_eq!(child.trace_id, ctx.trace_id);
        assert_ne!(child.span_id, ctx.span_id);
    }

    #[test]
    fn malformed_traceparent_is_ignored() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-xyz-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad}");
        }
    }

    #[tokio::test]
    async fn the_interceptor_continues_the_current_trace() {
        use tonic::service::Interceptor;
        let ctx = TraceContext::new_root();
        let req = CURRENT
            .scope(ctx, async {
                PropagateTrace.call(tonic::Request::new(())).unwrap()
            })
            .await;
        let sent = req.metadata().get("traceparent").unwrap().to_str().unwrap();
        let sent = TraceContext::parse(sent).unwrap();
        assert_eq!(sent.trace_id, ctx.trace_id);
        assert_ne!(sent.span_id, ctx.span_id);
    }
}
