//! Automatic token-signing rollover (`fedsts::autoroll`), the whole timeline driven by a
//! `ManualClock`: make next → published → promote → grace ends; across a restart (state file
//! read back) and with two instances on one store (memory and a real Redis): only one makes the
//! pair.

mod common;

use std::path::Path;
use std::sync::Arc;

use fedsts::autoroll::{Autoroller, FileKeyStore, KeyStore, LEASE_TTL, Step, state_path_for};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::Config;
use fedsts::config::RolloverConfig;
use fedsts::crypto::generate_self_signed;
use fedsts::state::memory::MemoryStore;
use fedsts::state::redis::RedisStore;
use fedsts::state::{StateLeases, StateStore};
use time::{Duration, OffsetDateTime};

use common::redis::RedisServer;

/// Writes a self-made pair valid `days` days into `dir` and returns its store.
fn current_pair(dir: &Path, days: u32) -> FileKeyStore {
    let generated = generate_self_signed("fedsts token signing (test)", &[], days).unwrap();
    let (cert, key) = (dir.join("signing.crt"), dir.join("signing.key"));
    std::fs::write(&cert, generated.certificate_pem).unwrap();
    std::fs::write(&key, generated.private_key_pem).unwrap();
    FileKeyStore::new(cert, key)
}

fn roller(dir: &Path, config: &RolloverConfig, store: Arc<dyn StateStore>) -> Autoroller {
    let keys = FileKeyStore::new(dir.join("signing.crt"), dir.join("signing.key"));
    Autoroller::new(
        "contoso",
        config.clone(),
        Arc::new(keys),
        Arc::new(StateLeases(store)),
        state_path_for(&dir.join("signing.key")),
    )
}

fn thumb(keys: &FileKeyStore) -> String {
    keys.current().unwrap().certificate.sha256_thumbprint_hex()
}

/// The `[apps.rollover]` table of README.md's example, read back through the real parser.
fn readme_rollover_config() -> RolloverConfig {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n# rollover example\n")
        .expect("README rollover example");
    let body = &readme[start + 8..];
    let example = &body[..body.find("```").unwrap()];
    let dir = tempfile::tempdir().unwrap();
    let config = Config::parse(example, dir.path()).unwrap();
    config.apps[0].rollover.clone()
}

