//! Token-signing keys held in a PKCS#11 token (an HSM, a cloud HSM's PKCS#11 library, a
//! YubiHSM, SoftHSM).
//!
//! The private key never leaves the token: fedsts hashes the message with SHA-256 itself and asks
//! the token for a raw `CKM_RSA_PKCS` signature of the DigestInfo (every RSA token offers that
//! mechanism, and only 51 bytes cross to the token). A token that stops answering must not hang
//! sign-ins, so no token call runs on the caller's thread: a fixed pool of worker threads, each
//! owning one logged-in session, takes jobs from a bounded queue, and the caller waits at most
//! `timeout_secs` for the answer (inside `block_in_place` on a multi-thread runtime, so the async
//! workers keep serving). A worker stuck in the token costs one session, never a request past its
//! deadline; when every worker is stuck the queue fills and requests fail at once with
//! [`Pkcs11Error::Busy`].
//!
//! The module is loaded and `C_Initialize`d once per process and path (a second
//! `C_Initialize` would fail, and `C_Finalize` would pull the token from under other users).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::config::Pkcs11Config;
use crate::config::pkcs11::{DEFAULT_SESSIONS, DEFAULT_TIMEOUT_SECS, MAX_SESSIONS, parse_hex};
use crate::secret::Secret;

/// Opening a signer (load, find the token, log in every session, find the key) may take this
/// many `timeout_secs`.
pub const OPENING_TIMEOUTS: u32 = 4;
/// Jobs that may wait per session before requests are refused as busy.
const QUEUE_PER_SESSION: usize = 8;
/// DER prefix of the PKCS#1 DigestInfo for SHA-256 (RFC 8017 section 9.2, note 1).
const SHA256_DIGEST_INFO_PREFIX: [u8; 19] = [
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];
/// DER AlgorithmIdentifier of rsaEncryption with NULL parameters.
const RSA_ENCRYPTION_ALGORITHM: [u8; 15] = [
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];

/// Which key a [`Pkcs11Config`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySelector {
    /// By `CKA_LABEL`.
    Label(String),
    /// By `CKA_ID` bytes.
    Id(Vec<u8>),
}

impl std::fmt::Display for KeySelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeySelector::Label(label) => write!(f, "label \"{label}\""),
            KeySelector::Id(id) => write!(f, "id {}", hex(id)),
        }
    }
}

/// The key `config` names (label wins when, against validation, both are set).
pub fn key_selector(config: &Pkcs11Config) -> Result<KeySelector, Pkcs11Error> {
    match (&config.key_label, &config.key_id) {
        (Some(label), _) => Ok(KeySelector::Label(label.clone())),
        (None, Some(id)) => parse_hex(id)
            .map(KeySelector::Id)
            .ok_or_else(|| Pkcs11Error::Config(format!("key_id `{id}` is not hex"))),
        (None, None) => Err(Pkcs11Error::Config("set key_label or key_id".to_owned())),
    }
}

/// The user PIN from its one source.
pub fn read_pin(config: &Pkcs11Config) -> Result<Secret, Pkcs11Error> {
    if let Some(pin) = &config.pin {
        return Ok(pin.clone());
    }
    if let Some(path) = &config.pin_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Pkcs11Error::Config(format!(
                "pin_file {}: {e} — check the path and permissions",
                path.display()
            ))
        })?;
        return Ok(Secret::new(text.trim_end_matches(['\r', '\n']).to_owned()));
    }
    if let Some(name) = &config.pin_env {
        return std::env::var(name).map(Secret::new).map_err(|_| {
            Pkcs11Error::Config(format!(
                "pin_env: environment variable {name} is not set — export it before starting"
            ))
        });
    }
    Err(Pkcs11Error::Config(
        "set one of pin, pin_file, pin_env".to_owned(),
    ))
}

fn timeout(config: &Pkcs11Config) -> Duration {
    Duration::from_secs(config.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS))
}

fn token_name(config: &Pkcs11Config) -> String {
    match (&config.token_label, config.slot) {
        (Some(label), _) => format!("token \"{label}\""),
        (None, Some(slot)) => format!("slot {slot}"),
        (None, None) => "no token".to_owned(),
    }
}

