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
        }],
        directories: BTreeMap::from([(
            "demo".to_owned(),
            DirectoryConfig::File { path: users_path },
        )]),
        state: Default::default(),
        lockout: Default::default(),
        rate_limit: Default::default(),
        device_trust: None,
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
    let io = |source| DefaultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
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
}
