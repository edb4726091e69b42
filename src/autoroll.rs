//! Automatic token-signing certificate rollover, driven by the injected clock.
//!
//! Timeline of one app (README "Automatic certificate rollover"): `lead_days` before the current
//! certificate expires a next pair is made in the app's [`KeyStore`] and published (metadata,
//! commands page); `promote_after_days` later it is promoted (next → current) and the old
//! certificate stays published as the previous one for `grace_days`; then it is dropped.
//!
//! [`Autoroller::tick`] runs one step of that timeline; the server calls it periodically and
//! tests call it directly with a `ManualClock`. What has been done is kept in a state file beside
//! the key (written through a temporary file and a rename), so a restart picks it up. When
//! several instances share a [`StateStore`], each step first takes a lease there
//! (set-if-absent with expiry): only the holder makes or promotes the pair, the others read the
//! files and the state file on their next tick. A step that fails changes nothing that is
//! served: the next pair is written beside the current one and only becomes visible once both
//! files are complete, and the current pair keeps signing.
//!
//! [`Swappable`] holds what the server reads per request (each app's signing material and
//! documents), replaced as a whole.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::config::RolloverConfig;
use crate::crypto::{Certificate, CryptoError, SigningIdentity, generate_self_signed_at};

pub mod pkcs11;

pub use pkcs11::Pkcs11KeyStore;

/// Subject CN prefix of certificates fedsts made itself (first run and rollover): those are
/// rolled over by default.
pub const SELF_MADE_CN_PREFIX: &str = "fedsts token signing";
/// How long a lease on one rollover step lasts; a holder that died frees it after this.
pub const LEASE_TTL: Duration = Duration::minutes(10);
/// How often the server runs [`Autoroller::tick`].
pub const TICK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

