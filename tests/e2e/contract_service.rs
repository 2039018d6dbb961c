//! contract-service through its gRPC API: every rule of docs/rules.md (contract-service) at its
//! boundaries, the Work Diary lock under concurrency, idempotency, paging,
//! bad input and the outbox.

use std::sync::Arc;

use chrono::Duration;
use e2e::{TestApp, TestBackend, as_service, as_user, at, backend_tests, ts, usd};
use shared::proto::contract::v1 as pb;
use shared::status::{reason, violated_fields};
use tokio::sync::Barrier;
use tonic::Code;

fn assert_failed(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, why: &str) {
    let status = result.expect_err("call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some(why), "{status:?}");
}

/// Awaits calls sent at once and returns what the successful ones answered,
/// after checking that every other one failed for `why`.
async fn successes<T>(
    tasks: Vec<tokio::task::JoinHandle<Result<T, tonic::Status>>>,
    why: &str,
) -> Vec<T> {
    let mut answers = Vec::new();
    for task in tasks {
        match task.await.expect("join") {
            Ok(answer) => answers.push(answer),
            Err(status) => assert_eq!(reason(&status).as_deref(), Some(why), "{status:?}"),
        }
    }
    answers
}

/// client-1's contract with free-1 in USD, titled `title`, of `kind`; the rest default.
fn terms(title: &str, kind: pb::ContractType) -> pb::CreateContractRequest {
    pb::CreateContractRequest {
        client_id: "client-1".into(),
        freelancer_id: "free-1".into(),
        title: title.into(),
        r#type: kind as i32,
        currency_code: "USD".into(),
        ..Default::default()
    }
}

/// A fresh contract-service holding client-1's hourly contract with free-1.
async fn app_with_contract(backend: &TestBackend) -> (TestApp, pb::Contract) {
    let app = TestApp::spawn(backend).await;
    let c = app.hourly_contract("client-1", "free-1").await;
    (app, c)
}

/// A fresh contract-service holding client-1's hourly contract with free-1
/// at $60/h, capped at 60 minutes a week, started 2026-11-01.
async fn app_with_capped_contract(backend: &TestBackend) -> (TestApp, pb::Contract) {
    let app = TestApp::spawn(backend).await;
    let c = app
        .create_contract(pb::CreateContractRequest {
            hourly_rate_minor: 6_000,
            weekly_limit_minutes: 60,
            start_time: Some(ts(at("2026-11-01T00:00:00Z"))),
            ..terms("Capped", pb::ContractType::Hourly)
        })
        .await
        .expect("contract");
    (app, c)
}

/// free-1 logs `minutes` from `start` (RFC 3339) on `c`, which must succeed.
async fn log(app: &TestApp, c: &pb::Contract, start: &str, minutes: i32) -> pb::TimeEntry {
    app.log_time("free-1", &c.id, at(start), minutes)
        .await
        .expect("log time")
}

/// free-1 logging `minutes` from `start` on `c` fails FAILED_PRECONDITION for `why`.
async fn log_refused(app: &TestApp, c: &pb::Contract, start: &str, minutes: i32, why: &str) {
    let refused = app.log_time("free-1", &c.id, at(start), minutes).await;
    assert_failed(refused, Code::FailedPrecondition, why);
}

/// `user` reads contract `c` (the read must succeed).
async fn contract_as(app: &TestApp, user: &str, c: &pb::Contract) -> pb::Contract {
    let request = pb::GetContractRequest {
        contract_id: c.id.clone(),
    };
    app.get_contract(as_user(user, request))
        .await
        .expect("contract")
}

/// The events from ContractEnded on (panics when the contract did not end).
fn from_the_end(events: &[pb::Event]) -> &[pb::Event] {
    let end_at = events
        .iter()
        .position(|e| matches!(e.payload, Some(pb::event::Payload::ContractEnded(_))))
        .expect("ContractEnded event");
    &events[end_at..]
}

/// Starts `count` calls of `call(app, id, i)` released together by a barrier.
fn all_at_once<T, Fut>(
    app: &Arc<TestApp>,
    id: &str,
    count: usize,
    call: impl Fn(Arc<TestApp>, String, usize) -> Fut,
) -> Vec<tokio::task::JoinHandle<T>>
where
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(count));
    (0..count)
        .map(|i| {
            let (barrier, call) = (barrier.clone(), call(app.clone(), id.to_owned(), i));
            tokio::spawn(async move {
                barrier.wait().await;
                call.await
            })
        })
        .collect()
}

/// Ends `c` as client-1 once `barrier` opens (after a yield, so racing calls go first).
fn spawn_ender(
    app: &Arc<TestApp>,
    barrier: &Arc<Barrier>,
    c: &pb::Contract,
) -> tokio::task::JoinHandle<Result<pb::EndContractResponse, tonic::Status>> {
    let (app, barrier, id) = (app.clone(), barrier.clone(), c.id.clone());
    tokio::spawn(async move {
        barrier.wait().await;
        tokio::task::yield_now().await;
        app.end_contract("client-1", &id, "").await
    })
}

