//! Shared state for the policy checks: replay marks, lockout counters and familiar IPs, rate
//! buckets, TOTP reuse marks and wrong-code counters. [`StateStore`] is the only I/O the
//! `policy` module does.
//!
//! The store knows no policy: it keeps short text values under keys with a time to live, and
//! offers the atomic operations the policies need: "set if absent" (replay marks), "compare and
//! swap" (read-modify-write of a record by several instances at once) and "count an attempt"
//! (an attempt counter that is reserved in one atomic step before the attempt is checked, so
//! that N simultaneous attempts can never all pass a check that says "fewer than N so far").
//! [`memory::MemoryStore`] serves one instance; [`redis::RedisStore`] lets several instances
//! behind a load balancer share one lockout and one replay cache.

pub mod memory;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

/// Why the state store could not answer. Every policy that needs the store fails closed on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// The backend cannot be reached or answered with an error.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The configuration of the store is unusable.
    #[error("state store configuration: {0}")]
    Config(String),
}

/// How [`StateStore::count_attempt`] counts: at most `limit` attempts, then one per `window`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptRule {
    /// Attempts that lock the counter.
    pub limit: u32,
    /// While `now < last + window`, a counter at `limit` is locked; after it one more attempt
    /// is counted (and the counter locks again for a window), and a counter below `limit`
    /// starts again at 1.
    pub window: Duration,
    /// How long the counter is kept after its last attempt.
    pub ttl: Duration,
    /// True: a locked counter refuses (does not count) the attempt; false: it counts it anyway
    /// and says it was locked (`log_only`).
    pub refuse_when_locked: bool,
}

/// What [`StateStore::count_attempt`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttemptCount {
    /// The attempt was counted: the caller may check it.
    pub counted: bool,
    /// The counter was locked when the attempt came.
    pub was_locked: bool,
    /// The counter after this call.
    pub counter: AttemptCounter,
}

/// An attempt counter as stored: attempts and the Unix time (seconds) of the last one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptCounter {
    /// Attempts counted.
    pub attempts: u32,
    /// Unix time of the last counted attempt.
    pub last: Option<i64>,
}

impl AttemptCounter {
    /// Parses the stored form `"ATTEMPTS LAST"`; anything else reads as an empty counter.
    pub fn parse(text: &str) -> Self {
        let mut parts = text.split(' ');
        let attempts = parts.next().and_then(|a| a.parse().ok());
        let last = parts.next().and_then(|l| l.parse().ok());
        match (attempts, last) {
            (Some(attempts), Some(last)) => Self {
                attempts,
                last: Some(last),
            },
            _ => Self::default(),
        }
    }

    /// The stored form.
    pub fn render(&self) -> String {
        format!("{} {}", self.attempts, self.last.unwrap_or(0))
    }

    /// Whether the counter is locked at `now` (Unix seconds): `limit` reached, the last attempt
    /// less than `window` ago.
    pub fn is_locked(&self, limit: u32, window: Duration, now: i64) -> bool {
        self.attempts >= limit
            && self
                .last
                .is_some_and(|last| now < last.saturating_add(window.whole_seconds()))
    }

    /// Counts one attempt at `now` under `rule`: the one definition of the counting rule (the
    /// Redis store runs the same rule as a Lua script).
    pub fn count(self, rule: &AttemptRule, now: i64) -> AttemptCount {
        let was_locked = self.is_locked(rule.limit, rule.window, now);
        if was_locked && rule.refuse_when_locked {
            return AttemptCount {
                counted: false,
                was_locked,
                counter: self,
            };
        }
        let stale = self
            .last
            .is_none_or(|last| now >= last.saturating_add(rule.window.whole_seconds()));
        let attempts = if stale && self.attempts < rule.limit {
            1
        } else {
            self.attempts.saturating_add(1)
        };
        AttemptCount {
            counted: true,
            was_locked,
            counter: Self {
                attempts,
                last: Some(now),
            },
        }
    }

    /// The counter with one attempt given back (an attempt that turned out not to count).
    pub fn give_back(self) -> Self {
        Self {
            attempts: self.attempts.saturating_sub(1),
            ..self
        }
    }
}

