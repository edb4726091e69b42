//! Reload without downtime, on a real `fedsts serve` process driven by SIGHUP: under load from a
//! few concurrent clients (bounded in count and time, loopback only), a rotated TLS certificate
//! is served to new connections and a changed password applies, with no failed request; a
//! token-signing pair replaced in place signs the next token; a broken or restart-only change is
//! refused by key and the running configuration keeps serving;
//! a burst of SIGHUPs makes at most two reloads; replay marks and browser sessions survive a
//! reload.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fedsts::crypto::generate_self_signed;
use fedsts::directory::file::hash_password;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_fedsts");
/// The user the load clients sign in as; its password never changes.
const LOAD_USER: (&str, &str) = ("load@example.com", "load-password-1");
/// The user whose password a test changes.
const ALICE: &str = "alice@example.com";
const ALICE_OLD: &str = "old-password-1";
const ALICE_NEW: &str = "new-password-2";
/// Concurrent load clients.
const CLIENTS: usize = 3;
/// Longest any wait in these tests lasts.
const DEADLINE: Duration = Duration::from_secs(60);

/// A `fedsts serve --config` process with its files.
struct Served {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    config_text: String,
    /// Every TLS certificate a client of this server may be shown.
    trusted: Vec<PathBuf>,
}

impl Served {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        write_pair(dir.path(), "tls", "localhost");
        write_pair(dir.path(), "signing", "reload test token signing");
        write_users(dir.path(), ALICE_OLD);
        let port = common::free_port();
        let config_text = config_text(port);
        std::fs::write(dir.path().join("fedsts.toml"), &config_text).unwrap();
        let config = dir.path().join("fedsts.toml");
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("FEDSTS_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (banner, printed) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead as _;
            let mut said = false;
            for line in std::io::BufReader::new(stdout).lines() {
                if !said && line.is_ok_and(|l| l.starts_with("fedsts listening")) {
                    let _ = banner.send(());
                    said = true;
                }
            }
        });
        let served = Self {
            child,
            trusted: vec![dir.path().join("tls.crt")],
            dir,
            port,
            config_text,
        };
        assert!(
            printed.recv_timeout(DEADLINE).is_ok(),
            "serve printed no banner: {}",
            served.log()
        );
        served
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.path("serve.log")).unwrap_or_default()
    }

    fn count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Sends SIGHUP and waits until the server logged one more reload outcome; returns the log.
    fn reload(&self) -> String {
        let outcomes = |s: &Self| s.count("reload: done") + s.count("reload refused");
        let before = outcomes(self);
        self.hangup();
        let started = Instant::now();
        while outcomes(self) == before {
            assert!(
                started.elapsed() < DEADLINE,
                "no reload outcome: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.log()
    }

    fn write_config(&self, text: &str) {
        replace_file(&self.path("fedsts.toml"), text.as_bytes());
    }

    fn url_path(&self) -> &'static str {
        "/wsfed/app1/trust/13/usernamemixed"
    }

    fn to(&self) -> String {
        format!("https://localhost:{}{}", self.port, self.url_path())
    }

    fn client(&self) -> Client {
        Client::new(self.port, &self.trusted)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `bytes` to `path` by renaming a sibling into place, as an admin's deploy should: a
/// reader sees the old file or the new one, never half of one.
fn replace_file(path: &Path, bytes: &[u8]) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, bytes).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// A self-signed pair `{name}.crt` / `{name}.key` in `dir`.
fn write_pair(dir: &Path, name: &str, common_name: &str) {
    let pair = generate_self_signed(common_name, &["localhost".to_owned()], 30).unwrap();
    replace_file(
        &dir.join(format!("{name}.crt")),
        pair.certificate_pem.as_bytes(),
    );
    replace_file(
        &dir.join(format!("{name}.key")),
        pair.private_key_pem.as_bytes(),
    );
}

fn write_users(dir: &Path, alice_password: &str) {
    let load = hash_password(LOAD_USER.1).unwrap();
    let alice = hash_password(alice_password).unwrap();
    let text = format!(
        "[[users]]\nupn = \"{}\"\nimmutable_id = \"load-immutable\"\npassword = '{load}'\n\n[[users]]\nupn = \"{ALICE}\"\nimmutable_id = \"alice-immutable\"\npassword = '{alice}'\n",
        LOAD_USER.0
    );
    replace_file(&dir.join("users.toml"), text.as_bytes());
}

/// The test's configuration; rate limits off (every client is 127.0.0.1).
fn config_text(port: u16) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:{port}"
public_url = "https://localhost:{port}"
tls_cert = "tls.crt"
tls_key = "tls.key"

[rate_limit]
enabled = false

[[apps]]
id = "app1"
domain = "example.com"
issuer_uri = "example.com"
signing_cert = "signing.crt"
signing_key = "signing.key"
directory = "local"

[directories.local]
kind = "file"
path = "users.toml"
"#
    )
}

