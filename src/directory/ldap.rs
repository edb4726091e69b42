//! The LDAP / Active Directory backend (`kind = "ldap"`).
//!
//! Search-then-bind: a service account (or an anonymous bind) finds the user's entry with
//! `user_filter`, then the user's own DN is bound with the password. With `bind_dn_template`
//! the user's DN is built directly and bound first. Every value put in a filter is escaped
//! (RFC 4515), every value put in a DN is escaped (RFC 4514), an empty password is refused
//! before any bind (an empty simple bind is an unauthenticated bind that "succeeds").
//!
//! An unknown user costs the same round trips as a wrong password: when the search finds no
//! entry, the presented password is bound to [`LdapDirectory::absent_dn`] — `cn=` a name made
//! of a random UUID drawn at start, under `user_base` — so the server does a bind and refuses
//! it, and the answer takes as long as a refused bind of a real user. That DN cannot name a
//! real account (nobody can know the UUID in advance; it is a syntactic DN, so Active
//! Directory does not try it as a UPN or `DOMAIN\name`), so the bind can never count against a
//! real account's `badPwdCount` or lockout. Whatever the server answers, the result is
//! `UnknownUser`.
//!
//! Connections are pooled (at most `pool_size`), every operation has `timeout_secs`, and a
//! connection that failed is dropped, so the next request reconnects by itself. An outage is
//! [`DirectoryError::Unavailable`] — a `RequestFailed` fault and an unhealthy `/healthz` —
//! never a token. Active Directory's bind sub-codes (`data 52e`, …) are mapped to reasons for
//! the log by [`ad_bind_failure`]; on the wire every failure stays the generic one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, Scope, SearchEntry, SearchOptions};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::names::{NameLookup, SignInNames};
use super::{AuthFailure, Directory, DirectoryError, PasswordChange, PasswordRule, User};
use crate::config::LdapConfig;

mod bind_cost;
mod probe;
pub use probe::ProbeReport;

/// LDAP result code `invalidCredentials`.
const RC_INVALID_CREDENTIALS: u32 = 49;
/// LDAP result code `noSuchObject`.
const RC_NO_SUCH_OBJECT: u32 = 32;
/// `constraintViolation`: AD and OpenLDAP's ppolicy refuse a new password with it.
const RC_CONSTRAINT_VIOLATION: u32 = 19;
/// The Password Modify extended operation (RFC 3062), as `supportedExtension` lists it.
const PASSWORD_MODIFY_OID: &str = "1.3.6.1.4.1.4203.1.11.1";
/// `LDAP_CAP_ACTIVE_DIRECTORY_OID` in `supportedCapabilities`: the server is AD (or Samba).
const ACTIVE_DIRECTORY_OID: &str = "1.2.840.113556.1.4.800";
/// The computed expiry of an AD password (FILETIME).
const PASSWORD_EXPIRY_ATTR: &str = "msDS-UserPasswordExpiryTimeComputed";
/// Seconds from 1601-01-01 (FILETIME's epoch) to 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: i64 = 11_644_473_600;
/// AD `userAccountControl` flag ACCOUNTDISABLE.
const UAC_ACCOUNT_DISABLE: u64 = 0x2;
/// AD's transitive-membership matching rule (LDAP_MATCHING_RULE_IN_CHAIN).
const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";
/// Most groups read for one user with `nested_groups` (a bound on the search's answer).
const MAX_NESTED_GROUPS: i32 = 1000;
/// How long a health answer is reused: concurrent and repeated probes share one bind.
const HEALTH_CACHE_TTL: Duration = Duration::from_secs(5);
/// How long a service account refused with invalidCredentials is not bound again, so that no
/// probe or sign-in storm can run its `badPwdCount` up to the lockout threshold.
pub const SERVICE_REFUSAL_BACKOFF: Duration = Duration::from_secs(60);

/// Escapes a value for an LDAP search filter (RFC 4515): `\ * ( )` and NUL become `\XX`.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' | '*' | '(' | ')' | '\0' => out.push_str(&format!("\\{:02x}", c as u32)),
            _ => out.push(c),
        }
    }
    out
}

/// Escapes a value for an attribute value in a DN (RFC 4514).
pub fn escape_dn_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            ' ' | '#' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            _ => out.push(c),
        }
    }
    out
}

/// Why Active Directory refused a bind, from the `data XXX` sub-code in its diagnostic text,
/// with a sentence for the log. `None` when the text carries no known sub-code (OpenLDAP).
pub fn ad_bind_failure(diagnostic: &str) -> Option<(AuthFailure, &'static str)> {
    let code = ad_sub_code(diagnostic)?;
    let mapped = match code.as_str() {
        "525" => (AuthFailure::UnknownUser, "AD 525: user not found"),
        "52e" => (AuthFailure::WrongPassword, "AD 52e: invalid credentials"),
        "530" => (
            AuthFailure::LogonRestricted,
            "AD 530: logon not permitted at this time",
        ),
        "531" => (
            AuthFailure::LogonRestricted,
            "AD 531: logon not permitted at this workstation",
        ),
        "532" => (AuthFailure::PasswordExpired, "AD 532: password expired"),
        "533" => (AuthFailure::Disabled, "AD 533: account disabled"),
        "701" => (AuthFailure::AccountExpired, "AD 701: account expired"),
        "773" => (
            AuthFailure::MustChangePassword,
            "AD 773: user must reset password",
        ),
        "775" => (AuthFailure::Locked, "AD 775: account locked out"),
        _ => return None,
    };
    Some(mapped)
}

