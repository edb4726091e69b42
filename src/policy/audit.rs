//! The audit log: one structured record per token decision (issued or refused), emitted through
//! `tracing` with target `fedsts::audit` (JSON lines with `FEDSTS_LOG_FORMAT=json`).
//!
//! Fields (README.md lists them too): `time` (RFC 3339, the service clock), `correlation_id`,
//! `app`, `user` (as sent, at most 256 characters), `client_ip`, `user_agent`, `request_class`
//! (`entra_passive`, `windows_logon`, `other`), `endpoint` (`trust/13/usernamemixed`, …,
//! `wsfed/signin`, `wsfed/launch`, `wsfed/signout`), `decision` (`issued`/`refused`/
//! `signed_out`), `reason` (`ok`, on passive issues how the user proved themselves: `password`,
//! `session`, `totp`; or a refusal reason such as `wrong_password`, `account_locked_unfamiliar`,
//! `replay_message_id`, `rate_limited`, `device_trust_unavailable_oobe`, `state_unavailable`,
//! `totp_wrong`, `totp_attempts_exceeded`, `session_signed_out`),
//! `assertion_id`, `device_id`, `lockout_location` (`familiar`/`unfamiliar`, empty when not
//! checked) and `lockout_log_only` (true when log-only lockout would have blocked this request).
//! Issued records also name the key that signed: `signing_key_sha256` (the SHA-256 fingerprint
//! of its certificate, lowercase hex) and `signing_store` (`file` or `pkcs11`); `fedsts audit
//! by-key` lists the assertions per key and flags keys that are not configured.
//! Passwords never appear. Every field may hold what a client sent; `crate::logging` escapes
//! them so none can forge a line.

use std::net::IpAddr;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::policy::RequestClass;
use crate::policy::lockout::Location;

/// Longest user name written to the log.
const MAX_USER_CHARS: usize = 256;

/// Whether a token was issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A token was issued.
    Issued,
    /// The request was refused.
    Refused,
    /// A browser session was ended (passive sign-out).
    SignedOut,
    /// A user changed their password (the change page or a sign-in with an expired one).
    PasswordChanged,
}

impl Decision {
    fn as_str(self) -> &'static str {
        match self {
            Decision::Issued => "issued",
            Decision::Refused => "refused",
            Decision::SignedOut => "signed_out",
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
    pub app: String,
    /// Endpoint, e.g. `trust/13/usernamemixed`.
    pub endpoint: String,
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
    /// SHA-256 fingerprint of the certificate of the key that signs this app's tokens.
    pub signing_key_sha256: String,
    /// Where that key is kept (`file`, `pkcs11`).
    pub signing_store: &'static str,
}

impl AuditRecord {
    /// Writes the record with its decision, reason and assertion id.
    pub fn emit(&self, decision: Decision, reason: &str, assertion_id: Option<&str>) {
        let user: String = self.user.chars().take(MAX_USER_CHARS).collect();
        let (signing_key_sha256, signing_store) = match decision {
            Decision::Issued => (self.signing_key_sha256.as_str(), self.signing_store),
            Decision::Refused | Decision::SignedOut | Decision::PasswordChanged => ("", ""),
        };
        let time = self
            .time
            .format(&Rfc3339)
            .unwrap_or_else(|_| self.time.unix_timestamp().to_string());
        tracing::info!(
            target: "fedsts::audit",
            time = %time,
            correlation_id = %self.correlation_id,
            app = %self.app,
            endpoint = %self.endpoint,
            request_class = self.request_class.as_str(),
            user = %user,
            client_ip = %self.client_ip,
            user_agent = %self.user_agent,
            decision = decision.as_str(),
            reason,
            assertion_id = assertion_id.unwrap_or(""),
            device_id = self.device_id.as_deref().unwrap_or(""),
            lockout_location = self.lockout_location.map(Location::as_str).unwrap_or(""),
            lockout_log_only = self.lockout_log_only,
            signing_key_sha256,
            signing_store,
            "token decision"
        );
    }
}
