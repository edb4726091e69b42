//! A throwaway OpenLDAP `slapd` on a random loopback port, with a temporary `slapd.conf`, an
//! mdb database in a temp dir, and test entries; killed on drop.
//!
//! OpenLDAP has no Active Directory schema, so the config carries a tiny test-only one
//! ([`AD_SCHEMA`]: `objectGUID` and `objectSid` as octet strings, `sAMAccountName`,
//! `userAccountControl`, `userPrincipalName`, classes `user` and `computer`) under a private
//! `2.25.<uuid>` arc, and AD-shaped entries live under `ou=corp` ([`CORP_BASE`]) with their
//! binary GUIDs and SIDs written by `ldapmodify` from base64 (`attr:: value`).
//!
//! [`Slapd::start_tls`] also serves `ldaps://` on a second port with a server certificate
//! issued at test time by a throwaway CA ([`TestCa`]); the same `ldap://` port offers StartTLS.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Suffix of the test tree.
pub const SUFFIX: &str = "dc=example,dc=com";
/// Root DN (also used as the service account).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
/// Root password.
pub const ADMIN_PASSWORD: &str = "adminpw";
/// Password of every test user (with characters that need escaping in XML).
pub const USER_PASSWORD: &str = "s3cret&<pw>";

/// Base of the AD-shaped entries (carol, erin, WS01$).
pub const CORP_BASE: &str = "ou=corp,dc=example,dc=com";
/// Raw objectGUID of carol (an enabled AD user, `userAccountControl` 512).
pub const CAROL_GUID: [u8; 16] = [
    0xc4, 0x7e, 0x01, 0xd9, 0x55, 0xa0, 0x42, 0x4f, 0x8e, 0x27, 0xff, 0x10, 0x3b, 0x96, 0x61, 0x0d,
];
/// Raw objectGUID of erin (a disabled AD user, `userAccountControl` 514).
pub const ERIN_GUID: [u8; 16] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0xf0,
];
/// Raw objectGUID of the computer `WS01$` (`userAccountControl` 4096).
pub const WS01_GUID: [u8; 16] = [
    0x8a, 0x31, 0xf2, 0x0c, 0x9e, 0x4d, 0x11, 0x4b, 0xb3, 0x9f, 0xd2, 0x01, 0x7c, 0x55, 0xe0, 0xaa,
];
/// Domain SID prefix `S-1-5-21-1004336348-1177238915-682003330` as raw bytes, before the RID.
const DOMAIN_SID: [u8; 24] = [
    1, 5, 0, 0, 0, 0, 0, 5, 21, 0, 0, 0, 220, 244, 220, 59, 131, 61, 43, 70, 130, 139, 166, 40,
];

/// The private OID arc of the test-only schema (a `2.25` UUID arc, owned by nobody else).
const TEST_ARC: &str = "2.25.112764076856223057891792389404441396285";

/// The test-only AD schema: just what the LDAP backend reads from Active Directory.
pub fn ad_schema() -> String {
    let octets = "EQUALITY octetStringMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.40 SINGLE-VALUE";
    let text = "EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 SINGLE-VALUE";
    format!(
        r#"attributetype ( {TEST_ARC}.1.1 NAME 'objectGUID' {octets} )
attributetype ( {TEST_ARC}.1.2 NAME 'objectSid' {octets} )
attributetype ( {TEST_ARC}.1.3 NAME 'sAMAccountName' {text} )
attributetype ( {TEST_ARC}.1.4 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
attributetype ( {TEST_ARC}.1.5 NAME 'userPrincipalName' {text} )
objectclass ( {TEST_ARC}.2.1 NAME 'user' AUXILIARY MAY ( objectGUID $ objectSid $ sAMAccountName $ userAccountControl $ userPrincipalName $ userPassword $ displayName ) )
objectclass ( {TEST_ARC}.2.2 NAME 'computer' SUP user AUXILIARY )
"#
    )
}

/// The raw objectSid `S-1-5-21-1004336348-1177238915-682003330-<rid>`.
pub fn sid_bytes(rid: u32) -> Vec<u8> {
    let mut raw = DOMAIN_SID.to_vec();
    raw.extend_from_slice(&rid.to_le_bytes());
    raw
}

/// A throwaway certificate authority made at test time.
pub struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

impl TestCa {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert_pem = params.self_signed(&key).unwrap().pem();
        Self {
            issuer: rcgen::Issuer::new(params, key),
            cert_pem,
        }
    }

    /// A server certificate for `127.0.0.1` and `localhost`: (certificate PEM, key PEM).
    pub fn server_cert(&self) -> (String, String) {
        self.server_cert_for(&["127.0.0.1", "localhost"])
    }

    /// A server certificate whose subjectAltNames are `names` (the first is also its CN).
    pub fn server_cert_for(&self, names: &[&str]) -> (String, String) {
        let mut params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0]);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// Writes the CA certificate to `path` (a `ca_file`) and returns the path.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, &self.cert_pem).unwrap();
        path.to_path_buf()
    }
}

