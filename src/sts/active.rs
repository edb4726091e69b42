//! usernamemixed (WS-Trust 1.3 and 2005): classification and rate limit → envelope → RST →
//! replay marks → lockout check → password → lockout record → domain and device checks →
//! signed assertion → RSTR; one audit record per request. The steps shared with passive
//! sign-in are in `guard`.

use super::guard::SignInGuard;
use super::{
    App, Endpoint, HttpReply, Issued, Refused, RequestInfo, Sts, sign, trust_reply, user_claims,
};
use crate::config::device::Flow;
use crate::error::StsError;
use crate::policy::Refusal;
use crate::policy::audit::AuditRecord;
use crate::protocol::saml::SignedAssertion;
use crate::protocol::soap;
use crate::protocol::wstrust::{self, IssueRequest, TrustVersion};

/// One usernamemixed request on its way through the steps.
struct ActiveRequest<'a> {
    guard: SignInGuard<'a>,
    version: TrustVersion,
    body: &'a [u8],
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
        let guard = SignInGuard::new(&self.policies, app, info, now, None, None);
        let mut record = guard.audit_record(Endpoint::usernamemixed_name(version));
        let active = ActiveRequest {
            guard,
            version,
            body,
        };
        let result = self.issue(&active, &mut record).await;
        trust_reply(result, &record, version, &info.correlation_id, now)
    }

    async fn issue(
        &self,
        active: &ActiveRequest<'_>,
        record: &mut AuditRecord,
    ) -> Result<Issued, Refused> {
        let request = self.read_request(active).await.map_err(Refused::early)?;
        record.user = request.username.clone();
        let assertion = self
            .check_and_sign(active, &request, record)
            .await
            .map_err(|error| Refused::relating_to(error, &request.message_id))?;
        Ok(Issued {
            assertion,
            applies_to: request.applies_to,
            message_id: request.message_id,
        })
    }

    /// Rate limit, envelope and RST: the steps before the request's MessageID is known.
    async fn read_request(&self, active: &ActiveRequest<'_>) -> Result<IssueRequest, StsError> {
        active.guard.rate_limit().await?;
        let envelope = soap::parse_envelope(active.body, &self.xml_limits)?;
        Ok(wstrust::parse_usernamemixed(
            &envelope,
            active.version,
            active.guard.now,
            &self.timestamp_policy,
        )?)
    }

    /// Replay marks, lockout and password, domain, device trust, signed assertion.
    async fn check_and_sign(
        &self,
        active: &ActiveRequest<'_>,
        request: &IssueRequest,
        record: &mut AuditRecord,
    ) -> Result<SignedAssertion, StsError> {
        let guard = &active.guard;
        let (app, now) = (guard.app, guard.now);
        if let Some(kind) = self
            .policies
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
        let user = guard
            .authenticate(&request.username, request.password.expose(), record)
            .await?;
        if !app.owns_upn(&user.upn) {
            return Err(StsError::OutsideDomain {
                domain: app.config.domain.clone(),
            });
        }
        guard.device(Flow::Active, &user, record)?;
        let claims = user_claims(app, &user, now, false, now);
        Ok(sign(app, &claims, request.token_type, now)?)
    }
}
