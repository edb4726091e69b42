//! Pending TOTP self-enrolments over the [`StateStore`], so the new secret never travels
//! through the browser and back: the enrolment page shows it once (QR code), the form carries
//! only a signed ticket naming the enrolment's random id, and the secret waits here until the
//! first code from it verifies.
//!
//! - **One per user and app**: the key is the user's, so starting again replaces the earlier
//!   enrolment (its ticket stops working) and the pending entries are bounded by the users who
//!   passed a password check, whatever a client sends.
//! - **Spent once**: finishing swaps the entry to a spent mark in one compare-and-swap, so two
//!   posts of one ticket (or a replay after it finished) store at most one secret.
//! - **Short-lived**: an entry lives [`ENROLMENT_LIFETIME`] and then is gone.
//! - **Knows what it replaces**: the fingerprint of the secret a re-enrolment replaces (checked
//!   by a current code) is kept with it, and the directory stores the new one only while that
//!   is still the user's secret.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use crate::state::{StateError, StateStore};

/// How long a pending enrolment waits for its first code.
pub const ENROLMENT_LIFETIME: Duration = Duration::minutes(10);
/// The stored value of a finished enrolment.
const SPENT: &str = "spent";
/// Tries of a replacement when other instances write the same entry at once.
const REPLACE_TRIES: usize = 4;

/// An enrolment waiting for its first code.
#[derive(Clone, PartialEq, Eq)]
pub struct Pending {
    /// Random id the ticket names.
    pub id: String,
    /// The new secret, base32.
    pub secret: String,
    /// The fingerprint (`totp::fingerprint`) of the secret it replaces (a re-enrolment after
    /// a current code); the old secret itself is not kept here.
    pub replacing: Option<String>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("id", &self.id).finish()
    }
}

impl Pending {
    fn render(&self) -> String {
        format!(
            "{} {} {}",
            self.id,
            self.secret,
            self.replacing.as_deref().unwrap_or("-")
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let (id, secret, replacing) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.is_empty() || secret.is_empty() {
            return None;
        }
        Some(Self {
            id: id.to_owned(),
            secret: secret.to_owned(),
            replacing: (replacing != "-").then(|| replacing.to_owned()),
        })
    }
}

/// Why an enrolment could not be finished.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotPending {
    /// No entry: never started, expired, or replaced and then finished.
    Missing,
    /// Another enrolment of the user (started later) replaced it.
    Replaced,
    /// It was finished already (a replayed ticket).
    Spent,
}

impl NotPending {
    /// The audit reason of a refused ticket.
    pub fn reason(self) -> &'static str {
        match self {
            NotPending::Missing => "totp_enrolment_expired",
            NotPending::Replaced => "totp_enrolment_replaced",
            NotPending::Spent => "totp_enrolment_replayed",
        }
    }
}

/// The pending enrolments of every app, in the shared state store.
#[derive(Clone, Debug)]
pub struct PendingEnrolments {
    store: Arc<dyn StateStore>,
}

fn key(app: &str, upn: &str) -> String {
    format!("totp:enrol:{app}:{}", upn.trim().to_lowercase())
}

impl PendingEnrolments {
    /// The enrolments kept in `store`.
    pub fn new(store: Arc<dyn StateStore>) -> Self {
        Self { store }
    }

    /// Starts `pending` for `upn` of `app`, replacing any earlier one of the user.
    pub async fn start(
        &self,
        app: &str,
        upn: &str,
        pending: &Pending,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        let key = key(app, upn);
        let value = pending.render();
        for _ in 0..REPLACE_TRIES {
            let current = self.store.get(&key, now).await?;
            if self
                .store
                .compare_and_swap(&key, current.as_deref(), &value, ENROLMENT_LIFETIME, now)
                .await?
            {
                return Ok(());
            }
        }
        Err(StateError::Unavailable(
            "the pending enrolment kept changing; try again".into(),
        ))
    }

    /// The enrolment `id` of `upn`, while it is the user's pending one.
    pub async fn find(
        &self,
        app: &str,
        upn: &str,
        id: &str,
        now: OffsetDateTime,
    ) -> Result<Result<Pending, NotPending>, StateError> {
        let raw = self.store.get(&key(app, upn), now).await?;
        Ok(match raw.as_deref() {
            None => Err(NotPending::Missing),
            Some(SPENT) => Err(NotPending::Spent),
            Some(text) => match Pending::parse(text) {
                Some(pending) if pending.id == id => Ok(pending),
                _ => Err(NotPending::Replaced),
            },
        })
    }

    /// Marks `pending` of `upn` spent; false when it no longer was the pending one (a second
    /// post of the same ticket lost the race, or a new start replaced it).
    pub async fn spend(
        &self,
        app: &str,
        upn: &str,
        pending: &Pending,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        self.store
            .compare_and_swap(
                &key(app, upn),
                Some(&pending.render()),
                SPENT,
                ENROLMENT_LIFETIME,
                now,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    fn pending(id: &str) -> Pending {
        Pending {
            id: id.into(),
            secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ".into(),
            replacing: None,
        }
    }

    #[tokio::test]
    async fn one_pending_per_user_spent_once_and_short_lived() {
        let store = Arc::new(MemoryStore::new("t"));
        let enrolments = PendingEnrolments::new(store);
        let (first, second) = (pending("e1"), pending("e2"));
        enrolments
            .start("a", "Alice@x.com", &first, T0)
            .await
            .unwrap();
        enrolments
            .start("a", "alice@x.com", &second, T0)
            .await
            .unwrap();
        let find = |id: &'static str, at| {
            let enrolments = enrolments.clone();
            async move { enrolments.find("a", "alice@x.com", id, at).await.unwrap() }
        };
        assert_eq!(find("e1", T0).await, Err(NotPending::Replaced));
        assert_eq!(find("e2", T0).await, Ok(second.clone()));
        assert!(
            !enrolments
                .spend("a", "alice@x.com", &first, T0)
                .await
                .unwrap()
        );
        assert!(
            enrolments
                .spend("a", "alice@x.com", &second, T0)
                .await
                .unwrap()
        );
        assert!(
            !enrolments
                .spend("a", "alice@x.com", &second, T0)
                .await
                .unwrap()
        );
        assert_eq!(find("e2", T0).await, Err(NotPending::Spent));
        let replacing = Pending {
            replacing: Some(crate::totp::fingerprint("MFRGGZDFMZTWQ2LK")),
            ..pending("e3")
        };
        enrolments
            .start("a", "alice@x.com", &replacing, T0)
            .await
            .unwrap();
        assert_eq!(find("e3", T0).await, Ok(replacing));
        assert_eq!(
            find("e3", T0 + ENROLMENT_LIFETIME).await,
            Err(NotPending::Missing)
        );
        assert_eq!(
            enrolments.find("b", "alice@x.com", "e3", T0).await.unwrap(),
            Err(NotPending::Missing),
            "apps are separate"
        );
    }

    #[test]
    fn stored_form_round_trips_and_odd_values_are_refused() {
        let p = pending("e1");
        assert_eq!(Pending::parse(&p.render()), Some(p));
        assert_eq!(Pending::parse("e1 SECRET"), None);
        assert_eq!(Pending::parse("e1 SECRET - extra"), None);
        assert!(!format!("{:?}", pending("e1")).contains("GEZD"));
    }
}
