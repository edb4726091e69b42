//! Per-client-IP token buckets on the active endpoints: `burst` requests at once, refilled at
//! `requests_per_minute`. An empty bucket answers HTTP 429 with `Retry-After` (or, configured,
//! a `RequestFailed` SOAP fault). Buckets live in the [`StateStore`], so several instances
//! share them; the bucket state is `tokens_in_millis:last_refill_unix_ms`. An IPv4 address has
//! its own bucket; IPv6 addresses share one per /64, since a single subscriber gets a whole /64
//! and could otherwise draw a fresh bucket for every request.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use crate::config::ConfigProblem;
use crate::state::{StateError, StateStore};

/// Compare-and-swap attempts before giving up.
const CAS_ATTEMPTS: usize = 8;

/// How an empty bucket is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    /// HTTP 429 with `Retry-After` (default).
    Http429,
    /// A SOAP `RequestFailed` fault (HTTP 500), for clients that only read faults.
    Fault,
}

/// `[rate_limit]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Whether buckets are enforced (default true).
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// Refill rate per client IP (default 60).
    #[serde(default = "default_per_minute")]
    pub requests_per_minute: u32,
    /// Bucket size (default 20).
    #[serde(default = "default_burst")]
    pub burst: u32,
    /// `http_429` (default) or `fault`.
    #[serde(default = "default_response")]
    pub response: Response,
}

fn default_enabled() -> bool {
    true
}
fn default_per_minute() -> u32 {
    60
}
fn default_burst() -> u32 {
    20
}
fn default_response() -> Response {
    Response::Http429
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        Self {
            enabled: default_enabled(),
            requests_per_minute: default_per_minute(),
            burst: default_burst(),
            response: default_response(),
        }
    }
}

impl RateLimitConfig {
    /// Problems of `[rate_limit]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.requests_per_minute == 0 || self.requests_per_minute > 1_000_000 {
            problems.push(ConfigProblem::new(
                "rate_limit.requests_per_minute",
                format!("{} is out of range", self.requests_per_minute),
                "use 1..=1000000, or enabled = false",
            ));
        }
        if self.burst == 0 || self.burst > 1_000_000 {
            problems.push(ConfigProblem::new(
                "rate_limit.burst",
                format!("{} is out of range", self.burst),
                "use 1..=1000000",
            ));
        }
        problems
    }
}

/// An empty bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until one request is allowed again.
    pub retry_after_secs: u64,
    /// How to answer.
    pub response: Response,
}

/// The token buckets over a state store.
#[derive(Clone, Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    store: Arc<dyn StateStore>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Bucket {
    milli_tokens: u64,
    at_ms: i128,
}

impl Bucket {
    fn parse(text: &str) -> Option<Self> {
        let (tokens, at) = text.split_once(':')?;
        Some(Self {
            milli_tokens: tokens.parse().ok()?,
            at_ms: at.parse().ok()?,
        })
    }

    fn render(self) -> String {
        format!("{}:{}", self.milli_tokens, self.at_ms)
    }
}

/// The state key of the bucket `ip` draws from: per IPv4 address (IPv4-mapped IPv6 included),
/// per IPv6 /64.
fn bucket_key(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => format!("rate:{v4}"),
        IpAddr::V6(v6) => {
            let network = Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX));
            format!("rate:{network}/64")
        }
    }
}

fn unix_ms(t: OffsetDateTime) -> i128 {
    t.unix_timestamp_nanos() / 1_000_000
}

impl RateLimiter {
    /// Buckets per `config` over `store`.
    pub fn new(config: RateLimitConfig, store: Arc<dyn StateStore>) -> Self {
        Self { config, store }
    }

    fn capacity(&self) -> u64 {
        u64::from(self.config.burst) * 1000
    }

    /// The bucket at `now`, refilled since its last use.
    fn refilled(&self, stored: Option<Bucket>, now_ms: i128) -> Bucket {
        let Some(bucket) = stored else {
            return Bucket {
                milli_tokens: self.capacity(),
                at_ms: now_ms,
            };
        };
        let elapsed = u64::try_from(now_ms - bucket.at_ms).unwrap_or(0);
        let gained = elapsed.saturating_mul(u64::from(self.config.requests_per_minute)) / 60;
        Bucket {
            milli_tokens: bucket
                .milli_tokens
                .saturating_add(gained)
                .min(self.capacity()),
            at_ms: now_ms.max(bucket.at_ms),
        }
    }

