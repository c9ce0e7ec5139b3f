//! Who may call what is decided for every method: the binary serves every Clientela
//! service of the descriptor set, and a service whose access table misses a method of
//! its proto does not start.

use clientela::{ALL_SERVICES, Settings};
use clientela_runtime::auth::{Access, described_services, methods_without_rule};

#[tokio::test]
async fn every_service_in_the_descriptor_set_is_served_with_a_rule_for_every_method() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.common.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.common.server.metrics_listen = None;
    settings.common.data_dir = dir.path().to_owned();
    // Starting checks every service's table against its proto (App::add_service).
    let app = clientela::build(&settings, ALL_SERVICES.to_vec())
        .await
        .expect("every service starts, so every method has a rule");
    let served = app.service_names();
    let described = described_services();
    assert!(described.len() >= 3, "{described:?}");
    for (service, methods) in &described {
        assert!(
            served.contains(&service.as_str()),
            "{service} is in the protos but the binary does not serve it"
        );
        assert!(!methods.is_empty(), "{service} has no methods");
    }
}

#[tokio::test]
async fn a_service_started_without_the_feeds_it_follows_says_which_url_to_set() {
    use clientela::Service;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.common.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.common.server.metrics_listen = None;
    settings.common.data_dir = dir.path().to_owned();
    // Alone, with no URL, it would call its own address forever.
    for (services, setting) in [
        (vec![Service::Classification], "classification.registry_url"),
        (vec![Service::Territory], "territory.registry_url"),
        (
            vec![Service::Registry, Service::Territory],
            "territory.classification_url",
        ),
    ] {
        let err = clientela::build(&settings, services.clone())
            .await
            .expect_err("refused at start-up");
        assert!(
            err.to_string().contains(&format!("{setting} is required")),
            "{services:?}: {err}"
        );
    }
    settings.territory.registry_url = "http://127.0.0.1:1".into();
    settings.territory.classification_url = "http://127.0.0.1:1".into();
    clientela::build(&settings, vec![Service::Territory])
        .await
        .expect("with both URLs it starts (and retries until they answer)");
}

#[test]
fn a_table_that_misses_a_method_is_found_out() {
    fn all_but_get(method: &str) -> Option<Access> {
        (method != "GetCustomer").then_some(Access::Read)
    }
    let service = "clientela.registry.v1.CustomerRegistryService";
    assert_eq!(methods_without_rule(service, all_but_get), ["GetCustomer"]);
    assert_eq!(
        methods_without_rule(service, clientela_registry::api::method_access),
        Vec::<String>::new()
    );
    assert_eq!(
        methods_without_rule(
            "clientela.classification.v1.ClassificationService",
            clientela_classification::api::method_access
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        methods_without_rule(
            clientela_territory::SERVICE_NAME,
            clientela_territory::api::method_access
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        methods_without_rule("clientela.nothing.v1.NoService", all_but_get),
        ["clientela.nothing.v1.NoService (not in the descriptor set)"]
    );
}