#[tokio::test]
async fn the_whole_timeline_runs_and_survives_a_restart() {
    let config = readme_rollover_config();
    assert_eq!(
        (
            config.auto,
            config.lead_days,
            config.promote_after_days,
            config.grace_days
        ),
        (Some(true), 20, 5, 5)
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = current_pair(dir.path(), 31);
    let first = thumb(&keys);
    let clock = ManualClock::new(OffsetDateTime::now_utc());
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new("t"));
    let roll = roller(dir.path(), &config, store.clone());

    // 31-day certificate, 20-day lead: nothing for 9 days.
    clock.advance(Duration::days(9));
    assert_eq!(roll.tick(clock.now()).await.unwrap(), None);
    assert!(roll.signing_set().unwrap().next.is_none());

    // Day 11: the next pair is made and published after the current one.
    clock.advance(Duration::days(2));
    let Some(Step::NextMade { thumbprint: next }) = roll.tick(clock.now()).await.unwrap() else {
        panic!("expected the next pair to be made");
    };
    assert_ne!(next, first);
    let set = roll.signing_set().unwrap();
    assert_eq!(set.current.certificate.sha256_thumbprint_hex(), first);
    assert_eq!(
        set.next
            .as_ref()
            .unwrap()
            .certificate
            .sha256_thumbprint_hex(),
        next
    );
    assert_eq!(set.published_certificates().len(), 2);
    assert!(
        set.next
            .unwrap()
            .certificate
            .subject()
            .contains("fedsts token signing (test)")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("signing.key.next"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(roll.tick(clock.now()).await.unwrap(), None, "nothing twice");

    // Restart: a new roller (new process, fresh memory store) reads the state file back.
    drop(roll);
    let roll = roller(dir.path(), &config, Arc::new(MemoryStore::new("t")));
    clock.advance(Duration::days(4));
    assert_eq!(
        roll.tick(clock.now()).await.unwrap(),
        None,
        "promotion is not due yet"
    );
    assert_eq!(
        roll.signing_set()
            .unwrap()
            .next
            .unwrap()
            .certificate
            .sha256_thumbprint_hex(),
        next
    );

    // Day 16 (5 days after the make step): promoted; the old certificate stays as previous.
    clock.advance(Duration::days(1));
    assert_eq!(
        roll.tick(clock.now()).await.unwrap(),
        Some(Step::Promoted {
            thumbprint: next.clone()
        })
    );
    let set = roll.signing_set().unwrap();
    assert_eq!(set.current.certificate.sha256_thumbprint_hex(), next);
    assert!(set.next.is_none());
    assert_eq!(set.previous.unwrap().sha256_thumbprint_hex(), first);
    assert_eq!(thumb(&keys), next, "the configured files hold the new pair");
    assert!(!dir.path().join("signing.key.next").exists());

    // Grace ends 5 days later: only the new certificate is published, the old key is gone.
    clock.advance(Duration::days(5) - Duration::seconds(1));
    assert_eq!(roll.tick(clock.now()).await.unwrap(), None);
    clock.advance(Duration::seconds(1));
    assert_eq!(
        roll.tick(clock.now()).await.unwrap(),
        Some(Step::GraceEnded)
    );
    let set = roll.signing_set().unwrap();
    assert_eq!(set.published_certificates().len(), 1);
    assert!(!dir.path().join("signing.key.previous").exists());
    assert_eq!(roll.tick(clock.now()).await.unwrap(), None);

    // The new certificate (31 days from day 11, on the service clock) starts the next cycle
    // 20 days before it expires: day 22.
    clock.advance(Duration::days(1));
    assert!(matches!(
        roll.tick(clock.now()).await.unwrap(),
        Some(Step::NextMade { .. })
    ));
}

/// Two instances over one store and one key directory tick at the same moment, repeatedly:
/// exactly one makes the pair and one promotes it; both then serve the same files.
async fn only_one_instance_makes_the_pair(
    store_a: Arc<dyn StateStore>,
    store_b: Arc<dyn StateStore>,
) {
    let config = RolloverConfig {
        auto: Some(true),
        ..RolloverConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let keys = current_pair(dir.path(), 30);
    let a = roller(dir.path(), &config, store_a.clone());
    let b = roller(dir.path(), &config, store_b);
    let clock = ManualClock::new(OffsetDateTime::now_utc() + Duration::days(11));
    // A third instance holds the lease (it is generating, or died while generating): neither
    // makes a pair until the lease expires.
    let lease = format!("rollover:contoso:make:{}", thumb(&keys));
    assert!(
        store_a
            .set_if_absent(&lease, "1", LEASE_TTL, clock.now())
            .await
            .unwrap()
    );
    assert_eq!(
        a.tick(clock.now()).await.unwrap(),
        Some(Step::LeaseHeldElsewhere)
    );
    assert_eq!(
        b.tick(clock.now()).await.unwrap(),
        Some(Step::LeaseHeldElsewhere)
    );
    assert!(!dir.path().join("signing.key.next").exists());
    assert!(a.signing_set().unwrap().next.is_none());
    store_a.delete(&lease).await.unwrap();

    let (step_a, step_b) = tokio::join!(a.tick(clock.now()), b.tick(clock.now()));
    let steps = [step_a.unwrap(), step_b.unwrap()];
    let made: Vec<_> = steps
        .iter()
        .filter(|s| matches!(s, Some(Step::NextMade { .. })))
        .collect();
    assert_eq!(made.len(), 1, "{steps:?}");
    assert!(
        steps.contains(&Some(Step::LeaseHeldElsewhere)) || steps.contains(&None),
        "{steps:?}"
    );
    let next_a = a
        .signing_set()
        .unwrap()
        .next
        .unwrap()
        .certificate
        .sha256_thumbprint_hex();
    let next_b = b
        .signing_set()
        .unwrap()
        .next
        .unwrap()
        .certificate
        .sha256_thumbprint_hex();
    assert_eq!(next_a, next_b, "the other instance picks up the files");
    // After the lease expires nothing is made again: the state file says it is done.
    clock.advance(LEASE_TTL);
    assert_eq!(b.tick(clock.now()).await.unwrap(), None);

    clock.advance(Duration::days(5));
    let (step_a, step_b) = tokio::join!(a.tick(clock.now()), b.tick(clock.now()));
    let steps = [step_a.unwrap(), step_b.unwrap()];
    let promoted = Some(Step::Promoted {
        thumbprint: next_a.clone(),
    });
    assert_eq!(
        steps.iter().filter(|s| **s == promoted).count(),
        1,
        "{steps:?}"
    );
    assert_eq!(
        a.signing_set()
            .unwrap()
            .current
            .certificate
            .sha256_thumbprint_hex(),
        next_a
    );
    assert_eq!(
        b.signing_set()
            .unwrap()
            .current
            .certificate
            .sha256_thumbprint_hex(),
        next_a
    );
}

#[tokio::test]
async fn two_instances_on_one_memory_store() {
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new("t"));
    only_one_instance_makes_the_pair(store.clone(), store).await;
}

#[tokio::test]
async fn two_instances_on_one_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let a: Arc<dyn StateStore> = Arc::new(RedisStore::new(&redis.url(), "roll").unwrap());
    let b: Arc<dyn StateStore> = Arc::new(RedisStore::new(&redis.url(), "roll").unwrap());
    only_one_instance_makes_the_pair(a, b).await;
}

/// Base64 DER of the first certificate in a PEM file.
fn pem_base64(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).unwrap();
    fedsts::crypto::Certificate::from_pem(&pem)
        .unwrap()
        .base64()
        .to_owned()
}

