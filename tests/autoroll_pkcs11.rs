//! Automatic rollover of a token-signing key held in a real SoftHSM2 token
//! (`fedsts::autoroll::Pkcs11KeyStore`), driven by a `ManualClock`: the next key is made in the
//! token (sensitive, not extractable), published, promoted and, after the grace, destroyed;
//! tokens signed after promotion verify with xmlsec1 against the new certificate and their audit
//! records name it; a promotion stopped after any of its steps serves a complete pair after a
//! restart and converges; a token that stops answering during the make step is logged, audited
//! and retried while the old key stays current.
//!
//! SoftHSM reads `SOFTHSM2_CONF` once per process: every test of this binary shares one token
//! store whose tokens are all made before any test loads the module in-process.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::{Duration as StdDuration, Instant};

use common::audit::AuditLog;
use common::server::{ALICE, Options, PASSWORD, TestServer};
use common::softhsm::SoftHsm;
use common::wstrust::{element, message_id, path_of, rst13};
use fedsts::autoroll::pkcs11::{TokenKey, TokenKeys};
use fedsts::autoroll::{Autoroller, KeyStore, LEASE_TTL, Pkcs11KeyStore, Step, state_path_for};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::{Pkcs11Config, RolloverConfig};
use fedsts::crypto::pkcs11::{Pkcs11Error, Pkcs11Signer, generate_key_pair, key_protection};
use fedsts::crypto::{Certificate, CryptoError, self_signed_for_signer_at};
use fedsts::secret::Secret;
use fedsts::state::StateLeases;
use fedsts::state::memory::MemoryStore;
use time::{Duration, OffsetDateTime};

const PIN: &str = "2718-user-pin";
/// What the README example's `pin_env` names.
const PIN_ENV: &str = "FEDSTS_PKCS11_PIN";
/// Tokens: one per test, so tests running side by side do not see each other's keys.
const TIMELINE: &str = "timeline";
const SERVER: &str = "server";
const CRASH: &str = "crash";
const FROZEN: &str = "frozen";
const TWICE: &str = "twice";
/// Where Debian's `p11-kit-modules` puts the client module of `p11-kit server`.
const P11_KIT_CLIENTS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/pkcs11/p11-kit-client.so",
    "/usr/lib/aarch64-linux-gnu/pkcs11/p11-kit-client.so",
];
/// CN of the first certificates: self-made, so rollover is on by default.
const CN: &str = "fedsts token signing (hsm test)";

struct Fixture {
    hsm: SoftHsm,
    dir: tempfile::TempDir,
}

static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();

fn fixture() -> Option<&'static Fixture> {
    FIXTURE
        .get_or_init(|| {
            let hsm = SoftHsm::new()?;
            if !common::require_tool("xmlsec1") || !common::require_tool("pkcs11-tool") {
                return None;
            }
            for token in [TIMELINE, SERVER, CRASH, FROZEN, TWICE] {
                hsm.init_token(token, PIN);
            }
            let dir = tempfile::tempdir().unwrap();
            // Set once, before any test loads a PKCS#11 module in this process (both are read at
            // C_Initialize); the OnceLock makes every other test wait for it.
            unsafe {
                std::env::set_var("SOFTHSM2_CONF", &hsm.conf);
                std::env::set_var(PIN_ENV, PIN);
                std::env::set_var(
                    "P11_KIT_SERVER_ADDRESS",
                    format!("unix:path={}", dir.path().join("p11-kit.sock").display()),
                );
            }
            Some(Fixture { hsm, dir })
        })
        .as_ref()
}

