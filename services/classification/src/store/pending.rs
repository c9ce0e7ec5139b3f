//! The customers waiting to be classified again, and the counters a page compares
//! with later: the feed cursor and the number of transactions that wrote classifications.

use super::*;

/// Marks `ids` as changed since they were last classified.
pub async fn mark_pending(
    conn: &impl ConnectionTrait,
    ids: impl IntoIterator<Item = Uuid>,
) -> Result<(), Error> {
    let mut ids = ids.into_iter().peekable();
    while ids.peek().is_some() {
        let mut insert = Query::insert();
        insert
            .into_table(t("pending"))
            .columns([t("customer_id")])
            .on_conflict(OnConflict::column(t("customer_id")).do_nothing().to_owned());
        for id in ids.by_ref().take(MAX_ROWS_PER_INSERT) {
            insert.values([id.into()]).map_err(sql_error)?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Up to `limit` customers waiting to be classified, in id order.
pub async fn pending(conn: &impl ConnectionTrait, limit: u64) -> Result<Vec<Uuid>, Error> {
    let select = Query::select()
        .column(t("customer_id"))
        .from(t("pending"))
        .order_by(t("customer_id"), Order::Asc)
        .limit(limit)
        .to_owned();
    rows(conn, &select, |row| Ok(row.try_get("", "customer_id")?)).await
}

/// Unmarks the customers after `after` up to `last` (all of them classified).
pub async fn clear_pending(
    conn: &impl ConnectionTrait,
    after: Option<Uuid>,
    last: Uuid,
) -> Result<(), Error> {
    let mut delete = Query::delete()
        .from_table(t("pending"))
        .and_where(col("customer_id").lte(last))
        .to_owned();
    if let Some(after) = after {
        delete.and_where(col("customer_id").gt(after));
    }
    conn.execute(&delete).await?;
    Ok(())
}

// ---- the feed cursor ----

/// The last registry sequence the facts include.
pub async fn feed_cursor(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    read_sequence(conn, crate::engine::REGISTRY_FEED.table).await
}

/// The registry sequence up to which every event's customers are classified.
pub async fn classified_through(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    read_sequence(conn, "classified_through").await
}

/// Records that every event up to `cursor` is classified (nothing is pending), in the
/// transaction that found it so.
pub async fn mark_classified_through(
    conn: &impl ConnectionTrait,
    cursor: i64,
) -> Result<(), Error> {
    let update = Query::update()
        .table(t("classified_through"))
        .value(t("last_sequence"), cursor)
        .and_where(col("id").eq(1))
        .and_where(col("last_sequence").lt(cursor))
        .to_owned();
    conn.execute(&update).await?;
    Ok(())
}

/// How many transactions have written classifications (see [`count_write`]).
pub async fn classification_writes(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    read_sequence(conn, "write_counter").await
}

/// Counts a transaction that writes classifications, in it; returns its number. A
/// page compared ahead against what was stored when the count was `n` is still compared
/// against what is stored while only the comparing run's own pages have counted since.
pub async fn count_write(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    add_to_sequence(conn, "write_counter", 1).await
}
