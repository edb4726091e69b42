//! Device trust: only company devices get tokens.
//!
//! A device proves itself with a TLS client certificate issued by the device CA
//! (`[device_trust] ca_file`, optional `crl_file`). TLS asks for a certificate but lets clients
//! without one in (`server::tls` builds the verifier); a certificate that does not chain to the
//! device CA (or is revoked) fails the handshake. The verified leaf reaches the policy as DER in
//! `RequestInfo`, and [`evaluate`] decides with the injected clock.
//!
//! Per app, `[apps.device_trust]` says for which flows (`passive`, `active`, `windows_logon`)
//! and which users / groups a trusted device is required. Windows setup (OOBE Entra join) and the
//! first Windows logon cannot present a device certificate; such requests (recognised by
//! spoofable signals, see [`RequestClass`]) get the explained refusal
//! `device_trust_unavailable_oobe` ([`explanation`]) instead of a bare one. The signals never
//! exempt a request from a policy.

use time::OffsetDateTime;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use crate::config::device::{AppDevicePolicy, Flow};
use crate::crypto::Certificate;
use crate::directory::User;
use crate::policy::RequestClass;

/// Whether `policy` covers a request on an endpoint of `flow`, classified as `class`, by
/// `user`. A Windows-logon class can add the `windows_logon` flow, never remove one.
pub fn covers(policy: &AppDevicePolicy, flow: Flow, class: RequestClass, user: &User) -> bool {
    let flow_covered = policy.flows.contains(&flow)
        || (class == RequestClass::WindowsLogon && policy.flows.contains(&Flow::WindowsLogon));
    flow_covered && covers_user(policy, user)
}

fn covers_user(policy: &AppDevicePolicy, user: &User) -> bool {
    policy
        .users
        .iter()
        .any(|u| u == "*" || u.eq_ignore_ascii_case(&user.upn))
        || user.groups.iter().any(|member| {
            policy
                .groups
                .iter()
                .any(|wanted| crate::directory::dn::group_matches(wanted, member))
        })
}

/// A device that proved itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Device id: first SAN URI, else first SAN DNS name, else subject CN, else subject DN.
    pub id: String,
}

/// Why a device-trust policy is not satisfied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRefusal {
    /// No certificate, and the request looks like Windows setup or first logon.
    UnavailableDuringSetup,
    /// No certificate.
    Missing,
    /// The certificate is past its validity.
    Expired,
    /// The certificate is not valid yet.
    NotYetValid,
    /// The certificate could not be parsed.
    Unreadable,
}

impl DeviceRefusal {
    /// The audit reason.
    pub fn reason(self) -> &'static str {
        match self {
            DeviceRefusal::UnavailableDuringSetup => "device_trust_unavailable_oobe",
            DeviceRefusal::Missing => "device_certificate_missing",
            DeviceRefusal::Expired => "device_certificate_expired",
            DeviceRefusal::NotYetValid => "device_certificate_not_yet_valid",
            DeviceRefusal::Unreadable => "device_certificate_unreadable",
        }
    }
}

/// The decision of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceDecision {
    /// No policy covers the request (a presented device is still named for the audit).
    NotRequired(Option<Device>),
    /// A policy covers the request and the device satisfies it.
    Trusted(Device),
    /// A policy covers the request and is not satisfied.
    Refused(DeviceRefusal),
}

/// Decides device trust for one request. `certificate` is the DER leaf that passed the TLS
/// verifier (chain to the device CA, CRL), if any; validity is checked here against `now`.
pub fn evaluate(
    policy_covers: bool,
    certificate: Option<&[u8]>,
    class: RequestClass,
    now: OffsetDateTime,
) -> DeviceDecision {
    let presented = certificate.map(|der| device_from(der, now));
    match (policy_covers, presented) {
        (false, presented) => DeviceDecision::NotRequired(presented.and_then(Result::ok)),
        (true, Some(Ok(device))) => DeviceDecision::Trusted(device),
        (true, Some(Err(refusal))) => DeviceDecision::Refused(refusal),
        (true, None) => DeviceDecision::Refused(match class {
            RequestClass::EntraPassive | RequestClass::WindowsLogon => {
                DeviceRefusal::UnavailableDuringSetup
            }
            RequestClass::Other => DeviceRefusal::Missing,
        }),
    }
}

fn device_from(der: &[u8], now: OffsetDateTime) -> Result<Device, DeviceRefusal> {
    let cert = Certificate::from_der(der).map_err(|_| DeviceRefusal::Unreadable)?;
    if now < cert.not_before() {
        return Err(DeviceRefusal::NotYetValid);
    }
    if now >= cert.not_after() {
        return Err(DeviceRefusal::Expired);
    }
    let id = san_id(der).unwrap_or_else(|| common_name(der).unwrap_or_else(|| cert.subject()));
    Ok(Device { id })
}

fn san_id(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let (_, san) = cert
        .tbs_certificate()
        .get_extension::<SubjectAltName>()
        .ok()??;
    let text = |kind: fn(&GeneralName) -> Option<String>| san.0.iter().find_map(kind);
    text(|n| match n {
        GeneralName::UniformResourceIdentifier(s) => Some(s.to_string()),
        _ => None,
    })
    .or_else(|| {
        text(|n| match n {
            GeneralName::DnsName(s) => Some(s.to_string()),
            _ => None,
        })
    })
}

