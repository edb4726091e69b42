//! `fedsts check-config`: everything that can be checked offline, as `key: problem — fix` lines.
//! Structure comes from [`Config::problems`]; this adds the files: TLS pair, signing pairs and
//! their validity windows, and directory files.

use std::path::Path;

use time::{Duration, OffsetDateTime};

use crate::config::KeySource;
use crate::config::device::Flow;
use crate::config::{Config, ConfigProblem, DirectoryConfig, KerberosConfig};
use crate::crypto::{Certificate, SigningIdentity};
use crate::directory::file::{self, FileDirectory};
use crate::directory::ldap::{LdapDirectory, ProbeReport};
use crate::kerberos::keytab;
use crate::server::tls;

/// Valid configurations that will surprise someone, as `key: problem — fix` lines; printed by
/// `check-config` and logged at start, without failing either.
///
/// Today: the TLS certificate does not name the host of `server.public_url` (fine only behind a
/// TLS-terminating proxy), and a device-trust policy covers users of an app — every app
/// federates a domain with Entra ID, whose Windows setup (OOBE Entra join, passive) and first
/// Windows logon (active) cannot present a device certificate; and the users of a users file
/// have password hashes of widely different cost; a signing certificate expires within the
/// rollover window while automatic rollover is off; the metrics are served to every address.
pub fn warnings(config: &Config) -> Vec<ConfigProblem> {
    let mut warnings: Vec<ConfigProblem> = tls_host_warning(config).into_iter().collect();
    warnings.extend(device_trust_warnings(config));
    warnings.extend(hash_cost_warnings(config));
    warnings.extend(rollover_warnings(config, OffsetDateTime::now_utc()));
    warnings.extend(config.metrics.warning());
    warnings
}

/// A signing certificate that expires within `[apps.rollover] lead_days` while automatic
/// rollover is off for its app (an unreadable certificate is `check-config`'s problem).
fn rollover_warnings(config: &Config, now: OffsetDateTime) -> Vec<ConfigProblem> {
    let mut warnings = Vec::new();
    for (i, app) in config.apps.iter().enumerate() {
        let Ok(pem) = std::fs::read_to_string(&app.signing_cert) else {
            continue;
        };
        let Ok(certificate) = Certificate::from_pem(&pem) else {
            continue;
        };
        if app.next_signing_cert.is_some() {
            continue;
        }
        if let Some(problem) = crate::autoroll::expiry_warning(&app.rollover, &certificate, now) {
            warnings.push(ConfigProblem::new(
                format!("apps[{i}].signing_cert"),
                problem,
                "set [apps.rollover] auto = true, or make a next pair (next_signing_cert / next_signing_key) and run `fedsts rollover`",
            ));
        }
    }
    warnings
}

/// Users hashed with widely different argon2 parameters: the cheap hashes are easier to crack,
/// and since unknown users are checked against a dummy of the most common cost, users of another
/// cost answer measurably faster or slower than unknown ones.
fn hash_cost_warnings(config: &Config) -> Vec<ConfigProblem> {
    config
        .directories
        .iter()
        .filter_map(|(name, directory)| {
            let DirectoryConfig::File { path } = directory else {
                return None;
            };
            let costs = file::hash_costs(path).ok()?;
            let (cheapest, costliest) = file::cost_spread(&costs)?;
            Some(ConfigProblem::new(
                format!("directories.{name}.path"),
                format!(
                    "password hashes differ widely in cost (cheapest {cheapest}, costliest {costliest}): the cheap ones are easier to crack, and users whose cost is not the most common answer in measurably different time from unknown users"
                ),
                "have the users with cheap hashes set their passwords again with `fedsts hash-password`, or rehash all with one tool's parameters",
            ))
        })
        .collect()
}

/// The TLS certificate should name the host clients connect to.
fn tls_host_warning(config: &Config) -> Option<ConfigProblem> {
    let host = config.public_host()?;
    let pem = std::fs::read_to_string(&config.server.tls_cert).ok()?;
    let cert = Certificate::from_pem(&pem).ok()?;
    if cert.names_host(host) {
        return None;
    }
    Some(ConfigProblem::new(
        "server.tls_cert",
        format!(
            "names {} but server.public_url's host is {host}: clients will refuse the certificate unless a TLS-terminating proxy in front of fedsts presents one for {host}",
            if cert.alt_names().is_empty() {
                "no host".to_owned()
            } else {
                cert.alt_names().join(", ")
            }
        ),
        format!("use a certificate whose subjectAltName includes {host}"),
    ))
}

