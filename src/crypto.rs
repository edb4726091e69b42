//! Keys, certificates and the [`Signer`] abstraction (no XML here).
//!
//! The STS signs with RSA PKCS#1 v1.5 SHA-256 (what Entra ID expects on SAML tokens). The key
//! lives behind the [`Signer`] trait so that an HSM-backed implementation can replace the
//! in-memory [`SoftwareSigner`] later. [`Certificate`] parses X.509 DER once and keeps the facts
//! the rest of the service needs (validity, subject, public key, thumbprint).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::OffsetDateTime;
use x509_cert::der::{Decode, Encode};

use crate::config::KeySource;

pub mod pkcs11;

/// Smallest RSA modulus, in bits, we accept for signing keys.
const MIN_RSA_BITS: usize = 2048;

/// Everything that can go wrong loading keys and certificates or signing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The private key PEM could not be decoded.
    #[error(
        "the private key PEM could not be read ({0}); supply an unencrypted \"PRIVATE KEY\" (PKCS#8) or \"RSA PRIVATE KEY\" (PKCS#1) block"
    )]
    InvalidKeyPem(rustls_pki_types::pem::Error),
    /// The private key is not an RSA key.
    #[error(
        "the private key is not an RSA key; fedsts signs with RSA, supply an RSA key of at least 2048 bits"
    )]
    NotRsaKey,
    /// The RSA key was rejected by the crypto library.
    #[error(
        "the RSA private key was rejected ({0}); check that it is a well-formed RSA key of 2048 to 8192 bits"
    )]
    KeyRejected(aws_lc_rs::error::KeyRejected),
    /// The crypto library could not encode the key's public half.
    #[error(
        "the RSA private key was rejected ({0}); check that it is a well-formed RSA key of 2048 to 8192 bits"
    )]
    PublicKeyUnencodable(aws_lc_rs::error::Unspecified),
    /// The RSA key is too small.
    #[error("the RSA key has {bits} bits; use a key of at least 2048 bits")]
    KeyTooSmall {
        /// Modulus size of the rejected key.
        bits: usize,
    },
    /// The certificate PEM could not be decoded or held no certificate.
    #[error(
        "the certificate PEM could not be read ({0}); supply one or more \"-----BEGIN CERTIFICATE-----\" blocks"
    )]
    InvalidCertificatePem(rustls_pki_types::pem::Error),
    /// The certificate PEM held no CERTIFICATE block.
    #[error(
        "the certificate PEM could not be read (no CERTIFICATE block found); supply one or more \"-----BEGIN CERTIFICATE-----\" blocks"
    )]
    NoCertificate,
    /// The certificate bytes are not a valid X.509 certificate.
    #[error("the certificate is not a valid DER X.509 certificate: {0}")]
    InvalidCertificate(String),
    /// The private key does not belong to the certificate.
    #[error(
        "the private key does not match the public key of certificate \"{subject}\"; configure the key that belongs to this certificate"
    )]
    KeyCertificateMismatch {
        /// Subject of the certificate that did not match.
        subject: String,
    },
    /// The crypto library failed to produce a signature.
    #[error("RSA-SHA256 signing failed inside aws-lc-rs; the key may be unusable")]
    SigningFailed,
    /// A key or certificate file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        /// The file that could not be read.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// Generating a key or self-signed certificate failed.
    #[error("could not generate a self-signed certificate: {0}")]
    Generation(String),
    /// The key signed a test message but the signature does not verify with the certificate.
    #[error(
        "the key signed a test digest, but the signature does not verify against certificate \"{subject}\" — the key or token is broken"
    )]
    SelfTestFailed {
        /// Subject of the certificate.
        subject: String,
    },
    /// A PKCS#11 token failed (its own message says which way).
    #[error("PKCS#11: {0}")]
    Pkcs11(#[from] pkcs11::Pkcs11Error),
}

/// Where a signing key is kept; written into every issued assertion's audit record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStore {
    /// A PEM file read into memory ([`SoftwareSigner`]).
    File,
    /// A PKCS#11 token ([`pkcs11::Pkcs11Signer`]).
    Pkcs11,
}

