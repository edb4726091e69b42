//! Password change against real directories started by the tests: OpenLDAP `slapd` (the
//! Password Modify extended operation, bound as the user) and a Samba AD DC (`unicodePwd`
//! delete/add over LDAPS: as the user, or as the service account for a user who must change
//! the password and cannot bind), with AD's policy refusals (history, length, complexity)
//! shown in plain words, a must-change user (pwdLastSet=0, bind error 773) offered the change
//! form during passive sign-in, and AD's computed expiry in the password-expiry claims. The
//! DC keeps no grace period for old passwords (`old password allowed period = 0`), so an old
//! password is refused at once.

mod common;

use std::collections::BTreeMap;

use common::passive::{Browser, Page, WCTX, assert_response_page, form, inputs, sign_in_query};
use common::samba::{self, SERVICE_DN, SERVICE_PASSWORD, SambaDc, USERS};
use common::server::{Options, TestServer};
use common::slapd::{self, ADMIN_DN, ADMIN_PASSWORD, Slapd, USER_PASSWORD};
use fedsts::config::DirectoryConfig;
use fedsts::config::LdapConfig;
use fedsts::directory::ldap::LdapDirectory;
use fedsts::directory::{AuthFailure, Directory, DirectoryError, PasswordChange, PasswordRule};

const RECEIVER: &str = "https://rp.test.invalid/login.srf";
const NEW_PASSWORD: &str = "N3w-Pass-W0rd!";

fn change<'a>(username: &'a str, old: &'a str, new: &'a str) -> PasswordChange<'a> {
    PasswordChange {
        username,
        old_password: old,
        new_password: new,
        now: time::OffsetDateTime::now_utc(),
    }
}

fn rejected(result: Result<fedsts::directory::User, DirectoryError>) -> AuthFailure {
    match result {
        Err(DirectoryError::Rejected(failure)) => failure,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn slapd_config(server: &Slapd) -> LdapConfig {
    toml::from_str(&format!(
        r#"
url = "{url}"
bind_dn = "{ADMIN_DN}"
bind_password = "{ADMIN_PASSWORD}"
user_base = "ou=people,dc=example,dc=com"
user_filter = "(&(objectClass=inetOrgPerson)(mail={{upn}}))"
upn_attr = "mail"
immutable_id_attr = "entryUUID"
timeout_secs = 2
"#,
        url = server.url
    ))
    .unwrap()
}

#[tokio::test]
async fn slapd_changes_a_password_with_the_password_modify_operation() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start();
    let directory = LdapDirectory::new(&slapd_config(&server)).unwrap();
    let alice = "alice@example.com";
    // A wrong current password changes nothing (the bind as the user is refused).
    let wrong = directory
        .change_password(&change(alice, "wrong", NEW_PASSWORD))
        .await;
    assert!(
        matches!(
            wrong,
            Err(DirectoryError::Rejected(AuthFailure::WrongPassword))
        ),
        "{wrong:?}"
    );
    directory
        .change_password(&change(alice, USER_PASSWORD, NEW_PASSWORD))
        .await
        .unwrap();
    assert_eq!(
        rejected(directory.authenticate(alice, USER_PASSWORD).await),
        AuthFailure::WrongPassword
    );
    let user = directory.authenticate(alice, NEW_PASSWORD).await.unwrap();
    assert_eq!(user.upn, alice);
    assert_eq!(user.password_expires_at, None, "slapd reports no expiry");
}

/// The same change through the HTTP change page and a passive sign-in, against slapd: what a
/// user of an OpenLDAP directory does (the directory call above is only the last step of it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slapd_user_changes_the_password_on_the_change_page_and_signs_in_with_it() {
    if !slapd::available() {
        return;
    }
    let slapd = Slapd::start();
    let config = slapd_config(&slapd);
    let directory = LdapDirectory::new(&config).unwrap();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |fedsts, _| {
            fedsts.apps[0].domain = "example.com".into();
            fedsts.apps[0].passive.reply_url = RECEIVER.into();
            let name = fedsts.apps[0].directory.clone();
            fedsts
                .directories
                .insert(name, DirectoryConfig::Ldap(Box::new(config)));
        }),
        ..Options::default()
    })
    .await;
    let alice = "alice@example.com";
    let page_path = format!("/wsfed/{}/password", server.app_id);
    let mut browser = Browser::new(&server);
    let page = changed_form(&mut browser, &page_path).await;
    let wrong = post_change(&mut browser, &page, alice, "wrong", NEW_PASSWORD).await;
    assert_eq!(wrong.status, 401, "{}", wrong.body);
    assert!(
        !wrong.body.contains("Your password was changed."),
        "{}",
        wrong.body
    );
    assert!(
        directory.authenticate(alice, USER_PASSWORD).await.is_ok(),
        "a wrong current password changes nothing"
    );

    let page = changed_form(&mut browser, &page_path).await;
    let changed = post_change(&mut browser, &page, alice, USER_PASSWORD, NEW_PASSWORD).await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert!(
        changed.body.contains("Your password was changed."),
        "{}",
        changed.body
    );
    assert_eq!(
        rejected(directory.authenticate(alice, USER_PASSWORD).await),
        AuthFailure::WrongPassword
    );
    assert!(directory.authenticate(alice, NEW_PASSWORD).await.is_ok());

    let mut browser = Browser::new(&server);
    let form_page = browser.get(&sign_in_query(&[])).await;
    let signed_in = browser.sign_in(&form_page, alice, NEW_PASSWORD).await;
    assert_response_page(&signed_in, RECEIVER, WCTX);
    server.stop().await;
}

