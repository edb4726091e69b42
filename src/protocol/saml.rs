//! Claims → signed SAML assertion (SAML 1.1 for WS-Trust, SAML 2.0 for SAML-P / saml2-bearer).
//!
//! The assertion is written directly in exclusive-canonical form (see [`crate::protocol::xmldsig`]), with
//! its own `xmlns:saml` declaration, and signed as it is; the resulting bytes must be embedded
//! unchanged in the response. Shapes: docs/protocol-notes.md#saml-assertions.

use time::{Duration, OffsetDateTime, UtcOffset};

use crate::crypto::{KeyStore, SigningIdentity};
use crate::protocol::xmldsig::{CanonicalWriter, SignaturePlacement, XmlDsigError, sign_enveloped};

const SAML11_NS: &str = "urn:oasis:names:tc:SAML:1.0:assertion";
const SAML20_NS: &str = "urn:oasis:names:tc:SAML:2.0:assertion";
const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const BEARER_11: &str = "urn:oasis:names:tc:SAML:1.0:cm:bearer";
const BEARER_20: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";
const UPN_NAMESPACE: &str = "http://schemas.xmlsoap.org/claims";
const IMMUTABLE_ID_NAMESPACE: &str = "http://schemas.microsoft.com/LiveID/Federation/2008/05";
const AMR_NAMESPACE: &str = "http://schemas.microsoft.com/claims";
const AMR_PASSWORD: &str =
    "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password";
const AMR_WINDOWS: &str =
    "http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/windows";
const AMR_MULTIPLE_AUTHN: &str = "http://schemas.microsoft.com/claims/multipleauthn";
const AM_PASSWORD_11: &str = "urn:oasis:names:tc:SAML:1.0:am:password";
const AC_PASSWORD_PROTECTED_TRANSPORT: &str =
    "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport";
const AM_WINDOWS: &str = "urn:federation:authentication:windows";

/// Why an assertion could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SamlError {
    /// Signing the assertion failed.
    #[error("could not sign the SAML assertion: {0}")]
    Signature(#[from] XmlDsigError),
    /// No random assertion id: the generator failed (no token without a fresh id).
    #[error("could not make a random assertion id: {0}")]
    Random(#[from] crate::random::RandomError),
}

/// How the user authenticated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthnMethod {
    /// Username and password (usernamemixed, passive forms).
    Password,
    /// Integrated Windows authentication (Kerberos / SPNEGO).
    Windows,
}

impl AuthnMethod {
    /// `authnmethodsreferences` claim value.
    fn amr(self) -> &'static str {
        match self {
            Self::Password => AMR_PASSWORD,
            Self::Windows => AMR_WINDOWS,
        }
    }

    /// SAML 1.1 `AuthenticationMethod`.
    fn saml11_method(self) -> &'static str {
        match self {
            Self::Password => AM_PASSWORD_11,
            Self::Windows => AM_WINDOWS,
        }
    }

    /// SAML 2.0 `AuthnContextClassRef`.
    fn saml20_class(self) -> &'static str {
        match self {
            Self::Password => AC_PASSWORD_PROTECTED_TRANSPORT,
            Self::Windows => AM_WINDOWS,
        }
    }
}

/// One attribute: AttributeNamespace + AttributeName (SAML 1.1) / Name = ns + "/" + name (SAML 2.0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimAttribute {
    /// SAML 1.1 `AttributeNamespace`, e.g. `http://schemas.xmlsoap.org/claims`.
    pub namespace: String,
    /// SAML 1.1 `AttributeName`, e.g. `UPN`.
    pub name: String,
    /// One `AttributeValue` each, in order.
    pub values: Vec<String>,
}

