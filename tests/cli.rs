//! The command-line contract, run as a real process: `serve` on embedded defaults (the README's
//! first command), `hash-password`, `check-config`, `commands`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_fedsts");

#[test]
fn hash_password_prints_argon2id_phc() {
    let mut child = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let phc = String::from_utf8(out.stdout).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m="), "{phc}");
    assert!(!phc.contains("s3cret"));

    let out = Command::new(BIN)
        .arg("hash-password")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "an empty password must be refused");
}

/// Starts `fedsts serve` in `dir` on embedded defaults (logs at `info` to a pipe); returns the
/// child and the password printed at start.
fn start_embedded(dir: &std::path::Path, port: u16) -> (std::process::Child, String, Vec<String>) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("FEDSTS_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(60);
    let password = loop {
        assert!(Instant::now() < deadline, "no password printed: {lines:?}");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!("serve exited early: {lines:?}");
        }
        lines.push(line.trim_end().to_owned());
        if let Some(rest) = line.strip_prefix("demo password: ") {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    (child, password, lines)
}

fn sigterm(child: &mut std::process::Child) -> std::process::ExitStatus {
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "server ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Log lines that go to a file or a pager must not carry terminal colour codes (the reader's
/// terminal would interpret them): stderr here is a pipe, not a terminal.
#[test]
fn logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, _) = start_embedded(dir.path(), common::free_port());
    let mut stderr = child.stderr.take().unwrap();
    let status = sigterm(&mut child);
    assert!(status.success(), "{status:?}");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
    assert!(text.contains("shutting down"), "{text}");
    assert!(!text.contains('\x1b'), "colour codes on a pipe: {text:?}");
}

#[test]
fn serve_on_embedded_defaults_creates_certs_once_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let (mut child, password, lines) = start_embedded(dir.path(), port);
    assert!(password.len() >= 12, "{password}");
    let banner = lines.join("\n");
    assert!(banner.contains("created"), "{banner}");
    for url in [
        format!("https://localhost:{port}/wsfed/demo/mex"),
        format!("https://localhost:{port}/wsfed/demo/trust/13/usernamemixed"),
        format!("https://localhost:{port}/wsfed/demo/trust/2005/usernamemixed"),
        format!("https://localhost:{port}/wsfed/demo/commands"),
    ] {
        assert!(
            banner.contains(&url),
            "{url} missing from banner:\n{banner}"
        );
    }
    for file in ["tls.crt", "tls.key", "signing.crt", "signing.key"] {
        assert!(dir.path().join("certs").join(file).exists(), "{file}");
    }
    let signing_before = std::fs::read(dir.path().join("certs/signing.crt")).unwrap();
    let status = sigterm(&mut child);
    assert!(status.success(), "{status:?}");

    // Second start: the certificates stay, a new password is printed.
    let (mut child, second_password, lines) = start_embedded(dir.path(), port);
    assert!(!lines.join("\n").contains("created"), "{lines:?}");
    assert_ne!(password, second_password);
    assert_eq!(
        signing_before,
        std::fs::read(dir.path().join("certs/signing.crt")).unwrap()
    );
    let status = sigterm(&mut child);
    assert!(status.success(), "{status:?}");
}

fn write_config(dir: &std::path::Path) -> std::path::PathBuf {
    fedsts::first_run::prepare(dir, "127.0.0.1:8443").unwrap();
    let config = r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://sts.example.com"
tls_cert = "certs/tls.crt"
tls_key = "certs/tls.key"

[[apps]]
id = "663a8fb979aa83c58df6081e"
domain = "example.com"
issuer_uri = "example.com"
signing_cert = "certs/signing.crt"
signing_key = "certs/signing.key"
directory = "local"

[directories.local]
kind = "file"
path = "fedsts-data/demo-users.toml"
"#;
    let path = dir.join("fedsts.toml");
    std::fs::write(&path, config).unwrap();
    path
}

#[test]
fn check_config_accepts_good_and_names_key_and_fix_for_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path());
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    // The embedded TLS certificate names localhost, not the public host: a warning, not a failure
    // (a TLS-terminating proxy may present the right one).
    assert!(
        stdout.lines().any(|l| l.starts_with(
            "warning: server.tls_cert: names localhost, 127.0.0.1 but server.public_url's host is sts.example.com"
        )),
        "{stdout}"
    );

    // A key that does not belong to the certificate, and an http public URL.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace(
            "signing_key = \"certs/signing.key\"",
            "signing_key = \"certs/tls.key\"",
        )
        .replace("https://sts.example.com", "http://sts.example.com");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("warning: "))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(lines[0].starts_with("server.public_url: "), "{stdout}");
    assert!(lines[1].starts_with("apps[0].signing_key: "), "{stdout}");
    assert!(lines.iter().all(|l| l.contains(" — ")), "{stdout}");
}

#[test]
fn commands_prints_what_the_page_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path());
    let out = Command::new(BIN)
        .args(["commands", "--config"])
        .arg(&path)
        .args(["--app", "663a8fb979aa83c58df6081e"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let cert = fedsts::crypto::Certificate::from_pem(
        &std::fs::read_to_string(dir.path().join("certs/signing.crt")).unwrap(),
    )
    .unwrap();
    assert!(
        text.contains("New-MgDomainFederationConfiguration"),
        "{text}"
    );
    assert!(text.contains(cert.base64()), "{text}");
    assert!(text.contains(
        "https://sts.example.com/wsfed/663a8fb979aa83c58df6081e/trust/2005/usernamemixed"
    ));
    let out = Command::new(BIN)
        .args(["commands", "--config"])
        .arg(&path)
        .args(["--app", "nope"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8(out.stderr)
            .unwrap()
            .contains("663a8fb979aa83c58df6081e")
    );
}

#[test]
fn check_config_checks_the_next_signing_pair() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path());
    let base = std::fs::read_to_string(&path).unwrap();
    let check = |extra: &str| {
        let text = base.replace(
            "directory = \"local\"\n",
            &format!("directory = \"local\"\n{extra}"),
        );
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let problems: Vec<&str> = stdout
            .lines()
            .filter(|l| !l.starts_with("warning: "))
            .collect();
        (out.status.success(), problems.join("\n"))
    };
    // The TLS key does not belong to the signing certificate.
    let (ok, stdout) =
        check("next_signing_cert = \"certs/signing.crt\"\nnext_signing_key = \"certs/tls.key\"\n");
    assert!(!ok);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("apps[0].next_signing_key: ")),
        "{stdout}"
    );
    // The current pair again: loads, but a rollover to it changes nothing.
    let (ok, stdout) = check(
        "next_signing_cert = \"certs/signing.crt\"\nnext_signing_key = \"certs/signing.key\"\n",
    );
    assert!(!ok);
    assert_eq!(
        stdout.trim(),
        "apps[0].next_signing_cert: is the current signing certificate — make a new key pair for \
         the next certificate (a rollover to the same key changes nothing)"
    );
    // A real next pair passes.
    let next = fedsts::crypto::generate_self_signed("next", &[], 400).unwrap();
    std::fs::write(dir.path().join("certs/next.crt"), next.certificate_pem).unwrap();
    std::fs::write(dir.path().join("certs/next.key"), next.private_key_pem).unwrap();
    let (ok, stdout) =
        check("next_signing_cert = \"certs/next.crt\"\nnext_signing_key = \"certs/next.key\"\n");
    assert!(ok, "{stdout}");
}
