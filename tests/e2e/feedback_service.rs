//! feedback-service with a real contract-service behind it, on one test
//! clock: every rule of docs/rules.md (feedback-service) at its boundary, the races, the bonus
//! surviving crashes of either service, and outages.

use std::sync::Arc;

use chrono::Duration;
use e2e::scenario::{
    client_review, early_contract, end_by, end_feedback_view, ended_contract, freelancer_review,
    job_success_inputs, mid_feedback, paid_contract, pay_invoice,
};
use e2e::{
    EARLY_CLIENT, FeedbackApp, Stack, TestApp, TestBackend, as_service, as_user, backend_tests, ts,
    usd,
};
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;
use shared::status::{reason, violated_fields};
use tokio::sync::Barrier;
use tonic::Code;

fn reasons(e: &fpb::MidContractEligibility) -> Vec<&str> {
    e.unmet_rules.iter().map(|r| r.reason.as_str()).collect()
}

/// `user`'s mid-contract eligibility on `c` (the call must succeed).
async fn eligibility_of(s: &Stack, user: &str, c: &pb::Contract) -> fpb::MidContractEligibility {
    s.feedback
        .eligibility(user, &c.id)
        .await
        .expect("check eligibility")
}

/// client-1's 60-day-old hourly contract with free-1, paid `paid_ago` ago.
async fn contract_paid(s: &Stack, paid_ago: Duration) -> pb::Contract {
    s.contract("client-1", "free-1", Duration::days(60), Some(paid_ago))
        .await
}

fn assert_failed(result: Result<impl std::fmt::Debug, tonic::Status>, code: Code, why: &str) {
    let status = result.expect_err("call should have failed");
    assert_eq!(status.code(), code, "{status:?}");
    assert_eq!(reason(&status).as_deref(), Some(why), "{status:?}");
}

async fn mid_contract_eligibility_holds_at_30_days_with_a_payment_in_the_last_30(
    backend: TestBackend,
) {
    let s = Stack::spawn(&backend).await;
    let now = s.contracts.now();
    let c = s
        .contract(
            "client-1",
            "free-1",
            Duration::days(30) - Duration::hours(1),
            None,
        )
        .await;
    let e = eligibility_of(&s, "client-1", &c).await;
    assert!(!e.eligible);
    assert_eq!(reasons(&e), ["CONTRACT_TOO_NEW", "NO_RECENT_PAYMENT"]);
    assert_eq!(
        e.unmet_rules[0].hold_time,
        Some(ts(now + Duration::hours(1)))
    );
    assert_eq!(e.cohort, fpb::Cohort::Baseline as i32);
    assert!(!e.bonus_allowed);

    pay_invoice(&s, &c, 5_000, now, "inv-1").await;
    s.contracts
        .set_time(now + Duration::hours(1) - Duration::seconds(1));
    assert_eq!(
        reasons(&eligibility_of(&s, "client-1", &c).await),
        ["CONTRACT_TOO_NEW"]
    );
    s.contracts.set_time(now + Duration::hours(1));
    assert!(
        eligibility_of(&s, "client-1", &c).await.eligible,
        "30 days old"
    );

    // The payment was at `now`: eligible 30 days later, not one second after.
    s.contracts.set_time(now + Duration::days(30));
    assert!(eligibility_of(&s, "client-1", &c).await.eligible);
    s.contracts
        .set_time(now + Duration::days(30) + Duration::seconds(1));
    let stale = eligibility_of(&s, "client-1", &c).await;
    assert_eq!(reasons(&stale), ["NO_RECENT_PAYMENT"]);
    assert_eq!(stale.next_eligible_time, None);

    assert_eq!(
        s.feedback
            .eligibility("free-1", &c.id)
            .await
            .expect_err("freelancer")
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        s.feedback
            .eligibility("mallory", &c.id)
            .await
            .expect_err("stranger")
            .code(),
        Code::PermissionDenied
    );
}

