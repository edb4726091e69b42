//! The LDAP backend against a real OpenLDAP `slapd` started by the test on a random loopback
//! port: search-then-bind and direct bind, the entryUUID-mapped ImmutableID, groups, a disabled
//! user, wrong and empty passwords, filter-injection attempts, and an outage (slapd killed)
//! that is a fault and an unhealthy `/healthz` until slapd is back, then recovers by itself.

mod common;

use std::process::Command;

use base64::Engine as _;
use common::server::{Options, TestServer};
use common::slapd::{self, ADMIN_DN, ADMIN_PASSWORD, Slapd, USER_PASSWORD};
use common::wstrust::{path_of, rst, saml_attribute};
use fedsts::config::{DirectoryConfig, LdapConfig};
use fedsts::directory::ldap::LdapDirectory;
use fedsts::directory::{AuthFailure, Directory, DirectoryError};

fn config_toml(url: &str, extra: &str) -> String {
    format!(
        r#"
url = "{url}"
bind_dn = "{ADMIN_DN}"
bind_password = "{ADMIN_PASSWORD}"
user_base = "ou=people,dc=example,dc=com"
user_filter = "(&(objectClass=inetOrgPerson)(mail={{upn}}))"
account_filter = "(&(objectClass=inetOrgPerson)(uid={{sam}}))"
upn_attr = "mail"
immutable_id_attr = "entryUUID"
sam_account_name_attr = "uid"
enabled_filter = "(!(employeeType=disabled))"
timeout_secs = 2
pool_size = 2
{extra}
"#
    )
}

fn ldap_config(url: &str, extra: &str) -> LdapConfig {
    toml::from_str(&config_toml(url, extra)).unwrap()
}

/// alice's ImmutableID as the test computes it independently: base64 of the 16 bytes of the
/// entryUUID that `ldapsearch` reports.
fn alice_immutable_id(url: &str) -> String {
    let output = Command::new("ldapsearch")
        .args([
            "-x",
            "-LLL",
            "-H",
            url,
            "-b",
            "uid=alice,ou=people,dc=example,dc=com",
        ])
        .args(["-s", "base", "entryUUID"])
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let uuid = text
        .lines()
        .find_map(|l| l.strip_prefix("entryUUID: "))
        .unwrap();
    let bytes = uuid::Uuid::parse_str(uuid.trim()).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes.as_bytes())
}

fn failure(result: Result<fedsts::directory::User, DirectoryError>) -> AuthFailure {
    match result {
        Err(DirectoryError::Rejected(f)) => f,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn search_then_bind_maps_attributes_and_refuses_what_it_must() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start();
    let directory = LdapDirectory::new(&ldap_config(&server.url, "")).unwrap();

    let alice = directory
        .authenticate("alice@example.com", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(alice.upn, "alice@example.com");
    assert_eq!(alice.immutable_id, alice_immutable_id(&server.url));
    assert_eq!(alice.immutable_id.len(), 24);
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));
    let mut groups = alice.groups.clone();
    groups.sort();
    assert_eq!(
        groups,
        [
            "cn=admins,ou=groups,dc=example,dc=com",
            "cn=staff,ou=groups,dc=example,dc=com"
        ]
    );
    assert_eq!(alice.sam_account_name.as_deref(), Some("alice"));

    assert_eq!(
        failure(directory.authenticate("alice@example.com", "wrong").await),
        AuthFailure::WrongPassword
    );
    assert_eq!(
        failure(directory.authenticate("alice@example.com", "").await),
        AuthFailure::WrongPassword
    );
    assert_eq!(
        failure(
            directory
                .authenticate("bob@example.com", USER_PASSWORD)
                .await
        ),
        AuthFailure::Disabled
    );
    assert_eq!(
        failure(directory.authenticate("bob@example.com", "wrong").await),
        AuthFailure::WrongPassword
    );
    assert_eq!(
        failure(
            directory
                .authenticate("nobody@example.com", USER_PASSWORD)
                .await
        ),
        AuthFailure::UnknownUser
    );

    assert_eq!(
        directory
            .lookup("ALICE@example.com")
            .await
            .unwrap()
            .map(|u| u.upn),
        Some("alice@example.com".to_owned())
    );
    assert_eq!(directory.lookup("bob@example.com").await.unwrap(), None);
    assert_eq!(
        directory
            .lookup_account("alice")
            .await
            .unwrap()
            .map(|u| u.upn),
        Some("alice@example.com".to_owned())
    );
    assert_eq!(directory.lookup_account("bob").await.unwrap(), None);
    directory.health().await.unwrap();
}