/// An HTTPS client trusting a fixed set of certificates.
#[derive(Clone)]
struct Client {
    port: u16,
    connector: tokio_rustls::TlsConnector,
}

/// One answer: status, body and the DER of the certificate the server presented.
struct Answer {
    status: u16,
    body: String,
    certificate: Vec<u8>,
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

impl Client {
    fn new(port: u16, trusted: &[PathBuf]) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        for path in trusted {
            for cert in CertificateDer::pem_file_iter(path).unwrap() {
                roots.add(cert.unwrap()).unwrap();
            }
        }
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        // Every new connection is a full handshake, so it shows the certificate served now.
        config.resumption = rustls::client::Resumption::disabled();
        Self {
            port,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
        }
    }

    /// A new keep-alive connection and the certificate it was shown.
    async fn connect(&self) -> Result<(Sender, Vec<u8>), String> {
        let tcp = TcpStream::connect(("127.0.0.1", self.port))
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let tls = self
            .connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let (sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
        tokio::spawn(connection);
        Ok((sender, certificate))
    }

    /// Posts a usernamemixed RST for `user` on `sender`.
    async fn sign_in_on(
        sender: &mut Sender,
        path: &str,
        body: String,
    ) -> Result<(u16, String), String> {
        let request = http::Request::builder()
            .method("POST")
            .uri(path)
            .header("host", "localhost")
            .header("content-type", "application/soap+xml; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// One sign-in on a new connection.
    async fn sign_in(&self, to: &str, user: (&str, &str)) -> Result<Answer, String> {
        self.send(to, common::wstrust::rst("13", to, Some(user)))
            .await
    }

    /// One RST body posted on a new connection.
    async fn send(&self, to: &str, body: String) -> Result<Answer, String> {
        let (mut sender, certificate) = self.connect().await?;
        let path = common::wstrust::path_of(to);
        let (status, body) = Self::sign_in_on(&mut sender, &path, body).await?;
        Ok(Answer {
            status,
            body,
            certificate,
        })
    }
}

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    ok: usize,
    failures: Vec<String>,
    certificates: Vec<Vec<u8>>,
}

/// `CLIENTS` clients signing in the load user, each on a new connection per request, until
/// `stop` (and at most a bounded number of requests each).
fn start_load(served: &Served, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Tally>> {
    (0..CLIENTS)
        .map(|_| {
            let client = served.client();
            let to = served.to();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                for _ in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match client.sign_in(&to, LOAD_USER).await {
                        Ok(answer) if answer.status == 200 => {
                            tally.ok += 1;
                            tally.certificates.push(answer.certificate);
                        }
                        Ok(answer) => tally
                            .failures
                            .push(format!("status {}: {}", answer.status, answer.body)),
                        Err(e) => tally.failures.push(e),
                    }
                }
                tally
            })
        })
        .collect()
}

