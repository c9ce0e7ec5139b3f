//! Policy versions: every version kept, the current one the highest.

use super::*;

pub(super) fn policy_version(row: &QueryResult) -> Result<PolicyVersion, Error> {
    Ok(PolicyVersion {
        version: row.try_get("", "version")?,
        created_at: row.try_get("", "created_at")?,
        policy: from_json(row, "body")?,
    })
}

/// Version `version`, or the current one with `None`.
pub async fn policy(
    conn: &impl ConnectionTrait,
    version: Option<i64>,
) -> Result<Option<PolicyVersion>, Error> {
    let mut select = Query::select()
        .columns([t("version"), t("created_at"), t("body")])
        .from(t("policies"))
        .order_by(t("version"), Order::Desc)
        .limit(1)
        .to_owned();
    if let Some(v) = version {
        select.and_where(col("version").eq(v));
    }
    conn.query_one(&select)
        .await?
        .map(|row| policy_version(&row))
        .transpose()
}

/// The current policy version, if any.
pub async fn current_policy_version(conn: &impl ConnectionTrait) -> Result<Option<i64>, Error> {
    let select = Query::select()
        .expr_as(Expr::col(t("version")).max(), t("current"))
        .from(t("policies"))
        .to_owned();
    Ok(conn
        .query_one(&select)
        .await?
        .map(|r| r.try_get::<Option<i64>>("", "current"))
        .transpose()?
        .flatten())
}

/// Stores `policy` as the version after `current` (0: none yet); ABORTED when another
/// writer stored that version first.
pub async fn insert_policy(
    conn: &impl ConnectionTrait,
    current: i64,
    policy: &Policy,
    now: DateTime<Utc>,
) -> Result<PolicyVersion, Error> {
    let version = current + 1;
    let insert = Query::insert()
        .into_table(t("policies"))
        .columns([t("version"), t("created_at"), t("body")])
        .values([version.into(), now.into(), to_json(policy)?.into()])
        .map_err(sql_error)?
        .on_conflict(OnConflict::column(t("version")).do_nothing().to_owned())
        .to_owned();
    if conn.execute(&insert).await?.rows_affected() != 1 {
        return Err(Error::Aborted {
            reason: "POLICY_VERSION_TAKEN",
            message: format!("policy version {version} was set concurrently; read it and retry"),
        });
    }
    Ok(PolicyVersion {
        version,
        created_at: now,
        policy: policy.clone(),
    })
}
