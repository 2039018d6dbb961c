//! The caller's deadline, read from the `grpc-timeout` header, so a service
//! can pass what is left of it on to the services it calls.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// The time the caller gave this call, if it set a deadline.
pub fn remaining(metadata: &MetadataMap) -> Option<Duration> {
    parse(metadata.get("grpc-timeout")?.to_str().ok()?)
}

/// [`remaining`], from a request's HTTP headers.
pub fn in_headers(headers: &http::HeaderMap) -> Option<Duration> {
    parse(headers.get("grpc-timeout")?.to_str().ok()?)
}

fn parse(value: &str) -> Option<Duration> {
    if value.len() < 2 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.checked_mul(3600)?),
        "M" => Duration::from_secs(amount.checked_mul(60)?),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_headers_are_read() {
        let mut md = MetadataMap::new();
        assert_eq!(remaining(&md), None);
        md.insert("grpc-timeout", "1500m".parse().expect("ascii"));
        assert_eq!(remaining(&md), Some(Duration::from_millis(1500)));
        md.insert("grpc-timeout", "2S".parse().expect("ascii"));
        assert_eq!(remaining(&md), Some(Duration::from_secs(2)));
        md.insert("grpc-timeout", "x".parse().expect("ascii"));
        assert_eq!(remaining(&md), None);
    }
}
