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

/// Timestamp → instant, truncated to microseconds; a bad one names `field`.
pub fn to_time(
    ts: Option<&Timestamp>,
    field: &str,
) -> Result<Option<DateTime<Utc>>, FieldViolation> {
    let Some(ts) = ts else { return Ok(None) };
    let nanos = u32::try_from(ts.nanos)
        .map_err(|_| FieldViolation::new(field, "nanos must be 0 to 999,999,999"))?;
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
