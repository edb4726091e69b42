//! The LDAP backend against a real Active Directory: a Samba AD DC started by the test
//! (tests/common/samba.rs). Sign-in over LDAPS and StartTLS, the ImmutableID under each
//! spelling of its attribute (with the objectGUID fallback), each refusal reason, groups in
//! several spellings covering a device-trust policy (nested ones by the in-chain rule), and
//! health probes with a wrong service password that never lock the service account.

mod common;

use common::samba::{self, SERVICE_DN, SERVICE_PASSWORD, SambaDc, USER_PASSWORD, USERS};
use fedsts::config::AppDevicePolicy;
use fedsts::config::LdapConfig;
use fedsts::directory::ldap::LdapDirectory;
use fedsts::directory::{AuthFailure, Directory, DirectoryError, User};

fn ad_config(dc: &SambaDc, url: &str, extra: &str) -> LdapConfig {
    let text = format!(
        r#"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{SERVICE_DN}"
user_base = "{USERS}"
timeout_secs = 5
pool_size = 4
{extra}
"#,
        ca = dc.ca_file.display()
    );
    let mut config: LdapConfig = toml::from_str(&text).unwrap();
    if !extra.contains("bind_password") {
        config.bind_password = Some(
            toml::from_str::<Pw>(&format!("p = \"{SERVICE_PASSWORD}\""))
                .unwrap()
                .p,
        );
    }
    config
}

#[derive(serde::Deserialize)]
struct Pw {
    p: fedsts::secret::Secret,
}

fn directory(dc: &SambaDc, extra: &str) -> LdapDirectory {
    LdapDirectory::new(&ad_config(dc, &dc.ldaps_url, extra)).unwrap()
}