fn ad_config(dc: &SambaDc) -> LdapConfig {
    let mut config: LdapConfig = toml::from_str(&format!(
        r#"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{SERVICE_DN}"
user_base = "{USERS}"
timeout_secs = 5
pool_size = 4
"#,
        url = dc.ldaps_url,
        ca = dc.ca_file.display()
    ))
    .unwrap();
    #[derive(serde::Deserialize)]
    struct Pw {
        p: fedsts::secret::Secret,
    }
    config.bind_password = Some(
        toml::from_str::<Pw>(&format!("p = \"{SERVICE_PASSWORD}\""))
            .unwrap()
            .p,
    );
    config
}

fn refused_rule(result: Result<(), DirectoryError>) -> PasswordRule {
    match result {
        Err(DirectoryError::NewPasswordRefused(rule)) => rule,
        other => panic!("expected a policy refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_changes_passwords_as_the_user_and_names_each_policy_refusal() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let ad = LdapDirectory::new(&ad_config(&dc)).unwrap();
    let bob = "bob@contoso.test";
    let before = ad.lookup(bob).await.unwrap().unwrap();
    let expires = before
        .password_expires_at
        .expect("Samba computes an expiry");
    assert!(expires > time::OffsetDateTime::now_utc() + time::Duration::days(30));

    ad.change_password(&change(bob, samba::USER_PASSWORD, NEW_PASSWORD))
        .await
        .unwrap();
    assert_eq!(
        rejected(ad.authenticate(bob, samba::USER_PASSWORD).await),
        AuthFailure::WrongPassword
    );
    assert!(ad.authenticate(bob, NEW_PASSWORD).await.is_ok());
    // History (the password before), length, then complexity once the domain asks for it.
    assert_eq!(
        refused_rule(
            ad.change_password(&change(bob, NEW_PASSWORD, samba::USER_PASSWORD))
                .await
        ),
        PasswordRule::History
    );
    assert_eq!(
        refused_rule(ad.change_password(&change(bob, NEW_PASSWORD, "Ab1!")).await),
        PasswordRule::TooShort
    );
    dc.ldap_tool(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modify\nreplace: pwdProperties\npwdProperties: 1\n-\n\n",
            samba::BASE
        ),
    );
    assert_eq!(
        refused_rule(
            ad.change_password(&change(bob, NEW_PASSWORD, "onlylowercaseletters"))
                .await
        ),
        PasswordRule::Complexity
    );
    assert!(
        ad.authenticate(bob, NEW_PASSWORD).await.is_ok(),
        "unchanged"
    );
}

async fn ad_server(dc: &SambaDc, expiry_claims: bool) -> TestServer {
    let ldap = ad_config(dc);
    TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            config.apps[0].domain = "contoso.test".into();
            config.apps[0].passive.reply_url = RECEIVER.into();
            config.apps[0].password_expiry_claims = expiry_claims;
            let name = config.apps[0].directory.clone();
            config
                .directories
                .insert(name, DirectoryConfig::Ldap(Box::new(ldap)));
        }),
        ..Options::default()
    })
    .await
}

