//! Per-client-IP token buckets on the active endpoints: `burst` requests at once, refilled at
//! `requests_per_minute`. An empty bucket answers HTTP 429 with `Retry-After` (or, configured,
//! a `RequestFailed` SOAP fault). Buckets live in the [`StateStore`], so several instances
//! share them, and a token is taken in one atomic store step ([`StateStore::take_token`]), so
//! a burst takes at most `burst` tokens and contention never fails a request. An IPv4 address
//! has its own bucket; IPv6 addresses share one per /64 ([`subscriber_address`]).

use std::net::IpAddr;
use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use super::subscriber_address;
use crate::config::ratelimit::{RateLimitConfig, Response};
use crate::state::{StateError, StateStore, TokenBucket, TokenRule};

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

/// The state key of the bucket `ip` draws from (see [`subscriber_address`]).
fn bucket_key(ip: IpAddr) -> String {
    match subscriber_address(ip) {
        IpAddr::V4(v4) => format!("rate:{v4}"),
        IpAddr::V6(network) => format!("rate:{network}/64"),
    }
}

impl RateLimiter {
    /// Buckets per `config` over `store`.
    pub fn new(config: RateLimitConfig, store: Arc<dyn StateStore>) -> Self {
        Self { config, store }
    }

    fn rule(&self) -> TokenRule {
        let per_minute = i64::from(self.config.requests_per_minute.max(1));
        TokenRule {
            capacity: self.config.burst,
            per_minute: self.config.requests_per_minute,
            ttl: Duration::seconds(i64::from(self.config.burst) * 60 / per_minute + 60),
        }
    }

    fn retry_after(&self, bucket: TokenBucket) -> u64 {
        let missing = 1000u64.saturating_sub(bucket.milli_tokens);
        let per_minute = u64::from(self.config.requests_per_minute).max(1);
        (missing * 60).div_ceil(per_minute * 1000).max(1)
    }

    /// Takes one token for `ip` in one atomic store operation, so that a burst from one
    /// address is never refused for contention; `Some` when the bucket is empty.
    pub async fn take(
        &self,
        ip: IpAddr,
        now: OffsetDateTime,
    ) -> Result<Option<Limited>, StateError> {
        if !self.config.enabled {
            return Ok(None);
        }
        let take = self
            .store
            .take_token(&bucket_key(ip), &self.rule(), now)
            .await?;
        Ok((!take.taken).then(|| Limited {
            retry_after_secs: self.retry_after(take.bucket),
            response: self.config.response,
        }))
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
