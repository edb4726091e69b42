//! Passive WS-Federation (docs/protocol-notes.md#passive-ws-federation): browser sign-in with
//! an optional TOTP step-up, single sign-on through a signed session cookie, sign-out,
//! IdP-initiated launch, and the signed federation metadata document. The sign-in steps and
//! their order are in `steps`.
//!
//! One request: parameters (query for GET, form body for POST) → [`WsFedRequest`] (checked
//! against the app's realms and `wreply` allow-list) → session, password or TOTP step → the same
//! signed SAML 1.1 assertion the active endpoints issue, wrapped in a WS-Trust 2005 RSTR
//! (`wresult`) and auto-posted to the reply target with `wctx` echoed byte for byte.
//!
//! Forms carry a CSRF token: the HMAC of a nonce held in a SameSite=Strict cookie. The TOTP form
//! carries a signed ticket instead of the password. `multipleauthn` is claimed only when a TOTP
//! code was checked in this browser session. With `passive.totp_self_enrolment`, a user without
//! a secret enrols one right after the password (QR page, first code verified before the secret
//! is stored; the secret waits in the state store, the form carries a ticket naming it).

pub mod metadata;
pub mod pages;
mod password;
pub mod session;
mod steps;

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use super::guard::SignInGuard;
use super::{App, HttpReply, RequestInfo};
use crate::error::{ErrorPage, PassiveAnswer, StsError};
use crate::policy::Policies;
use crate::policy::audit::{AuditRecord, Decision};
use crate::protocol::ns::MICROSOFT_ONLINE;
use crate::protocol::wstrust;

use pages::{Branding, NewAuthenticator, OwnForm};
use session::{
    EnrolmentTicket, FORM_COOKIE, MfaTicket, PORTAL_BINDING, PORTAL_COOKIE, PORTAL_FORM_COOKIE,
    PortalSession, SESSION_COOKIE, Session, SessionKey,
};

/// `wa` of a sign-in request.
pub const WSIGNIN: &str = "wsignin1.0";
/// `wa` of a sign-out request.
pub const WSIGNOUT: &str = "wsignout1.0";
/// `wa` of a sign-out cleanup request.
pub const WSIGNOUT_CLEANUP: &str = "wsignoutcleanup1.0";
/// The `wauth` / claim value that asks for (and proves) multi-factor authentication.
pub const MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";
/// Longest `wctx` we echo.
pub const MAX_WCTX_BYTES: usize = 4096;
/// Longest user name or password we look at.
const MAX_CREDENTIAL_BYTES: usize = 1024;
const HTML: &str = "text/html; charset=utf-8";
const BAD_CREDENTIALS: &str =
    "The user name or password is incorrect, or the account cannot sign in.";
const BAD_CODE: &str = "That code is not valid. Wait for a new code and try again.";

/// Why a passive request was refused before any credential was looked at.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum WsFedError {
    /// The parameters are not valid `application/x-www-form-urlencoded` UTF-8.
    #[error("the parameters are not valid URL-encoded UTF-8")]
    Encoding,
    /// A parameter appears twice.
    #[error("the parameter {0} appears more than once")]
    Duplicate(String),
    /// No `wa`.
    #[error("wa is missing")]
    MissingAction,
    /// A `wa` we do not handle.
    #[error("wa must be wsignin1.0, wsignout1.0 or wsignoutcleanup1.0")]
    UnknownAction,
    /// No `wtrealm` on a sign-in.
    #[error("wtrealm is missing")]
    MissingRealm,
    /// A realm this app does not serve.
    #[error("wtrealm is not a realm of this application")]
    UnknownRealm,
    /// `wreply` not on the allow-list.
    #[error("wreply is not an allowed reply address of this application")]
    ReplyNotAllowed,
    /// `wctx` too long.
    #[error("wctx is longer than {MAX_WCTX_BYTES} bytes")]
    ContextTooLong,
}

/// Which passive endpoint was called.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `GET /wsfed/{app}`: parameters in the query.
    Get,
    /// `POST /wsfed/{app}`: parameters in the form body.
    Post,
    /// `GET /wsfed/{app}/launch`: IdP-initiated sign-in (empty `wctx`).
    Launch,
}

