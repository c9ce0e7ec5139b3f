//! Handing a cartera on: `TransferCartera` (part or all of a seller's assignments to a
//! named seller or by the rules) and `OffboardSeller` (every assignment to a successor,
//! then DEPARTED: TERRITORY.md invariant 8). One transaction under the cartera lock, at
//! one instant; a dry run computes the same and writes nothing.

use chrono::{DateTime, Utc};
use clientela_runtime::time::now;
use clientela_runtime::{Error, WriteTx};
use uuid::Uuid;

use crate::assign::{Assignment, Role};
use crate::model::{Seller, SellerStatus};
use crate::store;
use crate::territories::Territories;

/// Customers handed on per page (one transaction in all).
const HANDOVER_PAGE: u64 = 2_000;

/// Handovers and what was left listed in a response, at most.
pub const LISTED: usize = 10_000;

/// A handover as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handover {
    pub from: Uuid,
    /// The seller to hand to where it serves the role; else the rules choose.
    pub to: Option<Uuid>,
    /// The request's field naming `to`, for errors.
    pub successor_field: &'static str,
    /// Only these customers' assignments (empty: the whole cartera).
    pub customers: Vec<Uuid>,
    /// Only these roles (empty: all).
    pub roles: Vec<Role>,
    /// Whether a PRIMARY nobody else covers may go to the house's cartera.
    pub house: bool,
    /// An offboarding: every assignment must find a successor (PRIMARY and KAM) or end
    /// (SPECIALIST, PROSPECTOR), then the seller is DEPARTED.
    pub depart: bool,
    pub dry_run: bool,
    pub actor: String,
    pub reason: String,
}

/// What a handover did (or, in a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandedOver {
    /// The seller handing on, as stored after it (DEPARTED after an offboarding).
    pub seller: Seller,
    pub at: DateTime<Utc>,
    /// Each assignment handed on: the old interval (closed) and the new one.
    pub handed: Vec<(Assignment, Assignment)>,
    pub handed_count: u64,
    /// Assignments nobody could take: kept by a transfer; ended by an offboarding
    /// (SPECIALIST, PROSPECTOR).
    pub left: Vec<Assignment>,
    pub left_count: u64,
}

impl Territories {
    /// Hands `h.from`'s assignments on, in `tx` (the caller commits; a dry run writes
    /// nothing); FAILED_PRECONDITION listing the customers when an offboarding would
    /// leave a PRIMARY or a KAM without a successor.
    pub async fn hand_over(&self, tx: &WriteTx, h: Handover) -> Result<HandedOver, Error> {
        let conn = tx.conn();
        let (mut book, desks) = self.open_book(conn).await?;
        let mut seller = self.handing_seller(tx, &h).await?;
        let at = now();
        let departed = seller.fields.status == SellerStatus::Departed;
        // The seller leaving (or giving these up) is no longer a candidate.
        book.roster.set_status(h.from, SellerStatus::Departed);
        let mut out = HandedOver {
            seller: seller.clone(),
            at,
            handed: Vec::new(),
            handed_count: 0,
            left: Vec::new(),
            left_count: 0,
        };
        let mut orphans: Vec<Assignment> = Vec::new();
        let mut after = None;
        loop {
            let ids = if h.customers.is_empty() {
                store::cartera::seller_customers(conn, h.from, after, HANDOVER_PAGE).await?
            } else if after.is_none() {
                h.customers.clone()
            } else {
                Vec::new()
            };
            let Some(last) = ids.last() else { break };
            after = Some(*last);
            Self::load(conn, &mut book, &ids).await?;
            for (i, id) in ids.iter().enumerate() {
                let held: Vec<Assignment> = book
                    .open
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter(|a| a.seller == h.from)
                    .filter(|a| h.roles.is_empty() || h.roles.contains(&a.role))
                    .cloned()
                    .collect();
                if held.is_empty() && !h.customers.is_empty() {
                    return Err(Error::invalid(
                        format!("customers[{i}]"),
                        format!(
                            "customers/{id} holds no assignment of {} in the roles asked",
                            seller.name()
                        ),
                    ));
                }
                for a in held {
                    match book.hand_over(&a, h.to, h.house, at, &h.actor, &h.reason) {
                        Some(new) => {
                            out.handed_count += 1;
                            if out.handed.len() < LISTED {
                                let mut old = a.clone();
                                old.valid_to = Some(new.valid_from);
                                old.end_cause = Some(crate::assign::EndCause::Handover);
                                out.handed.push((old, new));
                            }
                        }
                        None if h.depart && matches!(a.role, Role::Primary | Role::Kam) => {
                            orphans.push(a);
                        }
                        None => {
                            if h.depart {
                                book.close(a.customer, a.id, at, crate::assign::EndCause::Handover);
                            }
                            out.left_count += 1;
                            if out.left.len() < LISTED {
                                out.left.push(a);
                            }
                        }
                    }
                }
            }
            if orphans.is_empty() && !h.dry_run {
                self.write_page(tx, &mut book).await?;
            } else {
                book.next_page();
            }
        }
        if !orphans.is_empty() {
            return Err(orphaned(&seller, &orphans, h.house));
        }
        if h.dry_run {
            return Ok(out);
        }
        store::cartera::write_desks(conn, &book.roster, &desks).await?;
        if h.depart && !departed {
            let expected = seller.version;
            seller.fields.status = SellerStatus::Departed;
            seller.version += 1;
            seller.updated_at = at;
            if !store::update_seller(conn, &seller, expected).await? {
                return Err(Error::aborted(
                    "CONCURRENT_UPDATE",
                    "the seller changed concurrently; retry",
                ));
            }
            out.seller = seller;
        }
        Ok(out)
    }

