//! Assignments made by hand: a role, a reason and an optional pin that beats every rule
//! (TERRITORY.md, invariant 6); and unpinning, as a new interval so the history keeps
//! who pinned and who unpinned.

use chrono::{DateTime, Utc};
use clientela_runtime::time::now;
use clientela_runtime::{Error, WriteTx};
use uuid::Uuid;

use crate::assign::{Assignment, EndCause, Role};
use crate::cartera::{Book, Standing};
use crate::model::SellerStatus;
use crate::store;
use crate::territories::Territories;

/// A manual assignment as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualAssignment {
    pub customer: Uuid,
    pub seller: Uuid,
    pub role: Role,
    /// Folded; "" unless a SPECIALIST.
    pub product_line: String,
    pub reason: String,
    /// None: not pinned; Some(None): pinned until unpinned.
    pub pin: Option<Option<DateTime<Utc>>>,
    /// Who asks (the token's name).
    pub actor: String,
    /// A seller's claim of a prospect: only of its own territories, and only one no other
    /// seller holds.
    pub claim: bool,
}

/// What a manual assignment did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assigned {
    pub assignment: Assignment,
    pub replaced: Option<Assignment>,
    pub over_capacity: bool,
}

impl Territories {
    /// A book over customer `id` inside `tx`, under the cartera lock.
    async fn book_for(
        &self,
        tx: &WriteTx,
        id: Uuid,
    ) -> Result<(Book, Vec<crate::assign::Desk>), Error> {
        let conn = tx.conn();
        let (mut book, desks) = self.open_book(conn).await?;
        Self::load(conn, &mut book, &[id]).await?;
        if !book.customers.contains_key(&id) {
            return Err(Error::not_found(
                "customer",
                format!("customers/{id} (not yet brought by the registry's feed)"),
            ));
        }
        Ok((book, desks))
    }

    /// Assigns by hand, in `tx` (the caller commits).
    pub async fn assign(&self, tx: &WriteTx, m: ManualAssignment) -> Result<Assigned, Error> {
        let (mut book, desks) = self.book_for(tx, m.customer).await?;
        let customer = book.customers[&m.customer].clone();
        if !customer.standing.live() {
            return Err(Error::precondition(
                "CUSTOMER_NOT_LIVE",
                format!(
                    "customers/{} is {}: it has no assignments",
                    m.customer,
                    customer.standing.as_str()
                ),
            ));
        }
        let seller = store::seller(tx.conn(), m.seller)
            .await?
            .ok_or_else(|| Error::not_found("seller", format!("sellers/{}", m.seller)))?;
        if seller.fields.status != SellerStatus::Active {
            return Err(Error::precondition(
                "SELLER_NOT_ACTIVE",
                format!(
                    "{} is {}: new assignments skip it",
                    seller.name(),
                    seller.fields.status.as_str()
                ),
            ));
        }
        let bought = customer.first_purchase_at.is_some();
        match m.role {
            Role::Primary if !bought => {
                return Err(Error::precondition(
                    "NOT_A_BUYER",
                    format!(
                        "customers/{} has not bought: a prospect gets a PROSPECTOR",
                        m.customer
                    ),
                ));
            }
            Role::Prospector if bought || customer.standing == Standing::Customer => {
                return Err(Error::precondition(
                    "ALREADY_A_BUYER",
                    format!(
                        "customers/{} has bought: it gets a PRIMARY, not a PROSPECTOR",
                        m.customer
                    ),
                ));
            }
            Role::Specialist if !seller.specialises_in(&m.product_line) => {
                return Err(Error::invalid(
                    "seller",
                    format!(
                        "{} does not specialise in {:?}",
                        seller.name(),
                        m.product_line
                    ),
                ));
            }
            Role::Kam if !seller.fields.kam => {
                return Err(Error::invalid(
                    "seller",
                    format!(
                        "{} is not a KAM (set kam on the seller first)",
                        seller.name()
                    ),
                ));
            }
            _ => {}
        }
        if seller.house && m.role != Role::Primary {
            return Err(Error::invalid(
                "seller",
                "the house seller holds PRIMARY assignments only",
            ));
        }
        let current = book.open_in(m.customer, m.role, &m.product_line).cloned();
        if m.claim {
            let path = book.model.path(customer.territory.as_deref());
            if !path
                .iter()
                .any(|code| seller.fields.territory_codes.contains(code))
            {
                return Err(Error::PermissionDenied(format!(
                    "customers/{} is not in a territory {} covers",
                    m.customer,
                    seller.name()
                )));
            }
            if let Some(c) = current.as_ref().filter(|c| c.seller != m.seller) {
                return Err(Error::precondition(
                    "ALREADY_CLAIMED",
                    format!(
                        "customers/{} is already developed by sellers/{}",
                        m.customer, c.seller
                    ),
                ));
            }
        }
        if let Some(c) = &current
            && c.seller == m.seller
            && c.pinned == m.pin.is_some()
            && c.pin_expires_at == m.pin.flatten()
        {
            // What stands was asked for again: nothing changes.
            return Ok(Assigned {
                over_capacity: book
                    .roster
                    .get(m.seller)
                    .is_some_and(|d| !d.house && d.load > d.capacity),
                assignment: c.clone(),
                replaced: None,
            });
        }
        let at = now();
        let replaced = current.map(|c| {
            book.close(m.customer, c.id, at, EndCause::Manual);
            Assignment {
                valid_to: Some(at.max(c.valid_from)),
                end_cause: Some(EndCause::Manual),
                ..c
            }
        });
        let assignment = book.open_manual(
            m.customer,
            m.role,
            &m.product_line,
            at,
            m.seller,
            &m.actor,
            &m.reason,
            m.pin,
        );
        let over_capacity = book
            .roster
            .get(m.seller)
            .is_some_and(|d| !d.house && d.load > d.capacity);
        self.write_page(tx, &mut book).await?;
        store::cartera::write_desks(tx.conn(), &book.roster, &desks).await?;
        Ok(Assigned {
            assignment,
            replaced,
            over_capacity,
        })
    }

    /// Unpins open assignment `id`, in `tx` (the caller commits): it ends, and the same
    /// seller carries on unpinned.
    pub async fn unpin(&self, tx: &WriteTx, id: Uuid, actor: &str) -> Result<Assignment, Error> {
        let found = store::cartera::assignment(tx.conn(), id)
            .await?
            .ok_or_else(|| Error::not_found("assignment", format!("assignments/{id}")))?;
        let (mut book, desks) = self.book_for(tx, found.customer).await?;
        let Some(current) = book
            .open
            .get(&found.customer)
            .and_then(|list| list.iter().find(|a| a.id == id))
            .cloned()
        else {
            return Err(Error::precondition(
                "ASSIGNMENT_CLOSED",
                format!("assignments/{id} has ended: only an open assignment is unpinned"),
            ));
        };
        if !current.pinned {
            return Ok(current);
        }
        let at = now();
        book.close(current.customer, id, at, EndCause::Manual);
        let assignment = book.open_manual(
            current.customer,
            current.role,
            &current.product_line,
            at,
            current.seller,
            actor,
            "unpinned",
            None,
        );
        self.write_page(tx, &mut book).await?;
        store::cartera::write_desks(tx.conn(), &book.roster, &desks).await?;
        Ok(assignment)
    }
}
