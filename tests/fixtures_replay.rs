//! Replays every `soap-fixtures/` request against a running server over HTTPS and checks the
//! outcome `expectations.toml` gives: success with a token for the user, or the exact fault
//! subcode and HTTP status. After every refusal the server must still answer.

mod common;

use common::fixtures::{Outcome, Vars, expectations};
use common::server::{ALICE, ALICE_IMMUTABLE_ID, Options, PASSWORD, TestServer};
use time::OffsetDateTime;

#[tokio::test]
async fn every_fixture_gets_its_expected_outcome_and_the_server_keeps_serving() {
    // One client sends every fixture at once: rate limiting (tested in tests/policy.rs) is off.
    let server = TestServer::start_with(Options {
        configure: Box::new(|config, _| config.rate_limit.enabled = false),
        ..Options::default()
    })
    .await;
    let all = expectations();
    assert!(all.len() >= 20, "only {} fixtures", all.len());
    for expectation in &all {
        let path = expectation.endpoint_path(&server.app_id);
        let to = format!("{}{}", server.base_url, path);
        let message_id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
        let body = expectation.render(&Vars {
            now: OffsetDateTime::now_utc(),
            username: ALICE,
            password: PASSWORD,
            message_id: &message_id,
            to: &to,
        });
        let mut headers = vec![("content-type", "application/soap+xml; charset=utf-8")];
        if let Some(agent) = &expectation.user_agent {
            headers.push(("user-agent", agent.as_str()));
        }
        let reply = server
            .request("POST", &path, &headers, body.into_bytes())
            .await;
        let file = &expectation.file;
        assert_eq!(
            reply.status, expectation.http_status,
            "{file}: {}",
            reply.body
        );
        match expectation.outcome {
            Outcome::Success => {
                assert!(
                    reply
                        .body
                        .contains(&format!(">{ALICE_IMMUTABLE_ID}</saml:NameIdentifier>")),
                    "{file}"
                );
                assert!(
                    reply
                        .body
                        .contains(&format!("<a:RelatesTo>{message_id}</a:RelatesTo>"))
                        || !body_has_message_id(&expectation.file),
                    "{file}: {}",
                    reply.body
                );
            }
            Outcome::Fault if expectation.http_status == 413 => {}
            Outcome::Fault => {
                let local = expectation.fault_subcode.as_deref().unwrap();
                let ns = expectation.fault_subcode_ns.as_deref().unwrap();
                assert!(
                    reply
                        .body
                        .contains(&format!("xmlns:a=\"{ns}\">a:{local}</s:Value>")),
                    "{file}: expected a:{local} in {ns}:\n{}",
                    reply.body
                );
                assert!(reply.body.contains("Correlation id: "), "{file}");
                assert!(!reply.body.contains(PASSWORD), "{file} echoes the password");
            }
        }
        let health = server.request("GET", "/healthz", &[], vec![]).await;
        assert_eq!(health.status, 200, "server stopped answering after {file}");
    }
    server.stop().await;
}

/// Whether the fixture carries a MessageID the response should relate to.
fn body_has_message_id(file: &str) -> bool {
    let raw = common::fixtures::load(file, &[]);
    raw.contains("{{MESSAGE_ID}}")
}
