//! The steps of one passive sign-in ([`Step`], with the diagram of the order of checks) and
//! the one place that renders their answers (`WsFed::run`).

use std::collections::BTreeMap;

use time::{Duration, OffsetDateTime};

use super::password::{ChangeForm, ChangeTarget};
use super::session::{self, MfaTicket, SESSION_COOKIE, Session};
use super::{
    BAD_CODE, BAD_CREDENTIALS, Call, Exchange, MAX_CREDENTIAL_BYTES, PageReply, SignIn, WSIGNIN,
    WsFed, origin_of, pages, parse_form, random_failure,
};
use crate::directory::{DirectoryError, User};
use crate::error::StsError;
use crate::policy::Flow;
use crate::policy::Refusal;
use crate::policy::audit::Decision;
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
///      │                           (403), then the code form with a signed ticket
///      │ otherwise
///      └─────────────────────────► Issue: device trust (403), session cookie, signed
///                                  assertion, auto-post to the reply target
///                                  (one audit record: issued)
/// ```
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
    /// The code form was posted.
    Code {
        /// The browser's form nonce the ticket is bound to.
        nonce: String,
        /// The signed MFA ticket.
        sealed_ticket: String,
        /// The code as typed.
        code: String,
    },
    /// Who the user is is known (password, session or code).
    Authenticated(SignedIn),
    /// A TOTP code is needed.
    SecondFactor(SignedIn),
    /// The token.
    Issue(SignedIn),
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
                Step::Code {
                    nonce,
                    sealed_ticket,
                    code,
                } => {
                    self.code_step(exchange, request, &nonce, &sealed_ticket, &code)
                        .await
                }
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

    /// A live session (single sign-on) that is not revoked and whose user is still in the
    /// directory and the domain; otherwise the password form.
    async fn session_step(&self, exchange: &mut Exchange<'_>, request: &SignIn) -> Next<'static> {
        let live = self.session(exchange).filter(|_| !request.fresh);
        let Some(session) = live else {
            return Next::form(&request.username_hint, None, 200);
        };
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
        if step == "totp" {
            return Next::Step(Step::Code {
                nonce: nonce.unwrap_or_default(),
                sealed_ticket: take("mfa_ticket"),
                code: take("totp"),
            });
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
        nonce: &str,
        sealed_ticket: &str,
        code: &str,
    ) -> Next<'static> {
        let app_id = exchange.guard.app.config.id.clone();
        let now = exchange.guard.now;
        let Some(ticket) = self.key.open_ticket(&app_id, nonce, sealed_ticket, now) else {
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
                exchange.refuse("totp_attempts_exceeded");
                return Next::Page(exchange.message(
                    429,
                    "Too many wrong codes",
                    "Too many wrong verification codes were entered for this account. Wait 30 minutes, then sign in again.",
                ));
            }
            Err(e) => return Next::refused("", Refusal::from(e)),
        }
        let (user, secret) = match self.user_and_secret(exchange.guard.app, &ticket.upn).await {
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
        let Some(step) = totp::matching_step(&secret, code, now) else {
            return self.wrong_code(exchange, request, &ticket, "totp_wrong");
        };
        let spent = async {
            let first = guard.first_use(&ticket.upn, step, now).await?;
            if first {
                guard.clear_wrong(&ticket.upn).await?;
            }
            Ok::<bool, StateError>(first)
        };
        match spent.await {
            Ok(true) => Next::Step(Step::Authenticated(SignedIn {
                user,
                authenticated_at: ticket.authenticated_at,
                mfa: true,
                via: "totp",
            })),
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
        reason: &str,
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
            .emit(Decision::Issued, via, Some(&assertion.id));
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

    async fn user_and_secret(
        &self,
        app: &App,
        upn: &str,
    ) -> Result<Option<(User, TotpKey)>, DirectoryError> {
        let Some(user) = app.directory.lookup(upn).await? else {
            return Ok(None);
        };
        let secret = app
            .directory
            .totp_secret(&user.upn)
            .await?
            .and_then(|text| TotpKey::from_base32(&text).ok());
        Ok(secret.map(|s| (user, s)))
    }
}

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
