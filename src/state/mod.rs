//! Shared state for the policy checks: replay marks, lockout counters and familiar IPs, rate
//! buckets, TOTP reuse marks and wrong-code counters. [`StateStore`] is the only I/O the
//! `policy` module does.
//!
//! The store knows no policy: it keeps short text values under keys with a time to live, and
//! offers the atomic operations the policies need: "set if absent" (replay marks), "compare and
//! swap" (read-modify-write of a record by several instances at once), "count an attempt"
//! (an attempt counter that is reserved in one atomic step before the attempt is checked, so
//! that N simultaneous attempts can never all pass a check that says "fewer than N so far") and
//! "take a token" (a token bucket drawn in one atomic step, so contention never fails a
//! request and a burst never takes more than the bucket holds).
//! [`memory::MemoryStore`] serves one instance; [`redis::RedisStore`] lets several instances
//! behind a load balancer share one lockout and one replay cache.

pub mod memory;
pub mod redis;
pub mod timed;

use std::sync::Arc;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::config::StateConfig;

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

/// How [`StateStore::take_token`] fills a token bucket: `capacity` tokens at most, refilled at
/// `per_minute` tokens a minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenRule {
    /// Tokens a full bucket holds.
    pub capacity: u32,
    /// Tokens gained per minute.
    pub per_minute: u32,
    /// How long the bucket is kept after its last token was taken.
    pub ttl: Duration,
}

impl TokenRule {
    /// A full bucket, in thousandths of a token.
    pub fn capacity_millis(&self) -> u64 {
        u64::from(self.capacity) * 1000
    }
}

/// A token bucket as stored: thousandths of a token and the Unix time (ms) they were counted at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Thousandths of a token left.
    pub milli_tokens: u64,
    /// Unix time (ms) of `milli_tokens`.
    pub at_ms: i64,
}

/// What [`StateStore::take_token`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenTake {
    /// A token was taken: the request may go on.
    pub taken: bool,
    /// The bucket after this call.
    pub bucket: TokenBucket,
}

impl TokenBucket {
    /// Parses the stored form `"MILLI_TOKENS:AT_MS"`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (tokens, at) = text.split_once(':')?;
        Some(Self {
            milli_tokens: tokens.parse().ok()?,
            at_ms: at.parse().ok()?,
        })
    }

    /// The stored form.
    pub fn render(&self) -> String {
        format!("{}:{}", self.milli_tokens, self.at_ms)
    }

    /// The bucket at `now_ms`, refilled since `at_ms` (a missing bucket is full).
    fn refilled(stored: Option<Self>, rule: &TokenRule, now_ms: i64) -> Self {
        let Some(bucket) = stored else {
            return Self {
                milli_tokens: rule.capacity_millis(),
                at_ms: now_ms,
            };
        };
        let elapsed = u64::try_from(now_ms.saturating_sub(bucket.at_ms)).unwrap_or(0);
        let gained = elapsed.saturating_mul(u64::from(rule.per_minute)) / 60;
        Self {
            milli_tokens: bucket
                .milli_tokens
                .saturating_add(gained)
                .min(rule.capacity_millis()),
            at_ms: now_ms.max(bucket.at_ms),
        }
    }

    /// Takes one token from `stored` at `now_ms` under `rule`: the one definition of the bucket
    /// rule (the Redis store runs the same rule as a Lua script). A refused take leaves the
    /// stored bucket as it was.
    pub fn take(stored: Option<Self>, rule: &TokenRule, now_ms: i64) -> TokenTake {
        let bucket = Self::refilled(stored, rule, now_ms);
        if bucket.milli_tokens < 1000 {
            return TokenTake {
                taken: false,
                bucket,
            };
        }
        TokenTake {
            taken: true,
            bucket: Self {
                milli_tokens: bucket.milli_tokens - 1000,
                ..bucket
            },
        }
    }
}

/// `t` as Unix milliseconds, the clock of [`TokenBucket`].
fn unix_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
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
    /// Takes one token from the bucket at `key` in one atomic step (see [`TokenBucket::take`]),
    /// so that simultaneous requests never take more tokens than the bucket holds.
    async fn take_token(
        &self,
        key: &str,
        rule: &TokenRule,
        now: OffsetDateTime,
    ) -> Result<TokenTake, StateError>;
    /// Removes `key` (no error when absent).
    async fn delete(&self, key: &str) -> Result<(), StateError>;
    /// Whether the store answers now.
    async fn health(&self) -> Result<(), StateError>;
    /// Whether several instances share this store (false for the in-memory store).
    fn is_shared(&self) -> bool;
}

/// The rollover leases (`crate::autoroll::LeaseStore`) over a state store: set-if-absent.
#[derive(Debug, Clone)]
pub struct StateLeases(pub Arc<dyn StateStore>);

#[async_trait]
impl crate::autoroll::LeaseStore for StateLeases {
    async fn take_lease(
        &self,
        key: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, crate::autoroll::LeaseError> {
        self.0
            .set_if_absent(key, "1", ttl, now)
            .await
            .map_err(Into::into)
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
