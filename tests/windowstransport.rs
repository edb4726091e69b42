//! windowstransport against a real MIT KDC in a throwaway realm: `curl --negotiate` and a
//! Python `requests-gssapi` client (mutual authentication required) get tokens from both
//! versions for a user and for a computer account (claims checked exactly); no or a forged
//! ticket gets 401, a client outside `allowed_networks` gets 403; MSAL Python's MEX parser
//! finds the windowstransport endpoint only when Kerberos is configured (a computer account in
//! a real directory with its hybrid-join claims: tests/active_directory_kerberos.rs, Samba AD
//! with its own KDC). A realm not in `realms` is a
//! FailedAuthentication with its reason logged; an expired ticket (fedsts's clock moved two
//! days ahead with `faketime`, no sleeping) and a ticket from another KDC with other keys are 401.
//!
//! fedsts runs as a child process because MIT krb5 reads the acceptor keytab from
//! `KRB5_KTNAME`, which a test must not change in its own process.
#![cfg(feature = "kerberos")]

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::kdc::{self, Kdc, REALM};
use common::process::ServeProcess;
use common::server::TestServer;
use common::wstrust::{rst, saml_attribute, saml_attributes};
use serde_json::Value;

const ALICE_IMMUTABLE_ID: &str = "1TIu064jGEmmf+hnI+F0Jg==";
const PC_GUID: &str = "AAECAwQFBgcICQoLDA0ODw==";
const PC_SID: &str = "S-1-5-21-1004336348-1177238915-682003330-1105";
const ISSUER_ID: &str = "http://example.com/adfs/services/trust/";
const WINDOWS_METHOD: &str = "urn:federation:authentication:windows";

/// A fedsts child process with one Kerberos-enabled app.
struct Fedsts {
    process: ServeProcess,
    base: String,
    tls_cert: PathBuf,
    dir: tempfile::TempDir,
}

/// Configuration appended to the test's and environment variables for the server.
#[derive(Default)]
struct Extra {
    config: &'static str,
    env: &'static [(&'static str, &'static str)],
}

/// The file directory of the tests: alice and the computer PC1$.
const FILE_DIRECTORY: &str = r#"
[directories.users]
kind = "file"
path = "users.toml"
"#;

impl Fedsts {
    fn start(kdc: &Kdc, allowed_networks: &str) -> Self {
        Self::start_with(
            kdc,
            allowed_networks,
            &format!("{{ \"{REALM}\" = \"example.com\" }}"),
            FILE_DIRECTORY,
        )
    }

    /// fedsts with `realms` (a TOML inline table) and `directory` (a `[directories.users]` table).
    fn start_with(kdc: &Kdc, allowed_networks: &str, realms: &str, directory: &str) -> Self {
        Self::launch(
            kdc,
            allowed_networks,
            realms,
            directory,
            None,
            "",
            Extra::default(),
        )
    }

    /// fedsts with `extra` configuration and environment (e.g. a tight `[rate_limit]`).
    fn start_extra(kdc: &Kdc, extra: Extra) -> Self {
        Self::launch(
            kdc,
            "\"127.0.0.1\"",
            &format!("{{ \"{REALM}\" = \"example.com\" }}"),
            FILE_DIRECTORY,
            None,
            "",
            extra,
        )
    }

    /// fedsts behind a reverse proxy on 127.0.0.1 (`server.trusted_proxies`) whose intranet is
    /// `allowed_networks`.
    fn start_behind_proxy(kdc: &Kdc, allowed_networks: &str) -> Self {
        Self::launch(
            kdc,
            allowed_networks,
            &format!("{{ \"{REALM}\" = \"example.com\" }}"),
            FILE_DIRECTORY,
            None,
            "\"127.0.0.1\"",
            Extra::default(),
        )
    }

