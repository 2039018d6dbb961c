//! The dispute lifecycle end to end: filing part or all of a week, the
//! freelancer's answer inside the response window (boundary at its last
//! second and first second outside), the automatic escalation by the sweep
//! on the test clock, support's decision, withdrawal, who may see what, the
//! refund carried out exactly once, and an answer racing the escalation.

use chrono::{DateTime, Duration, Utc};
use e2e::{TestApp, TestBackend, as_service, as_user, at, backend_tests, ts, usd};
use shared::proto::contract::v1 as pb;
use shared::status::{reason, violated_fields};
use tonic::Code;

const CLIENT: &str = "client-d";
const FREELANCER: &str = "free-d";
/// Filing time: Monday noon, when the review window of the week of 11-16 opens.
fn filed_at() -> DateTime<Utc> {
    at("2026-11-23T12:00:00Z")
}
/// Inside the week of 2026-11-16 (the test clock starts on its Wednesday).
fn week() -> DateTime<Utc> {
    at("2026-11-18T00:00:00Z")
}

fn assert_failed<T: std::fmt::Debug>(r: Result<T, tonic::Status>, code: Code, why: &str) {
    let status = r.expect_err(why);
    assert_eq!(status.code(), code, "{status:?}");
    if code == Code::InvalidArgument {
        assert!(
            violated_fields(&status).contains(&why.to_owned()),
            "{status:?}"
        );
    } else if code == Code::FailedPrecondition {
        assert_eq!(reason(&status).as_deref(), Some(why), "{status:?}");
    }
}

/// An hourly contract ($60/h) with two billable hours in the week of 11-16.
async fn worked_contract(app: &TestApp, client: &str) -> pb::Contract {
    let c = app.hourly_contract(client, FREELANCER).await;
    app.log_time(FREELANCER, &c.id, at("2026-11-18T08:00:00Z"), 120)
        .await
        .expect("log");
    c
}

async fn file(app: &TestApp, contract: &str, minutes: i32) -> Result<pb::Dispute, tonic::Status> {
    let r = app
        .contracts
        .clone()
        .dispute_hours(as_user(
            CLIENT,
            pb::DisputeHoursRequest {
                contract_id: contract.into(),
                week_time: Some(ts(week())),
                reason: "the hours do not match the work".into(),
                request_id: String::new(),
                disputed_minutes: minutes,
            },
        ))
        .await?;
    Ok(r.into_inner().dispute.expect("dispute"))
}

async fn accept(
    app: &TestApp,
    user: &str,
    id: &str,
    minutes: i32,
    request_id: &str,
) -> Result<pb::Dispute, tonic::Status> {
    let r = app
        .contracts
        .clone()
        .accept_dispute(as_user(
            user,
            pb::AcceptDisputeRequest {
                dispute_id: id.into(),
                accepted_minutes: minutes,
                note: String::new(),
                request_id: request_id.into(),
            },
        ))
        .await?;
    Ok(r.into_inner().dispute.expect("dispute"))
}

async fn decline(
    app: &TestApp,
    user: &str,
    id: &str,
    why: &str,
) -> Result<pb::Dispute, tonic::Status> {
    let r = app
        .contracts
        .clone()
        .decline_dispute(as_user(
            user,
            pb::DeclineDisputeRequest {
                dispute_id: id.into(),
                reason: why.into(),
                request_id: String::new(),
            },
        ))
        .await?;
    Ok(r.into_inner().dispute.expect("dispute"))
}

async fn withdraw(app: &TestApp, user: &str, id: &str) -> Result<pb::Dispute, tonic::Status> {
    let r = app
        .contracts
        .clone()
        .withdraw_dispute(as_user(
            user,
            pb::WithdrawDisputeRequest {
                dispute_id: id.into(),
                reason: String::new(),
                request_id: String::new(),
            },
        ))
        .await?;
    Ok(r.into_inner().dispute.expect("dispute"))
}