impl ClaimAttribute {
    fn new(namespace: &str, name: &str, values: Vec<String>) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            values,
        }
    }

    /// The full claim URI, used as SAML 2.0 `Name`.
    fn claim_uri(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// Everything an assertion says, decided before we build it.
#[derive(Clone, Debug)]
pub struct Claims {
    /// Assertion issuer: the IssuerUri configured for the user's domain in Entra.
    pub issuer: String,
    /// Audience, normally [`crate::protocol::ns::MICROSOFT_ONLINE`].
    pub audience: String,
    /// The Entra `onPremisesImmutableId` (NameIdentifier and ImmutableID claim).
    pub immutable_id: String,
    /// The user principal name.
    pub upn: String,
    /// How the user authenticated.
    pub authn_method: AuthnMethod,
    /// When the user authenticated.
    pub authn_instant: OffsetDateTime,
    /// Whether multi-factor authentication really happened (adds `multipleauthn`).
    pub mfa_performed: bool,
    /// Further attributes, emitted after the standard ones (e.g. insidecorporatenetwork, accounttype).
    pub extra_attributes: Vec<ClaimAttribute>,
}

impl Claims {
    /// SAML 1.1 `AuthenticationMethod`: `multipleauthn` when a second factor was checked (as
    /// ADFS does after MFA), else the first factor's method.
    fn saml11_authentication_method(&self) -> &'static str {
        if self.mfa_performed {
            AMR_MULTIPLE_AUTHN
        } else {
            self.authn_method.saml11_method()
        }
    }

    /// UPN, ImmutableID, authnmethodsreferences, then the extra attributes.
    fn attributes(&self) -> Vec<ClaimAttribute> {
        let mut amr = vec![self.authn_method.amr().to_owned()];
        if self.mfa_performed {
            amr.push(AMR_MULTIPLE_AUTHN.to_owned());
        }
        let mut attributes = vec![
            ClaimAttribute::new(UPN_NAMESPACE, "UPN", vec![self.upn.clone()]),
            ClaimAttribute::new(
                IMMUTABLE_ID_NAMESPACE,
                "ImmutableID",
                vec![self.immutable_id.clone()],
            ),
            ClaimAttribute::new(AMR_NAMESPACE, "authnmethodsreferences", amr),
        ];
        attributes.extend(self.extra_attributes.iter().cloned());
        attributes
    }
}

const SAML11_PROFILE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1";
const SAML20_PROFILE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0";

/// The kind of assertion to issue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// SAML 1.1 (what Entra expects on WS-Trust).
    Saml11,
    /// SAML 2.0.
    Saml20,
}

impl TokenType {
    /// `urn:oasis:names:tc:SAML:1.0:assertion` or `urn:oasis:names:tc:SAML:2.0:assertion`.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Saml11 => SAML11_NS,
            Self::Saml20 => SAML20_NS,
        }
    }

    /// The SAML token profile's name for the type (`…#SAMLV1.1` / `…#SAMLV2.0`), used in
    /// WS-Security token references.
    pub fn profile_uri(self) -> &'static str {
        match self {
            Self::Saml11 => SAML11_PROFILE,
            Self::Saml20 => SAML20_PROFILE,
        }
    }

    /// Parses a token type URI: the assertion namespace or the token-profile form.
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri {
            SAML11_NS | SAML11_PROFILE => Some(Self::Saml11),
            SAML20_NS | SAML20_PROFILE => Some(Self::Saml20),
            _ => None,
        }
    }
}

/// A signed assertion, ready to embed byte-for-byte.
#[derive(Clone, Debug)]
pub struct SignedAssertion {
    /// `AssertionID` (1.1) / `ID` (2.0).
    pub id: String,
    /// Which SAML version `xml` is.
    pub token_type: TokenType,
    /// The signed assertion; embed exactly these bytes.
    pub xml: String,
    /// Start of validity (the issue instant, truncated to milliseconds).
    pub not_before: OffsetDateTime,
    /// End of validity (not_before + lifetime).
    pub not_on_or_after: OffsetDateTime,
    /// SHA-256 fingerprint of the certificate of the key that signed it (what the audit
    /// record names).
    pub signing_key_sha256: String,
    /// Where that key is kept.
    pub signing_store: KeyStore,
}

/// Validity window and id chosen by the caller (so tests are deterministic).
#[derive(Clone, Debug)]
pub struct Issuance {
    /// `_` followed by a UUID.
    pub assertion_id: String,
    /// When the assertion is issued; also NotBefore.
    pub issue_instant: OffsetDateTime,
    /// How long the assertion is valid.
    pub lifetime: Duration,
}

impl Issuance {
    /// A fresh random `_uuid` id, issued at `now`, valid for `lifetime`.
    pub fn new(now: OffsetDateTime, lifetime: Duration) -> Result<Self, SamlError> {
        Ok(Self {
            assertion_id: format!("_{}", crate::random::uuid()?),
            issue_instant: now,
            lifetime,
        })
    }
}

