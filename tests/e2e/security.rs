//! The authorization matrix: every RPC of both services, called by every kind
//! of caller, against real services. Each cell must match the expected
//! outcome, and the whole table is kept in `docs/security.md` (regenerate
//! with `UPDATE_SECURITY_DOC=1 cargo test -p e2e authorization_matrix`).
//! Every answer given to someone other than the client is also searched for
//! the client's unrevealed comment: it must never leak.

use std::fmt::Write as _;

use chrono::Duration;
use e2e::scenario::{client_review, ended_contract, freelancer_review, paid_contract, pay_invoice};
use e2e::{
    EARLY_CLIENT, Stack, TestBackend, at, backend_tests, freelancer_scores, ts, usd, with_token,
};
use shared::auth::{DEFAULT_AUDIENCE, DEFAULT_ISSUER, TokenSpec, mint, mint_dev};
use shared::proto::contract::v1 as pb;
use shared::proto::feedback::v1 as fpb;
use tonic::Code;

const CLIENT: &str = EARLY_CLIENT;
const FREELANCER: &str = "freelancer-m";
const STRANGER: &str = "stranger-m";

/// Who calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    Client,
    Freelancer,
    Stranger,
    /// A service token with the scope the RPC accepts (or `admin` when it
    /// accepts none: user-only RPCs).
    ServiceWithScope,
    /// A service token with an unrelated scope.
    ServiceWithoutScope,
    NoToken,
    Expired,
    WrongSignature,
    AlgNone,
    WrongAudience,
    WrongIssuer,
}

const CALLERS: [Caller; 11] = [
    Caller::Client,
    Caller::Freelancer,
    Caller::Stranger,
    Caller::ServiceWithScope,
    Caller::ServiceWithoutScope,
    Caller::NoToken,
    Caller::Expired,
    Caller::WrongSignature,
    Caller::AlgNone,
    Caller::WrongAudience,
    Caller::WrongIssuer,
];

impl Caller {
    fn heading(self) -> &'static str {
        match self {
            Caller::Client => "client",
            Caller::Freelancer => "freelancer",
            Caller::Stranger => "other user",
            Caller::ServiceWithScope => "service, right scope",
            Caller::ServiceWithoutScope => "service, other scope",
            Caller::NoToken => "no token",
            Caller::Expired => "expired",
            Caller::WrongSignature => "bad signature",
            Caller::AlgNone => "alg none",
            Caller::WrongAudience => "wrong aud",
            Caller::WrongIssuer => "wrong iss",
        }
    }

    /// The bearer token, if any.
    fn token(self, scope: &str) -> Option<String> {
        let user = |id: &str| TokenSpec::user(id);
        let minted = |spec: TokenSpec| mint_dev(&spec).expect("mint");
        match self {
            Caller::Client => Some(minted(user(CLIENT))),
            Caller::Freelancer => Some(minted(user(FREELANCER))),
            Caller::Stranger => Some(minted(user(STRANGER))),
            Caller::ServiceWithScope => Some(minted(TokenSpec::service("svc", &[scope]))),
            Caller::ServiceWithoutScope => {
                let other = if scope == "events:read" {
                    "contracts:read"
                } else {
                    "events:read"
                };
                Some(minted(TokenSpec::service("svc", &[other])))
            }
            Caller::NoToken => None,
            Caller::Expired => Some(minted(TokenSpec {
                ttl: Duration::hours(-2),
                ..user(CLIENT)
            })),
            Caller::WrongSignature => {
                Some(mint(&user(CLIENT), b"not the signing key").expect("mint"))
            }
            Caller::AlgNone => {
                use base64::Engine;
                let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
                let exp = chrono::Utc::now().timestamp() + 3600;
                let header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
                let body = b64.encode(format!(
                    r#"{{"sub":"{CLIENT}","iss":"{DEFAULT_ISSUER}","aud":"{DEFAULT_AUDIENCE}","exp":{exp},"iat":0}}"#
                ));
                Some(format!("{header}.{body}."))
            }
            Caller::WrongAudience => Some(minted(TokenSpec {
                audience: "another-api".into(),
                ..user(CLIENT)
            })),
            Caller::WrongIssuer => Some(minted(TokenSpec {
                issuer: "someone-else".into(),
                ..user(CLIENT)
            })),
        }
    }
}

