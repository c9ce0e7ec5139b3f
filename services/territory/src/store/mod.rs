//! The service's storage: statements built with sea-query, so the same code runs on
//! SQLite and PostgreSQL. Functions take any connection or transaction.

use chrono::{DateTime, Utc};
use clientela_runtime::Error;
use clientela_runtime::idempotency::RequestKey;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Order, Query, SelectStatement};
use sea_orm::{ConnectionTrait, QueryResult};
use uuid::Uuid;

pub mod cartera;
mod explanation;
pub(crate) mod sqlite;

use crate::locate::Criteria;
use crate::model::{
    ModelState, Seller, SellerFields, SellerStatus, Territory, TerritoryFields, TerritoryModel,
};

pub(crate) fn t(name: &str) -> Alias {
    Alias::new(name)
}

pub(crate) fn col(name: &str) -> Expr {
    Expr::col(t(name))
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
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

// ---- sellers ----

const SELLER_COLUMNS: [&str; 14] = [
    "id",
    "display_name",
    "email",
    "token_name",
    "specialties",
    "territory_codes",
    "kam",
    "capacity",
    "status",
    "house",
    "version",
    "created_at",
    "updated_at",
    "request_fingerprint",
];

fn list_of(row: &QueryResult, column: &str) -> Result<Vec<String>, Error> {
    let text: String = row.try_get("", column)?;
    serde_json::from_str(&text).map_err(|e| corrupt("seller's list", e))
}

fn json_list(list: &[String]) -> Result<String, Error> {
    serde_json::to_string(list).map_err(|e| Error::Internal(format!("encoding a list: {e}")))
}

pub(crate) fn seller_of(row: &QueryResult) -> Result<Seller, Error> {
    let status: String = row.try_get("", "status")?;
    Ok(Seller {
        id: row.try_get("", "id")?,
        fields: SellerFields {
            display_name: row.try_get("", "display_name")?,
            email: row.try_get("", "email")?,
            token_name: row.try_get("", "token_name")?,
            specialties: list_of(row, "specialties")?,
            territory_codes: list_of(row, "territory_codes")?,
            kam: row.try_get("", "kam")?,
            capacity: row.try_get("", "capacity")?,
            status: SellerStatus::parse(&status)
                .ok_or_else(|| corrupt("seller status", &status))?,
        },
        house: row.try_get("", "house")?,
        version: row.try_get("", "version")?,
        created_at: row.try_get("", "created_at")?,
        updated_at: row.try_get("", "updated_at")?,
    })
}

pub(crate) fn seller_select() -> SelectStatement {
    Query::select()
        .columns(SELLER_COLUMNS.map(t))
        .from(t("sellers"))
        .to_owned()
}

/// Seller `id`, if stored.
pub async fn seller(conn: &impl ConnectionTrait, id: Uuid) -> Result<Option<Seller>, Error> {
    let select = seller_select().and_where(col("id").eq(id)).to_owned();
    conn.query_one(&select)
        .await?
        .map(|r| seller_of(&r))
        .transpose()
}

/// The seller created with request key `request_id`, and the fingerprint stored with it.
pub async fn seller_by_request(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<(Seller, Option<i64>)>, Error> {
    let select = seller_select()
        .and_where(col("request_id").eq(request_id))
        .to_owned();
    let Some(row) = conn.query_one(&select).await? else {
        return Ok(None);
    };
    Ok(Some((
        seller_of(&row)?,
        row.try_get("", "request_fingerprint")?,
    )))
}

/// The seller who answers to token `name`, if any (departed sellers answer to none).
pub async fn seller_by_token(
    conn: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<Uuid>, Error> {
    let select = Query::select()
        .column(t("id"))
        .from(t("sellers"))
        .and_where(col("token_key").eq(name))
        .to_owned();
    Ok(conn
        .query_one(&select)
        .await?
        .map(|r| r.try_get("", "id"))
        .transpose()?)
}

/// Every seller, house first, then by display name and id.
pub async fn sellers(conn: &impl ConnectionTrait) -> Result<Vec<Seller>, Error> {
    let select = seller_select()
        .order_by(t("house"), Order::Desc)
        .order_by(t("display_name"), Order::Asc)
        .order_by(t("id"), Order::Asc)
        .to_owned();
    conn.query_all(&select)
        .await?
        .iter()
        .map(seller_of)
        .collect()
}

/// How many sellers are stored.
pub async fn seller_count(conn: &impl ConnectionTrait) -> Result<i64, Error> {
    let select = Query::select()
        .expr_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), t("n"))
        .from(t("sellers"))
        .to_owned();
    Ok(conn
        .query_one(&select)
        .await?
        .map(|r| r.try_get("", "n"))
        .transpose()?
        .unwrap_or(0))
}

fn token_key(fields: &SellerFields) -> Option<String> {
    (fields.status != SellerStatus::Departed)
        .then(|| fields.token_name.clone())
        .flatten()
}

/// Stores a new seller.
pub async fn insert_seller(
    conn: &impl ConnectionTrait,
    seller: &Seller,
    request: Option<&RequestKey>,
) -> Result<(), Error> {
    let f = &seller.fields;
    let insert = Query::insert()
        .into_table(t("sellers"))
        .columns([
            t("id"),
            t("display_name"),
            t("email"),
            t("token_name"),
            t("token_key"),
            t("specialties"),
            t("territory_codes"),
            t("kam"),
            t("capacity"),
            t("status"),
            t("house"),
            t("request_id"),
            t("request_fingerprint"),
            t("version"),
            t("created_at"),
            t("updated_at"),
        ])
        .values([
            seller.id.into(),
            f.display_name.clone().into(),
            f.email.clone().into(),
            f.token_name.clone().into(),
            token_key(f).into(),
            json_list(&f.specialties)?.into(),
            json_list(&f.territory_codes)?.into(),
            f.kam.into(),
            f.capacity.into(),
            f.status.as_str().into(),
            seller.house.into(),
            request.map(|r| r.id.clone()).into(),
            request.map(|r| r.fingerprint).into(),
            seller.version.into(),
            seller.created_at.into(),
            seller.updated_at.into(),
        ])
        .map_err(|e| Error::Internal(e.to_string()))?
        .to_owned();
    conn.execute(&insert).await?;
    Ok(())
}

/// Writes a changed seller if it is still at `expected` version; false when another
/// writer changed it first.
pub async fn update_seller(
    conn: &impl ConnectionTrait,
    seller: &Seller,
    expected: i64,
) -> Result<bool, Error> {
    let f = &seller.fields;
    let update = Query::update()
        .table(t("sellers"))
        .value(t("display_name"), f.display_name.clone())
        .value(t("email"), f.email.clone())
        .value(t("token_name"), f.token_name.clone())
        .value(t("token_key"), token_key(f))
        .value(t("specialties"), json_list(&f.specialties)?)
        .value(t("territory_codes"), json_list(&f.territory_codes)?)
        .value(t("kam"), f.kam)
        .value(t("capacity"), f.capacity)
        .value(t("status"), f.status.as_str())
        .value(t("version"), seller.version)
        .value(t("updated_at"), seller.updated_at)
        .and_where(col("id").eq(seller.id))
        .and_where(col("version").eq(expected))
        .to_owned();
    Ok(conn.execute(&update).await?.rows_affected() == 1)
}
