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
//! - **locked** = `count ≥ t` and `now < last + w`: [`Lockout::reserve`] answers
//!   [`Verdict::Blocked`] in `enforce` mode (the caller sends the generic credential fault, padded
//!   to the time of a password check, and does not check the password) and
//!   [`Verdict::WouldBlock`] in `log_only` mode (the request goes on; the audit record says it
//!   would have been blocked).
//! - Attempts are counted **before** the password is checked, in one atomic step of the store
//!   ([`StateStore::count_attempt`]: a mutex in memory, one Lua script in Redis), and settled
//!   after it ([`Lockout::settle`]): a wrong password stays counted, an attempt that checked no
//!   password of an existing account (unknown user, directory down) is given back. So N guesses
//!   arriving at once reach the password check at most `t` times, across every instance that
//!   shares the store, and not N times.
//! - When `now ≥ last + w` one attempt is counted (`count + 1`, `last = now`), which locks the
//!   account for another window: one attempt per window, also when many arrive at that moment.
//! - A success resets the counter of the request's location class and adds its addresses to the
//!   familiar list (most recent first, at most `max_familiar_ips`).
//!
//! Each counter is its own key in the [`StateStore`]; the familiar list is one JSON value per
//! user, updated by compare-and-swap (only successes write it).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration as StdDuration;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::config::lockout::{LockoutConfig, Mode};
use crate::state::{AttemptCounter, AttemptRule, StateError, StateStore};

/// How long an untouched user record is kept (familiar IPs are forgotten after this).
const RECORD_TTL: Duration = Duration::days(30);
/// Compare-and-swap attempts before giving up (contention between instances).
const CAS_ATTEMPTS: usize = 8;

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

/// The answer of [`Lockout::reserve`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The attempt is counted: go on to the password check.
    Open,
    /// Locked (enforce mode): nothing counted; refuse with the generic credential fault and
    /// skip the password.
    Blocked,
    /// Locked, but `log_only`: the attempt is counted and goes on; the audit record says so.
    WouldBlock,
}

/// What a reservation found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    /// The request's location class for this user.
    pub location: Location,
    /// What to do.
    pub verdict: Verdict,
}

impl Check {
    /// Whether an attempt was counted (and must be settled with [`Lockout::settle`]).
    fn counted(&self) -> bool {
        self.verdict != Verdict::Blocked
    }
}

/// The outcome of a password check, as the lockout counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The password was right.
    Success,
    /// The account exists and the password was wrong: the reserved attempt stays counted.
    WrongPassword,
    /// No password of an existing account was checked (unknown user, directory down): the
    /// reserved attempt is given back.
    NotCounted,
}

/// One counter.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counter {
    /// Bad passwords counted.
    pub bad: u32,
    /// Unix time of the last bad password.
    pub last_bad: Option<i64>,
}

impl From<AttemptCounter> for Counter {
    fn from(counter: AttemptCounter) -> Self {
        Self {
            bad: counter.attempts,
            last_bad: counter.last.filter(|_| counter.attempts > 0),
        }
    }
}

/// What `fedsts lockout show` prints about one user.
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
    /// The counter of a location class.
    pub fn counter(&self, location: Location) -> &Counter {
        match location {
            Location::Familiar => &self.familiar,
            Location::Unfamiliar => &self.unfamiliar,
        }
    }
}

/// The stored familiar addresses of one user, most recent first (the counters live in their
/// own keys, counted atomically by the store; fields of older records are ignored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Familiar {
    #[serde(default)]
    familiar_ips: Vec<IpAddr>,
}

impl Familiar {
    fn location(&self, addresses: &[IpAddr]) -> Location {
        if !addresses.is_empty() && addresses.iter().all(|ip| self.familiar_ips.contains(ip)) {
            Location::Familiar
        } else {
            Location::Unfamiliar
        }
    }
}

