//! The embedded file directory: users in a TOML file with argon2id password hashes.
//!
//! ```toml
//! [[users]]
//! upn = "alice@example.com"
//! immutable_id = "1TIu064jGEmmf+hnI+F0Jg=="
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # fedsts hash-password
//! enabled = true                                     # optional, default true
//! groups = ["staff"]                                 # optional
//! display_name = "Alice"                             # optional
//! sam_account_name = "alice"                         # optional; Kerberos principal name
//! object_guid = "base64 of 16 bytes"                 # optional; computers (hybrid join)
//! object_sid = "S-1-5-21-…"                          # optional; computers (hybrid join)
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use async_trait::async_trait;
use serde::Deserialize;

use super::{AuthFailure, Directory, DirectoryError, User};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default)]
    users: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    upn: String,
    immutable_id: String,
    password: String,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    sam_account_name: Option<String>,
    #[serde(default)]
    object_guid: Option<String>,
    #[serde(default)]
    object_sid: Option<String>,
    totp_secret: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

struct StoredUser {
    user: User,
    hash: PasswordHash,
    enabled: bool,
    totp_secret: Option<String>,
}

/// Users loaded from a TOML file at start.
pub struct FileDirectory {
    users: HashMap<String, Arc<StoredUser>>,
    /// Lower-cased `sam_account_name` → lower-cased UPN.
    accounts: HashMap<String, String>,
    /// Verified instead of a real hash for unknown users, so they cost the same time.
    dummy_hash: PasswordHash,
    /// One permit per core: at most that many argon2 checks (19 MiB each) run at once, so a
    /// burst of sign-ins queues instead of exhausting memory and thrashing the caches.
    hashing: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for FileDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDirectory")
            .field("users", &self.users.len())
            .finish()
    }
}

/// Hashes a password as an argon2id PHC string with the crate's recommended parameters.
pub fn hash_password(password: &str) -> Result<String, DirectoryError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| DirectoryError::Invalid(format!("cannot hash password: {e}")))
}

impl FileDirectory {
    /// Reads and checks the users file.
    pub fn load(path: &Path) -> Result<Self, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            DirectoryError::Invalid(format!(
                "cannot read users file {}: {e} — check the path",
                path.display()
            ))
        })?;
        Self::parse(&text)
            .map_err(|e| DirectoryError::Invalid(format!("users file {}: {e}", path.display())))
    }

    /// Parses the users file text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let file: UsersFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut users = HashMap::new();
        let mut accounts = HashMap::new();
        for (i, entry) in file.users.into_iter().enumerate() {
            let key = entry.upn.to_lowercase();
            if let Some(sam) = &entry.sam_account_name
                && accounts.insert(sam.to_lowercase(), key.clone()).is_some()
            {
                return Err(format!(
                    "users[{i}].sam_account_name: duplicate account name — each may appear once"
                ));
            }
            let stored = stored_user(entry).map_err(|e| format!("users[{i}]: {e}"))?;
            if users.insert(key, Arc::new(stored)).is_some() {
                return Err(format!(
                    "users[{i}].upn: duplicate UPN — each UPN may appear once"
                ));
            }
        }
        let dummy =
            hash_password("fedsts dummy password for unknown users").map_err(|e| e.to_string())?;
        let dummy_hash = PasswordHash::new(&dummy).map_err(|e| e.to_string())?;
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Ok(Self {
            users,
            accounts,
            dummy_hash,
            hashing: Arc::new(tokio::sync::Semaphore::new(cores)),
        })
    }

    /// Number of users loaded.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

fn stored_user(entry: UserEntry) -> Result<StoredUser, String> {
    if !entry.upn.contains('@') {
        return Err(format!("upn `{}` is not a UPN (user@domain)", entry.upn));
    }
    if entry.immutable_id.is_empty() {
        return Err("immutable_id is empty — set the user's Entra onPremisesImmutableId".into());
    }
    let hash = PasswordHash::new(&entry.password).map_err(|_| {
        "password is not a PHC string — run `fedsts hash-password` and paste its output".to_string()
    })?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(format!(
            "password uses `{}` — only argon2id is accepted; run `fedsts hash-password`",
            hash.algorithm.as_str()
        ));
    }
    if let Some(secret) = &entry.totp_secret {
        crate::totp::Secret::from_base32(secret).map_err(|e| {
            format!("totp_secret: {e} — enrol again with `fedsts user totp-enroll`")
        })?;
    }
    Ok(StoredUser {
        totp_secret: entry.totp_secret,
        user: User {
            upn: entry.upn,
            immutable_id: entry.immutable_id,
            display_name: entry.display_name,
            groups: entry.groups,
            sam_account_name: entry.sam_account_name,
            object_guid: entry.object_guid,
            object_sid: entry.object_sid,
        },
        hash,
        enabled: entry.enabled,
    })
}

fn verify(password: &str, hash: &PasswordHash) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

