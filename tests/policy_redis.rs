//! Two fedsts instances sharing one real `redis-server` (started here on a free loopback port):
//! one replay cache, one lockout (also managed by `fedsts lockout show|reset`), and fail-closed
//! behaviour while Redis is down, recovering when it is back; a TOTP code spent on one instance
//! is refused on the other, and passive sign-in fails closed with a 503 page without Redis; a
//! session signed out on one instance is dead on the other (a copied cookie gets no token), and
//! without Redis a session is not honoured and sign-out says it could not complete; a pending
//! TOTP enrolment started on one instance is finished on the other and spent once.

mod common;

use std::sync::Arc;
use std::time::Duration as StdDuration;

use common::passive::{Browser, WCTX, assert_response_page, sign_in_query};
use common::redis::RedisServer;
use common::server::{ALICE, Options, PASSWORD, Reply, TestServer, users_file_with_totp_user};
use common::wstrust::{fault_reason, fault_subcode, message_id, rst13};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::StateConfig;
use fedsts::state;
use fedsts::totp::{self, TotpKey};
use time::OffsetDateTime;

fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    format!("/{}", after_scheme.split_once('/').unwrap().1)
}

const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const RECEIVER: &str = "https://rp.test.invalid/login.srf";

/// An instance whose directory also has dave, who has a TOTP secret.
async fn passive_instance(redis_url: &str, clock: Arc<ManualClock>) -> TestServer {
    passive_instance_with_key(redis_url, clock, None).await
}

/// [`passive_instance`] with the browser session key in `session_key` (instances behind one
/// load balancer share it), or a random one.
async fn passive_instance_with_key(
    redis_url: &str,
    clock: Arc<ManualClock>,
    session_key: Option<std::path::PathBuf>,
) -> TestServer {
    let store = state::build(&StateConfig {
        redis_url: Some(redis_url.to_owned()),
        key_prefix: None,
        max_memory_entries: None,
    })
    .unwrap();
    TestServer::start_with(Options {
        clock,
        store: Some(store),
        configure: Box::new(move |config, dir| {
            config.server.session_key = session_key;
            let users =
                users_file_with_totp_user(dir, "users.toml", DAVE, "dave-immutable", DAVE_SECRET);
            config.directories.insert(
                "demo".into(),
                fedsts::config::DirectoryConfig::File { path: users },
            );
            config.apps[0].passive.reply_url = RECEIVER.into();
        }),
    })
    .await
}

async fn instance(redis_url: &str, clock: Arc<ManualClock>) -> TestServer {
    let store = state::build(&StateConfig {
        redis_url: Some(redis_url.to_owned()),
        key_prefix: None,
        max_memory_entries: None,
    })
    .unwrap();
    TestServer::start_with(Options {
        clock,
        store: Some(store),
        configure: Box::new(|config, _| {
            config.server.trusted_proxies = vec!["127.0.0.1".into()];
            config.lockout.threshold = 3;
        }),
    })
    .await
}

async fn post(server: &TestServer, body: &str, ip: &str) -> Reply {
    let url = server.app_url("trust/13/usernamemixed");
    server
        .request(
            "POST",
            &path_of(&url),
            &[
                ("content-type", "application/soap+xml; charset=utf-8"),
                ("x-forwarded-for", ip),
            ],
            body.as_bytes().to_vec(),
        )
        .await
}

