//! What a password check costs in one LDAP directory, so that an unknown user is not refused
//! faster than a wrong password there. Active Directory answers a bind to a name it does not
//! know (525) without checking the password, so the absent-DN bind alone is cheaper than a real
//! one; each directory keeps its own estimate (two apps' directories can differ by far).

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many recent wrong-password refusals the median is taken over.
const SAMPLES: usize = 15;

/// The median of the last [`SAMPLES`] wrong-password refusals of one directory: what an unknown
/// user must look like. A median, not a mean: the first bind of a connection (TLS, 60 ms against
/// Samba) or a busy moment drags a mean far above what most refusals take, and padding to it
/// made unknown users the slower answer (1.4x to 1.7x against Samba), which tells as much as
/// the faster one did.
#[derive(Debug, Default)]
pub(super) struct BindCost {
    recent: Mutex<Recent>,
}

/// A ring of the latest samples, in microseconds.
#[derive(Debug, Default)]
struct Recent {
    samples: [u64; SAMPLES],
    filled: usize,
    next: usize,
}

impl BindCost {
    /// Adds one measured wrong-password refusal.
    pub(super) fn note(&self, took: Duration) {
        let sample = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let slot = recent.next;
        recent.samples[slot] = sample;
        recent.next = (slot + 1) % SAMPLES;
        recent.filled = (recent.filled + 1).min(SAMPLES);
    }

    /// The typical refusal, or `None` before any was measured.
    pub(super) fn typical(&self) -> Option<Duration> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let mut samples = recent.samples[..recent.filled].to_vec();
        drop(recent);
        samples.sort_unstable();
        samples
            .get(samples.len() / 2)
            .map(|micros| Duration::from_micros(*micros))
    }

    /// Waits (a timer, no CPU) until a refusal begun at `started` has taken a typical one.
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
    fn the_typical_refusal_is_the_median_of_recent_ones() {
        let cost = BindCost::default();
        assert_eq!(cost.typical(), None);
        cost.note(Duration::from_millis(80));
        assert_eq!(cost.typical(), Some(Duration::from_millis(80)));
        for _ in 0..8 {
            cost.note(Duration::from_millis(20));
        }
        assert_eq!(
            cost.typical(),
            Some(Duration::from_millis(20)),
            "one slow first bind is ignored"
        );
        for _ in 0..SAMPLES {
            cost.note(Duration::from_millis(5));
        }
        assert_eq!(
            cost.typical(),
            Some(Duration::from_millis(5)),
            "only recent refusals count"
        );
    }
}
