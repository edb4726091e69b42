//! The in-memory [`StateStore`]: one instance, gone at restart. Entries expire by the caller's
//! clock.
//!
//! Expiry is amortised O(1): besides the map, an index of expiry buckets (one per second of
//! expiry time) lists the keys that expire in each second; every write first drops the buckets
//! that have passed, so each written key is looked at once more when it expires, never in a
//! scan of the whole map. The store holds at most `max_entries` live entries: when a write finds
//! it full, the entries that would expire soonest are shed (short-lived rate buckets before
//! week-long lockout records) with a rate-limited warning, so a flood of new keys costs memory
//! up to the cap and no more.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::{
    AttemptCount, AttemptCounter, AttemptRule, StateError, StateStore, TokenBucket, TokenRule,
    TokenTake, unix_ms,
};

/// Default `state.max_memory_entries`.
pub const DEFAULT_MAX_ENTRIES: usize = 200_000;
/// At most one "shedding" warning per this many seconds.
const SHED_LOG_EVERY_SECS: i64 = 60;

#[derive(Debug, Clone)]
struct Entry {
    value: String,
    expires: OffsetDateTime,
}

/// The map and its expiry index, under one mutex.
#[derive(Debug, Default)]
struct Entries {
    map: HashMap<String, Entry>,
    /// Unix second of expiry → keys written with that expiry (a key rewritten with a later
    /// expiry stays listed under the old second too; it is skipped there if it lives on).
    buckets: BTreeMap<i64, Vec<String>>,
    /// Keys listed in `buckets`, counting repeats.
    listed: usize,
    /// Entries shed since the last warning, and when it was logged.
    shed_since_log: u64,
    last_shed_log: Option<i64>,
}

/// A process-local store.
#[derive(Debug)]
pub struct MemoryStore {
    prefix: String,
    max_entries: usize,
    entries: Mutex<Entries>,
}

impl MemoryStore {
    /// An empty store whose keys start with `prefix:`, holding [`DEFAULT_MAX_ENTRIES`].
    pub fn new(prefix: &str) -> Self {
        Self::with_max_entries(prefix, DEFAULT_MAX_ENTRIES)
    }

    /// An empty store holding at most `max_entries` (at least 1) live entries.
    pub fn with_max_entries(prefix: &str, max_entries: usize) -> Self {
        Self {
            prefix: prefix.to_owned(),
            max_entries: max_entries.max(1),
            entries: Mutex::new(Entries::default()),
        }
    }

    /// Entries held now (expired ones not yet dropped included).
    pub fn len(&self) -> usize {
        self.with_entries(|entries| entries.map.len())
    }

    /// Whether the store holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn with_entries<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
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

impl Entries {
    fn live(&self, key: &str, now: OffsetDateTime) -> Option<&str> {
        self.map
            .get(key)
            .filter(|e| e.expires > now)
            .map(|e| e.value.as_str())
    }

    /// Drops the keys of `second`'s bucket whose entry has expired by `now`.
    fn drop_bucket(&mut self, second: i64, now: OffsetDateTime) -> usize {
        let Some(keys) = self.buckets.remove(&second) else {
            return 0;
        };
        self.listed = self.listed.saturating_sub(keys.len());
        let mut dropped = 0;
        for key in keys {
            if self.map.get(&key).is_some_and(|e| e.expires <= now) {
                self.map.remove(&key);
                dropped += 1;
            }
        }
        dropped
    }

    /// Drops the entries of the buckets whose whole second has passed by `now` (an entry of
    /// the current second may still live; `live` hides it once expired).
    fn expire(&mut self, now: OffsetDateTime) {
        let now_second = now.unix_timestamp();
        while let Some((&second, _)) = self.buckets.first_key_value() {
            if second >= now_second {
                break;
            }
            self.drop_bucket(second, now);
        }
    }