/// The hex sub-code after `data ` in an AD bind diagnostic, lower-cased.
fn ad_sub_code(diagnostic: &str) -> Option<String> {
    let start = diagnostic.find("data ")? + "data ".len();
    let code: String = diagnostic[start..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    (!code.is_empty()).then(|| code.to_ascii_lowercase())
}

/// When an AD password expires, from `msDS-UserPasswordExpiryTimeComputed` (FILETIME: 100 ns
/// since 1601). `0` (must change now, or no policy) and `0x7FFFFFFFFFFFFFFF` (never expires)
/// and anything unreadable are `None`: no expiry claim rather than a wrong one.
pub fn filetime_expiry(text: &str) -> Option<time::OffsetDateTime> {
    let ticks: i64 = text.trim().parse().ok()?;
    if ticks <= 0 || ticks == i64::MAX {
        return None;
    }
    let unix = ticks / 10_000_000 - FILETIME_UNIX_OFFSET_SECS;
    time::OffsetDateTime::from_unix_timestamp(unix).ok()
}

/// Which policy rule refused a new password, from a `constraintViolation` diagnostic: Samba's
/// texts name the rule, OpenLDAP's ppolicy has its own sentences, Windows AD says only
/// `0000052D` (then [`PasswordRule::Policy`]).
pub fn password_rule(diagnostic: &str) -> PasswordRule {
    let text = diagnostic.to_ascii_lowercase();
    if text.contains("history") {
        PasswordRule::History
    } else if text.contains("too young") || text.contains("minimum password age") {
        PasswordRule::TooYoung
    } else if text.contains("too short") {
        PasswordRule::TooShort
    } else if text.contains("complexity") || text.contains("quality") {
        PasswordRule::Complexity
    } else if text.contains("not being changed") {
        PasswordRule::Unchanged
    } else {
        PasswordRule::Policy
    }
}

/// Whether a `constraintViolation` on a password change says the *old* password was wrong
/// (AD `00000056` / `0000056B`), not that the new one broke a rule.
fn is_wrong_old_password(diagnostic: &str) -> bool {
    let text = diagnostic.trim_start().to_ascii_lowercase();
    text.starts_with("00000056:") || text.starts_with("0000056b:")
}

/// An AD `unicodePwd` value: the password in double quotes, UTF-16LE.
fn unicode_pwd(password: &str) -> Vec<u8> {
    format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// The ImmutableID from the raw value of `attr` (see [`LdapConfig::immutable_id_attr`]).
pub fn immutable_id_from(attr: &str, raw: &[u8]) -> Result<String, String> {
    if attr.eq_ignore_ascii_case("objectGUID") || attr.eq_ignore_ascii_case("mS-DS-ConsistencyGuid")
    {
        if raw.len() != 16 {
            return Err(format!("{attr} has {} bytes, expected 16", raw.len()));
        }
        return Ok(BASE64.encode(raw));
    }
    let text = std::str::from_utf8(raw).map_err(|_| format!("{attr} is not UTF-8 text"))?;
    if attr.eq_ignore_ascii_case("entryUUID") {
        let uuid = uuid::Uuid::parse_str(text).map_err(|e| format!("{attr} `{text}`: {e}"))?;
        return Ok(BASE64.encode(uuid.as_bytes()));
    }
    Ok(text.to_owned())
}

/// A binary SID as `S-1-5-21-…` (revision, 48-bit big-endian authority, little-endian
/// 32-bit sub-authorities); `None` when malformed.
pub fn sid_to_string(raw: &[u8]) -> Option<String> {
    let (&revision, rest) = raw.split_first()?;
    let (&count, rest) = rest.split_first()?;
    let authority = rest.get(..6)?;
    let subs = rest.get(6..)?;
    if subs.len() != usize::from(count) * 4 {
        return None;
    }
    let authority = authority
        .iter()
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let mut text = format!("S-{revision}-{authority}");
    for chunk in subs.chunks_exact(4) {
        let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        text.push_str(&format!("-{value}"));
    }
    Some(text)
}

/// How a server changes passwords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeMethod {
    /// RFC 3062 Password Modify extended operation.
    PasswordModify,
    /// AD: delete the old `unicodePwd` value, add the new one, in one modify.
    UnicodePwd,
}

/// Settings fixed at start, derived from [`LdapConfig`].
struct Settings {
    config: LdapConfig,
    /// The DN bound for unknown users (see the module doc).
    absent_dn: String,
    bind_password: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

/// A bounded pool of connections; a connection that failed is not returned.
struct Pool {
    idle: Mutex<Vec<Ldap>>,
    permits: Arc<Semaphore>,
}

/// A connection checked out of the pool together with its pool slot.
struct Pooled {
    ldap: Ldap,
    _permit: OwnedSemaphorePermit,
}

/// What the service account's last binds showed, shared by every request: after a refusal
/// with invalidCredentials it is not bound again for [`SERVICE_REFUSAL_BACKOFF`], and until a
/// bind has succeeded (at start and after a refusal) binds go one at a time, so a wrong
/// password costs the account one bad count per back-off period, never a lockout.
struct ServiceAccount {
    /// When the last refusal's back-off ends.
    refused_until: Mutex<Option<Instant>>,
    /// Whether a bind succeeded since start or since the last refusal.
    verified: AtomicBool,
    /// Held by the one bind allowed while not verified.
    trial: tokio::sync::Mutex<()>,
}

/// The last health answer and when it was taken; probes within [`HEALTH_CACHE_TTL`] reuse it,
/// and concurrent probes wait for the one in flight.
struct HealthCache {
    last: Mutex<Option<(Instant, Result<(), String>)>>,
    in_flight: tokio::sync::Mutex<()>,
}

/// Users and computers in an LDAP directory or Active Directory.
pub struct LdapDirectory {
    settings: Settings,
    pool: Pool,
    service: ServiceAccount,
    health: HealthCache,
    /// What a password check costs here; unknown-user refusals are padded up to it.
    bind_cost: bind_cost::BindCost,
}

impl std::fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("url", &self.settings.config.url)
            .field("user_base", &self.settings.config.user_base)
            .finish()
    }
}

