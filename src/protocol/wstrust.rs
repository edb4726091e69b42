//! WS-Trust 1.3 and 2005 Issue: the RequestSecurityToken in, the RequestSecurityTokenResponse out.
//!
//! Requests are read by exact path (`Envelope/Header/Security/UsernameToken/{Username,Password}`,
//! `Envelope/Body/RequestSecurityToken`) with namespaces deciding and prefixes ignored, so a
//! second token smuggled anywhere else is never looked at. This module only carries the
//! password to the caller; it never checks, logs or prints it.

use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::protocol::ns::{MICROSOFT_ONLINE, TRUST_13, TRUST_2005, WSA, WSP, WSSE, WSU};
use crate::protocol::saml::{SignedAssertion, TokenType, format_instant};
use crate::protocol::soap::{self, FaultCode};
use crate::protocol::xml::{self, Element};
use crate::secret::Secret;
/// WS-Security 1.1 secext namespace (used for `k:TokenType` in token references).
pub const WSSE11_NS: &str = "http://docs.oasis-open.org/wss/oasis-wss-wssecurity-secext-1.1.xsd";
/// WS-Addressing 2004/08 namespace, accepted in AppliesTo and MessageID.
pub const WSA_2004_NS: &str = "http://schemas.xmlsoap.org/ws/2004/08/addressing";
/// WS-Policy 1.5 namespace, also accepted for AppliesTo.
pub const WSP_15_NS: &str = "http://www.w3.org/ns/ws-policy";
/// The legacy AppliesTo of the Sign-In Assistant / early ADAL era.
pub const LEGACY_EXTSTS: &str = "https://login.microsoftonline.com/extSTS.srf";

const PASSWORD_TEXT: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordText";
const PASSWORD_DIGEST: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
const NO_PROOF_KEY: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey";
const BEARER_13: &str = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer";
const SAML11_ASSERTION_ID: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0#SAMLAssertionID";
const SAML20_ID: &str = "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID";
/// How long the response's own Security/Timestamp is valid (ADFS uses 5 minutes).
const RESPONSE_TIMESTAMP_VALIDITY: Duration = Duration::minutes(5);

/// The WS-Trust version of an endpoint and of the messages it exchanges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustVersion {
    /// WS-Trust 1.3 (`/trust/13/...`).
    V13,
    /// WS-Trust February 2005 (`/trust/2005/...`).
    V2005,
}

impl TrustVersion {
    /// The version's trust namespace.
    pub fn namespace(self) -> &'static str {
        match self {
            Self::V13 => TRUST_13,
            Self::V2005 => TRUST_2005,
        }
    }

    /// The WS-Addressing action (and SOAPAction) of an Issue request.
    pub fn issue_action(self) -> &'static str {
        match self {
            Self::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue",
            Self::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue",
        }
    }

    /// The version named by an endpoint path segment: `"13"` or `"2005"`.
    pub fn from_path_segment(segment: &str) -> Option<Self> {
        match segment {
            "13" => Some(Self::V13),
            "2005" => Some(Self::V2005),
            _ => None,
        }
    }

    /// The endpoint path segment of the version: `"13"` or `"2005"`.
    pub fn path_segment(self) -> &'static str {
        match self {
            Self::V13 => "13",
            Self::V2005 => "2005",
        }
    }

    /// The WS-Addressing action of a successful Issue response.
    fn response_action(self) -> &'static str {
        match self {
            Self::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal",
            Self::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/RSTR/Issue",
        }
    }

    /// The `RequestType` URI of Issue.
    fn issue_request_type(self) -> &'static str {
        match self {
            Self::V13 => "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
            Self::V2005 => "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue",
        }
    }

    /// The bearer `KeyType` URI written in responses.
    fn bearer_key_type(self) -> &'static str {
        match self {
            Self::V13 => BEARER_13,
            Self::V2005 => NO_PROOF_KEY,
        }
    }

    /// The prefix this module writes for the version's trust namespace (as ADFS does).
    fn prefix(self) -> &'static str {
        match self {
            Self::V13 => "trust",
            Self::V2005 => "t",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::V13 => Self::V2005,
            Self::V2005 => Self::V13,
        }
    }
}