/// A running slapd.
pub struct Slapd {
    pub port: u16,
    pub url: String,
    /// `ldaps://127.0.0.1:PORT` when started with [`Slapd::start_tls`].
    pub ldaps_url: Option<String>,
    /// The CA that issued the server certificate, when TLS is on.
    pub ca: Option<TestCa>,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Whether the tools a slapd test needs are installed (SKIP or, under CI, panic otherwise).
pub fn available() -> bool {
    super::require_tool("slapd") && super::require_tool("ldapadd")
}

fn slapd_path() -> PathBuf {
    super::find_on_path("slapd")
        .or_else(|| Some(PathBuf::from("/usr/sbin/slapd")))
        .unwrap()
}

fn config(dir: &std::path::Path, tls: bool) -> String {
    let tls = if tls {
        format!(
            "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n",
            d = dir.display()
        )
    } else {
        String::new()
    };
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
{schema}{tls}modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
database mdb
suffix "{SUFFIX}"
rootdn "{ADMIN_DN}"
rootpw {ADMIN_PASSWORD}
directory {dir}/db
overlay memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
"#,
        dir = dir.display(),
        schema = ad_schema(),
    )
}

/// The test entries: alice (groups staff and admins), bob (disabled by `employeeType`), and
/// dave, whose UPN attribute holds characters that matter in filters.
fn entries() -> String {
    format!(
        r#"dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
o: Example
dc: example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: uid=alice,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: alice
cn: Alice Liddell
sn: Liddell
displayName: Alice Liddell
mail: alice@example.com
userPassword: {USER_PASSWORD}

dn: uid=bob,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: bob
cn: Bob
sn: Builder
mail: bob@example.com
employeeType: disabled
userPassword: {USER_PASSWORD}

dn: uid=dave,ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: dave
cn: Dave
sn: Star
mail: da*ve@example.com
userPassword: {USER_PASSWORD}

dn: cn=staff,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,{SUFFIX}

dn: cn=admins,ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: admins
member: uid=alice,ou=people,{SUFFIX}
"#
    )
}

/// The AD-shaped entries, as an `ldapmodify` change list: carol (enabled user, member of
/// corp-staff), erin (disabled: `userAccountControl` 514), and the computer `WS01$` — binary
/// GUIDs and SIDs as base64 (`attr:: value`).
fn ad_entries() -> String {
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    format!(
        r#"dn: {CORP_BASE}
changetype: add
objectClass: organizationalUnit
ou: corp

dn: cn=Carol Danvers,{CORP_BASE}
changetype: add
objectClass: inetOrgPerson
objectClass: user
cn: Carol Danvers
sn: Danvers
displayName: Carol Danvers
userPrincipalName: carol@example.com
sAMAccountName: carol
userAccountControl: 512
objectGUID:: {carol_guid}
objectSid:: {carol_sid}
userPassword: {USER_PASSWORD}

dn: cn=Erin Hale,{CORP_BASE}
changetype: add
objectClass: inetOrgPerson
objectClass: user
cn: Erin Hale
sn: Hale
userPrincipalName: erin@example.com
sAMAccountName: erin
userAccountControl: 514
objectGUID:: {erin_guid}
objectSid:: {erin_sid}
userPassword: {USER_PASSWORD}

dn: cn=WS01,{CORP_BASE}
changetype: add
objectClass: device
objectClass: user
objectClass: computer
cn: WS01
sAMAccountName: WS01$
userAccountControl: 4096
objectGUID:: {ws01_guid}
objectSid:: {ws01_sid}

dn: cn=corp-staff,ou=groups,{SUFFIX}
changetype: add
objectClass: groupOfNames
cn: corp-staff
member: cn=Carol Danvers,{CORP_BASE}
"#,
        carol_guid = b64(&CAROL_GUID),
        carol_sid = b64(&sid_bytes(1103)),
        erin_guid = b64(&ERIN_GUID),
        erin_sid = b64(&sid_bytes(1104)),
        ws01_guid = b64(&WS01_GUID),
        ws01_sid = b64(&sid_bytes(1105)),
    )
}