/// Everything that can go wrong with a PKCS#11 token; each cause has its own message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The configuration cannot name a token, key or PIN.
    #[error("{0}")]
    Config(String),
    /// The PKCS#11 library could not be loaded or initialised.
    #[error(
        "cannot load the PKCS#11 module {path}: {source} — check signing_pkcs11.module names the vendor's library"
    )]
    Module {
        /// The library path.
        path: PathBuf,
        /// What cryptoki said.
        source: CkError,
    },
    /// No slot holds a token with this label or id.
    #[error(
        "{token} is not present in {module} — check token_label/slot (pkcs11-tool --module {module} -L lists the tokens)"
    )]
    TokenNotFound {
        /// The token as configured.
        token: String,
        /// The library path.
        module: String,
    },
    /// The token refused the PIN.
    #[error(
        "the token refused the user PIN (CKR_PIN_INCORRECT) — check pin / pin_file / pin_env; repeated wrong PINs may lock the token"
    )]
    WrongPin,
    /// The user PIN is locked on the token.
    #[error("the token's user PIN is locked (CKR_PIN_LOCKED) — unlock it with the SO PIN")]
    PinLocked,
    /// No RSA private key with this label or id.
    #[error(
        "the token holds no RSA private key with {key} — check key_label/key_id, or make one with `fedsts keys generate --pkcs11`"
    )]
    KeyNotFound {
        /// The key as configured.
        key: KeySelector,
    },
    /// `keys generate` found a key of that name already.
    #[error(
        "the token already holds a private key with {key} — choose another key_label, or use the existing key"
    )]
    KeyExists {
        /// The key as configured.
        key: KeySelector,
    },
    /// Several private keys match.
    #[error(
        "{count} RSA private keys on the token have {key} — give each key a unique label or use key_id"
    )]
    AmbiguousKey {
        /// The key as configured.
        key: KeySelector,
        /// How many matched.
        count: usize,
    },
    /// The token or the key went away: removed, reset, closed, or the device failed (SoftHSM
    /// answers `CKR_OBJECT_HANDLE_INVALID` once its token directory is deleted).
    #[error(
        "the token or its key is gone ({rv} during {operation}: removed, reset, or the device failed) — check the HSM, its connection and its logs; restart fedsts once it is back"
    )]
    TokenGone {
        /// The PKCS#11 return value.
        rv: RvError,
        /// The call that failed.
        operation: &'static str,
    },
    /// The token did not answer in time.
    #[error(
        "the token did not answer within {secs} s — check the HSM and its connection (signing_pkcs11.timeout_secs sets the limit)"
    )]
    Timeout {
        /// The limit.
        secs: u64,
    },
    /// Every session is stuck or busy and the queue is full.
    #[error(
        "every PKCS#11 session is busy and {queued} requests wait — the token is too slow or stuck"
    )]
    Busy {
        /// Jobs that may wait.
        queued: usize,
    },
    /// Any other failure of a token call.
    #[error("the token refused {operation}: {source}")]
    Call {
        /// The call that failed.
        operation: &'static str,
        /// What cryptoki said.
        source: CkError,
    },
    /// The key on the token is not usable for RSA signing.
    #[error("the key on the token is unusable: {0}")]
    Unusable(String),
    /// The worker pool has stopped.
    #[error("the PKCS#11 session pool has stopped")]
    Stopped,
    /// Token calls that timed out are still running on their threads.
    #[error(
        "{calls} earlier token call(s) that timed out are still running — retried once they have ended (or after a restart)"
    )]
    Unfinished {
        /// How many.
        calls: usize,
    },
}

impl Pkcs11Error {
    fn from_call(operation: &'static str, source: CkError) -> Self {
        match &source {
            CkError::Pkcs11(rv, _) => match rv {
                RvError::PinIncorrect => Pkcs11Error::WrongPin,
                RvError::PinLocked => Pkcs11Error::PinLocked,
                RvError::TokenNotPresent
                | RvError::DeviceRemoved
                | RvError::DeviceError
                | RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::TokenNotRecognized
                | RvError::CryptokiNotInitialized
                | RvError::ObjectHandleInvalid
                | RvError::KeyHandleInvalid => Pkcs11Error::TokenGone { rv: *rv, operation },
                _ => Pkcs11Error::Call { operation, source },
            },
            _ => Pkcs11Error::Call { operation, source },
        }
    }
}