fn failure(result: Result<User, DirectoryError>) -> AuthFailure {
    match result {
        Err(DirectoryError::Rejected(failure)) => failure,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn base64(raw: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_sign_in_over_ldaps_and_starttls_with_each_immutable_id_spelling() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let consistency = base64(&samba::ALICE_CONSISTENCY_GUID);
    let bob_guid = dc
        .read_attr(&format!("CN=bob,{USERS}"), "objectGUID")
        .unwrap();
    let alice_guid = dc
        .read_attr(&format!("CN=alice,{USERS}"), "objectGUID")
        .unwrap();
    let starttls = LdapDirectory::new(&ad_config(&dc, &dc.ldap_url, "starttls = true")).unwrap();
    let alice = starttls
        .authenticate("alice@contoso.test", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        alice.immutable_id, alice_guid,
        "default objectGUID over StartTLS"
    );
    assert_eq!(alice.sam_account_name.as_deref(), Some("alice"));
    assert_eq!(alice.display_name.as_deref(), Some("alice of Contoso"));

    for spelling in [
        "mS-DS-ConsistencyGuid",
        "ms-DS-ConsistencyGuid",
        "ms-ds-consistencyguid",
    ] {
        let ldaps = directory(&dc, &format!("immutable_id_attr = \"{spelling}\""));
        let alice = ldaps
            .authenticate("alice@contoso.test", USER_PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{spelling}: {e}"));
        assert_eq!(alice.immutable_id, consistency, "{spelling}");
        let bob = ldaps.lookup("bob@contoso.test").await.unwrap().unwrap();
        assert_eq!(
            bob.immutable_id, bob_guid,
            "{spelling}: objectGUID fallback"
        );
    }
    for spelling in ["objectGUID", "objectguid", "OBJECTGUID"] {
        let ldaps = directory(&dc, &format!("immutable_id_attr = \"{spelling}\""));
        let alice = ldaps.lookup("alice@contoso.test").await.unwrap().unwrap();
        assert_eq!(alice.immutable_id, alice_guid, "{spelling}");
        assert_eq!(alice.object_guid.as_deref(), Some(alice_guid.as_str()));
    }
    let lower_attrs = directory(
        &dc,
        "upn_attr = \"userprincipalname\"\nsam_account_name_attr = \"samaccountname\"\n\
         display_name_attr = \"displayname\"\ngroups_attr = \"memberof\"",
    );
    let alice = lower_attrs
        .lookup("alice@contoso.test")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alice.upn, "alice@contoso.test");
    assert_eq!(alice.sam_account_name.as_deref(), Some("alice"));
    assert_eq!(alice.display_name.as_deref(), Some("alice of Contoso"));
    assert_eq!(alice.groups.len(), 2, "{:?}", alice.groups);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_refusals_each_have_their_own_reason() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let ad = directory(&dc, "");
    let reason = |user: &str, password: &str| {
        let ad = &ad;
        let user = user.to_owned();
        let password = password.to_owned();
        async move { failure(ad.authenticate(&user, &password).await) }
    };
    assert_eq!(
        reason("alice@contoso.test", "wrong").await,
        AuthFailure::WrongPassword
    );
    assert_eq!(
        reason("nobody@contoso.test", "wrong").await,
        AuthFailure::UnknownUser
    );
    assert_eq!(
        reason("dora@contoso.test", USER_PASSWORD).await,
        AuthFailure::Disabled
    );
    assert_eq!(
        reason("ezra@contoso.test", USER_PASSWORD).await,
        AuthFailure::AccountExpired
    );
    assert_eq!(
        reason("mia@contoso.test", USER_PASSWORD).await,
        AuthFailure::MustChangePassword
    );
    for _ in 0..samba::LOCKOUT_THRESHOLD {
        assert_eq!(
            reason("lou@contoso.test", "wrong").await,
            AuthFailure::WrongPassword
        );
    }
    assert_eq!(
        reason("lou@contoso.test", USER_PASSWORD).await,
        AuthFailure::Locked
    );
    assert!(
        ad.authenticate("bob@contoso.test", USER_PASSWORD)
            .await
            .is_ok()
    );
}

fn policy(groups: &[&str]) -> AppDevicePolicy {
    let groups: Vec<String> = groups.iter().map(|g| format!("{g:?}")).collect();
    toml::from_str(&format!(
        "flows = [\"active\"]\ngroups = [{}]",
        groups.join(", ")
    ))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_groups_in_any_spelling_require_the_device() {
    use fedsts::config::device::Flow;
    use fedsts::policy::{RequestClass, device};
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let alice = directory(&dc, "")
        .authenticate("alice@contoso.test", USER_PASSWORD)
        .await
        .unwrap();
    let covers = |groups: &[&str], user: &User| {
        device::covers(&policy(groups), Flow::Active, RequestClass::Other, user)
    };
    for spelling in [
        "staff",
        "Staff",
        "STAFF",
        "cn=staff",
        "cn=staff,cn=users,dc=contoso,dc=test",
        "CN=Staff, CN=Users, DC=contoso, DC=test",
        "sales, emea",
        r"CN=Sales\, EMEA,CN=Users,DC=contoso,DC=test",
        r"cn=sales\2c emea,cn=users,dc=contoso,dc=test",
    ] {
        assert!(
            covers(&[spelling], &alice),
            "{spelling} must cover {:?}",
            alice.groups
        );
    }
    for other in [
        "sales",
        "emea",
        "all staff",
        "cn=staff,cn=users,dc=fabrikam,dc=test",
    ] {
        assert!(!covers(&[other], &alice), "{other}");
    }
    let nested = directory(&dc, "nested_groups = true")
        .authenticate("alice@contoso.test", USER_PASSWORD)
        .await
        .unwrap();
    assert!(covers(&["all staff"], &nested), "{:?}", nested.groups);
    assert!(covers(&["staff"], &nested), "{:?}", nested.groups);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_with_a_wrong_service_password_never_lock_the_service_account() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let stale = std::sync::Arc::new(directory(&dc, "bind_password = \"stale-password\""));
    let mut probes = Vec::new();
    for _ in 0..8 {
        let stale = stale.clone();
        probes.push(tokio::spawn(async move { stale.health().await }));
    }
    for probe in probes {
        assert!(probe.await.unwrap().is_err());
    }
    for _ in 0..4 {
        assert!(stale.health().await.is_err());
        assert!(
            stale
                .authenticate("alice@contoso.test", USER_PASSWORD)
                .await
                .is_err()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let error = stale.health().await.unwrap_err().to_string();
    assert!(error.contains("invalidCredentials"), "{error}");
    let lockout = dc.read_attr(SERVICE_DN, "lockoutTime").unwrap_or_default();
    assert!(
        lockout.is_empty() || lockout == "0",
        "locked: lockoutTime {lockout}"
    );
    let bad = dc.read_attr(SERVICE_DN, "badPwdCount").unwrap_or_default();
    assert_eq!(bad, "1", "one refused bind, then the back-off");
    assert!(
        dc.can_bind(SERVICE_DN, SERVICE_PASSWORD),
        "the service account still binds"
    );
    let fixed = directory(&dc, "");
    assert!(fixed.health().await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_principals_resolve_enterprise_names_and_name_a_disabled_computer() {
    use fedsts::kerberos::{Principal, resolve_principal};
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let ad = directory(&dc, "");
    let principal = |text: &str| Principal::parse(text).unwrap();
    let enterprise = resolve_principal(
        &ad,
        "contoso.test",
        &principal(r"alice\@contoso.test@CONTOSO.TEST"),
    )
    .await
    .unwrap();
    assert_eq!(enterprise.user.upn, "alice@contoso.test");
    let plain = resolve_principal(&ad, "contoso.test", &principal("alice@CONTOSO.TEST"))
        .await
        .unwrap();
    assert_eq!(plain.user.upn, "alice@contoso.test");
    let disabled = resolve_principal(&ad, "contoso.test", &principal("WS01$@CONTOSO.TEST")).await;
    assert!(
        matches!(
            disabled,
            Err(DirectoryError::Rejected(AuthFailure::Disabled))
        ),
        "{disabled:?}"
    );
    let unknown = resolve_principal(&ad, "contoso.test", &principal("WS99$@CONTOSO.TEST")).await;
    assert!(
        matches!(
            unknown,
            Err(DirectoryError::Rejected(AuthFailure::UnknownUser))
        ),
        "{unknown:?}"
    );
}

const ALL_FORMS: &str = "sign_in_forms = [\"upn\", \"netbios\", \"bare\"]\nnetbios_domain = \"CONTOSO\"\n\
     upn_suffix = \"contoso.test\"";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_sign_in_name_forms_sign_in_when_enabled_and_carry_the_real_upn() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    // ana's sAMAccountName is not her UPN's local part: the token must carry her real UPN.
    dc.ldap_tool(
        "ldapadd",
        &samba::user("ana", "").replace(
            "userPrincipalName: ana@contoso.test",
            "userPrincipalName: ana.lopez@contoso.test",
        ),
    );
    let upn_only = directory(&dc, "");
    let netbios_only = directory(
        &dc,
        "sign_in_forms = [\"upn\", \"netbios\"]\nnetbios_domain = \"CONTOSO\"\n\
         upn_suffix = \"contoso.test\"",
    );
    let all = directory(&dc, ALL_FORMS);
    for (typed, upn) in [
        ("alice@contoso.test", "alice@contoso.test"),
        (r"CONTOSO\alice", "alice@contoso.test"),
        (r"contoso\ALICE", "alice@contoso.test"),
        ("alice", "alice@contoso.test"),
        (r"CONTOSO\ana", "ana.lopez@contoso.test"),
        ("ana", "ana.lopez@contoso.test"),
    ] {
        let user = all
            .authenticate(typed, USER_PASSWORD)
            .await
            .unwrap_or_else(|e| panic!("{typed}: {e}"));
        assert_eq!(user.upn, upn, "{typed}");
    }
    let netbios = netbios_only
        .authenticate(r"CONTOSO\alice", USER_PASSWORD)
        .await;
    assert_eq!(netbios.unwrap().upn, "alice@contoso.test");
    assert_eq!(
        failure(netbios_only.authenticate("alice", USER_PASSWORD).await),
        AuthFailure::UnknownUser,
        "bare form not enabled"
    );
    for typed in [r"CONTOSO\alice", "alice"] {
        assert_eq!(
            failure(upn_only.authenticate(typed, USER_PASSWORD).await),
            AuthFailure::UnknownUser,
            "{typed}: default accepts UPNs only"
        );
    }
    for typed in [r"FABRIKAM\alice", "WS01$", r"CONTOSO\*", "ali*"] {
        assert_eq!(
            failure(all.authenticate(typed, USER_PASSWORD).await),
            AuthFailure::UnknownUser,
            "{typed}"
        );
    }
    assert_eq!(
        failure(all.authenticate(r"CONTOSO\alice", "wrong").await),
        AuthFailure::WrongPassword
    );
}

// Current-thread: the audit capture sees the server's records only on the test's thread.
#[tokio::test]
async fn wrong_passwords_in_every_name_form_share_one_lockout_counter_and_fail_closed() {
    use common::audit::AuditLog;
    use common::server::{Options, TestServer};
    use common::wstrust::{message_id, path_of, rst13};
    use fedsts::config::DirectoryConfig;
    if !samba::available() {
        return;
    }
    let mut dc = SambaDc::start();
    // jdoe's sAMAccountName is not his UPN's local part.
    dc.ldap_tool(
        "ldapadd",
        &samba::user("jdoe", "").replace(
            "userPrincipalName: jdoe@contoso.test",
            "userPrincipalName: john.doe@contoso.test",
        ),
    );
    let mut ldap = ad_config(&dc, &dc.ldaps_url, ALL_FORMS);
    ldap.bind_password = ad_config(&dc, &dc.ldaps_url, "").bind_password;
    let (log, _guard) = AuditLog::capture();
    let server = TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            config.lockout.threshold = 2;
            config.lockout.observation_window_secs = 1800;
            config.apps[0].domain = "contoso.test".into();
            let name = config.apps[0].directory.clone();
            config
                .directories
                .insert(name, DirectoryConfig::Ldap(Box::new(ldap)));
        }),
        ..Options::default()
    })
    .await;
    let url = server.app_url("trust/13/usernamemixed");
    let sign_in = |username: &'static str, password: &'static str| {
        let body = rst13(
            &url,
            username,
            password,
            time::OffsetDateTime::now_utc(),
            Some(&message_id()),
        );
        let path = path_of(&url);
        let server = &server;
        async move {
            server
                .request(
                    "POST",
                    &path,
                    &[("content-type", "application/soap+xml; charset=utf-8")],
                    body.into_bytes(),
                )
                .await
        }
    };
    assert_eq!(sign_in("bob@contoso.test", "wrong").await.status, 500);
    assert_eq!(sign_in(r"CONTOSO\bob", "wrong").await.status, 500);
    // The threshold (2) is reached for bob whatever form the attacker types next.
    let third = sign_in("bob", USER_PASSWORD).await;
    assert_eq!(
        third.status, 500,
        "a token was issued: the lockout missed a name form"
    );
    let records = log.records();
    let users: Vec<&str> = records.iter().filter_map(|r| r["user"].as_str()).collect();
    assert_eq!(users, ["bob@contoso.test"; 3], "{records:?}");
    assert_eq!(
        log.reasons(),
        [
            "wrong_password",
            "wrong_password",
            "account_locked_unfamiliar"
        ],
        "{records:?}"
    );
    let bad = dc
        .read_attr(&format!("CN=bob,{USERS}"), "badPwdCount")
        .unwrap_or_default();
    assert_eq!(bad, "2", "the locked attempt never reached the DC");

    // One counter for jdoe too, though no syntactic mapping joins `jdoe` to `john.doe@…`.
    assert_eq!(sign_in(r"CONTOSO\jdoe", "wrong").await.status, 500);
    assert_eq!(sign_in("john.doe@contoso.test", "wrong").await.status, 500);
    let third = sign_in("jdoe", USER_PASSWORD).await;
    assert_eq!(
        third.status, 500,
        "a token was issued: jdoe's short forms keep a counter of their own"
    );
    let records = log.records();
    let users: Vec<&str> = records[3..]
        .iter()
        .filter_map(|r| r["user"].as_str())
        .collect();
    assert_eq!(users, ["john.doe@contoso.test"; 3], "{records:?}");
    assert_eq!(
        log.reasons()[3..],
        [
            "wrong_password",
            "wrong_password",
            "account_locked_unfamiliar"
        ],
        "{records:?}"
    );
    let bad = dc
        .read_attr(&format!("CN=jdoe,{USERS}"), "badPwdCount")
        .unwrap_or_default();
    assert_eq!(bad, "2", "the locked attempt never reached the DC");

    // The DC goes away: a short form can no longer be resolved, so the sign-in is refused
    // before the lockout keys on the syntactic `jdoe@contoso.test` (a second counter).
    let directory = LdapDirectory::new(&ad_config(&dc, &dc.ldaps_url, ALL_FORMS)).unwrap();
    assert_eq!(
        directory.canonical_name("jdoe").await.unwrap(),
        "john.doe@contoso.test"
    );
    assert_eq!(
        directory.canonical_name("nobody").await.unwrap(),
        "nobody@contoso.test",
        "nobody has that name: the syntactic key"
    );
    dc.stop();
    for typed in [r"CONTOSO\jdoe", "jdoe"] {
        let answer = directory.canonical_name(typed).await;
        assert!(
            matches!(answer, Err(DirectoryError::Unavailable(_))),
            "{typed}: {answer:?}"
        );
    }
    assert_eq!(
        directory.canonical_name("jdoe@contoso.test").await.unwrap(),
        "jdoe@contoso.test",
        "a UPN needs no lookup"
    );
    assert_eq!(sign_in("jdoe", "wrong").await.status, 500);
    let records = log.records();
    let last = records.last().unwrap();
    assert_eq!(last["user"], "jdoe", "{records:?}");
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("directory_error: directory unavailable")),
        "{records:?}"
    );
    assert!(
        last["lockout_location"] == "",
        "the lockout keyed an unresolved name: {records:?}"
    );
    server.stop().await;
}

