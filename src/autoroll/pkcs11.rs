//! Token-signing pairs whose keys live in a PKCS#11 token (`[apps.signing_pkcs11]`).
//!
//! The next key is a new non-extractable RSA-2048 key made in the same token, beside the
//! current one, with its own random `CKA_ID` and the configured label plus the day it was made;
//! its self-signed certificate (signed in the token) is written as `<signing_cert>.next`. Which
//! token key is current, next and previous is kept in `<signing_cert>.pkcs11.json` (written
//! through a temporary file and a rename): the configured `key_label`/`key_id` names the first
//! key only. A promotion switches the key in that file first (one rename) and moves the
//! certificate after it; until the certificate has moved, the current key is served with the
//! `.next` certificate it belongs to, so no half pair is ever served.
//!
//! When the grace period ends the previous key is destroyed in the token (`C_DestroyObject`, the
//! private and the public object): Entra no longer trusts its certificate, so keeping a key that
//! can still sign is only risk, and the token holds at most three fedsts keys per app (current,
//! next, previous) instead of one more every year. A key made by an interrupted make step (the
//! process died between generating it and recording it as next) is destroyed at the next try.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{KeyStore, PromotionStep, RollError, io, with_suffix, write_atomic};
use crate::config::Pkcs11Config;
use crate::config::pkcs11::parse_hex;
use crate::crypto::pkcs11::{self, KeySelector, Pkcs11Error, Pkcs11Signer, hex};
use crate::crypto::{Certificate, CryptoError, SigningIdentity, self_signed_for_signer_at};

/// Label of made keys when the config names its key by id.
const MADE_KEY_LABEL: &str = "fedsts token-signing";

/// One key in the token, as the key state file names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKey {
    /// `CKA_LABEL`.
    #[serde(default)]
    pub label: Option<String>,
    /// `CKA_ID` as hex; finds the key when set (made keys always have one).
    #[serde(default)]
    pub id: Option<String>,
}

impl TokenKey {
    fn of(selector: &KeySelector) -> Self {
        match selector {
            KeySelector::Label(label) => Self {
                label: Some(label.clone()),
                id: None,
            },
            KeySelector::Id(id) => Self {
                label: None,
                id: Some(hex(id)),
            },
        }
    }

    fn selector(&self, path: &Path) -> Result<KeySelector, RollError> {
        let invalid = |message: &str| RollError::State {
            path: path.to_path_buf(),
            message: message.to_owned(),
        };
        match (&self.id, &self.label) {
            (Some(id), _) => parse_hex(id)
                .map(KeySelector::Id)
                .ok_or_else(|| invalid("a key id is not hex")),
            (None, Some(label)) => Ok(KeySelector::Label(label.clone())),
            (None, None) => Err(invalid("a key has neither label nor id")),
        }
    }
}

/// Which token keys are current, next and previous (`<signing_cert>.pkcs11.json`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenKeys {
    /// The key that signs; absent: the configured one.
    #[serde(default)]
    pub current: Option<TokenKey>,
    /// The key of `<signing_cert>.next`.
    #[serde(default)]
    pub next: Option<TokenKey>,
    /// The key of `<signing_cert>.previous`, destroyed when the grace ends.
    #[serde(default)]
    pub previous: Option<TokenKey>,
    /// A key being made: recorded before it is generated, so that a make step that dies half
    /// way leaves a name to clean up, never an unknown key in the token.
    #[serde(default)]
    pub making: Option<TokenKey>,
}

/// Signing pairs whose keys are in the token of `[apps.signing_pkcs11]` and whose certificates
/// are files beside `signing_cert`.
#[derive(Debug)]
pub struct Pkcs11KeyStore {
    config: Pkcs11Config,
    cert: PathBuf,
    /// Opened signers by key, so a tick does not log in again; only current and next are kept.
    signers: Mutex<Vec<(KeySelector, Arc<Pkcs11Signer>)>>,
}

fn token(error: Pkcs11Error) -> RollError {
    RollError::Crypto(CryptoError::Pkcs11(error))
}

/// The key state file of the pair whose certificate is `cert`: `<cert>.pkcs11.json`.
pub fn keys_path_for(cert: &Path) -> PathBuf {
    with_suffix(cert, ".pkcs11.json")
}

