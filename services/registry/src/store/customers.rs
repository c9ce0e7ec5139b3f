//! Customer rows and their lookup keys.

use chrono::{DateTime, Utc};
use clientela_domain::Labeled;
use clientela_domain::ids::CustomerId;
use clientela_domain::text::fold;
use clientela_domain::{Email, TaxId};
use clientela_runtime::Error;
use clientela_runtime::idempotency::RequestKey;
use sea_orm::sea_query::{Expr, ExprTrait, Order};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{customer, customer_key};
use super::{from_code, from_json, to_json};
use crate::model::query::{Cursor, CustomerFilter, OrderBy};
use crate::model::{Customer, CustomerFields, Status};

fn tax_key(fields: &CustomerFields) -> Option<String> {
    fields
        .tax_id
        .as_ref()
        .map(|t| format!("{}:{}", t.country(), t.normalized()))
}

fn search_text(fields: &CustomerFields) -> String {
    let mut parts = vec![fold(&fields.display_name), fold(&fields.legal_name)];
    parts.extend(fields.emails.iter().map(Email::normalized));
    if let Some(t) = &fields.tax_id {
        parts.push(t.normalized().to_lowercase());
        parts.push(fold(t.value()));
    }
    parts.join(" ")
}

fn to_active(c: &Customer, request: Option<&RequestKey>) -> Result<customer::ActiveModel, Error> {
    let f = &c.fields;
    Ok(customer::ActiveModel {
        id: Set(c.id.as_uuid()),
        kind: Set(f.kind.code().to_owned()),
        display_name: Set(f.display_name.clone()),
        legal_name: Set(f.legal_name.clone()),
        tax_country: Set(f.tax_id.as_ref().map(|t| t.country().to_owned())),
        tax_id: Set(f.tax_id.as_ref().map(|t| t.value().to_owned())),
        tax_key: Set(tax_key(f)),
        emails: Set(to_json(&f.emails)?),
        phones: Set(to_json(&f.phones)?),
        address: Set(f.address.as_ref().map(to_json).transpose()?),
        region_key: Set(f
            .address
            .as_ref()
            .map(|a| fold(&a.region))
            .filter(|r| !r.is_empty())),
        channel_role: Set(f.channel_role.map(|v| v.code().to_owned())),
        business_kind: Set(f.business_kind.map(|v| v.code().to_owned())),
        influence: Set(to_json(&f.influence)?),
        tags: Set(to_json(&f.tags)?),
        attributes: Set(to_json(&f.attributes)?),
        consent: Set(to_json(&f.consent)?),
        language_code: Set(f.language_code.clone()),
        external_id: Set(f.external_id.clone()),
        cost_to_serve: Set(f.cost_to_serve.as_ref().map(to_json).transpose()?),
        key_account: Set(f.key_account),
        high_expectations: Set(f.high_expectations),
        status: Set(c.status.code().to_owned()),
        merged_into: Set(c.merged_into.map(|m| m.as_uuid())),
        search_text: Set(search_text(f)),
        request_id: Set(request.map(|r| r.id.clone())),
        request_fingerprint: Set(request.map(|r| r.fingerprint)),
        version: Set(c.version),
        created_at: Set(c.created_at),
        updated_at: Set(c.updated_at),
    })
}

