//! Passive WS-Federation over real HTTPS against a server on a loopback port, with a tiny cookie
//! jar standing in for the browser: wctx round trip, SSO, wfresh/prompt, generic failures,
//! forged and expired forms, open redirects, TOTP step-up and replay, sign-out (a copied session
//! cookie is dead after it), launch, session expiry on the injected clock, and the federation
//! metadata checked by xmlsec1.

mod common;

use std::process::Command;
use std::sync::Arc;

use common::audit::AuditLog;
use common::passive::{
    Browser, WCTX, assert_response_page, form, form_action, header, inputs, sign_in_query,
};
use common::server::{
    ALICE, BOB_DISABLED, Options, PASSWORD, TestServer, users_file_with_totp_user,
};
use fedsts::clock::{Clock, ManualClock, SystemClock};
use fedsts::totp::{self, TotpKey};
use time::OffsetDateTime;

const RECEIVER: &str = "https://rp.test.invalid/login.srf";
const OTHER_ALLOWED: &str = "https://rp2.test.invalid/done";
const DAVE: &str = "dave@example.com";
const DAVE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

async fn server(clock: Arc<dyn Clock>) -> TestServer {
    TestServer::start_with(Options {
        clock,
        configure: Box::new(move |config, dir| {
            let users = users_file_with_totp_user(
                dir,
                "passive-users.toml",
                DAVE,
                "dave-immutable",
                DAVE_SECRET,
            );
            config.directories.insert(
                "demo".into(),
                fedsts::config::DirectoryConfig::File { path: users },
            );
            let passive = &mut config.apps[0].passive;
            passive.reply_url = RECEIVER.into();
            passive.allowed_wreply = vec![OTHER_ALLOWED.into()];
        }),
        ..Options::default()
    })
    .await
}

