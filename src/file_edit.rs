//! File edits: `fedsts rollover` (promote an app's next token-signing pair to current), and the
//! one users-file edit ([`edit_user`]) behind `fedsts user totp-enroll` / `totp-reset`, the secret
//! a user enrols during sign-in and the file directory's password change.
//!
//! Every edit keeps what it replaces as `<file>.<UTC time>.bak` and writes through a temporary
//! file and a rename, so a failure leaves the old files in place. Nothing is changed unless every
//! check passes first.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::crypto::SigningIdentity;

/// Why an edit was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EditError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML file could not be parsed for editing.
    #[error("{path}: {message}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The request cannot be done; the text says why and what to do.
    #[error("{0}")]
    Refused(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EditError + '_ {
    move |source| EditError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `YYYYMMDDTHHMMSSZ` for backup names.
fn stamp(now: OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

/// How many backups of one file one second may have (run-time edits: password changes).
const BACKUPS_PER_SECOND: u32 = 100;

/// `<file>.<stamp>.bak`, or `<file>.<stamp>.<n>.bak` when edits in the same second made that one
/// already: a backup is never overwritten, so the state before the first edit survives.
fn backup_path(path: &Path, now: OffsetDateTime) -> Result<PathBuf, EditError> {
    let stamp = stamp(now);
    (1..=BACKUPS_PER_SECOND)
        .map(|n| {
            let mut name = path.as_os_str().to_owned();
            match n {
                1 => name.push(format!(".{stamp}.bak")),
                _ => name.push(format!(".{stamp}.{n}.bak")),
            }
            PathBuf::from(name)
        })
        .find(|candidate| !candidate.exists())
        .ok_or_else(|| {
            EditError::Refused(format!(
                "{}: {BACKUPS_PER_SECOND} backups in one second already — try again in a second",
                path.display()
            ))
        })
}

/// Copies `path` to a new backup name (permissions included) and returns that name.
fn back_up(path: &Path, now: OffsetDateTime) -> Result<PathBuf, EditError> {
    let backup = backup_path(path, now)?;
    std::fs::copy(path, &backup).map_err(io(path))?;
    Ok(backup)
}

/// Replaces `path` with `contents` through a temporary file, keeping `path`'s permissions.
fn replace_file(path: &Path, contents: &[u8]) -> Result<(), EditError> {
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    std::fs::write(&temporary, contents).map_err(io(&temporary))?;
    if let Ok(meta) = std::fs::metadata(path) {
        std::fs::set_permissions(&temporary, meta.permissions()).map_err(io(&temporary))?;
    }
    std::fs::rename(&temporary, path).map_err(io(path))
}

fn read(path: &Path) -> Result<String, EditError> {
    std::fs::read_to_string(path).map_err(io(path))
}

fn parse_toml(path: &Path, text: &str) -> Result<toml_edit::DocumentMut, EditError> {
    text.parse::<toml_edit::DocumentMut>()
        .map_err(|e| EditError::Toml {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
}

/// What a rollover changed.
#[derive(Debug)]
pub struct RolloverReport {
    /// Backups of the old current pair and of the configuration file.
    pub backups: Vec<PathBuf>,
    /// Base64 DER of the certificate that is now current.
    pub new_certificate_b64: String,
}

/// Paths of one app's current and next signing pairs, as the loaded configuration resolved them.
#[derive(Debug, Clone)]
pub struct SigningFiles {
    /// Current certificate.
    pub cert: PathBuf,
    /// Current key.
    pub key: PathBuf,
    /// Next certificate.
    pub next_cert: PathBuf,
    /// Next key.
    pub next_key: PathBuf,
}

/// Promotes the next signing pair of app `app_id`: the current files receive the next pair's
/// contents (old contents kept as backups), and `next_signing_cert` / `next_signing_key` are
/// removed from the app's table in `config_path` (the file is backed up too). The next files
/// themselves are left where they are.
pub fn promote_next(
    config_path: &Path,
    app_id: &str,
    files: &SigningFiles,
    now: OffsetDateTime,
) -> Result<RolloverReport, EditError> {
    let next = SigningIdentity::from_pem_files(&files.next_cert, &files.next_key).map_err(|e| {
        EditError::Refused(format!(
            "apps.next_signing_key: the next pair cannot be used ({e}) — fix it before promoting"
        ))
    })?;
    if next.certificate.not_before() > now || next.certificate.not_after() <= now {
        return Err(EditError::Refused(
            "apps.next_signing_cert: the next certificate is not valid now — promote it inside its validity window".into(),
        ));
    }
    let config_text = read(config_path)?;
    let mut document = parse_toml(config_path, &config_text)?;
    remove_next_keys(&mut document, app_id)?;
    let next_cert = std::fs::read(&files.next_cert).map_err(io(&files.next_cert))?;
    let next_key = std::fs::read(&files.next_key).map_err(io(&files.next_key))?;
    let backups = vec![
        back_up(&files.cert, now)?,
        back_up(&files.key, now)?,
        back_up(config_path, now)?,
    ];
    replace_file(&files.key, &next_key)?;
    replace_file(&files.cert, &next_cert)?;
    replace_file(config_path, document.to_string().as_bytes())?;
    Ok(RolloverReport {
        backups,
        new_certificate_b64: next.certificate.base64().to_owned(),
    })
}

fn remove_next_keys(document: &mut toml_edit::DocumentMut, app_id: &str) -> Result<(), EditError> {
    let apps = document
        .get_mut("apps")
        .and_then(|a| a.as_array_of_tables_mut())
        .ok_or_else(|| EditError::Refused("the configuration has no [[apps]] tables".into()))?;
    let app = apps
        .iter_mut()
        .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(app_id))
        .ok_or_else(|| {
            EditError::Refused(format!("--app: no [[apps]] table with id `{app_id}`"))
        })?;
    let removed_cert = app.remove("next_signing_cert").is_some();
    let removed_key = app.remove("next_signing_key").is_some();
    if !(removed_cert && removed_key) {
        return Err(EditError::Refused(format!(
            "apps `{app_id}`: next_signing_cert and next_signing_key must both be in this table"
        )));
    }
    Ok(())
}

/// Writes `totp_secret = "…"` into the `[[users]]` entry of `upn` (case-insensitive) in a file
/// directory's users file, keeping a backup. Returns the backup path.
pub fn store_totp_secret(
    users_path: &Path,
    upn: &str,
    secret_base32: &str,
    now: OffsetDateTime,
) -> Result<PathBuf, EditError> {
    edit_user(users_path, upn, now, |user| {
        user.insert("totp_secret", toml_edit::value(secret_base32));
        Ok(())
    })
}

/// Removes `totp_secret` from the `[[users]]` entry of `upn` (`fedsts user totp-reset`), keeping
/// a backup; refused when the user has none (nothing would change).
pub fn remove_totp_secret(
    users_path: &Path,
    upn: &str,
    now: OffsetDateTime,
) -> Result<PathBuf, EditError> {
    edit_user(users_path, upn, now, |user| {
        user.remove("totp_secret").map(|_| ()).ok_or_else(|| {
            EditError::Refused(format!(
                "--upn: `{upn}` has no TOTP secret in {} — nothing to reset",
                users_path.display()
            ))
        })
    })
}

/// The one edit of a users file: applies `edit` to the `[[users]]` table of `upn`
/// (case-insensitive), keeps the old file as a backup and writes the new one through a rename.
/// Comments and the other entries stay as they were. Returns the backup path; nothing is
/// written when the user is missing or `edit` refuses. Callers that edit at run time serialize
/// their edits (the file directory holds one lock around this).
pub fn edit_user(
    users_path: &Path,
    upn: &str,
    now: OffsetDateTime,
    edit: impl FnOnce(&mut toml_edit::Table) -> Result<(), EditError>,
) -> Result<PathBuf, EditError> {
    let text = read(users_path)?;
    let mut document = parse_toml(users_path, &text)?;
    let users = document
        .get_mut("users")
        .and_then(|u| u.as_array_of_tables_mut())
        .ok_or_else(|| {
            EditError::Refused(format!("{}: no [[users]] entries", users_path.display()))
        })?;
    let wanted = upn.to_lowercase();
    let user = users
        .iter_mut()
        .find(|t| {
            t.get("upn")
                .and_then(|v| v.as_str())
                .is_some_and(|u| u.to_lowercase() == wanted)
        })
        .ok_or_else(|| {
            EditError::Refused(format!(
                "--upn: no user `{upn}` in {} — add the user first",
                users_path.display()
            ))
        })?;
    edit(user)?;
    let backup = back_up(users_path, now)?;
    replace_file(users_path, document.to_string().as_bytes())?;
    Ok(backup)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn totp_secret_is_written_to_the_right_user_with_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let original = "# keep me\n[[users]]\nupn = \"a@x.com\"\nimmutable_id = \"1\"\npassword = \"p\"\n\n[[users]]\nupn = \"B@x.com\"\nimmutable_id = \"2\"\npassword = \"p\"\n";
        std::fs::write(&path, original).unwrap();
        let now = datetime!(2026-01-02 03:04:05 UTC);
        let backup = store_totp_secret(&path, "b@X.com", "ABCDEFGHIJKLMNOP", now).unwrap();
        assert_eq!(backup, dir.path().join("users.toml.20260102T030405Z.bak"));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
        let edited = std::fs::read_to_string(&path).unwrap();
        assert!(edited.starts_with("# keep me\n"));
        assert!(edited.ends_with("upn = \"B@x.com\"\nimmutable_id = \"2\"\npassword = \"p\"\ntotp_secret = \"ABCDEFGHIJKLMNOP\"\n"), "{edited}");
        assert_eq!(edited.matches("totp_secret").count(), 1);
        // A second edit in the same second keeps the first backup.
        let second = store_totp_secret(&path, "a@x.com", "ABCDEFGHIJKLMNOP", now).unwrap();
        assert_eq!(second, dir.path().join("users.toml.20260102T030405Z.2.bak"));
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
        assert_eq!(std::fs::read_to_string(&second).unwrap(), edited);
        let missing = store_totp_secret(&path, "c@x.com", "ABCDEFGHIJKLMNOP", now).unwrap_err();
        assert!(
            missing.to_string().contains("no user `c@x.com`"),
            "{missing}"
        );
        let later = datetime!(2026-01-02 03:04:06 UTC);
        remove_totp_secret(&path, "B@x.com", later).unwrap();
        let reset = std::fs::read_to_string(&path).unwrap();
        // a@x.com keeps the secret the same-second edit gave it; B's is gone.
        assert_eq!(reset.matches("totp_secret").count(), 1, "{reset}");
        assert!(
            reset.ends_with("upn = \"B@x.com\"\nimmutable_id = \"2\"\npassword = \"p\"\n"),
            "{reset}"
        );
        let again = remove_totp_secret(&path, "b@x.com", later).unwrap_err();
        assert!(again.to_string().contains("nothing to reset"), "{again}");
    }

    #[test]
    fn removing_next_keys_needs_both() {
        let mut doc: toml_edit::DocumentMut =
            "[[apps]]\nid = \"a\"\nnext_signing_cert = \"n.crt\"\n[[apps]]\nid = \"b\"\nnext_signing_cert = \"n.crt\"\nnext_signing_key = \"n.key\"\n"
                .parse()
                .unwrap();
        assert!(remove_next_keys(&mut doc, "a").is_err());
        remove_next_keys(&mut doc, "b").unwrap();
        assert!(!doc.to_string().contains("next_signing_key"));
        assert!(
            remove_next_keys(&mut doc, "zzz")
                .unwrap_err()
                .to_string()
                .contains("no [[apps]] table with id `zzz`")
        );
    }
}
