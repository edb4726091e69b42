//! A real browser through passive WS-Federation: headless Debian Chromium driven over WebDriver
//! (chromedriver) signs in SP-initiated with a `wctx` round trip, gets SSO on a second request,
//! is asked for the password again with `wfresh=0`, signs out, starts from the IdP-initiated
//! tile, and passes a TOTP step-up; a user under a passive device-trust policy, coming from
//! Entra without a device certificate, sees the explained OOBE page. Every response is posted by the browser to a local receiver
//! (`tests/browser/receiver.js`) that validates `wresult` with Auth0's passport-wsfed-saml2
//! (signature against our signing certificate, audience, lifetime) and checks the issuer.
//!
//! A user who must change the password gets the change form, changes it and is signed in.
//!
//! A second test enrols a TOTP authenticator during sign-in (`passive.totp_self_enrolment`):
//! the browser reads the key off the QR page, types the first code, and the receiver gets a
//! token with MFA; ZBar (`zbarimg`, what reads QR codes on Linux) decodes the QR code in the
//! screenshot to the page's `otpauth://` URI.
//!
//! Also writes the sign-in page screenshot to `target/signin.png` (README: docs/signin.png) and
//! the change form's to `target/password-change.png` (README: docs/password-change.png), the enrolment page to
//! `target/totp-enrol.png` (README: docs/totp-enrol.png). `browser_uses_the_portal` takes the user
//! portal through the same browser and receiver and writes `target/portal.png` and
//! `target/portal-notice.png` (README: docs/).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::server::{ALICE, Options, PASSWORD, TestServer, users_file_with_totp_user};
use fedsts::clock::SystemClock;
use fedsts::totp::{self, TotpKey};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REALM: &str = "urn:federation:MicrosoftOnline";
const WCTX: &str = "LoginOptions=3&estsredirect=2&estsrequest=rQQIARAAjZ<\"é'>+/=";
const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// The W3C WebDriver key of an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";
/// A user covered by a passive device-trust policy.
const ERIN: &str = "erin@example.com";
/// A user who must change the password at the next sign-in.
const MIKE: &str = "mike@example.com";

/// Adds erin (dave's password hash and secret) to a users file.
fn add_erin(users: &Path) {
    let text = std::fs::read_to_string(users).unwrap();
    let dave = &text[text.rfind("[[users]]").unwrap()..];
    let erin = dave
        .replace(DAVE, ERIN)
        .replace("dave-immutable", "erin-immutable");
    std::fs::write(users, format!("{text}\n{erin}")).unwrap();
}

/// Adds mike (dave's password hash, no secret) who must change his password.
fn add_mike(users: &Path) {
    let text = std::fs::read_to_string(users).unwrap();
    let dave_at = text.find(&format!("upn = \"{DAVE}\"")).unwrap();
    let start = text[..dave_at].rfind("[[users]]").unwrap();
    let end = text[dave_at..]
        .find("[[users]]")
        .map_or(text.len(), |n| dave_at + n);
    let mike = text[start..end]
        .replace(DAVE, MIKE)
        .replace("dave-immutable", "mike-immutable")
        .replace(
            &format!("totp_secret = \"{DAVE_SECRET}\""),
            "must_change_password = true",
        );
    std::fs::write(users, format!("{text}\n{mike}")).unwrap();
}

/// A device CA certificate (PEM) no device here has a certificate from.
fn device_ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    rcgen::CertifiedIssuer::self_signed(params, key)
        .unwrap()
        .pem()
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the receiver; returns it and its port.
fn start_receiver(dir: &Path, signing_cert: &Path, issuer: &str) -> (Process, u16) {
    let tls = fedsts::crypto::generate_self_signed("receiver", &["127.0.0.1".into()], 2).unwrap();
    std::fs::write(dir.join("receiver.crt"), tls.certificate_pem).unwrap();
    std::fs::write(dir.join("receiver.key"), tls.private_key_pem).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/receiver.js");
    let mut child = Command::new("node")
        .arg(script)
        .arg(dir.join("receiver.crt"))
        .arg(dir.join("receiver.key"))
        .arg(signing_cert)
        .arg(issuer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .strip_prefix("listening ")
        .unwrap()
        .parse()
        .unwrap();
    (Process(child), port)
}

/// A minimal W3C WebDriver client over plain HTTP to chromedriver.
struct WebDriver {
    port: u16,
    session: String,
}

async fn http(port: u16, method: &str, path: &str, body: Option<Value>) -> Value {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    // chromedriver may keep the connection open: read the head, then Content-Length bytes.
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_len, length) = loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&raw);
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().unwrap())
                })
                .expect("chromedriver answers with Content-Length");
            break (end + 4, length);
        }
    };
    while raw.len() < head_len + length {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "chromedriver closed the connection early");
        raw.extend_from_slice(&buf[..n]);
    }
    serde_json::from_slice(&raw[head_len..head_len + length]).unwrap()
}

