//! The security token service: the apps (federated domains) it serves and what each endpoint
//! does with a request. Knows no HTTP types: it takes an [`Endpoint`], body bytes and a little
//! request context, and returns an [`HttpReply`].
//!
//! Submodules hold the endpoints with several steps: `active` (usernamemixed) and `kerberos`
//! (windowstransport), which share one shape: the steps before the MessageID is known, the
//! steps after it (their refusals carry it, see [`Refused`]), and one ending ([`trust_reply`]:
//! audit record, RSTR or fault). Passive sign-in is [`passive`]. `guard` holds the policy
//! steps the two password paths (usernamemixed and passive sign-in) share.
//!
//! Path of a token on usernamemixed: classification and rate limit (`policy`) → envelope
//! (`soap`) → RST (`wstrust`) → replay marks and lockout check (`policy`) → password check
//! (`directory`) → lockout record and device trust (`policy`) → claims and signed assertion
//! (`saml`, `xmldsig`, `crypto`) → RSTR (`wstrust`). Every decision is one audit record.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use time::OffsetDateTime;

use crate::autoroll::{
    self, Autoroller, FileKeyStore, KeyStore, Pkcs11KeyStore, RollError, SigningSet, Swappable,
};
use crate::clock::Clock;
use crate::config::{AppConfig, Config};
use crate::crypto::{CryptoError, SigningIdentity};
use crate::directory::{self, Directory, User};
use crate::metrics::{ConfigName, Metrics};
use crate::policy::audit::AuditRecord;
use crate::policy::lockout;
use crate::policy::ratelimit::RateLimiter;
use crate::policy::replay::ReplayCache;
use crate::policy::totp_guard::TotpGuard;
use crate::policy::{Policies, RequestClass, TrustedProxies};
use crate::powershell::{self, FederationSettings};
use crate::protocol::mex::{self, MexEndpoints};
use crate::protocol::saml::{self, AuthnMethod, ClaimAttribute, Claims, Issuance, SignedAssertion};
use crate::protocol::soap;
use crate::protocol::wstrust::{self, TimestampPolicy, TrustVersion};
use crate::protocol::xml;
use crate::protocol::xmldsig::XmlDsigError;
use crate::secret::Secret;
use crate::state::memory::MemoryStore;
use crate::state::timed::TimedStore;
use crate::state::{StateLeases, StateStore};

mod active;
pub(crate) mod guard;
mod kerberos;
pub mod passive;
pub mod portal;

