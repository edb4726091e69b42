//! The one TOML configuration file: schema, loading, and offline validation.
//!
//! Loading ([`Config::load`]) parses the file and resolves relative paths against the
//! directory that holds it. Validation ([`Config::problems`]) collects every problem it can find
//! without touching the network, each as `key: problem — fix`, so that `fedsts check-config` and
//! `fedsts serve` report the same thing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod device;
mod kerberos;
pub mod ldap;
pub mod lockout;
pub mod pkcs11;
mod proxies;
pub mod ratelimit;
mod rollover;
pub mod state;

pub use device::{AppDevicePolicy, DeviceTrustConfig};
pub use kerberos::KerberosConfig;
pub use ldap::LdapConfig;
pub use lockout::LockoutConfig;
pub use pkcs11::{KeySource, Pkcs11Config};
use proxies::trusted_proxy_problems;
pub use ratelimit::RateLimitConfig;
pub use rollover::RolloverConfig;
pub use state::StateConfig;

mod metrics;
pub use metrics::MetricsConfig;
mod portal;
pub use portal::{
    AppPortalConfig, MAX_LOGO_BYTES, MAX_NAME_CHARS, MAX_NOTICE_BYTES, NoticeConfig, PortalConfig,
};

/// Longest token lifetime we allow (8 h); Entra and ADFS use 1 h.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 8 * 3600;
/// Token lifetime when the app does not say (1 h, like ADFS).
pub const DEFAULT_TOKEN_LIFETIME_SECS: u64 = 3600;

/// The whole configuration file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listener, public URL and TLS identity.
    pub server: ServerConfig,
    /// One entry per federated domain.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
    /// Credential stores, referenced by name from `apps[].directory`.
    #[serde(default)]
    pub directories: BTreeMap<String, DirectoryConfig>,
    /// Shared state (replay marks, lockout counters, rate buckets): memory or Redis.
    #[serde(default)]
    pub state: StateConfig,
    /// Extranet smart lockout.
    #[serde(default)]
    pub lockout: LockoutConfig,
    /// Per-client-IP rate limits on the active endpoints.
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// The device CA; needed by any `[apps.device_trust]` policy.
    #[serde(default)]
    pub device_trust: Option<DeviceTrustConfig>,
    /// The Prometheus scrape: its own listener and/or a path, and who may read it (off by default).
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The user portal at `GET /` (off by default).
    #[serde(default)]
    pub portal: PortalConfig,
}

/// `[server]`: where we listen and how we present ourselves.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Socket address to listen on, e.g. `0.0.0.0:443`.
    pub listen: String,
    /// Base of every URL we advertise (MEX, endpoints, commands page); must be `https://`.
    pub public_url: String,
    /// PEM certificate chain for TLS.
    pub tls_cert: PathBuf,
    /// PEM private key for TLS (PKCS#8 or PKCS#1).
    pub tls_key: PathBuf,
    /// Proxies (IPs or CIDR blocks) whose `X-Forwarded-For` / `X-MS-Forwarded-Client-IP` are
    /// believed; from anyone else those headers are ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// The trusted proxies overwrite `X-MS-Forwarded-Client-IP` with the address they received
    /// from; only then is that header believed (otherwise a client could write it).
    #[serde(default)]
    pub trust_ms_forwarded_client_ip: bool,
    /// `[server.connections]`: connection caps, write timeout, health listener.
    #[serde(default)]
    pub connections: ConnectionConfig,
    /// File holding the key that signs browser session cookies and forms; made (mode 0600) on
    /// first start when missing. Default: `session.key` next to the configuration file.
    #[serde(default)]
    pub session_key: Option<PathBuf>,
}

/// `[server.connections]`: how many connections the listener holds and for how long.
/// Defaults are derived from the file-descriptor limit at start (see `server::limits`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    /// Most connections open at once (default: three quarters of the fd limit less a reserve).
    #[serde(default)]
    pub max: Option<usize>,
    /// Most connections from one client address (IPv6: one /64); trusted proxies are exempt.
    /// Default: an eighth of `max`, between 16 and 256.
    #[serde(default)]
    pub max_per_address: Option<usize>,
    /// Seconds a write may stall (a client that sends requests and never reads the answers)
    /// before the connection is dropped (default 10).
    #[serde(default)]
    pub write_timeout_secs: Option<u64>,
    /// A separate plain-HTTP listener serving only `GET /healthz`, outside the caps above, so
    /// supervisors see the service under a connection flood; e.g. `"127.0.0.1:8081"`.
    #[serde(default)]
    pub health_listen: Option<String>,
}

