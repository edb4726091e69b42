//! `[rate_limit]`: the per-client-IP token buckets' size, refill rate and answer (the buckets
//! themselves are `policy::ratelimit`).

use serde::Deserialize;

use super::ConfigProblem;

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