async fn get(server: &common::server::TestServer, rest: &str) -> String {
    let reply = server
        .request(
            "GET",
            &format!("/wsfed/{}/{rest}", server.app_id),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body
}

/// The `<Signature>` element of a signed document.
fn signature_of(document: &str) -> &str {
    let start = document.find("<Signature").unwrap();
    let end = document[start..].find("</Signature>").unwrap();
    &document[start..start + end]
}

const METADATA: &str = "federationmetadata/2007-06/federationmetadata.xml";

/// Through the real server (first-run, self-made certificate: rollover on by default): the
/// metadata and the commands page show the next certificate right after the make step, and
/// the new key signs the metadata after promotion, without a restart (tokens take their key
/// from the same `App::published` snapshot).
#[tokio::test]
async fn the_running_server_publishes_and_promotes_without_restart() {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = common::server::TestServer::start_with(common::server::Options {
        clock: clock.clone(),
        ..Default::default()
    })
    .await;
    let current = pem_base64(&server.signing_cert_path);
    let before = get(&server, METADATA).await;
    // The signature's KeyInfo and the two roles' KeyDescriptors.
    assert_eq!(
        before.matches("<X509Certificate>").count(),
        3,
        "current only"
    );
    server.sts.rollover_tick().await;
    assert_eq!(
        get(&server, METADATA)
            .await
            .matches("<X509Certificate>")
            .count(),
        3
    );

    // The first-run certificate is valid 825 days: 806 days on, it is within the 20-day lead.
    clock.advance(Duration::days(806));
    server.sts.rollover_tick().await;
    let next_path = Path::new(&format!("{}.next", server.signing_cert_path.display())).to_owned();
    let next = pem_base64(&next_path);
    let metadata = get(&server, METADATA).await;
    assert_eq!(
        metadata.matches("<X509Certificate>").count(),
        5,
        "current and next, in both roles"
    );
    assert!(
        signature_of(&metadata).contains(&current),
        "the current key still signs"
    );
    let (at_current, at_next) = (
        metadata.find(&current).unwrap(),
        metadata.find(&next).unwrap(),
    );
    assert!(at_current < at_next, "current first");
    let commands = get(&server, "commands").await;
    assert!(
        commands.contains(&format!("-NextSigningCertificate \"{next}\"")),
        "{commands}"
    );
    assert!(commands.contains(&format!("-SigningCertificate \"{current}\"")));

    // Promotion 5 days later: the new certificate signs and comes first, the old one follows.
    clock.advance(Duration::days(5));
    server.sts.rollover_tick().await;
    assert_eq!(pem_base64(&server.signing_cert_path), next);
    let metadata = get(&server, METADATA).await;
    assert!(metadata.find(&next).unwrap() < metadata.find(&current).unwrap());
    assert!(
        signature_of(&metadata).contains(&next),
        "the new key signs the metadata"
    );
    assert!(!signature_of(&metadata).contains(&current));
    let commands = get(&server, "commands").await;
    assert!(commands.contains(&format!("-SigningCertificate \"{next}\"")));
    assert!(!commands.contains("-NextSigningCertificate"), "{commands}");

    // After the grace, `audit by-key` still knows the replaced key (the state file's history),
    // so the tokens it signed are not flagged as signed elsewhere.
    let replaced = fedsts::crypto::Certificate::from_pem(
        &std::fs::read_to_string(format!("{}.previous", server.signing_cert_path.display()))
            .unwrap(),
    )
    .unwrap()
    .sha256_thumbprint_hex();
    clock.advance(Duration::days(5));
    server.sts.rollover_tick().await;
    assert!(!Path::new(&format!("{}.previous", server.signing_cert_path.display())).exists());
    let known = fedsts::cli::audit::configured_keys(&server.config);
    assert_eq!(
        known.get(&replaced).map(String::as_str),
        Some("apps[0] rolled over (demo)"),
        "{known:?}"
    );
    server.stop().await;
}

/// `check-config` and `serve` (both print `preflight::warnings`) warn about a certificate that
/// expires within the window while rollover is off, and not when it is on.
#[test]
fn an_expiring_certificate_without_rollover_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n# rollover example\n").unwrap();
    let body = &readme[start + 8..];
    let mut config = Config::parse(&body[..body.find("```").unwrap()], dir.path()).unwrap();
    let pair = generate_self_signed("sts.contoso.com token signing", &[], 10).unwrap();
    std::fs::write(&config.apps[0].signing_cert, pair.certificate_pem).unwrap();
    let rollover_warning = |config: &Config| {
        fedsts::preflight::warnings(config)
            .iter()
            .map(ToString::to_string)
            .find(|w| w.starts_with("apps[0].signing_cert: the token-signing certificate expires"))
    };
    assert_eq!(
        rollover_warning(&config),
        None,
        "auto = true in the example"
    );
    config.apps[0].rollover.auto = None;
    let warning = rollover_warning(&config).expect("not self-made: rollover off by default");
    assert!(
        warning.contains("automatic rollover is off — set [apps.rollover] auto = true"),
        "{warning}"
    );
}

