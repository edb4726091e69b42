//! TOTP self-enrolment during passive sign-in (`passive.totp_self_enrolment`), over real HTTPS
//! with a cookie-keeping client and the file directory: a user without a secret enrols after
//! the password (QR page, first code verified before the secret is stored in the users file),
//! and the next sign-in asks for a code from it. Attack tests: forged, foreign and replayed
//! enrolment tickets; a user with a secret cannot enrol a new one without a current code; a
//! session alone never enrols; one pending enrolment per user. Time is a `ManualClock`.

mod common;

use std::sync::Arc;

use common::audit::AuditLog;
use common::passive::{Browser, Page, assert_response_page, inputs, sign_in_query, unescape};
use common::server::{ALICE, Options, PASSWORD, TestServer, users_file_with_totp_user};
use fedsts::clock::{Clock, ManualClock};
use fedsts::state::memory::MemoryStore;
use fedsts::totp::{self, TotpKey};
use time::{Duration, OffsetDateTime};

const RECEIVER: &str = "https://rp.test.invalid/login.srf";
const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
const MFA: (&str, &str) = ("wauth", "http://schemas.microsoft.com/claims/multipleauthn");
const MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";

struct Setup {
    server: TestServer,
    clock: Arc<ManualClock>,
    store: Arc<MemoryStore>,
    users: std::path::PathBuf,
}

/// The `[apps.passive]` table of README.md's self-enrolment example, through the real parser.
fn readme_passive() -> fedsts::config::PassiveConfig {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```toml\n# totp self-enrolment example\n")
        .expect("README self-enrolment example");
    let body = &readme[start + 8..];
    let example: toml::Value = toml::from_str(&body[..body.find("```").unwrap()]).unwrap();
    example["apps"]["passive"].clone().try_into().unwrap()
}

/// alice (no secret) and dave (a secret), self-enrolment on (README's example) unless
/// `enrolment` is false.
async fn setup(enrolment: bool) -> Setup {
    // A whole step, so the code of "now" stays the code of the step while a test runs.
    let start =
        OffsetDateTime::from_unix_timestamp(OffsetDateTime::now_utc().unix_timestamp() / 30 * 30)
            .unwrap();
    let clock = Arc::new(ManualClock::new(start));
    let store = Arc::new(MemoryStore::new("test"));
    let users_path = Arc::new(std::sync::Mutex::new(None));
    let seen = users_path.clone();
    let server = TestServer::start_with(Options {
        clock: clock.clone(),
        store: Some(store.clone()),
        configure: Box::new(move |config, dir| {
            let users =
                users_file_with_totp_user(dir, "users.toml", DAVE, "dave-immutable", DAVE_SECRET);
            *seen.lock().unwrap() = Some(users.clone());
            config.directories.insert(
                "demo".into(),
                fedsts::config::DirectoryConfig::File { path: users },
            );
            if enrolment {
                config.apps[0].passive = readme_passive();
                assert!(config.apps[0].passive.totp_self_enrolment);
            }
            config.apps[0].passive.reply_url = RECEIVER.into();
            config.apps[0].display_name = Some("Example Inc.".into());
            config.rate_limit.burst = 1000;
        }),
    })
    .await;
    let users = users_path.lock().unwrap().clone().unwrap();
    Setup {
        server,
        clock,
        store,
        users,
    }
}

/// The password form, filled and posted with an MFA request: the next page.
async fn password_with_mfa(browser: &mut Browser<'_>, upn: &str) -> Page {
    let form = browser.get(&sign_in_query(&[MFA])).await;
    assert_eq!(form.status, 200, "{}", form.body);
    browser.sign_in(&form, upn, PASSWORD).await
}

/// The base32 secret the enrolment page shows for typing in.
fn shown_secret(page: &Page) -> TotpKey {
    let key = page
        .body
        .split("<p class=\"key\" id=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split("</p>").next())
        .unwrap_or_else(|| panic!("no key on {}", page.body));
    TotpKey::from_base32(key).unwrap()
}

fn assert_enrolment_page(page: &Page, upn: &str) {
    assert!([200, 401].contains(&page.status), "{}", page.body);
    assert!(
        inputs(&page.body).contains_key("enrol_ticket"),
        "{}",
        page.body
    );
    assert!(page.body.contains("<div class=\"qr\" id=\"qr\"><svg "));
    let uri = unescape(
        page.body
            .split("id=\"otpauth\"")
            .next()
            .and_then(|head| head.rsplit("href=\"").next())
            .and_then(|rest| rest.split('"').next())
            .unwrap(),
    );
    let secret = shown_secret(page).to_base32();
    assert_eq!(
        uri,
        format!(
            "otpauth://totp/Example%20Inc.:{upn}?secret={secret}&issuer=Example%20Inc.&algorithm=SHA1&digits=6&period=30"
        )
    );
    let csp = common::passive::header(page, "content-security-policy");
    assert!(
        !csp.contains("script-src"),
        "the page runs no script: {csp}"
    );
    assert!(!page.body.contains("<script"));
}

fn wrong(right: &str) -> &'static str {
    if right == "000000" {
        "111111"
    } else {
        "000000"
    }
}

