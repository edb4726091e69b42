//! Password change: the page `GET|POST /wsfed/{app}/password`, and the change step of a
//! sign-in whose password has expired or must be changed (in `steps`). Both go through
//! [`WsFed::change_password`]: the form's own checks, the current password through
//! `sts::guard` (so a wrong one counts toward the lockout and a locked account is refused),
//! then the directory's change ([`crate::directory::Directory::change_password`]). The page
//! takes a rate-limit token per POST and checks the CSRF token as the sign-in form does.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use super::pages::{self, OwnForm};
use super::{BAD_CREDENTIALS, Exchange, MAX_CREDENTIAL_BYTES, PageReply, Scope, WsFed, parse_form};
use crate::directory::PasswordChange;
use crate::error::{PassiveAnswer, StsError};
use crate::policy::Policies;
use crate::policy::audit::Decision;
use crate::secret::Secret;
use crate::sts::guard::SignInGuard;
use crate::sts::{App, HttpReply, RequestInfo};

/// The fields of a posted change form.
pub(super) struct ChangeForm {
    /// As typed.
    pub(super) username: String,
    old_password: Secret,
    /// The new password (the sign-in goes on with it after the change).
    pub(super) new_password: Secret,
    confirm_password: Secret,
}

impl ChangeForm {
    /// Takes the change form's fields out of a posted form.
    pub(super) fn take(fields: &mut BTreeMap<String, String>) -> Self {
        let mut take = |name: &str| fields.remove(name).unwrap_or_default();
        Self {
            username: take("username").trim().to_owned(),
            old_password: Secret::new(take("old_password")),
            new_password: Secret::new(take("new_password")),
            confirm_password: Secret::new(take("confirm_password")),
        }
    }

    /// What is wrong with the form before anyone looks at a password: (audit reason, message).
    fn problem(&self) -> Option<(&'static str, &'static str)> {
        let fields = [
            self.username.as_str(),
            self.old_password.expose(),
            self.new_password.expose(),
        ];
        if fields
            .iter()
            .any(|f| f.is_empty() || f.len() > MAX_CREDENTIAL_BYTES)
        {
            return Some((
                "malformed_password_change",
                "Fill in your user name, your current password and the new password twice.",
            ));
        }
        if self.new_password.expose() != self.confirm_password.expose() {
            return Some((
                "new_passwords_differ",
                "The two new passwords are not the same. Type the new password twice.",
            ));
        }
        None
    }
}

/// Why a change was not made.
pub(super) enum ChangeRefusal {
    /// The form itself is wrong: the audit reason and the message on the form again (400).
    Form(&'static str, &'static str),
    /// Refused as [`StsError::outcome`] decides.
    Refused(StsError),
}

impl From<StsError> for ChangeRefusal {
    fn from(error: StsError) -> Self {
        Self::Refused(error)
    }
}

/// Where a change form posts and what it carries (a sign-in's WS-Federation parameters).
pub(super) struct ChangeTarget {
    /// The form action.
    pub(super) action: String,
    /// Hidden fields besides the CSRF token.
    pub(super) carried: Vec<(&'static str, String)>,
}

impl WsFed {
    /// Answers the change-password page: the form (GET) or a posted change (POST).
    pub async fn password_page(
        &self,
        policies: &Policies,
        app: &App,
        post: bool,
        body: &[u8],
        info: &RequestInfo,
        now: OffsetDateTime,
    ) -> HttpReply {
        let guard = SignInGuard::new(policies, app, info, now, None, None);
        let record = guard.audit_record("wsfed/password");
        let mut exchange = Exchange::new(guard, record, Scope::password_page(app));
        let target = ChangeTarget {
            action: app.urls.password_change_path(),
            carried: Vec::new(),
        };
        let reply = if post {
            self.password_posted(&mut exchange, &target, body).await
        } else {
            let hint: String = parse_form(info.query.as_deref().unwrap_or(""))
                .ok()
                .and_then(|mut q| q.remove("username"))
                .unwrap_or_default()
                .chars()
                .take(256)
                .collect();
            self.change_form(&mut exchange, &target, &hint, None, 200)
        };
        reply.into_http()
    }