fn probe_findings(report: &fedsts::directory::ldap::ProbeReport) -> String {
    report.findings.join("\n")
}

fn problem_lines(problems: &[fedsts::config::ConfigProblem]) -> Vec<String> {
    problems.iter().map(ToString::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reports_spellings_the_immutable_id_and_each_defect() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let alice_guid = dc
        .read_attr(&format!("CN=alice,{USERS}"), "objectGUID")
        .unwrap();
    let bob_guid = dc
        .read_attr(&format!("CN=bob,{USERS}"), "objectGUID")
        .unwrap();
    let report = directory(&dc, "upn_attr = \"userprincipalname\"")
        .probe("directories.corp", Some("alice@contoso.test"))
        .await;
    let findings = probe_findings(&report);
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    for expected in [
        "LDAPS, server certificate accepted",
        &format!("service account {SERVICE_DN}: bound"),
        "upn_attr = \"userprincipalname\": found, the server spells it userPrincipalName",
        &format!("ImmutableID it would issue: {alice_guid} (from objectGUID)"),
        "groups: 2",
    ] {
        assert!(findings.contains(expected), "{expected} in\n{findings}");
    }

    let consistency = directory(&dc, "immutable_id_attr = \"ms-DS-ConsistencyGuid\"");
    let alice = consistency
        .probe("directories.corp", Some("alice@contoso.test"))
        .await;
    let expected = format!(
        "ImmutableID it would issue: {} (from mS-DS-ConsistencyGuid)",
        base64(&samba::ALICE_CONSISTENCY_GUID)
    );
    assert!(probe_findings(&alice).contains(&expected), "{alice:?}");
    let bob = consistency
        .probe("directories.corp", Some("bob@contoso.test"))
        .await;
    assert!(bob.problems.is_empty(), "{:?}", bob.problems);
    let expected = format!(
        "ImmutableID it would issue: {bob_guid} (from objectGUID: the entry has no ms-DS-ConsistencyGuid, so it falls back to objectGUID"
    );
    assert!(probe_findings(&bob).contains(&expected), "{bob:?}");

    let misspelt = directory(
        &dc,
        "upn_attr = \"userPrincipalNme\"\ndisplay_name_attr = \"displayNme\"",
    )
    .probe("directories.corp", Some("alice@contoso.test"))
    .await;
    let problems = problem_lines(&misspelt.problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("directories.corp.upn_attr: \"userPrincipalNme\" is missing"),
        "{problems:?}"
    );
    let warnings = problem_lines(&misspelt.warnings);
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("directories.corp.display_name_attr: \"displayNme\" is missing")),
        "{warnings:?}"
    );

    let nobody = directory(&dc, "")
        .probe("directories.corp", Some("nobody@contoso.test"))
        .await;
    assert_eq!(nobody.problems[0].key, "directories.corp.user_filter");

    let plain = LdapDirectory::new(&ad_config(&dc, &dc.ldap_url, ""))
        .unwrap()
        .probe("directories.corp", Some("alice@contoso.test"))
        .await;
    let problems = problem_lines(&plain.problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("directories.corp.url: the server refuses simple binds without TLS (strongerAuthRequired")
            && problems[0].ends_with("use ldaps:// or set starttls = true"),
        "{problems:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reports_a_wrong_service_password_and_a_name_mismatch() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let stale = directory(&dc, "bind_password = \"stale-password\"")
        .probe("directories.corp", Some("alice@contoso.test"))
        .await;
    let problems = problem_lines(&stale.problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with(&format!(
            "directories.corp.bind_password: service account {SERVICE_DN} was refused (AD 52e"
        )),
        "{problems:?}"
    );
    assert!(!problems[0].contains("stale-password"), "{problems:?}");
    let bad = dc.read_attr(SERVICE_DN, "badPwdCount").unwrap_or_default();
    assert_eq!(bad, "1", "one bind per check");
    assert!(
        dc.can_bind(SERVICE_DN, SERVICE_PASSWORD),
        "the service account still binds"
    );

    // An alias the certificate does not list: localhost, forwarded to the DC's LDAPS port.
    let port = forward_one_connection(format!("{}:636", dc.address)).await;
    let other_name = format!("ldaps://localhost:{port}");
    let mismatch = LdapDirectory::new(&ad_config(&dc, &other_name, ""))
        .unwrap()
        .probe("directories.corp", Some("alice@contoso.test"))
        .await;
    let problems = problem_lines(&mismatch.problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("directories.corp.url: cannot connect to")
            && problems[0].contains("subjectAltName is required"),
        "{problems:?}"
    );
}

