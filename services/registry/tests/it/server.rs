//! The server around the registry: health, reflection, auth, metrics, graceful shutdown.

use clientela_proto::clientela::registry::v1 as pb;
use clientela_runtime::Secret;
use clientela_runtime::auth::Role;
use clientela_runtime::settings::TokenSettings;
use clientela_testkit::Engine;
use tonic::Code;
use tonic::metadata::MetadataValue;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus};

use crate::harness::*;

#[tokio::test]
async fn health_reports_serving_for_the_server_and_the_registry() {
    let app = spawn_app(Engine::Sqlite).await.unwrap();
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", clientela_registry::SERVICE_NAME] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn tokens_and_roles_are_enforced_but_health_stays_open() {
    let (url, dir) = clientela_testkit::sqlite_database();
    let mut common = settings();
    for (name, role) in [("ops", Role::Admin), ("bi", Role::Readonly)] {
        common.auth.tokens.insert(
            name.into(),
            TokenSettings {
                role: role.name().to_owned(),
                secret: Some(Secret::new(format!("{name}-secret-0123456789"))),
                secret_file: None,
            },
        );
    }
    let app = spawn_with(url, Some(dir), common).await;
    let bearer = |name: &str| -> MetadataValue<_> {
        format!("Bearer {name}-secret-0123456789").parse().unwrap()
    };
    let mut client = app.client.clone();

    let anonymous = client
        .list_customers(pb::ListCustomersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let mut read = tonic::Request::new(pb::ListCustomersRequest::default());
    read.metadata_mut().insert("authorization", bearer("bi"));
    client.list_customers(read).await.unwrap();

    let mut write = tonic::Request::new(pb::CreateCustomerRequest {
        customer: Some(person(1)),
        request_id: String::new(),
    });
    write.metadata_mut().insert("authorization", bearer("bi"));
    assert_eq!(
        client.create_customer(write).await.unwrap_err().code(),
        Code::PermissionDenied
    );

    let mut write = tonic::Request::new(pb::CreateCustomerRequest {
        customer: Some(person(1)),
        request_id: String::new(),
    });
    write.metadata_mut().insert("authorization", bearer("ops"));
    client.create_customer(write).await.unwrap();

    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(status.into_inner().status, ServingStatus::Serving as i32);
}

#[tokio::test]
async fn without_tokens_a_public_address_is_refused() {
    let mut common = settings();
    common.server.listen = "0.0.0.0:0".parse().unwrap();
    let err = clientela_runtime::App::bind(common).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test]
async fn metrics_count_rpcs_by_method_and_code() {
    let (url, dir) = clientela_testkit::sqlite_database();
    let mut common = settings();
    common.server.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
    let mut registry = clientela_registry::RegistrySettings::default();
    registry.database.url = Secret::new(url);
    let mut app = clientela_runtime::App::bind(common).await.unwrap();
    clientela_registry::register(&mut app, &registry)
        .await
        .unwrap();
    let (addr, metrics) = (app.local_addr().unwrap(), app.metrics_addr().unwrap());
    let stop = app.shutdown_handle();
    let task = tokio::spawn(app.serve(std::future::pending()));
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        pb::customer_registry_service_client::CustomerRegistryServiceClient::new(channel);
    create(&mut client, person(1)).await;
    let _ = client
        .get_customer(pb::GetCustomerRequest { name: "bad".into() })
        .await;

    let body = http_get(metrics, "/metrics").await;
    assert!(body.contains(r#"grpc_server_handled_total{grpc_code="Ok",grpc_method="CreateCustomer",grpc_service="clientela.registry.v1.CustomerRegistryService"} 1"#), "{body}");
    assert!(
        body.contains(r#"grpc_code="InvalidArgument",grpc_method="GetCustomer""#),
        "{body}"
    );
    assert!(
        body.contains("grpc_server_handling_seconds_bucket"),
        "{body}"
    );
    stop.cancel();
    task.await.unwrap().unwrap();
    drop(dir);
}

/// A bare HTTP/1.1 GET, enough for a metrics page.
async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).await.unwrap();
    body
}

#[tokio::test]
async fn shutdown_ends_open_feed_streams_and_stops_cleanly() {
    use futures::StreamExt;
    let app = spawn_app(Engine::Sqlite).await.unwrap();
    let mut client = app.client.clone();
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after_sequence: 0,
            max_batch_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    create(&mut client, person(1)).await;
    assert_eq!(stream.next().await.unwrap().unwrap().events.len(), 1);
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), app.stop()).await;
    assert!(
        stopped.is_ok(),
        "the server did not stop while a feed stream was open"
    );
    // The stream ends rather than hanging.
    let end = tokio::time::timeout(std::time::Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(end.is_none_or(|r| r.is_err()));
}

async fn health_of(addr: std::net::SocketAddr, service: &str) -> i32 {
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_reports_not_serving_while_still_answering() {
    let (url, dir) = clientela_testkit::sqlite_database();
    let mut common = settings();
    common.server.drain_delay_secs = 2;
    let app = spawn_with(url, Some(dir), common).await;
    let mut client = app.client.clone();
    let c = create(&mut client, person(1)).await;
    let addr = app.addr;
    let stopping = tokio::spawn(app.stop());
    // Within the drain: health says NOT_SERVING, yet calls are still answered.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1800);
    while health_of(addr, "").await != ServingStatus::NotServing as i32 {
        assert!(
            std::time::Instant::now() < deadline,
            "health did not flip to NOT_SERVING"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        health_of(addr, clientela_registry::SERVICE_NAME).await,
        ServingStatus::NotServing as i32
    );
    let got = client
        .get_customer(pb::GetCustomerRequest {
            name: c.name.clone(),
        })
        .await
        .unwrap();
    assert_eq!(got.into_inner().customer.unwrap().name, c.name);
    stopping.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_turns_health_not_serving_and_calls_unavailable() {
    use sea_orm::ConnectionTrait;
    let Some(url) = clientela_testkit::postgres_database().await else {
        return;
    };
    let (base, db) = url.rsplit_once('/').unwrap();
    let admin = sea_orm::Database::connect(format!("{base}/postgres"))
        .await
        .unwrap();
    let mut common = settings();
    common.server.health_check_interval_secs = 1;
    let app = spawn_with(url.clone(), None, common).await;
    let mut client = app.client.clone();
    let c = create(&mut client, person(1)).await;

    admin
        .execute_unprepared(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"))
        .await
        .unwrap();
    admin
        .execute_unprepared(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
        ))
        .await
        .unwrap();
    let addr = app.addr;
    let wait_for = |wanted: ServingStatus| async move {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
        while health_of(addr, clientela_registry::SERVICE_NAME).await != wanted as i32 {
            assert!(
                std::time::Instant::now() < deadline,
                "health never became {wanted:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    wait_for(ServingStatus::NotServing).await;
    assert_eq!(health_of(addr, "").await, ServingStatus::NotServing as i32);
    let down = client
        .get_customer(pb::GetCustomerRequest {
            name: c.name.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");

    admin
        .execute_unprepared(&format!("ALTER DATABASE {db} ALLOW_CONNECTIONS true"))
        .await
        .unwrap();
    wait_for(ServingStatus::Serving).await;
    client
        .get_customer(pb::GetCustomerRequest {
            name: c.name.clone(),
        })
        .await
        .unwrap();
}
