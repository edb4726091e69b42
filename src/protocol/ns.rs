//! The XML namespace URIs and well-known URNs that several protocol modules share. Names a single
//! module needs stay in that module.

/// SOAP 1.2 envelope.
pub const SOAP12: &str = "http://www.w3.org/2003/05/soap-envelope";
/// WS-Addressing 1.0.
pub const WSA: &str = "http://www.w3.org/2005/08/addressing";
/// WS-Policy 2004/09 (AppliesTo, MEX policies).
pub const WSP: &str = "http://schemas.xmlsoap.org/ws/2004/09/policy";
/// WS-Security utility (Timestamp, Created, Expires, Id).
pub const WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// WS-Security 1.0 secext (Security, UsernameToken).
pub const WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
/// WS-Trust 1.3.
pub const TRUST_13: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512";
/// WS-Trust 2005 (February 2005).
pub const TRUST_2005: &str = "http://schemas.xmlsoap.org/ws/2005/02/trust";
/// Entra ID: the audience of every assertion, the AppliesTo of Microsoft clients and the
/// `wtrealm` of passive sign-in.
pub const MICROSOFT_ONLINE: &str = "urn:federation:MicrosoftOnline";