fn common_name(der: &[u8]) -> Option<String> {
    let cert = x509_cert::Certificate::from_der(der).ok()?;
    let cn = cert.tbs_certificate().subject().common_name().ok()??;
    Some(cn.value().into_owned())
}

/// The words of a device-trust refusal, for the SOAP fault text and the passive HTML page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Explanation {
    /// Page title / first sentence.
    pub title: &'static str,
    /// What happened, in plain words, for the user.
    pub summary: &'static str,
    /// What the administrator can do (one item per entry).
    pub admin_actions: &'static [&'static str],
}

impl Explanation {
    /// The whole explanation as one paragraph (SOAP fault reason).
    pub fn as_text(&self) -> String {
        let mut text = format!("{} {}", self.title, self.summary);
        if !self.admin_actions.is_empty() {
            text.push_str(" Administrator: ");
            text.push_str(&self.admin_actions.join(" "));
        }
        text
    }
}

/// The explanation for `refusal`.
pub fn explanation(refusal: DeviceRefusal) -> Explanation {
    match refusal {
        DeviceRefusal::UnavailableDuringSetup => Explanation {
            title: "This sign-in requires a trusted company device, which cannot be proven during Windows setup.",
            summary: "Windows setup (joining this PC to Microsoft Entra ID) and the first sign-in to Windows happen before the device has its company certificate, so the device-trust policy for your account cannot be satisfied here.",
            admin_actions: &[
                "Exclude the enrolment users or group from the device-trust policy of this app (apps.device_trust users/groups), or do not cover the passive, active and windows_logon flows Windows uses.",
                "Or join the device first (with a policy that allows it), install the device certificate, and only then enforce device trust.",
            ],
        },
        DeviceRefusal::Missing => Explanation {
            title: "This sign-in requires a trusted company device.",
            summary: "The device did not present a company device certificate.",
            admin_actions: &[
                "Install a device certificate from the company device CA on this device.",
            ],
        },
        DeviceRefusal::Expired | DeviceRefusal::NotYetValid => Explanation {
            title: "This sign-in requires a trusted company device.",
            summary: "The device certificate this device presented is not valid at this time.",
            admin_actions: &["Renew the device certificate, and check the device's clock."],
        },
        DeviceRefusal::Unreadable => Explanation {
            title: "This sign-in requires a trusted company device.",
            summary: "The device certificate this device presented could not be read.",
            admin_actions: &["Reissue the device certificate from the company device CA."],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn user(groups: &[&str]) -> User {
        User {
            upn: "alice@example.com".into(),
            immutable_id: "x".into(),
            display_name: None,
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            sam_account_name: None,
            object_guid: None,
            object_sid: None,
            password_expires_at: None,
        }
    }

    #[test]
    fn coverage_by_flow_user_and_group_and_never_relaxed_by_class() {
        let policy = AppDevicePolicy {
            flows: vec![Flow::Active],
            users: vec!["ALICE@example.com".into()],
            groups: vec!["staff".into()],
        };
        assert!(covers(
            &policy,
            Flow::Active,
            RequestClass::Other,
            &user(&[])
        ));
        assert!(covers(
            &policy,
            Flow::Active,
            RequestClass::WindowsLogon,
            &user(&[])
        ));
        assert!(!covers(
            &policy,
            Flow::Passive,
            RequestClass::EntraPassive,
            &user(&[])
        ));
        let mut bob = user(&["staff"]);
        bob.upn = "bob@example.com".into();
        assert!(covers(&policy, Flow::Active, RequestClass::Other, &bob));
        bob.groups.clear();
        assert!(!covers(&policy, Flow::Active, RequestClass::Other, &bob));
        let windows_only = AppDevicePolicy {
            flows: vec![Flow::WindowsLogon],
            users: vec!["*".into()],
            groups: vec![],
        };
        assert!(covers(
            &windows_only,
            Flow::Active,
            RequestClass::WindowsLogon,
            &bob
        ));
        assert!(!covers(
            &windows_only,
            Flow::Active,
            RequestClass::Other,
            &bob
        ));
    }

    #[test]
    fn missing_certificate_is_explained_for_setup_classes() {
        let now = datetime!(2026-01-01 00:00 UTC);
        assert_eq!(
            evaluate(true, None, RequestClass::WindowsLogon, now),
            DeviceDecision::Refused(DeviceRefusal::UnavailableDuringSetup)
        );
        assert_eq!(
            evaluate(true, None, RequestClass::EntraPassive, now),
            DeviceDecision::Refused(DeviceRefusal::UnavailableDuringSetup)
        );
        assert_eq!(
            evaluate(true, None, RequestClass::Other, now),
            DeviceDecision::Refused(DeviceRefusal::Missing)
        );
        assert_eq!(
            evaluate(false, None, RequestClass::Other, now),
            DeviceDecision::NotRequired(None)
        );
        assert_eq!(
            evaluate(true, Some(b"not der"), RequestClass::Other, now),
            DeviceDecision::Refused(DeviceRefusal::Unreadable)
        );
        let text = explanation(DeviceRefusal::UnavailableDuringSetup).as_text();
        assert!(
            text.contains("cannot be proven during Windows setup"),
            "{text}"
        );
        assert!(
            text.contains("Exclude the enrolment users or group"),
            "{text}"
        );
        assert!(text.contains("join the device first"), "{text}");
    }
}