    /// fedsts whose clock (MIT krb5's included) runs `offset` (a `faketime -f` spec such as
    /// `+2d`) away from the KDC's and the clients'.
    fn start_shifted(kdc: &Kdc, offset: &str) -> Self {
        Self::launch(
            kdc,
            "\"127.0.0.1\"",
            &format!("{{ \"{REALM}\" = \"example.com\" }}"),
            FILE_DIRECTORY,
            Some(offset),
            "",
            Extra::default(),
        )
    }

    fn launch(
        kdc: &Kdc,
        allowed_networks: &str,
        realms: &str,
        directory: &str,
        clock_offset: Option<&str>,
        trusted_proxies: &str,
        extra: Extra,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let embedded = fedsts::first_run::prepare(dir.path(), &listen).unwrap();
        let c = embedded.config;
        let hash = fedsts::directory::file::hash_password("unused-password").unwrap();
        std::fs::write(
            dir.path().join("users.toml"),
            format!(
                r#"
[[users]]
upn = "alice@example.com"
sam_account_name = "alice"
immutable_id = "{ALICE_IMMUTABLE_ID}"
password = '{hash}'
[[users]]
upn = "PC1$@example.com"
sam_account_name = "PC1$"
immutable_id = "{PC_GUID}"
object_guid = "{PC_GUID}"
object_sid = "{PC_SID}"
password = '{hash}'
"#
            ),
        )
        .unwrap();
        let config = format!(
            r#"
[server]
listen = "{listen}"
public_url = "{public}"
tls_cert = "{tls_cert}"
tls_key = "{tls_key}"
trusted_proxies = [{trusted_proxies}]

[[apps]]
id = "{id}"
domain = "example.com"
issuer_uri = "example.com"
signing_cert = "{signing_cert}"
signing_key = "{signing_key}"
directory = "users"

[apps.kerberos]
keytab = "{keytab}"
spn = "{spn}"
allowed_networks = [{allowed_networks}]
realms = {realms}
issuer_id = "{ISSUER_ID}"
{directory}
{extra_config}
"#,
            extra_config = extra.config,
            public = c.public_base(),
            tls_cert = c.server.tls_cert.display(),
            tls_key = c.server.tls_key.display(),
            id = c.apps[0].id,
            signing_cert = c.apps[0].signing_cert.display(),
            signing_key = c.apps[0].signing_key.as_ref().unwrap().display(),
            keytab = kdc.keytab().display(),
            spn = kdc::SPN,
        );
        let config_path = dir.path().join("fedsts.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = match clock_offset {
            Some(offset) => {
                let mut command = Command::new("faketime");
                command.args(["-f", offset, env!("CARGO_BIN_EXE_fedsts")]);
                command.args(["serve", "--config"]).arg(&config_path);
                command
            }
            None => ServeProcess::command(&config_path),
        };
        command
            .env("KRB5_KTNAME", format!("FILE:{}", kdc.keytab().display()))
            .env("KRB5_CONFIG", kdc.krb5_conf())
            .envs(extra.env.iter().copied());
        Self {
            process: ServeProcess::start(command, &dir.path().join("fedsts.log"), port),
            base: format!("{}/wsfed/{}", c.public_base(), c.apps[0].id),
            tls_cert: c.server.tls_cert.clone(),
            dir,
        }
    }

    fn log(&self) -> String {
        self.process.log()
    }

    fn endpoint(&self, version: &str) -> String {
        format!("{}/trust/{version}/windowstransport", self.base)
    }

    fn write_body(&self, version: &str) -> PathBuf {
        let path = self.dir.path().join(format!("rst-{version}.xml"));
        std::fs::write(&path, rst(version, &self.endpoint(version), None)).unwrap();
        path
    }
}

/// A reply as curl saw it.
struct CurlReply {
    status: u16,
    headers: String,
    body: String,
}

/// POSTs the RST of `version` with `curl --negotiate` using `ccache`, plus `extra` arguments.
fn curl(server: &Fedsts, kdc: &Kdc, version: &str, ccache: &Path, extra: &[&str]) -> CurlReply {
    curl_body(
        server,
        kdc,
        version,
        ccache,
        &server.write_body(version),
        extra,
    )
}