    async fn password_posted(
        &self,
        exchange: &mut Exchange<'_>,
        target: &ChangeTarget,
        body: &[u8],
    ) -> PageReply {
        if let Err(refusal) = exchange.guard.rate_limit().await {
            return self.change_refused(exchange, target, "", StsError::from(refusal).into());
        }
        let mut fields = std::str::from_utf8(body)
            .ok()
            .and_then(|b| parse_form(b).ok())
            .unwrap_or_default();
        let csrf = fields.remove("csrf").unwrap_or_default();
        if !self.csrf_ok(exchange, &csrf) {
            exchange.refuse("csrf_mismatch");
            return self.change_form(
                exchange,
                target,
                "",
                Some("This form expired or did not come from this site. Try again."),
                403,
            );
        }
        let form = ChangeForm::take(&mut fields);
        match self.change_password(exchange, &form).await {
            Ok(_) => exchange.message(
                200,
                "Password changed",
                "Your password was changed. Use the new password from now on.",
            ),
            Err(refusal) => self.change_refused(exchange, target, &form.username, refusal),
        }
    }

    /// The form's checks, the current password through the guard, then the directory's change;
    /// one `password_changed` audit record when it is done. Returns the account's name.
    pub(super) async fn change_password(
        &self,
        exchange: &mut Exchange<'_>,
        form: &ChangeForm,
    ) -> Result<String, ChangeRefusal> {
        exchange.record.user.clone_from(&form.username);
        if let Some((reason, message)) = form.problem() {
            return Err(ChangeRefusal::Form(reason, message));
        }
        let guard = &exchange.guard;
        let upn = guard
            .current_password(
                &form.username,
                form.old_password.expose(),
                &mut exchange.record,
            )
            .await?;
        let change = PasswordChange {
            username: &upn,
            old_password: form.old_password.expose(),
            new_password: form.new_password.expose(),
            now: guard.now,
        };
        guard
            .app
            .directory
            .change_password(&change)
            .await
            .map_err(StsError::from)?;
        exchange.record.user.clone_from(&upn);
        exchange.record.emit(Decision::PasswordChanged, "ok", None);
        Ok(upn)
    }

    /// Audits a refused change and answers it: the change form again with the message
    /// [`StsError::outcome`] decided (or the generic one for a wrong current password), or
    /// the refusal's page.
    pub(super) fn change_refused(
        &self,
        exchange: &mut Exchange<'_>,
        target: &ChangeTarget,
        username: &str,
        refusal: ChangeRefusal,
    ) -> PageReply {
        let error = match refusal {
            ChangeRefusal::Form(reason, message) => {
                exchange.refuse(reason);
                return self.change_form(exchange, target, username, Some(message), 400);
            }
            ChangeRefusal::Refused(error) => error,
        };
        let outcome = error.outcome();
        exchange
            .record
            .emit(Decision::Refused, outcome.reason, outcome.detail.as_deref());
        match outcome.passive {
            PassiveAnswer::SignInFormAgain => {
                self.change_form(exchange, target, username, Some(BAD_CREDENTIALS), 401)
            }
            PassiveAnswer::PasswordChangeForm { status, text } => {
                self.change_form(exchange, target, username, Some(text), status)
            }
            PassiveAnswer::Page(page) => exchange.error_page(&page),
        }
    }

    /// The change-password form with a fresh CSRF token.
    pub(super) fn change_form(
        &self,
        exchange: &mut Exchange<'_>,
        target: &ChangeTarget,
        username: &str,
        message: Option<&str>,
        status: u16,
    ) -> PageReply {
        let Some(nonce) = self.ensure_nonce(exchange) else {
            return super::random_failure(exchange);
        };
        let mut hidden = target.carried.clone();
        hidden.push((
            "csrf",
            self.key.csrf_token(&exchange.guard.app.config.id, &nonce),
        ));
        exchange.page(status, |b, n| {
            let form = OwnForm {
                action: &target.action,
                hidden: &hidden,
            };
            pages::change_password(b, &form, username, message, n)
        })
    }
}
