//! Helpers shared by the integration tests (minimal version: external tool detection).
#![allow(dead_code)]

use std::process::Command;

/// True when `tool` can be run. Otherwise prints SKIP and returns false, or panics when the
/// environment variable `CI` is `true` (a CI run must not silently skip an oracle).
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    report(found, &format!("tool {tool}"))
}

/// True when `python3 -c "import <module>"` succeeds; otherwise as [`require_tool`].
pub fn require_python_module(module: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|output| output.status.success());
    report(found, &format!("python module {module}"))
}

fn report(found: bool, what: &str) -> bool {
    if !found {
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{what} is required when CI=true");
        }
        eprintln!("SKIP: {what} is not available");
    }
    found
}
