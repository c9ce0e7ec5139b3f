//! Purchases, returns, surveys, complaints and referrals: the customer's commercial
//! history, and the moves a merge makes.

use clientela_domain::Labeled;
use clientela_domain::ids::{ComplaintId, CustomerId, PurchaseId, ReferralId, ReturnId, SurveyId};
use clientela_runtime::Error;
use clientela_runtime::idempotency::RequestKey;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};
use uuid::Uuid;

use super::entity::{complaint, purchase, referral, return_record, survey};
use super::{from_code, from_json, to_json};
use crate::model::query::{HistoryCursor, Owner};
use crate::model::{Complaint, Purchase, Referral, Return, Survey};

/// Rows strictly older than the cursor in (time, id) order.
fn older_than(
    time: impl ColumnTrait,
    id: impl ColumnTrait,
    cursor: Option<&HistoryCursor>,
) -> Condition {
    match cursor {
        None => Condition::all(),
        Some(c) => Condition::any()
            .add(time.lt(c.at))
            .add(Condition::all().add(time.eq(c.at)).add(id.lt(c.id))),
    }
}

// ---- purchases ----

fn purchase_active(p: &Purchase) -> Result<purchase::ActiveModel, Error> {
    Ok(purchase::ActiveModel {
        id: Set(p.id.as_uuid()),
        customer_id: Set(p.customer_id.as_uuid()),
        order_id: Set(p.order_id.clone()),
        occurred_at: Set(p.occurred_at),
        channel: Set(p.channel.map(|c| c.code().to_owned())),
        currency_code: Set(p.currency_code.clone()),
        total_minor: Set(p.total_minor),
        returned_minor: Set(p.returned_minor),
        lines: Set(to_json(&p.lines)?),
        created_at: Set(p.created_at),
    })
}

fn purchase_from(m: purchase::Model) -> Result<Purchase, Error> {
    Ok(Purchase {
        id: PurchaseId::from_uuid(m.id),
        customer_id: CustomerId::from_uuid(m.customer_id),
        order_id: m.order_id,
        occurred_at: m.occurred_at,
        lines: from_json(&m.lines, "purchase lines")?,
        channel: m
            .channel
            .as_deref()
            .map(|c| from_code(c, "sales channel"))
            .transpose()?,
        currency_code: m.currency_code,
        total_minor: m.total_minor,
        returned_minor: m.returned_minor,
        created_at: m.created_at,
    })
}

