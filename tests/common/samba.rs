//! A throwaway Samba AD DC (real Active Directory semantics: binary objectGUID, AD bind
//! sub-codes, userAccountControl, lockout, the in-chain matching rule).
//!
//! The domain `CONTOSO.TEST` is provisioned once per test process into a template directory
//! (`samba-tool domain provision`, about 10 s), then every [`SambaDc::start`] copies it and runs
//! its own `samba -i -M single` (about 1 s). Samba cannot move LDAP off 389/636, so each DC
//! listens on its own loopback address `127.0.0.X` (all of 127/8 is local on Linux; no network
//! namespace, no change to the host's interfaces), claimed with a lock file for as long as the
//! DC runs. samba's stdin is a pipe held by the test: samba stops by itself at EOF, so a
//! crashed test process leaves no DC behind; [`Drop`] kills it by pid first. Templates of test
//! processes that are gone are removed when the next one provisions.
//!
//! The domain has an account lockout threshold of [`LOCKOUT_THRESHOLD`], and the fixtures of
//! [`fixtures`] (users with each refusal reason, groups with an escaped comma and nesting).
#![allow(dead_code)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::slapd::TestCa;

/// The Kerberos realm of the DC's KDC (Heimdal).
pub const REALM: &str = "CONTOSO.TEST";
/// The domain's naming context.
pub const BASE: &str = "DC=contoso,DC=test";
/// Where the fixtures live.
pub const USERS: &str = "CN=Users,DC=contoso,DC=test";
/// Administrator's bind name and password.
pub const ADMIN: &str = "Administrator@contoso.test";
pub const ADMIN_PASSWORD: &str = "Adm1n-Pass!";
/// The service account fedsts binds as.
pub const SERVICE_DN: &str = "CN=svc-fedsts,CN=Users,DC=contoso,DC=test";
pub const SERVICE_PASSWORD: &str = "Svc-Pass-1!";
/// Password of every fixture user (XML-special characters included).
pub const USER_PASSWORD: &str = "s3cret&<pw>";
/// Bad passwords after which the domain locks an account.
pub const LOCKOUT_THRESHOLD: u32 = 3;
/// alice's `mS-DS-ConsistencyGuid` (her ImmutableID as Entra Connect set it).
pub const ALICE_CONSISTENCY_GUID: [u8; 16] = [
    0x5a, 0x1c, 0xe0, 0x42, 0x9b, 0x77, 0x4e, 0x10, 0xa3, 0x01, 0xc2, 0xd4, 0x66, 0x0f, 0x8e, 0x19,
];

/// Whether the tools a Samba test needs are installed (SKIP or, under CI, panic otherwise).
pub fn available() -> bool {
    super::require_tool("samba")
        && super::require_tool("samba-tool")
        && super::require_tool("ldapadd")
        && super::require_path(
            Path::new("/usr/share/samba/setup/ad-schema"),
            "apt-get install samba-ad-dc samba-ad-provision",
        )
}

/// The domain provisioned once per test process.
fn template() -> &'static Path {
    static TEMPLATE: OnceLock<PathBuf> = OnceLock::new();
    TEMPLATE.get_or_init(provision)
}

fn template_root() -> PathBuf {
    std::env::temp_dir().join("fedsts-samba-templates")
}

