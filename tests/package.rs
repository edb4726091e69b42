//! The Debian package and the container image's pieces (README "Installing").
//!
//! `cargo deb --no-build` packs the binary this test run was built with (no second build), and
//! the test unpacks the `.deb` into a scratch root: the file list and modes, the conffiles, the
//! maintainer scripts' syntax, the systemd unit (`systemd-analyze verify`, and its sandbox
//! exposure under a threshold), then the unpacked binary with the unpacked example
//! configuration — only its ports and the state directory rewritten — makes its certificates,
//! passes `check-config`, serves `/healthz` to the Dockerfile's HEALTHCHECK command, and issues a
//! token. Last, the package is installed and purged for real (maintainer scripts, adduser) in a
//! private mount namespace over overlays, so the host keeps nothing. The man pages are checked
//! against the command line they document.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::CommandFactory;

const BIN: &str = env!("CARGO_BIN_EXE_fedsts");
const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");
/// The sandbox exposure `systemd-analyze security` may report, in its tenths (2.5 of 10; the
/// unit scores 1.7, the same unit without its sandbox lines 9.0).
const EXPOSURE_THRESHOLD: &str = "25";
const USER: &str = "alice@example.com";
const PASSWORD: &str = "correct horse battery staple";

/// Where a file of the repository is.
fn repo(path: &str) -> PathBuf {
    Path::new(MANIFEST_DIR).join(path)
}

/// Runs `command`, panicking with its output unless it succeeded.
fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The man pages under `packaging/man/` as clap_mangen writes them for the current command line
/// (one page per command and subcommand). `FEDSTS_BLESS=1` rewrites them.
#[test]
fn man_pages_match_the_command_line() {
    let rendered = tempfile::tempdir().unwrap();
    clap_mangen::generate_to(fedsts::cli::Cli::command(), rendered.path()).unwrap();
    let pages = |dir: &Path| -> BTreeMap<String, String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&path).unwrap())
            })
            .collect()
    };
    let expected = pages(rendered.path());
    assert!(expected.contains_key("fedsts.1") && expected.contains_key("fedsts-serve.1"));
    let committed_dir = repo("packaging/man");
    if std::env::var("FEDSTS_BLESS").is_ok_and(|v| v == "1") {
        let _ = std::fs::remove_dir_all(&committed_dir);
        std::fs::create_dir_all(&committed_dir).unwrap();
        for (name, text) in &expected {
            std::fs::write(committed_dir.join(name), text).unwrap();
        }
    }
    let committed = pages(&committed_dir);
    let names = |m: &BTreeMap<String, String>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&committed),
        names(&expected),
        "packaging/man/ is stale: FEDSTS_BLESS=1 cargo test --test package man_pages"
    );
    for (name, text) in &expected {
        assert_eq!(
            &committed[name], text,
            "packaging/man/{name} is stale: FEDSTS_BLESS=1 cargo test --test package man_pages"
        );
    }
}

/// The `cargo deb` profile of the binary this test was built with (`target/debug` is `dev`),
/// and the target directory that holds it.
fn built_profile() -> (String, PathBuf) {
    let profile_dir = Path::new(BIN).parent().unwrap();
    let profile = match profile_dir.file_name().unwrap().to_str().unwrap() {
        "debug" => "dev".to_owned(),
        other => other.to_owned(),
    };
    (profile, profile_dir.parent().unwrap().to_path_buf())
}

/// Packs the already built binary into `out/fedsts.deb` (stripped, fast xz: seconds; cargo-deb's
/// built-in gzip takes ten times as long).
fn build_deb(out: &Path) -> PathBuf {
    let (profile, target_dir) = built_profile();
    let deb = out.join("fedsts.deb");
    run(Command::new("cargo")
        .args(["deb", "--no-build", "--strip", "--fast", "--profile"])
        .arg(&profile)
        .arg("--output")
        .arg(&deb)
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(MANIFEST_DIR));
    deb
}

/// `dpkg-deb -c`: each packaged path (without the leading `.`) → (mode string, owner/group).
fn file_list(deb: &Path) -> BTreeMap<String, (String, String)> {
    let listing = stdout(&run(Command::new("dpkg-deb").arg("-c").arg(deb)));
    listing
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = fields[5].trim_start_matches('.').to_owned();
            (path, (fields[0].to_owned(), fields[1].to_owned()))
        })
        .collect()
}

/// Replaces `from` with `to` in a packaged file's `text`, failing when `from` is no longer in it
/// (so the test never runs a file it did not mean to change).
fn rewrite(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "`{from}` is no longer in the packaged file:\n{text}"
    );
    text.replace(from, to)
}

