//! The user portal at `GET|POST /` over real HTTPS against a server on a loopback port, with the
//! cookie-keeping client of `common::passive`: off by default (404); sign-in through the passive
//! steps (rate limit, lockout, TOTP where required); tiles only for the apps on the directory
//! that checked the password whose domain covers the user; a tile signs in without a second
//! password; a portal session is refused by an app whose domain does not cover the user or whose
//! directory did not authenticate them; the notice is acknowledged once per version (remembered
//! in the state store, across sessions and instances); sign-out ends the portal session and the
//! app sessions its tiles started, also for a copied cookie.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::audit::AuditLog;
use common::passive::{Browser, Page, assert_response_page, form, header, inputs};
use common::server::{
    ALICE, CAROL_OTHER_DOMAIN, Options, PASSWORD, TestServer, users_file_with_totp_user,
};
use fedsts::clock::SystemClock;
use fedsts::config::{Config, DirectoryConfig, NoticeConfig};
use fedsts::directory::file::hash_password;
use fedsts::state::StateStore;
use fedsts::state::memory::MemoryStore;
use fedsts::totp::{self, TotpKey};

const RECEIVER: &str = "https://rp.test.invalid/login.srf";
const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// A user of `sub.example.com`, in both directories.
const SAM: &str = "sam@sub.example.com";
const SAM_PASSWORD: &str = "sam's own password";

/// Adds an app like the demo one (same signing pair) for `domain` on `directory`.
fn add_app(config: &mut Config, id: &str, domain: &str, directory: &str) {
    let mut app = config.apps[0].clone();
    app.id = id.into();
    app.domain = domain.into();
    app.issuer_uri = format!("urn:{id}");
    app.directory = directory.into();
    app.display_name = Some(format!("App {id}"));
    app.portal = Default::default();
    config.apps.push(app);
}