impl KeyStore {
    /// `file` or `pkcs11`, as the audit log writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStore::File => "file",
            KeyStore::Pkcs11 => "pkcs11",
        }
    }
}

/// Something that can make RSA PKCS#1 v1.5 SHA-256 signatures: a key in memory
/// ([`SoftwareSigner`]) or in a PKCS#11 token ([`pkcs11::Pkcs11Signer`]).
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// Signs `message` (hashing it with SHA-256 first) and returns the raw signature bytes.
    fn sign_rsa_sha256(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// DER SubjectPublicKeyInfo of the key, used to check it matches a certificate.
    fn public_key_spki_der(&self) -> Vec<u8>;
    /// Where the key is kept.
    fn store(&self) -> KeyStore;
    /// Whether the key can sign right now (a token answers); `/healthz` asks.
    fn health(&self) -> Result<(), CryptoError> {
        Ok(())
    }
}

/// RSA key held in memory, signing with aws-lc-rs.
pub struct SoftwareSigner {
    key_pair: aws_lc_rs::rsa::KeyPair,
    spki_der: Vec<u8>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SoftwareSigner")
            .field("modulus_bits", &(self.key_pair.public_modulus_len() * 8))
            .finish_non_exhaustive()
    }
}

impl SoftwareSigner {
    /// PEM with "PRIVATE KEY" (PKCS#8) or "RSA PRIVATE KEY" (PKCS#1). Reject keys under 2048 bits.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let key =
            PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(CryptoError::InvalidKeyPem)?;
        let key_pair = match &key {
            PrivateKeyDer::Pkcs8(der) => {
                aws_lc_rs::rsa::KeyPair::from_pkcs8(der.secret_pkcs8_der())
            }
            PrivateKeyDer::Pkcs1(der) => aws_lc_rs::rsa::KeyPair::from_der(der.secret_pkcs1_der()),
            _ => return Err(CryptoError::NotRsaKey),
        }
        .map_err(CryptoError::KeyRejected)?;
        Self::from_key_pair(key_pair)
    }

    fn from_key_pair(key_pair: aws_lc_rs::rsa::KeyPair) -> Result<Self, CryptoError> {
        let bits = key_pair.public_modulus_len() * 8;
        if bits < MIN_RSA_BITS {
            return Err(CryptoError::KeyTooSmall { bits });
        }
        let spki_der = key_pair
            .public_key()
            .as_der()
            .map_err(CryptoError::PublicKeyUnencodable)?
            .as_ref()
            .to_vec();
        Ok(Self { key_pair, spki_der })
    }
}

impl Signer for SoftwareSigner {
    fn sign_rsa_sha256(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut signature = vec![0; self.key_pair.public_modulus_len()];
        self.key_pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                message,
                &mut signature,
            )
            .map_err(|_| CryptoError::SigningFailed)?;
        Ok(signature)
    }

    fn public_key_spki_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }

    fn store(&self) -> KeyStore {
        KeyStore::File
    }
}

impl Signer for pkcs11::Pkcs11Signer {
    fn sign_rsa_sha256(&self, message: &[u8]) -> Result<Vec<u8>, CryptoError> {
        Ok(self.sign(message)?)
    }

    fn public_key_spki_der(&self) -> Vec<u8> {
        self.spki_der().to_vec()
    }

    fn store(&self) -> KeyStore {
        KeyStore::Pkcs11
    }

    fn health(&self) -> Result<(), CryptoError> {
        Ok(self.probe()?)
    }
}

/// An X.509 certificate (DER) with the facts we need.
#[derive(Clone, Debug)]
pub struct Certificate {
    der: Vec<u8>,
    /// `der` in standard base64 (see [`Certificate::base64`]).
    base64: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    subject: String,
    spki_der: Vec<u8>,
    alt_names: Vec<String>,
}

