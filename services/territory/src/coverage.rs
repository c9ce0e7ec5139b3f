//! The questions asked of assignments: who serves a customer at an instant, the
//! history of a customer or a seller, violations, explanations.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use clientela_runtime::time::now;
use clientela_runtime::{Conn, Error};
use uuid::Uuid;

use crate::assign::{Assignment, Role};
use crate::cartera::{ActiveModel, Customer};
use crate::model::ModelState;
use crate::store;
use crate::territories::Territories;

/// Who served a customer at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub customer: Customer,
    pub as_of: DateTime<Utc>,
    pub territory_path: Vec<String>,
    pub unassigned_reason: Option<String>,
    pub primary: Option<Assignment>,
    pub specialists: Vec<Assignment>,
    pub kam: Option<Assignment>,
    pub prospector: Option<Assignment>,
}

/// Where a listing of a customer's history resumes: after this (start, sequence).
pub type HistoryCursor = (DateTime<Utc>, i64);

fn unknown_customer(id: Uuid) -> Error {
    Error::not_found(
        "customer",
        format!("customers/{id} (not yet brought by the registry's feed)"),
    )
}

impl Territories {
    async fn known_customer(conn: &impl Conn, id: Uuid) -> Result<Customer, Error> {
        store::cartera::customer(conn, id)
            .await?
            .ok_or_else(|| unknown_customer(id))
    }

    /// Who served customer `id` at `as_of` (now when None).
    pub async fn coverage(
        &self,
        id: Uuid,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<Coverage, Error> {
        let (rows, active) = self.coverage_snapshot(id).await?;
        let customer = rows.customer.ok_or_else(|| unknown_customer(id))?;
        let at = as_of.unwrap_or_else(now);
        let mut held: Vec<Assignment> = rows
            .assignments
            .into_iter()
            .filter(|a| a.holds_at(at))
            .collect();
        let take = |role: Role, held: &mut Vec<Assignment>| {
            held.iter()
                .position(|a| a.role == role)
                .map(|i| held.remove(i))
        };
        let primary = take(Role::Primary, &mut held);
        let kam = take(Role::Kam, &mut held);
        let prospector = take(Role::Prospector, &mut held);
        let mut specialists: Vec<Assignment> = held
            .into_iter()
            .filter(|a| a.role == Role::Specialist)
            .collect();
        specialists.sort_by(|a, b| a.product_line.cmp(&b.product_line));
        let (territory_path, unassigned_reason) = if as_of.is_none() {
            let path = customer
                .territory
                .as_deref()
                .and_then(|code| active.paths.get(code).cloned())
                .unwrap_or_default();
            (path, customer.unassigned_reason.clone())
        } else {
            match primary
                .as_ref()
                .and_then(|p| p.model.zip(p.territory.clone()))
            {
                Some(((model, _), code)) => {
                    (Self::path_in(self.db().conn(), model, &code).await?, None)
                }
                None => (
                    Vec::new(),
                    Some("no territory is recorded for the customer at that instant".into()),
                ),
            }
        };
        Ok(Coverage {
            customer,
            as_of: at,
            territory_path,
            unassigned_reason,
            primary,
            specialists,
            kam,
            prospector,
        })
    }

    /// Customer `id`'s rows and the active model they were placed by, from one commit:
    /// a customer moved between two reads showed its new seller in its old territory.
    async fn coverage_snapshot(
        &self,
        id: Uuid,
    ) -> Result<(store::sqlite::CoverageRows, Arc<ActiveModel>), Error> {
        if let Some(read) = self
            .db()
            .sqlite_read(|c| store::sqlite::coverage_rows(c, id))
        {
            let rows = read??;
            if let Some(cached) = self.cached_model(rows.active) {
                return Ok((rows, cached));
            }
        }
        // PostgreSQL, or a model activated since the cache was filled: the rows and the
        // model from one transaction's snapshot.
        let tx = self.db().begin_repeatable_read().await?;
        let rows = Self::coverage_rows(&tx, id).await?;
        let active = match self.cached_model(rows.active) {
            Some(cached) => cached,
            None => self.active_model(&tx).await?,
        };
        tx.commit().await?;
        Ok((rows, active))
    }

    /// [`store::sqlite::CoverageRows`] through `conn`, which gives its statements one
    /// snapshot (PostgreSQL's REPEATABLE READ; read committed gives each its own).
    async fn coverage_rows(
        conn: &impl Conn,
        id: Uuid,
    ) -> Result<store::sqlite::CoverageRows, Error> {
        let customer = store::cartera::customer(conn, id).await?;
        let mut assignments: Vec<Assignment> = Vec::new();
        let mut after = None;
        loop {
            let page = store::cartera::customer_history(conn, id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.valid_from, last.sequence));
            let full = page.len() == 1000;
            assignments.extend(page);
            if !full {
                break;
            }
        }
        let active = store::models(conn, Some(ModelState::Active), None, 1)
            .await?
            .into_iter()
            .next()
            .map(|m| (m.id, m.version));
        Ok(store::sqlite::CoverageRows {
            customer,
            assignments,
            active,
        })
    }