fn call<T>(operation: &'static str, result: cryptoki::error::Result<T>) -> Result<T, Pkcs11Error> {
    result.map_err(|e| Pkcs11Error::from_call(operation, e))
}

/// The process-wide context of `module`, loaded and initialised on first use.
pub fn context(module: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static CONTEXTS: OnceLock<Mutex<BTreeMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let module_error = |source| Pkcs11Error::Module {
        path: module.to_path_buf(),
        source,
    };
    let mut contexts = CONTEXTS
        .get_or_init(|| Mutex::new(BTreeMap::new()))
        .lock()
        .map_err(|_| Pkcs11Error::Stopped)?;
    if let Some(found) = contexts.get(module) {
        return Ok(found.clone());
    }
    let loaded = Pkcs11::new(module).map_err(module_error)?;
    match loaded.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(module_error(e)),
    }
    contexts.insert(module.to_path_buf(), loaded.clone());
    Ok(loaded)
}

/// The slot holding the configured token.
pub fn find_slot(pkcs11: &Pkcs11, config: &Pkcs11Config) -> Result<Slot, Pkcs11Error> {
    let slots = call("C_GetSlotList", pkcs11.get_slots_with_token())?;
    let not_found = || Pkcs11Error::TokenNotFound {
        token: token_name(config),
        module: config.module.display().to_string(),
    };
    if let Some(id) = config.slot {
        return slots
            .into_iter()
            .find(|s| s.id() == id)
            .ok_or_else(not_found);
    }
    let label = config.token_label.as_deref().unwrap_or_default();
    for slot in slots {
        // A slot whose token fails to describe itself is not the one named; skip it.
        match pkcs11.get_token_info(slot) {
            Ok(info) if info.label().trim_end() == label => return Ok(slot),
            Ok(_) => {}
            Err(e) => tracing::debug!(slot = slot.id(), error = %e, "skipping a PKCS#11 slot"),
        }
    }
    Err(not_found())
}

/// Opens a read-only session on `slot` and logs the user in (already logged in is fine: login
/// state is shared by every session of the process).
pub fn logged_in_session(
    pkcs11: &Pkcs11,
    slot: Slot,
    pin: &Secret,
) -> Result<Session, Pkcs11Error> {
    let session = call("C_OpenSession", pkcs11.open_ro_session(slot))?;
    login(&session, pin)?;
    Ok(session)
}

fn login(session: &Session, pin: &Secret) -> Result<(), Pkcs11Error> {
    let pin = AuthPin::from(pin.expose().to_owned());
    match session.login(UserType::User, Some(&pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(e) => Err(Pkcs11Error::from_call("C_Login", e)),
    }
}

/// Label given to a generated key when the config names it by `key_id`.
const GENERATED_KEY_LABEL: &str = "fedsts token-signing";

/// Makes the RSA-2048 key pair the config names in the token: the private key is a token
/// object, private, sensitive and not extractable (it can sign and nothing else); the public key
/// may verify. Refuses when a key of that name exists already (no silent second key).
pub fn generate_key_pair(config: &Pkcs11Config) -> Result<(), Pkcs11Error> {
    let key = key_selector(config)?;
    let (label, id) = match &key {
        KeySelector::Label(label) => (label.clone(), random_id()?),
        KeySelector::Id(id) => (GENERATED_KEY_LABEL.to_owned(), id.clone()),
    };
    generate_named_key_pair(config, &label, &id, &key)
}

/// Makes a key pair as [`generate_key_pair`] does, labelled `label` with `CKA_ID` `id` (what
/// automatic rollover makes beside the current key), refusing when a key with that id exists.
/// Every token call runs on a thread of its own and is waited for at most
/// [`OPENING_TIMEOUTS`] × `timeout_secs`.
pub fn generate_key_pair_with_id(
    config: &Pkcs11Config,
    label: &str,
    id: &[u8],
) -> Result<(), Pkcs11Error> {
    let (owned, label, id) = (config.clone(), label.to_owned(), id.to_vec());
    off_thread(timeout(config) * OPENING_TIMEOUTS, move || {
        generate_named_key_pair(&owned, &label, &id, &KeySelector::Id(id.clone()))
    })
}

/// Removes every key object (private and public) that `key` names from the token; how many
/// there were. Bounded as [`generate_key_pair_with_id`].
pub fn destroy_key_pair(config: &Pkcs11Config, key: &KeySelector) -> Result<usize, Pkcs11Error> {
    let (owned, key) = (config.clone(), key.clone());
    off_thread(timeout(config) * OPENING_TIMEOUTS, move || {
        let session = rw_session(&owned)?;
        let mut destroyed = 0;
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            let template = [Attribute::Class(class), selector_attribute(&key)];
            for object in call("C_FindObjects", session.find_objects(&template))? {
                call("C_DestroyObject", session.destroy_object(object))?;
                destroyed += 1;
            }
        }
        Ok(destroyed)
    })
}

