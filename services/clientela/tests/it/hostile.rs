//! The standing bad-input test: every RPC of every Clientela service in the descriptor set
//! (so a service added later is covered without being listed here) gets the empty
//! message, random bytes, invalid UTF-8, oversized strings and lists, extreme numbers,
//! out-of-range timestamps, bad names and page tokens. No answer may be INTERNAL, UNKNOWN
//! or CANCELLED, every call ends, the services stay SERVING, and nothing is written.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

use clientela::{ALL_SERVICES, Settings};
use clientela_proto::clientela::registry::v1 as pb;
use clientela_proto::clientela::registry::v1::customer_registry_service_client::CustomerRegistryServiceClient;
use clientela_proto::clientela::territory::v1 as tpb;
use clientela_proto::clientela::territory::v1::territory_service_client::TerritoryServiceClient;
use clientela_testkit::{Engine, RawCodec};
use futures::StreamExt;
use http::uri::PathAndQuery;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use tonic::transport::Channel;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use clientela_runtime::time::{MAX_SECONDS, MIN_SECONDS};

/// Probes (by the end of their description) that no method may accept: no field allows
/// text that long, lists that long, invalid UTF-8 or a timestamp protobuf cannot hold.
const NEVER_VALID: &[&str] = &[
    "invalid UTF-8",
    "100k chars",
    "50k LIKE wildcards",
    "1000-term filter",
    "1 MB",
    "10k key",
    "5000 entries",
    "year -10000",
    "before year 1",
    "after year 9999",
    "i64::MIN seconds",
    "negative nanos",
    "2e9 nanos",
];

/// One hostile request: what it is, and its bytes.
struct Probe {
    what: String,
    bytes: Vec<u8>,
}

fn timestamp(pool: &DescriptorPool, seconds: i64, nanos: i32) -> Value {
    let desc = pool
        .get_message_by_name("google.protobuf.Timestamp")
        .unwrap();
    let mut ts = DynamicMessage::new(desc);
    ts.set_field_by_name("seconds", Value::I64(seconds));
    ts.set_field_by_name("nanos", Value::I32(nanos));
    Value::Message(ts)
}