/// Parses `application/x-www-form-urlencoded` text (also a query string).
pub fn parse_form(text: &str) -> Result<BTreeMap<String, String>, WsFedError> {
    let mut params = BTreeMap::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = percent_decode(name)?;
        if params.contains_key(&name) {
            return Err(WsFedError::Duplicate(name));
        }
        params.insert(name, percent_decode(value)?);
    }
    Ok(params)
}

fn percent_decode(text: &str) -> Result<String, WsFedError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(WsFedError::Encoding)?;
                let hex = std::str::from_utf8(hex).map_err(|_| WsFedError::Encoding)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| WsFedError::Encoding)?);
                i += 2;
            }
            other => out.push(other),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| WsFedError::Encoding)
}

/// A checked passive request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WsFedRequest {
    /// `wa=wsignin1.0`.
    SignIn(SignIn),
    /// `wa=wsignout1.0` or `wa=wsignoutcleanup1.0`; the allowed `wreply`, if any.
    SignOut {
        /// Where to send the browser afterwards (already checked).
        wreply: Option<String>,
    },
}

/// Whom a sign-in is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// A token for the app, posted to the reply target (passive WS-Federation).
    App,
    /// A portal session (the user portal at `/`): the same steps, a different ending.
    Portal,
}

/// A checked sign-in request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignIn {
    /// Whom the sign-in is for.
    pub audience: Audience,
    /// `wtrealm` as sent.
    pub realm: String,
    /// `wctx`, echoed byte for byte.
    pub wctx: String,
    /// `wreply` as sent (already on the allow-list), if any.
    pub wreply: Option<String>,
    /// `wauth` as sent, if any.
    pub wauth: Option<String>,
    /// Where the response is posted.
    pub reply_to: String,
    /// Whether a TOTP code is needed (wauth asks or app policy).
    pub mfa_required: bool,
    /// Whether a live session must be ignored (`wfresh=0` or `prompt=login`).
    pub fresh: bool,
    /// `username` login hint.
    pub username_hint: String,
}

impl SignIn {
    /// A portal sign-in: no WS-Federation parameters; a TOTP code when `mfa_required`.
    fn portal(mfa_required: bool) -> Self {
        Self {
            audience: Audience::Portal,
            realm: String::new(),
            wctx: String::new(),
            wreply: None,
            wauth: None,
            reply_to: String::new(),
            mfa_required,
            fresh: false,
            username_hint: String::new(),
        }
    }

    /// Hidden fields that carry the request through our forms.
    fn carried_fields(&self) -> Vec<(&'static str, String)> {
        if self.audience == Audience::Portal {
            return Vec::new();
        }
        let mut fields = vec![
            ("wa", WSIGNIN.to_owned()),
            ("wtrealm", self.realm.clone()),
            ("wctx", self.wctx.clone()),
        ];
        if let Some(wreply) = &self.wreply {
            fields.push(("wreply", wreply.clone()));
        }
        if let Some(wauth) = &self.wauth {
            fields.push(("wauth", wauth.clone()));
        }
        fields
    }
}

/// Checks the parameters of a passive request against the app.
pub fn parse_request(
    app: &App,
    params: &BTreeMap<String, String>,
) -> Result<WsFedRequest, WsFedError> {
    let get = |name: &str| params.get(name).map(String::as_str);
    let wreply = get("wreply").filter(|w| !w.is_empty());
    let allowed = wreply
        .filter(|url| reply_allowed(app, url))
        .map(str::to_owned);
    match get("wa") {
        None | Some("") => Err(WsFedError::MissingAction),
        // A sign-out always signs out; an unlisted wreply only loses its redirect.
        Some(WSIGNOUT | WSIGNOUT_CLEANUP) => Ok(WsFedRequest::SignOut { wreply: allowed }),
        Some(WSIGNIN) if wreply.is_some() && allowed.is_none() => Err(WsFedError::ReplyNotAllowed),
        Some(WSIGNIN) => sign_in_request(app, params, allowed).map(WsFedRequest::SignIn),
        Some(_) => Err(WsFedError::UnknownAction),
    }
}

