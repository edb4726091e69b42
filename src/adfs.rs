//! Moving a domain from ADFS without an Entra change: what Entra holds for the domain (the JSON
//! of `Get-MgDomainFederationConfiguration`), the token-signing pair exported from ADFS as a
//! PFX, the app configuration `fedsts import-adfs` writes from them, and the comparison
//! `check-config --compare-federation` makes before a cut-over.
//!
//! Each difference between what Entra holds and what fedsts would serve is a named
//! [`Mismatch`], with the error Entra would report after the cut-over (AADSTS50107 for the
//! issuer, AADSTS50008 for the signing certificate), so it is found before users see it.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde::Deserialize;

use crate::config::AppConfig;
use crate::crypto::{Certificate, CryptoError, SigningIdentity, SoftwareSigner};
use crate::protocol::wstrust::TrustVersion;
use crate::secret::Secret;
use crate::sts::AppUrls;

/// Largest federation JSON or PFX file read (both are a few KiB).
const MAX_INPUT_BYTES: u64 = 1024 * 1024;
/// The OID of `rsaEncryption`, the only key kind fedsts signs with.
const RSA_ENCRYPTION_OID: &str = "1.2.840.113549.1.1.1";
/// The only protocol fedsts speaks with Entra.
const WS_FED: &str = "wsFed";

/// What Entra ID holds for a federated domain: the fields of `internalDomainFederation`
/// (Graph camelCase, or the PascalCase `ConvertTo-Json` writes for the PowerShell object).
#[derive(Clone, Debug, Deserialize)]
pub struct EntraFederation {
    /// The `Issuer` every assertion must carry byte for byte.
    #[serde(rename = "issuerUri", alias = "IssuerUri")]
    pub issuer_uri: String,
    /// Browser sign-in URL.
    #[serde(rename = "passiveSignInUri", alias = "PassiveSignInUri")]
    pub passive_sign_in_uri: String,
    /// WS-Trust endpoint for active clients.
    #[serde(rename = "activeSignInUri", alias = "ActiveSignInUri")]
    pub active_sign_in_uri: String,
    /// MEX URL.
    #[serde(rename = "metadataExchangeUri", alias = "MetadataExchangeUri")]
    pub metadata_exchange_uri: String,
    /// Where Entra sends the browser to sign out.
    #[serde(rename = "signOutUri", alias = "SignOutUri")]
    pub sign_out_uri: String,
    /// Base64 DER of the certificate Entra verifies assertions with.
    #[serde(rename = "signingCertificate", alias = "SigningCertificate")]
    pub signing_certificate: String,
    /// Base64 DER of the certificate Entra also accepts (rollover), if any.
    #[serde(
        default,
        rename = "nextSigningCertificate",
        alias = "NextSigningCertificate"
    )]
    pub next_signing_certificate: Option<String>,
    /// `wsFed` or `saml`; fedsts speaks WS-Fed.
    #[serde(
        default,
        rename = "preferredAuthenticationProtocol",
        alias = "PreferredAuthenticationProtocol"
    )]
    pub preferred_authentication_protocol: Option<String>,
    /// How Entra treats the MFA claim (`acceptIfMfaDoneByFederatedIdp`, …); shown, not checked.
    #[serde(
        default,
        rename = "federatedIdpMfaBehavior",
        alias = "FederatedIdpMfaBehavior"
    )]
    pub federated_idp_mfa_behavior: Option<String>,
}

