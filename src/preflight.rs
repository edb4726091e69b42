//! `fedsts check-config`: everything that can be checked offline, as `key: problem — fix` lines.
//! Structure comes from [`Config::problems`]; this adds the files: TLS pair, signing pairs and
//! their validity windows, and directory files.

use std::path::Path;

use time::{Duration, OffsetDateTime};

use crate::config::{Config, ConfigProblem, DirectoryConfig};
use crate::crypto::{Certificate, SigningIdentity};
use crate::directory::file::FileDirectory;
use crate::directory::ldap::LdapDirectory;
use crate::server::tls;

/// Certificates expiring sooner than this are reported.
const EXPIRY_WARNING: Duration = Duration::days(30);

/// Every problem of the configuration at `now`.
pub fn check(config: &Config, now: OffsetDateTime) -> Vec<ConfigProblem> {
    let mut problems = config.problems();
    problems.extend(check_tls(config, now));
    for (i, app) in config.apps.iter().enumerate() {
        problems.extend(check_signing(i, &app.signing_cert, &app.signing_key, now));
    }
    for (name, directory) in &config.directories {
        match directory {
            DirectoryConfig::File { path } => {
                if let Err(e) = FileDirectory::load(path) {
                    problems.push(ConfigProblem::new(
                        format!("directories.{name}.path"),
                        e.to_string(),
                        "fix the users file (see README.md, \"Users file\")",
                    ));
                }
            }
            DirectoryConfig::Ldap(ldap) => {
                if let Err((key, e)) = LdapDirectory::new(ldap) {
                    problems.push(ConfigProblem::new(
                        format!("directories.{name}.{key}"),
                        e.to_string(),
                        "fix the file or variable it names",
                    ));
                }
            }
        }
    }
    problems
}

fn check_tls(config: &Config, now: OffsetDateTime) -> Vec<ConfigProblem> {
    if let Err(e) = tls::server_config(&config.server.tls_cert, &config.server.tls_key) {
        return vec![ConfigProblem::new(
            "server.tls_cert",
            e.to_string(),
            "use a PEM chain and its matching private key",
        )];
    }
    match std::fs::read_to_string(&config.server.tls_cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()))
    {
        Ok(cert) => validity_problems("server.tls_cert", &cert, now),
        Err(e) => vec![ConfigProblem::new(
            "server.tls_cert",
            e,
            "use a PEM certificate chain",
        )],
    }
}

fn check_signing(index: usize, cert: &Path, key: &Path, now: OffsetDateTime) -> Vec<ConfigProblem> {
    match SigningIdentity::from_pem_files(cert, key) {
        Ok(identity) => validity_problems(
            &format!("apps[{index}].signing_cert"),
            &identity.certificate,
            now,
        ),
        Err(e) => vec![ConfigProblem::new(
            format!("apps[{index}].signing_key"),
            e.to_string(),
            "point signing_cert and signing_key at a matching PEM certificate and RSA (≥ 2048 bit) key",
        )],
    }
}

fn validity_problems(key: &str, cert: &Certificate, now: OffsetDateTime) -> Vec<ConfigProblem> {
    let mut problems = Vec::new();
    if cert.not_before() > now {
        problems.push(ConfigProblem::new(
            key,
            format!("certificate is not valid before {}", cert.not_before()),
            "check the system clock or use a certificate that is valid now",
        ));
    }
    if cert.not_after() <= now {
        problems.push(ConfigProblem::new(
            key,
            format!("certificate expired at {}", cert.not_after()),
            "issue a new certificate (for token signing, publish it to Entra ID first)",
        ));
    } else if cert.not_after() - now < EXPIRY_WARNING {
        problems.push(ConfigProblem::new(
            key,
            format!("certificate expires soon, at {}", cert.not_after()),
            "renew it now (for token signing, roll over with a next certificate)",
        ));
    }
    problems
}