/// Forwards the first connection to a loopback port of its own to `target`, then stops: a
/// second name for the DC, as a DNS alias or a load balancer gives one.
async fn forward_one_connection(target: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (mut client, _) = listener.accept().await.unwrap();
        let mut server = tokio::net::TcpStream::connect(target).await.unwrap();
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    });
    port
}

/// A fedsts.toml whose app signs in against the DC at `url` (service password in the
/// environment variable `FEDSTS_TEST_SVC_PW`).
fn write_ad_config(dir: &std::path::Path, dc: &SambaDc, url: &str) -> std::path::PathBuf {
    let directory = format!(
        r#"[directories.corp]
kind = "ldap"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{SERVICE_DN}"
bind_password_env = "FEDSTS_TEST_SVC_PW"
user_base = "{USERS}"
immutable_id_attr = "ms-ds-consistencyguid"
"#,
        ca = dc.ca_file.display()
    );
    write_config(dir, &directory)
}

/// A fedsts.toml whose app `corp` signs in against `directory` (a `[directories.corp]` table).
fn write_config(dir: &std::path::Path, directory: &str) -> std::path::PathBuf {
    fedsts::first_run::prepare(dir, "127.0.0.1:8443").unwrap();
    let config = format!(
        r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://localhost:8443"
tls_cert = "certs/tls.crt"
tls_key = "certs/tls.key"

[[apps]]
id = "corp"
domain = "contoso.test"
issuer_uri = "contoso.test"
signing_cert = "certs/signing.crt"
signing_key = "certs/signing.key"
directory = "corp"

{directory}"#
    );
    let path = dir.join("fedsts.toml");
    std::fs::write(&path, config).unwrap();
    path
}

