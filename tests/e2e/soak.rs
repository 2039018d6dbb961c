//! A bounded soak: workers drive every write path of both services (create,
//! log and delete time, pay, refund, mid-contract feedback, end, end-of-
//! contract feedback from both sides) and the reads in between, for
//! `SOAK_SECS` seconds (5 in CI; `SOAK_SECS=60 cargo test -p e2e soak` for
//! the long run). Afterwards every accepted write is present, every state
//! change has exactly one outbox event, and both outboxes are gap-free.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use e2e::scenario::{end_by, freelancer_review, mid_feedback};
use e2e::{Stack, TestBackend, as_service, as_user, at, backend_tests, usd};
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;

/// What one worker had acknowledged.
#[derive(Default, Debug)]
struct Ledger {
    /// contract id → (entries kept, net paid, ended, end feedback revealed)
    contracts: HashMap<String, (usize, i64, bool, bool)>,
    events: HashMap<&'static str, usize>,
    feedback_events: HashMap<&'static str, usize>,
}

impl Ledger {
    fn event(&mut self, kind: &'static str) {
        *self.events.entry(kind).or_default() += 1;
    }
    fn feedback_event(&mut self, kind: &'static str) {
        *self.feedback_events.entry(kind).or_default() += 1;
    }
}

async fn work(s: Arc<Stack>, worker: usize, until: std::time::Instant) -> Ledger {
    let mut ledger = Ledger::default();
    let client = format!("soak-client-{worker}");
    let freelancer = format!("soak-free-{worker}");
    let mut round = 0i64;
    while std::time::Instant::now() < until {
        round += 1;
        let c = s
            .contract(&client, &freelancer, Duration::days(60), None)
            .await;
        ledger.event("ContractCreated");
        let mut kept = 0;
        let mut entries = Vec::new();
        for k in 0..(1 + round % 4) {
            let start = at("2026-11-16T00:00:00Z") + Duration::minutes(10 * k);
            let entry = s
                .contracts
                .log_time(&freelancer, &c.id, start, 10)
                .await
                .expect("log");
            ledger.event("TimeLogged");
            entries.push(entry.id);
            kept += 1;
        }
        if round % 2 == 0 {
            let delete = pb::DeleteTimeEntryRequest {
                contract_id: c.id.clone(),
                time_entry_id: entries[0].clone(),
                request_id: String::new(),
            };
            s.contracts
                .contracts
                .clone()
                .delete_time_entry(as_user(&freelancer, delete))
                .await
                .expect("delete");
            ledger.event("TimeEntryDeleted");
            kept -= 1;
        }
        let paid_at = s.contracts.now() - Duration::hours(1);
        let payment = s
            .contracts
            .pay(
                &c.id,
                pb::PaymentKind::HourlyInvoice,
                5_000,
                paid_at,
                &format!("soak-{}", c.id),
            )
            .await
            .expect("pay");
        ledger.event("PaymentRecorded");
        let mut net = 5_000;
        if round % 3 == 0 {
            s.contracts
                .refund(&freelancer, &payment.id, 1_500, &format!("soak-r-{}", c.id))
                .await
                .expect("refund");
            ledger.event("RefundIssued");
            net -= 1_500;
        }
        s.feedback
            .eligibility(&client, &c.id)
            .await
            .expect("eligibility");
        mid_feedback(&s, &client, &c).await;
        ledger.feedback_event("MidContractFeedbackGiven");
        s.contracts
            .work_diary(&client, &c.id, None)
            .await
            .expect("diary");
        end_by(&s, &client, &c).await;
        ledger.event("ContractEnded");
        // feedback-service follows the end: both parties prompted, by email and in-app.
        for _ in 0..4 {
            ledger.feedback_event("NotificationRequested");
        }
        s.feedback
            .client_end_feedback(&client, &c.id)
            .await
            .expect("client end feedback");
        freelancer_review(&s, &freelancer, &c).await;
        ledger.feedback_event("EndContractFeedbackSubmitted");
        ledger.feedback_event("EndContractFeedbackSubmitted");
        ledger.feedback_event("FeedbackRevealed");
        ledger
            .contracts
            .insert(c.id.clone(), (kept, net, true, true));
    }
    ledger
}

fn kind_of(event: &pb::Event) -> &'static str {
    use pb::event::Payload::*;
    match event.payload {
        Some(ContractCreated(_)) => "ContractCreated",
        Some(ContractEnded(_)) => "ContractEnded",
        Some(TimeLogged(_)) => "TimeLogged",
        Some(TimeEntryDeleted(_)) => "TimeEntryDeleted",
        Some(PaymentRecorded(_)) => "PaymentRecorded",
        Some(RefundIssued(_)) => "RefundIssued",
        Some(HoursDisputed(_)) => "HoursDisputed",
        Some(DisputeAnswered(_)) => "DisputeAnswered",
        Some(DisputeEscalated(_)) => "DisputeEscalated",
        Some(DisputeResolved(_)) => "DisputeResolved",
        Some(DisputeWithdrawn(_)) => "DisputeWithdrawn",
        Some(NotificationRequested(_)) => "NotificationRequested",
        None => "none",
    }
}

