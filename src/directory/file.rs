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
//! password_expires_at = "2027-01-31T00:00:00Z"       # optional; RFC 3339, refused from then on
//! must_change_password = true                        # optional; sign-in offers the change form
//! ```
//!
//! A password change (the change page, or a sign-in with an expired password) rehashes with
//! the current argon2id parameters, drops `password_expires_at` and `must_change_password`, and
//! rewrites the file through [`crate::file_edit::edit_user`] (backup kept), one edit at a time;
//! the loaded users are updated at once, so the new password works without a restart.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use argon2::password_hash::phc::{Output, PasswordHash};
use argon2::{Algorithm, Argon2, Block, Params, PasswordHasher, Version};
use async_trait::async_trait;
use prometheus_client::metrics::gauge::Gauge;
use serde::Deserialize;

use super::{AuthFailure, CheckPriority, Directory, DirectoryError, PasswordChange, User};
use crate::metrics::QueueMeter;

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
    #[serde(default)]
    password_expires_at: Option<String>,
    #[serde(default)]
    must_change_password: bool,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Clone)]
struct StoredUser {
    user: User,
    hash: PasswordHash,
    /// `None` when the PHC string's parameters are not argon2's (then it never verifies).
    cost: Option<HashCost>,
    enabled: bool,
    totp_secret: Option<String>,
    /// A correct password is refused as [`AuthFailure::MustChangePassword`].
    must_change_password: bool,
}

/// Users loaded from a TOML file at start; run-time edits (a password change, a secret a user
/// enrols during sign-in) are written back to the file and replace the user's entry here.
pub struct FileDirectory {
    /// Lower-cased UPN → user. Written only under `edits`, after the file was.
    users: RwLock<HashMap<String, Arc<StoredUser>>>,
    /// The users file, when loaded from one (edits need it).
    path: Option<PathBuf>,
    /// Held across one users-file edit and the update of `users` that follows it, so
    /// concurrent edits neither lose one another nor leave memory and file apart.
    edits: tokio::sync::Mutex<()>,
    /// Lower-cased `sam_account_name` → lower-cased UPN.
    accounts: HashMap<String, String>,
    /// Verified instead of a real hash for unknown users, so they cost the same time: made with
    /// the users' most common cost parameters ([`dummy_cost`]).
    dummy_hash: PasswordHash,
    /// At most one argon2 check per core runs at once and a bounded number wait, so a flood of
    /// sign-ins is refused as busy instead of queueing without end.
    hashing: HashQueue,
    /// Working memory of the queued checks, reused.
    memory: Arc<HashMemory>,
}

