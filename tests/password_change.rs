//! Password change against the file directory over real HTTPS: the change page (CSRF, the two
//! new passwords, the file rewritten with a backup and a fresh argon2id hash, the new password
//! working at once and the old one refused), a wrong current password counted toward the
//! lockout, a sign-in with a password that must be changed or has expired offered the change
//! form and then finished, and the password-expiry claims with the per-app switch on and off.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::audit::AuditLog;
use common::passive::{Browser, Page, WCTX, assert_response_page, form, inputs, sign_in_query};
use common::server::{ALICE, Options, PASSWORD, TestServer, users_file};
use fedsts::clock::{Clock, ManualClock};
use fedsts::config::Config;
use fedsts::directory::file::hash_password;
use time::{Duration, OffsetDateTime};

const RECEIVER: &str = "https://rp.test.invalid/login.srf";
const NEW_PASSWORD: &str = "N3w pässword & more";
const GENERIC: &str = "The user name or password is incorrect, or the account cannot sign in.";
/// Must change the password at the next sign-in.
const ERIN: &str = "erin@example.com";
/// Password expired (on the test clock) an hour before the tests start.
const FRANK: &str = "frank@example.com";
/// Password expires in ten days and an hour.
const GRACE: &str = "grace@example.com";

fn at(instant: OffsetDateTime) -> String {
    instant
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// `users_file()` plus erin, frank and grace; returns its path.
fn write_users(dir: &Path, now: OffsetDateTime) -> PathBuf {
    let hash = hash_password(PASSWORD).unwrap();
    let expired = at(now - Duration::hours(1));
    let later = at(now + Duration::days(10) + Duration::hours(1));
    let path = dir.join("change-users.toml");
    std::fs::write(
        &path,
        format!(
            "{}\n[[users]]\nupn = \"{ERIN}\"\nimmutable_id = \"erin-id\"\npassword = '{hash}'\nmust_change_password = true\n\
             [[users]]\nupn = \"{FRANK}\"\nimmutable_id = \"frank-id\"\npassword = '{hash}'\npassword_expires_at = \"{expired}\"\n\
             [[users]]\nupn = \"{GRACE}\"\nimmutable_id = \"grace-id\"\npassword = '{hash}'\npassword_expires_at = \"{later}\"\n",
            users_file()
        ),
    )
    .unwrap();
    path
}

async fn server(
    clock: Arc<ManualClock>,
    configure: impl FnOnce(&mut Config) + 'static,
) -> (TestServer, PathBuf) {
    let now = clock.now();
    let users_path = Arc::new(std::sync::Mutex::new(PathBuf::new()));
    let seen = users_path.clone();
    let server = TestServer::start_with(Options {
        clock,
        configure: Box::new(move |config, dir| {
            let users = write_users(dir, now);
            *seen.lock().unwrap() = users.clone();
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
    .await;
    let path = users_path.lock().unwrap().clone();
    (server, path)
}

fn browser<'a>(server: &'a TestServer, ip: &str) -> Browser<'a> {
    let mut browser = Browser::new(server);
    browser.headers = vec![
        ("x-forwarded-for".into(), ip.into()),
        ("user-agent".into(), "Mozilla/5.0 (fedsts test)".into()),
    ];
    browser
}

fn page_path(server: &TestServer) -> String {
    format!("/wsfed/{}/password", server.app_id)
}

/// Fills the change form of `page` and posts it to its action.
async fn change(
    browser: &mut Browser<'_>,
    page: &Page,
    username: &str,
    old: &str,
    new: &str,
    confirm: &str,
) -> Page {
    let mut fields: BTreeMap<String, String> = inputs(&page.body);
    assert_eq!(fields["step"], "change", "{}", page.body);
    for (name, value) in [
        ("username", username),
        ("old_password", old),
        ("new_password", new),
        ("confirm_password", confirm),
    ] {
        fields.insert(name.into(), value.into());
    }
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let action = common::passive::form_action(&page.body);
    browser.send("POST", &action, form(&pairs)).await
}

async fn change_on_page(
    server: &TestServer,
    ip: &str,
    username: &str,
    old: &str,
    new: &str,
) -> Page {
    let mut browser = browser(server, ip);
    let page = browser.send("GET", &page_path(server), String::new()).await;
    assert_eq!(page.status, 200, "{}", page.body);
    change(&mut browser, &page, username, old, new, new).await
}

async fn sign_in(server: &TestServer, ip: &str, username: &str, password: &str) -> Page {
    let mut browser = browser(server, ip);
    let form = browser.get(&sign_in_query(&[])).await;
    browser.sign_in(&form, username, password).await
}

fn assert_generic_failure(page: &Page) {
    assert_eq!(page.status, 401, "{}", page.body);
    assert!(page.body.contains(GENERIC), "{}", page.body);
    assert!(!page.body.contains("wresult"));
}

#[tokio::test]
async fn the_change_page_rewrites_the_users_file_and_the_new_password_works_at_once() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (server, users_path) = server(clock, |_| {}).await;
    let mut browser = browser(&server, "198.51.100.7");
    let page = browser
        .send("GET", &page_path(&server), String::new())
        .await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(r#"<label for="new_password">"#));
    assert!(page.body.contains(r#"autocomplete="new-password""#));
    assert!(!page.body.contains("<script"), "the form needs no script");
    let csp = common::passive::header(&page, "content-security-policy");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");

    // A forged form (no cookie) and two different new passwords change nothing.
    let mut stranger = Browser::new(&server);
    let forged = change(
        &mut stranger,
        &page,
        ALICE,
        PASSWORD,
        NEW_PASSWORD,
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(forged.status, 403, "{}", forged.body);
    let differ = change(&mut browser, &page, ALICE, PASSWORD, NEW_PASSWORD, "other").await;
    assert_eq!(differ.status, 400);
    assert!(differ.body.contains("are not the same"), "{}", differ.body);
    let before = std::fs::read_to_string(&users_path).unwrap();

    let changed = change(
        &mut browser,
        &page,
        ALICE,
        PASSWORD,
        NEW_PASSWORD,
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(changed.body.contains("Your password was changed."));

    // The file: a backup with the old text, a fresh argon2id hash with the current parameters.
    let after = std::fs::read_to_string(&users_path).unwrap();
    assert_ne!(before, after);
    let backups: Vec<_> = std::fs::read_dir(users_path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".bak"))
        .collect();
    assert_eq!(backups.len(), 1, "{backups:?}");
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), before);
    assert!(after.contains("$argon2id$v=19$m=19456,t=2,p=1$"), "{after}");
    assert_eq!(after.matches("[[users]]").count(), 6);

    // The old password is refused, the new one signs in without a restart.
    assert_generic_failure(&sign_in(&server, "198.51.100.7", ALICE, PASSWORD).await);
    let signed_in = sign_in(&server, "198.51.100.7", ALICE, NEW_PASSWORD).await;
    assert_response_page(&signed_in, RECEIVER, WCTX);
    // The same new password again: the file directory refuses an unchanged password.
    let same = change_on_page(&server, "198.51.100.7", ALICE, NEW_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(same.status, 400);
    assert!(same.body.contains("must be different"), "{}", same.body);

    let reasons = log.reasons();
    assert_eq!(
        reasons,
        [
            "csrf_mismatch",
            "new_passwords_differ",
            "ok",
            "wrong_password",
            "password",
            "new_password_refused: password_unchanged"
        ]
    );
    let records = log.records();
    assert_eq!(records[2]["decision"], "password_changed");
    assert_eq!(records[2]["endpoint"], "wsfed/password");
    assert_eq!(records[2]["user"], ALICE);
    server.stop().await;
}

/// The current password is checked by the sign-in guard: wrong ones on the change page lock
/// the account for unfamiliar locations like wrong sign-ins do (a second password path would
/// let an attacker guess there without limit).
#[tokio::test]
async fn wrong_current_passwords_count_toward_the_lockout() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (server, _) = server(clock, |_| {}).await;
    for n in 0..3 {
        let guessed = change_on_page(
            &server,
            &format!("203.0.113.{n}"),
            ALICE,
            "guess",
            NEW_PASSWORD,
        )
        .await;
        assert_generic_failure(&guessed);
    }
    // Locked: the right password is refused on the sign-in form and on the change page.
    assert_generic_failure(&sign_in(&server, "192.0.2.1", ALICE, PASSWORD).await);
    let locked = change_on_page(&server, "192.0.2.2", ALICE, PASSWORD, NEW_PASSWORD).await;
    assert_generic_failure(&locked);
    assert_eq!(
        log.reasons(),
        [
            "wrong_password",
            "wrong_password",
            "wrong_password",
            "account_locked_unfamiliar",
            "account_locked_unfamiliar"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_password_that_must_change_or_has_expired_is_changed_during_sign_in() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (server, users_path) = server(clock, |_| {}).await;
    for (user, text) in [
        (ERIN, "You must change your password"),
        (FRANK, "Your password has expired."),
    ] {
        let mut browser = browser(&server, "198.51.100.9");
        let form = browser.get(&sign_in_query(&[])).await;
        let offered = browser.sign_in(&form, user, PASSWORD).await;
        assert_eq!(offered.status, 200, "{}", offered.body);
        assert!(offered.body.contains(text), "{}", offered.body);
        assert!(!offered.body.contains("wresult"));
        let fields = inputs(&offered.body);
        assert_eq!(fields["wctx"], WCTX, "the sign-in request is carried");
        assert_eq!(fields["username"], user);
        // A wrong current password: the change form again, nothing changed.
        let wrong = change(
            &mut browser,
            &offered,
            user,
            "guess",
            NEW_PASSWORD,
            NEW_PASSWORD,
        )
        .await;
        assert_eq!(wrong.status, 401);
        assert!(wrong.body.contains(GENERIC));
        assert_eq!(inputs(&wrong.body)["step"], "change");
        let finished = change(
            &mut browser,
            &wrong,
            user,
            PASSWORD,
            NEW_PASSWORD,
            NEW_PASSWORD,
        )
        .await;
        assert_response_page(&finished, RECEIVER, WCTX);
    }
    let users = std::fs::read_to_string(&users_path).unwrap();
    assert!(!users.contains("must_change_password"), "{users}");
    assert_eq!(
        users.matches("password_expires_at").count(),
        1,
        "grace's stays"
    );
    assert_generic_failure(&sign_in(&server, "198.51.100.9", ERIN, PASSWORD).await);
    let reasons = log.reasons();
    let expected = [
        "must_change_password",
        "wrong_password",
        "ok",
        "password",
        "password_expired",
        "wrong_password",
        "ok",
        "password",
        "wrong_password",
    ];
    assert_eq!(reasons, expected);
    server.stop().await;
}

async fn wresult_of(server: &TestServer, user: &str) -> String {
    let page = sign_in(server, "198.51.100.3", user, PASSWORD).await;
    assert_response_page(&page, RECEIVER, WCTX)
}

#[tokio::test]
async fn expiry_claims_only_with_the_switch_and_a_known_expiry() {
    // Every test of this binary captures (one at a time), so none races another's capture.
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (on, _) = server(clock.clone(), |c| c.apps[0].password_expiry_claims = true).await;
    let wresult = common::passive::unescape(&wresult_of(&on, GRACE).await);
    let ns = r#"AttributeNamespace="http://schemas.microsoft.com/ws/2012/01""#;
    for name in [
        "passwordexpirationtime",
        "passwordexpirationdays",
        "passwordchangeurl",
    ] {
        assert!(
            wresult.contains(&format!(r#"AttributeName="{name}" {ns}"#)),
            "{name}: {wresult}"
        );
    }
    let value = |name: &str| {
        wresult
            .split(&format!(
                r#"AttributeName="{name}" {ns}><saml:AttributeValue>"#
            ))
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .unwrap()
            .to_owned()
    };
    assert_eq!(value("passwordexpirationdays"), "10");
    assert_eq!(value("passwordchangeurl"), on.app_url("password"));
    let expires = value("passwordexpirationtime");
    assert!(expires.ends_with('Z') && expires.len() == 24, "{expires}");
    // Alice's password never expires: no claims for her.
    let alice = wresult_of(&on, ALICE).await;
    assert!(!alice.contains("passwordexpiration"), "{alice}");
    on.stop().await;

    let (off, _) = server(clock, |_| {}).await;
    let grace = wresult_of(&off, GRACE).await;
    assert!(!grace.contains("passwordexpiration"), "{grace}");
    assert!(!grace.contains("passwordchangeurl"));
    assert_eq!(log.reasons(), ["password", "password", "password"]);
    off.stop().await;
}

/// README's "Password change" example, read through the real parsers: the app switch is a
/// field of `[[apps]]`, the users-file entry must change its password and knows its expiry.
#[tokio::test]
async fn the_readme_example_parses_and_means_what_it_says() {
    use fedsts::directory::{AuthFailure, Directory, DirectoryError};
    let readme = include_str!("../README.md");
    let block = readme
        .split("<!-- tested password change config: begin -->")
        .nth(1)
        .and_then(|rest| {
            rest.split("<!-- tested password change config: end -->")
                .next()
        })
        .expect("README lost its password change markers");
    let toml_text = block
        .split("```toml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let (app, users) = toml_text.split_once("# users file\n").unwrap();
    let app: toml::Value = toml::from_str(&app.replace("# …\n", "")).unwrap();
    assert_eq!(
        app["apps"][0]["password_expiry_claims"].as_bool(),
        Some(true)
    );
    // The same table, completed with the keys the example leaves out, is a valid app.
    let mut table = app["apps"][0].as_table().unwrap().clone();
    for (key, value) in [
        ("domain", "contoso.com"),
        ("issuer_uri", "http://contoso.com/adfs/services/trust/"),
        ("signing_cert", "signing.crt"),
        ("signing_key", "signing.key"),
        ("directory", "corp"),
    ] {
        table.insert(key.into(), toml::Value::String(value.into()));
    }
    let parsed: fedsts::config::AppConfig = toml::Value::Table(table).try_into().unwrap();
    assert!(parsed.password_expiry_claims);
    let hash = hash_password(PASSWORD).unwrap();
    let directory =
        fedsts::directory::file::FileDirectory::parse(&users.replace("HASH", &hash)).unwrap();
    let refused = directory.authenticate("erin@contoso.com", PASSWORD).await;
    assert!(
        matches!(
            refused,
            Err(DirectoryError::Rejected(AuthFailure::MustChangePassword))
        ),
        "{refused:?}"
    );
    let erin = directory.lookup("erin@contoso.com").await.unwrap().unwrap();
    assert_eq!(
        erin.password_expires_at,
        Some(time::macros::datetime!(2027-01-31 00:00:00 UTC))
    );
}

/// Each POST of the change page takes a token from the client address's bucket: past the
/// burst it is a 429 page and the password is not looked at (fails without the rate limit:
/// the third POST would be checked and counted as a wrong password).
#[tokio::test]
async fn change_page_posts_are_rate_limited() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let (server, _) = server(clock, |c| {
        c.rate_limit.burst = 2;
        c.rate_limit.requests_per_minute = 1;
    })
    .await;
    for _ in 0..2 {
        let guessed = change_on_page(&server, "203.0.113.9", ALICE, "guess", NEW_PASSWORD).await;
        assert_generic_failure(&guessed);
    }
    let limited = change_on_page(&server, "203.0.113.9", ALICE, "guess", NEW_PASSWORD).await;
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(!common::passive::header(&limited, "retry-after").is_empty());
    // Showing the form is not limited; another address has its own bucket.
    let elsewhere = change_on_page(&server, "198.51.100.20", ALICE, PASSWORD, NEW_PASSWORD).await;
    assert_eq!(elsewhere.status, 200, "{}", elsewhere.body);
    assert_eq!(
        log.reasons(),
        ["wrong_password", "wrong_password", "rate_limited", "ok"]
    );
    server.stop().await;
}

/// Over usernamemixed, asked for SAML 2.0, the claims are `Attribute Name="<namespace>/<name>"`
/// as ADFS writes them in SAML 2.0; in SAML 1.1 namespace and name are apart.
#[tokio::test]
async fn expiry_claims_in_saml_2_0_and_1_1_usernamemixed_tokens() {
    let (_log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let now = clock.now();
    let (server, _) = server(clock, |c| c.apps[0].password_expiry_claims = true).await;
    let url = server.app_url("trust/13/usernamemixed");
    let request = |saml2: bool| {
        let body = common::wstrust::rst13(
            &url,
            GRACE,
            PASSWORD,
            now,
            Some(&common::wstrust::message_id()),
        );
        if saml2 {
            body.replace(
                "<wst:KeyType>",
                "<wst:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</wst:TokenType><wst:KeyType>",
            )
        } else {
            body
        }
    };
    let path = common::wstrust::path_of(&url);
    let saml2 = server.post_soap(&path, request(true)).await;
    assert_eq!(saml2.status, 200, "{}", saml2.body);
    for name in [
        "passwordexpirationtime",
        "passwordexpirationdays",
        "passwordchangeurl",
    ] {
        assert!(
            saml2.body.contains(&format!(
                r#"Attribute Name="http://schemas.microsoft.com/ws/2012/01/{name}"><saml:AttributeValue>"#
            )),
            "{name}: {}",
            saml2.body
        );
    }
    let saml11 = server.post_soap(&path, request(false)).await;
    assert_eq!(saml11.status, 200, "{}", saml11.body);
    assert_eq!(
        common::wstrust::saml_attribute(&saml11.body, "passwordexpirationdays").as_deref(),
        Some("10")
    );
    assert_eq!(
        common::wstrust::saml_attribute(&saml11.body, "passwordchangeurl"),
        Some(server.app_url("password"))
    );
    server.stop().await;
}
