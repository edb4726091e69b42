//! windowstransport (integrated Windows authentication): the per-app `[apps.kerberos]`
//! configuration, the intranet check, mapping a Kerberos principal to a directory entry, and
//! the claims of a Windows-authenticated user or domain-joined computer
//! (docs/protocol-notes.md#scenario-claims).
//!
//! The SPNEGO exchange itself is in [`crate::kerberos::acceptor`] (cargo feature `kerberos`); everything
//! here is pure and always compiled, so that a configuration asking for Kerberos in a build
//! without the feature is reported by `check-config` and refused at start.

#[cfg(feature = "kerberos")]
pub mod acceptor;
pub mod keytab;

use time::OffsetDateTime;

use crate::config::KerberosConfig;
use crate::directory::{AuthFailure, Directory, DirectoryError, User};
use crate::protocol::saml::{AuthnMethod, ClaimAttribute, Claims};

/// `http://schemas.microsoft.com/ws/2012/01` (insidecorporatenetwork, accounttype).
pub const NS_WS_2012_01: &str = "http://schemas.microsoft.com/ws/2012/01";
/// `http://schemas.microsoft.com/identity/claims` (onpremobjectguid).
pub const NS_IDENTITY_CLAIMS: &str = "http://schemas.microsoft.com/identity/claims";
/// `http://schemas.microsoft.com/ws/2008/06/identity/claims` (primarysid, issuerid).
pub const NS_WS_2008_06_CLAIMS: &str = "http://schemas.microsoft.com/ws/2008/06/identity/claims";

/// The federated domain of `principal`'s realm; a realm not in `realms` is refused, even
/// when the KDC vouched for the ticket (e.g. through a cross-realm trust).
pub fn domain_for<'a>(
    config: &'a KerberosConfig,
    principal: &Principal,
) -> Result<&'a str, WindowsClaimsError> {
    config
        .domain_of(&principal.realm)
        .ok_or_else(|| WindowsClaimsError::RealmNotAccepted(principal.realm.clone()))
}

/// A Kerberos client principal, `name@REALM`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The name part (`alice`, `PC1$`).
    pub name: String,
    /// The realm.
    pub realm: String,
}

impl Principal {
    /// Splits `name@REALM`; `None` without a realm or with an instance (`a/b@R`).
    pub fn parse(text: &str) -> Option<Self> {
        let (name, realm) = text.rsplit_once('@')?;
        if name.is_empty() || realm.is_empty() || name.contains('/') {
            return None;
        }
        Some(Self {
            name: name.to_owned(),
            realm: realm.to_owned(),
        })
    }

    /// The UPN of an enterprise principal name (`alice\@contoso.test@CONTOSO.TEST` names the
    /// user whose UPN is `alice@contoso.test`), or `None` for a plain one.
    pub fn enterprise_upn(&self) -> Option<String> {
        self.name
            .contains("\\@")
            .then(|| self.name.replace("\\@", "@"))
    }

    /// Whether this is a computer account (`NAME$`).
    pub fn is_computer(&self) -> bool {
        self.name.ends_with('$')
    }
}

/// Who authenticated: the directory entry and how it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsIdentity {
    /// The directory entry.
    pub user: User,
    /// Whether the principal is a computer account.
    pub computer: bool,
    /// The federated domain of the principal's realm.
    pub domain: String,
}