impl std::fmt::Debug for FileDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileDirectory")
            .field("users", &self.len())
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
        let mut directory = Self::parse(&text)
            .map_err(|e| DirectoryError::Invalid(format!("users file {}: {e}", path.display())))?;
        directory.path = Some(path.to_path_buf());
        Ok(directory)
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
        let costs: Vec<Option<HashCost>> = users.values().map(|u| u.cost).collect();
        let dummy_hash = dummy_hash(dummy_cost(&costs)).map_err(|e| e.to_string())?;
        Ok(Self {
            users: RwLock::new(users),
            path: None,
            edits: tokio::sync::Mutex::new(()),
            accounts,
            dummy_hash,
            hashing: HashQueue::per_core(),
            memory: Arc::default(),
        })
    }

    /// The cost parameters of the hash checked for unknown users.
    pub fn dummy_cost(&self) -> Option<HashCost> {
        HashCost::of(&self.dummy_hash)
    }

    /// Number of users loaded.
    pub fn len(&self) -> usize {
        self.read_users().len()
    }

    /// Whether the file has no users.
    pub fn is_empty(&self) -> bool {
        self.read_users().is_empty()
    }

    fn read_users(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<StoredUser>>> {
        self.users
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The stored entry of `upn` (case-insensitive).
    fn stored(&self, upn: &str) -> Option<Arc<StoredUser>> {
        self.read_users().get(&upn.to_lowercase()).cloned()
    }

    /// Writes `secret` into the users file (backup kept) and then into the loaded entry, so the
    /// next sign-in asks for its codes; under [`FileDirectory::edits`], and only while the
    /// user's secret, loaded and in the file as it is now (another instance sharing the file or
    /// `fedsts user` may have changed it), is still the one `replacing` names
    /// ([`crate::totp::fingerprint`]).
    async fn enrol(
        &self,
        upn: &str,
        replacing: Option<&str>,
        secret: &str,
        now: time::OffsetDateTime,
    ) -> Result<bool, DirectoryError> {
        let Some(path) = self.path.clone() else {
            return Err(DirectoryError::Invalid(
                "this file directory was not loaded from a file; it cannot store TOTP secrets"
                    .into(),
            ));
        };
        let _edit = self.edits.lock().await;
        let Some(stored) = self.stored(upn).filter(|s| s.enabled) else {
            return Ok(false);
        };
        let current = stored.totp_secret.as_deref().map(crate::totp::fingerprint);
        if current.as_deref() != replacing {
            return Ok(false);
        }
        let (file_upn, text) = (stored.user.upn.clone(), secret.to_owned());
        let expected = replacing.map(str::to_owned);
        let written = tokio::task::spawn_blocking(move || {
            let on_disk = secret_in_file(&path, &file_upn)?;
            if on_disk.as_deref().map(crate::totp::fingerprint) != expected {
                return Ok(false);
            }
            crate::file_edit::store_totp_secret(&path, &file_upn, &text, now)
                .map(|_| true)
                .map_err(|e| {
                    DirectoryError::Unavailable(format!("cannot store the TOTP secret: {e}"))
                })
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("users file edit failed: {e}")))??;
        if !written {
            return Ok(false);
        }
        let mut updated = StoredUser::clone(&stored);
        updated.totp_secret = Some(secret.to_owned());
        self.users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(upn.to_lowercase(), Arc::new(updated));
        Ok(true)
    }

    /// Applies `edit` to the users-file entry of `upn` and then to the loaded users (the
    /// entry is read back from the written file), one edit at a time. The one path of every
    /// run-time edit of the users file.
    pub async fn edit_user(
        &self,
        upn: &str,
        now: time::OffsetDateTime,
        edit: impl FnOnce(&mut toml_edit::Table) + Send + 'static,
    ) -> Result<(), DirectoryError> {
        let path = self.path.clone().ok_or_else(|| {
            DirectoryError::ChangeNotSupported("the users were not loaded from a file".into())
        })?;
        let _one_edit = self.edits.lock().await;
        let key = upn.to_lowercase();
        let reloaded = tokio::task::spawn_blocking(move || {
            crate::file_edit::edit_user(&path, &key, now, |entry| {
                edit(entry);
                Ok(())
            })
            .map_err(|e| DirectoryError::Unavailable(format!("users file edit: {e}")))?;
            reload_user(&path, &key)
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("users file edit: {e}")))??;
        self.users
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(upn.to_lowercase(), Arc::new(reloaded));
        Ok(())
    }
}

/// The TOTP secret of `upn` as the users file at `path` holds it now.
fn secret_in_file(path: &Path, upn: &str) -> Result<Option<String>, DirectoryError> {
    let unreadable =
        |e: String| DirectoryError::Unavailable(format!("users file {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| unreadable(e.to_string()))?;
    let file: UsersFile = toml::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    let wanted = upn.to_lowercase();
    Ok(file
        .users
        .into_iter()
        .find(|u| u.upn.to_lowercase() == wanted)
        .and_then(|u| u.totp_secret))
}

/// The entry of `key` (a lower-cased UPN) as the users file at `path` now has it.
fn reload_user(path: &Path, key: &str) -> Result<StoredUser, DirectoryError> {
    let invalid =
        |e: String| DirectoryError::Invalid(format!("users file {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
    let file: UsersFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    let entry = file
        .users
        .into_iter()
        .find(|u| u.upn.to_lowercase() == key)
        .ok_or_else(|| invalid(format!("the edited user {key} is gone")))?;
    stored_user(entry).map_err(invalid)
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
        crate::totp::TotpKey::from_base32(secret).map_err(|e| {
            format!("totp_secret: {e} — enrol again with `fedsts user totp-enroll`")
        })?;
    }
    let password_expires_at = entry
        .password_expires_at
        .as_deref()
        .map(|text| {
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    format!(
                        "password_expires_at `{text}`: {e} — write an RFC 3339 time such as 2027-01-31T00:00:00Z"
                    )
                })
        })
        .transpose()?;
    Ok(StoredUser {
        totp_secret: entry.totp_secret,
        must_change_password: entry.must_change_password,
        user: User {
            upn: entry.upn,
            immutable_id: entry.immutable_id,
            display_name: entry.display_name,
            groups: entry.groups,
            sam_account_name: entry.sam_account_name,
            object_guid: entry.object_guid,
            object_sid: entry.object_sid,
            password_expires_at,
        },
        cost: HashCost::of(&hash),
        hash,
        enabled: entry.enabled,
    })
}

/// The argon2 cost parameters of a stored hash: what one check of it costs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HashCost {
    /// Memory in KiB (`m`).
    pub m_kib: u32,
    /// Passes (`t`).
    pub t: u32,
    /// Lanes (`p`).
    pub p: u32,
}

impl HashCost {
    /// The parameters of a PHC string, when they are argon2's.
    fn of(hash: &PasswordHash) -> Option<Self> {
        let params = Params::try_from(hash).ok()?;
        Some(Self {
            m_kib: params.m_cost(),
            t: params.t_cost(),
            p: params.p_cost(),
        })
    }

    /// Memory blocks filled over all passes: what the check's time grows with (the lanes share
    /// the memory and run on one thread here).
    pub fn work(self) -> u64 {
        u64::from(self.m_kib) * u64::from(self.t)
    }
}

impl std::fmt::Display for HashCost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "m={},t={},p={}", self.m_kib, self.t, self.p)
    }
}

