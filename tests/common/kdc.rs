//! A throwaway MIT Kerberos KDC for realm `TEST.LOCAL` on a random loopback port, with a
//! database, principals and an `HTTP/localhost` keytab in a temp dir; killed on drop.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The realm.
pub const REALM: &str = "TEST.LOCAL";
/// The HTTP service principal (without realm).
pub const SPN: &str = "HTTP/localhost";

/// A running KDC.
pub struct Kdc {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// Whether the tools a KDC test needs are installed (SKIP or, under CI, panic otherwise).
pub fn available() -> bool {
    ["krb5kdc", "kdb5_util", "kadmin.local", "kinit"]
        .into_iter()
        .all(super::require_tool)
}

impl Kdc {
    /// Creates the realm and starts the KDC.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = super::free_port();
        let d = dir.path().display().to_string();
        std::fs::write(
            dir.path().join("krb5.conf"),
            format!(
                "[libdefaults]\n default_realm = {REALM}\n dns_lookup_kdc = false\n dns_lookup_realm = false\n dns_canonicalize_hostname = false\n rdns = false\n ignore_acceptor_hostname = true\n udp_preference_limit = 1\n\n[realms]\n {REALM} = {{\n  kdc = 127.0.0.1:{port}\n }}\n\n[domain_realm]\n localhost = {REALM}\n"
            ),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("kdc.conf"),
            format!(
                "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\n[realms]\n {REALM} = {{\n  database_name = {d}/principal\n  key_stash_file = {d}/stash\n  acl_file = {d}/kadm5.acl\n  supported_enctypes = aes256-cts-hmac-sha1-96:normal aes128-cts-hmac-sha1-96:normal\n }}\n"
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("kadm5.acl"), "").unwrap();
        let mut kdc = Self {
            port,
            dir,
            child: None,
        };
        kdc.run(
            "kdb5_util",
            &["-r", REALM, "create", "-s", "-P", "masterpw"],
        );
        let keytab = kdc.keytab().display().to_string();
        kdc.admin(&format!("addprinc -randkey {SPN}"));
        kdc.admin(&format!("ktadd -k {keytab} {SPN}"));
        kdc.spawn();
        kdc
    }

    fn env(&self, command: &mut Command) {
        command
            .env("KRB5_CONFIG", self.krb5_conf())
            .env("KRB5_KDC_PROFILE", self.dir.path().join("kdc.conf"));
    }

    fn run(&self, program: &str, args: &[&str]) {
        let mut command = Command::new(program);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.env(&mut command);
        let output = command.output().unwrap();
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs one `kadmin.local` query.
    pub fn admin(&self, query: &str) {
        self.run("kadmin.local", &["-r", REALM, "-q", query]);
    }

    /// Adds a principal with a password (`alice`, `PC1$`).
    pub fn add_principal(&self, name: &str, password: &str) {
        self.admin(&format!("addprinc -pw {password} {name}"));
    }

    fn spawn(&mut self) {
        let out = std::fs::File::create(self.dir.path().join("krb5kdc.out")).unwrap();
        let mut command = Command::new("krb5kdc");
        command
            .args(["-n", "-r", REALM, "-P"])
            .arg(self.dir.path().join("krb5kdc.pid"))
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        self.env(&mut command);
        self.child = Some(command.spawn().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "krb5kdc did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The client configuration file.
    pub fn krb5_conf(&self) -> PathBuf {
        self.dir.path().join("krb5.conf")
    }

    /// The keytab of [`SPN`].
    pub fn keytab(&self) -> PathBuf {
        self.dir.path().join("http.keytab")
    }

    /// Gets a TGT for `principal` into a fresh credential cache and returns its path.
    pub fn kinit(&self, principal: &str, password: &str) -> PathBuf {
        let name: String = principal
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let ccache = self.dir.path().join(format!("ccache-{name}"));
        let mut command = Command::new("kinit");
        command
            .arg(format!("{principal}@{REALM}"))
            .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        self.env(&mut command);
        let mut child = command.spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kinit {principal}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        ccache
    }

    /// An empty credential cache path (no tickets).
    pub fn empty_ccache(&self) -> PathBuf {
        self.dir.path().join("ccache-empty")
    }

    /// The directory of the realm's files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Kdc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