/// Password checks remembered by the moving average of their time (weight 1/8 per sample).
const CHECK_TIME_WEIGHT: u64 = 8;
/// The typical password-check time assumed before any has been measured.
const DEFAULT_CHECK_TIME: StdDuration = StdDuration::from_millis(30);

/// The lockout policy over a state store.
#[derive(Clone, Debug)]
pub struct Lockout {
    config: LockoutConfig,
    store: Arc<dyn StateStore>,
    /// Moving average of measured password checks, in µs (0: none yet); shared by clones.
    check_micros: Arc<AtomicU64>,
}

fn user_key(username: &str) -> String {
    username.trim().to_lowercase()
}

fn key(username: &str) -> String {
    format!("lockout:{}", user_key(username))
}

fn counter_key(username: &str, location: Location) -> String {
    format!("lockout:bad:{}:{}", location.as_str(), user_key(username))
}

fn corrupt(e: serde_json::Error) -> StateError {
    StateError::Unavailable(format!("unreadable lockout record: {e}"))
}

impl Lockout {
    /// The policy `config` over `store`.
    pub fn new(config: LockoutConfig, store: Arc<dyn StateStore>) -> Self {
        Self {
            config,
            store,
            check_micros: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.config.mode
    }

    /// Whether `counter` locks at `now`.
    pub fn is_locked(&self, counter: &Counter, now: OffsetDateTime) -> bool {
        let counter = AttemptCounter {
            attempts: counter.bad,
            last: counter.last_bad,
        };
        counter.is_locked(
            self.config.threshold,
            self.config.window(),
            now.unix_timestamp(),
        )
    }

    fn rule(&self) -> AttemptRule {
        AttemptRule {
            limit: self.config.threshold,
            window: self.config.window(),
            ttl: RECORD_TTL,
            refuse_when_locked: self.config.mode == Mode::Enforce,
        }
    }

    async fn load(
        &self,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<(Option<String>, Familiar), StateError> {
        let raw = self.store.get(&key(username), now).await?;
        let record = match &raw {
            Some(text) => serde_json::from_str(text).map_err(corrupt)?,
            None => Familiar::default(),
        };
        Ok((raw, record))
    }

    async fn counter(
        &self,
        username: &str,
        location: Location,
        now: OffsetDateTime,
    ) -> Result<Counter, StateError> {
        let raw = self
            .store
            .get(&counter_key(username, location), now)
            .await?;
        Ok(raw
            .as_deref()
            .map(AttemptCounter::parse)
            .unwrap_or_default()
            .into())
    }

    /// The stored record of `username` (empty when none).
    pub async fn show(
        &self,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<UserRecord, StateError> {
        Ok(UserRecord {
            familiar: self.counter(username, Location::Familiar, now).await?,
            unfamiliar: self.counter(username, Location::Unfamiliar, now).await?,
            familiar_ips: self.load(username, now).await?.1.familiar_ips,
        })
    }

    /// Before the password check: counts the attempt of `username` from `addresses` in one
    /// atomic step of the store, or refuses it when the account is locked. Counting first
    /// means that however many guesses arrive at once, at most `threshold` of them (then one
    /// per window) get to the password check. Settle every counted attempt with
    /// [`Lockout::settle`].
    pub async fn reserve(
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
        let location = self.load(username, now).await?.1.location(addresses);
        let count = self
            .store
            .count_attempt(&counter_key(username, location), &self.rule(), now)
            .await?;
        let verdict = match (count.counted, count.was_locked) {
            (false, _) => Verdict::Blocked,
            (true, true) => Verdict::WouldBlock,
            (true, false) => Verdict::Open,
        };
        Ok(Check { location, verdict })
    }

    /// After the password check: keeps a wrong password counted, gives back an attempt that
    /// checked no password, or (success) clears the counter and learns familiar addresses.
    pub async fn settle(
        &self,
        username: &str,
        addresses: &[IpAddr],
        check: &Check,
        attempt: Attempt,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        if self.config.mode == Mode::Off || !check.counted() {
            return Ok(());
        }
        let counter = counter_key(username, check.location);
        match attempt {
            Attempt::WrongPassword => Ok(()),
            Attempt::NotCounted => {
                self.store
                    .give_back_attempt(&counter, RECORD_TTL, now)
                    .await
            }
            Attempt::Success => {
                self.store.delete(&counter).await?;
                self.learn(username, addresses, now).await
            }
        }
    }

    /// Puts `addresses` first on the familiar list of `username` (compare-and-swap, retried
    /// when another request or instance changed the list meanwhile).
    async fn learn(
        &self,
        username: &str,
        addresses: &[IpAddr],
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        for _ in 0..CAS_ATTEMPTS {
            let (raw, mut record) = self.load(username, now).await?;
            for ip in addresses.iter().rev() {
                record.familiar_ips.retain(|known| known != ip);
                record.familiar_ips.insert(0, *ip);
            }
            record.familiar_ips.truncate(self.config.max_familiar_ips);
            let new = serde_json::to_string(&record).map_err(corrupt)?;
            if raw.as_deref() == Some(new.as_str())
                || self
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

    /// Clears both counters of `username` (familiar IPs are kept).
    pub async fn reset(&self, username: &str, _now: OffsetDateTime) -> Result<(), StateError> {
        for location in [Location::Familiar, Location::Unfamiliar] {
            self.store.delete(&counter_key(username, location)).await?;
        }
        Ok(())
    }

    /// Adds one measured password check to the moving average that [`Lockout::pad_refusal`]
    /// waits for.
    pub fn note_check_time(&self, took: StdDuration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .check_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |average| {
                Some(if average == 0 {
                    sample
                } else {
                    average - average / CHECK_TIME_WEIGHT + sample / CHECK_TIME_WEIGHT
                })
            });
    }

    /// The typical time of a password check (moving average of measured ones).
    pub fn typical_check_time(&self) -> StdDuration {
        match self.check_micros.load(Ordering::Relaxed) {
            0 => DEFAULT_CHECK_TIME,
            micros => StdDuration::from_micros(micros),
        }
    }

    /// Waits (a timer, no CPU) until a refusal that skipped the password check, begun at
    /// `started`, has taken as long as a typical check, so that a locked account does not
    /// answer faster than a wrong password.
    pub async fn pad_refusal(&self, started: std::time::Instant) {
        let target = started + self.typical_check_time();
        tokio::time::sleep_until(target.into()).await;
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

    /// Reserves an attempt and settles it as `attempt`; the verdict of the reservation.
    async fn attempt(l: &Lockout, from: IpAddr, attempt: Attempt, at: OffsetDateTime) -> Check {
        let check = l.reserve(USER, &[from], at).await.unwrap();
        l.settle(USER, &[from], &check, attempt, at).await.unwrap();
        check
    }

    async fn fail(l: &Lockout, from: IpAddr, at: OffsetDateTime) -> Verdict {
        attempt(l, from, Attempt::WrongPassword, at).await.verdict
    }

    #[tokio::test]
    async fn spray_locks_unfamiliar_but_not_familiar() {
        let l = lockout(Mode::Enforce);
        let home = ip(1);
        attempt(&l, home, Attempt::Success, T0).await;
        for n in 10..13 {
            assert_eq!(fail(&l, ip(n), T0).await, Verdict::Open);
        }
        let spray = attempt(&l, ip(99), Attempt::WrongPassword, T0).await;
        assert_eq!(
            spray,
            Check {
                location: Location::Unfamiliar,
                verdict: Verdict::Blocked
            }
        );
        let user = attempt(&l, home, Attempt::Success, T0).await;
        assert_eq!(
            user,
            Check {
                location: Location::Familiar,
                verdict: Verdict::Open
            }
        );
        // Familiar only if every presented address is familiar.
        let mixed = l.reserve(USER, &[home, ip(50)], T0).await.unwrap();
        assert_eq!(mixed.location, Location::Unfamiliar);
        let shown = l.show("alice@example.com", T0).await.unwrap();
        assert_eq!(shown.unfamiliar.bad, 3);
        assert_eq!(shown.familiar.bad, 0);
        assert_eq!(shown.familiar_ips, vec![home]);
    }

    #[tokio::test]
    async fn attempts_are_counted_before_the_check_and_given_back_when_none_was_made() {
        let l = lockout(Mode::Enforce);
        // Three reservations in flight at once: the fourth is refused before any is settled.
        let checks = [
            l.reserve(USER, &[ip(9)], T0).await.unwrap(),
            l.reserve(USER, &[ip(9)], T0).await.unwrap(),
            l.reserve(USER, &[ip(9)], T0).await.unwrap(),
        ];
        assert!(checks.iter().all(|c| c.verdict == Verdict::Open));
        let fourth = l.reserve(USER, &[ip(9)], T0).await.unwrap();
        assert_eq!(fourth.verdict, Verdict::Blocked);
        l.settle(USER, &[ip(9)], &fourth, Attempt::NotCounted, T0)
            .await
            .unwrap();
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 3);
        // Two of them checked no password (directory down): given back, two more may try.
        for check in &checks[..2] {
            l.settle(USER, &[ip(9)], check, Attempt::NotCounted, T0)
                .await
                .unwrap();
        }
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 1);
        assert_eq!(fail(&l, ip(9), T0).await, Verdict::Open);
        assert_eq!(fail(&l, ip(9), T0).await, Verdict::Open);
        assert_eq!(fail(&l, ip(9), T0).await, Verdict::Blocked);
    }

    #[tokio::test]
    async fn one_attempt_per_window_while_locked() {
        let l = lockout(Mode::Enforce);
        for _ in 0..3 {
            fail(&l, ip(9), T0).await;
        }
        let at = |secs| T0 + Duration::seconds(secs);
        assert_eq!(fail(&l, ip(9), at(599)).await, Verdict::Blocked);
        assert_eq!(fail(&l, ip(9), at(600)).await, Verdict::Open);
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 4);
        // At the window's end only one of several simultaneous attempts is counted.
        assert_eq!(fail(&l, ip(9), at(600)).await, Verdict::Blocked);
        assert_eq!(fail(&l, ip(9), at(601)).await, Verdict::Blocked);
        attempt(&l, ip(9), Attempt::Success, at(1200)).await;
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
        assert_eq!(fail(&l, ip(9), T0).await, Verdict::WouldBlock);
        assert_eq!(l.show(USER, T0).await.unwrap().unfamiliar.bad, 6);
        l.reset(USER, T0).await.unwrap();
        assert_eq!(l.show(USER, T0).await.unwrap(), UserRecord::default());
        assert_eq!(fail(&l, ip(9), T0).await, Verdict::Open);
    }

    #[tokio::test]
    async fn familiar_list_is_bounded_most_recent_first() {
        let l = lockout(Mode::Enforce);
        for n in 1..=3 {
            attempt(&l, ip(n), Attempt::Success, T0).await;
        }
        assert_eq!(
            l.show(USER, T0).await.unwrap().familiar_ips,
            vec![ip(3), ip(2)]
        );
    }

    #[test]
    fn typical_check_time_follows_measured_checks() {
        let l = lockout(Mode::Enforce);
        assert_eq!(l.typical_check_time(), DEFAULT_CHECK_TIME);
        l.note_check_time(StdDuration::from_millis(80));
        assert_eq!(l.typical_check_time(), StdDuration::from_millis(80));
        for _ in 0..100 {
            l.note_check_time(StdDuration::from_millis(20));
        }
        let typical = l.typical_check_time().as_millis();
        assert!((19..=21).contains(&typical), "{typical}");
    }
}