async fn the_early_feedback_cohort_may_give_feedback_at_14_days_with_a_bonus(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let early = s
        .contract(
            EARLY_CLIENT,
            "free-1",
            Duration::days(14),
            Some(Duration::days(1)),
        )
        .await;
    let e = eligibility_of(&s, EARLY_CLIENT, &early).await;
    assert!(e.eligible, "{e:?}");
    assert_eq!(e.cohort, fpb::Cohort::EarlyFeedback as i32);
    assert!(e.bonus_allowed);
    assert_eq!(e.max_bonus, Some(usd(100_000)));
    let younger = s
        .contract(
            EARLY_CLIENT,
            "free-2",
            Duration::days(14) - Duration::seconds(1),
            Some(Duration::hours(1)),
        )
        .await;
    assert_eq!(
        reasons(&eligibility_of(&s, EARLY_CLIENT, &younger).await),
        ["CONTRACT_TOO_NEW"]
    );

    let baseline = s
        .contract(
            "client-1",
            "free-1",
            Duration::days(40),
            Some(Duration::days(1)),
        )
        .await;
    let bonus = s
        .feedback
        .submit_mid("client-1", &baseline.id, Some(500))
        .await;
    assert_eq!(
        violated_fields(&bonus.expect_err("no bonus outside the cohort")),
        ["bonus"]
    );
    for (amount, field) in [(0, "bonus.amount_minor"), (100_001, "bonus.amount_minor")] {
        let err = s
            .feedback
            .submit_mid(EARLY_CLIENT, &early.id, Some(amount))
            .await
            .expect_err("bad bonus");
        assert_eq!(violated_fields(&err), [field]);
    }
    let given = s
        .feedback
        .submit_mid(EARLY_CLIENT, &early.id, Some(100_000))
        .await
        .expect("bonus at the cap");
    assert_eq!(given.cohort, fpb::Cohort::EarlyFeedback as i32);
    assert_eq!(given.bonus, Some(usd(100_000)));
}

async fn mid_contract_feedback_is_public_once_per_payment_and_30_days_and_not_repliable(
    backend: TestBackend,
) {
    let s = Stack::spawn(&backend).await;
    let start = s.contracts.now();
    let c = contract_paid(&s, Duration::days(2)).await;
    let given = mid_feedback(&s, "client-1", &c).await;
    assert_eq!(given.rating, 5);

    let e = eligibility_of(&s, "client-1", &c).await;
    assert_eq!(
        reasons(&e),
        ["FEEDBACK_SINCE_LAST_PAYMENT", "FEEDBACK_TOO_RECENT"]
    );
    assert_failed(
        s.feedback.submit_mid("client-1", &c.id, None).await,
        Code::FailedPrecondition,
        "FEEDBACK_SINCE_LAST_PAYMENT",
    );

    // A new payment 20 days later still leaves the 30-day rule.
    s.contracts.set_time(start + Duration::days(20));
    pay_invoice(&s, &c, 1_000, start + Duration::days(20), "inv-2").await;
    let e = eligibility_of(&s, "client-1", &c).await;
    assert_eq!(reasons(&e), ["FEEDBACK_TOO_RECENT"]);
    assert_eq!(e.next_eligible_time, Some(ts(start + Duration::days(30))));
    s.contracts.set_time(start + Duration::days(30));
    mid_feedback(&s, "client-1", &c).await;

    let history = s.feedback.work_history("free-1").await.expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].mid_contract_feedback.len(), 2, "public at once");
    assert_failed(
        s.feedback.reply("free-1", &given.id).await,
        Code::FailedPrecondition,
        "MID_CONTRACT_FEEDBACK_NOT_REPLYABLE",
    );
    let jss = job_success_inputs(&s.feedback, "free-1", &["jss:read"])
        .await
        .expect("jss");
    assert!(
        jss.is_empty(),
        "mid-contract feedback never counts toward JSS"
    );
}

async fn two_concurrent_submits_give_exactly_one_feedback(backend: TestBackend) {
    let s = Arc::new(Stack::spawn(&backend).await);
    let c = paid_contract(&s, "client-1", "free-1").await;
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (s, barrier, id) = (s.clone(), barrier.clone(), c.id.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.feedback.submit_mid("client-1", &id, None).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.expect("join") {
            Ok(_) => ok += 1,
            Err(status) => assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}"),
        }
    }
    assert_eq!(ok, 1);
    let history = s.feedback.work_history("free-1").await.expect("history");
    assert_eq!(history[0].mid_contract_feedback.len(), 1);
}

