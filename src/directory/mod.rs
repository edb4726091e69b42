//! Credential stores. A [`Directory`] checks a password and says who the user is; it never
//! sees XML and never builds tokens.
//!
//! To add a backend: implement [`Directory`] in a new submodule, add a variant to
//! [`crate::config::DirectoryConfig`], and build it in [`build`].

pub mod file;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::config::DirectoryConfig;

/// A user as the directory knows them: what the claims are made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// userPrincipalName as stored in the directory.
    pub upn: String,
    /// Entra ID `onPremisesImmutableId` (NameIdentifier and ImmutableID claim).
    pub immutable_id: String,
    /// Display name, when known.
    pub display_name: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
}

/// Why a password check failed. Logged; never shown on the wire, where every
/// variant is the same generic failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthFailure {
    /// No such user.
    UnknownUser,
    /// The password is wrong (or empty).
    WrongPassword,
    /// The account exists but is disabled.
    Disabled,
}

impl AuthFailure {
    /// A short machine-readable reason for logs and audit records.
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::UnknownUser => "unknown_user",
            AuthFailure::WrongPassword => "wrong_password",
            AuthFailure::Disabled => "account_disabled",
        }
    }
}

/// Errors of a directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The credentials were not accepted.
    #[error("authentication failed: {}", .0.reason())]
    Rejected(AuthFailure),
    /// The directory could not answer (I/O, outage); never turns into a token.
    #[error("directory unavailable: {0}")]
    Unavailable(String),
    /// The directory's configuration or data is wrong.
    #[error("{0}")]
    Invalid(String),
}

/// A credential store.
#[async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// Checks `password` for `username` (a UPN, matched case-insensitively) and returns the user.
    /// Unknown users, wrong passwords and disabled accounts take the same time.
    async fn authenticate(&self, username: &str, password: &str) -> Result<User, DirectoryError>;
    /// Looks a user up by UPN without a password.
    async fn lookup(&self, upn: &str) -> Result<Option<User>, DirectoryError>;
    /// Whether the directory can answer now.
    async fn health(&self) -> Result<(), DirectoryError>;
    /// The base32 TOTP secret of an enabled user, when one is enrolled. Directories without
    /// second factors keep the default (none).
    async fn totp_secret(&self, _upn: &str) -> Result<Option<String>, DirectoryError> {
        Ok(None)
    }
}

/// Directories by name, built from `[directories.NAME]`.
pub type Registry = BTreeMap<String, Arc<dyn Directory>>;

/// Builds every configured directory; the error names the config key.
pub fn build(
    configs: &BTreeMap<String, DirectoryConfig>,
) -> Result<Registry, (String, DirectoryError)> {
    let mut registry = Registry::new();
    for (name, config) in configs {
        let directory: Arc<dyn Directory> = match config {
            DirectoryConfig::File { path } => Arc::new(
                file::FileDirectory::load(path)
                    .map_err(|e| (format!("directories.{name}.path"), e))?,
            ),
        };
        registry.insert(name.clone(), directory);
    }
    Ok(registry)
}
