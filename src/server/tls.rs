//! The rustls server configuration: TLS 1.2 and 1.3 only, aws-lc-rs, HTTP/1.1.
//!
//! Returning clients resume with stateless session tickets (keys made at start, in memory only,
//! rotated by rustls every 6 hours; TLS 1.3 resumption is PSK with a new ECDHE share), so a storm
//! of browsers skips the certificate signature of a full handshake however many clients there
//! are, where rustls' default stateful cache holds 256 sessions. Not with `[device_trust]`: a
//! resumed session keeps the device certificate of its first handshake without a new CRL check,
//! so there resumption stays within the stateful cache. The TLS certificate may be
//! RSA or ECDSA (P-256 makes a full handshake's signature several times cheaper); the token-signing
//! key is separate and stays RSA.
//!
//! With `[device_trust]`, the server asks every client for a certificate but accepts clients
//! without one (device trust is a per-app policy, decided after the password). A presented
//! certificate must chain to the device CA (and not be revoked per the optional CRL file), or the
//! handshake fails. Its validity period is judged with the service clock by the policy
//! (`policy::device`), so an expired device certificate gets an explained refusal rather than a
//! TLS alert: [`DeviceCertVerifier`] checks the chain at the service clock and, when only the
//! validity period fails, checks the chain again at a time inside the leaf's validity. That second
//! check would also pass an intermediate CA that has since expired, so every intermediate the
//! client presents must be valid at the service clock: only the leaf's own dates get the explained
//! refusal.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error as RustlsError,
    RootCertStore, ServerConfig, SignatureScheme,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, UnixTime};

use crate::clock::Clock;
use crate::config::Config;
use crate::config::DeviceTrustConfig;
use crate::crypto::Certificate;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The certificate chain file is missing, unreadable or has no CERTIFICATE block.
    #[error(
        "server.tls_cert: cannot load a PEM certificate chain from {path}: {reason} — point it at a PEM file"
    )]
    Certificate {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The key file is missing, unreadable or holds no private key.
    #[error(
        "server.tls_key: cannot load a PEM private key from {path}: {reason} — point it at a PKCS#8 or PKCS#1 PEM key"
    )]
    Key {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The device CA or CRL file cannot be used.
    #[error("{key}: cannot load {path}: {reason} — point it at a PEM file")]
    DeviceCa {
        /// Config key.
        key: &'static str,
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// rustls refused the pair (for example the key does not match the certificate).
    #[error(
        "server.tls_cert / server.tls_key: {0} — check that the key belongs to the certificate"
    )]
    Rejected(String),
}

/// Loads the PEM chain and key and builds a rustls server configuration without client
/// certificates.
pub fn server_config(cert_path: &Path, key_path: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    build(cert_path, key_path, None).map(Arc::new)
}

/// The server configuration for `config`: with the device-CA client verifier when
/// `[device_trust]` is set. `clock` is the service clock.
pub fn server_config_for(
    config: &Config,
    clock: Arc<dyn Clock>,
) -> Result<Arc<ServerConfig>, TlsError> {
    build_for(config, clock).map(Arc::new)
}

/// The server configuration for a re-read `config` (a reload): the files are read again, and
/// the session-ticket keys of `previous` are kept, so clients resume across the reload instead
/// of all making full handshakes at once. With `[device_trust]` nothing is carried: every
/// client certificate is verified again against the CA and CRL just read.
pub fn reloaded_server_config(
    config: &Config,
    clock: Arc<dyn Clock>,
    previous: &ServerConfig,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut fresh = build_for(config, clock)?;
    if config.device_trust.is_none() && previous.ticketer.enabled() {
        fresh.ticketer = previous.ticketer.clone();
    }
    Ok(Arc::new(fresh))
}

fn build_for(config: &Config, clock: Arc<dyn Clock>) -> Result<ServerConfig, TlsError> {
    let verifier = match &config.device_trust {
        Some(device) => Some(device_verifier(device, clock)?),
        None => None,
    };
    build(&config.server.tls_cert, &config.server.tls_key, verifier)
}