/// Finds the directory entry of `principal`, whose realm maps to `domain` (see
/// [`domain_for`]): an enterprise principal name by its UPN; otherwise by
/// `sAMAccountName`, then (users only) by the UPN `name@domain`. Absent entries are refused,
/// disabled ones as `Disabled` when the directory can tell.
pub async fn resolve_principal(
    directory: &dyn Directory,
    domain: &str,
    principal: &Principal,
) -> Result<WindowsIdentity, DirectoryError> {
    let domain = domain.to_owned();
    let computer = principal.is_computer();
    if let Some(upn) = principal.enterprise_upn() {
        let user = directory
            .lookup(&upn)
            .await?
            .ok_or(DirectoryError::Rejected(AuthFailure::UnknownUser))?;
        return Ok(WindowsIdentity {
            user,
            computer,
            domain,
        });
    }
    let mut user = directory.lookup_account(&principal.name).await?;
    if user.is_none() && !computer {
        user = directory
            .lookup(&format!("{}@{domain}", principal.name))
            .await?;
    }
    let Some(user) = user else {
        let failure = directory
            .account_refusal(&principal.name)
            .await?
            .unwrap_or(AuthFailure::UnknownUser);
        return Err(DirectoryError::Rejected(failure));
    };
    Ok(WindowsIdentity {
        user,
        computer,
        domain,
    })
}

/// Why Windows claims could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WindowsClaimsError {
    /// A computer entry lacks what hybrid join needs.
    #[error("computer account {0} has no object GUID or SID in the directory")]
    ComputerIncomplete(String),
    /// The ticket's realm is not in `[apps.kerberos] realms`.
    #[error("Kerberos realm {0} is not in [apps.kerberos] realms")]
    RealmNotAccepted(String),
}

/// Claims of a Windows-authenticated principal: AuthenticationMethod windows,
/// `insidecorporatenetwork=true`, `accounttype`, and for computers `onpremobjectguid`,
/// `primarysid` and ImmutableID = base64 objectGUID; `issuerid` when configured.
pub fn windows_claims(
    issuer: &str,
    identity: &WindowsIdentity,
    issuer_id: Option<&str>,
    now: OffsetDateTime,
) -> Result<Claims, WindowsClaimsError> {
    let user = &identity.user;
    let mut extra = vec![attribute(NS_WS_2012_01, "insidecorporatenetwork", "true")];
    let (upn, immutable_id) = if identity.computer {
        let name = user.sam_account_name.clone().unwrap_or_default();
        let (Some(guid), Some(sid)) = (&user.object_guid, &user.object_sid) else {
            return Err(WindowsClaimsError::ComputerIncomplete(name));
        };
        extra.push(attribute(NS_WS_2012_01, "accounttype", "DJ"));
        extra.push(attribute(NS_IDENTITY_CLAIMS, "onpremobjectguid", guid));
        extra.push(attribute(NS_WS_2008_06_CLAIMS, "primarysid", sid));
        let upn = if user.upn.is_empty() {
            format!("{name}@{}", identity.domain)
        } else {
            user.upn.clone()
        };
        (upn, guid.clone())
    } else {
        extra.push(attribute(NS_WS_2012_01, "accounttype", "User"));
        (user.upn.clone(), user.immutable_id.clone())
    };
    if let Some(issuer_id) = issuer_id {
        extra.push(attribute(NS_WS_2008_06_CLAIMS, "issuerid", issuer_id));
    }
    Ok(Claims {
        issuer: issuer.to_owned(),
        audience: crate::protocol::ns::MICROSOFT_ONLINE.to_owned(),
        immutable_id,
        upn,
        authn_method: AuthnMethod::Windows,
        authn_instant: now,
        mfa_performed: false,
        extra_attributes: extra,
    })
}

fn attribute(namespace: &str, name: &str, value: &str) -> ClaimAttribute {
    ClaimAttribute {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        values: vec![value.to_owned()],
    }
}

