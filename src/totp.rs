//! Time-based one-time passwords (RFC 6238) on HMAC (RFC 4226 dynamic truncation), the second
//! factor of passive sign-in.
//!
//! Secrets are stored base32 (the `otpauth://` convention). Codes are 6 digits over 30-second
//! steps with HMAC-SHA1, what every authenticator app supports; a code from the step before or
//! after is accepted for clock drift. A code is good once: the reuse marks and the wrong-code
//! counter live in the shared state store (`policy::totp_guard`).

use aws_lc_rs::hmac;
use time::OffsetDateTime;

/// Seconds per time step.
pub const STEP_SECS: i64 = 30;
/// Digits per code.
pub const DIGITS: u32 = 6;
/// Steps accepted before and after the current one.
pub const DRIFT_STEPS: i64 = 1;
/// Random bytes in a new secret (160 bits, the RFC 4226 recommendation).
const SECRET_BYTES: usize = 20;

/// Why a TOTP secret cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum TotpError {
    /// Not base32 text.
    #[error("the TOTP secret is not base32 (A-Z, 2-7)")]
    NotBase32,
    /// Too short to be safe.
    #[error("the TOTP secret has {0} bytes; at least 10 are needed")]
    TooShort(usize),
    /// No randomness available.
    #[error("the system random generator failed")]
    Random,
}

/// The HMAC of the code computation (RFC 6238 allows SHA-1, SHA-256, SHA-512).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-SHA1: what authenticator apps use.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha1 => hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }
}

/// A shared secret.
#[derive(Clone)]
pub struct TotpKey(Vec<u8>);

impl std::fmt::Debug for TotpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpKey(..)")
    }
}

