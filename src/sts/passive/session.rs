//! Browser state that we hand out signed and take back: the SSO session cookie, the form nonce
//! cookie with its CSRF token, the MFA ticket that carries a password check to the TOTP step,
//! and the enrolment ticket that names a pending TOTP enrolment (its secret stays server-side,
//! in the state store: `policy::totp_enrolment`).
//!
//! Every value is `base64url(payload).base64url(HMAC-SHA256(key, purpose ‖ payload))`, with the
//! app id and an expiry inside the payload, so a value from one app, one purpose or an earlier
//! time is refused. The key lives in a file made with mode 0600 on first start.
//!
//! A sealed session alone would stay good until it expires, even after `wsignout1.0` (a copied
//! cookie would keep getting tokens for hours). So each session carries a random id, sign-out
//! writes a revocation mark for that id into the state store (shared through Redis, kept until
//! the session would have expired) and a session is only honoured when no mark exists; a store
//! that cannot answer means no session (fail closed).

use std::io::Write as _;
use std::path::Path;

use aws_lc_rs::hmac;
use base64::Engine as _;
use time::{Duration, OffsetDateTime};

use crate::state::{StateError, StateStore};

/// Name of the SSO session cookie (scoped to `/wsfed/{app}`).
pub const SESSION_COOKIE: &str = "fedsts_session";
/// Name of the form nonce cookie (scoped to `/wsfed/{app}`).
pub const FORM_COOKIE: &str = "fedsts_form";
/// Name of the portal session cookie (scoped to `/`, so an app's passive flow sees it too).
pub const PORTAL_COOKIE: &str = "fedsts_portal";
/// Name of the portal's form nonce cookie (scoped to `/`).
pub const PORTAL_FORM_COOKIE: &str = "fedsts_portal_form";
/// What the portal's forms and form nonces are bound to instead of an app id (`/` is never
/// an app id).
pub const PORTAL_BINDING: &str = "/";
/// How long a sign-in form (and its nonce cookie) stays usable.
pub const FORM_LIFETIME_SECS: i64 = 30 * 60;
/// How long a user has to type the TOTP code after the password.
pub const MFA_TICKET_LIFETIME_SECS: i64 = 5 * 60;
/// Bytes of a new session key.
const KEY_BYTES: usize = 32;

/// Why the session key could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionKeyError {
    /// Reading or creating the file failed.
    #[error("{path}: {source} — check the directory exists and is writable by fedsts")]
    Io {
        /// The key file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file does not hold a usable key.
    #[error(
        "{0}: not a fedsts session key (base64 of at least 32 bytes) — delete it to make a new one"
    )]
    Malformed(String),
    /// Other users can read the file.
    #[error("{0}: readable by group or others — run chmod 600 on it")]
    TooOpen(String),
    /// No randomness.
    #[error("the system random generator failed")]
    Random,
}

/// The HMAC key behind every signed value.
#[derive(Clone)]
pub struct SessionKey(hmac::Key);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