/// A promotion of the file store stopped after each of its steps (what a crash between two
/// renames does), then a restart of the whole service on the same files: it starts, serves a
/// complete pair (never the new key with the old certificate), and the next tick converges.
#[tokio::test]
async fn a_file_promotion_stopped_after_any_step_restarts_on_a_whole_pair_and_converges() {
    let steps = FileKeyStore::new("a.crt".into(), "a.key".into())
        .promotion_steps()
        .len();
    assert_eq!(steps, 5);
    for done in 0..=steps {
        let dir = tempfile::tempdir().unwrap();
        let mut config = fedsts::first_run::prepare(dir.path(), "127.0.0.1:0")
            .unwrap()
            .config;
        let users = dir.path().join("users.toml");
        std::fs::write(&users, common::server::users_file()).unwrap();
        config.directories.insert(
            "demo".into(),
            fedsts::config::DirectoryConfig::File { path: users },
        );
        let app = &config.apps[0];
        let (cert, key) = (app.signing_cert.clone(), app.signing_key.clone().unwrap());
        let keys = FileKeyStore::new(cert.clone(), key.clone());
        let first = thumb(&keys);
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let sts =
            fedsts::sts::Sts::with_state(&config, clock.clone(), Arc::new(MemoryStore::new("t")))
                .unwrap();
        // The first-run certificate is valid 825 days: 806 days on, the next pair is made.
        clock.advance(Duration::days(806));
        sts.rollover_tick().await;
        let next_cert = Path::new(&format!("{}.next", cert.display())).to_owned();
        let next =
            fedsts::crypto::Certificate::from_pem(&std::fs::read_to_string(&next_cert).unwrap())
                .unwrap()
                .sha256_thumbprint_hex();
        drop(sts);
        for (name, step) in keys.promotion_steps().into_iter().take(done) {
            step().unwrap_or_else(|e| panic!("{name}: {e}"));
        }

        // Restart on the files as the crash left them.
        let sts =
            fedsts::sts::Sts::with_state(&config, clock.clone(), Arc::new(MemoryStore::new("t")))
                .unwrap_or_else(|e| panic!("after {done} steps the service does not start: {e}"));
        let serving = sts
            .apps()
            .next()
            .unwrap()
            .published()
            .signing
            .current
            .clone();
        serving.self_test().unwrap();
        let serving = serving.certificate.sha256_thumbprint_hex();
        assert!(serving == first || serving == next, "after {done} steps");
        clock.advance(Duration::days(5));
        sts.rollover_tick().await;
        let set = &sts.apps().next().unwrap().published().signing;
        set.current.self_test().unwrap();
        assert_eq!(
            set.current.certificate.sha256_thumbprint_hex(),
            next,
            "after {done} steps"
        );
        assert_eq!(
            set.previous.as_ref().unwrap().sha256_thumbprint_hex(),
            first,
            "after {done} steps"
        );
        assert!(set.next.is_none());
        assert_eq!(thumb(&keys), next);
        assert!(!next_cert.exists());
    }
}

