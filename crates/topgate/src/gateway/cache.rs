//! A short-lived cache of apps and sessions, so that the request path does not read them from
//! the database on every call.
//!
//! Entries (found or not) live for `auth_cache_ms` (1 s by default, 0 turns the cache off).
//! Changes made through this process's admin API clear the cache at once; changes made by
//! another process (the CLI, another node) take effect within that time.
//!
//! The map holds at most [`MAX_ENTRIES`] keys of at most [`MAX_CACHED_KEY_BYTES`] each: keys are
//! whatever callers send, unknown ones included, and a bound on their number alone let requests
//! with keys of a megabyte each hold gigabytes. A longer key (no real app key or session is that
//! long) is looked up in the database on every call instead, as with the cache off.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// How many keys the map holds before it drops the expired ones (or, failing that, all).
pub const MAX_ENTRIES: usize = 10_000;
/// The longest key kept; see the module's doc.
pub const MAX_CACHED_KEY_BYTES: usize = 256;

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
        if self.ttl.is_zero() || key.len() > MAX_CACHED_KEY_BYTES {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
            if entries.len() >= MAX_ENTRIES {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_past_the_bound_are_never_kept() {
        let cache = TtlCache::<u8>::new(Duration::from_secs(60));
        let longest = "k".repeat(MAX_CACHED_KEY_BYTES);
        cache.put(&longest, Some(Arc::new(1)));
        assert_eq!(cache.get(&longest), Some(Some(Arc::new(1))));
        let too_long = "k".repeat(MAX_CACHED_KEY_BYTES + 1);
        cache.put(&too_long, None);
        assert_eq!(cache.get(&too_long), None, "loaded on every call instead");
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let cache = TtlCache::<u8>::new(Duration::from_secs(60));
        for i in 0..=MAX_ENTRIES {
            cache.put(&i.to_string(), None);
        }
        let held = cache.entries.read().unwrap().len();
        assert!(held <= MAX_ENTRIES, "{held}");
    }
}
