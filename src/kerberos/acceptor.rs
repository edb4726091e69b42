//! SPNEGO / Kerberos acceptor for HTTP Negotiate (cargo feature `kerberos`), on MIT krb5
//! through `libgssapi`.
//!
//! MIT krb5 finds the acceptor keytab through the `KRB5_KTNAME` environment variable; a Rust
//! program may not change its own environment safely once threads run, so [`Acceptor::new`]
//! checks that `KRB5_KTNAME` names the configured keytab and otherwise refuses to start with
//! the exact variable to set. Credentials are acquired per request, so a rotated keytab is
//! picked up without a restart.

use std::path::{Path, PathBuf};

use libgssapi::context::{SecurityContext as _, ServerCtx};
use libgssapi::credential::{Cred, CredUsage};
use libgssapi::oid::{GSS_MECH_KRB5, GSS_MECH_SPNEGO, OidSet};

/// Errors of the Kerberos acceptor.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KerberosError {
    /// The process environment does not point MIT krb5 at the keytab.
    #[error(
        "KRB5_KTNAME is {found:?}, not the configured keytab — start fedsts with KRB5_KTNAME=FILE:{wanted}"
    )]
    KeytabNotInEnvironment {
        /// What the variable holds.
        found: Option<String>,
        /// The configured keytab.
        wanted: String,
    },
    /// The keytab cannot be read.
    #[error("cannot read keytab {path}: {message} — check the path and permissions")]
    KeytabUnreadable {
        /// The keytab.
        path: String,
        /// Why.
        message: String,
    },
    /// The client's token was not accepted (no, expired, or forged ticket; wrong SPN).
    #[error("negotiate token rejected: {0}")]
    Rejected(String),
    /// SPNEGO wants another leg; HTTP Negotiate with Kerberos completes in one.
    #[error("negotiate needs another round trip, which is not supported")]
    Incomplete,
}

/// The result of a completed SPNEGO exchange.
#[derive(Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The client principal, `name@REALM`.
    pub principal: String,
    /// The mutual-authentication token for `WWW-Authenticate: Negotiate`, when any.
    pub reply_token: Option<Vec<u8>>,
}

/// Accepts SPNEGO tokens with the keys of one keytab.
#[derive(Debug, Clone)]
pub struct Acceptor {
    keytab: PathBuf,
}

impl Acceptor {
    /// Checks that the keytab is readable and that `KRB5_KTNAME` points MIT krb5 at it.
    pub fn new(keytab: &Path) -> Result<Self, KerberosError> {
        std::fs::metadata(keytab).map_err(|e| KerberosError::KeytabUnreadable {
            path: keytab.display().to_string(),
            message: e.to_string(),
        })?;
        let found = std::env::var("KRB5_KTNAME").ok();
        let wanted = keytab.display().to_string();
        let matches = found.as_deref().is_some_and(|value| {
            let path = value.strip_prefix("FILE:").unwrap_or(value);
            Path::new(path) == keytab
        });
        if !matches {
            return Err(KerberosError::KeytabNotInEnvironment { found, wanted });
        }
        Ok(Self {
            keytab: keytab.to_path_buf(),
        })
    }

    /// The keytab in use.
    pub fn keytab(&self) -> &Path {
        &self.keytab
    }

    /// Runs one SPNEGO accept step on `token` (blocking; call from `spawn_blocking`).
    pub fn accept(&self, token: &[u8]) -> Result<Accepted, KerberosError> {
        let rejected = |e: libgssapi::error::Error| KerberosError::Rejected(e.to_string());
        let mut mechs = OidSet::new();
        mechs.add(GSS_MECH_SPNEGO).map_err(rejected)?;
        mechs.add(GSS_MECH_KRB5).map_err(rejected)?;
        let cred = Cred::acquire(None, None, CredUsage::Accept, Some(&mechs)).map_err(rejected)?;
        let mut ctx = ServerCtx::new(Some(cred));
        let reply = ctx.step(token, None).map_err(rejected)?;
        if !ctx.is_complete() {
            return Err(KerberosError::Incomplete);
        }
        let principal = ctx.source_name().map_err(rejected)?.to_string();
        Ok(Accepted {
            principal,
            reply_token: reply.map(|buf| buf.to_vec()),
        })
    }
}