impl ConnectionConfig {
    /// Problems of `server.connections`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let zero = |key: &str, fix: &str| ConfigProblem::new(key, "must not be 0", fix);
        if self.max == Some(0) {
            problems.push(zero(
                "server.connections.max",
                "remove it for the default or write e.g. 4096",
            ));
        }
        if self.max_per_address == Some(0) {
            problems.push(zero(
                "server.connections.max_per_address",
                "remove it for the default or write e.g. 64",
            ));
        }
        if self.write_timeout_secs == Some(0) {
            problems.push(zero(
                "server.connections.write_timeout_secs",
                "remove it for the default (10) or write a number of seconds",
            ));
        }
        if let Some(listen) = &self.health_listen
            && listen.parse::<SocketAddr>().is_err()
        {
            problems.push(ConfigProblem::new(
                "server.connections.health_listen",
                format!("`{listen}` is not a socket address"),
                "write IP:PORT, e.g. \"127.0.0.1:8081\"",
            ));
        }
        problems
    }
}

/// `[[apps]]`: one federated domain with its own issuer and signing key.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Path segment in every URL of this app: `[A-Za-z0-9_-]{1,64}`.
    pub id: String,
    /// The federated domain, e.g. `example.com`.
    pub domain: String,
    /// Name shown on pages and sent as the federation display name; defaults to the domain.
    #[serde(default)]
    pub display_name: Option<String>,
    /// IdP entity id: the byte-exact `Issuer` of every assertion.
    pub issuer_uri: String,
    /// PEM token-signing certificate.
    pub signing_cert: PathBuf,
    /// PEM token-signing private key; or set `[apps.signing_pkcs11]`.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// `[apps.signing_pkcs11]`: the token-signing key lives in a PKCS#11 token (instead of
    /// `signing_key`); `signing_cert` stays a file.
    #[serde(default)]
    pub signing_pkcs11: Option<Pkcs11Config>,
    /// Name of a `[directories.NAME]` entry.
    pub directory: String,
    /// Assertion lifetime in seconds (default 3600, at most 28800).
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_secs: u64,
    /// Add ADFS's password-expiry claims (`passwordexpirationtime`, `passwordexpirationdays`,
    /// `passwordchangeurl`) to tokens of users whose directory knows when the password expires,
    /// so Entra and Office warn the user in time (default off).
    #[serde(default)]
    pub password_expiry_claims: bool,
    /// `[apps.kerberos]`: enables windowstransport (needs the `kerberos` cargo feature).
    #[serde(default)]
    pub kerberos: Option<KerberosConfig>,
    /// Who needs a trusted device for which flows (needs `[device_trust]`).
    #[serde(default)]
    pub device_trust: Option<AppDevicePolicy>,
    /// PEM certificate that will replace `signing_cert` at the next rollover; published in
    /// federation metadata and as `-NextSigningCertificate`.
    #[serde(default)]
    pub next_signing_cert: Option<PathBuf>,
    /// PEM private key of `next_signing_cert`.
    #[serde(default)]
    pub next_signing_key: Option<PathBuf>,
    /// `[apps.passive]`: browser sign-in (WS-Federation passive).
    #[serde(default)]
    pub passive: PassiveConfig,
    /// Also serve the ADFS URL layout (`/adfs/ls/`, `/adfs/services/trust/…`,
    /// `/FederationMetadata/2007-06/FederationMetadata.xml`) and advertise it in MEX, metadata
    /// and the commands page, so a domain federated with ADFS keeps working when its STS host
    /// name moves here. Those paths name no app: one app per host at most.
    #[serde(default)]
    pub adfs_paths: bool,
    /// `[apps.rollover]`: automatic token-signing certificate rollover (module `autoroll`).
    #[serde(default)]
    pub rollover: RolloverConfig,
    /// `[apps.portal]`: the app's tile on the user portal.
    #[serde(default)]
    pub portal: AppPortalConfig,
}

/// Where Entra ID receives passive sign-in responses.
pub const MICROSOFT_ONLINE_REPLY_URL: &str = "https://login.microsoftonline.com/login.srf";
/// Browser session lifetime when the app does not say (8 h).
pub const DEFAULT_SESSION_LIFETIME_SECS: u64 = 8 * 3600;
/// Longest browser session we allow (7 days).
pub const MAX_SESSION_LIFETIME_SECS: u64 = 7 * 24 * 3600;

