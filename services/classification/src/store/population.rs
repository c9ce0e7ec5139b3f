//! Population snapshots: the cut-offs the population-relative labels were decided
//! with, kept so a classification is rendered with the one it rests on.

use super::*;

pub use crate::population::PopulationSnapshot;

/// The last population computed, with its id, if any.
pub async fn population(
    conn: &impl ConnectionTrait,
) -> Result<Option<(i64, PopulationSnapshot)>, Error> {
    let select = Query::select()
        // `id` is an INTEGER: 32 bits on PostgreSQL.
        .expr_as(col("id").cast_as(t("BIGINT")), t("id"))
        .column(t("body"))
        .from(t("population"))
        .order_by(t("id"), Order::Desc)
        .limit(1)
        .to_owned();
    Ok(rows(conn, &select, |row| {
        Ok((row.try_get("", "id")?, from_json(row, "body")?))
    })
    .await?
    .pop())
}

/// The population `id`, if stored.
pub async fn population_by_id(
    conn: &impl ConnectionTrait,
    id: i64,
) -> Result<Option<PopulationSnapshot>, Error> {
    let select = Query::select()
        .column(t("body"))
        .from(t("population"))
        .and_where(col("id").eq(id))
        .to_owned();
    Ok(bodies(conn, &select).await?.pop())
}

/// Stores a population computed anew; returns its id. Populations are kept: the
/// classifications made against one are rendered with it when read.
pub async fn save_population(
    conn: &impl ConnectionTrait,
    snapshot: &PopulationSnapshot,
) -> Result<i64, Error> {
    let id = population(conn).await?.map_or(0, |(id, _)| id) + 1;
    let insert = Query::insert()
        .into_table(t("population"))
        .columns([t("id"), t("policy_version"), t("as_of"), t("body")])
        .values([
            id.into(),
            snapshot.policy_version.into(),
            snapshot.as_of.into(),
            to_json(snapshot)?.into(),
        ])
        .map_err(sql_error)?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(id)
}
