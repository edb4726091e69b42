//! Signed assertions checked by independent implementations: `xmlsec1` (libxmlsec1), Python
//! `signxml`, and `lxml`'s exclusive c14n (libxml2) compared with the bytes fedsts hashed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use fedsts::crypto::{Certificate, SigningIdentity, SoftwareSigner, generate_self_signed};
use fedsts::protocol::saml::{
    AuthnMethod, ClaimAttribute, Claims, Issuance, SignedAssertion, TokenType,
    build_signed_assertion,
};
use time::macros::datetime;

const SIGNATURE_START: &str = "<Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\">";
const SIGNATURE_END: &str = "</Signature>";
const UPN: &str = "alice@contoso.com";

/// Everything an oracle run needs: a temp dir with the certificate and the signing identity.
struct Fixture {
    dir: tempfile::TempDir,
    cert_path: PathBuf,
    identity: SigningIdentity,
}

impl Fixture {
    fn new() -> Self {
        let generated = generate_self_signed("token-signing.contoso.test", &[], 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        std::fs::write(&cert_path, &generated.certificate_pem).unwrap();
        let signer = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
        let certificate = Certificate::from_pem(&generated.certificate_pem).unwrap();
        let identity = SigningIdentity::new(Arc::new(signer), certificate).unwrap();
        Self {
            dir,
            cert_path,
            identity,
        }
    }

    fn assertion(&self, token_type: TokenType) -> SignedAssertion {
        self.assertion_for(
            token_type,
            UPN,
            "http://sts.contoso.test/adfs/services/trust",
        )
    }

    fn assertion_for(&self, token_type: TokenType, upn: &str, issuer: &str) -> SignedAssertion {
        let claims = Claims {
            issuer: issuer.into(),
            audience: fedsts::protocol::ns::MICROSOFT_ONLINE.into(),
            immutable_id: "1TIu064jGEmmf+hnI+F0Jg==".into(),
            upn: upn.into(),
            authn_method: AuthnMethod::Password,
            authn_instant: datetime!(2026-03-01 09:59:58.5 UTC),
            mfa_performed: true,
            extra_attributes: vec![ClaimAttribute {
                namespace: "http://schemas.microsoft.com/ws/2012/01".into(),
                name: "insidecorporatenetwork".into(),
                values: vec!["false".into()],
            }],
        };
        let issuance =
            Issuance::new(datetime!(2026-03-01 10:00 UTC), time::Duration::hours(1)).unwrap();
        build_signed_assertion(&claims, token_type, &issuance, &self.identity).unwrap()
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

/// `xmlsec1 --id-attr` argument and signxml `id_attribute` for a token type.
fn id_attribute(token_type: TokenType) -> (&'static str, &'static str) {
    match token_type {
        TokenType::Saml11 => ("--id-attr:AssertionID", "AssertionID"),
        TokenType::Saml20 => ("--id-attr:ID", "ID"),
    }
}

/// True when xmlsec1 verifies `xml_path` with the certificate's public key.
fn xmlsec1_verifies(xml_path: &Path, cert_path: &Path, token_type: TokenType) -> bool {
    let (id_flag, _) = id_attribute(token_type);
    let output = Command::new("xmlsec1")
        .arg("--verify")
        .arg("--pubkey-cert-pem")
        .arg(cert_path)
        .arg(id_flag)
        .arg(format!("{}:Assertion", token_type.uri()))
        .arg(xml_path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("xmlsec1: {}", stderr.trim());
    output.status.success() && stderr.lines().any(|line| line.trim() == "OK")
}

/// True when the Python oracle (signxml, and lxml c14n when `expected_c14n` is given) passes.
fn python_oracle_passes(
    xml_path: &Path,
    cert_path: &Path,
    token_type: TokenType,
    expected_c14n: Option<&Path>,
) -> bool {
    let (_, id_name) = id_attribute(token_type);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracles/verify_signxml.py");
    let mut command = Command::new("python3");
    command
        .arg(script)
        .arg(xml_path)
        .arg(cert_path)
        .arg(id_name);
    if let Some(expected) = expected_c14n {
        command.arg("--expect-c14n").arg(expected);
    }
    let output = command.output().unwrap();
    eprintln!(
        "python oracle: {}{}",
        String::from_utf8_lossy(&output.stdout).trim(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    match output.status.code() {
        Some(0) => true,
        Some(1) => false,
        other => panic!("python oracle could not run (exit {other:?})"),
    }
}

fn oracles_available() -> bool {
    common::require_tool("xmlsec1")
        && common::require_python_module("signxml")
        && common::require_python_module("lxml")
}

/// The assertion bytes fedsts hashed: the signed assertion with its Signature element removed.
fn without_signature(xml: &str) -> String {
    let start = xml.find(SIGNATURE_START).unwrap();
    let end = xml[start..].find(SIGNATURE_END).unwrap() + start + SIGNATURE_END.len();
    format!("{}{}", &xml[..start], &xml[end..])
}

fn check_standalone(token_type: TokenType) {
    if !oracles_available() {
        return;
    }
    let fixture = Fixture::new();
    check_assertion(&fixture, &fixture.assertion(token_type), token_type);
}

fn check_assertion(fixture: &Fixture, assertion: &SignedAssertion, token_type: TokenType) {
    let xml_path = fixture.write("assertion.xml", &assertion.xml);
    let expected = fixture.write("unsigned.c14n", &without_signature(&assertion.xml));
    assert!(xmlsec1_verifies(&xml_path, &fixture.cert_path, token_type));
    assert!(python_oracle_passes(
        &xml_path,
        &fixture.cert_path,
        token_type,
        Some(&expected)
    ));
}

#[test]
fn saml11_assertion_passes_xmlsec1_signxml_and_lxml_c14n() {
    check_standalone(TokenType::Saml11);
}

#[test]
fn saml20_assertion_passes_xmlsec1_signxml_and_lxml_c14n() {
    check_standalone(TokenType::Saml20);
}

#[test]
fn hostile_values_are_canonicalized_exactly_like_libxml2() {
    if !oracles_available() {
        return;
    }
    let fixture = Fixture::new();
    let upn = "a<b&c\"d\re>f'g]]>@contoso.test";
    let issuer = "http://x.test/?a=1&b=\"2\"<>\t\n\r'";
    for token_type in [TokenType::Saml11, TokenType::Saml20] {
        let assertion = fixture.assertion_for(token_type, upn, issuer);
        check_assertion(&fixture, &assertion, token_type);
    }
}

#[test]
fn saml11_assertion_still_verifies_inside_an_envelope_with_conflicting_namespaces() {
    if !oracles_available() {
        return;
    }
    let fixture = Fixture::new();
    let assertion = fixture.assertion(TokenType::Saml11);
    let envelope = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\" \
         xmlns:saml=\"urn:example:not-saml\" xmlns=\"urn:example:default\">\n  \
         <s:Body>\n    <RequestedSecurityToken>{}</RequestedSecurityToken>\n  </s:Body>\n\
         </s:Envelope>\n",
        assertion.xml
    );
    let xml_path = fixture.write("envelope.xml", &envelope);
    let expected = fixture.write("unsigned.c14n", &without_signature(&assertion.xml));
    assert!(xmlsec1_verifies(
        &xml_path,
        &fixture.cert_path,
        TokenType::Saml11
    ));
    assert!(python_oracle_passes(
        &xml_path,
        &fixture.cert_path,
        TokenType::Saml11,
        Some(&expected)
    ));
}

#[test]
fn flipping_one_upn_character_makes_both_oracles_fail() {
    if !oracles_available() {
        return;
    }
    let fixture = Fixture::new();
    for token_type in [TokenType::Saml11, TokenType::Saml20] {
        let assertion = fixture.assertion(token_type);
        assert_eq!(assertion.xml.matches(UPN).count(), 1);
        let tampered = assertion.xml.replace(UPN, "blice@contoso.com");
        let xml_path = fixture.write("tampered.xml", &tampered);
        assert!(!xmlsec1_verifies(&xml_path, &fixture.cert_path, token_type));
        assert!(!python_oracle_passes(
            &xml_path,
            &fixture.cert_path,
            token_type,
            None
        ));
    }
}
