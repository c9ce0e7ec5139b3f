//! Instants on the wire: protobuf timestamps to and from chrono, at the microsecond
//! precision PostgreSQL stores, so a value read back equals the value written.

use chrono::{DateTime, Utc};
use clientela_domain::FieldViolation;
use prost_types::Timestamp;

/// The current instant, truncated to microseconds.
pub fn now() -> DateTime<Utc> {
    truncate_micros(Utc::now())
}

/// Truncates to microseconds.
pub fn truncate_micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

/// Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of
/// `google.protobuf.Timestamp`. An instant outside it cannot be printed as protobuf JSON,
/// so once stored it would break every JSON reader of a listing that holds it.
pub const MIN_SECONDS: i64 = -62_135_596_800;
/// See [`MIN_SECONDS`].
pub const MAX_SECONDS: i64 = 253_402_300_799;

/// Timestamp → instant, truncated to microseconds; a bad one names `field`.
pub fn to_time(
    ts: Option<&Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    let Some(ts) = ts else { return Ok(None) };
    let nanos = u32::try_from(ts.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldViolation::new(field, "nanos must be 0 to 999,999,999"))?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&ts.seconds) {
        return Err(FieldViolation::new(
            field,
            "must lie between 0001-01-01 and 9999-12-31 (the range of a protobuf Timestamp)",
        ));
    }
    DateTime::from_timestamp(ts.seconds, nanos)
        .map(|t| Some(truncate_micros(t)))
        .ok_or_else(|| FieldViolation::new(field, "not a representable instant"))
}

/// Required timestamp.
pub fn required_time(ts: Option<&Timestamp>, field: &str) -> Result<DateTime<Utc>, FieldViolation> {
    to_time(ts, field)?.ok_or_else(|| FieldViolation::new(field, "required"))
}

/// Instant → timestamp.
pub fn timestamp(t: DateTime<Utc>) -> Timestamp {
    Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> Result<Option<DateTime<Utc>>, FieldViolation> {
        to_time(Some(&Timestamp { seconds, nanos }), "purchase_time")
    }

    #[test]
    fn only_instants_a_protobuf_timestamp_can_hold_are_accepted() {
        assert!(at(MIN_SECONDS, 0).unwrap().is_some());
        assert!(at(MAX_SECONDS, 999_999_999).unwrap().is_some());
        for (seconds, nanos) in [
            (MIN_SECONDS - 1, 0),
            (MAX_SECONDS + 1, 0),
            // Year -10000: chrono holds it, protobuf JSON cannot print it.
            (-377_705_116_800, 0),
            (i64::MIN, 0),
            (0, -1),
            (0, 1_000_000_000),
        ] {
            let bad = at(seconds, nanos).unwrap_err();
            assert_eq!(bad.field, "purchase_time", "{seconds} {nanos}");
        }
        assert_eq!(to_time(None, "x"), Ok(None));
    }
}
