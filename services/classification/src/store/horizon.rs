//! The horizon: the earliest instant of any fact the engine holds (see the migration
//! that made it), for the lower bound of `as_of`.

use super::*;

/// Lowers the horizon to `at` if that is earlier, in the transaction applying the fact.
pub async fn lower_horizon(conn: &impl ConnectionTrait, at: DateTime<Utc>) -> Result<(), Error> {
    let micros = at.timestamp_micros();
    let update = Query::update()
        .table(t("horizon"))
        .value(t("earliest_micros"), micros)
        .and_where(col("id").eq(1))
        .and_where(
            col("earliest_micros")
                .is_null()
                .or(col("earliest_micros").gt(micros)),
        )
        .to_owned();
    conn.execute(&update).await?;
    Ok(())
}

/// What the engine knows of its earliest fact: `None` when it cannot tell (facts stored
/// before the horizon was kept), else the instant, `Some(None)` while there is no fact.
pub async fn horizon(conn: &impl ConnectionTrait) -> Result<Option<Option<DateTime<Utc>>>, Error> {
    let select = Query::select()
        .columns([t("earliest_micros"), t("complete")])
        .from(t("horizon"))
        .and_where(col("id").eq(1))
        .to_owned();
    let row = conn
        .query_one(&select)
        .await?
        .ok_or_else(|| Error::Internal("the horizon row is missing".into()))?;
    if !row.try_get::<bool>("", "complete")? {
        return Ok(None);
    }
    let earliest = row
        .try_get::<Option<i64>>("", "earliest_micros")?
        .map(|m| {
            DateTime::from_timestamp_micros(m)
                .ok_or_else(|| Error::Internal(format!("corrupt horizon {m} in the database")))
        })
        .transpose()?;
    Ok(Some(earliest))
}
