//! Every log line of a refused and an issued request, at TRACE level: the audit records carry
//! the correlation id of the fault and the AssertionID of the token, and nothing anywhere holds
//! the password or a password hash. Alone in its binary: tracing's per-thread default
//! subscriber is only reliable when no other test registers callsites concurrently, so the tests
//! here take turns ([`ONE_SUBSCRIBER`]).
//!
//! Log injection: a user name with `&#10;` (a newline after XML decoding) and a C1 control
//! character, written through fedsts' own subscriber (`fedsts::logging`) in the text and the JSON
//! format, stays on its one line, escaped.

mod common;

use common::server::{ALICE, PASSWORD, TestServer};
use common::wstrust::{element, path_of, rst};
use fedsts::logging::LogFormat;
use tracing_subscriber::EnvFilter;

/// Collects what the tracing subscriber writes.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One thread-default subscriber at a time in this binary.
static ONE_SUBSCRIBER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn audit_lines_carry_the_correlation_id_and_never_the_password() {
    let _turn = ONE_SUBSCRIBER.lock().await;
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = TestServer::start().await;
    let url = server.app_url("trust/2005/usernamemixed");
    let denied = server
        .post_soap(
            &path_of(&url),
            rst("2005", &url, Some((ALICE, "Wr0ng-Secret"))),
        )
        .await;
    let issued = server
        .post_soap(&path_of(&url), rst("2005", &url, Some((ALICE, PASSWORD))))
        .await;
    assert_eq!((denied.status, issued.status), (500, 200));
    server.stop().await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        !text.contains("Wr0ng-Secret") && !text.contains("p&ss") && !text.contains("$argon2"),
        "{text}"
    );
    let audit: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "fedsts::audit")
        .collect();
    assert_eq!(audit.len(), 2, "{text}");
    let correlation = element(&denied.body, "Text")
        .unwrap()
        .rsplit_once("Correlation id: ")
        .unwrap()
        .1;
    assert_eq!(audit[0]["fields"]["correlation_id"], correlation);
    assert_eq!(audit[0]["fields"]["decision"], "refused");
    assert_eq!(audit[0]["fields"]["reason"], "wrong_password");
    assert_eq!(audit[0]["fields"]["user"], ALICE);
    assert_eq!(audit[1]["fields"]["decision"], "issued");
    let assertion_id = audit[1]["fields"]["assertion_id"].as_str().unwrap();
    assert!(
        issued
            .body
            .contains(&format!("AssertionID=\"{assertion_id}\""))
    );
}

/// What the attacker wants to appear as a line of its own in the log.
const FORGED_LINE: &str = "2026-12-02T05:00:00.000000Z  INFO fedsts::audit: token decision user=mallory@example.com decision=issued reason=ok";

/// Sends one usernamemixed request whose user name carries `&#10;`, the forged line and a C1 CSI
/// (`&#155;`), with fedsts' subscriber in `format` installed; returns the log text.
async fn log_of_forging_request(format: LogFormat) -> String {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber =
        fedsts::logging::subscriber(EnvFilter::new("info"), format, false, move || {
            writer.clone()
        });
    let _guard = tracing::subscriber::set_default(subscriber);
    let server = TestServer::start().await;
    let url = server.app_url("trust/2005/usernamemixed");
    let body = rst("2005", &url, Some(("FORGE-HERE", "Wr0ng-Secret"))).replace(
        "FORGE-HERE",
        &format!("{ALICE}&#10;{FORGED_LINE}&#155;[31m"),
    );
    let refused = server.post_soap(&path_of(&url), body).await;
    assert_eq!(refused.status, 500, "{}", refused.body);
    server.stop().await;
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(
        !text.contains('\u{9b}') && !text.contains('\x1b'),
        "raw terminal controls in the log: {text:?}"
    );
    text
}

#[tokio::test]
async fn a_user_name_with_a_newline_cannot_forge_a_text_audit_line() {
    let _turn = ONE_SUBSCRIBER.lock().await;
    let text = log_of_forging_request(LogFormat::Text).await;
    let decisions: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("token decision"))
        .collect();
    assert_eq!(decisions.len(), 1, "one request, one audit line: {text}");
    assert!(
        decisions[0].contains(&format!("user=\"{ALICE}\\n{FORGED_LINE}\\u{{9b}}[31m\"")),
        "{text}"
    );
    assert!(decisions[0].contains(" decision=refused "), "{text}");
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("2026-12-02T05:00:00.000000Z")),
        "{text}"
    );
}

#[tokio::test]
async fn a_user_name_with_a_newline_stays_one_json_record() {
    let _turn = ONE_SUBSCRIBER.lock().await;
    let text = log_of_forging_request(LogFormat::Json).await;
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect();
    let audit: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["target"] == "fedsts::audit")
        .collect();
    assert_eq!(audit.len(), 1, "{text}");
    assert_eq!(
        audit[0]["fields"]["user"],
        format!("{ALICE}\n{FORGED_LINE}\u{9b}[31m")
    );
    assert_eq!(audit[0]["fields"]["decision"], "refused");
}