/// `config` naming the token key that signs now (the key state file beside `cert` says which
/// after a rollover): what `keys check` and the start open.
pub fn current_key_config(config: &Pkcs11Config, cert: &Path) -> Result<Pkcs11Config, RollError> {
    let store = Pkcs11KeyStore::new(config.clone(), cert.to_path_buf());
    let keys = store.keys()?;
    Ok(store.config_for(&store.current_key(&keys)?))
}

impl Pkcs11KeyStore {
    /// The store of the app whose key is configured by `config` and certificate is `cert`.
    pub fn new(config: Pkcs11Config, cert: PathBuf) -> Self {
        Self {
            config,
            cert,
            signers: Mutex::new(Vec::new()),
        }
    }

    /// The key state file.
    pub fn keys_path(&self) -> PathBuf {
        keys_path_for(&self.cert)
    }

    /// What the key state file says (default when there is none yet).
    pub fn keys(&self) -> Result<TokenKeys, RollError> {
        let path = self.keys_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RollError::State {
                path,
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TokenKeys::default()),
            Err(source) => Err(RollError::Io { path, source }),
        }
    }

    fn write_keys(&self, keys: &TokenKeys) -> Result<(), RollError> {
        let path = self.keys_path();
        let bytes = serde_json::to_vec_pretty(keys).map_err(|e| RollError::State {
            path: path.clone(),
            message: e.to_string(),
        })?;
        write_atomic(&path, &bytes, false)
    }

    fn next_cert(&self) -> PathBuf {
        with_suffix(&self.cert, ".next")
    }

    fn previous_cert(&self) -> PathBuf {
        with_suffix(&self.cert, ".previous")
    }

    fn current_key(&self, keys: &TokenKeys) -> Result<KeySelector, RollError> {
        match &keys.current {
            Some(key) => key.selector(&self.keys_path()),
            None => pkcs11::key_selector(&self.config).map_err(token),
        }
    }

    /// The configuration naming `key` instead of the configured key.
    fn config_for(&self, key: &KeySelector) -> Pkcs11Config {
        let mut config = self.config.clone();
        (config.key_label, config.key_id) = match key {
            KeySelector::Label(label) => (Some(label.clone()), None),
            KeySelector::Id(id) => (None, Some(hex(id))),
        };
        config
    }

    fn lock_signers(&self) -> std::sync::MutexGuard<'_, Vec<(KeySelector, Arc<Pkcs11Signer>)>> {
        match self.signers.lock() {
            Ok(signers) => signers,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The signer of `key`, opened once.
    fn signer(&self, key: &KeySelector) -> Result<Arc<Pkcs11Signer>, RollError> {
        let mut signers = self.lock_signers();
        if let Some((_, signer)) = signers.iter().find(|(k, _)| k == key) {
            return Ok(signer.clone());
        }
        let signer = Arc::new(Pkcs11Signer::open(&self.config_for(key)).map_err(token)?);
        signers.push((key.clone(), signer.clone()));
        Ok(signer)
    }

    /// Closes the sessions of every key but the current and next ones (requests still holding
    /// an older snapshot keep theirs until they finish).
    fn keep_only_current_and_next(&self) -> Result<(), RollError> {
        let keys = self.keys()?;
        let path = self.keys_path();
        let mut keep = vec![self.current_key(&keys)?];
        if let Some(next) = &keys.next {
            keep.push(next.selector(&path)?);
        }
        self.lock_signers().retain(|(key, _)| keep.contains(key));
        Ok(())
    }

    fn identity(&self, key: &KeySelector, cert: &Path) -> Result<SigningIdentity, RollError> {
        let pem = std::fs::read_to_string(cert).map_err(io(cert))?;
        let certificate = Certificate::from_pem(&pem)?;
        let signer = self.signer(key)?;
        Ok(SigningIdentity::new(signer, certificate)?)
    }

    /// Destroys a key of an interrupted make step, or an unpublished next key being replaced.
    fn destroy_unused(&self, key: &TokenKey) -> Result<(), RollError> {
        let selector = key.selector(&self.keys_path())?;
        self.lock_signers().retain(|(k, _)| *k != selector);
        let destroyed = pkcs11::destroy_key_pair(&self.config, &selector).map_err(token)?;
        tracing::info!(key = %selector, destroyed, "rollover: removed an unused key from the token");
        Ok(())
    }

    /// A new key's label and random `CKA_ID`.
    fn new_key(&self, now: OffsetDateTime) -> Result<(String, Vec<u8>), RollError> {
        let base = self.config.key_label.as_deref().unwrap_or(MADE_KEY_LABEL);
        let label = format!(
            "{base}-{:04}{:02}{:02}",
            now.year(),
            u8::from(now.month()),
            now.day()
        );
        let id = crate::random::bytes::<8>()
            .map_err(|_| token(Pkcs11Error::Unusable("no randomness for the key id".into())))?;
        Ok((label, id.to_vec()))
    }

    /// Generates the key recorded as `making`, certifies it and writes `<cert>.next`.
    fn make_recorded(
        &self,
        id: &[u8],
        label: &str,
        common_name: &str,
        now: OffsetDateTime,
        valid_days: u32,
    ) -> Result<SigningIdentity, RollError> {
        pkcs11::generate_key_pair_with_id(&self.config, label, id).map_err(token)?;
        let key = KeySelector::Id(id.to_vec());
        let signer = self.signer(&key)?;
        let pem = self_signed_for_signer_at(signer.as_ref(), common_name, now, valid_days)?;
        write_atomic(&self.next_cert(), pem.as_bytes(), false)?;
        self.identity(&key, &self.next_cert())
    }
}