/// The dummy's parameters: the users' most common ones (ties go to the costlier), so an unknown
/// user costs what most real users cost; the crate's defaults for a file without users.
pub fn dummy_cost(costs: &[Option<HashCost>]) -> Option<HashCost> {
    let mut counts: HashMap<HashCost, usize> = HashMap::new();
    for cost in costs.iter().flatten() {
        *counts.entry(*cost).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|(cost, count)| (*count, cost.work(), cost.p))
        .map(|(cost, _)| cost)
}

/// The hash verified for unknown users, made with `cost` (the crate's defaults when `None`).
fn dummy_hash(cost: Option<HashCost>) -> Result<PasswordHash, DirectoryError> {
    let params = match cost {
        Some(c) => Params::new(c.m_kib, c.t, c.p, None),
        None => Ok(Params::default()),
    }
    .map_err(|e| DirectoryError::Invalid(format!("cannot make the dummy hash: {e}")))?;
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(b"fedsts dummy password for unknown users")
        .map_err(|e| DirectoryError::Invalid(format!("cannot make the dummy hash: {e}")))
}

/// Users whose cheapest hash costs less than this fraction of the costliest are worth a
/// warning: the cheap ones are easier to crack and answer measurably faster.
const COST_SPREAD_WARNING: u64 = 4;

/// `Some((cheapest, costliest))` when the users' hash costs differ by more than
/// [`COST_SPREAD_WARNING`] times.
pub fn cost_spread(costs: &[Option<HashCost>]) -> Option<(HashCost, HashCost)> {
    let cheapest = costs.iter().flatten().min_by_key(|c| c.work())?;
    let costliest = costs.iter().flatten().max_by_key(|c| c.work())?;
    (costliest.work() > cheapest.work().saturating_mul(COST_SPREAD_WARNING))
        .then_some((*cheapest, *costliest))
}

/// The hash costs of the users in the users file at `path` (for `check-config`'s warning),
/// without loading the directory.
pub fn hash_costs(path: &Path) -> Result<Vec<Option<HashCost>>, DirectoryError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        DirectoryError::Invalid(format!("cannot read users file {}: {e}", path.display()))
    })?;
    let file: UsersFile = toml::from_str(&text)
        .map_err(|e| DirectoryError::Invalid(format!("users file {}: {e}", path.display())))?;
    Ok(file
        .users
        .iter()
        .map(|u| {
            PasswordHash::new(&u.password)
                .ok()
                .and_then(|h| HashCost::of(&h))
        })
        .collect())
}

/// Checks of at most this much work (memory KiB × passes) take tens of microseconds: less than
/// the hop to a hashing thread and back, and too little memory and time to need the queue.
const INLINE_WORK_MAX: u64 = 64;