fn sign_in_request(
    app: &App,
    params: &BTreeMap<String, String>,
    wreply: Option<String>,
) -> Result<SignIn, WsFedError> {
    let get = |name: &str| params.get(name).map(String::as_str);
    let realm = get("wtrealm")
        .filter(|r| !r.is_empty())
        .ok_or(WsFedError::MissingRealm)?;
    if realm != MICROSOFT_ONLINE && !app.config.passive.realms.iter().any(|r| r == realm) {
        return Err(WsFedError::UnknownRealm);
    }
    let wctx = get("wctx").unwrap_or("");
    if wctx.len() > MAX_WCTX_BYTES {
        return Err(WsFedError::ContextTooLong);
    }
    let wauth = get("wauth").filter(|w| !w.is_empty()).map(str::to_owned);
    let mfa_asked = wauth.as_deref().is_some_and(|w| w.contains(MULTIPLE_AUTHN));
    Ok(SignIn {
        audience: Audience::App,
        realm: realm.to_owned(),
        wctx: wctx.to_owned(),
        reply_to: wreply
            .clone()
            .unwrap_or_else(|| app.config.passive.reply_url.clone()),
        wreply,
        wauth,
        mfa_required: mfa_asked || app.config.passive.require_mfa,
        fresh: get("wfresh") == Some("0") || get("prompt") == Some("login"),
        username_hint: get("username").unwrap_or("").chars().take(256).collect(),
    })
}

/// Whether `url` is the app's reply URL or on its `allowed_wreply` list (exact match).
fn reply_allowed(app: &App, url: &str) -> bool {
    let passive = &app.config.passive;
    passive.reply_url == url || passive.allowed_wreply.iter().any(|u| u == url)
}

/// `https://host[:port]` of a URL the configuration accepted.
fn origin_of(url: &str) -> String {
    let rest = url.strip_prefix("https://").unwrap_or(url);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("https://{authority}")
}

/// Passive sign-in for every app: the cookie key (kept across a reload) and what the apps need
/// to know of the portal.
#[derive(Clone, Debug)]
pub struct WsFed {
    key: SessionKey,
    portal: PortalLink,
}

/// What passive sign-in needs to know of the user portal: whether its sessions count (single
/// sign-on from a tile), the notice version they must have acknowledged, and how the portal's
/// own sign-in behaves.
#[derive(Clone, Debug)]
pub struct PortalLink {
    /// `[portal] enabled`.
    pub enabled: bool,
    /// `[portal.notice] version`: a portal session that did not acknowledge it signs in to no app.
    pub notice_version: Option<String>,
    /// Portal session lifetime.
    pub lifetime: Duration,
    /// The organisation name on the portal's sign-in pages.
    pub name: String,
    /// `[portal] require_mfa`.
    pub require_mfa: bool,
}

impl PortalLink {
    /// No portal: portal cookies are never honoured.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            notice_version: None,
            lifetime: Duration::ZERO,
            name: String::new(),
            require_mfa: false,
        }
    }
}

/// Signs the federation metadata of an app publishing `signing` (current, next, previous).
pub fn metadata_document(
    config: &crate::config::AppConfig,
    urls: &crate::sts::AppUrls,
    signing: &crate::autoroll::SigningSet,
) -> Result<String, crate::protocol::xmldsig::XmlDsigError> {
    let input = metadata::MetadataInput {
        issuer: &config.issuer_uri,
        passive_url: &urls.passive(),
        sts_url: &urls.usernamemixed(wstrust::TrustVersion::V2005),
        mex_url: &urls.mex(),
        signing_certificates: signing.published_certificates(),
    };
    let id = format!("_{}", uuid::Uuid::new_v4());
    metadata::signed_document(&input, &id, &signing.current)
}

/// The signed federation metadata of an app, as it is published now.
pub fn metadata_reply(app: &App) -> HttpReply {
    HttpReply {
        status: 200,
        content_type: "application/samlmetadata+xml",
        headers: Vec::new(),
        body: app.published().metadata.clone(),
    }
}

