//! The one place where errors become SOAP faults and HTTP statuses.
//!
//! Every refusal on a WS-Trust endpoint is a SOAP 1.2 fault with HTTP 500 (what ADFS does and
//! what MSAL, ADAL and Windows parse), a subcode in the request version's namespace, and a
//! reason text that ends with the correlation id that is also in the log line. Credential
//! failures of every kind share one text, so the wire never tells which one happened.

use crate::directory::DirectoryError;
use crate::kerberos::WindowsClaimsError;
use crate::policy::Refusal;
use crate::policy::device::{self, DeviceRefusal};
use crate::policy::ratelimit::{self, Limited};
use crate::protocol::saml::SamlError;
use crate::protocol::soap::{Fault, FaultCode, SoapError};
use crate::protocol::wstrust::{self, FaultKind, TrustVersion, WsTrustError};

/// HTTP status of every SOAP fault we send.
pub const FAULT_HTTP_STATUS: u16 = 500;

/// The text of every credential failure (unknown user, wrong password, disabled, locked).
pub const ACCESS_DENIED: &str =
    "Access denied: the user name or password is incorrect, or the account cannot sign in.";

/// Namespace of the device-trust fault subcodes (`DeviceTrustRequired`,
/// `DeviceTrustUnavailableDuringSetup`).
pub const POLICY_FAULT_NS: &str = "urn:fedsts:policy";

/// How a refused passive (browser) sign-in is shown: an HTML page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorPage {
    /// HTTP status.
    pub status: u16,
    /// Heading.
    pub title: &'static str,
    /// What happened, in plain words.
    pub text: String,
    /// What the administrator can do (device trust), one item per entry.
    pub admin_actions: &'static [&'static str],
    /// `Retry-After` seconds (rate limits).
    pub retry_after_secs: Option<u64>,
}

impl ErrorPage {
    fn plain(status: u16, title: &'static str, text: &str) -> Self {
        Self {
            status,
            title,
            text: text.to_owned(),
            admin_actions: &[],
            retry_after_secs: None,
        }
    }
}