/// client-1 reads the billing week of `c` containing `week_time` (current week when None).
async fn billing_week(
    app: &TestApp,
    c: &pb::Contract,
    week_time: Option<chrono::DateTime<chrono::Utc>>,
) -> pb::GetBillingWeekResponse {
    let request = pb::GetBillingWeekRequest {
        contract_id: c.id.clone(),
        week_time: week_time.map(ts),
    };
    app.contracts
        .clone()
        .get_billing_week(as_user("client-1", request))
        .await
        .expect("billing week")
        .into_inner()
}

/// The ids of the time entries in `c`'s current diary week, sorted (read by client-1).
async fn diary_entry_ids(app: &TestApp, c: &pb::Contract) -> Vec<String> {
    let diary = app
        .work_diary("client-1", &c.id, None)
        .await
        .expect("diary");
    let mut ids: Vec<_> = diary.time_entries.iter().map(|e| e.id.clone()).collect();
    ids.sort();
    ids
}

fn assert_invalid(result: Result<impl std::fmt::Debug, tonic::Status>, field: &str) {
    let status = result.expect_err("call should have failed");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        violated_fields(&status).iter().any(|f| f == field),
        "expected a violation of {field}, got {status:?}"
    );
}

async fn ending_a_contract_locks_the_work_diary(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    // Log time while active.
    let entry = log(&app, &c, "2026-11-18T09:00:00Z", 30).await;

    let ended = app
        .end_contract("client-1", &c.id, "")
        .await
        .expect("client ends");
    let contract = ended.contract.expect("contract");
    assert_eq!(contract.state, pb::ContractState::Ended as i32);
    assert_eq!(contract.ended_by, pb::Party::Client as i32);
    assert!(contract.diary_locked);
    assert_eq!(contract.diary_lock_time, contract.end_time);
    assert_eq!(contract.end_time, Some(ts(app.now())));
    let codes: Vec<_> = ended.checklist.iter().map(|i| i.code.as_str()).collect();
    assert_eq!(
        codes,
        [
            "REVOKE_ACCESS",
            "CONFIRM_WORK_RECEIVED",
            "REMOVE_PROPERTY",
            "LEAVE_FEEDBACK"
        ]
    );

    log_refused(&app, &c, "2026-11-18T09:30:00Z", 10, "WORK_DIARY_LOCKED").await;
    let delete = app
        .contracts
        .clone()
        .delete_time_entry(as_user(
            "free-1",
            pb::DeleteTimeEntryRequest {
                contract_id: c.id.clone(),
                time_entry_id: entry.id.clone(),
                request_id: String::new(),
            },
        ))
        .await;
    assert_failed(delete, Code::FailedPrecondition, "WORK_DIARY_LOCKED");

    let diary = app
        .work_diary("client-1", &c.id, None)
        .await
        .expect("diary");
    assert!(diary.locked);
    assert_eq!(diary.lock_time, contract.end_time);
    assert_eq!(diary.time_entries.len(), 1);
    assert_eq!(diary.logged_minutes, 30);
}

async fn either_party_may_end_but_nobody_else(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let end_as = |user| app.end_contract(user, &c.id, "");
    let stranger = end_as("mallory").await.expect_err("stranger");
    assert_eq!(stranger.code(), Code::PermissionDenied);
    // An unknown contract reads exactly like someone else's.
    let unknown_id = shared::ids::new_id("ctr");
    let unknown = app
        .end_contract("mallory", &unknown_id, "")
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::PermissionDenied);
    assert_eq!(
        unknown.message().replace(&unknown_id, "ID"),
        stranger.message().replace(&c.id, "ID")
    );
    let by_freelancer = end_as("free-1").await.expect("freelancer ends");
    assert_eq!(
        by_freelancer.contract.expect("contract").ended_by,
        pb::Party::Freelancer as i32
    );
    // A service reading an unknown contract learns it does not exist.
    let missing = app
        .get_contract(as_service(
            "feedback",
            &["contracts:read"],
            pb::GetContractRequest {
                contract_id: unknown_id,
            },
        ))
        .await;
    assert_failed(missing, Code::NotFound, "NOT_FOUND");
}

async fn ending_twice_fails_unless_it_is_a_retry(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let end = |request_id| app.end_contract("client-1", &c.id, request_id);
    let first = end("end-1").await.expect("end");
    app.set_time(app.now() + Duration::minutes(5));
    let retry = end("end-1").await.expect("retry");
    assert_eq!(retry, first, "a retry returns the first result");
    assert_failed(
        end("").await,
        Code::FailedPrecondition,
        "CONTRACT_ALREADY_ENDED",
    );
    assert_failed(
        end("end-2").await,
        Code::FailedPrecondition,
        "CONTRACT_ALREADY_ENDED",
    );
    let changed = app
        .contracts
        .clone()
        .end_contract(as_user(
            "client-1",
            pb::EndContractRequest {
                contract_id: c.id.clone(),
                reason: "other".into(),
                request_id: "end-1".into(),
            },
        ))
        .await;
    assert_invalid(changed, "request_id");
}