#[tokio::test]
async fn filter_injection_finds_nobody() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start();
    let directory = LdapDirectory::new(&ldap_config(&server.url, "")).unwrap();
    for hostile in [
        "*",
        "*@example.com",
        "a*",
        "alice@example.com)(mail=*",
        ")(",
        "*)(|(mail=*",
        "alice@example.com\0",
        "alice@example.com\0)(mail=*",
        "\\2a",
    ] {
        assert_eq!(
            failure(directory.authenticate(hostile, USER_PASSWORD).await),
            AuthFailure::UnknownUser,
            "{hostile:?}"
        );
        assert_eq!(
            directory.lookup(hostile).await.unwrap(),
            None,
            "{hostile:?}"
        );
        assert_eq!(
            directory.lookup_account(hostile).await.unwrap(),
            None,
            "{hostile:?}"
        );
    }
    // A literal `*` in a stored value matches only itself once escaped.
    let dave = directory
        .authenticate("da*ve@example.com", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(dave.upn, "da*ve@example.com");
}

#[tokio::test]
async fn direct_bind_with_a_dn_template() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start();
    let text = config_toml(
        &server.url,
        "bind_dn_template = \"uid={upn},ou=people,dc=example,dc=com\"",
    )
    .replace("(mail={upn})", "(uid={upn})");
    let directory = LdapDirectory::new(&toml::from_str(&text).unwrap()).unwrap();
    let alice = directory
        .authenticate("alice", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(alice.upn, "alice@example.com");
    assert_eq!(
        failure(directory.authenticate("alice", "wrong").await),
        AuthFailure::WrongPassword
    );
    // DN metacharacters are escaped, so this names no entry.
    assert!(
        directory
            .authenticate("alice,ou=people", USER_PASSWORD)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn usernamemixed_with_slapd_survives_an_outage() {
    if !slapd::available() {
        return;
    }
    let mut ldap = Slapd::start();
    let url = ldap.url.clone();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            config.directories.insert(
                "demo".into(),
                DirectoryConfig::Ldap(Box::new(ldap_config(&url, ""))),
            );
        }),
        ..Options::default()
    })
    .await;
    let expected_id = alice_immutable_id(&ldap.url);
    for version in ["13", "2005"] {
        let endpoint = server.app_url(&format!("trust/{version}/usernamemixed"));
        let reply = server
            .post_soap(
                &path_of(&endpoint),
                rst(
                    version,
                    &endpoint,
                    Some(("alice@example.com", USER_PASSWORD)),
                ),
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(
            saml_attribute(&reply.body, "ImmutableID"),
            Some(expected_id.clone())
        );
        assert_eq!(
            saml_attribute(&reply.body, "UPN").as_deref(),
            Some("alice@example.com")
        );
    }
    let endpoint = server.app_url("trust/13/usernamemixed");
    let path = path_of(&endpoint);
    let ask = |password: &'static str| {
        server.post_soap(
            &path,
            rst("13", &endpoint, Some(("alice@example.com", password))),
        )
    };
    let wrong = ask("wrong").await;
    assert_eq!(wrong.status, 500);
    assert!(
        wrong.body.contains("FailedAuthentication"),
        "{}",
        wrong.body
    );

    ldap.kill();
    let down = ask(USER_PASSWORD).await;
    assert_eq!(down.status, 500);
    assert!(down.body.contains("RequestFailed"), "{}", down.body);
    assert!(!down.body.contains("saml:Assertion"));
    assert!(!down.body.contains("127.0.0.1"), "{}", down.body);
    assert_eq!(
        server
            .request("GET", "/healthz", &[], Vec::new())
            .await
            .status,
        503
    );

    ldap.restart();
    let back = ask(USER_PASSWORD).await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(saml_attribute(&back.body, "ImmutableID"), Some(expected_id));
    assert_eq!(
        server
            .request("GET", "/healthz", &[], Vec::new())
            .await
            .status,
        200
    );
    server.stop().await;
}