/// The request's `wsu:Timestamp`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timestamp {
    /// `wsu:Created`.
    pub created: OffsetDateTime,
    /// `wsu:Expires`.
    pub expires: OffsetDateTime,
}

/// How strictly request timestamps are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimestampPolicy {
    /// Tolerated difference between the client's clock and ours.
    pub max_clock_skew: Duration,
    /// Longest accepted `Expires - Created`.
    pub max_window: Duration,
}

impl Default for TimestampPolicy {
    /// 5 minutes of skew, a 15-minute window (MSAL sends 10 minutes).
    fn default() -> Self {
        Self {
            max_clock_skew: Duration::minutes(5),
            max_window: Duration::minutes(15),
        }
    }
}

/// A usernamemixed Issue request.
#[derive(Clone, Debug)]
pub struct IssueRequest {
    /// The endpoint's (and request's) WS-Trust version.
    pub version: TrustVersion,
    /// `wsa:MessageID` (or msal4j's `wsa:messageID`), when sent.
    pub message_id: Option<String>,
    /// `wsse:Username`, surrounding whitespace removed.
    pub username: String,
    /// `wsse:Password`, exactly as sent.
    pub password: Secret,
    /// The request's validated timestamp.
    pub timestamp: Timestamp,
    /// The AppliesTo address as sent (one of the accepted values).
    pub applies_to: String,
    /// Requested token type; SAML 1.1 when absent.
    pub token_type: TokenType,
}

/// A windowstransport Issue request (the caller authenticates with HTTP Negotiate).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsIssueRequest {
    /// The endpoint's (and request's) WS-Trust version.
    pub version: TrustVersion,
    /// `wsa:MessageID` (or `wsa:messageID`), when sent.
    pub message_id: Option<String>,
    /// The AppliesTo address as sent (one of the accepted values).
    pub applies_to: String,
    /// Requested token type; SAML 1.1 when absent.
    pub token_type: TokenType,
}