impl Certificate {
    /// Parses the first CERTIFICATE block of `pem`.
    pub fn from_pem(pem: &str) -> Result<Self, CryptoError> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(CryptoError::InvalidCertificatePem)?;
        Self::from_der(der.as_ref())
    }

    /// Parses every CERTIFICATE block of `pem` (leaf first); at least one is required.
    pub fn chain_from_pem(pem: &str) -> Result<Vec<Self>, CryptoError> {
        let chain = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|block| {
                let der = block.map_err(CryptoError::InvalidCertificatePem)?;
                Self::from_der(der.as_ref())
            })
            .collect::<Result<Vec<_>, _>>()?;
        if chain.is_empty() {
            return Err(CryptoError::NoCertificate);
        }
        Ok(chain)
    }

    /// Parses a DER-encoded X.509 certificate.
    pub fn from_der(der: &[u8]) -> Result<Self, CryptoError> {
        let invalid = |e: x509_cert::der::Error| CryptoError::InvalidCertificate(e.to_string());
        let parsed = x509_cert::Certificate::from_der(der).map_err(invalid)?;
        let tbs = parsed.tbs_certificate();
        let spki_der = tbs.subject_public_key_info().to_der().map_err(invalid)?;
        Ok(Self {
            der: der.to_vec(),
            base64: base64::engine::general_purpose::STANDARD.encode(der),
            not_before: x509_time(&tbs.validity().not_before)?,
            not_after: x509_time(&tbs.validity().not_after)?,
            subject: tbs.subject().to_string(),
            spki_der,
            alt_names: alt_names(tbs)?,
        })
    }

    /// The certificate's DER bytes.
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// Standard base64 of the DER bytes, no line breaks (the `X509Certificate` element text,
    /// encoded once: every signature carries it).
    pub fn base64(&self) -> &str {
        &self.base64
    }

    /// Start of the validity period.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of the validity period.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Subject distinguished name as an RFC 4514 string, e.g. `CN=sts.example.com`.
    pub fn subject(&self) -> String {
        self.subject.clone()
    }

    /// DNS names and IP addresses of the subjectAltName extension (empty without one).
    pub fn alt_names(&self) -> &[String] {
        &self.alt_names
    }

    /// Whether the certificate names `host` in its subjectAltName: exactly (DNS names
    /// case-insensitively, IP addresses as written) or through a `*.` wildcard for one label.
    pub fn names_host(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.alt_names.iter().any(|name| {
            let name = name.to_ascii_lowercase();
            match name.strip_prefix("*.") {
                Some(parent) => host
                    .split_once('.')
                    .is_some_and(|(label, rest)| !label.is_empty() && rest == parent),
                None => name == host,
            }
        })
    }

    /// DER SubjectPublicKeyInfo of the certified key.
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.spki_der.clone()
    }

    /// SHA-256 of the DER bytes as lowercase hex.
    pub fn sha256_thumbprint_hex(&self) -> String {
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.der)
            .as_ref()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

/// The DNS names and IP addresses of the subjectAltName extension, as text.
fn alt_names(tbs: &x509_cert::TbsCertificate) -> Result<Vec<String>, CryptoError> {
    use x509_cert::ext::pkix::SubjectAltName;
    use x509_cert::ext::pkix::name::GeneralName;
    let extension = tbs
        .get_extension::<SubjectAltName>()
        .map_err(|e| CryptoError::InvalidCertificate(format!("subjectAltName: {e}")))?;
    let Some((_, SubjectAltName(names))) = extension else {
        return Ok(Vec::new());
    };
    Ok(names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DnsName(dns) => Some(dns.to_string()),
            GeneralName::IpAddress(ip) => ip_text(ip.as_bytes()),
            _ => None,
        })
        .collect())
}

/// An IPv4 or IPv6 address from its 4 or 16 raw bytes.
fn ip_text(bytes: &[u8]) -> Option<String> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        return Some(std::net::Ipv4Addr::from(v4).to_string());
    }
    <[u8; 16]>::try_from(bytes)
        .ok()
        .map(|v6| std::net::Ipv6Addr::from(v6).to_string())
}