/// The backend with its Active Directory defaults (filters on `objectClass=user`,
/// `userPrincipalName`, `sAMAccountName`; ImmutableID from `objectGUID`; `userAccountControl`)
/// against the AD-shaped entries of the test-only schema.
fn ad_config_toml(url: &str, extra: &str) -> String {
    format!(
        r#"
url = "{url}"
bind_dn = "{ADMIN_DN}"
bind_password = "{ADMIN_PASSWORD}"
user_base = "{}"
timeout_secs = 2
pool_size = 2
{extra}
"#,
        slapd::CORP_BASE
    )
}

fn ad_directory(url: &str, extra: &str) -> LdapDirectory {
    LdapDirectory::new(&toml::from_str(&ad_config_toml(url, extra)).unwrap()).unwrap()
}

#[tokio::test]
async fn ad_shaped_entries_give_binary_guids_sids_and_uac() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start();
    let directory = ad_directory(&server.url, "");

    let computer = directory.lookup_account("WS01$").await.unwrap().unwrap();
    assert_eq!(computer.sam_account_name.as_deref(), Some("WS01$"));
    assert_eq!(
        computer.object_guid.as_deref(),
        Some("ijHyDJ5NEUuzn9IBfFXgqg==")
    );
    assert_eq!(computer.immutable_id, "ijHyDJ5NEUuzn9IBfFXgqg==");
    assert_eq!(
        computer.object_sid.as_deref(),
        Some("S-1-5-21-1004336348-1177238915-682003330-1105")
    );
    assert_eq!(computer.upn, "");
    assert_eq!(
        directory.lookup_account("ws01$").await.unwrap(),
        Some(computer)
    );
    assert_eq!(directory.lookup_account("WS02$").await.unwrap(), None);

    let carol = directory
        .authenticate("carol@example.com", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(carol.upn, "carol@example.com");
    assert_eq!(carol.immutable_id, "xH4B2VWgQk+OJ/8QO5ZhDQ==");
    assert_eq!(
        carol.object_sid.as_deref(),
        Some("S-1-5-21-1004336348-1177238915-682003330-1103")
    );
    assert_eq!(carol.sam_account_name.as_deref(), Some("carol"));
    assert_eq!(carol.display_name.as_deref(), Some("Carol Danvers"));
    assert_eq!(carol.groups, ["cn=corp-staff,ou=groups,dc=example,dc=com"]);
    assert_eq!(
        failure(directory.authenticate("carol@example.com", "wrong").await),
        AuthFailure::WrongPassword
    );

    // userAccountControl 514 = NORMAL_ACCOUNT | ACCOUNTDISABLE.
    assert_eq!(
        failure(
            directory
                .authenticate("erin@example.com", USER_PASSWORD)
                .await
        ),
        AuthFailure::Disabled
    );
    assert_eq!(directory.lookup("erin@example.com").await.unwrap(), None);
    assert_eq!(directory.lookup_account("erin").await.unwrap(), None);
    // With the userAccountControl check off, erin is an ordinary user.
    let unchecked = ad_directory(&server.url, "user_account_control = false");
    let erin = unchecked
        .authenticate("erin@example.com", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(erin.immutable_id, "AQIDBAUGBwgJCgsMDQ4P8A==");
}

#[tokio::test]
async fn usernamemixed_gives_the_object_guid_as_immutable_id() {
    if !slapd::available() {
        return;
    }
    let ldap = Slapd::start();
    let url = ldap.url.clone();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            config.directories.insert(
                "demo".into(),
                DirectoryConfig::Ldap(Box::new(toml::from_str(&ad_config_toml(&url, "")).unwrap())),
            );
        }),
        ..Options::default()
    })
    .await;
    let endpoint = server.app_url("trust/13/usernamemixed");
    let path = path_of(&endpoint);
    let ask = |upn: &'static str| {
        server.post_soap(&path, rst("13", &endpoint, Some((upn, USER_PASSWORD))))
    };
    let reply = ask("carol@example.com").await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        saml_attribute(&reply.body, "ImmutableID").as_deref(),
        Some("xH4B2VWgQk+OJ/8QO5ZhDQ==")
    );
    assert_eq!(
        saml_attribute(&reply.body, "UPN").as_deref(),
        Some("carol@example.com")
    );
    let disabled = ask("erin@example.com").await;
    assert_eq!(disabled.status, 500);
    assert!(
        disabled.body.contains("FailedAuthentication"),
        "{}",
        disabled.body
    );
    assert!(!disabled.body.contains("saml:Assertion"));
    server.stop().await;
}

