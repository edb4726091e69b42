//! windowstransport with tickets from a real Active Directory KDC: the Samba AD DC of
//! tests/common/samba.rs (Heimdal) issues the tickets, fedsts accepts them with a keytab
//! exported from the DC (`samba-tool domain exportkeytab`) and reads the accounts from the DC
//! over LDAPS. An enabled computer gets a token with the hybrid-join claims Entra needs
//! (accounttype DJ, onpremobjectguid = its objectGUID, primarysid = its objectSid); disabled
//! in AD afterwards, the same still-valid ticket is refused and audited `account_disabled`
//! (not `unknown_user`). Clients: Python requests-gssapi with mutual authentication required,
//! and `curl --negotiate` for a user.
//!
//! fedsts runs as a child process because krb5 reads the acceptor keytab from `KRB5_KTNAME`,
//! which a test must not change in its own process.
#![cfg(feature = "kerberos")]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use common::process::ServeProcess;
use common::samba::{self, REALM, SERVICE_DN, SERVICE_PASSWORD, SambaDc, USER_PASSWORD, USERS};
use common::wstrust::{rst, saml_attribute};

const SPN: &str = "HTTP/localhost";
const ISSUER_ID: &str = "http://contoso.test/adfs/services/trust/";
const WINDOWS_METHOD: &str = "urn:federation:authentication:windows";
const COMPUTER_PASSWORD: &str = "Ws01-Machine-Pass!";

/// fedsts with one Kerberos app on the DC's realm and the DC as its directory.
struct Fedsts {
    process: ServeProcess,
    endpoint: String,
    tls_cert: PathBuf,
    dir: tempfile::TempDir,
}

impl Fedsts {
    fn start(dc: &SambaDc, keytab: &Path, krb5_conf: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let listen = format!("127.0.0.1:{port}");
        let c = fedsts::first_run::prepare(dir.path(), &listen)
            .unwrap()
            .config;
        let config = format!(
            r#"
[server]
listen = "{listen}"
public_url = "{public}"
tls_cert = "{tls_cert}"
tls_key = "{tls_key}"

[[apps]]
id = "corp"
domain = "contoso.test"
issuer_uri = "contoso.test"
signing_cert = "{signing_cert}"
signing_key = "{signing_key}"
directory = "corp"

[apps.kerberos]
keytab = "{keytab}"
spn = "{SPN}"
allowed_networks = ["127.0.0.1"]
realms = {{ "{REALM}" = "contoso.test" }}
issuer_id = "{ISSUER_ID}"

[directories.corp]
kind = "ldap"
url = "{url}"
ca_file = "{ca}"
bind_dn = "{SERVICE_DN}"
bind_password_env = "FEDSTS_TEST_SVC_PW"
user_base = "{USERS}"
timeout_secs = 5
"#,
            public = c.public_base(),
            tls_cert = c.server.tls_cert.display(),
            tls_key = c.server.tls_key.display(),
            signing_cert = c.apps[0].signing_cert.display(),
            signing_key = c.apps[0].signing_key.as_deref().unwrap().display(),
            keytab = keytab.display(),
            url = dc.ldaps_url,
            ca = dc.ca_file.display(),
        );
        let config_path = dir.path().join("fedsts.toml");
        std::fs::write(&config_path, config).unwrap();
        let mut command = ServeProcess::command(&config_path);
        command
            .env("KRB5_KTNAME", format!("FILE:{}", keytab.display()))
            .env("KRB5_CONFIG", krb5_conf)
            .env("FEDSTS_TEST_SVC_PW", SERVICE_PASSWORD)
            .env("FEDSTS_LOG_FORMAT", "json");
        Self {
            process: ServeProcess::start(command, &dir.path().join("fedsts.log"), port),
            endpoint: format!("{}/wsfed/corp/trust/13/windowstransport", c.public_base()),
            tls_cert: c.server.tls_cert.clone(),
            dir,
        }
    }

    /// A fresh RST (its own MessageID) in a file.
    fn body_file(&self) -> PathBuf {
        let path = self.dir.path().join("rst.xml");
        std::fs::write(&path, rst("13", &self.endpoint, None)).unwrap();
        path
    }
}

/// POSTs the RST with requests-gssapi (mutual authentication required); (status, body).
fn python_gssapi(server: &Fedsts, krb5_conf: &Path, ccache: &Path) -> (u16, String) {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/windowstransport_gssapi.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&server.endpoint)
        .arg(&server.tls_cert)
        .arg(server.body_file())
        .env("KRB5_CONFIG", krb5_conf)
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    (
        u16::try_from(answer["status"].as_u64().unwrap()).unwrap(),
        answer["body"].as_str().unwrap().to_owned(),
    )
}

/// POSTs the RST with `curl --negotiate`; (status, body).
fn curl_negotiate(server: &Fedsts, krb5_conf: &Path, ccache: &Path) -> (u16, String) {
    let body = server.dir.path().join("curl-body");
    let output = Command::new("curl")
        .args(["-sS", "--negotiate", "-u", ":", "--cacert"])
        .arg(&server.tls_cert)
        .args(["-H", "Content-Type: application/soap+xml; charset=utf-8"])
        .arg("--data-binary")
        .arg(format!("@{}", server.body_file().display()))
        .arg("-o")
        .arg(&body)
        .args(["-w", "%{http_code}"])
        .arg(&server.endpoint)
        .env("KRB5_CONFIG", krb5_conf)
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap(),
        std::fs::read_to_string(body).unwrap_or_default(),
    )
}

