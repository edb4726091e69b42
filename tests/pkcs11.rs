//! Token-signing keys in a real SoftHSM2 token: `fedsts keys generate --pkcs11` makes the key
//! (checked non-extractable and sensitive by OpenSC's `pkcs11-tool`), a WS-Trust token signed in
//! the token verifies with xmlsec1 against the certificate, `fedsts audit by-key` attributes it to
//! the configured key, and a wrong PIN, a missing key, a key/certificate mismatch, a missing token
//! and a token removed while serving each give their own message (a `RequestFailed` fault and an
//! unhealthy `/healthz` while serving, never a hang).
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process, so every test of this binary shares one token
//! store, made (tokens and keys, through the `fedsts` binary) before any test loads the module
//! in-process. The README's `[apps.signing_pkcs11]` example is used verbatim.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::server::{ALICE, Options, PASSWORD, TestServer};
use common::softhsm::SoftHsm;
use common::wstrust::{element, fault_subcode, path_of, rst};
use fedsts::config::Pkcs11Config;
use fedsts::crypto::pkcs11::{Pkcs11Error, Pkcs11Signer};
use fedsts::secret::Secret;

const PIN: &str = "4711-user-pin";
const PIN_ENV: &str = "FEDSTS_PKCS11_PIN";
/// The token the README example names, and a second one a test removes.
const TOKEN: &str = "fedsts";
const GONE_TOKEN: &str = "gone";
/// A token served over a socket by `p11-kit server`, which a test freezes (SIGSTOP).
const HANG_TOKEN: &str = "hang";
/// Where Debian's `p11-kit-modules` puts the client module of `p11-kit server`.
const P11_KIT_CLIENTS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
];
const KEY: &str = "token-signing";

struct Fixture {
    hsm: SoftHsm,
    /// Holds fedsts.toml (the README example), certs/, users.toml.
    dir: tempfile::TempDir,
    /// The certificate `keys generate` made for the `gone` token's key.
    gone_cert: PathBuf,
    gone_token_dir: PathBuf,
}

static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();

/// The README's example app, verbatim.
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let marker = readme
        .find("<!-- pkcs11-example:")
        .expect("README has the pkcs11 example");
    let start = readme[marker..].find("```toml\n").unwrap() + marker + "```toml\n".len();
    let end = readme[start..].find("```").unwrap() + start;
    readme[start..end].to_owned()
}

/// A whole configuration around `app` (the README example, maybe edited).
fn config_text(app: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://127.0.0.1:8443\"\ntls_cert = \"certs/tls.crt\"\ntls_key = \"certs/tls.key\"\n\n{app}\n[directories.corp]\nkind = \"file\"\npath = \"users.toml\"\n"
    )
}

