//! The security token service: the apps (federated domains) it serves and what each endpoint
//! does with a request. Knows no HTTP types: it takes an [`Endpoint`], body bytes and a little
//! request context, and returns an [`HttpReply`].
//!
//! Submodules hold the endpoints with several steps: `active` (usernamemixed) and `windows`
//! (windowstransport); passive sign-in is `crate::wsfed`. `guard` holds the policy steps the
//! two password paths (usernamemixed and passive sign-in) share.
//!
//! Path of a token on usernamemixed: classification and rate limit (`policy`) → envelope
//! (`soap`) → RST (`wstrust`) → replay marks and lockout check (`policy`) → password check
//! (`directory`) → lockout record and device trust (`policy`) → claims and signed assertion
//! (`saml`, `xmldsig`, `crypto`) → RSTR (`wstrust`). Every decision is one audit record.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::clock::Clock;
use crate::config::{AppConfig, Config};
use crate::crypto::{CryptoError, SigningIdentity};
use crate::directory::{self, Directory, User};
use crate::policy::audit::AuditRecord;
use crate::policy::lockout;
use crate::policy::ratelimit::RateLimiter;
use crate::policy::replay::ReplayCache;
use crate::policy::totp_guard::TotpGuard;
use crate::policy::{Policies, RequestClass, TrustedProxies};
use crate::powershell::{self, FederationSettings};
use crate::protocol::mex::{self, MexEndpoints};
use crate::protocol::saml::{self, AuthnMethod, Claims, Issuance, SignedAssertion};
use crate::protocol::soap;
use crate::protocol::wstrust::{self, TimestampPolicy, TrustVersion};
use crate::protocol::xml;
use crate::secret::Secret;
use crate::state::StateStore;
use crate::state::memory::MemoryStore;
use crate::wsfed::session::SessionKey;
use crate::wsfed::{Call, WsFed};

mod active;
pub(crate) mod guard;
mod kerberos;

/// What a request asks for, decided by the router from method and path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `GET /healthz`.
    Health,
    /// MEX: `GET` (plain document) or `POST` (WS-Transfer Get, SOAP-wrapped).
    Mex {
        /// App id.
        app: String,
        /// Whether to wrap the document in a SOAP envelope.
        soap: bool,
    },
    /// `POST /wsfed/{app}/trust/{13|2005}/usernamemixed`.
    UsernameMixed {
        /// App id.
        app: String,
        /// WS-Trust version of the endpoint.
        version: TrustVersion,
    },
    /// `POST /wsfed/{app}/trust/{13|2005}/windowstransport` (HTTP Negotiate).
    WindowsTransport {
        /// App id.
        app: String,
        /// WS-Trust version of the endpoint.
        version: TrustVersion,
    },
    /// `GET /wsfed/{app}/commands`.
    Commands {
        /// App id.
        app: String,
    },
    /// `GET|POST /wsfed/{app}`: passive WS-Federation sign-in and sign-out.
    Passive {
        /// App id.
        app: String,
        /// Whether the parameters are in a form body (POST) rather than the query.
        post: bool,
    },
    /// `GET /wsfed/{app}/launch`: IdP-initiated sign-in (a portal tile).
    Launch {
        /// App id.
        app: String,
    },
    /// `GET /wsfed/{app}/federationmetadata/2007-06/federationmetadata.xml`.
    FederationMetadata {
        /// App id.
        app: String,
    },
    /// No such path.
    NotFound,
    /// The path exists but not for this method.
    MethodNotAllowed {
        /// Value of the `Allow` header.
        allow: String,
    },
}

/// What the STS needs to know about a request besides its body.
#[derive(Clone, Debug)]
pub struct RequestInfo {
    /// Random id in the log line and in fault texts.
    pub correlation_id: String,
    /// Peer address of the connection.
    pub client_ip: IpAddr,
    /// `User-Agent`, truncated.
    pub user_agent: Option<String>,
    /// Raw query string.
    pub query: Option<String>,
    /// The `Authorization` header (a credential: never logged).
    pub authorization: Option<Secret>,
    /// `X-Forwarded-For` as sent (believed only from `server.trusted_proxies`).
    pub forwarded_for: Option<String>,
    /// `X-MS-Forwarded-Client-IP` as sent (believed only from `server.trusted_proxies`).
    pub ms_forwarded_client_ip: Option<String>,
    /// DER of the TLS client certificate that passed the device-CA verifier, if any.
    pub device_certificate: Option<Arc<[u8]>>,
    /// Raw `Cookie` header (passive sign-in only reads its own cookies from it).
    pub cookie: Option<String>,
}

