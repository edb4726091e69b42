//! Every log line of a refused and an issued request, at TRACE level: the audit records carry
//! the correlation id of the fault and the AssertionID of the token, and nothing anywhere holds
//! the password or a password hash. Alone in its binary: tracing's per-thread default
//! subscriber is only reliable when no other test registers callsites concurrently.

mod common;

use common::server::{ALICE, PASSWORD, TestServer};
use common::wstrust::{element, path_of, rst};

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

#[tokio::test]
async fn audit_lines_carry_the_correlation_id_and_never_the_password() {
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
