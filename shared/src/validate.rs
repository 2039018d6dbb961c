//! Field checks shared by both services. Requests are parsed into domain types
//! at the edge; these helpers collect every violation so the caller learns
//! about all bad fields at once, and nothing is written.

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

use crate::status::FieldViolation;

/// Longest free-text comment, reason or memo accepted (in characters).
pub const MAX_COMMENT_CHARS: usize = 5_000;
/// Longest user id or request id accepted.
pub const MAX_TOKEN_CHARS: usize = 128;

/// Collects the violations of one request.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: &str, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// The value of a check, or (having recorded the violation under
    /// `field`) a default that [`Violations::finish`] keeps from being used.
    pub fn check<T: Default>(&mut self, field: &str, result: Result<T, String>) -> T {
        result.unwrap_or_else(|description| {
            self.add(field, description);
            T::default()
        })
    }

    /// Checks each element of a repeated field; a violation is recorded
    /// under `field[i]` (the name is only built for a violation).
    /// A batch of ids of one kind (`prefix`): at least one, at most `max`,
    /// each well-formed.
    pub fn check_batch(&mut self, field: &str, ids: &[String], prefix: &str, max: usize) {
        if ids.is_empty() {
            self.add(field, "is required");
        }
        if ids.len() > max {
            self.add(field, format!("must hold at most {max} ids"));
        }
        self.check_each(field, ids, |each| id(each, prefix));
    }

    pub fn check_each<T, U>(
        &mut self,
        field: &str,
        items: &[T],
        check: impl Fn(&T) -> Result<U, String>,
    ) {
        for (i, item) in items.iter().enumerate() {
            if let Err(description) = check(item) {
                self.add(&format!("{field}[{i}]"), description);
            }
        }
    }

    /// `Ok` when nothing was recorded.
    pub fn finish(self) -> Result<(), Vec<FieldViolation>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

/// A server-generated id of kind `prefix` (e.g. `ctr`).
pub fn id(value: &str, prefix: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("is required".into())
    } else if crate::ids::is_id(prefix, value) {
        Ok(value.to_owned())
    } else {
        Err(format!(
            "is not a valid id (expected {prefix}_ followed by 32 hex digits)"
        ))
    }
}

/// An opaque platform identifier (user id, agency id): 1 to 128 characters
/// from `A-Z a-z 0-9 _ - . : @`.
pub fn token(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("is required".into());
    }
    if value.chars().count() > MAX_TOKEN_CHARS {
        return Err(format!("must be at most {MAX_TOKEN_CHARS} characters"));
    }
    if !value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':' | '@'))
    {
        return Err("may contain only letters, digits and _ - . : @".into());
    }
    Ok(value.to_owned())
}

/// An optional idempotency key: empty means none.
pub fn request_id(value: &str) -> Result<Option<String>, String> {
    if value.is_empty() {
        Ok(None)
    } else {
        token(value).map(Some)
    }
}

/// Free text: at most `max` characters, no control characters other than
/// newline and tab. `required` text must have a non-blank character.
pub fn text(value: &str, max: usize, required: bool) -> Result<String, String> {
    if required && value.trim().is_empty() {
        return Err("is required".into());
    }
    if value.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err("must not contain control characters".into());
    }
    Ok(value.to_owned())
}

/// A required timestamp between 2000 and 2100.
pub fn timestamp(value: Option<&Timestamp>) -> Result<DateTime<Utc>, String> {
    match value {
        None => Err("is required".into()),
        Some(ts) => crate::time::from_proto(ts)
            .ok_or_else(|| "must be a valid time between 2000-01-01 and 2100-01-01".into()),
    }
}

/// An optional timestamp: unset stays `None`.
pub fn optional_timestamp(value: Option<&Timestamp>) -> Result<Option<DateTime<Utc>>, String> {
    value.map(|ts| timestamp(Some(ts))).transpose()
}

/// An ISO 4217-shaped currency code: three upper-case letters.
pub fn currency(value: &str) -> Result<String, String> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(value.to_owned())
    } else if value.is_empty() {
        Err("is required".into())
    } else {
        Err("must be a three-letter ISO 4217 code such as USD".into())
    }
}

/// A strictly positive amount of minor units.
pub fn positive_amount(value: i64) -> Result<i64, String> {
    if value > 0 {
        Ok(value)
    } else {
        Err("must be greater than zero".into())
    }
}

/// AIP-158 page size: negative is invalid, 0 means `default`, above `max` is coerced.
pub fn page_size(value: i32, default: u32, max: u32) -> Result<u32, String> {
    match value {
        v if v < 0 => Err("must not be negative".into()),
        0 => Ok(default),
        v => Ok((v as u32).min(max)),
    }
}

/// A protobuf enum value that must be one of the known, non-zero values.
pub fn known_enum<E: TryFrom<i32>>(value: i32) -> Result<E, String> {
    if value == 0 {
        return Err("is required".into());
    }
    E::try_from(value).map_err(|_| format!("{value} is not a known value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_violation_of_a_list_names_its_index() {
        let ids = vec![
            crate::ids::new_id("ctr"),
            "nope".to_owned(),
            crate::ids::new_id("ctr"),
            String::new(),
        ];
        let mut v = Violations::new();
        v.check_each("contract_ids", &ids, |id| id_checked(id));
        let fields: Vec<String> = v
            .finish()
            .expect_err("two bad ids")
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(fields, ["contract_ids[1]", "contract_ids[3]"]);
    }

    fn id_checked(id: &str) -> Result<String, String> {
        super::id(id, "ctr")
    }

    #[test]
    fn text_rules_hold_at_their_boundaries() {
        let max = "a".repeat(MAX_COMMENT_CHARS);
        assert!(text(&max, MAX_COMMENT_CHARS, true).is_ok());
        assert!(text(&format!("{max}a"), MAX_COMMENT_CHARS, true).is_err());
        assert!(text("", MAX_COMMENT_CHARS, true).is_err());
        assert!(text("   ", MAX_COMMENT_CHARS, true).is_err());
        assert!(text("", MAX_COMMENT_CHARS, false).is_ok());
        assert!(text("line\nnext\ttab", MAX_COMMENT_CHARS, true).is_ok());
        assert!(text("nul\0", MAX_COMMENT_CHARS, true).is_err());
        assert!(text("bell\u{7}", MAX_COMMENT_CHARS, true).is_err());
        // Characters, not bytes: 5,000 emoji are fine.
        assert!(text(&"🙂".repeat(MAX_COMMENT_CHARS), MAX_COMMENT_CHARS, true).is_ok());
    }

    #[test]
    fn page_size_follows_aip_158() {
        assert_eq!(page_size(0, 50, 1000), Ok(50));
        assert_eq!(page_size(7, 50, 1000), Ok(7));
        assert_eq!(page_size(5000, 50, 1000), Ok(1000));
        assert!(page_size(-1, 50, 1000).is_err());
    }

    #[test]
    fn tokens_and_currencies() {
        assert!(token("user-1").is_ok());
        assert!(token("").is_err());
        assert!(token("a b").is_err());
        assert!(token("x'; DROP TABLE contracts; --").is_err());
        assert!(token(&"a".repeat(129)).is_err());
        assert_eq!(request_id(""), Ok(None));
        assert!(currency("USD").is_ok());
        assert!(currency("usd").is_err());
        assert!(positive_amount(0).is_err());
        assert!(positive_amount(1).is_ok());
    }
}
