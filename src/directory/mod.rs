//! Credential stores. A [`Directory`] checks a password and says who the user is; it never
//! sees XML and never builds tokens.
//!
//! To add a backend: implement [`Directory`] in a new submodule (every method; a backend that
//! cannot look up by account name returns `Ok(None)`), add a variant to
//! [`crate::config::DirectoryConfig`] with its own config struct and `problems()` in a file
//! under `src/config/` (the schema depends on no room), build it in [`build`], and check
//! what can be checked with files or the network in `preflight` (which calls down here).

pub mod dn;
pub mod file;
pub mod ldap;
pub mod names;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::DirectoryConfig;

/// A user as the directory knows them: what the claims are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// userPrincipalName as stored in the directory.
    pub upn: String,
    /// Entra ID `onPremisesImmutableId` (NameIdentifier and ImmutableID claim).
    pub immutable_id: String,
    /// Display name, when known.
    pub display_name: Option<String>,
    /// Groups: DNs from LDAP (`CN=Staff,CN=Users,…`), names from the file directory; compared
    /// by [`dn::group_matches`].
    pub groups: Vec<String>,
    /// Pre-Windows 2000 logon name (`sAMAccountName`; `NAME$` for computers), when known.
    pub sam_account_name: Option<String>,
    /// AD `objectGUID` as base64 of its 16 raw bytes (hybrid-join `onpremobjectguid`), when known.
    pub object_guid: Option<String>,
    /// AD `objectSid` as `S-1-5-…` (hybrid-join `primarysid`), when known.
    pub object_sid: Option<String>,
    /// When the password expires, when the directory knows (AD
    /// `msDS-UserPasswordExpiryTimeComputed`, the file directory's `password_expires_at`);
    /// `None` for a password that never expires. A sign-in at or after it is refused as
    /// [`AuthFailure::PasswordExpired`] and offered the change form.
    pub password_expires_at: Option<time::OffsetDateTime>,
}

/// Why a password check failed. Logged; never shown on the wire, where every
/// variant is the same generic failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No such user.
    UnknownUser,
    /// The password is wrong (or empty).
    WrongPassword,
    /// The account exists but is disabled.
    Disabled,
    /// The account is locked out.
    Locked,
    /// The password has expired.
    PasswordExpired,
    /// The account has expired.
    AccountExpired,
    /// The password must be changed before the next logon.
    MustChangePassword,
    /// Logon is not permitted at this time or from this workstation.
    LogonRestricted,
}

impl AuthFailure {
    /// A short machine-readable reason for logs and audit records.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::Disabled => "account_disabled",
            AuthFailure::Locked => "account_locked",
            AuthFailure::PasswordExpired => "password_expired",
            AuthFailure::AccountExpired => "account_expired",
            AuthFailure::MustChangePassword => "must_change_password",
            AuthFailure::LogonRestricted => "logon_restricted",
        }
    }
}

/// Errors of a directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The credentials were not accepted.
    #[error("authentication failed: {}", .0.reason())]
    Rejected(AuthFailure),
    /// The directory could not answer (I/O, outage); never turns into a token.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// Too many password checks are waiting; the client should retry after the given time.
    #[error("password checks are queued to capacity")]
    Busy {
        /// Seconds the client should wait (`Retry-After`).
        retry_after_secs: u64,
    },
    /// The directory's configuration or data is wrong.
    #[error("{0}")]
    Invalid(String),
    /// The directory's password policy refused the new password (the old one was right).
    #[error("the new password was refused: {}", .0.reason())]
    NewPasswordRefused(PasswordRule),
    /// This directory cannot change passwords (an LDAP server without the Password Modify
    /// operation, Active Directory without TLS).
    #[error("this directory cannot change passwords: {0}")]
    ChangeNotSupported(String),
}

/// Which rule of a directory's password policy refused a new password, as far as the
/// directory says (Windows AD says only `52D`, so most of its refusals are [`Self::Policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PasswordRule {
    /// Used before (password history).
    History,
    /// Not complex enough (character classes, parts of the user's name).
    Complexity,
    /// Shorter than the minimum length.
    TooShort,
    /// The current password was set too recently to change (minimum age).
    TooYoung,
    /// The same as the old password.
    Unchanged,
    /// Some rule of the policy; the directory did not say which.
    Policy,
}

impl PasswordRule {
    /// A short machine-readable reason for logs and audit records.
    pub fn reason(self) -> &'static str {
        match self {
            PasswordRule::History => "password_in_history",
            PasswordRule::Complexity => "password_not_complex",
            PasswordRule::TooShort => "password_too_short",
            PasswordRule::TooYoung => "password_too_young",
            PasswordRule::Unchanged => "password_unchanged",
            PasswordRule::Policy => "password_policy",
        }
    }
}

/// A password change asked of a directory: the typed sign-in name (resolved as
/// [`Directory::authenticate`] resolves it), the current and the new password, and the
/// service clock's time (backup names).
pub struct PasswordChange<'a> {
    /// As typed on the form.
    pub username: &'a str,
    /// The current password (already checked through `sts::guard`).
    pub old_password: &'a str,
    /// The new password.
    pub new_password: &'a str,
    /// Now, from the service clock.
    pub now: time::OffsetDateTime,
}