impl KeyStore for Pkcs11KeyStore {
    /// The current key with `signing_cert`; when a promotion stopped after the key state file
    /// switched and before the certificate moved, with `<cert>.next`, whose key it is.
    fn current(&self) -> Result<SigningIdentity, RollError> {
        let key = self.current_key(&self.keys()?)?;
        match self.identity(&key, &self.cert) {
            Err(RollError::Crypto(CryptoError::KeyCertificateMismatch { subject }))
                if self.next_cert().exists() =>
            {
                self.identity(&key, &self.next_cert())
                    .map_err(|_| RollError::Crypto(CryptoError::KeyCertificateMismatch { subject }))
            }
            other => other,
        }
    }

    fn make_next(
        &self,
        common_name: &str,
        now: OffsetDateTime,
        valid_days: u32,
    ) -> Result<SigningIdentity, RollError> {
        let mut keys = self.keys()?;
        // A generation that timed out may still make its key: clean up only after it ended.
        let unfinished = pkcs11::abandoned_calls();
        if keys.making.is_some() && unfinished > 0 {
            return Err(token(Pkcs11Error::Unfinished { calls: unfinished }));
        }
        // Neither was ever published: the next pair is made only when none is (the roller's
        // state says so), and `making` is a key whose make step died.
        for unused in [keys.making.take(), keys.next.take()].into_iter().flatten() {
            self.destroy_unused(&unused)?;
            self.write_keys(&keys)?;
        }
        let (label, id) = self.new_key(now)?;
        let made = TokenKey {
            label: Some(label.clone()),
            id: Some(hex(&id)),
        };
        keys.making = Some(made.clone());
        self.write_keys(&keys)?;
        match self.make_recorded(&id, &label, common_name, now, valid_days) {
            Ok(identity) => {
                keys.making = None;
                keys.next = Some(made);
                self.write_keys(&keys)?;
                Ok(identity)
            }
            Err(e) => {
                // Best effort now; the `making` record lets the next try clean up otherwise.
                if self.destroy_unused(&made).is_ok() {
                    keys.making = None;
                    let _ = self.write_keys(&keys);
                }
                Err(e)
            }
        }
    }

    fn next(&self) -> Result<Option<SigningIdentity>, RollError> {
        match self.keys()?.next {
            Some(next) => Ok(Some(
                self.identity(&next.selector(&self.keys_path())?, &self.next_cert())?,
            )),
            None => Ok(None),
        }
    }

