//! The policy steps both password sign-in paths share (usernamemixed in `active`, passive
//! sign-in in `sts::passive`): who the client is (trusted proxies) and what the request looks
//! like (classification), the per-IP rate limit, the password check between the lockout check
//! and the lockout record, and device trust for the authenticated user.

use std::time::Instant;

use time::OffsetDateTime;

use super::{App, RequestInfo, audit_record};
use crate::config::device::Flow;
use crate::directory::{AuthFailure, CheckPriority, DirectoryError, User};
use crate::error::StsError;
use crate::policy::audit::AuditRecord;
use crate::policy::device;
use crate::policy::lockout::{Attempt, Location, Verdict};
use crate::policy::{ClientAddresses, Policies, Refusal, RequestClass, Signals};

/// A password check's result as the latency metric labels it.
fn check_result(authenticated: &Result<User, DirectoryError>) -> &'static str {
    match authenticated {
        Ok(_) => "accepted",
        Err(DirectoryError::Rejected(_) | DirectoryError::NewPasswordRefused(_)) => "rejected",
        Err(DirectoryError::Busy { .. }) => "busy",
        Err(
            DirectoryError::Unavailable(_)
            | DirectoryError::Invalid(_)
            | DirectoryError::ChangeNotSupported(_),
        ) => "error",
    }
}

/// One sign-in request as the policies see it.
pub(crate) struct SignInGuard<'a> {
    /// The service's policies.
    pub(crate) policies: &'a Policies,
    /// The app asked for a token.
    pub(crate) app: &'a App,
    /// Request context (headers, peer, device certificate).
    pub(crate) info: &'a RequestInfo,
    /// The service clock's time of the request.
    pub(crate) now: OffsetDateTime,
    /// The client's addresses (forwarded ones only from trusted proxies).
    pub(crate) addresses: ClientAddresses,
    /// What the request looks like it comes from (explanations only).
    pub(crate) class: RequestClass,
}

impl<'a> SignInGuard<'a> {
    /// Attributes and classifies a request; `wtrealm` and `wctx` are the passive parameters.
    pub(crate) fn new(
        policies: &'a Policies,
        app: &'a App,
        info: &'a RequestInfo,
        now: OffsetDateTime,
        wtrealm: Option<&str>,
        wctx: Option<&str>,
    ) -> Self {
        let addresses = policies.proxies.client_addresses(
            info.client_ip,
            info.forwarded_for.as_deref(),
            info.ms_forwarded_client_ip.as_deref(),
        );
        let class = RequestClass::classify(&Signals {
            user_agent: info.user_agent.as_deref(),
            wtrealm,
            wctx,
        });
        Self {
            policies,
            app,
            info,
            now,
            addresses,
            class,
        }
    }

    /// The audit record of this request on `endpoint`, before its decision.
    pub(crate) fn audit_record(&self, endpoint: &'static str) -> AuditRecord {
        audit_record(
            self.app,
            &self.policies.metrics,
            endpoint,
            self.info,
            self.now,
            self.addresses.client,
            self.class,
        )
    }

    /// Takes a token from the client IP's bucket.
    pub(crate) async fn rate_limit(&self) -> Result<(), Refusal> {
        match self
            .policies
            .rate_limit
            .take(self.addresses.client, self.now)
            .await?
        {
            Some(limited) => {
                self.policies.metrics.rate_limited(self.class.as_str());
                Err(Refusal::RateLimited(limited))
            }
            None => Ok(()),
        }
    }