/// [`curl`] with the RST in `body` (e.g. one sent before: the same MessageID).
fn curl_body(
    server: &Fedsts,
    kdc: &Kdc,
    version: &str,
    ccache: &Path,
    body_file: &Path,
    extra: &[&str],
) -> CurlReply {
    let headers = server.dir.path().join("curl-headers");
    let body = server.dir.path().join("curl-body");
    let output = Command::new("curl")
        .args(["-sS", "--negotiate", "-u", ":", "--cacert"])
        .arg(&server.tls_cert)
        .args([
            "-H",
            "Content-Type: application/soap+xml; charset=utf-8",
            "--data-binary",
        ])
        .arg(format!("@{}", body_file.display()))
        .arg("-D")
        .arg(&headers)
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .args(extra)
        .arg(server.endpoint(version))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    CurlReply {
        status: String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
        headers: std::fs::read_to_string(headers).unwrap(),
        body: std::fs::read_to_string(body).unwrap_or_default(),
    }
}

/// POSTs with the Python requests-gssapi oracle; returns (status, body).
fn python_gssapi(server: &Fedsts, kdc: &Kdc, version: &str, ccache: &Path) -> (u16, String) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/windowstransport_gssapi.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(server.endpoint(version))
        .arg(&server.tls_cert)
        .arg(server.write_body(version))
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        u16::try_from(answer["status"].as_u64().unwrap()).unwrap(),
        answer["body"].as_str().unwrap().to_owned(),
    )
}

fn tools_available() -> bool {
    kdc::available()
        && common::require_tool("curl")
        && common::require_tool("python3")
        && common::require_python_module("requests_gssapi")
}

fn attribute_names(body: &str) -> Vec<String> {
    saml_attributes(body)
        .into_iter()
        .map(|(_, name, _)| name)
        .collect()
}

fn assert_user_token(body: &str) {
    assert!(body.contains(WINDOWS_METHOD), "{body}");
    assert_eq!(
        saml_attribute(body, "UPN").as_deref(),
        Some("alice@example.com")
    );
    assert_eq!(
        saml_attribute(body, "ImmutableID").as_deref(),
        Some(ALICE_IMMUTABLE_ID)
    );
    assert_eq!(saml_attribute(body, "accounttype").as_deref(), Some("User"));
    assert_eq!(
        saml_attribute(body, "insidecorporatenetwork").as_deref(),
        Some("true")
    );
    assert_eq!(saml_attribute(body, "issuerid").as_deref(), Some(ISSUER_ID));
    assert_eq!(saml_attribute(body, "onpremobjectguid"), None);
    assert_eq!(saml_attribute(body, "primarysid"), None);
}

fn assert_computer_token(body: &str) {
    assert!(body.contains(WINDOWS_METHOD), "{body}");
    assert_eq!(
        attribute_names(body),
        [
            "UPN",
            "ImmutableID",
            "authnmethodsreferences",
            "insidecorporatenetwork",
            "accounttype",
            "onpremobjectguid",
            "primarysid",
            "issuerid"
        ]
    );
    let namespaces: Vec<(String, String)> = saml_attributes(body)
        .into_iter()
        .map(|(ns, name, _)| (name, ns))
        .collect();
    for (name, ns) in [
        ("accounttype", "http://schemas.microsoft.com/ws/2012/01"),
        (
            "insidecorporatenetwork",
            "http://schemas.microsoft.com/ws/2012/01",
        ),
        (
            "onpremobjectguid",
            "http://schemas.microsoft.com/identity/claims",
        ),
        (
            "primarysid",
            "http://schemas.microsoft.com/ws/2008/06/identity/claims",
        ),
        (
            "issuerid",
            "http://schemas.microsoft.com/ws/2008/06/identity/claims",
        ),
    ] {
        assert!(
            namespaces.contains(&(name.to_owned(), ns.to_owned())),
            "{name}"
        );
    }
    assert_eq!(
        saml_attribute(body, "UPN").as_deref(),
        Some("PC1$@example.com")
    );
    assert_eq!(
        saml_attribute(body, "ImmutableID").as_deref(),
        Some(PC_GUID)
    );
    assert_eq!(saml_attribute(body, "accounttype").as_deref(), Some("DJ"));
    assert_eq!(
        saml_attribute(body, "onpremobjectguid").as_deref(),
        Some(PC_GUID)
    );
    assert_eq!(saml_attribute(body, "primarysid").as_deref(), Some(PC_SID));
}