/// slapd's log lines saying a connection negotiated TLS.
fn tls_sessions(server: &Slapd) -> usize {
    server.log().matches("TLS established").count()
}

#[tokio::test]
async fn ldaps_and_starttls_verify_the_server_with_ca_file() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start_tls();
    let ca_file = server.dir().join("ca.pem");
    let ldaps = server.ldaps_url.clone().unwrap();
    for (url, extra) in [
        (
            ldaps.as_str(),
            format!("ca_file = \"{}\"", ca_file.display()),
        ),
        (
            server.url.as_str(),
            format!("starttls = true\nca_file = \"{}\"", ca_file.display()),
        ),
    ] {
        let before = tls_sessions(&server);
        let directory = ad_directory(url, &extra);
        let carol = directory
            .authenticate("carol@example.com", USER_PASSWORD)
            .await
            .unwrap();
        assert_eq!(carol.immutable_id, "xH4B2VWgQk+OJ/8QO5ZhDQ==", "{url}");
        directory.health().await.unwrap();
        assert!(
            tls_sessions(&server) > before,
            "{url}: no TLS session in slapd's log"
        );
    }
}

#[tokio::test]
async fn a_wrong_ca_is_unavailable_a_fault_and_unhealthy_never_a_token() {
    if !slapd::available() {
        return;
    }
    let ldap = Slapd::start_tls();
    let other_ca = slapd::TestCa::new("some other CA");
    let wrong_ca_file = other_ca.write(&ldap.dir().join("other-ca.pem"));
    let ldaps = ldap.ldaps_url.clone().unwrap();
    for (url, extra) in [
        (
            ldaps.clone(),
            format!("ca_file = \"{}\"", wrong_ca_file.display()),
        ),
        (
            ldap.url.clone(),
            format!("starttls = true\nca_file = \"{}\"", wrong_ca_file.display()),
        ),
    ] {
        let directory = ad_directory(&url, &extra);
        match directory
            .authenticate("carol@example.com", USER_PASSWORD)
            .await
        {
            Err(DirectoryError::Unavailable(message)) => {
                assert!(
                    message.contains("invalid peer certificate: UnknownIssuer")
                        && message.contains("set ca_file to the CA that issued it"),
                    "{url}: {message}"
                );
            }
            other => panic!("{url}: expected Unavailable, got {other:?}"),
        }
        assert!(matches!(
            directory.health().await,
            Err(DirectoryError::Unavailable(_))
        ));
    }

    let server = TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            let extra = format!("ca_file = \"{}\"", wrong_ca_file.display());
            config.directories.insert(
                "demo".into(),
                DirectoryConfig::Ldap(Box::new(
                    toml::from_str(&ad_config_toml(&ldaps, &extra)).unwrap(),
                )),
            );
        }),
        ..Options::default()
    })
    .await;
    let endpoint = server.app_url("trust/13/usernamemixed");
    let reply = server
        .post_soap(
            &path_of(&endpoint),
            rst("13", &endpoint, Some(("carol@example.com", USER_PASSWORD))),
        )
        .await;
    assert_eq!(reply.status, 500);
    assert!(reply.body.contains("RequestFailed"), "{}", reply.body);
    assert!(!reply.body.contains("saml:Assertion"));
    assert_eq!(
        server
            .request("GET", "/healthz", &[], Vec::new())
            .await
            .status,
        503
    );
    server.stop().await;
}

