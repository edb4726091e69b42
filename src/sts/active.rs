//! usernamemixed (WS-Trust 1.3 and 2005): classification and rate limit → envelope → RST →
//! replay marks → lockout check → password → lockout record → domain and device checks →
//! signed assertion → RSTR; one audit record per request.

use time::OffsetDateTime;

use super::{App, HttpReply, RequestInfo, Sts, audit_record, sign, user_claims};
use crate::directory::{AuthFailure, DirectoryError, User};
use crate::error::{FAULT_HTTP_STATUS, StsError};
use crate::policy::audit::{self, AuditRecord};
use crate::policy::device;
use crate::policy::lockout::{Attempt, Verdict};
use crate::policy::{ClientAddresses, Flow, Refusal, RequestClass, Signals};
use crate::saml::SignedAssertion;
use crate::soap;
use crate::wstrust::{self, IssueRequest, TrustVersion};

/// One usernamemixed request on its way through the steps.
struct ActiveRequest<'a> {
    app: &'a App,
    version: TrustVersion,
    body: &'a [u8],
    info: &'a RequestInfo,
    now: OffsetDateTime,
    addresses: ClientAddresses,
    class: RequestClass,
}

impl Sts {
    pub(super) async fn usernamemixed(
        &self,
        app: &App,
        version: TrustVersion,
        body: &[u8],
        info: &RequestInfo,
    ) -> HttpReply {
        let now = self.clock.now();
        let addresses = self.policies.proxies.client_addresses(
            info.client_ip,
            info.forwarded_for.as_deref(),
            info.ms_forwarded_client_ip.as_deref(),
        );
        let class = RequestClass::classify(&Signals {
            user_agent: info.user_agent.as_deref(),
            ..Signals::default()
        });
        let endpoint = format!("trust/{}/usernamemixed", version.path_segment());
        let mut record = audit_record(app, endpoint, info, now, addresses.client, class);
        let active = ActiveRequest {
            app,
            version,
            body,
            info,
            now,
            addresses,
            class,
        };
        let mut request = None;
        let result = self.issue(&active, &mut record, &mut request).await;
        let relates_to = request.as_ref().and_then(|r| r.message_id.as_deref());
        match result {
            Ok(assertion) => {
                record.emit(audit::Decision::Issued, "ok", Some(&assertion.id));
                let applies_to = request
                    .as_ref()
                    .map(|r| r.applies_to.as_str())
                    .unwrap_or("");
                HttpReply::soap(
                    200,
                    wstrust::build_response(version, &assertion, applies_to, relates_to, now),
                )
            }
            Err(error) => {
                record.emit(audit::Decision::Refused, &error.log_reason(), None);
                if let Some((status, retry_after)) = error.plain_http() {
                    let mut reply = HttpReply::text(status, "too many requests; try again later\n");
                    reply.headers.push(("retry-after", retry_after.to_string()));
                    return reply;
                }
                let fault = error.to_fault(version, &info.correlation_id, relates_to);
                HttpReply::soap(FAULT_HTTP_STATUS, fault.to_xml())
            }
        }
    }

    async fn issue(
        &self,
        active: &ActiveRequest<'_>,
        record: &mut AuditRecord,
        parsed: &mut Option<IssueRequest>,
    ) -> Result<SignedAssertion, StsError> {
        let (app, now) = (active.app, active.now);
        let policies = &self.policies;
        if let Some(limited) = policies
            .rate_limit
            .take(active.addresses.client, now)
            .await
            .map_err(Refusal::from)?
        {
            return Err(Refusal::RateLimited(limited).into());
        }
        let envelope = soap::parse_envelope(active.body, &self.xml_limits)?;
        let request = parsed.insert(wstrust::parse_usernamemixed(
            &envelope,
            active.version,
            now,
            &self.timestamp_policy,
        )?);
        record.user = request.username.clone();
        if let Some(kind) = policies
            .replay
            .check(
                request.message_id.as_deref(),
                request.timestamp.created,
                &request.username,
                now,
            )
            .await
            .map_err(Refusal::from)?
        {
            return Err(Refusal::Replay(kind).into());
        }
        let user = self.password_step(active, request, record).await?;
        if !app.owns_upn(&user.upn) {
            return Err(StsError::OutsideDomain {
                domain: app.config.domain.clone(),
            });
        }
        record.device_id = self.device_step(active, &user)?;
        let claims = user_claims(app, &user, now, false);
        Ok(sign(app, &claims, request.token_type, now)?)
    }

    /// Lockout check, password check, lockout record.
    async fn password_step(
        &self,
        active: &ActiveRequest<'_>,
        request: &IssueRequest,
        record: &mut AuditRecord,
    ) -> Result<User, StsError> {
        let lockout = &self.policies.lockout;
        let addresses = &active.addresses.all;
        let check = lockout
            .check(&request.username, addresses, active.now)
            .await
            .map_err(Refusal::from)?;
        record.lockout_location = Some(check.location);
        match check.verdict {
            Verdict::Blocked => return Err(Refusal::Locked(check.location).into()),
            Verdict::WouldBlock => record.lockout_log_only = true,
            Verdict::Open => {}
        }
        let authenticated = active
            .app
            .directory
            .authenticate(&request.username, request.password.expose())
            .await;
        let attempt = match &authenticated {
            Ok(_) => Some(Attempt::Success),
            Err(DirectoryError::Rejected(AuthFailure::WrongPassword)) => {
                Some(Attempt::WrongPassword)
            }
            Err(_) => None,
        };
        if let Some(attempt) = attempt {
            lockout
                .record(&request.username, addresses, attempt, active.now)
                .await
                .map_err(Refusal::from)?;
        }
        Ok(authenticated?)
    }

    /// Device trust for an authenticated user; the device id for the audit record.
    fn device_step(
        &self,
        active: &ActiveRequest<'_>,
        user: &User,
    ) -> Result<Option<String>, StsError> {
        let covers = active
            .app
            .config
            .device_trust
            .as_ref()
            .is_some_and(|p| p.covers(Flow::Active, active.class, user));
        match device::evaluate(
            covers,
            active.info.device_certificate.as_deref(),
            active.class,
            active.now,
        ) {
            device::Decision::NotRequired(presented) => Ok(presented.map(|d| d.id)),
            device::Decision::Trusted(d) => Ok(Some(d.id)),
            device::Decision::Refused(refusal) => Err(Refusal::Device(refusal).into()),
        }
    }
}
