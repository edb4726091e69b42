//! Helpers shared by integration tests that drive external tools (oracles, servers, clients).
//!
//! A missing tool makes a test SKIP loudly on a developer machine, but FAIL when `CI=true`, so
//! that CI can never pass by silently skipping its oracles.

#![allow(dead_code)] // each test binary uses a different subset of these helpers

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// True when running in CI (`CI=true`), where missing tools are errors rather than skips.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|value| value.eq_ignore_ascii_case("true"))
}

/// Returns true when `name` is an executable on `PATH`. Otherwise prints a loud SKIP and returns
/// false, or panics when `CI=true`.
pub fn require_tool(name: &str) -> bool {
    if find_on_path(name).is_some() {
        return true;
    }
    skip_or_fail(&format!(
        "the tool `{name}` is not installed (not found on PATH)"
    ))
}

/// Returns true when `python3 -c "import <module>"` works. Otherwise prints a loud SKIP and
/// returns false, or panics when `CI=true`.
pub fn require_python_module(module: &str) -> bool {
    if !require_tool("python3") {
        return false;
    }
    let imported = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if imported {
        return true;
    }
    skip_or_fail(&format!(
        "the Python module `{module}` is not importable by python3 (pip install {module})"
    ))
}

/// Returns true when `path` exists. Otherwise prints a loud SKIP naming `how_to_get_it` and
/// returns false, or panics when `CI=true`.
pub fn require_path(path: &Path, how_to_get_it: &str) -> bool {
    if path.exists() {
        return true;
    }
    skip_or_fail(&format!(
        "{} does not exist ({how_to_get_it})",
        path.display()
    ))
}

fn skip_or_fail(reason: &str) -> bool {
    if in_ci() {
        panic!("CI=true and {reason}");
    }
    eprintln!("\n========== SKIP: {reason} ==========\n");
    false
}

/// Full path of the executable `name` on `PATH`, if any.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// A TCP port on 127.0.0.1 that was free a moment ago (for servers the tests start).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub mod audit;
pub mod fixtures;
pub mod kdc;
pub mod passive;
pub mod process;
pub mod redis;
pub mod samba;
pub mod server;
pub mod slapd;
pub mod softhsm;
pub mod wstrust;