fn body(server: &TestServer, password: &str, now: OffsetDateTime) -> String {
    let url = server.app_url("trust/13/usernamemixed");
    rst13(&url, ALICE, password, now, Some(&message_id()))
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedsts"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_replay_marks_and_lockout() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let a = instance(&redis.url(), clock.clone()).await;
    let b = instance(&redis.url(), clock.clone()).await;

    let first = body(&a, PASSWORD, clock.now());
    assert_eq!(post(&a, &first, "198.51.100.1").await.status, 200);
    let replay = post(&b, &first, "198.51.100.1").await;
    assert_eq!(
        fault_subcode(&replay.body),
        Some("InvalidRequest"),
        "{}",
        replay.body
    );

    // Three bad passwords, spread over both instances, lock unfamiliar locations on both.
    for (n, server) in [&a, &b, &a].into_iter().enumerate() {
        let reply = post(
            server,
            &body(server, "bad", clock.now()),
            &format!("203.0.113.{n}"),
        )
        .await;
        assert_eq!(fault_subcode(&reply.body), Some("FailedAuthentication"));
    }
    let locked = post(&b, &body(&b, PASSWORD, clock.now()), "192.0.2.1").await;
    assert_eq!(fault_subcode(&locked.body), Some("FailedAuthentication"));
    assert_eq!(
        post(&b, &body(&b, PASSWORD, clock.now()), "198.51.100.1")
            .await
            .status,
        200
    );

    // The admin CLI sees and resets the shared state.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("fedsts.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"https://localhost\"\ntls_cert = \"x\"\ntls_key = \"y\"\n[state]\nredis_url = \"{}\"\n[lockout]\nthreshold = 3\n",
            redis.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let (ok, shown, err) = cli(&["lockout", "show", ALICE, "--config", config]);
    assert!(ok, "{err}");
    assert!(shown.starts_with(&format!("user: {ALICE}\nfamiliar: 0 bad password(s), last never, not locked\nunfamiliar: 3 bad password(s), last ")), "{shown}");
    assert!(
        shown.contains(", locked\nfamiliar IPs: 127.0.0.1, 198.51.100.1\n"),
        "{shown}"
    );
    let (ok, reset, err) = cli(&["lockout", "reset", ALICE, "--config", config]);
    assert!(ok, "{err}");
    assert_eq!(reset, format!("{ALICE}: bad-password counters cleared\n"));
    assert_eq!(
        post(&a, &body(&a, PASSWORD, clock.now()), "192.0.2.1")
            .await
            .status,
        200
    );
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_closed_and_recovers_when_it_is_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let a = instance(&redis.url(), clock.clone()).await;
    assert_eq!(
        post(&a, &body(&a, PASSWORD, clock.now()), "198.51.100.1")
            .await
            .status,
        200
    );
    assert_eq!(a.request("GET", "/healthz", &[], vec![]).await.status, 200);

    redis.stop();
    let refused = post(&a, &body(&a, PASSWORD, clock.now()), "198.51.100.1").await;
    assert_eq!(refused.status, 500);
    assert_eq!(fault_subcode(&refused.body), Some("RequestFailed"));
    assert!(fault_reason(&refused.body).unwrap().starts_with(
        "The sign-in service cannot check account protection right now, so it refuses sign-ins; try again later."
    ));
    let health = a.request("GET", "/healthz", &[], vec![]).await;
    assert_eq!(
        (health.status, health.body.as_str()),
        (503, "unhealthy: state store\n")
    );

    redis.restart();
    // The connection manager reconnects on its own; give it a few real tries (no policy window
    // is involved here, only a TCP reconnect).
    let mut status = 0;
    for _ in 0..50 {
        status = post(&a, &body(&a, PASSWORD, clock.now()), "198.51.100.1")
            .await
            .status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(100)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(a.request("GET", "/healthz", &[], vec![]).await.status, 200);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_code_spent_on_one_instance_is_refused_on_the_other_and_passive_fails_closed() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let a = passive_instance(&redis.url(), clock.clone()).await;
    let b = passive_instance(&redis.url(), clock.clone()).await;
    let query = sign_in_query(&[("wauth", "http://schemas.microsoft.com/claims/multipleauthn")]);
    let code = totp::current_code(&TotpKey::from_base32(DAVE_SECRET).unwrap(), clock.now());

    let mut on_a = Browser::new(&a);
    let form = on_a.get(&query).await;
    let code_page = on_a.sign_in(&form, DAVE, PASSWORD).await;
    let issued = on_a.enter_code(&code_page, &code).await;
    assert_response_page(&issued, RECEIVER, WCTX);

    let mut on_b = Browser::new(&b);
    let form = on_b.get(&query).await;
    let code_page = on_b.sign_in(&form, DAVE, PASSWORD).await;
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    let replayed = on_b.enter_code(&code_page, &code).await;
    assert_eq!(replayed.status, 401);
    assert!(replayed.body.contains("That code is not valid"));
    assert!(!replayed.body.contains("wresult"));

    redis.stop();
    let mut down = Browser::new(&a);
    let form = down.get(&sign_in_query(&[])).await;
    assert_eq!(form.status, 200, "the form needs no shared state");
    let refused = down.sign_in(&form, ALICE, PASSWORD).await;
    assert_eq!(refused.status, 503);
    assert!(refused.body.contains(
        "The sign-in service cannot check account protection right now, so it refuses sign-ins. Try again in a few minutes."
    ), "{}", refused.body);
    assert!(!refused.body.contains("wresult"));
    let health = a.request("GET", "/healthz", &[], vec![]).await;
    assert_eq!(health.status, 503);
    a.stop().await;
    b.stop().await;
}

/// Attack: a session cookie copied before sign-out, replayed on another instance behind the same
/// load balancer. The revocation is shared through Redis; without Redis nobody honours a session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_signed_out_on_one_instance_is_dead_on_the_other() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("session.key");
    let a = passive_instance_with_key(&redis.url(), clock.clone(), Some(key.clone())).await;
    let b = passive_instance_with_key(&redis.url(), clock.clone(), Some(key)).await;
    let query = sign_in_query(&[]);

    let mut user = Browser::new(&a);
    let form = user.get(&query).await;
    assert_response_page(&user.sign_in(&form, ALICE, PASSWORD).await, RECEIVER, WCTX);
    let mut thief = Browser::new(&b);
    thief.jar = user.jar.clone();
    assert_response_page(&thief.get(&query).await, RECEIVER, WCTX);

    let out = user.get("wa=wsignout1.0").await;
    assert_eq!(out.status, 200, "{}", out.body);
    let mut thief_on_a = Browser::new(&a);
    thief_on_a.jar = thief.jar.clone();
    for replayed in [thief.get(&query).await, thief_on_a.get(&query).await] {
        assert_eq!(replayed.status, 200);
        assert!(!replayed.body.contains("wresult"), "{}", replayed.body);
        assert!(replayed.body.contains("name=\"csrf\""), "the password form");
    }

    let mut second = Browser::new(&a);
    let form = second.get(&query).await;
    assert_response_page(
        &second.sign_in(&form, ALICE, PASSWORD).await,
        RECEIVER,
        WCTX,
    );
    redis.stop();
    let unchecked = second.get(&query).await;
    assert_eq!(unchecked.status, 503, "fail closed: {}", unchecked.body);
    assert!(!unchecked.body.contains("wresult"));
    let out = second.get("wa=wsignout1.0").await;
    assert_eq!(out.status, 503, "{}", out.body);
    assert!(
        out.body.contains("could not end the session on the server"),
        "{}",
        out.body
    );
    a.stop().await;
    b.stop().await;
}