/// Converts an X.509 validity time to an `OffsetDateTime` (UTC).
fn x509_time(value: &x509_cert::time::Time) -> Result<OffsetDateTime, CryptoError> {
    let seconds = i64::try_from(value.to_unix_duration().as_secs())
        .map_err(|e| CryptoError::InvalidCertificate(e.to_string()))?;
    OffsetDateTime::from_unix_timestamp(seconds)
        .map_err(|e| CryptoError::InvalidCertificate(e.to_string()))
}

/// A signer together with the certificate whose public key matches it.
#[derive(Clone, Debug)]
pub struct SigningIdentity {
    /// The key that signs.
    pub signer: Arc<dyn Signer>,
    /// The certificate published for the key (sent in `KeyInfo`, registered with Entra).
    pub certificate: Certificate,
    /// SHA-256 of the certificate, lowercase hex: computed once, named in every issued audit record.
    fingerprint: String,
}

impl SigningIdentity {
    /// Fails with [`CryptoError::KeyCertificateMismatch`] when the key is not the certificate's.
    pub fn new(signer: Arc<dyn Signer>, certificate: Certificate) -> Result<Self, CryptoError> {
        if signer.public_key_spki_der() != certificate.public_key_spki_der() {
            return Err(CryptoError::KeyCertificateMismatch {
                subject: certificate.subject(),
            });
        }
        Ok(Self {
            fingerprint: certificate.sha256_thumbprint_hex(),
            signer,
            certificate,
        })
    }

    /// Loads the certificate (first block) and private key from PEM files.
    pub fn from_pem_files(cert_path: &Path, key_path: &Path) -> Result<Self, CryptoError> {
        let certificate = Certificate::from_pem(&read_text(cert_path)?)?;
        let signer = SoftwareSigner::from_pem(&read_text(key_path)?)?;
        Self::new(Arc::new(signer), certificate)
    }

    /// Loads the certificate (first block of a PEM file) and its key from `source`.
    pub fn load(cert_path: &Path, source: KeySource<'_>) -> Result<Self, CryptoError> {
        match source {
            KeySource::PemFile(key_path) => Self::from_pem_files(cert_path, key_path),
            KeySource::Pkcs11(config) => {
                let certificate = Certificate::from_pem(&read_text(cert_path)?)?;
                let signer = pkcs11::Pkcs11Signer::open(config)?;
                Self::new(Arc::new(signer), certificate)
            }
        }
    }

    /// Signs a test digest with the key and verifies it with the certificate's public key
    /// (aws-lc-rs), so a key that matches on paper but cannot sign is found before Entra is.
    pub fn self_test(&self) -> Result<(), CryptoError> {
        const MESSAGE: &[u8] = b"fedsts key check: RSA-SHA256 test digest";
        let signature = self.signer.sign_rsa_sha256(MESSAGE)?;
        let public_key = rsa_public_key_of(&self.certificate.public_key_spki_der())?;
        aws_lc_rs::signature::UnparsedPublicKey::new(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            public_key,
        )
        .verify(MESSAGE, &signature)
        .map_err(|_| CryptoError::SelfTestFailed {
            subject: self.certificate.subject(),
        })
    }