/// A server process that is stopped when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `fedsts serve` from the scratch root; returns once it printed its banner.
fn serve(bin: &Path, config: &Path, log: &Path) -> Server {
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(config)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let server = Server(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "serve printed no banner");
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            panic!(
                "serve exited early: {}",
                std::fs::read_to_string(log).unwrap()
            );
        }
        if line.starts_with("fedsts listening on ") {
            break;
        }
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    server
}

/// The Dockerfile's HEALTHCHECK command (exec form), pointed at `port`.
fn docker_healthcheck(port: u16) -> Vec<String> {
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let json = dockerfile
        .split("HEALTHCHECK")
        .nth(1)
        .and_then(|rest| rest.split_once("CMD "))
        .map(|(_, cmd)| cmd.lines().next().unwrap())
        .expect("the Dockerfile has a HEALTHCHECK … CMD [...]");
    let command: Vec<String> = serde_json::from_str(json).unwrap();
    assert!(command.iter().any(|part| part.contains("/127.0.0.1/8081")));
    command
        .into_iter()
        .map(|part| part.replace("/127.0.0.1/8081", &format!("/127.0.0.1/{port}")))
        .collect()
}

/// A WS-Trust 1.3 usernamemixed request to the app's public URL `to`, sent to `port`: the
/// HTTP status and the body.
fn request_token(port: u16, to: &str) -> (String, String) {
    let body = common::wstrust::rst("13", to, Some((USER, PASSWORD)));
    let path = common::wstrust::path_of(to);
    let mut curl = Command::new("curl")
        .args(["-sk", "--max-time", "20", "-w", "\n%{http_code}"])
        .args(["-H", "Content-Type: application/soap+xml; charset=utf-8"])
        .args(["--data-binary", "@-"])
        .arg(format!("https://127.0.0.1:{port}{path}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    curl.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = curl.wait_with_output().unwrap();
    assert!(output.status.success(), "curl: {}", output.status);
    let text = stdout(&output);
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.to_owned(), body.to_owned())
}

#[test]
fn the_deb_unpacks_to_a_sandboxed_service_whose_example_config_serves() {
    for tool in ["cargo-deb", "dpkg-deb", "systemd-analyze", "curl", "bash"] {
        if !common::require_tool(tool) {
            return;
        }
    }
    let scratch = tempfile::tempdir().unwrap();
    let deb = build_deb(scratch.path());

    let fields = stdout(&run(Command::new("dpkg-deb")
        .args(["-f"])
        .arg(&deb)
        .args(["Package", "Depends"])));
    assert!(fields.contains("Package: fedsts"), "{fields}");
    assert!(
        fields.contains("adduser"),
        "postinst runs adduser: {fields}"
    );

    let files = file_list(&deb);
    let unit = [
        "/lib/systemd/system/fedsts.service",
        "/usr/lib/systemd/system/fedsts.service",
    ]
    .into_iter()
    .find(|path| files.contains_key(*path))
    .unwrap_or_else(|| panic!("no fedsts.service in {:?}", files.keys()));
    for (path, mode) in [
        ("/usr/bin/fedsts", "-rwxr-xr-x"),
        (unit, "-rw-r--r--"),
        ("/etc/fedsts/fedsts.toml", "-rw-r--r--"),
        ("/etc/fedsts/users.toml", "-rw-r-----"),
        ("/usr/share/man/man1/fedsts.1.gz", "-rw-r--r--"),
        ("/usr/share/man/man1/fedsts-serve.1.gz", "-rw-r--r--"),
    ] {
        let found = files
            .get(path)
            .unwrap_or_else(|| panic!("{path} is not in the package"));
        assert_eq!(found.0, mode, "{path}");
    }
    for (path, (mode, owner)) in &files {
        assert!(
            matches!(owner.as_str(), "0/0" | "root/root"),
            "{path}: {owner}"
        );
        let bytes = mode.as_bytes();
        assert!(
            bytes[5] != b'w' && bytes[8] != b'w',
            "{path} is writable by group or others: {mode}"
        );
    }

    let control = scratch.path().join("control");
    run(Command::new("dpkg-deb").arg("-e").arg(&deb).arg(&control));
    let conffiles = std::fs::read_to_string(control.join("conffiles")).unwrap();
    for conffile in ["/etc/fedsts/fedsts.toml", "/etc/fedsts/users.toml"] {
        assert!(
            conffiles.lines().any(|l| l == conffile),
            "{conffile} in {conffiles}"
        );
    }
    for script in ["postinst", "postrm"] {
        let path = control.join(script);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("#DEBHELPER#"),
            "{script}: the token was not replaced"
        );
        run(Command::new("sh").arg("-n").arg(&path));
    }

    let root = scratch.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let bin = root.join("usr/bin/fedsts");
    let unit_text = std::fs::read_to_string(root.join(unit.trim_start_matches('/'))).unwrap();
    verify_unit(&root, &unit_text, scratch.path());

    let etc = root.join("etc/fedsts");
    let state = root.join("var/lib/fedsts");
    let port = common::free_port();
    let health_port = common::free_port();
    let example = std::fs::read_to_string(etc.join("fedsts.toml")).unwrap();
    let config_text = rewrite(
        &rewrite(
            &rewrite(
                &example,
                "\"0.0.0.0:443\"",
                &format!("\"127.0.0.1:{port}\""),
            ),
            "\"127.0.0.1:8081\"",
            &format!("\"127.0.0.1:{health_port}\""),
        ),
        "\"/var/lib/fedsts/",
        &format!("\"{}/", state.display()),
    );
    let config = etc.join("fedsts.toml");
    std::fs::write(&config, &config_text).unwrap();

    let made = stdout(&run(Command::new(&bin)
        .args(["self-signed", "--config"])
        .arg(&config)));
    assert_eq!(
        made.lines().filter(|l| l.starts_with("created ")).count(),
        4,
        "{made}"
    );
    assert!(
        etc.join("tls.key").exists() && state.join("signing.key").exists(),
        "{made}"
    );

    let hash = {
        let mut child = Command::new(&bin)
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(PASSWORD.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success());
        stdout(&output).trim().to_owned()
    };
    let mut users = std::fs::OpenOptions::new()
        .append(true)
        .open(etc.join("users.toml"))
        .unwrap();
    writeln!(
        users,
        "\n[[users]]\nupn = \"{USER}\"\nimmutable_id = \"1TIu064jGEmmf+hnI+F0Jg==\"\npassword = \"{hash}\""
    )
    .unwrap();
    drop(users);

    let checked = stdout(&run(Command::new(&bin)
        .args(["check-config", "--config"])
        .arg(&config)));
    assert!(checked.contains(": OK (1 app(s))"), "{checked}");

    let log = scratch.path().join("serve.log");
    let _server = serve(&bin, &config, &log);
    let healthcheck = docker_healthcheck(health_port);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new(&healthcheck[0])
        .args(&healthcheck[1..])
        .status()
        .unwrap()
        .success()
    {
        assert!(
            Instant::now() < deadline,
            "the Dockerfile's HEALTHCHECK never passed: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let to = "https://sts.example.com/wsfed/example/trust/13/usernamemixed";
    let (status, body) = request_token(port, to);
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("<saml:Assertion"), "{body}");
    assert!(
        body.contains("Issuer=\"https://sts.example.com/wsfed/example\""),
        "the example's issuer_uri: {body}"
    );

    install_and_purge_in_a_namespace(&deb, scratch.path(), &hash);
}

/// `dpkg -i` and `dpkg --purge` for real — the maintainer scripts, adduser, dpkg-statoverride —
/// in a private mount namespace over overlays of /etc, /usr and /var and a private network
/// namespace (`tests/package/install-in-namespace.sh`), so the host keeps no user, file or dpkg
/// record and no port is taken; between them the installed service runs the shipped
/// configuration unchanged (port 443) the way the unit confines it, and issues a token to a
/// user whose password hash is `hash`.
fn install_and_purge_in_a_namespace(deb: &Path, scratch: &Path, hash: &str) {
    for tool in ["unshare", "setpriv", "dpkg", "adduser", "ip"] {
        if !common::require_tool(tool) {
            return;
        }
    }
    let uid = stdout(&run(Command::new("id").arg("-u")));
    if uid.trim() != "0" {
        assert!(
            !common::in_ci(),
            "CI=true and the install test needs root (unshare -m)"
        );
        eprintln!("\n========== SKIP: installing the .deb needs root (unshare -m) ==========\n");
        return;
    }
    let overlays = scratch.join("overlays");
    std::fs::create_dir(&overlays).unwrap();
    let rst = scratch.join("rst.xml");
    let to = "https://sts.example.com/wsfed/example/trust/13/usernamemixed";
    std::fs::write(&rst, common::wstrust::rst("13", to, Some((USER, PASSWORD)))).unwrap();
    let output = run(Command::new("unshare")
        .args(["-m", "-n", "--propagation", "private", "sh"])
        .arg(repo("tests/package/install-in-namespace.sh"))
        .arg(deb)
        .arg(&overlays)
        .arg(&rst)
        .args([USER, hash]));
    let report = stdout(&output);
    let section = |name: &str| -> Vec<&str> {
        let start = report
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("no `{name}` in:\n{report}"))
            + name.len()
            + 4;
        let rest = &report[start..];
        rest[..rest.find("\n== ").unwrap_or(rest.len())]
            .lines()
            .collect()
    };
    assert_eq!(
        section("user"),
        ["fedsts:/var/lib/fedsts:/usr/sbin/nologin"],
        "{report}"
    );
    assert_eq!(
        section("modes"),
        [
            "/etc/fedsts root:fedsts 750",
            "/etc/fedsts/fedsts.toml root:root 644",
            "/etc/fedsts/users.toml root:fedsts 640",
            "/etc/fedsts/tls.crt root:fedsts 640",
            "/etc/fedsts/tls.key root:fedsts 640",
            "/var/lib/fedsts fedsts:fedsts 700",
            "/var/lib/fedsts/signing.crt fedsts:fedsts 644",
            "/var/lib/fedsts/signing.key fedsts:fedsts 600",
        ],
        "{report}"
    );
    assert_eq!(
        section("check-config as fedsts"),
        ["/etc/fedsts/fedsts.toml: OK (1 app(s))"],
        "the service's user reads everything it needs: {report}"
    );
    assert_eq!(
        section("read as nobody"),
        [
            "refused /etc/fedsts/users.toml",
            "refused /etc/fedsts/tls.key",
            "refused /var/lib/fedsts/signing.key",
        ],
        "{report}"
    );
    assert_eq!(
        section("serve as the unit does"),
        [
            "healthz ok",
            "token 200",
            "assertion",
            "/var/lib/fedsts/session.key fedsts:fedsts 600",
        ],
        "the shipped configuration serves on port 443 as fedsts with read-only /etc and /usr: {report}"
    );
    let purged = section("purge");
    for line in [
        "gone /var/lib/fedsts",
        "gone /etc/fedsts/tls.key",
        "gone /etc/fedsts/fedsts.toml",
        "no override /etc/fedsts",
    ] {
        assert!(purged.contains(&line), "{line}: {report}");
    }
    assert!(report.contains("== done"), "{report}");
}

