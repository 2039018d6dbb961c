//! Conversions between protobuf timestamps, chrono and the database's
//! representation (integer microseconds since the Unix epoch, UTC).

use chrono::{DateTime, Utc};
use prost_types::Timestamp;

/// The earliest instant accepted from a caller: 2000-01-01T00:00:00Z.
pub const MIN_ACCEPTED_SECONDS: i64 = 946_684_800;
/// The latest instant accepted from a caller: 2100-01-01T00:00:00Z.
pub const MAX_ACCEPTED_SECONDS: i64 = 4_102_444_800;

/// A protobuf timestamp for an instant.
pub fn to_proto(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        // subsec_nanos is always below 1e9, so it fits in i32.
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// An optional protobuf timestamp for an optional instant.
pub fn opt_to_proto(t: Option<DateTime<Utc>>) -> Option<Timestamp> {
    t.map(to_proto)
}

/// The instant of a caller's timestamp, if it is a valid one between 2000 and 2100.
pub fn from_proto(ts: &Timestamp) -> Option<DateTime<Utc>> {
    if !(MIN_ACCEPTED_SECONDS..MAX_ACCEPTED_SECONDS).contains(&ts.seconds)
        || !(0..1_000_000_000).contains(&ts.nanos)
    {
        return None;
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos as u32)
}

/// Database representation of an instant.
pub fn to_micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

/// Instant from its database representation.
pub fn from_micros(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_and_out_of_range_ones_are_refused() {
        let t = DateTime::from_timestamp(1_763_700_000, 123_456_000).expect("valid");
        assert_eq!(from_proto(&to_proto(t)), Some(t));
        assert_eq!(from_micros(to_micros(t)), t);
        assert_eq!(
            from_proto(&Timestamp {
                seconds: -1,
                nanos: 0
            }),
            None
        );
        assert_eq!(
            from_proto(&Timestamp {
                seconds: MAX_ACCEPTED_SECONDS,
                nanos: 0
            }),
            None
        );
        assert_eq!(
            from_proto(&Timestamp {
                seconds: 1_763_700_000,
                nanos: -1
            }),
            None
        );
    }
}