/// Builds the device-CA verifier (optional client certificates).
pub fn device_verifier(
    device: &DeviceTrustConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let ca_error = |reason: String| TlsError::DeviceCa {
        key: "device_trust.ca_file",
        path: device.ca_file.display().to_string(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in load_chain(&device.ca_file).map_err(|e| ca_error(e.to_string()))? {
        roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
    }
    let crls = match &device.crl_file {
        Some(path) => CertificateRevocationListDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|e| TlsError::DeviceCa {
                key: "device_trust.crl_file",
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        None => Vec::new(),
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .allow_unauthenticated()
        .build()
        .map_err(|e| ca_error(e.to_string()))?;
    Ok(Arc::new(DeviceCertVerifier { inner, clock }))
}

/// Optional client certificates chained to the device CA; time judged by the service clock and,
/// for validity periods, by the policy.
#[derive(Debug)]
pub struct DeviceCertVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    clock: Arc<dyn Clock>,
}

fn unix_time(at: time::OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(at.unix_timestamp()).unwrap_or(0),
    ))
}

fn is_validity_error(error: &RustlsError) -> bool {
    matches!(
        error,
        RustlsError::InvalidCertificate(
            CertificateError::Expired
                | CertificateError::ExpiredContext { .. }
                | CertificateError::NotValidYet
                | CertificateError::NotValidYetContext { .. }
        )
    )
}

fn readable(der: &CertificateDer<'_>) -> Result<Certificate, RustlsError> {
    Certificate::from_der(der.as_ref())
        .map_err(|_| RustlsError::InvalidCertificate(CertificateError::BadEncoding))
}

/// Refuses (as a TLS alert) when any presented intermediate CA is outside its validity at `now`.
/// A chain re-checked inside the leaf's validity must not carry an expired CA through.
fn intermediates_valid_at(
    intermediates: &[CertificateDer<'_>],
    now: time::OffsetDateTime,
) -> Result<(), RustlsError> {
    for der in intermediates {
        let ca = readable(der)?;
        if now < ca.not_before() {
            tracing::warn!(ca = %ca.subject(), "device certificate refused: intermediate CA not valid yet");
            return Err(RustlsError::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now >= ca.not_after() {
            tracing::warn!(ca = %ca.subject(), "device certificate refused: intermediate CA expired");
            return Err(RustlsError::InvalidCertificate(CertificateError::Expired));
        }
    }
    Ok(())
}

impl ClientCertVerifier for DeviceCertVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, RustlsError> {
        let now = unix_time(self.clock.now());
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) if is_validity_error(&e) => {
                intermediates_valid_at(intermediates, self.clock.now())?;
                let leaf = readable(end_entity)?;
                let inside = leaf.not_before() + (leaf.not_after() - leaf.not_before()) / 2;
                self.inner
                    .verify_client_cert(end_entity, intermediates, unix_time(inside))
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, RustlsError> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn build(
    cert_path: &Path,
    key_path: &Path,
    client_verifier: Option<Arc<dyn ClientCertVerifier>>,
) -> Result<ServerConfig, TlsError> {
    let chain = load_chain(cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
    let asks_client_certificates = client_verifier.is_some();
    let builder = match client_verifier {
        Some(verifier) => builder.with_client_cert_verifier(verifier),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rejected(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // A resumed session carries the client certificate of its first handshake without a new
    // CRL check; with device trust, resumption stays within rustls' small stateful cache.
    if !asks_client_certificates {
        config.ticketer = rustls::crypto::aws_lc_rs::Ticketer::new()
            .map_err(|e| TlsError::Rejected(format!("cannot make TLS session ticket keys: {e}")))?;
    }
    Ok(config)
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::Certificate {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if chain.is_empty() {
        return Err(error("no CERTIFICATE block".into()));
    }
    Ok(chain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::{ClientConfig, ClientConnection, Connection, HandshakeKind, ServerConnection};

    /// An ECDSA P-256 TLS certificate and key written to `dir`.
    fn ecdsa_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let paths = (dir.join("tls.crt"), dir.join("tls.key"));
        std::fs::write(&paths.0, cert.pem()).unwrap();
        std::fs::write(&paths.1, key.serialize_pem()).unwrap();
        paths
    }

    /// A client with its own session cache that trusts `cert`.
    fn client(cert: &Path) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for der in load_chain(cert).unwrap() {
            roots.add(der).unwrap();
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    fn transfer(from: &mut Connection, to: &mut Connection) {
        let mut bytes = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut bytes).unwrap();
        }
        let mut slice = &bytes[..];
        while !slice.is_empty() {
            to.read_tls(&mut slice).unwrap();
        }
        to.process_new_packets().unwrap();
    }

    /// One in-memory handshake (with the tickets that follow it); how the client got in.
    fn handshake(client: &Arc<ClientConfig>, server: &Arc<ServerConfig>) -> HandshakeKind {
        let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut client = Connection::from(ClientConnection::new(client.clone(), name).unwrap());
        let mut server = Connection::from(ServerConnection::new(server.clone()).unwrap());
        for _ in 0..10 {
            transfer(&mut client, &mut server);
            transfer(&mut server, &mut client);
        }
        assert!(!client.is_handshaking() && !server.is_handshaking());
        client.handshake_kind().unwrap()
    }

    /// A client with its own session cache that trusts every one of `certs`.
    fn client_trusting(certs: &[&Path]) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for cert in certs {
            for der in load_chain(cert).unwrap() {
                roots.add(der).unwrap();
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Arc::new(config)
    }

    #[test]
    fn a_reload_serves_the_new_certificate_and_keeps_the_ticket_keys() {
        let (old_dir, new_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (old_cert, old_key) = ecdsa_files(old_dir.path());
        let (new_cert, _) = ecdsa_files(new_dir.path());
        let old = server_config(&old_cert, &old_key).unwrap();
        let text = "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"https://localhost\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n";
        let config = Config::parse(text, new_dir.path()).unwrap();
        let clock = Arc::new(crate::clock::SystemClock);
        let returning = client_trusting(&[&old_cert, &new_cert]);
        assert_eq!(handshake(&returning, &old), HandshakeKind::Full);

        let reloaded = reloaded_server_config(&config, clock.clone(), &old).unwrap();
        // Only the new certificate is trusted: a full handshake completes only if it is served.
        assert_eq!(
            handshake(&client_trusting(&[&new_cert]), &reloaded),
            HandshakeKind::Full
        );
        assert_eq!(handshake(&returning, &reloaded), HandshakeKind::Resumed);

        // Built afresh (not carried), the ticket keys are new and the returning client is not
        // resumed: what every client would go through on every reload.
        let rebuilt = server_config_for(&config, clock).unwrap();
        let another = client_trusting(&[&old_cert, &new_cert]);
        assert_eq!(handshake(&another, &old), HandshakeKind::Full);
        assert_eq!(handshake(&another, &rebuilt), HandshakeKind::Full);
    }

    #[test]
    fn with_device_trust_a_reload_resumes_no_session() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, _) = ecdsa_files(dir.path());
        // The device CA may be any CA certificate: no client here presents one.
        let text = "[server]\nlisten = \"127.0.0.1:1\"\npublic_url = \"https://localhost\"\ntls_cert = \"tls.crt\"\ntls_key = \"tls.key\"\n[device_trust]\nca_file = \"tls.crt\"\n";
        let config = Config::parse(text, dir.path()).unwrap();
        let clock = Arc::new(crate::clock::SystemClock);
        let old = server_config_for(&config, clock.clone()).unwrap();
        let returning = client_trusting(&[&cert]);
        assert_eq!(handshake(&returning, &old), HandshakeKind::Full);
        assert_eq!(handshake(&returning, &old), HandshakeKind::Resumed);
        // After a reload every client certificate is verified again (against a new CRL, say).
        let reloaded = reloaded_server_config(&config, clock, &old).unwrap();
        assert_eq!(handshake(&returning, &reloaded), HandshakeKind::Full);
    }

    #[test]
    fn an_ecdsa_certificate_serves_and_clients_resume_beyond_a_stateful_cache() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = ecdsa_files(dir.path());
        let server = server_config(&cert, &key).unwrap();
        let first = client(&cert);
        assert_eq!(handshake(&first, &server), HandshakeKind::Full);
        // More clients than rustls' default stateful cache (256 sessions) holds.
        for _ in 0..300 {
            handshake(&client(&cert), &server);
        }
        assert_eq!(handshake(&first, &server), HandshakeKind::Resumed);
    }
}
