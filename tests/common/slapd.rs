//! A throwaway OpenLDAP `slapd` on a random loopback port, with a temporary `slapd.conf`, an
//! mdb database in a temp dir, and test entries; killed on drop.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Suffix of the test tree.
pub const SUFFIX: &str = "dc=example,dc=com";
/// Root DN (also used as the service account).
pub const ADMIN_DN: &str = "cn=admin,dc=example,dc=com";
/// Root password.
pub const ADMIN_PASSWORD: &str = "adminpw";
/// Password of every test user (with characters that need escaping in XML).
pub const USER_PASSWORD: &str = "s3cret&<pw>";

/// A running slapd.
pub struct Slapd {
    pub port: u16,
    pub url: String,
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(dir: &std::path::Path) -> String {
    format!(
        r#"include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/nis.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
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
        dir = dir.display()
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

impl Slapd {
    /// Starts slapd with the test entries loaded.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        std::fs::write(dir.path().join("slapd.conf"), config(dir.path())).unwrap();
        std::fs::write(dir.path().join("entries.ldif"), entries()).unwrap();
        let port = free_port();
        let mut slapd = Self {
            port,
            url: format!("ldap://127.0.0.1:{port}"),
            dir,
            child: None,
        };
        slapd.spawn();
        let status = Command::new("ldapadd")
            .args([
                "-x",
                "-H",
                &slapd.url,
                "-D",
                ADMIN_DN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
            ])
            .arg(slapd.dir.path().join("entries.ldif"))
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "ldapadd failed");
        slapd
    }

    fn spawn(&mut self) {
        let out = std::fs::File::create(self.dir.path().join("slapd.out")).unwrap();
        let child = Command::new(slapd_path())
            .args(["-d", "0", "-h", &format!("{}/", self.url), "-f"])
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
