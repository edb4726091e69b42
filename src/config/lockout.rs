//! `[lockout]`: extranet smart lockout's mode, threshold and window (the policy itself is
//! `policy::lockout`).

use serde::Deserialize;
use time::Duration;

use super::ConfigProblem;

/// `lockout.mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// No counting, no blocking.
    Off,
    /// Count and log what would be blocked, block nothing (run this for a few days first).
    LogOnly,
    /// Count and block.
    Enforce,
}

/// `[lockout]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockoutConfig {
    /// `off`, `log_only` or `enforce` (default).
    #[serde(default = "default_mode")]
    pub mode: Mode,
    /// Bad passwords per location class that lock (default 10; keep it below the directory's own
    /// lockout threshold).
    #[serde(default = "default_threshold")]
    pub threshold: u32,
    /// Observation window in seconds (default 1800).
    #[serde(default = "default_window")]
    pub observation_window_secs: u64,
    /// Familiar IPs remembered per user (default 20).
    #[serde(default = "default_familiar")]
    pub max_familiar_ips: usize,
}

fn default_mode() -> Mode {
    Mode::Enforce
}
fn default_threshold() -> u32 {
    10
}
fn default_window() -> u64 {
    1800
}
fn default_familiar() -> usize {
    20
}

impl Default for LockoutConfig {
    fn default() -> Self {
        Self {
            mode: default_mode(),
            threshold: default_threshold(),
            observation_window_secs: default_window(),
            max_familiar_ips: default_familiar(),
        }
    }
}

impl LockoutConfig {
    /// Problems of `[lockout]`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.threshold == 0 || self.threshold > 1000 {
            problems.push(ConfigProblem::new(
                "lockout.threshold",
                format!("{} is out of range", self.threshold),
                "use 1..=1000 (ADFS recommends 10, below the directory's own threshold), or mode = \"off\"",
            ));
        }
        if self.observation_window_secs == 0 || self.observation_window_secs > 86_400 {
            problems.push(ConfigProblem::new(
                "lockout.observation_window_secs",
                format!("{} is out of range", self.observation_window_secs),
                "use 1..=86400 seconds (1800 is the ADFS recommendation)",
            ));
        }
        if self.max_familiar_ips == 0 || self.max_familiar_ips > 1000 {
            problems.push(ConfigProblem::new(
                "lockout.max_familiar_ips",
                format!("{} is out of range", self.max_familiar_ips),
                "use 1..=1000 (default 20)",
            ));
        }
        problems
    }

    /// The observation window as a duration.
    pub fn window(&self) -> Duration {
        Duration::seconds(i64::try_from(self.observation_window_secs).unwrap_or(i64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_problems_name_keys() {
        let bad = LockoutConfig {
            mode: Mode::Enforce,
            threshold: 0,
            observation_window_secs: 0,
            max_familiar_ips: 0,
        };
        let keys: Vec<String> = bad.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "lockout.threshold",
                "lockout.observation_window_secs",
                "lockout.max_familiar_ips"
            ]
        );
        assert!(LockoutConfig::default().problems().is_empty());
    }
}