    /// Makes room for one more entry: sheds the entries that expire soonest.
    fn shed(&mut self, max_entries: usize, now: OffsetDateTime) {
        while self.map.len() >= max_entries {
            let Some((&second, _)) = self.buckets.first_key_value() else {
                break;
            };
            let shed_to = OffsetDateTime::from_unix_timestamp(second.saturating_add(1))
                .unwrap_or(now)
                .max(now);
            let dropped = self.drop_bucket(second, shed_to);
            self.shed_since_log = self.shed_since_log.saturating_add(dropped as u64);
        }
        self.log_shedding(max_entries, now);
    }

    fn log_shedding(&mut self, max_entries: usize, now: OffsetDateTime) {
        let now_second = now.unix_timestamp();
        let due = self
            .last_shed_log
            .is_none_or(|last| now_second >= last.saturating_add(SHED_LOG_EVERY_SECS));
        if self.shed_since_log > 0 && due {
            tracing::warn!(
                shed = self.shed_since_log,
                max_entries,
                "in-memory state store full: shed the entries closest to expiry; raise state.max_memory_entries or use Redis"
            );
            self.shed_since_log = 0;
            self.last_shed_log = Some(now_second);
        }
    }

    /// Rebuilds the expiry index from the map when rewrites have listed keys far more often
    /// than there are entries (amortised over at least as many writes).
    fn compact_index(&mut self) {
        if self.listed <= 2 * self.map.len() + 1024 {
            return;
        }
        let mut buckets: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (key, entry) in &self.map {
            buckets
                .entry(entry.expires.unix_timestamp())
                .or_default()
                .push(key.clone());
        }
        self.listed = self.map.len();
        self.buckets = buckets;
    }