async fn resolve(
    app: &TestApp,
    scopes: &[&str],
    id: &str,
    amount: pb::Money,
) -> Result<pb::Dispute, tonic::Status> {
    let r = app
        .contracts
        .clone()
        .resolve_dispute(as_service(
            "support",
            scopes,
            pb::ResolveDisputeRequest {
                dispute_id: id.into(),
                refund_amount: Some(amount),
                note: "support reviewed the screenshots".into(),
                request_id: String::new(),
            },
        ))
        .await?;
    Ok(r.into_inner().dispute.expect("dispute"))
}

async fn list(
    app: &TestApp,
    request: tonic::Request<pb::ListDisputesRequest>,
) -> Result<pb::ListDisputesResponse, tonic::Status> {
    Ok(app
        .contracts
        .clone()
        .list_disputes(request)
        .await?
        .into_inner())
}

async fn the_dispute(app: &TestApp, contract: &str) -> pb::Dispute {
    let mut page = list(
        app,
        as_user(
            CLIENT,
            pb::ListDisputesRequest {
                contract_id: contract.into(),
                ..Default::default()
            },
        ),
    )
    .await
    .expect("list");
    assert_eq!(page.disputes.len(), 1, "{page:?}");
    page.disputes.remove(0)
}

async fn billing_week(app: &TestApp, contract: &str) -> pb::GetBillingWeekResponse {
    app.contracts
        .clone()
        .get_billing_week(as_user(
            CLIENT,
            pb::GetBillingWeekRequest {
                contract_id: contract.into(),
                week_time: Some(ts(week())),
            },
        ))
        .await
        .expect("billing week")
        .into_inner()
}

async fn invoice(app: &TestApp, contract: &str, amount: i64, request_id: &str) -> pb::Payment {
    app.pay_week(contract, amount, week(), request_id)
        .await
        .expect("invoice the disputed week")
}

async fn payments(app: &TestApp, contract: &str) -> Vec<pb::Payment> {
    app.contracts
        .clone()
        .list_payments(as_user(
            CLIENT,
            pb::ListPaymentsRequest {
                contract_id: contract.into(),
                ..Default::default()
            },
        ))
        .await
        .expect("payments")
        .into_inner()
        .payments
}

/// Every event committed so far (stops once none arrives for 700 ms).
async fn all_events(app: &TestApp) -> Vec<pb::Event> {
    let mut n = 0;
    while app.has_more_events_than(n).await {
        n += 1;
    }
    app.events(n).await
}

fn kinds_for(events: &[pb::Event], dispute_id: &str) -> Vec<&'static str> {
    use pb::event::Payload::*;
    let of = |d: &Option<pb::Dispute>| d.as_ref().is_some_and(|d| d.id == dispute_id);
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(HoursDisputed(x)) if of(&x.dispute) => Some("HoursDisputed"),
            Some(DisputeAnswered(x)) if of(&x.dispute) => Some("DisputeAnswered"),
            Some(DisputeEscalated(x)) if of(&x.dispute) => Some("DisputeEscalated"),
            Some(DisputeResolved(x)) if of(&x.dispute) => Some("DisputeResolved"),
            Some(DisputeWithdrawn(x)) if of(&x.dispute) => Some("DisputeWithdrawn"),
            Some(RefundIssued(x))
                if x.refund
                    .as_ref()
                    .is_some_and(|r| r.dispute_id == dispute_id) =>
            {
                Some("RefundIssued")
            }
            _ => None,
        })
        .collect()
}

fn notified(events: &[pb::Event], dispute_id: &str) -> Vec<(String, i32)> {
    events
        .iter()
        .filter_map(|e| match &e.payload {
            Some(pb::event::Payload::NotificationRequested(n)) if n.dispute_id == dispute_id => {
                Some((n.recipient_id.clone(), n.channel))
            }
            _ => None,
        })
        .collect()
}

fn both_channels(user: &str) -> Vec<(String, i32)> {
    vec![
        (user.to_owned(), pb::NotificationChannel::Email as i32),
        (
            user.to_owned(),
            pb::NotificationChannel::InAppMessage as i32,
        ),
    ]
}

