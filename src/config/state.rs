//! `[state]`: where the shared state (replay marks, lockout counters, rate buckets) lives.
//! The stores themselves are built from it by `state::build`.

use serde::Deserialize;

use super::ConfigProblem;

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
    /// Live entries the in-memory store holds at most (default 200000,
    /// `state::memory::DEFAULT_MAX_ENTRIES`); when full it sheds the entries closest to expiry.
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
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Some(url) = &self.redis_url
            && let Err(e) = ::redis::Client::open(url.as_str())
        {
            problems.push(ConfigProblem::new(
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
            problems.push(ConfigProblem::new(
                "state.key_prefix",
                "empty or contains spaces",
                "use a short word such as \"fedsts\"",
            ));
        }
        if self
            .max_memory_entries
            .is_some_and(|max| !(1_000..=100_000_000).contains(&max))
        {
            problems.push(ConfigProblem::new(
                "state.max_memory_entries",
                "out of range",
                "use 1000..=100000000 (default 200000, about 60 MB)",
            ));
        }
        problems
    }
}
