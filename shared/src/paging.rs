//! AIP-158 page tokens: opaque to callers, tied to the filter that produced
//! them. A token is the last key of the previous page and a fingerprint of the
//! request's filter; garbage, or a token reused with another filter, is
//! INVALID_ARGUMENT.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Serialize, Deserialize)]
struct Token {
    /// Keyset cursor: the last key returned.
    k: String,
    /// Filter fingerprint.
    f: String,
}

fn fingerprint(filter: &str) -> String {
    let digest = Sha256::digest(filter.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The token for the page after `last_key`, under `filter`.
pub fn encode(last_key: &str, filter: &str) -> String {
    let token = Token {
        k: last_key.to_owned(),
        f: fingerprint(filter),
    };
    // Serializing two strings cannot fail.
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

/// The cursor in `token` (None for the first page), if it was made for `filter`.
pub fn decode(token: &str, filter: &str) -> Result<Option<String>, String> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| "is not a valid page token".to_owned())?;
    let token: Token =
        serde_json::from_slice(&bytes).map_err(|_| "is not a valid page token".to_owned())?;
    if token.f != fingerprint(filter) {
        return Err("was issued for a different request".into());
    }
    Ok(Some(token.k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_only_under_their_filter() {
        let t = encode("ctr_01", "party=alice");
        assert_eq!(decode(&t, "party=alice"), Ok(Some("ctr_01".into())));
        assert!(decode(&t, "party=bob").is_err());
        assert!(decode("garbage!!", "party=alice").is_err());
        assert!(decode("Z2FyYmFnZQ", "party=alice").is_err());
        assert_eq!(decode("", "x"), Ok(None));
    }
}
