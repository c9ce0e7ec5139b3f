//! Who may call what, per method, through a server with auth on (TERRITORY.md,
//! "Access"): `admin` and `service` everything, `readonly` every read, a `sales` token
//! only its own cartera, its territories' prospects, its customers and its claims.
//! Every method of the proto must be in the table below, so a new one is decided here.

use std::str::FromStr;
use std::time::Duration;

use clientela_runtime::auth::{Access, described_services};
use clientela_testkit::RawCodec;
use futures::StreamExt;
use tonic::Code;

use crate::*;

/// The methods a sales token may call (with its scope checked inside).
const SALES: &[&str] = &[
    "GetCoverage",
    "ListAssignmentHistory",
    "ListCartera",
    "ListCarteraActions",
    "ExplainAssignment",
    "ListProspects",
    "ClaimProspect",
    "GetSeller",
];

/// What an empty request as token `name` ends with.
async fn call(app: &TestApp, method: &str, name: &str) -> Code {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_str(&format!(
        "/{}/{method}",
        clientela_territory::SERVICE_NAME
    ))
    .unwrap();
    let request = as_token(Vec::<u8>::new(), name);
    if matches!(method, "WatchAssignmentChanges" | "ApplyRealignment") {
        return match grpc.server_streaming(request, path, RawCodec).await {
            Err(status) => status.code(),
            Ok(response) => {
                let mut stream = response.into_inner();
                match tokio::time::timeout(Duration::from_millis(300), stream.next()).await {
                    Ok(Some(Err(status))) => status.code(),
                    _ => Code::Ok,
                }
            }
        };
    }
    match grpc.unary(request, path, RawCodec).await {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    }
}

clientela_testkit::both_engines!(
    crate::spawn_sales_app,
    every_method_is_open_to_exactly_the_roles_it_should_be,
    |app: TestApp| async move {
        let mut client = app.client.clone();
        let model = new_model(&mut client, "Chile").await;
        add(
            &mut client,
            &model,
            "CL",
            "",
            crate::models::countries(&["cl"]),
        )
        .await
        .unwrap();
        crate::cartera::add_seller(
            &mut client,
            crate::sellers::seller("Ana", "ana", &["CL"], &[]),
        )
        .await;
        let (_, methods) = described_services()
            .into_iter()
            .find(|(s, _)| s == clientela_territory::SERVICE_NAME)
            .unwrap();
        assert!(methods.len() >= 29, "{methods:?}");
        for method in SALES {
            assert!(
                methods.iter().any(|m| m == method),
                "{method} is not in the proto"
            );
        }
        for method in &methods {
            let rule = clientela_territory::api::method_access(method).unwrap();
            for (token, denied) in [
                ("ops", false),
                ("svc", false),
                ("bi", rule != Access::Read),
                ("ana", !SALES.contains(&method.as_str())),
            ] {
                let code = call(&app, method, token).await;
                assert!(
                    !matches!(code, Code::Internal | Code::Unknown | Code::Unauthenticated),
                    "{method} as {token}: {code:?}"
                );
                assert_eq!(
                    code == Code::PermissionDenied,
                    denied,
                    "{method} as {token}: {code:?}"
                );
            }
        }
    }
);
