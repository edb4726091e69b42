//! Concurrent guessing against the lockout and the TOTP limit, on real servers (in-memory state,
//! and two instances sharing a real `redis-server`): every guess of a burst is released at once,
//! and the audit log counts how many passwords or codes were really checked. Each attack is a
//! fixed number of requests to loopback. Also: a locked account answers no faster than a wrong
//! password (the refusal is padded to the typical check time). And a burst from one address
//! against instances sharing Redis is rate limited (429), never refused for contention.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::audit::AuditLog;
use common::passive::{Browser, form, inputs, sign_in_query};
use common::redis::RedisServer;
use common::server::{ALICE, Options, PASSWORD, Reply, TestServer, users_file_with_totp_user};
use common::wstrust::{fault_subcode, message_id, path_of, rst13};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::{RateLimitConfig, StateConfig};
use fedsts::policy::ratelimit::RateLimiter;
use fedsts::state::{self, StateStore};
use time::OffsetDateTime;

/// Guesses in each burst, from [`ADDRESSES`] client addresses.
const GUESSES: usize = 60;
const ADDRESSES: usize = 5;
const THRESHOLD: u32 = 10;
const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

fn redis_store(redis: &RedisServer) -> Arc<dyn StateStore> {
    state::build(&StateConfig {
        redis_url: Some(redis.url()),
        key_prefix: None,
        max_memory_entries: None,
    })
    .unwrap()
}

/// A server behind a trusted loopback proxy, lockout threshold [`THRESHOLD`], rate limit off,
/// dave enrolled for TOTP.
async fn server(clock: Arc<ManualClock>, store: Option<Arc<dyn StateStore>>) -> Arc<TestServer> {
    Arc::new(
        TestServer::start_with(Options {
            clock,
            store,
            configure: Box::new(|config, dir| {
                config.server.trusted_proxies = vec!["127.0.0.1".into()];
                config.lockout.threshold = THRESHOLD;
                // The per-IP rate limit has its own tests; off here so that only the lockout
                // and TOTP counters meet the burst.
                config.rate_limit.enabled = false;
                let users = users_file_with_totp_user(
                    dir,
                    "users.toml",
                    DAVE,
                    "dave-immutable",
                    DAVE_SECRET,
                );
                config.directories.insert(
                    "demo".into(),
                    fedsts::config::DirectoryConfig::File { path: users },
                );
            }),
        })
        .await,
    )
}

fn client_ip(n: usize) -> String {
    format!("203.0.113.{}", 1 + n % ADDRESSES)
}

async fn usernamemixed(server: &TestServer, now: OffsetDateTime, ip: &str, pw: &str) -> Reply {
    let url = server.app_url("trust/13/usernamemixed");
    let body = rst13(&url, ALICE, pw, now, Some(&message_id()));
    server
        .request(
            "POST",
            &path_of(&url),
            &[
                ("content-type", "application/soap+xml; charset=utf-8"),
                ("x-forwarded-for", ip),
            ],
            body.into_bytes(),
        )
        .await
}