/// The portal on, three more apps: `orgapp` (other.org, same directory), `subapp`
/// (sub.example.com, a second directory holding sam), `mfaapp` (example.org: no user).
fn portal_config(config: &mut Config, dir: &Path, notice: Option<&str>) {
    let users = users_file_with_totp_user(
        dir,
        "portal-users.toml",
        DAVE,
        "dave-immutable",
        DAVE_SECRET,
    );
    // sam is in both directories (with different passwords): only the one that checked the
    // password may vouch for him.
    let demo_users = std::fs::read_to_string(&users).unwrap();
    let hash = demo_users
        .split("password = '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap();
    std::fs::write(
        &users,
        format!("{demo_users}\n[[users]]\nupn = \"{SAM}\"\nimmutable_id = \"sam-demo\"\npassword = '{hash}'\n"),
    )
    .unwrap();
    config
        .directories
        .insert("demo".into(), DirectoryConfig::File { path: users });
    let other = dir.join("other-users.toml");
    std::fs::write(
        &other,
        format!(
            "[[users]]\nupn = \"{SAM}\"\nimmutable_id = \"sam-immutable\"\npassword = '{}'\n",
            hash_password(SAM_PASSWORD).unwrap()
        ),
    )
    .unwrap();
    config
        .directories
        .insert("other".into(), DirectoryConfig::File { path: other });
    config.apps[0].passive.reply_url = RECEIVER.into();
    config.apps[0].portal.tile_name = Some("Microsoft 365".into());
    let logo = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/tile-logo.png");
    config.apps[0].portal.logo = Some(logo);
    add_app(config, "orgapp", "other.org", "demo");
    add_app(config, "subapp", "sub.example.com", "other");
    config.portal.enabled = true;
    config.portal.name = Some("Example Inc.".into());
    config.portal.notice = notice.map(|version| NoticeConfig {
        version: version.into(),
        text: "Passwords now expire after 90 days.\n\nChange yours before the end of the month."
            .into(),
    });
}

async fn portal_server(
    notice: Option<&'static str>,
    store: Option<Arc<dyn StateStore>>,
) -> TestServer {
    TestServer::start_with(Options {
        clock: Arc::new(SystemClock),
        store,
        configure: Box::new(move |config, dir| portal_config(config, dir, notice)),
    })
    .await
}

async fn get(browser: &mut Browser<'_>, path: &str) -> Page {
    browser.send("GET", path, String::new()).await
}

/// Posts the fields of `page`'s form `form_id` (or its only form), with `extra` set.
async fn submit(
    browser: &mut Browser<'_>,
    page: &Page,
    form_id: Option<&str>,
    extra: &[(&str, &str)],
) -> Page {
    let html = match form_id {
        Some(id) => {
            let start = page
                .body
                .find(&format!("id=\"{id}\""))
                .unwrap_or_else(|| panic!("no form {id} in {}", page.body));
            let from = page.body[..start].rfind("<form").unwrap();
            let to = start + page.body[start..].find("</form>").unwrap();
            page.body[from..to].to_owned()
        }
        None => page.body.clone(),
    };
    let mut fields: BTreeMap<String, String> = inputs(&html);
    for (name, value) in extra {
        fields.insert((*name).into(), (*value).into());
    }
    let pairs: Vec<(&str, &str)> = fields
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    browser.send("POST", "/", form(&pairs)).await
}

/// Signs in at the portal and follows the redirect to `/`.
async fn portal_sign_in(browser: &mut Browser<'_>, user: &str, password: &str) -> Page {
    let form_page = get(browser, "/").await;
    assert_eq!(form_page.status, 200, "{}", form_page.body);
    let signed_in = submit(
        browser,
        &form_page,
        None,
        &[("username", user), ("password", password)],
    )
    .await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(header(&signed_in, "location"), "/");
    get(browser, "/").await
}

/// The app ids of the tiles of a portal page.
fn tiles(page: &Page) -> Vec<String> {
    page.body
        .split("<a class=\"tile\" href=\"")
        .skip(1)
        .map(|rest| {
            let href = rest.split('"').next().unwrap();
            href.trim_end_matches("/launch")
                .rsplit('/')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn shows_password_form(page: &Page) -> bool {
    page.body.contains("id=\"password\"") && !page.body.contains("wresult")
}

#[tokio::test]
async fn the_portal_is_off_by_default() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    let server = TestServer::start().await;
    for method in ["GET", "POST"] {
        let reply = server.request(method, "/", &[], Vec::new()).await;
        assert_eq!((reply.status, reply.body.as_str()), (404, "not found\n"));
    }
    server.stop().await;
}

#[tokio::test]
async fn sign_in_tiles_single_sign_on_and_sign_out() {
    let (log, _guard) = AuditLog::capture();
    let server = portal_server(None, None).await;
    let mut browser = Browser::new(&server);
    let form_page = get(&mut browser, "/").await;
    assert_eq!(form_page.status, 200);
    assert_eq!(header(&form_page, "cache-control"), "no-store");
    assert_eq!(header(&form_page, "x-frame-options"), "DENY");
    let csp = header(&form_page, "content-security-policy");
    assert!(
        csp.contains("form-action 'self'")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(
        form_page
            .body
            .contains("<form method=\"post\" action=\"/\"")
    );
    assert!(
        form_page
            .body
            .contains("Sign in with your Example Inc. account.")
    );
    assert!(
        !inputs(&form_page.body).contains_key("wa"),
        "no WS-Federation fields"
    );
    // A form we cannot read: 400, nothing else happens.
    for body in ["step=a&step=b", "username=%zz", "\u{0}%ff"] {
        let bad = browser.send("POST", "/", body.to_owned()).await;
        assert_eq!(bad.status, 400, "{body}");
    }
    assert!(!browser.jar.contains_key("fedsts_portal"));

    // Wrong password: the form again, no session.
    let wrong = submit(
        &mut browser,
        &form_page,
        None,
        &[("username", ALICE), ("password", "wrong")],
    )
    .await;
    assert_eq!(wrong.status, 401);
    assert!(!browser.jar.contains_key("fedsts_portal"));

    let signed_in = submit(
        &mut browser,
        &form_page,
        None,
        &[("username", ALICE), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(signed_in.status, 303);
    let cookie = signed_in
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("fedsts_portal="))
        .unwrap();
    assert!(
        cookie.ends_with("; Path=/; Max-Age=28800; HttpOnly; Secure; SameSite=Lax"),
        "{cookie}"
    );
    let home = get(&mut browser, "/").await;
    assert_eq!(home.status, 200);
    assert!(
        home.body
            .contains("Signed in as <strong>alice@example.com</strong>")
    );
    // alice@example.com: demo covers her; orgapp is other.org, subapp another directory.
    assert_eq!(tiles(&home), ["demo"]);
    assert!(home.body.contains("<span>Microsoft 365</span>"));
    assert!(
        home.body
            .contains("<img src=\"data:image/png;base64,iVBORw0KGgo")
    );
    assert!(header(&home, "content-security-policy").contains("img-src https: data:"));
    assert!(home.body.contains("href=\"/wsfed/demo/password\""));
    assert!(!home.body.contains("<script"));

    // The tile: a token without a second password.
    let launched = get(&mut browser, "/wsfed/demo/launch").await;
    let wresult = assert_response_page(&launched, RECEIVER, "");
    assert!(wresult.contains("alice@example.com"));
    // Carol's app does not take alice's portal session.
    let crossed = get(&mut browser, "/wsfed/orgapp/launch").await;
    assert!(shows_password_form(&crossed), "{}", crossed.body);

    // Carol sees only her app.
    let mut carol = Browser::new(&server);
    let carol_home = portal_sign_in(&mut carol, CAROL_OTHER_DOMAIN, PASSWORD).await;
    assert_eq!(tiles(&carol_home), ["orgapp"]);

    // Sign-out ends the portal session and the app session its tile started, for a copy too.
    let copy = browser.jar.clone();
    let forged = submit(&mut Browser::new(&server), &home, Some("signout"), &[]).await;
    assert_eq!(forged.status, 403, "no form cookie: refused");
    let signed_out = submit(&mut browser, &home, Some("signout"), &[]).await;
    assert_eq!(signed_out.status, 200, "{}", signed_out.body);
    assert!(signed_out.body.contains("You are signed out of the portal"));
    assert!(!browser.jar.contains_key("fedsts_portal"));
    let mut thief = Browser::new(&server);
    thief.jar = copy;
    assert!(shows_password_form(&get(&mut thief, "/").await));
    let relaunch = get(&mut thief, "/wsfed/demo/launch").await;
    assert!(shows_password_form(&relaunch), "{}", relaunch.body);

    let reasons = log.reasons();
    for expected in [
        "wrong_password",
        "portal_session_not_for_app",
        "session_signed_out",
    ] {
        assert!(
            reasons.iter().any(|r| r == expected),
            "{expected} in {reasons:?}"
        );
    }
    let records = log.records();
    let signed_in_record = records
        .iter()
        .find(|r| r["decision"] == "signed_in")
        .unwrap();
    assert_eq!(signed_in_record["endpoint"], "portal/signin");
    assert_eq!(signed_in_record["user"], ALICE);
    assert!(
        records
            .iter()
            .any(|r| r["decision"] == "signed_out" && r["endpoint"] == "portal/signout")
    );
    server.stop().await;
}

#[tokio::test]
async fn a_portal_session_of_another_directory_is_refused() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    let server = portal_server(None, None).await;
    let mut browser = Browser::new(&server);
    // sam signs in through subapp (sub.example.com, the second directory); demo's domain covers
    // him too and demo's directory knows him, but did not check his password.
    let home = portal_sign_in(&mut browser, SAM, SAM_PASSWORD).await;
    assert_eq!(tiles(&home), ["subapp"]);
    let own = get(&mut browser, "/wsfed/subapp/launch").await;
    assert_response_page(&own, RECEIVER, "");
    let demo = get(&mut browser, "/wsfed/demo/launch").await;
    assert!(
        shows_password_form(&demo),
        "demo's directory did not check sam: {}",
        demo.body
    );
    server.stop().await;
}

#[tokio::test]
async fn the_notice_is_acknowledged_once_per_version() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new("portal"));
    let server = portal_server(Some("v1"), Some(store.clone())).await;
    let mut browser = Browser::new(&server);
    let notice = portal_sign_in(&mut browser, ALICE, PASSWORD).await;
    assert_eq!(notice.status, 200);
    assert!(
        notice
            .body
            .contains("Passwords now expire after 90 days.</p><p>Change yours")
    );
    assert!(
        tiles(&notice).is_empty(),
        "no tiles before the notice is acknowledged"
    );
    // The launch URL does not skip the notice.
    let early = get(&mut browser, "/wsfed/demo/launch").await;
    assert!(shows_password_form(&early), "{}", early.body);
    // A forged acknowledgement changes nothing.
    let forged = submit(
        &mut browser,
        &notice,
        Some("acknowledge"),
        &[("csrf", "AAAA")],
    )
    .await;
    assert_eq!(forged.status, 403);
    assert!(tiles(&get(&mut browser, "/").await).is_empty());
    let acknowledged = submit(&mut browser, &notice, Some("acknowledge"), &[]).await;
    assert_eq!(
        (
            acknowledged.status,
            header(&acknowledged, "location").as_str()
        ),
        (303, "/")
    );
    assert_eq!(tiles(&get(&mut browser, "/").await), ["demo"]);
    assert_response_page(&get(&mut browser, "/wsfed/demo/launch").await, RECEIVER, "");
    server.stop().await;

    // Another instance on the same store, same version: remembered for the user.
    let again = portal_server(Some("v1"), Some(store.clone())).await;
    let mut fresh = Browser::new(&again);
    assert_eq!(
        tiles(&portal_sign_in(&mut fresh, ALICE, PASSWORD).await),
        ["demo"]
    );
    again.stop().await;

    // A new version asks again.
    let next = portal_server(Some("v2"), Some(store)).await;
    let mut browser = Browser::new(&next);
    let notice = portal_sign_in(&mut browser, ALICE, PASSWORD).await;
    assert!(
        notice.body.contains("id=\"acknowledge\""),
        "{}",
        notice.body
    );
    assert!(inputs(&notice.body).values().any(|v| v == "v2"));
    next.stop().await;
}

#[tokio::test]
async fn wrong_portal_passwords_count_toward_the_lockout() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, dir| {
            portal_config(config, dir, None);
            config.lockout.threshold = 3;
        }),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&server);
    let form_page = get(&mut browser, "/").await;
    for _ in 0..3 {
        let wrong = submit(
            &mut browser,
            &form_page,
            None,
            &[("username", ALICE), ("password", "wrong")],
        )
        .await;
        assert_eq!(wrong.status, 401);
    }
    // Locked: the right password is refused at the portal and at the app's sign-in.
    let locked = submit(
        &mut browser,
        &form_page,
        None,
        &[("username", ALICE), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(locked.status, 401, "{}", locked.body);
    assert!(!browser.jar.contains_key("fedsts_portal"));
    let page = browser.get(&common::passive::sign_in_query(&[])).await;
    let refused = browser.sign_in(&page, ALICE, PASSWORD).await;
    assert_eq!(refused.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn portal_posts_take_rate_limit_tokens() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, dir| {
            portal_config(config, dir, None);
            config.rate_limit.burst = 2;
            config.rate_limit.requests_per_minute = 1;
        }),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&server);
    let form_page = get(&mut browser, "/").await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let reply = submit(
            &mut browser,
            &form_page,
            None,
            &[("username", ALICE), ("password", "wrong")],
        )
        .await;
        statuses.push(reply.status);
    }
    assert_eq!(statuses, [401, 401, 429]);
    server.stop().await;
}

