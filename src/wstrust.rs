//! WS-Trust 1.3 and 2005 Issue: the RequestSecurityToken in, the RequestSecurityTokenResponse out.
//!
//! Requests are read by exact path (`Envelope/Header/Security/UsernameToken/{Username,Password}`,
//! `Envelope/Body/RequestSecurityToken`) with namespaces deciding and prefixes ignored, so a
//! second token smuggled anywhere else is never looked at. This module only carries the
//! password to the caller; it never checks, logs or prints it.

use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::ns::{MICROSOFT_ONLINE, SOAP12, TRUST_13, TRUST_2005, WSA, WSP, WSSE, WSU};
use crate::saml::{SignedAssertion, TokenType, format_instant};
use crate::soap::{self, FaultCode};
use crate::xml::{self, Element};
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
const SAML11_PROFILE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV1.1";
const SAML20_PROFILE: &str =
    "http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0";
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

/// A password that never shows in Debug output or logs.
#[derive(Clone)]
pub struct Password(String);

impl Password {
    /// Wraps a password received from a client.
    pub fn new(password: String) -> Self {
        Self(password)
    }

    /// The password itself, for the one place that verifies it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
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
    pub password: Password,
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

fn security_header(header: &Element) -> Result<&Element, WsTrustError> {
    let mut headers = header.children_named(WSSE, "Security");
    let security = headers.next().ok_or(WsTrustError::MissingSecurityHeader)?;
    if headers.next().is_some() {
        return Err(WsTrustError::DuplicateSecurityHeader);
    }
    Ok(security)
}

fn username_token(security: &Element) -> Result<(String, Password), WsTrustError> {
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
    Ok((username.to_owned(), Password::new(password.text.clone())))
}

fn credential_field<'a>(
    token: &'a Element,
    name: &'static str,
) -> Result<Option<&'a Element>, WsTrustError> {
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

fn request_security_token(body: &Element, version: TrustVersion) -> Result<&Element, WsTrustError> {
    let rst = match body.children.as_slice() {
        [] => return Err(WsTrustError::MissingRequestSecurityToken),
        [only] => only,
        [_, second, ..] => return Err(WsTrustError::UnexpectedBodyContent(second.local.clone())),
    };
    if rst.is(version.namespace(), "RequestSecurityToken") {
        Ok(rst)
    } else if rst.is(version.other().namespace(), "RequestSecurityToken") {
        Err(WsTrustError::VersionMismatch {
            endpoint: version,
            request: version.other(),
        })
    } else {
        Err(WsTrustError::UnexpectedBodyContent(rst.local.clone()))
    }
}

fn rst_child<'a>(
    rst: &'a Element,
    ns: &str,
    local: &str,
) -> Result<Option<&'a Element>, WsTrustError> {
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
    match uri {
        "urn:oasis:names:tc:SAML:1.0:assertion" | SAML11_PROFILE => Ok(TokenType::Saml11),
        "urn:oasis:names:tc:SAML:2.0:assertion" | SAML20_PROFILE => Ok(TokenType::Saml20),
        other => Err(WsTrustError::UnsupportedTokenType(other.to_owned())),
    }
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
    parent: &'a Element,
    namespaces: &[&str],
    local: &str,
) -> Result<Option<&'a Element>, WsTrustError> {
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
    let rstr = response_element(version, assertion, applies_to_echo, now);
    let body = match version {
        TrustVersion::V13 => format!(
            r#"<trust:RequestSecurityTokenResponseCollection xmlns:trust="{TRUST_13}">{rstr}</trust:RequestSecurityTokenResponseCollection>"#
        ),
        TrustVersion::V2005 => rstr,
    };
    let relates_to = relates_to
        .map(|id| format!("<a:RelatesTo>{}</a:RelatesTo>", xml::escape(id)))
        .unwrap_or_default();
    format!(
        concat!(
            r#"<s:Envelope xmlns:s="{soap}" xmlns:a="{WSA}" xmlns:u="{WSU}"><s:Header>"#,
            r#"<a:Action s:mustUnderstand="1">{action}</a:Action>{relates_to}"#,
            r#"<o:Security s:mustUnderstand="1" xmlns:o="{WSSE}"><u:Timestamp u:Id="_0">"#,
            r#"<u:Created>{created}</u:Created><u:Expires>{expires}</u:Expires></u:Timestamp></o:Security>"#,
            r#"</s:Header><s:Body>{body}</s:Body></s:Envelope>"#
        ),
        soap = SOAP12,
        WSA = WSA,
        WSU = WSU,
        WSSE = WSSE,
        action = version.response_action(),
        relates_to = relates_to,
        created = format_instant(now),
        expires = format_instant(now.saturating_add(RESPONSE_TIMESTAMP_VALIDITY)),
        body = body,
    )
}