/// `[apps.passive]`: how browser sign-in behaves for one app.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PassiveConfig {
    /// Where the sign-in response is posted (default Entra ID's `login.srf`; sovereign clouds
    /// and tests change it).
    #[serde(default = "default_reply_url")]
    pub reply_url: String,
    /// Further `wreply` values honoured byte for byte (sign-in and sign-out); anything else is
    /// refused.
    #[serde(default)]
    pub allowed_wreply: Vec<String>,
    /// `wtrealm` values accepted besides `urn:federation:MicrosoftOnline`.
    #[serde(default)]
    pub realms: Vec<String>,
    /// Ask every user for a TOTP code, not only when Entra sends `wauth=…multipleauthn`.
    #[serde(default)]
    pub require_mfa: bool,
    /// Browser session lifetime in seconds (default 28800).
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime_secs: u64,
    /// Optional https URL of a logo shown on the sign-in page.
    #[serde(default)]
    pub logo_url: Option<String>,
    /// Let a user who needs a TOTP code and has no secret enrol one during sign-in, right
    /// after a fresh password check (off by default; file directories only: LDAP/AD secrets
    /// are admin-managed).
    #[serde(default)]
    pub totp_self_enrolment: bool,
}

impl Default for PassiveConfig {
    fn default() -> Self {
        Self {
            reply_url: default_reply_url(),
            allowed_wreply: Vec::new(),
            realms: Vec::new(),
            require_mfa: false,
            session_lifetime_secs: default_session_lifetime(),
            logo_url: None,
            totp_self_enrolment: false,
        }
    }
}

fn default_reply_url() -> String {
    MICROSOFT_ONLINE_REPLY_URL.to_owned()
}

fn default_session_lifetime() -> u64 {
    DEFAULT_SESSION_LIFETIME_SECS
}

fn default_token_lifetime() -> u64 {
    DEFAULT_TOKEN_LIFETIME_SECS
}

impl AppConfig {
    /// The display name, falling back to the domain.
    pub fn display_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.domain)
    }

    /// Where the current token-signing key is (`None` when the config names neither or both
    /// stores; validation reports that as `signing_key`).
    pub fn signing_key_source(&self) -> Option<KeySource<'_>> {
        match (&self.signing_key, &self.signing_pkcs11) {
            (Some(path), None) => Some(KeySource::PemFile(path)),
            (None, Some(pkcs11)) => Some(KeySource::Pkcs11(pkcs11)),
            _ => None,
        }
    }

    /// The config key of the current signing key's store, for error messages.
    pub fn signing_key_name(&self, index: usize) -> String {
        match self.signing_pkcs11 {
            Some(_) => format!("apps[{index}].signing_pkcs11"),
            None => format!("apps[{index}].signing_key"),
        }
    }
}

/// `[directories.NAME]`: a credential store.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum DirectoryConfig {
    /// Users in a TOML file with argon2id password hashes.
    File {
        /// Path of the users file.
        path: PathBuf,
    },
    /// An LDAP or Active Directory server.
    Ldap(Box<LdapConfig>),
}

/// One thing wrong with a configuration: which key, what is wrong, how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigProblem {
    /// Dotted key, e.g. `apps[0].signing_key`.
    pub key: String,
    /// What is wrong.
    pub problem: String,
    /// What to do about it.
    pub fix: String,
}

impl ConfigProblem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} — {}", self.key, self.problem, self.fix)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error(
        "{path}: cannot read the configuration file: {source} — check the path and its permissions"
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for our schema.
    #[error("{path}: {source} — fix the TOML (see the full example in README.md)")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, including the key and line.
        source: toml::de::Error,
    },
    /// The file parsed but has problems.
    #[error("{}", format_problems(.0))]
    Invalid(Vec<ConfigProblem>),
}