/// The `X509Certificate` of an assertion's `KeyInfo`: the certificate of the key that signed it.
fn key_info_sha256(assertion: &str) -> String {
    let start = assertion.find("<X509Certificate>").unwrap() + "<X509Certificate>".len();
    let end = assertion[start..].find("</X509Certificate>").unwrap() + start;
    let der = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        &assertion[start..end],
    )
    .unwrap();
    fedsts::crypto::Certificate::from_der(&der)
        .unwrap()
        .sha256_thumbprint_hex()
}

/// A real memory store whose `count_attempt` (the lockout step, after the audit record is made
/// and before the password and the signature) waits while the gate is closed.
#[derive(Debug)]
struct GatedStore {
    inner: MemoryStore,
    open: tokio::sync::watch::Sender<bool>,
    waiting: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl StateStore for GatedStore {
    async fn set_if_absent(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, fedsts::state::StateError> {
        self.inner.set_if_absent(key, value, ttl, now).await
    }
    async fn get(
        &self,
        key: &str,
        now: OffsetDateTime,
    ) -> Result<Option<String>, fedsts::state::StateError> {
        self.inner.get(key, now).await
    }
    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&str>,
        new: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, fedsts::state::StateError> {
        self.inner
            .compare_and_swap(key, expected, new, ttl, now)
            .await
    }
    async fn count_attempt(
        &self,
        key: &str,
        rule: &fedsts::state::AttemptRule,
        now: OffsetDateTime,
    ) -> Result<fedsts::state::AttemptCount, fedsts::state::StateError> {
        let mut open = self.open.subscribe();
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _ = open.wait_for(|open| *open).await;
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.count_attempt(key, rule, now).await
    }
    async fn give_back_attempt(
        &self,
        key: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<(), fedsts::state::StateError> {
        self.inner.give_back_attempt(key, ttl, now).await
    }
    async fn take_token(
        &self,
        key: &str,
        rule: &fedsts::state::TokenRule,
        now: OffsetDateTime,
    ) -> Result<fedsts::state::TokenTake, fedsts::state::StateError> {
        self.inner.take_token(key, rule, now).await
    }
    async fn delete(&self, key: &str) -> Result<(), fedsts::state::StateError> {
        self.inner.delete(key).await
    }
    async fn health(&self) -> Result<(), fedsts::state::StateError> {
        self.inner.health().await
    }
    fn is_shared(&self) -> bool {
        false
    }
}

/// Requests in flight while the pair is promoted (held after their audit record was made, before
/// the signature): each issued record names the key whose signature its assertion carries —
/// the new one — not the pair the app had when the request began.
#[tokio::test]
async fn an_issued_record_names_the_key_that_signed_across_a_promotion() {
    use common::wstrust::{element, message_id, path_of, rst13};
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (log, _capture) = common::audit::AuditLog::capture();
    let gated = Arc::new(GatedStore {
        inner: MemoryStore::new("t"),
        open: tokio::sync::watch::Sender::new(true),
        waiting: std::sync::atomic::AtomicUsize::new(0),
    });
    let server = Arc::new(
        common::server::TestServer::start_with(common::server::Options {
            clock: clock.clone(),
            store: Some(gated.clone()),
            ..Default::default()
        })
        .await,
    );
    // The server's own first tick (at start) runs before the clock moves.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    clock.advance(Duration::days(806));
    server.sts.rollover_tick().await;
    clock.advance(Duration::days(5));
    let url = server.app_url("trust/13/usernamemixed");
    let request = |server: Arc<common::server::TestServer>| {
        let body = rst13(
            &url,
            common::server::ALICE,
            common::server::PASSWORD,
            clock.now(),
            Some(&message_id()),
        );
        let url = url.clone();
        async move { server.post_soap(&path_of(&url), body).await }
    };
    // One token before the promotion, then two requests held at the lockout step across it.
    let mut replies = vec![request(server.clone()).await];
    gated.open.send_replace(false);
    let mut held = tokio::task::JoinSet::new();
    for _ in 0..2 {
        held.spawn(request(server.clone()));
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while gated.waiting.load(std::sync::atomic::Ordering::SeqCst) < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the requests never reached the lockout step"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.sts.rollover_tick().await;
    gated.open.send_replace(true);
    while let Some(reply) = held.join_next().await {
        replies.push(reply.unwrap());
    }
    let assertions: Vec<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, 200, "{}", r.body);
            element(&r.body, "RequestedSecurityToken")
                .unwrap()
                .to_owned()
        })
        .collect();
    let issued: Vec<_> = log
        .records()
        .into_iter()
        .filter(|r| r["decision"] == "issued")
        .collect();
    assert_eq!(issued.len(), 3);
    let mut signers = Vec::new();
    for record in &issued {
        let id = record["assertion_id"].as_str().unwrap();
        let assertion = assertions
            .iter()
            .find(|a| a.contains(id))
            .expect("the record's assertion");
        let signer = key_info_sha256(assertion);
        assert_eq!(record["signing_key_sha256"], signer.as_str(), "{id}");
        signers.push(signer);
    }
    assert_ne!(
        signers[0], signers[1],
        "the held requests were signed by the new key"
    );
    assert_eq!(signers[1], signers[2]);
    let server = Arc::into_inner(server).unwrap();
    server.stop().await;
}
