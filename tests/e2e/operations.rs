//! Authentication, health and reflection as platform tooling sees them.

use e2e::{TestApp, TestBackend, as_user, with_token};
use shared::auth::{TokenSpec, mint};
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::testing::{InProcess, usd_contract};
use tonic::Code;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let app = TestApp::spawn(&TestBackend::Sqlite).await;
    let mut client = app.contracts.clone();
    let request = pb::GetContractRequest {
        contract_id: shared::ids::new_id("ctr"),
    };
    let none = client
        .get_contract(tonic::Request::new(request.clone()))
        .await;
    assert_eq!(none.expect_err("no token").code(), Code::Unauthenticated);
    let forged = mint(&TokenSpec::user("alice"), b"not the dev key").expect("mint");
    let bad = client
        .get_contract(with_token(&forged, request.clone()))
        .await;
    assert_eq!(bad.expect_err("forged").code(), Code::Unauthenticated);
    let valid = client.get_contract(as_user("alice", request)).await;
    assert_eq!(
        valid.expect_err("unknown contract").code(),
        Code::PermissionDenied
    );
}

#[tokio::test]
async fn health_answers_without_a_token() {
    let app = TestApp::spawn(&TestBackend::Sqlite).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(app.channel().await);
    for service in ["", "marketplace.contract.v1.ContractService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status;
        assert_eq!(
            status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_restarted_service_keeps_its_data() {
    let backend = TestBackend::Sqlite;
    let url = backend.fresh_database_url().await;
    let app = TestApp::spawn_on(
        url.clone(),
        shared::clock::TestClock::new(e2e::test_epoch()),
    )
    .await;
    let c = app.hourly_contract("client-1", "free-1").await;
    app.stop().await;
    let again = TestApp::spawn_on(url, shared::clock::TestClock::new(e2e::test_epoch())).await;
    let read = again
        .get_contract(as_user(
            "client-1",
            pb::GetContractRequest {
                contract_id: c.id.clone(),
            },
        ))
        .await
        .expect("still there");
    assert_eq!(read.id, c.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_is_unavailable_and_recovers_without_a_restart() {
    let Some(backend) = TestBackend::postgres() else {
        return;
    };
    let url = backend.fresh_database_url().await;
    // Route the service's database connections through a proxy we can cut.
    let (prefix, rest) = url.split_once('@').expect("postgres URL with credentials");
    let (host_port, database) = rest.split_once('/').expect("postgres URL with a database");
    let target = tokio::net::lookup_host(host_port)
        .await
        .expect("resolve")
        .next()
        .expect("an address");
    let proxy = e2e::proxy::TcpProxy::start(target).await.expect("proxy");
    let proxied = format!("{prefix}@{}/{database}", proxy.addr());
    let app = TestApp::spawn_on(proxied, shared::clock::TestClock::new(e2e::test_epoch())).await;
    let c = app.hourly_contract("client-1", "free-1").await;
    let read = || {
        app.get_contract(as_user(
            "client-1",
            pb::GetContractRequest {
                contract_id: c.id.clone(),
            },
        ))
    };

    proxy.cut();
    let down = read().await.expect_err("database is down");
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert_eq!(
        shared::status::reason(&down).as_deref(),
        Some("DATABASE_UNAVAILABLE")
    );
    let write = app
        .log_time("free-1", &c.id, e2e::at("2026-11-18T09:00:00Z"), 10)
        .await;
    assert_eq!(
        write.expect_err("database is down").code(),
        Code::Unavailable
    );

    proxy.restore().await.expect("restore");
    let mut recovered = None;
    for _ in 0..50 {
        if let Ok(contract) = read().await {
            recovered = Some(contract);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(recovered.expect("service recovers on its own").id, c.id);
    app.log_time("free-1", &c.id, e2e::at("2026-11-18T09:00:00Z"), 10)
        .await
        .expect("nothing was written while down, so the segment is free");
}

#[tokio::test]
async fn reflection_v1_lists_the_services() {
    use futures::StreamExt;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

    let app = TestApp::spawn(&TestBackend::Sqlite).await;
    let mut client = ServerReflectionClient::new(app.channel().await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .expect("reflection v1")
        .into_inner();
    let response = responses.next().await.expect("one answer").expect("ok");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    // What this server runs, and nothing it does not: grpcurl users call
    // what `list` shows.
    for served in [
        "marketplace.contract.v1.ContractService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(names.iter().any(|n| n == served), "{served} in {names:?}");
    }
    for elsewhere in [
        "marketplace.feedback.v1.FeedbackService",
        "marketplace.testing.v1.EchoService",
    ] {
        assert!(
            !names.iter().any(|n| n == elsewhere),
            "{elsewhere} in {names:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_ports_show_the_named_metrics_moving() {
    use e2e::{Stack, http_get, metric_value};
    let s = Stack::spawn(&TestBackend::Sqlite).await;
    let service = [("grpc_service", "marketplace.contract.v1.ContractService")];
    let before = http_get(s.contracts.metrics_addr, "/metrics").await;
    let created = |text: &str| {
        metric_value(
            text,
            "grpc_server_handled_total",
            &[
                service[0],
                ("grpc_method", "CreateContract"),
                ("grpc_code", "OK"),
                ("grpc_type", "unary"),
            ],
        )
        .unwrap_or(0.0)
    };
    let c = s
        .contract(
            "client-1",
            "free-1",
            chrono::Duration::days(40),
            Some(chrono::Duration::days(1)),
        )
        .await;
    s.contracts
        .end_contract("mallory", &c.id, "")
        .await
        .expect_err("not a party");
    s.feedback
        .eligibility("client-1", &c.id)
        .await
        .expect("eligibility");

    let after = http_get(s.contracts.metrics_addr, "/metrics").await;
    assert_eq!(created(&after) - created(&before), 1.0, "{after}");
    let denied = metric_value(
        &after,
        "grpc_server_handled_total",
        &[
            ("grpc_method", "EndContract"),
            ("grpc_code", "PermissionDenied"),
        ],
    );
    assert_eq!(denied, Some(1.0));
    let started = metric_value(
        &after,
        "grpc_server_started_total",
        &[("grpc_method", "CreateContract")],
    );
    assert_eq!(started, Some(1.0));
    let latency = metric_value(
        &after,
        "grpc_server_handling_seconds_count",
        &[("grpc_method", "CreateContract")],
    );
    assert_eq!(latency, Some(1.0));
    for gauge in [
        "db_pool_connections{",
        "outbox_unsequenced_events ",
        "outbox_last_sequence ",
    ] {
        assert!(after.contains(gauge), "{gauge} missing in {after}");
    }

    // feedback-service counts its calls to contract-service as a client.
    let feedback = http_get(s.feedback.metrics_addr, "/metrics").await;
    let client_calls = metric_value(
        &feedback,
        "grpc_client_handled_total",
        &[
            service[0],
            ("grpc_method", "GetContract"),
            ("grpc_code", "OK"),
        ],
    );
    assert_eq!(client_calls, Some(1.0), "{feedback}");
    let served = metric_value(
        &feedback,
        "grpc_server_handled_total",
        &[
            ("grpc_method", "CheckMidContractEligibility"),
            ("grpc_code", "OK"),
        ],
    );
    assert_eq!(served, Some(1.0));
    assert!(feedback.contains("bonus_pending"), "{feedback}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_under_load_loses_no_accepted_request() {
    use e2e::as_service;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let url = TestBackend::Sqlite.fresh_database_url().await;
    let clock = shared::clock::TestClock::new(e2e::test_epoch());
    let app = TestApp::spawn_on(url.clone(), clock.clone()).await;
    let done = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..16)
        .map(|worker| {
            let (mut client, done) = (app.contracts.clone(), done.clone());
            tokio::spawn(async move {
                let (mut accepted, mut refused) = (Vec::new(), 0);
                for i in 0.. {
                    if done.load(Ordering::Relaxed) || refused > 3 {
                        break;
                    }
                    let request = pb::CreateContractRequest {
                        request_id: format!("load-{worker}-{i}"),
                        ..usd_contract(
                            pb::ContractType::FixedPrice,
                            format!("client-{worker}"),
                            format!("free-{i}"),
                            "load",
                        )
                    };
                    match client
                        .create_contract(as_service("hiring", &["contracts:write"], request))
                        .await
                    {
                        Ok(response) => {
                            accepted.push(response.into_inner().contract.expect("contract").id)
                        }
                        Err(status) => {
                            // Refused or cut off by the shutdown: never a rule
                            // failure. A call sent as the server's GOAWAY
                            // arrives is refused by the client's own HTTP/2
                            // stack, which tonic reports as INTERNAL with the
                            // transport error as its source (the server never
                            // answered it).
                            let refused_by_transport = status.code() == Code::Internal
                                && std::error::Error::source(&status).is_some_and(|source| {
                                    source.downcast_ref::<tonic::transport::Error>().is_some()
                                });
                            assert!(
                                matches!(
                                    status.code(),
                                    Code::Unavailable | Code::Cancelled | Code::Unknown
                                ) || refused_by_transport,
                                "{status:?}"
                            );
                            refused += 1;
                        }
                    }
                }
                accepted
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // The same path SIGTERM takes: health NOT_SERVING, drain, workers stop.
    tokio::time::timeout(std::time::Duration::from_secs(30), app.stop())
        .await
        .expect("the drain is bounded");
    done.store(true, Ordering::Relaxed);
    let mut accepted = Vec::new();
    for sender in senders {
        accepted.extend(sender.await.expect("join"));
    }
    assert!(!accepted.is_empty(), "the load reached the service");

    let again = TestApp::spawn_on(url, clock).await;
    let ids: Vec<String> = accepted.clone();
    for chunk in ids.chunks(100) {
        let batch = again
            .contracts
            .clone()
            .batch_get_contracts(as_service(
                "audit",
                &["contracts:read"],
                pb::BatchGetContractsRequest {
                    contract_ids: chunk.to_vec(),
                },
            ))
            .await
            .expect("batch")
            .into_inner();
        assert!(
            batch.missing_contract_ids.is_empty(),
            "accepted but lost: {:?}",
            batch.missing_contract_ids
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_drain_is_bounded_even_with_open_streams() {
    use shared::testing::Outbox;
    let mut config_drain = None;
    let app = TestApp::spawn_with(&TestBackend::Sqlite, |config| {
        config.service.serve.drain_timeout_secs = 1;
        config_drain = Some(config.service.serve.drain_timeout_secs);
    })
    .await;
    assert_eq!(config_drain, Some(1));
    let _stream = app
        .contracts
        .clone()
        .watch_as("audit", 0)
        .await
        .expect("watch");
    // A WatchEvents stream never ends by itself; the drain timeout ends it.
    tokio::time::timeout(std::time::Duration::from_secs(15), app.stop())
        .await
        .expect("stopped within the drain timeout");
}

#[tokio::test]
async fn the_test_clock_service_moves_time_for_the_rules() {
    use shared::proto::testing::v1 as tpb;
    use shared::proto::testing::v1::test_clock_service_client::TestClockServiceClient;
    let app = TestApp::spawn_with_clock_control(&TestBackend::Sqlite).await;
    let mut clock = TestClockServiceClient::new(app.channel().await);
    let day = prost_types::Duration {
        seconds: 86_400,
        nanos: 0,
    };
    let moved = clock
        .advance_time(as_user("ops", tpb::AdvanceTimeRequest { by: Some(day) }))
        .await
        .expect("advance")
        .into_inner()
        .now;
    let expected = e2e::test_epoch() + chrono::Duration::days(1);
    assert_eq!(moved, Some(e2e::ts(expected)));
    let created = app.hourly_contract("client-1", "free-1").await;
    assert_eq!(
        created.create_time,
        Some(e2e::ts(expected)),
        "rules read the moved clock"
    );
    let backwards = clock
        .advance_time(as_user(
            "ops",
            tpb::AdvanceTimeRequest {
                by: Some(prost_types::Duration {
                    seconds: -1,
                    nanos: 0,
                }),
            },
        ))
        .await
        .expect_err("negative");
    assert_eq!(backwards.code(), Code::InvalidArgument);
    let anonymous = clock
        .get_time(tonic::Request::new(tpb::GetTimeRequest {}))
        .await;
    assert_eq!(
        anonymous.expect_err("no token").code(),
        Code::Unauthenticated
    );
}

/// A CA, a server certificate for `localhost` and a client certificate, as PEM files in `dir`.
fn certificates(dir: &std::path::Path) -> [String; 5] {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "marketplace test CA");
    let ca =
        CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
    let server_key = KeyPair::generate().expect("key");
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&server_key, &ca)
        .expect("server cert");
    let client_key = KeyPair::generate().expect("key");
    let mut client_params =
        CertificateParams::new(vec!["feedback-service".to_owned()]).expect("params");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params
        .signed_by(&client_key, &ca)
        .expect("client cert");
    let files = [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", server_key.serialize_pem()),
        ("client.pem", client.pem()),
        ("client.key", client_key.serialize_pem()),
    ];
    files.map(|(name, pem)| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("write pem");
        path.display().to_string()
    })
}

/// Whether client-1 can read its contract through `endpoint` (false when the
/// connection or the call is refused).
async fn reads_contract(endpoint: tonic::transport::Endpoint, contract_id: &str) -> bool {
    let Ok(channel) = endpoint.connect().await else {
        return false;
    };
    let request = pb::GetContractRequest {
        contract_id: contract_id.into(),
    };
    ContractServiceClient::new(channel)
        .get_contract(as_user("client-1", request))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn feedback_reaches_contract_service_over_mutual_tls_and_strangers_cannot() {
    use std::sync::Arc;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
    let dir = std::env::temp_dir().join(format!("mtls-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let [ca, server_cert, server_key, client_cert, client_key] = certificates(&dir);
    let clock = shared::clock::TestClock::new(e2e::test_epoch());

    let url = TestBackend::Sqlite.fresh_database_url().await;
    let mut config = contract_service::Config::dev("127.0.0.1:0".parse().expect("addr"), url);
    config.service.serve.tls_cert_file = Some(server_cert);
    config.service.serve.tls_key_file = Some(server_key);
    config.service.serve.tls_client_ca_file = Some(ca.clone());
    let app = contract_service::Application::build(&config, Arc::new(clock.clone()))
        .await
        .expect("build");
    let addr = app.addr();
    let server = InProcess::spawn(|shutdown| app.run_until_stopped(shutdown));

    let pem = |path: &str| std::fs::read(path).expect("pem");
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(pem(&ca)))
        .domain_name("localhost");
    let with_identity = tls
        .clone()
        .identity(Identity::from_pem(pem(&client_cert), pem(&client_key)));
    let channel = Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(with_identity)
        .expect("tls")
        .connect()
        .await
        .expect("mutual TLS handshake");
    let mut contracts = ContractServiceClient::new(channel);
    let created = contracts
        .create_contract(e2e::as_service(
            "hiring",
            &["contracts:write"],
            pb::CreateContractRequest {
                start_time: Some(e2e::ts(e2e::test_epoch() - chrono::Duration::days(40))),
                ..usd_contract(
                    pb::ContractType::FixedPrice,
                    "client-1",
                    "free-1",
                    "over TLS",
                )
            },
        ))
        .await
        .expect("create over mTLS")
        .into_inner()
        .contract
        .expect("contract");

    // feedback-service calls contract-service over mutual TLS.
    let feedback_db = TestBackend::Sqlite.fresh_database_url().await;
    let mut feedback_config = e2e::FeedbackApp::config(&feedback_db, addr);
    feedback_config.contract_service_url = format!("https://{addr}");
    feedback_config.contract_service_ca_file = Some(ca.clone());
    feedback_config.contract_service_tls_domain = Some("localhost".into());
    feedback_config.contract_service_client_cert_file = Some(client_cert);
    feedback_config.contract_service_client_key_file = Some(client_key);
    let feedback = e2e::FeedbackApp::spawn(feedback_config, clock).await;
    let eligibility = feedback
        .eligibility("client-1", &created.id)
        .await
        .expect("feedback -> contract over mTLS");
    assert_eq!(eligibility.contract_id, created.id);

    // Plaintext, and TLS without a client certificate, are refused.
    let plaintext = Channel::from_shared(format!("http://{addr}")).expect("uri");
    assert!(
        !reads_contract(plaintext, &created.id).await,
        "plaintext must not be served"
    );
    let anonymous = Channel::from_shared(format!("https://{addr}"))
        .expect("uri")
        .tls_config(tls)
        .expect("tls");
    assert!(
        !reads_contract(anonymous, &created.id).await,
        "a client without a certificate must be refused"
    );
    server.stop().await.expect("server ran cleanly");
    std::fs::remove_dir_all(dir).ok();
}