fn fedsts(hsm: &SoftHsm, args: &[&str], pin: &str) -> Output {
    let output = hsm
        .command(env!("CARGO_BIN_EXE_fedsts"))
        .args(args)
        .env(PIN_ENV, pin)
        .output()
        .unwrap();
    eprintln!(
        "fedsts {}: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fixture() -> Option<&'static Fixture> {
    FIXTURE
        .get_or_init(|| {
            let hsm = SoftHsm::new()?;
            if !common::require_tool("xmlsec1") || !common::require_tool("pkcs11-tool") {
                return None;
            }
            hsm.init_token(TOKEN, PIN);
            let gone_token_dir = hsm.init_token(GONE_TOKEN, PIN);
            hsm.init_token(HANG_TOKEN, PIN);
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir(dir.path().join("certs")).unwrap();
            let tls = fedsts::crypto::generate_self_signed("127.0.0.1", &["127.0.0.1".into()], 400)
                .unwrap();
            std::fs::write(dir.path().join("certs/tls.crt"), tls.certificate_pem).unwrap();
            std::fs::write(dir.path().join("certs/tls.key"), tls.private_key_pem).unwrap();
            std::fs::write(dir.path().join("users.toml"), common::server::users_file()).unwrap();
            let example = readme_example().replace(
                "/usr/lib/softhsm/libsofthsm2.so",
                &hsm.module.display().to_string(),
            );
            let write = |name: &str, app: &str| {
                let path = dir.path().join(name);
                std::fs::write(&path, config_text(app)).unwrap();
                path
            };
            let config = write("fedsts.toml", &example);
            let generated = fedsts(
                &hsm,
                &[
                    "keys",
                    "generate",
                    "--pkcs11",
                    "--config",
                    path_str(&config),
                    "--app",
                    "contoso",
                ],
                PIN,
            );
            assert!(generated.status.success(), "{}", stdout(&generated));
            let gone = write(
                "gone.toml",
                &example
                    .replace("token_label = \"fedsts\"", "token_label = \"gone\"")
                    .replace("certs/signing.crt", "certs/gone.crt"),
            );
            let generated = fedsts(
                &hsm,
                &[
                    "keys",
                    "generate",
                    "--pkcs11",
                    "--config",
                    path_str(&gone),
                    "--app",
                    "contoso",
                ],
                PIN,
            );
            assert!(generated.status.success(), "{}", stdout(&generated));
            let hang = write(
                "hang.toml",
                &example
                    .replace("token_label = \"fedsts\"", "token_label = \"hang\"")
                    .replace("certs/signing.crt", "certs/hang.crt"),
            );
            let generated = fedsts(
                &hsm,
                &[
                    "keys",
                    "generate",
                    "--pkcs11",
                    "--config",
                    path_str(&hang),
                    "--app",
                    "contoso",
                ],
                PIN,
            );
            assert!(generated.status.success(), "{}", stdout(&generated));
            // Set once, before any test loads a PKCS#11 module in this process (both are read
            // at C_Initialize); the OnceLock makes every other test wait for it.
            let socket = dir.path().join("p11-kit.sock");
            unsafe {
                std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
                std::env::set_var(
                    "P11_KIT_SERVER_ADDRESS",
                    format!("unix:path={}", socket.display()),
                );
            }
            extractable_key(&hsm, &dir.path().join("certs/extractable.crt"));
            Some(Fixture {
                gone_cert: dir.path().join("certs/gone.crt"),
                hsm,
                dir,
                gone_token_dir,
            })
        })
        .as_ref()
}

/// Label of a key made the careless way: extractable (SoftHSM still makes it sensitive).
const EXTRACTABLE_KEY: &str = "careless";

/// Makes [`EXTRACTABLE_KEY`] in the `fedsts` token with OpenSC's `pkcs11-tool` and writes a
/// self-signed certificate for it (signed in the token through fedsts) to `cert`.
fn extractable_key(hsm: &SoftHsm, cert: &Path) {
    let output = hsm
        .command("pkcs11-tool")
        .arg("--module")
        .arg(&hsm.module)
        .args(["--token-label", TOKEN, "--login", "--pin", PIN])
        .args([
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--usage-sign",
            "--extractable",
        ])
        .args(["--label", EXTRACTABLE_KEY, "--id", "c0ffee"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stdout(&output));
    let mut table = Pkcs11Config::clone(&table_of(hsm, TOKEN));
    table.key_label = Some(EXTRACTABLE_KEY.to_owned());
    let signer = Pkcs11Signer::open(&table).unwrap();
    let pem = fedsts::crypto::self_signed_for_signer(&signer, "careless", 30).unwrap();
    std::fs::write(cert, pem).unwrap();
}

/// The `[apps.signing_pkcs11]` table of `token` with an inline PIN and a 2 s timeout.
fn table_of(hsm: &SoftHsm, token: &str) -> Pkcs11Config {
    let mut pkcs11: Pkcs11Config = toml::from_str(&hsm.table(token, KEY, PIN))
        .map(|mut t: toml::Table| t.remove("apps").unwrap())
        .map(|apps| apps["signing_pkcs11"].clone().try_into().unwrap())
        .unwrap();
    pkcs11.pin = Some(Secret::new(PIN.to_owned()));
    pkcs11.timeout_secs = Some(2);
    pkcs11
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

impl Fixture {
    fn cert(&self) -> PathBuf {
        self.dir.path().join("certs/signing.crt")
    }

    /// `fedsts keys check` on the README example with `edit` applied.
    fn keys_check(&self, edit: impl Fn(String) -> String, pin: &str) -> Output {
        let example = readme_example().replace(
            "/usr/lib/softhsm/libsofthsm2.so",
            &self.hsm.module.display().to_string(),
        );
        let path = self
            .dir
            .path()
            .join(format!("check-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, config_text(&edit(example))).unwrap();
        fedsts(
            &self.hsm,
            &["keys", "check", "--config", path_str(&path)],
            pin,
        )
    }

    /// The README table with an inline PIN, for an in-process server.
    fn table(&self, token: &str) -> Pkcs11Config {
        table_of(&self.hsm, token)
    }
}

/// A server whose app signs with `pkcs11` and certificate `cert`.
async fn server_with_token(pkcs11: Pkcs11Config, cert: PathBuf) -> TestServer {
    TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            let app = &mut config.apps[0];
            app.signing_key = None;
            app.signing_pkcs11 = Some(pkcs11);
            app.signing_cert = cert;
        }),
        ..Options::default()
    })
    .await
}

fn xmlsec1_verifies(assertion: &str, cert: &Path) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let xml = dir.path().join("assertion.xml");
    std::fs::write(&xml, assertion).unwrap();
    let output = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(cert)
        .arg("--id-attr:AssertionID")
        .arg("urn:oasis:names:tc:SAML:1.0:assertion:Assertion")
        .arg(&xml)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("xmlsec1: {}", stderr.trim());
    output.status.success() && stderr.lines().any(|line| line.trim() == "OK")
}

