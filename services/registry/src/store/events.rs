//! The outbox: events appended in the writer's transaction with gap-free sequence
//! numbers, and read back in order.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use clientela_domain::ids::EventId;
use clientela_runtime::Error;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::event;
use super::{from_json, to_json};
use crate::model::{Event, EventPayload};

/// Encodes an event as the feed sends it. The api layer provides it, so no proto type
/// reaches the store.
#[derive(Clone)]
pub struct WireEncoder(Arc<EncodeFn>);

type EncodeFn = dyn Fn(&Event) -> Vec<u8> + Send + Sync;

impl WireEncoder {
    /// An encoder calling `encode`.
    pub fn new(encode: impl Fn(&Event) -> Vec<u8> + Send + Sync + 'static) -> Self {
        Self(Arc::new(encode))
    }

    /// `event` in its wire form.
    pub fn encode(&self, event: &Event) -> Vec<u8> {
        (self.0)(event)
    }
}

impl std::fmt::Debug for WireEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WireEncoder")
    }
}

/// Appends `payloads` as consecutive events, each also in its wire form when `wire` is
/// given. Call it last in the transaction: the
/// counter row it updates stays locked until commit, which is what keeps sequence
/// numbers gap-free and visible in order, and the shorter that lock is held the better.
pub async fn append(
    conn: &impl ConnectionTrait,
    payloads: Vec<EventPayload>,
    now: DateTime<Utc>,
    wire: Option<&WireEncoder>,
) -> Result<Vec<Event>, Error> {
    if payloads.is_empty() {
        return Ok(Vec::new());
    }
    let count =
        i64::try_from(payloads.len()).map_err(|_| Error::Internal("too many events".into()))?;
    let backend = conn.get_database_backend();
    let row = conn
        .query_one_raw(sea_orm::Statement::from_sql_and_values(
            backend,
            match backend {
                sea_orm::DbBackend::Postgres => {
                    "UPDATE feed_counter SET last_sequence = last_sequence + $1 WHERE id = 1 RETURNING last_sequence"
                }
                _ => "UPDATE feed_counter SET last_sequence = last_sequence + ? WHERE id = 1 RETURNING last_sequence",
            },
            [count.into()],
        ))
        .await?
        .ok_or_else(|| Error::Internal("feed counter row missing".into()))?;
    let last: i64 = row.try_get_by_index(0)?;
    let first = last - count + 1;
    let events: Vec<Event> = payloads
        .into_iter()
        .zip(first..)
        .map(|(payload, sequence)| Event {
            sequence,
            id: EventId::new(),
            recorded_at: now,
            payload,
        })
        .collect();
    let rows = events
        .iter()
        .map(|e| {
            Ok(event::ActiveModel {
                sequence: Set(e.sequence),
                event_id: Set(e.id.as_uuid()),
                customer_id: Set(e.payload.customer_id().as_uuid()),
                kind: Set(e.payload.kind().to_owned()),
                recorded_at: Set(e.recorded_at),
                payload: Set(to_json(&e.payload)?),
                wire: Set(wire.map(|w| w.encode(e))),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    event::Entity::insert_many(rows)
        .exec_without_returning(conn)
        .await?;
    Ok(events)
}

/// Up to `limit` events after `after`, in order.
pub async fn read_after(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<Event>, Error> {
    event::Entity::find()
        .filter(event::Column::Sequence.gt(after))
        .order_by_asc(event::Column::Sequence)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(|m| {
            Ok(Event {
                sequence: m.sequence,
                id: EventId::from_uuid(m.event_id),
                recorded_at: m.recorded_at,
                payload: from_json(&m.payload, "event payload")?,
            })
        })
        .collect()
}

/// Up to `limit` events after `after`, in order, each as `(sequence, wire form)`. Events
/// stored without their wire form are read in full and encoded with `encode`.
pub async fn read_wire_after(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u64,
    encode: &WireEncoder,
) -> Result<Vec<(i64, Vec<u8>)>, Error> {
    let rows: Vec<(i64, Option<Vec<u8>>)> = event::Entity::find()
        .select_only()
        .column(event::Column::Sequence)
        .column(event::Column::Wire)
        .filter(event::Column::Sequence.gt(after))
        .order_by_asc(event::Column::Sequence)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await?;
    if rows.iter().all(|(_, wire)| wire.is_some()) {
        return Ok(rows
            .into_iter()
            .filter_map(|(sequence, wire)| wire.map(|w| (sequence, w)))
            .collect());
    }
    Ok(read_after(conn, after, limit)
        .await?
        .iter()
        .map(|e| (e.sequence, encode.encode(e)))
        .collect())
}

/// The highest sequence number committed.
pub async fn last_sequence(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    let max: Option<Option<i64>> = event::Entity::find()
        .select_only()
        .column_as(Expr::col(event::Column::Sequence).max(), "max")
        .into_tuple()
        .one(conn)
        .await?;
    Ok(max.flatten().unwrap_or(0))
}
