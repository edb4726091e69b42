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