impl RequestInfo {
    /// A request from `client_ip` with no headers, no query and no client certificate.
    pub fn new(correlation_id: String, client_ip: IpAddr) -> Self {
        Self {
            correlation_id,
            client_ip,
            user_agent: None,
            query: None,
            authorization: None,
            forwarded_for: None,
            ms_forwarded_client_ip: None,
            device_certificate: None,
            cookie: None,
        }
    }
}

/// A protocol-neutral HTTP answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpReply {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: String,
}

const SOAP_CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";
const XML_CONTENT_TYPE: &str = "text/xml; charset=utf-8";
const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

impl HttpReply {
    /// A plain-text reply.
    pub fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            content_type: TEXT_CONTENT_TYPE,
            headers: Vec::new(),
            body: body.to_owned(),
        }
    }

    /// A SOAP 1.2 reply.
    pub fn soap(status: u16, body: String) -> Self {
        Self {
            status,
            content_type: SOAP_CONTENT_TYPE,
            headers: Vec::new(),
            body,
        }
    }

    /// The answer to a refused WS-Trust request: a plain 429 with `Retry-After` for a rate
    /// limit answered so, otherwise the SOAP fault (with `Retry-After` when the client may
    /// retry soon).
    fn refused(
        error: &crate::error::StsError,
        version: crate::protocol::wstrust::TrustVersion,
        correlation_id: &str,
        relates_to: Option<&str>,
    ) -> Self {
        if let Some((status, retry_after)) = error.plain_http() {
            let mut reply = Self::text(status, "too many requests; try again later\n");
            reply.headers.push(("retry-after", retry_after.to_string()));
            return reply;
        }
        let fault = error.to_fault(version, correlation_id, relates_to);
        let mut reply = Self::soap(crate::error::FAULT_HTTP_STATUS, fault.to_xml());
        if let Some(retry_after) = error.fault_retry_after() {
            reply.headers.push(("retry-after", retry_after.to_string()));
        }
        reply
    }
}

/// The URLs of one app: its own under `{public_url}/wsfed/{id}`, and the ADFS layout
/// (`/adfs/ls/`, `/adfs/services/trust/…`) for the app with `adfs_paths = true`, which then
/// advertises those in MEX, metadata and the commands page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUrls {
    base: String,
    path: String,
    /// `public_url` without a trailing slash, when the app advertises the ADFS layout.
    adfs_base: Option<String>,
}

/// The ADFS passive sign-in and sign-out path.
pub const ADFS_PASSIVE_PATH: &str = "/adfs/ls/";