    fn insert(
        &mut self,
        key: String,
        value: String,
        ttl: Duration,
        now: OffsetDateTime,
        max_entries: usize,
    ) {
        self.expire(now);
        if !self.map.contains_key(&key) {
            self.shed(max_entries, now);
        }
        let expires = now + ttl;
        let second = expires.unix_timestamp();
        let same_bucket = self
            .map
            .get(&key)
            .is_some_and(|e| e.expires.unix_timestamp() == second);
        if !same_bucket {
            self.buckets.entry(second).or_default().push(key.clone());
            self.listed += 1;
        }
        self.map.insert(key, Entry { value, expires });
        self.compact_index();
    }
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
            if entries.live(&key, now).is_some() {
                return false;
            }
            entries.insert(key, value.to_owned(), ttl, now, self.max_entries);
            true
        }))
    }

    async fn get(&self, key: &str, now: OffsetDateTime) -> Result<Option<String>, StateError> {
        let key = self.full_key(key);
        Ok(self.with_entries(|entries| entries.live(&key, now).map(str::to_owned)))
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
            if entries.live(&key, now) != expected {
                return false;
            }
            entries.insert(key, new.to_owned(), ttl, now, self.max_entries);
            true
        }))
    }

    async fn count_attempt(
        &self,
        key: &str,
        rule: &AttemptRule,
        now: OffsetDateTime,
    ) -> Result<AttemptCount, StateError> {
        let key = self.full_key(key);
        Ok(self.with_entries(|entries| {
            let current = entries
                .live(&key, now)
                .map(AttemptCounter::parse)
                .unwrap_or_default();
            let counted = current.count(rule, now.unix_timestamp());
            if counted.counted {
                let value = counted.counter.render();
                entries.insert(key, value, rule.ttl, now, self.max_entries);
            }
            counted
        }))
    }

    async fn give_back_attempt(
        &self,
        key: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        let key = self.full_key(key);
        self.with_entries(|entries| {
            if let Some(current) = entries.live(&key, now).map(AttemptCounter::parse) {
                let given_back = current.give_back();
                if given_back.attempts == 0 {
                    entries.map.remove(&key);
                } else {
                    entries.insert(key, given_back.render(), ttl, now, self.max_entries);
                }
            }
        });
        Ok(())
    }

    async fn take_token(
        &self,
        key: &str,
        rule: &TokenRule,
        now: OffsetDateTime,
    ) -> Result<TokenTake, StateError> {
        let key = self.full_key(key);
        let now_ms = unix_ms(now);
        Ok(self.with_entries(|entries| {
            let stored = entries.live(&key, now).and_then(TokenBucket::parse);
            let take = TokenBucket::take(stored, rule, now_ms);
            if take.taken {
                let value = take.bucket.render();
                entries.insert(key, value, rule.ttl, now, self.max_entries);
            }
            take
        }))
    }

    async fn delete(&self, key: &str) -> Result<(), StateError> {
        let key = self.full_key(key);
        self.with_entries(|entries| entries.map.remove(&key));
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

    #[tokio::test]
    async fn attempts_are_counted_to_the_limit_then_one_per_window() {
        let store = MemoryStore::new("t");
        let rule = AttemptRule {
            limit: 2,
            window: Duration::minutes(10),
            ttl: Duration::days(1),
            refuse_when_locked: true,
        };
        let counted = |c: AttemptCount| (c.counted, c.counter.attempts);
        assert_eq!(
            counted(store.count_attempt("k", &rule, T0).await.unwrap()),
            (true, 1)
        );
        assert_eq!(
            counted(store.count_attempt("k", &rule, T0).await.unwrap()),
            (true, 2)
        );
        assert_eq!(
            counted(store.count_attempt("k", &rule, T0).await.unwrap()),
            (false, 2)
        );
        let later = T0 + Duration::minutes(10);
        assert_eq!(
            counted(store.count_attempt("k", &rule, later).await.unwrap()),
            (true, 3)
        );
        assert_eq!(
            counted(store.count_attempt("k", &rule, later).await.unwrap()),
            (false, 3)
        );
        store.give_back_attempt("k", rule.ttl, later).await.unwrap();
        store.give_back_attempt("k", rule.ttl, later).await.unwrap();
        assert_eq!(
            counted(store.count_attempt("k", &rule, later).await.unwrap()),
            (true, 2)
        );
        for _ in 0..2 {
            store.give_back_attempt("k", rule.ttl, later).await.unwrap();
        }
        assert_eq!(
            store.get("k", later).await.unwrap(),
            None,
            "a counter at 0 is removed"
        );
    }

    #[tokio::test]
    async fn expired_entries_go_without_a_scan_and_the_cap_sheds_the_soonest() {
        let store = MemoryStore::with_max_entries("t", 100_000);
        for n in 0..100_000 {
            let ttl = Duration::seconds(1 + n % 100);
            store
                .set_if_absent(&format!("k{n}"), "1", ttl, T0)
                .await
                .unwrap();
        }
        assert_eq!(store.len(), 100_000);
        // Full: a new key sheds the bucket closest to expiry (1 000 keys of 1 s), nothing else.
        let long = Duration::hours(1);
        store.set_if_absent("new", "1", long, T0).await.unwrap();
        assert_eq!(store.len(), 100_000 - 1_000 + 1);
        assert_eq!(store.get("k0", T0).await.unwrap(), None);
        assert_eq!(store.get("k99", T0).await.unwrap().as_deref(), Some("1"));
        // 50 s later one write drops exactly the buckets that passed, however big the map is.
        store
            .set_if_absent("later", "1", long, T0 + Duration::seconds(50))
            .await
            .unwrap();
        assert_eq!(store.len(), 51_000 + 2);
        store
            .set_if_absent("last", "1", long, T0 + Duration::seconds(101))
            .await
            .unwrap();
        assert_eq!(store.len(), 3);
    }

    #[tokio::test]
    async fn rewrites_do_not_grow_the_expiry_index_without_bound() {
        let store = MemoryStore::new("t");
        for n in 0..50_000 {
            let now = T0 + Duration::seconds(n);
            let current = store.get("k", now).await.unwrap();
            let next = n.to_string();
            let ttl = Duration::days(30);
            assert!(
                store
                    .compare_and_swap("k", current.as_deref(), &next, ttl, now)
                    .await
                    .unwrap()
            );
        }
        let listed = store.with_entries(|e| e.listed);
        assert!(listed <= 2 * store.len() + 1025, "{listed}");
    }
}
