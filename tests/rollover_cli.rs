//! Key rollover and TOTP enrolment as real processes: `fedsts commands` and the federation
//! metadata agree on the certificates before and after `fedsts rollover`, which keeps backups and
//! refuses clearly without a next pair; `fedsts user totp-enroll` stores a usable secret and
//! `fedsts user totp-reset` removes it (with an audit record).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fedsts::clock::SystemClock;
use fedsts::config::Config;
use fedsts::crypto::{Certificate, generate_self_signed};
use fedsts::sts::{Endpoint, RequestInfo, Sts};

const BIN: &str = env!("CARGO_BIN_EXE_fedsts");

fn run(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn cert_b64(path: &Path) -> String {
    Certificate::from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .base64()
        .to_owned()
}

/// A config file in `dir` using the embedded defaults' certificates; `next` adds a next pair.
fn write_config(dir: &Path, next: bool) -> std::path::PathBuf {
    let embedded = fedsts::first_run::prepare(dir, "127.0.0.1:8443").unwrap();
    let fedsts::config::DirectoryConfig::File { path: users } =
        &embedded.config.directories["demo"]
    else {
        panic!("the embedded defaults use a file directory");
    };
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:8443\"\npublic_url = \"https://sts.example.com\"\ntls_cert = \"certs/tls.crt\"\ntls_key = \"certs/tls.key\"\n\n\
         [[apps]]\nid = \"app1\"\ndomain = \"example.com\"\nissuer_uri = \"example.com\"\nsigning_cert = \"certs/signing.crt\"\nsigning_key = \"certs/signing.key\"\ndirectory = \"local\"\n",
    );
    if next {
        let pair = generate_self_signed("fedsts next token signing", &[], 400).unwrap();
        std::fs::write(dir.join("certs/next.crt"), pair.certificate_pem).unwrap();
        std::fs::write(dir.join("certs/next.key"), pair.private_key_pem).unwrap();
        text.push_str(
            "next_signing_cert = \"certs/next.crt\"\nnext_signing_key = \"certs/next.key\"\n",
        );
    }
    text.push_str(&format!(
        "\n[directories.local]\nkind = \"file\"\npath = \"{}\"\n",
        users.display()
    ));
    let path = dir.join("fedsts.toml");
    std::fs::write(&path, text).unwrap();
    path
}

async fn metadata(config_path: &Path) -> String {
    let config = Config::load(config_path).unwrap();
    let sts = Sts::from_config(&config, Arc::new(SystemClock)).unwrap();
    let info = RequestInfo::new("t".into(), "127.0.0.1".parse().unwrap());
    sts.handle(
        Endpoint::FederationMetadata { app: "app1".into() },
        &[],
        &info,
    )
    .await
    .body
}