impl AppUrls {
    /// URLs for app `id` under `public_base` (no trailing slash).
    pub fn new(public_base: &str, id: &str) -> Self {
        Self {
            base: format!("{}/wsfed/{id}", public_base.trim_end_matches('/')),
            path: format!("/wsfed/{id}"),
            adfs_base: None,
        }
    }
    /// URLs for app `id` that advertise the ADFS layout (launch and commands stay ours).
    pub fn adfs(public_base: &str, id: &str) -> Self {
        Self {
            path: ADFS_PASSIVE_PATH.to_owned(),
            adfs_base: Some(public_base.trim_end_matches('/').to_owned()),
            ..Self::new(public_base, id)
        }
    }
    /// Path of the passive endpoint on this server (form actions, cookie scope).
    pub fn passive_path(&self) -> String {
        self.path.clone()
    }
    /// IdP-initiated sign-in (portal tile) URL.
    pub fn launch(&self) -> String {
        format!("{}/launch", self.base)
    }
    /// Passive WS-Federation sign-in (and sign-out) URL.
    pub fn passive(&self) -> String {
        match &self.adfs_base {
            Some(adfs) => format!("{adfs}{ADFS_PASSIVE_PATH}"),
            None => self.base.clone(),
        }
    }
    /// MEX document.
    pub fn mex(&self) -> String {
        match &self.adfs_base {
            Some(_) => format!("{}/mex", self.trust_base()),
            None => format!("{}/mex", self.base),
        }
    }
    /// usernamemixed endpoint of a version.
    pub fn usernamemixed(&self, version: TrustVersion) -> String {
        format!(
            "{}/{}/usernamemixed",
            self.trust_base(),
            version.path_segment()
        )
    }
    /// windowstransport endpoint of a version.
    pub fn windowstransport(&self, version: TrustVersion) -> String {
        format!(
            "{}/{}/windowstransport",
            self.trust_base(),
            version.path_segment()
        )
    }
    /// Commands page.
    pub fn commands(&self) -> String {
        format!("{}/commands", self.base)
    }
    /// Federation metadata document.
    pub fn metadata(&self) -> String {
        match &self.adfs_base {
            Some(adfs) => format!("{adfs}/FederationMetadata/2007-06/FederationMetadata.xml"),
            None => format!(
                "{}/federationmetadata/2007-06/federationmetadata.xml",
                self.base
            ),
        }
    }
    /// Where the WS-Trust endpoints hang: `…/wsfed/{id}/trust` or `…/adfs/services/trust`.
    fn trust_base(&self) -> String {
        match &self.adfs_base {
            Some(adfs) => format!("{adfs}/adfs/services/trust"),
            None => format!("{}/trust", self.base),
        }
    }
}

/// One federated domain, ready to serve.
#[derive(Debug)]
pub struct App {
    /// Its configuration.
    pub config: AppConfig,
    /// Token-signing key and certificate.
    pub identity: SigningIdentity,
    /// Where its users are.
    pub directory: Arc<dyn Directory>,
    /// The key and certificate that replace `identity` at the next rollover, when configured.
    pub next_identity: Option<SigningIdentity>,
    /// Its URLs.
    pub urls: AppUrls,
    mex_endpoints: MexEndpoints,
    mex_document: String,
    commands_page: String,
    #[cfg(feature = "kerberos")]
    acceptor: Option<crate::kerberos::acceptor::Acceptor>,
}

impl App {
    /// Builds an app from its configuration, signing identity and directory.
    pub fn new(
        config: AppConfig,
        public_base: &str,
        identity: SigningIdentity,
        directory: Arc<dyn Directory>,
    ) -> Self {
        let urls = if config.adfs_paths {
            AppUrls::adfs(public_base, &config.id)
        } else {
            AppUrls::new(public_base, &config.id)
        };
        let kerberos = config.kerberos.as_ref();
        let mex_endpoints = MexEndpoints {
            usernamemixed_13: Some(urls.usernamemixed(TrustVersion::V13)),
            usernamemixed_2005: Some(urls.usernamemixed(TrustVersion::V2005)),
            windowstransport_13: kerberos.map(|_| urls.windowstransport(TrustVersion::V13)),
            windowstransport_2005: kerberos.map(|_| urls.windowstransport(TrustVersion::V2005)),
            windowstransport_spn: kerberos.map(|k| k.spn.clone()),
        };
        let mex_document = mex::definitions(&mex_endpoints);
        let commands_page =
            powershell::render(&federation_settings(&config, &urls, &identity, None));
        Self {
            config,
            identity,
            next_identity: None,
            directory,
            urls,
            mex_endpoints,
            mex_document,
            commands_page,
            #[cfg(feature = "kerberos")]
            acceptor: None,
        }
    }

    /// Adds the next signing identity (rollover): the commands page then names its certificate.
    pub fn with_next_identity(mut self, next: Option<SigningIdentity>) -> Self {
        self.commands_page = powershell::render(&federation_settings(
            &self.config,
            &self.urls,
            &self.identity,
            next.as_ref(),
        ));
        self.next_identity = next;
        self
    }

    /// The commands page text.
    pub fn commands_page(&self) -> &str {
        &self.commands_page
    }