async fn post_change(
    browser: &mut Browser<'_>,
    page: &Page,
    user: &str,
    old: &str,
    new: &str,
) -> Page {
    let mut fields: BTreeMap<String, String> = inputs(&page.body);
    for (name, value) in [
        ("username", user),
        ("old_password", old),
        ("new_password", new),
        ("confirm_password", new),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_must_change_user_changes_during_sign_in_and_refusals_read_in_plain_words() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let server = ad_server(&dc, true).await;

    // mia (pwdLastSet=0, bind error 773) is offered the change form, then signed in.
    let mut browser = Browser::new(&server);
    let form_page = browser.get(&sign_in_query(&[])).await;
    let offered = browser
        .sign_in(&form_page, "mia@contoso.test", samba::USER_PASSWORD)
        .await;
    assert_eq!(offered.status, 200, "{}", offered.body);
    assert!(
        offered.body.contains("You must change your password"),
        "{}",
        offered.body
    );
    let finished = post_change(
        &mut browser,
        &offered,
        "mia@contoso.test",
        samba::USER_PASSWORD,
        NEW_PASSWORD,
    )
    .await;
    let wresult = assert_response_page(&finished, RECEIVER, WCTX);
    // Her new password expires (Samba's maximum age): the claims are in her token.
    assert!(wresult.contains("passwordexpirationtime"), "{wresult}");
    assert!(wresult.contains(&server.app_url("password")));
    assert!(dc.can_bind(&format!("CN=mia,{USERS}"), NEW_PASSWORD));
    assert!(!dc.can_bind(&format!("CN=mia,{USERS}"), samba::USER_PASSWORD));

    // The change page: a password used before is refused in plain words.
    let mut browser = Browser::new(&server);
    let page_path = format!("/wsfed/{}/password", server.app_id);
    let page = browser.send("GET", &page_path, String::new()).await;
    let changed = post_change(
        &mut browser,
        &page,
        "bob@contoso.test",
        samba::USER_PASSWORD,
        NEW_PASSWORD,
    )
    .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    let again = changed_form(&mut browser, &page_path).await;
    let back = post_change(
        &mut browser,
        &again,
        "bob@contoso.test",
        NEW_PASSWORD,
        samba::USER_PASSWORD,
    )
    .await;
    assert_eq!(back.status, 400, "{}", back.body);
    assert!(
        back.body.contains(
            "The new password was used before. Choose a password you have not used recently."
        ),
        "{}",
        back.body
    );
    server.stop().await;

    // Switch off: no expiry claims for the same directory.
    let off = ad_server(&dc, false).await;
    let mut browser = Browser::new(&off);
    let form_page = browser.get(&sign_in_query(&[])).await;
    let signed_in = browser
        .sign_in(&form_page, "alice@contoso.test", samba::USER_PASSWORD)
        .await;
    let wresult = assert_response_page(&signed_in, RECEIVER, WCTX);
    assert!(!wresult.contains("passwordexpiration"), "{wresult}");
    off.stop().await;
}

async fn changed_form(browser: &mut Browser<'_>, path: &str) -> Page {
    let page = browser.send("GET", path, String::new()).await;
    assert_eq!(page.status, 200);
    page
}
