//! STAND-IN for the `saml` module, written only so that `wstrust` compiles on the `soap` branch.
//! It holds exactly the two items `wstrust` uses; the real module replaces this file at merge.

use time::OffsetDateTime;

/// The kind of assertion issued (stand-in).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    /// SAML 1.1 assertion.
    Saml11,
    /// SAML 2.0 assertion.
    Saml20,
}

impl TokenType {
    /// The token type URI written in the RSTR.
    pub fn uri(self) -> &'static str {
        match self {
            Self::Saml11 => "urn:oasis:names:tc:SAML:1.0:assertion",
            Self::Saml20 => "urn:oasis:names:tc:SAML:2.0:assertion",
        }
    }
}

/// A signed assertion ready to embed (stand-in).
#[derive(Clone, Debug)]
pub struct SignedAssertion {
    /// The AssertionID / ID attribute value.
    pub id: String,
    /// Which SAML version the XML is.
    pub token_type: TokenType,
    /// The signed assertion XML, embedded byte-for-byte.
    pub xml: String,
    /// Start of validity.
    pub not_before: OffsetDateTime,
    /// End of validity.
    pub not_on_or_after: OffsetDateTime,
}