    /// Lockout reservation, password check, lockout settlement. The attempt is counted before
    /// the password is looked at, so simultaneous guesses cannot all pass the lockout; a
    /// locked account (enforce mode) is refused without a password check, after a timer that
    /// makes the refusal take as long as a typical check. The lockout and the audit key on the
    /// directory's canonical name of `typed`, so cycling name forms (`CONTOSO\alice`, `alice`,
    /// `alice@…`) does not multiply the threshold; a sign-in audits the UPN found.
    pub(crate) async fn authenticate(
        &self,
        typed: &str,
        password: &str,
        record: &mut AuditRecord,
    ) -> Result<User, StsError> {
        let username = &self.app.directory.canonical_name(typed).await?;
        record.user.clone_from(username);
        let lockout = &self.policies.lockout;
        let addresses = &self.addresses.all;
        let started = Instant::now();
        let check = lockout
            .reserve(username, addresses, self.now)
            .await
            .map_err(Refusal::from)?;
        record.lockout_location = Some(check.location);
        let metrics = &self.policies.metrics;
        let location = check.location.as_str();
        match check.verdict {
            Verdict::Blocked => {
                metrics.lockout_event("blocked", location);
                lockout.pad_refusal(started).await;
                return Err(Refusal::Locked(check.location).into());
            }
            Verdict::WouldBlock => {
                metrics.lockout_event("would_block", location);
                record.lockout_log_only = true;
            }
            Verdict::Open => {}
        }
        let checked_at = Instant::now();
        let priority = match check.location {
            Location::Familiar => CheckPriority::Familiar,
            Location::Unfamiliar => CheckPriority::Other,
        };
        let authenticated = self
            .app
            .directory
            .authenticate_ranked(typed, password, priority)
            .await;
        metrics.password_check(
            &self.app.directory_name,
            check_result(&authenticated),
            checked_at.elapsed(),
        );
        if let Ok(user) = &authenticated {
            record.user.clone_from(&user.upn);
        }
        let attempt = match &authenticated {
            Ok(_) => Attempt::Success,
            Err(DirectoryError::Rejected(AuthFailure::WrongPassword)) => {
                metrics.lockout_event("failure_counted", location);
                Attempt::WrongPassword
            }
            Err(_) => Attempt::NotCounted,
        };
        let hashed = matches!(
            &authenticated,
            Ok(_)
                | Err(DirectoryError::Rejected(
                    AuthFailure::WrongPassword | AuthFailure::UnknownUser
                ))
        );
        if hashed {
            lockout.note_check_time(checked_at.elapsed());
        }
        lockout
            .settle(username, addresses, &check, attempt, self.now)
            .await
            .map_err(Refusal::from)?;
        let user = authenticated?;
        // The directory said the password is right; one whose expiry (as the directory
        // reported it) has passed is still refused, on the service clock.
        if user.password_expires_at.is_some_and(|at| at <= self.now) {
            return Err(DirectoryError::Rejected(AuthFailure::PasswordExpired).into());
        }
        Ok(user)
    }

    /// The current password of a password change: the same lockout-counted check as a
    /// sign-in ([`Self::authenticate`]: a wrong one counts toward the lockout, a locked
    /// account is refused), where a password that is right but expired or must be changed is
    /// what the change is for. The account must be of the app's domain. Returns the name the
    /// change is asked for (the UPN found, or the canonical name when the directory gave none).
    pub(crate) async fn current_password(
        &self,
        typed: &str,
        password: &str,
        record: &mut AuditRecord,
    ) -> Result<String, StsError> {
        let upn = match self.authenticate(typed, password, record).await {
            Ok(user) => user.upn,
            Err(StsError::Directory(DirectoryError::Rejected(
                AuthFailure::PasswordExpired | AuthFailure::MustChangePassword,
            ))) => record.user.clone(),
            Err(e) => return Err(e),
        };
        if !self.app.owns_upn(&upn) {
            let domain = self.app.config.domain.clone();
            return Err(StsError::OutsideDomain { domain });
        }
        Ok(upn)
    }

    /// Device trust for an authenticated user on a `flow` endpoint; the device id (also of a
    /// device no policy asked for) goes into the audit record.
    pub(crate) fn device(
        &self,
        flow: Flow,
        user: &User,
        record: &mut AuditRecord,
    ) -> Result<(), Refusal> {
        let covers = self
            .app
            .config
            .device_trust
            .as_ref()
            .is_some_and(|p| device::covers(p, flow, self.class, user));
        let decision = device::evaluate(
            covers,
            self.info.device_certificate.as_deref(),
            self.class,
            self.now,
        );
        match decision {
            device::DeviceDecision::NotRequired(presented) => {
                record.device_id = presented.map(|d| d.id);
                Ok(())
            }
            device::DeviceDecision::Trusted(d) => {
                record.device_id = Some(d.id);
                Ok(())
            }
            device::DeviceDecision::Refused(refusal) => Err(Refusal::Device(refusal)),
        }
    }
}