fn check_config_online(path: &std::path::Path) -> (bool, String) {
    check_config_online_with(path, SERVICE_PASSWORD)
}

/// `check-config --online` with `service_password` as the service account's password.
fn check_config_online_with(path: &std::path::Path, service_password: &str) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fedsts"))
        .args([
            "check-config",
            "--online",
            "--probe-user",
            "alice@contoso.test",
        ])
        .arg("--config")
        .arg(path)
        .env("FEDSTS_TEST_SVC_PW", service_password)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!stdout.contains(service_password), "{stdout}");
    (out.status.success(), stdout)
}

#[test]
fn check_config_online_passes_a_good_ad_config_and_fails_plain_ldap() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_ad_config(dir.path(), &dc, &dc.ldaps_url);
    // A stale service password, checked three times: one bind per run, so the DC (threshold
    // raised to 5 here) counts 3 and the account stays unlocked.
    dc.ldap_tool(
        "ldapmodify",
        &format!(
            "dn: {}\nchangetype: modify\nreplace: lockoutThreshold\nlockoutThreshold: 5\n-\n\n",
            samba::BASE
        ),
    );
    for run in 1..=3 {
        let (ok, stdout) = check_config_online_with(&path, "stale-password");
        assert!(!ok, "run {run}: {stdout}");
        assert!(
            stdout.contains("directories.corp.bind_password_env: service account"),
            "run {run}: {stdout}"
        );
    }
    let bad = dc.read_attr(SERVICE_DN, "badPwdCount").unwrap_or_default();
    assert_eq!(bad, "3", "one service bind per check-config run");
    assert!(
        dc.can_bind(SERVICE_DN, SERVICE_PASSWORD),
        "three stale checks locked the service account"
    );

    let (ok, stdout) = check_config_online(&path);
    assert!(ok, "{stdout}");
    let expected = format!(
        "online: directories.corp: ImmutableID it would issue: {} (from mS-DS-ConsistencyGuid)",
        base64(&samba::ALICE_CONSISTENCY_GUID)
    );
    assert!(stdout.lines().any(|l| l == expected), "{stdout}");

    let path = write_ad_config(dir.path(), &dc, &dc.ldap_url);
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("ca_file = ", "# ca_file = ");
    std::fs::write(&path, text).unwrap();
    let (ok, stdout) = check_config_online(&path);
    assert!(!ok, "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|l| l
                .starts_with("directories.corp.url: the server refuses simple binds without TLS")),
        "{stdout}"
    );
}

