//! The steps of one passive sign-in ([`Step`], with the diagram of the order of checks) and
//! the one place that renders their answers (`WsFed::run`).

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use super::password::{ChangeForm, ChangeTarget};
use super::session::{
    self, EnrolmentTicket, MfaTicket, PORTAL_COOKIE, PortalSession, SESSION_COOKIE, Session,
    SessionKey,
};
use super::{
    Audience, BAD_CODE, BAD_CREDENTIALS, Call, Exchange, MAX_CREDENTIAL_BYTES, PageReply, SignIn,
    WSIGNIN, WsFed, origin_of, pages, parse_form, random_failure,
};
use crate::config::device::Flow;
use crate::directory::{DirectoryError, User};
use crate::error::StsError;
use crate::policy::Refusal;
use crate::policy::audit::Decision;
use crate::policy::totp_enrolment::{ENROLMENT_LIFETIME, Pending, PendingEnrolments};
use crate::protocol::saml::{self, SignedAssertion, TokenType};
use crate::protocol::wstrust;
use crate::secret::Secret;
use crate::state::StateError;
use crate::sts::App;
use crate::totp::{self, TotpKey};

/// Where one passive sign-in is. Each step is one function of [`WsFed`]; it either names the
/// next step or answers ([`Next`]: the password form, a refusal, a page), and only
/// `WsFed::run` renders answers. The order of checks ("form" is the password form):
///
/// ```text
///        GET, launch tile                              POST
///               │                                        │
///               ▼                                        ▼
///   Arrived: POST and launch take a rate-limit token (none left: 429 page)
///               │ GET, launch                            │ POST
///               ▼                                        ▼
///   Session: a live session, not revoked,      Posted: CSRF token (bad: form, 403)
///   its user still in the directory and          │ step=totp           │ otherwise
///   domain; else the form (store down: 503)      ▼                     ▼
///               │                              Code                 Password
///               │                  ticket (expired: form),      lockout check,
///               │                  wrong codes left (429),      password, lockout
///               │                  code in the drift window,    record, domain
///               │                  spent once (wrong or         (refused: form, 401)
///               │                  replayed: code form again)        │
///               │                        │        expired or must change: change form
///               │                        │        step=change: ChangePassword (current
///               │                        │        password through the guard, lockout
///               │                        │        counted; the directory's change; refused:
///               │                        │        change form again) ─► Password (new one)
///               ▼                        │ mfa = true                │
///   Authenticated ◄──────────────────────┴───────────────────────────┘
///      │ MFA asked and not done yet
///      ├─────────────────────────► SecondFactor: device trust (403), an enrolled key
///      │                           (none: 403, or with passive.totp_self_enrolment:
///      │                           Enrol after a password typed in this request, else
///      │                           the form again), then the code form with a signed ticket
///      │ otherwise
///      └─────────────────────────► Issue: device trust (403), session cookie, signed
///                                  assertion, auto-post to the reply target
///                                  (one audit record: issued); for the portal: the
///                                  portal session cookie, 303 to `/` (signed_in)
///
///   Code with then=enrol, the code right ─► Enrol (replacing the checked secret)
///
///   Enrol: a new secret from `random`, pending in the state store (one per user,
///   10 minutes), the QR page with a signed ticket naming it (audit: started)
///
///   Posted step=enrol ─► EnrolCode: ticket (bad: form, 401), still the user's pending
///   enrolment (replaced, spent or expired: form, 401), wrong codes left (429), the code
///   of the new secret, spent once (wrong or replayed: QR page again), the enrolment
///   spent once, stored while the user's secret is still what it replaces (else 409)
///   (audit: completed) ─► Authenticated with mfa = true
/// ```
///
/// Session looks at the app's own session first, then a portal session (a tile's single
/// sign-on, accepted only for an app on the same directory whose domain covers the user, once
/// the portal notice is acknowledged). The portal's own sign-in runs the same steps with
/// [`Audience::Portal`]: its Session step is the form.
///
/// Every refusal on the way is one audit record; credential failures of every kind show the
/// password form again with one message ([`StsError::outcome`] decides which).
enum Step<'b> {
    /// A sign-in request arrived: POST and the launch tile take a rate-limit token.
    Arrived {
        /// Which endpoint.
        call: Call,
        /// The form body (POST).
        body: &'b [u8],
    },
    /// GET or launch: single sign-on from a live session, or the password form.
    Session,
    /// One of our forms was posted (its fields).
    Posted(BTreeMap<String, String>),
    /// The password form was posted.
    Password {
        /// As typed.
        username: String,
        /// As typed.
        password: Secret,
    },
    /// The change-password form was posted (offered for an expired password).
    ChangePassword(ChangeForm),
    /// The code form was posted (its ticket is an MFA ticket).
    Code {
        /// Nonce, ticket and code.
        form: CodeForm,
        /// The user asked to set up a new authenticator once this code verifies.
        then_enrol: bool,
    },
    /// A TOTP secret is to be enrolled for a user whose password (or current code) was just
    /// checked.
    Enrol {
        /// Who.
        signed_in: SignedIn,
        /// The fingerprint of the secret the new one replaces (checked by a current code in
        /// this request).
        replacing: Option<String>,
    },
    /// The first code of a new authenticator was posted (its ticket is an enrolment ticket).
    EnrolCode(CodeForm),
    /// Who the user is is known (password, session or code).
    Authenticated(SignedIn),
    /// A TOTP code is needed.
    SecondFactor(SignedIn),
    /// The token.
    Issue(SignedIn),
}