/// A read-write session on the configured token with the user logged in.
fn rw_session(config: &Pkcs11Config) -> Result<Session, Pkcs11Error> {
    let pkcs11 = context(&config.module)?;
    let slot = find_slot(&pkcs11, config)?;
    let pin = read_pin(config)?;
    let session = call("C_OpenSession", pkcs11.open_rw_session(slot))?;
    login(&session, &pin)?;
    Ok(session)
}

/// The pair of [`generate_key_pair`] under `label` / `id`, unless a private key named `taken`
/// exists.
fn generate_named_key_pair(
    config: &Pkcs11Config,
    label: &str,
    id: &[u8],
    taken: &KeySelector,
) -> Result<(), Pkcs11Error> {
    let session = rw_session(config)?;
    match find_private_key(&session, taken) {
        Err(Pkcs11Error::KeyNotFound { .. }) => {}
        Ok(_) | Err(Pkcs11Error::AmbiguousKey { .. }) => {
            return Err(Pkcs11Error::KeyExists { key: taken.clone() });
        }
        Err(e) => return Err(e),
    }
    let (label, id) = (label.as_bytes().to_vec(), id.to_vec());
    let public = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::ModulusBits(GENERATED_MODULUS_BITS),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        Attribute::Label(label.clone()),
        Attribute::Id(id.clone()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Decrypt(false),
        Attribute::Unwrap(false),
        Attribute::Derive(false),
        Attribute::Label(label),
        Attribute::Id(id),
    ];
    call(
        "C_GenerateKeyPair",
        session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private),
    )?;
    Ok(())
}

/// Token calls whose caller stopped waiting (timeout) and that have not ended yet.
static ABANDONED_CALLS: AtomicUsize = AtomicUsize::new(0);
/// States of one call run by [`off_thread`].
const RUNNING: u8 = 0;
const ENDED: u8 = 1;
const ABANDONED: u8 = 2;

/// How many token calls timed out and are still running in this process. A call that timed out
/// may still finish in the token later (a key generated after all): whoever cleans up after it
/// waits until this is 0.
pub fn abandoned_calls() -> usize {
    ABANDONED_CALLS.load(Ordering::SeqCst)
}

/// Runs `f` on a thread of its own and waits for it at most `limit` (off the async workers on
/// a multi-thread runtime), so a token that does not answer costs a thread, never a hang.
fn off_thread<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> Result<T, Pkcs11Error> + Send + 'static,
) -> Result<T, Pkcs11Error> {
    let (done, finished) = mpsc::sync_channel(1);
    let state = Arc::new(AtomicU8::new(RUNNING));
    let call_state = state.clone();
    std::thread::Builder::new()
        .name("pkcs11-call".to_owned())
        .spawn(move || {
            // Nobody listens any more when the call took too long.
            let _ = done.send(f());
            if call_state.swap(ENDED, Ordering::SeqCst) == ABANDONED {
                ABANDONED_CALLS.fetch_sub(1, Ordering::SeqCst);
            }
        })
        .map_err(|e| Pkcs11Error::Unusable(format!("cannot start a thread: {e}")))?;
    wait_off_runtime(|| match finished.recv_timeout(limit) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => {
            // Counted before it is marked, so the thread's decrement never comes first.
            ABANDONED_CALLS.fetch_add(1, Ordering::SeqCst);
            let marked =
                state.compare_exchange(RUNNING, ABANDONED, Ordering::SeqCst, Ordering::SeqCst);
            if marked.is_err() {
                ABANDONED_CALLS.fetch_sub(1, Ordering::SeqCst);
            }
            Err(Pkcs11Error::Timeout {
                secs: limit.as_secs(),
            })
        }
        Err(RecvTimeoutError::Disconnected) => Err(Pkcs11Error::Stopped),
    })
}