impl LdapDirectory {
    /// Prepares the directory (no connection yet); the error names the config field.
    pub fn new(config: &LdapConfig) -> Result<Self, (String, DirectoryError)> {
        let bind_password = service_password(config)?;
        let tls = match &config.ca_file {
            Some(path) => Some(tls_config(path).map_err(|e| ("ca_file".to_owned(), e))?),
            None => None,
        };
        Ok(Self {
            settings: Settings {
                absent_dn: format!(
                    "cn=fedsts-absent-{},{}",
                    uuid::Uuid::new_v4().simple(),
                    config.user_base
                ),
                config: config.clone(),
                bind_password,
                tls,
                timeout: Duration::from_secs(config.timeout_secs),
            },
            pool: Pool {
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(config.pool_size)),
            },
            service: ServiceAccount {
                refused_until: Mutex::new(None),
                verified: AtomicBool::new(false),
                trial: tokio::sync::Mutex::new(()),
            },
            health: HealthCache {
                last: Mutex::new(None),
                in_flight: tokio::sync::Mutex::new(()),
            },
            bind_cost: bind_cost::BindCost::default(),
        })
    }

    async fn checkout(&self) -> Result<Pooled, DirectoryError> {
        let permit = tokio::time::timeout(
            self.settings.timeout,
            self.pool.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| unavailable("no free LDAP connection in time"))?
        .map_err(|_| unavailable("LDAP pool closed"))?;
        let reused = {
            let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
            idle.pop()
        };
        let ldap = match reused {
            Some(ldap) if !ldap.clone().is_closed() => ldap,
            _ => self.connect().await.inspect_err(|e| {
                self.remember_health(Err(health_message(e)));
            })?,
        };
        Ok(Pooled {
            ldap,
            _permit: permit,
        })
    }

    fn release(&self, pooled: Pooled) {
        let mut idle = self.pool.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.push(pooled.ldap);
    }

    async fn connect(&self) -> Result<Ldap, DirectoryError> {
        let config = &self.settings.config;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.settings.timeout)
            .set_starttls(config.starttls);
        if let Some(tls) = &self.settings.tls {
            settings = settings.set_config(tls.clone());
        }
        let connecting = LdapConnAsync::with_settings(settings, &config.url);
        let (conn, ldap) = tokio::time::timeout(self.settings.timeout, connecting)
            .await
            .map_err(|_| unavailable(format!("connecting to {} timed out", config.url)))?
            .map_err(|e| unavailable(connect_failure(&config.url, &e.to_string())))?;
        let url = config.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(url = %url, error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// Binds as the service account (or anonymously when none is configured), unless it was
    /// refused lately; see [`ServiceAccount`].
    async fn bind_service(&self, ldap: &mut Ldap) -> Result<(), DirectoryError> {
        self.refuse_while_backing_off()?;
        if self.service.verified.load(Ordering::Acquire) {
            return self.bind_service_now(ldap).await;
        }
        let _trial = self.service.trial.lock().await;
        self.refuse_while_backing_off()?;
        self.bind_service_now(ldap).await
    }

    /// `Unavailable` while the back-off after a refused service bind runs.
    fn refuse_while_backing_off(&self) -> Result<(), DirectoryError> {
        let refused_until = *self
            .service
            .refused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match refused_until {
            Some(until) if Instant::now() < until => Err(unavailable(format!(
                "the service account was refused with invalidCredentials; not bound again for \
                 {}s so that it is not locked out — fix bind_password",
                until.saturating_duration_since(Instant::now()).as_secs()
            ))),
            _ => Ok(()),
        }
    }

    /// Records a refusal with invalidCredentials: starts the back-off, loudly.
    fn record_service_refusal(&self, dn: &str) {
        self.service.verified.store(false, Ordering::Release);
        let mut refused_until = self
            .service
            .refused_until
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *refused_until = Some(Instant::now() + SERVICE_REFUSAL_BACKOFF);
        tracing::error!(
            dn,
            backoff_secs = SERVICE_REFUSAL_BACKOFF.as_secs(),
            "LDAP service account refused with invalidCredentials: its password is wrong or \
             stale; not binding it again until the back-off ends, so it is not locked out"
        );
    }

    async fn bind_service_now(&self, ldap: &mut Ldap) -> Result<(), DirectoryError> {
        let dn = self.settings.config.bind_dn.as_deref().unwrap_or("");
        let password = self.settings.bind_password.as_deref().unwrap_or("");
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| unavailable(format!("service bind: {e}")))?;
        if result.rc == 0 {
            self.service.verified.store(true, Ordering::Release);
            return Ok(());
        }
        if result.rc == RC_INVALID_CREDENTIALS {
            self.record_service_refusal(dn);
        }
        let reason = ad_bind_failure(&result.text)
            .map(|(_, why)| why)
            .unwrap_or("refused");
        tracing::error!(dn, rc = result.rc, reason, text = %result.text, "LDAP service account bind failed");
        Err(unavailable(format!(
            "service account bind failed: rc {} ({reason})",
            result.rc
        )))
    }

    /// Binds as a user; `Rejected` with the AD reason when the server refuses.
    async fn bind_user(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        password: &str,
    ) -> Result<(), DirectoryError> {
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(dn, password)
            .await
            .map_err(|e| unavailable(format!("user bind: {e}")))?;
        match result.rc {
            0 => Ok(()),
            RC_INVALID_CREDENTIALS => {
                let (failure, why) = ad_bind_failure(&result.text)
                    .unwrap_or((AuthFailure::WrongPassword, "invalid credentials"));
                tracing::info!(dn, reason = why, "LDAP user bind refused");
                Err(DirectoryError::Rejected(failure))
            }
            rc => Err(unavailable(format!("user bind: rc {rc} {}", result.text))),
        }
    }

    /// The DN that names no account, bound for unknown users so they cost a bind too.
    pub fn absent_dn(&self) -> &str {
        &self.settings.absent_dn
    }

    /// Binds the presented password to [`Self::absent_dn`] and always refuses: an unknown
    /// user answers as slowly as a wrong password, without touching any real account.
    async fn refuse_unknown_user(&self, ldap: &mut Ldap, password: &str) -> DirectoryError {
        let result = ldap
            .with_timeout(self.settings.timeout)
            .simple_bind(&self.settings.absent_dn, password)
            .await;
        match result {
            Err(e) => unavailable(format!("user bind: {e}")),
            Ok(answer) if answer.rc == 0 => {
                tracing::warn!(
                    dn = %self.settings.absent_dn,
                    "LDAP server accepted a bind to a DN that names no account; refusing anyway"
                );
                DirectoryError::Rejected(AuthFailure::UnknownUser)
            }
            Ok(_) => DirectoryError::Rejected(AuthFailure::UnknownUser),
        }
    }

    /// Finds at most one entry under `user_base` matching `filter`.
    async fn find_one(
        &self,
        ldap: &mut Ldap,
        filter: &str,
    ) -> Result<Option<SearchEntry>, DirectoryError> {
        let entries = self
            .search(
                ldap,
                &self.settings.config.user_base,
                Scope::Subtree,
                filter,
            )
            .await?;
        match entries.len() {
            0 => Ok(None),
            1 => Ok(entries.into_iter().next()),
            n => {
                tracing::warn!(
                    filter,
                    entries = n,
                    "LDAP filter matched more than one entry; refusing"
                );
                Ok(None)
            }
        }
    }

    async fn search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        scope: Scope,
        filter: &str,
    ) -> Result<Vec<SearchEntry>, DirectoryError> {
        let attrs = self.wanted_attributes();
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(self.settings.timeout)
            .search(base, scope, filter, attrs)
            .await
            .map_err(|e| unavailable(format!("search: {e}")))?;
        match result.1.rc {
            0 | 4 => Ok(result.0.into_iter().map(SearchEntry::construct).collect()),
            RC_NO_SUCH_OBJECT => Ok(Vec::new()),
            rc => Err(unavailable(format!("search: rc {rc} {}", result.1.text))),
        }
    }

    fn wanted_attributes(&self) -> Vec<&str> {
        let c = &self.settings.config;
        let mut attrs = vec![
            c.upn_attr.as_str(),
            c.immutable_id_attr.as_str(),
            c.groups_attr.as_str(),
            c.display_name_attr.as_str(),
            c.sam_account_name_attr.as_str(),
            c.object_guid_attr.as_str(),
            c.object_sid_attr.as_str(),
        ];
        if c.user_account_control {
            attrs.push("userAccountControl");
            attrs.push(PASSWORD_EXPIRY_ATTR);
        }
        attrs
    }

    /// Whether the entry is enabled: `userAccountControl` bit 2 clear and `enabled_filter` matched.
    async fn is_enabled(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
    ) -> Result<bool, DirectoryError> {
        if self.settings.config.user_account_control {
            let disabled = first_text(entry, "userAccountControl")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .is_some_and(|uac| uac & UAC_ACCOUNT_DISABLE != 0);
            if disabled {
                return Ok(false);
            }
        }
        match &self.settings.config.enabled_filter {
            Some(filter) => Ok(!self
                .search(ldap, &entry.dn, Scope::Base, filter)
                .await?
                .is_empty()),
            None => Ok(true),
        }
    }

    /// The entry's ImmutableID; `mS-DS-ConsistencyGuid` falls back to `objectGUID` when the
    /// entry has none (what Entra Connect sourced it from).
    fn immutable_id(&self, entry: &SearchEntry) -> Result<String, DirectoryError> {
        let c = &self.settings.config;
        let fallback = c
            .immutable_id_attr
            .eq_ignore_ascii_case("mS-DS-ConsistencyGuid")
            .then_some(c.object_guid_attr.as_str());
        let (attr, raw) = first_raw(entry, &c.immutable_id_attr)
            .map(|raw| (c.immutable_id_attr.as_str(), raw))
            .or_else(|| fallback.and_then(|attr| first_raw(entry, attr).map(|raw| (attr, raw))))
            .ok_or_else(|| {
                DirectoryError::Invalid(format!("{} has no {}", entry.dn, c.immutable_id_attr))
            })?;
        immutable_id_from(attr, &raw)
            .map_err(|e| DirectoryError::Invalid(format!("{}: {e}", entry.dn)))
    }

    /// The groups of `entry`: transitive ones by the in-chain rule with `nested_groups`, else
    /// the values of `groups_attr`.
    async fn groups_of(
        &self,
        ldap: &mut Ldap,
        entry: &SearchEntry,
    ) -> Result<Vec<String>, DirectoryError> {
        let c = &self.settings.config;
        if !c.nested_groups {
            return Ok(values_of(&entry.attrs, &c.groups_attr)
                .cloned()
                .unwrap_or_default());
        }
        let filter = format!(
            "(member:{IN_CHAIN_RULE}:={})",
            escape_filter_value(&entry.dn)
        );
        let result = ldap
            .with_search_options(SearchOptions::new().sizelimit(MAX_NESTED_GROUPS))
            .with_timeout(self.settings.timeout)
            .search(&c.user_base, Scope::Subtree, &filter, vec!["1.1"])
            .await
            .map_err(|e| unavailable(format!("nested group search: {e}")))?;
        match result.1.rc {
            0 => Ok(result
                .0
                .into_iter()
                .map(|raw| SearchEntry::construct(raw).dn)
                .collect()),
            rc => Err(unavailable(format!(
                "nested group search: rc {rc} {} — nested_groups needs Active Directory",
                result.1.text
            ))),
        }
    }

    async fn to_user(&self, ldap: &mut Ldap, entry: &SearchEntry) -> Result<User, DirectoryError> {
        let c = &self.settings.config;
        let immutable_id = self.immutable_id(entry)?;
        let object_guid = first_raw(entry, &c.object_guid_attr)
            .filter(|raw| raw.len() == 16)
            .map(|raw| BASE64.encode(raw));
        let object_sid = first_raw(entry, &c.object_sid_attr).and_then(|raw| sid_to_string(&raw));
        Ok(User {
            upn: first_text(entry, &c.upn_attr).unwrap_or_default(),
            immutable_id,
            display_name: first_text(entry, &c.display_name_attr),
            groups: self.groups_of(ldap, entry).await?,
            sam_account_name: first_text(entry, &c.sam_account_name_attr),
            object_guid,
            object_sid,
            password_expires_at: first_text(entry, PASSWORD_EXPIRY_ATTR)
                .and_then(|v| filetime_expiry(&v)),
        })
    }

    /// Whether a looked-up value may be searched for at all: control characters are refused,
    /// because some servers (OpenLDAP) cut an assertion value at an escaped NUL, so
    /// `alice@example.com\0` would otherwise match `alice@example.com`.
    fn is_searchable(value: &str) -> bool {
        !value.is_empty() && value.len() <= 1024 && !value.chars().any(char::is_control)
    }

    fn filter_for(&self, template: &str, placeholder: &str, value: &str) -> String {
        template.replace(placeholder, &escape_filter_value(value))
    }

    async fn search_then_bind(
        &self,
        ldap: &mut Ldap,
        username: &str,
        password: &str,
    ) -> Result<User, DirectoryError> {
        self.bind_service(ldap).await?;
        let c = &self.settings.config;
        let filter = match SignInNames::of(c).lookup(username) {
            NameLookup::Upn(upn) => self.filter_for(&c.user_filter, "{upn}", upn),
            NameLookup::Account(sam) => self.filter_for(&c.account_filter, "{sam}", sam),
        };
        let Some(entry) = self.find_one(ldap, &filter).await? else {
            return Err(self.refuse_unknown_user(ldap, password).await);
        };
        let enabled = self.is_enabled(ldap, &entry).await?;
        self.bind_user(ldap, &entry.dn, password).await?;
        if !enabled {
            return Err(DirectoryError::Rejected(AuthFailure::Disabled));
        }
        self.to_user(ldap, &entry).await
    }

    async fn direct_bind(
        &self,
        ldap: &mut Ldap,
        template: &str,
        username: &str,
        password: &str,
    ) -> Result<User, DirectoryError> {
        let dn = template.replace("{upn}", &escape_dn_value(username));
        self.bind_user(ldap, &dn, password).await?;
        let filter = self.filter_for(&self.settings.config.user_filter, "{upn}", username);
        let entry = self
            .find_one(ldap, &filter)
            .await?
            .ok_or(DirectoryError::Rejected(AuthFailure::UnknownUser))?;
        if !self.is_enabled(ldap, &entry).await? {
            return Err(DirectoryError::Rejected(AuthFailure::Disabled));
        }
        self.to_user(ldap, &entry).await
    }

    /// The DN of the account `username` names (search as the service account, or the
    /// `bind_dn_template`); `UnknownUser` when none.
    async fn dn_of(&self, ldap: &mut Ldap, username: &str) -> Result<String, DirectoryError> {
        let c = &self.settings.config;
        if let Some(template) = &c.bind_dn_template {
            return Ok(template.replace("{upn}", &escape_dn_value(username)));
        }
        self.bind_service(ldap).await?;
        let filter = match SignInNames::of(c).lookup(username) {
            NameLookup::Upn(upn) => self.filter_for(&c.user_filter, "{upn}", upn),
            NameLookup::Account(sam) => self.filter_for(&c.account_filter, "{sam}", sam),
        };
        self.find_one(ldap, &filter)
            .await?
            .map(|entry| entry.dn)
            .ok_or(DirectoryError::Rejected(AuthFailure::UnknownUser))
    }

    /// What the server offers for a password change, from its root DSE.
    async fn change_method(&self, ldap: &mut Ldap) -> Result<ChangeMethod, DirectoryError> {
        let ldap3::SearchResult(entries, result) = ldap
            .with_timeout(self.settings.timeout)
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec!["supportedExtension", "supportedCapabilities"],
            )
            .await
            .map_err(|e| unavailable(format!("root DSE: {e}")))?;
        if result.rc != 0 {
            return Err(unavailable(format!(
                "root DSE: rc {} {}",
                result.rc, result.text
            )));
        }
        let root = entries.into_iter().next().map(SearchEntry::construct);
        let lists = |attr: &str, oid: &str| {
            root.as_ref()
                .and_then(|e| values_of(&e.attrs, attr))
                .is_some_and(|values| values.iter().any(|v| v == oid))
        };
        if lists("supportedCapabilities", ACTIVE_DIRECTORY_OID) {
            let c = &self.settings.config;
            if !(c.url.starts_with("ldaps://") || c.starttls) {
                return Err(DirectoryError::ChangeNotSupported(
                    "Active Directory changes passwords only over TLS: use ldaps:// or starttls"
                        .into(),
                ));
            }
            Ok(ChangeMethod::UnicodePwd)
        } else if lists("supportedExtension", PASSWORD_MODIFY_OID) {
            Ok(ChangeMethod::PasswordModify)
        } else {
            Err(DirectoryError::ChangeNotSupported(
                "the server advertises neither the Password Modify operation nor Active Directory"
                    .into(),
            ))
        }
    }

    /// One password change on `ldap`: the method the server offers, bound as the user. An AD
    /// user whose password has expired or must be changed cannot bind, so that change is made
    /// bound as the service account: AD grants every account the right to *change* (not reset)
    /// a password, and the delete of the old value makes the DC check it.
    async fn change_on(
        &self,
        ldap: &mut Ldap,
        change: &PasswordChange<'_>,
    ) -> Result<(), DirectoryError> {
        let dn = self.dn_of(ldap, change.username).await?;
        let method = self.change_method(ldap).await?;
        match (method, self.bind_user(ldap, &dn, change.old_password).await) {
            (_, Ok(())) => {}
            (
                ChangeMethod::UnicodePwd,
                Err(DirectoryError::Rejected(
                    AuthFailure::PasswordExpired | AuthFailure::MustChangePassword,
                )),
            ) => self.bind_service(ldap).await?,
            (_, Err(e)) => return Err(e),
        }
        let result = match method {
            ChangeMethod::PasswordModify => {
                let exop = ldap3::exop::PasswordModify {
                    user_id: None,
                    old_pass: Some(change.old_password),
                    new_pass: Some(change.new_password),
                };
                ldap.with_timeout(self.settings.timeout)
                    .extended(exop)
                    .await
                    .map(|r| r.1)
            }
            ChangeMethod::UnicodePwd => {
                let old = std::collections::HashSet::from([unicode_pwd(change.old_password)]);
                let new = std::collections::HashSet::from([unicode_pwd(change.new_password)]);
                let attr = b"unicodePwd".to_vec();
                ldap.with_timeout(self.settings.timeout)
                    .modify(
                        &dn,
                        vec![
                            ldap3::Mod::Delete(attr.clone(), old),
                            ldap3::Mod::Add(attr, new),
                        ],
                    )
                    .await
            }
        }
        .map_err(|e| unavailable(format!("password change: {e}")))?;
        match result.rc {
            0 => {
                tracing::info!(dn, "LDAP password changed");
                Ok(())
            }
            RC_CONSTRAINT_VIOLATION if is_wrong_old_password(&result.text) => {
                Err(DirectoryError::Rejected(AuthFailure::WrongPassword))
            }
            RC_CONSTRAINT_VIOLATION => {
                let rule = password_rule(&result.text);
                tracing::info!(dn, reason = rule.reason(), text = %result.text, "LDAP password change refused by policy");
                Err(DirectoryError::NewPasswordRefused(rule))
            }
            rc => Err(unavailable(format!(
                "password change: rc {rc} {}",
                result.text
            ))),
        }
    }

    /// Returns the connection to the pool unless the work hit an outage (then it is dropped,
    /// so the next call reconnects).
    /// Every request also refreshes the cached health, so `/healthz` follows what sign-ins
    /// see (healthy as soon as they work again) without binding for itself.
    fn finish<T>(&self, pooled: Pooled, result: &Result<T, DirectoryError>) {
        match result {
            Err(DirectoryError::Unavailable(message)) => self.remember_health(Err(message.clone())),
            _ => {
                self.release(pooled);
                self.remember_health(Ok(()));
            }
        }
    }

    fn remember_health(&self, answer: Result<(), String>) {
        let mut last = self.health.last.lock().unwrap_or_else(|p| p.into_inner());
        *last = Some((Instant::now(), answer));
    }

    async fn lookup_by(
        &self,
        template: &str,
        placeholder: &str,
        value: &str,
    ) -> Result<Option<User>, DirectoryError> {
        if !Self::is_searchable(value) {
            return Ok(None);
        }
        let mut pooled = self.checkout().await?;
        let result = self
            .lookup_on(&mut pooled.ldap, template, placeholder, value)
            .await;
        self.finish(pooled, &result);
        result
    }

    async fn lookup_on(
        &self,
        ldap: &mut Ldap,
        template: &str,
        placeholder: &str,
        value: &str,
    ) -> Result<Option<User>, DirectoryError> {
        self.bind_service(ldap).await?;
        let filter = self.filter_for(template, placeholder, value);
        let Some(entry) = self.find_one(ldap, &filter).await? else {
            return Ok(None);
        };
        if !self.is_enabled(ldap, &entry).await? {
            return Ok(None);
        }
        self.to_user(ldap, &entry).await.map(Some)
    }

    /// `Disabled` when the account's entry exists but is not enabled.
    async fn account_refusal_on(
        &self,
        ldap: &mut Ldap,
        sam_account_name: &str,
    ) -> Result<Option<AuthFailure>, DirectoryError> {
        self.bind_service(ldap).await?;
        let filter = self.filter_for(
            &self.settings.config.account_filter,
            "{sam}",
            sam_account_name,
        );
        match self.find_one(ldap, &filter).await? {
            Some(entry) if !self.is_enabled(ldap, &entry).await? => Ok(Some(AuthFailure::Disabled)),
            _ => Ok(None),
        }
    }

    /// The last health answer while it is younger than [`HEALTH_CACHE_TTL`].
    fn cached_health(&self) -> Option<Result<(), DirectoryError>> {
        let last = self.health.last.lock().unwrap_or_else(|p| p.into_inner());
        let (at, answer) = last.as_ref()?;
        (at.elapsed() < HEALTH_CACHE_TTL).then(|| answer.clone().map_err(unavailable))
    }

    async fn probe_health(&self) -> Result<(), DirectoryError> {
        let mut pooled = self.checkout().await?;
        let result = self.health_on(&mut pooled.ldap).await;
        self.finish(pooled, &result);
        result
    }

    async fn health_on(&self, ldap: &mut Ldap) -> Result<(), DirectoryError> {
        self.bind_service(ldap).await?;
        let base = &self.settings.config.user_base;
        let result = ldap
            .with_timeout(self.settings.timeout)
            .search(base, Scope::Base, "(objectClass=*)", vec!["1.1"])
            .await
            .map_err(|e| unavailable(format!("health search: {e}")))?;
        match result.1.rc {
            0 => Ok(()),
            rc => Err(unavailable(format!("health search of {base}: rc {rc}"))),
        }
    }
}

