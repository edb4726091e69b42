//! windowstransport (WS-Trust 1.3 and 2005 with HTTP Negotiate): intranet check, rate limit (of
//! requests that carry a token; the 401 challenge is free), SPNEGO accept, replay marks (the
//! accepted token, the MessageID), principal → directory entry, Windows claims, RSTR
//! (feature `kerberos`).

use super::{App, HttpReply, RequestInfo, Sts};
use crate::protocol::wstrust::TrustVersion;
#[cfg(feature = "kerberos")]
use {
    super::guard::SignInGuard,
    super::{Endpoint, Issued, Refused, sign, trust_reply},
    crate::error::StsError,
    crate::kerberos as wt,
    crate::policy::{Refusal, audit},
    crate::protocol::saml::SignedAssertion,
    crate::protocol::soap,
    crate::protocol::wstrust,
    time::OffsetDateTime,
};

impl Sts {
    /// Without the `kerberos` feature no app can have Kerberos (the configuration is refused
    /// at start), so windowstransport is simply not there.
    #[cfg(not(feature = "kerberos"))]
    pub(super) async fn windowstransport(
        &self,
        _app: &App,
        _version: TrustVersion,
        _body: &[u8],
        _info: &RequestInfo,
    ) -> HttpReply {
        HttpReply::text(404, "windowstransport is not enabled for this app\n")
    }

    /// windowstransport: intranet check (403), HTTP Negotiate (401 challenge), SPNEGO accept,
    /// principal → directory entry, Windows claims, RSTR with the mutual-auth token.
    #[cfg(feature = "kerberos")]
    pub(super) async fn windowstransport(
        &self,
        app: &App,
        version: TrustVersion,
        body: &[u8],
        info: &RequestInfo,
    ) -> HttpReply {
        let (Some(kerberos), Some(acceptor)) = (&app.config.kerberos, &app.acceptor) else {
            return HttpReply::text(404, "windowstransport is not enabled for this app\n");
        };
        let endpoint = Endpoint::windowstransport_name(version);
        let now = self.clock.now();
        // The client's address as the trusted proxies report it: behind a reverse proxy the
        // socket peer is the proxy, which must not make the Internet look like the intranet.
        let guard = SignInGuard::new(&self.policies, app, info, now, None, None);
        let mut record = guard.audit_record(endpoint);
        let client = guard.addresses.client;
        if !kerberos.networks().iter().any(|n| n.contains(client)) {
            record.emit(audit::Decision::Refused, "outside_allowed_networks", None);
            return HttpReply::text(403, "windowstransport is only served to the intranet\n");
        }
        let token = wt::negotiate_token(info.authorization.as_ref().map(|c| c.expose()));
        let Some(token) = token else {
            record.emit(audit::Decision::Refused, "negotiate_challenge", None);
            return negotiate_challenge();
        };
        if let Err(refusal) = guard.rate_limit().await {
            let refused = Refused::early(refusal);
            return trust_reply(Err(refused), &record, version, &info.correlation_id, now);
        }
        let acceptor = acceptor.clone();
        let accepted = tokio::task::spawn_blocking(move || {
            let accepted = acceptor.accept(&token);
            (token, accepted)
        })
        .await;
        let accepted = match accepted {
            Ok((token, Ok(accepted))) => (token, accepted),
            Ok((_, Err(e))) => {
                record.emit(audit::Decision::Refused, "kerberos", Some(&e.to_string()));
                return negotiate_challenge();
            }
            Err(e) => {
                record.emit(
                    audit::Decision::Refused,
                    "kerberos_task",
                    Some(&e.to_string()),
                );
                return negotiate_challenge();
            }
        };
        let (token, accepted) = accepted;
        let result = match self
            .policies
            .replay
            .check_negotiate_token(&token, now)
            .await
        {
            Ok(Some(kind)) => Err(Refused::early(Refusal::Replay(kind))),
            Err(e) => Err(Refused::early(Refusal::from(e))),
            Ok(None) => {
                self.windows_issue(app, kerberos, version, body, &accepted.principal, now)
                    .await
            }
        };
        record.user = accepted.principal.clone();
        let mut reply = trust_reply(result, &record, version, &info.correlation_id, now);
        if let Some(token) = accepted.reply_token {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(token);
            reply
                .headers
                .push(("www-authenticate", format!("Negotiate {encoded}")));
        }
        reply
    }

    /// The token for an authenticated principal.
    #[cfg(feature = "kerberos")]
    async fn windows_issue(
        &self,
        app: &App,
        kerberos: &crate::config::KerberosConfig,
        version: TrustVersion,
        body: &[u8],
        principal: &str,
        now: OffsetDateTime,
    ) -> Result<Issued, Refused> {
        let envelope = soap::parse_envelope(body, &self.xml_limits).map_err(Refused::early)?;
        let request =
            wstrust::parse_windowstransport(&envelope, version).map_err(Refused::early)?;
        let assertion = self
            .windows_check_and_sign(app, kerberos, &request, principal, now)
            .await
            .map_err(|error| Refused::relating_to(error, &request.message_id))?;
        Ok(Issued {
            assertion,
            applies_to: request.applies_to,
            message_id: request.message_id,
        })
    }

    /// MessageID replay mark, principal → directory entry, domain, Windows claims, signed
    /// assertion.
    #[cfg(feature = "kerberos")]
    async fn windows_check_and_sign(
        &self,
        app: &App,
        kerberos: &crate::config::KerberosConfig,
        request: &wstrust::WindowsIssueRequest,
        principal: &str,
        now: OffsetDateTime,
    ) -> Result<SignedAssertion, StsError> {
        use crate::directory::{AuthFailure, DirectoryError};
        if let Some(id) = &request.message_id
            && let Some(kind) = self
                .policies
                .replay
                .check_message_id(id, now)
                .await
                .map_err(Refusal::from)?
        {
            return Err(Refusal::Replay(kind).into());
        }
        let principal = wt::Principal::parse(principal).ok_or(StsError::Directory(
            DirectoryError::Rejected(AuthFailure::UnknownUser),
        ))?;
        let domain = wt::domain_for(kerberos, &principal)?;
        let identity = wt::resolve_principal(app.directory.as_ref(), domain, &principal).await?;
        if !identity.computer && !app.owns_upn(&identity.user.upn) {
            return Err(StsError::OutsideDomain {
                domain: app.config.domain.clone(),
            });
        }
        let claims = wt::windows_claims(
            &app.config.issuer_uri,
            &identity,
            kerberos.issuer_id.as_deref(),
            now,
        )?;
        Ok(sign(app, &claims, request.token_type, now)?)
    }
}

/// 401 with `WWW-Authenticate: Negotiate`: the client should (re)try with a Kerberos ticket.
#[cfg(feature = "kerberos")]
fn negotiate_challenge() -> HttpReply {
    let mut reply = HttpReply::text(
        401,
        "Kerberos (HTTP Negotiate) authentication is required\n",
    );
    reply
        .headers
        .push(("www-authenticate", "Negotiate".to_owned()));
    reply
}