async fn freelancers_request_feedback_which_notifies_twice_and_expires_after_14_days(
    backend: TestBackend,
) {
    let s = Stack::spawn(&backend).await;
    let start = s.contracts.now();
    let c = contract_paid(&s, Duration::hours(1)).await;
    assert_eq!(
        s.feedback
            .request_feedback("client-1", &c.id)
            .await
            .expect_err("client")
            .code(),
        Code::PermissionDenied
    );
    let request = s
        .feedback
        .request_feedback("free-1", &c.id)
        .await
        .expect("request");
    assert_eq!(request.state, fpb::FeedbackRequestState::Pending as i32);
    assert_eq!(request.expire_time, Some(ts(start + Duration::days(14))));
    assert_failed(
        s.feedback.request_feedback("free-1", &c.id).await,
        Code::FailedPrecondition,
        "REQUEST_ALREADY_PENDING",
    );

    let events = s.feedback.events(3).await;
    // Sequence 0 is "from the start"; below it is refused, naming the field.
    let negative = s
        .feedback
        .client()
        .watch_events(as_service(
            "audit",
            &["events:read"],
            fpb::WatchEventsRequest { after_sequence: -1 },
        ))
        .await
        .expect_err("a negative sequence");
    assert_eq!(negative.code(), Code::InvalidArgument, "{negative:?}");
    assert_eq!(violated_fields(&negative), ["after_sequence"]);
    let channels: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(fpb::event::Payload::NotificationRequested(n)) => {
                assert_eq!(n.recipient_id, "client-1");
                // The text gives the request's own expiry (configurable).
                let expiry = (start + Duration::days(14)).format("%Y-%m-%d %H:%M UTC");
                assert!(n.text.contains(&expiry.to_string()), "{}", n.text);
                Some(n.channel)
            }
            _ => None,
        })
        .collect();
    assert!(matches!(
        events[0].payload,
        Some(fpb::event::Payload::FeedbackRequested(_))
    ));
    assert_eq!(
        channels,
        [
            fpb::NotificationChannel::Email as i32,
            fpb::NotificationChannel::InAppMessage as i32
        ]
    );

    let list = |s: &Stack| {
        let mut client = s.feedback.client();
        let request = as_user(
            "client-1",
            fpb::ListFeedbackRequestsRequest {
                contract_id: c.id.clone(),
                ..Default::default()
            },
        );
        async move {
            client
                .list_feedback_requests(request)
                .await
                .expect("list")
                .into_inner()
                .feedback_requests
        }
    };
    s.contracts
        .set_time(start + Duration::days(14) - Duration::seconds(1));
    assert_eq!(
        list(&s).await[0].state,
        fpb::FeedbackRequestState::Pending as i32
    );
    s.contracts.set_time(start + Duration::days(14));
    assert_eq!(
        list(&s).await[0].state,
        fpb::FeedbackRequestState::Expired as i32
    );
    s.feedback
        .wait_for_event(|p| matches!(p, fpb::event::Payload::RequestExpired(_)))
        .await;

    // After expiry the client may still leave feedback while eligible; a new request is allowed.
    pay_invoice(&s, &c, 1_000, start + Duration::days(14), "inv-2").await;
    let again = s
        .feedback
        .request_feedback("free-1", &c.id)
        .await
        .expect("a new request after expiry");
    let given = mid_feedback(&s, "client-1", &c).await;
    assert_eq!(given.fulfilled_request_id, again.id);
    let states: Vec<_> = list(&s).await.iter().map(|r| r.state).collect();
    assert_eq!(
        states,
        [
            fpb::FeedbackRequestState::Expired as i32,
            fpb::FeedbackRequestState::Fulfilled as i32
        ]
    );
}

async fn a_bonus_is_paid_once_through_contract_service(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = early_contract(&s, "free-1").await;
    let given = s
        .feedback
        .submit_mid(EARLY_CLIENT, &c.id, Some(2_500))
        .await
        .expect("feedback with bonus");
    assert_eq!(given.bonus_state, fpb::BonusState::Pending as i32);
    let events = s
        .feedback
        .wait_for_event(|p| matches!(p, fpb::event::Payload::BonusPaid(_)))
        .await;
    let Some(fpb::event::Payload::BonusPaid(paid)) = events.last().and_then(|e| e.payload.clone())
    else {
        panic!("BonusPaid expected");
    };
    assert_eq!(paid.feedback_id, given.id);
    assert_eq!(bonus_payments(&s.contracts, &c.id).await, [2_500]);
    let history = s.feedback.work_history("free-1").await.expect("history");
    assert_eq!(
        history[0].mid_contract_feedback[0].bonus_state,
        fpb::BonusState::Paid as i32
    );
    assert_eq!(
        history[0].mid_contract_feedback[0].bonus_payment_id,
        paid.payment_id
    );
}