fn feedback_kind_of(event: &fpb::Event) -> &'static str {
    use fpb::event::Payload::*;
    match event.payload {
        Some(FeedbackRequested(_)) => "FeedbackRequested",
        Some(NotificationRequested(_)) => "NotificationRequested",
        Some(RequestExpired(_)) => "RequestExpired",
        Some(MidContractFeedbackGiven(_)) => "MidContractFeedbackGiven",
        Some(EndContractFeedbackSubmitted(_)) => "EndContractFeedbackSubmitted",
        Some(FeedbackRevealed(_)) => "FeedbackRevealed",
        Some(ReplyPosted(_)) => "ReplyPosted",
        Some(BonusPaid(_)) => "BonusPaid",
        Some(FeedbackHidden(_)) => "FeedbackHidden",
        Some(FeedbackRestored(_)) => "FeedbackRestored",
        None => "none",
    }
}

async fn a_bounded_soak_loses_nothing_and_keeps_the_outboxes_exact(backend: TestBackend) {
    let secs = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let s = Arc::new(Stack::spawn(&backend).await);
    let until = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let workers: Vec<_> = (0..8)
        .map(|w| tokio::spawn(work(s.clone(), w, until)))
        .collect();
    let mut total = Ledger::default();
    for worker in workers {
        let ledger = worker.await.expect("a worker failed");
        total.contracts.extend(ledger.contracts);
        for (k, v) in ledger.events {
            *total.events.entry(k).or_default() += v;
        }
        for (k, v) in ledger.feedback_events {
            *total.feedback_events.entry(k).or_default() += v;
        }
    }
    assert!(!total.contracts.is_empty());
    eprintln!(
        "soak: {secs} s, {} contracts, events {:?}, feedback events {:?}",
        total.contracts.len(),
        total.events,
        total.feedback_events
    );

    // Every accepted write is present.
    for (id, (kept, net, ended, revealed)) in &total.contracts {
        let contract = s
            .contracts
            .get_contract(as_service(
                "audit",
                &["contracts:read"],
                pb::GetContractRequest {
                    contract_id: id.clone(),
                },
            ))
            .await
            .expect("contract");
        assert_eq!(contract.net_paid, Some(usd(*net)), "{id}");
        assert_eq!(
            contract.state == pb::ContractState::Ended as i32,
            *ended,
            "{id}"
        );
        let diary = s
            .contracts
            .contracts
            .clone()
            .get_work_diary(as_service(
                "audit",
                &["contracts:read"],
                pb::GetWorkDiaryRequest {
                    contract_id: id.clone(),
                    week_time: None,
                },
            ))
            .await
            .expect("diary")
            .into_inner();
        assert_eq!(diary.time_entries.len(), *kept, "{id}");
        let feedback = s
            .feedback
            .end_feedback(as_service(
                "audit",
                &["contracts:read"],
                fpb::GetEndContractFeedbackRequest {
                    contract_id: id.clone(),
                },
            ))
            .await
            .expect("end feedback");
        assert_eq!(feedback.revealed, *revealed, "{id}");
    }

    // Exactly one event per state change, gap-free, on both services.
    let expected: usize = total.events.values().sum();
    let events = s.contracts.events(expected).await;
    assert!(
        !s.contracts.has_more_events_than(expected).await,
        "more events than state changes"
    );
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=expected as i64).collect::<Vec<_>>()
    );
    let mut by_kind: HashMap<&'static str, usize> = HashMap::new();
    for event in &events {
        *by_kind.entry(kind_of(event)).or_default() += 1;
    }
    assert_eq!(by_kind, total.events);
    let expected_feedback: usize = total.feedback_events.values().sum();
    let feedback_events = s.feedback.events(expected_feedback).await;
    assert_eq!(
        feedback_events
            .iter()
            .map(|e| e.sequence)
            .collect::<Vec<_>>(),
        (1..=expected_feedback as i64).collect::<Vec<_>>()
    );
    let mut by_kind: HashMap<&'static str, usize> = HashMap::new();
    for event in &feedback_events {
        *by_kind.entry(feedback_kind_of(event)).or_default() += 1;
    }
    assert_eq!(by_kind, total.feedback_events);
}

backend_tests!(a_bounded_soak_loses_nothing_and_keeps_the_outboxes_exact);
