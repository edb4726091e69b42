//! Replay cache for the active endpoints. The RST is protected only by TLS, so a captured
//! request could be sent again while its timestamp is valid. Two marks per request, each kept for
//! as long as the timestamp could still be accepted:
//!
//! - its `wsa:MessageID`, when sent (MessageID is optional: msal4j misspells it);
//! - the pair (`wsu:Created`, username), marked for every request. A request **without** a
//!   MessageID whose pair was seen is a replay (this also catches a replay whose MessageID was
//!   stripped). A request with a fresh MessageID is not refused for its pair: MSAL Python and
//!   MSAL.NET write Created with whole seconds, so two genuine requests of one user within a
//!   second (a retry with the corrected password, parallel token requests) share the pair and
//!   differ only by MessageID. Anyone who can change the MessageID of a captured request can
//!   change its Created as well, so refusing those would only break real clients.
//!
//! windowstransport requests carry no timestamp; they get the MessageID mark and a mark of the
//! SPNEGO token itself (its SHA-256), so an accepted Kerberos authenticator is never accepted a
//! second time, whether or not the Kerberos library's own replay cache is on.
//!
//! Marks are global (not per app): a request replayed to another app is still a replay.

use std::sync::Arc;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::protocol::wstrust::TimestampPolicy;
use crate::state::{StateError, StateStore};

/// Which mark a replayed request hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayKind {
    /// Its `wsa:MessageID` was seen.
    MessageId,
    /// Its (Created, username) pair was seen.
    CreatedAndUsername,
    /// Its SPNEGO (Negotiate) token was accepted before (windowstransport).
    NegotiateToken,
}

impl ReplayKind {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            ReplayKind::MessageId => "replay_message_id",
            ReplayKind::CreatedAndUsername => "replay_created_username",
            ReplayKind::NegotiateToken => "replay_negotiate_token",
        }
    }
}

/// The replay marks over a state store.
#[derive(Clone, Debug)]
pub struct ReplayCache {
    store: Arc<dyn StateStore>,
    ttl: Duration,
}

impl ReplayCache {
    /// Marks live as long as a timestamp accepted under `policy` can be: the longest window plus
    /// the clock skew on both ends.
    pub fn new(store: Arc<dyn StateStore>, policy: &TimestampPolicy) -> Self {
        Self {
            store,
            ttl: policy.max_window + policy.max_clock_skew * 2,
        }
    }

    /// How long marks are kept.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Marks the request and says whether it was seen before.
    pub async fn check(
        &self,
        message_id: Option<&str>,
        created: OffsetDateTime,
        username: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ReplayKind>, StateError> {
        if let Some(id) = message_id
            && self.check_message_id(id, now).await?.is_some()
        {
            return Ok(Some(ReplayKind::MessageId));
        }
        let created = created
            .format(&Rfc3339)
            .unwrap_or_else(|_| created.unix_timestamp_nanos().to_string());
        let pair = format!("replay:cu:{}:{created}", username.trim().to_lowercase());
        let fresh_pair = self.store.set_if_absent(&pair, "1", self.ttl, now).await?;
        if !fresh_pair && message_id.is_none() {
            return Ok(Some(ReplayKind::CreatedAndUsername));
        }
        Ok(None)
    }

    /// Marks a `wsa:MessageID` and says whether it was seen before.
    pub async fn check_message_id(
        &self,
        message_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<ReplayKind>, StateError> {
        let key = format!("replay:mid:{message_id}");
        let fresh = self.store.set_if_absent(&key, "1", self.ttl, now).await?;
        Ok((!fresh).then_some(ReplayKind::MessageId))
    }

    /// Marks an accepted SPNEGO token (by its SHA-256) and says whether it was accepted before.
    pub async fn check_negotiate_token(
        &self,
        token: &[u8],
        now: OffsetDateTime,
    ) -> Result<Option<ReplayKind>, StateError> {
        use base64::Engine as _;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
        let key = format!(
            "replay:spnego:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest.as_ref())
        );
        let fresh = self.store.set_if_absent(&key, "1", self.ttl, now).await?;
        Ok((!fresh).then_some(ReplayKind::NegotiateToken))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::memory::MemoryStore;
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-01-01 00:00 UTC);

    #[tokio::test]
    async fn message_id_and_created_pairs_are_single_use_within_the_window() {
        let cache = ReplayCache::new(Arc::new(MemoryStore::new("t")), &TimestampPolicy::default());
        assert_eq!(cache.ttl(), Duration::minutes(25));
        let c1 = T0;
        let c2 = T0 + Duration::seconds(1);
        assert_eq!(
            cache
                .check(Some("urn:uuid:1"), c1, "a@x.com", T0)
                .await
                .unwrap(),
            None
        );
        assert_eq!(
            cache
                .check(Some("urn:uuid:1"), c2, "a@x.com", T0)
                .await
                .unwrap(),
            Some(ReplayKind::MessageId)
        );
        // A fresh MessageID with a seen pair: a genuine second request within the same second.
        assert_eq!(
            cache
                .check(Some("urn:uuid:2"), c1, "A@X.com", T0)
                .await
                .unwrap(),
            None
        );
        // The same pair with the MessageID stripped: a replay.
        assert_eq!(
            cache.check(None, c1, "a@x.com", T0).await.unwrap(),
            Some(ReplayKind::CreatedAndUsername)
        );
        assert_eq!(cache.check(None, c1, "b@x.com", T0).await.unwrap(), None);
        assert_eq!(
            cache.check(None, c1, "b@x.com", T0).await.unwrap(),
            Some(ReplayKind::CreatedAndUsername)
        );
        assert_eq!(
            cache.check_message_id("urn:uuid:1", T0).await.unwrap(),
            Some(ReplayKind::MessageId)
        );
        assert_eq!(
            cache.check_negotiate_token(b"ticket", T0).await.unwrap(),
            None
        );
        assert_eq!(
            cache.check_negotiate_token(b"ticket", T0).await.unwrap(),
            Some(ReplayKind::NegotiateToken)
        );
        assert_eq!(
            cache.check_negotiate_token(b"ticket2", T0).await.unwrap(),
            None
        );
        let later = T0 + Duration::minutes(25);
        assert_eq!(
            cache
                .check(Some("urn:uuid:1"), c1, "a@x.com", later)
                .await
                .unwrap(),
            None
        );
    }
}