async fn bonus_payments(contracts: &TestApp, contract_id: &str) -> Vec<i64> {
    shared::testing::payments_of(&contracts.contracts, contract_id, |r| as_user("free-1", r))
        .await
        .iter()
        .filter(|p| p.kind == pb::PaymentKind::Bonus as i32)
        .map(|p| p.amount.as_ref().map_or(0, |m| m.amount_minor))
        .collect()
}

async fn a_bonus_survives_both_services_crashing_between_the_steps(backend: TestBackend) {
    // Feedback committed, workers not running: the process "dies" before paying.
    let s = Stack::spawn_with(&backend, |config| config.run_workers = false).await;
    let clock = s.contracts.clock.clone();
    let c = early_contract(&s, "free-1").await;
    let given = s
        .feedback
        .submit_mid(EARLY_CLIENT, &c.id, Some(700))
        .await
        .expect("feedback with bonus");
    let create_time = shared::time::from_proto(&given.create_time.expect("time")).expect("valid");
    // A first attempt reaches contract-service, but its answer is lost (the
    // payer crashes before marking the bonus paid).
    let token = shared::auth::mint_dev(&shared::auth::TokenSpec::service(
        "feedback-service",
        &["contracts:read", "payments:write"],
    ))
    .expect("mint");
    let payer = feedback_service::contracts::Contracts::connect_lazy(
        &format!("http://{}", s.contracts.addr),
        &token,
        1,
        std::time::Duration::from_secs(2),
        std::time::Duration::from_secs(1),
        shared::metrics::Metrics::new().expect("metrics"),
        None,
    )
    .expect("client");
    payer
        .pay_bonus(&c.id, &given.id, "USD", 700, create_time)
        .await
        .expect("first attempt lands");

    let Stack {
        contracts,
        feedback,
    } = s;
    let (contract_addr, contract_db, feedback_db) = (
        contracts.addr,
        contracts.database_url.clone(),
        feedback.database_url.clone(),
    );
    feedback.stop().await;
    contracts.stop().await;

    // feedback-service restarts while contract-service is still down: retries fail, nothing is lost.
    let feedback = FeedbackApp::spawn(
        FeedbackApp::config(&feedback_db, contract_addr),
        clock.clone(),
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events = feedback.events(1).await;
    assert!(
        events
            .iter()
            .all(|e| !matches!(e.payload, Some(fpb::event::Payload::BonusPaid(_))))
    );

    // contract-service comes back on its address: the retry lands and is deduplicated.
    let contracts = TestApp::spawn_at(contract_addr, contract_db, clock).await;
    feedback
        .wait_for_event(|p| matches!(p, fpb::event::Payload::BonusPaid(_)))
        .await;
    assert_eq!(
        bonus_payments(&contracts, &c.id).await,
        [700],
        "paid exactly once"
    );
}

async fn with_contract_service_down_calls_are_unavailable_and_write_nothing(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    let Stack {
        contracts,
        feedback,
    } = s;
    let (addr, db, clock) = (
        contracts.addr,
        contracts.database_url.clone(),
        contracts.clock.clone(),
    );
    contracts.stop().await;
    let mut request = as_user(
        "client-1",
        fpb::CheckMidContractEligibilityRequest {
            contract_id: c.id.clone(),
        },
    );
    request.set_timeout(std::time::Duration::from_secs(3));
    let down = feedback
        .client()
        .check_mid_contract_eligibility(request)
        .await
        .expect_err("down");
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(
        down.message().contains("contract-service is unavailable"),
        "{down:?}"
    );
    let submit = feedback
        .submit_mid("client-1", &c.id, None)
        .await
        .expect_err("down");
    assert_eq!(submit.code(), Code::Unavailable);
    assert_failed(
        feedback.request_feedback("free-1", &c.id).await,
        Code::Unavailable,
        "CONTRACT_SERVICE_UNAVAILABLE",
    );

    let _contracts = TestApp::spawn_at(addr, db, clock).await;
    let e = feedback.eligibility("client-1", &c.id).await.expect("back");
    assert!(
        e.eligible,
        "nothing was written while contract-service was down: {e:?}"
    );
}

async fn end_of_contract_feedback_is_double_blind_until_both_submit(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    assert_failed(
        s.feedback.client_end_feedback("client-1", &c.id).await,
        Code::FailedPrecondition,
        "CONTRACT_NOT_ENDED",
    );
    end_by(&s, "client-1", &c).await;

    let submitted = s
        .feedback
        .client_end_feedback("client-1", &c.id)
        .await
        .expect("client submits");
    assert!(!submitted.revealed);
    let mine = submitted.feedback.expect("feedback");
    assert!((mine.overall_score - 28.0 / 6.0).abs() < 1e-9);
    assert_failed(
        s.feedback.client_end_feedback("client-1", &c.id).await,
        Code::FailedPrecondition,
        "FEEDBACK_ALREADY_GIVEN",
    );

    let get = |user: &'static str| end_feedback_view(&s.feedback, user, &c.id);
    let freelancer_view = get("free-1").await.expect("get");
    assert!(freelancer_view.client_submitted && !freelancer_view.revealed);
    assert!(
        freelancer_view.feedback.is_empty(),
        "the freelancer learns only that the client submitted"
    );
    let client_view = get("client-1").await.expect("get");
    assert_eq!(client_view.feedback.len(), 1);
    assert!(
        client_view.feedback[0].private_feedback.is_some(),
        "its author sees the private part"
    );
    assert_failed(
        s.feedback.reply("free-1", &mine.id).await,
        Code::FailedPrecondition,
        "FEEDBACK_NOT_REVEALED",
    );

    let second = freelancer_review(&s, "free-1", &c).await;
    assert!(second.revealed);
    let freelancer_view = get("free-1").await.expect("get");
    assert!(freelancer_view.revealed);
    assert_eq!(freelancer_view.feedback.len(), 2);
    assert!(
        freelancer_view
            .feedback
            .iter()
            .all(|f| f.private_feedback.is_none()),
        "never the client's private part"
    );
    assert_eq!(
        get("mallory").await.expect_err("stranger").code(),
        Code::PermissionDenied
    );
    let reveals = s
        .feedback
        .wait_for_event(|p| matches!(p, fpb::event::Payload::FeedbackRevealed(_)))
        .await
        .iter()
        .filter(|e| matches!(e.payload, Some(fpb::event::Payload::FeedbackRevealed(_))))
        .count();
    assert_eq!(reveals, 1);
}

async fn both_parties_submitting_at_once_reveal_exactly_once(backend: TestBackend) {
    let s = Arc::new(Stack::spawn(&backend).await);
    let c = paid_contract(&s, "client-1", "free-1").await;
    end_by(&s, "free-1", &c).await;
    let barrier = Arc::new(Barrier::new(2));
    let client = {
        let (s, b, id) = (s.clone(), barrier.clone(), c.id.clone());
        tokio::spawn(async move {
            b.wait().await;
            s.feedback.client_end_feedback("client-1", &id).await
        })
    };
    let freelancer = {
        let (s, b, id) = (s.clone(), barrier.clone(), c.id.clone());
        tokio::spawn(async move {
            b.wait().await;
            let request = e2e::freelancer_end_feedback_request(&id);
            s.feedback.submit_end_feedback("free-1", request).await
        })
    };
    let a = client.await.expect("join").expect("client");
    let b = freelancer.await.expect("join").expect("freelancer");
    assert!(a.revealed ^ b.revealed, "exactly one submission reveals");
    // Two prompts on two channels (the contract's end), two submissions, one reveal.
    let events = s.feedback.events(7).await;
    let reveals = events
        .iter()
        .filter(|e| matches!(e.payload, Some(fpb::event::Payload::FeedbackRevealed(_))))
        .count();
    assert_eq!(reveals, 1);
}

async fn the_window_closes_14_days_after_the_end_and_publishes_what_exists(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    let late = paid_contract(&s, "client-2", "free-1").await;
    let end = s.contracts.now();
    end_by(&s, "client-1", &c).await;
    end_by(&s, "client-2", &late).await;
    s.contracts
        .set_time(end + Duration::days(14) - Duration::seconds(1));
    let given = s
        .feedback
        .client_end_feedback("client-1", &c.id)
        .await
        .expect("last second of the window");
    s.contracts.set_time(end + Duration::days(14));
    assert_failed(
        s.feedback.client_end_feedback("client-2", &late.id).await,
        Code::FailedPrecondition,
        "FEEDBACK_WINDOW_CLOSED",
    );
    // Reads apply the rule at once; the sweeper then emits the reveal.
    let view = end_feedback_view(&s.feedback, "free-1", &c.id)
        .await
        .expect("get");
    assert!(view.revealed);
    assert_eq!(view.feedback.len(), 1);
    let events = s
        .feedback
        .wait_for_event(|p| matches!(p, fpb::event::Payload::FeedbackRevealed(_)))
        .await;
    let Some(fpb::event::Payload::FeedbackRevealed(revealed)) =
        events.last().and_then(|e| e.payload.clone())
    else {
        panic!("FeedbackRevealed expected");
    };
    assert_eq!(
        revealed.feedback_ids,
        [given.feedback.expect("feedback").id]
    );
}

async fn recipients_reply_once_within_28_days_with_the_right_visibility(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    let end = s.contracts.now();
    end_by(&s, "client-1", &c).await;
    let to_freelancer = client_review(&s, "client-1", &c).await;
    let to_client = freelancer_review(&s, "free-1", &c)
        .await
        .feedback
        .expect("fb");
    assert_eq!(
        s.feedback
            .reply("client-1", &to_freelancer.id)
            .await
            .expect_err("author")
            .code(),
        Code::PermissionDenied
    );
    s.contracts
        .set_time(end + Duration::days(28) - Duration::seconds(1));
    let public = s
        .feedback
        .reply("free-1", &to_freelancer.id)
        .await
        .expect("freelancer replies");
    assert!(public.public);
    assert_failed(
        s.feedback.reply("free-1", &to_freelancer.id).await,
        Code::FailedPrecondition,
        "ALREADY_REPLIED",
    );
    let private = s
        .feedback
        .reply("client-1", &to_client.id)
        .await
        .expect("client replies");
    assert!(!private.public);
    let history = s.feedback.work_history("free-1").await.expect("history");
    let shown = history[0]
        .client_feedback
        .as_ref()
        .expect("revealed client feedback");
    assert_eq!(shown.reply.as_ref().map(|r| r.id.clone()), Some(public.id));
    assert!(shown.private_feedback.is_none());

    let other = ended_contract(&s, "client-2", "free-2").await;
    let fb = client_review(&s, "client-2", &other).await;
    s.contracts.set_time(s.contracts.now() + Duration::days(28));
    assert_failed(
        s.feedback.reply("free-2", &fb.id).await,
        Code::FailedPrecondition,
        "REPLY_WINDOW_CLOSED",
    );
}

async fn work_history_shows_end_feedback_only_with_a_dollar_paid(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let now = s.contracts.now();
    let mut ids = Vec::new();
    for (client, paid) in [("client-99", 99), ("client-100", 100)] {
        let c = s.contract(client, "free-1", Duration::days(60), None).await;
        pay_invoice(&s, &c, paid, now, &format!("p-{client}")).await;
        end_by(&s, client, &c).await;
        s.feedback
            .client_end_feedback(client, &c.id)
            .await
            .expect("client");
        freelancer_review(&s, "free-1", &c).await;
        ids.push(c.id);
    }
    let history = s.feedback.work_history("free-1").await.expect("history");
    let shown: Vec<_> = history
        .iter()
        .filter(|i| i.client_feedback.is_some())
        .map(|i| i.contract_id.clone())
        .collect();
    assert_eq!(shown, [ids[1].clone()], "99 cents is not enough; $1 is");

    let jss = |scopes: &'static [&'static str]| {
        let mut client = s.feedback.client();
        let request = as_service(
            "jss",
            scopes,
            fpb::ListJobSuccessInputsRequest {
                freelancer_id: "free-1".into(),
                ..Default::default()
            },
        );
        async move { client.list_job_success_inputs(request).await }
    };
    let inputs = jss(&["jss:read"]).await.expect("jss").into_inner().feedback;
    assert_eq!(inputs.len(), 2);
    assert!(inputs.iter().all(|f| {
        f.private_feedback
            .as_ref()
            .is_some_and(|p| p.likelihood_to_recommend == 9)
    }));
    assert_eq!(
        jss(&["contracts:read"]).await.expect_err("scope").code(),
        Code::PermissionDenied
    );
}

