//! What callers ask of the registry's lists: filters, orders and the keyset cursors
//! page tokens carry. The store reads by them; the api builds them from requests.

use chrono::{DateTime, Utc};
use clientela_domain::ids::CustomerId;
use uuid::Uuid;

use super::{Customer, Status};

/// How a list is ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderBy {
    /// Creation time.
    CreateTime,
    /// Last change.
    UpdateTime,
    /// Display name.
    DisplayName,
}

/// Filters of ListCustomers and ExportCustomers.
#[derive(Debug, Clone, Default)]
pub struct CustomerFilter {
    /// Statuses to include.
    pub statuses: Vec<Status>,
    pub kind: Option<clientela_domain::taxonomy::CustomerKind>,
    /// Folded region.
    pub region: Option<String>,
    /// Folded tag.
    pub tag: Option<String>,
    /// Folded search text.
    pub query: Option<String>,
}

/// A keyset cursor: the sort key and id of the last row returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The sort key as text (RFC 3339 time or the name).
    pub key: String,
    /// Tie-breaker.
    pub id: Uuid,
}

/// The cursor positioned at `c` for `order`.
pub fn cursor_of(c: &Customer, order: OrderBy) -> Cursor {
    let key = match order {
        OrderBy::CreateTime => c.created_at.to_rfc3339(),
        OrderBy::UpdateTime => c.updated_at.to_rfc3339(),
        OrderBy::DisplayName => c.fields.display_name.clone(),
    };
    Cursor {
        key,
        id: c.id.as_uuid(),
    }
}

/// A keyset cursor for newest-first history lists: (time, id) of the last row returned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryCursor {
    /// Time of the last row.
    pub at: DateTime<Utc>,
    /// Its id.
    pub id: Uuid,
}

/// Whom a history list is for: one customer or everyone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// One customer.
    Customer(CustomerId),
    /// Every customer ("customers/-").
    Anyone,
}