/// Why an import or comparison could not start (nothing was written).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdfsError {
    /// An input file could not be read.
    #[error("{path}: cannot read: {source} — check the path and its permissions")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An input file is larger than any real export.
    #[error("{path}: larger than {MAX_INPUT_BYTES} bytes — give the exported file itself")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The federation JSON is not the documented shape.
    #[error(
        "{path}: not the JSON of Get-MgDomainFederationConfiguration ({message}) — export it with `Get-MgDomainFederationConfiguration -DomainId DOMAIN | ConvertTo-Json`"
    )]
    FederationJson {
        /// The file.
        path: PathBuf,
        /// What serde said (names the missing field).
        message: String,
    },
    /// The PFX could not be opened: a wrong password, or not PKCS#12.
    #[error(
        "--pfx: cannot open the PKCS#12 file ({0}) — check --pfx-password-file holds the export password"
    )]
    Pfx(String),
    /// The PFX holds no key or more than one.
    #[error(
        "--pfx: holds {0} private keys — export only the token-signing certificate with its key"
    )]
    KeyCount(usize),
    /// The key is not RSA.
    #[error(
        "--pfx: the private key is not an RSA key (algorithm {0}) — fedsts signs with RSA; export the RSA token-signing certificate"
    )]
    NotRsa(String),
    /// No certificate in the PFX belongs to the key.
    #[error(
        "--pfx: no certificate in the file matches its private key — export the certificate with its own key"
    )]
    NoMatchingCertificate,
    /// The key or certificate was refused.
    #[error("--pfx: {0}")]
    Crypto(#[from] CryptoError),
    /// A certificate in the JSON is not base64 DER.
    #[error("{field}: not a base64 DER certificate ({message}) — copy the value Entra holds")]
    EntraCertificate {
        /// The JSON field.
        field: &'static str,
        /// Why.
        message: String,
    },
    /// The URLs Entra holds name no one https host to serve them all.
    #[error(
        "passiveSignInUri: `{0}` is not an https URL with a host — fix the domain's federation in Entra"
    )]
    NoHost(String),
    /// What Entra holds would not be served by the written configuration.
    #[error("{}", format_mismatches(.0))]
    Mismatches(Vec<Mismatch>),
    /// An output file already exists.
    #[error("{0}: already exists — choose another --out directory (nothing was written)")]
    Exists(PathBuf),
    /// An output file could not be written.
    #[error("{path}: cannot write: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// One way fedsts would answer differently from what Entra holds for the domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The assertion issuer differs: Entra answers AADSTS50107 (unknown federation realm).
    Issuer {
        /// What Entra holds.
        entra: String,
        /// What fedsts issues.
        ours: String,
    },
    /// A URL Entra sends clients to is not served by fedsts.
    Url {
        /// The JSON field.
        field: &'static str,
        /// What Entra holds.
        entra: String,
        /// The URLs of that kind fedsts serves.
        served: Vec<String>,
    },
    /// The signing certificate differs: Entra answers AADSTS50008 (invalid SAML token).
    SigningCertificate {
        /// SHA-256 thumbprint of what Entra holds.
        entra: String,
        /// SHA-256 thumbprint of what fedsts signs with.
        ours: String,
    },
    /// Entra prefers a protocol fedsts does not speak.
    Protocol {
        /// What Entra holds.
        entra: String,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Issuer { entra, ours } => write!(
                f,
                "issuerUri: Entra holds `{entra}` but fedsts issues `{ours}` — sign-ins would fail with AADSTS50107; set issuer_uri = \"{entra}\""
            ),
            Self::Url {
                field,
                entra,
                served,
            } => write!(
                f,
                "{field}: Entra holds `{entra}` but fedsts serves {} — clients would get 404; set server.public_url to its host and adfs_paths = true, or change the URL in Entra",
                served.join(", ")
            ),
            Self::SigningCertificate { entra, ours } => write!(
                f,
                "signingCertificate: Entra holds SHA-256 {entra} but fedsts signs with {ours} — tokens would fail with AADSTS50008; import the ADFS token-signing PFX or update Entra"
            ),
            Self::Protocol { entra } => write!(
                f,
                "preferredAuthenticationProtocol: Entra holds `{entra}` — fedsts speaks WS-Federation; set it to wsFed"
            ),
        }
    }
}

fn format_mismatches(mismatches: &[Mismatch]) -> String {
    mismatches
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl EntraFederation {
    /// Reads the JSON export (an object, or the one-element array PowerShell may write).
    pub fn load(path: &Path) -> Result<Self, AdfsError> {
        let bytes = read_bounded(path)?;
        let json_error = |e: serde_json::Error| AdfsError::FederationJson {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(json_error)?;
        let object = match value {
            serde_json::Value::Array(mut items) if items.len() == 1 => items.remove(0),
            other => other,
        };
        serde_json::from_value(object).map_err(json_error)
    }

    /// The DER of `signingCertificate`.
    pub fn signing_certificate_der(&self) -> Result<Vec<u8>, AdfsError> {
        decode_certificate("signingCertificate", &self.signing_certificate)
    }

    /// `scheme://host[:port]` of the passive sign-in URL: what `server.public_url` must be.
    pub fn public_base(&self) -> Result<String, AdfsError> {
        let url = &self.passive_sign_in_uri;
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| AdfsError::NoHost(url.clone()))?;
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(AdfsError::NoHost(url.clone()));
        }
        Ok(format!("https://{}", host.to_ascii_lowercase()))
    }
}