impl TotpKey {
    /// Parses base32 text; case, spaces and `=` padding are ignored.
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let cleaned: String = text
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '=')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let bytes = data_encoding::BASE32_NOPAD
            .decode(cleaned.as_bytes())
            .map_err(|_| TotpError::NotBase32)?;
        if bytes.len() < 10 {
            return Err(TotpError::TooShort(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A new random 160-bit secret.
    pub fn generate() -> Result<Self, TotpError> {
        let mut bytes = vec![0u8; SECRET_BYTES];
        crate::random::fill(&mut bytes).map_err(|_| TotpError::Random)?;
        Ok(Self(bytes))
    }

    /// Unpadded upper-case base32, as stored and as put in `otpauth://` URIs.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }
}

/// SHA-256 (lowercase hex) of a secret as stored: names the secret a re-enrolment replaces
/// without keeping the secret itself in the pending state.
pub fn fingerprint(stored_text: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, stored_text.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The time step an instant falls in.
pub fn step_at(instant: OffsetDateTime) -> i64 {
    instant.unix_timestamp().div_euclid(STEP_SECS)
}

/// The code of `step` with `digits` digits (RFC 4226 §5.3 dynamic truncation).
pub fn code(secret: &TotpKey, algorithm: Algorithm, step: i64, digits: u32) -> String {
    let key = hmac::Key::new(algorithm.hmac(), &secret.0);
    let tag = hmac::sign(&key, &step.to_be_bytes());
    let mac = tag.as_ref();
    let offset = usize::from(mac.last().copied().unwrap_or(0) & 0x0f);
    let word = mac
        .get(offset..offset + 4)
        .map(|b| u32::from_be_bytes([b[0] & 0x7f, b[1], b[2], b[3]]))
        .unwrap_or(0);
    let value = u64::from(word) % 10u64.pow(digits);
    format!("{value:0width$}", width = digits as usize)
}

/// The 6-digit HMAC-SHA1 code shown by authenticator apps at `instant`.
pub fn current_code(secret: &TotpKey, instant: OffsetDateTime) -> String {
    code(secret, Algorithm::Sha1, step_at(instant), DIGITS)
}

/// The step whose code `candidate` is, within the drift window around `now`, compared in
/// constant time per step.
pub fn matching_step(secret: &TotpKey, candidate: &str, now: OffsetDateTime) -> Option<i64> {
    let candidate = candidate.trim();
    if candidate.len() != DIGITS as usize || !candidate.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = step_at(now);
    (current - DRIFT_STEPS..=current + DRIFT_STEPS).find(|step| {
        let expected = code(secret, Algorithm::Sha1, *step, DIGITS);
        aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), candidate.as_bytes())
            .is_ok()
    })
}

/// `otpauth://totp/…` for authenticator apps (Key Uri Format).
pub fn otpauth_uri(issuer: &str, account: &str, secret: &TotpKey) -> String {
    let label = format!("{}:{}", percent_encode(issuer), percent_encode(account));
    format!(
        "otpauth://totp/{label}?secret={}&issuer={}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        secret.to_base32(),
        percent_encode(issuer)
    )
}

fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The QR code of `text` drawn with Unicode half blocks, for a terminal.
pub fn terminal_qr(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// Modules of light margin around a QR code (ISO/IEC 18004 asks for 4).
const QR_QUIET_ZONE: usize = 4;

/// The QR code of `text` as inline SVG markup for a web page: one path of the dark modules on a
/// white square, no script, no style attribute (the sign-in page's CSP allows neither), scaled
/// by the page. `None` when the text is too long for a QR code.
pub fn qr_svg(text: &str) -> Option<String> {
    let code = qrcode::QrCode::new(text.as_bytes()).ok()?;
    let width = code.width();
    let colors = code.to_colors();
    let size = width + 2 * QR_QUIET_ZONE;
    let mut path = String::new();
    for (y, row) in colors.chunks(width).enumerate() {
        let mut x = 0;
        while x < width {
            if row[x] != qrcode::Color::Dark {
                x += 1;
                continue;
            }
            let run = row[x..]
                .iter()
                .take_while(|c| **c == qrcode::Color::Dark)
                .count();
            path.push_str(&format!(
                "M{} {}h{run}v1h-{run}z",
                x + QR_QUIET_ZONE,
                y + QR_QUIET_ZONE
            ));
            x += run;
        }
    }
    Some(format!(
        concat!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\" ",
            "width=\"240\" height=\"240\" role=\"img\" aria-label=\"QR code for an authenticator app\" ",
            "shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" ",
            "fill=\"#fff\"/><path fill=\"#000\" d=\"{path}\"/></svg>"
        ),
        size = size,
        path = path,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii_secret(seed: &str) -> TotpKey {
        TotpKey(seed.as_bytes().to_vec())
    }

    /// RFC 6238 Appendix B: every test vector (8 digits, 30 s steps).
    #[test]
    fn rfc6238_test_vectors() {
        let sha1 = ascii_secret("12345678901234567890");
        let sha256 = ascii_secret("12345678901234567890123456789012");
        let sha512 =
            ascii_secret("1234567890123456789012345678901234567890123456789012345678901234");
        let vectors: [(i64, &str, &str, &str); 6] = [
            (59, "94287082", "46119246", "90693936"),
            (1111111109, "07081804", "68084774", "25091201"),
            (1111111111, "14050471", "67062674", "99943326"),
            (1234567890, "89005924", "91819424", "93441116"),
            (2000000000, "69279037", "90698825", "38618901"),
            (20000000000, "65353130", "77737706", "47863826"),
        ];
        for (unix, want1, want256, want512) in vectors {
            let step = step_at(OffsetDateTime::from_unix_timestamp(unix).unwrap());
            assert_eq!(
                code(&sha1, Algorithm::Sha1, step, 8),
                want1,
                "SHA1 at {unix}"
            );
            assert_eq!(
                code(&sha256, Algorithm::Sha256, step, 8),
                want256,
                "SHA256 at {unix}"
            );
            assert_eq!(
                code(&sha512, Algorithm::Sha512, step, 8),
                want512,
                "SHA512 at {unix}"
            );
        }
    }

    /// RFC 4226 Appendix D: HOTP values of counters 0..9 (6 digits).
    #[test]
    fn rfc4226_hotp_values() {
        let secret = ascii_secret("12345678901234567890");
        let want = [
            "755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583",
            "399871", "520489",
        ];
        for (counter, expected) in want.iter().enumerate() {
            assert_eq!(code(&secret, Algorithm::Sha1, counter as i64, 6), *expected);
        }
    }

    #[test]
    fn drift_window_is_one_step_each_side() {
        let secret = ascii_secret("12345678901234567890");
        let now = OffsetDateTime::from_unix_timestamp(1111111111).unwrap();
        let step = step_at(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let candidate = code(&secret, Algorithm::Sha1, step + offset, 6);
            assert_eq!(
                matching_step(&secret, &candidate, now),
                accepted.then_some(step + offset),
                "offset {offset}"
            );
        }
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "12345a", now), None);
    }

    #[test]
    fn base32_round_trip_and_errors() {
        let secret = TotpKey::from_base32("gezd gnbv gy3t qojq gezd gnbv gy3t qojq").unwrap();
        assert_eq!(secret.0, b"12345678901234567890");
        assert_eq!(secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            TotpKey::from_base32("not base32!").unwrap_err(),
            TotpError::NotBase32
        );
        assert_eq!(
            TotpKey::from_base32("GEZDGNBV").unwrap_err(),
            TotpError::TooShort(5)
        );
        assert_eq!(TotpKey::generate().unwrap().0.len(), 20);
        assert_eq!(
            fingerprint("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn otpauth_uri_and_qr() {
        let secret = ascii_secret("12345678901234567890");
        assert_eq!(
            otpauth_uri("Example Inc.", "alice@example.com", &secret),
            "otpauth://totp/Example%20Inc.:alice@example.com?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Example%20Inc.&algorithm=SHA1&digits=6&period=30"
        );
        let qr = terminal_qr("otpauth://totp/x").unwrap();
        assert!(qr.contains('█') || qr.contains('▀') || qr.contains('▄'));
        let svg = qr_svg("otpauth://totp/x").unwrap();
        let modules = qrcode::QrCode::new(b"otpauth://totp/x").unwrap().width();
        let size = modules + 2 * QR_QUIET_ZONE;
        assert!(svg.starts_with(&format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {size} {size}\""
        )));
        assert!(
            svg.contains("d=\"M4 4h7v1h-7z"),
            "finder pattern row: {svg}"
        );
        assert!(!svg.contains("style") && !svg.contains("script"));
        assert_eq!(qr_svg(&"x".repeat(8000)), None);
    }
}