    /// Whether `upn` belongs to this app's domain (or a subdomain of it).
    pub(crate) fn owns_upn(&self, upn: &str) -> bool {
        let domain = self.config.domain.to_ascii_lowercase();
        upn.rsplit_once('@').is_some_and(|(_, suffix)| {
            let suffix = suffix.to_ascii_lowercase();
            suffix == domain || suffix.ends_with(&format!(".{domain}"))
        })
    }
}

/// What Entra ID needs to federate the domain, as the commands page prints it.
pub fn federation_settings(
    config: &AppConfig,
    urls: &AppUrls,
    identity: &SigningIdentity,
    next_identity: Option<&SigningIdentity>,
) -> FederationSettings {
    FederationSettings {
        domain: config.domain.clone(),
        display_name: config.display_name().to_owned(),
        issuer_uri: config.issuer_uri.clone(),
        passive_sign_in_uri: urls.passive(),
        active_sign_in_uri: urls.usernamemixed(TrustVersion::V2005),
        metadata_exchange_uri: urls.mex(),
        sign_out_uri: urls.passive(),
        metadata_uri: urls.metadata(),
        signing_certificate_b64: identity.certificate.base64(),
        next_signing_certificate_b64: next_identity.map(|n| n.certificate.base64()),
    }
}

/// Why the STS could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration has problems.
    #[error("{0}")]
    Config(String),
    /// The trusted proxy list could not be used.
    #[error("server.trusted_proxies: `{0}` is not an IP address or CIDR block")]
    TrustedProxy(String),
    /// A signing key or certificate could not be used.
    #[error("{key}: {source}")]
    Signing {
        /// Config key.
        key: String,
        /// Cause.
        source: CryptoError,
    },
    /// The Kerberos acceptor could not be prepared.
    #[cfg(feature = "kerberos")]
    #[error("{key}: {source}")]
    Kerberos {
        /// Config key.
        key: String,
        /// Cause.
        source: crate::kerberos::acceptor::KerberosError,
    },
    /// The browser session key could not be read or made.
    #[error("server.session_key: {0}")]
    SessionKey(#[from] crate::wsfed::session::SessionKeyError),
    /// The federation metadata could not be signed.
    #[error("{key}: cannot sign the federation metadata: {source}")]
    Metadata {
        /// Config key.
        key: String,
        /// Cause.
        source: crate::protocol::xmldsig::XmlDsigError,
    },
    /// A directory could not be built.
    #[error("{key}: {message}")]
    Directory {
        /// Config key.
        key: String,
        /// Cause.
        message: String,
    },
}

/// The running service: apps by id, limits, clock, protection policies.
#[derive(Debug)]
pub struct Sts {
    apps: BTreeMap<String, App>,
    clock: Arc<dyn Clock>,
    xml_limits: xml::Limits,
    timestamp_policy: TimestampPolicy,
    policies: Policies,
    wsfed: WsFed,
}

impl Sts {
    /// Builds every app of a validated configuration, with an in-memory state store whatever
    /// `[state]` says (for tools that issue no tokens); `serve` uses [`Sts::with_state`].
    pub fn from_config(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        let store = Arc::new(MemoryStore::new(config.state.prefix()));
        Self::with_state(config, clock, store)
    }