/// Whether a check of `cost` runs on the calling task instead of the queue. Only the stored
/// hashes' parameters decide it (an unknown user gets the dummy, made with the users' most
/// common cost), never the request.
fn runs_inline(cost: HashCost) -> bool {
    cost.work() <= INLINE_WORK_MAX
}

/// Checks that may wait per core for a hashing thread. A check takes tens of milliseconds, so a
/// full queue is a wait of a few checks; beyond it a request is refused at once as busy.
const QUEUED_PER_CORE: usize = 4;

/// What a busy refusal tells the client to wait: the queue drains in well under this.
const BUSY_RETRY_AFTER_SECS: u64 = 1;

/// The bounded password-hash queue: one argon2 check per core runs at once (each holds its
/// memory cost), at most [`QUEUED_PER_CORE`] per core wait, and the rest are refused as
/// [`DirectoryError::Busy`] instead of queueing without end behind a flood. Half the waiting
/// places are kept for [`CheckPriority::Familiar`] checks: a flood from new addresses fills the
/// queue only up to `capacity - reserve`, so a user at a familiar location still gets in.
struct HashQueue {
    running: Arc<tokio::sync::Semaphore>,
    /// Checks admitted (running or waiting); counted before the capacity is compared.
    admitted: Arc<AtomicUsize>,
    capacity: usize,
    /// Places only familiar checks may take.
    reserve: usize,
    /// Depth and wait, as the metrics show them.
    meter: QueueMeter,
}

/// One admitted check; gives its place back when dropped (done, or the client went away).
struct Admission {
    admitted: Arc<AtomicUsize>,
    depth: Gauge,
}

impl Admission {
    fn new(admitted: &Arc<AtomicUsize>, depth: &Gauge) -> Self {
        depth.inc();
        Self {
            admitted: admitted.clone(),
            depth: depth.clone(),
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.admitted.fetch_sub(1, Ordering::AcqRel);
        self.depth.dec();
    }
}

impl HashQueue {
    /// One running check per core and [`QUEUED_PER_CORE`] waiting per core.
    fn per_core() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::new(cores, cores * QUEUED_PER_CORE)
    }

    fn new(running: usize, waiting: usize) -> Self {
        Self {
            running: Arc::new(tokio::sync::Semaphore::new(running)),
            admitted: Arc::new(AtomicUsize::new(0)),
            capacity: running + waiting,
            reserve: waiting / 2,
            meter: QueueMeter::default(),
        }
    }

    /// Admits a check (count first, then compare: concurrent callers never overfill it).
    fn admit(&self, priority: CheckPriority) -> Result<Admission, DirectoryError> {
        let limit = match priority {
            CheckPriority::Familiar => self.capacity,
            CheckPriority::Other => self.capacity - self.reserve,
        };
        let before = self.admitted.fetch_add(1, Ordering::AcqRel);
        let admission = Admission::new(&self.admitted, &self.meter.depth);
        // No log line here: the refusal's audit record says `password_queue_full`, and a second
        // line per shed request would double the log volume of a flood.
        if before >= limit {
            return Err(DirectoryError::Busy {
                retry_after_secs: BUSY_RETRY_AFTER_SECS,
            });
        }
        Ok(admission)
    }

    /// Runs `check` on a blocking thread once a core is free, or refuses it as busy.
    async fn run<T: Send + 'static>(
        &self,
        priority: CheckPriority,
        check: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, DirectoryError> {
        let admission = self.admit(priority)?;
        let admitted_at = Instant::now();
        let permit = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| DirectoryError::Unavailable(format!("password check failed: {e}")))?;
        self.meter.wait.observe(admitted_at.elapsed().as_secs_f64());
        tokio::task::spawn_blocking(move || {
            let _held = (permit, admission);
            check()
        })
        .await
        .map_err(|e| DirectoryError::Unavailable(format!("password check failed: {e}")))
    }
}