#[tokio::test]
async fn the_portal_asks_for_a_code_when_required_and_tiles_carry_it() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, dir| {
            portal_config(config, dir, None);
            config.portal.require_mfa = true;
        }),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&server);
    let form_page = get(&mut browser, "/").await;
    let code_page = submit(
        &mut browser,
        &form_page,
        None,
        &[("username", DAVE), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(code_page.status, 200, "{}", code_page.body);
    assert!(inputs(&code_page.body).contains_key("mfa_ticket"));
    assert_eq!(inputs(&code_page.body)["app"], "demo");
    assert!(
        !browser.jar.contains_key("fedsts_portal"),
        "no session before the code"
    );
    // A ticket presented for another app is refused.
    let swapped = submit(
        &mut browser,
        &code_page,
        None,
        &[("app", "orgapp"), ("totp", "000000")],
    )
    .await;
    assert_eq!(swapped.status, 401);
    assert!(!browser.jar.contains_key("fedsts_portal"));
    let code = totp::current_code(
        &TotpKey::from_base32(DAVE_SECRET).unwrap(),
        time::OffsetDateTime::now_utc(),
    );
    let signed_in = submit(&mut browser, &code_page, None, &[("totp", &code)]).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(tiles(&get(&mut browser, "/").await), ["demo"]);
    let launched = get(&mut browser, "/wsfed/demo/launch").await;
    let wresult = assert_response_page(&launched, RECEIVER, "");
    assert!(wresult.contains("http://schemas.microsoft.com/claims/multipleauthn"));
    server.stop().await;
}

/// The TOML block of README.md that starts with `# {marker}`.
fn readme_block(marker: &str) -> String {
    let readme = include_str!("../README.md");
    let start = readme
        .find(&format!("```toml\n# {marker}\n"))
        .unwrap_or_else(|| panic!("README lost its {marker}"));
    let body = &readme[start + "```toml\n".len()..];
    body[..body.find("```").unwrap()].to_owned()
}

#[derive(serde::Deserialize)]
struct PortalBlock {
    portal: fedsts::config::PortalConfig,
}

#[derive(serde::Deserialize)]
struct AppTileBlock {
    apps: BTreeMap<String, fedsts::config::AppPortalConfig>,
}

/// README's "User portal" examples, read through the real schema, serve what they say.
#[tokio::test]
async fn the_readme_portal_example_serves() {
    let (_log, _guard) = AuditLog::capture();
    let portal: PortalBlock = toml::from_str(&readme_block("portal example")).unwrap();
    let mut tile: AppTileBlock = toml::from_str(&readme_block("app tile example")).unwrap();
    let mut app_portal = tile.apps.remove("portal").unwrap();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |config, dir| {
            portal_config(config, dir, None);
            config.portal = portal.portal;
            let logo = app_portal.logo.take().unwrap();
            let copy = dir.join(&logo);
            std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
            std::fs::copy(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/tile-logo.png"),
                &copy,
            )
            .unwrap();
            app_portal.logo = Some(copy);
            config.apps[0].portal = app_portal;
            assert!(config.problems().is_empty(), "{:?}", config.problems());
        }),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&server);
    let form_page = get(&mut browser, "/").await;
    assert!(
        form_page
            .body
            .contains("Sign in with your Example Inc. account.")
    );
    let notice = portal_sign_in(&mut browser, ALICE, PASSWORD).await;
    assert!(
        notice
            .body
            .contains("<p>From 1 January, passwords expire after 90 days.</p>")
    );
    let acknowledged = submit(&mut browser, &notice, Some("acknowledge"), &[]).await;
    assert_eq!(acknowledged.status, 303);
    let home = get(&mut browser, "/").await;
    assert_eq!(tiles(&home), ["demo"]);
    assert!(home.body.contains("<span>Microsoft 365</span>"));
    assert!(home.body.contains("data:image/png;base64,"));
    server.stop().await;
}

