//! The in-memory [`StateStore`]: one instance, gone at restart. Entries expire by the caller's
//! clock; expired entries are swept when the map grows past a bound.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{StateError, StateStore};

/// Number of entries above which an insert first sweeps expired entries.
const SWEEP_ABOVE: usize = 10_000;

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    expires: OffsetDateTime,
}

/// A process-local store.
#[derive(Debug)]
pub struct MemoryStore {
    prefix: String,
    entries: Mutex<HashMap<String, Entry>>,
}

impl MemoryStore {
    /// An empty store whose keys start with `prefix:`.
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn with_entries<T>(&self, f: impl FnOnce(&mut HashMap<String, Entry>) -> T) -> T {
        let mut guard = match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}:{key}", self.prefix)
    }
}

fn live(entries: &HashMap<String, Entry>, key: &str, now: OffsetDateTime) -> Option<String> {
    entries
        .get(key)
        .filter(|e| e.expires > now)
        .map(|e| e.value.clone())
}

fn insert(
    entries: &mut HashMap<String, Entry>,
    key: String,
    value: &str,
    ttl: Duration,
    now: OffsetDateTime,
) {
    if entries.len() > SWEEP_ABOVE {
        entries.retain(|_, e| e.expires > now);
    }
    entries.insert(
        key,
        Entry {
            value: value.to_owned(),
            expires: now + ttl,
        },
    );
}

#[async_trait]
impl StateStore for MemoryStore {
    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        let key = self.full_key(key);
        Ok(self.with_entries(|entries| {
            if live(entries, &key, now).is_some() {
                return false;
            }
            insert(entries, key, value, ttl, now);
            true
        }))
    }

    async fn get(&self, key: &str, now: OffsetDateTime) -> Result<Option<String>, StateError> {
        let key = self.full_key(key);
        Ok(self.with_entries(|entries| live(entries, &key, now)))
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        let key = self.full_key(key);
        Ok(self.with_entries(|entries| {
            if live(entries, &key, now).as_deref() != expected {
                return false;
            }
            insert(entries, key, new, ttl, now);
            true
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        let key = self.full_key(key);
        self.with_entries(|entries| entries.remove(&key));
        Ok(())
    }

    async fn health(&self) -> Result<(), StateError> {
        Ok(())
    }

    fn is_shared(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[tokio::test]
    async fn set_if_absent_marks_once_until_expiry() {
        let store = MemoryStore::new("t");
        let ttl = Duration::minutes(5);
        assert!(store.set_if_absent("k", "1", ttl, T0).await.unwrap());
        assert!(
            !store
                .set_if_absent("k", "1", ttl, T0 + Duration::minutes(4))
                .await
                .unwrap()
        );
        assert!(
            store
                .set_if_absent("k", "1", ttl, T0 + Duration::minutes(5))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn compare_and_swap_needs_the_current_value() {
        let store = MemoryStore::new("t");
        let ttl = Duration::minutes(5);
        assert!(
            store
                .compare_and_swap("k", None, "a", ttl, T0)
                .await
                .unwrap()
        );
        assert!(
            !store
                .compare_and_swap("k", None, "b", ttl, T0)
                .await
                .unwrap()
        );
        assert!(
            !store
                .compare_and_swap("k", Some("x"), "b", ttl, T0)
                .await
                .unwrap()
        );
        assert!(
            store
                .compare_and_swap("k", Some("a"), "b", ttl, T0)
                .await
                .unwrap()
        );
        assert_eq!(store.get("k", T0).await.unwrap().as_deref(), Some("b"));
        store.delete("k").await.unwrap();
        assert_eq!(store.get("k", T0).await.unwrap(), None);
    }
}