/// Checks `password` against a PHC string, filling `blocks` (grown to the hash's memory cost
/// when smaller) as argon2's working memory; the output is compared in constant time.
fn verify_with(password: &str, hash: &PasswordHash, blocks: &mut Vec<Block>) -> bool {
    let (Some(salt), Some(expected)) = (&hash.salt, &hash.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(hash.algorithm.as_str()) else {
        return false;
    };
    let Ok(version) = hash
        .version
        .map_or(Ok(Version::default()), Version::try_from)
    else {
        return false;
    };
    let Ok(params) = Params::try_from(hash) else {
        return false;
    };
    let needed = params.block_count();
    if blocks.len() < needed {
        blocks.resize(needed, Block::default());
    }
    let mut computed = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut computed, &mut blocks[..])
        .is_ok()
        && Output::new(&computed).is_ok_and(|computed| computed == *expected)
}

/// Argon2 working memory kept between checks: one buffer per check running at once (the queue
/// runs at most one per core, inline checks one per runtime worker), so a check neither
/// allocates its memory cost anew nor leaves a freed buffer of that size behind in the
/// allocator of each blocking thread (glibc kept them: 21 -> 449 MiB RSS within 8 s of
/// default-cost sign-ins). A cheap inline check then costs no allocation either (its 8 KiB,
/// zeroed, came back on every sign-in).
#[derive(Default)]
struct HashMemory(std::sync::Mutex<Vec<Vec<Block>>>);

impl HashMemory {
    fn verify(&self, password: &str, hash: &PasswordHash) -> bool {
        let mut blocks = self.buffers().pop().unwrap_or_default();
        let matches = verify_with(password, hash, &mut blocks);
        self.buffers().push(blocks);
        matches
    }