fn decode_certificate(field: &'static str, b64: &str) -> Result<Vec<u8>, AdfsError> {
    let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| AdfsError::EntraCertificate {
            field,
            message: e.to_string(),
        })?;
    Certificate::from_der(&der).map_err(|e| AdfsError::EntraCertificate {
        field,
        message: e.to_string(),
    })?;
    Ok(der)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, AdfsError> {
    let read_error = |source| AdfsError::Read {
        path: path.to_path_buf(),
        source,
    };
    let size = std::fs::metadata(path).map_err(read_error)?.len();
    if size > MAX_INPUT_BYTES {
        return Err(AdfsError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(read_error)
}

/// Every way `app`, served under `public_base`, differs from what Entra holds. `signing_der` is
/// the certificate fedsts signs with.
pub fn compare(
    entra: &EntraFederation,
    app: &AppConfig,
    public_base: &str,
    signing_der: &[u8],
) -> Result<Vec<Mismatch>, AdfsError> {
    let mut mismatches = Vec::new();
    if entra.issuer_uri != app.issuer_uri {
        mismatches.push(Mismatch::Issuer {
            entra: entra.issuer_uri.clone(),
            ours: app.issuer_uri.clone(),
        });
    }
    let served = ServedUrls::of(app, public_base);
    let urls = [
        (
            "passiveSignInUri",
            &entra.passive_sign_in_uri,
            &served.passive,
        ),
        ("signOutUri", &entra.sign_out_uri, &served.passive),
        ("activeSignInUri", &entra.active_sign_in_uri, &served.active),
        (
            "metadataExchangeUri",
            &entra.metadata_exchange_uri,
            &served.mex,
        ),
    ];
    for (field, url, candidates) in urls {
        if !candidates.iter().any(|c| c.matches(url)) {
            mismatches.push(Mismatch::Url {
                field,
                entra: url.clone(),
                served: candidates.iter().map(|c| c.url.clone()).collect(),
            });
        }
    }
    let entra_der = entra.signing_certificate_der()?;
    if entra_der != signing_der {
        mismatches.push(Mismatch::SigningCertificate {
            entra: Certificate::from_der(&entra_der)?.sha256_thumbprint_hex(),
            ours: Certificate::from_der(signing_der)?.sha256_thumbprint_hex(),
        });
    }
    if let Some(protocol) = &entra.preferred_authentication_protocol
        && !protocol.eq_ignore_ascii_case(WS_FED)
    {
        mismatches.push(Mismatch::Protocol {
            entra: protocol.clone(),
        });
    }
    Ok(mismatches)
}

/// One URL fedsts answers, and whether its path matches in any case (ADFS paths, as http.sys).
struct ServedUrl {
    url: String,
    any_case: bool,
}

impl ServedUrl {
    fn matches(&self, url: &str) -> bool {
        if self.any_case {
            self.url.eq_ignore_ascii_case(url)
        } else {
            self.url == url
        }
    }
}

/// The URLs of each kind an app answers: its own layout, and the ADFS one with `adfs_paths`.
struct ServedUrls {
    passive: Vec<ServedUrl>,
    active: Vec<ServedUrl>,
    mex: Vec<ServedUrl>,
}

impl ServedUrls {
    fn of(app: &AppConfig, public_base: &str) -> Self {
        let mut layouts = vec![(AppUrls::new(public_base, &app.id), false)];
        if app.adfs_paths {
            layouts.push((AppUrls::adfs(public_base, &app.id), true));
        }
        let mut served = Self {
            passive: Vec::new(),
            active: Vec::new(),
            mex: Vec::new(),
        };
        for (urls, any_case) in layouts {
            let url = |url: String| ServedUrl { url, any_case };
            let passive = urls.passive();
            let other_slash = match passive.strip_suffix('/') {
                Some(bare) => bare.to_owned(),
                None => format!("{passive}/"),
            };
            served.passive.push(url(passive));
            served.passive.push(url(other_slash));
            for version in [TrustVersion::V13, TrustVersion::V2005] {
                served.active.push(url(urls.usernamemixed(version)));
            }
            served.mex.push(url(urls.mex()));
        }
        served
    }
}

/// What `fedsts import-adfs` was given.
#[derive(Debug)]
pub struct ImportRequest<'a> {
    /// The PKCS#12 export of the ADFS token-signing certificate and key.
    pub pfx: &'a Path,
    /// The federation JSON.
    pub federation: &'a Path,
    /// The federated domain (the JSON does not name it).
    pub domain: &'a str,
    /// App id to write.
    pub app_id: &'a str,
    /// `[directories.NAME]` the app uses.
    pub directory: &'a str,
    /// Where the files go.
    pub out: &'a Path,
}

/// What an import wrote.
#[derive(Debug)]
pub struct Imported {
    /// The TOML fragment (an `[[apps]]` table) to add to the configuration.
    pub config_fragment: PathBuf,
    /// The PEM certificate.
    pub signing_cert: PathBuf,
    /// The PEM key (mode 0600).
    pub signing_key: PathBuf,
    /// What `server.public_url` must be.
    pub public_url: String,
    /// SHA-256 thumbprint of the signing certificate.
    pub thumbprint: String,
}

/// File names the import writes in `--out`.
const FRAGMENT_FILE: &str = "adfs-app.toml";
const CERT_FILE: &str = "token-signing.crt";
const KEY_FILE: &str = "token-signing.key";

/// Reads the PFX and the JSON, checks that the written configuration serves what Entra holds,
/// and only then writes the fragment, certificate and key.
pub fn import(request: &ImportRequest<'_>, pfx_password: &Secret) -> Result<Imported, AdfsError> {
    let entra = EntraFederation::load(request.federation)?;
    let pair = read_pfx(request.pfx, pfx_password.expose())?;
    let public_url = entra.public_base()?;
    let app = imported_app(request, &entra);
    let mismatches = compare(&entra, &app, &public_url, pair.certificate.der())?;
    if !mismatches.is_empty() {
        return Err(AdfsError::Mismatches(mismatches));
    }
    let paths = [FRAGMENT_FILE, CERT_FILE, KEY_FILE].map(|name| request.out.join(name));
    if let Some(existing) = paths.iter().find(|p| p.exists()) {
        return Err(AdfsError::Exists(existing.clone()));
    }
    let [config_fragment, signing_cert, signing_key] = paths;
    let fragment = render_fragment(&app, &entra, &public_url);
    write_new(&signing_key, pair.key_pem.as_bytes(), 0o600)?;
    write_new(
        &signing_cert,
        pem("CERTIFICATE", pair.certificate.der()).as_bytes(),
        0o644,
    )?;
    write_new(&config_fragment, fragment.as_bytes(), 0o644)?;
    Ok(Imported {
        config_fragment,
        signing_cert,
        signing_key,
        public_url,
        thumbprint: pair.certificate.sha256_thumbprint_hex(),
    })
}

fn imported_app(request: &ImportRequest<'_>, entra: &EntraFederation) -> AppConfig {
    AppConfig {
        id: request.app_id.to_owned(),
        domain: request.domain.to_owned(),
        display_name: None,
        issuer_uri: entra.issuer_uri.clone(),
        signing_cert: PathBuf::from(CERT_FILE),
        signing_key: Some(PathBuf::from(KEY_FILE)),
        signing_pkcs11: None,
        directory: request.directory.to_owned(),
        token_lifetime_secs: crate::config::DEFAULT_TOKEN_LIFETIME_SECS,
        password_expiry_claims: false,
        kerberos: None,
        device_trust: None,
        next_signing_cert: None,
        next_signing_key: None,
        passive: Default::default(),
        adfs_paths: true,
        rollover: Default::default(),
        portal: Default::default(),
    }
}

fn render_fragment(app: &AppConfig, entra: &EntraFederation, public_url: &str) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut text = format!(
        "# Written by `fedsts import-adfs`: the domain as Entra ID holds it today.\n\
         # [server] public_url must be {public_url} (the STS host name Entra sends clients to).\n"
    );
    if let Some(mfa) = &entra.federated_idp_mfa_behavior {
        text.push_str(&format!("# Entra federatedIdpMfaBehavior: {mfa}\n"));
    }
    if entra.next_signing_certificate.is_some() {
        text.push_str(
            "# Entra also holds a nextSigningCertificate; fedsts signs with the imported one.\n",
        );
    }
    text.push_str(&format!(
        "[[apps]]\nid = {}\ndomain = {}\nissuer_uri = {}\nsigning_cert = {}\nsigning_key = {}\ndirectory = {}\nadfs_paths = true\n",
        quoted(&app.id),
        quoted(&app.domain),
        quoted(&app.issuer_uri),
        quoted(CERT_FILE),
        quoted(KEY_FILE),
        quoted(&app.directory),
    ));
    text
}