    /// Checks the next pair, copies the certificate to `.previous`, switches the keys in the
    /// key state file (the commit), then renames `<cert>.next` over `signing_cert` when it is
    /// the current key's certificate.
    fn promotion_steps(&self) -> Vec<PromotionStep<'_>> {
        vec![
            (
                "check the next pair",
                Box::new(move || {
                    if self.keys()?.next.is_some() {
                        self.next()?;
                    }
                    Ok(())
                }),
            ),
            (
                "copy the current certificate to .previous",
                Box::new(move || {
                    if self.keys()?.next.is_none() {
                        return Ok(());
                    }
                    let bytes = std::fs::read(&self.cert).map_err(io(&self.cert))?;
                    write_atomic(&self.previous_cert(), &bytes, false)
                }),
            ),
            (
                "switch the current key in the key state file",
                Box::new(move || {
                    let mut keys = self.keys()?;
                    let Some(next) = keys.next.take() else {
                        return Ok(());
                    };
                    if let Some(stale) = keys.previous.take() {
                        self.destroy_unused(&stale)?;
                    }
                    keys.previous = Some(TokenKey::of(&self.current_key(&keys)?));
                    keys.current = Some(next);
                    self.write_keys(&keys)
                }),
            ),
            (
                "rename the next certificate over the current one",
                Box::new(move || {
                    let next_cert = self.next_cert();
                    let keys = self.keys()?;
                    if keys.next.is_some() || !next_cert.exists() {
                        return Ok(());
                    }
                    let key = self.current_key(&keys)?;
                    if self.identity(&key, &next_cert).is_ok() {
                        std::fs::rename(&next_cert, &self.cert).map_err(io(&self.cert))?;
                    }
                    self.keep_only_current_and_next()
                }),
            ),
        ]
    }

    fn previous_certificate(&self) -> Result<Option<Certificate>, RollError> {
        if self.keys()?.previous.is_none() {
            return Ok(None);
        }
        let path = self.previous_cert();
        match std::fs::read_to_string(&path) {
            Ok(pem) => Ok(Some(Certificate::from_pem(&pem)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(RollError::Io { path, source }),
        }
    }

    /// Destroys the previous key in the token, then removes its certificate and its record.
    fn forget_previous(&self) -> Result<(), RollError> {
        let mut keys = self.keys()?;
        let Some(previous) = keys.previous.take() else {
            return Ok(());
        };
        let selector = previous.selector(&self.keys_path())?;
        self.lock_signers().retain(|(k, _)| *k != selector);
        let destroyed = pkcs11::destroy_key_pair(&self.config, &selector).map_err(token)?;
        tracing::info!(key = %selector, destroyed, "rollover: destroyed the previous key in the token");
        let path = self.previous_cert();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(RollError::Io { path, source }),
        }
        self.write_keys(&keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> Pkcs11KeyStore {
        let config: Pkcs11Config = toml::from_str(
            "module = \"/nonexistent/libpkcs11.so\"\ntoken_label = \"t\"\nkey_label = \"k\"\npin = \"1\"\n",
        )
        .unwrap();
        Pkcs11KeyStore::new(config, dir.join("signing.crt"))
    }

    #[test]
    fn a_key_state_file_that_is_not_valid_stops_everything_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let keys = store(dir.path());
        std::fs::write(keys.keys_path(), "{\"current\": 7}").unwrap();
        for result in [keys.current().map(|_| ()), keys.next().map(|_| ())] {
            match result {
                Err(RollError::State { path, .. }) => assert_eq!(path, keys.keys_path()),
                other => panic!("{other:?}"),
            }
        }
        // Nothing is changed on the way.
        assert_eq!(
            std::fs::read_to_string(keys.keys_path()).unwrap(),
            "{\"current\": 7}"
        );
    }

    #[test]
    fn a_recorded_key_is_found_by_its_id_and_a_bad_one_is_refused() {
        let path = Path::new("signing.crt.pkcs11.json");
        let both = TokenKey {
            label: Some("k-20261202".into()),
            id: Some("0a0b".into()),
        };
        assert_eq!(both.selector(path).unwrap(), KeySelector::Id(vec![10, 11]));
        let label = TokenKey::of(&KeySelector::Label("k".into()));
        assert_eq!(
            label.selector(path).unwrap(),
            KeySelector::Label("k".into())
        );
        for bad in [
            TokenKey {
                label: None,
                id: Some("xyz".into()),
            },
            TokenKey {
                label: None,
                id: None,
            },
        ] {
            assert!(matches!(bad.selector(path), Err(RollError::State { .. })));
        }
    }

    #[test]
    fn without_a_key_state_file_the_configured_key_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let keys = store(dir.path());
        let recorded = keys.keys().unwrap();
        assert_eq!(recorded, TokenKeys::default());
        assert_eq!(
            keys.current_key(&recorded).unwrap(),
            KeySelector::Label("k".into())
        );
        assert!(keys.next().unwrap().is_none());
        assert!(keys.previous_certificate().unwrap().is_none());
    }
}