/// The hostile values of one field (a list field gets each as its one element, and a
/// long list of plain values besides).
fn hostile_values(
    pool: &DescriptorPool,
    field: &FieldDescriptor,
    names: &Names,
) -> Vec<(String, Value)> {
    let long = "x".repeat(100_000);
    let like = "%_".repeat(25_000);
    let filter = vec!["customer_kind = \"PERSON\""; 1_000].join(" AND ");
    let mut values: Vec<(String, Value)> = match field.kind() {
        Kind::String => vec![
            ("100k chars".into(), Value::String(long)),
            ("50k LIKE wildcards".into(), Value::String(like)),
            ("1000-term filter".into(), Value::String(filter)),
            (
                "a bad name".into(),
                Value::String("customers/NOT-A-UUID".into()),
            ),
            (
                "a missing customer".into(),
                Value::String(names.missing.clone()),
            ),
            (
                "a merged customer".into(),
                Value::String(names.customer.clone()),
            ),
            (
                "an archived territory model".into(),
                Value::String(names.model.clone()),
            ),
            (
                "control characters".into(),
                Value::String("\u{0}\u{7}\u{1b}[2J".into()),
            ),
        ],
        Kind::Bytes => vec![("1 MB".into(), Value::Bytes(vec![0xff; 1 << 20].into()))],
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => [i32::MIN, -1, i32::MAX]
            .map(|n| (format!("{n}"), Value::I32(n)))
            .into(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => [i64::MIN, -1, i64::MAX]
            .map(|n| (format!("{n}"), Value::I64(n)))
            .into(),
        Kind::Uint32 | Kind::Fixed32 => vec![("u32::MAX".into(), Value::U32(u32::MAX))],
        Kind::Uint64 | Kind::Fixed64 => vec![("u64::MAX".into(), Value::U64(u64::MAX))],
        Kind::Double => [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MAX, -0.0]
            .map(|n| (format!("{n}"), Value::F64(n)))
            .into(),
        Kind::Float => [f32::NAN, f32::INFINITY, f32::MIN]
            .map(|n| (format!("{n}"), Value::F32(n)))
            .into(),
        Kind::Bool => vec![("true".into(), Value::Bool(true))],
        Kind::Enum(_) => [i32::MIN, -1, 9_999]
            .map(|n| (format!("enum {n}"), Value::EnumNumber(n)))
            .into(),
        Kind::Message(m) if m.full_name() == "google.protobuf.Timestamp" => vec![
            ("year -10000".into(), timestamp(pool, -377_705_116_800, 0)),
            ("before year 1".into(), timestamp(pool, MIN_SECONDS - 1, 0)),
            ("year 1".into(), timestamp(pool, MIN_SECONDS, 0)),
            (
                "year 9999".into(),
                timestamp(pool, MAX_SECONDS, 999_999_999),
            ),
            (
                "after year 9999".into(),
                timestamp(pool, MAX_SECONDS + 1, 0),
            ),
            ("i64::MIN seconds".into(), timestamp(pool, i64::MIN, 0)),
            ("negative nanos".into(), timestamp(pool, 0, -1)),
            ("2e9 nanos".into(), timestamp(pool, 0, 2_000_000_000)),
        ],
        Kind::Message(m) if m.full_name() == "google.protobuf.FieldMask" => {
            let mut mask = DynamicMessage::new(m);
            mask.set_field_by_name(
                "paths",
                Value::List(vec![
                    Value::String("no_such_field".into()),
                    Value::String("y".repeat(10_000)),
                ]),
            );
            vec![("bad paths".into(), Value::Message(mask))]
        }
        Kind::Message(m) => vec![("empty".into(), Value::Message(DynamicMessage::new(m)))],
    };
    if field.is_list() {
        let mut lists: Vec<(String, Value)> = values
            .drain(..)
            .map(|(what, v)| (what, Value::List(vec![v])))
            .collect();
        let element = match field.kind() {
            Kind::String => Some(Value::String("dup@example.com".into())),
            Kind::Message(m) => Some(Value::Message(DynamicMessage::new(m))),
            Kind::Enum(_) => Some(Value::EnumNumber(1)),
            _ => None,
        };
        if let Some(element) = element {
            lists.push(("5000 entries".into(), Value::List(vec![element; 5_000])));
        }
        lists
    } else if field.is_map() {
        // Maps are rare in requests; one entry with long key and value is enough.
        let Kind::Message(entry) = field.kind() else {
            unreachable!()
        };
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        if key.kind() == Kind::String && value.kind() == Kind::String {
            let mut map = std::collections::HashMap::new();
            map.insert(
                prost_reflect::MapKey::String("k".repeat(10_000)),
                Value::String("v".repeat(100_000)),
            );
            vec![("10k key".into(), Value::Map(map))]
        } else {
            Vec::new()
        }
    } else {
        values
    }
}

/// Resource names the probes use.
struct Names {
    /// A customer merged into another.
    customer: String,
    missing: String,
    /// An archived territory model, with a territory: read only.
    model: String,
}

/// Every probe of a request type: the empty message, random bytes, and one hostile
/// value per field, at the top level and one message deep.
fn probes(pool: &DescriptorPool, input: &MessageDescriptor, names: &Names) -> Vec<Probe> {
    let mut out = vec![
        Probe {
            what: "the empty message".into(),
            bytes: Vec::new(),
        },
        Probe {
            what: "0xff bytes".into(),
            bytes: vec![0xff; 16],
        },
    ];
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for n in 0..3 {
        let bytes = (0..64)
            .map(|_| {
                // xorshift: deterministic, so a failure reproduces.
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        out.push(Probe {
            what: format!("random bytes #{n}"),
            bytes,
        });
    }
    for field in input.fields() {
        if field.kind() == Kind::String && !field.is_list() && !field.is_map() {
            // Field tag with wire type 2, two bytes that are not UTF-8.
            let mut bytes = Vec::new();
            prost::encoding::encode_key(
                field.number(),
                prost::encoding::WireType::LengthDelimited,
                &mut bytes,
            );
            bytes.extend([2, 0xff, 0xfe]);
            out.push(Probe {
                what: format!("{}: invalid UTF-8", field.name()),
                bytes,
            });
        }
        for (what, value) in hostile_values(pool, &field, names) {
            let mut message = DynamicMessage::new(input.clone());
            message.set_field(&field, value);
            out.push(Probe {
                what: format!("{}: {what}", field.name()),
                bytes: message.encode_to_vec(),
            });
        }
        let Kind::Message(inner) = field.kind() else {
            continue;
        };
        if field.is_list() || field.is_map() || inner.package_name() == "google.protobuf" {
            continue;
        }
        for inner_field in inner.fields() {
            for (what, value) in hostile_values(pool, &inner_field, names) {
                let mut nested = DynamicMessage::new(inner.clone());
                nested.set_field(&inner_field, value);
                let mut message = DynamicMessage::new(input.clone());
                message.set_field(&field, Value::Message(nested));
                out.push(Probe {
                    what: format!("{}.{}: {what}", field.name(), inner_field.name()),
                    bytes: message.encode_to_vec(),
                });
            }
        }
    }
    out
}

fn short(text: &str) -> String {
    text.chars().take(160).collect()
}

/// What one call ended with (code and the start of its message); `None` means OK.
async fn call(
    channel: Channel,
    path: &str,
    client_streaming: bool,
    server_streaming: bool,
    bytes: Vec<u8>,
) -> Result<Option<(Code, String)>, String> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.map_err(|e| e.to_string())?;
    let path = PathAndQuery::from_str(path).unwrap();
    let ended = |status: Status| Ok(Some((status.code(), short(status.message()))));
    let read =
        async |mut stream: tonic::Streaming<Vec<u8>>| -> Result<Option<(Code, String)>, String> {
            loop {
                // A following stream (WatchEvents) may never end: quiet for a while is fine.
                match tokio::time::timeout(Duration::from_secs(2), stream.next()).await {
                    Err(_) | Ok(None) => return Ok(None),
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(status))) => return ended(status),
                }
            }
        };
    match (client_streaming, server_streaming) {
        (false, false) => {
            // A deadline, as real callers give: a read told to wait for a sequence never
            // written (min_event_sequence) answers DEADLINE_EXCEEDED within it.
            let mut request = tonic::Request::new(bytes);
            request.set_timeout(Duration::from_secs(3));
            match grpc.unary(request, path, RawCodec).await {
                Ok(_) => Ok(None),
                Err(status) => ended(status),
            }
        }
        (false, true) => {
            match grpc
                .server_streaming(tonic::Request::new(bytes), path, RawCodec)
                .await
            {
                Ok(response) => read(response.into_inner()).await,
                Err(status) => ended(status),
            }
        }
        (true, _) => {
            let requests = futures::stream::iter([bytes.clone(), bytes]);
            match grpc
                .streaming(tonic::Request::new(requests), path, RawCodec)
                .await
            {
                Ok(response) => read(response.into_inner()).await,
                Err(status) => ended(status),
            }
        }
    }
}

