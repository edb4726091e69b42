//! Passive sign-in under the policy steps, over real HTTPS with a cookie-keeping client:
//! extranet smart lockout (generic message while locked, familiar location still signs in),
//! the per-IP rate limit as an HTML 429 page, the explained OOBE device-trust refusal, the TOTP
//! wrong-code counter that a correct password does not reset, and one audit record per decision.
//! Time is a `ManualClock`.

mod common;

use std::sync::Arc;

use common::audit::AuditLog;
use common::passive::{Browser, Page, REALM, WCTX, assert_response_page, inputs, sign_in_query};
use common::server::{ALICE, Options, PASSWORD, TestServer, users_file_with_totp_user};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::Config;
use fedsts::config::device::{AppDevicePolicy, DeviceTrustConfig, Flow};
use fedsts::totp::{self, TotpKey};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use time::{Duration, OffsetDateTime};

const RECEIVER: &str = "https://rp.test.invalid/login.srf";
const GENERIC: &str = "The user name or password is incorrect, or the account cannot sign in.";
const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const MFA: (&str, &str) = ("wauth", "http://schemas.microsoft.com/claims/multipleauthn");

async fn server(
    clock: Arc<ManualClock>,
    configure: impl FnOnce(&mut Config) + 'static,
) -> TestServer {
    TestServer::start_with(Options {
        clock,
        configure: Box::new(move |config, dir| {
            let users =
                users_file_with_totp_user(dir, "users.toml", DAVE, "dave-immutable", DAVE_SECRET);
            config.directories.insert(
                "demo".into(),
                fedsts::config::DirectoryConfig::File { path: users },
            );
            config.apps[0].passive.reply_url = RECEIVER.into();
            config.server.trusted_proxies = vec!["127.0.0.1".into()];
            config.lockout.threshold = 3;
            config.rate_limit.burst = 1000;
            configure(config);
        }),
        ..Options::default()
    })
    .await
}

/// A browser behind the trusted proxy, seen as coming from `ip`.
fn browser<'a>(server: &'a TestServer, ip: &str) -> Browser<'a> {
    let mut browser = Browser::new(server);
    browser.headers = vec![
        ("x-forwarded-for".into(), ip.into()),
        ("user-agent".into(), "Mozilla/5.0 (fedsts test)".into()),
    ];
    browser
}

async fn password_sign_in(server: &TestServer, ip: &str, query: &str, password: &str) -> Page {
    let mut browser = browser(server, ip);
    let form = browser.get(query).await;
    assert_eq!(form.status, 200, "{}", form.body);
    browser.sign_in(&form, ALICE, password).await
}

fn assert_generic_failure(page: &Page) {
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains(GENERIC), "{}", page.body);
    assert!(!page.body.contains("wresult"));
}

#[tokio::test]
async fn passive_spray_locks_unfamiliar_locations_only_and_every_decision_is_audited() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone(), |_| {}).await;
    let query = sign_in_query(&[]);

    let first = password_sign_in(&server, "198.51.100.1", &query, PASSWORD).await;
    assert_response_page(&first, RECEIVER, WCTX);
    for n in 0..3 {
        let sprayed = password_sign_in(&server, &format!("203.0.113.{n}"), &query, "guess").await;
        assert_generic_failure(&sprayed);
    }
    // Locked for unfamiliar locations: the right password gets the same generic message.
    let locked = password_sign_in(&server, "192.0.2.1", &query, PASSWORD).await;
    assert_generic_failure(&locked);
    // The user still signs in from the familiar location.
    let familiar = password_sign_in(&server, "198.51.100.1", &query, PASSWORD).await;
    assert_response_page(&familiar, RECEIVER, WCTX);
    // The window passes on the service clock: one attempt again.
    clock.advance(Duration::seconds(1800));
    let later = password_sign_in(&server, "192.0.2.1", &query, PASSWORD).await;
    assert_response_page(&later, RECEIVER, WCTX);

    assert_eq!(
        log.reasons(),
        [
            "password",
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "account_locked_unfamiliar",
            "password",
            "password"
        ]
    );
    let records = log.records();
    for record in &records {
        assert_eq!(record["endpoint"], "wsfed/signin");
        assert_eq!(record["request_class"], "entra_passive");
        assert_eq!(record["user"], ALICE);
        assert_eq!(record["user_agent"], "Mozilla/5.0 (fedsts test)");
    }
    assert_eq!(records[0]["decision"], "issued");
    assert_eq!(records[1]["client_ip"], "203.0.113.0");
    assert_eq!(records[4]["decision"], "refused");
    assert_eq!(records[4]["client_ip"], "192.0.2.1");
    assert_eq!(records[4]["lockout_location"], "unfamiliar");
    assert_eq!(records[5]["lockout_location"], "familiar");
    server.stop().await;
}