impl WebDriver {
    async fn start(port: u16, profile: &Path) -> Self {
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--window-size=900,760",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args}
        }}});
        let reply = http(port, "POST", "/session", Some(capabilities)).await;
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        Self { port, session }
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        http(self.port, method, &path, body).await["value"].clone()
    }

    async fn go(&self, url: &str) {
        eprintln!("browser: {url}");
        self.call("POST", "/url", Some(json!({ "url": url }))).await;
    }

    /// The element matching `css`, waiting for the page to show it (navigation, auto-post).
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self
                .call(
                    "POST",
                    "/element",
                    Some(json!({"using": "css selector", "value": css})),
                )
                .await;
            if let Some(id) = found[ELEMENT_KEY].as_str() {
                return id.to_owned();
            }
            let url = self.call("GET", "/url", None).await;
            assert!(Instant::now() < deadline, "no `{css}` on {url}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{element}/clear"),
            Some(json!({})),
        )
        .await;
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.call(
            "POST",
            &format!("/element/{element}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.call("GET", &format!("/element/{element}/text"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The receiver's JSON verdict on the token the browser posted.
    async fn receiver_result(&self) -> Value {
        serde_json::from_str(&self.text("#result").await).unwrap()
    }

    async fn screenshot(&self, path: &Path) {
        let png = self.call("GET", "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    async fn attribute(&self, css: &str, name: &str) -> String {
        let element = self.find(css).await;
        self.call("GET", &format!("/element/{element}/attribute/{name}"), None)
            .await
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Resizes the window (a taller page in one screenshot).
    async fn resize(&self, width: u32, height: u32) {
        self.call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        )
        .await;
    }

    async fn quit(self) {
        http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        )
        .await;
    }
}

fn assert_accepted(result: &Value, wctx: &str, mfa: bool) {
    assert_eq!(result["ok"], true, "receiver refused the token: {result}");
    assert_eq!(result["wa"], "wsignin1.0");
    assert_eq!(result["wctx"], wctx);
    assert_eq!(result["issuer"], "example.com");
    let amr =
        result["claims"]["http://schemas.microsoft.com/claims/authnmethodsreferences"].to_string();
    assert_eq!(amr.contains(MULTIPLE_AUTHN), mfa, "{result}");
}

fn tools_present() -> bool {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/passport-wsfed-saml2");
    common::require_tool("chromium")
        && common::require_tool("chromedriver")
        && common::require_tool("node")
        && common::require_path(&modules, "run `npm ci` in tests/browser")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_through_passive_wsfed() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let signing_copy = dir.path().join("signing.pem");
    let (_receiver, receiver_port) = start_receiver(dir.path(), &signing_copy, "example.com");
    let reply_url = format!("https://127.0.0.1:{receiver_port}/");
    let server = TestServer::start_with(Options {
        clock: Arc::new(SystemClock),
        configure: Box::new(move |config, server_dir| {
            let users = users_file_with_totp_user(
                server_dir,
                "browser-users.toml",
                DAVE,
                "dave-immutable",
                DAVE_SECRET,
            );
            add_erin(&users);
            add_mike(&users);
            config.directories.insert(
                "demo".into(),
                fedsts::config::DirectoryConfig::File { path: users },
            );
            let ca_file = server_dir.join("device-ca.pem");
            std::fs::write(&ca_file, device_ca_pem()).unwrap();
            config.device_trust = Some(fedsts::config::DeviceTrustConfig {
                ca_file,
                crl_file: None,
            });
            config.apps[0].device_trust = Some(fedsts::config::AppDevicePolicy {
                flows: vec![fedsts::config::device::Flow::Passive],
                users: vec![ERIN.into()],
                groups: vec![],
            });
            config.apps[0].passive.reply_url = reply_url.clone();
            config.apps[0].display_name = Some("Example Inc.".into());
        }),
        ..Options::default()
    })
    .await;
    std::fs::copy(&server.signing_cert_path, &signing_copy).unwrap();

    let driver_port = common::free_port();
    let _chromedriver = Process(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    eprintln!("receiver on {receiver_port}, chromedriver on {driver_port}");
    let browser = WebDriver::start(driver_port, &dir.path().join("profile")).await;
    let passive = server.app_url("").trim_end_matches('/').to_owned();
    let sign_in = |extra: &[(&str, &str)]| {
        let mut fields = vec![("wa", "wsignin1.0"), ("wtrealm", REALM), ("wctx", WCTX)];
        fields.extend_from_slice(extra);
        format!("{passive}?{}", common::passive::form(&fields))
    };

    // SP-initiated with a login hint and Entra's wctx.
    browser.go(&sign_in(&[("username", ALICE)])).await;
    browser.find("#password").await;
    // `target/` is missing when CARGO_TARGET_DIR points elsewhere.
    let screenshot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/signin.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    browser.screenshot(&screenshot).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert_accepted(&browser.receiver_result().await, WCTX, false);

    // SSO: no form the second time.
    browser.go(&sign_in(&[])).await;
    assert_accepted(&browser.receiver_result().await, WCTX, false);

    // wfresh=0: the password again.
    browser.go(&sign_in(&[("wfresh", "0")])).await;
    browser.find("#password").await;

    // Sign-out, then the IdP-initiated tile needs the password and posts an empty wctx.
    browser.go(&format!("{passive}?wa=wsignout1.0")).await;
    assert_eq!(
        browser.text("#message").await,
        "You are signed out. You can close this window."
    );
    browser.go(&format!("{passive}/launch")).await;
    browser.type_into("#username", ALICE).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    assert_accepted(&browser.receiver_result().await, "", false);

    // TOTP step-up when Entra asks for MFA (another user: sign out first).
    browser.go(&format!("{passive}?wa=wsignout1.0")).await;
    browser
        .go(&sign_in(&[("wauth", MULTIPLE_AUTHN), ("username", DAVE)]))
        .await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    let code = totp::current_code(
        &TotpKey::from_base32(DAVE_SECRET).unwrap(),
        time::OffsetDateTime::now_utc(),
    );
    browser.type_into("#totp", &code).await;
    browser.click("button[type=submit]").await;
    assert_accepted(&browser.receiver_result().await, WCTX, true);

    // Windows setup's web view: Entra's request, no device certificate, device trust required.
    browser.go(&format!("{passive}?wa=wsignout1.0")).await;
    browser.go(&sign_in(&[("username", ERIN)])).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    // Wait for the refusal page (its own element) before reading the heading both pages have.
    let actions = browser.text("#admin-actions").await;
    assert!(
        actions.contains("Exclude the enrolment users or group from the device-trust policy")
            && actions.contains("Or join the device first"),
        "{actions}"
    );
    assert_eq!(
        browser.text("h1").await,
        "This sign-in requires a trusted company device, which cannot be proven during Windows setup."
    );
    assert!(browser.text("#message").await.starts_with(
        "Windows setup (joining this PC to Microsoft Entra ID) and the first sign-in to Windows happen before the device has its company certificate"
    ));

    // A password that must be changed: the change form, then the sign-in goes on.
    browser.go(&format!("{passive}?wa=wsignout1.0")).await;
    browser.go(&sign_in(&[("username", MIKE)])).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    browser.find("#new_password").await;
    assert!(
        browser
            .text("#error")
            .await
            .starts_with("You must change your password before you sign in.")
    );
    let screenshot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/password-change.png");
    browser.screenshot(&screenshot).await;
    browser.type_into("#old_password", PASSWORD).await;
    browser.type_into("#new_password", "a new pässword").await;
    browser
        .type_into("#confirm_password", "a new pässword")
        .await;
    browser.click("button[type=submit]").await;
    assert_accepted(&browser.receiver_result().await, WCTX, false);

    browser.quit().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_enrols_a_totp_authenticator_from_the_qr_page() {
    if !tools_present() || !common::require_tool("zbarimg") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let signing_copy = dir.path().join("signing.pem");
    let (_receiver, receiver_port) = start_receiver(dir.path(), &signing_copy, "example.com");
    let reply_url = format!("https://127.0.0.1:{receiver_port}/");
    let server = TestServer::start_with(Options {
        clock: Arc::new(SystemClock),
        configure: Box::new(move |config, _| {
            config.apps[0].passive.reply_url = reply_url.clone();
            config.apps[0].passive.totp_self_enrolment = true;
            config.apps[0].display_name = Some("Example Inc.".into());
        }),
        ..Options::default()
    })
    .await;
    std::fs::copy(&server.signing_cert_path, &signing_copy).unwrap();
    let driver_port = common::free_port();
    let _chromedriver = Process(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let browser = WebDriver::start(driver_port, &dir.path().join("profile")).await;
    browser.resize(900, 1180).await;
    let passive = server.app_url("").trim_end_matches('/').to_owned();
    let fields = [
        ("wa", "wsignin1.0"),
        ("wtrealm", REALM),
        ("wctx", WCTX),
        ("wauth", MULTIPLE_AUTHN),
        ("username", ALICE),
    ];
    browser
        .go(&format!("{passive}?{}", common::passive::form(&fields)))
        .await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;

    // The QR page: an inline SVG (no script, no image URL), the key and the otpauth link.
    browser.find("#qr svg").await;
    assert_eq!(browser.text("h1").await, "Set up your authenticator");
    let screenshot = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/totp-enrol.png");
    std::fs::create_dir_all(screenshot.parent().unwrap()).unwrap();
    browser.screenshot(&screenshot).await;
    let uri = browser.attribute("#otpauth", "href").await;
    let decoded = Command::new("zbarimg")
        .args(["--raw", "-q"])
        .arg(&screenshot)
        .output()
        .unwrap();
    assert!(decoded.status.success(), "zbarimg found no QR code");
    assert_eq!(String::from_utf8(decoded.stdout).unwrap().trim(), uri);
    let secret = TotpKey::from_base32(&browser.text("#secret").await).unwrap();
    assert!(
        uri.contains(&format!("secret={}&", secret.to_base32())),
        "{uri}"
    );
    assert!(
        uri.starts_with("otpauth://totp/Example%20Inc.:alice@example.com?"),
        "{uri}"
    );
    let code = totp::current_code(&secret, time::OffsetDateTime::now_utc());
    browser.type_into("#totp", &code).await;
    browser.click("button[type=submit]").await;
    assert_accepted(&browser.receiver_result().await, WCTX, true);

    browser.quit().await;
    server.stop().await;
}

/// A user of `eu.example.com`, which two apps cover (two tiles).
const PAT: &str = "pat@eu.example.com";

/// The user portal in Chromium: sign in at `/`, acknowledge the notice, see the tiles (logo,
/// name), open one (IdP-initiated, no second password; the receiver validates the token), come
/// back to the tiles, sign out. Screenshots: `target/portal-notice.png`, `target/portal.png`
/// (README: docs/portal-notice.png, docs/portal.png).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_uses_the_portal() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let signing_copy = dir.path().join("signing.pem");
    let (_receiver, receiver_port) = start_receiver(dir.path(), &signing_copy, "example.com");
    let reply_url = format!("https://127.0.0.1:{receiver_port}/");
    let server = TestServer::start_with(Options {
        clock: Arc::new(SystemClock),
        configure: Box::new(move |config, server_dir| {
            let users = users_file_with_totp_user(
                server_dir,
                "portal-users.toml",
                PAT,
                "pat-immutable",
                DAVE_SECRET,
            );
            config.directories.insert(
                "demo".into(),
                fedsts::config::DirectoryConfig::File { path: users },
            );
            let demo = &mut config.apps[0];
            demo.passive.reply_url = reply_url.clone();
            demo.portal.tile_name = Some("Microsoft 365".into());
            demo.portal.logo =
                Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/tile-logo.png"));
            let mut europe = demo.clone();
            europe.id = "europe".into();
            europe.domain = "eu.example.com".into();
            europe.issuer_uri = "urn:europe".into();
            europe.portal.tile_name = Some("Microsoft 365 (Europe)".into());
            europe.portal.logo = None;
            config.apps.push(europe);
            config.portal.enabled = true;
            config.portal.name = Some("Example Inc.".into());
            config.portal.notice = Some(fedsts::config::NoticeConfig {
                version: "2026-12".into(),
                text: "From 1 January, passwords expire after 90 days.\n\nChange yours before then from this portal: Change your password.".into(),
            });
        }),
        ..Options::default()
    })
    .await;
    std::fs::copy(&server.signing_cert_path, &signing_copy).unwrap();

    let driver_port = common::free_port();
    let _chromedriver = Process(
        Command::new("chromedriver")
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let browser = WebDriver::start(driver_port, &dir.path().join("profile")).await;
    let portal = format!("{}/", server.base_url);
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();

    browser.go(&portal).await;
    assert_eq!(
        browser.text(".hint").await,
        "Sign in with your Example Inc. account."
    );
    browser.type_into("#username", PAT).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;

    // The notice first, until it is acknowledged.
    assert!(
        browser
            .text("#notice")
            .await
            .starts_with("From 1 January, passwords expire after 90 days.")
    );
    browser.screenshot(&target.join("portal-notice.png")).await;
    browser.click("#acknowledge button").await;

    // Two apps cover eu.example.com: two tiles, in name order.
    let tiles = browser.text("#tiles").await;
    assert_eq!(tiles, "Microsoft 365\nMicrosoft 365 (Europe)", "{tiles}");
    browser.screenshot(&target.join("portal.png")).await;
    browser.click("a.tile[href$='/wsfed/demo/launch']").await;
    let result = browser.receiver_result().await;
    assert_accepted(&result, "", false);
    assert_eq!(
        result["claims"]["http://schemas.xmlsoap.org/claims/UPN"], PAT,
        "{result}"
    );

    // Back at the portal: still signed in, no notice again; then sign-out.
    browser.go(&portal).await;
    browser.find("#tiles").await;
    browser.click("#signout button").await;
    assert!(
        browser
            .text("#message")
            .await
            .starts_with("You are signed out of the portal")
    );
    browser.go(&portal).await;
    browser.find("#password").await;

    browser.quit().await;
    server.stop().await;
}
