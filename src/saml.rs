//! Claims → signed SAML assertion (SAML 1.1 for WS-Trust, SAML 2.0 for SAML-P / saml2-bearer).
//!
//! The assertion is written directly in exclusive-canonical form (see [`crate::xmldsig`]), with
//! its own `xmlns:saml` declaration, and signed as it is; the resulting bytes must be embedded
//! unchanged in the response. Shapes follow protocol.md §4.1 (SAML 1.1) and §4.5 (SAML 2.0).

use time::{Duration, OffsetDateTime, UtcOffset};

use crate::crypto::SigningIdentity;
use crate::xmldsig::{CanonicalWriter, SignaturePlacement, XmlDsigError, sign_enveloped};

/// The audience Entra ID expects in every assertion.
pub const AUDIENCE_MICROSOFT_ONLINE: &str = "urn:federation:MicrosoftOnline";

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
pub struct Attribute {
    /// SAML 1.1 `AttributeNamespace`, e.g. `http://schemas.xmlsoap.org/claims`.
    pub namespace: String,
    /// SAML 1.1 `AttributeName`, e.g. `UPN`.
    pub name: String,
    /// One `AttributeValue` each, in order.
    pub values: Vec<String>,
}

impl Attribute {
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
    /// Audience, normally [`AUDIENCE_MICROSOFT_ONLINE`].
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
    pub extra_attributes: Vec<Attribute>,
}

impl Claims {
    /// UPN, ImmutableID, authnmethodsreferences, then the extra attributes.
    fn attributes(&self) -> Vec<Attribute> {
        let mut amr = vec![self.authn_method.amr().to_owned()];
        if self.mfa_performed {
            amr.push(AMR_MULTIPLE_AUTHN.to_owned());
        }
        let mut attributes = vec![
            Attribute::new(UPN_NAMESPACE, "UPN", vec![self.upn.clone()]),
            Attribute::new(
                IMMUTABLE_ID_NAMESPACE,
                "ImmutableID",
                vec![self.immutable_id.clone()],
            ),
            Attribute::new(AMR_NAMESPACE, "authnmethodsreferences", amr),
        ];
        attributes.extend(self.extra_attributes.iter().cloned());
        attributes
    }
}

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

    /// Parses a token type URI; also accepts the token-profile `…#SAMLV1.1` / `…#SAMLV2.0` forms.
    pub fn from_uri(uri: &str) -> Option<Self> {
        match uri {
            SAML11_NS
            | "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1" => {
                Some(Self::Saml11)
            }
            SAML20_NS
            | "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0" => {
                Some(Self::Saml20)
            }
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
    pub fn new(now: OffsetDateTime, lifetime: Duration) -> Self {
        Self {
            assertion_id: format!("_{}", uuid::Uuid::new_v4()),
            issue_instant: now,
            lifetime,
        }
    }
}

/// Formats an instant the way ADFS does: `YYYY-MM-DDTHH:MM:SS.mmmZ` in UTC.
pub fn format_instant(instant: OffsetDateTime) -> String {
    let utc = instant.to_offset(UtcOffset::UTC);
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
    })
}

/// The canonical SAML 1.1 assertion without its Signature (protocol.md §4.1).
fn saml11_assertion(claims: &Claims, id: &str, window: &Window) -> String {
    let mut w = CanonicalWriter::new();
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
            ("AuthenticationMethod", claims.authn_method.saml11_method()),
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

/// The canonical SAML 2.0 assertion without its Signature (protocol.md §4.5).
fn saml20_assertion(claims: &Claims, id: &str, window: &Window) -> String {
    let mut w = CanonicalWriter::new();
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