use passive::session::SessionKey;
use passive::{Call, WsFed};

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
    /// `GET|POST /`: the user portal (404 unless `[portal] enabled`).
    Portal {
        /// Whether a form was posted.
        post: bool,
    },
    /// `GET /wsfed/{app}/launch`: IdP-initiated sign-in (a portal tile).
    Launch {
        /// App id.
        app: String,
    },
    /// `GET|POST /wsfed/{app}/password`: the change-password page.
    PasswordChange {
        /// App id.
        app: String,
        /// Whether the form was posted.
        post: bool,
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

impl Endpoint {
    /// The endpoint's name in the request-latency metric: a fixed set, whatever the path (an
    /// unknown path is `not_found`, an unknown app the endpoint it asked for).
    pub fn metric_name(&self) -> &'static str {
        match self {
            Endpoint::Health => "healthz",
            Endpoint::Mex { .. } => "mex",
            Endpoint::UsernameMixed { version, .. } => Self::usernamemixed_name(*version),
            Endpoint::WindowsTransport { version, .. } => Self::windowstransport_name(*version),
            Endpoint::Commands { .. } => "commands",
            Endpoint::Passive { .. } => "wsfed/passive",
            Endpoint::Launch { .. } => "wsfed/launch",
            Endpoint::Portal { .. } => "portal",
            Endpoint::PasswordChange { .. } => "wsfed/password",
            Endpoint::FederationMetadata { .. } => "federationmetadata",
            Endpoint::NotFound => "not_found",
            Endpoint::MethodNotAllowed { .. } => "method_not_allowed",
        }
    }

    /// The audit and metrics name of a usernamemixed endpoint.
    pub fn usernamemixed_name(version: TrustVersion) -> &'static str {
        match version {
            TrustVersion::V13 => "trust/13/usernamemixed",
            TrustVersion::V2005 => "trust/2005/usernamemixed",
        }
    }

    /// The audit and metrics name of a windowstransport endpoint.
    pub fn windowstransport_name(version: TrustVersion) -> &'static str {
        match version {
            TrustVersion::V13 => "trust/13/windowstransport",
            TrustVersion::V2005 => "trust/2005/windowstransport",
        }
    }
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

    /// The answer to a refused WS-Trust request, as its [`crate::error::Outcome`] decided: a
    /// plain status with `Retry-After`, or the SOAP fault (with `Retry-After` when the client
    /// may retry soon).
    fn refused(
        answer: &crate::error::ActiveAnswer,
        version: crate::protocol::wstrust::TrustVersion,
        correlation_id: &str,
        relates_to: Option<&str>,
    ) -> Self {
        use crate::error::ActiveAnswer;
        match answer {
            ActiveAnswer::Plain {
                status,
                retry_after_secs,
            } => {
                let mut reply = Self::text(*status, "too many requests; try again later\n");
                reply
                    .headers
                    .push(("retry-after", retry_after_secs.to_string()));
                reply
            }
            ActiveAnswer::Fault(fault) => {
                let fault_xml = fault.to_fault(version, correlation_id, relates_to).to_xml();
                let mut reply = Self::soap(crate::error::FAULT_HTTP_STATUS, fault_xml);
                if let Some(retry_after) = fault.retry_after_secs {
                    reply.headers.push(("retry-after", retry_after.to_string()));
                }
                reply
            }
        }
    }
}

/// A token issued on a WS-Trust endpoint, with what its RSTR echoes.
struct Issued {
    assertion: SignedAssertion,
    /// The AppliesTo address as sent.
    applies_to: String,
    /// The request's `wsa:MessageID` (the RSTR's `RelatesTo`).
    message_id: Option<String>,
}

/// A refused WS-Trust request: why, and the `wsa:MessageID` its fault relates to once the
/// request has been read far enough to have one.
struct Refused {
    error: crate::error::StsError,
    message_id: Option<String>,
}

impl Refused {
    /// A refusal before the request's MessageID is known (rate limit, envelope, RST).
    fn early(error: impl Into<crate::error::StsError>) -> Self {
        Self {
            error: error.into(),
            message_id: None,
        }
    }

    /// A refusal of a request that was read: its fault relates to `message_id`.
    fn relating_to(error: crate::error::StsError, message_id: &Option<String>) -> Self {
        Self {
            error,
            message_id: message_id.clone(),
        }
    }
}

/// The common ending of usernamemixed and windowstransport: one audit record, then the RSTR of
/// the issued token or the refusal as its [`crate::error::Outcome`] decided.
fn trust_reply(
    result: Result<Issued, Refused>,
    record: &AuditRecord,
    version: TrustVersion,
    correlation_id: &str,
    now: OffsetDateTime,
) -> HttpReply {
    match result {
        Ok(issued) => {
            record.emit(signed_by(&issued.assertion), "ok", None);
            HttpReply::soap(
                200,
                wstrust::build_response(
                    version,
                    &issued.assertion,
                    &issued.applies_to,
                    issued.message_id.as_deref(),
                    now,
                ),
            )
        }
        Err(refused) => {
            let outcome = refused.error.outcome();
            record.emit(
                crate::policy::audit::Decision::Refused,
                outcome.reason,
                outcome.detail.as_deref(),
            );
            HttpReply::refused(
                &outcome.active,
                version,
                correlation_id,
                refused.message_id.as_deref(),
            )
        }
    }
}