/// A key-value store with expiry, shared by every instance that uses the same backend.
///
/// `now` is the caller's clock: the memory store expires entries by it, so tests move time with
/// a `ManualClock`; the Redis store lets Redis expire keys by its own clock.
#[async_trait]
pub trait StateStore: Send + Sync + std::fmt::Debug {
    /// Sets `key` to `value` unless it exists; true when this call set it (the first sighting).
    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StateError>;
    /// The value of `key`, if present and not expired.
    async fn get(&self, key: &str, now: OffsetDateTime) -> Result<Option<String>, StateError>;
    /// Replaces the value of `key` by `new` only if it is still `expected` (`None`: absent);
    /// true when it swapped. Callers retry on false with a fresh [`StateStore::get`].
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, StateError>;
    /// Counts an attempt on the counter at `key` in one atomic step, before the attempt is
    /// checked (see [`AttemptCounter::count`]); the caller checks only a counted attempt.
    async fn count_attempt(
        &self,
        key: &str,
        rule: &AttemptRule,
        now: OffsetDateTime,
    ) -> Result<AttemptCount, StateError>;
    /// Gives back one attempt counted by [`StateStore::count_attempt`] (the attempt did not
    /// count after all, e.g. the directory could not answer); a counter back at 0 is removed;
    /// `ttl` as in the rule.
    async fn give_back_attempt(
        &self,
        key: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(), StateError>;
    /// Removes `key` (no error when absent).
    async fn delete(&self, key: &str) -> Result<(), StateError>;
    /// Whether the store answers now.
    async fn health(&self) -> Result<(), StateError>;
    /// Whether several instances share this store (false for the in-memory store).
    fn is_shared(&self) -> bool;
}

/// `[state]`: where the shared state lives.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// `redis://HOST:PORT/DB` (or `rediss://`); absent: in memory, for one instance only.
    #[serde(default)]
    pub redis_url: Option<String>,
    /// Prefix of every key, so several deployments can share a Redis (default `fedsts`).
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Live entries the in-memory store holds at most (default
    /// [`memory::DEFAULT_MAX_ENTRIES`]); when full it sheds the entries closest to expiry.
    #[serde(default)]
    pub max_memory_entries: Option<usize>,
}

/// Default key prefix.
pub const DEFAULT_KEY_PREFIX: &str = "fedsts";

impl StateConfig {
    /// The key prefix, falling back to [`DEFAULT_KEY_PREFIX`].
    pub fn prefix(&self) -> &str {
        self.key_prefix.as_deref().unwrap_or(DEFAULT_KEY_PREFIX)
    }

    /// Problems of this section, as `key: problem — fix`.
    pub fn problems(&self) -> Vec<crate::config::ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(url) = &self.redis_url
            && let Err(e) = ::redis::Client::open(url.as_str())
        {
            problems.push(crate::config::ConfigProblem::new(
                "state.redis_url",
                format!("not a usable Redis URL: {e}"),
                "write e.g. \"redis://127.0.0.1:6379/0\"",
            ));
        }
        if self
            .key_prefix
            .as_deref()
            .is_some_and(|p| p.is_empty() || p.contains(char::is_whitespace))
        {
            problems.push(crate::config::ConfigProblem::new(
                "state.key_prefix",
                "empty or contains spaces",
                "use a short word such as \"fedsts\"",
            ));
        }
        if self
            .max_memory_entries
            .is_some_and(|max| !(1_000..=100_000_000).contains(&max))
        {
            problems.push(crate::config::ConfigProblem::new(
                "state.max_memory_entries",
                "out of range",
                "use 1000..=100000000 (default 200000, about 60 MB)",
            ));
        }
        problems
    }
}

/// Builds the configured store: Redis when `redis_url` is set, memory otherwise. Connecting to
/// Redis is lazy: a Redis that is down at start makes requests fail closed, not the start.
pub fn build(config: &StateConfig) -> Result<Arc<dyn StateStore>, StateError> {
    match &config.redis_url {
        Some(url) => Ok(Arc::new(redis::RedisStore::new(url, config.prefix())?)),
        None => Ok(Arc::new(memory::MemoryStore::with_max_entries(
            config.prefix(),
            config
                .max_memory_entries
                .unwrap_or(memory::DEFAULT_MAX_ENTRIES),
        ))),
    }
}