/// The RSTR element alone in the 2005 namespace, AppliesTo Microsoft Online: the passive
/// WS-Federation `wresult`.
pub fn build_wsfed_wresult(assertion: &SignedAssertion, now: OffsetDateTime) -> String {
    response_element(TrustVersion::V2005, assertion, MICROSOFT_ONLINE, now)
}

/// One RequestSecurityTokenResponse; it declares every namespace it uses so it stands alone.
/// Lifetime runs from `now` to the assertion's NotOnOrAfter.
fn response_element(
    version: TrustVersion,
    assertion: &SignedAssertion,
    applies_to: &str,
    now: OffsetDateTime,
) -> String {
    let p = version.prefix();
    let reference = token_reference(assertion);
    format!(
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
    )
}

/// `o:SecurityTokenReference` naming the assertion by its ID, per the SAML token profile.
fn token_reference(assertion: &SignedAssertion) -> String {
    let (profile, value_type) = match assertion.token_type {
        TokenType::Saml11 => (SAML11_PROFILE, SAML11_ASSERTION_ID),
        TokenType::Saml20 => (SAML20_PROFILE, SAML20_ID),
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
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2024-05-01 12:00:00 UTC);

    /// A usernamemixed request; `security` replaces the whole Security header content.
    fn envelope(trust_ns: &str, security: &str, rst_children: &str) -> String {
        format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{WSA}" xmlns:wsu="{WSU}">
<s:Header><wsa:Action s:mustUnderstand="1">x</wsa:Action><wsa:MessageID>urn:uuid:42</wsa:MessageID>
<wsse:Security s:mustUnderstand="1" xmlns:wsse="{WSSE}">{security}</wsse:Security></s:Header>
<s:Body><wst:RequestSecurityToken xmlns:wst="{trust_ns}">{rst_children}</wst:RequestSecurityToken></s:Body></s:Envelope>"#
        )
    }

    fn timestamp(created: &str, expires: &str) -> String {
        format!(
            "<wsu:Timestamp wsu:Id=\"_0\"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp>"
        )
    }

    fn token(username: &str, password: &str) -> String {
        format!(
            "<wsse:UsernameToken wsu:Id=\"t\"><wsse:Username>{username}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken>"
        )
    }

    fn good_security() -> String {
        timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z")
            + &token("alice@contoso.com", "p&amp;ss &lt;w&gt;")
    }

    const APPLIES_TO: &str = r#"<wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo>"#;

    fn rst13() -> String {
        format!(
            "{APPLIES_TO}<wst:KeyType>{BEARER_13}</wst:KeyType><wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType>"
        )
    }

    fn parse13(input: &str) -> Result<IssueRequest, WsTrustError> {
        let envelope = soap::parse_envelope(input.as_bytes(), &xml::Limits::default()).unwrap();
        parse_usernamemixed(
            &envelope,
            TrustVersion::V13,
            NOW,
            &TimestampPolicy::default(),
        )
    }

    fn parse13_security(security: &str) -> Result<IssueRequest, WsTrustError> {
        parse13(&envelope(TRUST_13, security, &rst13()))
    }

    fn parse13_rst(rst_children: &str) -> Result<IssueRequest, WsTrustError> {
        parse13(&envelope(TRUST_13, &good_security(), rst_children))
    }

    #[test]
    fn parses_a_well_formed_request() {
        let request = parse13_security(&good_security()).unwrap();
        assert_eq!(request.version, TrustVersion::V13);
        assert_eq!(request.message_id.as_deref(), Some("urn:uuid:42"));
        assert_eq!(request.username, "alice@contoso.com");
        assert_eq!(request.password.expose(), "p&ss <w>");
        assert_eq!(request.applies_to, MICROSOFT_ONLINE);
        assert_eq!(request.token_type, TokenType::Saml11);
        assert_eq!(
            request.timestamp,
            Timestamp {
                created: datetime!(2024-05-01 11:59:00 UTC),
                expires: datetime!(2024-05-01 12:09:00 UTC)
            }
        );
    }

    #[test]
    fn password_never_appears_in_debug_output() {
        let request = parse13_security(&good_security()).unwrap();
        let printed = format!("{request:?}");
        assert!(printed.contains("Password(***)"));
        assert!(!printed.contains("p&ss"));
    }

    #[test]
    fn accepts_fractional_seconds_and_lower_case_message_id() {
        let security =
            timestamp("2024-05-01T11:59:00.068Z", "2024-05-01T12:04:00.068Z") + &token("a", "b");
        let input = envelope(TRUST_13, &security, &rst13()).replace("MessageID", "messageID");
        let request = parse13(&input).unwrap();
        assert_eq!(request.message_id.as_deref(), Some("urn:uuid:42"));
        assert_eq!(
            request.timestamp.created,
            datetime!(2024-05-01 11:59:00.068 UTC)
        );
    }

    #[test]
    fn message_id_is_optional_but_not_repeatable() {
        let without = envelope(TRUST_13, &good_security(), &rst13())
            .replace("<wsa:MessageID>urn:uuid:42</wsa:MessageID>", "");
        assert_eq!(parse13(&without).unwrap().message_id, None);
        let twice = envelope(TRUST_13, &good_security(), &rst13()).replace(
            "<wsa:MessageID>",
            "<wsa:messageID>urn:uuid:43</wsa:messageID><wsa:MessageID>",
        );
        assert_eq!(
            parse13(&twice).unwrap_err(),
            WsTrustError::DuplicateMessageId
        );
    }

    #[test]
    fn refuses_missing_or_repeated_security_parts() {
        let no_header = envelope(TRUST_13, "", &rst13());
        let no_header = no_header.replace(
            &no_header[no_header.find("<s:Header>").unwrap()..no_header.find("<s:Body>").unwrap()],
            "",
        );
        assert_eq!(
            parse13(&no_header).unwrap_err(),
            WsTrustError::MissingSecurityHeader
        );
        let two_headers = envelope(TRUST_13, &good_security(), &rst13()).replace(
            "</s:Header>",
            &format!(r#"<wsse:Security xmlns:wsse="{WSSE}"/></s:Header>"#),
        );
        assert_eq!(
            parse13(&two_headers).unwrap_err(),
            WsTrustError::DuplicateSecurityHeader
        );
        let ts = timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z");
        assert_eq!(
            parse13_security(&ts).unwrap_err(),
            WsTrustError::MissingUsernameToken
        );
        assert_eq!(
            parse13_security(&(good_security() + &token("mallory", "x"))).unwrap_err(),
            WsTrustError::DuplicateUsernameToken
        );
        assert_eq!(
            parse13_security(&token("a", "b")).unwrap_err(),
            WsTrustError::MissingTimestamp
        );
        assert_eq!(
            parse13_security(&(good_security() + &ts)).unwrap_err(),
            WsTrustError::DuplicateTimestamp
        );
    }

    #[test]
    fn refuses_bad_credentials_fields() {
        let ts = timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z");
        let with_token =
            |inner: &str| format!("{ts}<wsse:UsernameToken>{inner}</wsse:UsernameToken>");
        assert_eq!(
            parse13_security(&with_token("<wsse:Password>b</wsse:Password>")).unwrap_err(),
            WsTrustError::MissingUsername
        );
        assert_eq!(
            parse13_security(&with_token("<wsse:Username>a</wsse:Username>")).unwrap_err(),
            WsTrustError::MissingPassword
        );
        assert_eq!(
            parse13_security(&(ts.clone() + &token("  ", "b"))).unwrap_err(),
            WsTrustError::EmptyUsername
        );
        assert_eq!(
            parse13_security(&(ts.clone() + &token("a", ""))).unwrap_err(),
            WsTrustError::EmptyPassword
        );
        assert_eq!(
            parse13_security(&with_token(
                "<wsse:Username>a</wsse:Username><wsse:Username>b</wsse:Username><wsse:Password>c</wsse:Password>"
            ))
            .unwrap_err(),
            WsTrustError::DuplicateCredentialField("Username")
        );
    }

    #[test]
    fn password_type_must_be_text() {
        let ts = timestamp("2024-05-01T11:59:00Z", "2024-05-01T12:09:00Z");
        let with_type = |ty: &str| {
            format!(
                "{ts}<wsse:UsernameToken><wsse:Username>a</wsse:Username><wsse:Password Type=\"{ty}\">b</wsse:Password></wsse:UsernameToken>"
            )
        };
        assert!(parse13_security(&with_type(PASSWORD_TEXT)).is_ok());
        assert_eq!(
            parse13_security(&with_type(PASSWORD_DIGEST)).unwrap_err(),
            WsTrustError::PasswordDigestNotSupported
        );
        assert_eq!(
            parse13_security(&with_type("urn:other")).unwrap_err(),
            WsTrustError::UnsupportedPasswordType("urn:other".to_owned())
        );
    }

    #[test]
    fn timestamp_rules_hold_at_their_boundaries() {
        let check = |created: &str, expires: &str| {
            parse13_security(&(timestamp(created, expires) + &token("a", "b"))).map(|_| ())
        };
        // Created at the skew limit in the future is fine, one second later is not.
        assert_eq!(
            check("2024-05-01T12:05:00Z", "2024-05-01T12:15:00Z"),
            Ok(())
        );
        assert_eq!(
            check("2024-05-01T12:05:01Z", "2024-05-01T12:15:00Z"),
            Err(WsTrustError::TimestampNotYetValid)
        );
        // Expires at the skew limit in the past is fine, one second earlier is not.
        assert_eq!(
            check("2024-05-01T11:45:00Z", "2024-05-01T11:55:00Z"),
            Ok(())
        );
        assert_eq!(
            check("2024-05-01T11:45:00Z", "2024-05-01T11:54:59Z"),
            Err(WsTrustError::TimestampExpired)
        );
        // Window: 15 minutes accepted, longer or inverted refused.
        assert_eq!(
            check("2024-05-01T11:55:00Z", "2024-05-01T12:10:00Z"),
            Ok(())
        );
        assert_eq!(
            check("2024-05-01T11:55:00Z", "2024-05-01T12:10:01Z"),
            Err(WsTrustError::TimestampWindowInvalid)
        );
        assert_eq!(
            check("2024-05-01T12:00:00Z", "2024-05-01T11:59:00Z"),
            Err(WsTrustError::TimestampWindowInvalid)
        );
        assert_eq!(
            check("2024-05-01T12:00:00", "2024-05-01T12:05:00Z"),
            Err(WsTrustError::InvalidTimestampValue {
                field: "Created",
                value: "2024-05-01T12:00:00".to_owned()
            })
        );
        assert_eq!(
            parse13_security(
                &("<wsu:Timestamp><wsu:Created>2024-05-01T12:00:00Z</wsu:Created></wsu:Timestamp>"
                    .to_owned()
                    + &token("a", "b"))
            )
            .unwrap_err(),
            WsTrustError::IncompleteTimestamp("Expires")
        );
    }

    #[test]
    fn version_of_body_must_match_endpoint() {
        let rst2005 = APPLIES_TO.to_owned();
        let input = envelope(TRUST_2005, &good_security(), &rst2005);
        assert_eq!(
            parse13(&input).unwrap_err(),
            WsTrustError::VersionMismatch {
                endpoint: TrustVersion::V13,
                request: TrustVersion::V2005
            }
        );
        let envelope = soap::parse_envelope(input.as_bytes(), &xml::Limits::default()).unwrap();
        let request = parse_usernamemixed(
            &envelope,
            TrustVersion::V2005,
            NOW,
            &TimestampPolicy::default(),
        )
        .unwrap();
        assert_eq!(request.version, TrustVersion::V2005);
    }

    #[test]
    fn request_type_must_be_issue_of_the_version() {
        let with = |request_type: &str| {
            parse13_rst(&format!(
                "{APPLIES_TO}<wst:RequestType>{request_type}</wst:RequestType>"
            ))
        };
        assert_eq!(
            with("http://schemas.xmlsoap.org/ws/2005/02/trust/Issue").unwrap_err(),
            WsTrustError::UnsupportedRequestType(
                "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue".to_owned()
            )
        );
        assert_eq!(
            with("http://docs.oasis-open.org/ws-sx/ws-trust/200512/Validate").unwrap_err(),
            WsTrustError::UnsupportedRequestType(
                "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Validate".to_owned()
            )
        );
        assert!(parse13_rst(APPLIES_TO).is_ok(), "RequestType is optional");
    }

    #[test]
    fn applies_to_must_name_microsoft_online() {
        let with = |ns: &str, address: &str| {
            parse13_rst(&format!(
                r#"<wsp:AppliesTo xmlns:wsp="{WSP}"><a:EndpointReference xmlns:a="{ns}"><a:Address>{address}</a:Address></a:EndpointReference></wsp:AppliesTo>"#
            ))
            .map(|request| request.applies_to)
        };
        assert_eq!(
            with(WSA, " urn:federation:MicrosoftOnline "),
            Ok(MICROSOFT_ONLINE.to_owned())
        );
        assert_eq!(
            with(WSA_2004_NS, LEGACY_EXTSTS),
            Ok(LEGACY_EXTSTS.to_owned())
        );
        assert_eq!(
            with(WSA, "https://evil.example.com"),
            Err(WsTrustError::UnsupportedAppliesTo(
                "https://evil.example.com".to_owned()
            ))
        );
        assert_eq!(
            with("urn:not-addressing", MICROSOFT_ONLINE),
            Err(WsTrustError::MissingAppliesTo)
        );
        assert_eq!(parse13_rst("").unwrap_err(), WsTrustError::MissingAppliesTo);
        assert_eq!(
            parse13_rst(&(APPLIES_TO.to_owned() + APPLIES_TO)).unwrap_err(),
            WsTrustError::DuplicateElement("AppliesTo".to_owned())
        );
    }

    #[test]
    fn token_and_key_types() {
        let with_token =
            |uri: &str| parse13_rst(&format!("{APPLIES_TO}<wst:TokenType>{uri}</wst:TokenType>"));
        assert_eq!(
            with_token("urn:oasis:names:tc:SAML:2.0:assertion")
                .unwrap()
                .token_type,
            TokenType::Saml20
        );
        assert_eq!(
            with_token(SAML20_PROFILE).unwrap().token_type,
            TokenType::Saml20
        );
        assert_eq!(
            with_token(SAML11_PROFILE).unwrap().token_type,
            TokenType::Saml11
        );
        assert_eq!(
            with_token("urn:ietf:params:oauth:token-type:jwt").unwrap_err(),
            WsTrustError::UnsupportedTokenType("urn:ietf:params:oauth:token-type:jwt".to_owned())
        );
        let with_key =
            |uri: &str| parse13_rst(&format!("{APPLIES_TO}<wst:KeyType>{uri}</wst:KeyType>"));
        assert!(with_key(NO_PROOF_KEY).is_ok());
        let symmetric = "http://docs.oasis-open.org/ws-sx/ws-trust/200512/SymmetricKey";
        assert_eq!(
            with_key(symmetric).unwrap_err(),
            WsTrustError::UnsupportedKeyType(symmetric.to_owned())
        );
    }

    #[test]
    fn body_must_hold_exactly_one_rst() {
        let input = envelope(TRUST_13, &good_security(), &rst13());
        let empty_body = input.replace(
            &input[input.find("<wst:RequestSecurityToken").unwrap()
                ..input.find("</s:Body>").unwrap()],
            "",
        );
        assert_eq!(
            parse13(&empty_body).unwrap_err(),
            WsTrustError::MissingRequestSecurityToken
        );
        let extra = input.replace("</s:Body>", "<x:Other xmlns:x=\"urn:x\"/></s:Body>");
        assert_eq!(
            parse13(&extra).unwrap_err(),
            WsTrustError::UnexpectedBodyContent("Other".to_owned())
        );
    }

    #[test]
    fn smuggled_username_tokens_are_never_used() {
        let smuggled = format!(
            "{}<x:Wrapper xmlns:x=\"urn:x\">{}</x:Wrapper>",
            good_security(),
            token("admin@contoso.com", "x")
        );
        let in_body = format!(
            r#"<o:UsernameToken xmlns:o="{WSSE}"><o:Username>root@contoso.com</o:Username><o:Password>y</o:Password></o:UsernameToken>"#
        );
        let input = envelope(TRUST_13, &smuggled, &(rst13() + &in_body));
        assert_eq!(parse13(&input).unwrap().username, "alice@contoso.com");
    }

    #[test]
    fn windowstransport_needs_no_security_header() {
        let input = format!(
            r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="{WSA}"><s:Body><t:RequestSecurityToken Id="RST0" xmlns:t="{TRUST_2005}">{APPLIES_TO}<t:KeyType>{NO_PROOF_KEY}</t:KeyType><t:RequestType>http://schemas.xmlsoap.org/ws/2005/02/trust/Issue</t:RequestType></t:RequestSecurityToken></s:Body></s:Envelope>"#
        );
        let envelope = soap::parse_envelope(input.as_bytes(), &xml::Limits::default()).unwrap();
        assert_eq!(
            parse_windowstransport(&envelope, TrustVersion::V2005),
            Ok(WindowsIssueRequest {
                version: TrustVersion::V2005,
                message_id: None,
                applies_to: MICROSOFT_ONLINE.to_owned(),
                token_type: TokenType::Saml11,
            })
        );
        assert_eq!(
            parse_usernamemixed(
                &envelope,
                TrustVersion::V2005,
                NOW,
                &TimestampPolicy::default()
            )
            .unwrap_err(),
            WsTrustError::MissingSecurityHeader
        );
    }

    #[test]
    fn every_error_has_its_fault_kind() {
        assert_eq!(
            WsTrustError::TimestampExpired.fault_kind(),
            FaultKind::MessageExpired
        );
        assert_eq!(
            WsTrustError::TimestampNotYetValid.fault_kind(),
            FaultKind::InvalidSecurity
        );
        assert_eq!(
            WsTrustError::DuplicateSecurityHeader.fault_kind(),
            FaultKind::InvalidSecurity
        );
        assert_eq!(
            WsTrustError::PasswordDigestNotSupported.fault_kind(),
            FaultKind::InvalidSecurity
        );
        assert_eq!(
            WsTrustError::UnsupportedAppliesTo(String::new()).fault_kind(),
            FaultKind::InvalidRequest
        );
        assert_eq!(
            WsTrustError::VersionMismatch {
                endpoint: TrustVersion::V13,
                request: TrustVersion::V2005
            }
            .fault_kind(),
            FaultKind::InvalidRequest
        );
    }

    #[test]
    fn faults_use_the_right_namespace_and_code() {
        let failed = fault(
            TrustVersion::V2005,
            FaultKind::FailedAuthentication,
            "MSIS7068: Access denied.",
            Some("urn:uuid:1"),
        );
        assert_eq!(
            failed,
            soap::Fault {
                code: FaultCode::Sender,
                subcode_ns: TRUST_2005.to_owned(),
                subcode_local: "FailedAuthentication".to_owned(),
                reason: "MSIS7068: Access denied.".to_owned(),
                relates_to: Some("urn:uuid:1".to_owned()),
            }
        );
        let failed = fault(TrustVersion::V13, FaultKind::RequestFailed, "r", None);
        assert_eq!(
            (
                failed.code,
                failed.subcode_ns.as_str(),
                failed.subcode_local.as_str()
            ),
            (FaultCode::Receiver, TRUST_13, "RequestFailed")
        );
        let expired = fault(TrustVersion::V13, FaultKind::MessageExpired, "r", None);
        assert_eq!(
            (
                expired.code,
                expired.subcode_ns.as_str(),
                expired.subcode_local.as_str()
            ),
            (FaultCode::Sender, WSSE, "MessageExpired")
        );
        let invalid = fault(TrustVersion::V13, FaultKind::InvalidRequest, "r", None);
        assert_eq!(
            (invalid.subcode_ns.as_str(), invalid.subcode_local.as_str()),
            (TRUST_13, "InvalidRequest")
        );
        let security = fault(TrustVersion::V2005, FaultKind::InvalidSecurity, "r", None);
        assert_eq!(
            (
                security.subcode_ns.as_str(),
                security.subcode_local.as_str()
            ),
            (WSSE, "InvalidSecurity")
        );
    }

    #[test]
    fn version_helpers() {
        assert_eq!(
            TrustVersion::from_path_segment("13"),
            Some(TrustVersion::V13)
        );
        assert_eq!(
            TrustVersion::from_path_segment("2005"),
            Some(TrustVersion::V2005)
        );
        assert_eq!(TrustVersion::from_path_segment("2006"), None);
        assert_eq!(
            TrustVersion::V13.issue_action(),
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue"
        );
        assert_eq!(
            TrustVersion::V2005.namespace(),
            "http://schemas.xmlsoap.org/ws/2005/02/trust"
        );
    }

    fn assertion(token_type: TokenType) -> SignedAssertion {
        SignedAssertion {
            id: "_abc".to_owned(),
            token_type,
            xml: r#"<saml:Assertion xmlns:saml="urn:oasis:names:tc:SAML:1.0:assertion" AssertionID="_abc" MajorVersion="1"></saml:Assertion>"#.to_owned(),
            not_before: NOW,
            not_on_or_after: datetime!(2024-05-01 13:00:00 UTC),
        }
    }

    fn rstr_children(response: &str, version: TrustVersion) -> Vec<String> {
        let envelope = soap::parse_envelope(response.as_bytes(), &xml::Limits::default()).unwrap();
        let rstr = match version {
            TrustVersion::V13 => envelope
                .body
                .child(TRUST_13, "RequestSecurityTokenResponseCollection")
                .unwrap()
                .unwrap()
                .child(TRUST_13, "RequestSecurityTokenResponse")
                .unwrap()
                .unwrap()
                .clone(),
            TrustVersion::V2005 => envelope
                .body
                .child(TRUST_2005, "RequestSecurityTokenResponse")
                .unwrap()
                .unwrap()
                .clone(),
        };
        rstr.children
            .iter()
            .map(|child| child.local.clone())
            .collect()
    }

    const ADFS_CHILD_ORDER: [&str; 8] = [
        "Lifetime",
        "AppliesTo",
        "RequestedSecurityToken",
        "RequestedAttachedReference",
        "RequestedUnattachedReference",
        "TokenType",
        "RequestType",
        "KeyType",
    ];

    #[test]
    fn response_13_is_a_collection_in_adfs_order() {
        let response = build_response(
            TrustVersion::V13,
            &assertion(TokenType::Saml11),
            MICROSOFT_ONLINE,
            Some("urn:uuid:42"),
            NOW,
        );
        assert_eq!(
            rstr_children(&response, TrustVersion::V13),
            ADFS_CHILD_ORDER
        );
        let expected_header = concat!(
            r#"<s:Header><a:Action s:mustUnderstand="1">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RSTRC/IssueFinal</a:Action>"#,
            r#"<a:RelatesTo>urn:uuid:42</a:RelatesTo><o:Security s:mustUnderstand="1" xmlns:o="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd">"#,
            r#"<u:Timestamp u:Id="_0"><u:Created>2024-05-01T12:00:00.000Z</u:Created><u:Expires>2024-05-01T12:05:00.000Z</u:Expires></u:Timestamp></o:Security></s:Header>"#
        );
        assert!(response.contains(expected_header), "{response}");
        assert!(response.contains(&format!(
            "<trust:RequestedSecurityToken>{}</trust:RequestedSecurityToken>",
            assertion(TokenType::Saml11).xml
        )));
        assert!(response.contains("<trust:Lifetime><wsu:Created xmlns:wsu=\"http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd\">2024-05-01T12:00:00.000Z</wsu:Created>"));
        assert!(response.contains(">2024-05-01T13:00:00.000Z</wsu:Expires></trust:Lifetime>"));
        assert!(response.contains(r#"<o:KeyIdentifier ValueType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.0#SAMLAssertionID">_abc</o:KeyIdentifier>"#));
        assert!(response.contains("<trust:TokenType>urn:oasis:names:tc:SAML:1.0:assertion</trust:TokenType><trust:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</trust:RequestType><trust:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</trust:KeyType>"));
    }

    #[test]
    fn response_2005_is_a_bare_rstr() {
        let response = build_response(
            TrustVersion::V2005,
            &assertion(TokenType::Saml11),
            LEGACY_EXTSTS,
            None,
            NOW,
        );
        assert_eq!(
            rstr_children(&response, TrustVersion::V2005),
            ADFS_CHILD_ORDER
        );
        assert!(!response.contains("Collection"));
        assert!(!response.contains("RelatesTo"));
        assert!(
            response.contains(">http://schemas.xmlsoap.org/ws/2005/02/trust/RSTR/Issue</a:Action>")
        );
        assert!(
            response.contains(
                "<wsa:Address>https://login.microsoftonline.com/extSTS.srf</wsa:Address>"
            )
        );
        assert!(response.contains(
            "<t:KeyType>http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey</t:KeyType>"
        ));
    }

    #[test]
    fn saml20_response_references_by_samlid() {
        let response = build_response(
            TrustVersion::V13,
            &assertion(TokenType::Saml20),
            MICROSOFT_ONLINE,
            None,
            NOW,
        );
        assert!(response.contains(r##"k:TokenType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLV2.0""##));
        assert!(response.contains(r##"ValueType="http://docs.oasis-open.org/wss/oasis-wss-saml-token-profile-1.1#SAMLID""##));
        assert!(
            response.contains(
                "<trust:TokenType>urn:oasis:names:tc:SAML:2.0:assertion</trust:TokenType>"
            )
        );
    }

    #[test]
    fn wresult_is_a_standalone_2005_rstr() {
        let wresult = build_wsfed_wresult(&assertion(TokenType::Saml11), NOW);
        assert!(wresult.starts_with(r#"<t:RequestSecurityTokenResponse xmlns:t="http://schemas.xmlsoap.org/ws/2005/02/trust">"#));
        let root = xml::parse(wresult.as_bytes(), &xml::Limits::default()).unwrap();
        let names: Vec<_> = root
            .children
            .iter()
            .map(|child| child.local.as_str())
            .collect();
        assert_eq!(names, ADFS_CHILD_ORDER);
        assert!(wresult.contains("<wsa:Address>urn:federation:MicrosoftOnline</wsa:Address>"));
    }
}
