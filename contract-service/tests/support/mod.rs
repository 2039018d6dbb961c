//! What contract-service's binary tests add to `shared::testing`: starting
//! this crate's binary, and the contract their writers keep creating.
// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::net::SocketAddr;

use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_client::ContractServiceClient;
use shared::testing::{channel, start_service, usd_contract};
use tokio::process::Child;
use tonic::transport::Channel;

/// Starts the contract-service binary (`--dev`) on `addr` against
/// `database_url`, with `extra` flags.
pub fn start(addr: SocketAddr, database_url: &str, extra: &[&str]) -> Child {
    start_service(
        env!("CARGO_BIN_EXE_contract-service"),
        addr,
        database_url,
        extra,
    )
}

/// A client of the contract-service on `addr`, once it answers.
pub async fn connect(addr: SocketAddr) -> ContractServiceClient<Channel> {
    ContractServiceClient::new(channel(addr).await)
}

/// A fixed-price USD contract that started a day ago.
pub fn fixed_price(
    client_id: String,
    freelancer_id: String,
    title: &str,
    request_id: String,
) -> pb::CreateContractRequest {
    pb::CreateContractRequest {
        start_time: Some(shared::time::to_proto(
            chrono::Utc::now() - chrono::Duration::days(1),
        )),
        request_id,
        ..usd_contract(
            pb::ContractType::FixedPrice,
            client_id,
            freelancer_id,
            title,
        )
    }
}