async fn end_contract_racing_log_time_leaves_nothing_after_the_lock(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let writers = 48;
    let barrier = Arc::new(Barrier::new(writers + 1));
    let mut tasks = Vec::new();
    for i in 0..writers {
        let (app, barrier, id) = (app.clone(), barrier.clone(), c.id.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            // Distinct segments from Monday on, so only the lock can refuse them.
            let start = at("2026-11-16T00:00:00Z") + Duration::minutes(10 * i as i64);
            app.log_time("free-1", &id, start, 10).await
        }));
    }
    let ender = spawn_ender(&app, &barrier, &c);
    let mut accepted: Vec<_> = successes(tasks, "WORK_DIARY_LOCKED")
        .await
        .into_iter()
        .map(|entry| entry.id)
        .collect();
    ender.await.expect("join").expect("end contract");

    // Every accepted entry is in the diary, and nothing else is.
    accepted.sort();
    assert_eq!(diary_entry_ids(&app, &c).await, accepted);
    // In commit order, no TimeLogged follows ContractEnded.
    let events = app.events(2 + accepted.len()).await;
    assert!(
        from_the_end(&events)
            .iter()
            .all(|e| !matches!(e.payload, Some(pb::event::Payload::TimeLogged(_)))),
        "time was logged after the diary locked"
    );
    assert_eq!(events.len(), 2 + accepted.len());
    // After the end, every attempt fails.
    log_refused(&app, &c, "2026-11-18T09:50:00Z", 10, "WORK_DIARY_LOCKED").await;
}

async fn time_is_logged_in_segments_inside_the_current_week(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    // Now is Wednesday 2026-11-18 10:00 UTC.
    // Last segment before now.
    log(&app, &c, "2026-11-18T09:50:00Z", 10).await;
    // First segment of the week.
    log(&app, &c, "2026-11-16T00:00:00Z", 10).await;
    for (why, start, minutes) in [
        ("OUTSIDE_CURRENT_WEEK", "2026-11-15T23:50:00Z", 10),
        ("TIME_IN_FUTURE", "2026-11-18T10:00:00Z", 10),
        ("TIME_ENTRY_OVERLAP", "2026-11-18T09:40:00Z", 20),
    ] {
        log_refused(&app, &c, start, minutes, why).await;
    }
    for (field, start, minutes) in [
        ("start_time", "2026-11-18T09:05:00Z", 10),
        ("minutes", "2026-11-18T09:00:00Z", 15),
        ("minutes", "2026-11-18T09:00:00Z", 0),
    ] {
        assert_invalid(
            app.log_time("free-1", &c.id, at(start), minutes).await,
            field,
        );
    }
    let by_client = app
        .log_time("client-1", &c.id, at("2026-11-18T09:00:00Z"), 10)
        .await;
    assert_eq!(
        by_client.expect_err("client").code(),
        Code::PermissionDenied
    );

    let manual_off = app
        .create_contract(pb::CreateContractRequest {
            hourly_rate_minor: 5_000,
            weekly_limit_minutes: 600,
            allow_manual_time: Some(false),
            start_time: Some(ts(at("2026-11-01T00:00:00Z"))),
            ..terms("No manual time", pb::ContractType::Hourly)
        })
        .await
        .expect("contract");
    let manual = app
        .contracts
        .clone()
        .log_time(as_user(
            "free-1",
            pb::LogTimeRequest {
                contract_id: manual_off.id.clone(),
                start_time: Some(ts(at("2026-11-18T08:00:00Z"))),
                minutes: 10,
                manual: true,
                ..Default::default()
            },
        ))
        .await;
    assert_failed(manual, Code::FailedPrecondition, "MANUAL_TIME_NOT_ALLOWED");
    // Tracked time is fine.
    log(&app, &manual_off, "2026-11-18T08:00:00Z", 10).await;

    let fixed = app
        .create_contract(terms("Logo", pb::ContractType::FixedPrice))
        .await
        .expect("fixed-price contract");
    log_refused(
        &app,
        &fixed,
        "2026-11-18T09:00:00Z",
        10,
        "CONTRACT_NOT_HOURLY",
    )
    .await;
}

async fn overlapping_time_is_refused_in_every_shape(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    // Now is Wednesday 2026-11-18 10:00 UTC; one hour on Tuesday, 10:00-11:00.
    log(&app, &c, "2026-11-17T10:00:00Z", 60).await;
    log(&app, &c, "2026-11-17T12:00:00Z", 10).await;
    for (start, minutes, shape) in [
        ("2026-11-17T09:50:00Z", 80, "containing it"),
        ("2026-11-17T10:20:00Z", 10, "inside it"),
        ("2026-11-17T09:50:00Z", 20, "over its start"),
        ("2026-11-17T10:50:00Z", 20, "over its end"),
        ("2026-11-17T10:00:00Z", 60, "the same span"),
        ("2026-11-17T11:10:00Z", 60, "reaching into the later entry"),
        ("2026-11-17T09:00:00Z", 240, "spanning both"),
    ] {
        let refused = app.log_time("free-1", &c.id, at(start), minutes).await;
        assert_eq!(
            refused.as_ref().err().and_then(reason).as_deref(),
            Some("TIME_ENTRY_OVERLAP"),
            "{shape}: {refused:?}"
        );
    }
    // Touching is not overlapping.
    // Ends where the first starts.
    log(&app, &c, "2026-11-17T09:50:00Z", 10).await;
    // Fills the gap exactly.
    log(&app, &c, "2026-11-17T11:00:00Z", 60).await;
    let diary = app.work_diary("free-1", &c.id, None).await.expect("diary");
    assert_eq!(diary.logged_minutes, 140);
}