/// Sends [`GUESSES`] wrong passwords for alice at once, spread over `servers`.
async fn usernamemixed_burst(servers: &[Arc<TestServer>], now: OffsetDateTime) -> Vec<Reply> {
    let tasks: Vec<_> = (0..GUESSES)
        .map(|n| {
            let server = servers[n % servers.len()].clone();
            tokio::spawn(
                async move { usernamemixed(&server, now, &client_ip(n), "Winter2026!").await },
            )
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

fn count(log: &AuditLog, reason: &str) -> usize {
    log.reasons().iter().filter(|r| *r == reason).count()
}

/// The generic credential fault, or the hash queue's busy fault: a burst larger than the queue
/// (one check per core running, a few waiting) gets some of the latter, and a busy refusal
/// checks no password (its reserved attempt is given back).
fn refused_as_guess_or_busy(reply: &Reply) -> bool {
    match fault_subcode(&reply.body) {
        Some("FailedAuthentication") => true,
        Some("RequestFailed") => reply.body.contains("busy"),
        _ => false,
    }
}

/// Every guess of a burst was checked, locked out or shed as busy, and at most [`THRESHOLD`]
/// were checked.
fn at_most_threshold_checked(log: &AuditLog, what: &str) {
    let checked = count(log, "wrong_password");
    assert!(
        checked <= THRESHOLD as usize,
        "{checked} of {GUESSES} {what} were checked (threshold {THRESHOLD})"
    );
    assert_eq!(
        checked + count(log, "account_locked_unfamiliar") + count(log, "password_queue_full"),
        GUESSES,
        "{:?}",
        log.reasons()
    );
}

async fn stop(servers: Vec<Arc<TestServer>>) {
    for server in servers {
        Arc::try_unwrap(server).ok().unwrap().stop().await;
    }
}

#[tokio::test]
async fn a_burst_of_wrong_passwords_checks_at_most_threshold_of_them() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let servers = vec![server(clock.clone(), None).await];
    let replies = usernamemixed_burst(&servers, clock.now()).await;
    assert!(
        replies.iter().all(refused_as_guess_or_busy),
        "every guess gets the generic credential fault (or the busy fault)"
    );
    at_most_threshold_checked(&log, "simultaneous guesses");
    // Guesses the queue shed gave their attempts back: guessing on one at a time reaches the
    // threshold exactly, and then the account is locked.
    for n in 0..THRESHOLD as usize {
        if count(&log, "wrong_password") == THRESHOLD as usize {
            break;
        }
        usernamemixed(&servers[0], clock.now(), &client_ip(n), "Winter2026!").await;
    }
    assert_eq!(count(&log, "wrong_password"), THRESHOLD as usize);
    // The right password from yet another unfamiliar address is locked out too.
    let right = usernamemixed(&servers[0], clock.now(), "192.0.2.9", PASSWORD).await;
    assert_eq!(fault_subcode(&right.body), Some("FailedAuthentication"));
    stop(servers).await;
}

#[tokio::test]
async fn a_burst_of_passive_wrong_passwords_checks_at_most_threshold_of_them() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone(), None).await;
    let query = sign_in_query(&[]);
    let mut prepared = Vec::new();
    for n in 0..GUESSES {
        let mut browser = Browser::new(&server);
        browser
            .headers
            .push(("x-forwarded-for".into(), client_ip(n)));
        let page = browser.get(&query).await;
        let mut fields = inputs(&page.body);
        fields.insert("username".into(), ALICE.into());
        fields.insert("password".into(), "Winter2026!".into());
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let cookie: Vec<String> = browser
            .jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        prepared.push((client_ip(n), cookie.join("; "), form(&pairs)));
    }
    let path = format!("/wsfed/{}", server.app_id);
    let tasks: Vec<_> = prepared
        .into_iter()
        .map(|(ip, cookie, body)| {
            let server = server.clone();
            let path = path.clone();
            tokio::spawn(async move {
                let headers = [
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", cookie.as_str()),
                    ("x-forwarded-for", ip.as_str()),
                ];
                server
                    .request("POST", &path, &headers, body.into_bytes())
                    .await
            })
        })
        .collect();
    for task in tasks {
        let reply = task.await.unwrap();
        let busy = reply.status == 503 && reply.body.contains("Sign-in busy");
        assert!(reply.status == 401 || busy, "{}", reply.body);
    }
    at_most_threshold_checked(&log, "simultaneous passive guesses");
    stop(vec![server]).await;
}

#[tokio::test]
async fn two_instances_sharing_redis_check_at_most_threshold_of_a_burst() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let servers = vec![
        server(clock.clone(), Some(redis_store(&redis))).await,
        server(clock.clone(), Some(redis_store(&redis))).await,
    ];
    let replies = usernamemixed_burst(&servers, clock.now()).await;
    assert!(
        replies.iter().all(refused_as_guess_or_busy),
        "no guess turns into an unavailable-state error: {:?}",
        log.reasons()
    );
    at_most_threshold_checked(&log, "guesses over two instances");
    stop(servers).await;
}

#[tokio::test]
async fn a_burst_of_wrong_totp_codes_checks_at_most_five_and_none_is_a_503() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone(), Some(redis_store(&redis))).await;
    let query = sign_in_query(&[("wauth", "http://schemas.microsoft.com/claims/multipleauthn")]);
    let mut browser = Browser::new(&server);
    let page = browser.get(&query).await;
    let code_page = browser.sign_in(&page, DAVE, PASSWORD).await;
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    let cookie: Vec<String> = browser
        .jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let cookie = cookie.join("; ");
    let path = format!("/wsfed/{}", server.app_id);
    let tasks: Vec<_> = (0..40)
        .map(|n| {
            let mut fields = inputs(&code_page.body);
            fields.insert("totp".into(), format!("{:06}", 100_000 + n));
            let pairs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let body = form(&pairs);
            let (server, path, cookie) = (server.clone(), path.clone(), cookie.clone());
            tokio::spawn(async move {
                let headers = [
                    ("content-type", "application/x-www-form-urlencoded"),
                    ("cookie", cookie.as_str()),
                ];
                server
                    .request("POST", &path, &headers, body.into_bytes())
                    .await
            })
        })
        .collect();
    for task in tasks {
        let status = task.await.unwrap().status;
        assert!(status == 401 || status == 429, "status {status}");
    }
    let checked = count(&log, "totp_wrong");
    assert!(
        checked <= 5,
        "{checked} of 40 simultaneous codes were checked"
    );
    assert_eq!(checked + count(&log, "totp_attempts_exceeded"), 40);
    stop(vec![server]).await;
}

/// Median of the times of `n` requests made by `request`.
async fn median_time<F, Fut>(n: usize, mut request: F) -> std::time::Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let mut times = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        let reply = request().await;
        times.push(started.elapsed());
        assert_eq!(fault_subcode(&reply.body), Some("FailedAuthentication"));
    }
    times.sort();
    times[n / 2]
}

