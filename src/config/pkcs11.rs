//! `[apps.signing_pkcs11]`: where an app's token-signing key lives in a PKCS#11 token, and
//! [`KeySource`], which of the two key stores an app names. The signer that opens the token is
//! `crypto::pkcs11`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigProblem;
use crate::secret::Secret;

/// Sessions (and worker threads) when the config does not say.
pub const DEFAULT_SESSIONS: usize = 4;
/// Most sessions a config may ask for.
pub const MAX_SESSIONS: usize = 64;
/// Seconds a token call may take when the config does not say.
pub const DEFAULT_TIMEOUT_SECS: u64 = 5;
/// Longest timeout a config may ask for.
pub const MAX_TIMEOUT_SECS: u64 = 60;

/// `[apps.signing_pkcs11]`: where the token-signing key lives in a PKCS#11 token.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// Path of the vendor's PKCS#11 library, e.g. `/usr/lib/softhsm/libsofthsm2.so`.
    pub module: PathBuf,
    /// Label of the token (`softhsm2-util --show-slots`, `pkcs11-tool -L`); or set `slot`.
    #[serde(default)]
    pub token_label: Option<String>,
    /// Slot id of the token; or set `token_label`.
    #[serde(default)]
    pub slot: Option<u64>,
    /// `CKA_LABEL` of the private key; or set `key_id`.
    #[serde(default)]
    pub key_label: Option<String>,
    /// `CKA_ID` of the private key as hex, e.g. `"01a2"`; or set `key_label`.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The user PIN (prefer `pin_file` or `pin_env`).
    #[serde(default)]
    pub pin: Option<Secret>,
    /// File whose content (trailing newline removed) is the user PIN.
    #[serde(default)]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN.
    #[serde(default)]
    pub pin_env: Option<String>,
    /// Sessions kept logged in, so that this many signatures run at once (default 4).
    #[serde(default)]
    pub sessions: Option<usize>,
    /// Seconds one token call may take before the request fails (default 5).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

impl Pkcs11Config {
    /// Resolves relative paths against the configuration file's directory.
    pub fn resolve_paths(&mut self, resolve: impl Fn(&mut PathBuf)) {
        resolve(&mut self.module);
        if let Some(pin_file) = &mut self.pin_file {
            resolve(pin_file);
        }
    }

    /// Problems of this table, keys under `prefix` (e.g. `apps[0].signing_pkcs11`).
    pub fn problems(&self, prefix: &str) -> Vec<ConfigProblem> {
        let key = |field: &str| format!("{prefix}.{field}");
        let mut problems = Vec::new();
        let exactly_one = |set: &[bool]| set.iter().filter(|s| **s).count() == 1;
        if !exactly_one(&[self.token_label.is_some(), self.slot.is_some()]) {
            problems.push(ConfigProblem::new(
                key("token_label"),
                "needs exactly one of token_label and slot",
                "name the token by its label (pkcs11-tool -L shows it) or by its slot id",
            ));
        }
        if !exactly_one(&[self.key_label.is_some(), self.key_id.is_some()]) {
            problems.push(ConfigProblem::new(
                key("key_label"),
                "needs exactly one of key_label and key_id",
                "name the private key by its CKA_LABEL or by its CKA_ID in hex",
            ));
        }
        if let Some(id) = &self.key_id
            && parse_hex(id).is_none()
        {
            problems.push(ConfigProblem::new(
                key("key_id"),
                format!("`{id}` is not an even number of hex digits"),
                "write the CKA_ID as hex, e.g. \"01a2\"",
            ));
        }
        let pins = [
            self.pin.is_some(),
            self.pin_file.is_some(),
            self.pin_env.is_some(),
        ];
        if !exactly_one(&pins) {
            problems.push(ConfigProblem::new(
                key("pin"),
                "needs exactly one of pin, pin_file and pin_env",
                "prefer pin_file (mode 0600) or pin_env; pin inline is for tests",
            ));
        }
        if self.sessions.is_some_and(|n| n == 0 || n > MAX_SESSIONS) {
            problems.push(ConfigProblem::new(
                key("sessions"),
                format!("must be between 1 and {MAX_SESSIONS}"),
                "remove it for the default (4) or write e.g. 8",
            ));
        }
        if self
            .timeout_secs
            .is_some_and(|n| n == 0 || n > MAX_TIMEOUT_SECS)
        {
            problems.push(ConfigProblem::new(
                key("timeout_secs"),
                format!("must be between 1 and {MAX_TIMEOUT_SECS}"),
                "remove it for the default (5) or write a number of seconds",
            ));
        }
        if !self.module.is_file() {
            problems.push(ConfigProblem::new(
                key("module"),
                format!("{} is not a file", self.module.display()),
                "write the path of the vendor's PKCS#11 library (.so)",
            ));
        }
        problems
    }
}

/// Where a key to load is: a PEM file or a PKCS#11 token.
#[derive(Clone, Copy, Debug)]
pub enum KeySource<'a> {
    /// A PEM private key file.
    PemFile(&'a Path),
    /// A key in a PKCS#11 token.
    Pkcs11(&'a Pkcs11Config),
}

/// Bytes of an even-length hex string.
pub fn parse_hex(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect()
}
