//! `fedsts loadtest` against a real in-process fedsts: counts tokens and errors by kind.

mod common;

use std::time::Duration;

use common::server::{ALICE, CAROL_OTHER_DOMAIN, Options, PASSWORD, TestServer};
use fedsts::cli::loadtest::{self, LoadTest, Workload};

fn test_for(server: &TestServer, users: Vec<(String, String)>, requests: u64) -> LoadTest {
    LoadTest {
        url: server.app_url("trust/13/usernamemixed"),
        workload: Workload::Trust13,
        users,
        ca: server.tls_cert_path.clone(),
        connections: 2,
        fresh_handshake: false,
        tls_resumption: true,
        requests,
        duration: Duration::from_secs(60),
        target_rate: None,
        allow_host: None,
        server_pid: Some(std::process::id()),
        session_cookie: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_loadtest_counts_tokens_and_wrong_passwords_by_kind() {
    // The per-address rate limit would shed a load test from one address; it is off here.
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, _| config.rate_limit.enabled = false),
        ..Options::default()
    })
    .await;
    // One request in ten carries a wrong password for another user (few enough that neither
    // the lockout nor the failure rate limit starts).
    let mut users = vec![(ALICE.to_owned(), PASSWORD.to_owned()); 9];
    users.push((CAROL_OTHER_DOMAIN.to_owned(), "wrong password".to_owned()));
    let report = loadtest::run_async(&test_for(&server, users, 50))
        .await
        .unwrap();
    assert_eq!(report.tokens, 45, "{}", report.render());
    assert_eq!(report.error_count(), 5, "{}", report.render());
    assert_eq!(report.errors.len(), 1, "{}", report.render());
    let (kind, _) = report.errors.iter().next().unwrap();
    assert!(kind.contains("FailedAuthentication"), "{kind}");
    assert_eq!(report.latencies.len(), 50);
    assert!(report.cpu_per_token().is_some());
    assert!(report.rsa_sign.is_some());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_handshakes_issue_a_valid_token_each() {
    let server = TestServer::start().await;
    let mut test = test_for(&server, vec![(ALICE.to_owned(), PASSWORD.to_owned())], 10);
    test.fresh_handshake = true;
    test.workload = Workload::Trust2005;
    test.url = server.app_url("trust/2005/usernamemixed");
    let report = loadtest::run_async(&test).await.unwrap();
    assert_eq!(report.tokens, 10, "{}", report.render());
    assert_eq!(report.error_count(), 0, "{}", report.render());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_requests_ride_one_session_and_a_wrong_password_cannot_sign_in() {
    let server = TestServer::start().await;
    let mut test = test_for(&server, vec![(ALICE.to_owned(), PASSWORD.to_owned())], 12);
    test.workload = Workload::Passive;
    test.url = server.app_url("").trim_end_matches('/').to_owned();
    let report = loadtest::run_async(&test).await.unwrap();
    assert_eq!(report.tokens, 12, "{}", report.render());
    assert_eq!(report.error_count(), 0, "{}", report.render());
    // Without a session the GET answers the password form, which is no token.
    test.session_cookie = Some("fedsts_session=forged".into());
    let report = loadtest::run_async(&test).await.unwrap();
    assert_eq!(report.tokens, 0, "{}", report.render());
    assert_eq!(report.error_count(), 12, "{}", report.render());
    test.session_cookie = None;
    test.users = vec![(ALICE.to_owned(), "wrong password".to_owned())];
    let error = loadtest::run_async(&test).await.unwrap_err();
    assert!(
        matches!(error, loadtest::LoadTestError::SignIn { .. }),
        "{error}"
    );
    server.stop().await;
}

#[test]
fn a_host_that_is_not_loopback_is_refused_unless_named() {
    let dir = tempfile::tempdir().unwrap();
    let test = LoadTest {
        url: "https://192.0.2.1:443/wsfed/demo/trust/13/usernamemixed".into(),
        workload: Workload::Trust13,
        users: vec![("a@example.com".into(), "x".into())],
        ca: dir.path().join("none.pem"),
        connections: 1,
        fresh_handshake: false,
        tls_resumption: true,
        requests: 1,
        duration: Duration::from_secs(1),
        target_rate: None,
        allow_host: None,
        server_pid: None,
        session_cookie: None,
    };
    let error = loadtest::run(&test).unwrap_err();
    assert!(
        matches!(error, loadtest::LoadTestError::HostNotAllowed(_)),
        "{error}"
    );
}
