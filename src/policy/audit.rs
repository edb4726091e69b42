//! The audit log: one structured record per token decision (issued or refused), emitted through
//! `tracing` with target `fedsts::audit` (JSON lines with `FEDSTS_LOG_FORMAT=json`).
//!
//! Fields (README.md lists them too): `time` (RFC 3339, the service clock), `correlation_id`,
//! `app`, `user` (as sent, at most 256 characters), `client_ip`, `user_agent`, `request_class`
//! (`entra_passive`, `windows_logon`, `other`), `endpoint` (`trust/13/usernamemixed`, …,
//! `wsfed/signin`, `wsfed/launch`, `wsfed/signout`, `cli/user/totp-reset`), `decision`
//! (`issued`/`refused`/`signed_out`/`totp_enrolment` with `started`, `completed`, `reset`), `reason` (`ok`, on passive issues how the user proved themselves: `password`,
//! `session`, `totp`; or a refusal reason such as `wrong_password`, `account_locked_unfamiliar`,
//! `replay_message_id`, `rate_limited`, `device_trust_unavailable_oobe`, `state_unavailable`,
//! `totp_wrong`, `totp_attempts_exceeded`, `session_signed_out`),
//! `assertion_id`, `device_id`, `lockout_location` (`familiar`/`unfamiliar`, empty when not
//! checked) and `lockout_log_only` (true when log-only lockout would have blocked this request).
//! Issued records also name the key that signed: `signing_key_sha256` (the SHA-256 fingerprint
//! of its certificate, lowercase hex) and `signing_store` (`file` or `pkcs11`), taken from the
//! signed assertion ([`Signed`]), so a promotion during the request cannot mislabel it;
//! `fedsts audit by-key` lists the assertions per key and flags keys that are not configured.
//! Passwords never appear. Every field may hold what a client sent; `crate::logging` escapes
//! them so none can forge a line.

use std::net::IpAddr;
use std::sync::Arc;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::metrics::{self, ConfigName, Metrics};
use crate::policy::RequestClass;
use crate::policy::lockout::Location;

/// Longest user name written to the log.
const MAX_USER_CHARS: usize = 256;

/// Whether a token was issued, and by which key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// A token was issued.
    Issued(Signed<'a>),
    /// The request was refused.
    Refused,
    /// A browser session was ended (passive or portal sign-out).
    SignedOut,
    /// A step of a TOTP enrolment (`started`, `completed`, `reset`); its refusals are `Refused`.
    TotpEnrolment,
    /// A portal session was started (no token).
    SignedIn,
    /// A user acknowledged the portal notice.
    Acknowledged,
    /// A user changed their password (the change page or a sign-in with an expired one).
    PasswordChanged,
}

/// An issued assertion and the key that signed it, taken from the signed assertion itself:
/// the app's pair may be promoted between the start of a request and its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Signed<'a> {
    /// `AssertionID` / `ID`.
    pub assertion_id: &'a str,
    /// SHA-256 fingerprint of the certificate of the key that signed (lowercase hex).
    pub key_sha256: &'a str,
    /// Where that key is kept (`file`, `pkcs11`).
    pub store: &'a str,
}

impl Decision<'_> {
    /// How the decision is counted; enrolment steps are not token decisions.
    fn counted_as(self) -> Option<metrics::Counted> {
        match self {
            Decision::Issued(_) => Some(metrics::Counted::Issued),
            Decision::Refused => Some(metrics::Counted::Refused),
            Decision::SignedOut => Some(metrics::Counted::SignedOut),
            Decision::TotpEnrolment
            | Decision::SignedIn
            | Decision::Acknowledged
            | Decision::PasswordChanged => None,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Decision::Issued(_) => "issued",
            Decision::Refused => "refused",
            Decision::SignedOut => "signed_out",
            Decision::TotpEnrolment => "totp_enrolment",
            Decision::SignedIn => "signed_in",
            Decision::Acknowledged => "acknowledged",
            Decision::PasswordChanged => "password_changed",
        }
    }
}