/// The `[apps.signing_pkcs11]` table of `token` naming key `label`, PIN inline, 2 s timeout.
fn table(hsm: &SoftHsm, token: &str, label: &str) -> Pkcs11Config {
    let mut pkcs11: Pkcs11Config = toml::from_str(&hsm.table(token, label, PIN))
        .map(|mut t: toml::Table| t.remove("apps").unwrap())
        .map(|apps| apps["signing_pkcs11"].clone().try_into().unwrap())
        .unwrap();
    pkcs11.pin = Some(Secret::new(PIN.to_owned()));
    pkcs11.timeout_secs = Some(2);
    pkcs11
}

/// Makes the configured key in the token and a self-made certificate for it, valid `days`
/// from `now`, at `cert`.
fn first_pair(pkcs11: &Pkcs11Config, cert: &Path, now: OffsetDateTime, days: u32) -> String {
    generate_key_pair(pkcs11).unwrap();
    let signer = Pkcs11Signer::open(pkcs11).unwrap();
    let pem = self_signed_for_signer_at(&signer, CN, now, days).unwrap();
    std::fs::write(cert, &pem).unwrap();
    Certificate::from_pem(&pem).unwrap().sha256_thumbprint_hex()
}

fn roller(pkcs11: &Pkcs11Config, cert: &Path) -> (Arc<Pkcs11KeyStore>, Autoroller) {
    roller_on(pkcs11, cert, Arc::new(MemoryStore::new("t")))
}

/// An instance's store and roller whose leases are in `store`.
fn roller_on(
    pkcs11: &Pkcs11Config,
    cert: &Path,
    store: Arc<MemoryStore>,
) -> (Arc<Pkcs11KeyStore>, Autoroller) {
    let keys = Arc::new(Pkcs11KeyStore::new(pkcs11.clone(), cert.to_path_buf()));
    let roller = Autoroller::new(
        "contoso",
        RolloverConfig::default(),
        keys.clone(),
        Arc::new(StateLeases(store)),
        state_path_for(cert),
    );
    (keys, roller)
}