/// `openssl x509 -fingerprint -sha256` of `cert`, lowercase without colons.
fn openssl_fingerprint(cert: &Path) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    text.trim()
        .rsplit('=')
        .next()
        .unwrap()
        .replace(':', "")
        .to_ascii_lowercase()
}

#[tokio::test]
async fn a_ws_trust_token_signed_in_the_token_verifies_with_xmlsec1() {
    let Some(fixture) = fixture() else { return };
    let server = server_with_token(fixture.table(TOKEN), fixture.cert()).await;
    let url = server.app_url("trust/13/usernamemixed");
    let reply = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let assertion = element(&reply.body, "RequestedSecurityToken").unwrap();
    assert!(xmlsec1_verifies(assertion, &fixture.cert()));
    // The same check fails against another key's certificate.
    assert!(!xmlsec1_verifies(assertion, &fixture.gone_cert));
    let health = server.request("GET", "/healthz", &[], vec![]).await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
    server.stop().await;
}

/// `Usage:` and `Access:` flags of the private key labelled `label` in `pkcs11-tool
/// --list-objects` output.
struct Protection {
    usage: Vec<String>,
    access: Vec<String>,
}

fn protection_of(listing: &str, label: &str) -> Protection {
    let block = listing
        .split("Private Key Object")
        .find(|block| {
            block
                .lines()
                .any(|line| line.trim() == format!("label:      {label}"))
        })
        .unwrap_or_else(|| panic!("no private key {label}: {listing}"));
    let flags = |name: &str| -> Vec<String> {
        block
            .lines()
            .find_map(|line| line.trim().strip_prefix(name))
            .unwrap_or_default()
            .split(',')
            .map(|flag| flag.trim().to_owned())
            .filter(|flag| !flag.is_empty())
            .collect()
    };
    Protection {
        usage: flags("Usage:"),
        access: flags("Access:"),
    }
}