impl SessionKey {
    /// A key from raw bytes.
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(hmac::Key::new(hmac::HMAC_SHA256, bytes))
    }

    /// Reads the key file, or creates it (mode 0600) with a new random key when it is missing.
    pub fn load_or_create(path: &Path) -> Result<Self, SessionKeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_file_text(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(source) => Err(SessionKeyError::Io {
                path: shown,
                source,
            }),
        }
    }

    fn from_file_text(path: &Path, text: &str) -> Result<Self, SessionKeyError> {
        use std::os::unix::fs::PermissionsExt as _;
        let shown = path.display().to_string();
        let mode = std::fs::metadata(path)
            .map_err(|source| SessionKeyError::Io {
                path: shown.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(SessionKeyError::TooOpen(shown));
        }
        let bytes = b64()
            .decode(text.trim())
            .map_err(|_| SessionKeyError::Malformed(shown.clone()))?;
        if bytes.len() < KEY_BYTES {
            return Err(SessionKeyError::Malformed(shown));
        }
        Ok(Self::from_bytes(&bytes))
    }

    fn create(path: &Path) -> Result<Self, SessionKeyError> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut bytes = [0u8; KEY_BYTES];
        crate::random::fill(&mut bytes).map_err(|_| SessionKeyError::Random)?;
        let io = |source| SessionKeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(format!("{}\n", b64().encode(bytes)).as_bytes())
            .map_err(io)?;
        Ok(Self::from_bytes(&bytes))
    }

    /// `payload.mac` for a purpose.
    fn seal(&self, purpose: &str, payload: &str) -> String {
        let tag = hmac::sign(&self.0, format!("{purpose}\n{payload}").as_bytes());
        format!("{}.{}", b64().encode(payload), b64().encode(tag.as_ref()))
    }

    /// The payload of a sealed value, when its MAC is right for the purpose.
    fn open(&self, purpose: &str, sealed: &str) -> Option<String> {
        let (payload, tag) = sealed.split_once('.')?;
        let payload = String::from_utf8(b64().decode(payload).ok()?).ok()?;
        let tag = b64().decode(tag).ok()?;
        hmac::verify(&self.0, format!("{purpose}\n{payload}").as_bytes(), &tag).ok()?;
        Some(payload)
    }

    /// The CSRF token that goes with a form nonce of an app.
    pub fn csrf_token(&self, app: &str, nonce: &str) -> String {
        let tag = hmac::sign(&self.0, format!("csrf\n{app}\n{nonce}").as_bytes());
        b64().encode(tag.as_ref())
    }

    /// Whether `token` is the CSRF token of `nonce` for `app` (constant time).
    pub fn csrf_matches(&self, app: &str, nonce: &str, token: &str) -> bool {
        b64().decode(token).is_ok_and(|tag| {
            hmac::verify(&self.0, format!("csrf\n{app}\n{nonce}").as_bytes(), &tag).is_ok()
        })
    }

    /// A sealed form nonce cookie value valid until `expires`.
    pub fn form_nonce(&self, app: &str, expires: OffsetDateTime) -> Option<String> {
        let nonce = random_text()?;
        Some(self.seal(
            "form",
            &join(&[app, &nonce, &expires.unix_timestamp().to_string()]),
        ))
    }

    /// The nonce inside a form cookie value, when it is ours, for `app` and not expired.
    pub fn open_form_nonce(&self, app: &str, sealed: &str, now: OffsetDateTime) -> Option<String> {
        let payload = self.open("form", sealed)?;
        let [cookie_app, nonce, expires] = fields::<3>(&payload)?;
        (cookie_app == app && unexpired(expires, now)).then(|| nonce.to_owned())
    }

    /// Seals an SSO session.
    pub fn seal_session(&self, session: &Session) -> String {
        self.seal("session", &session.payload())
    }

    /// The session in a cookie value, when it is ours, for `app` and not expired.
    pub fn open_session(&self, app: &str, sealed: &str, now: OffsetDateTime) -> Option<Session> {
        let session = Session::from_payload(&self.open("session", sealed)?)?;
        (session.app == app && session.expires > now).then_some(session)
    }

    /// Seals a portal session (its own MAC purpose: a portal cookie never opens as an app
    /// session, nor the other way round).
    pub fn seal_portal(&self, session: &PortalSession) -> String {
        self.seal("portal", &session.payload())
    }

    /// The portal session in a cookie value, when it is ours and not expired.
    pub fn open_portal(&self, sealed: &str, now: OffsetDateTime) -> Option<PortalSession> {
        let session = PortalSession::from_payload(&self.open("portal", sealed)?)?;
        (session.expires > now).then_some(session)
    }

    /// Seals an MFA ticket.
    pub fn seal_ticket(&self, ticket: &MfaTicket) -> String {
        self.seal("mfa", &ticket.payload())
    }

    /// The MFA ticket in a form field, when it is ours, for `app` and this form nonce, and not
    /// expired.
    pub fn open_ticket(
        &self,
        app: &str,
        nonce: &str,
        sealed: &str,
        now: OffsetDateTime,
    ) -> Option<MfaTicket> {
        let ticket = MfaTicket::from_payload(&self.open("mfa", sealed)?)?;
        (ticket.app == app && ticket.nonce == nonce && ticket.expires > now).then_some(ticket)
    }

    /// Seals an enrolment ticket.
    pub fn seal_enrolment(&self, ticket: &EnrolmentTicket) -> String {
        self.seal("enrol", &ticket.payload())
    }

    /// The enrolment ticket in a form field, when it is ours, for `app` and this form nonce,
    /// and not expired (whether its enrolment is still pending is the state store's answer).
    pub fn open_enrolment(
        &self,
        app: &str,
        nonce: &str,
        sealed: &str,
        now: OffsetDateTime,
    ) -> Option<EnrolmentTicket> {
        let ticket = EnrolmentTicket::from_payload(&self.open("enrol", sealed)?)?;
        (ticket.mfa.app == app && ticket.mfa.nonce == nonce && ticket.mfa.expires > now)
            .then_some(ticket)
    }
}