/// A posted code form (sign-in or enrolment).
struct CodeForm {
    /// The browser's form nonce the ticket is bound to.
    nonce: String,
    /// The signed ticket the form carries.
    sealed_ticket: String,
    /// The code as typed.
    code: String,
}

/// A user whose identity one of the steps proved.
struct SignedIn {
    user: User,
    /// When the password was checked (kept through single sign-on and the code step).
    authenticated_at: OffsetDateTime,
    /// Whether a TOTP code was checked in this browser session.
    mfa: bool,
    /// How this request proved it (`password`, `session`, `totp`): the audit reason of the token.
    via: &'static str,
}

/// How a step ends.
enum Next<'b> {
    /// Go on with this step.
    Step(Step<'b>),
    /// The password form (again), pre-filled with `username`.
    PasswordForm {
        /// Pre-fill.
        username: String,
        /// The message above the form.
        message: Option<&'static str>,
        /// HTTP status.
        status: u16,
    },
    /// A refusal, answered as [`StsError::outcome`] decides (audited when rendered).
    Refused {
        /// Pre-fill of the password form, when the outcome is the form again.
        username: String,
        /// Why.
        error: StsError,
    },
    /// A page the step made.
    Page(PageReply),
}

impl Next<'_> {
    fn form(username: &str, message: Option<&'static str>, status: u16) -> Self {
        Next::PasswordForm {
            username: username.to_owned(),
            message,
            status,
        }
    }

    fn refused(username: &str, error: impl Into<StsError>) -> Self {
        Next::Refused {
            username: username.to_owned(),
            error: error.into(),
        }
    }
}

impl WsFed {
    /// A sign-in request: its steps from [`Step::Arrived`].
    pub(super) async fn sign_in(
        &self,
        exchange: &mut Exchange<'_>,
        call: Call,
        request: &SignIn,
        body: &[u8],
    ) -> PageReply {
        self.run(exchange, request, Step::Arrived { call, body })
            .await
    }