#[tokio::test]
async fn a_bad_logo_stops_the_start_and_check_config_names_it() {
    let (_log, _guard) = AuditLog::capture();
    let dir = tempfile::tempdir().unwrap();
    let embedded = fedsts::first_run::prepare(dir.path(), "127.0.0.1:0").unwrap();
    let mut config = embedded.config;
    let svg = dir.path().join("logo.svg");
    std::fs::write(
        &svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\"><script/></svg>",
    )
    .unwrap();
    config.portal.enabled = true;
    config.apps[0].portal.logo = Some(svg);
    let problems = fedsts::preflight::check(&config, time::OffsetDateTime::now_utc());
    assert!(
        problems
            .iter()
            .any(|p| p.key == "apps[0].portal.logo" && p.problem.contains("not a PNG")),
        "{problems:?}"
    );
    let started = fedsts::sts::Sts::from_config(&config, Arc::new(SystemClock));
    let error = started.expect_err("a bad logo stops the start").to_string();
    assert!(error.starts_with("apps[0].portal.logo: "), "{error}");
}

/// A device CA certificate (PEM) no client here has a certificate from.
fn device_ca_pem() -> String {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
        .unwrap()
        .pem()
}

#[tokio::test]
async fn device_trust_holds_at_the_portal() {
    let (log, _guard) = AuditLog::capture();
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, dir| {
            portal_config(config, dir, None);
            let ca_file = dir.join("device-ca.pem");
            std::fs::write(&ca_file, device_ca_pem()).unwrap();
            config.device_trust = Some(fedsts::config::DeviceTrustConfig {
                ca_file,
                crl_file: None,
            });
            config.apps[0].device_trust = Some(fedsts::config::AppDevicePolicy {
                flows: vec![fedsts::config::device::Flow::Passive],
                users: vec![ALICE.into()],
                groups: vec![],
            });
        }),
        ..Options::default()
    })
    .await;
    let mut browser = Browser::new(&server);
    let form_page = get(&mut browser, "/").await;
    let refused = submit(
        &mut browser,
        &form_page,
        None,
        &[("username", ALICE), ("password", PASSWORD)],
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("id=\"admin-actions\""));
    assert!(!browser.jar.contains_key("fedsts_portal"));
    let refusal = log
        .records()
        .into_iter()
        .find(|r| r["endpoint"] == "portal/signin" && r["decision"] == "refused")
        .unwrap();
    assert_eq!(refusal["user"], ALICE);
    server.stop().await;
}