/// The token of an `Authorization: Negotiate <base64>` header, decoded; `None` otherwise.
pub fn negotiate_token(authorization: Option<&str>) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let value = authorization?.trim();
    let (scheme, token) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Negotiate") {
        return None;
    }
    base64::engine::general_purpose::STANDARD
        .decode(token.trim())
        .ok()
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_split_and_computers_are_recognised() {
        let p = Principal::parse("PC1$@TEST.LOCAL").unwrap();
        assert_eq!(p.name, "PC1$");
        assert_eq!(p.realm, "TEST.LOCAL");
        assert!(p.is_computer());
        assert!(!Principal::parse("alice@TEST.LOCAL").unwrap().is_computer());
        assert_eq!(Principal::parse("HTTP/host@TEST.LOCAL"), None);
        assert_eq!(Principal::parse("alice"), None);
        let enterprise = Principal::parse(r"alice\@contoso.test@CONTOSO.TEST").unwrap();
        assert_eq!(enterprise.realm, "CONTOSO.TEST");
        assert_eq!(
            enterprise.enterprise_upn().as_deref(),
            Some("alice@contoso.test")
        );
        assert_eq!(p.enterprise_upn(), None);
    }

    #[test]
    fn only_configured_realms_have_a_domain() {
        let config: KerberosConfig = toml::from_str(
            "keytab = \"k\"\nspn = \"HTTP/h\"\nallowed_networks = [\"10.0.0.0/8\"]\nrealms = { \"CORP.EXAMPLE.COM\" = \"example.com\" }\n",
        )
        .unwrap();
        let alice = Principal::parse("alice@corp.example.com").unwrap();
        assert_eq!(domain_for(&config, &alice).unwrap(), "example.com");
        let foreign = Principal::parse("alice@OTHER.EXAMPLE.COM").unwrap();
        assert_eq!(
            domain_for(&config, &foreign).unwrap_err().to_string(),
            "Kerberos realm OTHER.EXAMPLE.COM is not in [apps.kerberos] realms"
        );
    }

    #[test]
    fn negotiate_header_is_decoded() {
        assert_eq!(
            negotiate_token(Some("Negotiate YWJj")),
            Some(b"abc".to_vec())
        );
        assert_eq!(
            negotiate_token(Some("negotiate  YWJj ")),
            Some(b"abc".to_vec())
        );
        assert_eq!(negotiate_token(Some("Basic YWJj")), None);
        assert_eq!(negotiate_token(Some("Negotiate !!")), None);
        assert_eq!(negotiate_token(None), None);
    }

    fn user(upn: &str) -> User {
        User {
            upn: upn.into(),
            immutable_id: "user-immutable".into(),
            display_name: None,
            groups: Vec::new(),
            sam_account_name: Some("PC1$".into()),
            object_guid: None,
            object_sid: None,
            password_expires_at: None,
        }
    }

    #[test]
    fn computer_claims_need_guid_and_sid() {
        let identity = WindowsIdentity {
            user: user(""),
            computer: true,
            domain: "example.com".into(),
        };
        assert!(
            windows_claims("example.com", &identity, None, OffsetDateTime::UNIX_EPOCH).is_err()
        );
        let mut full = identity.clone();
        full.user.object_guid = Some("AAECAwQFBgcICQoLDA0ODw==".into());
        full.user.object_sid = Some("S-1-5-21-1-2-3-1105".into());
        let claims = windows_claims(
            "example.com",
            &full,
            Some("http://example.com/adfs/services/trust/"),
            OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap();
        assert_eq!(claims.upn, "PC1$@example.com");
        assert_eq!(claims.immutable_id, "AAECAwQFBgcICQoLDA0ODw==");
        assert_eq!(claims.authn_method, AuthnMethod::Windows);
        let shown: Vec<(String, String, String)> = claims
            .extra_attributes
            .iter()
            .map(|a| (a.namespace.clone(), a.name.clone(), a.values.join(",")))
            .collect();
        let expect = |ns: &str, n: &str, v: &str| (ns.to_owned(), n.to_owned(), v.to_owned());
        assert_eq!(
            shown,
            [
                expect(NS_WS_2012_01, "insidecorporatenetwork", "true"),
                expect(NS_WS_2012_01, "accounttype", "DJ"),
                expect(
                    NS_IDENTITY_CLAIMS,
                    "onpremobjectguid",
                    "AAECAwQFBgcICQoLDA0ODw=="
                ),
                expect(NS_WS_2008_06_CLAIMS, "primarysid", "S-1-5-21-1-2-3-1105"),
                expect(
                    NS_WS_2008_06_CLAIMS,
                    "issuerid",
                    "http://example.com/adfs/services/trust/"
                ),
            ]
        );
    }
}