fn metadata_certificates(document: &str) -> Vec<String> {
    let role = document.split("<IDPSSODescriptor").next().unwrap();
    role.split("<X509Certificate>")
        .skip(2) // the first one is in the document's own Signature
        .map(|c| c.split('<').next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn commands_and_metadata_agree_before_and_after_rollover() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), true);
    let config_arg = config.to_str().unwrap();
    let current = cert_b64(&dir.path().join("certs/signing.crt"));
    let next = cert_b64(&dir.path().join("certs/next.crt"));
    let old_key = std::fs::read_to_string(dir.path().join("certs/signing.key")).unwrap();

    let (ok, before, _) = run(&["commands", "--config", config_arg, "--app", "app1"]);
    assert!(ok);
    assert!(before.contains(&format!("-SigningCertificate \"{current}\"")));
    assert!(before.contains(&format!("-NextSigningCertificate \"{next}\"")));
    assert_eq!(
        metadata_certificates(&metadata(&config).await),
        [current.clone(), next.clone()]
    );

    let (ok, out, err) = run(&["rollover", "--config", config_arg, "--app", "app1"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("Update-MgDomainFederationConfiguration"),
        "{out}"
    );
    assert!(
        out.contains(&format!("-SigningCertificate \"{next}\"")),
        "{out}"
    );
    assert!(!out.contains("-NextSigningCertificate"), "{out}");
    let backups: Vec<String> = std::fs::read_dir(dir.path().join("certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 2, "{backups:?}");
    let key_backup = backups
        .iter()
        .find(|n| n.starts_with("signing.key."))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("certs").join(key_backup)).unwrap(),
        old_key
    );
    assert_eq!(cert_b64(&dir.path().join("certs/signing.crt")), next);
    let edited = std::fs::read_to_string(&config).unwrap();
    assert!(!edited.contains("next_signing"), "{edited}");

    let (ok, after, _) = run(&["commands", "--config", config_arg, "--app", "app1"]);
    assert!(ok);
    assert!(after.contains(&format!("-SigningCertificate \"{next}\"")));
    assert!(!after.contains(&current));
    assert_eq!(metadata_certificates(&metadata(&config).await), [next]);

    // Nothing left to promote: a clear refusal that changes nothing.
    let (ok, _, err) = run(&["rollover", "--config", config_arg, "--app", "app1"]);
    assert!(!ok);
    assert!(err.contains("has no next signing pair"), "{err}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited);
}

#[test]
fn totp_enroll_stores_a_secret_and_prints_uri_and_qr() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), false);
    let config_arg = config.to_str().unwrap();
    let (ok, out, err) = run(&[
        "user",
        "totp-enroll",
        "--config",
        config_arg,
        "--app",
        "app1",
        "--upn",
        "DEMO@example.com",
    ]);
    assert!(ok, "{err}");
    let uri = out
        .lines()
        .find(|l| l.starts_with("otpauth://totp/"))
        .unwrap();
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(secret.len(), 32, "160-bit secret in base32");
    assert!(
        out.contains('█') || out.contains('▀') || out.contains('▄'),
        "QR code printed"
    );
    let users = std::fs::read_to_string(dir.path().join("fedsts-data/demo-users.toml")).unwrap();
    assert!(
        users.contains(&format!("totp_secret = \"{secret}\"")),
        "{users}"
    );
    fedsts::directory::file::FileDirectory::parse(&users).unwrap();

    let (ok, _, err) = run(&[
        "user",
        "totp-enroll",
        "--config",
        config_arg,
        "--app",
        "app1",
        "--upn",
        "nobody@example.com",
    ]);
    assert!(!ok);
    assert!(err.contains("no user `nobody@example.com`"), "{err}");
}

#[test]
fn totp_reset_removes_the_secret_and_writes_an_audit_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), false);
    let config_arg = config.to_str().unwrap();
    let user = |command| {
        run(&[
            "user",
            command,
            "--config",
            config_arg,
            "--app",
            "app1",
            "--upn",
            "demo@example.com",
        ])
    };
    let (ok, _, err) = user("totp-enroll");
    assert!(ok, "{err}");
    let users_path = dir.path().join("fedsts-data/demo-users.toml");
    assert!(
        std::fs::read_to_string(&users_path)
            .unwrap()
            .contains("totp_secret")
    );

    let (ok, out, err) = user("totp-reset");
    assert!(ok, "{err}");
    assert!(
        out.contains("removed the TOTP secret of demo@example.com"),
        "{out}"
    );
    let users = std::fs::read_to_string(&users_path).unwrap();
    assert!(!users.contains("totp_secret"), "{users}");
    fedsts::directory::file::FileDirectory::parse(&users).unwrap();
    let audit = err
        .lines()
        .find(|l| l.contains("fedsts::audit") || l.contains("token decision"))
        .unwrap_or_else(|| panic!("no audit record in {err}"));
    assert!(
        audit.contains("totp_enrolment") && audit.contains("reset"),
        "{audit}"
    );
    assert!(audit.contains("cli/user/totp-reset"), "{audit}");

    let (ok, _, err) = user("totp-reset");
    assert!(!ok, "nothing to reset the second time");
    assert!(err.contains("nothing to reset"), "{err}");
}
