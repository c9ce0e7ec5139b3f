//! Traces leave the process: the binary, given an OTLP endpoint, exports its spans to a
//! collector (here a receiver in the test), a caller's W3C trace context continues into
//! the server's span, and the classification engine's calls to the registry's feed
//! carry a trace of their own that the registry's span joins.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::transport::Channel;

use crate::process::Process;

/// A span as received: its name, trace id, span id and parent span id, in hex.
#[derive(Debug, Clone)]
struct Received {
    name: String,
    trace: String,
    span: String,
    parent: String,
    service: String,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let mut received = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| kv.value.as_ref())
                .map(|v| format!("{:?}", v.value))
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    received.push(Received {
                        name: span.name,
                        trace: hex(&span.trace_id),
                        span: hex(&span.span_id),
                        parent: hex(&span.parent_span_id),
                        service: service.clone(),
                    });
                }
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl Collector {
    /// Waits up to 20 s for a span that `wanted` accepts.
    async fn wait_for(&self, what: &str, wanted: impl Fn(&Received) -> bool) -> Received {
        for _ in 0..200 {
            // A copy, so `wanted` may look at the spans too.
            let received = self.0.lock().unwrap().clone();
            if let Some(found) = received.into_iter().find(|s| wanted(s)) {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no {what} among {:#?}", self.0.lock().unwrap());
    }
}

#[tokio::test]
async fn spans_are_exported_over_otlp_and_continue_the_callers_trace() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let otlp = listener.local_addr().unwrap();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        ("CLIENTELA__SERVER__LISTEN".into(), "127.0.0.1:0".into()),
        ("CLIENTELA__SERVER__METRICS_LISTEN".into(), String::new()),
        (
            "CLIENTELA__DATA_DIR".into(),
            dir.path().display().to_string(),
        ),
        (
            "CLIENTELA__TRACES__OTLP_ENDPOINT".into(),
            format!("http://{otlp}"),
        ),
        (
            "CLIENTELA__TRACES__SERVICE_NAME".into(),
            "clientela-test".into(),
        ),
        // Export every 100 ms rather than every 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
    ];
    let process = Process::spawn(&["serve"], &env);

    // A caller in a trace of its own creates a customer.
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let channel = Channel::from_shared(format!("http://{}", process.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = CustomerRegistryServiceClient::new(channel);
    let mut request = tonic::Request::new(pb::CreateCustomerRequest {
        customer: Some(pb::Customer {
            kind: pb::CustomerKind::Person as i32,
            display_name: "Traza Uno".into(),
            ..Default::default()
        }),
        request_id: "traces-1".into(),
    });
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace}-{caller_span}-01").parse().unwrap(),
    );
    client.create_customer(request).await.unwrap();

    let create = collector
        .wait_for("CreateCustomer span", |s| {
            s.name.ends_with("/CreateCustomer")
        })
        .await;
    assert_eq!(create.trace, trace, "{create:?}");
    assert_eq!(create.parent, caller_span, "{create:?}");
    assert!(create.service.contains("clientela-test"), "{create:?}");

    // A consumer's connection to the registry's feed: its span, and the registry's span
    // of the WatchEvents it opened, in one trace. (Several consumers connect: the
    // territory service's to the label feed too, so the connect is the one whose trace
    // holds a WatchEvents.)
    let connects = || -> Vec<Received> {
        let received = collector.0.lock().unwrap();
        received
            .iter()
            .filter(|s| s.name == "feed.connect")
            .cloned()
            .collect()
    };
    let watch = collector
        .wait_for("WatchEvents span in a consumer's trace", |s| {
            s.name.ends_with("/WatchEvents") && connects().iter().any(|c| c.trace == s.trace)
        })
        .await;
    let connect = connects()
        .into_iter()
        .find(|c| c.trace == watch.trace)
        .unwrap();
    assert_eq!(watch.parent, connect.span, "{watch:?} {connect:?}");

    process.terminate();
    server.abort();
}