async fn overlapping_time_sent_at_once_is_accepted_once(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let writers = 24;
    let tasks = all_at_once(&app, &c.id, writers, |app, id, i| async move {
        // 10:00-10:30, 10:10-10:40 and 10:20-10:50 on Tuesday: every
        // pair overlaps, so only the diary lock decides which one lands.
        let start = at("2026-11-17T10:00:00Z") + Duration::minutes(10 * (i % 3) as i64);
        app.log_time("free-1", &id, start, 30).await
    });
    let accepted = successes(tasks, "TIME_ENTRY_OVERLAP").await;
    assert_eq!(accepted.len(), 1, "{accepted:?}");
    let diary = app.work_diary("free-1", &c.id, None).await.expect("diary");
    assert_eq!(diary.time_entries.len(), 1);
    assert_eq!(diary.logged_minutes, 30);
}

async fn time_over_the_weekly_limit_is_kept_but_not_billed(backend: TestBackend) {
    let (app, c) = app_with_capped_contract(&backend).await;
    log(&app, &c, "2026-11-17T08:00:00Z", 50).await;
    let second = log(&app, &c, "2026-11-17T09:00:00Z", 30).await;
    assert_eq!(second.billable_minutes, 10);
    // Billing follows start order: time logged later for earlier in the week
    // is billed first, and pushes the rest further over the limit.
    let earlier = log(&app, &c, "2026-11-17T07:00:00Z", 30).await;
    assert_eq!(earlier.billable_minutes, 30);
    let diary = app.work_diary("free-1", &c.id, None).await.expect("diary");
    assert_eq!((diary.logged_minutes, diary.billable_minutes), (110, 60));
    let week = billing_week(&app, &c, None).await;
    assert_eq!((week.logged_minutes, week.billable_minutes), (110, 60));
    assert_eq!(week.amount, Some(usd(6_000)));
    assert_eq!(
        week.review_window_start_time,
        Some(ts(at("2026-11-23T12:00:00Z")))
    );
    assert_eq!(
        week.review_window_end_time,
        Some(ts(at("2026-11-27T23:59:59Z")))
    );
    assert!(!week.review_window_open);
}

/// Billable minutes depend on the time logged before an entry in its week,
/// so a LogTime that waited for another on the same diary must count that
/// one's entry. Twelve callers log ten minutes each at once, at distinct
/// starts, against a 60-minute limit: in the order the diary took them (the
/// order of their TimeLogged events), each answer and event bills what the
/// limit leaves after the entries before it in both that order and the week.
async fn time_logged_at_once_is_billed_against_what_was_logged_before(backend: TestBackend) {
    let (app, c) = app_with_capped_contract(&backend).await;
    let app = Arc::new(app);
    let writers = 12;
    let tasks = all_at_once(&app, &c.id, writers, |app, id, i| async move {
        // Starts 08:00, 08:10, … in an order that differs from the callers'.
        let slot = (i * 5) % writers;
        let start = at("2026-11-17T08:00:00Z") + Duration::minutes(10 * slot as i64);
        app.log_time("free-1", &id, start, 10).await
    });
    let answers = successes(tasks, "none").await;
    assert_eq!(answers.len(), writers);
    let logged: Vec<pb::TimeEntry> = app
        .events(1 + writers)
        .await
        .into_iter()
        .filter_map(|e| match e.payload {
            Some(pb::event::Payload::TimeLogged(t)) => t.time_entry,
            _ => None,
        })
        .collect();
    assert_eq!(logged.len(), writers);
    let start = |e: &pb::TimeEntry| e.start_time.as_ref().map(|t| t.seconds);
    for (n, entry) in logged.iter().enumerate() {
        let before: i32 = logged[..n]
            .iter()
            .filter(|e| start(e) < start(entry))
            .map(|e| e.minutes)
            .sum();
        let expected = (60 - before).clamp(0, entry.minutes);
        assert_eq!(entry.billable_minutes, expected, "event {n}: {entry:?}");
        let answer = answers.iter().find(|a| a.id == entry.id).expect("answered");
        assert_eq!(answer.billable_minutes, expected, "answer {n}: {answer:?}");
    }
    let diary = app.work_diary("free-1", &c.id, None).await.expect("diary");
    assert_eq!((diary.logged_minutes, diary.billable_minutes), (120, 60));
}