fn device_trust_warnings(config: &Config) -> Vec<ConfigProblem> {
    config
        .apps
        .iter()
        .enumerate()
        .filter_map(|(i, app)| {
            let policy = app.device_trust.as_ref()?;
            let flows: Vec<&str> = policy
                .flows
                .iter()
                .map(|f| match f {
                    Flow::Passive => "passive",
                    Flow::Active => "active",
                    Flow::WindowsLogon => "windows_logon",
                })
                .collect();
            let mut who: Vec<String> = policy.users.iter().map(|u| format!("user {u}")).collect();
            who.extend(policy.groups.iter().map(|g| format!("group {g}")));
            Some(ConfigProblem::new(
                format!("apps[{i}].device_trust"),
                format!(
                    "requires a trusted device for the {} flow(s) of {}, but {} is federated with Entra ID: Windows setup (OOBE Entra join) and the first Windows logon cannot present a device certificate, so these users cannot join or first sign in to a new Windows device",
                    flows.join(", "),
                    who.join(", "),
                    app.domain
                ),
                "exclude the enrolment users or group from users/groups, or join devices first and enforce device trust afterwards",
            ))
        })
        .collect()
}

/// Certificates expiring sooner than this are reported.
const EXPIRY_WARNING: Duration = Duration::days(30);

/// Every problem of the configuration at `now`.
pub fn check(config: &Config, now: OffsetDateTime) -> Vec<ConfigProblem> {
    check_with_notice(config, now, EXPIRY_WARNING)
}

/// The problems that stop a server from serving `config` (what a reload refuses): [`check`]
/// without the notice of certificates that are valid but expire within 30 days, since a
/// reload is how a renewed certificate goes into service and must not be refused for the one it
/// replaces.
pub fn check_serving(config: &Config, now: OffsetDateTime) -> Vec<ConfigProblem> {
    check_with_notice(config, now, Duration::ZERO)
}