/// Why a rollover step failed; the current pair keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RollError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The state file is unreadable; nothing is rolled until it is fixed or removed.
    #[error("{path}: the rollover state file is not valid ({message}) — fix or remove it")]
    State {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        message: String,
    },
    /// A key or certificate could not be made or loaded.
    #[error("signing pair: {0}")]
    Crypto(#[from] CryptoError),
    /// The shared store did not answer, so no lease could be taken.
    #[error("lease: {0}")]
    Lease(LeaseError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RollError + '_ {
    move |source| RollError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Why a [`LeaseStore`] did not answer: the store's own error, kept as it is.
pub type LeaseError = Box<dyn std::error::Error + Send + Sync>;

/// Where leases are taken: the shared `StateStore` (`state::StateLeases`). This module knows
/// only this one operation so that it stays below `state` and `sts` in the graph.
#[async_trait::async_trait]
pub trait LeaseStore: Send + Sync + std::fmt::Debug {
    /// Sets `key` unless it is set (set-if-absent with expiry `ttl`); true when this call took
    /// the lease. The error says why the store did not answer.
    async fn take_lease(
        &self,
        key: &str,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<bool, LeaseError>;
}

/// Where an app's signing pairs live and how a new one is made: PEM files ([`FileKeyStore`])
/// or keys in the app's PKCS#11 token ([`Pkcs11KeyStore`]), certificates as files in both.
pub trait KeyStore: Send + Sync + std::fmt::Debug {
    /// The pair that signs now.
    fn current(&self) -> Result<SigningIdentity, RollError>;
    /// Makes a new pair with a self-signed certificate (CN `common_name`, valid `valid_days`
    /// from `now`) and stores it as the next pair, all or nothing.
    fn make_next(
        &self,
        common_name: &str,
        now: OffsetDateTime,
        valid_days: u32,
    ) -> Result<SigningIdentity, RollError>;
    /// The next pair, when one is stored.
    fn next(&self) -> Result<Option<SigningIdentity>, RollError>;
    /// The steps that make the next pair current and keep the current one as previous, in
    /// order. Each may be run again after an interruption, and after any of them the store
    /// serves a complete pair (the old or the new one): a crash can stop between two steps,
    /// which is why they are listed (tests stop after each one and restart).
    fn promotion_steps(&self) -> Vec<PromotionStep<'_>>;
    /// Runs every promotion step.
    fn promote_next(&self) -> Result<(), RollError> {
        for (_, step) in self.promotion_steps() {
            step()?;
        }
        Ok(())
    }
    /// The previous certificate, when one is kept.
    fn previous_certificate(&self) -> Result<Option<Certificate>, RollError>;
    /// Forgets the previous pair.
    fn forget_previous(&self) -> Result<(), RollError>;
}

/// One step of a promotion: what it does (for logs and tests) and the step itself.
pub type PromotionStep<'a> = (
    &'static str,
    Box<dyn FnOnce() -> Result<(), RollError> + Send + 'a>,
);

/// Pairs as PEM files: the current `signing_cert`/`signing_key`, the next pair as
/// `<file>.next`, the previous one as `<file>.previous`; keys mode 0600.
#[derive(Debug, Clone)]
pub struct FileKeyStore {
    cert: PathBuf,
    key: PathBuf,
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Writes `contents` to `path` through `<path>.tmp` and a rename; `private`: mode 0600.
fn write_atomic(path: &Path, contents: &[u8], private: bool) -> Result<(), RollError> {
    use std::io::Write;
    let temporary = with_suffix(path, ".tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let result = options
        .open(&temporary)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()));
    if let Err(source) = result {
        let _ = std::fs::remove_file(&temporary);
        return Err(RollError::Io {
            path: temporary,
            source,
        });
    }
    std::fs::rename(&temporary, path).map_err(io(path))
}

impl FileKeyStore {
    /// The store of the pair at `cert` / `key`.
    pub fn new(cert: PathBuf, key: PathBuf) -> Self {
        Self { cert, key }
    }

    fn next_paths(&self) -> (PathBuf, PathBuf) {
        (
            with_suffix(&self.cert, ".next"),
            with_suffix(&self.key, ".next"),
        )
    }

    fn previous_paths(&self) -> (PathBuf, PathBuf) {
        (
            with_suffix(&self.cert, ".previous"),
            with_suffix(&self.key, ".previous"),
        )
    }

    /// Copies `from` to `to` through a temporary file.
    fn copy(from: &Path, to: &Path, private: bool) -> Result<(), RollError> {
        let bytes = std::fs::read(from).map_err(io(from))?;
        write_atomic(to, &bytes, private)
    }
}

impl KeyStore for FileKeyStore {
    /// The current pair; when a promotion stopped after the key was moved and before the
    /// certificate was (the key is then the next certificate's), that complete new pair.
    fn current(&self) -> Result<SigningIdentity, RollError> {
        match SigningIdentity::from_pem_files(&self.cert, &self.key) {
            Err(CryptoError::KeyCertificateMismatch { subject }) => {
                let (next_cert, _) = self.next_paths();
                if !next_cert.exists() {
                    return Err(CryptoError::KeyCertificateMismatch { subject }.into());
                }
                Ok(SigningIdentity::from_pem_files(&next_cert, &self.key)?)
            }
            other => Ok(other?),
        }
    }

    fn make_next(
        &self,
        common_name: &str,
        now: OffsetDateTime,
        valid_days: u32,
    ) -> Result<SigningIdentity, RollError> {
        let generated = generate_self_signed_at(common_name, &[], now, valid_days)?;
        let (cert, key) = self.next_paths();
        // The certificate is written last: `next()` needs both, and a key alone is never used.
        let _ = std::fs::remove_file(&cert);
        write_atomic(&key, generated.private_key_pem.as_bytes(), true)?;
        write_atomic(&cert, generated.certificate_pem.as_bytes(), false)?;
        Ok(SigningIdentity::from_pem_files(&cert, &key)?)
    }

    fn next(&self) -> Result<Option<SigningIdentity>, RollError> {
        let (cert, key) = self.next_paths();
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        Ok(Some(SigningIdentity::from_pem_files(&cert, &key)?))
    }

    /// Copies the current pair to `.previous`, then renames the next key and the next
    /// certificate over the current ones. The copies run only while the next key is still
    /// waiting, so a second run after the key moved never copies the new key as previous.
    fn promotion_steps(&self) -> Vec<PromotionStep<'_>> {
        let (next_cert, next_key) = self.next_paths();
        let (previous_cert, previous_key) = self.previous_paths();
        let waiting = next_key.exists();
        vec![
            (
                "check the next pair",
                Box::new(move || {
                    if waiting {
                        let (cert, key) = self.next_paths();
                        SigningIdentity::from_pem_files(&cert, &key)?;
                    }
                    Ok(())
                }),
            ),
            (
                "copy the current certificate to .previous",
                Box::new(move || match waiting {
                    true => Self::copy(&self.cert, &previous_cert, false),
                    false => Ok(()),
                }),
            ),
            (
                "copy the current key to .previous",
                Box::new(move || match waiting {
                    true => Self::copy(&self.key, &previous_key, true),
                    false => Ok(()),
                }),
            ),
            (
                "rename the next key over the current one",
                Box::new(move || match next_key.exists() {
                    true => std::fs::rename(&next_key, &self.key).map_err(io(&self.key)),
                    false => Ok(()),
                }),
            ),
            (
                "rename the next certificate over the current one",
                Box::new(move || match next_cert.exists() {
                    true => std::fs::rename(&next_cert, &self.cert).map_err(io(&self.cert)),
                    false => Ok(()),
                }),
            ),
        ]
    }

    fn previous_certificate(&self) -> Result<Option<Certificate>, RollError> {
        let (cert, _) = self.previous_paths();
        match std::fs::read_to_string(&cert) {
            Ok(pem) => Ok(Some(Certificate::from_pem(&pem)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RollError::Io { path: cert, source }),
        }
    }

    fn forget_previous(&self) -> Result<(), RollError> {
        let (cert, key) = self.previous_paths();
        for path in [key, cert] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(RollError::Io { path, source }),
            }
        }
        Ok(())
    }
}