    /// Territory `code`'s path from the top in model `model` (models are never deleted,
    /// so an archived one still answers).
    async fn path_in(conn: &impl Conn, model: Uuid, code: &str) -> Result<Vec<String>, Error> {
        let territories = store::territories(conn, model).await?;
        let mut path = Vec::new();
        let mut at = Some(code.to_owned());
        while let Some(current) = at {
            at = territories
                .iter()
                .find(|t| t.code == current)
                .and_then(|t| t.fields.parent_code.clone());
            path.push(current);
            if path.len() > territories.len() {
                break;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// Up to `limit` of customer `id`'s assignments after `after`, by start.
    pub async fn customer_history(
        &self,
        id: Uuid,
        after: Option<HistoryCursor>,
        limit: u64,
    ) -> Result<Vec<Assignment>, Error> {
        let tx = self.db().begin_planned_read().await?;
        Self::known_customer(&tx, id).await?;
        store::cartera::customer_history(&tx, id, after, limit).await
    }

    /// Up to `limit` of the assignments seller `id` was given after sequence `after`.
    pub async fn seller_history(
        &self,
        id: Uuid,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Assignment>, Error> {
        let tx = self.db().begin_planned_read().await?;
        if store::seller(&tx, id).await?.is_none() {
            return Err(Error::not_found("seller", format!("sellers/{id}")));
        }
        store::cartera::seller_history(&tx, id, after, limit).await
    }
}

impl Territories {
    /// A seller's cartera at an instant, a page of it.
    pub async fn cartera(
        &self,
        filter: &store::cartera::CarteraFilter,
        after: Option<(Uuid, i64)>,
        limit: u64,
        read: store::cartera::Read,
    ) -> Result<Vec<Assignment>, Error> {
        let tx = self.db().begin_planned_read().await?;
        if store::seller(&tx, filter.seller).await?.is_none() {
            return Err(Error::not_found(
                "seller",
                format!("sellers/{}", filter.seller),
            ));
        }
        store::cartera::cartera(&tx, filter, after, limit, read).await
    }

    /// The seller a token name names, if any.
    pub async fn seller_for_token(&self, name: &str) -> Result<Option<Uuid>, Error> {
        store::seller_by_token(self.db().conn(), name).await
    }

    /// Whether `seller` may see customer `id`: it holds one of its assignments, or the
    /// customer is a prospect in a territory it covers.
    pub async fn sees_customer(&self, seller: Uuid, id: Uuid) -> Result<bool, Error> {
        let tx = self.db().begin_planned_read().await?;
        if store::cartera::holds(&tx, seller, id).await? {
            return Ok(true);
        }
        let Some(customer) = store::cartera::customer(&tx, id).await? else {
            return Ok(false);
        };
        if customer.standing != crate::cartera::Standing::Prospect {
            return Ok(false);
        }
        let Some(me) = store::seller(&tx, seller).await? else {
            return Ok(false);
        };
        let active = self.active_model(&tx).await?;
        let path = customer
            .territory
            .as_deref()
            .and_then(|code| active.paths.get(code))
            .cloned()
            .unwrap_or_default();
        Ok(path
            .iter()
            .any(|code| me.fields.territory_codes.contains(code)))
    }
}

/// What keeps coverage short of the rules.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum ViolationKind {
    HouseCartera,
    Overflow,
    OverCapacity,
    UnassignedAddress,
    /// A KEY or BOSS account without a KAM (no KAM seller could take it).
    KamWanted,
}

impl ViolationKind {
    pub const ALL: [ViolationKind; 5] = [
        ViolationKind::HouseCartera,
        ViolationKind::Overflow,
        ViolationKind::OverCapacity,
        ViolationKind::UnassignedAddress,
        ViolationKind::KamWanted,
    ];
}

/// One violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub customer: Option<Uuid>,
    pub seller: Option<Uuid>,
    pub assignment: Option<Assignment>,
    pub detail: String,
    /// Where a listing resumes after it.
    pub key: Uuid,
}

impl Territories {
    /// Up to `limit` violations of `kinds` (in their order) after `after` (a kind and
    /// the key of the last one listed).
    pub async fn violations(
        &self,
        kinds: &[ViolationKind],
        after: Option<(ViolationKind, Uuid)>,
        limit: u64,
    ) -> Result<Vec<Violation>, Error> {
        let tx = self.db().begin_planned_read().await?;
        let mut out: Vec<Violation> = Vec::new();
        for &kind in kinds {
            let from = match after {
                Some((k, _)) if k > kind => continue,
                Some((k, key)) if k == kind => Some(key),
                _ => None,
            };
            let left = limit - out.len() as u64;
            if left == 0 {
                break;
            }
            match kind {
                ViolationKind::HouseCartera | ViolationKind::Overflow => {
                    let house = kind == ViolationKind::HouseCartera;
                    for a in store::cartera::open_violations(&tx, house, from, left).await? {
                        let detail = if house {
                            "no seller covers the customer: it waits on the company's own \
                             cartera"
                                .to_owned()
                        } else {
                            format!(
                                "no seller of territory {} had capacity left when it was \
                                 assigned",
                                a.explanation.territory.as_deref().unwrap_or("?")
                            )
                        };
                        out.push(Violation {
                            kind,
                            customer: Some(a.customer),
                            seller: Some(a.seller),
                            key: a.id,
                            assignment: Some(a),
                            detail,
                        });
                    }
                }
                ViolationKind::OverCapacity => {
                    let desks = store::cartera::desks(&tx).await?;
                    let mut over: Vec<_> = desks
                        .into_iter()
                        .filter(|d| !d.house && d.load > d.capacity)
                        .filter(|d| from.is_none_or(|f| d.id > f))
                        .collect();
                    over.sort_by_key(|d| d.id);
                    for d in over.into_iter().take(left as usize) {
                        out.push(Violation {
                            kind,
                            customer: None,
                            seller: Some(d.id),
                            assignment: None,
                            detail: format!(
                                "carries {} against a capacity of {}",
                                d.load, d.capacity
                            ),
                            key: d.id,
                        });
                    }
                }
                ViolationKind::KamWanted => {
                    for (id, tier) in store::cartera::kams_wanted_page(&tx, from, left).await? {
                        out.push(Violation {
                            kind,
                            customer: Some(id),
                            seller: None,
                            assignment: None,
                            detail: format!(
                                "a {tier} account without a KAM: no KAM seller could take it"
                            ),
                            key: id,
                        });
                    }
                }
                ViolationKind::UnassignedAddress => {
                    for c in store::cartera::unassigned(&tx, from, left).await? {
                        out.push(Violation {
                            kind,
                            customer: Some(c.id),
                            seller: None,
                            assignment: None,
                            detail: c
                                .unassigned_reason
                                .clone()
                                .unwrap_or_else(|| "in no territory".into()),
                            key: c.id,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Assignment `id` and the display names of its seller and of the sellers its
    /// choice considered.
    pub async fn explain(&self, id: Uuid) -> Result<(Assignment, String, Vec<String>), Error> {
        let tx = self.db().begin_planned_read().await?;
        let a = store::cartera::assignment(&tx, id)
            .await?
            .ok_or_else(|| Error::not_found("assignment", format!("assignments/{id}")))?;
        let sellers = store::sellers(&tx).await?;
        let name = |s: Uuid| {
            sellers
                .iter()
                .find(|x| x.id == s)
                .map(|x| x.fields.display_name.clone())
                .unwrap_or_default()
        };
        let considered = a
            .explanation
            .considered
            .iter()
            .map(|c| name(c.seller))
            .collect();
        Ok((a.clone(), name(a.seller), considered))
    }
}