async fn disputes_cover_part_or_all_of_the_billable_minutes(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = worked_contract(&app, CLIENT).await;
    let idle = app.hourly_contract(CLIENT, FREELANCER).await;
    app.set_time(filed_at());
    assert_failed(
        file(&app, &c.id, 130).await,
        Code::InvalidArgument,
        "disputed_minutes",
    );
    assert_failed(
        file(&app, &c.id, 15).await,
        Code::InvalidArgument,
        "disputed_minutes",
    );
    assert_failed(
        file(&app, &idle.id, 0).await,
        Code::FailedPrecondition,
        "NO_BILLABLE_TIME",
    );
    let d = file(&app, &c.id, 30).await.expect("file 30 minutes");
    assert_eq!(d.state, pb::DisputeState::Open as i32);
    assert_eq!((d.disputed_minutes, d.whole_week), (30, false));
    assert_eq!(d.disputed_amount, Some(usd(3_000)));
    assert_eq!(d.respond_by_time, Some(ts(filed_at() + Duration::days(5))));
    assert_failed(
        file(&app, &c.id, 0).await,
        Code::FailedPrecondition,
        "DISPUTE_ALREADY_OPEN",
    );
    // Nothing was written by the refused calls.
    assert_eq!(the_dispute(&app, &c.id).await.id, d.id);
    let events = all_events(&app).await;
    assert_eq!(kinds_for(&events, &d.id), ["HoursDisputed"]);
    assert_eq!(notified(&events, &d.id), both_channels(FREELANCER));
}

async fn accepting_refunds_the_weeks_invoice_exactly_once(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = worked_contract(&app, CLIENT).await;
    app.set_time(at("2026-11-23T09:00:00Z"));
    let paid = app
        .pay_week(&c.id, 12_000, week(), "inv-1")
        .await
        .expect("invoice the week");
    assert_eq!(
        paid.billing_week_start_time,
        Some(ts(at("2026-11-16T00:00:00Z")))
    );
    app.set_time(filed_at());
    let d = file(&app, &c.id, 0).await.expect("whole week");
    assert_eq!((d.disputed_minutes, d.whole_week), (120, true));
    assert_eq!(d.disputed_amount, Some(usd(12_000)));
    assert_failed(
        accept(&app, CLIENT, &d.id, 60, "a").await,
        Code::PermissionDenied,
        "client",
    );
    assert_failed(
        accept(&app, FREELANCER, &d.id, 130, "a").await,
        Code::InvalidArgument,
        "accepted_minutes",
    );
    // The last second inside the response window.
    app.set_time(filed_at() + Duration::days(5) - Duration::seconds(1));
    let done = accept(&app, FREELANCER, &d.id, 60, "accept-1")
        .await
        .expect("accept an hour");
    assert_eq!(done.state, pb::DisputeState::Resolved as i32);
    let r = done.resolution.clone().expect("resolution");
    assert_eq!(r.resolved_by, pb::DisputeResolver::Freelancer as i32);
    assert_eq!(
        (r.accepted_minutes, r.refund_amount.clone()),
        (60, Some(usd(6_000)))
    );
    assert_eq!(
        (r.refunded_amount, r.billing_adjustment),
        (Some(usd(6_000)), Some(usd(0)))
    );
    assert_eq!(r.refunds.len(), 1);
    assert_eq!(r.refunds[0].payment_id, paid.id);
    // A retry replays the first answer; another call finds it resolved.
    let again = accept(&app, FREELANCER, &d.id, 60, "accept-1")
        .await
        .expect("retry");
    assert_eq!(again, done);
    assert_failed(
        accept(&app, FREELANCER, &d.id, 60, "accept-2").await,
        Code::FailedPrecondition,
        "DISPUTE_NOT_OPEN",
    );
    assert_failed(
        withdraw(&app, CLIENT, &d.id).await,
        Code::FailedPrecondition,
        "DISPUTE_NOT_OPEN",
    );
    assert_eq!(
        payments(&app, &c.id).await[0].refunded_amount,
        Some(usd(6_000))
    );
    let week = billing_week(&app, &c.id).await;
    assert_eq!(
        (week.invoiced_amount, week.refunded_amount),
        (Some(usd(12_000)), Some(usd(6_000)))
    );
    assert_eq!(
        week.amount,
        Some(usd(12_000)),
        "an invoiced week is refunded, not adjusted"
    );
    let events = all_events(&app).await;
    assert_eq!(
        kinds_for(&events, &d.id),
        [
            "HoursDisputed",
            "RefundIssued",
            "DisputeAnswered",
            "DisputeResolved"
        ]
    );
    let told = notified(&events, &d.id);
    assert_eq!(told[2..], both_channels(CLIENT)[..]);
    // The week was resolved: it cannot be disputed again.
    app.set_time(filed_at() + Duration::hours(1));
    assert_failed(
        file(&app, &c.id, 0).await,
        Code::FailedPrecondition,
        "DISPUTE_ALREADY_RESOLVED",
    );
}

