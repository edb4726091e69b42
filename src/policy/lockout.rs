//! Extranet smart lockout, with the semantics of ADFS Extranet Smart Lockout (ESL).
//!
//! Each user has two bad-password counters, one for **familiar** and one for **unfamiliar**
//! locations, and a list of familiar IPs learned from successful sign-ins. A request is familiar
//! only if every address it presents (socket peer and believed forwarded addresses) is on the
//! user's list. The counters are independent: a password spray from unfamiliar addresses locks
//! the unfamiliar counter, while the user keeps signing in from a familiar one.
//!
//! One counter (per location class), `t` = threshold, `w` = observation window:
//!
//! ```text
//!            bad password (count+1, last=now)          bad password, count+1 = t
//!   ┌────────┐ ─────────────────────────────► ┌──────────┐ ──────────────────────► ┌────────┐
//!   │ clean  │                                │ counting │                         │ locked │
//!   └────────┘ ◄───────────────────────────── └──────────┘                         └────────┘
//!      ▲   ▲        success (count=0)            │  bad password after now ≥ last+w     │  │
//!      │   │                                     │  restarts the count at 1            │  │
//!      │   └──── success (count=0) ──────────────┼─────────────────────────────────────┘  │
//!      │                                         │   (only reachable once now ≥ last+w:   │
//!      │                                         │    one attempt per window)             │
//!      └──── `fedsts lockout reset` ─────────────┴────────────────────────────────────────┘
//! ```
//!
//! - **locked** = `count ≥ t` and `now < last + w`: [`Lockout::check`] answers
//!   [`Verdict::Blocked`] in `enforce` mode (the caller sends the generic credential fault and
//!   does not check the password) and [`Verdict::WouldBlock`] in `log_only` mode (the request
//!   goes on; the audit record says it would have been blocked).
//! - When `now ≥ last + w` one attempt is allowed; if it fails, `count` grows and `last = now`,
//!   so the account is locked for another window.
//! - Only wrong passwords of existing accounts are counted ([`Lockout::record`] with
//!   [`Attempt::WrongPassword`]); unknown users leave no state.
//! - A success resets the counter of the request's location class and adds its addresses to the
//!   familiar list (most recent first, at most `max_familiar_ips`).
//!
//! The record is one JSON value per user in the [`StateStore`], updated by compare-and-swap so
//! that several instances count together.

use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::config::ConfigProblem;
use crate::state::{StateError, StateStore};

/// How long an untouched user record is kept (familiar IPs are forgotten after this).
const RECORD_TTL: Duration = Duration::days(30);
/// Compare-and-swap attempts before giving up (contention between instances).
const CAS_ATTEMPTS: usize = 8;

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

    fn window(&self) -> Duration {
        Duration::seconds(i64::try_from(self.observation_window_secs).unwrap_or(i64::MAX))
    }
}

/// Whether a request comes from a familiar location of the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Location {
    /// Every presented address is on the user's familiar list.
    Familiar,
    /// At least one presented address is not.
    Unfamiliar,
}

impl Location {
    /// The value in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Location::Familiar => "familiar",
            Location::Unfamiliar => "unfamiliar",
        }
    }
}

/// The answer of [`Lockout::check`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go on to the password check.
    Open,
    /// Locked (enforce mode): refuse with the generic credential fault, skip the password.
    Blocked,
    /// Locked, but `log_only`: go on, and say so in the audit record.
    WouldBlock,
}

/// What a check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The request's location class for this user.
    pub location: Location,
    /// What to do.
    pub verdict: Verdict,
}

/// The outcome of a password check, as the lockout counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The password was right.
    Success,
    /// The account exists and the password was wrong.
    WrongPassword,
}

/// One counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Bad passwords counted.
    pub bad: u32,
    /// Unix time of the last bad password.
    pub last_bad: Option<i64>,
}

/// The stored record of one user (`fedsts lockout show` prints it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Counter for familiar locations.
    pub familiar: Counter,
    /// Counter for unfamiliar locations.
    pub unfamiliar: Counter,
    /// Familiar addresses, most recent first.
    pub familiar_ips: Vec<IpAddr>,
}

impl UserRecord {
    fn location(&self, addresses: &[IpAddr]) -> Location {
        if !addresses.is_empty() && addresses.iter().all(|ip| self.familiar_ips.contains(ip)) {
            Location::Familiar
        } else {
            Location::Unfamiliar
        }
    }

    fn counter_mut(&mut self, location: Location) -> &mut Counter {
        match location {
            Location::Familiar => &mut self.familiar,
            Location::Unfamiliar => &mut self.unfamiliar,
        }
    }