/// 16 random bytes, base64url.
fn random_text() -> Option<String> {
    crate::random::bytes::<16>()
        .ok()
        .map(|bytes| b64().encode(bytes))
}

fn join(fields: &[&str]) -> String {
    fields.join("\n")
}

fn fields<const N: usize>(payload: &str) -> Option<[&str; N]> {
    let parts: Vec<&str> = payload.split('\n').collect();
    parts.try_into().ok()
}

fn unexpired(expires: &str, now: OffsetDateTime) -> bool {
    expires
        .parse::<i64>()
        .is_ok_and(|t| t > now.unix_timestamp())
}

fn instant(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(text.parse().ok()?).ok()
}

/// A signed-in browser: who, since when, whether a second factor was used, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Random id of this sign-in, the handle of its revocation at sign-out.
    pub id: String,
    /// App id the session belongs to.
    pub app: String,
    /// The user's UPN as the directory spells it.
    pub upn: String,
    /// When the password was checked.
    pub authenticated_at: OffsetDateTime,
    /// Whether a TOTP code was checked in this session.
    pub mfa: bool,
    /// End of the session.
    pub expires: OffsetDateTime,
}

impl Session {
    /// A session: `continuing` is the id of the live session a single sign-on renews (so its
    /// sign-out still ends every renewed copy), else a fresh random id; `None` when the system
    /// random generator fails.
    pub fn start(
        continuing: Option<&str>,
        app: &str,
        upn: &str,
        authenticated_at: OffsetDateTime,
        mfa: bool,
        expires: OffsetDateTime,
    ) -> Option<Self> {
        let id = match continuing {
            Some(id) => id.to_owned(),
            None => random_text()?,
        };
        Some(Self {
            id,
            app: app.to_owned(),
            upn: upn.to_owned(),
            authenticated_at,
            mfa,
            expires,
        })
    }

    /// State-store key of this session's revocation mark.
    fn revocation_key(&self) -> String {
        format!("session_revoked:{}:{}", self.app, self.id)
    }

    /// Marks the session signed out for every instance sharing `store`. Single sign-on renews a
    /// session (same id, later expiry), so a copy renewed just before sign-out lives up to
    /// `lifetime` from now: the mark is kept that long.
    pub async fn revoke(
        &self,
        store: &dyn StateStore,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        Self::revoke_id(store, &self.app, &self.id, lifetime, now).await
    }

    /// Marks the session `id` of `app` signed out (the portal's sign-out ends the app sessions
    /// its tiles started, which carry the portal session's id).
    pub async fn revoke_id(
        store: &dyn StateStore,
        app: &str,
        id: &str,
        lifetime: Duration,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        mark_revoked(store, &format!("session_revoked:{app}:{id}"), lifetime, now).await
    }

    /// Whether the session was signed out (on any instance sharing `store`).
    pub async fn is_revoked(
        &self,
        store: &dyn StateStore,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        is_marked_revoked(store, &self.revocation_key(), now).await
    }

    fn payload(&self) -> String {
        join(&[
            &self.id,
            &self.app,
            &self.upn,
            &self.authenticated_at.unix_timestamp().to_string(),
            if self.mfa { "mfa" } else { "pwd" },
            &self.expires.unix_timestamp().to_string(),
        ])
    }

    fn from_payload(payload: &str) -> Option<Self> {
        let [id, app, upn, at, mfa, expires] = fields::<6>(payload)?;
        Some(Self {
            id: id.to_owned(),
            app: app.to_owned(),
            upn: upn.to_owned(),
            authenticated_at: instant(at)?,
            mfa: match mfa {
                "mfa" => true,
                "pwd" => false,
                _ => return None,
            },
            expires: instant(expires)?,
        })
    }
}