/// The portal whose `other` directory says sam's password expires `days` (and an hour) from now,
/// with `portal.password_notice_days = notice_days`.
async fn expiring_server(days: i64, notice_days: u32) -> TestServer {
    TestServer::start_with(Options {
        clock: Arc::new(SystemClock),
        store: None,
        configure: Box::new(move |config, dir| {
            portal_config(config, dir, None);
            config.portal.password_notice_days = notice_days;
            let expires = time::OffsetDateTime::now_utc()
                + time::Duration::days(days)
                + time::Duration::hours(1);
            let expires = expires
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap();
            let other = dir.join("other-users.toml");
            let text = std::fs::read_to_string(&other).unwrap();
            std::fs::write(
                &other,
                format!("{text}password_expires_at = \"{expires}\"\n"),
            )
            .unwrap();
        }),
    })
    .await
}

/// Issue 15's notice N days ahead: the tiles page says when the directory's expiry is within
/// `portal.password_notice_days`, links the change page, and says nothing earlier or when off.
#[tokio::test]
async fn the_tiles_page_warns_of_a_password_that_expires_soon() {
    // Every test of this binary captures: see common::audit on the callsite cache.
    let (_log, _guard) = AuditLog::capture();
    for (days, notice_days, warned) in [(5, 14, true), (30, 14, false), (5, 0, false)] {
        let server = expiring_server(days, notice_days).await;
        let mut browser = Browser::new(&server);
        let home = portal_sign_in(&mut browser, SAM, SAM_PASSWORD).await;
        assert_eq!(tiles(&home), ["subapp"], "{}", home.body);
        assert_eq!(
            home.body.contains("id=\"password-expiry\""),
            warned,
            "{days} days, notice from {notice_days}: {}",
            home.body
        );
        if warned {
            assert!(
                home.body.contains("Your password expires in 5 days"),
                "{}",
                home.body
            );
            assert!(
                home.body
                    .contains("/wsfed/subapp/password\" id=\"change-password\"")
            );
        }
        server.stop().await;
    }
}