    /// The certificate's SHA-256 fingerprint (lowercase hex, what `openssl x509 -fingerprint
    /// -sha256` shows without colons): the key's name in the audit log.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

fn read_text(path: &Path) -> Result<String, CryptoError> {
    std::fs::read_to_string(path).map_err(|source| CryptoError::ReadFile {
        path: path.to_path_buf(),
        source,
    })
}

/// A freshly made self-signed certificate and its PKCS#8 private key, both PEM.
pub struct GeneratedCertificate {
    /// The certificate, one `CERTIFICATE` PEM block.
    pub certificate_pem: String,
    /// The private key, one `PRIVATE KEY` (PKCS#8) PEM block.
    pub private_key_pem: String,
}

/// RSA-2048 (aws-lc-rs key generation, then rcgen to build the cert), valid from now-1h for `valid_days`.
/// `dns_names` go into the SAN (may be empty for a token-signing cert); CN = common_name.
pub fn generate_self_signed(
    common_name: &str,
    dns_names: &[String],
    valid_days: u32,
) -> Result<GeneratedCertificate, CryptoError> {
    generate_self_signed_at(
        common_name,
        dns_names,
        OffsetDateTime::now_utc(),
        valid_days,
    )
}

/// As [`generate_self_signed`], valid from `now`-1h: rollover passes its injected clock.
pub fn generate_self_signed_at(
    common_name: &str,
    dns_names: &[String],
    now: OffsetDateTime,
    valid_days: u32,
) -> Result<GeneratedCertificate, CryptoError> {
    let generation = |e: &dyn std::fmt::Display| CryptoError::Generation(e.to_string());
    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .map_err(|e| generation(&e))?;
    let pkcs8 = rsa.as_der().map_err(|e| generation(&e))?;
    let key_pair = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(
        &PrivatePkcs8KeyDer::from(pkcs8.as_ref()),
        &rcgen::PKCS_RSA_SHA256,
    )
    .map_err(|e| generation(&e))?;
    let mut params =
        rcgen::CertificateParams::new(dns_names.to_vec()).map_err(|e| generation(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(valid_days));
    let certificate = params.self_signed(&key_pair).map_err(|e| generation(&e))?;
    Ok(GeneratedCertificate {
        certificate_pem: certificate.pem(),
        private_key_pem: key_pair.serialize_pem(),
    })
}

/// The RSAPublicKey DER inside a SubjectPublicKeyInfo (the BIT STRING's content).
fn rsa_public_key_of(spki_der: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let spki = x509_cert::spki::SubjectPublicKeyInfoOwned::from_der(spki_der)
        .map_err(|e| CryptoError::InvalidCertificate(e.to_string()))?;
    Ok(spki.subject_public_key.raw_bytes().to_vec())
}

/// An rcgen signing key whose private half is behind a [`Signer`] (a key in a token).
struct RemoteRsaKey<'a> {
    signer: &'a dyn Signer,
    public_key_der: Vec<u8>,
}

impl rcgen::PublicKeyData for RemoteRsaKey<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.public_key_der
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

impl rcgen::SigningKey for RemoteRsaKey<'_> {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer.sign_rsa_sha256(message).map_err(|e| {
            tracing::warn!(error = %e, "signing the self-signed certificate failed");
            rcgen::Error::RemoteKeyError
        })
    }
}

/// A self-signed token-signing certificate (PEM) for a key that only `signer` can use, CN =
/// `common_name`, valid from now-1h for `valid_days`.
pub fn self_signed_for_signer(
    signer: &dyn Signer,
    common_name: &str,
    valid_days: u32,
) -> Result<String, CryptoError> {
    self_signed_for_signer_at(signer, common_name, OffsetDateTime::now_utc(), valid_days)
}

/// As [`self_signed_for_signer`], valid from `now`-1h: rollover passes its injected clock.
pub fn self_signed_for_signer_at(
    signer: &dyn Signer,
    common_name: &str,
    now: OffsetDateTime,
    valid_days: u32,
) -> Result<String, CryptoError> {
    let generation = |e: &dyn std::fmt::Display| CryptoError::Generation(e.to_string());
    let key = RemoteRsaKey {
        signer,
        public_key_der: rsa_public_key_of(&signer.public_key_spki_der())?,
    };
    let mut params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| generation(&e))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    params.not_before = now - time::Duration::hours(1);
    params.not_after = now + time::Duration::days(i64::from(valid_days));
    let certificate = params.self_signed(&key).map_err(|e| generation(&e))?;
    Ok(certificate.pem())
}