#[tokio::test]
async fn a_locked_account_answers_no_faster_than_a_wrong_password() {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone(), None).await;
    let now = clock.now();
    let wrong = median_time(THRESHOLD as usize, || {
        usernamemixed(&server, now, "203.0.113.1", "Winter2026!")
    })
    .await;
    let locked = median_time(7, || {
        usernamemixed(&server, now, "203.0.113.1", "Winter2026!")
    })
    .await;
    // Generous: without padding a locked refusal takes a few percent of a password check.
    assert!(
        locked * 2 >= wrong,
        "locked refusal {locked:?} vs wrong password {wrong:?}"
    );
    stop(vec![server]).await;
}

/// Requests of the rate-limit burst, all from one client address, and the bucket size.
const RATE_BURST_REQUESTS: usize = 40;
const RATE_BUCKET: u32 = 20;
/// Instances sharing the bucket in the end-to-end burst: enough that most requests each one
/// gets fit its password-hash queue (one check per core running, four per core waiting); the
/// ones it sheds as busy have taken their token all the same.
const RATE_INSTANCES: usize = 4;

/// An instance over `store` whose only limit that a burst of right passwords meets is the
/// per-IP rate limit (the lockout threshold is far above the burst; see [`RATE_INSTANCES`] for
/// the hash queue): [`RATE_BUCKET`] tokens, refilled at 1 a minute (the manual clock stands
/// still, so nothing refills during the burst).
async fn rate_limited_server(
    clock: Arc<ManualClock>,
    store: Arc<dyn StateStore>,
) -> Arc<TestServer> {
    Arc::new(
        TestServer::start_with(Options {
            clock,
            store: Some(store),
            configure: Box::new(|config, _| {
                config.server.trusted_proxies = vec!["127.0.0.1".into()];
                config.rate_limit.burst = RATE_BUCKET;
                config.rate_limit.requests_per_minute = 1;
                // Above the burst, so that the lockout's reserved attempts refuse none of it.
                config.lockout.threshold = 1000;
            }),
        })
        .await,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_address_over_redis_is_rate_limited_never_refused_for_contention() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let mut servers = Vec::new();
    for _ in 0..RATE_INSTANCES {
        servers.push(rate_limited_server(clock.clone(), redis_store(&redis)).await);
    }
    let now = clock.now();
    let tasks: Vec<_> = (0..RATE_BURST_REQUESTS)
        .map(|n| {
            let server = servers[n % servers.len()].clone();
            tokio::spawn(async move { usernamemixed(&server, now, "198.51.100.7", PASSWORD).await })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    // A request that got a token either got its password checked (200) or was shed by that
    // instance's hash queue (busy: it took its token before the queue refused it).
    let outcome = |r: &Reply| match r.status {
        200 => "token",
        429 => "rate_limited",
        _ if refused_as_guess_or_busy(r) && r.body.contains("busy") => "busy",
        _ => "other",
    };
    let outcomes: Vec<&str> = replies.iter().map(outcome).collect();
    let count_of = |what: &str| outcomes.iter().filter(|o| **o == what).count();
    assert_eq!(
        count_of("other"),
        0,
        "only 200, 429 and the busy fault, never a state_unavailable fault for contention: {outcomes:?}"
    );
    assert_eq!(
        count_of("token") + count_of("busy"),
        RATE_BUCKET as usize,
        "the shared bucket lets exactly its size through: {outcomes:?}"
    );
    assert_eq!(
        count_of("rate_limited"),
        RATE_BURST_REQUESTS - RATE_BUCKET as usize
    );
    stop(servers).await;
}

/// The rate limiter itself over a real Redis, as [`RATE_BURST_REQUESTS`] simultaneous requests
/// of one address on two instances draw on it: every take answers (none fails for contention)
/// and exactly [`RATE_BUCKET`] get a token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_takes_from_one_redis_bucket_never_fail_and_never_overdraw() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let config = RateLimitConfig {
        burst: RATE_BUCKET,
        requests_per_minute: 1,
        ..RateLimitConfig::default()
    };
    let instances = [
        RateLimiter::new(config.clone(), redis_store(&redis)),
        RateLimiter::new(config, redis_store(&redis)),
    ];
    let now = OffsetDateTime::now_utc();
    let ip: std::net::IpAddr = "198.51.100.7".parse().unwrap();
    let start = Arc::new(tokio::sync::Barrier::new(RATE_BURST_REQUESTS));
    let tasks: Vec<_> = (0..RATE_BURST_REQUESTS)
        .map(|n| {
            let limiter = instances[n % instances.len()].clone();
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                limiter.take(ip, now).await
            })
        })
        .collect();
    let mut granted = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(None) => granted += 1,
            // Empty at 1 token a minute: the next one in 60 s.
            Ok(Some(limited)) => assert_eq!(limited.retry_after_secs, 60),
            Err(e) => panic!("a take failed under contention: {e}"),
        }
    }
    assert_eq!(granted, RATE_BUCKET as usize);
}
