//! Hostile input: generated requests of every kind, with strings full of SQL
//! metacharacters, emoji, right-to-left marks, NULs and control characters,
//! out-of-range numbers and timestamps, unknown enum values, tampered page
//! tokens and oversized messages. Whatever comes in, the services answer with
//! a documented code (never INTERNAL or UNKNOWN), never panic, and store text
//! verbatim when they accept it. The generator is seeded, so a failure
//! reproduces; the failing input is printed.

use e2e::scenario::{ended_contract, paid_contract};
use e2e::{EARLY_CLIENT, Stack, TestBackend, as_service, as_user, backend_tests};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;
use tonic::Code;

/// Generated requests per backend.
const CASES: usize = 60;

fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("'; DROP TABLE contracts; --".to_owned()),
        Just("\" OR 1=1 /*".to_owned()),
        Just("🙂👩‍💻🚀".to_owned()),
        Just("\u{202E}evil\u{202C} right-to-left".to_owned()),
        Just("nul\0byte".to_owned()),
        Just("tab\tnew\nline".to_owned()),
        Just("$1 $2 ?1 :name @x %s {}".to_owned()),
        "\\PC{0,40}",
        any::<String>(),
        proptest::collection::vec(any::<char>(), 0..200).prop_map(|v| v.into_iter().collect()),
        "[a-z]{4990,5010}",
    ]
}

fn hostile_id() -> impl Strategy<Value = String> {
    prop_oneof![
        hostile_text(),
        Just("ctr_".to_owned()),
        "ctr_[0-9a-f]{32}",
        "[a-z]{3}_[0-9a-fA-F]{0,40}"
    ]
}

fn hostile_time() -> impl Strategy<Value = Option<prost_types::Timestamp>> {
    prop_oneof![
        Just(None),
        (any::<i64>(), any::<i32>())
            .prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
        (1_700_000_000i64..1_900_000_000, 0i32..1_000_000_000)
            .prop_map(|(seconds, nanos)| Some(prost_types::Timestamp { seconds, nanos })),
    ]
}

#[derive(Debug, Clone)]
struct Input {
    text: String,
    other_text: String,
    id: String,
    number: i64,
    small: i32,
    enum_value: i32,
    time: Option<prost_types::Timestamp>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        hostile_text(),
        hostile_text(),
        hostile_id(),
        any::<i64>(),
        any::<i32>(),
        -3i32..12,
        hostile_time(),
    )
        .prop_map(
            |(text, other_text, id, number, small, enum_value, time)| Input {
                text,
                other_text,
                id,
                number,
                small,
                enum_value,
                time,
            },
        )
}

/// Codes a service may answer hostile input with.
fn documented(code: Code) -> bool {
    matches!(
        code,
        Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::OutOfRange
    )
}

fn check<T>(what: &str, input: &Input, result: &Result<tonic::Response<T>, tonic::Status>) {
    if let Err(status) = result {
        assert!(
            documented(status.code()),
            "{what} answered {status:?} for {input:?}"
        );
    }
}