#[test]
fn the_generated_key_is_sensitive_and_never_extractable() {
    let Some(fixture) = fixture() else { return };
    let output = fixture
        .hsm
        .command("pkcs11-tool")
        .arg("--module")
        .arg(&fixture.hsm.module)
        .args(["--token-label", TOKEN, "--login", "--pin", PIN])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("pkcs11-tool: {text}");
    assert!(output.status.success(), "{text}");
    let (generated, careless) = (
        protection_of(&text, KEY),
        protection_of(&text, EXTRACTABLE_KEY),
    );
    assert_eq!(generated.usage, ["sign"], "{text}");
    assert!(generated.access.contains(&"sensitive".to_owned()), "{text}");
    assert!(
        generated.access.contains(&"never extractable".to_owned()),
        "{text}"
    );
    assert!(
        !generated.access.contains(&"extractable".to_owned()),
        "{text}"
    );
    // The reading tells them apart: the key pkcs11-tool made extractable shows it.
    assert!(
        careless.access.contains(&"extractable".to_owned()),
        "{text}"
    );

    let check = fixture.keys_check(|example| example, PIN);
    let text = stdout(&check);
    assert!(check.status.success(), "{text}");
    assert!(
        text.contains("signed a test digest that verifies"),
        "{text}"
    );
    assert!(
        text.contains("the private key is sensitive and not extractable"),
        "{text}"
    );
    assert!(
        text.contains(&openssl_fingerprint(&fixture.cert())),
        "{text}"
    );

    // check-config --online runs the same check for PKCS#11 apps.
    let config = fixture.dir.path().join("fedsts.toml");
    let online = fedsts(
        &fixture.hsm,
        &["check-config", "--config", path_str(&config), "--online"],
        PIN,
    );
    let text = stdout(&online);
    assert!(online.status.success(), "{text}");
    assert!(
        text.contains("online: apps[0]: signing key in pkcs11 store matches CN=fedsts token signing - contoso.com"),
        "{text}"
    );
    let wrong_pin = fedsts(
        &fixture.hsm,
        &["check-config", "--config", path_str(&config), "--online"],
        "0000",
    );
    assert_eq!(wrong_pin.status.code(), Some(1), "{}", stdout(&wrong_pin));
    assert!(
        stdout(&wrong_pin)
            .contains("apps[0].signing_pkcs11: PKCS#11: the token refused the user PIN")
    );
    // Offline, the token is not touched: a wrong PIN is not noticed.
    let offline = fedsts(
        &fixture.hsm,
        &["check-config", "--config", path_str(&config)],
        "0000",
    );
    assert!(offline.status.success(), "{}", stdout(&offline));
}

/// An edit of the README example.
type Edit = Box<dyn Fn(String) -> String>;

#[test]
fn wrong_pin_missing_key_mismatch_and_missing_token_each_say_so() {
    let Some(fixture) = fixture() else { return };
    let cases: [(&str, Edit, &str, &str); 4] = [
        (
            "wrong PIN",
            Box::new(|e| e),
            "not-the-pin",
            "refused the user PIN (CKR_PIN_INCORRECT)",
        ),
        (
            "missing key",
            Box::new(|e| e.replace("key_label = \"token-signing\"", "key_label = \"absent\"")),
            PIN,
            "holds no RSA private key with label \"absent\"",
        ),
        (
            "key/certificate mismatch",
            Box::new(|e| e.replace("certs/signing.crt", "certs/gone.crt")),
            PIN,
            "does not match the public key of certificate",
        ),
        (
            "missing token",
            Box::new(|e| e.replace("token_label = \"fedsts\"", "token_label = \"nowhere\"")),
            PIN,
            "token \"nowhere\" is not present in",
        ),
    ];
    let mut messages = Vec::new();
    for (case, edit, pin, expected) in &cases {
        let output = fixture.keys_check(edit, pin);
        let text = stdout(&output);
        assert_eq!(output.status.code(), Some(1), "{case}: {text}");
        assert!(text.contains("apps[0].signing_pkcs11: "), "{case}: {text}");
        assert!(text.contains(expected), "{case}: {text}");
        messages.push(text);
    }
    messages.dedup();
    assert_eq!(
        messages.len(),
        cases.len(),
        "each failure has its own message"
    );
}