/// A pending TOTP enrolment started through one instance's store is finished through the
/// other's; a burst of finishes of one enrolment from both instances at once spends it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_enrolment_is_shared_and_spent_once_across_instances() {
    use fedsts::policy::totp_enrolment::{NotPending, Pending, PendingEnrolments};
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let connect = || {
        PendingEnrolments::new(
            state::build(&StateConfig {
                redis_url: Some(redis.url()),
                key_prefix: None,
                max_memory_entries: None,
            })
            .unwrap(),
        )
    };
    let (a, b) = (connect(), connect());
    let now = OffsetDateTime::now_utc();
    let pending = Pending {
        id: "e1".into(),
        secret: DAVE_SECRET.into(),
        replacing: None,
    };
    a.start("app", ALICE, &pending, now).await.unwrap();
    assert_eq!(
        b.find("app", ALICE, "e1", now).await.unwrap(),
        Ok(pending.clone())
    );
    let mut finishes = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let pending = pending.clone();
        finishes.push(tokio::spawn(async move {
            store.spend("app", ALICE, &pending, now).await.unwrap()
        }));
    }
    let mut spent = 0;
    for finish in finishes {
        spent += usize::from(finish.await.unwrap());
    }
    assert_eq!(spent, 1, "one of 16 simultaneous finishes wins");
    assert_eq!(
        a.find("app", ALICE, "e1", now).await.unwrap(),
        Err(NotPending::Spent)
    );
}