/// Runs the blocking `wait` inside `block_in_place` when on a multi-thread runtime, so the
/// other async tasks keep being served meanwhile.
fn wait_off_runtime<T>(wait: impl FnOnce() -> T) -> T {
    let on_multi_thread_runtime = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if on_multi_thread_runtime {
        tokio::task::block_in_place(wait)
    } else {
        wait()
    }
}

/// Modulus size of generated keys.
const GENERATED_MODULUS_BITS: cryptoki::types::Ulong = cryptoki::types::Ulong::new(2048);

/// A random `CKA_ID` for a generated key (tools list keys by id as well as by label).
fn random_id() -> Result<Vec<u8>, Pkcs11Error> {
    crate::random::bytes::<8>()
        .map(|id| id.to_vec())
        .map_err(|_| Pkcs11Error::Unusable("no randomness for the key id".to_owned()))
}

/// What the token says about a private key's protection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyProtection {
    /// `CKA_SENSITIVE`: the token never reveals the key's private parts.
    pub sensitive: bool,
    /// `CKA_EXTRACTABLE`: the key may be wrapped out of the token.
    pub extractable: bool,
}

/// Reads `CKA_SENSITIVE` and `CKA_EXTRACTABLE` of the configured key (for `fedsts keys check`).
pub fn key_protection(config: &Pkcs11Config) -> Result<KeyProtection, Pkcs11Error> {
    let pkcs11 = context(&config.module)?;
    let slot = find_slot(&pkcs11, config)?;
    let session = logged_in_session(&pkcs11, slot, &read_pin(config)?)?;
    let handle = find_private_key(&session, &key_selector(config)?)?;
    let attributes = call(
        "C_GetAttributeValue",
        session.get_attributes(
            handle,
            &[AttributeType::Sensitive, AttributeType::Extractable],
        ),
    )?;
    let mut protection = KeyProtection {
        sensitive: false,
        extractable: true,
    };
    for attribute in attributes {
        match attribute {
            Attribute::Sensitive(value) => protection.sensitive = value,
            Attribute::Extractable(value) => protection.extractable = value,
            _ => {}
        }
    }
    Ok(protection)
}

/// The attribute a key is found by.
fn selector_attribute(key: &KeySelector) -> Attribute {
    match key {
        KeySelector::Label(label) => Attribute::Label(label.as_bytes().to_vec()),
        KeySelector::Id(id) => Attribute::Id(id.clone()),
    }
}

/// The one RSA private key `key` names.
pub fn find_private_key(session: &Session, key: &KeySelector) -> Result<ObjectHandle, Pkcs11Error> {
    let mut template = vec![
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::RSA),
    ];
    template.push(selector_attribute(key));
    let found = call("C_FindObjects", session.find_objects(&template))?;
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err(Pkcs11Error::KeyNotFound { key: key.clone() }),
        many => Err(Pkcs11Error::AmbiguousKey {
            key: key.clone(),
            count: many.len(),
        }),
    }
}

/// The DER SubjectPublicKeyInfo of an RSA key object, built from its modulus and exponent (both
/// public attributes even of a sensitive private key).
pub fn rsa_spki_der(session: &Session, object: ObjectHandle) -> Result<Vec<u8>, Pkcs11Error> {
    let attributes = call(
        "C_GetAttributeValue",
        session.get_attributes(
            object,
            &[AttributeType::Modulus, AttributeType::PublicExponent],
        ),
    )?;
    let (mut modulus, mut exponent) = (None, None);
    for attribute in attributes {
        match attribute {
            Attribute::Modulus(n) => modulus = Some(n),
            Attribute::PublicExponent(e) => exponent = Some(e),
            _ => {}
        }
    }
    let (Some(modulus), Some(exponent)) = (modulus, exponent) else {
        return Err(Pkcs11Error::Unusable(
            "the token does not reveal the key's modulus and public exponent".to_owned(),
        ));
    };
    Ok(spki_from_components(&modulus, &exponent))
}