/// A reply being put together: page, status and the headers that go with it.
struct PageReply {
    status: u16,
    body: String,
    csp: String,
    cookies: Vec<String>,
    location: Option<String>,
    retry_after: Option<u64>,
}

impl PageReply {
    fn into_http(self) -> HttpReply {
        let mut headers = vec![
            ("content-security-policy", self.csp),
            ("x-frame-options", "DENY".to_owned()),
            ("referrer-policy", "no-referrer".to_owned()),
            ("pragma", "no-cache".to_owned()),
        ];
        headers.extend(self.cookies.into_iter().map(|c| ("set-cookie", c)));
        if let Some(location) = self.location {
            headers.push(("location", location));
        }
        if let Some(seconds) = self.retry_after {
            headers.push(("retry-after", seconds.to_string()));
        }
        HttpReply {
            status: self.status,
            content_type: HTML,
            headers,
            body: self.body,
        }
    }
}

fn csp(nonce: &str, form_action: &str, script: bool, data_images: bool) -> String {
    let script = if script {
        format!(" script-src 'nonce-{nonce}';")
    } else {
        String::new()
    };
    let images = if data_images {
        "https: data:"
    } else {
        "https:"
    };
    format!(
        "default-src 'none'; style-src 'nonce-{nonce}';{script} img-src {images}; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )
}

/// A fresh CSP nonce; without a generator it is empty, so CSP then allows no script (fails
/// closed) and the page's own buttons still work.
fn csp_nonce() -> String {
    crate::random::token(16).unwrap_or_else(|e| {
        tracing::error!(error = %e, "no CSP nonce; page served without script");
        String::new()
    })
}

/// A page of the portal with the sign-in page's headers (CSP, frame, referrer, cache): no
/// script, forms post to ourselves, images also from `data:` URLs (the tile logos read at
/// start). `render` gets the CSP nonce.
pub(crate) fn portal_page(
    status: u16,
    cookies: Vec<String>,
    location: Option<String>,
    render: impl FnOnce(&str) -> String,
) -> HttpReply {
    let nonce = csp_nonce();
    PageReply {
        status,
        body: render(&nonce),
        csp: csp(&nonce, "'self'", false, true),
        cookies,
        location,
        retry_after: None,
    }
    .into_http()
}

/// Where one sign-in lives: the app's passive endpoint, or the portal.
struct Scope {
    /// Form action and cookie path.
    path: String,
    /// The path the form nonce cookie is scoped to: the endpoint whose forms it protects.
    nonce_path: String,
    /// The form nonce cookie.
    form_cookie: &'static str,
    /// What CSRF tokens and form nonces are bound to (the app id, or [`PORTAL_BINDING`]).
    binding: String,
    /// How long the session lives.
    lifetime: Duration,
    /// The name on the pages, when not the app's.
    display_name: Option<String>,
}

impl Scope {
    fn app(app: &App) -> Self {
        let secs = i64::try_from(app.config.passive.session_lifetime_secs).unwrap_or(28_800);
        Self {
            path: app.urls.passive_path(),
            nonce_path: app.urls.passive_path(),
            form_cookie: FORM_COOKIE,
            binding: app.config.id.clone(),
            lifetime: Duration::seconds(secs),
            display_name: None,
        }
    }

    fn portal(link: &PortalLink) -> Self {
        Self {
            path: "/".to_owned(),
            nonce_path: "/".to_owned(),
            form_cookie: PORTAL_FORM_COOKIE,
            binding: PORTAL_BINDING.to_owned(),
            lifetime: link.lifetime,
            display_name: Some(link.name.clone()),
        }
    }

    /// The app's change-password page: the app's sign-in, its form nonce scoped to the page.
    fn password_page(app: &App) -> Self {
        Self {
            nonce_path: app.urls.password_change_path(),
            ..Self::app(app)
        }
    }
}

/// Per-request state of one passive call.
struct Exchange<'a> {
    /// The policy steps shared with the active endpoints (and app, request, time).
    guard: SignInGuard<'a>,
    /// The one audit record of this call.
    record: AuditRecord,
    /// The form nonce of this browser and, when it is new, the cookie that sets it.
    nonce: Option<String>,
    cookies: Vec<String>,
    /// The id of the live session this request renews (single sign-on), if any.
    session_id: Option<String>,
    /// The app's passive endpoint or the portal.
    scope: Scope,
}

