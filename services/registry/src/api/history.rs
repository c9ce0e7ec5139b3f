//! The five history listings (purchases, returns, surveys, complaints, referrals) read
//! the same way: a customer (`customers/-` for every customer's purchases), a page size,
//! and a page token bound to the query, newest first.

use super::*;
use crate::model::query::{HistoryCursor, Owner};

/// Where a history record sits in its listing's order.
pub(super) trait Dated {
    fn cursor(&self) -> HistoryCursor;
}

macro_rules! dated {
    ($($t:ty => $at:ident),* $(,)?) => {
        $(impl Dated for $t {
            fn cursor(&self) -> HistoryCursor {
                HistoryCursor { at: self.$at, id: self.id.as_uuid() }
            }
        })*
    };
}

dated!(
    crate::model::Purchase => occurred_at,
    crate::model::Return => occurred_at,
    crate::model::Survey => occurred_at,
    crate::model::Complaint => opened_at,
    crate::model::Referral => occurred_at,
);

/// A history list request, checked: whose, how many, after what.
pub(super) struct HistoryPage {
    owner: Owner,
    limit: u64,
    query: u64,
    after: Option<HistoryCursor>,
}

impl HistoryPage {
    /// Parent and page of a history list request of `what`.
    pub(super) fn new(
        parent: &str,
        page_size: i32,
        page_token: &str,
        what: &str,
    ) -> Result<Self, Error> {
        let owner = match names::parse_parent_or_any(parent, "parent")? {
            Some(c) => Owner::Customer(c),
            None if what == "purchases" => Owner::Anyone,
            None => {
                return Err(Error::invalid(
                    "parent",
                    "customers/- is only supported for purchases",
                ));
            }
        };
        let limit = pagination::page_size(page_size, "page_size")?;
        let query = pagination::fingerprint(&(what, parent));
        let after = pagination::decode(page_token, query, "page_token")?;
        Ok(Self {
            owner,
            limit,
            query,
            after,
        })
    }

    /// Reads the page with `read`, and returns it converted by `to` with the next page's
    /// token (empty on the last page).
    pub(super) async fn read<T: Dated, P>(
        self,
        read: impl AsyncFnOnce(Owner, Option<HistoryCursor>, u64) -> Result<Vec<T>, Error>,
        to: fn(&T) -> P,
    ) -> Result<(Vec<P>, String), Error> {
        let items = read(self.owner, self.after, self.limit).await?;
        let token = match items.last() {
            Some(last) if items.len() as u64 == self.limit => {
                pagination::encode(self.query, &last.cursor())
            }
            _ => String::new(),
        };
        Ok((items.iter().map(to).collect(), token))
    }
}

/// The one customer a listing other than purchases is about.
pub(super) fn owner_customer(owner: Owner) -> Result<clientela_domain::ids::CustomerId, Error> {
    match owner {
        Owner::Customer(c) => Ok(c),
        Owner::Anyone => Err(Error::invalid("parent", "a single customer is required")),
    }
}
