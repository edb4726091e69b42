//! A throwaway SoftHSM2 token store in a temp dir: its own `softhsm2.conf` (pointed at by
//! `SOFTHSM2_CONF`), tokens made with `softhsm2-util --init-token`, removed with the temp dir.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's `softhsm2` package puts the PKCS#11 module.
const MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
];

/// Security officer PIN of every test token.
pub const SO_PIN: &str = "so-pin-1234";

/// A SoftHSM2 configuration and token directory.
pub struct SoftHsm {
    pub module: PathBuf,
    pub conf: PathBuf,
    pub tokens: PathBuf,
    dir: tempfile::TempDir,
}

impl SoftHsm {
    /// A fresh token store, or `None` (SKIP; panic under CI) when softhsm2 is not installed.
    pub fn new() -> Option<Self> {
        if !super::require_tool("softhsm2-util") {
            return None;
        }
        let module = MODULE_PATHS.iter().map(PathBuf::from).find(|p| p.exists());
        let Some(module) = module else {
            super::require_path(Path::new(MODULE_PATHS[0]), "apt-get install softhsm2");
            return None;
        };
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
                tokens.display()
            ),
        )
        .unwrap();
        Some(Self {
            module,
            conf,
            tokens,
            dir,
        })
    }

    /// A `softhsm2-util` (or any tool) command that sees this store.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SOFTHSM2_CONF", &self.conf);
        command
    }

    /// Makes a token labelled `label` with user PIN `pin` in a free slot; returns its
    /// directory (SoftHSM keeps one directory per token).
    pub fn init_token(&self, label: &str, pin: &str) -> PathBuf {
        let before = self.token_dirs();
        let output = self
            .command("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", pin])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "softhsm2-util --init-token: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let after = self.token_dirs();
        after
            .into_iter()
            .find(|d| !before.contains(d))
            .expect("softhsm2-util made no token directory")
    }

    fn token_dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir(&self.tokens)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// A `[apps.signing_pkcs11]` table for `token` / `key` with an inline PIN.
    pub fn table(&self, token: &str, key: &str, pin: &str) -> String {
        format!(
            "[apps.signing_pkcs11]\nmodule = \"{}\"\ntoken_label = \"{token}\"\nkey_label = \"{key}\"\npin = \"{pin}\"\n",
            self.module.display()
        )
    }
}