/// Why a WS-Trust request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WsTrustError {
    /// usernamemixed request without a `wsse:Security` header.
    #[error("the request has no wsse:Security header")]
    MissingSecurityHeader,
    /// More than one `wsse:Security` header.
    #[error("the request has more than one wsse:Security header")]
    DuplicateSecurityHeader,
    /// No `wsse:UsernameToken` directly in the Security header.
    #[error("the wsse:Security header has no UsernameToken")]
    MissingUsernameToken,
    /// More than one `wsse:UsernameToken` in the Security header.
    #[error("the wsse:Security header has more than one UsernameToken")]
    DuplicateUsernameToken,
    /// A credential field occurs twice in the UsernameToken.
    #[error("the UsernameToken has more than one {0}")]
    DuplicateCredentialField(&'static str),
    /// No `wsse:Username`.
    #[error("the UsernameToken has no Username")]
    MissingUsername,
    /// `wsse:Username` is empty or whitespace.
    #[error("the UsernameToken's Username is empty")]
    EmptyUsername,
    /// No `wsse:Password`.
    #[error("the UsernameToken has no Password")]
    MissingPassword,
    /// `wsse:Password` is empty.
    #[error("the UsernameToken's Password is empty")]
    EmptyPassword,
    /// `Type="…#PasswordDigest"`: the plain password is needed to check it against the directory.
    #[error("PasswordDigest is not supported; send the password as PasswordText")]
    PasswordDigestNotSupported,
    /// A password `Type` other than PasswordText or PasswordDigest.
    #[error("unsupported password type `{0}`")]
    UnsupportedPasswordType(String),
    /// No `wsu:Timestamp` in the Security header.
    #[error("the wsse:Security header has no wsu:Timestamp")]
    MissingTimestamp,
    /// More than one `wsu:Timestamp`.
    #[error("the wsse:Security header has more than one wsu:Timestamp")]
    DuplicateTimestamp,
    /// The Timestamp lacks (or repeats) Created or Expires.
    #[error("the wsu:Timestamp needs exactly one {0}")]
    IncompleteTimestamp(&'static str),
    /// Created or Expires is not an xsd:dateTime with a time zone.
    #[error("the wsu:Timestamp {field} `{value}` is not a valid UTC date-time")]
    InvalidTimestampValue {
        /// `Created` or `Expires`.
        field: &'static str,
        /// The text received.
        value: String,
    },
    /// Created lies further in the future than the clock skew allows.
    #[error("the request timestamp is not yet valid")]
    TimestampNotYetValid,
    /// Expires lies further in the past than the clock skew allows.
    #[error("the request timestamp has expired")]
    TimestampExpired,
    /// Expires precedes Created, or the window is longer than allowed.
    #[error("the request timestamp window is invalid or too long")]
    TimestampWindowInvalid,
    /// More than one MessageID header.
    #[error("the request has more than one MessageID header")]
    DuplicateMessageId,
    /// The Body is empty.
    #[error("the SOAP Body has no RequestSecurityToken")]
    MissingRequestSecurityToken,
    /// The Body holds something other than exactly one RequestSecurityToken.
    #[error("the SOAP Body holds unexpected content `{0}`")]
    UnexpectedBodyContent(String),
    /// The RequestSecurityToken's namespace belongs to the other WS-Trust version.
    #[error("a WS-Trust {request:?} request was sent to the WS-Trust {endpoint:?} endpoint")]
    VersionMismatch {
        /// The endpoint's version.
        endpoint: TrustVersion,
        /// The version of the request body.
        request: TrustVersion,
    },
    /// An element that must be unique occurs more than once.
    #[error("the RequestSecurityToken has more than one {0}")]
    DuplicateElement(String),
    /// `RequestType` is not Issue of the endpoint's version.
    #[error("unsupported RequestType `{0}`; only Issue is supported")]
    UnsupportedRequestType(String),
    /// No `wsp:AppliesTo/wsa:EndpointReference/wsa:Address`.
    #[error("the RequestSecurityToken has no AppliesTo endpoint address")]
    MissingAppliesTo,
    /// AppliesTo is not Microsoft Online.
    #[error("AppliesTo `{0}` is not a relying party of this service")]
    UnsupportedAppliesTo(String),
    /// `TokenType` is neither SAML 1.1 nor SAML 2.0.
    #[error("unsupported TokenType `{0}`")]
    UnsupportedTokenType(String),
    /// `KeyType` asks for a proof key (or is unknown); only bearer tokens are issued.
    #[error("unsupported KeyType `{0}`; only bearer tokens are issued")]
    UnsupportedKeyType(String),
}

/// The kind of fault a [`WsTrustError`] (or another module's error) becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// Wrong credentials (trust namespace `FailedAuthentication`).
    FailedAuthentication,
    /// Malformed or unsupported request (trust namespace `InvalidRequest`).
    InvalidRequest,
    /// Server-side failure (trust namespace `RequestFailed`, `s:Receiver`).
    RequestFailed,
    /// Unusable security header (wsse `InvalidSecurity`).
    InvalidSecurity,
    /// Request timestamp expired (wsse `MessageExpired`).
    MessageExpired,
}

impl WsTrustError {
    /// The fault this error is reported as.
    pub fn fault_kind(&self) -> FaultKind {
        use WsTrustError as E;
        match self {
            E::TimestampExpired => FaultKind::MessageExpired,
            E::MissingSecurityHeader
            | E::DuplicateSecurityHeader
            | E::MissingUsernameToken
            | E::DuplicateUsernameToken
            | E::DuplicateCredentialField(_)
            | E::MissingUsername
            | E::EmptyUsername
            | E::MissingPassword
            | E::EmptyPassword
            | E::PasswordDigestNotSupported
            | E::UnsupportedPasswordType(_)
            | E::MissingTimestamp
            | E::DuplicateTimestamp
            | E::IncompleteTimestamp(_)
            | E::InvalidTimestampValue { .. }
            | E::TimestampNotYetValid
            | E::TimestampWindowInvalid => FaultKind::InvalidSecurity,
            E::DuplicateMessageId
            | E::MissingRequestSecurityToken
            | E::UnexpectedBodyContent(_)
            | E::VersionMismatch { .. }
            | E::DuplicateElement(_)
            | E::UnsupportedRequestType(_)
            | E::MissingAppliesTo
            | E::UnsupportedAppliesTo(_)
            | E::UnsupportedTokenType(_)
            | E::UnsupportedKeyType(_) => FaultKind::InvalidRequest,
        }
    }
}