    /// The seller `h` hands from, checked with its successor.
    async fn handing_seller(&self, tx: &WriteTx, h: &Handover) -> Result<Seller, Error> {
        let conn = tx.conn();
        let seller = store::seller(conn, h.from)
            .await?
            .ok_or_else(|| Error::not_found("seller", crate::model::seller_name(h.from)))?;
        if seller.house {
            return Err(Error::precondition(
                "HOUSE_SELLER",
                format!(
                    "{} is the house seller, which stands for the company: its customers go \
                     to sellers by a realignment or by hand",
                    seller.name()
                ),
            ));
        }
        if let Some(to) = h.to {
            if to == h.from {
                return Err(Error::invalid(
                    h.successor_field,
                    "is the seller handing on: name another",
                ));
            }
            let successor = store::seller(conn, to)
                .await?
                .ok_or_else(|| Error::not_found("seller", crate::model::seller_name(to)))?;
            if successor.house {
                return Err(Error::invalid(
                    h.successor_field,
                    "the house seller is no successor: leave it empty and allow the house",
                ));
            }
            if successor.fields.status != SellerStatus::Active {
                return Err(Error::precondition(
                    "SELLER_NOT_ACTIVE",
                    format!(
                        "{} is {}: new assignments skip it",
                        successor.name(),
                        successor.fields.status.as_str()
                    ),
                ));
            }
        }
        Ok(seller)
    }
}

/// FAILED_PRECONDITION naming who would be left without a PRIMARY or a KAM.
fn orphaned(seller: &Seller, orphans: &[Assignment], house: bool) -> Error {
    let shown: Vec<String> = orphans
        .iter()
        .take(20)
        .map(|a| format!("customers/{} ({})", a.customer, a.role.as_str()))
        .collect();
    let more = orphans.len().saturating_sub(shown.len());
    let hint = if house {
        "add a seller who covers them (or a KAM seller), or name a successor"
    } else {
        "add a seller who covers them (or a KAM seller), name a successor, or allow the \
         house's cartera for PRIMARYs"
    };
    Error::precondition(
        "NO_SUCCESSOR",
        format!(
            "{} cannot depart: {} assignment(s) would have no successor: {}{}; {hint}",
            seller.name(),
            orphans.len(),
            shown.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ),
    )
}