    /// The counter of a location class.
    pub fn counter(&self, location: Location) -> &Counter {
        match location {
            Location::Familiar => &self.familiar,
            Location::Unfamiliar => &self.unfamiliar,
        }
    }
}

/// The lockout policy over a state store.
#[derive(Clone, Debug)]
pub struct Lockout {
    config: LockoutConfig,
    store: Arc<dyn StateStore>,
}

fn key(username: &str) -> String {
    format!("lockout:{}", username.trim().to_lowercase())
}

fn corrupt(e: serde_json::Error) -> StateError {
    StateError::Unavailable(format!("unreadable lockout record: {e}"))
}

impl Lockout {
    /// The policy `config` over `store`.
    pub fn new(config: LockoutConfig, store: Arc<dyn StateStore>) -> Self {
        Self { config, store }
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// Whether `counter` locks at `now`.
    pub fn is_locked(&self, counter: &Counter, now: OffsetDateTime) -> bool {
        counter.bad >= self.config.threshold
            && counter.last_bad.is_some_and(|last| {
                now.unix_timestamp() < last + self.config.window().whole_seconds()
            })
    }

    async fn load(
        &self,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<(Option<String>, UserRecord), StateError> {
        let raw = self.store.get(&key(username), now).await?;
        let record = match &raw {
            Some(text) => serde_json::from_str(text).map_err(corrupt)?,
            None => UserRecord::default(),
        };
        Ok((raw, record))
    }

    /// The stored record of `username` (empty when none).
    pub async fn show(
        &self,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<UserRecord, StateError> {
        Ok(self.load(username, now).await?.1)
    }

    /// Before the password check: may `username` try from `addresses` now?
    pub async fn check(
        &self,
        username: &str,
        addresses: &[IpAddr],
        now: OffsetDateTime,
    ) -> Result<Check, StateError> {
        if self.config.mode == Mode::Off {
            return Ok(Check {
                location: Location::Unfamiliar,
                verdict: Verdict::Open,
            });
        }
        let (_, record) = self.load(username, now).await?;
        let location = record.location(addresses);
        let verdict = match (
            self.is_locked(record.counter(location), now),
            self.config.mode,
        ) {
            (false, _) => Verdict::Open,
            (true, Mode::LogOnly) => Verdict::WouldBlock,
            (true, _) => Verdict::Blocked,
        };
        Ok(Check { location, verdict })
    }

    /// After the password check: counts a wrong password or learns familiar addresses.
    pub async fn record(
        &self,
        username: &str,
        addresses: &[IpAddr],
        attempt: Attempt,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        if self.config.mode == Mode::Off {
            return Ok(());
        }
        self.update(username, now, |record| {
            self.apply(record, addresses, attempt, now);
            true
        })
        .await
    }

    /// Read-modify-write of a user's record with compare-and-swap, retried when another
    /// request (or instance) changed it meanwhile; `change` returns false to leave it alone.
    async fn update(
        &self,
        username: &str,
        now: OffsetDateTime,
        change: impl Fn(&mut UserRecord) -> bool,
    ) -> Result<(), StateError> {
        for _ in 0..CAS_ATTEMPTS {
            let (raw, mut record) = self.load(username, now).await?;
            if !change(&mut record) {
                return Ok(());
            }
            let new = serde_json::to_string(&record).map_err(corrupt)?;
            if self
                .store
                .compare_and_swap(&key(username), raw.as_deref(), &new, RECORD_TTL, now)
                .await?
            {
                return Ok(());
            }
        }
        Err(StateError::Unavailable(
            "lockout record kept changing under us".into(),
        ))
    }

    fn apply(
        &self,
        record: &mut UserRecord,
        addresses: &[IpAddr],
        attempt: Attempt,
        now: OffsetDateTime,
    ) {
        let location = record.location(addresses);
        match attempt {
            Attempt::WrongPassword => {
                let window = self.config.window().whole_seconds();
                let threshold = self.config.threshold;
                let counter = record.counter_mut(location);
                let stale = counter
                    .last_bad
                    .is_none_or(|last| now.unix_timestamp() >= last + window);
                counter.bad = if stale && counter.bad < threshold {
                    1
                } else {
                    counter.bad.saturating_add(1)
                };
                counter.last_bad = Some(now.unix_timestamp());
            }
            Attempt::Success => {
                *record.counter_mut(location) = Counter::default();
                for ip in addresses.iter().rev() {
                    record.familiar_ips.retain(|known| known != ip);
                    record.familiar_ips.insert(0, *ip);
                }
                record.familiar_ips.truncate(self.config.max_familiar_ips);
            }
        }
    }

    /// Clears both counters of `username` (familiar IPs are kept).
    pub async fn reset(&self, username: &str, now: OffsetDateTime) -> Result<(), StateError> {
        self.update(username, now, |record| {
            let stored = *record != UserRecord::default();
            record.familiar = Counter::default();
            record.unfamiliar = Counter::default();
            stored
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);
    const USER: &str = "Alice@Example.com";

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([198, 51, 100, last])
    }

    fn lockout(mode: Mode) -> Lockout {
        let config = LockoutConfig {
            mode,
            threshold: 3,
            observation_window_secs: 600,
            max_familiar_ips: 2,
        };
        Lockout::new(config, Arc::new(MemoryStore::new("t")))
    }

    async fn fail(l: &Lockout, from: IpAddr, at: OffsetDateTime) {
        l.record(USER, &[from], Attempt::WrongPassword, at)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn spray_locks_unfamiliar_but_not_familiar() {
        let l = lockout(Mode::Enforce);
        let home = ip(1);
        l.record(USER, &[home], Attempt::Success, T0).await.unwrap();
        for n in 10..13 {
            assert_eq!(
                l.check(USER, &[ip(n)], T0).await.unwrap().verdict,
                Verdict::Open
            );
            fail(&l, ip(n), T0).await;
        }
        let spray = l.check(USER, &[ip(99)], T0).await.unwrap();
        assert_eq!(
            spray,
            Check {
                location: Location::Unfamiliar,
                verdict: Verdict::Blocked
            }
        );
        let user = l.check(USER, &[home], T0).await.unwrap();
        assert_eq!(
            user,
            Check {
                location: Location::Familiar,
                verdict: Verdict::Open
            }
        );
        // Familiar only if every presented address is familiar.
        let mixed = l.check(USER, &[home, ip(50)], T0).await.unwrap();
        assert_eq!(mixed.location, Location::Unfamiliar);
        let shown = l.show("alice@example.com", T0).await.unwrap();
        assert_eq!(shown.unfamiliar.bad, 3);
        assert_eq!(shown.familiar.bad, 0);
        assert_eq!(shown.familiar_ips, vec![home]);
    }

    #[tokio::test]
    async fn one_attempt_per_window_while_locked() {
        let l = lockout(Mode::Enforce);
        for _ in 0..3 {
            fail(&l, ip(9), T0).await;
        }
        let at = |secs| T0 + Duration::seconds(secs);
        assert_eq!(
            l.check(USER, &[ip(9)], at(599)).await.unwrap().verdict,
            Verdict::Blocked
        );
        assert_eq!(
            l.check(USER, &[ip(9)], at(600)).await.unwrap().verdict,
            Verdict::Open
        );
        fail(&l, ip(9), at(600)).await;
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 4);
        assert_eq!(
            l.check(USER, &[ip(9)], at(601)).await.unwrap().verdict,
            Verdict::Blocked
        );
        assert_eq!(
            l.check(USER, &[ip(9)], at(1200)).await.unwrap().verdict,
            Verdict::Open
        );
        l.record(USER, &[ip(9)], Attempt::Success, at(1200))
            .await
            .unwrap();
        let record = l.show(USER, T0).await.unwrap();
        assert_eq!(record.unfamiliar, Counter::default());
        assert_eq!(record.familiar_ips, vec![ip(9)]);
    }

    #[tokio::test]
    async fn counting_restarts_after_a_quiet_window() {
        let l = lockout(Mode::Enforce);
        fail(&l, ip(9), T0).await;
        fail(&l, ip(9), T0).await;
        fail(&l, ip(9), T0 + Duration::seconds(600)).await;
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 1);
    }

    #[tokio::test]
    async fn log_only_counts_without_blocking_and_reset_clears() {
        let l = lockout(Mode::LogOnly);
        for _ in 0..5 {
            fail(&l, ip(9), T0).await;
        }
        assert_eq!(
            l.check(USER, &[ip(9)], T0).await.unwrap().verdict,
            Verdict::WouldBlock
        );
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 5);
        l.reset(USER, T0).await.unwrap();
        assert_eq!(
            l.check(USER, &[ip(9)], T0).await.unwrap().verdict,
            Verdict::Open
        );
        assert_eq!(l.show(USER, T0).await.unwrap(), UserRecord::default());
    }

    #[tokio::test]
    async fn familiar_list_is_bounded_most_recent_first() {
        let l = lockout(Mode::Enforce);
        for n in 1..=3 {
            l.record(USER, &[ip(n)], Attempt::Success, T0)
                .await
                .unwrap();
        }
        assert_eq!(
            l.show(USER, T0).await.unwrap().familiar_ips,
            vec![ip(3), ip(2)]
        );
    }

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
