//! The service's storage: statements built with sea-query, so the same code runs on
//! SQLite and PostgreSQL. Functions take any connection or transaction.

use chrono::{DateTime, Utc};
use clientela_runtime::Error;
use clientela_runtime::idempotency::RequestKey;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult};
use uuid::Uuid;

use crate::locate::Criteria;
use crate::model::{ModelState, Territory, TerritoryFields, TerritoryModel};

fn t(name: &str) -> Alias {
    Alias::new(name)
}

fn col(name: &str) -> Expr {
    Expr::col(t(name))
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("a stored {what} cannot be read: {detail}"))
}

// ---- models ----

fn model_select() -> SelectStatement {
    Query::select()
        .columns([
            (t("territory_models"), t("id")),
            (t("territory_models"), t("display_name")),
            (t("territory_models"), t("state")),
            (t("territory_models"), t("copied_from")),
            (t("territory_models"), t("version")),
            (t("territory_models"), t("created_at")),
            (t("territory_models"), t("updated_at")),
        ])
        .expr_as(
            Expr::cust(
                "(SELECT CAST(COUNT(*) AS BIGINT) FROM territories \
                 WHERE territories.model_id = territory_models.id)",
            ),
            t("territory_count"),
        )
        .from(t("territory_models"))
        .to_owned()
}

fn model_of(row: &QueryResult) -> Result<TerritoryModel, Error> {
    let state: String = row.try_get("", "state")?;
    Ok(TerritoryModel {
        id: row.try_get("", "id")?,
        display_name: row.try_get("", "display_name")?,
        state: ModelState::parse(&state).ok_or_else(|| corrupt("model state", &state))?,
        copied_from: row.try_get("", "copied_from")?,
        territory_count: row.try_get("", "territory_count")?,
        version: row.try_get("", "version")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
    })
}