    /// Builds every app of a validated configuration over `store` (see [`crate::state::build`]).
    pub fn with_state(
        config: &Config,
        clock: Arc<dyn Clock>,
        store: Arc<dyn StateStore>,
    ) -> Result<Self, StartError> {
        let problems = config.problems();
        if !problems.is_empty() {
            let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(StartError::Config(text.join("\n")));
        }
        let directories =
            directory::build(&config.directories).map_err(|(key, e)| StartError::Directory {
                key,
                message: e.to_string(),
            })?;
        let mut apps = BTreeMap::new();
        let mut wsfed = WsFed::new(session_key(config)?);
        for (i, app) in config.apps.iter().enumerate() {
            let identity = SigningIdentity::from_pem_files(&app.signing_cert, &app.signing_key)
                .map_err(|source| StartError::Signing {
                    key: format!("apps[{i}].signing_key"),
                    source,
                })?;
            let directory =
                directories
                    .get(&app.directory)
                    .cloned()
                    .ok_or_else(|| StartError::Directory {
                        key: format!("apps[{i}].directory"),
                        message: format!("no directory named {}", app.directory),
                    })?;
            let next = next_identity(i, app)?;
            #[cfg_attr(not(feature = "kerberos"), allow(unused_mut))]
            let mut built = App::new(app.clone(), config.public_base(), identity, directory)
                .with_next_identity(next);
            #[cfg(feature = "kerberos")]
            if let Some(kerberos) = &app.kerberos {
                built.acceptor = Some(
                    crate::kerberos::acceptor::Acceptor::new(&kerberos.keytab).map_err(
                        |source| StartError::Kerberos {
                            key: format!("apps[{i}].kerberos.keytab"),
                            source,
                        },
                    )?,
                );
            }
            wsfed
                .add_metadata(&built)
                .map_err(|source| StartError::Metadata {
                    key: format!("apps[{i}].signing_key"),
                    source,
                })?;
            apps.insert(app.id.clone(), built);
        }
        let timestamp_policy = TimestampPolicy::default();
        let policies = Policies {
            proxies: TrustedProxies::parse(&config.server.trusted_proxies)
                .map_err(StartError::TrustedProxy)?
                .with_ms_forwarded_client_ip(config.server.trust_ms_forwarded_client_ip),
            rate_limit: RateLimiter::new(config.rate_limit.clone(), store.clone()),
            replay: ReplayCache::new(store.clone(), &timestamp_policy),
            lockout: lockout::Lockout::new(config.lockout.clone(), store.clone()),
            totp: TotpGuard::new(store.clone()),
            store,
        };
        Ok(Self {
            apps,
            clock,
            xml_limits: xml::Limits::default(),
            timestamp_policy,
            policies,
            wsfed,
        })
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.get(id)
    }

    /// Every app.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// The protection policies (for the passive path and the admin CLI).
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Answers one request.
    pub async fn handle(&self, endpoint: Endpoint, body: &[u8], info: &RequestInfo) -> HttpReply {
        match endpoint {
            Endpoint::Health => self.health().await,
            Endpoint::NotFound => HttpReply::text(404, "not found\n"),
            Endpoint::MethodNotAllowed { allow } => {
                let mut reply = HttpReply::text(405, "method not allowed\n");
                reply.headers.push(("allow", allow));
                reply
            }
            Endpoint::Mex { app, soap } => self.with_app(&app, |a| self.mex(a, soap, body)),
            Endpoint::Commands { app } => {
                self.with_app(&app, |a| HttpReply::text(200, a.commands_page()))
            }
            Endpoint::FederationMetadata { app } => self.with_app(&app, |a| self.wsfed.metadata(a)),
            Endpoint::Passive { app, post } => {
                let call = if post { Call::Post } else { Call::Get };
                self.passive(&app, call, body, info).await
            }
            Endpoint::Launch { app } => self.passive(&app, Call::Launch, body, info).await,
            Endpoint::UsernameMixed { app, version } => match self.app(&app) {
                Some(a) => self.usernamemixed(a, version, body, info).await,
                None => HttpReply::text(404, "no such app\n"),
            },
            Endpoint::WindowsTransport { app, version } => match self.app(&app) {
                Some(a) => self.windowstransport(a, version, body, info).await,
                None => HttpReply::text(404, "no such app\n"),
            },
        }
    }

    async fn passive(&self, id: &str, call: Call, body: &[u8], info: &RequestInfo) -> HttpReply {
        match self.app(id) {
            Some(app) => {
                self.wsfed
                    .handle(&self.policies, app, call, body, info, self.clock.now())
                    .await
            }
            None => HttpReply::text(404, "no such app\n"),
        }
    }

    fn with_app(&self, id: &str, f: impl FnOnce(&App) -> HttpReply) -> HttpReply {
        match self.app(id) {
            Some(app) => f(app),
            None => HttpReply::text(404, "no such app\n"),
        }
    }