async fn unanswered_disputes_escalate_at_the_deadline(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = worked_contract(&app, CLIENT).await;
    app.set_time(filed_at());
    let d = file(&app, &c.id, 60).await.expect("file");
    let deadline = filed_at() + Duration::days(5);
    // The last second inside: nothing escalates.
    app.set_time(deadline - Duration::seconds(1));
    assert_eq!(app.sweep_disputes().await, 0);
    assert_eq!(
        the_dispute(&app, &c.id).await.state,
        pb::DisputeState::Open as i32
    );
    // The first second outside: answers and withdrawal are refused (nothing
    // written), and the background sweep escalates on the test clock.
    app.set_time(deadline);
    assert_failed(
        accept(&app, FREELANCER, &d.id, 0, "").await,
        Code::FailedPrecondition,
        "DISPUTE_RESPONSE_WINDOW_CLOSED",
    );
    assert_failed(
        decline(&app, FREELANCER, &d.id, "no").await,
        Code::FailedPrecondition,
        "DISPUTE_RESPONSE_WINDOW_CLOSED",
    );
    assert_failed(
        withdraw(&app, CLIENT, &d.id).await,
        Code::FailedPrecondition,
        "DISPUTE_RESPONSE_WINDOW_CLOSED",
    );
    let mut escalated = None;
    for _ in 0..100 {
        let now = the_dispute(&app, &c.id).await;
        if now.state == pb::DisputeState::Escalated as i32 {
            escalated = Some(now);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let escalated = escalated.expect("the background sweep escalates within 5 s");
    assert_eq!(
        escalated.escalation_cause,
        pb::EscalationCause::NoResponse as i32
    );
    assert_eq!(escalated.escalate_time, Some(ts(deadline)));
    assert_eq!(app.sweep_disputes().await, 0, "escalated once");
    let events = all_events(&app).await;
    assert_eq!(
        kinds_for(&events, &d.id),
        ["HoursDisputed", "DisputeEscalated"]
    );
    let told = notified(&events, &d.id);
    assert_eq!(
        told[2..],
        [both_channels(CLIENT), both_channels(FREELANCER)].concat()[..]
    );
}

async fn support_decides_declined_disputes(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = worked_contract(&app, CLIENT).await;
    app.set_time(filed_at());
    let d = file(&app, &c.id, 0).await.expect("file");
    assert_failed(
        resolve(&app, &["admin"], &d.id, usd(1)).await,
        Code::FailedPrecondition,
        "DISPUTE_NOT_ESCALATED",
    );
    assert_failed(
        decline(&app, FREELANCER, &d.id, "").await,
        Code::InvalidArgument,
        "reason",
    );
    app.set_time(filed_at() + Duration::hours(2));
    let e = decline(&app, FREELANCER, &d.id, "I worked those hours")
        .await
        .expect("decline");
    assert_eq!(e.state, pb::DisputeState::Escalated as i32);
    assert_eq!(e.escalation_cause, pb::EscalationCause::Declined as i32);
    assert_eq!(e.decline_reason, "I worked those hours");
    assert_failed(
        accept(&app, FREELANCER, &d.id, 0, "").await,
        Code::FailedPrecondition,
        "DISPUTE_NOT_OPEN",
    );
    assert_failed(
        resolve(&app, &["payments:write"], &d.id, usd(1)).await,
        Code::PermissionDenied,
        "scope",
    );
    assert_failed(
        resolve(&app, &["admin"], &d.id, usd(12_001)).await,
        Code::InvalidArgument,
        "refund_amount.amount_minor",
    );
    let eur = pb::Money {
        currency_code: "EUR".into(),
        amount_minor: 1,
    };
    assert_failed(
        resolve(&app, &["admin"], &d.id, eur).await,
        Code::InvalidArgument,
        "refund_amount.currency_code",
    );
    app.set_time(filed_at() + Duration::days(1));
    let done = resolve(&app, &["admin"], &d.id, usd(5_000))
        .await
        .expect("decide");
    assert_eq!(done.state, pb::DisputeState::Resolved as i32);
    let r = done.resolution.expect("resolution");
    assert_eq!(r.resolved_by, pb::DisputeResolver::Support as i32);
    // Not invoiced yet: the week's billable amount is lowered instead.
    assert_eq!(
        (r.refunded_amount, r.billing_adjustment),
        (Some(usd(0)), Some(usd(5_000)))
    );
    assert!(r.refunds.is_empty());
    let week = billing_week(&app, &c.id).await;
    assert_eq!(week.unadjusted_amount, Some(usd(12_000)));
    assert_eq!(week.dispute_adjustment, Some(usd(5_000)));
    assert_eq!(week.amount, Some(usd(7_000)));
    assert_eq!(week.disputes[0].state, pb::DisputeState::Resolved as i32);
    assert_failed(
        resolve(&app, &["admin"], &d.id, usd(1)).await,
        Code::FailedPrecondition,
        "DISPUTE_NOT_ESCALATED",
    );
    let events = all_events(&app).await;
    assert_eq!(
        kinds_for(&events, &d.id),
        [
            "HoursDisputed",
            "DisputeAnswered",
            "DisputeEscalated",
            "DisputeResolved"
        ]
    );
    let told = notified(&events, &d.id);
    assert_eq!(
        told[2..],
        [
            both_channels(CLIENT),
            both_channels(CLIENT),
            both_channels(FREELANCER)
        ]
        .concat()[..]
    );
}

async fn withdrawal_frees_the_week_and_strangers_see_nothing(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = worked_contract(&app, CLIENT).await;
    let mut others = Vec::new();
    for _ in 0..2 {
        others.push(worked_contract(&app, CLIENT).await);
    }
    app.set_time(filed_at());
    let d = file(&app, &c.id, 0).await.expect("file");
    for o in &others {
        file(&app, &o.id, 10).await.expect("file");
    }
    // Strangers, and parties in the wrong role, are denied; unknown ids read the same.
    let stranger = "stranger-d";
    assert_failed(
        accept(&app, stranger, &d.id, 0, "").await,
        Code::PermissionDenied,
        "stranger",
    );
    assert_failed(
        decline(&app, stranger, &d.id, "x").await,
        Code::PermissionDenied,
        "stranger",
    );
    assert_failed(
        withdraw(&app, stranger, &d.id).await,
        Code::PermissionDenied,
        "stranger",
    );
    assert_failed(
        withdraw(&app, FREELANCER, &d.id).await,
        Code::PermissionDenied,
        "freelancer",
    );
    let unknown = "dsp_0193a0b0c0d07e8f9a0b1c2d3e4f5a6b";
    assert_failed(
        accept(&app, FREELANCER, unknown, 0, "").await,
        Code::PermissionDenied,
        "unknown",
    );
    assert_failed(
        resolve(&app, &["admin"], unknown, usd(0)).await,
        Code::NotFound,
        "unknown",
    );
    let of = |contract: &str| pb::ListDisputesRequest {
        contract_id: contract.into(),
        ..Default::default()
    };
    assert_failed(
        list(&app, as_user(stranger, of(&c.id))).await,
        Code::PermissionDenied,
        "stranger",
    );
    assert_failed(
        list(&app, as_user(CLIENT, of(""))).await,
        Code::InvalidArgument,
        "contract_id",
    );
    assert_eq!(
        list(&app, as_user(FREELANCER, of(&c.id)))
            .await
            .expect("list")
            .disputes
            .len(),
        1
    );
    // Support's queue: every contract, paged (AIP-158).
    let page = |token: &str| pb::ListDisputesRequest {
        page_size: 2,
        page_token: token.into(),
        state: pb::DisputeState::Open as i32,
        ..Default::default()
    };
    let first = list(&app, as_service("support", &["admin"], page("")))
        .await
        .expect("page 1");
    assert_eq!(first.disputes.len(), 2);
    assert!(!first.next_page_token.is_empty());
    let second = list(
        &app,
        as_service("support", &["admin"], page(&first.next_page_token)),
    )
    .await
    .expect("page 2");
    assert_eq!(second.disputes.len(), 1);
    assert!(second.next_page_token.is_empty());
    assert_failed(
        list(&app, as_service("x", &["payments:write"], page(""))).await,
        Code::PermissionDenied,
        "scope",
    );
    // The client withdraws; the week may be disputed again.
    let w = withdraw(&app, CLIENT, &d.id).await.expect("withdraw");
    assert_eq!(w.state, pb::DisputeState::Withdrawn as i32);
    assert_failed(
        accept(&app, FREELANCER, &d.id, 0, "").await,
        Code::FailedPrecondition,
        "DISPUTE_NOT_OPEN",
    );
    let again = file(&app, &c.id, 60).await.expect("file again");
    assert_ne!(again.id, d.id);
    let events = all_events(&app).await;
    assert_eq!(
        kinds_for(&events, &d.id),
        ["HoursDisputed", "DisputeWithdrawn"]
    );
    assert_eq!(notified(&events, &d.id)[2..], both_channels(FREELANCER)[..]);
}

async fn hourly_invoices_name_their_billing_week(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    let c = app.hourly_contract(CLIENT, FREELANCER).await;
    let now = app.now();
    let pay = |kind: pb::PaymentKind, week: Option<DateTime<Utc>>, id: &str| {
        let mut client = app.contracts.clone();
        let request = as_service(
            "billing",
            &["payments:write"],
            pb::RecordPaymentRequest {
                contract_id: c.id.clone(),
                kind: kind as i32,
                amount: Some(usd(100)),
                paid_time: Some(ts(now)),
                memo: String::new(),
                request_id: id.into(),
                billing_week_time: week.map(ts),
            },
        );
        async move { client.record_payment(request).await }
    };
    assert_failed(
        pay(pb::PaymentKind::HourlyInvoice, None, "a").await,
        Code::InvalidArgument,
        "billing_week_time",
    );
    assert_failed(
        pay(pb::PaymentKind::Bonus, Some(now), "b").await,
        Code::InvalidArgument,
        "billing_week_time",
    );
    assert_failed(
        pay(
            pb::PaymentKind::HourlyInvoice,
            Some(now + Duration::days(7)),
            "c",
        )
        .await,
        Code::InvalidArgument,
        "billing_week_time",
    );
    assert_failed(
        pay(
            pb::PaymentKind::HourlyInvoice,
            Some(now - Duration::days(70)),
            "d",
        )
        .await,
        Code::InvalidArgument,
        "billing_week_time",
    );
    assert!(payments(&app, &c.id).await.is_empty(), "nothing written");
    let p = pay(
        pb::PaymentKind::HourlyInvoice,
        Some(now - Duration::days(7)),
        "e",
    )
    .await
    .expect("invoice last week")
    .into_inner()
    .payment
    .expect("payment");
    assert_eq!(
        p.billing_week_start_time,
        Some(ts(at("2026-11-09T00:00:00Z")))
    );
}

/// The freelancer's acceptance, read at the last second inside the window,
/// and the sweep at the first second outside, commit at once: exactly one
/// transition wins, and at most one refund is made.
async fn accepting_while_the_sweep_escalates_changes_the_dispute_once(backend: TestBackend) {
    let app = TestApp::spawn(&backend).await;
    const ROUNDS: i64 = 6;
    let mut cases = Vec::new();
    for i in 0..ROUNDS {
        let c = worked_contract(&app, CLIENT).await;
        app.set_time(at("2026-11-23T09:00:00Z"));
        invoice(&app, &c.id, 12_000, &format!("race-inv-{i}")).await;
        app.set_time(crate::disputes::week_clock_reset());
        cases.push(c);
    }
    for (i, c) in cases.iter().enumerate() {
        // A minute apart, so each round's deadline is its own.
        app.set_time(filed_at() + Duration::minutes(i as i64));
        cases_file(&app, c).await;
    }
    let (mut accepted, mut escalated) = (0, 0);
    for (i, c) in cases.iter().enumerate() {
        let d = the_dispute(&app, &c.id).await;
        let deadline = filed_at() + Duration::minutes(i as i64) + Duration::days(5);
        app.set_time(deadline - Duration::seconds(1));
        let (answer, swept) = tokio::join!(
            accept(&app, FREELANCER, &d.id, 0, ""),
            app.sweep_disputes_at(deadline)
        );
        let after = the_dispute(&app, &c.id).await;
        let refunded: i64 = payments(&app, &c.id)
            .await
            .iter()
            .map(|p| p.refunded_amount.as_ref().map_or(0, |m| m.amount_minor))
            .sum();
        match answer {
            Ok(_) => {
                accepted += 1;
                assert_eq!(swept, 0, "the sweep must not escalate an accepted dispute");
                assert_eq!(after.state, pb::DisputeState::Resolved as i32);
                assert_eq!(refunded, 12_000);
            }
            Err(status) => {
                escalated += 1;
                assert_eq!(
                    reason(&status).as_deref(),
                    Some("DISPUTE_NOT_OPEN"),
                    "{status:?}"
                );
                assert_eq!(swept, 1);
                assert_eq!(after.state, pb::DisputeState::Escalated as i32);
                assert_eq!(refunded, 0);
            }
        }
    }
    assert_eq!(accepted + escalated, ROUNDS);
    let events = all_events(&app).await;
    for c in &cases {
        let d = the_dispute(&app, &c.id).await;
        let kinds = kinds_for(&events, &d.id);
        let transitions = kinds
            .iter()
            .filter(|k| matches!(**k, "DisputeResolved" | "DisputeEscalated"))
            .count();
        assert_eq!(transitions, 1, "{kinds:?}");
        assert!(kinds.iter().filter(|k| **k == "RefundIssued").count() <= 1);
    }
    eprintln!("race: {accepted} accepted, {escalated} escalated");
}

/// Back to the week being worked (time is logged only in the current week).
pub fn week_clock_reset() -> DateTime<Utc> {
    e2e::test_epoch()
}

async fn cases_file(app: &TestApp, c: &pb::Contract) {
    file(app, &c.id, 0).await.expect("file");
}

backend_tests!(
    disputes_cover_part_or_all_of_the_billable_minutes,
    accepting_refunds_the_weeks_invoice_exactly_once,
    unanswered_disputes_escalate_at_the_deadline,
    support_decides_declined_disputes,
    withdrawal_frees_the_week_and_strangers_see_nothing,
    hourly_invoices_name_their_billing_week,
    accepting_while_the_sweep_escalates_changes_the_dispute_once,
);
