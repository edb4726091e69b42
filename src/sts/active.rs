//! usernamemixed (WS-Trust 1.3 and 2005): classification and rate limit → envelope → RST →
//! replay marks → lockout check → password → lockout record → domain and device checks →
//! signed assertion → RSTR; one audit record per request. The steps shared with passive
//! sign-in are in `guard`.

use super::guard::SignInGuard;
use super::{App, HttpReply, RequestInfo, Sts, sign, user_claims};
use crate::error::StsError;
use crate::policy::audit::{self, AuditRecord};
use crate::policy::{Flow, Refusal};
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
        let mut record =
            guard.audit_record(format!("trust/{}/usernamemixed", version.path_segment()));
        let active = ActiveRequest {
            guard,
            version,
            body,
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
                let outcome = error.outcome();
                record.emit(audit::Decision::Refused, &outcome.log_reason, None);
                HttpReply::refused(&outcome.active, version, &info.correlation_id, relates_to)
            }
        }
    }

    async fn issue(
        &self,
        active: &ActiveRequest<'_>,
        record: &mut AuditRecord,
        parsed: &mut Option<IssueRequest>,
    ) -> Result<SignedAssertion, StsError> {
        let guard = &active.guard;
        let (app, now) = (guard.app, guard.now);
        guard.rate_limit().await?;
        let envelope = soap::parse_envelope(active.body, &self.xml_limits)?;
        let request = parsed.insert(wstrust::parse_usernamemixed(
            &envelope,
            active.version,
            now,
            &self.timestamp_policy,
        )?);
        record.user = request.username.clone();
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
        let claims = user_claims(app, &user, now, false);
        Ok(sign(app, &claims, request.token_type, now)?)
    }
}