/// Builds the fault for `kind`: trust faults in the request version's namespace, wsse faults
/// in the WS-Security namespace; `reason` is sent as is (keep it free of user details).
pub fn fault(
    version: TrustVersion,
    kind: FaultKind,
    reason: &str,
    relates_to: Option<&str>,
) -> soap::Fault {
    let (code, namespace, local) = match kind {
        FaultKind::FailedAuthentication => (
            FaultCode::Sender,
            version.namespace(),
            "FailedAuthentication",
        ),
        FaultKind::InvalidRequest => (FaultCode::Sender, version.namespace(), "InvalidRequest"),
        FaultKind::RequestFailed => (FaultCode::Receiver, version.namespace(), "RequestFailed"),
        FaultKind::InvalidSecurity => (FaultCode::Sender, WSSE, "InvalidSecurity"),
        FaultKind::MessageExpired => (FaultCode::Sender, WSSE, "MessageExpired"),
    };
    soap::Fault {
        code,
        subcode_ns: namespace.to_owned(),
        subcode_local: local.to_owned(),
        reason: reason.to_owned(),
        relates_to: relates_to.map(str::to_owned),
    }
}

/// Parses a usernamemixed Issue request for an endpoint of `version`, validating its timestamp at `now`.
pub fn parse_usernamemixed(
    envelope: &soap::Envelope,
    version: TrustVersion,
    now: OffsetDateTime,
    policy: &TimestampPolicy,
) -> Result<IssueRequest, WsTrustError> {
    let header = envelope
        .header
        .as_ref()
        .ok_or(WsTrustError::MissingSecurityHeader)?;
    let message_id = message_id(header)?;
    let body = parse_request_body(&envelope.body, version)?;
    let security = security_header(header)?;
    let (username, password) = username_token(security)?;
    let timestamp = request_timestamp(security)?;
    check_timestamp(&timestamp, now, policy)?;
    Ok(IssueRequest {
        version,
        message_id,
        username,
        password,
        timestamp,
        applies_to: body.applies_to,
        token_type: body.token_type,
    })
}

/// Parses a windowstransport Issue request (no Security header needed) for an endpoint of `version`.
pub fn parse_windowstransport(
    envelope: &soap::Envelope,
    version: TrustVersion,
) -> Result<WindowsIssueRequest, WsTrustError> {
    let message_id = match &envelope.header {
        Some(header) => message_id(header)?,
        None => None,
    };
    let body = parse_request_body(&envelope.body, version)?;
    Ok(WindowsIssueRequest {
        version,
        message_id,
        applies_to: body.applies_to,
        token_type: body.token_type,
    })
}

/// The request's MessageID for `RelatesTo` in a fault, leniently (`None` when absent or ambiguous).
pub fn request_message_id(envelope: &soap::Envelope) -> Option<String> {
    envelope
        .header
        .as_ref()
        .and_then(|header| message_id(header).ok().flatten())
}

/// `wsa:MessageID`, also msal4j's lower-case `messageID`, in either addressing namespace.
fn message_id(header: &Element) -> Result<Option<String>, WsTrustError> {
    let mut ids = header.children.iter().filter(|child| {
        [WSA, WSA_2004_NS]
            .iter()
            .any(|ns| child.is(ns, "MessageID") || child.is(ns, "messageID"))
    });
    let first = ids.next();
    if ids.next().is_some() {
        return Err(WsTrustError::DuplicateMessageId);
    }
    Ok(first
        .map(|id| id.text.trim())
        .filter(|id| !id.is_empty())
        .map(str::to_owned))
}

fn security_header<'a>(header: &'a Element<'a>) -> Result<&'a Element<'a>, WsTrustError> {
    let mut headers = header.children_named(WSSE, "Security");
    let security = headers.next().ok_or(WsTrustError::MissingSecurityHeader)?;
    if headers.next().is_some() {
        return Err(WsTrustError::DuplicateSecurityHeader);
    }
    Ok(security)
}

