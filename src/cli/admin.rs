//! Admin commands that change files: `fedsts rollover` (promote the next token-signing pair)
//! and `fedsts user totp-enroll` (store a new TOTP secret in a users file).

use std::path::Path;
use std::process::ExitCode;

use super::{fail, print_commands};
use crate::config::{AppConfig, Config, DirectoryConfig};
use crate::rollover::{self, SigningFiles};
use crate::totp;

fn load_app(path: &Path, app_id: &str) -> Result<(Config, AppConfig), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let app = config.app(app_id).cloned().ok_or_else(|| {
        format!(
            "--app: no app with id `{app_id}` — ids in {}: {}",
            path.display(),
            config
                .apps
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    Ok((config, app))
}

/// Promotes the app's next signing pair and prints the commands that tell Entra ID.
pub fn roll_over(path: &Path, app_id: &str) -> ExitCode {
    let (_, app) = match load_app(path, app_id) {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let (Some(next_cert), Some(next_key)) = (app.next_signing_cert, app.next_signing_key) else {
        return fail(format!(
            "app `{app_id}` has no next signing pair — set next_signing_cert and next_signing_key \
             in its [[apps]] table, publish it (restart, then run section B of the commands page), \
             and roll over once Entra ID has it"
        ));
    };
    let Some(key) = app.signing_key else {
        return fail(format!(
            "app `{app_id}` keeps its signing key in a PKCS#11 token; `fedsts rollover` swaps PEM files only"
        ));
    };
    let files = SigningFiles {
        cert: app.signing_cert,
        key,
        next_cert,
        next_key,
    };
    let report = match rollover::promote_next(path, app_id, &files, time::OffsetDateTime::now_utc())
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    for backup in &report.backups {
        println!("kept {}", backup.display());
    }
    println!(
        "promoted the next signing pair of app {app_id}; restart fedsts to sign with it, then tell \
         Entra ID (section B below):\n"
    );
    print_commands(path, app_id)
}

/// Stores a new TOTP secret for `upn` and prints its otpauth:// URI and QR code.
pub fn totp_enroll(path: &Path, app_id: &str, upn: &str) -> ExitCode {
    let (config, app) = match load_app(path, app_id) {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let users_path = match config.directories.get(&app.directory) {
        Some(DirectoryConfig::File { path }) => path.clone(),
        Some(DirectoryConfig::Ldap(_)) => {
            return fail(format!(
                "apps.directory: `{}` is an LDAP directory — store TOTP secrets in the file \
                 directory (LDAP-held secrets are not supported yet)",
                app.directory
            ));
        }
        None => return fail(format!("apps.directory: no directory `{}`", app.directory)),
    };
    let secret = match totp::TotpKey::generate() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let backup = match rollover::store_totp_secret(
        &users_path,
        upn,
        &secret.to_base32(),
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let uri = totp::otpauth_uri(app.display_name(), upn, &secret);
    println!(
        "stored a new TOTP secret for {upn} in {} (previous file kept as {})",
        users_path.display(),
        backup.display()
    );
    println!(
        "restart fedsts to load it, then scan the code below or add this URI to an authenticator app:"
    );
    println!("{uri}");
    if let Some(qr) = totp::terminal_qr(&uri) {
        println!("{qr}");
    }
    ExitCode::SUCCESS
}