#[tokio::test]
async fn a_wrong_pin_stops_the_start_naming_the_key() {
    let Some(fixture) = fixture() else { return };
    let mut pkcs11 = fixture.table(TOKEN);
    pkcs11.pin = Some(Secret::new("wrong".to_owned()));
    let mut config = fedsts::first_run::prepare(fixture.dir.path(), "127.0.0.1:0")
        .unwrap()
        .config;
    config.apps[0].signing_key = None;
    config.apps[0].signing_pkcs11 = Some(pkcs11);
    config.apps[0].signing_cert = fixture.cert();
    let store = std::sync::Arc::new(fedsts::state::memory::MemoryStore::new("t"));
    let error = fedsts::sts::Sts::with_state(
        &config,
        std::sync::Arc::new(fedsts::clock::SystemClock),
        store,
    )
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("apps[0].signing_pkcs11: "), "{error}");
    assert!(error.contains("CKR_PIN_INCORRECT"), "{error}");
}

#[tokio::test]
async fn a_token_removed_while_serving_is_a_request_failed_fault_and_unhealthy() {
    let Some(fixture) = fixture() else { return };
    let server = server_with_token(fixture.table(GONE_TOKEN), fixture.gone_cert.clone()).await;
    let url = server.app_url("trust/13/usernamemixed");
    let first = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!(first.status, 200, "{}", first.body);
    let direct = Pkcs11Signer::open(&fixture.table(GONE_TOKEN)).unwrap();
    assert_eq!(direct.sign(b"before").unwrap().len(), 256);
    std::fs::remove_dir_all(&fixture.gone_token_dir).unwrap();
    let error = direct.sign(b"after").unwrap_err();
    eprintln!("signing after the token directory was removed: {error}");
    assert!(matches!(error, Pkcs11Error::TokenGone { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with("the token or its key is gone ("),
        "{error}"
    );
    let started = Instant::now();
    let reply = server
        .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(
        fault_subcode(&reply.body),
        Some("RequestFailed"),
        "{}",
        reply.body
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let health = server.request("GET", "/healthz", &[], vec![]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "unhealthy: app demo signing key\n")
    );
    server.stop().await;
}

/// A `fedsts serve` child process, killed on drop.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET /healthz` on the plain-HTTP health listener: (status line, body), or `None`.
fn healthz(port: u16) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply).ok()?;
    Some(reply)
}