/// A TGT for `principal@CONTOSO.TEST` from the DC, in a credential cache of its own.
fn kinit(dir: &Path, krb5_conf: &Path, principal: &str, password: &str) -> PathBuf {
    use std::io::Write as _;
    let ccache = dir.join(format!("ccache-{}", principal.replace('$', "_")));
    let mut child = Command::new("kinit")
        .arg(format!("{principal}@{REALM}"))
        .env("KRB5_CONFIG", krb5_conf)
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "kinit {principal}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    ccache
}

/// The `S-1-5-21-…` text of a binary SID (as `ldapsearch` prints it, base64).
fn sid_text(base64_sid: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(base64_sid)
        .unwrap();
    let authority = raw[2..8]
        .iter()
        .fold(0u64, |value, byte| (value << 8) | u64::from(*byte));
    let mut text = format!("S-{}-{authority}", raw[0]);
    for sub in raw[8..].chunks(4).take(usize::from(raw[1])) {
        text += &format!("-{}", u32::from_le_bytes(sub.try_into().unwrap()));
    }
    text
}

fn tools_available() -> bool {
    samba::available()
        && common::require_tool("kinit")
        && common::require_tool("curl")
        && common::require_python_module("requests_gssapi")
}

/// The computer WS01$ with a password, enabled; the service account of `HTTP/localhost`
/// with AES keys (`msDS-SupportedEncryptionTypes` 24, else the exported keytab is RC4 only).
fn prepare_domain(dc: &SambaDc) {
    dc.ldap_tool(
        "ldapmodify",
        &format!(
            "dn: CN=WS01,{USERS}\nchangetype: modify\nreplace: unicodePwd\nunicodePwd:: {}\n-\n\
             replace: userAccountControl\nuserAccountControl: 4096\n-\n\n",
            samba::unicode_pwd(COMPUTER_PASSWORD)
        ),
    );
    dc.ldap_tool(
        "ldapadd",
        &samba::user(
            "svc-http",
            &format!("servicePrincipalName: {SPN}\nmsDS-SupportedEncryptionTypes: 24\n"),
        ),
    );
}

#[test]
fn a_samba_ticket_for_an_enabled_then_disabled_computer_gets_a_token_then_account_disabled() {
    if !tools_available() {
        return;
    }
    let dc = SambaDc::start();
    prepare_domain(&dc);
    let work = tempfile::tempdir().unwrap();
    let krb5_conf = work.path().join("krb5.conf");
    dc.write_krb5_conf(&krb5_conf);
    let keytab = work.path().join("http.keytab");
    dc.export_keytab(SPN, &keytab);
    let server = Fedsts::start(&dc, &keytab, &krb5_conf);
    let computer = kinit(work.path(), &krb5_conf, "WS01$", COMPUTER_PASSWORD);
    let alice = kinit(work.path(), &krb5_conf, "alice", USER_PASSWORD);

    let ws01 = format!("CN=WS01,{USERS}");
    let guid = dc.read_attr(&ws01, "objectGUID").unwrap();
    let sid = sid_text(&dc.read_attr(&ws01, "objectSid").unwrap());
    assert!(sid.starts_with("S-1-5-21-"), "{sid}");
    let (status, body) = python_gssapi(&server, &krb5_conf, &computer);
    assert_eq!(status, 200, "{body}\n{}", server.process.log());
    assert!(body.contains(WINDOWS_METHOD), "{body}");
    assert_eq!(saml_attribute(&body, "accounttype").as_deref(), Some("DJ"));
    assert_eq!(
        saml_attribute(&body, "onpremobjectguid").as_deref(),
        Some(guid.as_str())
    );
    assert_eq!(
        saml_attribute(&body, "ImmutableID").as_deref(),
        Some(guid.as_str())
    );
    assert_eq!(
        saml_attribute(&body, "primarysid").as_deref(),
        Some(sid.as_str())
    );
    assert_eq!(
        saml_attribute(&body, "UPN").as_deref(),
        Some("WS01$@contoso.test")
    );
    assert_eq!(
        saml_attribute(&body, "issuerid").as_deref(),
        Some(ISSUER_ID)
    );

    let (status, body) = curl_negotiate(&server, &krb5_conf, &alice);
    assert_eq!(status, 200, "{body}\n{}", server.process.log());
    assert_eq!(
        saml_attribute(&body, "accounttype").as_deref(),
        Some("User")
    );
    assert_eq!(
        saml_attribute(&body, "UPN").as_deref(),
        Some("alice@contoso.test")
    );
    assert_eq!(
        saml_attribute(&body, "ImmutableID").as_deref(),
        dc.read_attr(&format!("CN=alice,{USERS}"), "objectGUID")
            .as_deref()
    );
    assert_eq!(saml_attribute(&body, "primarysid"), None);

    // Disabled in AD: the ticket in the cache stays valid until it expires, the directory
    // says no, with its reason.
    dc.ldap_tool(
        "ldapmodify",
        &format!(
            "dn: {ws01}\nchangetype: modify\nreplace: userAccountControl\n\
             userAccountControl: 4098\n-\n\n"
        ),
    );
    let (status, body) = python_gssapi(&server, &krb5_conf, &computer);
    assert_ne!(status, 200, "a disabled computer got a token: {body}");
    assert!(!body.contains("Assertion"), "{body}");
    let records = server.process.audit_records();
    let last = records
        .last()
        .unwrap_or_else(|| panic!("{}", server.process.log()));
    assert_eq!(last["reason"], "account_disabled", "{records:?}");
    assert_eq!(last["decision"], "refused", "{records:?}");
}