/// Removes the templates of test processes that no longer run.
fn remove_stale_templates(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !Path::new("/proc").join(&pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn provision() -> PathBuf {
    let root = template_root();
    std::fs::create_dir_all(&root).unwrap();
    remove_stale_templates(&root);
    let dir = root.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.display();
    let started = Instant::now();
    let options = [
        "interfaces=127.0.0.1/8".to_owned(),
        "bind interfaces only=yes".to_owned(),
        format!("pid directory={d}/run"),
        format!("ncalrpc dir={d}/ncalrpc"),
        format!("winbindd socket directory={d}/winbindd"),
        format!("ntp signd socket directory={d}/ntp"),
        format!("log file={d}/log.%m"),
        "server services=-dns -dnsupdate -nbt -wrepl -drepl -kcc -ntp_signd -winbindd -s3fs -smb"
            .to_owned(),
    ];
    let mut provision = Command::new("samba-tool");
    provision.args([
        "domain",
        "provision",
        "--realm=CONTOSO.TEST",
        "--domain=CONTOSO",
        "--server-role=dc",
        "--dns-backend=NONE",
        "--host-name=DC1",
        "--use-rfc2307",
    ]);
    provision.arg(format!("--adminpass={ADMIN_PASSWORD}"));
    provision.arg(format!("--targetdir={d}"));
    for option in &options {
        provision.arg(format!("--option={option}"));
    }
    run(&mut provision, "samba-tool domain provision");
    run(
        Command::new("samba-tool")
            .args(["domain", "passwordsettings", "set"])
            .arg(format!("--account-lockout-threshold={LOCKOUT_THRESHOLD}"))
            .args(["--complexity=off", "--min-pwd-age=0", "-H"])
            .arg(dir.join("private/sam.ldb")),
        "samba-tool domain passwordsettings set",
    );
    eprintln!(
        "samba: provisioned CONTOSO.TEST in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    dir
}

fn run(command: &mut Command, what: &str) {
    let output = command.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A loopback address `127.0.0.X` nobody else's DC holds, with the lock that holds it.
fn claim_address() -> (String, File) {
    let start = std::process::id() % 200;
    for offset in 0..200 {
        let host = 20 + (start + offset) % 200;
        let address = format!("127.0.0.{host}");
        let lock_path = std::env::temp_dir().join(format!("fedsts-samba-{address}.lock"));
        let lock = File::create(&lock_path).unwrap();
        if lock.try_lock().is_ok() {
            return (address, lock);
        }
    }
    panic!("no free loopback address for a Samba DC");
}

/// A running DC.
pub struct SambaDc {
    /// `127.0.0.X`.
    pub address: String,
    /// `ldaps://127.0.0.X`.
    pub ldaps_url: String,
    /// `ldap://127.0.0.X` (StartTLS; simple binds need TLS).
    pub ldap_url: String,
    /// PEM of the CA that issued the DC's certificate (a `ca_file`).
    pub ca_file: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
    _address_lock: File,
}

impl SambaDc {
    /// A DC of its own, copied from the template, with the fixtures loaded.
    pub fn start() -> Self {
        let template = template();
        let (address, lock) = claim_address();
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("dc");
        run(
            Command::new("cp").arg("-a").arg(template).arg(&copy),
            "cp -a template",
        );
        let ca = TestCa::new("fedsts test AD CA");
        let (cert, key) = ca.server_cert_for(&[&address, "dc1.contoso.test"]);
        let ca_file = ca.write(&dir.path().join("ca.pem"));
        std::fs::write(copy.join("private/tls.pem"), cert).unwrap();
        write_private(&copy.join("private/tls.key"), &key);
        rewrite_conf(&copy, template, &address);
        let mut dc = Self {
            ldaps_url: format!("ldaps://{address}"),
            ldap_url: format!("ldap://{address}"),
            address,
            ca_file,
            dir,
            child: None,
            _address_lock: lock,
        };
        dc.spawn();
        dc.ldap_tool("ldapadd", &fixtures());
        dc
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("dc")
    }

    fn spawn(&mut self) {
        let out = File::create(self.dir.path().join("samba.out")).unwrap();
        let child = Command::new("samba")
            .args(["-i", "-M", "single", "-s"])
            .arg(self.root().join("etc/smb.conf"))
            .stdin(Stdio::piped())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        self.child = Some(child);
        self.wait_until_answering();
    }

    fn wait_until_answering(&mut self) {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        loop {
            let exited = self
                .child
                .as_mut()
                .map(|c| c.try_wait().unwrap().is_some())
                .unwrap_or(true);
            assert!(!exited, "samba exited: {}", self.log());
            let answered = Command::new("ldapsearch")
                .args(["-x", "-H", &self.ldaps_url, "-b", "", "-s", "base"])
                .env("LDAPTLS_CACERT", &self.ca_file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                eprintln!(
                    "samba: DC on {} answered after {:.1}s",
                    self.address,
                    started.elapsed().as_secs_f64()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "samba did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs `tool` (`ldapadd`, `ldapmodify`) as Administrator over LDAPS with `ldif`.
    pub fn ldap_tool(&self, tool: &str, ldif: &str) {
        let path = self.dir.path().join("change.ldif");
        std::fs::write(&path, ldif).unwrap();
        let output = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.ldaps_url,
                "-D",
                ADMIN,
                "-w",
                ADMIN_PASSWORD,
                "-f",
            ])
            .arg(&path)
            .env("LDAPTLS_CACERT", &self.ca_file)
            .stdout(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// `attr` of the entry `dn` as `ldapsearch -LLL` prints it (`attr: v` or `attr:: b64`),
    /// read as Administrator.
    pub fn read_attr(&self, dn: &str, attr: &str) -> Option<String> {
        let output = Command::new("ldapsearch")
            .args(["-x", "-LLL", "-o", "ldif-wrap=no", "-H", &self.ldaps_url])
            .args([
                "-D",
                ADMIN,
                "-w",
                ADMIN_PASSWORD,
                "-b",
                dn,
                "-s",
                "base",
                attr,
            ])
            .env("LDAPTLS_CACERT", &self.ca_file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case(attr)
                .then(|| value.trim_start_matches(':').trim().to_owned())
        })
    }

    /// Whether a simple bind of `dn` with `password` succeeds (over LDAPS).
    pub fn can_bind(&self, dn: &str, password: &str) -> bool {
        Command::new("ldapsearch")
            .args(["-x", "-H", &self.ldaps_url, "-D", dn, "-w", password])
            .args(["-b", "", "-s", "base"])
            .env("LDAPTLS_CACERT", &self.ca_file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Exports the keys of `principal` (e.g. `HTTP/localhost`) from the DC's database into a
    /// keytab at `path` (`samba-tool domain exportkeytab`, read beside the running DC).
    pub fn export_keytab(&self, principal: &str, path: &Path) {
        run(
            Command::new("samba-tool")
                .args(["domain", "exportkeytab"])
                .arg(path)
                .arg(format!("--principal={principal}"))
                .arg("-s")
                .arg(self.root().join("etc/smb.conf")),
            "samba-tool domain exportkeytab",
        );
    }

    /// A krb5.conf for realm `CONTOSO.TEST` whose KDC is this DC (`localhost` maps to it).
    pub fn write_krb5_conf(&self, path: &Path) {
        let conf = format!(
            "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n \
             dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n \
             udp_preference_limit = 1\n\n[realms]\n {REALM} = {{\n  kdc = {}\n }}\n\n\
             [domain_realm]\n localhost = {REALM}\n",
            self.address
        );
        std::fs::write(path, conf).unwrap();
    }

    /// Stops the DC (by pid), as an outage does; its files stay until the value drops.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// samba's own output.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("samba.out")).unwrap_or_default()
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_private(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Points the copy's smb.conf at its own directory, address and certificate.
fn rewrite_conf(copy: &Path, template: &Path, address: &str) {
    let conf_path = copy.join("etc/smb.conf");
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let mut conf = conf
        .replace(&template.display().to_string(), &copy.display().to_string())
        .replace(
            "interfaces = 127.0.0.1/8",
            &format!("interfaces = {address}/8"),
        );
    let tls = format!(
        "[global]\n\ttls enabled = yes\n\ttls keyfile = {d}/private/tls.key\n\ttls certfile = {d}/private/tls.pem\n\ttls cafile = \n\told password allowed period = 0\n",
        d = copy.display()
    );
    conf = conf.replacen("[global]\n", &tls, 1);
    std::fs::write(conf_path, conf).unwrap();
}

/// `unicodePwd` for `password`: base64 of the quoted password in UTF-16LE.
pub fn unicode_pwd(password: &str) -> String {
    let quoted: Vec<u8> = format!("\"{password}\"")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    base64::engine::general_purpose::STANDARD.encode(quoted)
}

/// A user add: `name` with UPN `name@contoso.test`, enabled, password [`USER_PASSWORD`].
pub fn user(name: &str, extra: &str) -> String {
    format!(
        "dn: CN={name},{USERS}\nchangetype: add\nobjectClass: user\nsAMAccountName: {name}\n\
         userPrincipalName: {name}@contoso.test\ndisplayName: {name} of Contoso\n\
         unicodePwd:: {pw}\nuserAccountControl: 512\n{extra}\n",
        pw = unicode_pwd(USER_PASSWORD)
    )
}

/// The fixtures: svc-fedsts; alice (with an `mS-DS-ConsistencyGuid`, in Staff and in
/// `Sales, EMEA`; Staff is in `All Staff`); bob (no consistency GUID); dora (disabled); ezra
/// (account expired); mia (must change her password); lou (to be locked by a test); the
/// disabled computer `WS01$`.
pub fn fixtures() -> String {
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    let service = format!(
        "dn: {SERVICE_DN}\nchangetype: add\nobjectClass: user\nsAMAccountName: svc-fedsts\n\
         unicodePwd:: {}\nuserAccountControl: 512\n\n",
        unicode_pwd(SERVICE_PASSWORD)
    );
    let mut ldif = service;
    ldif += &user(
        "alice",
        &format!("mS-DS-ConsistencyGuid:: {}\n", b64(&ALICE_CONSISTENCY_GUID)),
    );
    ldif += &user("bob", "");
    ldif += &user("dora", "").replace("userAccountControl: 512", "userAccountControl: 514");
    ldif += &user("ezra", "accountExpires: 1\n");
    ldif += &user("mia", "");
    ldif += &user("lou", "");
    ldif += &format!(
        "dn: CN=WS01,{USERS}\nchangetype: add\nobjectClass: computer\nsAMAccountName: WS01$\n\
         userAccountControl: 4098\n\n"
    );
    ldif += &format!(
        "dn: CN=mia,{USERS}\nchangetype: modify\nreplace: pwdLastSet\npwdLastSet: 0\n-\n\n"
    );
    ldif += &format!(
        "dn: CN=Staff,{USERS}\nchangetype: add\nobjectClass: group\nsAMAccountName: Staff\n\
         member: CN=alice,{USERS}\n\n"
    );
    ldif += &format!(
        "dn: CN=Sales\\, EMEA,{USERS}\nchangetype: add\nobjectClass: group\n\
         sAMAccountName: sales-emea\nmember: CN=alice,{USERS}\n\n"
    );
    ldif += &format!(
        "dn: CN=All Staff,{USERS}\nchangetype: add\nobjectClass: group\n\
         sAMAccountName: all-staff\nmember: CN=Staff,{USERS}\n\n"
    );
    ldif
}