#[test]
fn the_readme_example_serves_and_audit_by_key_attributes_its_log() {
    let Some(fixture) = fixture() else { return };
    if !common::require_tool("curl") || !common::require_tool("openssl") {
        return;
    }
    let (port, health_port) = (common::free_port(), common::free_port());
    // The example verbatim, but for the domain of the test users.
    let app = readme_example()
        .replace(
            "/usr/lib/softhsm/libsofthsm2.so",
            &fixture.hsm.module.display().to_string(),
        )
        .replace("domain = \"contoso.com\"", "domain = \"example.com\"");
    let config = fixture.dir.path().join("serve.toml");
    let text = config_text(&app)
        .replace("127.0.0.1:0", &format!("127.0.0.1:{port}"))
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .replace(
            "\n[[apps]]",
            &format!(
                "[server.connections]\nhealth_listen = \"127.0.0.1:{health_port}\"\n\n[[apps]]"
            ),
        );
    std::fs::write(&config, text).unwrap();
    let log_file = fixture.dir.path().join("serve.jsonl");
    let child = fixture
        .hsm
        .command(env!("CARGO_BIN_EXE_fedsts"))
        .args(["serve", "--config", path_str(&config)])
        .env(PIN_ENV, PIN)
        .env("FEDSTS_LOG_FORMAT", "json")
        .stderr(std::fs::File::create(&log_file).unwrap())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut served = Served(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !healthz(health_port).is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
        assert!(
            served.0.try_wait().unwrap().is_none(),
            "fedsts serve exited: {}",
            std::fs::read_to_string(&log_file).unwrap()
        );
        assert!(Instant::now() < deadline, "fedsts serve did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("https://127.0.0.1:{port}/wsfed/contoso/trust/13/usernamemixed");
    let request = fixture.dir.path().join("rst.xml");
    std::fs::write(&request, rst("13", &url, Some((ALICE, PASSWORD)))).unwrap();
    let reply = Command::new("curl")
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(fixture.dir.path().join("certs/tls.crt"))
        .args([
            "-H",
            "Content-Type: application/soap+xml; charset=utf-8",
            "--data-binary",
        ])
        .arg(format!("@{}", request.display()))
        .arg(&url)
        .output()
        .unwrap();
    let body = String::from_utf8(reply.stdout).unwrap();
    let assertion = element(&body, "RequestedSecurityToken").unwrap_or_else(|| panic!("{body}"));
    assert!(xmlsec1_verifies(assertion, &fixture.cert()));
    drop(served);

    let fingerprint = openssl_fingerprint(&fixture.cert());
    assert_eq!(fingerprint.len(), 64);
    let log = std::fs::read_to_string(&log_file).unwrap();
    let issued: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|v| v["target"] == "fedsts::audit" && v["fields"]["decision"] == "issued")
        .collect();
    assert_eq!(issued.len(), 1, "{log}");
    assert_eq!(issued[0]["fields"]["signing_store"], "pkcs11");
    assert_eq!(
        issued[0]["fields"]["signing_key_sha256"],
        fingerprint.as_str()
    );
    let assertion_id = issued[0]["fields"]["assertion_id"].as_str().unwrap();
    assert!(assertion.contains(assertion_id));

    // The assertion is listed under the configured key; with a configuration whose
    // certificate is another key's, the same log is flagged (exit 1).
    let by_key = fedsts(
        &fixture.hsm,
        &[
            "audit",
            "by-key",
            "--config",
            path_str(&config),
            "--log",
            path_str(&log_file),
        ],
        PIN,
    );
    let text = stdout(&by_key);
    assert!(by_key.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "key {fingerprint} (configured: apps[0].signing_cert (contoso); store pkcs11): 1 assertion(s), first "
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!("assertion={assertion_id}")),
        "{text}"
    );
    assert!(text.contains(&format!("user={ALICE}")), "{text}");
    let other = fixture.dir.path().join("gone.toml");
    let flagged = fedsts(
        &fixture.hsm,
        &[
            "audit",
            "by-key",
            "--config",
            path_str(&other),
            "--log",
            path_str(&log_file),
        ],
        PIN,
    );
    assert_eq!(flagged.status.code(), Some(1), "{}", stdout(&flagged));
    assert!(stdout(&flagged).contains(&format!("key {fingerprint} (NOT A CONFIGURED KEY")));
}

/// A `p11-kit server` exporting the `hang` token, in its own process group (frozen and killed
/// by group id).
struct P11KitServer(std::process::Child);

impl P11KitServer {
    fn signal(&self, signal: &str) {
        let group = format!("-{}", self.0.id());
        let status = Command::new("kill")
            .args([signal, "--", &group])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {group}");
    }
}

impl Drop for P11KitServer {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.signal("-KILL");
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_that_stops_answering_fails_requests_in_time_and_recovers() {
    use std::os::unix::process::CommandExt as _;
    let Some(fixture) = fixture() else { return };
    let client = P11_KIT_CLIENTS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from(P11_KIT_CLIENTS[0]));
    if !common::require_tool("p11-kit")
        || !common::require_path(&client, "apt-get install p11-kit-modules")
    {
        return;
    }

