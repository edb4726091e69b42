//! `[apps.rollover]`: when an app's token-signing certificate is renewed by itself (the
//! timeline that acts on it is `autoroll`).

use serde::Deserialize;

use super::ConfigProblem;

/// `[apps.rollover]`: when the token-signing certificate is renewed by itself.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverConfig {
    /// On or off; absent: on for a self-made certificate (subject CN starting with
    /// `fedsts token signing`), off for any other.
    #[serde(default)]
    pub auto: Option<bool>,
    /// Days before the current certificate expires that the next pair is made.
    #[serde(default = "default_lead_days")]
    pub lead_days: u32,
    /// Days the next certificate is published before it signs.
    #[serde(default = "default_promote_after_days")]
    pub promote_after_days: u32,
    /// Days the previous certificate stays published after promotion.
    #[serde(default = "default_grace_days")]
    pub grace_days: u32,
}

/// Days before expiry a next pair is made when the app does not say (ADFS: 20).
pub const DEFAULT_LEAD_DAYS: u32 = 20;
/// Days the next pair is published before it is promoted (ADFS: 5).
pub const DEFAULT_PROMOTE_AFTER_DAYS: u32 = 5;
/// Days the previous certificate stays published after promotion.
pub const DEFAULT_GRACE_DAYS: u32 = 5;

impl Default for RolloverConfig {
    fn default() -> Self {
        Self {
            auto: None,
            lead_days: DEFAULT_LEAD_DAYS,
            promote_after_days: DEFAULT_PROMOTE_AFTER_DAYS,
            grace_days: DEFAULT_GRACE_DAYS,
        }
    }
}

impl RolloverConfig {
    /// Problems of `apps[index].rollover`.
    pub fn problems(&self, index: usize) -> Vec<ConfigProblem> {
        let key = |field: &str| format!("apps[{index}].self.{field}");
        let mut problems = Vec::new();
        if self.lead_days == 0 || self.lead_days > 365 {
            problems.push(ConfigProblem::new(
                key("lead_days"),
                format!("{} is out of range", self.lead_days),
                "use 1..=365 days (20 is the ADFS default)",
            ));
        }
        if self.promote_after_days >= self.lead_days {
            problems.push(ConfigProblem::new(
                key("promote_after_days"),
                format!(
                    "{} is not less than lead_days ({})",
                    self.promote_after_days, self.lead_days
                ),
                "promote before the current certificate expires: e.g. lead_days = 20, promote_after_days = 5",
            ));
        }
        if self.grace_days > 365 {
            problems.push(ConfigProblem::new(
                key("grace_days"),
                format!("{} is out of range", self.grace_days),
                "use 0..=365 days",
            ));
        }
        problems
    }
}

fn default_lead_days() -> u32 {
    DEFAULT_LEAD_DAYS
}

fn default_promote_after_days() -> u32 {
    DEFAULT_PROMOTE_AFTER_DAYS
}

fn default_grace_days() -> u32 {
    DEFAULT_GRACE_DAYS
}
