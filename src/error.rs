//! The one place where errors become SOAP faults, HTTP statuses, sign-in pages and log reasons:
//! [`StsError::outcome`] decides all of them in one exhaustive match.
//!
//! Every refusal on a WS-Trust endpoint is a SOAP 1.2 fault with HTTP 500 (what ADFS does and
//! what MSAL, ADAL and Windows parse), a subcode in the request version's namespace, and a
//! reason text that ends with the correlation id that is also in the log line. Credential
//! failures of every kind share one text, so the wire never tells which one happened.

use crate::directory::DirectoryError;
use crate::kerberos::WindowsClaimsError;
use crate::policy::Refusal;
use crate::policy::device::{self, DeviceRefusal};
use crate::policy::ratelimit::Limited;
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

/// Everything a refusal becomes, on every wire, decided once per error by
/// [`StsError::outcome`]: the renderers (the WS-Trust reply, the passive page, the audit record)
/// only read it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The short machine-readable reason: the audit record's `reason` and the metrics label.
    /// Written in this binary (a bounded set), never from the request.
    pub reason: &'static str,
    /// What the request got wrong or which part failed, appended to the reason in the log
    /// line (may quote the request; never a metrics label).
    pub detail: Option<String>,
    /// How a WS-Trust endpoint answers.
    pub active: ActiveAnswer,
    /// How a passive (browser) sign-in answers.
    pub passive: PassiveAnswer,
}

/// The answer of a WS-Trust endpoint to a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ActiveAnswer {
    /// A plain HTTP status with `Retry-After` instead of a SOAP fault (rate limits with
    /// `response = "http_429"`).
    Plain {
        /// HTTP status.
        status: u16,
        /// `Retry-After` seconds.
        retry_after_secs: u64,
    },
    /// A SOAP fault with HTTP [`FAULT_HTTP_STATUS`].
    Fault(FaultAnswer),
}

/// A refusal answered as a SOAP fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultAnswer {
    /// Which fault.
    pub subcode: FaultSubcode,
    /// The reason text (before the correlation id): credential failures are generic, server
    /// failures say nothing internal, request errors say exactly what is wrong.
    pub client_text: String,
    /// `Retry-After` seconds when the client may retry soon (a full password-hash queue).
    pub retry_after_secs: Option<u64>,
}

/// The code and subcode of a fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultSubcode {
    /// A WS-Trust or WS-Security fault, in the request version's namespaces.
    Trust(FaultKind),
    /// A device-trust fault: `s:Sender` with this local name in [`POLICY_FAULT_NS`].
    DeviceTrust(&'static str),
}

/// The answer of passive sign-in to a refusal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PassiveAnswer {
    /// Credential failures of every kind (wrong password, unknown or disabled user, locked
    /// account, other domain) show the sign-in form again with one generic message.
    SignInFormAgain,
    /// The change-password form (again) with this message: the password is right but has
    /// expired or must be changed, or the directory's policy refused the new one.
    PasswordChangeForm {
        /// HTTP status.
        status: u16,
        /// The message above the form, in plain words.
        text: &'static str,
    },
    /// Everything else shows its page.
    Page(ErrorPage),
}

/// The reason text of a server-side failure.
const SERVER_FAILED: &str =
    "The request failed on the server; try again later or ask the administrator.";

impl FaultAnswer {
    fn new(kind: FaultKind, client_text: impl Into<String>) -> Self {
        Self {
            subcode: FaultSubcode::Trust(kind),
            client_text: client_text.into(),
            retry_after_secs: None,
        }
    }

    /// The SOAP fault, in the request version's namespaces, its reason ending with the
    /// correlation id that is also in the log line.
    pub fn to_fault(
        &self,
        version: TrustVersion,
        correlation_id: &str,
        relates_to: Option<&str>,
    ) -> Fault {
        let reason = format!("{} Correlation id: {correlation_id}", self.client_text);
        match self.subcode {
            FaultSubcode::Trust(kind) => wstrust::fault(version, kind, &reason, relates_to),
            FaultSubcode::DeviceTrust(local) => Fault {
                code: FaultCode::Sender,
                subcode_ns: POLICY_FAULT_NS.to_owned(),
                subcode_local: local.to_owned(),
                reason,
                relates_to: relates_to.map(str::to_owned),
            },
        }
    }
}

