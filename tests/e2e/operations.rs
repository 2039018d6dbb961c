//! Authentication, health and reflection as platform tooling sees them.

use e2e::{TestApp, TestBackend, as_user, with_token};
use shared::auth::{TokenSpec, mint};
use shared::proto::contract::v1 as pb;
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
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
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
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = ServerReflectionClient::new(channel);
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
    assert!(
        names
            .iter()
            .any(|n| n == "marketplace.contract.v1.ContractService"),
        "{names:?}"
    );
    assert!(
        names
            .iter()
            .any(|n| n == "marketplace.feedback.v1.FeedbackService"),
        "{names:?}"
    );
}
