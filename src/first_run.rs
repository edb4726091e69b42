//! Embedded defaults for `fedsts serve` without a configuration file: a self-signed TLS
//! certificate and a token-signing certificate under `certs/` (made once, never overwritten),
//! a demo app for `example.com`, and a demo user whose password is new at every start.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;

use crate::config::{
    AppConfig, Config, DEFAULT_TOKEN_LIFETIME_SECS, DirectoryConfig, PassiveConfig, ServerConfig,
};
use crate::crypto::generate_self_signed;
use crate::directory::file::hash_password;
use crate::random;

/// Listen address of the embedded defaults.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8443";
/// Id of the demo app.
pub const DEMO_APP_ID: &str = "demo";
/// Domain of the demo app.
pub const DEMO_DOMAIN: &str = "example.com";
/// UPN of the demo user.
pub const DEMO_UPN: &str = "demo@example.com";

/// What `serve` needs to tell the operator about the embedded defaults.
pub struct Embedded {
    /// The configuration built from the defaults.
    pub config: Config,
    /// The demo user's password, valid until the next start.
    pub demo_password: String,
    /// Files created by this start.
    pub created: Vec<PathBuf>,
}

impl std::fmt::Debug for Embedded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedded")
            .field("config", &self.config)
            .field("demo_password", &"***")
            .field("created", &self.created)
            .finish()
    }
}

/// Why the defaults could not be prepared.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DefaultsError {
    /// A file could not be written or read.
    #[error("{path}: {source} — run fedsts from a directory you can write to")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The self-signed certificate could not be made.
    #[error("{0}")]
    Certificate(#[source] crate::crypto::CryptoError),
    /// The demo password could not be hashed.
    #[error("{0}")]
    PasswordHash(#[source] crate::directory::DirectoryError),
    /// The demo password or ImmutableID could not be drawn.
    #[error(transparent)]
    Random(#[from] random::RandomError),
    /// `self-signed`: a key file exists without its certificate; overwriting it could destroy
    /// the only copy of a real key.
    #[error(
        "{key}: {path} exists but its certificate does not — restore the certificate, or move the key away to have a new pair made"
    )]
    KeyWithoutCertificate {
        /// The config key naming the key file.
        key: String,
        /// The key file.
        path: PathBuf,
    },
    /// `self-signed`: `server.public_url` has no host to put in the TLS certificate.
    #[error("server.public_url: `{0}` has no host — write https://HOST")]
    NoPublicHost(String),
}

/// Days a made certificate is valid (TLS and token signing; rollover renews the latter).
const SELF_SIGNED_DAYS: u32 = 825;

/// A certificate and key file a configuration names, with the config key of the key.
struct NamedPair<'a> {
    cert: &'a Path,
    key: &'a Path,
    key_name: String,
    common_name: String,
    dns_names: Vec<String>,
}

/// `fedsts self-signed`: makes a self-signed pair for every pair `config` names whose
/// certificate file is missing — the TLS pair (for `server.public_url`'s host) and each app's
/// file signing pair (CN `fedsts token signing …`, so automatic rollover renews it). A package
/// install or a container's first start runs it so that the example configuration is valid;
/// existing files are never touched, and a key without its certificate is an error. Returns
/// the files made; keys are mode 0600, written only if they did not exist a moment before.
pub fn make_missing_pairs(config: &Config) -> Result<Vec<PathBuf>, DefaultsError> {
    let host = config
        .public_host()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| DefaultsError::NoPublicHost(config.server.public_url.clone()))?;
    let mut pairs = vec![NamedPair {
        cert: &config.server.tls_cert,
        key: &config.server.tls_key,
        key_name: "server.tls_key".into(),
        common_name: host.to_owned(),
        dns_names: vec![host.to_owned()],
    }];
    for (i, app) in config.apps.iter().enumerate() {
        if let Some(key) = &app.signing_key {
            pairs.push(NamedPair {
                cert: &app.signing_cert,
                key,
                key_name: format!("apps[{i}].signing_key"),
                common_name: format!("{} ({})", crate::autoroll::SELF_MADE_CN_PREFIX, app.domain),
                dns_names: Vec::new(),
            });
        }
    }
    let mut made = Vec::new();
    for pair in pairs {
        if pair.cert.exists() {
            continue;
        }
        if pair.key.exists() {
            return Err(DefaultsError::KeyWithoutCertificate {
                key: pair.key_name,
                path: pair.key.to_path_buf(),
            });
        }
        let generated = generate_self_signed(&pair.common_name, &pair.dns_names, SELF_SIGNED_DAYS)
            .map_err(DefaultsError::Certificate)?;
        for file in [pair.key, pair.cert] {
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).map_err(|source| DefaultsError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
        }
        write_new_private(pair.key, &generated.private_key_pem)?;
        write_file(pair.cert, &generated.certificate_pem)?;
        made.extend([pair.key.to_path_buf(), pair.cert.to_path_buf()]);
    }
    Ok(made)
}