fn realm_with_principals() -> Kdc {
    let kdc = Kdc::start();
    kdc.add_principal("alice", "alicepw");
    kdc.add_principal("PC1$", "pcpw");
    kdc
}

#[test]
fn curl_negotiate_gets_user_and_computer_tokens_from_both_versions() {
    if !tools_available() {
        return;
    }
    let kdc = realm_with_principals();
    let server = Fedsts::start(&kdc, "\"127.0.0.0/8\"");
    let alice = kdc.kinit("alice", "alicepw");
    let computer = kdc.kinit("PC1$", "pcpw");
    for version in ["13", "2005"] {
        let reply = curl(&server, &kdc, version, &alice, &[]);
        assert_eq!(reply.status, 200, "{}\n{}", reply.body, server.log());
        assert_user_token(&reply.body);
        assert!(
            reply.headers.lines().any(|l| l
                .to_ascii_lowercase()
                .starts_with("www-authenticate: negotiate ")),
            "no mutual-auth token: {}",
            reply.headers
        );
        let reply = curl(&server, &kdc, version, &computer, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_computer_token(&reply.body);
    }
    let trust_2005 = curl(&server, &kdc, "2005", &alice, &[]).body;
    assert!(trust_2005.contains("http://schemas.xmlsoap.org/ws/2005/02/trust"));
}

#[test]
fn python_requests_gssapi_with_mutual_auth_gets_tokens_from_both_versions() {
    if !tools_available() {
        return;
    }
    let kdc = realm_with_principals();
    let server = Fedsts::start(&kdc, "\"127.0.0.1\"");
    let alice = kdc.kinit("alice", "alicepw");
    let computer = kdc.kinit("PC1$", "pcpw");
    for version in ["13", "2005"] {
        let (status, body) = python_gssapi(&server, &kdc, version, &alice);
        assert_eq!(status, 200, "{body}\n{}", server.log());
        assert_user_token(&body);
        let (status, body) = python_gssapi(&server, &kdc, version, &computer);
        assert_eq!(status, 200, "{body}");
        assert_computer_token(&body);
    }
}

#[test]
fn no_or_forged_ticket_is_401_and_outside_networks_is_403() {
    if !tools_available() {
        return;
    }
    let kdc = realm_with_principals();
    let server = Fedsts::start(&kdc, "\"127.0.0.0/8\"");
    for version in ["13", "2005"] {
        let none = curl(&server, &kdc, version, &kdc.empty_ccache(), &[]);
        assert_eq!(none.status, 401, "{}", none.body);
        assert!(
            none.headers
                .to_ascii_lowercase()
                .contains("www-authenticate: negotiate\r\n")
        );
        assert!(!none.body.contains("Assertion"));
        let forged = curl(
            &server,
            &kdc,
            version,
            &kdc.empty_ccache(),
            &["-H", "Authorization: Negotiate YIIBmTCCAZWgAwIBAqEDAgEO"],
        );
        assert_eq!(forged.status, 401, "{}", forged.body);
    }
    // An unknown principal with a valid ticket authenticates but gets the generic fault.
    kdc.add_principal("mallory", "mallorypw");
    let mallory = kdc.kinit("mallory", "mallorypw");
    let unknown = curl(&server, &kdc, "13", &mallory, &[]);
    assert_eq!(unknown.status, 500);
    assert!(
        unknown.body.contains("FailedAuthentication"),
        "{}",
        unknown.body
    );

    let intranet_only = Fedsts::start(&kdc, "\"10.0.0.0/8\", \"fd00::/8\"");
    let alice = kdc.kinit("alice", "alicepw");
    for version in ["13", "2005"] {
        let reply = curl(&intranet_only, &kdc, version, &alice, &[]);
        assert_eq!(reply.status, 403, "{}", reply.body);
        assert!(!reply.body.contains("Assertion"));
    }

    // Behind a trusted reverse proxy the socket peer (the proxy, on the intranet) does not
    // decide: the forwarded client address does.
    let proxied = Fedsts::start_behind_proxy(&kdc, "\"127.0.0.0/8\"");
    let from_internet = curl(
        &proxied,
        &kdc,
        "13",
        &alice,
        &["-H", "X-Forwarded-For: 203.0.113.5"],
    );
    assert_eq!(from_internet.status, 403, "{}", from_internet.body);
    let from_intranet = curl(
        &proxied,
        &kdc,
        "13",
        &alice,
        &["-H", "X-Forwarded-For: 127.0.0.9"],
    );
    assert_eq!(from_intranet.status, 200, "{}", from_intranet.body);
}

#[test]
fn a_realm_not_in_realms_is_refused_with_its_reason_logged() {
    if !tools_available() {
        return;
    }
    let kdc = realm_with_principals();
    let server = Fedsts::start_with(
        &kdc,
        "\"127.0.0.1\"",
        "{ \"OTHER.LOCAL\" = \"example.com\" }",
        FILE_DIRECTORY,
    );
    let alice = kdc.kinit("alice", "alicepw");
    let computer = kdc.kinit("PC1$", "pcpw");
    for (version, ccache) in [("13", &alice), ("2005", &computer)] {
        let reply = curl(&server, &kdc, version, ccache, &[]);
        assert_eq!(reply.status, 500, "{}", reply.body);
        assert!(
            reply.body.contains("FailedAuthentication"),
            "{}",
            reply.body
        );
        assert!(!reply.body.contains("Assertion"));
        assert!(!reply.body.contains(REALM), "{}", reply.body);
    }
    let log = server.log();
    assert_eq!(
        log.matches(&format!("kerberos_realm_not_accepted: {REALM}"))
            .count(),
        2,
        "{log}"
    );
}

#[test]
fn expired_and_forged_tickets_are_401() {
    if !tools_available() || !common::require_tool("faketime") {
        return;
    }
    let kdc = realm_with_principals();
    let alice = kdc.kinit("alice", "alicepw");
    // fedsts two days ahead: alice's one-day ticket has expired by its clock.
    let ahead = Fedsts::start_shifted(&kdc, "+2d");
    for version in ["13", "2005"] {
        let reply = curl(&ahead, &kdc, version, &alice, &[]);
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(!reply.body.contains("Assertion"));
    }
    assert_eq!(
        ahead.log().matches("(Ticket expired)").count(),
        2,
        "{}",
        ahead.log()
    );

    // A well-formed ticket for the same SPN and realm from another KDC (other keys): forged.
    let server = Fedsts::start(&kdc, "\"127.0.0.1\"");
    let impostor = realm_with_principals();
    let forged = impostor.kinit("alice", "alicepw");
    for version in ["13", "2005"] {
        let reply = curl(&server, &impostor, version, &forged, &[]);
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert!(!reply.body.contains("Assertion"));
    }
    assert_eq!(
        server
            .log()
            .matches("found in keytab but cannot decrypt ticket")
            .count(),
        2,
        "{}",
        server.log()
    );
    // The genuine ticket still works against the same server.
    let reply = curl(&server, &kdc, "13", &alice, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
}

/// Runs tests/oracles/mex_msal.py on a MEX document and returns MSAL's IWA choice.
fn msal_iwa_endpoint(document: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mex.xml");
    std::fs::write(&path, document).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/mex_msal.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    answer["iwa"].clone()
}

#[tokio::test]
async fn msal_python_sees_windowstransport_only_when_kerberos_is_on() {
    if !tools_available() || !common::require_python_module("msal") {
        return;
    }
    let kdc = realm_with_principals();
    let server = Fedsts::start(&kdc, "\"127.0.0.1\"");
    let mex = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(&server.tls_cert)
        .arg(format!("{}/mex", server.base))
        .output()
        .unwrap();
    let document = String::from_utf8(mex.stdout).unwrap();
    assert!(
        document.contains("<Spn>HTTP/localhost</Spn>") || document.contains("Spn>HTTP/localhost<"),
        "{document}"
    );
    let iwa = msal_iwa_endpoint(&document);
    assert_eq!(
        iwa["address"].as_str(),
        Some(server.endpoint("13").as_str()),
        "{iwa}"
    );

    let plain = TestServer::start().await;
    let document = plain
        .request("GET", &path_of_mex(&plain), &[], Vec::new())
        .await
        .body;
    assert!(!document.contains("windowstransport"));
    assert_eq!(msal_iwa_endpoint(&document), Value::Null);
    let reply = plain
        .request(
            "POST",
            &common::wstrust::path_of(&plain.app_url("trust/13/windowstransport")),
            &[("content-type", "application/soap+xml; charset=utf-8")],
            Vec::new(),
        )
        .await;
    assert_eq!(reply.status, 404);
    plain.stop().await;
}

fn path_of_mex(server: &TestServer) -> String {
    common::wstrust::path_of(&server.app_url("mex"))
}

/// One SPNEGO initiator token for fedsts's SPN from the credentials in `ccache` (made with the
/// Python `gssapi` package, the library requests-gssapi uses), base64.
fn spnego_token(kdc: &Kdc, ccache: &Path) -> String {
    let script = "import base64, gssapi\n\
name = gssapi.Name('HTTP@localhost', gssapi.NameType.hostbased_service)\n\
spnego = gssapi.Mechanism.from_sasl_name('SPNEGO')\n\
ctx = gssapi.SecurityContext(name=name, mech=spnego, usage='initiate')\n\
print(base64.b64encode(ctx.step()).decode())\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .env("KRB5_CONFIG", kdc.krb5_conf())
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "gssapi: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn a_replayed_negotiate_token_or_message_id_is_refused() {
    if !tools_available() {
        return;
    }
    let kdc = realm_with_principals();
    // MIT krb5's own replay cache off (as in many containers): fedsts's marks must still hold.
    let server = Fedsts::start_extra(
        &kdc,
        Extra {
            env: &[("KRB5RCACHETYPE", "none")],
            ..Extra::default()
        },
    );
    let alice = kdc.kinit("alice", "alicepw");
    let token = spnego_token(&kdc, &alice);
    let header = format!("Authorization: Negotiate {token}");
    let empty = kdc.empty_ccache();
    let first = curl(&server, &kdc, "13", &empty, &["-H", &header]);
    assert_eq!(first.status, 200, "{}", first.body);
    // The captured Authorization header again, with a fresh RST.
    let replayed = curl(&server, &kdc, "13", &empty, &["-H", &header]);
    assert_eq!(replayed.status, 500, "{}", replayed.body);
    assert!(
        replayed.body.contains("InvalidRequest"),
        "{}",
        replayed.body
    );
    assert!(!replayed.body.contains("Assertion"));
    assert!(
        server.log().contains("replay_negotiate_token"),
        "{}",
        server.log()
    );

    // A fresh Kerberos token with an RST (its MessageID) seen before.
    let body = server.write_body("2005");
    let once = curl_body(&server, &kdc, "2005", &alice, &body, &[]);
    assert_eq!(once.status, 200, "{}", once.body);
    let again = curl_body(&server, &kdc, "2005", &alice, &body, &[]);
    assert_eq!(again.status, 500, "{}", again.body);
    assert!(again.body.contains("InvalidRequest"), "{}", again.body);
    assert!(
        server.log().contains("replay_message_id"),
        "{}",
        server.log()
    );
}

#[test]
fn windowstransport_is_rate_limited_per_client_address() {
    if !tools_available() {
        return;
    }
    let kdc = realm_with_principals();
    let server = Fedsts::start_extra(
        &kdc,
        Extra {
            config: "[rate_limit]\nburst = 2\nrequests_per_minute = 1\n",
            ..Extra::default()
        },
    );
    let alice = kdc.kinit("alice", "alicepw");
    // Each curl sign-in is a free 401 challenge, then one request with a token.
    for _ in 0..2 {
        let reply = curl(&server, &kdc, "13", &alice, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
    }
    let limited = curl(&server, &kdc, "13", &alice, &[]);
    assert_eq!(limited.status, 429, "{}", limited.body);
    assert!(
        limited
            .headers
            .to_ascii_lowercase()
            .contains("retry-after: "),
        "{}",
        limited.headers
    );
    assert!(!limited.body.contains("Assertion"));
    // Forged tokens count too: no free Kerberos work from a flooding address.
    let forged = curl(
        &server,
        &kdc,
        "13",
        &kdc.empty_ccache(),
        &["-H", "Authorization: Negotiate YIIBmTCCAZWgAwIBAqEDAgEO"],
    );
    assert_eq!(forged.status, 429, "{}", forged.body);
}

/// `check-config --online` reads the KDC-exported keytab: keys for the SPN with their
/// enctypes, and a problem naming the fix for an SPN it holds no key for.
#[tokio::test]
async fn check_online_lists_the_keytab_keys_of_the_spn() {
    if !kdc::available() {
        return;
    }
    let kdc = Kdc::start();
    let app = |id: &str, spn: &str| {
        format!(
            "[[apps]]\nid = \"{id}\"\ndomain = \"{id}.example.com\"\nissuer_uri = \"{id}.example.com\"\n\
             signing_cert = \"s.crt\"\nsigning_key = \"s.key\"\ndirectory = \"users\"\n\
             [apps.kerberos]\nkeytab = \"{keytab}\"\nspn = \"{spn}\"\n\
             allowed_networks = [\"127.0.0.1/32\"]\nrealms = {{ \"{REALM}\" = \"{id}.example.com\" }}\n",
            keytab = kdc.keytab().display()
        )
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:8443\"\npublic_url = \"https://localhost:8443\"\n\
         tls_cert = \"t.crt\"\ntls_key = \"t.key\"\n\n{}\n{}\n\
         [directories.users]\nkind = \"file\"\npath = \"users.toml\"\n",
        app("one", kdc::SPN),
        app("two", "HTTP/sts.example.com")
    );
    let config = fedsts::config::Config::parse(&text, Path::new("/tmp")).unwrap();
    let reports = fedsts::preflight::check_online(&config, None).await;
    assert_eq!(reports.len(), 2, "{reports:?}");
    let found = reports[0].findings.join("\n");
    assert!(
        found.starts_with(&format!("keytab holds keys for {}: ", kdc::SPN))
            && found.contains("aes256-cts-hmac-sha1-96 (kvno "),
        "{reports:?}"
    );
    assert!(reports[0].problems.is_empty(), "{reports:?}");
    let problems: Vec<String> = reports[1]
        .problems
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("apps[1].kerberos.keytab: ")
            && problems[0].contains(&format!(
                "holds no key for HTTP/sts.example.com (it holds: {}@{REALM})",
                kdc::SPN
            ))
            && problems[0].contains("ktpass -princ HTTP/sts.example.com@REALM"),
        "{problems:?}"
    );
}
