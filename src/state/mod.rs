//! Shared state for the policy checks: replay marks, lockout counters and familiar IPs, rate
//! buckets, TOTP reuse marks and wrong-code counters. [`StateStore`] is the only I/O the
//! `policy` module does.
//!
//! The store knows no policy: it keeps short text values under keys with a time to live, and
//! offers the two atomic operations the policies need: "set if absent" (replay marks) and
//! "compare and swap" (read-modify-write of a counter record by several instances at once).
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
        problems
    }
}

/// Builds the configured store: Redis when `redis_url` is set, memory otherwise. Connecting to
/// Redis is lazy: a Redis that is down at start makes requests fail closed, not the start.
pub fn build(config: &StateConfig) -> Result<Arc<dyn StateStore>, StateError> {
    match &config.redis_url {
        Some(url) => Ok(Arc::new(redis::RedisStore::new(url, config.prefix())?)),
        None => Ok(Arc::new(memory::MemoryStore::new(config.prefix()))),
    }
}