/// Prepares the embedded defaults in `dir` (usually the working directory), listening on `listen`.
pub fn prepare(dir: &Path, listen: &str) -> Result<Embedded, DefaultsError> {
    let certs = dir.join("certs");
    let data = dir.join("fedsts-data");
    let mut created = Vec::new();
    for d in [&certs, &data] {
        std::fs::create_dir_all(d).map_err(|source| DefaultsError::Io {
            path: d.clone(),
            source,
        })?;
    }
    let tls = (certs.join("tls.crt"), certs.join("tls.key"));
    let signing = (certs.join("signing.crt"), certs.join("signing.key"));
    let dns = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if ensure_certificate(&tls.0, &tls.1, "localhost", &dns)? {
        created.push(tls.0.clone());
    }
    if ensure_certificate(&signing.0, &signing.1, "fedsts token signing (demo)", &[])? {
        created.push(signing.0.clone());
    }
    let users_path = data.join("demo-users.toml");
    let demo_password = random::token(12)?;
    write_demo_users(&users_path, &demo_password)?;
    let port = listen.rsplit(':').next().unwrap_or("8443");
    let config = Config {
        server: ServerConfig {
            listen: listen.to_owned(),
            public_url: format!("https://localhost:{port}"),
            tls_cert: tls.0,
            tls_key: tls.1,
            trusted_proxies: Vec::new(),
            trust_ms_forwarded_client_ip: false,
            connections: Default::default(),
            session_key: Some(data.join("session.key")),
        },
        apps: vec![AppConfig {
            id: DEMO_APP_ID.into(),
            domain: DEMO_DOMAIN.into(),
            display_name: Some("Example (fedsts demo)".into()),
            issuer_uri: DEMO_DOMAIN.into(),
            signing_cert: signing.0,
            signing_key: Some(signing.1),
            signing_pkcs11: None,
            directory: "demo".into(),
            token_lifetime_secs: DEFAULT_TOKEN_LIFETIME_SECS,
            password_expiry_claims: false,
            kerberos: None,
            device_trust: None,
            next_signing_cert: None,
            next_signing_key: None,
            passive: PassiveConfig::default(),
            rollover: Default::default(),
            adfs_paths: false,
            portal: Default::default(),
        }],
        directories: BTreeMap::from([(
            "demo".to_owned(),
            DirectoryConfig::File { path: users_path },
        )]),
        state: Default::default(),
        lockout: Default::default(),
        rate_limit: Default::default(),
        device_trust: None,
        metrics: Default::default(),
        portal: Default::default(),
    };
    Ok(Embedded {
        config,
        demo_password,
        created,
    })
}

/// Creates a self-signed certificate and key unless the certificate already exists.
/// Returns whether it created them.
fn ensure_certificate(
    cert: &Path,
    key: &Path,
    common_name: &str,
    dns_names: &[String],
) -> Result<bool, DefaultsError> {
    if cert.exists() {
        return Ok(false);
    }
    let generated =
        generate_self_signed(common_name, dns_names, 825).map_err(DefaultsError::Certificate)?;
    write_private(key, &generated.private_key_pem)?;
    write_file(cert, &generated.certificate_pem)?;
    Ok(true)
}

/// Writes the demo users file, keeping the demo user's ImmutableID across starts.
fn write_demo_users(path: &Path, password: &str) -> Result<(), DefaultsError> {
    let immutable_id = match existing_immutable_id(path) {
        Some(id) => id,
        None => base64::engine::general_purpose::STANDARD.encode(random::bytes::<16>()?),
    };
    let hash = hash_password(password).map_err(DefaultsError::PasswordHash)?;
    let text = format!(
        "# Demo directory made by `fedsts serve` with embedded defaults.\n\
         # The password is replaced at every start; use a config file for real users.\n\
         [[users]]\nupn = \"{DEMO_UPN}\"\nimmutable_id = \"{immutable_id}\"\n\
         display_name = \"Demo User\"\npassword = \"{hash}\"\n"
    );
    write_private(path, &text)
}