async fn bad_feedback_input_names_the_field_and_writes_nothing(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let c = paid_contract(&s, "client-1", "free-1").await;
    let submit = |rating: i32, comment: &str| {
        let mut client = s.feedback.client();
        let request = as_user(
            "client-1",
            fpb::SubmitMidContractFeedbackRequest {
                contract_id: c.id.clone(),
                rating,
                comment: comment.into(),
                bonus: None,
                request_id: String::new(),
            },
        );
        async move { client.submit_mid_contract_feedback(request).await }
    };
    for (rating, comment, fields) in [
        (0, "ok", vec!["rating"]),
        (6, "ok", vec!["rating"]),
        (5, "", vec!["comment"]),
        (5, "nul\0", vec!["comment"]),
        (0, &"x".repeat(5_001) as &str, vec!["comment", "rating"]),
    ] {
        let mut got = violated_fields(&submit(rating, comment).await.expect_err("invalid"));
        got.sort();
        assert_eq!(got, fields);
    }
    end_by(&s, "client-1", &c).await;
    let out_of_range = fpb::FreelancerScores {
        skills: 6,
        cooperation: 0,
        ..e2e::freelancer_scores(5)
    };
    let end = s
        .feedback
        .submit_end_feedback(
            "client-1",
            e2e::client_feedback(&c.id, out_of_range, 42, 11, "fine"),
        )
        .await
        .expect_err("invalid");
    let mut fields = violated_fields(&end);
    fields.sort();
    assert_eq!(
        fields,
        [
            "freelancer_scores.cooperation",
            "freelancer_scores.skills",
            "private_feedback.likelihood_to_recommend",
            "private_feedback.reason_for_ending"
        ]
    );
    let view = end_feedback_view(&s.feedback, "client-1", &c.id)
        .await
        .expect("get");
    assert!(!view.client_submitted, "nothing was written");
    assert!(
        s.feedback
            .work_history("free-1")
            .await
            .expect("history")
            .is_empty()
    );
}