/// What has been done, as kept in the state file (Unix seconds).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloverState {
    /// When the next pair was made (it is published from then on).
    #[serde(default)]
    pub next_made_at: Option<i64>,
    /// SHA-256 thumbprint of the next certificate.
    #[serde(default)]
    pub next_thumbprint: Option<String>,
    /// Until when the previous certificate stays published.
    #[serde(default)]
    pub previous_until: Option<i64>,
    /// SHA-256 thumbprints of the certificates promotions replaced, oldest first (at most
    /// [`MAX_RETIRED`]): `fedsts audit by-key` counts tokens they signed as this app's.
    #[serde(default)]
    pub retired: Vec<String>,
}

/// Most replaced certificates the state file remembers (one rollover a year: a century).
pub const MAX_RETIRED: usize = 100;

/// Reads the state file at `path` (default when there is none yet).
pub fn read_state(path: &Path) -> Result<RolloverState, RollError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RollError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RolloverState::default()),
        Err(source) => Err(RollError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// One step the tick took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A next pair was made and published.
    NextMade {
        /// Its certificate's SHA-256 thumbprint.
        thumbprint: String,
    },
    /// The next pair was promoted to current.
    Promoted {
        /// The new current certificate's thumbprint.
        thumbprint: String,
    },
    /// The previous certificate is no longer published.
    GraceEnded,
    /// Another instance holds the lease of a step that is due.
    LeaseHeldElsewhere,
}

impl Step {
    fn name(&self) -> &'static str {
        match self {
            Self::NextMade { .. } => "next_made",
            Self::Promoted { .. } => "promoted",
            Self::GraceEnded => "grace_ended",
            Self::LeaseHeldElsewhere => "lease_held_elsewhere",
        }
    }
}

/// The signing material one app serves: read per request, replaced as a whole.
#[derive(Clone, Debug)]
pub struct SigningSet {
    /// Signs tokens and the metadata.
    pub current: SigningIdentity,
    /// Published as the next certificate.
    pub next: Option<SigningIdentity>,
    /// Published after the current one during the grace period.
    pub previous: Option<Certificate>,
}