async fn enter(browser: &mut Browser<'_>, page: &Page, code: &str) -> Page {
    browser.enter_code(page, code).await
}

fn stored_secret(users: &std::path::Path, upn: &str) -> Option<String> {
    let text = std::fs::read_to_string(users).unwrap();
    let file: toml::Value = toml::from_str(&text).unwrap();
    file["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["upn"].as_str() == Some(upn))
        .and_then(|u| u.get("totp_secret"))
        .map(|s| s.as_str().unwrap().to_owned())
}

#[tokio::test]
async fn a_user_enrols_after_the_password_and_the_next_sign_in_asks_for_the_code() {
    let (log, _guard) = AuditLog::capture();
    let Setup {
        server,
        clock,
        users,
        ..
    } = setup(true).await;
    let mut browser = Browser::new(&server);
    let page = password_with_mfa(&mut browser, ALICE).await;
    assert_eq!(page.status, 200);
    assert_enrolment_page(&page, ALICE);
    let secret = shown_secret(&page);
    assert_eq!(stored_secret(&users, ALICE), None, "nothing stored yet");

    let right = totp::current_code(&secret, clock.now());
    let again = enter(&mut browser, &page, wrong(&right)).await;
    assert_eq!(again.status, 401);
    assert_enrolment_page(&again, ALICE);
    assert_eq!(shown_secret(&again).to_base32(), secret.to_base32());
    assert_eq!(
        stored_secret(&users, ALICE),
        None,
        "a wrong code stores nothing"
    );

    let issued = enter(&mut browser, &again, &right).await;
    let wresult = assert_response_page(&issued, RECEIVER, common::passive::WCTX);
    assert!(
        wresult.contains(MULTIPLE_AUTHN),
        "the first code is the second factor"
    );
    assert_eq!(stored_secret(&users, ALICE), Some(secret.to_base32()));
    let backups = std::fs::read_dir(users.parent().unwrap())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".bak")
        })
        .count();
    assert_eq!(backups, 1, "the users file before the edit is kept");

    // A new browser: the password, then the code form (no enrolment any more).
    clock.advance(Duration::seconds(30));
    let mut next = Browser::new(&server);
    let code_form = password_with_mfa(&mut next, ALICE).await;
    let fields = inputs(&code_form.body);
    assert!(fields.contains_key("mfa_ticket"), "{}", code_form.body);
    assert!(!fields.contains_key("enrol_ticket"));
    let stale = enter(&mut next, &code_form, &right).await;
    assert_eq!(stale.status, 401, "the enrolment's code is spent");
    let code = totp::current_code(&secret, clock.now());
    let issued = enter(&mut next, &stale, &code).await;
    assert_response_page(&issued, RECEIVER, common::passive::WCTX);

    let decisions: Vec<(String, String)> = log
        .records()
        .iter()
        .map(|r| {
            (
                r["decision"].as_str().unwrap().to_owned(),
                r["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want = [
        ("totp_enrolment", "started"),
        ("refused", "totp_enrolment_wrong_code"),
        ("totp_enrolment", "completed"),
        ("issued", "totp_enrolment"),
        ("refused", "totp_replayed"),
        ("issued", "totp"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(d, r)| ((*d).to_owned(), (*r).to_owned()))
        .collect();
    assert_eq!(decisions, want);
    server.stop().await;
}

#[tokio::test]
async fn forged_foreign_and_replayed_enrolment_tickets_are_refused() {
    let (log, _guard) = AuditLog::capture();
    let Setup {
        server,
        clock,
        users,
        ..
    } = setup(true).await;
    let mut browser = Browser::new(&server);
    let page = password_with_mfa(&mut browser, ALICE).await;
    assert_eq!(page.status, 200);
    assert_enrolment_page(&page, ALICE);
    let secret = shown_secret(&page);
    let code = totp::current_code(&secret, clock.now());

    // A ticket whose payload was changed (another enrolment id) fails its MAC.
    let mut forged = inputs(&page.body);
    let ticket = forged["enrol_ticket"].clone();
    let (payload, tag) = ticket.split_once('.').unwrap();
    let mut bytes = payload.as_bytes().to_vec();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let forged_ticket = format!("{}.{tag}", String::from_utf8(bytes).unwrap());
    forged.insert("enrol_ticket".into(), forged_ticket);
    forged.insert("totp".into(), code.clone());
    let refused = browser.post(&forged).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(refused.body.contains("ran out"), "{}", refused.body);

    // The ticket in another browser, with that browser's own CSRF token: the ticket is bound
    // to the form nonce of the browser that passed the password check.
    let mut other = Browser::new(&server);
    let other_form = other.get(&sign_in_query(&[MFA])).await;
    let mut stolen = inputs(&page.body);
    stolen.insert("csrf".into(), inputs(&other_form.body)["csrf"].clone());
    stolen.insert("totp".into(), code.clone());
    let refused = other.post(&stolen).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(!refused.body.contains("wresult"));

    assert_eq!(stored_secret(&users, ALICE), None);
    let issued = enter(&mut browser, &page, &code).await;
    assert_response_page(&issued, RECEIVER, common::passive::WCTX);
    let stored = std::fs::read_to_string(&users).unwrap();

    // The same post again, with the next code of the same secret: the enrolment is spent.
    clock.advance(Duration::seconds(30));
    let mut replay = inputs(&page.body);
    replay.insert("totp".into(), totp::current_code(&secret, clock.now()));
    let replayed = browser.post(&replay).await;
    assert_eq!(replayed.status, 401, "{}", replayed.body);
    assert!(!replayed.body.contains("wresult"));
    assert_eq!(
        std::fs::read_to_string(&users).unwrap(),
        stored,
        "nothing rewritten"
    );

    let reasons = log.reasons();
    assert_eq!(
        reasons,
        [
            "started",
            "totp_enrolment_ticket_invalid",
            "totp_enrolment_ticket_invalid",
            "completed",
            "totp_enrolment",
            "totp_enrolment_replayed"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_user_with_a_secret_enrols_a_new_one_only_after_a_current_code() {
    let (log, _guard) = AuditLog::capture();
    let Setup {
        server,
        clock,
        users,
        ..
    } = setup(true).await;
    let old = TotpKey::from_base32(DAVE_SECRET).unwrap();
    let mut browser = Browser::new(&server);
    let code_form = password_with_mfa(&mut browser, DAVE).await;
    assert!(
        inputs(&code_form.body).contains_key("mfa_ticket"),
        "{}",
        code_form.body
    );
    assert!(
        !code_form.body.contains("enrol_ticket"),
        "the password alone does not enrol"
    );
    assert!(
        code_form
            .body
            .contains("Verify and set up a new authenticator")
    );

    // A wrong code with the new-authenticator button: the code form again, no enrolment.
    let right = totp::current_code(&old, clock.now());
    let mut fields = inputs(&code_form.body);
    fields.insert("totp".into(), wrong(&right).into());
    fields.insert("then".into(), "enrol".into());
    let refused = browser.post(&fields).await;
    assert_eq!(refused.status, 401);
    assert!(!refused.body.contains("enrol_ticket"), "{}", refused.body);

    // The MFA ticket posted as an enrolment ticket: a ticket of another purpose.
    let mut fields = inputs(&refused.body);
    fields.insert("step".into(), "enrol".into());
    let mfa_ticket = fields["mfa_ticket"].clone();
    fields.insert("enrol_ticket".into(), mfa_ticket);
    fields.insert("totp".into(), right.clone());
    assert_eq!(browser.post(&fields).await.status, 401);
    assert_eq!(stored_secret(&users, DAVE).as_deref(), Some(DAVE_SECRET));

    // A current code with the button: the enrolment page, replacing the old secret.
    let code_form = password_with_mfa(&mut browser, DAVE).await;
    let mut fields = inputs(&code_form.body);
    fields.insert("totp".into(), right.clone());
    fields.insert("then".into(), "enrol".into());
    let page = browser.post(&fields).await;
    assert_enrolment_page(&page, DAVE);
    let new = shown_secret(&page);
    clock.advance(Duration::seconds(30));
    let issued = enter(&mut browser, &page, &totp::current_code(&new, clock.now())).await;
    assert_response_page(&issued, RECEIVER, common::passive::WCTX);
    assert_eq!(stored_secret(&users, DAVE), Some(new.to_base32()));

    // The old secret's codes no longer sign in; the new one's do.
    clock.advance(Duration::seconds(30));
    let mut next = Browser::new(&server);
    let code_form = password_with_mfa(&mut next, DAVE).await;
    let old_code = enter(
        &mut next,
        &code_form,
        &totp::current_code(&old, clock.now()),
    )
    .await;
    assert_eq!(old_code.status, 401);
    let issued = enter(&mut next, &old_code, &totp::current_code(&new, clock.now())).await;
    assert_response_page(&issued, RECEIVER, common::passive::WCTX);

    assert_eq!(
        log.reasons(),
        [
            "totp_wrong",
            "totp_enrolment_ticket_invalid",
            "started_replacing",
            "completed",
            "totp_enrolment",
            "totp_wrong",
            "totp"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_session_alone_never_enrols_the_password_is_asked_again() {
    let (log, _guard) = AuditLog::capture();
    let Setup { server, .. } = setup(true).await;
    let mut browser = Browser::new(&server);
    // Signed in without MFA: a session cookie.
    let form = browser.get(&sign_in_query(&[])).await;
    let issued = browser.sign_in(&form, ALICE, PASSWORD).await;
    assert_response_page(&issued, RECEIVER, common::passive::WCTX);
    assert!(browser.jar.contains_key("fedsts_session"));

    // The same browser, now with MFA asked: the password form, not the enrolment page.
    let again = browser.get(&sign_in_query(&[MFA])).await;
    assert_eq!(again.status, 200);
    assert!(
        inputs(&again.body).contains_key("password"),
        "{}",
        again.body
    );
    assert!(!again.body.contains("enrol_ticket"));
    assert!(again.body.contains("enter your password again"));

    let page = browser.sign_in(&again, ALICE, PASSWORD).await;
    assert_enrolment_page(&page, ALICE);
    assert_eq!(
        log.reasons(),
        ["password", "totp_enrolment_needs_password", "started"]
    );
    server.stop().await;
}

#[tokio::test]
async fn pending_enrolments_are_one_per_user_and_a_later_start_replaces_the_earlier() {
    let (log, _guard) = AuditLog::capture();
    let Setup {
        server,
        clock,
        store,
        users,
    } = setup(true).await;
    let mut first = Browser::new(&server);
    let first_page = password_with_mfa(&mut first, ALICE).await;
    assert_enrolment_page(&first_page, ALICE);
    let entries = store.len();
    let mut latest = None;
    for _ in 0..20 {
        let mut browser = Browser::new(&server);
        let page = password_with_mfa(&mut browser, ALICE).await;
        assert_enrolment_page(&page, ALICE);
        latest = Some((browser.jar.clone(), page));
    }
    assert_eq!(store.len(), entries, "starting again adds no pending entry");

    let first_secret = shown_secret(&first_page);
    let code = totp::current_code(&first_secret, clock.now());
    let replaced = enter(&mut first, &first_page, &code).await;
    assert_eq!(replaced.status, 401, "{}", replaced.body);
    assert_eq!(stored_secret(&users, ALICE), None);

    let (jar, page) = latest.unwrap();
    let mut browser = Browser::new(&server);
    browser.jar = jar;
    let secret = shown_secret(&page);
    let issued = enter(
        &mut browser,
        &page,
        &totp::current_code(&secret, clock.now()),
    )
    .await;
    assert_response_page(&issued, RECEIVER, common::passive::WCTX);
    assert_eq!(stored_secret(&users, ALICE), Some(secret.to_base32()));
    let reasons = log.reasons();
    assert_eq!(reasons.iter().filter(|r| *r == "started").count(), 21);
    assert!(
        reasons.contains(&"totp_enrolment_replaced".to_owned()),
        "{reasons:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn without_the_switch_a_user_without_a_secret_is_refused() {
    let Setup { server, users, .. } = setup(false).await;
    let mut browser = Browser::new(&server);
    let page = password_with_mfa(&mut browser, ALICE).await;
    assert_eq!(page.status, 403, "{}", page.body);
    assert!(page.body.contains("Ask your administrator to enrol one"));
    assert!(!page.body.contains("enrol_ticket"));
    let mut dave = Browser::new(&server);
    let code_form = password_with_mfa(&mut dave, DAVE).await;
    assert!(!code_form.body.contains("set up a new authenticator"));
    assert_eq!(stored_secret(&users, ALICE), None);
    server.stop().await;
}
