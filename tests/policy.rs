//! Policy and protection on a real server (in-memory state): extranet smart lockout with
//! familiar and unfamiliar locations, log-only mode, reset, replay marks, rate limits and the
//! audit records of each decision. Time is a `ManualClock`; client addresses come from
//! `X-Forwarded-For`, believed because the test's loopback peer is a configured trusted proxy.

mod common;

use std::sync::Arc;

use common::audit::AuditLog;
use common::server::{ALICE, Options, PASSWORD, Reply, TestServer};
use common::wstrust::{fault_reason, fault_subcode, message_id, rst13};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::lockout::Mode;
use fedsts::error::ACCESS_DENIED;
use fedsts::policy::lockout::UserRecord;
use time::{Duration, OffsetDateTime};

fn path_of(url: &str) -> String {
    let after_scheme = url.split_once("://").unwrap().1;
    format!("/{}", after_scheme.split_once('/').unwrap().1)
}

struct Harness {
    server: TestServer,
    clock: Arc<ManualClock>,
}

impl Harness {
    async fn start(configure: impl FnOnce(&mut fedsts::config::Config) + 'static) -> Self {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let server = TestServer::start_with(Options {
            clock: clock.clone(),
            configure: Box::new(move |config, _| {
                config.server.trusted_proxies = vec!["127.0.0.1".into()];
                config.lockout.threshold = 3;
                config.lockout.observation_window_secs = 1800;
                config.rate_limit.burst = 1000;
                configure(config);
            }),
            ..Options::default()
        })
        .await;
        Self { server, clock }
    }

    fn url(&self) -> String {
        self.server.app_url("trust/13/usernamemixed")
    }

    async fn post(&self, body: String, headers: &[(&str, &str)]) -> Reply {
        let mut all = vec![("content-type", "application/soap+xml; charset=utf-8")];
        all.extend_from_slice(headers);
        self.server
            .request("POST", &path_of(&self.url()), &all, body.into_bytes())
            .await
    }

    /// One sign-in of alice from `ip` (via the trusted proxy) with `password`.
    async fn sign_in(&self, ip: &str, password: &str) -> Reply {
        let body = rst13(
            &self.url(),
            ALICE,
            password,
            self.clock.now(),
            Some(&message_id()),
        );
        self.post(body, &[("x-forwarded-for", ip)]).await
    }
}

fn assert_generic_failure(reply: &Reply) {
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(fault_subcode(&reply.body), Some("FailedAuthentication"));
    assert!(
        fault_reason(&reply.body)
            .unwrap()
            .starts_with(ACCESS_DENIED),
        "{}",
        reply.body
    );
}

#[tokio::test]
async fn spray_locks_unfamiliar_locations_while_the_user_signs_in_from_a_familiar_one() {
    let (log, _guard) = AuditLog::capture();
    let h = Harness::start(|_| {}).await;
    let home = "198.51.100.10";
    assert_eq!(h.sign_in(home, PASSWORD).await.status, 200);

    // A bounded spray from many unfamiliar addresses.
    for n in 1..=5 {
        let reply = h.sign_in(&format!("203.0.113.{n}"), "Winter2026!").await;
        assert_generic_failure(&reply);
    }
    // Locked for unfamiliar locations: even the right password gets the same generic fault.
    let locked = h.sign_in("192.0.2.77", PASSWORD).await;
    assert_generic_failure(&locked);
    let wrong = h.sign_in("203.0.113.1", "Winter2026!").await;
    assert_eq!(
        fault_reason(&locked.body).map(|r| r.split(" Correlation").next()),
        fault_reason(&wrong.body).map(|r| r.split(" Correlation").next())
    );
    // The user, from home, is not affected.
    assert_eq!(h.sign_in(home, PASSWORD).await.status, 200);

    let record: UserRecord = h
        .server
        .sts
        .policies()
        .lockout
        .show(ALICE, h.clock.now())
        .await
        .unwrap();
    assert_eq!(record.unfamiliar.bad, 3, "blocked attempts are not counted");
    assert_eq!(record.familiar.bad, 0);
    let expected: Vec<std::net::IpAddr> = vec!["127.0.0.1".parse().unwrap(), home.parse().unwrap()];
    assert_eq!(record.familiar_ips, expected);

    // After the observation window one attempt is allowed again.
    h.clock.advance(Duration::minutes(30));
    assert_eq!(h.sign_in("192.0.2.77", PASSWORD).await.status, 200);

    let reasons = log.reasons();
    assert_eq!(
        reasons,
        [
            "ok",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "account_locked_unfamiliar",
            "account_locked_unfamiliar",
            "account_locked_unfamiliar",
            "account_locked_unfamiliar",
            "ok",
            "ok"
        ]
    );
    let records = log.records();
    assert_eq!(records[1]["client_ip"], "203.0.113.1");
    assert_eq!(records[1]["lockout_location"], "unfamiliar");
    assert_eq!(records[8]["lockout_location"], "familiar");
    assert_eq!(records[8]["user"], ALICE);
    assert_eq!(records[8]["request_class"], "other");
    assert_eq!(records[8]["endpoint"], "trust/13/usernamemixed");
    assert_eq!(records[8]["decision"], "issued");
    assert!(
        records[8]["assertion_id"]
            .as_str()
            .unwrap()
            .starts_with('_')
    );
    assert_eq!(records[4]["decision"], "refused");
    assert_eq!(records[4]["assertion_id"], "");
    h.server.stop().await;
}