fn thumbprint_of(path: &Path) -> String {
    Certificate::from_pem(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .sha256_thumbprint_hex()
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

/// `pkcs11` naming `key` instead.
fn naming(pkcs11: &Pkcs11Config, key: &TokenKey) -> Pkcs11Config {
    let mut config = pkcs11.clone();
    config.key_label = None;
    config.key_id = key.id.clone();
    config
}

/// The `Usage:` and `Access:` flags OpenSC's `pkcs11-tool --list-objects` shows for the
/// private key labelled `label` in `token` (an oracle independent of fedsts' own reading).
fn listed_protection(hsm: &SoftHsm, token: &str, label: &str) -> (Vec<String>, Vec<String>) {
    let output = hsm
        .command("pkcs11-tool")
        .arg("--module")
        .arg(&hsm.module)
        .args(["--token-label", token, "--login", "--pin", PIN])
        .args(["--list-objects", "--type", "privkey"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{text}");
    let block = text
        .split("Private Key Object")
        .find(|block| {
            block
                .lines()
                .any(|line| line.trim() == format!("label:      {label}"))
        })
        .unwrap_or_else(|| panic!("no private key {label}: {text}"));
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
    (flags("Usage:"), flags("Access:"))
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
    output.status.success() && stderr.lines().any(|line| line.trim() == "OK")
}

/// README.md's PKCS#11 rollover example for token `token` and SoftHSM at `module`.
fn readme_example_text(token: &str, module: &Path) -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n# pkcs11 rollover example\n")
        .expect("README pkcs11 rollover example");
    let body = &readme[start + 8..];
    body[..body.find("```").unwrap()]
        .replace(
            "/usr/lib/softhsm/libsofthsm2.so",
            &module.display().to_string(),
        )
        .replace(
            "token_label = \"fedsts\"",
            &format!("token_label = \"{token}\""),
        )
}

/// The example read through the real parser under `dir`: the app's token table, its rollover
/// settings and its certificate path.
fn readme_example(
    dir: &Path,
    token: &str,
    module: &Path,
) -> (Pkcs11Config, RolloverConfig, PathBuf) {
    std::fs::create_dir_all(dir.join("certs")).unwrap();
    let config = fedsts::config::Config::parse(&readme_example_text(token, module), dir).unwrap();
    let app = &config.apps[0];
    (
        app.signing_pkcs11.clone().unwrap(),
        app.rollover.clone(),
        app.signing_cert.clone(),
    )
}

/// `fedsts keys check` on the example as a configuration file in `dir` (with the TLS pair and
/// users file it names): its exit status and output.
fn keys_check(dir: &Path, token: &str, module: &Path) -> (bool, String) {
    let tls = fedsts::crypto::generate_self_signed("sts.example.com", &[], 30).unwrap();
    std::fs::write(dir.join("tls.crt"), tls.certificate_pem).unwrap();
    std::fs::write(dir.join("tls.key"), tls.private_key_pem).unwrap();
    std::fs::write(dir.join("users.toml"), common::server::users_file()).unwrap();
    let config = dir.join("fedsts.toml");
    std::fs::write(&config, readme_example_text(token, module)).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_fedsts"))
        .args(["keys", "check", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[tokio::test]
async fn a_token_key_rolls_over_through_the_whole_timeline_and_survives_restarts() {
    let Some(fixture) = fixture() else { return };
    let dir = fixture.dir.path().join("timeline");
    let (pkcs11, rollover, cert) = readme_example(&dir, TIMELINE, &fixture.hsm.module);
    assert_eq!(
        (
            rollover.auto,
            rollover.lead_days,
            rollover.promote_after_days,
            rollover.grace_days
        ),
        (None, 20, 5, 5)
    );
    assert_eq!(pkcs11.key_label.as_deref(), Some("token-signing"));
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let first = first_pair(&pkcs11, &cert, clock.now(), 31);
    assert!(fedsts::autoroll::is_enabled(
        &rollover,
        &Certificate::from_pem(&std::fs::read_to_string(&cert).unwrap()).unwrap()
    ));
    let (keys, roll) = roller(&pkcs11, &cert);

    // 31-day certificate, 20-day lead: nothing for 10 days.
    clock.advance(Duration::days(10));
    assert_eq!(roll.tick(clock.now()).await.unwrap(), None);
    assert_eq!(keys.keys().unwrap(), TokenKeys::default());

    // Day 11: a new key in the same token, its certificate as `.next`, published.
    clock.advance(Duration::days(1));
    let Some(Step::NextMade { thumbprint: next }) = roll.tick(clock.now()).await.unwrap() else {
        panic!("expected the next pair to be made");
    };
    assert_eq!(thumbprint_of(&with_suffix(&cert, ".next")), next);
    let recorded = keys.keys().unwrap();
    let next_key = recorded.next.clone().expect("the next key is recorded");
    assert_eq!(recorded.current, None, "the configured key still signs");
    let label = next_key.label.clone().unwrap();
    assert!(label.starts_with("token-signing-"), "{label}");
    let protection = key_protection(&naming(&pkcs11, &next_key)).unwrap();
    assert!(
        protection.sensitive && !protection.extractable,
        "{protection:?}"
    );
    let (usage, access) = listed_protection(&fixture.hsm, TIMELINE, &label);
    assert_eq!(usage, ["sign"]);
    assert!(access.iter().any(|a| a == "sensitive"), "{access:?}");
    assert!(
        access.iter().any(|a| a == "never extractable"),
        "{access:?}"
    );
    assert!(!access.iter().any(|a| a == "extractable"), "{access:?}");
    let set = roll.signing_set().unwrap();
    assert_eq!(set.current.certificate.sha256_thumbprint_hex(), first);
    assert_eq!(set.next.unwrap().certificate.sha256_thumbprint_hex(), next);
    assert_eq!(roll.tick(clock.now()).await.unwrap(), None, "nothing twice");

    // Restart: a new store and roller read the two state files back.
    drop((keys, roll));
    let (keys, roll) = roller(&pkcs11, &cert);
    let set = roll.signing_set().unwrap();
    assert_eq!(set.next.unwrap().certificate.sha256_thumbprint_hex(), next);

    // Day 16: promoted; the new key signs, the old certificate is published as previous.
    clock.advance(Duration::days(5));
    let Some(Step::Promoted { thumbprint }) = roll.tick(clock.now()).await.unwrap() else {
        panic!("expected the promotion");
    };
    assert_eq!(thumbprint, next);
    assert_eq!(
        thumbprint_of(&cert),
        next,
        "signing_cert holds the new certificate"
    );
    let recorded = keys.keys().unwrap();
    assert_eq!(recorded.current.as_ref(), Some(&next_key));
    assert_eq!(
        recorded.previous.unwrap().label.as_deref(),
        Some("token-signing")
    );
    let set = roll.signing_set().unwrap();
    assert_eq!(set.current.certificate.sha256_thumbprint_hex(), next);
    assert_eq!(set.previous.unwrap().sha256_thumbprint_hex(), first);
    set.current.self_test().unwrap();
    assert_eq!(set.current.signer.store().as_str(), "pkcs11");

    // Day 21: the grace ends; the previous key is destroyed in the token.
    clock.advance(Duration::days(5));
    assert_eq!(
        roll.tick(clock.now()).await.unwrap(),
        Some(Step::GraceEnded)
    );
    let gone = Pkcs11Signer::open(&pkcs11).unwrap_err();
    assert!(matches!(gone, Pkcs11Error::KeyNotFound { .. }), "{gone:?}");
    assert!(!with_suffix(&cert, ".previous").exists());
    let set = roll.signing_set().unwrap();
    assert!(set.previous.is_none() && set.next.is_none());

    // Restart after the old key is gone: the key state file names the key that signs (the
    // configured label names nothing any more), for `keys check` too.
    drop((keys, roll));
    let (_keys, roll) = roller(&pkcs11, &cert);
    let current = roll.signing_set().unwrap().current;
    assert_eq!(current.certificate.sha256_thumbprint_hex(), next);
    current.self_test().unwrap();
    let rolled = fedsts::autoroll::pkcs11::current_key_config(&pkcs11, &cert).unwrap();
    assert_eq!(rolled.key_id, next_key.id);
    assert_eq!(rolled.key_label, None);
    let (ok, text) = keys_check(&dir, TIMELINE, &fixture.hsm.module);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("(SHA-256 {next})")), "{text}");
    assert!(text.contains("sensitive and not extractable"), "{text}");
}

/// Through the real server on a manual clock: the next certificate is in the metadata after the
/// make step; after promotion (no restart) tokens verify with xmlsec1 against the new
/// certificate only, and their audit records name the new certificate's fingerprint.
#[tokio::test]
async fn the_server_publishes_promotes_and_signs_with_the_new_token_key() {
    let Some(fixture) = fixture() else { return };
    let pkcs11 = table(&fixture.hsm, SERVER, "token-signing");
    let cert = fixture.dir.path().join("server.crt");
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let first = first_pair(&pkcs11, &cert, clock.now(), 30);
    let (table_for_server, cert_for_server) = (pkcs11.clone(), cert.clone());
    // Before the start: the server's own first tick may run after the clock moved.
    let (log, _capture) = AuditLog::capture();
    let server = TestServer::start_with(Options {
        clock: clock.clone(),
        configure: Box::new(move |config, _| {
            let app = &mut config.apps[0];
            app.signing_key = None;
            app.signing_pkcs11 = Some(table_for_server);
            app.signing_cert = cert_for_server;
        }),
        ..Options::default()
    })
    .await;
    let url = server.app_url("trust/13/usernamemixed");
    let issue = || async {
        let reply = server
            .post_soap(
                &path_of(&url),
                rst13(&url, ALICE, PASSWORD, clock.now(), Some(&message_id())),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        element(&reply.body, "RequestedSecurityToken")
            .unwrap()
            .to_owned()
    };
    let metadata_path = format!(
        "/wsfed/{}/federationmetadata/2007-06/federationmetadata.xml",
        server.app_id
    );

    clock.advance(Duration::days(10));
    server.sts.rollover_tick().await;
    let next_cert = with_suffix(&cert, ".next");
    let next_b64 = Certificate::from_pem(&std::fs::read_to_string(&next_cert).unwrap())
        .unwrap()
        .base64()
        .to_owned();
    let metadata = server.request("GET", &metadata_path, &[], vec![]).await;
    assert!(metadata.body.contains(&next_b64), "next published");
    let before = issue().await;
    assert!(xmlsec1_verifies(&before, &cert), "the old key still signs");

    clock.advance(Duration::days(5));
    server.sts.rollover_tick().await;
    let previous_cert = with_suffix(&cert, ".previous");
    assert_eq!(thumbprint_of(&previous_cert), first);
    let after = issue().await;
    assert!(xmlsec1_verifies(&after, &cert), "the new key signs");
    assert!(!xmlsec1_verifies(&after, &previous_cert));
    let new_fingerprint = thumbprint_of(&cert);
    assert_ne!(new_fingerprint, first);
    let known = fedsts::cli::audit::configured_keys(&server.config);
    assert_eq!(
        known.get(&first).map(String::as_str),
        Some("apps[0].signing_cert's rollover previous (demo)")
    );
    assert_eq!(
        known.get(&new_fingerprint).map(String::as_str),
        Some("apps[0].signing_cert (demo)")
    );

    let issued: Vec<_> = log
        .records()
        .into_iter()
        .filter(|r| r["decision"] == "issued")
        .collect();
    assert_eq!(issued.len(), 2, "{}", log.text());
    assert_eq!(issued[0]["signing_key_sha256"], first.as_str());
    assert_eq!(issued[1]["signing_key_sha256"], new_fingerprint.as_str());
    assert_eq!(issued[1]["signing_store"], "pkcs11");
    let id = issued[1]["assertion_id"].as_str().unwrap();
    assert!(after.contains(id));
    let steps: Vec<_> = log
        .records()
        .into_iter()
        .filter(|r| r["event"] == "rollover")
        .map(|r| r["step"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(steps, ["next_made", "promoted"]);
    server.stop().await;
}

/// A promotion stopped after each of its steps (what a crash does), then a restart: the store
/// serves a complete pair (its key signs a digest its certificate verifies), and the next tick
/// finishes the promotion.
#[tokio::test]
async fn a_promotion_stopped_after_any_step_serves_a_whole_pair_and_converges() {
    let Some(fixture) = fixture() else { return };
    let steps = {
        let pkcs11 = table(&fixture.hsm, CRASH, "count");
        Pkcs11KeyStore::new(pkcs11, fixture.dir.path().join("count.crt"))
            .promotion_steps()
            .len()
    };
    assert_eq!(steps, 4);
    for done in 0..=steps {
        let label = format!("crash-{done}");
        let pkcs11 = table(&fixture.hsm, CRASH, &label);
        let cert = fixture.dir.path().join(format!("{label}.crt"));
        let clock = ManualClock::new(OffsetDateTime::now_utc());
        let first = first_pair(&pkcs11, &cert, clock.now(), 30);
        let (keys, roll) = roller(&pkcs11, &cert);
        clock.advance(Duration::days(10));
        let Some(Step::NextMade { thumbprint: next }) = roll.tick(clock.now()).await.unwrap()
        else {
            panic!("expected the next pair");
        };
        for (name, step) in keys.promotion_steps().into_iter().take(done) {
            step().unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        drop((keys, roll));

        let (keys, roll) = roller(&pkcs11, &cert);
        let set = roll.signing_set().unwrap();
        set.current.self_test().unwrap();
        let serving = set.current.certificate.sha256_thumbprint_hex();
        assert!(
            serving == first || serving == next,
            "after {done} steps: {serving}"
        );
        clock.advance(Duration::days(5));
        assert_eq!(
            roll.tick(clock.now()).await.unwrap(),
            Some(Step::Promoted {
                thumbprint: next.clone()
            }),
            "after {done} steps"
        );
        let set = roll.signing_set().unwrap();
        set.current.self_test().unwrap();
        assert_eq!(set.current.certificate.sha256_thumbprint_hex(), next);
        assert_eq!(set.previous.unwrap().sha256_thumbprint_hex(), first);
        assert!(set.next.is_none());
        assert_eq!(thumbprint_of(&cert), next);
        assert!(!with_suffix(&cert, ".next").exists());
        assert!(keys.keys().unwrap().next.is_none());
    }
}

/// A `p11-kit server` exporting one token, in its own process group (frozen and killed by
/// group id).
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

/// The token stops answering (its `p11-kit server` frozen) during the make step: the tick fails
/// within the bounded wait, is logged and audited, the old pair stays current and nothing is
/// published; once the token answers again the old key signs, and the next tick (after the
/// lease) removes the key the frozen call made late and makes the pair.
#[tokio::test]
async fn a_token_that_stops_answering_during_the_make_step_is_retried_while_the_old_key_signs() {
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
        .arg(format!("pkcs11:token={FROZEN}"))
        .stdout(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let p11_kit = P11KitServer(child);
    let deadline = Instant::now() + StdDuration::from_secs(10);
    while !socket.exists() {
        assert!(Instant::now() < deadline, "p11-kit server made no socket");
        std::thread::sleep(StdDuration::from_millis(20));
    }
    let mut pkcs11 = table(&fixture.hsm, FROZEN, "token-signing");
    pkcs11.module = client;
    pkcs11.timeout_secs = Some(1);
    pkcs11.sessions = Some(1);
    let cert = fixture.dir.path().join("frozen.crt");
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let first = first_pair(&pkcs11, &cert, clock.now(), 30);
    let (keys, roll) = roller(&pkcs11, &cert);
    roll.signing_set().unwrap().current.self_test().unwrap();

    let (log, capture) = AuditLog::capture();
    clock.advance(Duration::days(10));
    p11_kit.signal("-STOP");
    let started = Instant::now();
    let error = roll.tick(clock.now()).await.unwrap_err();
    let waited = started.elapsed();
    eprintln!("make step against the frozen token: {error} after {waited:?}");
    assert!(
        matches!(
            error,
            fedsts::autoroll::RollError::Crypto(CryptoError::Pkcs11(Pkcs11Error::Timeout { .. }))
        ),
        "{error:?}"
    );
    // The generation and the clean-up attempt each wait at most 4 × timeout_secs.
    assert!(waited < StdDuration::from_secs(12), "{waited:?}");
    let failed: Vec<_> = log
        .records()
        .into_iter()
        .filter(|r| r["event"] == "rollover")
        .collect();
    drop(capture);
    assert_eq!(failed.len(), 1, "{}", log.text());
    assert_eq!(failed[0]["step"], "failed");
    assert!(
        failed[0]["error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 4 s"),
        "{}",
        failed[0]
    );
    let set = roll.signing_set().unwrap();
    assert_eq!(set.current.certificate.sha256_thumbprint_hex(), first);
    assert!(set.next.is_none(), "nothing is published");
    let stale = keys
        .keys()
        .unwrap()
        .making
        .expect("the half-made key is recorded");

    p11_kit.signal("-CONT");
    let deadline = Instant::now() + StdDuration::from_secs(15);
    while roll.signing_set().unwrap().current.self_test().is_err() {
        assert!(Instant::now() < deadline, "the old key does not sign again");
        std::thread::sleep(StdDuration::from_millis(200));
    }
    // Within the lease of the failed attempt nothing is tried again; after it, the pair is made
    // once the timed-out calls have ended (before, the step waits: the late generation could
    // otherwise leave a key nobody records).
    assert_eq!(
        roll.tick(clock.now()).await.unwrap(),
        Some(Step::LeaseHeldElsewhere)
    );
    let deadline = Instant::now() + StdDuration::from_secs(30);
    loop {
        clock.advance(LEASE_TTL);
        match roll.tick(clock.now()).await {
            Ok(Some(Step::NextMade { .. })) => break,
            Err(fedsts::autoroll::RollError::Crypto(CryptoError::Pkcs11(
                Pkcs11Error::Unfinished { .. },
            ))) => {}
            other => panic!("expected the next pair after the token answers again: {other:?}"),
        }
        assert!(Instant::now() < deadline, "the timed-out calls never ended");
        std::thread::sleep(StdDuration::from_millis(200));
    }
    assert_eq!(fedsts::crypto::pkcs11::abandoned_calls(), 0);
    let recorded = keys.keys().unwrap();
    assert_eq!(recorded.making, None);
    assert_ne!(recorded.next.as_ref(), Some(&stale));
    let late = Pkcs11Signer::open(&naming(&pkcs11, &stale)).unwrap_err();
    assert!(
        matches!(late, Pkcs11Error::KeyNotFound { .. }),
        "the key the frozen call made late is removed: {late:?}"
    );
    drop((keys, roll));
    drop(p11_kit);
}

/// Two instances on one token, one key directory and one state store tick at once: one makes
/// the next key (the token holds one key under the made label, not two), the other serves it;
/// one promotes.
#[tokio::test]
async fn two_instances_on_one_token_make_one_next_key() {
    let Some(fixture) = fixture() else { return };
    let pkcs11 = table(&fixture.hsm, TWICE, "token-signing");
    let cert = fixture.dir.path().join("twice.crt");
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    first_pair(&pkcs11, &cert, clock.now(), 30);
    let shared = Arc::new(MemoryStore::new("t"));
    let (keys, a) = roller_on(&pkcs11, &cert, shared.clone());
    let (_, b) = roller_on(&pkcs11, &cert, shared);
    clock.advance(Duration::days(10));
    let (step_a, step_b) = tokio::join!(a.tick(clock.now()), b.tick(clock.now()));
    let steps = [step_a.unwrap(), step_b.unwrap()];
    let made = steps
        .iter()
        .filter(|s| matches!(s, Some(Step::NextMade { .. })))
        .count();
    assert_eq!(made, 1, "{steps:?}");
    let label = keys.keys().unwrap().next.unwrap().label.unwrap();
    let mut by_label = pkcs11.clone();
    by_label.key_label = Some(label);
    Pkcs11Signer::open(&by_label).expect("exactly one key under the made label");
    let thumbprint = |roller: &Autoroller| {
        roller
            .signing_set()
            .unwrap()
            .next
            .unwrap()
            .certificate
            .sha256_thumbprint_hex()
    };
    let next = thumbprint(&a);
    assert_eq!(
        thumbprint(&b),
        next,
        "the other instance serves the same pair"
    );

    clock.advance(Duration::days(5));
    let (step_a, step_b) = tokio::join!(a.tick(clock.now()), b.tick(clock.now()));
    let steps = [step_a.unwrap(), step_b.unwrap()];
    let promoted = Some(Step::Promoted {
        thumbprint: next.clone(),
    });
    assert_eq!(
        steps.iter().filter(|s| **s == promoted).count(),
        1,
        "{steps:?}"
    );
    for roller in [&a, &b] {
        let current = roller.signing_set().unwrap().current;
        assert_eq!(current.certificate.sha256_thumbprint_hex(), next);
        current.self_test().unwrap();
    }
}