    fn retry_after(&self, bucket: Bucket) -> u64 {
        let missing = 1000u64.saturating_sub(bucket.milli_tokens);
        let per_minute = u64::from(self.config.requests_per_minute).max(1);
        (missing * 60).div_ceil(per_minute * 1000).max(1)
    }

    fn ttl(&self) -> Duration {
        let per_minute = i64::from(self.config.requests_per_minute.max(1));
        Duration::seconds(i64::from(self.config.burst) * 60 / per_minute + 60)
    }

    /// Takes one token for `ip`; `Some` when the bucket is empty.
    pub async fn take(
        &self,
        ip: IpAddr,
        now: OffsetDateTime,
    ) -> Result<Option<Limited>, StateError> {
        if !self.config.enabled {
            return Ok(None);
        }
        let key = bucket_key(ip);
        for _ in 0..CAS_ATTEMPTS {
            let raw = self.store.get(&key, now).await?;
            let mut bucket = self.refilled(raw.as_deref().and_then(Bucket::parse), unix_ms(now));
            if bucket.milli_tokens < 1000 {
                return Ok(Some(Limited {
                    retry_after_secs: self.retry_after(bucket),
                    response: self.config.response,
                }));
            }
            bucket.milli_tokens -= 1000;
            if self
                .store
                .compare_and_swap(&key, raw.as_deref(), &bucket.render(), self.ttl(), now)
                .await?
            {
                return Ok(None);
            }
        }
        Err(StateError::Unavailable(
            "rate bucket kept changing under us".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[tokio::test]
    async fn burst_then_refill_at_the_configured_rate() {
        let config = RateLimitConfig {
            requests_per_minute: 6,
            burst: 2,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, Arc::new(MemoryStore::new("t")));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert_eq!(limiter.take(ip, T0).await.unwrap(), None);
        assert_eq!(limiter.take(ip, T0).await.unwrap(), None);
        assert_eq!(
            limiter.take(ip, T0).await.unwrap(),
            Some(Limited {
                retry_after_secs: 10,
                response: Response::Http429
            })
        );
        assert_eq!(limiter.take(other, T0).await.unwrap(), None);
        let t = T0 + Duration::seconds(4);
        assert_eq!(
            limiter
                .take(ip, t)
                .await
                .unwrap()
                .map(|l| l.retry_after_secs),
            Some(6)
        );
        assert_eq!(
            limiter.take(ip, T0 + Duration::seconds(10)).await.unwrap(),
            None
        );
        assert!(
            limiter
                .take(ip, T0 + Duration::seconds(10))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn ipv6_addresses_of_one_64_share_a_bucket() {
        let config = RateLimitConfig {
            burst: 2,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, Arc::new(MemoryStore::new("t")));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(limiter.take(ip("2001:db8:1:2::1"), T0).await.unwrap(), None);
        assert_eq!(
            limiter.take(ip("2001:db8:1:2:ffff::9"), T0).await.unwrap(),
            None
        );
        assert!(
            limiter
                .take(ip("2001:db8:1:2:abcd:1:2:3"), T0)
                .await
                .unwrap()
                .is_some()
        );
        assert_eq!(limiter.take(ip("2001:db8:1:3::1"), T0).await.unwrap(), None);
        assert_eq!(bucket_key(ip("::ffff:192.0.2.7")), "rate:192.0.2.7");
        assert_eq!(bucket_key(ip("2001:db8:1:2::1")), "rate:2001:db8:1:2::/64");
    }

    #[tokio::test]
    async fn disabled_never_limits() {
        let config = RateLimitConfig {
            enabled: false,
            burst: 1,
            ..RateLimitConfig::default()
        };
        let limiter = RateLimiter::new(config, Arc::new(MemoryStore::new("t")));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(limiter.take(ip, T0).await.unwrap(), None);
        }
    }
}