    fn buffers(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Directory for FileDirectory {
    async fn authenticate(&self, username: &str, password: &str) -> Result<User, DirectoryError> {
        self.authenticate_ranked(username, password, CheckPriority::Other)
            .await
    }

    async fn authenticate_ranked(
        &self,
        username: &str,
        password: &str,
        priority: CheckPriority,
    ) -> Result<User, DirectoryError> {
        let stored = self.stored(username);
        let (hash, cost) = match &stored {
            Some(s) => (&s.hash, s.cost),
            None => (&self.dummy_hash, self.dummy_cost()),
        };
        let matches = if cost.is_some_and(runs_inline) {
            self.memory.verify(password, hash)
        } else {
            let (password, hash) = (password.to_owned(), hash.clone());
            let memory = self.memory.clone();
            self.hashing
                .run(priority, move || memory.verify(&password, &hash))
                .await?
        };
        match stored {
            None => Err(DirectoryError::Rejected(AuthFailure::UnknownUser)),
            Some(_) if !matches => Err(DirectoryError::Rejected(AuthFailure::WrongPassword)),
            Some(s) if !s.enabled => Err(DirectoryError::Rejected(AuthFailure::Disabled)),
            Some(s) if s.must_change_password => {
                Err(DirectoryError::Rejected(AuthFailure::MustChangePassword))
            }
            Some(s) => Ok(s.user.clone()),
        }
    }

    async fn lookup(&self, upn: &str) -> Result<Option<User>, DirectoryError> {
        Ok(self
            .stored(upn)
            .filter(|s| s.enabled)
            .map(|s| s.user.clone()))
    }

    async fn lookup_account(&self, sam_account_name: &str) -> Result<Option<User>, DirectoryError> {
        match self.accounts.get(&sam_account_name.to_lowercase()) {
            Some(upn) => self.lookup(upn).await,
            None => Ok(None),
        }
    }

    fn queue_meter(&self) -> Option<QueueMeter> {
        Some(self.hashing.meter.clone())
    }

    async fn health(&self) -> Result<(), DirectoryError> {
        Ok(())
    }

    async fn totp_secret(&self, upn: &str) -> Result<Option<String>, DirectoryError> {
        Ok(self
            .stored(upn)
            .filter(|s| s.enabled)
            .and_then(|s| s.totp_secret.clone()))
    }

    async fn store_totp_secret(
        &self,
        upn: &str,
        replacing: Option<&str>,
        secret: &str,
        now: time::OffsetDateTime,
    ) -> Result<bool, DirectoryError> {
        self.enrol(upn, replacing, secret, now).await
    }

    /// Checks the old password again (the caller's check may be a moment old), hashes the new
    /// one with the current parameters on the hash queue, and writes it through
    /// [`FileDirectory::edit_user`].
    async fn change_password(&self, change: &PasswordChange<'_>) -> Result<(), DirectoryError> {
        if change.new_password == change.old_password {
            return Err(DirectoryError::NewPasswordRefused(
                super::PasswordRule::Unchanged,
            ));
        }
        let user = match self
            .authenticate(change.username, change.old_password)
            .await
        {
            Ok(user) => user,
            Err(DirectoryError::Rejected(AuthFailure::MustChangePassword)) => self
                .stored(change.username)
                .map(|s| s.user.clone())
                .ok_or(DirectoryError::Rejected(AuthFailure::UnknownUser))?,
            Err(e) => return Err(e),
        };
        let new_password = change.new_password.to_owned();
        let hash = self
            .hashing
            .run(CheckPriority::Other, move || hash_password(&new_password))
            .await??;
        self.edit_user(&user.upn, change.now, move |entry| {
            entry.insert("password", toml_edit::value(hash));
            entry.remove("password_expires_at");
            entry.remove("must_change_password");
        })
        .await
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

    fn hash_with(password: &str, m_kib: u32, t: u32, p: u32) -> String {
        let params = Params::new(m_kib, t, p, None).unwrap();
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(password.as_bytes())
            .unwrap()
            .to_string()
    }

    #[test]
    fn reused_memory_verifies_as_the_argon2_crate_does() {
        use argon2::PasswordVerifier as _;
        let memory = HashMemory::default();
        // Smaller costs after larger ones: a grown buffer serves them too.
        for (m, t, p) in [(256, 2, 1), (64, 1, 2), (8, 3, 1), (512, 1, 4)] {
            let hash = PasswordHash::new(&hash_with("right", m, t, p)).unwrap();
            for password in ["right", "wrong", ""] {
                let crate_says = Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok();
                assert_eq!(
                    memory.verify(password, &hash),
                    crate_says,
                    "{m},{t},{p} {password}"
                );
                assert_eq!(verify_with(password, &hash, &mut Vec::new()), crate_says);
            }
        }
        // argon2i and argon2d hashes (other tools) too, and one buffer for checks in sequence.
        for algorithm in [Algorithm::Argon2i, Algorithm::Argon2d] {
            let params = Params::new(32, 1, 1, None).unwrap();
            let hash = Argon2::new(algorithm, Version::V0x13, params)
                .hash_password(b"right")
                .unwrap();
            assert!(memory.verify("right", &hash));
            assert!(!memory.verify("wrong", &hash));
        }
        assert_eq!(memory.buffers().len(), 1);
    }

    #[tokio::test]
    async fn cheap_hashes_are_checked_inline_and_costly_ones_through_the_queue() {
        let cheap = hash_with("pw", 8, 1, 1);
        let costly = hash_with("pw", 256, 1, 1);
        let mut d = FileDirectory::parse(&users_file(&[cheap.clone(), cheap, costly])).unwrap();
        // A queue that admits nothing: only a check that skips it can answer.
        d.hashing = HashQueue::new(0, 0);
        assert!(d.authenticate("u0@b.c", "pw").await.is_ok());
        assert!(matches!(
            d.authenticate("u0@b.c", "wrong").await,
            Err(DirectoryError::Rejected(AuthFailure::WrongPassword))
        ));
        // Unknown users get the dummy with the most common (cheap) cost: inline too.
        assert!(matches!(
            d.authenticate("nobody@b.c", "pw").await,
            Err(DirectoryError::Rejected(AuthFailure::UnknownUser))
        ));
        assert!(matches!(
            d.authenticate("u2@b.c", "pw").await,
            Err(DirectoryError::Busy { .. })
        ));
    }

    fn users_file(hashes: &[String]) -> String {
        hashes
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!("[[users]]\nupn='u{i}@b.c'\nimmutable_id='{i}'\npassword='{h}'\n")
            })
            .collect()
    }

    #[test]
    fn dummy_takes_the_users_most_common_parameters() {
        // Two users with another tool's parameters (argon2-cffi's defaults, smaller memory to
        // keep the test quick), one with the crate's defaults: the dummy follows the majority.
        let other = [hash_with("a", 8192, 3, 4), hash_with("b", 8192, 3, 4)];
        let ours = hash_password("c").unwrap();
        let d =
            FileDirectory::parse(&users_file(&[other[0].clone(), ours, other[1].clone()])).unwrap();
        let expected = HashCost {
            m_kib: 8192,
            t: 3,
            p: 4,
        };
        assert_eq!(d.dummy_cost(), Some(expected));
        // A tie goes to the costlier parameters; no users means the crate's defaults.
        let cheap = Some(HashCost {
            m_kib: 1024,
            t: 1,
            p: 1,
        });
        assert_eq!(dummy_cost(&[cheap, Some(expected)]), Some(expected));
        let empty = FileDirectory::parse("").unwrap();
        let defaults = Params::default();
        assert_eq!(
            empty.dummy_cost(),
            Some(HashCost {
                m_kib: defaults.m_cost(),
                t: defaults.t_cost(),
                p: defaults.p_cost()
            })
        );
    }

    #[test]
    fn widely_different_costs_are_reported() {
        let cost = |m_kib, t| Some(HashCost { m_kib, t, p: 1 });
        assert_eq!(cost_spread(&[cost(19456, 2), cost(65536, 3)]), {
            Some((cost(19456, 2).unwrap(), cost(65536, 3).unwrap()))
        });
        assert_eq!(cost_spread(&[cost(19456, 2), cost(19456, 3), None]), None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        std::fs::write(
            &path,
            users_file(&[hash_with("a", 1024, 1, 1), hash_with("b", 8192, 1, 1)]),
        )
        .unwrap();
        assert_eq!(hash_costs(&path).unwrap(), [cost(1024, 1), cost(8192, 1)]);
    }

    #[tokio::test]
    async fn a_full_hash_queue_refuses_at_once_and_frees_its_places() {
        let queue = Arc::new(HashQueue::new(1, 2));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut admitted = Vec::new();
        for _ in 0..3 {
            let (queue, gate) = (queue.clone(), gate.clone());
            admitted.push(tokio::spawn(async move {
                queue
                    .run(CheckPriority::Familiar, move || {
                        gate.lock().map(|g| g.recv().is_ok()).unwrap_or(false)
                    })
                    .await
            }));
        }
        while queue.admitted.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let refused = queue.run(CheckPriority::Familiar, || true).await;
        assert!(
            matches!(
                refused,
                Err(DirectoryError::Busy {
                    retry_after_secs: 1
                })
            ),
            "{refused:?}"
        );
        for _ in 0..3 {
            release.send(()).unwrap();
        }
        for task in admitted {
            assert!(task.await.unwrap().unwrap());
        }
        assert_eq!(queue.admitted.load(Ordering::Acquire), 0);
        assert!(queue.run(CheckPriority::Other, || true).await.unwrap());
    }

    /// A flood of checks from new addresses fills the queue only up to its reserve; checks
    /// from familiar locations still get the reserved places, and then are refused too.
    #[tokio::test]
    async fn familiar_checks_keep_a_reserve_a_flood_cannot_take() {
        let queue = Arc::new(HashQueue::new(1, 4));
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let mut admitted = Vec::new();
        let mut hold = |priority| {
            let (queue, gate) = (queue.clone(), gate.clone());
            admitted.push(tokio::spawn(async move {
                queue
                    .run(priority, move || {
                        gate.lock().map(|g| g.recv().is_ok()).unwrap_or(false)
                    })
                    .await
            }));
        };
        for _ in 0..3 {
            hold(CheckPriority::Other);
        }
        while queue.admitted.load(Ordering::Acquire) < 3 {
            tokio::task::yield_now().await;
        }
        let busy = |r: &Result<bool, DirectoryError>| matches!(r, Err(DirectoryError::Busy { .. }));
        assert!(busy(&queue.run(CheckPriority::Other, || true).await));
        for _ in 0..2 {
            hold(CheckPriority::Familiar);
        }
        while queue.admitted.load(Ordering::Acquire) < 5 {
            tokio::task::yield_now().await;
        }
        assert!(busy(&queue.run(CheckPriority::Familiar, || true).await));
        for _ in 0..5 {
            release.send(()).unwrap();
        }
        for task in admitted {
            assert!(task.await.unwrap().unwrap());
        }
    }

    #[tokio::test]
    async fn an_enrolled_secret_is_stored_only_while_the_old_one_is_still_the_users() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let h = hash_with("pw", 8, 1, 1);
        std::fs::write(
            &path,
            format!("[[users]]\nupn='a@b.c'\nimmutable_id='1'\npassword='{h}'\n"),
        )
        .unwrap();
        let d = FileDirectory::load(&path).unwrap();
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let (first, second) = (
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            "MFRGGZDFMZTWQ2LKNNWG23TPOBYXE43U",
        );
        assert!(
            d.store_totp_secret("A@b.c", None, first, now)
                .await
                .unwrap()
        );
        assert_eq!(
            d.totp_secret("a@b.c").await.unwrap().as_deref(),
            Some(first)
        );
        assert!(std::fs::read_to_string(&path).unwrap().contains(first));
        // A second enrolment that thinks the user has none: refused.
        assert!(
            !d.store_totp_secret("a@b.c", None, second, now)
                .await
                .unwrap()
        );
        let fingerprint = crate::totp::fingerprint(first);
        // Another instance sharing the file changed it meanwhile: refused, file kept.
        let changed = std::fs::read_to_string(&path)
            .unwrap()
            .replace(first, second);
        std::fs::write(&path, &changed).unwrap();
        assert!(
            !d.store_totp_secret("a@b.c", Some(&fingerprint), first, now)
                .await
                .unwrap()
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), changed);
        assert!(
            !d.store_totp_secret("nobody@b.c", None, first, now)
                .await
                .unwrap()
        );
    }