    /// Runs the steps of one sign-in (see [`Step`]) until one of them answers. The answers are
    /// rendered here and only here: the password form, a refusal as [`StsError::outcome`]
    /// decided, or a page the step made (code form, message, auto-post).
    async fn run(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        first: Step<'_>,
    ) -> PageReply {
        let mut step = first;
        loop {
            let next = match step {
                Step::Arrived { call, body } => self.arrived(exchange, call, body).await,
                Step::Session => self.session_step(exchange, request).await,
                Step::Posted(fields) => self.posted(exchange, fields),
                Step::Password { username, password } => {
                    self.password_step(exchange, &username, password.expose())
                        .await
                }
                Step::ChangePassword(form) => self.change_step(exchange, request, form).await,
                Step::Code { form, then_enrol } => {
                    self.code_step(exchange, request, &form, then_enrol).await
                }
                Step::Enrol {
                    signed_in,
                    replacing,
                } => {
                    self.enrol_step(exchange, request, signed_in, replacing)
                        .await
                }
                Step::EnrolCode(form) => self.enrol_code_step(exchange, request, &form).await,
                Step::Authenticated(signed_in) => Self::authenticated(request, signed_in),
                Step::SecondFactor(signed_in) => self.step_up(exchange, request, signed_in).await,
                Step::Issue(signed_in) => self.issue_step(exchange, request, &signed_in),
            };
            step = match next {
                Next::Step(next_step) => next_step,
                Next::PasswordForm {
                    username,
                    message,
                    status,
                } => return self.password_form(exchange, request, &username, message, status),
                Next::Refused { username, error } => {
                    return self.refused(exchange, request, &username, error);
                }
                Next::Page(page) => return page,
            };
        }
    }