/// How a password check ranks when checks queue up. A flood of sign-ins from new addresses
/// (unknown users, sprays) must not crowd out users signing in from where they signed in
/// before, so checks from such a familiar location keep a reserve of the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckPriority {
    /// Every address of the request is one the user signed in from before.
    Familiar,
    /// Anything else (first sign-in from here, unknown users, callers without a lockout).
    Other,
}

/// A credential store.
#[async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Checks `password` for `username` (a UPN, matched case-insensitively) and returns the user.
    /// Unknown users, wrong passwords and disabled accounts take the same time.
    async fn authenticate(&self, username: &str, password: &str) -> Result<User, DirectoryError>;
    /// [`Directory::authenticate`] ranked by `priority` where the directory queues checks of its
    /// own (the file directory's hash queue); directories that do not queue ignore it.
    async fn authenticate_ranked(
        &self,
        username: &str,
        password: &str,
        _priority: CheckPriority,
    ) -> Result<User, DirectoryError> {
        self.authenticate(username, password).await
    }
    /// The name the lockout and audit key a typed sign-in name on before the directory is
    /// asked, the same for every form of one account (see [`names`]). Directories that
    /// accept only UPNs keep the default (the name as typed). An error when the directory
    /// cannot say whose name it is: the caller refuses rather than key a second counter.
    async fn canonical_name(&self, username: &str) -> Result<String, DirectoryError> {
        Ok(username.to_owned())
    }
    /// Looks an enabled user up by UPN without a password.
    async fn lookup(&self, upn: &str) -> Result<Option<User>, DirectoryError>;
    /// Looks an enabled user or computer up by `sAMAccountName` (case-insensitive; computers end
    /// in `$`), as a Kerberos principal's name maps to it.
    async fn lookup_account(&self, sam_account_name: &str) -> Result<Option<User>, DirectoryError>;
    /// Why `lookup_account` found no enabled entry for `sam_account_name`, when the directory
    /// can tell (`Disabled` for a disabled account), so the audit names the reason instead of
    /// `unknown_user`. Directories that cannot tell keep the default (none).
    async fn account_refusal(
        &self,
        _sam_account_name: &str,
    ) -> Result<Option<AuthFailure>, DirectoryError> {
        Ok(None)
    }
    /// Whether the directory can answer now.
    async fn health(&self) -> Result<(), DirectoryError>;
    /// The gauges of the directory's own password-check queue, when it has one (the file
    /// directory's hash queue), for the metrics registry.
    fn queue_meter(&self) -> Option<crate::metrics::QueueMeter> {
        None
    }
    /// The base32 TOTP secret of an enabled user, when one is enrolled. Directories without
    /// second factors keep the default (none).
    async fn totp_secret(&self, _upn: &str) -> Result<Option<String>, DirectoryError> {
        Ok(None)
    }
    /// Stores `secret` (base32) as the TOTP secret of an enabled user, only while the user's
    /// current secret is still the one `replacing` names (its [`crate::totp::fingerprint`];
    /// `None`: none enrolled), so two enrolments cannot
    /// both win; false when it was not (nothing stored). Self-enrolment during sign-in uses it.
    /// Directories whose second factors are admin-managed (LDAP/AD) keep the default refusal.
    async fn store_totp_secret(
        &self,
        _upn: &str,
        _replacing: Option<&str>,
        _secret: &str,
        _now: time::OffsetDateTime,
    ) -> Result<bool, DirectoryError> {
        Err(DirectoryError::Invalid(
            "TOTP enrolment is admin-managed in this directory: ask your administrator to enrol \
             your authenticator"
                .into(),
        ))
    }
    /// Replaces the user's password: the directory checks the old one again where it can
    /// (AD and LDAP do, as the user) and applies its own policy
    /// ([`DirectoryError::NewPasswordRefused`]). Callers check the old password through
    /// `sts::guard` first, so a wrong one counts toward the lockout.
    async fn change_password(&self, change: &PasswordChange<'_>) -> Result<(), DirectoryError>;
}

/// Directories by name, built from `[directories.NAME]`.
pub type Registry = BTreeMap<String, Arc<dyn Directory>>;

/// Builds every configured directory; the error names the config key.
pub fn build(
    configs: &BTreeMap<String, DirectoryConfig>,
) -> Result<Registry, (String, DirectoryError)> {
    let mut registry = Registry::new();
    for (name, config) in configs {
        let directory: Arc<dyn Directory> = match config {
            DirectoryConfig::File { path } => Arc::new(
                file::FileDirectory::load(path)
                    .map_err(|e| (format!("directories.{name}.path"), e))?,
            ),
            DirectoryConfig::Ldap(config) => Arc::new(
                ldap::LdapDirectory::new(config)
                    .map_err(|(key, e)| (format!("directories.{name}.{key}"), e))?,
            ),
        };
        registry.insert(name.clone(), directory);
    }
    Ok(registry)
}