/// The AD configuration README.md shows between its `tested AD configuration` markers.
fn readme_ad_config() -> String {
    let readme = include_str!("../README.md");
    let (_, rest) = readme
        .split_once("<!-- tested AD configuration: begin -->")
        .expect("README.md lost its begin marker");
    let (block, _) = rest
        .split_once("<!-- tested AD configuration: end -->")
        .expect("README.md lost its end marker");
    let block = block.trim();
    block
        .strip_prefix("```toml")
        .and_then(|b| b.strip_suffix("```"))
        .expect("the README block is one ```toml fence")
        .to_owned()
}

/// `text` with the one occurrence of `placeholder` replaced.
fn substitute(text: &str, placeholder: &str, value: &str) -> String {
    assert_eq!(
        text.matches(placeholder).count(),
        1,
        "README's AD block must name {placeholder} once"
    );
    text.replace(placeholder, value)
}

#[derive(serde::Deserialize)]
struct Directories {
    directories: std::collections::HashMap<String, fedsts::config::DirectoryConfig>,
}

/// README's AD configuration is a tested one: verbatim but for the DC's address, its CA file
/// and the password file, alice signs in with her ImmutableID and `check-config --online`
/// passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_ad_configuration_signs_in_and_passes_check_config_online() {
    if !samba::available() {
        return;
    }
    let dc = SambaDc::start();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("ldap-password");
    std::fs::write(&secret, SERVICE_PASSWORD).unwrap();
    let block = substitute(&readme_ad_config(), "dc1.contoso.test", &dc.address);
    let block = substitute(
        &block,
        "certs/contoso-ca.pem",
        &dc.ca_file.display().to_string(),
    );
    let block = substitute(&block, "/run/secrets/ldap", &secret.display().to_string());

    let parsed: Directories = toml::from_str(&block).unwrap();
    let Some(fedsts::config::DirectoryConfig::Ldap(ldap)) = parsed.directories.get("corp") else {
        panic!("README's block is not an LDAP directory corp: {block}");
    };
    let ad = LdapDirectory::new(ldap).unwrap();
    let alice = ad
        .authenticate("alice@contoso.test", USER_PASSWORD)
        .await
        .unwrap();
    assert_eq!(
        alice.immutable_id,
        base64(&samba::ALICE_CONSISTENCY_GUID),
        "{block}"
    );
    assert!(
        fedsts::policy::device::covers(
            &policy(&["all staff"]),
            fedsts::config::device::Flow::Active,
            fedsts::policy::RequestClass::Other,
            &alice
        ),
        "nested groups: {:?}",
        alice.groups
    );

    let path = write_config(dir.path(), &block);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_fedsts"))
            .args([
                "check-config",
                "--online",
                "--probe-user",
                "alice@contoso.test",
            ])
            .arg("--config")
            .arg(&path)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(LDAPS, server certificate accepted)"),
        "{stdout}"
    );
    let expected = format!(
        "online: directories.corp: ImmutableID it would issue: {} (from mS-DS-ConsistencyGuid)",
        base64(&samba::ALICE_CONSISTENCY_GUID)
    );
    assert!(stdout.lines().any(|l| l == expected), "{stdout}");
    assert!(!stdout.contains(SERVICE_PASSWORD), "{stdout}");
}