/// The URLs of one app: its own under `{public_url}/wsfed/{id}`, and the ADFS layout
/// (`/adfs/ls/`, `/adfs/services/trust/…`) for the app with `adfs_paths = true`, which then
/// advertises those in MEX, metadata and the commands page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppUrls {
    base: String,
    path: String,
    /// `/wsfed/{id}`, also for the app that advertises the ADFS layout.
    own_path: String,
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
            own_path: format!("/wsfed/{id}"),
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
    /// The change-password page (always under our own layout; ADFS's is not served).
    pub fn password_change(&self) -> String {
        format!("{}/password", self.base)
    }
    /// Path of the change-password page on this server (its form action and cookie scope).
    pub fn password_change_path(&self) -> String {
        format!("{}/password", self.own_path)
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

/// What an app signs with and publishes: its signing material and the documents built from
/// it. Read per request and replaced as a whole by rollover (a reload builds new apps instead).
#[derive(Debug)]
pub struct Published {
    /// Current (signs), next and previous pairs.
    pub signing: SigningSet,
    /// The commands page text.
    pub commands_page: String,
    /// The signed federation metadata document.
    pub metadata: String,
}

/// One federated domain, ready to serve.
#[derive(Debug)]
pub struct App {
    /// Its configuration.
    pub config: AppConfig,
    /// Where its users are.
    pub directory: Arc<dyn Directory>,
    /// Its URLs.
    pub urls: AppUrls,
    /// Its id as a metrics label.
    pub name: ConfigName,
    /// Its directory's name as a metrics label.
    pub directory_name: ConfigName,
    published: Swappable<Published>,
    mex_endpoints: MexEndpoints,
    mex_document: String,
    #[cfg(feature = "kerberos")]
    acceptor: Option<crate::kerberos::acceptor::Acceptor>,
}

impl App {
    /// Builds an app from its configuration, signing material and directory; signs its metadata.
    pub fn new(
        config: AppConfig,
        public_base: &str,
        signing: SigningSet,
        directory: Arc<dyn Directory>,
    ) -> Result<Self, XmlDsigError> {
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
        let published = Swappable::new(publish(&config, &urls, signing)?);
        Ok(Self {
            name: Arc::new(config.id.clone()),
            directory_name: Arc::new(config.directory.clone()),
            config,
            directory,
            urls,
            published,
            mex_endpoints,
            mex_document,
            #[cfg(feature = "kerberos")]
            acceptor: None,
        })
    }

    /// The signing material and documents to use for one request.
    pub fn published(&self) -> Arc<Published> {
        self.published.get()
    }

    /// Serves `signing` from now on: the commands page and metadata are rebuilt first, and
    /// nothing changes when the metadata cannot be signed.
    pub fn replace_signing(&self, signing: SigningSet) -> Result<(), XmlDsigError> {
        self.published
            .replace(publish(&self.config, &self.urls, signing)?);
        Ok(())
    }

    /// The commands page text.
    pub fn commands_page(&self) -> String {
        self.published().commands_page.clone()
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

/// The documents of `signing`. The commands page names the next certificate only: Entra keeps
/// a signing and a next-signing certificate, so the previous one (grace) is in the metadata only.
fn publish(
    config: &AppConfig,
    urls: &AppUrls,
    signing: SigningSet,
) -> Result<Published, XmlDsigError> {
    let commands_page = powershell::render(&federation_settings(
        config,
        urls,
        &signing.current,
        signing.next.as_ref(),
    ));
    let metadata = passive::metadata_document(config, urls, &signing)?;
    Ok(Published {
        signing,
        commands_page,
        metadata,
    })
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
        signing_certificate_b64: identity.certificate.base64().to_owned(),
        next_signing_certificate_b64: next_identity.map(|n| n.certificate.base64().to_owned()),
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
    SessionKey(#[from] passive::session::SessionKeyError),
    /// The federation metadata could not be signed.
    #[error("{key}: cannot sign the federation metadata: {source}")]
    Metadata {
        /// Config key.
        key: String,
        /// Cause.
        source: crate::protocol::xmldsig::XmlDsigError,
    },
    /// The rollover state or its pairs could not be read.
    #[error("{key}: {message}")]
    Rollover {
        /// Config key.
        key: String,
        /// Cause.
        message: String,
    },
    /// A directory could not be built.
    #[error("{key}: {source}")]
    Directory {
        /// Config key.
        key: String,
        /// Cause.
        source: crate::directory::DirectoryError,
    },
    /// The portal could not be built (a logo file).
    #[error("{key}: {source}")]
    Portal {
        /// Config key.
        key: String,
        /// Cause.
        source: portal::PortalError,
    },
    /// An app names a directory that is not configured.
    #[error("{key}: no directory named {name}")]
    UnknownDirectory {
        /// Config key.
        key: String,
        /// The name the app gives.
        name: String,
    },
}

/// The running service: apps by id, limits, clock, protection policies.
#[derive(Debug)]
pub struct Sts {
    apps: BTreeMap<String, App>,
    /// The automatic rollover of each app that has it on, by app id.
    rollers: Vec<(String, Autoroller)>,
    clock: Arc<dyn Clock>,
    xml_limits: xml::Limits,
    timestamp_policy: TimestampPolicy,
    policies: Policies,
    wsfed: WsFed,
    /// The user portal, when `[portal] enabled`.
    portal: Option<portal::Portal>,
    /// The state store without this service's latency metric around it, for a reload to carry.
    untimed_store: Arc<dyn StateStore>,
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
        refuse_problems(config)?;
        Self::build(config, clock, store, session_key(config)?)
    }

    /// The service for a re-read `config` (SIGHUP, the `reload` room): new apps, directories
    /// (users files re-read), signing material and policy settings, over the same state store
    /// (lockout counters, replay marks, rate buckets, TOTP marks survive), the same clock and the
    /// same browser session key (signed-in browsers and portal sessions stay signed in). Requests
    /// still running on `self` finish on it; the store is the only state both share. The metrics
    /// start again (the directories and their queues are new): Prometheus reads the counters'
    /// reset as a restart.
    pub fn reloaded(&self, config: &Config) -> Result<Self, StartError> {
        refuse_problems(config)?;
        Self::build(
            config,
            self.clock.clone(),
            self.untimed_store.clone(),
            self.wsfed.key().clone(),
        )
    }

    fn build(
        config: &Config,
        clock: Arc<dyn Clock>,
        store: Arc<dyn StateStore>,
        key: SessionKey,
    ) -> Result<Self, StartError> {
        let untimed_store = store.clone();
        let directories = directory::build(&config.directories)
            .map_err(|(key, source)| StartError::Directory { key, source })?;
        let mut metrics = Metrics::new();
        for (name, directory) in &directories {
            if let Some(queue) = directory.queue_meter() {
                metrics.register_queue(name, &queue);
            }
        }
        let metrics = Arc::new(metrics);
        let store: Arc<dyn StateStore> = Arc::new(TimedStore::new(store, metrics.clone()));
        let mut apps = BTreeMap::new();
        let wsfed = WsFed::new(key.clone(), portal::link(config));
        let portal = portal::Portal::build(config, key)
            .map_err(|(key, source)| StartError::Portal { key, source })?;
        let mut rollers = Vec::new();
        for (i, app) in config.apps.iter().enumerate() {
            let directory = directories.get(&app.directory).cloned().ok_or_else(|| {
                StartError::UnknownDirectory {
                    key: format!("apps[{i}].directory"),
                    name: app.directory.clone(),
                }
            })?;
            let (signing, roller) = signing_material(i, app, &store)?;
            #[cfg_attr(not(feature = "kerberos"), allow(unused_mut))]
            let mut built = App::new(app.clone(), config.public_base(), signing, directory)
                .map_err(|source| StartError::Metadata {
                    key: format!("apps[{i}].signing_key"),
                    source,
                })?;
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
            rollers.extend(roller.map(|r| (app.id.clone(), r)));
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
            metrics,
        };
        Ok(Self {
            apps,
            rollers,
            clock,
            xml_limits: xml::Limits::default(),
            timestamp_policy,
            policies,
            wsfed,
            portal,
            untimed_store,
        })
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&App> {
        self.apps.get(id)
    }

    /// Runs the due rollover step of every app with rollover on (the server calls this every
    /// [`crate::autoroll::TICK_INTERVAL`]) and serves what the key store and state file hold
    /// now, also when another instance did the step. A failure keeps the served pair.
    pub async fn rollover_tick(&self) {
        for (id, roller) in &self.rollers {
            // `tick` logs its own failure; the files are read back whatever it did.
            let _ = roller.tick(self.clock.now()).await;
            let Some(app) = self.apps.get(id) else {
                continue;
            };
            let fresh = match roller.signing_set() {
                Ok(fresh) => fresh,
                Err(e) => {
                    tracing::warn!(app = %id, error = %e, "rollover: cannot read the signing pairs; serving the previous ones");
                    continue;
                }
            };
            if fresh.same_as(&app.published().signing) {
                continue;
            }
            match app.replace_signing(fresh) {
                Ok(()) => {
                    tracing::info!(app = %id, "rollover: now serving the new signing material")
                }
                Err(e) => {
                    tracing::warn!(app = %id, error = %e, "rollover: cannot sign the metadata with the new pair; serving the previous ones")
                }
            }
        }
    }

    /// Every app.
    pub fn apps(&self) -> impl Iterator<Item = &App> {
        self.apps.values()
    }

    /// The protection policies (for the passive path and the admin CLI).
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.policies.metrics
    }

    /// Sets the gauges a scrape reads from the current state: each app's signing certificates
    /// (from the `Published` snapshot requests use, so an automatic rollover shows at once) and
    /// the health of the state store and of each app's directory, each probe waited for at most
    /// [`METRICS_PROBE_TIMEOUT`].
    pub async fn refresh_metrics(&self) {
        let metrics = self.metrics();
        let now = self.clock.now();
        let mut probed = std::collections::BTreeSet::new();
        for app in self.apps.values() {
            let published = app.published();
            let seconds_left =
                |c: &crate::crypto::Certificate| (c.not_after() - now).whole_seconds();
            metrics.set_certificate_expiry(
                &app.name,
                "current",
                seconds_left(&published.signing.current.certificate),
            );
            match &published.signing.next {
                Some(next) => metrics.set_certificate_expiry(
                    &app.name,
                    "next",
                    seconds_left(&next.certificate),
                ),
                None => metrics.clear_certificate_expiry(&app.name, "next"),
            }
            if probed.insert(app.directory_name.clone()) {
                let started = std::time::Instant::now();
                let up = probe(app.directory.health()).await;
                metrics.set_directory_health(&app.directory_name, up, started.elapsed());
            }
        }
        let started = std::time::Instant::now();
        let up = probe(self.policies.store.health()).await;
        metrics.set_state_store_health(up, started.elapsed());
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
                self.with_app(&app, |a| HttpReply::text(200, &a.commands_page()))
            }
            Endpoint::FederationMetadata { app } => self.with_app(&app, passive::metadata_reply),
            Endpoint::Passive { app, post } => {
                let call = if post { Call::Post } else { Call::Get };
                self.passive(&app, call, body, info).await
            }
            Endpoint::Launch { app } => self.passive(&app, Call::Launch, body, info).await,
            Endpoint::Portal { post } => match &self.portal {
                Some(portal) => portal.handle(self, post, body, info).await,
                None => HttpReply::text(404, "not found\n"),
            },
            Endpoint::PasswordChange { app, post } => match self.app(&app) {
                Some(a) => {
                    self.wsfed
                        .password_page(&self.policies, a, post, body, info, self.clock.now())
                        .await
                }
                None => HttpReply::text(404, "no such app\n"),
            },
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
            if let Err(e) = app.published().signing.current.signer.health() {
                tracing::warn!(app = %app.config.id, error = %e, "health check failed: signing key");
                return HttpReply::text(
                    503,
                    &format!("unhealthy: app {} signing key\n", app.config.id),
                );
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

/// Longest a scrape waits for one health probe (directory, state store) before it counts it down.
pub const METRICS_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether a health probe answered well within [`METRICS_PROBE_TIMEOUT`].
async fn probe<E>(check: impl std::future::Future<Output = Result<(), E>>) -> bool {
    matches!(
        tokio::time::timeout(METRICS_PROBE_TIMEOUT, check).await,
        Ok(Ok(()))
    )
}

/// Builds and signs the assertion for `claims` with the app's lifetime and key (one builder for
/// the active and passive paths).
pub(crate) fn sign(
    app: &App,
    claims: &Claims,
    token_type: saml::TokenType,
    now: OffsetDateTime,
) -> Result<SignedAssertion, saml::SamlError> {
    let issuance = Issuance::new(now, token_lifetime(app))?;
    let published = app.published();
    saml::build_signed_assertion(claims, token_type, &issuance, &published.signing.current)
}

/// The audit decision of an issued assertion, naming the identity that signed it (recorded in
/// the assertion at signing time: a promotion between the start of the request and the
/// signature must not attribute the token to the other key).
pub(crate) fn signed_by(assertion: &SignedAssertion) -> crate::policy::audit::Decision<'_> {
    crate::policy::audit::Decision::Issued(crate::policy::audit::Signed {
        assertion_id: &assertion.id,
        key_sha256: &assertion.signing_key_sha256,
        store: assertion.signing_store.as_str(),
    })
}

/// The audit record of one request, before its decision.
fn audit_record(
    app: &App,
    metrics: &Arc<Metrics>,
    endpoint: &'static str,
    info: &RequestInfo,
    now: OffsetDateTime,
    client_ip: IpAddr,
    request_class: RequestClass,
) -> AuditRecord {
    AuditRecord {
        time: now,
        correlation_id: info.correlation_id.clone(),
        app: app.name.clone(),
        endpoint,
        request_class,
        client_ip,
        user_agent: info.user_agent.clone().unwrap_or_default(),
        user: String::new(),
        lockout_location: None,
        lockout_log_only: false,
        device_id: None,
        metrics: metrics.clone(),
    }
}

/// The assertion lifetime of an app.
pub(crate) fn token_lifetime(app: &App) -> time::Duration {
    time::Duration::seconds(i64::try_from(app.config.token_lifetime_secs).unwrap_or(3600))
}

/// Refuses a configuration with problems, all of them in one error.
fn refuse_problems(config: &Config) -> Result<(), StartError> {
    let problems = config.problems();
    if problems.is_empty() {
        return Ok(());
    }
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Err(StartError::Config(text.join("\n")))
}

/// The browser session key: from `server.session_key` (made on first start), or a random
/// in-memory key when the configuration was built in code without one.
fn session_key(config: &Config) -> Result<SessionKey, StartError> {
    match &config.server.session_key {
        Some(path) => Ok(SessionKey::load_or_create(path)?),
        None => {
            let bytes = crate::random::bytes::<32>()
                .map_err(|_| passive::session::SessionKeyError::Random)?;
            Ok(SessionKey::from_bytes(&bytes))
        }
    }
}

/// Where `apps[index]` keeps its pairs: its PEM files or its PKCS#11 token (both give the
/// current pair as the last rollover left it, also after an interrupted promotion).
fn key_store(index: usize, app: &AppConfig) -> Result<Arc<dyn KeyStore>, StartError> {
    match (&app.signing_key, &app.signing_pkcs11) {
        (Some(key), None) => Ok(Arc::new(FileKeyStore::new(
            app.signing_cert.clone(),
            key.clone(),
        ))),
        (None, Some(pkcs11)) => Ok(Arc::new(Pkcs11KeyStore::new(
            pkcs11.clone(),
            app.signing_cert.clone(),
        ))),
        _ => Err(StartError::Config(format!(
            "apps[{index}].signing_key: set exactly one of signing_key and [apps.signing_pkcs11]"
        ))),
    }
}

/// A rollover error at start, under the config key it belongs to: the key store's for a key
/// or certificate that cannot be used, `rollover` for its state.
fn rollover_error(index: usize, app: &AppConfig, error: RollError) -> StartError {
    match error {
        RollError::Crypto(source) => StartError::Signing {
            key: app.signing_key_name(index),
            source,
        },
        other => StartError::Rollover {
            key: format!("apps[{index}].rollover"),
            message: other.to_string(),
        },
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

/// What `apps[index]` serves at start, and its roller when automatic rollover is on (then the
/// state file says which next and previous pairs are published). A configured `next_signing_cert`
/// keeps automatic rollover off for the app.
fn signing_material(
    index: usize,
    app: &AppConfig,
    store: &Arc<dyn StateStore>,
) -> Result<(SigningSet, Option<Autoroller>), StartError> {
    let keys = key_store(index, app)?;
    let current = keys.current().map_err(|e| rollover_error(index, app, e))?;
    // A configured next pair means the admin rolls over by hand (`fedsts rollover`).
    let manual = app.next_signing_cert.is_some();
    if manual || !autoroll::is_enabled(&app.rollover, &current.certificate) {
        let next = next_identity(index, app)?;
        return Ok((
            SigningSet {
                current,
                next,
                previous: None,
            },
            None,
        ));
    }
    let state_path = autoroll::state_path_of(app.signing_key.as_deref(), &app.signing_cert);
    let roller = Autoroller::new(
        &app.id,
        app.rollover.clone(),
        keys,
        Arc::new(StateLeases(store.clone())),
        state_path,
    );
    let signing = roller
        .signing_set()
        .map_err(|e| rollover_error(index, app, e))?;
    Ok((signing, Some(roller)))
}

/// Claims for a user who signed in with a password (active endpoints and passive sign-in),
/// with `multipleauthn` only when a second factor was really checked, and the password-expiry
/// claims where the app asks for them.
pub(crate) fn user_claims(
    app: &App,
    user: &User,
    authenticated_at: OffsetDateTime,
    mfa_performed: bool,
    now: OffsetDateTime,
) -> Claims {
    Claims {
        issuer: app.config.issuer_uri.clone(),
        audience: crate::protocol::ns::MICROSOFT_ONLINE.to_owned(),
        immutable_id: user.immutable_id.clone(),
        upn: user.upn.clone(),
        authn_method: AuthnMethod::Password,
        authn_instant: authenticated_at,
        mfa_performed,
        extra_attributes: password_expiry_claims(app, user, now),
    }
}

/// ADFS's password-expiry claims (docs/protocol-notes.md#password-expiry-claims): when the
/// password expires, in how many whole days, and where to change it; none unless
/// `password_expiry_claims` is on and the directory knows an expiry.
fn password_expiry_claims(app: &App, user: &User, now: OffsetDateTime) -> Vec<ClaimAttribute> {
    let Some(expires) = user
        .password_expires_at
        .filter(|_| app.config.password_expiry_claims)
    else {
        return Vec::new();
    };
    let claim = |name: &str, value: String| ClaimAttribute {
        namespace: crate::kerberos::NS_WS_2012_01.to_owned(),
        name: name.to_owned(),
        values: vec![value],
    };
    vec![
        claim("passwordexpirationtime", saml::format_instant(expires)),
        claim(
            "passwordexpirationdays",
            (expires - now).whole_days().max(0).to_string(),
        ),
        claim("passwordchangeurl", app.urls.password_change()),
    ]
}
