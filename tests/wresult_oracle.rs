//! The passive response (`wresult`: a WS-Trust 2005 RSTR around a signed SAML 1.1 assertion) as
//! Auth0's passport-wsfed-saml2 sees it, without a browser: ours is accepted, and the same
//! consumer refuses a tampered assertion, another issuer, another signing key and an expired
//! token — so the browser test's acceptance means something.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use fedsts::crypto::{Certificate, SigningIdentity, SoftwareSigner, generate_self_signed};
use fedsts::protocol::saml::{self, AuthnMethod, Claims, Issuance, TokenType};
use fedsts::protocol::wstrust;
use time::{Duration, OffsetDateTime};

const ISSUER: &str = "example.com";

fn signing_identity() -> (SigningIdentity, String) {
    let pair = generate_self_signed("wresult oracle", &[], 2).unwrap();
    let signer = Arc::new(SoftwareSigner::from_pem(&pair.private_key_pem).unwrap());
    let certificate = Certificate::from_pem(&pair.certificate_pem).unwrap();
    (
        SigningIdentity::new(signer, certificate).unwrap(),
        pair.certificate_pem,
    )
}

fn wresult(identity: &SigningIdentity, issued_at: OffsetDateTime) -> String {
    let claims = Claims {
        issuer: ISSUER.into(),
        audience: fedsts::protocol::ns::MICROSOFT_ONLINE.into(),
        immutable_id: "1TIu064jGEmmf+hnI+F0Jg==".into(),
        upn: "alice@example.com".into(),
        authn_method: AuthnMethod::Password,
        authn_instant: issued_at,
        mfa_performed: false,
        extra_attributes: Vec::new(),
    };
    let issuance = Issuance::new(issued_at, Duration::hours(1)).unwrap();
    let assertion =
        saml::build_signed_assertion(&claims, TokenType::Saml11, &issuance, identity).unwrap();
    wstrust::build_wsfed_wresult(&assertion, issued_at)
}

/// Runs the consumer; `Ok(json)` when it accepted the token, `Err(json)` when it refused it.
fn consume(dir: &Path, cert_pem: &str, issuer: &str, wresult: &str) -> Result<String, String> {
    let cert = dir.join("signing.pem");
    let file = dir.join("wresult.xml");
    std::fs::write(&cert, cert_pem).unwrap();
    std::fs::write(&file, wresult).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/wresult.js");
    let out = Command::new("node")
        .arg(script)
        .arg(&cert)
        .arg(issuer)
        .arg(&file)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match out.status.code() {
        Some(0) => Ok(stdout),
        Some(1) => Err(stdout),
        other => panic!(
            "wresult.js failed to run ({other:?}): {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[test]
fn passport_wsfed_saml2_accepts_ours_and_refuses_forgeries() {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/browser/node_modules/passport-wsfed-saml2");
    if !common::require_tool("node")
        || !common::require_path(&modules, "run `npm ci` in tests/browser")
    {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (identity, cert_pem) = signing_identity();
    let now = OffsetDateTime::now_utc();
    let good = wresult(&identity, now);

    let accepted = consume(dir.path(), &cert_pem, ISSUER, &good).unwrap();
    assert!(
        accepted.contains("\"issuer\":\"example.com\""),
        "{accepted}"
    );

    let tampered = good.replace("alice@example.com", "mallory@example.com");
    assert_ne!(tampered, good);
    let refused = consume(dir.path(), &cert_pem, ISSUER, &tampered).unwrap_err();
    assert!(refused.contains("\"ok\":false"), "{refused}");

    consume(dir.path(), &cert_pem, "another-issuer.example", &good).unwrap_err();

    let (_, other_cert) = signing_identity();
    consume(dir.path(), &other_cert, ISSUER, &good).unwrap_err();

    let expired = wresult(&identity, now - Duration::hours(2));
    consume(dir.path(), &cert_pem, ISSUER, &expired).unwrap_err();
}
