//! TOTP protection over the [`StateStore`], so several instances enforce it together:
//!
//! - **Reuse marks**: a code is good once. Spending the code of step `s` sets the mark of `s`
//!   with "set if absent" (Redis `SET NX PX`), and marks the earlier steps of the drift window
//!   too, so an older code seen over the user's shoulder is refused as well. Marks live as long
//!   as a code of their step can be accepted.
//! - **Wrong-code counter**: a separate small counter per user, not the lockout's bad-password
//!   counters. The attacker at the TOTP step already knows the password, and every correct
//!   password resets the lockout counter of its location class, so counting wrong codes there
//!   would let them try [`MAX_WRONG_CODES`] − 1 codes per password sign-in without end. This
//!   counter is reset only by a correct code (or when [`WRONG_CODE_WINDOW`] passes without a
//!   wrong code), and works whatever `lockout.mode` says. Each code is counted before it is
//!   checked, in one atomic step of the store (a Lua script in Redis), so a burst of codes at
//!   once is checked at most [`MAX_WRONG_CODES`] times and never turns into contention errors. With 3 codes accepted out of 10⁶ (drift
//!   window) and 5 guesses per 30 minutes, a guesser needs about 1 400 days on average, and
//!   every wrong code is an audit record.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::state::{AttemptCounter, AttemptRule, StateError, StateStore};
use crate::totp::{DRIFT_STEPS, STEP_SECS};

/// Wrong codes per user before the TOTP step refuses every code until the window passes.
pub const MAX_WRONG_CODES: u32 = 5;
/// How long wrong codes are remembered after the last one.
pub const WRONG_CODE_WINDOW: Duration = Duration::minutes(30);

/// Reuse marks and wrong-code counters of TOTP codes.
#[derive(Clone, Debug)]
pub struct TotpGuard {
    store: Arc<dyn StateStore>,
}

fn user_key(user: &str) -> String {
    user.trim().to_lowercase()
}

fn mark_key(user: &str, step: i64) -> String {
    format!("totp:used:{}:{step}", user_key(user))
}

fn wrong_key(user: &str) -> String {
    format!("totp:wrong:{}", user_key(user))
}

/// How long the mark of a step must live: until no clock in the drift window accepts it.
fn mark_ttl() -> Duration {
    Duration::seconds(STEP_SECS * (2 * DRIFT_STEPS + 2))
}

impl TotpGuard {
    /// The guard over `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }

    /// Records that `user` spent the code of `step`. False when that step was already spent (or
    /// a later step, whose spending marked this one): the code is a replay.
    pub async fn first_use(
        &self,
        user: &str,
        step: i64,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        let fresh = self
            .store
            .set_if_absent(&mark_key(user, step), "1", mark_ttl(), now)
            .await?;
        if fresh {
            for older in step - DRIFT_STEPS..step {
                self.store
                    .set_if_absent(&mark_key(user, older), "1", mark_ttl(), now)
                    .await?;
            }
        }
        Ok(fresh)
    }

    /// Counts a code of `user` before it is checked, in one atomic step of the store; false
    /// when the wrong codes of the window are used up (refuse without checking). However many
    /// codes arrive at once, at most [`MAX_WRONG_CODES`] per window are checked. A correct code
    /// clears the count ([`TotpGuard::clear_wrong`]); a code that could not be checked is
    /// given back ([`TotpGuard::give_back`]).
    pub async fn reserve(&self, user: &str, now: OffsetDateTime) -> Result<bool, StateError> {
        let rule = AttemptRule {
            limit: MAX_WRONG_CODES,
            window: WRONG_CODE_WINDOW,
            ttl: WRONG_CODE_WINDOW,
            refuse_when_locked: true,
        };
        Ok(self
            .store
            .count_attempt(&wrong_key(user), &rule, now)
            .await?
            .counted)
    }

    /// Gives back a code counted by [`TotpGuard::reserve`] that was never checked.
    pub async fn give_back(&self, user: &str, now: OffsetDateTime) -> Result<(), StateError> {
        self.store
            .give_back_attempt(&wrong_key(user), WRONG_CODE_WINDOW, now)
            .await
    }

    /// Codes of `user` counted in the current window (wrong, replayed, or not yet settled).
    pub async fn wrong_codes(&self, user: &str, now: OffsetDateTime) -> Result<u32, StateError> {
        let raw = self.store.get(&wrong_key(user), now).await?;
        Ok(raw
            .as_deref()
            .map(AttemptCounter::parse)
            .unwrap_or_default()
            .attempts)
    }

    /// Forgets the wrong codes of `user` (after a correct code).
    pub async fn clear_wrong(&self, user: &str) -> Result<(), StateError> {
        self.store.delete(&wrong_key(user)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn guard() -> TotpGuard {
        TotpGuard::new(Arc::new(MemoryStore::new("t")))
    }

    #[tokio::test]
    async fn replayed_and_older_steps_are_refused() {
        let guard = guard();
        assert!(guard.first_use("Alice@example.com", 100, T0).await.unwrap());
        assert!(!guard.first_use("alice@example.com", 100, T0).await.unwrap());
        assert!(!guard.first_use("alice@example.com", 99, T0).await.unwrap());
        assert!(guard.first_use("alice@example.com", 101, T0).await.unwrap());
        assert!(guard.first_use("bob@example.com", 100, T0).await.unwrap());
        let later = T0 + mark_ttl();
        assert!(
            guard
                .first_use("alice@example.com", 101, later)
                .await
                .unwrap(),
            "marks expire once no clock accepts their step"
        );
    }

    #[tokio::test]
    async fn codes_are_counted_before_the_check_and_a_correct_code_clears_them() {
        let guard = guard();
        for n in 0..MAX_WRONG_CODES {
            assert!(guard.reserve("alice@example.com", T0).await.unwrap(), "{n}");
        }
        assert!(!guard.reserve("ALICE@example.com", T0).await.unwrap());
        assert_eq!(
            guard.wrong_codes("alice@example.com", T0).await.unwrap(),
            MAX_WRONG_CODES
        );
        guard.give_back("alice@example.com", T0).await.unwrap();
        assert!(guard.reserve("alice@example.com", T0).await.unwrap());
        let after = T0 + WRONG_CODE_WINDOW;
        assert!(guard.reserve("alice@example.com", after).await.unwrap());
        guard.clear_wrong("alice@example.com").await.unwrap();
        assert_eq!(guard.wrong_codes("alice@example.com", T0).await.unwrap(), 0);
    }
}
