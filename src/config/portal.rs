//! `[portal]` and `[apps.portal]`: the schema of the user portal at `GET /` (runtime in
//! `sts::portal`). Plain data, no dependency on any other room.

use std::path::PathBuf;

use serde::Deserialize;

/// Largest logo file read at start (it is sent inline as a `data:` URL in every portal page).
pub const MAX_LOGO_BYTES: u64 = 64 * 1024;
/// Longest notice text.
pub const MAX_NOTICE_BYTES: usize = 4096;
/// Longest notice version (`[A-Za-z0-9._-]`).
pub const MAX_NOTICE_VERSION_BYTES: usize = 64;
/// Longest portal name or tile name.
pub const MAX_NAME_CHARS: usize = 80;
/// Portal session lifetime when the file does not say (8 h).
pub const DEFAULT_PORTAL_SESSION_SECS: u64 = 8 * 3600;

/// `[portal]`: the user portal (off by default: `GET /` is then 404).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    /// Serve the portal at `GET|POST /`.
    #[serde(default)]
    pub enabled: bool,
    /// The organisation name on the portal pages (default: the first app's display name).
    #[serde(default)]
    pub name: Option<String>,
    /// The app whose directory checks names that name no domain (`alice`, `CONTOSO\alice`);
    /// names with `@domain` go to the app whose domain covers them most closely. Default: the
    /// first app.
    #[serde(default)]
    pub default_app: Option<String>,
    /// Ask every portal sign-in for a TOTP code (the app chosen for the name may also ask,
    /// through its `passive.require_mfa`).
    #[serde(default)]
    pub require_mfa: bool,
    /// Portal session lifetime in seconds (default 28800).
    #[serde(default = "default_session_lifetime")]
    pub session_lifetime_secs: u64,
    /// `[portal.notice]`: a text every user acknowledges once per version.
    #[serde(default)]
    pub notice: Option<NoticeConfig>,
    /// Show "your password expires in N days" on the tiles page from this many days before the
    /// directory's expiry (`msDS-UserPasswordExpiryTimeComputed`, the users file's
    /// `password_expires_at`); 0: never. Default 14, as Windows warns at logon.
    #[serde(default = "default_password_notice_days")]
    pub password_notice_days: u32,
}

impl Default for PortalConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            name: None,
            default_app: None,
            require_mfa: false,
            session_lifetime_secs: DEFAULT_PORTAL_SESSION_SECS,
            notice: None,
            password_notice_days: DEFAULT_PASSWORD_NOTICE_DAYS,
        }
    }
}

/// Days before a password expires that the portal starts saying so.
pub const DEFAULT_PASSWORD_NOTICE_DAYS: u32 = 14;

fn default_password_notice_days() -> u32 {
    DEFAULT_PASSWORD_NOTICE_DAYS
}

fn default_session_lifetime() -> u64 {
    DEFAULT_PORTAL_SESSION_SECS
}

/// `[portal.notice]`: shown before the tiles until the user acknowledges this `version`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoticeConfig {
    /// Change it to ask every user again (`[A-Za-z0-9._-]`, e.g. `"2026-12"`).
    pub version: String,
    /// Plain text; a blank line starts a new paragraph.
    pub text: String,
}

/// `[apps.portal]`: how an app's tile looks.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppPortalConfig {
    /// Name on the tile (default: the app's display name).
    #[serde(default)]
    pub tile_name: Option<String>,
    /// PNG, JPEG, GIF or WebP file shown on the tile, read at start (at most 64 KiB).
    #[serde(default)]
    pub logo: Option<PathBuf>,
}

/// Whether a notice version is 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub fn is_valid_notice_version(version: &str) -> bool {
    (1..=MAX_NOTICE_VERSION_BYTES).contains(&version.len())
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}