/// Helpers shared by the unit tests of the signing modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;

    /// DER prefix of the PKCS#1 DigestInfo for SHA-256 (RFC 8017 section 9.2, note 1).
    const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];

    /// Verifies an RSA PKCS#1 v1.5 SHA-256 signature independently of aws-lc-rs: the `rsa`
    /// crate parses the key and does the big-number arithmetic (its `pkcs1v15` feature is not
    /// enabled, so the public-key operation and EMSA-PKCS1-v1_5 check are spelled out here),
    /// `sha2` hashes. `square`/`mul` are deprecated in favour of trait methods whose trait
    /// the `rsa` crate does not re-export.
    #[allow(deprecated)]
    pub(crate) fn verify_rsa_sha256(spki_der: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let public_key = rsa::PublicKey::from_public_key_der(spki_der).unwrap();
        let modulus = public_key.n();
        let size = public_key.size();
        if signature.len() != size {
            return false;
        }
        let s = rsa::BoxedUint::from_be_slice(signature, modulus.bits_precision()).unwrap();
        let mut m = rsa::BoxedUint::from_be_slice(&[1], modulus.bits_precision()).unwrap();
        for byte in public_key.e_bytes().iter() {
            for bit in (0..8).rev() {
                m = m.square().rem_vartime(modulus);
                if byte >> bit & 1 == 1 {
                    m = m.mul(&s).rem_vartime(modulus);
                }
            }
        }
        let encoded = m.to_be_bytes();
        let encoded = &encoded[encoded.len() - size..];
        encoded == expected_encoding(size, message).as_slice()
    }

    /// EMSA-PKCS1-v1_5 encoding of SHA-256(message) for a modulus of `size` bytes.
    fn expected_encoding(size: usize, message: &[u8]) -> Vec<u8> {
        let hash = <sha2::Sha256 as sha2::Digest>::digest(message);
        let padding = size - 3 - SHA256_DIGEST_INFO_PREFIX.len() - hash.len();
        let mut encoded = vec![0x00, 0x01];
        encoded.extend(std::iter::repeat_n(0xff, padding));
        encoded.push(0x00);
        encoded.extend_from_slice(&SHA256_DIGEST_INFO_PREFIX);
        encoded.extend_from_slice(&hash);
        encoded
    }

    /// A fresh RSA-2048 identity with a self-signed certificate.
    pub(crate) fn generated_identity() -> SigningIdentity {
        let generated = generate_self_signed("token-signing.test", &[], 1).unwrap();
        let signer = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
        let certificate = Certificate::from_pem(&generated.certificate_pem).unwrap();
        SigningIdentity::new(Arc::new(signer), certificate).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use test_support::verify_rsa_sha256;

    /// A throwaway 1024-bit key made with `openssl genpkey` for this test only.
    const RSA_1024_PKCS8: &str = "-----BEGIN PRIVATE KEY-----
MIICeAIBADANBgkqhkiG9w0BAQEFAASCAmIwggJeAgEAAoGBALhj/LbLD0I8UL7G
rZSOWM6/gWlHyD7k3XlSJl0z988y0pDtcJ75s7sf5N4JLfRSk7K2vGsKU05/fRO5
pUNt3X3k5Tf5/uZtFiUS+FCIcoKl0nigeI3AVhW0iNA/CZD08RmIMdAGJVtzWDGH
QMI7/bdZTerKlFfHKORVgwpFXGnRAgMBAAECgYBj1d9SqYdNeZLOeIwrTxdOeen7
st39D7XKpmwXMrgN+5p+1dCQguqJeq9UeOvkyYEm1kIWQrTwX569O1r7s1Sklglz
et4qo7clofw8dSMoaWE77xKDdoo6/bsDTwmfHt716cRweSH60f9/sjNZxfhLxg6g
MUzbWfSJwVR2vmxbAQJBAOE9VBBC87JaOsd51aQLFI4OR8AVa0cdNR9zRsFFb9Iq
HeVX+r5jGeAHaIeZ/y1MsmqnVJyi7cDFlGgrmoCwO/kCQQDRkoY8xp1h7MMgVncS
sfWT34KSTvky6WQeJUHZya74QRrMMAQbCjqBYMKjOdKo+w53n2niAoW1WvIJzvdZ
/aKZAkEAorogJa95SP2PQdZv1xh6PTdr9waCftpHKvWpxLBZ3Ui4WJ17dlk6tHQl
vPIxPZUPwaYqpw+/HWqhkbEO6rJoYQJBALcZ6LSy5xCGlpjrUo9/8krnLiJ8Y1dq
+LEp5hXNE1UNNMePcBbb4e/lxUhtHbPL3YEAQ7dWctHXir6tGAmFA4kCQQDEU1k7
EyMzRLgPYXYJ1BFHJWAuz8Ju47L4KqTM2Nl+X32hk+pUbUAZXuuCE0wwWk96PcL3
tJ/5ZyW0xE9elczc
-----END PRIVATE KEY-----
";

    fn generated() -> GeneratedCertificate {
        generate_self_signed("token-signing.example.com", &[], 30).unwrap()
    }

    /// Re-encodes a PKCS#8 PEM key as a PKCS#1 "RSA PRIVATE KEY" PEM with the `rsa` crate.
    fn to_pkcs1_pem(pkcs8_pem: &str) -> String {
        let pkcs8 = PrivatePkcs8KeyDer::from_pem_slice(pkcs8_pem.as_bytes()).unwrap();
        let key = rsa::PrivateKey::from_pkcs8_der(pkcs8.secret_pkcs8_der()).unwrap();
        let der = key.to_pkcs1_der().unwrap();
        let body = base64::engine::general_purpose::STANDARD.encode(der.as_bytes());
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect();
        format!(
            "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn alt_names_and_host_matching() {
        let names = vec!["sts.example.com".to_owned(), "127.0.0.1".to_owned()];
        let generated = generate_self_signed("sts", &names, 2).unwrap();
        let cert = Certificate::from_pem(&generated.certificate_pem).unwrap();
        assert_eq!(cert.alt_names(), names.as_slice());
        assert!(cert.names_host("STS.example.com"));
        assert!(cert.names_host("127.0.0.1"));
        assert!(!cert.names_host("example.com"));

        let wildcard = generate_self_signed("w", &["*.example.com".to_owned()], 2).unwrap();
        let wildcard = Certificate::from_pem(&wildcard.certificate_pem).unwrap();
        assert!(wildcard.names_host("sts.example.com"));
        assert!(!wildcard.names_host("a.sts.example.com"));
        assert!(!wildcard.names_host("example.com"));
    }

    #[test]
    fn signature_verifies_with_independent_rsa_implementation() {
        let generated = generated();
        let signer = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
        let certificate = Certificate::from_pem(&generated.certificate_pem).unwrap();
        let signature = signer.sign_rsa_sha256(b"hello fedsts").unwrap();
        assert_eq!(signature.len(), 256);
        let spki = certificate.public_key_spki_der();
        assert!(verify_rsa_sha256(&spki, b"hello fedsts", &signature));
        assert!(!verify_rsa_sha256(&spki, b"hello fedst", &signature));
    }

    #[test]
    fn pkcs1_and_pkcs8_pem_load_the_same_key() {
        let generated = generated();
        let from_pkcs8 = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
        let pkcs1_pem = to_pkcs1_pem(&generated.private_key_pem);
        assert!(pkcs1_pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let from_pkcs1 = SoftwareSigner::from_pem(&pkcs1_pem).unwrap();
        assert_eq!(
            from_pkcs1.public_key_spki_der(),
            from_pkcs8.public_key_spki_der()
        );
        // PKCS#1 v1.5 signatures are deterministic: same key, same message, same bytes.
        assert_eq!(
            from_pkcs1.sign_rsa_sha256(b"m").unwrap(),
            from_pkcs8.sign_rsa_sha256(b"m").unwrap()
        );
    }

    #[test]
    fn small_keys_are_rejected() {
        let error = SoftwareSigner::from_pem(RSA_1024_PKCS8).unwrap_err();
        assert!(
            matches!(
                error,
                CryptoError::KeyTooSmall { bits: 1024 } | CryptoError::KeyRejected(_)
            ),
            "{error:?}"
        );
    }

    #[test]
    fn garbage_key_pem_is_rejected() {
        let error = SoftwareSigner::from_pem("not a pem").unwrap_err();
        assert!(matches!(error, CryptoError::InvalidKeyPem(_)), "{error:?}");
    }

    #[test]
    fn mismatched_key_and_certificate_are_rejected() {
        let first = generated();
        let second = generated();
        let signer = SoftwareSigner::from_pem(&first.private_key_pem).unwrap();
        let certificate = Certificate::from_pem(&second.certificate_pem).unwrap();
        let error = SigningIdentity::new(Arc::new(signer), certificate).unwrap_err();
        match error {
            CryptoError::KeyCertificateMismatch { subject } => {
                assert_eq!(subject, "CN=token-signing.example.com");
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn matching_pem_files_load_as_identity() {
        let generated = generated();
        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, &generated.certificate_pem).unwrap();
        std::fs::write(&key_path, &generated.private_key_pem).unwrap();
        let identity = SigningIdentity::from_pem_files(&cert_path, &key_path).unwrap();
        assert_eq!(
            identity.certificate.subject(),
            "CN=token-signing.example.com"
        );
        let missing = SigningIdentity::from_pem_files(&dir.path().join("nope.pem"), &key_path);
        assert!(matches!(missing, Err(CryptoError::ReadFile { .. })));
    }

    #[test]
    fn certificate_facts_are_extracted() {
        let before = OffsetDateTime::now_utc();
        let generated =
            generate_self_signed("sts.example.com", &["sts.example.com".into()], 10).unwrap();
        let certificate = Certificate::from_pem(&generated.certificate_pem).unwrap();
        assert_eq!(certificate.subject(), "CN=sts.example.com");
        let starts = before - time::Duration::hours(1);
        assert!((certificate.not_before() - starts).whole_seconds().abs() <= 2);
        let ends = before + time::Duration::days(10);
        assert!((certificate.not_after() - ends).whole_seconds().abs() <= 2);
        let pem_body: String = generated
            .certificate_pem
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect();
        assert_eq!(certificate.base64(), pem_body);
        let expected_thumbprint: String = <sha2::Sha256 as sha2::Digest>::digest(certificate.der())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(certificate.sha256_thumbprint_hex(), expected_thumbprint);
        assert_eq!(certificate.sha256_thumbprint_hex().len(), 64);
    }

    #[test]
    fn chain_reads_every_block_and_requires_one() {
        let first = generated();
        let second = generated();
        let pem = format!("{}{}", first.certificate_pem, second.certificate_pem);
        let chain = Certificate::chain_from_pem(&pem).unwrap();
        assert_eq!(chain.len(), 2);
        assert_ne!(chain[0].der(), chain[1].der());
        let empty = Certificate::chain_from_pem("").unwrap_err();
        assert!(matches!(empty, CryptoError::NoCertificate));
        assert_eq!(
            empty.to_string(),
            "the certificate PEM could not be read (no CERTIFICATE block found); supply one or more \"-----BEGIN CERTIFICATE-----\" blocks"
        );
    }

    #[test]
    fn self_signed_for_a_remote_signer_verifies_and_self_tests() {
        let generated = generated();
        let signer = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
        let pem = self_signed_for_signer(&signer, "remote.example.com", 5).unwrap();
        let certificate = Certificate::from_pem(&pem).unwrap();
        assert_eq!(certificate.subject(), "CN=remote.example.com");
        let identity = SigningIdentity::new(Arc::new(signer), certificate).unwrap();
        identity.self_test().unwrap();
        assert_eq!(identity.fingerprint().len(), 64);
    }

    #[test]
    fn debug_output_hides_key_material() {
        let generated = generated();
        let signer = SoftwareSigner::from_pem(&generated.private_key_pem).unwrap();
        assert_eq!(
            format!("{signer:?}"),
            "SoftwareSigner { modulus_bits: 2048, .. }"
        );
    }
}
