//! TLS, when configured: the listener takes only TLS clients that present a certificate
//! its client CA signed (mutual TLS), and the classification engine follows the
//! registry's feed over the same TLS, as the territory service does (the all-in-one server calls itself at
//! `https://localhost:PORT`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use clientela::{ALL_SERVICES, Settings};
use clientela_proto::clientela::classification::v1 as class;
use clientela_proto::clientela::classification::v1::classification_service_client::ClassificationServiceClient;
use clientela_proto::clientela::common::v1::Money;
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

/// A CA, a server certificate for localhost and a client certificate, as PEM files.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf = |name: &str| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (server_cert, server_key) = leaf("localhost");
    let (client_cert, client_key) = leaf("clientela-client");
    Pki {
        ca: write("ca.pem", &ca.pem()),
        server_cert: write("server.pem", &server_cert),
        server_key: write("server.key", &server_key),
        client_cert: write("client.pem", &client_cert),
        client_key: write("client.key", &client_key),
    }
}

async fn channel(port: u16, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://localhost:{port}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| e.to_string())?;
    }
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn mutual_tls_guards_the_listener_and_carries_the_feed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let mut settings = Settings::default();
    settings.common.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.common.server.metrics_listen = None;
    settings.common.server.shutdown_grace_secs = 5;
    settings.common.data_dir = dir.path().join("data");
    settings.common.server.tls.cert_file = Some(pki.server_cert.clone());
    settings.common.server.tls.key_file = Some(pki.server_key.clone());
    settings.common.server.tls.client_ca_file = Some(pki.ca.clone());
    settings.classification.registry_tls.ca_file = Some(pki.ca.clone());
    settings.classification.registry_tls.cert_file = Some(pki.client_cert.clone());
    settings.classification.registry_tls.key_file = Some(pki.client_key.clone());
    settings.territory.registry_tls = settings.classification.registry_tls.clone();
    settings.territory.classification_tls = settings.classification.registry_tls.clone();
    let app = clientela::build(&settings, ALL_SERVICES.to_vec())
        .await
        .unwrap();
    let port = app.local_addr().unwrap().port();
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.serve(std::future::pending()));

    let ca = Certificate::from_pem(std::fs::read(&pki.ca).unwrap());
    let identity = Identity::from_pem(
        std::fs::read(&pki.client_cert).unwrap(),
        std::fs::read(&pki.client_key).unwrap(),
    );
    let with_identity = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .identity(identity);

    // A client with a certificate from the CA is served.
    let mut registry = CustomerRegistryServiceClient::new(
        channel(port, Some(with_identity.clone())).await.unwrap(),
    );
    let customer = registry
        .create_customer(pb::CreateCustomerRequest {
            customer: Some(pb::Customer {
                kind: pb::CustomerKind::Person as i32,
                display_name: "Cifrada Uno".into(),
                ..Default::default()
            }),
            request_id: "tls-1".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .customer
        .unwrap();
    registry
        .record_purchase(pb::RecordPurchaseRequest {
            parent: customer.name.clone(),
            purchase: Some(pb::Purchase {
                order_id: "tls-order-1".into(),
                occur_time: Some(prost_types::Timestamp {
                    seconds: chrono_now() - 86_400,
                    nanos: 0,
                }),
                lines: vec![pb::PurchaseLine {
                    product_line: "herramientas".into(),
                    quantity: 1,
                    unit_price: Some(Money {
                        currency_code: "CLP".into(),
                        amount_minor: 12_990,
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();

    // The engine reads the registry's feed over mutual TLS: the customer gets classified.
    let mut classification =
        ClassificationServiceClient::new(channel(port, Some(with_identity)).await.unwrap());
    let mut classified = None;
    for _ in 0..300 {
        match classification
            .get_classification(class::GetClassificationRequest {
                customer: customer.name.clone(),
                min_event_sequence: 0,
            })
            .await
        {
            Ok(found) => {
                classified = Some(found.into_inner());
                break;
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
    assert!(classified.is_some(), "the engine never saw the customer");

    // Without a client certificate, or without TLS, nothing is served.
    let served = |tls: Option<ClientTlsConfig>| {
        let name = customer.name.clone();
        async move {
            match channel(port, tls).await {
                Err(_) => false,
                Ok(channel) => CustomerRegistryServiceClient::new(channel)
                    .get_customer(pb::GetCustomerRequest { name })
                    .await
                    .is_ok(),
            }
        }
    };
    let anonymous = ClientTlsConfig::new().ca_certificate(ca);
    assert!(
        !served(Some(anonymous)).await,
        "a client without a certificate was served"
    );
    assert!(!served(None).await, "a plaintext client was served");

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[test]
fn tls_settings_that_cannot_work_fail_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let bind = |tls: clientela_runtime::settings::ServerTlsSettings| {
        let mut common = clientela_runtime::CommonSettings::default();
        common.server.listen = "127.0.0.1:0".parse().unwrap();
        common.server.metrics_listen = None;
        common.server.tls = tls;
        runtime
            .block_on(clientela_runtime::App::bind(common))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let only_cert = bind(clientela_runtime::settings::ServerTlsSettings {
        cert_file: Some(missing.clone()),
        ..Default::default()
    })
    .unwrap_err();
    assert!(only_cert.contains("key_file"), "{only_cert}");
    let unreadable = bind(clientela_runtime::settings::ServerTlsSettings {
        cert_file: Some(missing.clone()),
        key_file: Some(missing.clone()),
        client_ca_file: None,
    })
    .unwrap_err();
    assert!(unreadable.contains("server.tls.cert_file"), "{unreadable}");
    let garbage = bind(clientela_runtime::settings::ServerTlsSettings {
        cert_file: Some(not_pem.clone()),
        key_file: Some(not_pem),
        client_ca_file: None,
    })
    .unwrap_err();
    assert!(garbage.contains("not a PEM file"), "{garbage}");
}