async fn time_entries_are_deleted_only_in_the_current_week(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let keep = log(&app, &c, "2026-11-17T08:00:00Z", 10).await;
    let gone = log(&app, &c, "2026-11-17T09:00:00Z", 10).await;
    let delete = |id: String, user: &'static str| {
        let mut client = app.contracts.clone();
        let contract_id = c.id.clone();
        async move {
            client
                .delete_time_entry(as_user(
                    user,
                    pb::DeleteTimeEntryRequest {
                        contract_id,
                        time_entry_id: id,
                        request_id: String::new(),
                    },
                ))
                .await
        }
    };
    assert_eq!(
        delete(gone.id.clone(), "client-1")
            .await
            .expect_err("client")
            .code(),
        Code::PermissionDenied
    );
    delete(gone.id.clone(), "free-1")
        .await
        .expect("delete this week's entry");
    assert_failed(
        delete(gone.id.clone(), "free-1").await,
        Code::NotFound,
        "NOT_FOUND",
    );
    app.set_time(at("2026-11-23T00:00:00Z"));
    assert_failed(
        delete(keep.id.clone(), "free-1").await,
        Code::FailedPrecondition,
        "OUTSIDE_CURRENT_WEEK",
    );
    let last_week = app
        .work_diary("free-1", &c.id, Some(at("2026-11-17T00:00:00Z")))
        .await
        .expect("diary");
    assert_eq!(last_week.time_entries.len(), 1);
}

async fn refunds_are_allowed_for_180_days_up_to_what_was_paid(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = app
        .create_contract(pb::CreateContractRequest {
            agency_id: "agency-1".into(),
            start_time: Some(ts(at("2026-01-01T00:00:00Z"))),
            ..terms("Agency work", pb::ContractType::FixedPrice)
        })
        .await
        .expect("contract");
    let paid_at = at("2026-02-01T00:00:00Z");
    let payment = app
        .pay(&c.id, pb::PaymentKind::FixedPrice, 10_000, paid_at, "pay-1")
        .await
        .expect("pay");
    app.end_contract("client-1", &c.id, "")
        .await
        .expect("end: refunds still allowed");

    app.set_time(paid_at + Duration::days(180));
    assert_eq!(
        app.refund("client-1", &payment.id, 100, "r0")
            .await
            .expect_err("client")
            .code(),
        Code::PermissionDenied
    );
    let refund = app
        .refund("free-1", &payment.id, 4_000, "r1")
        .await
        .expect("refund on day 180");
    assert_eq!(
        refund.payment.expect("payment").refunded_amount,
        Some(usd(4_000))
    );
    app.refund("agency-1", &payment.id, 1_000, "r2")
        .await
        .expect("agency refunds");
    assert_failed(
        app.refund("free-1", &payment.id, 5_001, "r3").await,
        Code::FailedPrecondition,
        "REFUND_EXCEEDS_REMAINING",
    );
    assert_invalid(
        app.refund("free-1", &payment.id, 0, "r4").await,
        "amount.amount_minor",
    );
    assert_invalid(
        app.refund("free-1", &payment.id, 100, "").await,
        "request_id",
    );
    app.set_time(paid_at + Duration::days(180) + Duration::seconds(1));
    assert_failed(
        app.refund("free-1", &payment.id, 100, "r5").await,
        Code::FailedPrecondition,
        "REFUND_WINDOW_PASSED",
    );
    let contract = contract_as(&app, "client-1", &c).await;
    assert_eq!(contract.net_paid, Some(usd(5_000)));
    assert_eq!(contract.last_payment_time, Some(ts(paid_at)));
}

async fn concurrent_refunds_never_exceed_the_payment(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let payment = app
        .pay(
            &c.id,
            pb::PaymentKind::HourlyInvoice,
            1_000,
            app.now() - Duration::days(1),
            "pay-1",
        )
        .await
        .expect("pay");
    let tasks = all_at_once(&app, &payment.id, 25, |app, id, i| async move {
        app.refund("free-1", &id, 100, &format!("refund-{i}")).await
    });
    let refunds = successes(tasks, "REFUND_EXCEEDS_REMAINING").await;
    assert_eq!(refunds.len(), 10);
    let contract = contract_as(&app, "free-1", &c).await;
    assert_eq!(contract.net_paid, Some(usd(0)));
}

async fn hours_are_disputed_only_inside_the_review_window(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    // Only billable time can be disputed: an hour in each of the two weeks.
    log(&app, &c, "2026-11-18T08:00:00Z", 60).await;
    let week = at("2026-11-17T12:00:00Z");
    app.set_time(at("2026-11-23T11:59:59Z"));
    assert_failed(
        app.dispute("client-1", &c.id, week).await,
        Code::FailedPrecondition,
        "DISPUTE_WINDOW_CLOSED",
    );
    app.set_time(at("2026-11-23T12:00:00Z"));
    assert_eq!(
        app.dispute("free-1", &c.id, week)
            .await
            .expect_err("freelancer")
            .code(),
        Code::PermissionDenied
    );
    let dispute = app
        .dispute("client-1", &c.id, week)
        .await
        .expect("dispute at Monday noon");
    assert_eq!(
        dispute.week_start_time,
        Some(ts(at("2026-11-16T00:00:00Z")))
    );
    assert_failed(
        app.dispute("client-1", &c.id, week).await,
        Code::FailedPrecondition,
        "DISPUTE_ALREADY_OPEN",
    );

    // The next week, after the contract ended: Friday 23:59:59 is in, Saturday 00:00 is out.
    let next_week = at("2026-11-24T12:00:00Z");
    log(&app, &c, "2026-11-23T10:00:00Z", 60).await;
    app.end_contract("client-1", &c.id, "").await.expect("end");
    app.set_time(at("2026-12-04T23:59:59Z"));
    app.dispute("client-1", &c.id, next_week)
        .await
        .expect("dispute on Friday 23:59:59");
    let other = app.hourly_contract("client-1", "free-2").await;
    app.set_time(at("2026-12-05T00:00:00Z"));
    assert_failed(
        app.dispute("client-1", &other.id, next_week).await,
        Code::FailedPrecondition,
        "DISPUTE_WINDOW_CLOSED",
    );
    let billing = billing_week(&app, &c, Some(week)).await;
    assert_eq!(billing.disputes.len(), 1);
}