/// The RSAPublicKey DER (`SEQUENCE { n INTEGER, e INTEGER }`) of big-endian `n` and `e`.
pub fn rsa_public_key_der(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut body = der_unsigned_integer(modulus);
    body.extend(der_unsigned_integer(exponent));
    der_tlv(0x30, &body)
}

fn spki_from_components(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let mut bit_string = vec![0x00];
    bit_string.extend(rsa_public_key_der(modulus, exponent));
    let mut body = RSA_ENCRYPTION_ALGORITHM.to_vec();
    body.extend(der_tlv(0x03, &bit_string));
    der_tlv(0x30, &body)
}

fn der_unsigned_integer(big_endian: &[u8]) -> Vec<u8> {
    let first = big_endian
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(big_endian.len());
    let mut value = big_endian[first..].to_vec();
    if value.first().is_none_or(|b| b & 0x80 != 0) {
        value.insert(0, 0);
    }
    der_tlv(0x02, &value)
}

fn der_tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(value);
    out
}

/// Signs SHA-256(`message`) with `key` as RSA PKCS#1 v1.5 inside the token.
pub fn sign_in_token(
    session: &Session,
    key: ObjectHandle,
    message: &[u8],
) -> Result<Vec<u8>, Pkcs11Error> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, message);
    let mut digest_info = SHA256_DIGEST_INFO_PREFIX.to_vec();
    digest_info.extend_from_slice(digest.as_ref());
    call(
        "C_Sign",
        session.sign(&Mechanism::RsaPkcs, key, &digest_info),
    )
}

/// What the health probe signs.
const PROBE_MESSAGE: &[u8] = b"fedsts health probe";

/// What a worker is asked to do.
enum Work {
    /// Sign this message.
    Sign(Vec<u8>),
    /// Sign a fixed message (the health probe: proves the key, not only the session, works).
    Probe,
}

struct Job {
    work: Work,
    /// When the caller stops waiting: a job still queued then is dropped, not run, so a token
    /// that answers again is not first kept busy with signatures nobody waits for.
    deadline: Instant,
    reply: SyncSender<Result<Vec<u8>, Pkcs11Error>>,
}

/// An RSA key in a PKCS#11 token, signing through a pool of logged-in sessions.
pub struct Pkcs11Signer {
    /// `None` only while dropping.
    jobs: Option<SyncSender<Job>>,
    /// One message per worker that has closed its session and ended (a `Mutex` only to make the
    /// signer `Sync`; it is read in `drop`).
    finished: Mutex<Receiver<()>>,
    workers: usize,
    queue_capacity: usize,
    spki_der: Vec<u8>,
    timeout: Duration,
    key: KeySelector,
}

impl Drop for Pkcs11Signer {
    /// Ends the workers and waits (at most `timeout_secs` each) until they have closed their
    /// sessions: a process that exits while a worker is still inside the module can crash in
    /// the module's own teardown (seen with SoftHSM: `fedsts keys generate` exiting non-zero).
    fn drop(&mut self) {
        drop(self.jobs.take());
        let Ok(finished) = self.finished.lock() else {
            return;
        };
        for _ in 0..self.workers {
            if finished.recv_timeout(self.timeout).is_err() {
                return;
            }
        }
    }
}