    async fn health(&self) -> HttpReply {
        if let Err(e) = self.policies.store.health().await {
            tracing::warn!(error = %e, "health check failed: state store");
            return HttpReply::text(503, "unhealthy: state store\n");
        }
        for app in self.apps.values() {
            if let Err(e) = app.directory.health().await {
                tracing::warn!(app = %app.config.id, error = %e, "health check failed");
                return HttpReply::text(503, &format!("unhealthy: app {}\n", app.config.id));
            }
        }
        HttpReply::text(200, "ok\n")
    }

    fn mex(&self, app: &App, soap_wrapped: bool, body: &[u8]) -> HttpReply {
        if !soap_wrapped {
            return HttpReply {
                status: 200,
                content_type: XML_CONTENT_TYPE,
                headers: Vec::new(),
                body: app.mex_document.clone(),
            };
        }
        let relates_to = soap::parse_envelope(body, &self.xml_limits)
            .ok()
            .and_then(|envelope| wstrust::request_message_id(&envelope));
        HttpReply::soap(
            200,
            mex::soap_response(&app.mex_endpoints, relates_to.as_deref()),
        )
    }
}

/// Builds and signs the assertion for `claims` with the app's lifetime and key (one builder for
/// the active and passive paths).
pub(crate) fn sign(
    app: &App,
    claims: &Claims,
    token_type: saml::TokenType,
    now: OffsetDateTime,
) -> Result<SignedAssertion, saml::SamlError> {
    let issuance = Issuance::new(now, token_lifetime(app));
    saml::build_signed_assertion(claims, token_type, &issuance, &app.identity)
}

/// The audit record of one request, before its decision.
fn audit_record(
    app: &App,
    endpoint: String,
    info: &RequestInfo,
    now: OffsetDateTime,
    client_ip: IpAddr,
    request_class: RequestClass,
) -> AuditRecord {
    AuditRecord {
        time: now,
        correlation_id: info.correlation_id.clone(),
        app: app.config.id.clone(),
        endpoint,
        request_class,
        client_ip,
        user_agent: info.user_agent.clone().unwrap_or_default(),
        user: String::new(),
        lockout_location: None,
        lockout_log_only: false,
        device_id: None,
    }
}

/// The assertion lifetime of an app.
pub(crate) fn token_lifetime(app: &App) -> time::Duration {
    time::Duration::seconds(i64::try_from(app.config.token_lifetime_secs).unwrap_or(3600))
}

/// The browser session key: from `server.session_key` (made on first start), or a random
/// in-memory key when the configuration was built in code without one.
fn session_key(config: &Config) -> Result<SessionKey, StartError> {
    match &config.server.session_key {
        Some(path) => Ok(SessionKey::load_or_create(path)?),
        None => {
            let bytes = crate::random::bytes::<32>()
                .map_err(|_| crate::wsfed::session::SessionKeyError::Random)?;
            Ok(SessionKey::from_bytes(&bytes))
        }
    }
}

/// The next signing identity of `apps[index]`, when both files are configured.
fn next_identity(index: usize, app: &AppConfig) -> Result<Option<SigningIdentity>, StartError> {
    match (&app.next_signing_cert, &app.next_signing_key) {
        (Some(cert), Some(key)) => SigningIdentity::from_pem_files(cert, key)
            .map(Some)
            .map_err(|source| StartError::Signing {
                key: format!("apps[{index}].next_signing_key"),
                source,
            }),
        _ => Ok(None),
    }
}

/// Claims for a user who signed in with a password (active endpoints and passive sign-in),
/// with `multipleauthn` only when a second factor was really checked.
pub(crate) fn user_claims(
    app: &App,
    user: &User,
    now: OffsetDateTime,
    mfa_performed: bool,
) -> Claims {
    Claims {
        issuer: app.config.issuer_uri.clone(),
        audience: crate::protocol::ns::MICROSOFT_ONLINE.to_owned(),
        immutable_id: user.immutable_id.clone(),
        upn: user.upn.clone(),
        authn_method: AuthnMethod::Password,
        authn_instant: now,
        mfa_performed,
        extra_attributes: Vec::new(),
    }
}
