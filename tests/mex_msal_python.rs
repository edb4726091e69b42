//! MSAL Python's own MEX parser (`msal.mex.Mex`) must pick our WS-Trust 1.3 usernamemixed
//! endpoint, and its IWA policy detection must find 13/windowstransport only when configured.
//! Runs `tests/oracles/mex_msal.py`; skipped (or failed under CI=true) without python3 + msal.

mod common;

use fedsts::protocol::mex::{MexEndpoints, definitions, soap_response};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;

const ISSUE_13: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue";
const BASE: &str = "https://sts.example.com/wsfed/contoso/trust";

fn endpoints(windowstransport: bool) -> MexEndpoints {
    let url = |path: &str| Some(format!("{BASE}/{path}"));
    MexEndpoints {
        usernamemixed_13: url("13/usernamemixed"),
        usernamemixed_2005: url("2005/usernamemixed"),
        windowstransport_13: url("13/windowstransport").filter(|_| windowstransport),
        windowstransport_2005: url("2005/windowstransport").filter(|_| windowstransport),
        windowstransport_spn: windowstransport.then(|| "HTTP/sts.example.com".to_owned()),
    }
}

fn oracle_available() -> bool {
    common::require_tool("python3") && common::require_python_module("msal")
}

/// Runs the oracle on `document` and returns its JSON answer.
fn classify(document: &str, soap: bool) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mex.xml");
    std::fs::write(&path, document).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/mex_msal.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(&path);
    if soap {
        command.arg("--soap");
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "oracle failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

fn assert_username_password_is_13(answer: &Value) {
    assert_eq!(
        answer["username_password"],
        json!({"address": format!("{BASE}/13/usernamemixed"), "action": ISSUE_13})
    );
}

#[test]
fn msal_python_picks_13_usernamemixed_and_finds_no_iwa_when_off() {
    if !oracle_available() {
        return;
    }
    for soap in [false, true] {
        let document = if soap {
            soap_response(&endpoints(false), Some("urn:uuid:0"))
        } else {
            definitions(&endpoints(false))
        };
        let answer = classify(&document, soap);
        assert_username_password_is_13(&answer);
        assert_eq!(answer["iwa"], Value::Null, "soap={soap}");
    }
}

#[test]
fn msal_python_finds_13_windowstransport_when_on() {
    if !oracle_available() {
        return;
    }
    for soap in [false, true] {
        let document = if soap {
            soap_response(&endpoints(true), None)
        } else {
            definitions(&endpoints(true))
        };
        let answer = classify(&document, soap);
        assert_username_password_is_13(&answer);
        assert_eq!(
            answer["iwa"],
            json!({"address": format!("{BASE}/13/windowstransport"), "action": ISSUE_13}),
            "soap={soap}, api={}",
            answer["iwa_api"]
        );
    }
}