#[async_trait]
impl Directory for FileDirectory {
    async fn authenticate(&self, username: &str, password: &str) -> Result<User, DirectoryError> {
        let stored = self.users.get(&username.to_lowercase()).cloned();
        let hash = match &stored {
            Some(s) => s.hash.clone(),
            None => self.dummy_hash.clone(),
        };
        let password = password.to_owned();
        let permit = self
            .hashing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DirectoryError::Unavailable(format!("password check failed: {e}")))?;
        let matches = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify(&password, &hash)
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("password check failed: {e}")))?;
        match stored {
            None => Err(DirectoryError::Rejected(AuthFailure::UnknownUser)),
            Some(_) if !matches => Err(DirectoryError::Rejected(AuthFailure::WrongPassword)),
            Some(s) if !s.enabled => Err(DirectoryError::Rejected(AuthFailure::Disabled)),
            Some(s) => Ok(s.user.clone()),
        }
    }

    async fn lookup(&self, upn: &str) -> Result<Option<User>, DirectoryError> {
        Ok(self
            .users
            .get(&upn.to_lowercase())
            .filter(|s| s.enabled)
            .map(|s| s.user.clone()))
    }

    async fn lookup_account(&self, sam_account_name: &str) -> Result<Option<User>, DirectoryError> {
        match self.accounts.get(&sam_account_name.to_lowercase()) {
            Some(upn) => self.lookup(upn).await,
            None => Ok(None),
        }
    }

    async fn health(&self) -> Result<(), DirectoryError> {
        Ok(())
    }

    async fn totp_secret(&self, upn: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self
            .users
            .get(&upn.to_lowercase())
            .filter(|s| s.enabled)
            .and_then(|s| s.totp_secret.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directory() -> FileDirectory {
        let alice = hash_password("correct horse").unwrap();
        let bob = hash_password("bobpw").unwrap();
        FileDirectory::parse(&format!(
            r#"
[[users]]
upn = "Alice@Example.com"
immutable_id = "AAAAAAAAAAAAAAAAAAAAAA=="
password = "{alice}"
groups = ["staff"]
[[users]]
upn = "bob@example.com"
immutable_id = "bob-id"
password = "{bob}"
enabled = false
"#
        ))
        .unwrap()
    }

    #[tokio::test]
    async fn right_password_case_insensitive_upn() {
        let user = directory()
            .authenticate("alice@EXAMPLE.com", "correct horse")
            .await
            .unwrap();
        assert_eq!(user.upn, "Alice@Example.com");
        assert_eq!(user.immutable_id, "AAAAAAAAAAAAAAAAAAAAAA==");
        assert_eq!(user.groups, ["staff"]);
    }

    #[tokio::test]
    async fn failures_have_distinct_internal_reasons() {
        let d = directory();
        let reason = |r: Result<User, DirectoryError>| match r {
            Err(DirectoryError::Rejected(f)) => f,
            other => panic!("unexpected {other:?}"),
        };
        assert_eq!(
            reason(d.authenticate("alice@example.com", "wrong").await),
            AuthFailure::WrongPassword
        );
        assert_eq!(
            reason(d.authenticate("alice@example.com", "").await),
            AuthFailure::WrongPassword
        );
        assert_eq!(
            reason(d.authenticate("nobody@example.com", "x").await),
            AuthFailure::UnknownUser
        );
        assert_eq!(
            reason(d.authenticate("bob@example.com", "bobpw").await),
            AuthFailure::Disabled
        );
        assert_eq!(d.lookup("BOB@example.com").await.unwrap(), None);
    }

    #[tokio::test]
    async fn computers_are_found_by_account_name_with_guid_and_sid() {
        let h = hash_password("unused").unwrap();
        let d = FileDirectory::parse(&format!(
            r#"
[[users]]
upn = "PC1$@example.com"
sam_account_name = "PC1$"
immutable_id = "AAECAwQFBgcICQoLDA0ODw=="
object_guid = "AAECAwQFBgcICQoLDA0ODw=="
object_sid = "S-1-5-21-1-2-3-1105"
password = "{h}"
"#
        ))
        .unwrap();
        let pc = d.lookup_account("pc1$").await.unwrap().unwrap();
        assert_eq!(pc.upn, "PC1$@example.com");
        assert_eq!(pc.object_guid.as_deref(), Some("AAECAwQFBgcICQoLDA0ODw=="));
        assert_eq!(pc.object_sid.as_deref(), Some("S-1-5-21-1-2-3-1105"));
        assert_eq!(d.lookup_account("PC2$").await.unwrap(), None);
    }

    #[test]
    fn bad_files_are_explained() {
        let err =
            FileDirectory::parse("[[users]]\nupn='a@b.c'\nimmutable_id='x'\npassword='plain'\n")
                .unwrap_err();
        assert!(err.contains("fedsts hash-password"), "{err}");
        let err =
            FileDirectory::parse("[[users]]\nupn='nodomain'\nimmutable_id='x'\npassword='p'\n")
                .unwrap_err();
        assert!(err.contains("not a UPN"), "{err}");
        let h = hash_password("x").unwrap();
        let dup = format!(
            "[[users]]\nupn='a@b.c'\nimmutable_id='x'\npassword='{h}'\n[[users]]\nupn='A@b.c'\nimmutable_id='y'\npassword='{h}'\n"
        );
        assert!(
            FileDirectory::parse(&dup)
                .unwrap_err()
                .contains("duplicate UPN")
        );
    }

    #[test]
    fn hash_is_argon2id_phc() {
        let h = hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(verify("pw", &PasswordHash::new(&h).unwrap()));
        assert!(!verify("pw2", &PasswordHash::new(&h).unwrap()));
    }
}