fn username_token(security: &Element) -> Result<(String, Secret), WsTrustError> {
    let mut tokens = security.children_named(WSSE, "UsernameToken");
    let token = tokens.next().ok_or(WsTrustError::MissingUsernameToken)?;
    if tokens.next().is_some() {
        return Err(WsTrustError::DuplicateUsernameToken);
    }
    let username = credential_field(token, "Username")?
        .ok_or(WsTrustError::MissingUsername)?
        .text
        .trim();
    if username.is_empty() {
        return Err(WsTrustError::EmptyUsername);
    }
    let password = credential_field(token, "Password")?.ok_or(WsTrustError::MissingPassword)?;
    check_password_type(password)?;
    if password.text.is_empty() {
        return Err(WsTrustError::EmptyPassword);
    }
    Ok((username.to_owned(), Secret::new(password.text.to_string())))
}

fn credential_field<'a>(
    token: &'a Element<'a>,
    name: &'static str,
) -> Result<Option<&'a Element<'a>>, WsTrustError> {
    token
        .child(WSSE, name)
        .map_err(|_| WsTrustError::DuplicateCredentialField(name))
}

fn check_password_type(password: &Element) -> Result<(), WsTrustError> {
    match password.attribute(None, "Type").map(str::trim) {
        None | Some(PASSWORD_TEXT) => Ok(()),
        Some(PASSWORD_DIGEST) => Err(WsTrustError::PasswordDigestNotSupported),
        Some(other) => Err(WsTrustError::UnsupportedPasswordType(other.to_owned())),
    }
}

fn request_timestamp(security: &Element) -> Result<Timestamp, WsTrustError> {
    let mut timestamps = security.children_named(WSU, "Timestamp");
    let timestamp = timestamps.next().ok_or(WsTrustError::MissingTimestamp)?;
    if timestamps.next().is_some() {
        return Err(WsTrustError::DuplicateTimestamp);
    }
    Ok(Timestamp {
        created: timestamp_field(timestamp, "Created")?,
        expires: timestamp_field(timestamp, "Expires")?,
    })
}

fn timestamp_field(
    timestamp: &Element,
    field: &'static str,
) -> Result<OffsetDateTime, WsTrustError> {
    let element = timestamp
        .child(WSU, field)
        .ok()
        .flatten()
        .ok_or(WsTrustError::IncompleteTimestamp(field))?;
    let value = element.text.trim();
    OffsetDateTime::parse(value, &Rfc3339).map_err(|_| WsTrustError::InvalidTimestampValue {
        field,
        value: value.to_owned(),
    })
}

/// Checks the timestamp against `now` with differences only, so no input can overflow a date.
fn check_timestamp(
    timestamp: &Timestamp,
    now: OffsetDateTime,
    policy: &TimestampPolicy,
) -> Result<(), WsTrustError> {
    let window = timestamp.expires - timestamp.created;
    if window.is_negative() || window > policy.max_window {
        return Err(WsTrustError::TimestampWindowInvalid);
    }
    if timestamp.created - now > policy.max_clock_skew {
        return Err(WsTrustError::TimestampNotYetValid);
    }
    if now - timestamp.expires > policy.max_clock_skew {
        return Err(WsTrustError::TimestampExpired);
    }
    Ok(())
}

/// What the RequestSecurityToken asks for.
struct RequestBody {
    applies_to: String,
    token_type: TokenType,
}

fn parse_request_body(body: &Element, version: TrustVersion) -> Result<RequestBody, WsTrustError> {
    let rst = request_security_token(body, version)?;
    let trust_ns = version.namespace();
    if let Some(request_type) = rst_child(rst, trust_ns, "RequestType")? {
        check_request_type(request_type.text.trim(), version)?;
    }
    if let Some(key_type) = rst_child(rst, trust_ns, "KeyType")? {
        check_key_type(key_type.text.trim())?;
    }
    let token_type = match rst_child(rst, trust_ns, "TokenType")? {
        Some(element) => token_type(element.text.trim())?,
        None => TokenType::Saml11,
    };
    Ok(RequestBody {
        applies_to: applies_to(rst)?,
        token_type,
    })
}

fn request_security_token<'a>(
    body: &'a Element<'a>,
    version: TrustVersion,
) -> Result<&'a Element<'a>, WsTrustError> {
    let rst = match body.children.as_slice() {
        [] => return Err(WsTrustError::MissingRequestSecurityToken),
        [only] => only,
        [_, second, ..] => {
            return Err(WsTrustError::UnexpectedBodyContent(
                second.local.to_string(),
            ));
        }
    };
    if rst.is(version.namespace(), "RequestSecurityToken") {
        Ok(rst)
    } else if rst.is(version.other().namespace(), "RequestSecurityToken") {
        Err(WsTrustError::VersionMismatch {
            endpoint: version,
            request: version.other(),
        })
    } else {
        Err(WsTrustError::UnexpectedBodyContent(rst.local.to_string()))
    }
}