#[tokio::test]
async fn sign_in_sso_fresh_and_generic_failures() {
    let server = server(Arc::new(SystemClock)).await;
    let mut browser = Browser::new(&server);
    let page = browser.get(&sign_in_query(&[("username", ALICE)])).await;
    assert_eq!(page.status, 200);
    assert_eq!(header(&page, "cache-control"), "no-store");
    assert_eq!(header(&page, "x-frame-options"), "DENY");
    let csp = header(&page, "content-security-policy");
    assert!(
        csp.contains("form-action 'self'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert_eq!(
        inputs(&page.body)["username"],
        ALICE,
        "login hint pre-fills the form"
    );
    assert_eq!(inputs(&page.body)["wctx"], WCTX);
    assert_eq!(form_action(&page.body), format!("/wsfed/{}", server.app_id));

    for (user, password) in [
        (ALICE, "wrong"),
        ("nobody@example.com", PASSWORD),
        (BOB_DISABLED, PASSWORD),
    ] {
        let failed = browser.sign_in(&page, user, password).await;
        assert_eq!(failed.status, 401);
        assert!(
            failed
                .body
                .contains("The user name or password is incorrect, or the account cannot sign in.")
        );
        assert!(!browser.jar.contains_key("fedsts_session"));
    }

    let response = browser.sign_in(&page, ALICE, PASSWORD).await;
    let session_cookie = response
        .headers
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("fedsts_session="))
        .unwrap();
    assert!(session_cookie.ends_with(&format!(
        "; Path=/wsfed/{}; Max-Age=28800; HttpOnly; Secure; SameSite=Lax",
        server.app_id
    )));
    let wresult = assert_response_page(&response, RECEIVER, WCTX);
    assert!(wresult.starts_with(
        r#"<t:RequestSecurityTokenResponse xmlns:t="http://schemas.xmlsoap.org/ws/2005/02/trust">"#
    ));
    assert!(wresult.contains(r#"Issuer="example.com""#));
    assert!(wresult.contains(r#"AuthenticationMethod="urn:oasis:names:tc:SAML:1.0:am:password""#));
    assert!(!wresult.contains("multipleauthn"));

    // SSO: a second request signs in from the session, without a form.
    let sso = browser.get(&sign_in_query(&[])).await;
    assert_response_page(&sso, RECEIVER, WCTX);
    // wfresh=0 and prompt=login ask for the password again.
    for fresh in [("wfresh", "0"), ("prompt", "login")] {
        let again = browser.get(&sign_in_query(&[fresh])).await;
        assert_eq!(again.status, 200);
        assert!(
            inputs(&again.body).contains_key("csrf"),
            "{fresh:?} shows the form"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn forged_forms_and_open_redirects_are_refused() {
    let server = server(Arc::new(SystemClock)).await;
    let mut browser = Browser::new(&server);
    let page = browser.get(&sign_in_query(&[])).await;

    // A cross-site POST has no form cookie.
    let mut attacker = Browser::new(&server);
    let forged = attacker.sign_in(&page, ALICE, PASSWORD).await;
    assert_eq!(forged.status, 403);
    assert!(!attacker.jar.contains_key("fedsts_session"));
    assert!(!forged.body.contains("wresult"));
    // The right cookie with a wrong token.
    let mut fields = inputs(&page.body);
    fields.insert("csrf".into(), "AAAA".into());
    fields.insert("username".into(), ALICE.into());
    fields.insert("password".into(), PASSWORD.into());
    let wrong_token = browser.post(&fields).await;
    assert_eq!(wrong_token.status, 403);
    assert!(!browser.jar.contains_key("fedsts_session"));

    let evil = browser
        .get(&sign_in_query(&[("wreply", "https://evil.example/steal")]))
        .await;
    assert_eq!(evil.status, 400);
    assert!(!evil.body.contains("evil.example"));
    let unknown_realm = browser
        .get(&form(&[("wa", "wsignin1.0"), ("wtrealm", "urn:evil")]))
        .await;
    assert_eq!(unknown_realm.status, 400);
    let long = "x".repeat(4097);
    assert_eq!(
        browser.get(&sign_in_query(&[("wctx", &long)])).await.status,
        400
    );

    let allowed = browser
        .get(&sign_in_query(&[("wreply", OTHER_ALLOWED)]))
        .await;
    let response = browser.sign_in(&allowed, ALICE, PASSWORD).await;
    assert_response_page(&response, OTHER_ALLOWED, WCTX);
    let csp = header(&response, "content-security-policy");
    assert!(
        csp.contains("form-action https://rp2.test.invalid;"),
        "{csp}"
    );
    server.stop().await;
}

#[tokio::test]
async fn totp_step_up_replay_and_missing_enrolment() {
    let server = server(Arc::new(SystemClock)).await;
    let mfa = [("wauth", "http://schemas.microsoft.com/claims/multipleauthn")];
    let secret = TotpKey::from_base32(DAVE_SECRET).unwrap();

    let mut browser = Browser::new(&server);
    let page = browser.get(&sign_in_query(&mfa)).await;
    let code_page = browser.sign_in(&page, DAVE, PASSWORD).await;
    assert_eq!(code_page.status, 200);
    assert!(inputs(&code_page.body).contains_key("mfa_ticket"));
    assert!(!code_page.body.contains("wresult"));
    assert!(
        !browser.jar.contains_key("fedsts_session"),
        "no session before the code"
    );
    let wrong = browser.enter_code(&code_page, "000000").await;
    assert_eq!(wrong.status, 401);
    let code = totp::current_code(&secret, OffsetDateTime::now_utc());
    let response = browser.enter_code(&wrong, &code).await;
    let wresult = assert_response_page(&response, RECEIVER, WCTX);
    assert!(
        wresult.contains(
            r#"AuthenticationMethod="http://schemas.microsoft.com/claims/multipleauthn""#
        )
    );
    assert!(wresult.contains(
        "<saml:AttributeValue>http://schemas.microsoft.com/claims/multipleauthn</saml:AttributeValue>"
    ));

    // The same code in another browser, within its window, is a replay.
    let mut second = Browser::new(&server);
    let page = second.get(&sign_in_query(&mfa)).await;
    let code_page = second.sign_in(&page, DAVE, PASSWORD).await;
    let replayed = second.enter_code(&code_page, &code).await;
    assert_eq!(replayed.status, 401);
    assert!(replayed.body.contains("That code is not valid"));
    assert!(!second.jar.contains_key("fedsts_session"));

    // MFA asked for a user without an authenticator: refused, no token.
    let mut third = Browser::new(&server);
    let page = third.get(&sign_in_query(&mfa)).await;
    let refused = third.sign_in(&page, ALICE, PASSWORD).await;
    assert_eq!(refused.status, 403);
    assert!(!refused.body.contains("wresult"));
    server.stop().await;
}

#[tokio::test]
async fn sign_out_launch_and_session_expiry() {
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone()).await;
    let mut browser = Browser::new(&server);
    let page = browser.get(&sign_in_query(&[])).await;
    browser.sign_in(&page, ALICE, PASSWORD).await;

    let launch_path = format!("/wsfed/{}/launch", server.app_id);
    let launched = browser.send("GET", &launch_path, String::new()).await;
    assert_response_page(&launched, RECEIVER, "");

    clock.advance(time::Duration::seconds(8 * 3600 + 1));
    let expired = browser.send("GET", &launch_path, String::new()).await;
    assert_eq!(expired.status, 200);
    assert_eq!(
        inputs(&expired.body)["wctx"],
        "",
        "launch form carries an empty wctx"
    );
    assert!(inputs(&expired.body).contains_key("csrf"));
    let response = browser.sign_in(&expired, ALICE, PASSWORD).await;
    assert_response_page(&response, RECEIVER, "");

    let out = browser
        .get(&form(&[("wa", "wsignout1.0"), ("wreply", OTHER_ALLOWED)]))
        .await;
    assert_eq!(out.status, 302);
    assert_eq!(header(&out, "location"), OTHER_ALLOWED);
    assert!(!browser.jar.contains_key("fedsts_session"));
    let again = browser.get(&sign_in_query(&[])).await;
    assert!(
        inputs(&again.body).contains_key("csrf"),
        "signed out: the form again"
    );

    let cleanup = browser
        .get(&form(&[
            ("wa", "wsignoutcleanup1.0"),
            ("wreply", "https://evil.example/"),
        ]))
        .await;
    assert_eq!(cleanup.status, 200);
    assert_eq!(header(&cleanup, "location"), "");
    assert!(cleanup.body.contains("You are signed out."));
    server.stop().await;
}

/// Attack: the session cookie is copied (stolen from a shared PC, a proxy log, malware) before
/// the user signs out. After `wsignout1.0` the copy must not get a token; a new sign-in works.
#[tokio::test]
async fn a_copied_session_cookie_is_dead_after_sign_out() {
    let (log, _guard) = AuditLog::capture();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let server = server(clock.clone()).await;
    let launch_path = format!("/wsfed/{}/launch", server.app_id);
    let mut user = Browser::new(&server);
    let page = user.get(&sign_in_query(&[])).await;
    assert_response_page(&user.sign_in(&page, ALICE, PASSWORD).await, RECEIVER, WCTX);
    let mut thief = Browser::new(&server);
    thief.jar = user.jar.clone();
    let stolen = thief.send("GET", &launch_path, String::new()).await;
    assert_response_page(&stolen, RECEIVER, "");

    let out = user.get(&form(&[("wa", "wsignout1.0")])).await;
    assert_eq!(out.status, 200, "{}", out.body);
    for attempt in [
        thief.send("GET", &launch_path, String::new()).await,
        thief.get(&sign_in_query(&[])).await,
    ] {
        assert_eq!(attempt.status, 200);
        assert!(!attempt.body.contains("wresult"), "{}", attempt.body);
        assert!(
            inputs(&attempt.body).contains_key("csrf"),
            "the password form"
        );
    }
    let page = user.get(&sign_in_query(&[])).await;
    assert_response_page(&user.sign_in(&page, ALICE, PASSWORD).await, RECEIVER, WCTX);
    assert_eq!(
        log.reasons(),
        [
            "password",
            "session",
            "ok",
            "session_signed_out",
            "session_signed_out",
            "password"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn federation_metadata_verifies_and_matches_commands() {
    let server = server(Arc::new(SystemClock)).await;
    let metadata = server
        .request(
            "GET",
            &format!(
                "/wsfed/{}/federationmetadata/2007-06/federationmetadata.xml",
                server.app_id
            ),
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(metadata.status, 200);
    let commands = server
        .request(
            "GET",
            &format!("/wsfed/{}/commands", server.app_id),
            &[],
            Vec::new(),
        )
        .await
        .body;
    let cert = fedsts::crypto::Certificate::from_pem(
        &std::fs::read_to_string(&server.signing_cert_path).unwrap(),
    )
    .unwrap()
    .base64()
    .to_owned();
    assert!(metadata.body.starts_with(r#"<EntityDescriptor xmlns:fed="http://docs.oasis-open.org/wsfed/federation/200706" xmlns="urn:oasis:names:tc:SAML:2.0:metadata" ID="_"#));
    assert!(metadata.body.contains(r#" entityID="example.com">"#));
    assert!(commands.contains(r#"-IssuerUri "example.com""#));
    assert!(
        metadata
            .body
            .contains(&format!("<X509Certificate>{cert}</X509Certificate>"))
    );
    assert!(commands.contains(&cert));
    let passive = server.app_url("").trim_end_matches('/').to_owned();
    assert!(
        metadata
            .body
            .contains(&format!("<wsa:Address>{passive}</wsa:Address>"))
    );
    assert!(commands.contains(&format!("-PassiveSignInUri \"{passive}\"")));

    if !common::require_tool("xmlsec1") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metadata.xml");
    std::fs::write(&file, &metadata.body).unwrap();
    let verify = |path: &std::path::Path| {
        let output = Command::new("xmlsec1")
            .arg("--verify")
            .arg("--pubkey-cert-pem")
            .arg(&server.signing_cert_path)
            .arg("--id-attr:ID")
            .arg("urn:oasis:names:tc:SAML:2.0:metadata:EntityDescriptor")
            .arg(path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        output.status.success() && stderr.lines().any(|l| l.trim() == "OK")
    };
    assert!(verify(&file), "xmlsec1 verifies the metadata");
    let tampered = dir.path().join("tampered.xml");
    std::fs::write(
        &tampered,
        metadata
            .body
            .replace("entityID=\"example.com\"", "entityID=\"evil.com\""),
    )
    .unwrap();
    assert!(
        !verify(&tampered),
        "a changed entityID breaks the signature"
    );
    server.stop().await;
}