async fn payments_are_recorded_once_per_request_id(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let paid_at = app.now() - Duration::hours(1);
    let tasks = all_at_once(&app, &c.id, 12, move |app, id, _| async move {
        let kind = pb::PaymentKind::HourlyInvoice;
        app.pay(&id, kind, 2_500, paid_at, "invoice-7").await
    });
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(
            task.await
                .expect("join")
                .expect("same request, same answer")
                .id,
        );
    }
    ids.dedup();
    assert_eq!(ids.len(), 1, "one payment for one request_id");
    let contract = contract_as(&app, "client-1", &c).await;
    assert_eq!(contract.net_paid, Some(usd(2_500)));
    let (hourly, fixed) = (pb::PaymentKind::HourlyInvoice, pb::PaymentKind::FixedPrice);
    let future = app.now() + Duration::seconds(1);
    for (field, kind, amount, paid_time, request_id) in [
        ("request_id", hourly, 2_600, paid_at, "invoice-7"),
        ("request_id", hourly, 100, paid_at, ""),
        ("kind", fixed, 100, paid_at, "p-kind"),
        ("paid_time", hourly, 100, future, "p-future"),
    ] {
        let refused = app.pay(&c.id, kind, amount, paid_time, request_id).await;
        assert_invalid(refused, field);
    }
    let as_user_call = app
        .contracts
        .clone()
        .record_payment(as_user(
            "client-1",
            pb::RecordPaymentRequest {
                contract_id: c.id.clone(),
                kind: pb::PaymentKind::Bonus as i32,
                amount: Some(usd(100)),
                paid_time: Some(ts(paid_at)),
                memo: String::new(),
                request_id: "x".into(),
                billing_week_time: None,
            },
        ))
        .await;
    assert_eq!(
        as_user_call.expect_err("user").code(),
        Code::PermissionDenied
    );
}

/// Twelve different payments recorded at once on one contract: every one is
/// kept, with its event, and the contract's net paid is their sum.
async fn payments_recorded_at_once_all_count(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let paid_at = app.now() - Duration::hours(1);
    let tasks = all_at_once(&app, &c.id, 12, move |app, id, i| async move {
        let kind = pb::PaymentKind::HourlyInvoice;
        let amount = 100 * (i as i64 + 1);
        app.pay(&id, kind, amount, paid_at, &format!("invoice-{i}"))
            .await
    });
    let paid = successes(tasks, "none").await;
    assert_eq!(paid.len(), 12);
    let contract = contract_as(&app, "client-1", &c).await;
    assert_eq!(
        contract.net_paid,
        Some(usd((1..=12).map(|n| 100 * n).sum()))
    );
    let recorded = app
        .events(1 + 12)
        .await
        .into_iter()
        .filter(|e| matches!(e.payload, Some(pb::event::Payload::PaymentRecorded(_))))
        .count();
    assert_eq!(recorded, 12);
}

async fn bonuses_are_accepted_until_365_days_after_the_end(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let ended = app.end_contract("client-1", &c.id, "").await.expect("end");
    let end = shared::time::from_proto(
        &ended
            .contract
            .expect("contract")
            .end_time
            .expect("end time"),
    )
    .expect("time");
    app.set_time(end + Duration::days(400));
    let bonus =
        |paid_at, request_id| app.pay(&c.id, pb::PaymentKind::Bonus, 500, paid_at, request_id);
    let day_365 = end + Duration::days(365);
    bonus(day_365, "bonus-1").await.expect("bonus on day 365");
    assert_failed(
        bonus(day_365 + Duration::seconds(1), "bonus-2").await,
        Code::FailedPrecondition,
        "BONUS_WINDOW_PASSED",
    );
    let invoice_after_the_end = end + Duration::days(3);
    app.pay(
        &c.id,
        pb::PaymentKind::HourlyInvoice,
        700,
        invoice_after_the_end,
        "final-invoice",
    )
    .await
    .expect("final invoice after the end");
}

