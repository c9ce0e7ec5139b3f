//! The registry's events in the shared outbox (`clientela_runtime::feed::Outbox`): how
//! an event is stored, with its wire form, and read back.

use chrono::{DateTime, Utc};
use clientela_domain::ids::EventId;
use clientela_runtime::feed::{Outbox, OutboxRecord};
use clientela_runtime::{Db, Error, WriteTx};
use sea_orm::{FromQueryResult, QueryResult, Value};

use super::entity::event;
use super::{from_json, to_json};
use crate::model::{Event, EventPayload, WireEncoder};

/// The outbox of the registry's events.
pub type Events = Outbox<StoredEvent>;

/// Opens the registry's outbox over a migrated database.
pub async fn outbox(db: Db) -> Result<Events, Error> {
    Outbox::open(db, "events", "feed_counter").await
}

/// An event as stored: the event, and its wire form when it was written with an encoder.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event: Event,
    /// The event as the feed sends it.
    pub wire: Option<Vec<u8>>,
}

impl OutboxRecord for StoredEvent {
    const COLUMNS: &'static [&'static str] = &[
        "sequence",
        "event_id",
        "customer_id",
        "kind",
        "recorded_at",
        "payload",
        "wire",
    ];

    fn sequence(&self) -> i64 {
        self.event.sequence
    }

    fn values(&self) -> Result<Vec<Value>, Error> {
        let e = &self.event;
        Ok(vec![
            e.sequence.into(),
            e.id.as_uuid().into(),
            e.payload.customer_id().as_uuid().into(),
            e.payload.kind().into(),
            e.recorded_at.into(),
            to_json(&e.payload)?.into(),
            self.wire.clone().into(),
        ])
    }

    fn decode(row: &QueryResult) -> Result<Self, Error> {
        let m = event::Model::from_query_result(row, "")?;
        let mut payload: EventPayload = from_json(&m.payload, "event payload")?;
        payload.lift_legacy();
        Ok(Self {
            event: Event {
                sequence: m.sequence,
                id: EventId::from_uuid(m.event_id),
                recorded_at: m.recorded_at,
                payload,
            },
            wire: m.wire,
        })
    }
}

/// Appends `payloads` as consecutive events, each also in its wire form when `wire` is
/// given; last in the transaction (see [`Outbox::append`]).
pub async fn append(
    outbox: &Events,
    tx: &WriteTx,
    payloads: Vec<EventPayload>,
    now: DateTime<Utc>,
    wire: Option<&WireEncoder>,
) -> Result<Vec<StoredEvent>, Error> {
    outbox
        .append(tx, payloads, |payload, sequence| {
            let event = Event {
                sequence,
                id: EventId::new(),
                recorded_at: now,
                payload,
            };
            let wire = wire.map(|w| w.encode(&event));
            StoredEvent { event, wire }
        })
        .await
}

/// Up to `limit` events after `after`, in order.
pub async fn read_after(outbox: &Events, after: i64, limit: u64) -> Result<Vec<Event>, Error> {
    Ok(outbox
        .read_after(after, limit)
        .await?
        .into_iter()
        .map(|stored| stored.event)
        .collect())
}

/// Up to `limit` events after `after`, in order, each as `(sequence, wire form)`. Events
/// stored without their wire form are read in full and encoded with `encode`.
pub async fn read_wire_after(
    outbox: &Events,
    after: i64,
    limit: u64,
    encode: &WireEncoder,
) -> Result<Vec<(i64, Vec<u8>)>, Error> {
    let rows: Vec<(i64, Option<Vec<u8>>)> = outbox
        .read_columns_after(&["sequence", "wire"], after, limit, |row| {
            Ok((row.try_get("", "sequence")?, row.try_get("", "wire")?))
        })
        .await?;
    if rows.iter().all(|(_, wire)| wire.is_some()) {
        return Ok(rows
            .into_iter()
            .filter_map(|(sequence, wire)| wire.map(|w| (sequence, w)))
            .collect());
    }
    Ok(read_after(outbox, after, limit)
        .await?
        .iter()
        .map(|e| (e.sequence, encode.encode(e)))
        .collect())
}