/// What a cell expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Past authentication and authorization (the answer may still be a rule failure).
    Allowed,
    Denied,
    Unauthenticated,
}

impl Outcome {
    fn of(code: Code) -> Self {
        match code {
            Code::PermissionDenied => Outcome::Denied,
            Code::Unauthenticated => Outcome::Unauthenticated,
            _ => Outcome::Allowed,
        }
    }

    fn cell(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "PERMISSION_DENIED",
            Outcome::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

/// Ids of the objects one cell acts on.
struct Fixture {
    /// Active hourly contract, 60 days old, paid yesterday, with a time entry this week.
    active: String,
    entry: String,
    payment: String,
    /// Client feedback on an ended contract where both sides submitted (revealed).
    to_freelancer: String,
    /// Ended contract where only the client has left feedback (unrevealed).
    blind: String,
}

/// A secret only the client (and staff) may read until the reveal.
const UNREVEALED: &str = "UNREVEALED-CLIENT-COMMENT-7f3a";

async fn fixture(s: &Stack) -> Fixture {
    let active = paid_contract(s, CLIENT, FREELANCER).await;
    let entry = s
        .contracts
        .log_time(FREELANCER, &active.id, at("2026-11-18T08:00:00Z"), 30)
        .await
        .expect("log");
    let two_hours_ago = s.contracts.now() - Duration::hours(2);
    let payment = pay_invoice(
        s,
        &active,
        2_000,
        two_hours_ago,
        &format!("p2-{}", active.id),
    )
    .await;
    let ended = ended_contract(s, CLIENT, FREELANCER).await;
    let to_freelancer = client_review(s, CLIENT, &ended).await.id;
    freelancer_review(s, FREELANCER, &ended).await;
    let blind = ended_contract(s, CLIENT, FREELANCER).await;
    let unsatisfied = fpb::EndReason::Unsatisfied as i32;
    let secret = e2e::client_feedback(&blind.id, freelancer_scores(1), unsatisfied, 0, UNREVEALED);
    s.feedback
        .submit_end_feedback(CLIENT, secret)
        .await
        .expect("blind feedback");
    Fixture {
        active: active.id,
        entry: entry.id,
        payment: payment.id,
        to_freelancer,
        blind: blind.id,
    }
}

fn request<T>(token: Option<&str>, message: T) -> tonic::Request<T> {
    match token {
        Some(token) => with_token(token, message),
        None => tonic::Request::new(message),
    }
}

/// The RPCs: name, the scope a service needs (None: users only), and who is allowed.
struct Rpc {
    name: &'static str,
    scope: Option<&'static str>,
    allowed: &'static [Caller],
}

use Caller::{
    Client as C, Freelancer as F, ServiceWithScope as S, ServiceWithoutScope as W, Stranger as U,
};

const RPCS: &[Rpc] = &[
    Rpc {
        name: "contract.CreateContract",
        scope: Some("contracts:write"),
        allowed: &[S],
    },
    Rpc {
        name: "contract.GetContract",
        scope: Some("contracts:read"),
        allowed: &[C, F, S],
    },
    Rpc {
        name: "contract.BatchGetContracts",
        scope: Some("contracts:read"),
        allowed: &[S],
    },
    // Any user may list, but sees only their own contracts.
    Rpc {
        name: "contract.ListContracts",
        scope: Some("contracts:read"),
        allowed: &[C, F, U, S],
    },
    Rpc {
        name: "contract.EndContract",
        scope: None,
        allowed: &[C, F],
    },
    Rpc {
        name: "contract.LogTime",
        scope: None,
        allowed: &[F],
    },
    Rpc {
        name: "contract.DeleteTimeEntry",
        scope: None,
        allowed: &[F],
    },
    Rpc {
        name: "contract.GetWorkDiary",
        scope: Some("contracts:read"),
        allowed: &[C, F, S],
    },
    Rpc {
        name: "contract.RecordPayment",
        scope: Some("payments:write"),
        allowed: &[S],
    },
    Rpc {
        name: "contract.ListPayments",
        scope: Some("contracts:read"),
        allowed: &[C, F, S],
    },
    Rpc {
        name: "contract.RefundPayment",
        scope: None,
        allowed: &[F],
    },
    Rpc {
        name: "contract.GetBillingWeek",
        scope: Some("contracts:read"),
        allowed: &[C, F, S],
    },
    Rpc {
        name: "contract.DisputeHours",
        scope: None,
        allowed: &[C],
    },
    Rpc {
        name: "contract.WatchEvents",
        scope: Some("events:read"),
        allowed: &[S],
    },
    Rpc {
        name: "feedback.CheckMidContractEligibility",
        scope: Some("contracts:read"),
        allowed: &[C, S],
    },
    // Any user may ask; contracts they are not the client of come back as unavailable.
    Rpc {
        name: "feedback.BatchCheckMidContractEligibility",
        scope: Some("contracts:read"),
        allowed: &[C, F, U, S],
    },
    Rpc {
        name: "feedback.SubmitMidContractFeedback",
        scope: None,
        allowed: &[C],
    },
    Rpc {
        name: "feedback.RequestMidContractFeedback",
        scope: None,
        allowed: &[F],
    },
    Rpc {
        name: "feedback.ListFeedbackRequests",
        scope: Some("contracts:read"),
        allowed: &[C, F, S],
    },
    Rpc {
        name: "feedback.SubmitEndContractFeedback",
        scope: None,
        allowed: &[C, F],
    },
    Rpc {
        name: "feedback.GetEndContractFeedback",
        scope: Some("contracts:read"),
        allowed: &[C, F, S],
    },
    Rpc {
        name: "feedback.ReplyToFeedback",
        scope: None,
        allowed: &[F],
    },
    // Public work history: any signed-in caller.
    Rpc {
        name: "feedback.ListWorkHistory",
        scope: Some("contracts:read"),
        allowed: &[C, F, U, S, W],
    },
    Rpc {
        name: "feedback.ListJobSuccessInputs",
        scope: Some("jss:read"),
        allowed: &[S],
    },
    Rpc {
        name: "feedback.WatchEvents",
        scope: Some("events:read"),
        allowed: &[S],
    },
    // The client's own preferences: the client, or support.
    Rpc {
        name: "feedback.GetNotificationPreferences",
        scope: Some("admin"),
        allowed: &[C, S],
    },
    Rpc {
        name: "feedback.UpdateNotificationPreferences",
        scope: Some("admin"),
        allowed: &[C, S],
    },
    // Moderation: support only, never a user token.
    Rpc {
        name: "feedback.HideFeedback",
        scope: Some("admin"),
        allowed: &[S],
    },
    Rpc {
        name: "feedback.RestoreFeedback",
        scope: Some("admin"),
        allowed: &[S],
    },
    Rpc {
        name: "feedback.ListModerationActions",
        scope: Some("admin"),
        allowed: &[S],
    },
];

fn expected(rpc: &Rpc, caller: Caller) -> Outcome {
    match caller {
        Caller::NoToken
        | Caller::Expired
        | Caller::WrongSignature
        | Caller::AlgNone
        | Caller::WrongAudience
        | Caller::WrongIssuer => Outcome::Unauthenticated,
        Caller::ServiceWithScope if rpc.scope.is_none() => Outcome::Denied,
        _ if rpc.allowed.contains(&caller) => Outcome::Allowed,
        _ => Outcome::Denied,
    }
}

/// Calls one RPC as one caller on a fresh fixture; returns the code and
/// everything the caller got to see (answer or error).
async fn call(s: &Stack, rpc: &Rpc, caller: Caller, f: &Fixture) -> (Code, String) {
    let scope = rpc.scope.unwrap_or("admin");
    let token = caller.token(scope);
    let t = token.as_deref();
    let mut contracts = s.contracts.contracts.clone();
    let mut feedback = s.feedback.client();
    let now = s.contracts.now();
    fn seen<T: std::fmt::Debug>(
        result: Result<tonic::Response<T>, tonic::Status>,
    ) -> (Code, String) {
        match result {
            Ok(response) => (Code::Ok, format!("{:?}", response.into_inner())),
            Err(status) => (status.code(), format!("{status:?}")),
        }
    }
    match rpc.name {
        "contract.CreateContract" => seen(
            contracts
                .create_contract(request(
                    t,
                    pb::CreateContractRequest {
                        client_id: CLIENT.into(),
                        freelancer_id: FREELANCER.into(),
                        title: "matrix".into(),
                        r#type: pb::ContractType::FixedPrice as i32,
                        currency_code: "USD".into(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "contract.GetContract" => seen(
            contracts
                .get_contract(request(
                    t,
                    pb::GetContractRequest {
                        contract_id: f.active.clone(),
                    },
                ))
                .await,
        ),
        "contract.BatchGetContracts" => seen(
            contracts
                .batch_get_contracts(request(
                    t,
                    pb::BatchGetContractsRequest {
                        contract_ids: vec![f.active.clone(), f.blind.clone()],
                    },
                ))
                .await,
        ),
        "contract.ListContracts" => seen(
            contracts
                .list_contracts(request(t, pb::ListContractsRequest::default()))
                .await,
        ),
        "contract.EndContract" => seen(
            contracts
                .end_contract(request(
                    t,
                    pb::EndContractRequest {
                        contract_id: f.active.clone(),
                        reason: String::new(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "contract.LogTime" => seen(
            contracts
                .log_time(request(
                    t,
                    pb::LogTimeRequest {
                        contract_id: f.active.clone(),
                        start_time: Some(ts(at("2026-11-18T09:00:00Z"))),
                        minutes: 10,
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "contract.DeleteTimeEntry" => seen(
            contracts
                .delete_time_entry(request(
                    t,
                    pb::DeleteTimeEntryRequest {
                        contract_id: f.active.clone(),
                        time_entry_id: f.entry.clone(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "contract.GetWorkDiary" => seen(
            contracts
                .get_work_diary(request(
                    t,
                    pb::GetWorkDiaryRequest {
                        contract_id: f.active.clone(),
                        week_time: None,
                    },
                ))
                .await,
        ),
        "contract.RecordPayment" => seen(
            contracts
                .record_payment(request(
                    t,
                    pb::RecordPaymentRequest {
                        contract_id: f.active.clone(),
                        kind: pb::PaymentKind::Bonus as i32,
                        amount: Some(usd(100)),
                        paid_time: Some(ts(now)),
                        memo: String::new(),
                        request_id: "matrix-pay".into(),
                        billing_week_time: None,
                    },
                ))
                .await,
        ),
        "contract.ListPayments" => seen(
            contracts
                .list_payments(request(
                    t,
                    pb::ListPaymentsRequest {
                        contract_id: f.active.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "contract.RefundPayment" => seen(
            contracts
                .refund_payment(request(
                    t,
                    pb::RefundPaymentRequest {
                        payment_id: f.payment.clone(),
                        amount: Some(usd(100)),
                        reason: String::new(),
                        request_id: "matrix-refund".into(),
                    },
                ))
                .await,
        ),
        "contract.GetBillingWeek" => seen(
            contracts
                .get_billing_week(request(
                    t,
                    pb::GetBillingWeekRequest {
                        contract_id: f.active.clone(),
                        week_time: None,
                    },
                ))
                .await,
        ),
        "contract.DisputeHours" => seen(
            contracts
                .dispute_hours(request(
                    t,
                    pb::DisputeHoursRequest {
                        contract_id: f.active.clone(),
                        week_time: Some(ts(now - Duration::days(7))),
                        reason: "too many hours".into(),
                        request_id: String::new(),
                        disputed_minutes: 0,
                    },
                ))
                .await,
        ),
        "contract.WatchEvents" => match contracts
            .watch_events(request(t, pb::WatchEventsRequest { after_sequence: 0 }))
            .await
        {
            Ok(_) => (Code::Ok, String::new()),
            Err(status) => (status.code(), format!("{status:?}")),
        },
        "feedback.CheckMidContractEligibility" => seen(
            feedback
                .check_mid_contract_eligibility(request(
                    t,
                    fpb::CheckMidContractEligibilityRequest {
                        contract_id: f.active.clone(),
                    },
                ))
                .await,
        ),
        "feedback.BatchCheckMidContractEligibility" => seen(
            feedback
                .batch_check_mid_contract_eligibility(request(
                    t,
                    fpb::BatchCheckMidContractEligibilityRequest {
                        contract_ids: vec![f.active.clone(), f.blind.clone()],
                    },
                ))
                .await,
        ),
        "feedback.SubmitMidContractFeedback" => seen(
            feedback
                .submit_mid_contract_feedback(request(
                    t,
                    fpb::SubmitMidContractFeedbackRequest {
                        contract_id: f.active.clone(),
                        rating: 4,
                        comment: "good".into(),
                        bonus: None,
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "feedback.RequestMidContractFeedback" => seen(
            feedback
                .request_mid_contract_feedback(request(
                    t,
                    fpb::RequestMidContractFeedbackRequest {
                        contract_id: f.active.clone(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "feedback.ListFeedbackRequests" => seen(
            feedback
                .list_feedback_requests(request(
                    t,
                    fpb::ListFeedbackRequestsRequest {
                        contract_id: f.active.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "feedback.SubmitEndContractFeedback" => {
            let review = if caller == Caller::Freelancer {
                e2e::freelancer_feedback(&f.blind, e2e::client_scores(5), "matrix")
            } else {
                let completed = fpb::EndReason::JobCompleted as i32;
                e2e::client_feedback(&f.blind, freelancer_scores(5), completed, 8, "matrix")
            };
            seen(
                feedback
                    .submit_end_contract_feedback(request(t, review))
                    .await,
            )
        }
        "feedback.GetEndContractFeedback" => {
            // Read the blind contract: its unrevealed comment must stay hidden.
            seen(
                feedback
                    .get_end_contract_feedback(request(
                        t,
                        fpb::GetEndContractFeedbackRequest {
                            contract_id: f.blind.clone(),
                        },
                    ))
                    .await,
            )
        }
        "feedback.ReplyToFeedback" => seen(
            feedback
                .reply_to_feedback(request(
                    t,
                    fpb::ReplyToFeedbackRequest {
                        feedback_id: f.to_freelancer.clone(),
                        text: "thanks".into(),
                        request_id: String::new(),
                    },
                ))
                .await,
        ),
        "feedback.ListWorkHistory" => seen(
            feedback
                .list_work_history(request(
                    t,
                    fpb::ListWorkHistoryRequest {
                        freelancer_id: FREELANCER.into(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "feedback.ListJobSuccessInputs" => seen(
            feedback
                .list_job_success_inputs(request(
                    t,
                    fpb::ListJobSuccessInputsRequest {
                        freelancer_id: FREELANCER.into(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "feedback.WatchEvents" => match feedback
            .watch_events(request(t, fpb::WatchEventsRequest { after_sequence: 0 }))
            .await
        {
            Ok(_) => (Code::Ok, String::new()),
            Err(status) => (status.code(), format!("{status:?}")),
        },
        "feedback.GetNotificationPreferences" => seen(
            feedback
                .get_notification_preferences(request(
                    t,
                    fpb::GetNotificationPreferencesRequest {
                        user_id: CLIENT.into(),
                    },
                ))
                .await,
        ),
        "feedback.UpdateNotificationPreferences" => seen(
            feedback
                .update_notification_preferences(request(
                    t,
                    fpb::UpdateNotificationPreferencesRequest {
                        user_id: CLIENT.into(),
                        end_feedback_reminders: false,
                    },
                ))
                .await,
        ),
        "feedback.HideFeedback" => seen(
            feedback
                .hide_feedback(request(
                    t,
                    fpb::HideFeedbackRequest {
                        item_id: f.to_freelancer.clone(),
                        reason: fpb::ModerationReason::Abuse as i32,
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "feedback.RestoreFeedback" => seen(
            feedback
                .restore_feedback(request(
                    t,
                    fpb::RestoreFeedbackRequest {
                        item_id: f.to_freelancer.clone(),
                        ..Default::default()
                    },
                ))
                .await,
        ),
        "feedback.ListModerationActions" => seen(
            feedback
                .list_moderation_actions(request(t, fpb::ListModerationActionsRequest::default()))
                .await,
        ),
        other => panic!("no call for {other}"),
    }
}

async fn authorization_matrix(backend: TestBackend) {
    let s = Stack::spawn(&backend).await;
    let mut failures = Vec::new();
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| RPC | {} |",
        CALLERS.map(Caller::heading).join(" | ")
    );
    let _ = writeln!(table, "|---|{}", "---|".repeat(CALLERS.len()));
    let mut cells = 0;
    for rpc in RPCS {
        let mut row = Vec::new();
        for caller in CALLERS {
            // A fresh fixture per cell: mutations of one cell never decide another.
            let f = fixture(&s).await;
            let (code, seen) = call(&s, rpc, caller, &f).await;
            let got = Outcome::of(code);
            let want = expected(rpc, caller);
            if got != want {
                failures.push(format!(
                    "{} as {}: expected {}, got {code:?}: {seen}",
                    rpc.name,
                    caller.heading(),
                    want.cell()
                ));
            }
            let staff = matches!(caller, Caller::Client | Caller::ServiceWithScope)
                && rpc.name != "feedback.ListWorkHistory";
            if !staff && seen.contains(UNREVEALED) {
                failures.push(format!(
                    "{} as {} leaked the unrevealed comment: {seen}",
                    rpc.name,
                    caller.heading()
                ));
            }
            row.push(got.cell());
            cells += 1;
        }
        let scope = rpc
            .scope
            .map_or("users only".to_owned(), |s| format!("`{s}`"));
        let _ = writeln!(table, "| `{}` ({scope}) | {} |", rpc.name, row.join(" | "));
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    check_security_doc(&table);
}

/// Keeps the table in docs/security.md equal to what the matrix observed.
fn check_security_doc(table: &str) {
    const START: &str = "<!-- authorization-matrix:start -->\n";
    const END: &str = "<!-- authorization-matrix:end -->";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/security.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
        panic!("docs/security.md needs the {START:?} and {END:?} markers");
    };
    let current = &doc[a + START.len()..b];
    if current == table {
        return;
    }
    if std::env::var_os("UPDATE_SECURITY_DOC").is_some() {
        let updated = format!("{}{table}{}", &doc[..a + START.len()], &doc[b..]);
        std::fs::write(&path, updated).expect("write docs/security.md");
        return;
    }
    panic!(
        "docs/security.md is out of date with the authorization matrix; rerun with UPDATE_SECURITY_DOC=1:\n{table}"
    );
}

backend_tests!(authorization_matrix);