fn der_of(path: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(path)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Waits (bounded) until `condition` holds.
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// [`Served::reload`] off the async threads (it sleeps while it polls the log).
async fn reload(served: &Arc<Served>) -> String {
    let served = served.clone();
    tokio::task::spawn_blocking(move || served.reload())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_tls_certificate_is_served_to_new_connections_with_no_failed_request() {
    let mut served = Served::start();
    let old_der = der_of(&served.path("tls.crt"));
    let next = tempfile::tempdir().unwrap();
    write_pair(next.path(), "tls", "localhost");
    let new_der = der_of(&next.path().join("tls.crt"));
    served.trusted.push(next.path().join("tls.crt"));

    // One keep-alive connection opened before the reload: it keeps its certificate and its
    // requests keep being answered.
    let (mut kept, kept_certificate) = served.client().connect().await.unwrap();
    assert_eq!(kept_certificate, old_der);

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&served, stop.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    for name in ["tls.crt", "tls.key"] {
        let bytes = std::fs::read(next.path().join(name)).unwrap();
        replace_file(&served.path(name), &bytes);
    }
    let served = Arc::new(served);
    let log = reload(&served).await;
    assert!(log.contains("reload: done"), "{log}");
    assert!(
        log.contains("server.tls_cert") && log.contains("server.tls_key"),
        "the reload names the changed files: {log}"
    );

    // New connections now see the new certificate, while the load goes on.
    let fresh = served
        .client()
        .sign_in(&served.to(), LOAD_USER)
        .await
        .unwrap();
    assert_eq!(fresh.status, 200);
    assert_eq!(fresh.certificate, new_der);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let path = served.url_path();
    let body = common::wstrust::rst("13", &served.to(), Some(LOAD_USER));
    let (status, _) = Client::sign_in_on(&mut kept, path, body).await.unwrap();
    assert_eq!(
        status, 200,
        "the connection opened before the reload still serves"
    );
    stop.store(true, Ordering::Relaxed);

    let mut total = Tally::default();
    for task in load {
        let tally = task.await.unwrap();
        total.ok += tally.ok;
        total.failures.extend(tally.failures);
        total.certificates.extend(tally.certificates);
    }
    assert!(
        total.failures.is_empty(),
        "failed requests: {:?}",
        total.failures
    );
    assert!(total.ok >= CLIENTS, "the load made {} requests", total.ok);
    let (old, new): (Vec<_>, Vec<_>) = total.certificates.iter().partition(|c| **c == old_der);
    assert!(
        new.iter().all(|c| **c == new_der),
        "only the two certificates were served"
    );
    eprintln!(
        "load: {} requests, {} on the old certificate, {} on the new",
        total.ok,
        old.len(),
        new.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_password_applies_after_a_reload_with_no_failed_request() {
    let served = Arc::new(Served::start());
    let client = served.client();
    let to = served.to();
    let old = client.sign_in(&to, (ALICE, ALICE_OLD)).await.unwrap();
    assert_eq!(old.status, 200, "{}", old.body);

    let stop = Arc::new(AtomicBool::new(false));
    let load = start_load(&served, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_users(served.dir.path(), ALICE_NEW);
    let log = reload(&served).await;
    assert!(log.contains("reload: done"), "{log}");
    assert!(log.contains("directories.local.path"), "{log}");
    assert!(!log.contains("was not published before"), "{log}");

    let refused = client.sign_in(&to, (ALICE, ALICE_OLD)).await.unwrap();
    assert_ne!(refused.status, 200, "the old password is refused");
    assert_eq!(
        common::wstrust::fault_subcode(&refused.body),
        Some("FailedAuthentication"),
        "{}",
        refused.body
    );
    let accepted = client.sign_in(&to, (ALICE, ALICE_NEW)).await.unwrap();
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for task in load {
        let tally = task.await.unwrap();
        assert!(
            tally.failures.is_empty(),
            "failed requests: {:?}",
            tally.failures
        );
        requests += tally.ok;
    }
    assert!(requests >= CLIENTS, "the load made {requests} requests");
}

/// The certificate in the assertion's signature, base64.
fn signing_certificate_of(body: &str) -> &str {
    let start = body.find("X509Certificate>").unwrap() + "X509Certificate>".len();
    let end = start + body[start..].find('<').unwrap();
    &body[start..end]
}

fn base64_of(path: &Path) -> String {
    fedsts::crypto::Certificate::from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .base64()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signing_pair_replaced_in_place_signs_after_a_reload() {
    let served = Arc::new(Served::start());
    let client = served.client();
    let to = served.to();
    let before = client.sign_in(&to, LOAD_USER).await.unwrap();
    assert_eq!(before.status, 200, "{}", before.body);
    let old = base64_of(&served.path("signing.crt"));
    assert_eq!(signing_certificate_of(&before.body), old);

    write_pair(served.dir.path(), "signing", "reload test token signing");
    let new = base64_of(&served.path("signing.crt"));
    assert_ne!(new, old);
    let log = reload(&served).await;
    assert!(log.contains("reload: done"), "{log}");
    assert!(
        log.contains("apps[0].signing_cert") && log.contains("apps[0].signing_key"),
        "{log}"
    );
    assert!(
        log.contains("was not published before"),
        "a certificate Entra was never shown is warned about: {log}"
    );
    let after = client.sign_in(&to, LOAD_USER).await.unwrap();
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(signing_certificate_of(&after.body), new);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_by_key_and_the_old_one_keeps_serving() {
    let served = Arc::new(Served::start());
    let client = served.client();
    let to = served.to();

    // A value out of range: refused with its key; the running configuration keeps serving.
    let broken = served.config_text.replace(
        "directory = \"local\"",
        "directory = \"local\"\ntoken_lifetime_secs = 0",
    );
    served.write_config(&broken);
    let log = reload(&served).await;
    assert!(
        log.contains("reload refused") && log.contains("apps[0].token_lifetime_secs"),
        "{log}"
    );
    let answer = client.sign_in(&to, LOAD_USER).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Not TOML at all, on a line holding a secret: refused with the line, the secret unlogged.
    let secret = "hunter2-do-not-log";
    served.write_config(&format!(
        "{}\n[state]\nredis_url = \"redis://:{secret}@127.0.0.1\n",
        served.config_text
    ));
    let log = reload(&served).await;
    assert_eq!(log.matches("reload refused").count(), 2, "{log}");
    assert!(log.contains("line "), "the refusal names the line: {log}");
    assert!(!log.contains(secret), "{log}");
    let answer = client.sign_in(&to, LOAD_USER).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A TLS key that does not belong to the certificate: refused, and new connections still
    // get the running certificate.
    let other = tempfile::tempdir().unwrap();
    write_pair(other.path(), "tls", "localhost");
    served.write_config(&served.config_text.replace(
        "tls_key = \"tls.key\"",
        &format!("tls_key = \"{}\"", other.path().join("tls.key").display()),
    ));
    let log = reload(&served).await;
    assert_eq!(log.matches("reload refused").count(), 3, "{log}");
    assert!(log.contains("server.tls_key"), "{log}");
    let answer = client.sign_in(&to, LOAD_USER).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.certificate, der_of(&served.path("tls.crt")));

    // Fixed: the next reload is taken.
    served.write_config(&served.config_text);
    let log = reload(&served).await;
    assert!(log.contains("reload: done"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_only_change_is_refused_with_its_name() {
    let served = Arc::new(Served::start());
    let other_port = common::free_port();
    let moved = served.config_text.replace(
        &format!("listen = \"127.0.0.1:{}\"", served.port),
        &format!("listen = \"127.0.0.1:{other_port}\""),
    ) + "\n[state]\nkey_prefix = \"elsewhere\"\n";
    served.write_config(&moved);
    let log = reload(&served).await;
    for key in ["server.listen", "state.key_prefix"] {
        assert!(
            log.lines().any(|l| l.contains("reload refused")
                && l.contains(key)
                && l.contains("restart needed")),
            "{key} is named: {log}"
        );
    }
    assert!(!log.contains("reload: done"), "{log}");
    let answer = served
        .client()
        .sign_in(&served.to(), LOAD_USER)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "the old listener still serves");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", other_port)).is_err(),
        "nothing listens on the new port"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_hangups_makes_at_most_two_reloads() {
    let served = Arc::new(Served::start());
    let pid = served.child.id().to_string();
    // One `kill` sending 20 signals back to back, microseconds apart.
    let status = Command::new("kill")
        .arg("-HUP")
        .args(std::iter::repeat_n(pid.as_str(), 20))
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the first reload", || served.count("reload: done") >= 1).await;
    // Long enough for any queued reload to run.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = served.count("reload: started");
    assert!(
        (1..=2).contains(&started),
        "{started} reloads for 20 signals: {}",
        served.log()
    );
    assert_eq!(started, served.count("reload: done"), "{}", served.log());
    let answer = served
        .client()
        .sign_in(&served.to(), LOAD_USER)
        .await
        .unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_marks_survive_a_reload() {
    let served = Arc::new(Served::start());
    let client = served.client();
    let to = served.to();
    let body = common::wstrust::rst("13", &to, Some(LOAD_USER));
    let first = client.send(&to, body.clone()).await.unwrap();
    assert_eq!(first.status, 200, "{}", first.body);
    let log = reload(&served).await;
    assert!(log.contains("reload: done"), "{log}");
    let again = client.send(&to, body).await.unwrap();
    assert_ne!(
        again.status, 200,
        "the same request after the reload is a replay"
    );
    assert!(
        served.log().contains("replay_message_id"),
        "{}",
        served.log()
    );
}

/// The README's list of restart-only keys is what a reload refuses: a file changing every one of
/// them is refused with each of their names, and no other.
#[test]
fn the_readme_lists_every_restart_only_key() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = readme.split("## Reloading").nth(1).unwrap();
    let bullet = section.split("**Restart-only keys**").nth(1).unwrap();
    let bullet = bullet.split("\n- ").next().unwrap();
    let listed_text = bullet.split("never silently ignored:").nth(1).unwrap();
    let listed: std::collections::BTreeSet<&str> =
        listed_text.split('`').skip(1).step_by(2).collect();

    let running = fedsts::config::Config::parse(&config_text(8443), Path::new("/srv")).unwrap();
    let changed = config_text(8444).replace(
        "[rate_limit]",
        "trusted_proxies = [\"10.0.0.1\"]\ntrust_ms_forwarded_client_ip = true\nsession_key = \"other.key\"\n\n[server.connections]\nmax = 9\nmax_per_address = 9\nwrite_timeout_secs = 9\nhealth_listen = \"127.0.0.1:9\"\n\n[state]\nredis_url = \"redis://127.0.0.1:9/0\"\nkey_prefix = \"other\"\nmax_memory_entries = 9\n\n[metrics]\nlisten = \"127.0.0.1:9464\"\npath = \"/metrics\"\nallow = [\"10.0.0.0/8\"]\n\n[rate_limit]",
    );
    let changed = fedsts::config::Config::parse(&changed, Path::new("/srv")).unwrap();
    let refused: std::collections::BTreeSet<String> =
        fedsts::reload::restart_only_changes(&running, &changed)
            .into_iter()
            .map(|p| p.key)
            .collect();
    let refused: std::collections::BTreeSet<&str> = refused.iter().map(String::as_str).collect();
    assert_eq!(listed, refused);
    assert!(fedsts::reload::restart_only_changes(&running, &running).is_empty());
}

/// A browser signed in before a reload is still signed in after it: the session key is kept
/// (in process: the same `Sts::reloaded` a SIGHUP runs, on a server the test holds).
#[tokio::test]
async fn a_signed_in_browser_stays_signed_in_across_a_reload() {
    use common::passive::{Browser, assert_response_page, inputs, sign_in_query};
    use common::server::{ALICE as SERVER_ALICE, Options, PASSWORD, TestServer};
    // No key file: the key is random in memory, so only carrying it keeps the session.
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, _| config.server.session_key = None),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&server);
    let form = browser.get(&sign_in_query(&[])).await;
    assert!(inputs(&form.body).contains_key("password"), "{}", form.body);
    let signed_in = browser.sign_in(&form, SERVER_ALICE, PASSWORD).await;
    assert_response_page(
        &signed_in,
        fedsts::config::MICROSOFT_ONLINE_REPLY_URL,
        common::passive::WCTX,
    );
    assert!(browser.jar.contains_key("fedsts_session"));

    server.reload(&server.config);
    let again = browser.get(&sign_in_query(&[])).await;
    assert!(
        !inputs(&again.body).contains_key("password"),
        "no password form after the reload: {}",
        again.body
    );
    assert_response_page(
        &again,
        fedsts::config::MICROSOFT_ONLINE_REPLY_URL,
        common::passive::WCTX,
    );
    server.stop().await;
}

/// On embedded defaults there is no file to re-read: a SIGHUP is logged and ignored, and the
/// server keeps running (without a handler, SIGHUP's default action would end the process).
#[test]
fn a_hangup_on_embedded_defaults_is_logged_and_the_server_keeps_running() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_port();
    let log_path = dir.path().join("serve.log");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env("FEDSTS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let started = Instant::now();
    loop {
        use std::io::BufRead as _;
        let mut line = String::new();
        assert!(
            stdout.read_line(&mut line).unwrap() > 0,
            "serve exited early"
        );
        if line.starts_with("fedsts listening") {
            break;
        }
        assert!(started.elapsed() < DEADLINE, "no banner");
    }
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for _ in stdout.lines() {}
    });
    let status = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    while !log().contains("reload refused: SIGHUP") {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the SIGHUP ended the server: {}",
            log()
        );
        assert!(started.elapsed() < DEADLINE, "{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(child.try_wait().unwrap().is_none(), "{}", log());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    child.kill().unwrap();
    child.wait().unwrap();
}