async fn bad_input_names_the_field_and_writes_nothing(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let bad = app
        .create_contract(pb::CreateContractRequest {
            client_id: "client 1".into(),
            freelancer_id: String::new(),
            title: "bell\u{7}".into(),
            r#type: 9,
            currency_code: "usd".into(),
            hourly_rate_minor: -5,
            weekly_limit_minutes: 15,
            start_time: Some(prost_types::Timestamp {
                seconds: 0,
                nanos: -1,
            }),
            ..Default::default()
        })
        .await
        .expect_err("invalid");
    assert_eq!(bad.code(), Code::InvalidArgument);
    let mut fields = violated_fields(&bad);
    fields.sort();
    assert_eq!(
        fields,
        [
            "client_id",
            "currency_code",
            "freelancer_id",
            "hourly_rate_minor",
            "start_time",
            "title",
            "type",
            "weekly_limit_minutes"
        ]
    );
    let listed = app
        .contracts
        .clone()
        .list_contracts(as_service(
            "ops",
            &["contracts:read"],
            pb::ListContractsRequest::default(),
        ))
        .await
        .expect("list")
        .into_inner();
    assert!(listed.contracts.is_empty(), "nothing was written");

    let c = app.hourly_contract("client-1", "free-1").await;
    let long = "x".repeat(5_001);
    let dispute = app
        .contracts
        .clone()
        .dispute_hours(as_user(
            "client-1",
            pb::DisputeHoursRequest {
                contract_id: c.id.clone(),
                week_time: None,
                reason: long,
                request_id: String::new(),
                disputed_minutes: 15,
            },
        ))
        .await;
    let status = dispute.expect_err("invalid");
    let mut fields = violated_fields(&status);
    fields.sort();
    assert_eq!(fields, ["disputed_minutes", "reason", "week_time"]);
    for garbage in ["not-an-id", "ctr_zz", "ctr_' OR 1=1 --"] {
        assert_invalid(
            app.get_contract(as_user(
                "client-1",
                pb::GetContractRequest {
                    contract_id: garbage.into(),
                },
            ))
            .await,
            "contract_id",
        );
    }
    let list = |page_size, page_token: &str| {
        let mut client = app.contracts.clone();
        let request = as_user(
            "client-1",
            pb::ListContractsRequest {
                page_size,
                page_token: page_token.into(),
                ..Default::default()
            },
        );
        async move { client.list_contracts(request).await }
    };
    assert_invalid(list(-1, "").await, "page_size");
    assert_invalid(list(10, "garbage").await, "page_token");
}

