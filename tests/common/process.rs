//! fedsts run as its own process (`fedsts serve --config …`), for the tests that need the real
//! binary rather than the in-process [`super::server::TestServer`]: Kerberos environment
//! variables, `faketime`, signals, a configuration file written by the test.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `fedsts serve` the test started, with its log file. It runs in its own process group and
/// the whole group is killed when this is dropped, so a wrapper that forks (`faketime`) cannot
/// leave a server running after the test.
pub struct ServeProcess {
    child: Child,
    log: PathBuf,
}

impl ServeProcess {
    /// Runs `command` with stderr to `log`, and waits (at most 20 s) until `port` accepts.
    pub fn start(mut command: Command, log: &Path, port: u16) -> Self {
        let child = command
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let mut process = Self {
            child,
            log: log.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            let exited = process.child.try_wait().unwrap().is_some();
            assert!(
                !exited && Instant::now() < deadline,
                "fedsts did not start: {}",
                process.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        process
    }

    /// `fedsts serve --config <config>`, to pass to [`ServeProcess::start`] with its environment.
    pub fn command(config: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fedsts"));
        command.args(["serve", "--config"]).arg(config);
        command
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit records logged so far (with `FEDSTS_LOG_FORMAT=json`), as JSON `fields` objects.
    pub fn audit_records(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|record| record["target"] == "fedsts::audit")
            .map(|record| record["fields"].clone())
            .collect()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
