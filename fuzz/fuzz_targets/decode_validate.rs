//! Arbitrary bytes, decoded as a contract-service request, handed to the real
//! handler (validation, rules, SQLite store). The service must never panic and
//! never answer INTERNAL or UNKNOWN. The first byte picks the RPC and the caller.

#![no_main]

use std::sync::{Arc, OnceLock};

use contract_service::domain::Rules;
use contract_service::grpc::ContractApi;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use shared::auth::Caller;
use shared::proto::contract::v1 as pb;
use shared::proto::contract::v1::contract_service_server::ContractService;
use tonic::{Code, Request};

struct Harness {
    runtime: tokio::runtime::Runtime,
    api: ContractApi,
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let api = runtime.block_on(async {
            let path = std::env::temp_dir().join(format!("fuzz-{}.db", std::process::id()));
            let db = shared::db::Db::connect(&shared::db::DbOptions::new(format!("sqlite://{}", path.display())))
                .await
                .expect("db");
            db.migrate(&contract_service::store::MIGRATIONS).await.expect("migrate");
            let clock = Arc::new(shared::clock::TestClock::new(chrono::Utc::now()));
            ContractApi::new(db, clock, Rules::default(), shared::outbox::Relay::new())
        });
        Harness { runtime, api }
    })
}

fn with_caller<T>(message: T, selector: u8) -> Request<T> {
    let caller = if selector & 0x80 == 0 {
        Caller::User { id: format!("user-{}", selector & 0x03) }
    } else {
        Caller::Service {
            name: "fuzz".into(),
            scopes: ["contracts:write", "contracts:read", "payments:write", "events:read", "admin"].map(String::from).to_vec(),
        }
    };
    let mut request = Request::new(message);
    request.extensions_mut().insert(caller);
    request
}

fn check<T>(result: Result<tonic::Response<T>, tonic::Status>) {
    if let Err(status) = result {
        assert!(!matches!(status.code(), Code::Internal | Code::Unknown), "{status:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let h = harness();
    let api = &h.api;
    h.runtime.block_on(async {
        macro_rules! rpc {
            ($ty:ty, $method:ident) => {
                if let Ok(message) = <$ty>::decode(bytes) {
                    check(api.$method(with_caller(message, selector)).await);
                }
            };
        }
        match selector % 17 {
            0 => rpc!(pb::CreateContractRequest, create_contract),
            1 => rpc!(pb::GetContractRequest, get_contract),
            2 => rpc!(pb::BatchGetContractsRequest, batch_get_contracts),
            3 => rpc!(pb::ListContractsRequest, list_contracts),
            4 => rpc!(pb::EndContractRequest, end_contract),
            5 => rpc!(pb::LogTimeRequest, log_time),
            6 => rpc!(pb::DeleteTimeEntryRequest, delete_time_entry),
            7 => rpc!(pb::GetWorkDiaryRequest, get_work_diary),
            8 => rpc!(pb::RecordPaymentRequest, record_payment),
            9 => rpc!(pb::RefundPaymentRequest, refund_payment),
            10 => rpc!(pb::GetBillingWeekRequest, get_billing_week),
            11 => rpc!(pb::DisputeHoursRequest, dispute_hours),
            12 => rpc!(pb::AcceptDisputeRequest, accept_dispute),
            13 => rpc!(pb::DeclineDisputeRequest, decline_dispute),
            14 => rpc!(pb::ResolveDisputeRequest, resolve_dispute),
            15 => rpc!(pb::WithdrawDisputeRequest, withdraw_dispute),
            _ => rpc!(pb::ListDisputesRequest, list_disputes),
        }
    });
});