    /// Concurrent changes of two users both land, in the file and in memory: the edit lock
    /// keeps one from writing over the other's file.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_changes_are_serialized_and_take_effect_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("users.toml");
        let cheap = hash_with("old", 8, 1, 1);
        std::fs::write(
            &path,
            format!(
                "{}must_change_password = true\npassword_expires_at = \"2020-01-01T00:00:00Z\"\n",
                users_file(&[cheap.clone(), cheap])
            ),
        )
        .unwrap();
        let d = Arc::new(FileDirectory::load(&path).unwrap());
        assert!(matches!(
            d.authenticate("u1@b.c", "old").await,
            Err(DirectoryError::Rejected(AuthFailure::MustChangePassword))
        ));
        let now = time::macros::datetime!(2026-01-02 03:04:05 UTC);
        let tasks: Vec<_> = ["u0@b.c", "u1@b.c"]
            .into_iter()
            .map(|upn| {
                let d = d.clone();
                tokio::spawn(async move {
                    d.change_password(&PasswordChange {
                        username: upn,
                        old_password: "old",
                        new_password: "new",
                        now,
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        for upn in ["u0@b.c", "u1@b.c"] {
            let user = d.authenticate(upn, "new").await.unwrap();
            assert_eq!(user.password_expires_at, None);
            assert!(d.authenticate(upn, "old").await.is_err());
        }
        let reloaded = FileDirectory::load(&path).unwrap();
        for upn in ["u0@b.c", "u1@b.c"] {
            assert!(
                reloaded.authenticate(upn, "new").await.is_ok(),
                "{upn} in the file"
            );
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("must_change_password") && !text.contains("password_expires_at"));
        assert!(path.with_extension("toml.20260102T030405Z.bak").exists());
        // Parsed users (no file) cannot be edited.
        let parsed = FileDirectory::parse(&users_file(&[hash_with("old", 8, 1, 1)])).unwrap();
        let refused = parsed
            .change_password(&PasswordChange {
                username: "u0@b.c",
                old_password: "old",
                new_password: "new",
                now,
            })
            .await;
        assert!(
            matches!(refused, Err(DirectoryError::ChangeNotSupported(_))),
            "{refused:?}"
        );
    }

    #[test]
    fn a_bad_expiry_is_explained() {
        let h = hash_with("x", 8, 1, 1);
        let err = FileDirectory::parse(&format!(
            "[[users]]\nupn='a@b.c'\nimmutable_id='x'\npassword='{h}'\npassword_expires_at='tomorrow'\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("users[0]: password_expires_at `tomorrow`"),
            "{err}"
        );
        assert!(err.contains("RFC 3339"), "{err}");
    }

    #[test]
    fn hash_is_argon2id_phc() {
        let h = hash_password("pw").unwrap();
        assert!(h.starts_with("$argon2id$v=19$"), "{h}");
        assert!(HashMemory::default().verify("pw", &PasswordHash::new(&h).unwrap()));
        assert!(!HashMemory::default().verify("pw2", &PasswordHash::new(&h).unwrap()));
    }
}