impl SigningSet {
    /// Base64 DER of every published certificate: current, next, previous.
    pub fn published_certificates(&self) -> Vec<String> {
        let mut certificates = vec![self.current.certificate.base64().to_owned()];
        certificates.extend(self.next.iter().map(|n| n.certificate.base64().to_owned()));
        certificates.extend(self.previous.iter().map(|c| c.base64().to_owned()));
        certificates
    }

    /// Whether `other` publishes and signs with the same certificates.
    pub fn same_as(&self, other: &SigningSet) -> bool {
        self.published_certificates() == other.published_certificates()
    }
}

/// An atomically swappable value: readers take an `Arc` snapshot, a writer replaces it whole.
#[derive(Debug)]
pub struct Swappable<T>(RwLock<Arc<T>>);

impl<T> Swappable<T> {
    /// A holder serving `value` (owned, or already shared).
    pub fn new(value: impl Into<Arc<T>>) -> Self {
        Self(RwLock::new(value.into()))
    }

    /// The value to use for one request.
    pub fn get(&self) -> Arc<T> {
        match self.0.read() {
            Ok(value) => Arc::clone(&value),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Serves `value` (owned, or already shared) from now on; whoever holds the old one keeps
    /// it until they drop it.
    pub fn replace(&self, value: impl Into<Arc<T>>) {
        let value = value.into();
        match self.0.write() {
            Ok(mut slot) => *slot = value,
            Err(poisoned) => *poisoned.into_inner() = value,
        }
    }
}

/// Whether rollover runs for a certificate under `config`: as configured, else on for a
/// self-made certificate.
pub fn is_enabled(config: &RolloverConfig, current: &Certificate) -> bool {
    config
        .auto
        .unwrap_or_else(|| common_name(current).starts_with(SELF_MADE_CN_PREFIX))
}

/// The CN of a certificate's subject (empty without one).
fn common_name(certificate: &Certificate) -> String {
    certificate
        .subject()
        .split(',')
        .find_map(|part| part.trim().strip_prefix("CN="))
        .unwrap_or("")
        .to_owned()
}

/// What is wrong when a certificate expires within `lead_days` while rollover is off
/// (`preflight` prints it with the key and the fix, at start and in `check-config`).
pub fn expiry_warning(
    config: &RolloverConfig,
    current: &Certificate,
    now: OffsetDateTime,
) -> Option<String> {
    let window = Duration::days(i64::from(config.lead_days));
    if is_enabled(config, current) || current.not_after() - window > now {
        return None;
    }
    Some(format!(
        "the token-signing certificate expires at {} (within {} days) and automatic rollover is off",
        current.not_after(),
        config.lead_days
    ))
}

/// Runs the rollover timeline of one app.
#[derive(Debug)]
pub struct Autoroller {
    app_id: String,
    config: RolloverConfig,
    keys: Arc<dyn KeyStore>,
    store: Arc<dyn LeaseStore>,
    state_path: PathBuf,
}

impl Autoroller {
    /// The roller of app `app_id` whose state file is `state_path` (see [`state_path_for`]).
    pub fn new(
        app_id: &str,
        config: RolloverConfig,
        keys: Arc<dyn KeyStore>,
        store: Arc<dyn LeaseStore>,
        state_path: PathBuf,
    ) -> Self {
        Self {
            app_id: app_id.to_owned(),
            config,
            keys,
            store,
            state_path,
        }
    }

    /// The state as stored (default when there is no file yet).
    pub fn state(&self) -> Result<RolloverState, RollError> {
        read_state(&self.state_path)
    }

    fn write_state(&self, state: &RolloverState) -> Result<(), RollError> {
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| RollError::State {
            path: self.state_path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&self.state_path, &bytes, false)
    }

    /// The material to serve now, from the key store and the state file.
    pub fn signing_set(&self) -> Result<SigningSet, RollError> {
        let state = self.state()?;
        let next = match state.next_made_at {
            Some(_) => self.keys.next()?,
            None => None,
        };
        let previous = match state.previous_until {
            Some(_) => self.keys.previous_certificate()?,
            None => None,
        };
        Ok(SigningSet {
            current: self.keys.current()?,
            next,
            previous,
        })
    }

    /// Takes the lease of `step` in the shared store; true when this instance holds it.
    async fn lease(&self, step: &str, now: OffsetDateTime) -> Result<bool, RollError> {
        let key = format!("rollover:{}:{step}", self.app_id);
        self.store
            .take_lease(&key, LEASE_TTL, now)
            .await
            .map_err(RollError::Lease)
    }

    /// Runs whatever step of the timeline is due at `now` (at most one); logs and audits it.
    /// An error leaves the served pair as it was; the caller logs it and tries again next tick.
    pub async fn tick(&self, now: OffsetDateTime) -> Result<Option<Step>, RollError> {
        let result = self.due_step(now).await;
        match &result {
            Ok(Some(Step::LeaseHeldElsewhere)) => tracing::info!(
                app = %self.app_id,
                "rollover step due; another instance holds its lease"
            ),
            Ok(Some(step)) => self.audit(step, now),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(
                    app = %self.app_id,
                    error = %e,
                    "rollover step failed; the current signing pair keeps serving"
                );
                tracing::info!(
                    target: "fedsts::audit",
                    event = "rollover",
                    time = %now,
                    app = %self.app_id,
                    step = "failed",
                    error = %e,
                    "token-signing rollover step failed; retried at the next tick"
                );
            }
        }
        result
    }

    async fn due_step(&self, now: OffsetDateTime) -> Result<Option<Step>, RollError> {
        let mut state = self.state()?;
        let unix = now.unix_timestamp();
        if state.previous_until.is_some_and(|until| unix >= until) {
            if !self.lease("grace", now).await? {
                return Ok(Some(Step::LeaseHeldElsewhere));
            }
            self.keys.forget_previous()?;
            state.previous_until = None;
            self.write_state(&state)?;
            return Ok(Some(Step::GraceEnded));
        }
        if state.previous_until.is_some() {
            return Ok(None);
        }
        if let Some(made_at) = state.next_made_at {
            let due = made_at.saturating_add(days(self.config.promote_after_days));
            if unix < due {
                return Ok(None);
            }
            let thumbprint = state.next_thumbprint.clone().unwrap_or_default();
            if !self.lease(&format!("promote:{thumbprint}"), now).await? {
                return Ok(Some(Step::LeaseHeldElsewhere));
            }
            self.keys.promote_next()?;
            let promoted = self.keys.current()?;
            let mut retired = std::mem::take(&mut state.retired);
            if let Some(replaced) = self.keys.previous_certificate()? {
                retired.push(replaced.sha256_thumbprint_hex());
                retired.dedup();
                let excess = retired.len().saturating_sub(MAX_RETIRED);
                retired.drain(..excess);
            }
            state = RolloverState {
                next_made_at: None,
                next_thumbprint: None,
                previous_until: Some(unix.saturating_add(days(self.config.grace_days))),
                retired,
            };
            self.write_state(&state)?;
            return Ok(Some(Step::Promoted {
                thumbprint: promoted.certificate.sha256_thumbprint_hex(),
            }));
        }
        let current = self.keys.current()?.certificate;
        let window = Duration::days(i64::from(self.config.lead_days));
        if current.not_after() - window > now {
            return Ok(None);
        }
        if !self
            .lease(&format!("make:{}", current.sha256_thumbprint_hex()), now)
            .await?
        {
            return Ok(Some(Step::LeaseHeldElsewhere));
        }
        let lifetime = (current.not_after() - current.not_before()).whole_days();
        let valid_days = u32::try_from(lifetime.clamp(1, 3650)).unwrap_or(365);
        let next = self
            .keys
            .make_next(&common_name(&current), now, valid_days)?;
        let thumbprint = next.certificate.sha256_thumbprint_hex();
        state.next_made_at = Some(unix);
        state.next_thumbprint = Some(thumbprint.clone());
        self.write_state(&state)?;
        Ok(Some(Step::NextMade { thumbprint }))
    }

    fn audit(&self, step: &Step, now: OffsetDateTime) {
        let thumbprint = match step {
            Step::NextMade { thumbprint } | Step::Promoted { thumbprint } => thumbprint.as_str(),
            Step::GraceEnded | Step::LeaseHeldElsewhere => "",
        };
        tracing::info!(
            target: "fedsts::audit",
            event = "rollover",
            time = %now,
            app = %self.app_id,
            step = step.name(),
            thumbprint,
            "token-signing rollover step"
        );
    }
}

fn days(count: u32) -> i64 {
    i64::from(count).saturating_mul(86_400)
}

/// The state file of the pair whose key is `key`: `<key>.rollover.json`.
pub fn state_path_for(key: &Path) -> PathBuf {
    with_suffix(key, ".rollover.json")
}

/// The state file of an app: beside its key file, or beside its certificate when the key is in
/// a token (`signing_key` `None`).
pub fn state_path_of(signing_key: Option<&Path>, signing_cert: &Path) -> PathBuf {
    state_path_for(signing_key.unwrap_or(signing_cert))
}

/// The next certificate file beside `signing_cert` (both stores write it there).
pub fn next_certificate_path(signing_cert: &Path) -> PathBuf {
    with_suffix(signing_cert, ".next")
}

/// The previous certificate file beside `signing_cert` (both stores keep it there).
pub fn previous_certificate_path(signing_cert: &Path) -> PathBuf {
    with_suffix(signing_cert, ".previous")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::generate_self_signed;
    use crate::state::StateLeases;
    use crate::state::memory::MemoryStore;

    fn pair(dir: &Path, cn: &str, days: u32) -> FileKeyStore {
        let generated = generate_self_signed(cn, &[], days).unwrap();
        let (cert, key) = (dir.join("signing.crt"), dir.join("signing.key"));
        std::fs::write(&cert, generated.certificate_pem).unwrap();
        std::fs::write(&key, generated.private_key_pem).unwrap();
        FileKeyStore::new(cert, key)
    }

    #[test]
    fn self_made_certificates_roll_by_default_others_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let own = pair(dir.path(), "fedsts token signing (demo)", 30)
            .current()
            .unwrap();
        let other = generate_self_signed("sts.example.com", &[], 10).unwrap();
        let other = Certificate::from_pem(&other.certificate_pem).unwrap();
        let default = RolloverConfig::default();
        assert!(is_enabled(&default, &own.certificate));
        assert!(!is_enabled(&default, &other));
        let on = RolloverConfig {
            auto: Some(true),
            ..RolloverConfig::default()
        };
        assert!(is_enabled(&on, &other));
        let now = OffsetDateTime::now_utc();
        assert!(expiry_warning(&default, &other, now).is_some());
        assert!(expiry_warning(&on, &other, now).is_none());
        assert!(expiry_warning(&default, &other, now - Duration::days(11)).is_none());
    }