/// The token-signing pair from a PFX: the PEM of the key and its certificate.
struct PfxPair {
    key_pem: String,
    certificate: Certificate,
}

/// Opens a PKCS#12 file (PBES2/AES as current Windows exports, or the legacy 3DES/RC2) and
/// returns its one RSA key with the certificate that matches it.
fn read_pfx(path: &Path, password: &str) -> Result<PfxPair, AdfsError> {
    let bytes = read_bounded(path)?;
    let archive = p12_keystore::Pkcs12Archive::from_pkcs12(&bytes, password)
        .map_err(|e| AdfsError::Pfx(e.to_string()))?;
    let [key] = archive.keys.as_slice() else {
        return Err(AdfsError::KeyCount(archive.keys.len()));
    };
    let algorithm = key.key.oid().to_string();
    if algorithm != RSA_ENCRYPTION_OID {
        return Err(AdfsError::NotRsa(algorithm));
    }
    let key_pem = pem("PRIVATE KEY", key.key.as_der());
    let signer = Arc::new(SoftwareSigner::from_pem(&key_pem)?);
    for bag in &archive.certs {
        let certificate = Certificate::from_der(bag.cert.as_der())?;
        if SigningIdentity::new(signer.clone(), certificate.clone()).is_ok() {
            return Ok(PfxPair {
                key_pem,
                certificate,
            });
        }
    }
    Err(AdfsError::NoMatchingCertificate)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// Creates `path` (never overwriting) with `mode` from the start, so a key is never readable by
/// others even for a moment.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), AdfsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let write_error = |source| AdfsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(write_error)?;
    file.write_all(bytes).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(base: &str) -> EntraFederation {
        EntraFederation {
            issuer_uri: "http://sts.contoso.com/adfs/services/trust".into(),
            passive_sign_in_uri: format!("{base}/adfs/ls/"),
            active_sign_in_uri: format!("{base}/adfs/services/trust/2005/usernamemixed"),
            metadata_exchange_uri: format!("{base}/adfs/services/trust/mex"),
            sign_out_uri: format!("{base}/adfs/ls/"),
            signing_certificate: String::new(),
            next_signing_certificate: None,
            preferred_authentication_protocol: Some("wsFed".into()),
            federated_idp_mfa_behavior: None,
        }
    }

    fn app(adfs_paths: bool) -> AppConfig {
        let request = ImportRequest {
            pfx: Path::new("x"),
            federation: Path::new("x"),
            domain: "contoso.com",
            app_id: "contoso",
            directory: "main",
            out: Path::new("."),
        };
        AppConfig {
            adfs_paths,
            ..imported_app(&request, &entra("https://sts.contoso.com"))
        }
    }

    #[test]
    fn served_urls_cover_the_adfs_layout_only_with_adfs_paths() {
        let federation = entra("https://sts.contoso.com");
        for (adfs_paths, expected) in [(true, 0), (false, 4)] {
            let served = ServedUrls::of(&app(adfs_paths), "https://sts.contoso.com");
            let urls = [
                (&federation.passive_sign_in_uri, &served.passive),
                (&federation.sign_out_uri, &served.passive),
                (&federation.active_sign_in_uri, &served.active),
                (&federation.metadata_exchange_uri, &served.mex),
            ];
            let missing = urls
                .iter()
                .filter(|(url, candidates)| !candidates.iter().any(|c| c.matches(url)))
                .count();
            assert_eq!(missing, expected, "adfs_paths = {adfs_paths}");
        }
        let served = ServedUrls::of(&app(true), "https://sts.contoso.com");
        assert!(
            served
                .mex
                .iter()
                .any(|c| c.matches("https://sts.contoso.com/ADFS/services/trust/MEX"))
        );
        assert!(
            !served
                .mex
                .iter()
                .any(|c| c.matches("https://other.contoso.com/adfs/services/trust/mex"))
        );
    }

    #[test]
    fn public_base_is_the_passive_host() {
        let federation = entra("https://STS.contoso.com:8443");
        assert_eq!(
            federation.public_base().ok(),
            Some("https://sts.contoso.com:8443".to_owned())
        );
        let plain = EntraFederation {
            passive_sign_in_uri: "http://sts.contoso.com/adfs/ls/".into(),
            ..federation
        };
        assert!(matches!(plain.public_base(), Err(AdfsError::NoHost(_))));
    }

    #[test]
    fn pem_wraps_at_64() {
        let text = pem("CERTIFICATE", &[7u8; 100]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&"-----BEGIN CERTIFICATE-----"));
        assert_eq!(lines.get(1).map(|l| l.len()), Some(64));
        assert_eq!(lines.last(), Some(&"-----END CERTIFICATE-----"));
    }
}
