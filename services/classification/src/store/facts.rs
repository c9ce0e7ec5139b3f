//! The projection's facts: one binary record per customer, written by every feed
//! event that touches it, read by pages and by id.

use super::*;

/// The first byte of a stored facts record: the encoding that follows (postcard, with
/// timestamps in microseconds). A new layout gets a new number; the engine then rebuilds
/// the facts from the feed.
pub(super) const FACTS_FORMAT: u8 = 2;

/// A record in a compact binary form: `format`, then the value in postcard.
pub(super) fn encode_binary<T: Serialize>(
    format: u8,
    value: &T,
    what: &str,
) -> Result<Vec<u8>, Error> {
    postcard::to_extend(value, vec![format])
        .map_err(|e| Error::Internal(format!("encoding {what}: {e}")))
}

/// A record [`encode_binary`] wrote with `format`.
pub(super) fn decode_binary<T: DeserializeOwned>(
    format: u8,
    data: &[u8],
    what: &str,
) -> Result<T, Error> {
    match data.split_first() {
        Some((f, rest)) if *f == format => postcard::from_bytes(rest)
            .map_err(|e| Error::Internal(format!("corrupt {what} in the database: {e}"))),
        _ => Err(Error::Internal(format!(
            "{what} in the database in an unknown format"
        ))),
    }
}

/// A customer's facts as stored: about a quarter of their JSON, and much cheaper to
/// write and read, since every event rewrites its customer's record.
pub(super) fn encode_facts(facts: &CustomerFacts) -> Result<Vec<u8>, Error> {
    encode_binary(FACTS_FORMAT, facts, "facts")
}

pub(super) fn decode_facts(data: &[u8]) -> Result<CustomerFacts, Error> {
    decode_binary(FACTS_FORMAT, data, "facts")
}

pub(super) async fn facts_of(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<CustomerFacts>, Error> {
    rows(conn, select, |row| {
        decode_facts(&row.try_get::<Vec<u8>>("", "data")?)
    })
    .await
}

/// The facts of `ids` the engine has (unknown ids are left out).
pub async fn load_facts(
    conn: &impl ConnectionTrait,
    ids: &[Uuid],
) -> Result<Vec<CustomerFacts>, Error> {
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(MAX_IN_LIST) {
        let select = Query::select()
            .column(t("data"))
            .from(t("facts"))
            .and_where(col("customer_id").is_in(chunk.iter().copied()))
            .to_owned();
        out.extend(facts_of(conn, &select).await?);
    }
    Ok(out)
}

/// Up to `limit` customers' facts after `after`, in id order.
pub async fn facts_page(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<CustomerFacts>, Error> {
    let mut select = Query::select()
        .column(t("data"))
        .from(t("facts"))
        .order_by(t("customer_id"), Order::Asc)
        .limit(limit)
        .to_owned();
    if let Some(after) = after {
        select.and_where(col("customer_id").gt(after));
    }
    facts_of(conn, &select).await
}

/// Writes `facts`, replacing what was stored.
pub async fn save_facts<'a>(
    conn: &impl ConnectionTrait,
    facts: impl IntoIterator<Item = &'a CustomerFacts>,
) -> Result<(), Error> {
    let rows = facts
        .into_iter()
        .map(|f| Ok([f.id.into(), encode_facts(f)?.into()]))
        .collect::<Result<Vec<[SimpleExpr; 2]>, Error>>()?;
    upsert(conn, "facts", &["customer_id", "data"], rows, &["data"]).await
}