/// Inserts a purchase.
pub async fn insert_purchase(conn: &impl ConnectionTrait, p: &Purchase) -> Result<(), Error> {
    purchase::Entity::insert(purchase_active(p)?)
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Rewrites a purchase's lines and returned total after a return.
pub async fn update_purchase_returns(
    conn: &impl ConnectionTrait,
    p: &Purchase,
) -> Result<(), Error> {
    purchase::Entity::update_many()
        .col_expr(purchase::Column::Lines, Expr::value(to_json(&p.lines)?))
        .col_expr(
            purchase::Column::ReturnedMinor,
            Expr::value(p.returned_minor),
        )
        .filter(purchase::Column::Id.eq(p.id.as_uuid()))
        .exec(conn)
        .await?;
    Ok(())
}

/// One purchase.
pub async fn get_purchase(
    conn: &impl ConnectionTrait,
    id: PurchaseId,
) -> Result<Option<Purchase>, Error> {
    purchase::Entity::find_by_id(id.as_uuid())
        .one(conn)
        .await?
        .map(purchase_from)
        .transpose()
}

/// One purchase, its row locked until the transaction ends, so that concurrent returns
/// against it queue and never return more than was bought.
pub async fn get_purchase_for_update(
    conn: &impl ConnectionTrait,
    id: PurchaseId,
) -> Result<Option<Purchase>, Error> {
    purchase::Entity::find_by_id(id.as_uuid())
        .lock_exclusive()
        .one(conn)
        .await?
        .map(purchase_from)
        .transpose()
}

/// The purchase recorded under an order id.
pub async fn purchase_by_order(
    conn: &impl ConnectionTrait,
    order_id: &str,
) -> Result<Option<Purchase>, Error> {
    purchase::Entity::find()
        .filter(purchase::Column::OrderId.eq(order_id))
        .one(conn)
        .await?
        .map(purchase_from)
        .transpose()
}

/// The purchases already recorded under any of `order_ids`.
pub async fn purchases_by_orders(
    conn: &impl ConnectionTrait,
    order_ids: &[&str],
) -> Result<Vec<Purchase>, Error> {
    let mut out = Vec::new();
    for chunk in order_ids.chunks(super::MAX_IN_LIST) {
        let found = purchase::Entity::find()
            .filter(purchase::Column::OrderId.is_in(chunk.iter().copied()))
            .all(conn)
            .await?;
        for m in found {
            out.push(purchase_from(m)?);
        }
    }
    Ok(out)
}

/// Inserts purchases with multi-row statements.
pub async fn insert_purchases(conn: &impl ConnectionTrait, ps: &[Purchase]) -> Result<(), Error> {
    for chunk in ps.chunks(super::MAX_ROWS_PER_INSERT) {
        let rows = chunk
            .iter()
            .map(purchase_active)
            .collect::<Result<Vec<_>, Error>>()?;
        purchase::Entity::insert_many(rows)
            .exec_without_returning(conn)
            .await?;
    }
    Ok(())
}

/// Whether the customer has any purchase.
pub async fn has_purchases(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
) -> Result<bool, Error> {
    Ok(purchase::Entity::find()
        .select_only()
        .column(purchase::Column::Id)
        .filter(purchase::Column::CustomerId.eq(customer.as_uuid()))
        .limit(1)
        .into_tuple::<Uuid>()
        .one(conn)
        .await?
        .is_some())
}

/// Newest-first purchases.
pub async fn list_purchases(
    conn: &impl ConnectionTrait,
    owner: Owner,
    after: Option<&HistoryCursor>,
    limit: u64,
) -> Result<Vec<Purchase>, Error> {
    let mut q = purchase::Entity::find().filter(older_than(
        purchase::Column::OccurredAt,
        purchase::Column::Id,
        after,
    ));
    if let Owner::Customer(c) = owner {
        q = q.filter(purchase::Column::CustomerId.eq(c.as_uuid()));
    }
    q.order_by_desc(purchase::Column::OccurredAt)
        .order_by_desc(purchase::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(purchase_from)
        .collect()
}

// ---- returns ----

/// Inserts a return.
pub async fn insert_return(conn: &impl ConnectionTrait, r: &Return) -> Result<(), Error> {
    return_record::Entity::insert(return_record::ActiveModel {
        id: Set(r.id.as_uuid()),
        customer_id: Set(r.customer_id.as_uuid()),
        purchase_id: Set(r.purchase_id.as_uuid()),
        return_id: Set(r.return_id.clone()),
        occurred_at: Set(r.occurred_at),
        currency_code: Set(r.currency_code.clone()),
        amount_minor: Set(r.amount_minor),
        lines: Set(to_json(&r.lines)?),
        reason: Set(r.reason.clone()),
        created_at: Set(r.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

fn return_from(m: return_record::Model) -> Result<Return, Error> {
    Ok(Return {
        id: ReturnId::from_uuid(m.id),
        customer_id: CustomerId::from_uuid(m.customer_id),
        purchase_id: PurchaseId::from_uuid(m.purchase_id),
        return_id: m.return_id,
        occurred_at: m.occurred_at,
        lines: from_json(&m.lines, "return lines")?,
        currency_code: m.currency_code,
        amount_minor: m.amount_minor,
        reason: m.reason,
        created_at: m.created_at,
    })
}

/// The return recorded under a return id.
pub async fn return_by_return_id(
    conn: &impl ConnectionTrait,
    return_id: &str,
) -> Result<Option<Return>, Error> {
    return_record::Entity::find()
        .filter(return_record::Column::ReturnId.eq(return_id))
        .one(conn)
        .await?
        .map(return_from)
        .transpose()
}

/// Newest-first returns of a customer.
pub async fn list_returns(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
    after: Option<&HistoryCursor>,
    limit: u64,
) -> Result<Vec<Return>, Error> {
    return_record::Entity::find()
        .filter(return_record::Column::CustomerId.eq(customer.as_uuid()))
        .filter(older_than(
            return_record::Column::OccurredAt,
            return_record::Column::Id,
            after,
        ))
        .order_by_desc(return_record::Column::OccurredAt)
        .order_by_desc(return_record::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(return_from)
        .collect()
}

// ---- surveys ----

/// Inserts a survey answer.
pub async fn insert_survey(
    conn: &impl ConnectionTrait,
    s: &Survey,
    request: Option<&RequestKey>,
) -> Result<(), Error> {
    survey::Entity::insert(survey::ActiveModel {
        id: Set(s.id.as_uuid()),
        customer_id: Set(s.customer_id.as_uuid()),
        kind: Set(s.kind.code().to_owned()),
        score: Set(s.score),
        occurred_at: Set(s.occurred_at),
        comment: Set(s.comment.clone()),
        request_id: Set(request.map(|r| r.id.clone())),
        request_fingerprint: Set(request.map(|r| r.fingerprint)),
        created_at: Set(s.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

fn survey_from(m: survey::Model) -> Result<Survey, Error> {
    Ok(Survey {
        id: SurveyId::from_uuid(m.id),
        customer_id: CustomerId::from_uuid(m.customer_id),
        kind: from_code(&m.kind, "survey kind")?,
        score: m.score,
        occurred_at: m.occurred_at,
        comment: m.comment,
        created_at: m.created_at,
    })
}

/// The survey an earlier call with `request_id` recorded, and that call's fingerprint.
pub async fn survey_by_request_id(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<(Survey, Option<i64>)>, Error> {
    survey::Entity::find()
        .filter(survey::Column::RequestId.eq(request_id))
        .one(conn)
        .await?
        .map(|m| {
            let fingerprint = m.request_fingerprint;
            survey_from(m).map(|s| (s, fingerprint))
        })
        .transpose()
}

/// Newest-first surveys of a customer.
pub async fn list_surveys(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
    after: Option<&HistoryCursor>,
    limit: u64,
) -> Result<Vec<Survey>, Error> {
    survey::Entity::find()
        .filter(survey::Column::CustomerId.eq(customer.as_uuid()))
        .filter(older_than(
            survey::Column::OccurredAt,
            survey::Column::Id,
            after,
        ))
        .order_by_desc(survey::Column::OccurredAt)
        .order_by_desc(survey::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(survey_from)
        .collect()
}

// ---- complaints ----

fn complaint_active(c: &Complaint, request: Option<&RequestKey>) -> complaint::ActiveModel {
    complaint::ActiveModel {
        id: Set(c.id.as_uuid()),
        customer_id: Set(c.customer_id.as_uuid()),
        subject: Set(c.subject.clone()),
        description: Set(c.description.clone()),
        resolved: Set(c.resolved),
        opened_at: Set(c.opened_at),
        resolved_at: Set(c.resolved_at),
        resolution: Set(c.resolution.clone()),
        request_id: Set(request.map(|r| r.id.clone())),
        request_fingerprint: Set(request.map(|r| r.fingerprint)),
        version: Set(c.version),
    }
}

fn complaint_from(m: complaint::Model) -> Complaint {
    Complaint {
        id: ComplaintId::from_uuid(m.id),
        customer_id: CustomerId::from_uuid(m.customer_id),
        subject: m.subject,
        description: m.description,
        resolved: m.resolved,
        opened_at: m.opened_at,
        resolved_at: m.resolved_at,
        resolution: m.resolution,
        version: m.version,
    }
}

/// Inserts a complaint.
pub async fn insert_complaint(
    conn: &impl ConnectionTrait,
    c: &Complaint,
    request: Option<&RequestKey>,
) -> Result<(), Error> {
    complaint::Entity::insert(complaint_active(c, request))
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Writes a resolution if the complaint's version is still `expected_version`.
pub async fn resolve_complaint(
    conn: &impl ConnectionTrait,
    c: &Complaint,
    expected_version: i64,
) -> Result<bool, Error> {
    let result = complaint::Entity::update_many()
        .col_expr(complaint::Column::Resolved, Expr::value(c.resolved))
        .col_expr(complaint::Column::ResolvedAt, Expr::value(c.resolved_at))
        .col_expr(
            complaint::Column::Resolution,
            Expr::value(c.resolution.clone()),
        )
        .col_expr(complaint::Column::Version, Expr::value(c.version))
        .filter(complaint::Column::Id.eq(c.id.as_uuid()))
        .filter(complaint::Column::Version.eq(expected_version))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// One complaint, its row locked until the transaction ends.
pub async fn get_complaint_for_update(
    conn: &impl ConnectionTrait,
    id: ComplaintId,
) -> Result<Option<Complaint>, Error> {
    Ok(complaint::Entity::find_by_id(id.as_uuid())
        .lock_exclusive()
        .one(conn)
        .await?
        .map(complaint_from))
}

/// The complaint an earlier call with `request_id` opened, and that call's fingerprint.
pub async fn complaint_by_request_id(
    conn: &impl ConnectionTrait,
    request_id: &str,
) -> Result<Option<(Complaint, Option<i64>)>, Error> {
    Ok(complaint::Entity::find()
        .filter(complaint::Column::RequestId.eq(request_id))
        .one(conn)
        .await?
        .map(|m| {
            let fingerprint = m.request_fingerprint;
            (complaint_from(m), fingerprint)
        }))
}

/// Newest-first complaints of a customer.
pub async fn list_complaints(
    conn: &impl ConnectionTrait,
    customer: CustomerId,
    after: Option<&HistoryCursor>,
    limit: u64,
) -> Result<Vec<Complaint>, Error> {
    Ok(complaint::Entity::find()
        .filter(complaint::Column::CustomerId.eq(customer.as_uuid()))
        .filter(older_than(
            complaint::Column::OpenedAt,
            complaint::Column::Id,
            after,
        ))
        .order_by_desc(complaint::Column::OpenedAt)
        .order_by_desc(complaint::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(complaint_from)
        .collect())
}

// ---- referrals ----

fn referral_from(m: referral::Model) -> Referral {
    Referral {
        id: ReferralId::from_uuid(m.id),
        referrer_id: CustomerId::from_uuid(m.referrer_id),
        referred_id: CustomerId::from_uuid(m.referred_id),
        occurred_at: m.occurred_at,
        created_at: m.created_at,
    }
}

/// Inserts a referral.
pub async fn insert_referral(conn: &impl ConnectionTrait, r: &Referral) -> Result<(), Error> {
    referral::Entity::insert(referral::ActiveModel {
        id: Set(r.id.as_uuid()),
        referrer_id: Set(r.referrer_id.as_uuid()),
        referred_id: Set(r.referred_id.as_uuid()),
        occurred_at: Set(r.occurred_at),
        created_at: Set(r.created_at),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The referral that brought `referred`, if any.
pub async fn referral_of(
    conn: &impl ConnectionTrait,
    referred: CustomerId,
) -> Result<Option<Referral>, Error> {
    Ok(referral::Entity::find()
        .filter(referral::Column::ReferredId.eq(referred.as_uuid()))
        .one(conn)
        .await?
        .map(referral_from))
}

/// Newest-first referrals a customer made.
pub async fn list_referrals(
    conn: &impl ConnectionTrait,
    referrer: CustomerId,
    after: Option<&HistoryCursor>,
    limit: u64,
) -> Result<Vec<Referral>, Error> {
    Ok(referral::Entity::find()
        .filter(referral::Column::ReferrerId.eq(referrer.as_uuid()))
        .filter(older_than(
            referral::Column::OccurredAt,
            referral::Column::Id,
            after,
        ))
        .order_by_desc(referral::Column::OccurredAt)
        .order_by_desc(referral::Column::Id)
        .limit(limit)
        .all(conn)
        .await?
        .into_iter()
        .map(referral_from)
        .collect())
}

// ---- merge ----

/// What a merge moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Moved {
    /// Purchases, by id.
    pub purchases: Vec<PurchaseId>,
    pub returns: u64,
    pub surveys: u64,
    pub complaints: u64,
    /// Referrals re-pointed.
    pub referrals: u64,
}

/// Moves every history record of `from` to `to`. Referrals that would collide (both
/// were referred) or become self-referrals stay with the tombstone.
pub async fn move_history(
    conn: &impl ConnectionTrait,
    from: CustomerId,
    to: CustomerId,
) -> Result<Moved, Error> {
    let (from, to) = (from.as_uuid(), to.as_uuid());
    let purchases: Vec<Uuid> = purchase::Entity::find()
        .select_only()
        .column(purchase::Column::Id)
        .filter(purchase::Column::CustomerId.eq(from))
        .order_by_asc(purchase::Column::Id)
        .into_tuple()
        .all(conn)
        .await?;
    purchase::Entity::update_many()
        .col_expr(purchase::Column::CustomerId, Expr::value(to))
        .filter(purchase::Column::CustomerId.eq(from))
        .exec(conn)
        .await?;
    let returns = return_record::Entity::update_many()
        .col_expr(return_record::Column::CustomerId, Expr::value(to))
        .filter(return_record::Column::CustomerId.eq(from))
        .exec(conn)
        .await?
        .rows_affected;
    let surveys = survey::Entity::update_many()
        .col_expr(survey::Column::CustomerId, Expr::value(to))
        .filter(survey::Column::CustomerId.eq(from))
        .exec(conn)
        .await?
        .rows_affected;
    let complaints = complaint::Entity::update_many()
        .col_expr(complaint::Column::CustomerId, Expr::value(to))
        .filter(complaint::Column::CustomerId.eq(from))
        .exec(conn)
        .await?
        .rows_affected;
    // Referrals the merged customer made, except the one that referred the survivor.
    let made = referral::Entity::update_many()
        .col_expr(referral::Column::ReferrerId, Expr::value(to))
        .filter(referral::Column::ReferrerId.eq(from))
        .filter(referral::Column::ReferredId.ne(to))
        .exec(conn)
        .await?
        .rows_affected;
    // The referral that brought the merged customer, unless the survivor has its own.
    let survivor_referred = referral::Entity::find()
        .filter(referral::Column::ReferredId.eq(to))
        .one(conn)
        .await?
        .is_some();
    let received = if survivor_referred {
        0
    } else {
        referral::Entity::update_many()
            .col_expr(referral::Column::ReferredId, Expr::value(to))
            .filter(referral::Column::ReferredId.eq(from))
            .filter(referral::Column::ReferrerId.ne(to))
            .exec(conn)
            .await?
            .rows_affected
    };
    Ok(Moved {
        purchases: purchases.into_iter().map(PurchaseId::from_uuid).collect(),
        returns,
        surveys,
        complaints,
        referrals: made + received,
    })
}