/// The `(dn, err)` of every simple bind slapd logged after byte `from` of its log, waiting
/// (bounded) until each bind's RESULT line is written.
fn binds_since(server: &Slapd, from: usize, expected: usize) -> Vec<(String, String)> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = server.log();
        let binds = parse_binds(&log[from..]);
        if binds.len() >= expected || std::time::Instant::now() > deadline {
            return binds;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Pairs each `conn=N op=M BIND dn="…" method=…` line (one per bind request) with its `conn=N op=M RESULT … err=E` line.
fn parse_binds(log: &str) -> Vec<(String, String)> {
    let mut binds = Vec::new();
    for line in log.lines() {
        let Some((_, rest)) = line
            .split_once(" BIND dn=\"")
            .filter(|(_, rest)| rest.contains(" method="))
        else {
            continue;
        };
        let dn = rest.split('"').next().unwrap().to_ascii_lowercase();
        let op = line[line.find("conn=").unwrap()..line.find(" BIND").unwrap()].to_owned();
        let result = log
            .lines()
            .find(|l| l.contains(&format!("{op} RESULT tag=97 ")))
            .and_then(|l| l.split(" err=").nth(1))
            .map(|e| e.split(' ').next().unwrap().to_owned());
        if let Some(err) = result {
            binds.push((dn, err));
        }
    }
    binds
}

#[tokio::test]
async fn an_unknown_user_costs_a_refused_bind_that_names_no_account() {
    if !slapd::available() {
        return;
    }
    let server = Slapd::start();
    let directory = ad_directory(&server.url, "");
    let absent = directory.absent_dn().to_ascii_lowercase();
    assert!(absent.starts_with("cn=fedsts-absent-"), "{absent}");
    assert!(absent.ends_with(",ou=corp,dc=example,dc=com"), "{absent}");
    assert_ne!(
        ad_directory(&server.url, "").absent_dn(),
        directory.absent_dn()
    );
    let admin = ADMIN_DN.to_ascii_lowercase();

    let from = server.log().len();
    assert_eq!(
        failure(
            directory
                .authenticate("nobody@example.com", USER_PASSWORD)
                .await
        ),
        AuthFailure::UnknownUser
    );
    assert_eq!(
        binds_since(&server, from, 2),
        [
            (admin.clone(), "0".to_owned()),
            (absent.clone(), "49".to_owned())
        ]
    );

    let from = server.log().len();
    assert_eq!(
        failure(directory.authenticate("carol@example.com", "wrong").await),
        AuthFailure::WrongPassword
    );
    assert_eq!(
        binds_since(&server, from, 2),
        [
            (admin, "0".to_owned()),
            (
                "cn=carol danvers,ou=corp,dc=example,dc=com".to_owned(),
                "49".to_owned()
            )
        ]
    );
    // The refused bind left the pooled connection usable.
    let carol = directory
        .authenticate("carol@example.com", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(carol.upn, "carol@example.com");
}
