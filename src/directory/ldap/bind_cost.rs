//! What a password check costs in one LDAP directory, so that an unknown user is not refused
//! faster than a wrong password there. Active Directory answers a bind to a name it does not
//! know (525) without checking the password, so the absent-DN bind alone is cheaper than a real
//! one; each directory keeps its own estimate (two apps' directories can differ by far).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Weight of the newest sample in the moving average (1/8).
const WEIGHT: u64 = 8;

/// Moving average of the measured password checks (wrong password or success) of one directory.
#[derive(Debug, Default)]
pub(super) struct BindCost {
    /// Average in microseconds; 0 until the first measured check.
    average_micros: AtomicU64,
}

impl BindCost {
    /// Adds one measured password check (a bind that the directory answered about the password).
    pub(super) fn note(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX).max(1);
        let _ = self
            .average_micros
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |average| {
                Some(if average == 0 {
                    sample
                } else {
                    average - average / WEIGHT + sample / WEIGHT
                })
            });
    }

    /// The typical check, or `None` before any was measured.
    pub(super) fn typical(&self) -> Option<Duration> {
        match self.average_micros.load(Ordering::Relaxed) {
            0 => None,
            micros => Some(Duration::from_micros(micros)),
        }
    }

    /// Waits (a timer, no CPU) until a refusal begun at `started` has taken a typical check.
    pub(super) async fn pad(&self, started: Instant) {
        if let Some(typical) = self.typical() {
            tokio::time::sleep_until((started + typical).into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_follows_measured_checks() {
        let cost = BindCost::default();
        assert_eq!(cost.typical(), None);
        cost.note(Duration::from_millis(80));
        assert_eq!(cost.typical(), Some(Duration::from_millis(80)));
        for _ in 0..64 {
            cost.note(Duration::from_millis(20));
        }
        let typical = cost.typical().map(|t| t.as_millis()).unwrap_or(0);
        assert!((19..=22).contains(&typical), "{typical}");
    }
}
