//! windowstransport (WS-Trust 1.3 and 2005 with HTTP Negotiate): intranet check, rate limit (of
//! requests that carry a token; the 401 challenge is free), SPNEGO accept, replay marks (the
//! accepted token, the MessageID), principal → directory entry, Windows claims, RSTR
//! (feature `kerberos`).

use super::{App, HttpReply, RequestInfo, Sts};
use crate::protocol::wstrust::TrustVersion;
#[cfg(feature = "kerberos")]
use {
    super::guard::SignInGuard,
    super::sign,
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
        let endpoint = format!("trust/{}/windowstransport", version.path_segment());
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
            let outcome = StsError::from(refusal).outcome();
            record.emit(audit::Decision::Refused, &outcome.log_reason, None);
            return HttpReply::refused(&outcome.active, version, &info.correlation_id, None);
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
                record.emit(audit::Decision::Refused, &format!("kerberos: {e}"), None);
                return negotiate_challenge();
            }
            Err(e) => {
                record.emit(
                    audit::Decision::Refused,
                    &format!("kerberos task: {e}"),
                    None,
                );
                return negotiate_challenge();
            }
        };
        let (token, accepted) = accepted;
        let mut relates_to = None;
        let result = match self
            .policies
            .replay
            .check_negotiate_token(&token, now)
            .await
        {
            Ok(Some(kind)) => Err(Refusal::Replay(kind).into()),
            Err(e) => Err(Refusal::from(e).into()),
            Ok(None) => {
                self.windows_issue(
                    app,
                    kerberos,
                    version,
                    body,
                    &accepted.principal,
                    now,
                    &mut relates_to,
                )
                .await
            }
        };
        let mut reply = match result {
            Ok((assertion, applies_to)) => {
                record.user = accepted.principal.clone();
                record.emit(audit::Decision::Issued, "ok", Some(&assertion.id));
                HttpReply::soap(
                    200,
                    wstrust::build_response(
                        version,
                        &assertion,
                        &applies_to,
                        relates_to.as_deref(),
                        now,
                    ),
                )
            }
            Err(error) => {
                record.user = accepted.principal.clone();
                let outcome = error.outcome();
                record.emit(audit::Decision::Refused, &outcome.log_reason, None);
                HttpReply::refused(
                    &outcome.active,
                    version,
                    &info.correlation_id,
                    relates_to.as_deref(),
                )
            }
        };
        if let Some(token) = accepted.reply_token {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(token);
            reply
                .headers
                .push(("www-authenticate", format!("Negotiate {encoded}")));
        }
        reply
    }

    /// The token for an authenticated principal; returns the assertion and the AppliesTo.
    #[cfg(feature = "kerberos")]
    #[allow(clippy::too_many_arguments)]
    async fn windows_issue(
        &self,
        app: &App,
        kerberos: &crate::config::KerberosConfig,
        version: TrustVersion,
        body: &[u8],
        principal: &str,
        now: OffsetDateTime,
        relates_to: &mut Option<String>,
    ) -> Result<(SignedAssertion, String), StsError> {
        use crate::directory::{AuthFailure, DirectoryError};
        let envelope = soap::parse_envelope(body, &self.xml_limits)?;
        let request = wstrust::parse_windowstransport(&envelope, version)?;
        relates_to.clone_from(&request.message_id);
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
        let domain = kerberos.domain_for(&principal)?;
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
        let assertion = sign(app, &claims, request.token_type, now)?;
        Ok((assertion, request.applies_to))
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