fn rst_child<'a>(
    rst: &'a Element<'a>,
    ns: &str,
    local: &str,
) -> Result<Option<&'a Element<'a>>, WsTrustError> {
    rst.child(ns, local)
        .map_err(|_| WsTrustError::DuplicateElement(local.to_owned()))
}

fn check_request_type(request_type: &str, version: TrustVersion) -> Result<(), WsTrustError> {
    if request_type == version.issue_request_type() {
        Ok(())
    } else {
        Err(WsTrustError::UnsupportedRequestType(
            request_type.to_owned(),
        ))
    }
}

/// Bearer in either version's spelling; any proof-key request is refused.
fn check_key_type(key_type: &str) -> Result<(), WsTrustError> {
    if key_type == BEARER_13 || key_type == NO_PROOF_KEY {
        Ok(())
    } else {
        Err(WsTrustError::UnsupportedKeyType(key_type.to_owned()))
    }
}

fn token_type(uri: &str) -> Result<TokenType, WsTrustError> {
    TokenType::from_uri(uri).ok_or_else(|| WsTrustError::UnsupportedTokenType(uri.to_owned()))
}

/// `wsp:AppliesTo/wsa:EndpointReference/wsa:Address`, which must name Microsoft Online.
fn applies_to(rst: &Element) -> Result<String, WsTrustError> {
    let applies_to =
        single_of(rst, &[WSP, WSP_15_NS], "AppliesTo")?.ok_or(WsTrustError::MissingAppliesTo)?;
    let reference = single_of(applies_to, &[WSA, WSA_2004_NS], "EndpointReference")?
        .ok_or(WsTrustError::MissingAppliesTo)?;
    let address = single_of(reference, &[WSA, WSA_2004_NS], "Address")?
        .ok_or(WsTrustError::MissingAppliesTo)?
        .text
        .trim();
    if address == MICROSOFT_ONLINE || address == LEGACY_EXTSTS {
        Ok(address.to_owned())
    } else {
        Err(WsTrustError::UnsupportedAppliesTo(address.to_owned()))
    }
}

/// The one child named `local` in any of `namespaces`; several across them is a duplicate.
fn single_of<'a>(
    parent: &'a Element<'a>,
    namespaces: &[&str],
    local: &str,
) -> Result<Option<&'a Element<'a>>, WsTrustError> {
    let mut matches = parent
        .children
        .iter()
        .filter(|child| namespaces.iter().any(|ns| child.is(ns, local)));
    let first = matches.next();
    if matches.next().is_some() {
        return Err(WsTrustError::DuplicateElement(local.to_owned()));
    }
    Ok(first)
}