    let socket = fixture.dir.path().join("p11-kit.sock");
    let child = fixture
        .hsm
        .command("p11-kit")
        .arg("server")
        .arg("--provider")
        .arg(&fixture.hsm.module)
        .args(["-f", "-n"])
        .arg(&socket)
        .arg(format!("pkcs11:token={HANG_TOKEN}"))
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let p11_kit = P11KitServer(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "p11-kit server made no socket");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut pkcs11 = fixture.table(HANG_TOKEN);
    pkcs11.module = client.clone();
    pkcs11.timeout_secs = Some(1);
    pkcs11.sessions = Some(2);
    let cert = fixture.dir.path().join("certs/hang.crt");
    let server = std::sync::Arc::new(server_with_token(pkcs11, cert.clone()).await);
    let url = server.app_url("trust/13/usernamemixed");
    let issue = |server: std::sync::Arc<TestServer>| {
        let url = url.clone();
        async move {
            server
                .post_soap(&path_of(&url), rst("13", &url, Some((ALICE, PASSWORD))))
                .await
        }
    };
    let first = issue(server.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let assertion = element(&first.body, "RequestedSecurityToken").unwrap();
    assert!(xmlsec1_verifies(assertion, &cert));

    let mut direct_table = fixture.table(HANG_TOKEN);
    direct_table.module = client.clone();
    direct_table.timeout_secs = Some(1);
    direct_table.sessions = Some(2);
    let direct = std::sync::Arc::new(Pkcs11Signer::open(&direct_table).unwrap());
    p11_kit.signal("-STOP");
    let started = Instant::now();
    let frozen = issue(server.clone()).await;
    assert_eq!(frozen.status, 500, "{}", frozen.body);
    assert_eq!(fault_subcode(&frozen.body), Some("RequestFailed"));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let health = server.request("GET", "/healthz", &[], vec![]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "unhealthy: app demo signing key\n")
    );
    // Many signatures at once against the frozen token (its own pool of 2 sessions, opened
    // before the freeze): every one fails with a timeout or at once as busy, none hangs.
    let started = Instant::now();
    let callers: Vec<_> = (0..24)
        .map(|i| {
            let signer = direct.clone();
            std::thread::spawn(move || signer.sign(format!("m{i}").as_bytes()).unwrap_err())
        })
        .collect();
    let errors: Vec<String> = callers
        .into_iter()
        .map(|c| match c.join().unwrap() {
            e @ (Pkcs11Error::Timeout { .. } | Pkcs11Error::Busy { .. }) => e.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("did not answer within 1 s")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("every PKCS#11 session is busy")),
        "{errors:?}"
    );
    // Opening the frozen token (a restart now) ends in 4 × timeout_secs, not never.
    let started = Instant::now();
    let opening = Pkcs11Signer::open(&direct_table).unwrap_err();
    assert!(
        matches!(opening, Pkcs11Error::Timeout { secs: 4 }),
        "{opening:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );

    p11_kit.signal("-CONT");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = server.request("GET", "/healthz", &[], vec![]).await;
        if health.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the token answers again but /healthz stays {}",
            health.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let after = issue(server.clone()).await;
    assert_eq!(after.status, 200, "{}", after.body);
    drop(p11_kit);
}

#[test]
fn keys_check_warns_about_a_key_that_can_leave_the_token() {
    let Some(fixture) = fixture() else { return };
    let check = fixture.keys_check(
        |example| {
            example
                .replace(
                    "key_label = \"token-signing\"",
                    &format!("key_label = \"{EXTRACTABLE_KEY}\""),
                )
                .replace("certs/signing.crt", "certs/extractable.crt")
        },
        PIN,
    );
    let text = stdout(&check);
    assert!(check.status.success(), "a warning, not a problem: {text}");
    assert!(
        text.contains("signed a test digest that verifies"),
        "{text}"
    );
    assert!(
        text.contains("warning: apps[0].signing_pkcs11: the private key is sensitive and extractable: it can leave the token"),
        "{text}"
    );
}

#[test]
fn the_pin_comes_from_a_file_or_a_variable_that_must_be_set() {
    let Some(fixture) = fixture() else { return };
    let pin_file = fixture.dir.path().join("pkcs11.pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    let from_file = fixture.keys_check(
        |example| {
            example.replace(
                "pin_env = \"FEDSTS_PKCS11_PIN\"",
                &format!("pin_file = \"{}\"", pin_file.display()),
            )
        },
        "not-the-pin",
    );
    assert!(from_file.status.success(), "{}", stdout(&from_file));

    let config = fixture.dir.path().join("fedsts.toml");
    let unset = fixture
        .hsm
        .command(env!("CARGO_BIN_EXE_fedsts"))
        .args(["keys", "check", "--config", path_str(&config)])
        .env_remove(PIN_ENV)
        .output()
        .unwrap();
    let text = stdout(&unset);
    assert_eq!(unset.status.code(), Some(1), "{text}");
    assert!(
        text.contains("pin_env: environment variable FEDSTS_PKCS11_PIN is not set"),
        "{text}"
    );
    assert!(!text.contains(PIN), "the PIN is never printed: {text}");
}