/// The territory models (every state), the territories they hold, and the sellers.
async fn territory_state(client: &mut TerritoryServiceClient<Channel>) -> (usize, i64, usize) {
    let mut state = (0, 0, 0);
    let mut page_token = String::new();
    loop {
        let page = client
            .list_territory_models(tpb::ListTerritoryModelsRequest {
                page_size: 1000,
                page_token,
                state: 0,
            })
            .await
            .unwrap()
            .into_inner();
        state.0 += page.territory_models.len();
        state.1 += page
            .territory_models
            .iter()
            .map(|m| i64::from(m.territory_count))
            .sum::<i64>();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    let mut page_token = String::new();
    loop {
        let page = client
            .list_sellers(tpb::ListSellersRequest {
                page_size: 1000,
                page_token,
                statuses: (1..=3).collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        state.2 += page.sellers.len();
        if page.next_page_token.is_empty() {
            return state;
        }
        page_token = page.next_page_token;
    }
}

/// The registry's feed head, and the number of customers.
async fn registry_state(client: &mut CustomerRegistryServiceClient<Channel>) -> (i64, usize) {
    let mut stream = client
        .watch_events(pb::WatchEventsRequest {
            after_sequence: 0,
            max_batch_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let mut head = 0;
    while let Ok(Some(batch)) = tokio::time::timeout(Duration::from_secs(1), stream.next()).await {
        if let Some(last) = batch.unwrap().events.last() {
            head = last.sequence;
        }
    }
    // Every status: archived and merged customers count too.
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_customers(pb::ListCustomersRequest {
                page_size: 1000,
                page_token,
                statuses: (1..=4).collect(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        count += page.customers.len();
        if page.next_page_token.is_empty() {
            return (head, count);
        }
        page_token = page.next_page_token;
    }
}

async fn every_rpc_survives_hostile_input(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::default();
    settings.common.server.listen = "127.0.0.1:0".parse().unwrap();
    settings.common.server.metrics_listen = None;
    settings.common.data_dir = dir.path().to_owned();
    let mut keep = Vec::new();
    for database in [
        &mut settings.registry.database,
        &mut settings.classification.database,
        &mut settings.territory.database,
    ] {
        let Some((url, guard)) = clientela_testkit::database(engine).await else {
            return;
        };
        database.url = clientela_runtime::Secret::new(url);
        keep.push(guard);
    }
    let app = clientela::build(&settings, ALL_SERVICES.to_vec())
        .await
        .unwrap();
    let addr = app.local_addr().unwrap();
    let shutdown = app.shutdown_handle();
    let server = tokio::spawn(app.serve(std::future::pending()));
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut registry = CustomerRegistryServiceClient::new(channel.clone());
    // The "existing customer" of the probes is merged into another: reads find its
    // tombstone, and every write to it must be refused.
    let mut create = async |name: &str| {
        registry
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    kind: pb::CustomerKind::Person.into(),
                    display_name: name.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .customer
            .unwrap()
            .name
    };
    let survivor = create("Survivor").await;
    let merged = create("Merged").await;
    registry
        .merge_customers(pb::MergeCustomersRequest {
            survivor,
            merged: merged.clone(),
            dry_run: false,
        })
        .await
        .unwrap();
    let mut territory = TerritoryServiceClient::new(channel.clone());
    let model = territory
        .create_territory_model(tpb::CreateTerritoryModelRequest {
            territory_model: Some(tpb::TerritoryModel {
                display_name: "Archived".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .territory_model
        .unwrap()
        .name;
    territory
        .create_territory(tpb::CreateTerritoryRequest {
            parent: model.clone(),
            territory: Some(tpb::Territory {
                code: "CL".into(),
                display_name: "Chile".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    territory
        .archive_territory_model(tpb::ArchiveTerritoryModelRequest {
            name: model.clone(),
            etag: String::new(),
        })
        .await
        .unwrap();
    let names = Names {
        customer: merged,
        missing: "customers/00000000-0000-7000-8000-000000000000".into(),
        model,
    };
    let before = (
        registry_state(&mut registry).await,
        territory_state(&mut territory).await,
    );

    let pool = DescriptorPool::decode(clientela_proto::FILE_DESCRIPTOR_SET).unwrap();
    let mut failures = Vec::new();
    let mut accepted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut calls = 0;
    for service in pool
        .services()
        .filter(|s| s.package_name().starts_with("clientela."))
    {
        for method in service.methods() {
            let path = format!("/{}/{}", service.full_name(), method.name());
            for probe in probes(&pool, &method.input(), &names) {
                calls += 1;
                let outcome = tokio::time::timeout(
                    Duration::from_secs(20),
                    call(
                        channel.clone(),
                        &path,
                        method.is_client_streaming(),
                        method.is_server_streaming(),
                        probe.bytes,
                    ),
                )
                .await;
                match outcome {
                    Err(_) => failures.push(format!("{path} {}: did not end", probe.what)),
                    Ok(Err(transport)) => {
                        failures.push(format!("{path} {}: transport: {transport}", probe.what));
                    }
                    Ok(Ok(Some((
                        code @ (Code::Internal | Code::Unknown | Code::Cancelled),
                        message,
                    )))) => {
                        failures.push(format!("{path} {}: {code:?} {message}", probe.what));
                    }
                    Ok(Ok(None)) if NEVER_VALID.iter().any(|bad| probe.what.ends_with(bad)) => {
                        failures.push(format!("{path} {}: accepted", probe.what));
                    }
                    Ok(Ok(None)) => accepted
                        .entry(method.name().to_owned())
                        .or_default()
                        .push(probe.what),
                    Ok(Ok(Some(_))) => {}
                }
            }
        }
    }
    eprintln!("{calls} hostile calls; accepted: {accepted:#?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );

    let mut health = HealthClient::new(channel.clone());
    for service in pool
        .services()
        .filter(|s| s.package_name().starts_with("clientela."))
    {
        let status = health
            .check(HealthCheckRequest {
                service: service.full_name().to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            status,
            ServingStatus::Serving as i32,
            "{}",
            service.full_name()
        );
    }
    let after = (
        registry_state(&mut registry).await,
        territory_state(&mut territory).await,
    );
    // A territory model and a seller need only their display name, so a probe that sets
    // just that to a name-like text is a valid create: one each, nothing else.
    let created = |method: &str| accepted.get(method).map_or(0, Vec::len);
    let expected = (
        before.0,
        (
            before.1.0 + created("CreateTerritoryModel"),
            before.1.1,
            before.1.2 + created("CreateSeller"),
        ),
    );
    assert_eq!(after, expected, "a hostile call wrote");
    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_survives_hostile_input_on_sqlite() {
    every_rpc_survives_hostile_input(Engine::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_survives_hostile_input_on_postgres() {
    every_rpc_survives_hostile_input(Engine::Postgres).await;
}