/// Why a connection failed, with the fix when the server's TLS certificate was refused.
/// A name mismatch gets its own hint: AD's self-made DC certificates name the host in their CN
/// only, which TLS clients ignore (RFC 6125), so "use a name the certificate names" misleads.
fn connect_failure(url: &str, error: &str) -> String {
    let hint = if error.contains("NotValidForName") || error.contains("not valid for name") {
        " — the server's TLS certificate does not name this host in a subjectAltName: a \
         subjectAltName is required (a name in the CN alone is ignored); reissue the certificate \
         with the DC's name as a subjectAltName, or use a host name its subjectAltName lists"
    } else if error.contains("certificate") {
        " — the server's TLS certificate was not accepted: set ca_file to the CA that issued it"
    } else {
        ""
    };
    format!("cannot connect to {url}: {error}{hint}")
}

/// The text a cached health failure is rebuilt from (without a second "unavailable:").
fn health_message(error: &DirectoryError) -> String {
    match error {
        DirectoryError::Unavailable(message) => message.clone(),
        other => other.to_string(),
    }
}

fn unavailable(message: impl Into<String>) -> DirectoryError {
    DirectoryError::Unavailable(message.into())
}

/// The values of `attr`, whose name compares case-insensitively (RFC 4512 §2.5): AD answers
/// with its schema's spelling (`mS-DS-ConsistencyGuid`) whatever the request said.
fn values_of<'a, T>(
    attrs: &'a std::collections::HashMap<String, Vec<T>>,
    attr: &str,
) -> Option<&'a Vec<T>> {
    attrs
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(attr))
        .map(|(_, values)| values)
}