/// Formats an instant the way ADFS does: `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
///
/// Written digit by digit rather than with `format!`: a token carries five to seven of these,
/// and padded `Display` fields cost several times the digits themselves (callgrind).
pub fn format_instant(instant: OffsetDateTime) -> String {
    let utc = instant.checked_to_offset(UtcOffset::UTC).unwrap_or(instant);
    let mut text = String::with_capacity(24);
    let year = utc.year();
    if year < 0 {
        // `{:04}` counts the sign in the width, so year -1 is `-001`.
        text.push('-');
        push_padded(&mut text, year.unsigned_abs(), 3);
    } else {
        push_padded(&mut text, year.unsigned_abs(), 4);
    }
    let fields = [
        ('-', u32::from(u8::from(utc.month())), 2),
        ('-', u32::from(utc.day()), 2),
        ('T', u32::from(utc.hour()), 2),
        (':', u32::from(utc.minute()), 2),
        (':', u32::from(utc.second()), 2),
        ('.', u32::from(utc.millisecond()), 3),
    ];
    for (separator, value, width) in fields {
        text.push(separator);
        push_padded(&mut text, value, width);
    }
    text.push('Z');
    text
}

/// Appends `value` in decimal, zero-padded on the left to at least `width` digits.
fn push_padded(out: &mut String, value: u32, width: usize) {
    let mut digits = [b'0'; 10];
    let mut first = digits.len();
    let mut rest = value;
    loop {
        first -= 1;
        digits[first] = b"0123456789"[(rest % 10) as usize];
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let first = first.min(digits.len().saturating_sub(width));
    out.extend(digits[first..].iter().copied().map(char::from));
}

/// Drops sub-millisecond precision so that stored times equal the formatted ones.
fn truncate_to_millis(instant: OffsetDateTime) -> OffsetDateTime {
    let millis_only = instant.nanosecond() - instant.nanosecond() % 1_000_000;
    instant.replace_nanosecond(millis_only).unwrap_or(instant)
}

/// The validity window, already truncated and formatted.
struct Window {
    not_before: OffsetDateTime,
    not_on_or_after: OffsetDateTime,
    not_before_text: String,
    not_on_or_after_text: String,
    authn_instant_text: String,
}

impl Window {
    fn new(claims: &Claims, issuance: &Issuance) -> Self {
        let not_before = truncate_to_millis(issuance.issue_instant);
        let not_on_or_after = not_before + issuance.lifetime;
        Self {
            not_before,
            not_on_or_after,
            not_before_text: format_instant(not_before),
            not_on_or_after_text: format_instant(not_on_or_after),
            authn_instant_text: format_instant(claims.authn_instant),
        }
    }
}

/// Builds the assertion in canonical form and signs it with `identity`.
pub fn build_signed_assertion(
    claims: &Claims,
    token_type: TokenType,
    issuance: &Issuance,
    identity: &SigningIdentity,
) -> Result<SignedAssertion, SamlError> {
    let window = Window::new(claims, issuance);
    let id = &issuance.assertion_id;
    let xml = match token_type {
        TokenType::Saml11 => sign_enveloped(
            &saml11_assertion(claims, id, &window),
            id,
            SignaturePlacement::LastChild,
            identity,
        )?,
        TokenType::Saml20 => sign_enveloped(
            &saml20_assertion(claims, id, &window),
            id,
            SignaturePlacement::AfterFirstChild,
            identity,
        )?,
    };
    Ok(SignedAssertion {
        id: id.clone(),
        token_type,
        xml,
        not_before: window.not_before,
        not_on_or_after: window.not_on_or_after,
        signing_key_sha256: identity.fingerprint().to_owned(),
        signing_store: identity.signer.store(),
    })
}

/// Room for an assertion without its Signature: about 2 KiB with the claims Entra needs; a
/// larger one (many groups) grows its buffer as usual.
const ASSERTION_BYTES: usize = 4096;

/// The canonical SAML 1.1 assertion without its Signature (docs/protocol-notes.md#saml-11-shape).
fn saml11_assertion(claims: &Claims, id: &str, window: &Window) -> String {
    let mut w = CanonicalWriter::with_capacity(ASSERTION_BYTES);
    w.start(
        "saml:Assertion",
        &[
            ("xmlns:saml", SAML11_NS),
            ("MajorVersion", "1"),
            ("MinorVersion", "1"),
            ("AssertionID", id),
            ("Issuer", &claims.issuer),
            ("IssueInstant", &window.not_before_text),
        ],
    );
    w.start(
        "saml:Conditions",
        &[
            ("NotBefore", &window.not_before_text),
            ("NotOnOrAfter", &window.not_on_or_after_text),
        ],
    );
    w.start("saml:AudienceRestrictionCondition", &[]);
    w.text_element("saml:Audience", &[], &claims.audience);
    w.end();
    w.end();
    w.start("saml:AttributeStatement", &[]);
    saml11_subject(&mut w, &claims.immutable_id);
    for attribute in claims.attributes() {
        w.start(
            "saml:Attribute",
            &[
                ("AttributeName", &attribute.name),
                ("AttributeNamespace", &attribute.namespace),
            ],
        );
        for value in &attribute.values {
            w.text_element("saml:AttributeValue", &[], value);
        }
        w.end();
    }
    w.end();
    w.start(
        "saml:AuthenticationStatement",
        &[
            (
                "AuthenticationMethod",
                claims.saml11_authentication_method(),
            ),
            ("AuthenticationInstant", &window.authn_instant_text),
        ],
    );
    saml11_subject(&mut w, &claims.immutable_id);
    w.finish()
}

/// SAML 1.1 `Subject`: unspecified-format NameIdentifier and bearer confirmation.
fn saml11_subject(w: &mut CanonicalWriter, immutable_id: &str) {
    w.start("saml:Subject", &[]);
    w.text_element(
        "saml:NameIdentifier",
        &[("Format", NAMEID_UNSPECIFIED)],
        immutable_id,
    );
    w.start("saml:SubjectConfirmation", &[]);
    w.text_element("saml:ConfirmationMethod", &[], BEARER_11);
    w.end();
    w.end();
}

/// The canonical SAML 2.0 assertion without its Signature (docs/protocol-notes.md#saml-20).
fn saml20_assertion(claims: &Claims, id: &str, window: &Window) -> String {
    let mut w = CanonicalWriter::with_capacity(ASSERTION_BYTES);
    w.start(
        "saml:Assertion",
        &[
            ("xmlns:saml", SAML20_NS),
            ("ID", id),
            ("IssueInstant", &window.not_before_text),
            ("Version", "2.0"),
        ],
    );
    w.text_element("saml:Issuer", &[], &claims.issuer);
    w.start("saml:Subject", &[]);
    w.text_element(
        "saml:NameID",
        &[("Format", NAMEID_PERSISTENT)],
        &claims.immutable_id,
    );
    w.start("saml:SubjectConfirmation", &[("Method", BEARER_20)]);
    w.text_element(
        "saml:SubjectConfirmationData",
        &[("NotOnOrAfter", &window.not_on_or_after_text)],
        "",
    );
    w.end();
    w.end();
    w.start(
        "saml:Conditions",
        &[
            ("NotBefore", &window.not_before_text),
            ("NotOnOrAfter", &window.not_on_or_after_text),
        ],
    );
    w.start("saml:AudienceRestriction", &[]);
    w.text_element("saml:Audience", &[], &claims.audience);
    w.end();
    w.end();
    w.start("saml:AttributeStatement", &[]);
    for attribute in claims.attributes() {
        w.start("saml:Attribute", &[("Name", &attribute.claim_uri())]);
        for value in &attribute.values {
            w.text_element("saml:AttributeValue", &[], value);
        }
        w.end();
    }
    w.end();
    w.start(
        "saml:AuthnStatement",
        &[("AuthnInstant", &window.authn_instant_text)],
    );
    w.start("saml:AuthnContext", &[]);
    w.text_element(
        "saml:AuthnContextClassRef",
        &[],
        claims.authn_method.saml20_class(),
    );
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::test_support::generated_identity;
    use crate::protocol::xmldsig::test_support::{between, verify_enveloped};
    use time::macros::datetime;

    fn claims() -> Claims {
        Claims {
            issuer: "http://sts.contoso.com/adfs/services/trust".into(),
            audience: crate::protocol::ns::MICROSOFT_ONLINE.into(),
            immutable_id: "1TIu064jGEmmf+hnI+F0Jg==".into(),
            upn: "alice@contoso.com".into(),
            authn_method: AuthnMethod::Password,
            authn_instant: datetime!(2026-03-01 09:59:58.123456 UTC),
            mfa_performed: false,
            extra_attributes: vec![ClaimAttribute {
                namespace: "http://schemas.microsoft.com/ws/2012/01".into(),
                name: "insidecorporatenetwork".into(),
                values: vec!["true".into()],
            }],
        }
    }

    fn issuance() -> Issuance {
        Issuance {
            assertion_id: "_6a5c8d1e-0000-4000-8000-000000000001".into(),
            issue_instant: datetime!(2026-03-01 10:00:00.987654321 +01:00),
            lifetime: Duration::hours(1),
        }
    }

    const EXPECTED_SAML11: &str = concat!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" AssertionID="_6a5c8d1e-0000-4000-8000-000000000001" IssueInstant="2026-03-01T09:00:00.987Z" Issuer="http://sts.contoso.com/adfs/services/trust" MajorVersion="1" MinorVersion="1">"#,
        r#"<saml:Conditions NotBefore="2026-03-01T09:00:00.987Z" NotOnOrAfter="2026-03-01T10:00:00.987Z"><saml:AudienceRestrictionCondition><saml:Audience>urn:federation:MicrosoftOnline</saml:Audience></saml:AudienceRestrictionCondition></saml:Conditions>"#,
        r#"<saml:AttributeStatement><saml:Subject><saml:NameIdentifier Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">1TIu064jGEmmf+hnI+F0Jg==</saml:NameIdentifier><saml:SubjectConfirmation><saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer</saml:ConfirmationMethod></saml:SubjectConfirmation></saml:Subject>"#,
        r#"<saml:Attribute AttributeName="UPN" AttributeNamespace="http://schemas.xmlsoap.org/claims"><saml:AttributeValue>alice@contoso.com</saml:AttributeValue></saml:Attribute>"#,
        r#"<saml:Attribute AttributeName="ImmutableID" AttributeNamespace="http://schemas.microsoft.com/LiveID/Federation/2008/05"><saml:AttributeValue>1TIu064jGEmmf+hnI+F0Jg==</saml:AttributeValue></saml:Attribute>"#,
        r#"<saml:Attribute AttributeName="authnmethodsreferences" AttributeNamespace="http://schemas.microsoft.com/claims"><saml:AttributeValue>http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password</saml:AttributeValue></saml:Attribute>"#,
        r#"<saml:Attribute AttributeName="insidecorporatenetwork" AttributeNamespace="http://schemas.microsoft.com/ws/2012/01"><saml:AttributeValue>true</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"#,
        r#"<saml:AuthenticationStatement AuthenticationInstant="2026-03-01T09:59:58.123Z" AuthenticationMethod="urn:oasis:names:tc:SAML:1.0:am:password"><saml:Subject><saml:NameIdentifier Format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified">1TIu064jGEmmf+hnI+F0Jg==</saml:NameIdentifier><saml:SubjectConfirmation><saml:ConfirmationMethod>urn:oasis:names:tc:SAML:1.0:cm:bearer</saml:ConfirmationMethod></saml:SubjectConfirmation></saml:Subject></saml:AuthenticationStatement>"#,
        r#"</saml:Assertion>"#,
    );

    const EXPECTED_SAML20: &str = concat!(
        r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" ID="_6a5c8d1e-0000-4000-8000-000000000001" IssueInstant="2026-03-01T09:00:00.987Z" Version="2.0">"#,
        r#"<saml:Issuer>http://sts.contoso.com/adfs/services/trust</saml:Issuer>"#,
        r#"<saml:Subject><saml:NameID Format="urn:oasis:names:tc:SAML:2.0:nameid-format:persistent">1TIu064jGEmmf+hnI+F0Jg==</saml:NameID><saml:SubjectConfirmation Method="urn:oasis:names:tc:SAML:2.0:cm:bearer"><saml:SubjectConfirmationData NotOnOrAfter="2026-03-01T10:00:00.987Z"></saml:SubjectConfirmationData></saml:SubjectConfirmation></saml:Subject>"#,
        r#"<saml:Conditions NotBefore="2026-03-01T09:00:00.987Z" NotOnOrAfter="2026-03-01T10:00:00.987Z"><saml:AudienceRestriction><saml:Audience>urn:federation:MicrosoftOnline</saml:Audience></saml:AudienceRestriction></saml:Conditions>"#,
        r#"<saml:AttributeStatement><saml:Attribute Name="http://schemas.xmlsoap.org/claims/UPN"><saml:AttributeValue>alice@contoso.com</saml:AttributeValue></saml:Attribute>"#,
        r#"<saml:Attribute Name="http://schemas.microsoft.com/LiveID/Federation/2008/05/ImmutableID"><saml:AttributeValue>1TIu064jGEmmf+hnI+F0Jg==</saml:AttributeValue></saml:Attribute>"#,
        r#"<saml:Attribute Name="http://schemas.microsoft.com/claims/authnmethodsreferences"><saml:AttributeValue>http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password</saml:AttributeValue></saml:Attribute>"#,
        r#"<saml:Attribute Name="http://schemas.microsoft.com/ws/2012/01/insidecorporatenetwork"><saml:AttributeValue>true</saml:AttributeValue></saml:Attribute></saml:AttributeStatement>"#,
        r#"<saml:AuthnStatement AuthnInstant="2026-03-01T09:59:58.123Z"><saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef></saml:AuthnContext></saml:AuthnStatement>"#,
        r#"</saml:Assertion>"#,
    );

    #[test]
    fn saml11_assertion_has_exact_canonical_bytes_and_a_valid_signature() {
        let identity = generated_identity();
        let signed =
            build_signed_assertion(&claims(), TokenType::Saml11, &issuance(), &identity).unwrap();
        assert_eq!(
            verify_enveloped(&signed.xml, &identity).unwrap(),
            EXPECTED_SAML11
        );
        let signature_at = signed.xml.find("<Signature ").unwrap();
        assert_eq!(
            &signed.xml[..signature_at],
            &EXPECTED_SAML11[..EXPECTED_SAML11.len() - "</saml:Assertion>".len()]
        );
        assert!(signed.xml.ends_with("</Signature></saml:Assertion>"));
        assert_eq!(
            between(&signed.xml, "<Reference URI=\"", "\""),
            "#_6a5c8d1e-0000-4000-8000-000000000001"
        );
        assert_eq!(signed.id, "_6a5c8d1e-0000-4000-8000-000000000001");
        assert_eq!(signed.token_type, TokenType::Saml11);
        assert_eq!(signed.not_before, datetime!(2026-03-01 09:00:00.987 UTC));
        assert_eq!(
            signed.not_on_or_after,
            datetime!(2026-03-01 10:00:00.987 UTC)
        );
    }

    #[test]
    fn saml20_assertion_has_exact_canonical_bytes_and_signature_after_issuer() {
        let identity = generated_identity();
        let signed =
            build_signed_assertion(&claims(), TokenType::Saml20, &issuance(), &identity).unwrap();
        assert_eq!(
            verify_enveloped(&signed.xml, &identity).unwrap(),
            EXPECTED_SAML20
        );
        let issuer_end = EXPECTED_SAML20.find("</saml:Issuer>").unwrap() + "</saml:Issuer>".len();
        assert_eq!(
            &signed.xml[..issuer_end + "<Signature ".len()],
            format!("{}<Signature ", &EXPECTED_SAML20[..issuer_end])
        );
        assert_eq!(signed.token_type, TokenType::Saml20);
    }

    #[test]
    fn mfa_adds_multipleauthn_after_the_method() {
        let identity = generated_identity();
        let mut claims = claims();
        claims.mfa_performed = true;
        let signed =
            build_signed_assertion(&claims, TokenType::Saml11, &issuance(), &identity).unwrap();
        assert!(signed.xml.contains(concat!(
            r#"<saml:Attribute AttributeName="authnmethodsreferences" AttributeNamespace="http://schemas.microsoft.com/claims">"#,
            r#"<saml:AttributeValue>http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/password</saml:AttributeValue>"#,
            r#"<saml:AttributeValue>http://schemas.microsoft.com/claims/multipleauthn</saml:AttributeValue></saml:Attribute>"#
        )));
        let without_mfa =
            build_signed_assertion(&self::claims(), TokenType::Saml11, &issuance(), &identity)
                .unwrap();
        assert!(!without_mfa.xml.contains("multipleauthn"));
    }

    #[test]
    fn windows_authentication_uses_windows_uris() {
        let identity = generated_identity();
        let mut claims = claims();
        claims.authn_method = AuthnMethod::Windows;
        let saml11 =
            build_signed_assertion(&claims, TokenType::Saml11, &issuance(), &identity).unwrap();
        assert!(
            saml11
                .xml
                .contains(r#"AuthenticationMethod="urn:federation:authentication:windows""#)
        );
        assert!(saml11.xml.contains(
            "<saml:AttributeValue>http://schemas.microsoft.com/ws/2008/06/identity/authenticationmethod/windows</saml:AttributeValue>"
        ));
        let saml20 =
            build_signed_assertion(&claims, TokenType::Saml20, &issuance(), &identity).unwrap();
        assert!(saml20.xml.contains(
            "<saml:AuthnContextClassRef>urn:federation:authentication:windows</saml:AuthnContextClassRef>"
        ));
    }

    #[test]
    fn hostile_values_are_escaped_and_still_signed_correctly() {
        let identity = generated_identity();
        let mut claims = claims();
        claims.upn = "a<b&c\"d\re>f@contoso.com".into();
        claims.issuer = "http://x/?a=1&b=\"2\"<\t\n".into();
        let signed =
            build_signed_assertion(&claims, TokenType::Saml11, &issuance(), &identity).unwrap();
        let unsigned = verify_enveloped(&signed.xml, &identity).unwrap();
        assert!(unsigned.contains(
            "<saml:AttributeValue>a&lt;b&amp;c\"d&#xD;e&gt;f@contoso.com</saml:AttributeValue>"
        ));
        assert!(unsigned.contains(r#"Issuer="http://x/?a=1&amp;b=&quot;2&quot;&lt;&#x9;&#xA;""#));
    }

    #[test]
    fn token_type_uris_round_trip() {
        assert_eq!(
            TokenType::Saml11.uri(),
            "urn:oasis:names:tc:SAML:1.0:assertion"
        );
        assert_eq!(
            TokenType::Saml20.uri(),
            "urn:oasis:names:tc:SAML:2.0:assertion"
        );
        for token_type in [TokenType::Saml11, TokenType::Saml20] {
            assert_eq!(TokenType::from_uri(token_type.uri()), Some(token_type));
        }
        assert_eq!(
            TokenType::from_uri(
                "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1"
            ),
            Some(TokenType::Saml11)
        );
        assert_eq!(
            TokenType::from_uri(
                "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0"
            ),
            Some(TokenType::Saml20)
        );
        assert_eq!(
            TokenType::from_uri("urn:oasis:names:tc:SAML:1.1:assertion"),
            None
        );
    }

    #[test]
    fn instants_are_utc_with_milliseconds() {
        assert_eq!(
            format_instant(datetime!(2026-12-31 23:59:59.9999 -02:00)),
            "2027-01-01T01:59:59.999Z"
        );
        assert_eq!(
            format_instant(datetime!(2026-01-02 03:04:05 UTC)),
            "2026-01-02T03:04:05.000Z"
        );
    }

    #[test]
    fn instants_match_padded_formatting_across_the_calendar() {
        let padded = |utc: OffsetDateTime| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                utc.year(),
                u8::from(utc.month()),
                utc.day(),
                utc.hour(),
                utc.minute(),
                utc.second(),
                utc.millisecond()
            )
        };
        // From year -9999 to 9999 in steps that land on every field's edges over the run.
        let mut instant = OffsetDateTime::new_utc(
            time::Date::from_calendar_date(-9999, time::Month::January, 1).unwrap(),
            time::Time::MIDNIGHT,
        );
        let step = Duration::days(3_653) + Duration::seconds(3_599) + Duration::milliseconds(997);
        let mut checked = 0;
        loop {
            assert_eq!(format_instant(instant), padded(instant), "{instant}");
            checked += 1;
            match instant.checked_add(step) {
                Some(next) => instant = next,
                None => break,
            }
        }
        assert!(checked > 1_900, "{checked}");
        for year in [-1000, -100, -10, -1, 0, 9, 10, 99, 100, 999, 1000, 9999] {
            let edge = OffsetDateTime::new_utc(
                time::Date::from_calendar_date(year, time::Month::December, 31).unwrap(),
                time::Time::from_hms_milli(23, 59, 59, 999).unwrap(),
            );
            assert_eq!(format_instant(edge), padded(edge));
        }
    }

    #[test]
    fn new_issuance_has_an_underscore_uuid_id() {
        let now = datetime!(2026-03-01 10:00 UTC);
        let issuance = Issuance::new(now, Duration::minutes(60)).unwrap();
        assert_eq!(issuance.assertion_id.len(), 37);
        assert!(issuance.assertion_id.starts_with('_'));
        assert!(uuid::Uuid::parse_str(&issuance.assertion_id[1..]).is_ok());
        assert_eq!(issuance.issue_instant, now);
        assert_ne!(
            Issuance::new(now, Duration::minutes(60))
                .unwrap()
                .assertion_id,
            issuance.assertion_id
        );
    }
}