fn format_problems(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Reads and parses `path`, resolving relative file paths against its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, base).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Parses TOML text; relative paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, toml::de::Error> {
        let mut config: Config = toml::from_str(text)?;
        config.resolve_paths(base);
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.server.tls_cert);
        resolve(&mut self.server.tls_key);
        let session_key = self
            .server
            .session_key
            .get_or_insert_with(|| PathBuf::from("session.key"));
        resolve(session_key);
        for app in &mut self.apps {
            resolve(&mut app.signing_cert);
            if let Some(key) = &mut app.signing_key {
                resolve(key);
            }
            if let Some(pkcs11) = &mut app.signing_pkcs11 {
                pkcs11.resolve_paths(resolve);
            }
            if let Some(kerberos) = &mut app.kerberos {
                resolve(&mut kerberos.keytab);
            }
            for next in [
                &mut app.next_signing_cert,
                &mut app.next_signing_key,
                &mut app.portal.logo,
            ]
            .into_iter()
            .flatten()
            {
                resolve(next);
            }
        }
        if let Some(device) = &mut self.device_trust {
            resolve(&mut device.ca_file);
            if let Some(crl) = &mut device.crl_file {
                resolve(crl);
            }
        }
        for dir in self.directories.values_mut() {
            match dir {
                DirectoryConfig::File { path } => resolve(path),
                DirectoryConfig::Ldap(ldap) => ldap.resolve_paths(resolve),
            }
        }
    }

    /// The listen address, parsed.
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigProblem> {
        self.server.listen.parse().map_err(|_| {
            ConfigProblem::new(
                "server.listen",
                format!("`{}` is not a socket address", self.server.listen),
                "write IP:PORT, e.g. \"0.0.0.0:443\" or \"127.0.0.1:8443\"",
            )
        })
    }

    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> &str {
        self.server.public_url.trim_end_matches('/')
    }

    /// The host clients connect to: `server.public_url`'s host without port or IPv6 brackets.
    pub fn public_host(&self) -> Option<&str> {
        let authority = self
            .public_base()
            .strip_prefix("https://")?
            .split('/')
            .next()?;
        match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next(),
            None => authority.split(':').next(),
        }
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// Every structural problem (no files opened): keys, ids, URLs, references, duplicates.
    /// File contents (certificates, keys, users) are checked by `preflight`.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if let Err(p) = self.listen_addr() {
            problems.push(p);
        }
        problems.extend(check_public_url(&self.server.public_url));
        if self.apps.is_empty() {
            problems.push(ConfigProblem::new(
                "apps",
                "no [[apps]] entry",
                "add one [[apps]] table per federated domain",
            ));
        }
        for (i, app) in self.apps.iter().enumerate() {
            problems.extend(self.app_problems(i, app));
            if let Some(kerberos) = &app.kerberos {
                problems.extend(kerberos.problems(&format!("apps[{i}].kerberos")));
            }
        }
        for (name, directory) in &self.directories {
            if let DirectoryConfig::Ldap(ldap) = directory {
                problems.extend(ldap.problems(&format!("directories.{name}")));
            }
        }
        problems.extend(self.duplicate_problems());
        problems.extend(self.protection_problems());
        problems.extend(self.portal_problems());
        problems
    }

    /// Problems of `[portal]` and of every `[apps.portal]` (the logo files are read at start).
    fn portal_problems(&self) -> Vec<ConfigProblem> {
        let portal = &self.portal;
        let mut problems = Vec::new();
        let too_long = |name: &Option<String>| {
            name.as_ref()
                .is_some_and(|n| n.trim().is_empty() || n.chars().count() > MAX_NAME_CHARS)
        };
        if too_long(&portal.name) {
            problems.push(ConfigProblem::new(
                "portal.name",
                "is empty or longer than 80 characters",
                "write the organisation name users know, e.g. \"Example Inc.\"",
            ));
        }
        if let Some(id) = &portal.default_app
            && self.app(id).is_none()
        {
            problems.push(ConfigProblem::new(
                "portal.default_app",
                format!("no app has the id `{id}`"),
                "name the id of an [[apps]] entry, or remove it for the first app",
            ));
        }
        if portal.session_lifetime_secs == 0
            || portal.session_lifetime_secs > MAX_SESSION_LIFETIME_SECS
        {
            problems.push(ConfigProblem::new(
                "portal.session_lifetime_secs",
                format!("{} is out of range", portal.session_lifetime_secs),
                format!("use 1..={MAX_SESSION_LIFETIME_SECS} seconds (28800 = 8 h is the default)"),
            ));
        }
        if let Some(notice) = &portal.notice {
            if !portal::is_valid_notice_version(&notice.version) {
                problems.push(ConfigProblem::new(
                    "portal.notice.version",
                    format!("`{}` is not a notice version", notice.version),
                    "use 1 to 64 characters from A-Z a-z 0-9 . _ -, e.g. \"2026-12\"",
                ));
            }
            if notice.text.trim().is_empty() || notice.text.len() > MAX_NOTICE_BYTES {
                problems.push(ConfigProblem::new(
                    "portal.notice.text",
                    format!("is empty or longer than {MAX_NOTICE_BYTES} bytes"),
                    "write the notice in plain text (a blank line starts a paragraph)",
                ));
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            if too_long(&app.portal.tile_name) {
                problems.push(ConfigProblem::new(
                    format!("apps[{i}].portal.tile_name"),
                    "is empty or longer than 80 characters",
                    "write the name users know the app by, or remove it for the display name",
                ));
            }
        }
        problems
    }

    /// Problems of the policy sections: state, lockout, rate limits, proxies, device trust.
    fn protection_problems(&self) -> Vec<ConfigProblem> {
        let mut problems = trusted_proxy_problems(&self.server.trusted_proxies);
        problems.extend(self.server.connections.problems());
        problems.extend(self.metrics.problems());
        problems.extend(self.state.problems());
        problems.extend(self.lockout.problems());
        problems.extend(self.rate_limit.problems());
        for (i, app) in self.apps.iter().enumerate() {
            let Some(policy) = &app.device_trust else {
                continue;
            };
            if self.device_trust.is_none() {
                problems.push(ConfigProblem::new(
                    format!("apps[{i}].device_trust"),
                    "a device-trust policy needs the device CA, and there is no [device_trust] table",
                    "add [device_trust] with ca_file = \"device-ca.pem\"",
                ));
            }
            if policy.flows.is_empty() || (policy.users.is_empty() && policy.groups.is_empty()) {
                problems.push(ConfigProblem::new(
                    format!("apps[{i}].device_trust"),
                    "covers no flow or no user",
                    "list flows (passive, active, windows_logon) and users (\"*\" for everyone) or groups, or remove the table",
                ));
            }
        }
        problems
    }

    fn app_problems(&self, index: usize, app: &AppConfig) -> Vec<ConfigProblem> {
        let key = |field: &str| format!("apps[{index}].{field}");
        let mut problems = Vec::new();
        if !is_valid_app_id(&app.id) {
            problems.push(ConfigProblem::new(
                key("id"),
                format!("`{}` is not a valid app id", app.id),
                "use 1 to 64 characters from A-Z a-z 0-9 _ -",
            ));
        }
        if !is_valid_domain(&app.domain) {
            problems.push(ConfigProblem::new(
                key("domain"),
                format!("`{}` is not a DNS domain name", app.domain),
                "write the federated domain, e.g. \"example.com\"",
            ));
        }
        if app.issuer_uri.trim().is_empty() || app.issuer_uri.trim() != app.issuer_uri {
            problems.push(ConfigProblem::new(
                key("issuer_uri"),
                "empty or has leading/trailing spaces",
                "set the exact IssuerUri Entra ID has for the domain, e.g. \"example.com\"",
            ));
        }
        if !self.directories.contains_key(&app.directory) {
            problems.push(ConfigProblem::new(
                key("directory"),
                format!("no [directories.{}] table", app.directory),
                format!(
                    "add [directories.{}] or name an existing directory",
                    app.directory
                ),
            ));
        }
        if app.token_lifetime_secs == 0 || app.token_lifetime_secs > MAX_TOKEN_LIFETIME_SECS {
            problems.push(ConfigProblem::new(
                key("token_lifetime_secs"),
                format!("{} is out of range", app.token_lifetime_secs),
                format!("use 1..={MAX_TOKEN_LIFETIME_SECS} seconds (3600 is the ADFS default)"),
            ));
        }
        problems.extend(next_signing_problems(index, app));
        problems.extend(signing_key_problems(index, app));
        problems.extend(app.rollover.problems(index));
        problems.extend(passive_problems(index, &app.passive));
        problems.extend(self.enrolment_problems(index, app));
        problems
    }

    /// Self-enrolment writes the secret into the directory: only the file directory can.
    fn enrolment_problems(&self, index: usize, app: &AppConfig) -> Option<ConfigProblem> {
        let ldap = matches!(
            self.directories.get(&app.directory),
            Some(DirectoryConfig::Ldap(_))
        );
        (app.passive.totp_self_enrolment && ldap).then(|| {
            ConfigProblem::new(
                format!("apps[{index}].passive.totp_self_enrolment"),
                format!(
                    "directory `{}` is LDAP/AD, where TOTP enrolment is admin-managed",
                    app.directory
                ),
                "set totp_self_enrolment = false, or serve the app from a file directory",
            )
        })
    }

    fn duplicate_problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        let fields: [(&str, AppKey); 3] = [
            ("id", |a| a.id.clone()),
            ("domain", |a| a.domain.to_ascii_lowercase()),
            ("issuer_uri", |a| a.issuer_uri.clone()),
        ];
        for (field, value_of) in fields {
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for (i, app) in self.apps.iter().enumerate() {
                let value = value_of(app);
                if let Some(first) = seen.get(&value) {
                    problems.push(ConfigProblem::new(
                        format!("apps[{i}].{field}"),
                        format!("`{value}` is already used by apps[{first}]"),
                        format!(
                            "give every app its own {field} (Entra maps an issuer to one domain)"
                        ),
                    ));
                } else {
                    seen.insert(value, i);
                }
            }
        }
        problems.extend(self.adfs_path_problems());
        problems
    }

    /// The ADFS paths carry no app id, so only one app of the host may claim them.
    fn adfs_path_problems(&self) -> Vec<ConfigProblem> {
        let mut claimants = self.apps.iter().enumerate().filter(|(_, a)| a.adfs_paths);
        let Some((first, _)) = claimants.next() else {
            return Vec::new();
        };
        claimants
            .map(|(i, _)| {
                ConfigProblem::new(
                    format!("apps[{i}].adfs_paths"),
                    format!(
                        "apps[{first}] already serves the ADFS paths on {}",
                        self.public_base()
                    ),
                    "set adfs_paths = true on one app per host (the ADFS paths name no app)",
                )
            })
            .collect()
    }
}