/// `systemd-analyze verify` on the unpacked unit (its `/usr/bin/fedsts` pointed at the unpacked
/// binary, its man page found in the unpacked tree), and `systemd-analyze security` under the
/// exposure threshold.
fn verify_unit(root: &Path, unit_text: &str, scratch: &Path) {
    let installed = root.join("usr/bin/fedsts");
    let unit = scratch.join("fedsts.service");
    std::fs::write(
        &unit,
        rewrite(
            unit_text,
            "/usr/bin/fedsts ",
            &format!("{} ", installed.display()),
        ),
    )
    .unwrap();
    let verified = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", root.join("usr/share/man"))
        .output()
        .unwrap();
    let complaints = String::from_utf8_lossy(&verified.stderr);
    assert!(
        verified.status.success() && complaints.trim().is_empty(),
        "systemd-analyze verify: {complaints}"
    );
    run(Command::new("systemd-analyze")
        .args([
            "security",
            "--offline=yes",
            "--threshold",
            EXPOSURE_THRESHOLD,
        ])
        .arg(&unit));
    for line in [
        "ProtectSystem=strict",
        "StateDirectory=fedsts",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "ExecStartPre=/usr/bin/fedsts check-config --config /etc/fedsts/fedsts.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        assert!(
            unit_text.lines().any(|l| l == line),
            "the unit has no `{line}`"
        );
    }
}

/// The Dockerfile rewrites the example's listen address for a non-root process: its `sed`
/// expression must still find the line.
#[test]
fn the_dockerfile_listen_rewrite_matches_the_example_config() {
    if !common::require_tool("sed") {
        return;
    }
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    let expression = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("RUN sed -i '"))
        .and_then(|rest| rest.split_once('\''))
        .map(|(expr, _)| expr.to_owned())
        .expect("the Dockerfile rewrites the listen address with sed -i '…'");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("fedsts.toml");
    std::fs::copy(repo("packaging/fedsts.toml"), &copy).unwrap();
    run(Command::new("sed").arg("-i").arg(&expression).arg(&copy));
    let rewritten = std::fs::read_to_string(&copy).unwrap();
    assert!(
        rewritten
            .lines()
            .any(|l| l.starts_with("listen = \"0.0.0.0:8443\"")),
        "{rewritten}"
    );
}