/// A browser signed in to the portal: who, which directory checked the password, since when,
/// whether a second factor was used, which notice version the user acknowledged, until when.
///
/// An app's passive flow accepts it (single sign-on from a tile) only when the app uses the
/// same directory and its domain covers the UPN, the notice is acknowledged, and the id is not
/// revoked; the app session it starts keeps the portal session's id, so the portal's sign-out
/// ends it too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalSession {
    /// Random id of this sign-in, the handle of its revocation.
    pub id: String,
    /// The user's UPN as the directory spells it.
    pub upn: String,
    /// Name of the `[directories.NAME]` entry that checked the password.
    pub directory: String,
    /// When the password was checked.
    pub authenticated_at: OffsetDateTime,
    /// Whether a TOTP code was checked.
    pub mfa: bool,
    /// The notice version the user acknowledged (empty: none yet).
    pub notice: String,
    /// End of the session.
    pub expires: OffsetDateTime,
}

impl PortalSession {
    /// A new portal session with a random id; `None` when the system random generator fails.
    pub fn start(
        upn: &str,
        directory: &str,
        authenticated_at: OffsetDateTime,
        mfa: bool,
        expires: OffsetDateTime,
    ) -> Option<Self> {
        Some(Self {
            id: random_text()?,
            upn: upn.to_owned(),
            directory: directory.to_owned(),
            authenticated_at,
            mfa,
            notice: String::new(),
            expires,
        })
    }

    /// State-store key of this session's revocation mark.
    fn revocation_key(&self) -> String {
        format!("portal_revoked:{}", self.id)
    }

    /// Marks the portal session signed out for every instance sharing `store`, until it
    /// would have expired anyway.
    pub async fn revoke(
        &self,
        store: &dyn StateStore,
        now: OffsetDateTime,
    ) -> Result<(), StateError> {
        mark_revoked(store, &self.revocation_key(), self.expires - now, now).await
    }

    /// Whether the portal session was signed out (on any instance sharing `store`).
    pub async fn is_revoked(
        &self,
        store: &dyn StateStore,
        now: OffsetDateTime,
    ) -> Result<bool, StateError> {
        is_marked_revoked(store, &self.revocation_key(), now).await
    }

    fn payload(&self) -> String {
        join(&[
            &self.id,
            &self.upn,
            &self.directory,
            &self.authenticated_at.unix_timestamp().to_string(),
            if self.mfa { "mfa" } else { "pwd" },
            &self.notice,
            &self.expires.unix_timestamp().to_string(),
        ])
    }

    fn from_payload(payload: &str) -> Option<Self> {
        let [id, upn, directory, at, mfa, notice, expires] = fields::<7>(payload)?;
        Some(Self {
            id: id.to_owned(),
            upn: upn.to_owned(),
            directory: directory.to_owned(),
            authenticated_at: instant(at)?,
            mfa: match mfa {
                "mfa" => true,
                "pwd" => false,
                _ => return None,
            },
            notice: notice.to_owned(),
            expires: instant(expires)?,
        })
    }
}

/// Proof that a password check succeeded, carried by the TOTP form (never the password).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MfaTicket {
    /// App id.
    pub app: String,
    /// The form nonce of the browser that passed the password check.
    pub nonce: String,
    /// The user's UPN.
    pub upn: String,
    /// When the password was checked.
    pub authenticated_at: OffsetDateTime,
    /// Until when the code may be entered.
    pub expires: OffsetDateTime,
}

impl MfaTicket {
    fn payload(&self) -> String {
        join(&[
            &self.app,
            &self.nonce,
            &self.upn,
            &self.authenticated_at.unix_timestamp().to_string(),
            &self.expires.unix_timestamp().to_string(),
        ])
    }

    fn from_payload(payload: &str) -> Option<Self> {
        let [app, nonce, upn, at, expires] = fields::<5>(payload)?;
        Some(Self {
            app: app.to_owned(),
            nonce: nonce.to_owned(),
            upn: upn.to_owned(),
            authenticated_at: instant(at)?,
            expires: instant(expires)?,
        })
    }
}

