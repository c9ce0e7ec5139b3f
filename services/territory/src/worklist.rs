//! The salesperson's worklist (ListCarteraActions): the customers of a cartera, most
//! urgent first (DISSATISFIED, then KEY and BOSS, then INACTIVE_LAPSED to reactivate,
//! then the rest), each with what the seller holds of it. The order comes from the
//! labels the label feed brought; the API adds the classification engine's actions.

use clientela_runtime::Error;
use uuid::Uuid;

use crate::assign::Assignment;
use crate::cartera::{Customer, Urgency};
use crate::model::seller_name;
use crate::store;
use crate::territories::Territories;

/// One customer of a worklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkItem {
    pub customer: Customer,
    pub urgency: Urgency,
    /// The seller's open assignments of it.
    pub held: Vec<Assignment>,
}

/// Where a worklist resumes: after this (urgency rank, customer).
pub type WorkCursor = (i32, Uuid);

impl Territories {
    /// Up to `limit` customers of seller `seller`'s cartera after `after`, most urgent
    /// first.
    pub async fn worklist(
        &self,
        seller: Uuid,
        after: Option<WorkCursor>,
        limit: u64,
    ) -> Result<Vec<WorkItem>, Error> {
        let tx = self.db().begin_planned_read().await?;
        if store::seller(&tx, seller).await?.is_none() {
            return Err(Error::not_found("seller", seller_name(seller)));
        }
        let page = store::cartera::worklist(&tx, seller, after, limit).await?;
        let ids: Vec<Uuid> = page.iter().map(|(_, id)| *id).collect();
        let mut customers = store::cartera::customers(&tx, &ids).await?;
        let mut held = store::cartera::open_assignments(&tx, &ids).await?;
        held.retain(|a| a.seller == seller);
        let mut out = Vec::with_capacity(page.len());
        for (rank, id) in page {
            let Some(i) = customers.iter().position(|c| c.id == id) else {
                continue;
            };
            let customer = customers.swap_remove(i);
            out.push(WorkItem {
                urgency: Urgency::of_rank(rank).unwrap_or(Urgency::Rest),
                held: held.iter().filter(|a| a.customer == id).cloned().collect(),
                customer,
            });
        }
        Ok(out)
    }
}
