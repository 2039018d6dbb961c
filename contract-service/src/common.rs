//! What several features share: finding a contract the caller may act on,
//! scope checks, common request fields (amounts, request ids, pages) and Money.

use crate::contracts::rules::Contract;
use crate::error::Error;
use shared::auth::Caller;
use shared::paging;
use shared::proto::contract::v1 as pb;
use shared::status::Common;
use shared::status::FieldViolation;
use shared::validate::{self, Violations};

/// Longest memo, end reason or refund reason accepted.
pub(crate) const MAX_NOTE_CHARS: usize = 1_000;
pub(crate) const DEFAULT_PAGE_SIZE: u32 = 50;
pub(crate) const MAX_PAGE_SIZE: u32 = 1_000;
/// Minutes in a billing week: the most one entry or weekly limit can hold.
pub(crate) const WEEK_MINUTES: i64 = 7 * 24 * 60;
use crate::contracts::store::get_contract;

/// A contract the caller may act on. For users an unknown contract reads
/// exactly like someone else's, so existence is never revealed.
pub(crate) async fn find_contract<'e, E>(
    executor: E,
    id: &str,
    caller: &Caller,
) -> Result<Contract, Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    match get_contract(executor, id).await? {
        Some(c) => Ok(c),
        None => Err(absent_contract(id, caller)),
    }
}

/// The error for a contract that does not exist: to a user, as to a
/// non-party (so ids cannot be probed); to a service, not found.
pub(crate) fn absent_contract(id: &str, caller: &Caller) -> Error {
    match caller.user_id() {
        Some(_) => Error::NotAParty {
            contract_id: id.to_owned(),
        },
        None => Error::NotFound {
            what: "contract",
            id: id.to_owned(),
        },
    }
}

pub(crate) fn require_scope(caller: &Caller, scope: &'static str) -> Result<(), Error> {
    if caller.has_scope(scope) {
        Ok(())
    } else {
        Err(Error::MissingScope(scope))
    }
}

pub(crate) fn money(currency: &str, amount_minor: i64) -> pb::Money {
    pb::Money {
        currency_code: currency.to_owned(),
        amount_minor,
    }
}

pub(crate) fn minutes_i32(minutes: i64) -> i32 {
    i32::try_from(minutes).unwrap_or(i32::MAX)
}

/// A Money field: a valid currency and a positive amount.
pub(crate) fn parse_amount(
    v: &mut Violations,
    field: &str,
    amount: Option<&pb::Money>,
) -> (String, i64) {
    match amount {
        None => {
            v.add(field, "is required");
            (String::new(), 0)
        }
        Some(m) => (
            v.check(
                &format!("{field}.currency_code"),
                validate::currency(&m.currency_code),
            ),
            v.check(
                &format!("{field}.amount_minor"),
                validate::positive_amount(m.amount_minor),
            ),
        ),
    }
}

/// Money moves only with a `request_id`, so a retry can never pay twice
/// (its format is checked with the call, [`shared::writer::Call::of`]).
pub(crate) fn require_request_id(v: &mut Violations, value: &str) {
    if value.is_empty() {
        v.add("request_id", "is required for this call");
    }
}

/// Where a page starts: after the id in `token`, which must have been issued
/// for the same `filter`.
pub(crate) fn page_after(token: &str, filter: &str) -> Result<Option<String>, Error> {
    paging::decode(token, filter).map_err(|e| {
        Error::from(Common::InvalidArgument(vec![FieldViolation::new(
            "page_token",
            e,
        )]))
    })
}

/// Cuts a page read with one row more than `size` down to `size`, and returns
/// the token for the next page (empty when this page is the last).
pub(crate) fn next_page_token<T>(
    items: &mut Vec<T>,
    size: u32,
    filter: &str,
    id: impl Fn(&T) -> &str,
) -> String {
    if items.len() > size as usize {
        items.truncate(size as usize);
        items
            .last()
            .map(|item| paging::encode(id(item), filter))
            .unwrap_or_default()
    } else {
        String::new()
    }
}