fn existing_immutable_id(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("immutable_id = \""))
        .and_then(|rest| rest.strip_suffix('"'))
        .map(str::to_owned)
}

fn write_file(path: &Path, text: &str) -> Result<(), DefaultsError> {
    std::fs::write(path, text).map_err(|source| DefaultsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn write_private(path: &Path, text: &str) -> Result<(), DefaultsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    write_private_with(path, text, options)
}

/// As [`write_private`], failing if `path` exists (so a key that appeared meanwhile is kept).
fn write_new_private(path: &Path, text: &str) -> Result<(), DefaultsError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    write_private_with(path, text, options)
}

fn write_private_with(
    path: &Path,
    text: &str,
    mut options: std::fs::OpenOptions,
) -> Result<(), DefaultsError> {
    let io = |source| DefaultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Certificate;

    #[test]
    fn first_run_creates_files_and_later_runs_keep_them() {
        let dir = tempfile::tempdir().unwrap();
        let first = prepare(dir.path(), "127.0.0.1:9443").unwrap();
        assert_eq!(first.created.len(), 2);
        assert!(
            first.config.problems().is_empty(),
            "{:?}",
            first.config.problems()
        );
        assert_eq!(first.config.server.public_url, "https://localhost:9443");
        let cert_before = std::fs::read(dir.path().join("certs/signing.crt")).unwrap();
        let users_before =
            std::fs::read_to_string(dir.path().join("fedsts-data/demo-users.toml")).unwrap();

        let second = prepare(dir.path(), "127.0.0.1:9443").unwrap();
        assert!(second.created.is_empty());
        assert_ne!(first.demo_password, second.demo_password);
        assert_eq!(
            cert_before,
            std::fs::read(dir.path().join("certs/signing.crt")).unwrap()
        );
        let users_after =
            std::fs::read_to_string(dir.path().join("fedsts-data/demo-users.toml")).unwrap();
        assert_eq!(
            existing_immutable_id(&dir.path().join("fedsts-data/demo-users.toml")),
            users_before
                .lines()
                .find_map(|l| l.strip_prefix("immutable_id = \""))
                .map(|s| s.trim_end_matches('"').to_owned())
        );
        assert_ne!(users_before, users_after);
    }

    fn config_in(dir: &Path) -> Config {
        let text = "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://sts.example.org:8443/\"\n\
                    tls_cert = \"tls/tls.crt\"\ntls_key = \"tls/tls.key\"\n\
                    [[apps]]\nid = \"a\"\ndomain = \"example.org\"\nissuer_uri = \"urn:a\"\n\
                    signing_cert = \"state/signing.crt\"\nsigning_key = \"state/signing.key\"\n\
                    directory = \"d\"\n[directories.d]\nkind = \"file\"\npath = \"users.toml\"\n";
        Config::parse(text, dir).unwrap()
    }

    #[test]
    fn self_signed_makes_the_missing_pairs_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        let made = make_missing_pairs(&config).unwrap();
        assert_eq!(made.len(), 4, "{made:?}");
        let tls = Certificate::from_pem(&std::fs::read_to_string(&config.server.tls_cert).unwrap())
            .unwrap();
        assert!(tls.names_host("sts.example.org"));
        let signing = std::fs::read_to_string(&config.apps[0].signing_cert).unwrap();
        let signing = Certificate::from_pem(&signing).unwrap();
        assert!(
            crate::autoroll::is_enabled(&Default::default(), &signing),
            "automatic rollover renews a made signing certificate: {}",
            signing.subject()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&config.server.tls_key)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let key_before = std::fs::read(&config.server.tls_key).unwrap();
        assert!(make_missing_pairs(&config).unwrap().is_empty());
        assert_eq!(key_before, std::fs::read(&config.server.tls_key).unwrap());
    }

    #[test]
    fn self_signed_refuses_a_key_whose_certificate_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path());
        std::fs::create_dir_all(dir.path().join("tls")).unwrap();
        std::fs::write(&config.server.tls_key, "a real key").unwrap();
        let err = make_missing_pairs(&config).unwrap_err();
        assert!(
            matches!(err, DefaultsError::KeyWithoutCertificate { .. }),
            "{err}"
        );
        assert!(err.to_string().starts_with("server.tls_key: "), "{err}");
        assert_eq!(
            std::fs::read(&config.server.tls_key).unwrap(),
            b"a real key"
        );
        assert!(!config.server.tls_cert.exists());
    }
}