/// Proof that a fresh password check (or a current code) started the TOTP enrolment `id` of a
/// user in this browser; the new secret itself is never in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnrolmentTicket {
    /// App, browser nonce, user, password-check time and expiry, as an MFA ticket has them.
    pub mfa: MfaTicket,
    /// Random id of the pending enrolment (a later start for the same user replaces it).
    pub id: String,
}

impl EnrolmentTicket {
    fn payload(&self) -> String {
        join(&[&self.mfa.payload(), &self.id])
    }

    fn from_payload(payload: &str) -> Option<Self> {
        let (mfa, id) = payload.rsplit_once('\n')?;
        Some(Self {
            mfa: MfaTicket::from_payload(mfa)?,
            id: id.to_owned(),
        })
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: Option<&'a str>, name: &str) -> Option<&'a str> {
    header?.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value)
    })
}

/// A `Set-Cookie` value: HttpOnly, Secure, scoped to the app's path.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, same_site: &str) -> String {
    format!(
        "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite={same_site}"
    )
}

/// Writes the sign-out mark `key` (an app or portal session's), kept `lifetime` (at least a
/// second), for every instance sharing `store`; a mark already there stays.
async fn mark_revoked(
    store: &dyn StateStore,
    key: &str,
    lifetime: Duration,
    now: OffsetDateTime,
) -> Result<(), StateError> {
    let ttl = lifetime.max(Duration::seconds(1));
    store.set_if_absent(key, "1", ttl, now).await.map(|_| ())
}