#[tokio::test]
async fn log_only_counts_without_blocking_and_reset_clears_the_counters() {
    let (log, _guard) = AuditLog::capture();
    let h = Harness::start(|c| c.lockout.mode = Mode::LogOnly).await;
    for n in 1..=4 {
        assert_generic_failure(&h.sign_in(&format!("203.0.113.{n}"), "nope").await);
    }
    assert_eq!(h.sign_in("203.0.113.9", PASSWORD).await.status, 200);
    let last = log.records().pop().unwrap();
    assert_eq!(last["reason"], "ok");
    assert_eq!(last["lockout_log_only"], true);

    let lockout = &h.server.sts.policies().lockout;
    for n in 1..=3 {
        assert_generic_failure(&h.sign_in(&format!("192.0.2.{n}"), "nope").await);
    }
    assert_eq!(
        lockout
            .show(ALICE, h.clock.now())
            .await
            .unwrap()
            .unfamiliar
            .bad,
        3
    );
    lockout.reset(ALICE, h.clock.now()).await.unwrap();
    let record = lockout.show(ALICE, h.clock.now()).await.unwrap();
    assert_eq!((record.unfamiliar.bad, record.familiar.bad), (0, 0));
    h.server.stop().await;
}

#[tokio::test]
async fn replayed_message_id_and_stripped_message_id_are_refused() {
    let (log, _guard) = AuditLog::capture();
    let h = Harness::start(|_| {}).await;
    let id = message_id();
    let body = rst13(&h.url(), ALICE, PASSWORD, h.clock.now(), Some(&id));
    assert_eq!(h.post(body.clone(), &[]).await.status, 200);
    let replay = h.post(body, &[]).await;
    assert_eq!(replay.status, 500);
    assert_eq!(fault_subcode(&replay.body), Some("InvalidRequest"));
    assert!(
        fault_reason(&replay.body)
            .unwrap()
            .starts_with("The request was rejected: this message was already received.")
    );
    assert!(
        replay
            .body
            .contains(&format!("<a:RelatesTo>{id}</a:RelatesTo>"))
    );

    let stripped = rst13(&h.url(), ALICE, PASSWORD, h.clock.now(), None);
    let refused = h.post(stripped, &[]).await;
    assert_eq!(fault_subcode(&refused.body), Some("InvalidRequest"));
    // A new request (new MessageID) in the same second is not a replay.
    let again = rst13(
        &h.url(),
        ALICE,
        PASSWORD,
        h.clock.now(),
        Some(&message_id()),
    );
    assert_eq!(h.post(again, &[]).await.status, 200);
    assert_eq!(
        log.reasons(),
        ["ok", "replay_message_id", "replay_created_username", "ok"]
    );
    h.server.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_then_refills_by_the_clock() {
    let (log, _guard) = AuditLog::capture();
    let h = Harness::start(|c| {
        c.rate_limit.burst = 2;
        c.rate_limit.requests_per_minute = 6;
    })
    .await;
    assert_eq!(h.sign_in("198.51.100.1", PASSWORD).await.status, 200);
    assert_eq!(h.sign_in("198.51.100.1", PASSWORD).await.status, 200);
    let limited = h.sign_in("198.51.100.1", PASSWORD).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers.get("retry-after").unwrap(), "10");
    // Another client address has its own bucket.
    assert_eq!(h.sign_in("198.51.100.2", PASSWORD).await.status, 200);
    h.clock.advance(Duration::seconds(10));
    assert_eq!(h.sign_in("198.51.100.1", PASSWORD).await.status, 200);
    assert_eq!(log.reasons(), ["ok", "ok", "rate_limited", "ok", "ok"]);
    assert_eq!(log.records()[2]["client_ip"], "198.51.100.1");
    h.server.stop().await;
}

#[tokio::test]
async fn rate_limit_can_answer_with_a_fault() {
    let h = Harness::start(|c| {
        c.rate_limit.burst = 1;
        c.rate_limit.response = fedsts::config::ratelimit::Response::Fault;
    })
    .await;
    assert_eq!(h.sign_in("198.51.100.1", PASSWORD).await.status, 200);
    let limited = h.sign_in("198.51.100.1", PASSWORD).await;
    assert_eq!(limited.status, 500);
    assert_eq!(fault_subcode(&limited.body), Some("RequestFailed"));
    assert!(
        fault_reason(&limited.body)
            .unwrap()
            .starts_with("Too many sign-in requests from this network; try again in 1 seconds.")
    );
    h.server.stop().await;
}

#[tokio::test]
async fn a_client_written_forwarded_chain_does_not_choose_the_client_address() {
    let (log, _guard) = AuditLog::capture();
    let h = Harness::start(|c| {
        c.rate_limit.burst = 2;
        c.rate_limit.requests_per_minute = 6;
    })
    .await;
    // Each request: 20 entries the attacker wrote (a fresh set each time), then the address our
    // proxy appended. The proxy-appended one is the client, whatever the chain's length.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let forged: Vec<String> = (0..20).map(|j| format!("192.0.2.{}", i * 20 + j)).collect();
        let chain = format!("{}, 203.0.113.9", forged.join(", "));
        statuses.push(h.sign_in(&chain, PASSWORD).await.status);
    }
    assert_eq!(statuses, [200, 200, 429], "one bucket for the real client");
    // X-MS-Forwarded-Client-IP is not believed unless the config says the proxy sets it.
    let body = rst13(
        &h.url(),
        ALICE,
        PASSWORD,
        h.clock.now(),
        Some(&message_id()),
    );
    let ms = h
        .post(
            body,
            &[
                ("x-forwarded-for", "203.0.113.9"),
                ("x-ms-forwarded-client-ip", "192.0.2.200"),
            ],
        )
        .await;
    assert_eq!(ms.status, 429);
    let records = log.records();
    assert_eq!(records.len(), 4);
    for record in &records {
        assert_eq!(record["client_ip"], "203.0.113.9", "{record}");
    }
    h.server.stop().await;
}