async fn hostile_requests_get_documented_answers_and_text_is_stored_verbatim(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let real = paid_contract(&s, EARLY_CLIENT, "free-h").await;
    let ended = ended_contract(&s, EARLY_CLIENT, "free-h").await;
    let mut runner = TestRunner::deterministic();
    let strategy = input();
    let mut stored = 0;
    for case in 0..CASES {
        let i = strategy.new_tree(&mut runner).expect("generate").current();
        let mut contracts = s.contracts.contracts.clone();
        let mut feedback = s.feedback.client();
        // Every other case aims at a real contract, so rules past validation run too.
        let target = if case % 2 == 0 {
            real.id.clone()
        } else {
            i.id.clone()
        };

        let create = pb::CreateContractRequest {
            client_id: i.other_text.clone(),
            freelancer_id: format!("f-{case}"),
            agency_id: i.id.clone(),
            title: i.text.clone(),
            r#type: i.enum_value,
            currency_code: i.other_text.chars().take(3).collect(),
            hourly_rate_minor: i.number,
            weekly_limit_minutes: i.small,
            allow_manual_time: Some(i.small % 2 == 0),
            start_time: i.time,
            request_id: i.id.clone(),
        };
        let created = contracts
            .create_contract(as_service("hiring", &["contracts:write"], create))
            .await;
        check("CreateContract", &i, &created);
        let safe_title = pb::CreateContractRequest {
            client_id: "client-h".into(),
            freelancer_id: format!("free-{case}"),
            title: i.text.clone(),
            r#type: pb::ContractType::FixedPrice as i32,
            currency_code: "USD".into(),
            ..Default::default()
        };
        match contracts
            .create_contract(as_service("hiring", &["contracts:write"], safe_title))
            .await
        {
            Ok(response) => {
                let contract = response.into_inner().contract.expect("contract");
                let read = contracts
                    .get_contract(as_service(
                        "audit",
                        &["contracts:read"],
                        pb::GetContractRequest {
                            contract_id: contract.id,
                        },
                    ))
                    .await
                    .expect("read back");
                assert_eq!(
                    read.into_inner().contract.expect("contract").title,
                    i.text,
                    "stored verbatim"
                );
                stored += 1;
            }
            Err(status) => assert_eq!(status.code(), Code::InvalidArgument, "{status:?} for {i:?}"),
        }

        let log = pb::LogTimeRequest {
            contract_id: target.clone(),
            start_time: i.time,
            minutes: i.small,
            manual: i.number % 2 == 0,
            memo: i.text.clone(),
            request_id: i.other_text.clone(),
        };
        check(
            "LogTime",
            &i,
            &contracts.log_time(as_user("free-h", log)).await,
        );
        let end = pb::EndContractRequest {
            contract_id: i.id.clone(),
            reason: i.text.clone(),
            request_id: i.other_text.clone(),
        };
        check(
            "EndContract",
            &i,
            &contracts.end_contract(as_user(EARLY_CLIENT, end)).await,
        );
        let pay = pb::RecordPaymentRequest {
            contract_id: target.clone(),
            kind: i.enum_value,
            amount: Some(pb::Money {
                currency_code: i.other_text.clone(),
                amount_minor: i.number,
            }),
            paid_time: i.time,
            memo: i.text.clone(),
            request_id: i.id.clone(),
            billing_week_time: i.time,
        };
        check(
            "RecordPayment",
            &i,
            &contracts
                .record_payment(as_service("billing", &["payments:write"], pay))
                .await,
        );
        let refund = pb::RefundPaymentRequest {
            payment_id: i.id.clone(),
            amount: Some(pb::Money {
                currency_code: "USD".into(),
                amount_minor: i.number,
            }),
            reason: i.text.clone(),
            request_id: i.other_text.clone(),
        };
        check(
            "RefundPayment",
            &i,
            &contracts.refund_payment(as_user("free-h", refund)).await,
        );
        let dispute = pb::DisputeHoursRequest {
            contract_id: target.clone(),
            week_time: i.time,
            reason: i.text.clone(),
            request_id: i.other_text.clone(),
            disputed_minutes: i32::try_from(i.number).unwrap_or(i32::MAX),
        };
        check(
            "DisputeHours",
            &i,
            &contracts
                .dispute_hours(as_user(EARLY_CLIENT, dispute))
                .await,
        );
        let list = pb::ListContractsRequest {
            party_id: i.other_text.clone(),
            state: i.enum_value,
            page_size: i.small,
            page_token: i.text.clone(),
        };
        check(
            "ListContracts",
            &i,
            &contracts
                .list_contracts(as_service("audit", &["contracts:read"], list))
                .await,
        );
        let diary = pb::GetWorkDiaryRequest {
            contract_id: target.clone(),
            week_time: i.time,
        };
        check(
            "GetWorkDiary",
            &i,
            &contracts.get_work_diary(as_user(EARLY_CLIENT, diary)).await,
        );
        let batch = pb::BatchGetContractsRequest {
            contract_ids: vec![i.id.clone(), target.clone()],
        };
        check(
            "BatchGetContracts",
            &i,
            &contracts
                .batch_get_contracts(as_service("audit", &["contracts:read"], batch))
                .await,
        );

        let mid = fpb::SubmitMidContractFeedbackRequest {
            contract_id: target.clone(),
            rating: i.small,
            comment: i.text.clone(),
            bonus: (i.number % 3 == 0).then(|| pb::Money {
                currency_code: i.other_text.clone(),
                amount_minor: i.number,
            }),
            request_id: i.other_text.clone(),
        };
        check(
            "SubmitMidContractFeedback",
            &i,
            &feedback
                .submit_mid_contract_feedback(as_user(EARLY_CLIENT, mid))
                .await,
        );
        let eligibility = fpb::BatchCheckMidContractEligibilityRequest {
            contract_ids: vec![i.id.clone(), target.clone()],
        };
        check(
            "BatchCheckMidContractEligibility",
            &i,
            &feedback
                .batch_check_mid_contract_eligibility(as_user(EARLY_CLIENT, eligibility))
                .await,
        );
        let scores = fpb::FreelancerScores {
            skills: i.small,
            quality_of_work: i.enum_value,
            ..e2e::freelancer_scores(5)
        };
        let end_feedback = e2e::client_feedback(
            if case % 2 == 0 { &ended.id } else { &i.id },
            scores,
            i.enum_value,
            i.small,
            &i.text,
        );
        check(
            "SubmitEndContractFeedback",
            &i,
            &feedback
                .submit_end_contract_feedback(as_user(EARLY_CLIENT, end_feedback))
                .await,
        );
        let reply = fpb::ReplyToFeedbackRequest {
            feedback_id: i.id.clone(),
            text: i.text.clone(),
            request_id: i.other_text.clone(),
        };
        check(
            "ReplyToFeedback",
            &i,
            &feedback.reply_to_feedback(as_user("free-h", reply)).await,
        );
        let history = fpb::ListWorkHistoryRequest {
            freelancer_id: i.other_text.clone(),
            page_size: i.small,
            page_token: i.text.clone(),
        };
        check(
            "ListWorkHistory",
            &i,
            &feedback.list_work_history(as_user("anyone", history)).await,
        );
        let get = pb::GetContractRequest {
            contract_id: i.id.clone(),
        };
        check(
            "GetContract",
            &i,
            &contracts.get_contract(as_user(EARLY_CLIENT, get)).await,
        );
        let delete = pb::DeleteTimeEntryRequest {
            contract_id: target.clone(),
            time_entry_id: i.id.clone(),
            request_id: i.other_text.clone(),
        };
        check(
            "DeleteTimeEntry",
            &i,
            &contracts.delete_time_entry(as_user("free-h", delete)).await,
        );
        let payments = pb::ListPaymentsRequest {
            contract_id: target.clone(),
            page_size: i.small,
            page_token: i.text.clone(),
        };
        check(
            "ListPayments",
            &i,
            &contracts
                .list_payments(as_user(EARLY_CLIENT, payments))
                .await,
        );
        let week = pb::GetBillingWeekRequest {
            contract_id: target.clone(),
            week_time: i.time,
        };
        check(
            "GetBillingWeek",
            &i,
            &contracts
                .get_billing_week(as_user(EARLY_CLIENT, week))
                .await,
        );
        let watch = pb::WatchEventsRequest {
            after_sequence: i.number,
        };
        match contracts
            .watch_events(as_service("audit", &["events:read"], watch))
            .await
        {
            Ok(_) => {}
            Err(status) => assert!(
                documented(status.code()),
                "WatchEvents answered {status:?} for {i:?}"
            ),
        }
        let check_one = fpb::CheckMidContractEligibilityRequest {
            contract_id: i.id.clone(),
        };
        check(
            "CheckMidContractEligibility",
            &i,
            &feedback
                .check_mid_contract_eligibility(as_user(EARLY_CLIENT, check_one))
                .await,
        );
        let ask = fpb::RequestMidContractFeedbackRequest {
            contract_id: target.clone(),
            request_id: i.other_text.clone(),
        };
        check(
            "RequestMidContractFeedback",
            &i,
            &feedback
                .request_mid_contract_feedback(as_user("free-h", ask))
                .await,
        );
        let requests = fpb::ListFeedbackRequestsRequest {
            contract_id: target.clone(),
            page_size: i.small,
            page_token: i.text.clone(),
        };
        check(
            "ListFeedbackRequests",
            &i,
            &feedback
                .list_feedback_requests(as_user(EARLY_CLIENT, requests))
                .await,
        );
        let get_end = fpb::GetEndContractFeedbackRequest {
            contract_id: i.id.clone(),
        };
        check(
            "GetEndContractFeedback",
            &i,
            &feedback
                .get_end_contract_feedback(as_user("free-h", get_end))
                .await,
        );
        let fwatch = fpb::WatchEventsRequest {
            after_sequence: i.number,
        };
        match feedback
            .watch_events(as_service("audit", &["events:read"], fwatch))
            .await
        {
            Ok(_) => {}
            Err(status) => assert!(
                documented(status.code()),
                "WatchEvents answered {status:?} for {i:?}"
            ),
        }
        let jss = fpb::ListJobSuccessInputsRequest {
            freelancer_id: i.id.clone(),
            page_size: i.small,
            page_token: i.other_text.clone(),
        };
        check(
            "ListJobSuccessInputs",
            &i,
            &feedback
                .list_job_success_inputs(as_service("jss", &["jss:read"], jss))
                .await,
        );
    }
    assert!(stored > 0, "some generated titles were valid and stored");
}