/// Reads one identifying value of an app, normalised for comparison.
type AppKey = fn(&AppConfig) -> String;

fn check_public_url(url: &str) -> Vec<ConfigProblem> {
    let key = "server.public_url";
    let Some(rest) = url.strip_prefix("https://") else {
        return vec![ConfigProblem::new(
            key,
            format!("`{url}` is not an https:// URL"),
            "clients ignore non-https endpoints; write e.g. \"https://sts.example.com\"",
        )];
    };
    let host = rest.split(['/', ':']).next().unwrap_or("");
    let mut problems = Vec::new();
    if host.is_empty() {
        problems.push(ConfigProblem::new(
            key,
            "has no host",
            "write e.g. \"https://sts.example.com\"",
        ));
    }
    if rest.contains(['?', '#', ' ', '"', '<', '>']) {
        problems.push(ConfigProblem::new(
            key,
            "contains a query, fragment or a character that needs escaping",
            "use a plain base URL such as \"https://sts.example.com:8443\"",
        ));
    }
    problems
}

fn next_signing_problems(index: usize, app: &AppConfig) -> Vec<ConfigProblem> {
    match (&app.next_signing_cert, &app.next_signing_key) {
        (Some(_), None) | (None, Some(_)) => vec![ConfigProblem::new(
            format!("apps[{index}].next_signing_cert"),
            "next_signing_cert and next_signing_key must be set together",
            "set both to the PEM certificate and key of the next token-signing pair, or neither",
        )],
        _ => Vec::new(),
    }
}