/// Median of `samples` in microseconds.
fn median_micros(samples: &mut [std::time::Duration]) -> u128 {
    samples.sort();
    samples[samples.len() / 2].as_micros()
}

/// AD answers a bind to a name it does not know (525) without checking the password, so an
/// unknown user was refused faster than a wrong password (8.2 vs 10.6 ms median once); the
/// directory pads unknown-user refusals up to its own measured check time. Wrong passwords
/// alternate with a right one so that bob never reaches the DC's lockout threshold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_unknown_user_costs_as_much_as_a_wrong_password() {
    if !samba::available() {
        return;
    }
    const SAMPLES: usize = 40;
    let dc = SambaDc::start();
    let ad = directory(&dc, "");
    let timed = |user: &'static str, password: &'static str| {
        let ad = &ad;
        async move {
            let started = std::time::Instant::now();
            let result = ad.authenticate(user, password).await;
            (started.elapsed(), result)
        }
    };
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    for round in 0..SAMPLES + 4 {
        let (took, result) = timed("bob@contoso.test", "wrong").await;
        assert_eq!(failure(result), AuthFailure::WrongPassword);
        let (took_unknown, result) = timed("nobody@contoso.test", "wrong").await;
        assert_eq!(failure(result), AuthFailure::UnknownUser);
        assert!(timed("bob@contoso.test", USER_PASSWORD).await.1.is_ok());
        if round >= 4 {
            wrong.push(took);
            unknown.push(took_unknown);
        }
    }
    let wrong = median_micros(&mut wrong);
    let unknown = median_micros(&mut unknown);
    let ratio = unknown as f64 / wrong as f64;
    eprintln!("median wrong password {wrong} us, unknown user {unknown} us, ratio {ratio:.2}");
    assert!(
        (0.7..=1.4).contains(&ratio),
        "unknown user {unknown} us vs wrong password {wrong} us (ratio {ratio:.2})"
    );
}