/// Model `id`, if stored.
pub async fn model(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<TerritoryModel>, Error> {
    let select = model_select()
        .and_where(Expr::col((t("territory_models"), t("id"))).eq(id))
        .to_owned();
    conn.query_one(&select)
        .await?
        .map(|r| model_of(&r))
        .transpose()
}

/// The model created with request key `id`, and the fingerprint stored with it.
pub async fn model_by_request(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<(TerritoryModel, Option<i64>)>, Error> {
    let select = model_select()
        .column((t("territory_models"), t("request_fingerprint")))
        .and_where(Expr::col((t("territory_models"), t("request_id"))).eq(request_id))
        .to_owned();
    let Some(row) = conn.query_one(&select).await? else {
        return Ok(None);
    };
    Ok(Some((
        model_of(&row)?,
        row.try_get("", "request_fingerprint")?,
    )))
}

/// Up to `limit` models after `after`, newest first (ids are UUIDv7).
pub async fn models(
    conn: &impl ConnectionTrait,
    state: Option<ModelState>,
    after: Option<Uuid>,
    limit: u64,
) -> Result<Vec<TerritoryModel>, Error> {
    let mut select = model_select()
        .order_by((t("territory_models"), t("id")), Order::Desc)
        .limit(limit)
        .to_owned();
    if let Some(state) = state {
        select.and_where(Expr::col((t("territory_models"), t("state"))).eq(state.as_str()));
    }
    if let Some(after) = after {
        select.and_where(Expr::col((t("territory_models"), t("id"))).lt(after));
    }
    conn.query_all(&select)
        .await?
        .iter()
        .map(model_of)
        .collect()
}

/// Stores a new model.
pub async fn insert_model(
    conn: &impl ConnectionTrait,
    model: &TerritoryModel,
    request: Option<&RequestKey>,
) -> Result<(), Error> {
    let insert = Query::insert()
        .into_table(t("territory_models"))
        .columns([
            t("id"),
            t("display_name"),
            t("state"),
            t("copied_from"),
            t("request_id"),
            t("request_fingerprint"),
            t("version"),
            t("created_at"),
            t("updated_at"),
        ])
        .values([
            model.id.into(),
            model.display_name.clone().into(),
            model.state.as_str().into(),
            model.copied_from.into(),
            request.map(|r| r.id.clone()).into(),
            request.map(|r| r.fingerprint).into(),
            model.version.into(),
            model.created_at.into(),
            model.updated_at.into(),
        ])
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

/// Bumps model `id`'s version (its etag) if it is in `state` (and at `version` when
/// given), locking its row until the transaction ends, so one model's edits are
/// serialized; false when it is not (missing, another state, another version).
pub async fn bump_model(
    conn: &impl ConnectionTrait,
    id: Uuid,
    state: ModelState,
    version: Option<i64>,
    to: ModelState,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    let mut update = Query::update()
        .table(t("territory_models"))
        .value(t("version"), col("version").add(1))
        .value(t("state"), to.as_str())
        .value(t("updated_at"), now)
        .and_where(col("id").eq(id))
        .and_where(col("state").eq(state.as_str()))
        .to_owned();
    if let Some(version) = version {
        update.and_where(col("version").eq(version));
    }
    Ok(conn.execute(&update).await?.rows_affected() == 1)
}

// ---- territories ----

const TERRITORY_COLUMNS: [&str; 9] = [
    "model_id",
    "code",
    "display_name",
    "parent_code",
    "criteria",
    "priority",
    "version",
    "created_at",
    "updated_at",
];

fn territory_of(row: &QueryResult) -> Result<Territory, Error> {
    let criteria: String = row.try_get("", "criteria")?;
    let criteria: Criteria =
        serde_json::from_str(&criteria).map_err(|e| corrupt("territory's criteria", e))?;
    Ok(Territory {
        model_id: row.try_get("", "model_id")?,
        code: row.try_get("", "code")?,
        fields: TerritoryFields {
            display_name: row.try_get("", "display_name")?,
            parent_code: row.try_get("", "parent_code")?,
            criteria,
            priority: row.try_get("", "priority")?,
        },
        version: row.try_get("", "version")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
    })
}

fn criteria_json(criteria: &Criteria) -> Result<String, Error> {
    serde_json::to_string(criteria).map_err(|e| Error::Internal(format!("encoding criteria: {e}")))
}

/// Every territory of model `id`, by code.
pub async fn territories(
    conn: &impl ConnectionTrait,
    model: Uuid,
) -> Result<Vec<Territory>, Error> {
    let select = Query::select()
        .columns(TERRITORY_COLUMNS.map(t))
        .from(t("territories"))
        .and_where(col("model_id").eq(model))
        .order_by(t("code"), Order::Asc)
        .to_owned();
    conn.query_all(&select)
        .await?
        .iter()
        .map(territory_of)
        .collect()
}

/// Territory `code` of model `id`, if stored.
pub async fn territory(
    conn: &impl ConnectionTrait,
    model: Uuid,
    code: &str,
) -> Result<Option<Territory>, Error> {
    let select = Query::select()
        .columns(TERRITORY_COLUMNS.map(t))
        .from(t("territories"))
        .and_where(col("model_id").eq(model))
        .and_where(col("code").eq(code))
        .to_owned();
    conn.query_one(&select)
        .await?
        .map(|r| territory_of(&r))
        .transpose()
}

/// Stores new territories.
pub async fn insert_territories(
    conn: &impl ConnectionTrait,
    rows: &[Territory],
) -> Result<(), Error> {
    // 9 values a row: well inside both engines' parameter limits.
    for chunk in rows.chunks(500) {
        let mut insert = Query::insert()
            .into_table(t("territories"))
            .columns(TERRITORY_COLUMNS.map(t))
            .to_owned();
        for row in chunk {
            insert
                .values([
                    row.model_id.into(),
                    row.code.clone().into(),
                    row.fields.display_name.clone().into(),
                    row.fields.parent_code.clone().into(),
                    criteria_json(&row.fields.criteria)?.into(),
                    row.fields.priority.into(),
                    row.version.into(),
                    row.created_at.into(),
                    row.updated_at.into(),
                ])
                .map_err(|e| Error::Internal(e.to_string()))?;
        }
        conn.execute(&insert).await?;
    }
    Ok(())
}

/// Writes a changed territory (its version and update time included).
pub async fn update_territory(conn: &impl ConnectionTrait, row: &Territory) -> Result<(), Error> {
    let update = Query::update()
        .table(t("territories"))
        .value(t("display_name"), row.fields.display_name.clone())
        .value(t("parent_code"), row.fields.parent_code.clone())
        .value(t("criteria"), criteria_json(&row.fields.criteria)?)
        .value(t("priority"), row.fields.priority)
        .value(t("version"), row.version)
        .value(t("updated_at"), row.updated_at)
        .and_where(col("model_id").eq(row.model_id))
        .and_where(col("code").eq(row.code.as_str()))
        .to_owned();
    conn.execute(&update).await?;
    Ok(())
}

/// Deletes territory `code` of model `id`.
pub async fn delete_territory(
    conn: &impl ConnectionTrait,
    model: Uuid,
    code: &str,
) -> Result<(), Error> {
    let delete = Query::delete()
        .from_table(t("territories"))
        .and_where(col("model_id").eq(model))
        .and_where(col("code").eq(code))
        .to_owned();
    conn.execute(&delete).await?;
    Ok(())
}