/// Exactly one store for the current key: `signing_key` (a PEM file) or `[apps.signing_pkcs11]`.
fn signing_key_problems(index: usize, app: &AppConfig) -> Vec<ConfigProblem> {
    match (&app.signing_key, &app.signing_pkcs11) {
        (Some(_), Some(_)) => vec![ConfigProblem::new(
            format!("apps[{index}].signing_key"),
            "both signing_key and [apps.signing_pkcs11] are set",
            "keep the one that holds the key: remove signing_key for a PKCS#11 token, or the table for a PEM file",
        )],
        (None, None) => vec![ConfigProblem::new(
            format!("apps[{index}].signing_key"),
            "no token-signing key: neither signing_key nor [apps.signing_pkcs11] is set",
            "set signing_key to the PEM private key, or add an [apps.signing_pkcs11] table",
        )],
        (None, Some(pkcs11)) => pkcs11.problems(&format!("apps[{index}].signing_pkcs11")),
        (Some(_), None) => Vec::new(),
    }
}

fn passive_problems(index: usize, passive: &PassiveConfig) -> Vec<ConfigProblem> {
    let key = |field: &str| format!("apps[{index}].passive.{field}");
    let mut problems = Vec::new();
    let mut urls = vec![(key("reply_url"), passive.reply_url.as_str())];
    for (i, url) in passive.allowed_wreply.iter().enumerate() {
        urls.push((key(&format!("allowed_wreply[{i}]")), url));
    }
    if let Some(logo) = &passive.logo_url {
        urls.push((key("logo_url"), logo));
    }
    for (key, url) in urls {
        if !is_plain_https_url(url) {
            problems.push(ConfigProblem::new(
                key,
                format!("`{url}` is not a plain https:// URL"),
                "write an absolute https:// URL without spaces, quotes or a fragment",
            ));
        }
    }
    if passive.session_lifetime_secs == 0
        || passive.session_lifetime_secs > MAX_SESSION_LIFETIME_SECS
    {
        problems.push(ConfigProblem::new(
            key("session_lifetime_secs"),
            format!("{} is out of range", passive.session_lifetime_secs),
            format!("use 1..={MAX_SESSION_LIFETIME_SECS} seconds (28800 = 8 h is the default)"),
        ));
    }
    problems
}

/// `https://host[:port][/path][?query]` without characters that need escaping in HTML or headers.
pub fn is_plain_https_url(url: &str) -> bool {
    url.strip_prefix("https://").is_some_and(|rest| {
        !rest.is_empty()
            && !rest.starts_with(['/', ':', '?'])
            && url
                .chars()
                .all(|c| c.is_ascii_graphic() && !"\"'<>`#{}|\\^".contains(c))
    })
}