impl ActiveAnswer {
    fn fault(kind: FaultKind, client_text: impl Into<String>) -> Self {
        Self::Fault(FaultAnswer::new(kind, client_text))
    }

    fn access_denied() -> Self {
        Self::fault(FaultKind::FailedAuthentication, ACCESS_DENIED)
    }

    fn server_failed() -> Self {
        Self::fault(FaultKind::RequestFailed, SERVER_FAILED)
    }
}

impl Outcome {
    /// The reason as the log line and audit record write it: `reason` or `reason: detail`.
    pub fn log_reason(&self) -> String {
        match &self.detail {
            Some(detail) => format!("{}: {detail}", self.reason),
            None => self.reason.to_owned(),
        }
    }

    /// A credential failure: the generic fault text and the sign-in form again.
    fn credentials(reason: &'static str) -> Self {
        Self {
            reason,
            detail: None,
            active: ActiveAnswer::access_denied(),
            passive: PassiveAnswer::SignInFormAgain,
        }
    }
}

impl StsError {
    /// Every answer to this refusal, decided here and nowhere else. The match is exhaustive
    /// down to the leaf enums (no `_` arm), so a new refusal does not compile until someone
    /// decides its fault, HTTP status, page, client text and log reason.
    pub fn outcome(&self) -> Outcome {
        use crate::directory::AuthFailure as A;
        use crate::directory::PasswordRule as R;
        use crate::policy::lockout::Location;
        use crate::policy::replay::ReplayKind;
        // The request itself is wrong: say exactly what, on both wires.
        let rejected = || format!("The request was rejected: {self}.");
        let not_accepted = || {
            PassiveAnswer::Page(ErrorPage::plain(
                400,
                "Sign-in request not accepted",
                &format!("This sign-in request cannot be processed: {self}."),
            ))
        };
        match self {
            StsError::Envelope(_) => Outcome {
                reason: "malformed_envelope",
                detail: None,
                active: ActiveAnswer::fault(FaultKind::InvalidRequest, rejected()),
                passive: not_accepted(),
            },
            StsError::Request(e) => Outcome {
                reason: "invalid_request",
                detail: Some(e.to_string()),
                active: ActiveAnswer::fault(e.fault_kind(), rejected()),
                passive: not_accepted(),
            },
            StsError::Directory(DirectoryError::Rejected(
                failure @ (A::UnknownUser
                | A::WrongPassword
                | A::Disabled
                | A::Locked
                | A::AccountExpired
                | A::LogonRestricted),
            )) => Outcome::credentials(failure.reason()),
            // Only a right password gets this far (AD says 532/773 only then): a browser is
            // offered the change form instead of a dead end; WS-Trust clients cannot change
            // a password and get the generic fault.
            StsError::Directory(DirectoryError::Rejected(
                failure @ (A::PasswordExpired | A::MustChangePassword),
            )) => Outcome {
                reason: failure.reason(),
                detail: None,
                active: ActiveAnswer::access_denied(),
                passive: PassiveAnswer::PasswordChangeForm {
                    status: 200,
                    text: match failure {
                        A::PasswordExpired => {
                            "Your password has expired. Choose a new password to continue signing in."
                        }
                        _ => {
                            "You must change your password before you sign in. Choose a new password to continue."
                        }
                    },
                },
            },
            StsError::Directory(DirectoryError::NewPasswordRefused(rule)) => Outcome {
                reason: "new_password_refused",
                detail: Some(rule.reason().to_owned()),
                active: ActiveAnswer::server_failed(),
                passive: PassiveAnswer::PasswordChangeForm {
                    status: 400,
                    text: match rule {
                        R::History => {
                            "The new password was used before. Choose a password you have not used recently."
                        }
                        R::Complexity => {
                            "The new password is not complex enough. Mix upper- and lower-case letters, digits and symbols, and do not use your name."
                        }
                        R::TooShort => "The new password is too short. Choose a longer password.",
                        R::TooYoung => {
                            "Your password was changed too recently to change it again. Try again later, or ask your administrator."
                        }
                        R::Unchanged => {
                            "The new password must be different from the current password."
                        }
                        R::Policy => {
                            "The new password does not meet the password rules: it may be too short, too simple, or one you used before. Choose another password."
                        }
                    },
                },
            },
            StsError::Directory(e @ DirectoryError::ChangeNotSupported(_)) => Outcome {
                reason: "password_change_unsupported",
                detail: Some(e.to_string()),
                active: ActiveAnswer::server_failed(),
                passive: PassiveAnswer::Page(ErrorPage::plain(
                    403,
                    "Password change unavailable",
                    "The password of this account cannot be changed here. Ask your administrator to change it.",
                )),
            },
            StsError::Directory(DirectoryError::Busy { retry_after_secs }) => Outcome {
                reason: "password_queue_full",
                detail: None,
                active: ActiveAnswer::Fault(FaultAnswer {
                    retry_after_secs: Some(*retry_after_secs),
                    ..FaultAnswer::new(
                        FaultKind::RequestFailed,
                        format!(
                            "The sign-in service is busy; try again in {retry_after_secs} seconds."
                        ),
                    )
                }),
                passive: PassiveAnswer::Page(ErrorPage {
                    retry_after_secs: Some(*retry_after_secs),
                    ..ErrorPage::plain(
                        503,
                        "Sign-in busy",
                        &format!(
                            "The sign-in service is busy. Try again in {retry_after_secs} seconds."
                        ),
                    )
                }),
            },
            StsError::Directory(
                e @ (DirectoryError::Unavailable(_) | DirectoryError::Invalid(_)),
            ) => Outcome {
                reason: "directory_error",
                detail: Some(e.to_string()),
                active: ActiveAnswer::server_failed(),
                passive: PassiveAnswer::Page(ErrorPage::plain(
                    503,
                    "Sign-in unavailable",
                    "Sign-in is temporarily unavailable. Try again in a few minutes.",
                )),
            },
            StsError::OutsideDomain { .. } => Outcome::credentials("upn_outside_domain"),
            StsError::Token(e @ (SamlError::Signature(_) | SamlError::Random(_))) => Outcome {
                reason: "token_error",
                detail: Some(e.to_string()),
                active: ActiveAnswer::server_failed(),
                passive: PassiveAnswer::Page(ErrorPage::plain(
                    500,
                    "Sign-in failed",
                    "The sign-in failed on the server. Try again later.",
                )),
            },
            // Windows refusals never reach a passive sign-in; the page is the generic one.
            StsError::Windows(WindowsClaimsError::RealmNotAccepted(realm)) => Outcome {
                reason: "kerberos_realm_not_accepted",
                detail: Some(realm.clone()),
                active: ActiveAnswer::access_denied(),
                passive: not_accepted(),
            },
            StsError::Windows(e @ WindowsClaimsError::ComputerIncomplete(_)) => Outcome {
                reason: "windows_claims",
                detail: Some(e.to_string()),
                active: ActiveAnswer::access_denied(),
                passive: not_accepted(),
            },
            StsError::Policy(
                refusal @ Refusal::RateLimited(Limited {
                    retry_after_secs,
                    response,
                }),
            ) => Outcome {
                reason: refusal.reason(),
                detail: None,
                active: match response {
                    crate::config::ratelimit::Response::Http429 => ActiveAnswer::Plain {
                        status: 429,
                        retry_after_secs: *retry_after_secs,
                    },
                    crate::config::ratelimit::Response::Fault => ActiveAnswer::fault(
                        FaultKind::RequestFailed,
                        format!(
                            "Too many sign-in requests from this network; try again in {retry_after_secs} seconds."
                        ),
                    ),
                },
                passive: PassiveAnswer::Page(ErrorPage {
                    retry_after_secs: Some(*retry_after_secs),
                    ..ErrorPage::plain(
                        429,
                        "Too many sign-in attempts",
                        &format!(
                            "Too many sign-in requests came from your network. Try again in {retry_after_secs} seconds."
                        ),
                    )
                }),
            },
            StsError::Policy(
                refusal @ Refusal::Replay(
                    ReplayKind::MessageId
                    | ReplayKind::CreatedAndUsername
                    | ReplayKind::NegotiateToken,
                ),
            ) => Outcome {
                reason: refusal.reason(),
                detail: None,
                active: ActiveAnswer::fault(
                    FaultKind::InvalidRequest,
                    "The request was rejected: this message was already received.",
                ),
                passive: not_accepted(),
            },
            StsError::Policy(
                refusal @ Refusal::Locked(Location::Familiar | Location::Unfamiliar),
            ) => Outcome::credentials(refusal.reason()),
            StsError::Policy(refusal @ Refusal::Device(device_refusal)) => {
                let explanation = device::explanation(*device_refusal);
                let subcode = match device_refusal {
                    DeviceRefusal::UnavailableDuringSetup => "DeviceTrustUnavailableDuringSetup",
                    DeviceRefusal::Missing
                    | DeviceRefusal::Expired
                    | DeviceRefusal::NotYetValid
                    | DeviceRefusal::Unreadable => "DeviceTrustRequired",
                };
                Outcome {
                    reason: refusal.reason(),
                    detail: None,
                    active: ActiveAnswer::Fault(FaultAnswer {
                        subcode: FaultSubcode::DeviceTrust(subcode),
                        client_text: explanation.as_text(),
                        retry_after_secs: None,
                    }),
                    passive: PassiveAnswer::Page(ErrorPage {
                        status: 403,
                        title: explanation.title,
                        text: explanation.summary.to_owned(),
                        admin_actions: explanation.admin_actions,
                        retry_after_secs: None,
                    }),
                }
            }
            StsError::Policy(refusal @ Refusal::StateUnavailable(_)) => Outcome {
                reason: refusal.reason(),
                detail: None,
                active: ActiveAnswer::fault(
                    FaultKind::RequestFailed,
                    "The sign-in service cannot check account protection right now, so it refuses sign-ins; try again later.",
                ),
                passive: PassiveAnswer::Page(ErrorPage::plain(
                    503,
                    "Sign-in unavailable",
                    "The sign-in service cannot check account protection right now, so it refuses sign-ins. Try again in a few minutes.",
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::AuthFailure;

    fn fault_xml(error: &StsError, version: TrustVersion) -> String {
        match error.outcome().active {
            ActiveAnswer::Fault(fault) => fault.to_fault(version, "cid", None).to_xml(),
            plain => panic!("not a fault: {plain:?}"),
        }
    }

    /// An expired or must-change password: the generic fault on WS-Trust (nothing says the
    /// password was right), the change form in a browser; policy refusals each in plain words.
    #[test]
    fn expired_passwords_offer_the_change_form_and_policy_refusals_are_explained() {
        use crate::directory::PasswordRule;
        let generic = fault_xml(
            &StsError::Directory(DirectoryError::Rejected(AuthFailure::WrongPassword)),
            TrustVersion::V13,
        );
        for failure in [
            AuthFailure::PasswordExpired,
            AuthFailure::MustChangePassword,
        ] {
            let error = StsError::Directory(DirectoryError::Rejected(failure));
            assert_eq!(fault_xml(&error, TrustVersion::V13), generic);
            let outcome = error.outcome();
            assert_eq!(outcome.log_reason(), failure.reason());
            assert!(
                matches!(
                    outcome.passive,
                    PassiveAnswer::PasswordChangeForm { status: 200, .. }
                ),
                "{outcome:?}"
            );
        }
        let mut texts = Vec::new();
        for rule in [
            PasswordRule::History,
            PasswordRule::Complexity,
            PasswordRule::TooShort,
            PasswordRule::TooYoung,
            PasswordRule::Unchanged,
            PasswordRule::Policy,
        ] {
            let outcome = StsError::Directory(DirectoryError::NewPasswordRefused(rule)).outcome();
            assert_eq!(
                outcome.log_reason(),
                format!("new_password_refused: {}", rule.reason())
            );
            match outcome.passive {
                PassiveAnswer::PasswordChangeForm { status: 400, text } => texts.push(text),
                other => panic!("{other:?}"),
            }
        }
        texts.sort_unstable();
        texts.dedup();
        assert_eq!(texts.len(), 6, "one sentence per rule");
        let unsupported =
            StsError::Directory(DirectoryError::ChangeNotSupported("no TLS".into())).outcome();
        assert!(matches!(
            unsupported.passive,
            PassiveAnswer::Page(ErrorPage { status: 403, .. })
        ));
    }

    #[test]
    fn credential_failures_are_indistinguishable_on_the_wire() {
        let texts: Vec<String> = [
            AuthFailure::UnknownUser,
            AuthFailure::WrongPassword,
            AuthFailure::Disabled,
        ]
        .into_iter()
        .map(|f| {
            fault_xml(
                &StsError::Directory(DirectoryError::Rejected(f)),
                TrustVersion::V13,
            )
        })
        .collect();
        assert_eq!(texts[0], texts[1]);
        assert_eq!(texts[1], texts[2]);
        assert!(texts[0].contains("FailedAuthentication"));
        assert!(texts[0].contains("Correlation id: cid</"));
        let outside = fault_xml(
            &StsError::OutsideDomain {
                domain: "example.com".into(),
            },
            TrustVersion::V13,
        );
        assert_eq!(outside, texts[0]);
    }

    #[test]
    fn outage_is_request_failed_and_says_nothing_internal() {
        let xml = fault_xml(
            &StsError::Directory(DirectoryError::Unavailable("ldap://10.0.0.1 down".into())),
            TrustVersion::V2005,
        );
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
        let xml = fault_xml(&busy, TrustVersion::V13);
        assert!(xml.contains("RequestFailed"), "{xml}");
        assert!(xml.contains("try again in 3 seconds"), "{xml}");
        let outcome = busy.outcome();
        let ActiveAnswer::Fault(fault) = &outcome.active else {
            panic!("{outcome:?}");
        };
        assert_eq!(fault.retry_after_secs, Some(3));
        let PassiveAnswer::Page(page) = &outcome.passive else {
            panic!("{outcome:?}");
        };
        assert_eq!((page.status, page.retry_after_secs), (503, Some(3)));
        assert_eq!(outcome.reason, "password_queue_full");
    }

    #[test]
    fn a_rate_limit_is_a_plain_429_or_a_fault_as_configured_and_a_429_page() {
        let limited = |response| {
            StsError::Policy(Refusal::RateLimited(Limited {
                retry_after_secs: 7,
                response,
            }))
            .outcome()
        };
        let plain = limited(crate::config::ratelimit::Response::Http429);
        assert_eq!(
            plain.active,
            ActiveAnswer::Plain {
                status: 429,
                retry_after_secs: 7
            }
        );
        let PassiveAnswer::Page(page) = &plain.passive else {
            panic!("{plain:?}");
        };
        assert_eq!((page.status, page.retry_after_secs), (429, Some(7)));
        let ActiveAnswer::Fault(fault) = limited(crate::config::ratelimit::Response::Fault).active
        else {
            panic!("not a fault");
        };
        assert_eq!(
            (fault.subcode, fault.retry_after_secs),
            (FaultSubcode::Trust(FaultKind::RequestFailed), None)
        );
        assert_eq!(plain.reason, "rate_limited");
    }

    #[test]
    fn credential_failures_show_the_form_again_and_outages_a_page() {
        let locked = StsError::Policy(Refusal::Locked(crate::policy::lockout::Location::Familiar));
        assert_eq!(locked.outcome().passive, PassiveAnswer::SignInFormAgain);
        assert_eq!(locked.outcome().active, ActiveAnswer::access_denied());
        let device = StsError::Policy(Refusal::Device(DeviceRefusal::UnavailableDuringSetup));
        let ActiveAnswer::Fault(fault) = device.outcome().active else {
            panic!("not a fault");
        };
        let xml = fault.to_fault(TrustVersion::V13, "cid", None).to_xml();
        assert!(xml.contains("DeviceTrustUnavailableDuringSetup"), "{xml}");
        assert!(xml.contains(POLICY_FAULT_NS), "{xml}");
    }
}
