//! A bounded cache of rows for a service whose database has one writer, this process
//! (SQLite): every write passes through the service, which invalidates what it changed,
//! so the cache is never stale. On PostgreSQL other replicas write too: no cache there.
//!
//! Readers that miss fill the cache only if no write invalidated anything since they
//! started reading (a generation counter, checked under the same lock writers bump it
//! under): a reader that read a row before a write can never put the old row back after
//! it.

use std::hash::Hash;
use std::sync::Mutex;

use quick_cache::sync::Cache;

/// Values by key, bounded (quick_cache's S3-FIFO eviction).
#[derive(Debug)]
pub struct GenerationCache<K, V> {
    entries: Cache<K, V>,
    writes: Mutex<u64>,
}

impl<K: Eq + Hash + Clone, V: Clone> GenerationCache<K, V> {
    /// A cache of at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Cache::new(capacity.max(1)),
            writes: Mutex::new(0),
        }
    }

    /// A cached value.
    pub fn get(&self, key: &K) -> Option<V> {
        self.entries.get(key)
    }

    /// The generation to pass to [`GenerationCache::fill`]: take it before reading.
    pub fn generation(&self) -> u64 {
        *self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caches values read from the database, unless a write invalidated anything since
    /// `generation` was taken.
    pub fn fill(&self, generation: u64, entries: impl IntoIterator<Item = (K, V)>) {
        let writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        if *writes == generation {
            for (key, value) in entries {
                self.entries.insert(key, value);
            }
        }
    }

    /// Forgets what a write changed.
    pub fn invalidate(&self, keys: impl IntoIterator<Item = K>) {
        let mut writes = self.writes.lock().unwrap_or_else(|e| e.into_inner());
        *writes += 1;
        for key in keys {
            self.entries.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_that_started_before_a_write_is_not_cached() {
        let cache = GenerationCache::new(10);
        let before = cache.generation();
        cache.invalidate([7]);
        cache.fill(before, [(7, "stale")]);
        assert_eq!(cache.get(&7), None, "the stale row was cached");
        let after = cache.generation();
        cache.fill(after, [(7, "fresh")]);
        assert_eq!(cache.get(&7), Some("fresh"));
        cache.invalidate([7]);
        assert_eq!(cache.get(&7), None);
    }

    #[test]
    fn it_holds_at_most_its_capacity() {
        let cache = GenerationCache::new(100);
        cache.fill(cache.generation(), (0..1000).map(|n| (n, n)));
        let held = (0..1000).filter(|n| cache.get(n).is_some()).count();
        assert!((1..=100).contains(&held), "{held} held");
    }
}