/// `[A-Za-z0-9_-]{1,64}`.
pub fn is_valid_app_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn is_valid_domain(domain: &str) -> bool {
    let labels: Vec<&str> = domain.split('.').collect();
    labels.len() >= 2
        && domain.len() <= 253
        && labels.iter().all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[server]
listen = "127.0.0.1:8443"
public_url = "https://sts.example.com:8443/"
tls_cert = "certs/tls.crt"
tls_key = "/abs/tls.key"

[[apps]]
id = "663a8fb979aa83c58df6081e"
domain = "example.com"
issuer_uri = "example.com"
signing_cert = "certs/signing.crt"
signing_key = "certs/signing.key"
directory = "local"

[directories.local]
kind = "file"
path = "users.toml"
"#;

    #[test]
    fn a_printed_configuration_never_shows_the_ldap_password() {
        let text = EXAMPLE.replace(
            "[directories.local]\nkind = \"file\"\npath = \"users.toml\"",
            "[directories.local]\nkind = \"ldap\"\nurl = \"ldaps://dc.example.com\"\nuser_base = \"dc=example,dc=com\"\nbind_dn = \"cn=svc\"\nbind_password = \"s3cr3t-Pw\"",
        );
        let config = Config::parse(&text, Path::new(".")).unwrap();
        let printed = format!("{config:?}");
        assert!(printed.contains("Secret(***)"), "{printed}");
        assert!(!printed.contains("s3cr3t-Pw"), "{printed}");
    }

    fn keys_of(text: &str) -> Vec<String> {
        let config = Config::parse(text, Path::new("/etc/fedsts")).unwrap();
        config
            .problems()
            .into_iter()
            .map(|p| p.key)
            .filter(|k| k.contains("signing"))
            .collect()
    }

    #[test]
    fn the_signing_key_is_a_file_or_a_pkcs11_table_never_both_or_neither() {
        let table = "\n[apps.signing_pkcs11]\nmodule = \"/nonexistent.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin_env = \"P\"\n";
        let both = EXAMPLE.replace(
            "\n[directories.local]",
            &format!("{table}\n[directories.local]"),
        );
        assert_eq!(keys_of(&both), ["apps[0].signing_key"]);
        let neither = EXAMPLE.replace("signing_key = \"certs/signing.key\"\n", "");
        assert_eq!(keys_of(&neither), ["apps[0].signing_key"]);
        let token = both.replace("signing_key = \"certs/signing.key\"\n", "");
        // Only the module path is wrong: it does not exist.
        assert_eq!(keys_of(&token), ["apps[0].signing_pkcs11.module"]);
        let config = Config::parse(&token, Path::new("/etc/fedsts")).unwrap();
        assert!(matches!(
            config.apps[0].signing_key_source(),
            Some(KeySource::Pkcs11(_))
        ));
        let messy = token
            .replace("token_label = \"t\"", "token_label = \"t\"\nslot = 1")
            .replace("key_label = \"k\"", "key_label = \"k\"\nkey_id = \"abc\"")
            .replace(
                "pin_env = \"P\"",
                "pin_env = \"P\"\npin = \"1\"\nsessions = 0\ntimeout_secs = 61",
            );
        assert_eq!(
            keys_of(&messy),
            [
                "apps[0].signing_pkcs11.token_label",
                "apps[0].signing_pkcs11.key_label",
                "apps[0].signing_pkcs11.key_id",
                "apps[0].signing_pkcs11.pin",
                "apps[0].signing_pkcs11.sessions",
                "apps[0].signing_pkcs11.timeout_secs",
                "apps[0].signing_pkcs11.module",
            ]
        );
        let debug = format!(
            "{:?}",
            Config::parse(&messy, Path::new("/")).unwrap().apps[0]
        );
        assert!(!debug.contains("pin: Some(Secret(\"1\"))"), "{debug}");
    }

    #[test]
    fn example_parses_and_resolves_relative_paths() {
        let config = Config::parse(EXAMPLE, Path::new("/etc/fedsts")).unwrap();
        assert_eq!(
            config.server.tls_cert,
            Path::new("/etc/fedsts/certs/tls.crt")
        );
        assert_eq!(config.server.tls_key, Path::new("/abs/tls.key"));
        assert_eq!(config.apps[0].token_lifetime_secs, 3600);
        assert_eq!(config.public_base(), "https://sts.example.com:8443");
        assert_eq!(config.apps[0].display_name(), "example.com");
        assert!(config.problems().is_empty(), "{:?}", config.problems());
    }

    #[test]
    fn unknown_key_is_named() {
        let text = EXAMPLE.replace("token_lifetime_secs", "x").replace(
            "directory = \"local\"",
            "directory = \"local\"\ntoken_lifetyme_secs = 5",
        );
        let err = Config::parse(&text, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(err.contains("token_lifetyme_secs"), "{err}");
    }

    #[test]
    fn problems_name_key_and_fix() {
        let text = EXAMPLE
            .replace("https://sts.example.com:8443/", "http://sts.example.com")
            .replace("663a8fb979aa83c58df6081e", "bad id!")
            .replace(
                "directory = \"local\"",
                "directory = \"ldap\"\ntoken_lifetime_secs = 99999",
            );
        let config = Config::parse(&text, Path::new(".")).unwrap();
        let keys: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "server.public_url",
                "apps[0].id",
                "apps[0].directory",
                "apps[0].token_lifetime_secs"
            ]
        );
        let shown = config.problems()[0].to_string();
        assert!(
            shown.starts_with(
                "server.public_url: `http://sts.example.com` is not an https:// URL — "
            )
        );
    }

    #[test]
    fn self_enrolment_needs_a_file_directory() {
        let on = EXAMPLE.replace(
            "directory = \"local\"\n",
            "directory = \"local\"\n[apps.passive]\ntotp_self_enrolment = true\n",
        );
        let config = Config::parse(&on, Path::new(".")).unwrap();
        assert!(config.apps[0].passive.totp_self_enrolment);
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        let ldap = on.replace(
            "[directories.local]\nkind = \"file\"\npath = \"users.toml\"",
            "[directories.local]\nkind = \"ldap\"\nurl = \"ldaps://dc.example.com\"\nuser_base = \"dc=example,dc=com\"\nbind_dn = \"cn=svc\"\nbind_password = \"pw\"",
        );
        let problems = Config::parse(&ldap, Path::new(".")).unwrap().problems();
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "apps[0].passive.totp_self_enrolment: directory `local` is LDAP/AD, where TOTP enrolment is admin-managed — set totp_self_enrolment = false, or serve the app from a file directory"
            ]
        );
        let off = Config::parse(EXAMPLE, Path::new(".")).unwrap();
        assert!(!off.apps[0].passive.totp_self_enrolment, "off by default");
    }

    #[test]
    fn duplicate_domains_and_issuers_are_problems() {
        let second = EXAMPLE
            .split("[[apps]]")
            .nth(1)
            .unwrap()
            .split("[directories")
            .next()
            .unwrap();
        let second = second.replace("663a8fb979aa83c58df6081e", "second");
        let text = EXAMPLE.replace(
            "[directories.local]",
            &format!("[[apps]]{second}\n[directories.local]"),
        );
        let config = Config::parse(&text, Path::new(".")).unwrap();
        let shown: Vec<String> = config.problems().iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown[0].starts_with("apps[1].domain: `example.com` is already used by apps[0]"));
        assert!(
            shown[1].starts_with("apps[1].issuer_uri: `example.com` is already used by apps[0]")
        );
    }

    #[test]
    fn portal_problems_name_their_keys() {
        let text = format!(
            "{EXAMPLE}\n[portal]\nenabled = true\nname = \" \"\ndefault_app = \"nope\"\nsession_lifetime_secs = 0\n[portal.notice]\nversion = \"v 1\"\ntext = \"\"\n"
        )
        .replace(
            "directory = \"local\"\n",
            "directory = \"local\"\n[apps.portal]\ntile_name = \"\"\n",
        );
        let config = Config::parse(&text, Path::new("/etc/fedsts")).unwrap();
        let keys: Vec<String> = config.problems().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "portal.name",
                "portal.default_app",
                "portal.session_lifetime_secs",
                "portal.notice.version",
                "portal.notice.text",
                "apps[0].portal.tile_name",
            ]
        );
        let fine = Config::parse(
            &format!("{EXAMPLE}\n[portal]\nenabled = true\n[portal.notice]\nversion = \"2026-12\"\ntext = \"Hello\"\n"),
            Path::new("/etc/fedsts"),
        )
        .unwrap();
        assert!(fine.problems().is_empty(), "{:?}", fine.problems());
        assert!(
            !Config::parse(EXAMPLE, Path::new("."))
                .unwrap()
                .portal
                .enabled
        );
    }

    #[test]
    fn app_ids_and_domains() {
        assert!(is_valid_app_id("a-b_C9"));
        assert!(!is_valid_app_id(""));
        assert!(!is_valid_app_id(&"a".repeat(65)));
        assert!(!is_valid_app_id("a/b"));
        assert!(is_valid_domain("contoso.co.uk"));
        assert!(!is_valid_domain("localhost"));
        assert!(!is_valid_domain("-a.com"));
    }
}