/// [`check`], reporting certificates that expire within `notice`.
fn check_with_notice(config: &Config, now: OffsetDateTime, notice: Duration) -> Vec<ConfigProblem> {
    let mut problems = config.problems();
    problems.extend(check_tls(config, now, notice));
    problems.extend(check_device_ca(config));
    problems.extend(crate::sts::portal::logo_problems(config));
    for (i, app) in config.apps.iter().enumerate() {
        match app.signing_key_source() {
            Some(KeySource::PemFile(key)) => {
                problems.extend(check_signing(
                    i,
                    "signing",
                    (&app.signing_cert, key),
                    now,
                    notice,
                ));
            }
            // Offline: the certificate only; `--online` / `fedsts keys check` log into the token.
            Some(KeySource::Pkcs11(_)) => {
                problems.extend(check_certificate_file(i, &app.signing_cert, now, notice));
            }
            None => {}
        }
        if let (Some(cert), Some(key)) = (&app.next_signing_cert, &app.next_signing_key) {
            problems.extend(check_signing(i, "next_signing", (cert, key), now, notice));
            if same_certificate(&app.signing_cert, cert) {
                problems.push(ConfigProblem::new(
                    format!("apps[{i}].next_signing_cert"),
                    "is the current signing certificate",
                    "make a new key pair for the next certificate (a rollover to the same key changes nothing)",
                ));
            }
        }
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

/// `check-config --online`: probes every LDAP directory (connect with its TLS, bind the
/// service account once, find `probe_user`) and reads every app's keytab, each named by its
/// key stem. Directories that cannot even be prepared are skipped: [`check`] reports them.
pub async fn check_online(config: &Config, probe_user: Option<&str>) -> Vec<ProbeReport> {
    let mut reports = Vec::new();
    for (name, directory) in &config.directories {
        let DirectoryConfig::Ldap(ldap) = directory else {
            continue;
        };
        if let Ok(directory) = LdapDirectory::new(ldap) {
            reports.push(
                directory
                    .probe(&format!("directories.{name}"), probe_user)
                    .await,
            );
        }
    }
    for (i, app) in config.apps.iter().enumerate() {
        if let Some(kerberos) = &app.kerberos {
            reports.push(keytab_report(&format!("apps[{i}].kerberos"), kerberos));
        }
        if app.signing_pkcs11.is_some() {
            reports.push(key_report(i, app));
        }
    }
    reports
}

/// Whether the keytab holds keys for the SPN, and of which enctypes (Windows asks for AES).
fn keytab_report(prefix: &str, kerberos: &KerberosConfig) -> ProbeReport {
    let mut report = ProbeReport::new(prefix);
    let keys = match keytab::keys(&kerberos.keytab) {
        Ok(keys) => keys,
        Err(e) => {
            report.problem(
                "keytab",
                e.to_string(),
                "point keytab at the file exported for spn",
            );
            return report;
        }
    };
    let spn = kerberos.spn.split('@').next().unwrap_or_default();
    let for_spn: Vec<&keytab::KeytabKey> = keys
        .iter()
        .filter(|key| key.principal.split('@').next() == Some(spn))
        .collect();
    if for_spn.is_empty() {
        let mut held: Vec<&str> = keys.iter().map(|key| key.principal.as_str()).collect();
        held.dedup();
        report.problem(
            "keytab",
            format!(
                "{} holds no key for {spn} (it holds: {})",
                kerberos.keytab.display(),
                if held.is_empty() { "nothing".to_owned() } else { held.join(", ") }
            ),
            format!("export the key of {spn} (ktpass -princ {spn}@REALM, or kadmin ktadd), or set spn to a principal the keytab holds"),
        );
        return report;
    }
    let listed: Vec<String> = for_spn
        .iter()
        .map(|key| format!("{} (kvno {})", keytab::enctype_name(key.enctype), key.kvno))
        .collect();
    report.findings.push(format!(
        "keytab holds keys for {spn}: {}",
        listed.join(", ")
    ));
    if !for_spn.iter().any(|key| keytab::is_aes(key.enctype)) {
        report.warning(
            "keytab",
            format!("holds no AES key for {spn}: Windows clients ask for AES tickets by default"),
            "export AES keys (ktpass -crypto AES256-SHA1, or kadmin ktadd -e aes256-cts)",
        );
    }
    report
}

/// The device CA (and CRL) load into the TLS client verifier.
fn check_device_ca(config: &Config) -> Vec<ConfigProblem> {
    let Some(device) = &config.device_trust else {
        return Vec::new();
    };
    match tls::device_verifier(device, std::sync::Arc::new(crate::clock::SystemClock)) {
        Ok(_) => Vec::new(),
        Err(e) => vec![ConfigProblem::new(
            "device_trust.ca_file",
            e.to_string(),
            "use the PEM certificate of the CA that issues device certificates (and its PEM CRLs)",
        )],
    }
}

fn check_tls(config: &Config, now: OffsetDateTime, notice: Duration) -> Vec<ConfigProblem> {
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
        Ok(cert) => validity_problems("server.tls_cert", &cert, now, notice),
        Err(e) => vec![ConfigProblem::new(
            "server.tls_cert",
            e,
            "use a PEM certificate chain",
        )],
    }
}

/// Checks a token-signing pair; `field` is `signing` or `next_signing` (the config key stem).
fn check_signing(
    index: usize,
    field: &str,
    (cert, key): (&Path, &Path),
    now: OffsetDateTime,
    notice: Duration,
) -> Vec<ConfigProblem> {
    match SigningIdentity::from_pem_files(cert, key) {
        Ok(identity) => validity_problems(
            &format!("apps[{index}].{field}_cert"),
            &identity.certificate,
            now,
            notice,
        ),
        Err(e) => vec![ConfigProblem::new(
            format!("apps[{index}].{field}_key"),
            e.to_string(),
            format!(
                "point {field}_cert and {field}_key at a matching PEM certificate and RSA (≥ 2048 bit) key"
            ),
        )],
    }
}

/// The current signing certificate of an app whose key is in a token: readable and valid now.
fn check_certificate_file(
    index: usize,
    cert: &Path,
    now: OffsetDateTime,
    notice: Duration,
) -> Vec<ConfigProblem> {
    let key = format!("apps[{index}].signing_cert");
    match std::fs::read_to_string(cert)
        .map_err(|e| format!("cannot read {}: {e}", cert.display()))
        .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()))
    {
        Ok(certificate) => validity_problems(&key, &certificate, now, notice),
        Err(e) => vec![ConfigProblem::new(
            key,
            e,
            "point signing_cert at the PEM certificate of the key in the token",
        )],
    }
}