async fn batch_eligibility_answers_for_the_callers_contracts_only(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let ready = paid_contract(&s, "client-1", "free-1").await;
    let young = s
        .contract(
            "client-1",
            "free-2",
            Duration::days(3),
            Some(Duration::days(1)),
        )
        .await;
    let other = paid_contract(&s, "client-2", "free-1").await;
    let missing = shared::ids::new_id("ctr");
    let ids = vec![
        young.id.clone(),
        other.id.clone(),
        ready.id.clone(),
        missing.clone(),
    ];
    let batch = s
        .feedback
        .client()
        .batch_check_mid_contract_eligibility(as_user(
            "client-1",
            fpb::BatchCheckMidContractEligibilityRequest { contract_ids: ids },
        ))
        .await
        .expect("batch")
        .into_inner();
    let answers: Vec<_> = batch
        .eligibilities
        .iter()
        .map(|e| (e.contract_id.clone(), e.eligible))
        .collect();
    assert_eq!(
        answers,
        [(young.id.clone(), false), (ready.id.clone(), true)]
    );
    assert_eq!(batch.unavailable_contract_ids, [other.id.clone(), missing]);
    let too_many = s
        .feedback
        .client()
        .batch_check_mid_contract_eligibility(as_user(
            "client-1",
            fpb::BatchCheckMidContractEligibilityRequest {
                contract_ids: vec![ready.id.clone(); 101],
            },
        ))
        .await
        .expect_err("too many");
    assert_eq!(violated_fields(&too_many), ["contract_ids"]);
    let as_service_call = s
        .feedback
        .client()
        .batch_check_mid_contract_eligibility(as_service(
            "web",
            &["contracts:read"],
            fpb::BatchCheckMidContractEligibilityRequest {
                contract_ids: vec![other.id.clone()],
            },
        ))
        .await
        .expect("services see any contract")
        .into_inner();
    assert_eq!(as_service_call.eligibilities.len(), 1);
}

