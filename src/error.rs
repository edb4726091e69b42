//! The one place where errors become SOAP faults and HTTP statuses.
//!
//! Every refusal on a WS-Trust endpoint is a SOAP 1.2 fault with HTTP 500 (what ADFS does and
//! what MSAL, ADAL and Windows parse), a subcode in the request version's namespace, and a
//! reason text that ends with the correlation id that is also in the log line. Credential
//! failures of every kind share one text, so the wire never tells which one happened.

use crate::directory::DirectoryError;
use crate::saml::SamlError;
use crate::soap::{Fault, SoapError};
use crate::windowstransport::WindowsClaimsError;
use crate::wstrust::{self, FaultKind, TrustVersion, WsTrustError};

/// HTTP status of every SOAP fault we send.
pub const FAULT_HTTP_STATUS: u16 = 500;

/// The text of every credential failure (unknown user, wrong password, disabled, locked).
pub const ACCESS_DENIED: &str =
    "Access denied: the user name or password is incorrect, or the account cannot sign in.";

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
}

impl StsError {
    /// A short machine-readable reason for the log line and audit record.
    pub fn log_reason(&self) -> String {
        match self {
            StsError::Envelope(_) => "malformed_envelope".into(),
            StsError::Request(e) => format!("invalid_request: {e}"),
            StsError::Directory(DirectoryError::Rejected(f)) => f.reason().into(),
            StsError::Directory(e) => format!("directory_error: {e}"),
            StsError::OutsideDomain { .. } => "upn_outside_domain".into(),
            StsError::Token(e) => format!("token_error: {e}"),
            StsError::Windows(e) => format!("windows_claims: {e}"),
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
        }
    }

    /// Text safe to show a client: credential failures are generic, server failures say
    /// nothing internal, request errors say exactly what is wrong with the request.
    fn client_text(&self) -> String {
        match self.fault_kind() {
            FaultKind::FailedAuthentication => ACCESS_DENIED.into(),
            FaultKind::RequestFailed => {
                "The request failed on the server; try again later or ask the administrator.".into()
            }
            _ => format!("The request was rejected: {self}."),
        }
    }

    /// The SOAP fault for this error, in the request version's namespaces.
    pub fn to_fault(
        &self,
        version: TrustVersion,
        correlation_id: &str,
        relates_to: Option<&str>,
    ) -> Fault {
        let reason = format!("{} Correlation id: {correlation_id}", self.client_text());
        wstrust::fault(version, self.fault_kind(), &reason, relates_to)
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
}