impl Slapd {
    /// Starts slapd (plain `ldap://`) with the test entries loaded.
    pub fn start() -> Self {
        Self::launch(None)
    }

    /// Starts slapd with TLS: `ldaps://` on a second port and StartTLS on the `ldap://` one,
    /// with a server certificate for `127.0.0.1` issued by a fresh [`TestCa`].
    pub fn start_tls() -> Self {
        Self::launch(Some(TestCa::new("fedsts test LDAP CA")))
    }

    fn launch(ca: Option<TestCa>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        if let Some(ca) = &ca {
            let (cert, key) = ca.server_cert();
            ca.write(&dir.path().join("ca.pem"));
            std::fs::write(dir.path().join("server.pem"), cert).unwrap();
            std::fs::write(dir.path().join("server.key"), key).unwrap();
        }
        std::fs::write(
            dir.path().join("slapd.conf"),
            config(dir.path(), ca.is_some()),
        )
        .unwrap();
        std::fs::write(dir.path().join("entries.ldif"), entries()).unwrap();
        std::fs::write(dir.path().join("ad-entries.ldif"), ad_entries()).unwrap();
        let port = super::free_port();
        let ldaps_url = ca
            .as_ref()
            .map(|_| format!("ldaps://127.0.0.1:{}", super::free_port()));
        let mut slapd = Self {
            port,
            url: format!("ldap://127.0.0.1:{port}"),
            ldaps_url,
            ca,
            dir,
            child: None,
        };
        slapd.spawn();
        slapd.load("ldapadd", "entries.ldif");
        slapd.load("ldapmodify", "ad-entries.ldif");
        slapd
    }

    /// Loads an LDIF file of the temp dir as the root DN with `tool`.
    fn load(&self, tool: &str, file: &str) {
        let output = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.url,
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
            ])
            .arg(self.dir.path().join(file))
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool} {file} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The temp dir (for test files such as a `ca_file`).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn spawn(&mut self) {
        let out = std::fs::File::create(self.dir.path().join("slapd.out")).unwrap();
        let listen = match &self.ldaps_url {
            Some(ldaps) => format!("{}/ {ldaps}/", self.url),
            None => format!("{}/", self.url),
        };
        let child = Command::new(slapd_path())
            .args(["-d", "stats", "-h", &listen, "-f"])
            .arg(self.dir.path().join("slapd.conf"))
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_until_listening();
    }

    /// Waits until our slapd answers; panics when it exits first (e.g. the port was taken by
    /// a parallel test between picking and binding it).
    fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let exited = self
                .child
                .as_mut()
                .map(|c| c.try_wait().unwrap().is_some())
                .unwrap_or(true);
            assert!(!exited, "slapd exited: {}", self.log());
            let answered = Command::new("ldapsearch")
                .args(["-x", "-H", &self.url, "-b", "", "-s", "base"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// slapd's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.out")).unwrap_or_default()
    }

    /// Kills slapd (SIGKILL: an outage, not a shutdown) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts slapd again on the same port with the same database.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.kill();
    }
}