async fn oversized_messages_and_tampered_page_tokens_are_refused(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let huge = "x".repeat(2 << 20);
    let oversized = s
        .contracts
        .contracts
        .clone()
        .end_contract(as_user(
            "client-1",
            pb::EndContractRequest {
                contract_id: shared::ids::new_id("ctr"),
                reason: huge.clone(),
                request_id: String::new(),
            },
        ))
        .await
        .expect_err("2 MiB is over the limit");
    assert_too_large(&oversized);
    let oversized = s
        .feedback
        .client()
        .submit_mid_contract_feedback(as_user(
            "client-1",
            fpb::SubmitMidContractFeedbackRequest {
                comment: huge,
                ..Default::default()
            },
        ))
        .await
        .expect_err("2 MiB is over the limit");
    assert_too_large(&oversized);

    for i in 0..3 {
        s.contracts
            .hourly_contract("client-1", &format!("free-{i}"))
            .await;
    }
    let page = |token: String| {
        let mut client = s.contracts.contracts.clone();
        let request = as_user(
            "client-1",
            pb::ListContractsRequest {
                page_size: 1,
                page_token: token,
                ..Default::default()
            },
        );
        async move { client.list_contracts(request).await }
    };
    let token = page(String::new())
        .await
        .expect("first page")
        .into_inner()
        .next_page_token;
    assert!(!token.is_empty());
    let mut tampered_refused = 0;
    for position in 0..token.len() {
        let mut bytes = token.clone().into_bytes();
        bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ascii");
        match page(tampered).await {
            Ok(_) => {}
            Err(status) => {
                assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
                tampered_refused += 1;
            }
        }
    }
    assert!(tampered_refused > 0, "tampering is noticed");
}

backend_tests!(
    hostile_requests_get_documented_answers_and_text_is_stored_verbatim,
    oversized_messages_and_tampered_page_tokens_are_refused,
);

/// RESOURCE_EXHAUSTED, as grpc-go and grpc-java answer (tonic alone says
/// OUT_OF_RANGE), with the size and the limit in the message.
fn assert_too_large(status: &tonic::Status) {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    let found = status
        .message()
        .strip_prefix("the message is ")
        .and_then(|rest| rest.split_once(' '))
        .and_then(|(n, _)| n.parse::<u64>().ok());
    assert!(found.is_some_and(|n| n > 2 << 20), "{status:?}");
    assert!(
        status.message().ends_with("the limit is 1048576 bytes"),
        "{status:?}"
    );
}
