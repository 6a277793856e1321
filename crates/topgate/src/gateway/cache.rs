//! A short-lived cache of apps and sessions, so that the request path does not read them from
//! the database on every call.
//!
//! Entries (found or not) live for `auth_cache_ms` (1 s by default, 0 turns the cache off).
//! Changes made through this process's admin API clear the cache at once; changes made by
//! another process (the CLI, another node) take effect within that time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// When an entry was loaded, and what was found (`None`: no such key).
type Entry<T> = (Instant, Option<Arc<T>>);

pub struct TtlCache<T> {
    ttl: Duration,
    entries: RwLock<HashMap<String, Entry<T>>>,
}

impl<T> TtlCache<T> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// The cached value of `key`: `Some(found)` while fresh, `None` when it must be loaded.
    pub fn get(&self, key: &str) -> Option<Option<Arc<T>>> {
        if self.ttl.is_zero() {
            return None;
        }
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, value)| value.clone())
    }

    pub fn put(&self, key: &str, value: Option<Arc<T>>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        // Bounded: unknown keys sent by anyone must not grow the map without end.
        if entries.len() >= 10_000 {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= 10_000 {
                entries.clear();
            }
        }
        entries.insert(key.to_string(), (Instant::now(), value));
    }

    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}