fn first_text(entry: &SearchEntry, attr: &str) -> Option<String> {
    values_of(&entry.attrs, attr)
        .and_then(|values| values.first())
        .cloned()
}

/// The first value of `attr` as bytes, whether ldap3 filed it as text or as binary.
fn first_raw(entry: &SearchEntry, attr: &str) -> Option<Vec<u8>> {
    values_of(&entry.bin_attrs, attr)
        .and_then(|values| values.first())
        .cloned()
        .or_else(|| first_text(entry, attr).map(String::into_bytes))
}

fn service_password(config: &LdapConfig) -> Result<Option<String>, (String, DirectoryError)> {
    if let Some(password) = &config.bind_password {
        return Ok(Some(password.expose().to_owned()));
    }
    if let Some(path) = &config.bind_password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            (
                "bind_password_file".to_owned(),
                DirectoryError::Invalid(format!(
                    "cannot read {}: {e} — check the path and permissions",
                    path.display()
                )),
            )
        })?;
        return Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    if let Some(name) = &config.bind_password_env {
        let value = std::env::var(name).map_err(|_| {
            (
                "bind_password_env".to_owned(),
                DirectoryError::Invalid(format!(
                    "environment variable {name} is not set — export it before starting"
                )),
            )
        })?;
        return Ok(Some(value));
    }
    Ok(None)
}