    /// The calls that carry credentials or may issue without a form (POST, launch tile) take a
    /// token from the client IP's bucket first; showing the form (GET) is not limited.
    async fn arrived(&self, exchange: &mut Exchange<'_>, call: Call, body: &[u8]) -> Next<'static> {
        if call != Call::Get
            && let Err(refusal) = exchange.guard.rate_limit().await
        {
            return Next::refused("", refusal);
        }
        match call {
            Call::Post => {
                let fields = std::str::from_utf8(body)
                    .ok()
                    .and_then(|b| parse_form(b).ok())
                    .unwrap_or_default();
                Next::Step(Step::Posted(fields))
            }
            Call::Get | Call::Launch => Next::Step(Step::Session),
        }
    }

    /// A live session (single sign-on) of the app, else of the portal, that is not revoked and
    /// whose user is still in the directory and the domain; otherwise the password form. (The
    /// portal shows its own sessions before it comes here: for it, this is the form.)
    async fn session_step(&self, exchange: &mut Exchange<'_>, request: &SignIn) -> Next<'static> {
        if request.fresh || request.audience == Audience::Portal {
            return Next::form(&request.username_hint, None, 200);
        }
        if let Some(session) = self.session(exchange) {
            return self.app_session(exchange, session).await;
        }
        match self.portal_session(exchange) {
            Some(portal) => self.portal_single_sign_on(exchange, portal).await,
            None => Next::form(&request.username_hint, None, 200),
        }
    }

    /// The app's own session: not revoked, its user still in the directory and domain.
    async fn app_session(&self, exchange: &mut Exchange<'_>, session: Session) -> Next<'static> {
        let store = &*exchange.guard.policies.store;
        match session.is_revoked(store, exchange.guard.now).await {
            Ok(false) => {}
            Ok(true) => {
                exchange.record.user = session.upn.clone();
                exchange.refuse("session_signed_out");
                return Next::form("", None, 200);
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        exchange.session_id = Some(session.id.clone());
        exchange.record.user = session.upn.clone();
        match exchange.guard.app.directory.lookup(&session.upn).await {
            Ok(Some(user)) if exchange.guard.app.owns_upn(&user.upn) => {
                Next::Step(Step::Authenticated(SignedIn {
                    user,
                    authenticated_at: session.authenticated_at,
                    mfa: session.mfa,
                    via: "session",
                }))
            }
            Ok(_) => Next::form("", None, 200),
            Err(e) => Next::refused("", e),
        }
    }

    /// Single sign-on from a portal session (a tile): only for an app on the directory that
    /// checked the password whose domain covers the user, after the portal notice was
    /// acknowledged, while the session is not revoked and the user is still in the directory.
    /// The app session it starts keeps the portal session's id (the portal's sign-out ends it).
    async fn portal_single_sign_on(
        &self,
        exchange: &mut Exchange<'_>,
        portal: PortalSession,
    ) -> Next<'static> {
        let app = exchange.guard.app;
        exchange.record.user = portal.upn.clone();
        if portal.directory != app.config.directory || !app.owns_upn(&portal.upn) {
            exchange.refuse("portal_session_not_for_app");
            return Next::form("", None, 200);
        }
        let acknowledged = self
            .portal
            .notice_version
            .as_deref()
            .is_none_or(|version| version == portal.notice);
        if !acknowledged {
            exchange.refuse("portal_notice_not_acknowledged");
            return Next::form("", None, 200);
        }
        let store = &*exchange.guard.policies.store;
        match portal.is_revoked(store, exchange.guard.now).await {
            Ok(false) => {}
            Ok(true) => {
                exchange.refuse("session_signed_out");
                return Next::form("", None, 200);
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        match app.directory.lookup(&portal.upn).await {
            Ok(Some(user)) if app.owns_upn(&user.upn) => {
                exchange.session_id = Some(portal.id);
                Next::Step(Step::Authenticated(SignedIn {
                    user,
                    authenticated_at: portal.authenticated_at,
                    mfa: portal.mfa,
                    via: "portal",
                }))
            }
            Ok(_) => Next::form("", None, 200),
            Err(e) => Next::refused("", e),
        }
    }

    /// One of our forms was posted: its CSRF token must match the browser's nonce; then the
    /// code form or the password form.
    fn posted(
        &self,
        exchange: &mut Exchange<'_>,
        mut fields: BTreeMap<String, String>,
    ) -> Next<'static> {
        let csrf = fields.remove("csrf").unwrap_or_default();
        if !self.csrf_ok(exchange, &csrf) {
            exchange.refuse("csrf_mismatch");
            return Next::form(
                "",
                Some("This sign-in form expired or did not come from this site. Sign in again."),
                403,
            );
        }
        let nonce = self.cookie_nonce(exchange);
        let step = fields.remove("step").unwrap_or_default();
        if step == "change" {
            return Next::Step(Step::ChangePassword(ChangeForm::take(&mut fields)));
        }
        let mut take = |name: &str| fields.remove(name).unwrap_or_default();
        match step.as_str() {
            "totp" => {
                return Next::Step(Step::Code {
                    form: CodeForm {
                        nonce: nonce.unwrap_or_default(),
                        sealed_ticket: take("mfa_ticket"),
                        code: take("totp"),
                    },
                    then_enrol: take("then") == "enrol",
                });
            }
            "enrol" => {
                return Next::Step(Step::EnrolCode(CodeForm {
                    nonce: nonce.unwrap_or_default(),
                    sealed_ticket: take("enrol_ticket"),
                    code: take("totp"),
                }));
            }
            _ => {}
        }
        Next::Step(Step::Password {
            username: take("username"),
            password: Secret::new(take("password")),
        })
    }

    /// Lockout check, password, lockout record (shared with usernamemixed), then the domain.
    async fn password_step(
        &self,
        exchange: &mut Exchange<'_>,
        username: &str,
        password: &str,
    ) -> Next<'static> {
        let username = username.trim();
        exchange.record.user = username.to_owned();
        if username.is_empty()
            || username.len() > MAX_CREDENTIAL_BYTES
            || password.len() > MAX_CREDENTIAL_BYTES
        {
            exchange.refuse("malformed_credentials");
            return Next::form(username, Some(BAD_CREDENTIALS), 401);
        }
        let authenticated = exchange
            .guard
            .authenticate(username, password, &mut exchange.record)
            .await;
        match authenticated {
            Ok(user) if exchange.guard.app.owns_upn(&user.upn) => {
                Next::Step(Step::Authenticated(SignedIn {
                    user,
                    authenticated_at: exchange.guard.now,
                    mfa: false,
                    via: "password",
                }))
            }
            Ok(_) => {
                let domain = exchange.guard.app.config.domain.clone();
                Next::refused(username, StsError::OutsideDomain { domain })
            }
            Err(e) => Next::refused(username, e),
        }
    }

    /// A change of an expired password during sign-in: on success the sign-in goes on with
    /// the new password (checked again, like any sign-in); a refusal shows the change form
    /// again, still carrying the sign-in request.
    async fn change_step(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        form: ChangeForm,
    ) -> Next<'static> {
        match self.change_password(exchange, &form).await {
            Ok(upn) => Next::Step(Step::Password {
                username: upn,
                password: form.new_password,
            }),
            Err(refusal) => {
                let target = ChangeTarget {
                    action: exchange.guard.app.urls.passive_path(),
                    carried: request.carried_fields(),
                };
                Next::Page(self.change_refused(exchange, &target, &form.username, refusal))
            }
        }
    }

    /// The code of an MFA ticket: counted before it is checked (refused while the user's wrong
    /// codes are used up), checked in the drift window, spent once (marks shared through the
    /// state store).
    async fn code_step(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        posted: &CodeForm,
        then_enrol: bool,
    ) -> Next<'static> {
        let app_id = exchange.guard.app.config.id.clone();
        let now = exchange.guard.now;
        let Some(ticket) = self
            .key
            .open_ticket(&app_id, &posted.nonce, &posted.sealed_ticket, now)
        else {
            exchange.refuse("mfa_ticket_invalid");
            return Next::form(
                "",
                Some("The time to enter a code ran out. Sign in again."),
                401,
            );
        };
        exchange.record.user = ticket.upn.clone();
        let guard = exchange.guard.policies.totp.clone();
        match guard.reserve(&ticket.upn, now).await {
            Ok(true) => {}
            Ok(false) => {
                return too_many_codes(exchange);
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        let (user, stored, secret) =
            match self.user_and_secret(exchange.guard.app, &ticket.upn).await {
                Ok(Some(pair)) => pair,
                not_found => {
                    // No code was checked: give its count back (the refusal stands if that fails).
                    if let Err(e) = guard.give_back(&ticket.upn, now).await {
                        return Next::refused("", Refusal::from(e));
                    }
                    return match not_found {
                        Err(e) => Next::refused("", e),
                        _ => {
                            exchange.refuse("mfa_not_enrolled");
                            Next::form("", Some(BAD_CREDENTIALS), 401)
                        }
                    };
                }
            };
        let Some(step) = totp::matching_step(&secret, &posted.code, now) else {
            return self.wrong_code(exchange, request, &ticket, "totp_wrong");
        };
        let spent = async {
            let first = guard.first_use(&ticket.upn, step, now).await?;
            if first {
                guard.clear_wrong(&ticket.upn).await?;
            }
            Ok::<bool, StateError>(first)
        };
        let signed_in = SignedIn {
            user,
            authenticated_at: ticket.authenticated_at,
            mfa: true,
            via: "totp",
        };
        match spent.await {
            Ok(true) if then_enrol && exchange.self_enrolment() => Next::Step(Step::Enrol {
                signed_in,
                replacing: Some(totp::fingerprint(&stored)),
            }),
            Ok(true) => Next::Step(Step::Authenticated(signed_in)),
            Ok(false) => self.wrong_code(exchange, request, &ticket, "totp_replayed"),
            Err(e) => Next::refused("", Refusal::from(e)),
        }
    }

    /// Refuses a wrong or replayed code (already counted by the reservation) and shows the code
    /// form again.
    fn wrong_code(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        ticket: &MfaTicket,
        reason: &'static str,
    ) -> Next<'static> {
        exchange.refuse(reason);
        Next::Page(self.totp_form(exchange, request, ticket, Some(BAD_CODE)))
    }

    /// After the password, a live session or a code: the TOTP step when one is needed and not
    /// done yet, else the token.
    fn authenticated(request: &SignIn, signed_in: SignedIn) -> Next<'static> {
        if !request.mfa_required || signed_in.mfa {
            Next::Step(Step::Issue(signed_in))
        } else {
            Next::Step(Step::SecondFactor(signed_in))
        }
    }

    /// Device trust first (nobody types a code for a refused device), then the code form for
    /// an enrolled user.
    async fn step_up(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        signed_in: SignedIn,
    ) -> Next<'static> {
        let user = &signed_in.user;
        if let Err(refusal) = exchange
            .guard
            .device(Flow::Passive, user, &mut exchange.record)
        {
            return Next::refused(&user.upn, refusal);
        }
        match exchange.guard.app.directory.totp_secret(&user.upn).await {
            Ok(Some(_)) => {}
            Ok(None) if exchange.self_enrolment() => {
                return Self::enrol_after_password(exchange, signed_in);
            }
            Ok(None) => {
                exchange.refuse("mfa_not_enrolled");
                return Next::Page(exchange.message(
                    403,
                    "Second factor required",
                    "This sign-in needs a verification code, but no authenticator is enrolled for your account. Ask your administrator to enrol one.",
                ));
            }
            Err(e) => return Next::refused("", e),
        }
        let Some(nonce) = self.ensure_nonce(exchange) else {
            return Next::Page(random_failure(exchange));
        };
        let ticket = MfaTicket {
            app: exchange.guard.app.config.id.clone(),
            nonce,
            upn: user.upn.clone(),
            authenticated_at: signed_in.authenticated_at,
            expires: exchange.guard.now + Duration::seconds(session::MFA_TICKET_LIFETIME_SECS),
        };
        Next::Page(self.totp_form(exchange, request, &ticket, None))
    }

    /// Checks device trust, issues the assertion, starts or refreshes the session, and answers
    /// with the auto-post form.
    fn issue_step(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        signed_in: &SignedIn,
    ) -> Next<'static> {
        let SignedIn {
            user,
            authenticated_at,
            mfa,
            via,
        } = signed_in;
        exchange.record.user = user.upn.clone();
        if let Err(refusal) = exchange
            .guard
            .device(Flow::Passive, user, &mut exchange.record)
        {
            return Next::refused(&user.upn, refusal);
        }
        if request.audience == Audience::Portal {
            return Self::portal_issue(exchange, &self.key, signed_in);
        }
        let now = exchange.guard.now;
        let lifetime = exchange.session_lifetime();
        let Some(session) = Session::start(
            exchange.session_id.as_deref(),
            &exchange.guard.app.config.id,
            &user.upn,
            *authenticated_at,
            *mfa,
            now + lifetime,
        ) else {
            exchange.refuse("random_unavailable");
            return Next::Page(random_failure(exchange));
        };
        let assertion = match issue(exchange.guard.app, user, *authenticated_at, *mfa, now) {
            Ok(a) => a,
            Err(e) => return Next::refused("", e),
        };
        exchange
            .record
            .emit(crate::sts::signed_by(&assertion), via, None);
        let path = exchange.cookie_path();
        exchange.cookies.push(session::set_cookie(
            SESSION_COOKIE,
            &self.key.seal_session(&session),
            &path,
            lifetime.whole_seconds(),
            "Lax",
        ));
        let fields = [
            ("wa", WSIGNIN.to_owned()),
            ("wresult", wstrust::build_wsfed_wresult(&assertion, now)),
            ("wctx", request.wctx.clone()),
        ];
        let reply_to = request.reply_to.clone();
        Next::Page(
            exchange.page_with(200, &origin_of(&reply_to), true, |b, n| {
                pages::auto_post(b, &reply_to, &fields, n)
            }),
        )
    }