impl<'a> Exchange<'a> {
    fn new(guard: SignInGuard<'a>, record: AuditRecord, scope: Scope) -> Self {
        Self {
            guard,
            record,
            nonce: None,
            cookies: Vec::new(),
            session_id: None,
            scope,
        }
    }

    fn branding(&self) -> Branding<'_> {
        match &self.scope.display_name {
            Some(name) => Branding {
                display_name: name,
                logo_url: None,
            },
            None => Branding {
                display_name: self.guard.app.config.display_name(),
                logo_url: self.guard.app.config.passive.logo_url.as_deref(),
            },
        }
    }

    /// How long a session cookie of this scope lives (`passive.session_lifetime_secs`, or the
    /// portal's).
    fn session_lifetime(&self) -> Duration {
        self.scope.lifetime
    }

    fn cookie_path(&self) -> String {
        self.scope.path.clone()
    }

    /// Whether users of this app without a TOTP secret may enrol one while signing in
    /// (`passive.totp_self_enrolment`).
    fn self_enrolment(&self) -> bool {
        self.guard.app.config.passive.totp_self_enrolment
    }

    /// A page of ours: forms post back to us, no script.
    fn page(
        &mut self,
        status: u16,
        render: impl FnOnce(&Branding<'_>, &str) -> String,
    ) -> PageReply {
        self.page_with(status, "'self'", false, render)
    }

    /// A page with a fresh CSP nonce, the form target allowed by CSP, and optionally the nonce's
    /// script.
    fn page_with(
        &mut self,
        status: u16,
        form_action: &str,
        script: bool,
        render: impl FnOnce(&Branding<'_>, &str) -> String,
    ) -> PageReply {
        let nonce = csp_nonce();
        let body = render(&self.branding(), &nonce);
        PageReply {
            status,
            body,
            csp: csp(&nonce, form_action, script, false),
            cookies: std::mem::take(&mut self.cookies),
            location: None,
            retry_after: None,
        }
    }

    fn message(&mut self, status: u16, title: &str, text: &str) -> PageReply {
        self.page(status, |b, n| pages::message(b, title, text, n))
    }

    fn error_page(&mut self, page: &ErrorPage) -> PageReply {
        let mut reply = self.page(page.status, |b, n| {
            pages::refusal(b, page.title, &page.text, page.admin_actions, n)
        });
        reply.retry_after = page.retry_after_secs;
        reply
    }

    /// Writes the audit record of a refusal.
    fn refuse(&self, reason: &'static str) {
        self.record.emit(Decision::Refused, reason, None);
    }

    /// Writes the audit record of a refusal with what was wrong (in the log line only).
    fn refuse_with(&self, reason: &'static str, detail: &str) {
        self.record.emit(Decision::Refused, reason, Some(detail));
    }
}

impl WsFed {
    /// Passive sign-in with this cookie key, honouring portal sessions as `portal` says.
    pub fn new(key: SessionKey, portal: PortalLink) -> Self {
        Self { key, portal }
    }

    /// The cookie key (a reload keeps it, so browsers stay signed in).
    pub fn key(&self) -> &SessionKey {
        &self.key
    }

    /// The portal's sign-in (showing the form, or a posted password or code form): the steps of
    /// passive sign-in through `app`, the app chosen for the name, ending in a portal session.
    pub(crate) async fn portal_sign_in(
        &self,
        policies: &Policies,
        app: &App,
        call: Call,
        body: &[u8],
        info: &RequestInfo,
        now: OffsetDateTime,
    ) -> HttpReply {
        let request = SignIn::portal(self.portal.require_mfa || app.config.passive.require_mfa);
        let guard = SignInGuard::new(policies, app, info, now, None, None);
        let record = guard.audit_record("portal/signin");
        let mut exchange = Exchange::new(guard, record, Scope::portal(&self.portal));
        self.sign_in(&mut exchange, call, &request, body)
            .await
            .into_http()
    }

    /// Answers one passive call, under the service's protection policies.
    pub async fn handle(
        &self,
        policies: &Policies,
        app: &App,
        call: Call,
        body: &[u8],
        info: &RequestInfo,
        now: OffsetDateTime,
    ) -> HttpReply {
        let parsed = self.request(app, call, body, info);
        let (wtrealm, wctx) = match &parsed {
            Ok(WsFedRequest::SignIn(r)) => (Some(r.realm.as_str()), Some(r.wctx.as_str())),
            _ => (None, None),
        };
        let guard = SignInGuard::new(policies, app, info, now, wtrealm, wctx);
        let endpoint = match (&parsed, call) {
            (Ok(WsFedRequest::SignOut { .. }), _) => "wsfed/signout",
            (_, Call::Launch) => "wsfed/launch",
            _ => "wsfed/signin",
        };
        let record = guard.audit_record(endpoint);
        let mut exchange = Exchange::new(guard, record, Scope::app(app));
        let reply = match parsed {
            Ok(WsFedRequest::SignOut { wreply }) => self.sign_out(&mut exchange, wreply).await,
            Ok(WsFedRequest::SignIn(request)) => {
                self.sign_in(&mut exchange, call, &request, body).await
            }
            Err(error) => {
                exchange.refuse_with("bad_request", &error.to_string());
                exchange.message(
                    400,
                    "Sign-in request not accepted",
                    &format!("This sign-in request cannot be processed: {error}."),
                )
            }
        };
        reply.into_http()
    }

    /// Audits a refusal and answers it: credential failures show the sign-in form again with the
    /// generic message, everything else its page, as [`StsError::outcome`] decided.
    fn refused(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        username: &str,
        error: StsError,
    ) -> PageReply {
        let outcome = error.outcome();
        match &outcome.detail {
            Some(detail) => exchange.refuse_with(outcome.reason, detail),
            None => exchange.refuse(outcome.reason),
        }
        match outcome.passive {
            PassiveAnswer::SignInFormAgain => {
                self.password_form(exchange, request, username, Some(BAD_CREDENTIALS), 401)
            }
            PassiveAnswer::PasswordChangeForm { status, text } => {
                let target = password::ChangeTarget {
                    action: exchange.guard.app.urls.passive_path(),
                    carried: request.carried_fields(),
                };
                self.change_form(exchange, &target, username, Some(text), status)
            }
            PassiveAnswer::Page(page) => exchange.error_page(&page),
        }
    }

    fn request(
        &self,
        app: &App,
        call: Call,
        body: &[u8],
        info: &RequestInfo,
    ) -> Result<WsFedRequest, WsFedError> {
        let query = info.query.as_deref().unwrap_or("");
        let mut params = match call {
            Call::Get | Call::Launch => parse_form(query)?,
            Call::Post => parse_form(std::str::from_utf8(body).map_err(|_| WsFedError::Encoding)?)?,
        };
        if call == Call::Launch {
            let hint = params.remove("username");
            params.clear();
            params.insert("wa".into(), WSIGNIN.into());
            params.insert("wtrealm".into(), MICROSOFT_ONLINE.into());
            params.insert("wctx".into(), String::new());
            params.extend(hint.map(|h| ("username".to_owned(), h)));
        }
        parse_request(app, &params)
    }

    /// The browser's form nonce, made (with its cookie) when it has none.
    fn ensure_nonce(&self, exchange: &mut Exchange<'_>) -> Option<String> {
        if let Some(nonce) = self.cookie_nonce(exchange) {
            return Some(nonce);
        }
        let expires = exchange.guard.now + Duration::seconds(session::FORM_LIFETIME_SECS);
        let binding = &exchange.scope.binding;
        let sealed = self.key.form_nonce(binding, expires)?;
        let nonce = self
            .key
            .open_form_nonce(binding, &sealed, exchange.guard.now)?;
        exchange.cookies.push(session::set_cookie(
            exchange.scope.form_cookie,
            &sealed,
            &exchange.scope.nonce_path,
            session::FORM_LIFETIME_SECS,
            "Strict",
        ));
        exchange.nonce = Some(nonce.clone());
        Some(nonce)
    }

    /// Whether a posted CSRF token is the one of this browser's form nonce.
    fn csrf_ok(&self, exchange: &Exchange<'_>, csrf: &str) -> bool {
        self.cookie_nonce(exchange)
            .is_some_and(|n| self.key.csrf_matches(&exchange.scope.binding, &n, csrf))
    }

    fn cookie_nonce(&self, exchange: &Exchange<'_>) -> Option<String> {
        if exchange.nonce.is_some() {
            return exchange.nonce.clone();
        }
        let cookies = exchange.guard.info.cookie.as_deref();
        let sealed = session::cookie_value(cookies, exchange.scope.form_cookie)?;
        self.key
            .open_form_nonce(&exchange.scope.binding, sealed, exchange.guard.now)
    }

    /// The portal session in this request's cookies, when the portal is on and the cookie is
    /// ours and unexpired (revocation is checked by the caller).
    fn portal_session(&self, exchange: &Exchange<'_>) -> Option<PortalSession> {
        if !self.portal.enabled {
            return None;
        }
        let sealed = session::cookie_value(exchange.guard.info.cookie.as_deref(), PORTAL_COOKIE)?;
        self.key.open_portal(sealed, exchange.guard.now)
    }

    fn session(&self, exchange: &Exchange<'_>) -> Option<Session> {
        let sealed = session::cookie_value(exchange.guard.info.cookie.as_deref(), SESSION_COOKIE)?;
        self.key
            .open_session(&exchange.guard.app.config.id, sealed, exchange.guard.now)
    }

    fn password_form(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        username: &str,
        error: Option<&str>,
        status: u16,
    ) -> PageReply {
        let Some(nonce) = self.ensure_nonce(exchange) else {
            return random_failure(exchange);
        };
        let mut hidden = request.carried_fields();
        hidden.push(("csrf", self.key.csrf_token(&exchange.scope.binding, &nonce)));
        let action = exchange.cookie_path();
        exchange.page(status, |b, n| {
            let form = OwnForm {
                action: &action,
                hidden: &hidden,
            };
            pages::sign_in(b, &form, username, error, n)
        })
    }

    fn totp_form(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        ticket: &MfaTicket,
        error: Option<&str>,
    ) -> PageReply {
        let mut hidden = request.carried_fields();
        hidden.push((
            "csrf",
            self.key.csrf_token(&exchange.scope.binding, &ticket.nonce),
        ));
        hidden.push(("mfa_ticket", self.key.seal_ticket(ticket)));
        if request.audience == Audience::Portal {
            // Which app's directory holds the code; the ticket is bound to it.
            hidden.push(("app", ticket.app.clone()));
        }
        let action = exchange.cookie_path();
        let status = if error.is_some() { 401 } else { 200 };
        let offer_new_authenticator = exchange.self_enrolment();
        exchange.page(status, |b, n| {
            let form = OwnForm {
                action: &action,
                hidden: &hidden,
            };
            pages::totp(b, &form, &ticket.upn, error, offer_new_authenticator, n)
        })
    }

    /// The enrolment page of a pending enrolment: QR code and key of `secret` (issuer: the
    /// app's display name, account: the UPN) and the form for its first code.
    fn enrol_form(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        ticket: &EnrolmentTicket,
        secret: &crate::totp::TotpKey,
        error: Option<&str>,
    ) -> PageReply {
        let mut hidden = request.carried_fields();
        hidden.push((
            "csrf",
            self.key.csrf_token(&ticket.mfa.app, &ticket.mfa.nonce),
        ));
        hidden.push(("enrol_ticket", self.key.seal_enrolment(ticket)));
        let action = exchange.guard.app.urls.passive_path();
        let issuer = exchange.guard.app.config.display_name().to_owned();
        let uri = crate::totp::otpauth_uri(&issuer, &ticket.mfa.upn, secret);
        // Without a QR code (an issuer name too long for one) the key and the link still work.
        let qr_svg = crate::totp::qr_svg(&uri).unwrap_or_default();
        let secret_base32 = secret.to_base32();
        let status = if error.is_some() { 401 } else { 200 };
        exchange.page(status, |b, n| {
            let form = OwnForm {
                action: &action,
                hidden: &hidden,
            };
            let new = NewAuthenticator {
                upn: &ticket.mfa.upn,
                uri: &uri,
                qr_svg: &qr_svg,
                secret_base32: &secret_base32,
            };
            pages::enrol(b, &form, &new, error, n)
        })
    }

    /// Clears the cookies and revokes the session server-side, so a copy of the cookie is dead on
    /// every instance. When the revocation cannot be written, the page says so (503): the
    /// session would still be alive for a copied cookie.
    async fn sign_out(&self, exchange: &mut Exchange<'_>, wreply: Option<String>) -> PageReply {
        let path = exchange.cookie_path();
        exchange
            .cookies
            .push(session::set_cookie(SESSION_COOKIE, "", &path, 0, "Lax"));
        exchange
            .cookies
            .push(session::set_cookie(FORM_COOKIE, "", &path, 0, "Strict"));
        let store = &*exchange.guard.policies.store;
        let now = exchange.guard.now;
        let mut revoked = Ok(());
        if let Some(session) = self.session(exchange) {
            exchange.record.user = session.upn.clone();
            revoked = session
                .revoke(store, exchange.session_lifetime(), now)
                .await;
        }
        // Signing out of an app (Entra's sign-out) also ends the portal session, which would
        // otherwise sign the browser straight back in.
        if let Some(portal) = self.portal_session(exchange) {
            exchange
                .cookies
                .push(session::set_cookie(PORTAL_COOKIE, "", "/", 0, "Lax"));
            exchange.record.user = portal.upn.clone();
            revoked = revoked.and(portal.revoke(store, now).await);
        }
        if let Err(e) = revoked {
            tracing::warn!(error = %e, "sign-out could not revoke the session");
            exchange.refuse("state_unavailable");
            return exchange.message(
                503,
                "Sign-out not completed",
                "This browser's session cookie is removed, but the sign-in service could not end the session on the server right now. Try signing out again in a few minutes.",
            );
        }
        exchange.record.emit(Decision::SignedOut, "ok", None);
        match wreply {
            Some(url) => {
                let mut reply = exchange.message(302, "Signed out", "You are signed out.");
                reply.location = Some(url);
                reply
            }
            None => exchange.message(
                200,
                "Signed out",
                "You are signed out. You can close this window.",
            ),
        }
    }
}

fn random_failure(exchange: &mut Exchange<'_>) -> PageReply {
    exchange.message(
        500,
        "Sign-in failed",
        "The sign-in failed on the server. Try again later.",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding() {
        let params =
            parse_form("wa=wsignin1.0&wctx=LoginOptions%3D3%26estsredirect%3d2&x=a+b&empty")
                .unwrap();
        assert_eq!(params["wctx"], "LoginOptions=3&estsredirect=2");
        assert_eq!(params["x"], "a b");
        assert_eq!(params["empty"], "");
        assert_eq!(
            parse_form("a=1&a=2"),
            Err(WsFedError::Duplicate("a".into()))
        );
        assert_eq!(parse_form("a=%zz"), Err(WsFedError::Encoding));
        assert_eq!(parse_form("a=%ff"), Err(WsFedError::Encoding));
        assert_eq!(parse_form("a=%4"), Err(WsFedError::Encoding));
    }

    #[test]
    fn origins() {
        assert_eq!(
            origin_of("https://login.microsoftonline.com/login.srf"),
            "https://login.microsoftonline.com"
        );
        assert_eq!(
            origin_of("https://127.0.0.1:4443/?x=1"),
            "https://127.0.0.1:4443"
        );
    }
}