fn tls_config(path: &std::path::Path) -> Result<Arc<rustls::ClientConfig>, DirectoryError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;
    let invalid = |e: String| DirectoryError::Invalid(format!("{}: {e}", path.display()));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))? {
        let cert = cert.map_err(|e| invalid(e.to_string()))?;
        roots.add(cert).map_err(|e| invalid(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(invalid(
            "no PEM certificate found — use a PEM CA bundle".into(),
        ));
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[async_trait]
impl Directory for LdapDirectory {
    async fn authenticate(&self, username: &str, password: &str) -> Result<User, DirectoryError> {
        if password.is_empty() {
            return Err(DirectoryError::Rejected(AuthFailure::WrongPassword));
        }
        if !Self::is_searchable(username) {
            return Err(DirectoryError::Rejected(AuthFailure::UnknownUser));
        }
        let started = Instant::now();
        let mut pooled = self.checkout().await?;
        let result = match &self.settings.config.bind_dn_template {
            Some(template) => {
                self.direct_bind(&mut pooled.ldap, template, username, password)
                    .await
            }
            None => {
                self.search_then_bind(&mut pooled.ldap, username, password)
                    .await
            }
        };
        self.finish(pooled, &result);
        match &result {
            // Only wrong passwords: a success also reads attributes and groups, and padding
            // to that made unknown users the slower answer (1.5x against Samba).
            Err(DirectoryError::Rejected(AuthFailure::WrongPassword)) => {
                self.bind_cost.note(started.elapsed());
            }
            Err(DirectoryError::Rejected(AuthFailure::UnknownUser)) => {
                self.bind_cost.pad(started).await;
            }
            Ok(_) | Err(_) => {}
        }
        result
    }

    /// A short form names the account by sAMAccountName, which need not be its UPN's local
    /// part (`jdoe` for `john.doe@…`), so it is resolved to the account's real UPN: every form
    /// of one account then shares one lockout counter. A name nobody has keeps the syntactic
    /// `name@upn_suffix` (an unknown user has no real UPN). A directory that cannot answer is
    /// an error, never that fallback: it would give the account a second counter.
    async fn canonical_name(&self, username: &str) -> Result<String, DirectoryError> {
        let names = SignInNames::of(&self.settings.config);
        if let NameLookup::Account(sam) = names.lookup(username)
            && let Some(user) = self.lookup_account(sam).await?
        {
            return Ok(user.upn.to_lowercase());
        }
        Ok(names.canonical(username))
    }

    async fn lookup(&self, upn: &str) -> Result<Option<User>, DirectoryError> {
        self.lookup_by(&self.settings.config.user_filter, "{upn}", upn)
            .await
    }

    async fn lookup_account(&self, sam_account_name: &str) -> Result<Option<User>, DirectoryError> {
        self.lookup_by(
            &self.settings.config.account_filter,
            "{sam}",
            sam_account_name,
        )
        .await
    }

    async fn account_refusal(
        &self,
        sam_account_name: &str,
    ) -> Result<Option<AuthFailure>, DirectoryError> {
        if !Self::is_searchable(sam_account_name) {
            return Ok(None);
        }
        let mut pooled = self.checkout().await?;
        let result = self
            .account_refusal_on(&mut pooled.ldap, sam_account_name)
            .await;
        self.finish(pooled, &result);
        result
    }

    async fn change_password(&self, change: &PasswordChange<'_>) -> Result<(), DirectoryError> {
        if change.old_password.is_empty() || change.new_password.is_empty() {
            return Err(DirectoryError::Rejected(AuthFailure::WrongPassword));
        }
        if !Self::is_searchable(change.username) {
            return Err(DirectoryError::Rejected(AuthFailure::UnknownUser));
        }
        let mut pooled = self.checkout().await?;
        let result = self.change_on(&mut pooled.ldap, change).await;
        self.finish(pooled, &result);
        result
    }

    async fn health(&self) -> Result<(), DirectoryError> {
        if let Some(answer) = self.cached_health() {
            return answer;
        }
        let _in_flight = self.health.in_flight.lock().await;
        if let Some(answer) = self.cached_health() {
            return answer;
        }
        let result = self.probe_health().await;
        self.remember_health(result.as_ref().map_err(health_message).copied());
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ad_password_expiry_reads_filetime_and_never_expires() {
        // 2024-01-01T00:00:00Z as FILETIME.
        let at = filetime_expiry("133485408000000000").unwrap();
        assert_eq!(at, time::macros::datetime!(2024-01-01 00:00:00 UTC));
        assert_eq!(
            filetime_expiry("9223372036854775807"),
            None,
            "never expires"
        );
        assert_eq!(filetime_expiry("0"), None, "must change now / no policy");
        assert_eq!(filetime_expiry("-1"), None);
        assert_eq!(filetime_expiry("soon"), None);
    }

    #[test]
    fn policy_refusals_are_named_from_samba_openldap_and_windows_texts() {
        let samba = |rest: &str| {
            format!("0000052D: Constraint violation - check_password_restrictions: {rest}")
        };
        let table = [
            (samba("the password was already used (in history)!"), PasswordRule::History),
            (samba("the password is too short. It should be equal or longer than 7 characters!"), PasswordRule::TooShort),
            (samba("the password does not meet the complexity criteria!"), PasswordRule::Complexity),
            (samba("password is too young to change!"), PasswordRule::TooYoung),
            ("Password is in history of old passwords".to_owned(), PasswordRule::History),
            ("Password fails quality checking policy".to_owned(), PasswordRule::Complexity),
            ("Password is too young to change".to_owned(), PasswordRule::TooYoung),
            ("0000052D: AtrErr: DSID-03191083, #1:\n\t0: 0000052D: DSID-03191083, problem 1005 (CONSTRAINT_ATT_TYPE), data 0, Att 9005a (unicodePwd)".to_owned(), PasswordRule::Policy),
        ];
        for (text, rule) in table {
            assert_eq!(password_rule(&text), rule, "{text}");
        }
        assert!(is_wrong_old_password(
            "00000056: Constraint violation - check_password_restrictions: the old password specified doesn't match!"
        ));
        assert!(is_wrong_old_password("0000056B: wrong password"));
        assert!(!is_wrong_old_password(&samba("history")));
    }

    #[test]
    fn unicode_pwd_is_quoted_utf16le() {
        assert_eq!(unicode_pwd("ä1"), [0x22, 0, 0xe4, 0, 0x31, 0, 0x22, 0]);
    }

    #[test]
    fn ad_sub_codes_map_to_reasons() {
        let text = |code: &str| {
            format!(
                "80090308: LdapErr: DSID-0C09044E, comment: AcceptSecurityContext error, data {code}, v4563"
            )
        };
        let table = [
            ("525", AuthFailure::UnknownUser),
            ("52e", AuthFailure::WrongPassword),
            ("52E", AuthFailure::WrongPassword),
            ("530", AuthFailure::LogonRestricted),
            ("531", AuthFailure::LogonRestricted),
            ("532", AuthFailure::PasswordExpired),
            ("533", AuthFailure::Disabled),
            ("701", AuthFailure::AccountExpired),
            ("773", AuthFailure::MustChangePassword),
            ("775", AuthFailure::Locked),
        ];
        for (code, expected) in table {
            let (failure, why) = ad_bind_failure(&text(code)).unwrap();
            assert_eq!(failure, expected, "{code}");
            assert!(
                why.starts_with(&format!("AD {}", code.to_ascii_lowercase())),
                "{why}"
            );
        }
        assert_eq!(ad_bind_failure(&text("999")), None);
        assert_eq!(ad_bind_failure("invalid credentials"), None);
        assert_eq!(ad_bind_failure(""), None);
    }

    #[test]
    fn filter_values_are_escaped() {
        assert_eq!(escape_filter_value("a*b"), "a\\2ab");
        assert_eq!(escape_filter_value(")(uid=*"), "\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("x\0y\\"), "x\\00y\\5c");
        assert_eq!(escape_filter_value("wörd@example.com"), "wörd@example.com");
    }

    #[test]
    fn dn_values_are_escaped() {
        assert_eq!(escape_dn_value("a,b=c+d"), "a\\,b\\=c\\+d");
        assert_eq!(escape_dn_value(" #x "), "\\ #x\\ ");
        assert_eq!(escape_dn_value("#x"), "\\#x");
        assert_eq!(escape_dn_value("n\0"), "n\\00");
    }

    #[test]
    fn immutable_ids_from_each_source() {
        let guid: Vec<u8> = (0u8..16).collect();
        assert_eq!(
            immutable_id_from("objectGUID", &guid).unwrap(),
            "AAECAwQFBgcICQoLDA0ODw=="
        );
        assert_eq!(
            immutable_id_from("mS-DS-ConsistencyGuid", &guid).unwrap(),
            "AAECAwQFBgcICQoLDA0ODw=="
        );
        assert!(immutable_id_from("objectGUID", &guid[..15]).is_err());
        assert_eq!(
            immutable_id_from("entryUUID", b"00010203-0405-0607-0809-0a0b0c0d0e0f").unwrap(),
            "AAECAwQFBgcICQoLDA0ODw=="
        );
        assert!(immutable_id_from("entryUUID", b"not-a-uuid").is_err());
        assert_eq!(
            immutable_id_from("employeeNumber", b"E123").unwrap(),
            "E123"
        );
    }

    #[test]
    fn a_name_mismatch_asks_for_a_subject_alt_name() {
        let text = connect_failure(
            "ldaps://dc1",
            "invalid peer certificate: certificate not valid for name \"dc1\"",
        );
        assert!(text.contains("subjectAltName is required"), "{text}");
        let text = connect_failure("ldaps://dc1", "invalid peer certificate: UnknownIssuer");
        assert!(text.contains("set ca_file"), "{text}");
        assert!(!text.contains("subjectAltName"), "{text}");
    }

    #[test]
    fn sids_render_as_text() {
        // S-1-5-21-1004336348-1177238915-682003330-512
        let mut raw = vec![1u8, 5, 0, 0, 0, 0, 0, 5];
        for sub in [21u32, 1004336348, 1177238915, 682003330, 512] {
            raw.extend_from_slice(&sub.to_le_bytes());
        }
        assert_eq!(
            sid_to_string(&raw).as_deref(),
            Some("S-1-5-21-1004336348-1177238915-682003330-512")
        );
        assert_eq!(sid_to_string(&raw[..raw.len() - 1]), None);
        assert_eq!(sid_to_string(&[]), None);
    }
}