    /// The portal's ending: a portal session cookie (bound to the directory that checked the
    /// password) and a redirect to the portal page (one audit record: signed_in).
    fn portal_issue(
        exchange: &mut Exchange<'_>,
        key: &SessionKey,
        signed_in: &SignedIn,
    ) -> Next<'static> {
        let now = exchange.guard.now;
        let lifetime = exchange.session_lifetime();
        let Some(session) = PortalSession::start(
            &signed_in.user.upn,
            &exchange.guard.app.config.directory,
            signed_in.authenticated_at,
            signed_in.mfa,
            now + lifetime,
        ) else {
            exchange.refuse("random_unavailable");
            return Next::Page(random_failure(exchange));
        };
        exchange
            .record
            .emit(Decision::SignedIn, signed_in.via, None);
        exchange.cookies.push(session::set_cookie(
            PORTAL_COOKIE,
            &key.seal_portal(&session),
            "/",
            lifetime.whole_seconds(),
            "Lax",
        ));
        let mut page = exchange.message(303, "Signed in", "You are signed in.");
        page.location = Some("/".to_owned());
        Next::Page(page)
    }

    /// The user, their secret as stored and as a key, when they have a usable one.
    async fn user_and_secret(
        &self,
        app: &App,
        upn: &str,
    ) -> Result<Option<(User, String, TotpKey)>, DirectoryError> {
        let Some(user) = app.directory.lookup(upn).await? else {
            return Ok(None);
        };
        let secret = app
            .directory
            .totp_secret(&user.upn)
            .await?
            .and_then(|text| {
                let key = TotpKey::from_base32(&text).ok()?;
                Some((text, key))
            });
        Ok(secret.map(|(text, key)| (user, text, key)))
    }

    /// A user without a secret enrols one only right after typing the password in this
    /// request: a session (single sign-on) alone never enrols a second factor, so its cookie
    /// in someone else's hands cannot.
    fn enrol_after_password(exchange: &mut Exchange<'_>, signed_in: SignedIn) -> Next<'static> {
        if signed_in.via == "password" {
            return Next::Step(Step::Enrol {
                signed_in,
                replacing: None,
            });
        }
        exchange.record.user = signed_in.user.upn.clone();
        exchange.refuse("totp_enrolment_needs_password");
        Next::form(
            &signed_in.user.upn,
            Some("To set up an authenticator app, enter your password again."),
            200,
        )
    }

    /// Starts an enrolment: a new secret, pending in the state store (replacing the user's
    /// earlier one), and the QR page with a ticket that names it.
    async fn enrol_step(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        signed_in: SignedIn,
        replacing: Option<String>,
    ) -> Next<'static> {
        let upn = signed_in.user.upn.clone();
        exchange.record.user = upn.clone();
        let (Ok(secret), Ok(id)) = (TotpKey::generate(), crate::random::token(16)) else {
            exchange.refuse("random_unavailable");
            return Next::Page(random_failure(exchange));
        };
        let Some(nonce) = self.ensure_nonce(exchange) else {
            return Next::Page(random_failure(exchange));
        };
        let pending = Pending {
            id: id.clone(),
            secret: secret.to_base32(),
            replacing,
        };
        let now = exchange.guard.now;
        let enrolments = PendingEnrolments::new(exchange.guard.policies.store.clone());
        let app_id = exchange.guard.app.config.id.clone();
        if let Err(e) = enrolments.start(&app_id, &upn, &pending, now).await {
            return Next::refused("", Refusal::from(e));
        }
        let reason = if pending.replacing.is_some() {
            "started_replacing"
        } else {
            "started"
        };
        exchange.record.emit(Decision::TotpEnrolment, reason, None);
        let ticket = EnrolmentTicket {
            mfa: MfaTicket {
                app: app_id,
                nonce,
                upn,
                authenticated_at: signed_in.authenticated_at,
                expires: now + ENROLMENT_LIFETIME,
            },
            id,
        };
        Next::Page(self.enrol_form(exchange, request, &ticket, &secret, None))
    }

    /// The first code of a pending enrolment: the ticket, the pending entry it names, the code
    /// counted and checked against the new secret and spent once, the enrolment spent once,
    /// then the secret stored while the user's secret is still the one it replaces.
    async fn enrol_code_step(
        &self,
        exchange: &mut Exchange<'_>,
        request: &SignIn,
        posted: &CodeForm,
    ) -> Next<'static> {
        let app_id = exchange.guard.app.config.id.clone();
        let now = exchange.guard.now;
        let Some(ticket) =
            self.key
                .open_enrolment(&app_id, &posted.nonce, &posted.sealed_ticket, now)
        else {
            exchange.refuse("totp_enrolment_ticket_invalid");
            return Next::form("", Some(ENROLMENT_EXPIRED), 401);
        };
        let upn = ticket.mfa.upn.clone();
        exchange.record.user = upn.clone();
        let enrolments = PendingEnrolments::new(exchange.guard.policies.store.clone());
        let pending = match enrolments.find(&app_id, &upn, &ticket.id, now).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(not_pending)) => {
                exchange.refuse(not_pending.reason());
                return Next::form(&upn, Some(ENROLMENT_EXPIRED), 401);
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        };
        let Ok(secret) = TotpKey::from_base32(&pending.secret) else {
            exchange.refuse("totp_enrolment_ticket_invalid");
            return Next::form(&upn, Some(ENROLMENT_EXPIRED), 401);
        };
        let guard = exchange.guard.policies.totp.clone();
        match guard.reserve(&upn, now).await {
            Ok(true) => {}
            Ok(false) => {
                return too_many_codes(exchange);
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        let Some(step) = totp::matching_step(&secret, &posted.code, now) else {
            exchange.refuse("totp_enrolment_wrong_code");
            return Next::Page(self.enrol_form(
                exchange,
                request,
                &ticket,
                &secret,
                Some(BAD_CODE),
            ));
        };
        match guard.first_use(&upn, step, now).await {
            Ok(true) => {}
            Ok(false) => {
                exchange.refuse("totp_enrolment_code_replayed");
                return Next::Page(self.enrol_form(
                    exchange,
                    request,
                    &ticket,
                    &secret,
                    Some(BAD_CODE),
                ));
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        self.finish_enrolment(exchange, &enrolments, &ticket, &pending)
            .await
    }

    /// Spends the pending enrolment, stores its secret and clears the wrong codes; the sign-in
    /// goes on with the code just checked as its second factor.
    async fn finish_enrolment(
        &self,
        exchange: &mut Exchange<'_>,
        enrolments: &PendingEnrolments,
        ticket: &EnrolmentTicket,
        pending: &Pending,
    ) -> Next<'static> {
        let (app, now, upn) = (exchange.guard.app, exchange.guard.now, &ticket.mfa.upn);
        match enrolments.spend(&app.config.id, upn, pending, now).await {
            Ok(true) => {}
            Ok(false) => {
                exchange.refuse("totp_enrolment_replayed");
                return Next::form(upn, Some(ENROLMENT_EXPIRED), 401);
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        let stored = app
            .directory
            .store_totp_secret(upn, pending.replacing.as_deref(), &pending.secret, now)
            .await;
        match stored {
            Ok(true) => {}
            Ok(false) => {
                exchange.refuse("totp_enrolment_changed");
                return Next::Page(exchange.message(
                    409,
                    "Authenticator not set up",
                    "Your account's authenticator changed while you were setting up this one, so nothing was saved. Sign in again.",
                ));
            }
            Err(e) => return Next::refused("", e),
        }
        exchange
            .record
            .emit(Decision::TotpEnrolment, "completed", None);
        if let Err(e) = exchange.guard.policies.totp.clear_wrong(upn).await {
            tracing::warn!(error = %e, "the wrong-code count of an enrolled user was not cleared");
        }
        match app.directory.lookup(upn).await {
            Ok(Some(user)) => Next::Step(Step::Authenticated(SignedIn {
                user,
                authenticated_at: ticket.mfa.authenticated_at,
                mfa: true,
                via: "totp_enrolment",
            })),
            Ok(None) => Next::form("", Some(BAD_CREDENTIALS), 401),
            Err(e) => Next::refused("", e),
        }
    }
}

/// Refuses a code once the user's wrong codes of the window are used up (sign-in or enrolment).
fn too_many_codes(exchange: &mut Exchange<'_>) -> Next<'static> {
    exchange.refuse("totp_attempts_exceeded");
    Next::Page(exchange.message(
        429,
        "Too many wrong codes",
        "Too many wrong verification codes were entered for this account. Wait 30 minutes, then sign in again.",
    ))
}

/// Shown when an enrolment ticket is no longer good (expired, replaced, finished, forged).
const ENROLMENT_EXPIRED: &str = "The time to set up your authenticator ran out, or it was set up in another window. Sign in again.";

/// The signed SAML 1.1 assertion for a browser sign-in: the active path's claims plus MFA.
fn issue(
    app: &App,
    user: &User,
    authenticated_at: OffsetDateTime,
    mfa: bool,
    now: OffsetDateTime,
) -> Result<SignedAssertion, saml::SamlError> {
    let claims = crate::sts::user_claims(app, user, authenticated_at, mfa, now);
    crate::sts::sign(app, &claims, TokenType::Saml11, now)
}