async fn work_history_pages_through_a_freelancers_contracts(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let mut expected = Vec::new();
    for i in 0..3 {
        let client = format!("client-{i}");
        let c = paid_contract(&s, &client, "free-1").await;
        mid_feedback(&s, &client, &c).await;
        expected.push(c.id);
    }
    let other = paid_contract(&s, "client-9", "free-2").await;
    mid_feedback(&s, "client-9", &other).await;
    let page = |freelancer: &str, token: String| {
        let mut client = s.feedback.client();
        let request = as_user(
            "anyone",
            fpb::ListWorkHistoryRequest {
                freelancer_id: freelancer.into(),
                page_size: 2,
                page_token: token,
            },
        );
        async move {
            client
                .list_work_history(request)
                .await
                .map(|r| r.into_inner())
        }
    };
    let first = page("free-1", String::new()).await.expect("page 1");
    assert_eq!(first.items.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = page("free-1", first.next_page_token.clone())
        .await
        .expect("page 2");
    assert!(second.next_page_token.is_empty());
    let seen: Vec<_> = first
        .items
        .iter()
        .chain(&second.items)
        .map(|i| i.contract_id.clone())
        .collect();
    assert_eq!(seen, expected);
    let reused = page("free-2", first.next_page_token)
        .await
        .expect_err("token of another request");
    assert_eq!(violated_fields(&reused), ["page_token"]);
}

async fn a_slow_contract_service_fails_within_the_callers_deadline_and_writes_nothing(
    backend: TestBackend,
) {
    let contracts = TestApp::spawn(&backend).await;
    let proxy = e2e::proxy::TcpProxy::start(contracts.addr)
        .await
        .expect("proxy");
    let url = backend.fresh_database_url().await;
    let feedback = FeedbackApp::spawn(
        FeedbackApp::config(&url, proxy.addr()),
        contracts.clock.clone(),
    )
    .await;
    let s = Stack {
        contracts,
        feedback,
    };
    let c = paid_contract(&s, "client-1", "free-1").await;
    assert!(
        s.feedback
            .eligibility("client-1", &c.id)
            .await
            .expect("fast path")
            .eligible
    );

    proxy.set_delay(std::time::Duration::from_secs(3));
    let deadline = std::time::Duration::from_millis(600);
    let mut submit = as_user(
        "client-1",
        fpb::SubmitMidContractFeedbackRequest {
            contract_id: c.id.clone(),
            rating: 5,
            comment: "slow".into(),
            bonus: None,
            request_id: String::new(),
        },
    );
    submit.set_timeout(deadline);
    let started = std::time::Instant::now();
    let slow = s
        .feedback
        .client()
        .submit_mid_contract_feedback(submit)
        .await
        .expect_err("too slow");
    assert!(
        matches!(
            slow.code(),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable
        ),
        "{slow:?}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "answered before the slow hop would have: {:?}",
        started.elapsed()
    );

    // Chunks already queued behind the delay still take their time; then it is fast again.
    proxy.set_delay(std::time::Duration::ZERO);
    let mut recovered = None;
    for _ in 0..50 {
        if let Ok(e) = s.feedback.eligibility("client-1", &c.id).await {
            recovered = Some(e);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let e = recovered.expect("contract-service reachable again");
    assert!(e.eligible, "the timed-out submit wrote nothing: {e:?}");
}

backend_tests!(
    mid_contract_eligibility_holds_at_30_days_with_a_payment_in_the_last_30,
    the_early_feedback_cohort_may_give_feedback_at_14_days_with_a_bonus,
    mid_contract_feedback_is_public_once_per_payment_and_30_days_and_not_repliable,
    two_concurrent_submits_give_exactly_one_feedback,
    freelancers_request_feedback_which_notifies_twice_and_expires_after_14_days,
    a_bonus_is_paid_once_through_contract_service,
    a_bonus_survives_both_services_crashing_between_the_steps,
    with_contract_service_down_calls_are_unavailable_and_write_nothing,
    end_of_contract_feedback_is_double_blind_until_both_submit,
    both_parties_submitting_at_once_reveal_exactly_once,
    the_window_closes_14_days_after_the_end_and_publishes_what_exists,
    recipients_reply_once_within_28_days_with_the_right_visibility,
    work_history_shows_end_feedback_only_with_a_dollar_paid,
    bad_feedback_input_names_the_field_and_writes_nothing,
    batch_eligibility_answers_for_the_callers_contracts_only,
    work_history_pages_through_a_freelancers_contracts,
    a_slow_contract_service_fails_within_the_callers_deadline_and_writes_nothing,
);
