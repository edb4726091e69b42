//! `fedsts keys check` (log into each app's key store, match the key to its certificate, sign a
//! test digest and verify it) and `fedsts keys generate --pkcs11` (make a non-extractable
//! RSA-2048 key in the app's token and a self-signed certificate for it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;

use super::fail;
use crate::config::Config;
use crate::crypto::pkcs11::{self, Pkcs11Signer};
use crate::crypto::{Certificate, SigningIdentity, self_signed_for_signer};
use crate::preflight;

/// Default validity of a generated token-signing certificate (one year, as ADFS).
const DEFAULT_VALID_DAYS: u32 = 365;

/// `fedsts keys …` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysAction {
    /// For every app (or one): load the signing key from its store (logging into a PKCS#11
    /// token), check it matches signing_cert, sign a test digest and verify it.
    Check {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Only this app.
        #[arg(long)]
        app: Option<String>,
    },
    /// Make the app's signing key in its PKCS#11 token (`[apps.signing_pkcs11]`: RSA-2048,
    /// sensitive, not extractable) and write a self-signed certificate for it to signing_cert.
    Generate {
        /// Make the key in the app's PKCS#11 token (the only store this command makes keys in).
        #[arg(long)]
        pkcs11: bool,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// App id.
        #[arg(long)]
        app: String,
        /// Subject CN of the certificate (default "fedsts token signing - DOMAIN").
        #[arg(long)]
        common_name: Option<String>,
        /// Days the certificate is valid.
        #[arg(long, default_value_t = DEFAULT_VALID_DAYS, value_parser = clap::value_parser!(u32).range(1..=3650))]
        valid_days: u32,
    },
}

/// Runs a `keys` subcommand.
pub fn run(action: KeysAction) -> ExitCode {
    match action {
        KeysAction::Check { config, app } => check(&config, app.as_deref()),
        KeysAction::Generate {
            pkcs11,
            config,
            app,
            common_name,
            valid_days,
        } => {
            if !pkcs11 {
                return fail(
                    "fedsts keys generate makes keys in PKCS#11 tokens only: pass --pkcs11 (file keys: see README, Token-signing keys)",
                );
            }
            match generate(&config, &app, common_name.as_deref(), valid_days) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
    }
}

fn check(path: &Path, only: Option<&str>) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut failed = false;
    let mut checked = 0;
    for (i, app) in config.apps.iter().enumerate() {
        if only.is_some_and(|id| id != app.id) {
            continue;
        }
        checked += 1;
        let report = preflight::key_report(i, app);
        for finding in &report.findings {
            println!("{} ({}): {finding}", report.prefix(), app.id);
        }
        for warning in &report.warnings {
            println!("warning: {warning}");
        }
        for problem in &report.problems {
            println!("{problem}");
            failed = true;
        }
    }
    if checked == 0 {
        return fail(format!("--app: no app with id `{}`", only.unwrap_or("")));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn generate(
    path: &Path,
    app_id: &str,
    common_name: Option<&str>,
    valid_days: u32,
) -> Result<String, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let (index, app) = config
        .apps
        .iter()
        .enumerate()
        .find(|(_, a)| a.id == app_id)
        .ok_or_else(|| format!("--app: no app with id `{app_id}`"))?;
    let Some(token) = &app.signing_pkcs11 else {
        return Err(format!(
            "apps[{index}] ({app_id}) has no [apps.signing_pkcs11] table — add one naming the module, token, key label and PIN"
        ));
    };
    if app.signing_cert.exists() {
        return Err(format!(
            "apps[{index}].signing_cert: {} exists already — move it away (or point signing_cert at a new file) so no certificate is overwritten",
            app.signing_cert.display()
        ));
    }
    let key = |e: &dyn std::fmt::Display| format!("apps[{index}].signing_pkcs11: {e}");
    pkcs11::generate_key_pair(token).map_err(|e| key(&e))?;
    let signer = Pkcs11Signer::open(token).map_err(|e| key(&e))?;
    let default_name = format!("fedsts token signing - {}", app.domain);
    let pem = self_signed_for_signer(&signer, common_name.unwrap_or(&default_name), valid_days)
        .map_err(|e| key(&e))?;
    let certificate = Certificate::from_pem(&pem).map_err(|e| key(&e))?;
    let identity = SigningIdentity::new(Arc::new(signer), certificate).map_err(|e| key(&e))?;
    identity.self_test().map_err(|e| key(&e))?;
    std::fs::write(&app.signing_cert, &pem).map_err(|e| {
        format!(
            "apps[{index}].signing_cert: cannot write {}: {e}",
            app.signing_cert.display()
        )
    })?;
    Ok(format!(
        "made an RSA-2048 key (sensitive, not extractable) in the token and wrote {} ({}, SHA-256 {}, valid until {})",
        app.signing_cert.display(),
        identity.certificate.subject(),
        identity.fingerprint(),
        identity.certificate.not_after()
    ))
}
