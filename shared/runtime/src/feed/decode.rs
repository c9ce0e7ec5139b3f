//! Reading another service's feed events: the names and instants they carry, where a
//! bad one is the producer's defect (INTERNAL, naming the event), never the caller's.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::Error;
use crate::names;
use crate::time::to_time;

/// The error for an event the producer should never have written.
pub fn corrupt(sequence: i64, what: &str) -> Error {
    Error::Internal(format!("feed event {sequence}: {what}"))
}

/// The customer id of a `customers/{id}` name.
pub fn customer(name: &str, sequence: i64) -> Result<Uuid, Error> {
    names::parse_customer(name, "customer")
        .map(|c| c.as_uuid())
        .map_err(|_| corrupt(sequence, &format!("bad customer name {name:?}")))
}

/// The customer and child ids of a `customers/{id}/{collection}/{id}` name.
pub fn child(name: &str, collection: &str, sequence: i64) -> Result<(Uuid, Uuid), Error> {
    names::parse_child(name, collection, "name")
        .map(|(c, id)| (c.as_uuid(), id))
        .map_err(|_| corrupt(sequence, &format!("bad {collection} name {name:?}")))
}

/// A required instant.
pub fn time(ts: Option<&prost_types::Timestamp>, sequence: i64) -> Result<DateTime<Utc>, Error> {
    to_time(ts, "time")
        .ok()
        .flatten()
        .ok_or_else(|| corrupt(sequence, "missing or bad time"))
}
