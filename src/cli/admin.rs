//! Admin commands that change files: `fedsts rollover` (promote the next token-signing pair),
//! `fedsts user totp-enroll` (store a new TOTP secret in a users file) and `fedsts user
//! totp-reset` (remove it, so the user can enrol again).

use std::path::Path;
use std::process::ExitCode;

use super::{fail, print_commands};
use crate::adfs;
use crate::config::{AppConfig, Config, ConfigProblem, DirectoryConfig};
use crate::crypto::Certificate;
use crate::file_edit::{self, SigningFiles};
use crate::policy::audit::{AuditRecord, Decision};
use crate::secret::Secret;
use crate::totp;

/// The configured app ids, for a `--app` error that lists what may be named.
fn app_ids(config: &Config) -> String {
    let ids: Vec<&str> = config.apps.iter().map(|a| a.id.as_str()).collect();
    ids.join(", ")
}

fn load_app(path: &Path, app_id: &str) -> Result<(Config, AppConfig), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let app = config.app(app_id).cloned().ok_or_else(|| {
        format!(
            "--app: no app with id `{app_id}` — ids in {}: {}",
            path.display(),
            app_ids(&config)
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
             in its [[apps]] table, publish it (reload or restart fedsts, then run section B of the commands page), \
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
    let report =
        match file_edit::promote_next(path, app_id, &files, time::OffsetDateTime::now_utc()) {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
    for backup in &report.backups {
        println!("kept {}", backup.display());
    }
    println!(
        "promoted the next signing pair of app {app_id}; reload (systemctl reload fedsts) or restart fedsts to sign with it, then tell \
         Entra ID (section B below):\n"
    );
    print_commands(path, app_id)
}

/// The users file of the app's file directory (LDAP/AD secrets are admin-managed there).
fn users_file(path: &Path, app_id: &str) -> Result<(AppConfig, std::path::PathBuf), String> {
    let (config, app) = load_app(path, app_id)?;
    match config.directories.get(&app.directory) {
        Some(DirectoryConfig::File { path }) => Ok((app.clone(), path.clone())),
        Some(DirectoryConfig::Ldap(_)) => Err(format!(
            "apps.directory: `{}` is an LDAP directory — store TOTP secrets in the file \
             directory (LDAP-held secrets are not supported yet)",
            app.directory
        )),
        None => Err(format!("apps.directory: no directory `{}`", app.directory)),
    }
}

/// Stores a new TOTP secret for `upn` and prints its otpauth:// URI and QR code.
pub fn totp_enroll(path: &Path, app_id: &str, upn: &str) -> ExitCode {
    let (app, users_path) = match users_file(path, app_id) {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let secret = match totp::TotpKey::generate() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let backup = match file_edit::store_totp_secret(
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
        "reload (systemctl reload fedsts) or restart fedsts to load it, then scan the code below or add this URI to an authenticator app:"
    );
    println!("{uri}");
    if let Some(qr) = totp::terminal_qr(&uri) {
        println!("{qr}");
    }
    ExitCode::SUCCESS
}

/// Removes the TOTP secret of `upn` (audit record: `totp_enrolment` / `reset`).
pub fn totp_reset(path: &Path, app_id: &str, upn: &str) -> ExitCode {
    let (app, users_path) = match users_file(path, app_id) {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let now = time::OffsetDateTime::now_utc();
    let backup = match file_edit::remove_totp_secret(&users_path, upn, now) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    AuditRecord::command(&app.id, "cli/user/totp-reset", upn, now).emit(
        Decision::TotpEnrolment,
        "reset",
        None,
    );
    let next = if app.passive.totp_self_enrolment {
        "the user sets up a new authenticator at the next sign-in that needs a code"
    } else {
        "enrol a new one with `fedsts user totp-enroll`"
    };
    println!(
        "removed the TOTP secret of {upn} from {} (previous file kept as {}); reload (systemctl reload fedsts) or restart fedsts to load it, then {next}",
        users_path.display(),
        backup.display()
    );
    ExitCode::SUCCESS
}

/// `fedsts import-adfs`: writes the app's files, or names each problem and writes nothing.
pub fn import_adfs(request: &adfs::ImportRequest<'_>, pfx_password_file: &Path) -> ExitCode {
    if !crate::config::is_valid_app_id(request.app_id) {
        return fail(format!(
            "--app: `{}` is not a valid app id — use 1 to 64 of A-Z a-z 0-9 _ -",
            request.app_id
        ));
    }
    let password = match read_password_file(pfx_password_file) {
        Ok(p) => p,
        Err(e) => return fail(e),
    };
    match adfs::import(request, &password) {
        Ok(imported) => {
            println!("wrote {}", imported.signing_key.display());
            println!("wrote {}", imported.signing_cert.display());
            println!("wrote {}", imported.config_fragment.display());
            println!(
                "token-signing certificate SHA-256 {}; every URL Entra holds is served with [server] public_url = \"{}\"",
                imported.thumbprint, imported.public_url
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// The first line of the password file (a password with a trailing newline is the usual file).
fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "--pfx-password-file: cannot read {}: {e} — write the PFX password on its first line",
            path.display()
        )
    })?;
    let first = text.lines().next().unwrap_or_default();
    Ok(Secret::new(first.to_owned()))
}

/// `check-config --compare-federation`: each way an app differs from what Entra holds.
pub fn compare_federation(
    config: &Config,
    json: &Path,
    app_id: Option<&str>,
) -> Result<Vec<ConfigProblem>, ExitCode> {
    let entra = adfs::EntraFederation::load(json).map_err(fail)?;
    let index = match app_id {
        Some(id) => config.apps.iter().position(|a| a.id == id),
        None if config.apps.len() == 1 => Some(0),
        None => None,
    }
    .ok_or_else(|| {
        fail(format!(
            "--app: name one of the apps in the configuration to compare: {}",
            app_ids(config)
        ))
    })?;
    let app = &config.apps[index];
    let certificate = std::fs::read_to_string(&app.signing_cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| Certificate::from_pem(&pem).map_err(|e| e.to_string()))
        .map_err(|e| fail(format!("apps[{index}].signing_cert: {e}")))?;
    let mismatches =
        adfs::compare(&entra, app, config.public_base(), certificate.der()).map_err(fail)?;
    Ok(mismatches
        .iter()
        .map(|m| {
            let text = m.to_string();
            let (problem, fix) = text.split_once(" — ").unwrap_or((&text, ""));
            ConfigProblem::new(
                format!("apps[{index}] against {}", json.display()),
                problem,
                fix,
            )
        })
        .collect())
}