    #[tokio::test]
    async fn a_failed_generation_serves_the_current_pair_and_retries() {
        let dir = tempfile::tempdir().unwrap();
        let keys = pair(dir.path(), "fedsts token signing", 10);
        let before = keys.current().unwrap().certificate.sha256_thumbprint_hex();
        // The next key cannot be written: a directory sits where it goes.
        std::fs::create_dir(dir.path().join("signing.key.next.tmp")).unwrap();
        let store = Arc::new(StateLeases(Arc::new(MemoryStore::new("t"))));
        let roller = Autoroller::new(
            "a",
            RolloverConfig::default(),
            Arc::new(keys.clone()),
            store,
            state_path_for(&dir.path().join("signing.key")),
        );
        let now = OffsetDateTime::now_utc();
        assert!(roller.tick(now).await.is_err());
        let set = roller.signing_set().unwrap();
        assert_eq!(set.current.certificate.sha256_thumbprint_hex(), before);
        assert!(set.next.is_none());
        assert_eq!(roller.state().unwrap(), RolloverState::default());
        assert!(!dir.path().join("signing.crt.next").exists());
        std::fs::remove_dir(dir.path().join("signing.key.next.tmp")).unwrap();
        // The lease of the failed attempt runs out, then the step is tried again.
        let later = now + LEASE_TTL;
        assert!(matches!(
            roller.tick(later).await.unwrap(),
            Some(Step::NextMade { .. })
        ));
    }
}