/// Why a token was not issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StsError {
    /// The body is not an acceptable SOAP 1.2 envelope.
    #[error(transparent)]
    Envelope(#[from] SoapError),
    /// The envelope is not an acceptable WS-Trust request.
    #[error(transparent)]
    Request(#[from] WsTrustError),
    /// The directory refused the credentials or could not answer.
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    /// The user authenticated but may not get a token from this app.
    #[error("user is not in the app's federated domain {domain}")]
    OutsideDomain {
        /// The app's domain.
        domain: String,
    },
    /// The assertion could not be built or signed.
    #[error(transparent)]
    Token(#[from] SamlError),
    /// A Windows-authenticated principal cannot be described (e.g. a computer without GUID).
    #[error(transparent)]
    Windows(#[from] WindowsClaimsError),
    /// A protection policy refused the request.
    #[error(transparent)]
    Policy(#[from] Refusal),
}

impl StsError {
    /// A short machine-readable reason for the log line and audit record.
    pub fn log_reason(&self) -> String {
        match self {
            StsError::Envelope(_) => "malformed_envelope".into(),
            StsError::Request(e) => format!("invalid_request: {e}"),
            StsError::Directory(DirectoryError::Rejected(f)) => f.reason().into(),
            StsError::Directory(DirectoryError::Busy { .. }) => "password_queue_full".into(),
            StsError::Directory(e) => format!("directory_error: {e}"),
            StsError::OutsideDomain { .. } => "upn_outside_domain".into(),
            StsError::Token(e) => format!("token_error: {e}"),
            StsError::Windows(WindowsClaimsError::RealmNotAccepted(realm)) => {
                format!("kerberos_realm_not_accepted: {realm}")
            }
            StsError::Windows(e) => format!("windows_claims: {e}"),
            StsError::Policy(r) => r.reason().into(),
        }
    }

    /// `Some((status, retry_after_secs))` when the error is answered with a plain HTTP status
    /// instead of a SOAP fault (rate limits with `response = "http_429"`).
    pub fn plain_http(&self) -> Option<(u16, u64)> {
        match self {
            StsError::Policy(Refusal::RateLimited(Limited {
                retry_after_secs,
                response: ratelimit::Response::Http429,
            })) => Some((429, *retry_after_secs)),
            _ => None,
        }
    }

    /// `Retry-After` seconds of a SOAP fault: a full password-hash queue (a `RequestFailed`
    /// fault the client may retry soon).
    pub fn fault_retry_after(&self) -> Option<u64> {
        match self {
            StsError::Directory(DirectoryError::Busy { retry_after_secs }) => {
                Some(*retry_after_secs)
            }
            _ => None,
        }
    }

    fn fault_kind(&self) -> FaultKind {
        match self {
            StsError::Envelope(_) => FaultKind::InvalidRequest,
            StsError::Request(e) => e.fault_kind(),
            StsError::Directory(DirectoryError::Rejected(_))
            | StsError::OutsideDomain { .. }
            | StsError::Windows(_) => FaultKind::FailedAuthentication,
            StsError::Directory(_) | StsError::Token(_) => FaultKind::RequestFailed,
            StsError::Policy(Refusal::Locked(_)) => FaultKind::FailedAuthentication,
            StsError::Policy(Refusal::Replay(_)) => FaultKind::InvalidRequest,
            StsError::Policy(_) => FaultKind::RequestFailed,
        }
    }

    /// Text safe to show a client: credential failures are generic, server failures say
    /// nothing internal, request errors say exactly what is wrong with the request.
    fn client_text(&self) -> String {
        match self {
            StsError::Policy(Refusal::StateUnavailable(_)) => {
                return "The sign-in service cannot check account protection right now, so it refuses sign-ins; try again later.".into();
            }
            StsError::Policy(Refusal::RateLimited(limited)) => {
                return format!(
                    "Too many sign-in requests from this network; try again in {} seconds.",
                    limited.retry_after_secs
                );
            }
            StsError::Policy(Refusal::Replay(_)) => {
                return "The request was rejected: this message was already received.".into();
            }
            StsError::Directory(DirectoryError::Busy { retry_after_secs }) => {
                return format!(
                    "The sign-in service is busy; try again in {retry_after_secs} seconds."
                );
            }
            _ => {}
        }
        match self.fault_kind() {
            FaultKind::FailedAuthentication => ACCESS_DENIED.into(),
            FaultKind::RequestFailed => {
                "The request failed on the server; try again later or ask the administrator.".into()
            }
            _ => format!("The request was rejected: {self}."),
        }
    }

    /// The page of a refused passive sign-in; `None` for credential failures of every kind
    /// (wrong password, unknown or disabled user, locked account, other domain), which show the
    /// sign-in form again with one generic message.
    pub fn passive_page(&self) -> Option<ErrorPage> {
        let page = match self {
            StsError::Policy(Refusal::Locked(_))
            | StsError::Directory(DirectoryError::Rejected(_))
            | StsError::OutsideDomain { .. } => return None,
            StsError::Policy(Refusal::RateLimited(limited)) => ErrorPage {
                retry_after_secs: Some(limited.retry_after_secs),
                ..ErrorPage::plain(
                    429,
                    "Too many sign-in attempts",
                    &format!(
                        "Too many sign-in requests came from your network. Try again in {} seconds.",
                        limited.retry_after_secs
                    ),
                )
            },
            StsError::Policy(Refusal::StateUnavailable(_)) => ErrorPage::plain(
                503,
                "Sign-in unavailable",
                "The sign-in service cannot check account protection right now, so it refuses sign-ins. Try again in a few minutes.",
            ),
            StsError::Policy(Refusal::Device(refusal)) => {
                let explanation = device::explanation(*refusal);
                ErrorPage {
                    status: 403,
                    title: explanation.title,
                    text: explanation.summary.to_owned(),
                    admin_actions: explanation.admin_actions,
                    retry_after_secs: None,
                }
            }
            StsError::Directory(DirectoryError::Busy { retry_after_secs }) => ErrorPage {
                retry_after_secs: Some(*retry_after_secs),
                ..ErrorPage::plain(
                    503,
                    "Sign-in busy",
                    &format!(
                        "The sign-in service is busy. Try again in {retry_after_secs} seconds."
                    ),
                )
            },
            StsError::Directory(_) => ErrorPage::plain(
                503,
                "Sign-in unavailable",
                "Sign-in is temporarily unavailable. Try again in a few minutes.",
            ),
            StsError::Token(_) => ErrorPage::plain(
                500,
                "Sign-in failed",
                "The sign-in failed on the server. Try again later.",
            ),
            other => ErrorPage::plain(
                400,
                "Sign-in request not accepted",
                &format!("This sign-in request cannot be processed: {other}."),
            ),
        };
        Some(page)
    }

    /// The SOAP fault for this error, in the request version's namespaces.
    pub fn to_fault(
        &self,
        version: TrustVersion,
        correlation_id: &str,
        relates_to: Option<&str>,
    ) -> Fault {
        if let StsError::Policy(Refusal::Device(refusal)) = self {
            return device_fault(*refusal, correlation_id, relates_to);
        }
        let reason = format!("{} Correlation id: {correlation_id}", self.client_text());
        wstrust::fault(version, self.fault_kind(), &reason, relates_to)
    }
}

/// The device-trust fault: subcode `DeviceTrustUnavailableDuringSetup` for Windows setup and
/// first logon, `DeviceTrustRequired` otherwise, with the plain-words explanation.
fn device_fault(refusal: DeviceRefusal, correlation_id: &str, relates_to: Option<&str>) -> Fault {
    let local = match refusal {
        DeviceRefusal::UnavailableDuringSetup => "DeviceTrustUnavailableDuringSetup",
        _ => "DeviceTrustRequired",
    };
    Fault {
        code: FaultCode::Sender,
        subcode_ns: POLICY_FAULT_NS.to_owned(),
        subcode_local: local.to_owned(),
        reason: format!(
            "{} Correlation id: {correlation_id}",
            device::explanation(refusal).as_text()
        ),
        relates_to: relates_to.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::AuthFailure;

    #[test]
    fn credential_failures_are_indistinguishable_on_the_wire() {
        let texts: Vec<String> = [
            AuthFailure::UnknownUser,
            AuthFailure::WrongPassword,
            AuthFailure::Disabled,
        ]
        .into_iter()
        .map(|f| {
            StsError::Directory(DirectoryError::Rejected(f))
                .to_fault(TrustVersion::V13, "cid", None)
                .to_xml()
        })
        .collect();
        assert_eq!(texts[0], texts[1]);
        assert_eq!(texts[1], texts[2]);
        assert!(texts[0].contains("FailedAuthentication"));
        assert!(texts[0].contains("Correlation id: cid</"));
        let outside = StsError::OutsideDomain {
            domain: "example.com".into(),
        }
        .to_fault(TrustVersion::V13, "cid", None)
        .to_xml();
        assert_eq!(outside, texts[0]);
    }

    #[test]
    fn outage_is_request_failed_and_says_nothing_internal() {
        let xml = StsError::Directory(DirectoryError::Unavailable("ldap://10.0.0.1 down".into()))
            .to_fault(TrustVersion::V2005, "cid", None)
            .to_xml();
        assert!(xml.contains("RequestFailed"), "{xml}");
        assert!(!xml.contains("10.0.0.1"), "{xml}");
        assert!(
            xml.contains("http://schemas.xmlsoap.org/ws/2005/02/trust"),
            "{xml}"
        );
    }

    #[test]
    fn busy_is_a_request_failed_fault_and_a_503_page_with_retry_after() {
        let busy = StsError::Directory(DirectoryError::Busy {
            retry_after_secs: 3,
        });
        let xml = busy.to_fault(TrustVersion::V13, "cid", None).to_xml();
        assert!(xml.contains("RequestFailed"), "{xml}");
        assert!(xml.contains("try again in 3 seconds"), "{xml}");
        assert_eq!(busy.fault_retry_after(), Some(3));
        let page = busy.passive_page().unwrap();
        assert_eq!((page.status, page.retry_after_secs), (503, Some(3)));
        assert_eq!(busy.log_reason(), "password_queue_full");
    }
}
