//! A read-through cache of customers for GetCustomer, used only where this process is the
//! database's one writer (SQLite): every write passes through [`crate::Registry`], which
//! invalidates what it changed right after its commit, so the cache is never stale.
//!
//! Readers that miss fill the cache only if no write ended since they started reading
//! (a generation counter, checked under the same lock writers bump it under): a reader
//! that read a row before a commit can never put the old row back after it.

use std::sync::{Arc, Mutex};

use clientela_domain::ids::CustomerId;
use quick_cache::sync::Cache;

use crate::model::Customer;

/// Customers by id, bounded (quick_cache's S3-FIFO eviction).
#[derive(Debug)]
pub struct CustomerCache {
    entries: Cache<CustomerId, Arc<Customer>>,
    writes: Mutex<u64>,
}

impl CustomerCache {
    /// A cache of at most `capacity` customers.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Cache::new(capacity.max(1)),
            writes: Mutex::new(0),
        }
    }

    /// A cached customer.
    pub fn get(&self, id: CustomerId) -> Option<Arc<Customer>> {
        self.entries.get(&id)
    }

    /// The generation to pass to [`CustomerCache::fill`]: read it before reading the row.
    pub fn generation(&self) -> u64 {
        *self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caches a customer read from the database, unless a write ended since
    /// `generation` was taken.
    pub fn fill(&self, generation: u64, customer: Arc<Customer>) {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if *writes == generation {
            self.entries.insert(customer.id, customer);
        }
    }

    /// Forgets customers a write changed (call after the commit, whatever its outcome).
    pub fn invalidate(&self, ids: impl IntoIterator<Item = CustomerId>) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        *writes += 1;
        for id in ids {
            self.entries.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::{CustomerFields, Status};

    fn customer(id: CustomerId, version: i64) -> Arc<Customer> {
        Arc::new(Customer {
            id,
            fields: CustomerFields::default(),
            status: Status::Prospect,
            merged_into: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
            version,
        })
    }

    #[test]
    fn a_read_that_started_before_a_write_is_not_cached() {
        let cache = CustomerCache::new(10);
        let id = CustomerId::new();
        let before = cache.generation();
        cache.invalidate([id]);
        cache.fill(before, customer(id, 1));
        assert!(cache.get(id).is_none(), "the stale row was cached");
        let after = cache.generation();
        cache.fill(after, customer(id, 2));
        assert_eq!(cache.get(id).map(|c| c.version), Some(2));
        cache.invalidate([id]);
        assert!(cache.get(id).is_none());
    }
}