/// One audit record, filled in as the request goes through the policy steps.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    /// When the request was decided (service clock).
    pub time: OffsetDateTime,
    /// Correlation id (also in the fault text).
    pub correlation_id: String,
    /// App id.
    pub app: ConfigName,
    /// Endpoint, e.g. `trust/13/usernamemixed`.
    pub endpoint: &'static str,
    /// Request class.
    pub request_class: RequestClass,
    /// Address the request is attributed to.
    pub client_ip: IpAddr,
    /// `User-Agent`.
    pub user_agent: String,
    /// User name as sent (empty before parsing).
    pub user: String,
    /// Location class the lockout saw.
    pub lockout_location: Option<Location>,
    /// Log-only lockout would have blocked.
    pub lockout_log_only: bool,
    /// Device id from a verified device certificate.
    pub device_id: Option<String>,
    /// Where the decision is counted (`fedsts_tokens_issued_total`, `…_refused_total`).
    pub metrics: Arc<Metrics>,
}

impl AuditRecord {
    /// The record of an admin command run on this host (`fedsts user totp-reset`): no client,
    /// so the address is loopback and the user agent names the command line.
    pub fn command(app: &str, endpoint: &'static str, user: &str, now: OffsetDateTime) -> Self {
        Self {
            time: now,
            correlation_id: crate::random::correlation_id(),
            app: std::sync::Arc::new(app.to_owned()),
            endpoint,
            request_class: RequestClass::Other,
            client_ip: IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            user_agent: "fedsts command line".to_owned(),
            user: user.to_owned(),
            lockout_location: None,
            lockout_log_only: false,
            device_id: None,
            metrics: Arc::new(Metrics::new()),
        }
    }

    /// Writes the record with its decision (an issued one with its assertion id and signing key),
    /// reason (`reason: detail` in the line when there is a detail), and counts the decision under
    /// app, endpoint and reason: the reason is a `&'static str` so that no request text can become
    /// a metrics label.
    pub fn emit(&self, decision: Decision<'_>, reason: &'static str, detail: Option<&str>) {
        if let Some(counted) = decision.counted_as() {
            self.metrics
                .decision(counted, &self.app, self.endpoint, reason);
        }
        let reason: std::borrow::Cow<'_, str> = match detail {
            Some(detail) => format!("{reason}: {detail}").into(),
            None => reason.into(),
        };
        let user = match self.user.char_indices().nth(MAX_USER_CHARS) {
            Some((cut, _)) => &self.user[..cut],
            None => self.user.as_str(),
        };
        let (assertion_id, signing_key_sha256, signing_store) = match decision {
            Decision::Issued(signed) => (signed.assertion_id, signed.key_sha256, signed.store),
            Decision::Refused
            | Decision::SignedOut
            | Decision::TotpEnrolment
            | Decision::SignedIn
            | Decision::Acknowledged
            | Decision::PasswordChanged => ("", "", ""),
        };
        let time = self
            .time
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.time.unix_timestamp().to_string());
        // Text goes in as `&str`, not `%` (Display): the log's field visitor then writes it as
        // it is instead of formatting each value into a String first.
        tracing::info!(
            target: "fedsts::audit",
            time = time.as_str(),
            correlation_id = self.correlation_id.as_str(),
            app = self.app.as_str(),
            endpoint = self.endpoint,
            request_class = self.request_class.as_str(),
            user,
            client_ip = %self.client_ip,
            user_agent = self.user_agent.as_str(),
            decision = decision.as_str(),
            reason = reason.as_ref(),
            assertion_id,
            device_id = self.device_id.as_deref().unwrap_or(""),
            lockout_location = self.lockout_location.map(Location::as_str).unwrap_or(""),
            lockout_log_only = self.lockout_log_only,
            signing_key_sha256,
            signing_store,
            "token decision"
        );
    }
}