/// `check-config --online` / `fedsts keys check` for one app: load the key from its store
/// (logging into a token), check it matches the certificate, sign a test digest and verify it.
pub fn key_report(index: usize, app: &crate::config::AppConfig) -> ProbeReport {
    let mut report = ProbeReport::new(&format!("apps[{index}]"));
    let Some(source) = app.signing_key_source() else {
        return report;
    };
    // After an automatic rollover the token key that signs is the one the key state file
    // beside the certificate names, not the configured one.
    let rolled = match source {
        KeySource::Pkcs11(pkcs11) => {
            match crate::autoroll::pkcs11::current_key_config(pkcs11, &app.signing_cert) {
                Ok(rolled) => Some(rolled),
                Err(e) => {
                    report.problem(
                        "signing_pkcs11",
                        e.to_string(),
                        "fix or remove the key state file beside signing_cert",
                    );
                    return report;
                }
            }
        }
        KeySource::PemFile(_) => None,
    };
    let source = match &rolled {
        Some(rolled) => KeySource::Pkcs11(rolled),
        None => source,
    };
    let field = match source {
        KeySource::PemFile(_) => "signing_key",
        KeySource::Pkcs11(_) => "signing_pkcs11",
    };
    let checked = SigningIdentity::load(&app.signing_cert, source)
        .and_then(|identity| identity.self_test().map(|()| identity));
    let identity = match checked {
        Ok(identity) => identity,
        Err(e) => {
            report.problem(
                field,
                e.to_string(),
                "fix the key store so that it holds the key of signing_cert",
            );
            return report;
        }
    };
    report.findings.push(format!(
        "signing key in {} store matches {} (SHA-256 {}) and signed a test digest that verifies",
        identity.signer.store().as_str(),
        identity.certificate.subject(),
        identity.fingerprint()
    ));
    if let KeySource::Pkcs11(pkcs11) = source {
        match crate::crypto::pkcs11::key_protection(pkcs11) {
            Ok(protection) if protection.sensitive && !protection.extractable => report
                .findings
                .push("the private key is sensitive and not extractable".to_owned()),
            Ok(protection) => report.warning(
                field,
                format!(
                    "the private key is {}sensitive and {}extractable: it can leave the token",
                    if protection.sensitive { "" } else { "not " },
                    if protection.extractable { "" } else { "not " }
                ),
                "make a new key with `fedsts keys generate` (sensitive, not extractable) and roll over to it",
            ),
            Err(e) => report.problem(field, e.to_string(), "check the token"),
        }
    }
    report
}

/// Whether two PEM files hold the same certificate (unreadable files are reported elsewhere).
fn same_certificate(a: &Path, b: &Path) -> bool {
    let load = |p: &Path| {
        std::fs::read_to_string(p)
            .ok()
            .and_then(|pem| Certificate::from_pem(&pem).ok())
    };
    match (load(a), load(b)) {
        (Some(a), Some(b)) => a.der() == b.der(),
        _ => false,
    }
}

fn validity_problems(
    key: &str,
    cert: &Certificate,
    now: OffsetDateTime,
    notice: Duration,
) -> Vec<ConfigProblem> {
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
    } else if cert.not_after() - now < notice {
        problems.push(ConfigProblem::new(
            key,
            format!("certificate expires soon, at {}", cert.not_after()),
            "renew it now (for token signing, roll over with a next certificate)",
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8443"
public_url = "https://sts.example.com"
tls_cert = "tls.crt"
tls_key = "tls.key"

[[apps]]
id = "app1"
domain = "example.com"
issuer_uri = "example.com"
signing_cert = "s.crt"
signing_key = "s.key"
directory = "local"

[apps.device_trust]
flows = ["passive", "windows_logon"]
users = ["alice@example.com"]
groups = ["staff"]

[directories.local]
kind = "file"
path = "users.toml"
"#;

    #[test]
    fn device_trust_policy_warns_about_windows_setup_and_needs_the_ca() {
        let config = Config::parse(CONFIG, Path::new("/etc/fedsts")).unwrap();
        let warnings: Vec<String> = warnings(&config).iter().map(ToString::to_string).collect();
        assert_eq!(
            warnings,
            [
                "apps[0].device_trust: requires a trusted device for the passive, windows_logon flow(s) of user alice@example.com, group staff, but example.com is federated with Entra ID: Windows setup (OOBE Entra join) and the first Windows logon cannot present a device certificate, so these users cannot join or first sign in to a new Windows device — exclude the enrolment users or group from users/groups, or join devices first and enforce device trust afterwards"
            ]
        );
        let problems: Vec<String> = config.problems().iter().map(|p| p.key.clone()).collect();
        assert_eq!(problems, ["apps[0].device_trust"]);
        let with_ca = format!("{CONFIG}\n[device_trust]\nca_file = \"device-ca.pem\"\n");
        let config = Config::parse(&with_ca, Path::new("/etc/fedsts")).unwrap();
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        assert_eq!(
            config.device_trust.unwrap().ca_file,
            Path::new("/etc/fedsts/device-ca.pem")
        );
    }
}