async fn contracts_are_listed_by_party_with_paging(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let mut mine = Vec::new();
    for i in 0..5 {
        mine.push(
            app.hourly_contract("client-1", &format!("free-{i}"))
                .await
                .id,
        );
    }
    app.hourly_contract("client-2", "free-0").await;
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = app
            .contracts
            .clone()
            .list_contracts(as_user(
                "client-1",
                pb::ListContractsRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.contracts.len() <= 2);
        seen.extend(page.contracts.into_iter().map(|c| c.id));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(seen, mine);
    let other_party = app
        .contracts
        .clone()
        .list_contracts(as_user(
            "client-1",
            pb::ListContractsRequest {
                party_id: "client-2".into(),
                ..Default::default()
            },
        ))
        .await;
    assert_eq!(
        other_party.expect_err("other party").code(),
        Code::PermissionDenied
    );
    let free0 = app
        .contracts
        .clone()
        .list_contracts(as_service(
            "ops",
            &["contracts:read"],
            pb::ListContractsRequest {
                party_id: "free-0".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("service lists any party")
        .into_inner();
    assert_eq!(free0.contracts.len(), 2);
    app.end_contract("client-1", &mine[1], "")
        .await
        .expect("end");
    let ended = app
        .contracts
        .clone()
        .list_contracts(as_user(
            "client-1",
            pb::ListContractsRequest {
                state: pb::ContractState::Ended as i32,
                ..Default::default()
            },
        ))
        .await
        .expect("list ended")
        .into_inner();
    let ended: Vec<_> = ended.contracts.into_iter().map(|c| c.id).collect();
    assert_eq!(ended, [mine[1].clone()]);

    let missing = shared::ids::new_id("ctr");
    let batch_get = |contract_ids| {
        let request = pb::BatchGetContractsRequest { contract_ids };
        let mut client = app.contracts.clone();
        async move {
            let request = as_service("feedback", &["contracts:read"], request);
            client.batch_get_contracts(request).await
        }
    };
    let batch = batch_get(vec![mine[3].clone(), missing.clone(), mine[0].clone()])
        .await
        .expect("batch")
        .into_inner();
    let ids: Vec<_> = batch.contracts.iter().map(|c| c.id.clone()).collect();
    assert_eq!(ids, [mine[3].clone(), mine[0].clone()]);
    assert_eq!(batch.missing_contract_ids, [missing]);
    assert_invalid(batch_get(vec![mine[0].clone(); 101]).await, "contract_ids");
}

async fn events_stream_in_order_and_resume_from_a_cursor(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    log(&app, &c, "2026-11-18T09:00:00Z", 10).await;
    app.end_contract("freelancer-not-party", &c.id, "")
        .await
        .expect_err("not a party: no event");
    app.end_contract("free-1", &c.id, "").await.expect("end");
    let events = app.events(3).await;
    let sequences: Vec<_> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
    assert!(matches!(
        events[0].payload,
        Some(pb::event::Payload::ContractCreated(_))
    ));
    assert!(matches!(
        events[1].payload,
        Some(pb::event::Payload::TimeLogged(_))
    ));
    assert!(matches!(
        events[2].payload,
        Some(pb::event::Payload::ContractEnded(_))
    ));

    use futures::StreamExt;
    use shared::testing::Outbox;
    let mut resumed = app
        .contracts
        .clone()
        .watch_as("audit", 2)
        .await
        .expect("watch");
    let next = resumed
        .next()
        .await
        .expect("open")
        .expect("event")
        .event
        .expect("event");
    assert_eq!(next.event_id, events[2].event_id);
    let denied = app
        .contracts
        .clone()
        .watch_events(as_user(
            "client-1",
            pb::WatchEventsRequest { after_sequence: 0 },
        ))
        .await;
    assert_eq!(denied.err().map(|s| s.code()), Some(Code::PermissionDenied));
    // Sequence 0 is "from the start"; below it is refused, naming the field.
    assert_invalid(
        app.contracts
            .clone()
            .watch_events(as_service(
                "audit",
                &["events:read"],
                pb::WatchEventsRequest { after_sequence: -1 },
            ))
            .await,
        "after_sequence",
    );
}

async fn end_contract_racing_deletes_leaves_every_entry_as_it_was_at_the_lock(
    backend: TestBackend,
) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let mut logged = Vec::new();
    for i in 0..30 {
        let start = at("2026-11-16T00:00:00Z") + Duration::minutes(10 * i);
        logged.push(
            app.log_time("free-1", &c.id, start, 10)
                .await
                .expect("log")
                .id,
        );
    }
    let barrier = Arc::new(Barrier::new(logged.len() + 1));
    let deletes: Vec<_> = logged
        .iter()
        .map(|entry| {
            let (app, barrier, id, entry) =
                (app.clone(), barrier.clone(), c.id.clone(), entry.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let request = pb::DeleteTimeEntryRequest {
                    contract_id: id,
                    time_entry_id: entry.clone(),
                    request_id: String::new(),
                };
                app.contracts
                    .clone()
                    .delete_time_entry(as_user("free-1", request))
                    .await
                    .map(|_| entry)
            })
        })
        .collect();
    let ender = spawn_ender(&app, &barrier, &c);
    let deleted = successes(deletes, "WORK_DIARY_LOCKED").await;
    ender.await.expect("join").expect("end");
    let remaining = diary_entry_ids(&app, &c).await;
    let mut expected: Vec<_> = logged
        .iter()
        .filter(|e| !deleted.contains(e))
        .cloned()
        .collect();
    expected.sort();
    assert_eq!(
        remaining, expected,
        "exactly the acknowledged deletes happened"
    );
    let events = app.events(1 + logged.len() + deleted.len() + 1).await;
    assert!(
        from_the_end(&events)
            .iter()
            .all(|e| !matches!(e.payload, Some(pb::event::Payload::TimeEntryDeleted(_)))),
        "an entry was deleted after the diary locked"
    );
}

async fn the_same_end_request_sent_concurrently_ends_once(backend: TestBackend) {
    let (app, c) = app_with_contract(&backend).await;
    let app = Arc::new(app);
    let tasks = all_at_once(&app, &c.id, 10, |app, id, _| async move {
        app.end_contract("client-1", &id, "end-once").await
    });
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(
            task.await
                .expect("join")
                .expect("every retry gets the first result"),
        );
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "identical answers"
    );
    let events = app.events(2).await;
    assert!(matches!(
        events[1].payload,
        Some(pb::event::Payload::ContractEnded(_))
    ));
    let more = tokio::time::timeout(std::time::Duration::from_millis(700), app.events(3)).await;
    assert!(more.is_err(), "one ContractEnded event, not more");
}

backend_tests!(
    ending_a_contract_locks_the_work_diary,
    either_party_may_end_but_nobody_else,
    ending_twice_fails_unless_it_is_a_retry,
    end_contract_racing_log_time_leaves_nothing_after_the_lock,
    time_is_logged_in_segments_inside_the_current_week,
    overlapping_time_is_refused_in_every_shape,
    overlapping_time_sent_at_once_is_accepted_once,
    time_over_the_weekly_limit_is_kept_but_not_billed,
    time_logged_at_once_is_billed_against_what_was_logged_before,
    time_entries_are_deleted_only_in_the_current_week,
    refunds_are_allowed_for_180_days_up_to_what_was_paid,
    concurrent_refunds_never_exceed_the_payment,
    hours_are_disputed_only_inside_the_review_window,
    payments_are_recorded_once_per_request_id,
    payments_recorded_at_once_all_count,
    bonuses_are_accepted_until_365_days_after_the_end,
    bad_input_names_the_field_and_writes_nothing,
    contracts_are_listed_by_party_with_paging,
    events_stream_in_order_and_resume_from_a_cursor,
    end_contract_racing_deletes_leaves_every_entry_as_it_was_at_the_lock,
    the_same_end_request_sent_concurrently_ends_once,
);