/// Whether the sign-out mark `key` is in `store`.
async fn is_marked_revoked(
    store: &dyn StateStore,
    key: &str,
    now: OffsetDateTime,
) -> Result<bool, StateError> {
    Ok(store.get(key, now).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    fn at(unix: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(unix).unwrap()
    }

    fn session() -> Session {
        Session {
            id: "s1".into(),
            app: "app1".into(),
            upn: "alice@example.com".into(),
            authenticated_at: at(1_000),
            mfa: true,
            expires: at(2_000),
        }
    }

    #[test]
    fn session_round_trip_binding_and_expiry() {
        let key = SessionKey::from_bytes(&[7; 32]);
        let sealed = key.seal_session(&session());
        assert_eq!(
            key.open_session("app1", &sealed, at(1_999)),
            Some(session())
        );
        assert_eq!(key.open_session("app1", &sealed, at(2_000)), None);
        assert_eq!(key.open_session("app2", &sealed, at(1_500)), None);
        let other = SessionKey::from_bytes(&[8; 32]);
        assert_eq!(other.open_session("app1", &sealed, at(1_500)), None);
        let (payload, tag) = sealed.split_once('.').unwrap();
        let forged_payload = b64().encode(
            String::from_utf8(b64().decode(payload).unwrap())
                .unwrap()
                .replace("pwd", "mfa")
                .replace("alice", "mallory"),
        );
        assert_eq!(
            key.open_session("app1", &format!("{forged_payload}.{tag}"), at(1_500)),
            None
        );
        assert_eq!(key.open("mfa", &sealed), None, "purposes are separated");
    }

    #[tokio::test]
    async fn a_revoked_session_is_revoked_and_only_that_one() {
        let store = crate::state::memory::MemoryStore::new("t");
        let start = |continuing| {
            Session::start(
                continuing,
                "app1",
                "alice@example.com",
                at(1_000),
                false,
                at(2_000),
            )
            .unwrap()
        };
        let (first, second) = (start(None), start(None));
        assert_ne!(first.id, second.id, "every sign-in gets its own id");
        let renewed = start(Some(&first.id));
        assert!(!first.is_revoked(&store, at(1_100)).await.unwrap());
        first
            .revoke(&store, Duration::seconds(1_000), at(1_100))
            .await
            .unwrap();
        first
            .revoke(&store, Duration::seconds(1_000), at(1_101))
            .await
            .unwrap();
        assert!(renewed.is_revoked(&store, at(2_099)).await.unwrap());
        assert!(!renewed.is_revoked(&store, at(2_100)).await.unwrap());
        assert!(!second.is_revoked(&store, at(1_999)).await.unwrap());
    }

    #[test]
    fn csrf_and_form_nonce() {
        let key = SessionKey::from_bytes(&[7; 32]);
        let now = at(10_000);
        let cookie = key.form_nonce("app1", now + Duration::minutes(30)).unwrap();
        let nonce = key.open_form_nonce("app1", &cookie, now).unwrap();
        let token = key.csrf_token("app1", &nonce);
        assert!(key.csrf_matches("app1", &nonce, &token));
        assert!(!key.csrf_matches("app2", &nonce, &token));
        assert!(!key.csrf_matches("app1", "other", &token));
        assert!(!key.csrf_matches("app1", &nonce, "not base64!"));
        assert_eq!(key.open_form_nonce("app2", &cookie, now), None);
        assert_eq!(
            key.open_form_nonce("app1", &cookie, now + Duration::minutes(31)),
            None
        );
    }

    #[test]
    fn ticket_is_bound_to_nonce() {
        let key = SessionKey::from_bytes(&[7; 32]);
        let ticket = MfaTicket {
            app: "app1".into(),
            nonce: "n1".into(),
            upn: "alice@example.com".into(),
            authenticated_at: at(100),
            expires: at(400),
        };
        let sealed = key.seal_ticket(&ticket);
        assert_eq!(
            key.open_ticket("app1", "n1", &sealed, at(399)),
            Some(ticket)
        );
        assert_eq!(key.open_ticket("app1", "n2", &sealed, at(200)), None);
        assert_eq!(key.open_ticket("app1", "n1", &sealed, at(400)), None);
    }

    #[test]
    fn enrolment_ticket_is_bound_and_not_an_mfa_ticket() {
        let key = SessionKey::from_bytes(&[7; 32]);
        let ticket = EnrolmentTicket {
            mfa: MfaTicket {
                app: "app1".into(),
                nonce: "n1".into(),
                upn: "alice@example.com".into(),
                authenticated_at: at(100),
                expires: at(700),
            },
            id: "e1".into(),
        };
        let sealed = key.seal_enrolment(&ticket);
        assert_eq!(
            key.open_enrolment("app1", "n1", &sealed, at(699)),
            Some(ticket.clone())
        );
        assert_eq!(key.open_enrolment("app1", "n2", &sealed, at(200)), None);
        assert_eq!(key.open_enrolment("app2", "n1", &sealed, at(200)), None);
        assert_eq!(key.open_enrolment("app1", "n1", &sealed, at(700)), None);
        assert_eq!(key.open_ticket("app1", "n1", &sealed, at(200)), None);
        let mfa = key.seal_ticket(&ticket.mfa);
        assert_eq!(key.open_enrolment("app1", "n1", &mfa, at(200)), None);
        let (payload, tag) = sealed.split_once('.').unwrap();
        let forged = b64().encode(
            String::from_utf8(b64().decode(payload).unwrap())
                .unwrap()
                .replace("e1", "e2"),
        );
        assert_eq!(
            key.open_enrolment("app1", "n1", &format!("{forged}.{tag}"), at(200)),
            None
        );
    }

    #[test]
    fn key_file_is_created_private_and_reloaded() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("session.key");
        let first = SessionKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = SessionKey::load_or_create(&path).unwrap();
        let sealed = first.seal_session(&session());
        assert!(again.open_session("app1", &sealed, at(1_500)).is_some());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            SessionKey::load_or_create(&path),
            Err(SessionKeyError::TooOpen(_))
        ));
        std::fs::write(dir.path().join("bad.key"), "short").unwrap();
        std::fs::set_permissions(
            dir.path().join("bad.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert!(matches!(
            SessionKey::load_or_create(&dir.path().join("bad.key")),
            Err(SessionKeyError::Malformed(_))
        ));
    }

    #[test]
    fn cookies() {
        let header = Some("a=1; fedsts_session=xyz.abc; b=2");
        assert_eq!(cookie_value(header, SESSION_COOKIE), Some("xyz.abc"));
        assert_eq!(cookie_value(header, "c"), None);
        assert_eq!(
            set_cookie("n", "v", "/wsfed/a", 60, "Lax"),
            "n=v; Path=/wsfed/a; Max-Age=60; HttpOnly; Secure; SameSite=Lax"
        );
    }
}