fn from_model(m: customer::Model) -> Result<Customer, Error> {
    let tax_id = match (m.tax_country, m.tax_id) {
        (Some(country_code), Some(value)) => {
            let normalized = m
                .tax_key
                .as_deref()
                .and_then(|k| k.split_once(':'))
                .map(|(_, n)| n.to_owned())
                .unwrap_or_default();
            Some(TaxId::stored(country_code, value, normalized))
        }
        _ => None,
    };
    let mut customer = Customer {
        id: CustomerId::from_uuid(m.id),
        fields: CustomerFields {
            kind: from_code(&m.kind, "customer kind")?,
            display_name: m.display_name,
            legal_name: m.legal_name,
            tax_id,
            emails: from_json(&m.emails, "emails")?,
            phones: from_json(&m.phones, "phones")?,
            address: m
                .address
                .as_deref()
                .map(|a| from_json(a, "address"))
                .transpose()?,
            channel_role: m
                .channel_role
                .as_deref()
                .map(|c| from_code(c, "channel role"))
                .transpose()?,
            business_kind: m
                .business_kind
                .as_deref()
                .map(|c| from_code(c, "business kind"))
                .transpose()?,
            influence: from_json(&m.influence, "influence")?,
            tags: from_json(&m.tags, "tags")?,
            attributes: from_json(&m.attributes, "attributes")?,
            consent: from_json(&m.consent, "consent")?,
            language_code: m.language_code,
            external_id: m.external_id,
            cost_to_serve: m
                .cost_to_serve
                .as_deref()
                .map(|c| from_json(c, "cost to serve"))
                .transpose()?,
            key_account: m.key_account,
            high_expectations: m.high_expectations,
        },
        status: Status::from_code(&m.status)
            .ok_or_else(|| Error::Internal(format!("corrupt customer status {:?}", m.status)))?,
        merged_into: m.merged_into.map(CustomerId::from_uuid),
        created_at: m.created_at,
        updated_at: m.updated_at,
        version: m.version,
    };
    // Rows the migration to first-class fields could not lift stay as they were.
    customer.fields.lift_legacy();
    Ok(customer)
}

/// The lookup keys of a customer: normalized emails, phones and tags.
fn keys(c: &Customer) -> Vec<customer_key::ActiveModel> {
    let id = c.id.as_uuid();
    let mut out: Vec<(&str, String)> = Vec::new();
    out.extend(c.fields.emails.iter().map(|e| ("email", e.normalized())));
    out.extend(
        c.fields
            .phones
            .iter()
            .map(|p| ("phone", p.as_str().to_owned())),
    );
    out.extend(c.fields.tags.iter().map(|t| ("tag", fold(t))));
    out.sort();
    out.dedup();
    out.into_iter()
        .map(|(kind, value)| customer_key::ActiveModel {
            kind: Set(kind.to_owned()),
            value: Set(value),
            customer_id: Set(id),
        })
        .collect()
}

async fn replace_keys(conn: &impl ConnectionTrait, c: &Customer) -> Result<(), Error> {
    customer_key::Entity::delete_many()
        .filter(customer_key::Column::CustomerId.eq(c.id.as_uuid()))
        .exec(conn)
        .await?;
    let rows = keys(c);
    if !rows.is_empty() {
        customer_key::Entity::insert_many(rows).exec(conn).await?;
    }
    Ok(())
}

/// Inserts a new customer with its keys.
pub async fn insert(
    conn: &impl ConnectionTrait,
    c: &Customer,
    request: Option<&RequestKey>,
) -> Result<(), Error> {
    customer::Entity::insert(to_active(c, request)?)
        .exec_without_returning(conn)
        .await
        .map_err(|e| unique_to_reason(e, c))?;
    replace_keys(conn, c).await
}

/// Turns a unique violation into the key the caller collided with.
fn unique_to_reason(e: sea_orm::DbErr, c: &Customer) -> Error {
    match Error::from(e) {
        Error::AlreadyExists { .. } => {
            let mut keys = Vec::new();
            if c.fields.tax_id.is_some() {
                keys.push("tax_id");
            }
            if c.fields.external_id.is_some() {
                keys.push("external_id");
            }
            Error::already_exists(
                "CUSTOMER_EXISTS",
                format!("a live customer has the same {}", keys.join(" or ")),
            )
        }
        other => other,
    }
}

/// Writes `c` if its stored version is still `expected_version`; false if it changed.
pub async fn update(
    conn: &impl ConnectionTrait,
    c: &Customer,
    expected_version: i64,
) -> Result<bool, Error> {
    let mut active = to_active(c, None)?;
    active.request_id = sea_orm::ActiveValue::NotSet;
    active.request_fingerprint = sea_orm::ActiveValue::NotSet;
    let result = customer::Entity::update_many()
        .set(active)
        .filter(customer::Column::Id.eq(c.id.as_uuid()))
        .filter(customer::Column::Version.eq(expected_version))
        .exec(conn)
        .await
        .map_err(|e| unique_to_reason(e, c))?;
    if result.rows_affected == 0 {
        return Ok(false);
    }
    replace_keys(conn, c).await?;
    Ok(true)
}

