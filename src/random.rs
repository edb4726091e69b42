//! Random bytes from the operating system's generator (through aws-lc-rs): the one source of
//! every secret and nonce fedsts makes — session keys, TOTP secrets, MFA and CSP nonces, the
//! first-run demo password and ImmutableID. A failure is an error each caller must decide on;
//! nothing falls back to a weaker source.

use base64::Engine as _;

/// The operating system's random generator did not answer (no entropy source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the operating system's random generator failed")]
pub struct RandomError;

/// Fills `buf` with random bytes.
pub fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    aws_lc_rs::rand::fill(buf).map_err(|_| RandomError)
}

/// `N` random bytes.
pub fn bytes<const N: usize>() -> Result<[u8; N], RandomError> {
    let mut buf = [0u8; N];
    fill(&mut buf)?;
    Ok(buf)
}

/// A random (version 4) UUID: assertion, metadata and correlation ids. From the same generator
/// as every secret (aws-lc's DRBG in user space), not `uuid::Uuid::new_v4`, which asks the kernel
/// for 16 bytes on every call (two `getrandom` system calls per token) and panics when it fails.
pub fn uuid() -> Result<uuid::Uuid, RandomError> {
    Ok(uuid::Builder::from_random_bytes(bytes::<16>()?).into_uuid())
}

/// The correlation id of a request or command: a random UUID in log lines, audit records and
/// fault texts. It is not a secret and nothing is decided by it, so a failed generator gives the
/// nil UUID (with a warning) instead of refusing a request that the same failure will refuse at
/// its first security step (an assertion id, a nonce).
pub fn correlation_id() -> String {
    uuid()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no random correlation id: using the nil UUID");
            uuid::Uuid::nil()
        })
        .to_string()
}

/// A URL-safe text (unpadded base64url) of `len` random bytes.
pub fn token(len: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; len];
    fill(&mut buf)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_url_safe() {
        let (a, b) = (token(16).unwrap(), token(16).unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 22);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(bytes::<32>().unwrap(), [0u8; 32]);
        let (c, d) = (uuid().unwrap(), uuid().unwrap());
        assert_ne!(c, d);
        assert_eq!(c.get_version(), Some(uuid::Version::Random));
    }
}