/// The success envelope: RSTR Collection for 1.3, bare RSTR for 2005, in ADFS child order, with a
/// response Security/Timestamp valid from `now` for 5 minutes and `RelatesTo` when known. The
/// assertion XML is embedded byte-for-byte.
pub fn build_response(
    version: TrustVersion,
    assertion: &SignedAssertion,
    applies_to_echo: &str,
    relates_to: Option<&str>,
    now: OffsetDateTime,
) -> String {
    let mut body = String::with_capacity(assertion.xml.len() + RESPONSE_ELEMENT_OVERHEAD);
    if version == TrustVersion::V13 {
        body.push_str(r#"<trust:RequestSecurityTokenResponseCollection xmlns:trust=""#);
        body.push_str(TRUST_13);
        body.push_str(r#"">"#);
    }
    write_response_element(&mut body, version, assertion, applies_to_echo, now);
    if version == TrustVersion::V13 {
        body.push_str("</trust:RequestSecurityTokenResponseCollection>");
    }
    let security = format!(
        concat!(
            r#"<o:Security s:mustUnderstand="1" xmlns:o="{WSSE}"><u:Timestamp u:Id="_0">"#,
            r#"<u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></u:Timestamp></o:Security>"#,
        ),
        WSSE = WSSE,
        created = format_instant(now),
        expires = format_instant(now.saturating_add(RESPONSE_TIMESTAMP_VALIDITY)),
    );
    soap::ResponseEnvelope {
        namespaces: &[("xmlns:u", WSU)],
        action: version.response_action(),
        relates_to,
        headers: &security,
        body: &body,
    }
    .to_xml()
}

/// The RSTR element alone in the 2005 namespace, AppliesTo Microsoft Online: the passive
/// WS-Federation `wresult`.
pub fn build_wsfed_wresult(assertion: &SignedAssertion, now: OffsetDateTime) -> String {
    let mut rstr = String::with_capacity(assertion.xml.len() + RESPONSE_ELEMENT_OVERHEAD);
    write_response_element(
        &mut rstr,
        TrustVersion::V2005,
        assertion,
        MICROSOFT_ONLINE,
        now,
    );
    rstr
}

/// Bytes of an RSTR (and its collection) besides the assertion: the lifetime, AppliesTo, the
/// two references and the type URIs come to about 1.9 KiB.
const RESPONSE_ELEMENT_OVERHEAD: usize = 2560;

/// Writes one RequestSecurityTokenResponse; it declares every namespace it uses so it stands alone.
/// Lifetime runs from `now` to the assertion's NotOnOrAfter.
fn write_response_element(
    out: &mut String,
    version: TrustVersion,
    assertion: &SignedAssertion,
    applies_to: &str,
    now: OffsetDateTime,
) {
    let p = version.prefix();
    let reference = token_reference(assertion);
    // Writing into a String cannot fail.
    let _ = write!(
        out,
        concat!(
            r#"<{p}:RequestSecurityTokenResponse xmlns:{p}="{trust_ns}">"#,
            r#"<{p}:Lifetime><wsu:Created xmlns:wsu="{wsu}">{created}</wsu:Created>"#,
            r#"<wsu:Expires xmlns:wsu="{wsu}">{expires}</wsu:Expires></{p}:Lifetime>"#,
            r#"<wsp:AppliesTo xmlns:wsp="{wsp}"><wsa:EndpointReference xmlns:wsa="{wsa}">"#,
            r#"<wsa:Address>{applies_to}</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>"#,
            r#"<{p}:RequestedSecurityToken>{assertion}</{p}:RequestedSecurityToken>"#,
            r#"<{p}:RequestedAttachedReference>{reference}</{p}:RequestedAttachedReference>"#,
            r#"<{p}:RequestedUnattachedReference>{reference}</{p}:RequestedUnattachedReference>"#,
            r#"<{p}:TokenType>{token_type}</{p}:TokenType>"#,
            r#"<{p}:RequestType>{request_type}</{p}:RequestType>"#,
            r#"<{p}:KeyType>{key_type}</{p}:KeyType>"#,
            r#"</{p}:RequestSecurityTokenResponse>"#
        ),
        p = p,
        trust_ns = version.namespace(),
        wsu = WSU,
        wsp = WSP,
        wsa = WSA,
        created = format_instant(now),
        expires = format_instant(assertion.not_on_or_after),
        applies_to = xml::escape(applies_to),
        assertion = assertion.xml,
        reference = reference,
        token_type = assertion.token_type.uri(),
        request_type = version.issue_request_type(),
        key_type = version.bearer_key_type(),
    );
}

/// `o:SecurityTokenReference` naming the assertion by its ID, per the SAML token profile.
fn token_reference(assertion: &SignedAssertion) -> String {
    let profile = assertion.token_type.profile_uri();
    let value_type = match assertion.token_type {
        TokenType::Saml11 => SAML11_ASSERTION_ID,
        TokenType::Saml20 => SAML20_ID,
    };
    format!(
        concat!(
            r#"<o:SecurityTokenReference k:TokenType="{profile}" xmlns:o="{wsse}" xmlns:k="{wsse11}">"#,
            r#"<o:KeyIdentifier ValueType="{value_type}">{id}</o:KeyIdentifier></o:SecurityTokenReference>"#
        ),
        profile = profile,
        wsse = WSSE,
        wsse11 = WSSE11_NS,
        value_type = value_type,
        id = xml::escape(&assertion.id),
    )
}

#[cfg(test)]
mod tests;