#[tokio::test]
async fn passive_rate_limit_is_an_html_429_page_on_post_and_launch() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone(), |c| {
        c.rate_limit.burst = 2;
        c.rate_limit.requests_per_minute = 6;
    })
    .await;
    let mut tile = browser(&server, "198.51.100.9");
    let launch = format!("/wsfed/{}/launch", server.app_id);
    for _ in 0..2 {
        assert_eq!(tile.send("GET", &launch, String::new()).await.status, 200);
    }
    let limited = tile.send("GET", &launch, String::new()).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.headers.get("retry-after").unwrap(), "10");
    assert!(
        limited
            .headers
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        limited
            .body
            .contains("Too many sign-in requests came from your network. Try again in 10 seconds."),
        "{}",
        limited.body
    );
    // The sign-in form itself (GET) is not limited, its POST is.
    let form = tile.get(&sign_in_query(&[])).await;
    assert_eq!(form.status, 200);
    let posted = tile.sign_in(&form, ALICE, PASSWORD).await;
    assert_eq!(posted.status, 429);
    // Another client has its own bucket; the clock refills this one.
    let other = password_sign_in(&server, "198.51.100.10", &sign_in_query(&[]), PASSWORD).await;
    assert_response_page(&other, RECEIVER, WCTX);
    clock.advance(Duration::seconds(10));
    assert_eq!(tile.send("GET", &launch, String::new()).await.status, 200);

    assert_eq!(log.reasons(), ["rate_limited", "rate_limited", "password"]);
    let records = log.records();
    assert_eq!(records[0]["endpoint"], "wsfed/launch");
    assert_eq!(records[0]["request_class"], "other");
    assert_eq!(records[1]["endpoint"], "wsfed/signin");
    assert_eq!(records[0]["client_ip"], "198.51.100.9");
    server.stop().await;
}

fn device_ca_pem() -> String {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "Example Device CA");
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

#[tokio::test]
async fn oobe_passive_request_under_device_trust_gets_the_explained_page() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let ca_pem = device_ca_pem();
    let server = TestServer::start_with(Options {
        clock: clock.clone(),
        configure: Box::new(move |config, dir| {
            let ca_file = dir.join("device-ca.pem");
            std::fs::write(&ca_file, ca_pem).unwrap();
            config.device_trust = Some(DeviceTrustConfig {
                ca_file,
                crl_file: None,
            });
            config.apps[0].passive.reply_url = RECEIVER.into();
            config.apps[0].device_trust = Some(AppDevicePolicy {
                flows: vec![Flow::Passive],
                users: vec!["*".into()],
                groups: vec![],
            });
        }),
        ..Options::default()
    })
    .await;

    let mut oobe = Browser::new(&server);
    let form = oobe.get(&sign_in_query(&[])).await;
    let page = oobe.sign_in(&form, ALICE, PASSWORD).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(!page.body.contains("wresult"));
    assert!(!oobe.jar.contains_key("fedsts_session"));
    for text in [
        "<h1>This sign-in requires a trusted company device, which cannot be proven during Windows setup.</h1>",
        "Windows setup (joining this PC to Microsoft Entra ID) and the first sign-in to Windows happen before the device has its company certificate, so the device-trust policy for your account cannot be satisfied here.",
        "<h2>What your administrator can do</h2>",
        "<li>Exclude the enrolment users or group from the device-trust policy of this app (apps.device_trust users/groups), or do not cover the passive, active and windows_logon flows Windows uses.</li>",
        "<li>Or join the device first (with a policy that allows it), install the device certificate, and only then enforce device trust.</li>",
    ] {
        assert!(
            page.body.contains(text),
            "missing {text:?} in {}",
            page.body
        );
    }

    // Without the Entra signals the request is still refused: the signals only pick the words.
    let mut plain = Browser::new(&server);
    let query = common::passive::form(&[("wa", "wsignin1.0"), ("wtrealm", REALM), ("wctx", "x=1")]);
    let form = plain.get(&query).await;
    let page = plain.sign_in(&form, ALICE, PASSWORD).await;
    assert_eq!(page.status, 403);
    assert!(
        page.body
            .contains("The device did not present a company device certificate.")
    );
    assert!(!page.body.contains("Windows setup"));

    assert_eq!(
        log.reasons(),
        [
            "device_trust_unavailable_oobe",
            "device_certificate_missing"
        ]
    );
    let records = log.records();
    assert_eq!(records[0]["request_class"], "entra_passive");
    assert_eq!(records[0]["decision"], "refused");
    assert_eq!(records[1]["request_class"], "other");
    server.stop().await;
}

#[tokio::test]
async fn wrong_totp_codes_are_counted_and_a_correct_password_does_not_reset_them() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone(), |_| {}).await;
    let secret = TotpKey::from_base32(DAVE_SECRET).unwrap();
    let query = sign_in_query(&[MFA]);

    let mut first = browser(&server, "198.51.100.1");
    let form = first.get(&query).await;
    let mut code_page = first.sign_in(&form, DAVE, PASSWORD).await;
    assert!(inputs(&code_page.body).contains_key("mfa_ticket"));
    let right = totp::current_code(&secret, clock.now());
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..5 {
        code_page = first.enter_code(&code_page, wrong).await;
        assert_eq!(code_page.status, 401);
    }
    let refused = first.enter_code(&code_page, &right).await;
    assert_eq!(refused.status, 429);
    assert!(refused.body.contains("Too many wrong verification codes"));

    // A fresh password sign-in (the guesser knows it) does not buy new guesses.
    let mut again = browser(&server, "198.51.100.1");
    let form = again.get(&query).await;
    let code_page = again.sign_in(&form, DAVE, PASSWORD).await;
    assert_eq!(again.enter_code(&code_page, &right).await.status, 429);

    // After the window, the right code works and clears the counter.
    clock.advance(Duration::minutes(30));
    let mut later = browser(&server, "198.51.100.1");
    let form = later.get(&query).await;
    let code_page = later.sign_in(&form, DAVE, PASSWORD).await;
    let code = totp::current_code(&secret, clock.now());
    let issued = later.enter_code(&code_page, &code).await;
    assert_response_page(&issued, RECEIVER, WCTX);

    let mut want = vec!["totp_wrong"; 5];
    want.extend(["totp_attempts_exceeded", "totp_attempts_exceeded", "totp"]);
    assert_eq!(log.reasons(), want);
    server.stop().await;
}