/// Writes a change of status only (the lookup keys stay as they are) if the stored
/// version is still `expected_version`; false if it changed.
pub async fn update_status(
    conn: &impl ConnectionTrait,
    c: &Customer,
    expected_version: i64,
) -> Result<bool, Error> {
    let result = customer::Entity::update_many()
        .col_expr(customer::Column::Status, Expr::value(c.status.code()))
        .col_expr(customer::Column::Version, Expr::value(c.version))
        .col_expr(customer::Column::UpdatedAt, Expr::value(c.updated_at))
        .filter(customer::Column::Id.eq(c.id.as_uuid()))
        .filter(customer::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// One customer.
pub async fn get(conn: &impl ConnectionTrait, id: CustomerId) -> Result<Option<Customer>, Error> {
    customer::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .map(from_model)
        .transpose()
}

/// One customer, its row locked until the transaction ends (PostgreSQL `FOR UPDATE`;
/// SQLite's single writer needs no lock). Concurrent writers of one customer queue here
/// instead of failing each other's optimistic check.
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    id: CustomerId,
) -> Result<Option<Customer>, Error> {
    customer::Entity::find_by_id(id.as_uuid())
        .lock_exclusive()
        .one(conn)
        .await?
        .map(from_model)
        .transpose()
}

/// The customers among `ids` that exist, their rows locked until the transaction ends
/// (see [`get_for_update`]). Locks are taken in id order, so two batches that share
/// customers queue instead of deadlocking.
pub async fn get_many_for_update(
    conn: &impl ConnectionTrait,
    ids: &[CustomerId],
) -> Result<Vec<Customer>, Error> {
    let mut ids: Vec<Uuid> = ids.iter().map(|id| id.as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(super::MAX_IN_LIST) {
        let found = customer::Entity::find()
            .filter(customer::Column::Id.is_in(chunk.iter().copied()))
            .order_by_asc(customer::Column::Id)
            .lock_exclusive()
            .all(conn)
            .await?;
        for m in found {
            out.push(from_model(m)?);
        }
    }
    Ok(out)
}

/// The customer an earlier create with `request_id` made, and that request's
/// fingerprint.
pub async fn get_by_request_id(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<(Customer, Option<i64>)>, Error> {
    customer::Entity::find()
        .filter(customer::Column::RequestId.eq(request_id))
        .one(conn)
        .await?
        .map(|m| {
            let fingerprint = m.request_fingerprint;
            from_model(m).map(|c| (c, fingerprint))
        })
        .transpose()
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

/// A page of customers after `after`, and the cursor of its last row.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &CustomerFilter,
    order: OrderBy,
    descending: bool,
    after: Option<&Cursor>,
    limit: u64,
) -> Result<Vec<Customer>, Error> {
    let mut cond = Condition::all();
    if !filter.statuses.is_empty() {
        cond = cond.add(customer::Column::Status.is_in(filter.statuses.iter().map(|s| s.code())));
    }
    if let Some(kind) = filter.kind {
        cond = cond.add(customer::Column::Kind.eq(kind.code()));
    }
    if let Some(region) = &filter.region {
        cond = cond.add(customer::Column::RegionKey.eq(region.as_str()));
    }
    if let Some(tag) = &filter.tag {
        // EXISTS, not IN: the planner then walks the order-by index and stops after a
        // page of matches, instead of collecting and sorting every tagged customer.
        cond = cond.add(Expr::exists(
            sea_orm::sea_query::Query::select()
                .expr(Expr::val(1))
                .from(customer_key::Entity)
                .and_where(Expr::col((customer_key::Entity, customer_key::Column::Kind)).eq("tag"))
                .and_where(
                    Expr::col((customer_key::Entity, customer_key::Column::Value)).eq(tag.as_str()),
                )
                .and_where(
                    Expr::col((customer_key::Entity, customer_key::Column::CustomerId))
                        .equals((customer::Entity, customer::Column::Id)),
                )
                .to_owned(),
        ));
    }
    if let Some(q) = &filter.query {
        let pattern = format!("%{}%", escape_like(q));
        cond = cond.add(
            Expr::col(customer::Column::SearchText)
                .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
        );
    }
    let column = match order {
        OrderBy::CreateTime => customer::Column::CreatedAt,
        OrderBy::UpdateTime => customer::Column::UpdatedAt,
        OrderBy::DisplayName => customer::Column::DisplayName,
    };
    if let Some(cursor) = after {
        let key: sea_orm::Value = match order {
            OrderBy::DisplayName => cursor.key.clone().into(),
            _ => DateTime::parse_from_rfc3339(&cursor.key)
                .map_err(|_| Error::invalid("page_token", "not a page token this server issued"))?
                .with_timezone(&Utc)
                .into(),
        };
        // A row-value comparison, not `key > k OR (key = k AND id > i)`: PostgreSQL uses
        // it as the index scan's start instead of filtering every row before the cursor.
        let row = Expr::tuple([Expr::col(column), Expr::col(customer::Column::Id)]);
        let at = Expr::tuple([Expr::val(key), Expr::val(cursor.id)]);
        let after_key = if descending { row.lt(at) } else { row.gt(at) };
        cond = cond.add(after_key);
    }
    let direction = if descending { Order::Desc } else { Order::Asc };
    customer::Entity::find()
        .filter(cond)
        .order_by(column, direction.clone())
        .order_by(customer::Column::Id, direction)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(from_model)
        .collect()
}

/// Live customers other than `c` sharing its tax id, an email or a phone, with what
/// they share.
pub async fn find_duplicates(
    conn: &impl ConnectionTrait,
    c: &Customer,
) -> Result<Vec<(Customer, Vec<&'static str>)>, Error> {
    let mut matches: std::collections::BTreeMap<Uuid, Vec<&'static str>> = Default::default();
    if let Some(key) = tax_key(&c.fields) {
        let ids: Vec<Uuid> = customer::Entity::find()
            .select_only()
            .column(customer::Column::Id)
            .filter(customer::Column::TaxKey.eq(key))
            .filter(customer::Column::Id.ne(c.id.as_uuid()))
            .into_tuple()
            .all(conn)
            .await?;
        for id in ids {
            matches.entry(id).or_default().push("tax_id");
        }
    }
    for (kind, label) in [("email", "email"), ("phone", "phone")] {
        let values: Vec<String> = keys(c)
            .into_iter()
            .filter_map(|k| match (k.kind, k.value) {
                (Set(k), Set(v)) if k == kind => Some(v),
                _ => None,
            })
            .collect();
        if values.is_empty() {
            continue;
        }
        let ids: Vec<Uuid> = customer_key::Entity::find()
            .select_only()
            .column(customer_key::Column::CustomerId)
            .filter(customer_key::Column::Kind.eq(kind))
            .filter(customer_key::Column::Value.is_in(values))
            .filter(customer_key::Column::CustomerId.ne(c.id.as_uuid()))
            .distinct()
            .into_tuple()
            .all(conn)
            .await?;
        for id in ids {
            matches.entry(id).or_default().push(label);
        }
    }
    let mut out = Vec::new();
    for (id, matched) in matches {
        if let Some(candidate) = get(conn, CustomerId::from_uuid(id)).await?
            && candidate.status.is_live()
        {
            out.push((candidate, matched));
        }
    }
    Ok(out)
}

/// Keeps `updated_at` strictly increasing per row even when the clock repeats.
pub fn touch(c: &mut Customer, now: DateTime<Utc>) {
    c.updated_at = std::cmp::max(now, c.updated_at);
    c.version += 1;
}