impl std::fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Loads the module, finds the token, logs in `sessions` sessions, finds the key and starts
    /// one worker thread per session. Every step that fails says which. The whole opening runs
    /// on a thread of its own and is given [`OPENING_TIMEOUTS`] times `timeout_secs`, so a token
    /// that does not answer stops the start (or `keys check`) with [`Pkcs11Error::Timeout`]
    /// instead of hanging it.
    pub fn open(config: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        let owned = config.clone();
        off_thread(timeout(config) * OPENING_TIMEOUTS, move || {
            Self::open_now(&owned)
        })
    }

    fn open_now(config: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        let pkcs11 = context(&config.module)?;
        let slot = find_slot(&pkcs11, config)?;
        let pin = read_pin(config)?;
        let key = key_selector(config)?;
        let first = logged_in_session(&pkcs11, slot, &pin)?;
        let handle = find_private_key(&first, &key)?;
        let spki_der = rsa_spki_der(&first, handle)?;
        let count = config
            .sessions
            .unwrap_or(DEFAULT_SESSIONS)
            .clamp(1, MAX_SESSIONS);
        let mut sessions = vec![first];
        for _ in 1..count {
            sessions.push(logged_in_session(&pkcs11, slot, &pin)?);
        }
        let queue_capacity = count * QUEUE_PER_SESSION;
        let (jobs, receiver) = mpsc::sync_channel(queue_capacity);
        let receiver = Arc::new(Mutex::new(receiver));
        let (done, finished) = mpsc::sync_channel(count);
        for (index, session) in sessions.into_iter().enumerate() {
            let receiver = receiver.clone();
            let done = done.clone();
            std::thread::Builder::new()
                .name(format!("pkcs11-{index}"))
                .spawn(move || {
                    work(&session, handle, &receiver);
                    drop(session);
                    let _ = done.send(());
                })
                .map_err(|e| Pkcs11Error::Unusable(format!("cannot start a worker thread: {e}")))?;
        }
        Ok(Self {
            jobs: Some(jobs),
            finished: Mutex::new(finished),
            workers: count,
            queue_capacity,
            spki_der,
            timeout: timeout(config),
            key,
        })
    }

    /// Runs `work` on a session and waits for it at most the configured timeout.
    fn run(&self, work: Work) -> Result<Vec<u8>, Pkcs11Error> {
        let (reply, answer) = mpsc::sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or(Pkcs11Error::Stopped)?;
        jobs.try_send(Job {
            work,
            deadline: Instant::now() + self.timeout,
            reply,
        })
        .map_err(|e| match e {
            TrySendError::Full(_) => Pkcs11Error::Busy {
                queued: self.queue_capacity,
            },
            TrySendError::Disconnected(_) => Pkcs11Error::Stopped,
        })?;
        let wait = || match answer.recv_timeout(self.timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(Pkcs11Error::Timeout {
                secs: self.timeout.as_secs(),
            }),
            Err(RecvTimeoutError::Disconnected) => Err(Pkcs11Error::Stopped),
        };
        wait_off_runtime(wait)
    }

    /// Whether the token answers within the timeout (the `/healthz` probe).
    pub fn probe(&self) -> Result<(), Pkcs11Error> {
        self.run(Work::Probe).map(|_| ())
    }

    /// Signs `message` in the token (SHA-256, RSA PKCS#1 v1.5).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        self.run(Work::Sign(message.to_vec()))
    }

    /// DER SubjectPublicKeyInfo of the key in the token.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }
}

/// One worker: takes jobs until the signer is dropped. The queue lock is held only while
/// waiting for a job, never during a token call.
fn work(session: &Session, key: ObjectHandle, receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        if Instant::now() >= job.deadline {
            continue;
        }
        let result = match &job.work {
            Work::Sign(message) => sign_in_token(session, key, message),
            Work::Probe => sign_in_token(session, key, PROBE_MESSAGE),
        };
        if let Err(e) = &result {
            tracing::warn!(error = %e, "PKCS#11 token call failed");
        }
        // The caller may have given up (timeout); nobody to tell then.
        let _ = job.reply.try_send(result);
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs8::DecodePublicKey as _;
    use rsa::traits::PublicKeyParts as _;

    #[test]
    fn spki_from_components_matches_a_real_certificate() {
        let identity = crate::crypto::test_support::generated_identity();
        let spki = identity.certificate.public_key_spki_der();
        let key = rsa::PublicKey::from_public_key_der(&spki).unwrap();
        let rebuilt = spki_from_components(&key.n().to_be_bytes(), &key.e_bytes());
        assert_eq!(rebuilt, spki);
        // A leading zero byte in the token's modulus does not change the encoding.
        let mut padded = vec![0];
        padded.extend_from_slice(&key.n().to_be_bytes());
        assert_eq!(spki_from_components(&padded, &key.e_bytes()), spki);
    }

    #[test]
    fn hex_round_trips_and_rejects_odd_or_bad_digits() {
        assert_eq!(parse_hex("01a2FF"), Some(vec![0x01, 0xa2, 0xff]));
        assert_eq!(hex(&[0x01, 0xa2, 0xff]), "01a2ff");
        assert_eq!(parse_hex("abc"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), None);
    }
}
