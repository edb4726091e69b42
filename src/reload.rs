//! Reload without downtime: on SIGHUP (`systemctl reload`) the server re-reads its
//! configuration file, the users files and every certificate and key the file names, checks them
//! as `fedsts check-config` does (all but its notice of certificates that expire soon), and swaps the new service and TLS identity in as one value
//! ([`crate::server::Serving`]). Requests already running finish on what they started with; an
//! open connection keeps the TLS certificate of its handshake; every request that arrives after
//! the swap is answered by the new configuration.
//!
//! A new configuration with any problem is refused whole: each problem is logged with its key,
//! and the configuration in service keeps serving. Keys whose change needs a restart
//! ([`restart_only_changes`]: the listener, the connection caps, the trusted proxies, the session
//! key file and the state store) are refused by name rather than silently ignored.
//!
//! What survives a reload: the state store itself (lockout counters, replay marks, rate-limit
//! buckets, used TOTP codes: the new service is built over the same store), the browser session
//! key (signed-in browsers stay signed in; `server.session_key` is restart-only), and the TLS
//! session-ticket keys (clients resume instead of all making full handshakes; not with
//! `[device_trust]`, where every client certificate is checked again against the CA and CRL just
//! read). Rebuilt: apps, directories (users files re-read, LDAP pools reconnect), signing
//! identities (PEM files re-read, PKCS#11 sessions opened anew), the rollover schedule, policy
//! settings.
//!
//! Reloads run one at a time on one task; a trigger that arrives during a reload queues one more
//! reload, however many arrive ([`Trigger`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::config::{Config, ConfigError, ConfigProblem, DirectoryConfig};
use crate::preflight;
use crate::server::tls::{self, TlsError};
use crate::server::{Service, Serving};
use crate::sts::{StartError, Sts};

/// Most changed keys one log line names; the rest are counted.
const MAX_KEYS_LOGGED: usize = 40;

/// Why a re-read configuration was refused; the running one keeps serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReloadError {
    /// The file could not be read.
    #[error("{0}")]
    Config(ConfigError),
    /// The file is not valid TOML for the schema. The parser's text without the quoted source
    /// line (it may hold a PIN or a password), so a String, not the parser's error.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: std::path::PathBuf,
        /// What the parser said, with key, line and column.
        message: String,
    },
    /// The file parsed, but the configuration (or a file it names) has problems.
    #[error("{}", join_lines(.0))]
    Invalid(Vec<ConfigProblem>),
    /// Keys changed that take effect only at a restart.
    #[error("{}", join_lines(.0))]
    RestartNeeded(Vec<ConfigProblem>),
    /// The service could not be built from it (a key, directory or metadata signature).
    #[error("{0}")]
    Start(#[from] StartError),
    /// The TLS identity could not be built from it.
    #[error("{0}")]
    Tls(#[from] TlsError),
    /// The reload's worker thread ended without an answer.
    #[error("the reload stopped before it finished; nothing was changed")]
    Stopped,
}

fn join_lines(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What a successful reload changed, by key (values are never logged: some are secrets).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Dotted keys whose value in the file changed, e.g. `apps[0].token_lifetime_secs`.
    pub keys: Vec<String>,
    /// Keys naming a file whose content changed, e.g. `server.tls_cert`.
    pub files: Vec<String>,
}

/// The configuration in service, as the next reload compares against it.
struct Running {
    config: Config,
    table: toml::Table,
    files: BTreeMap<String, Option<Vec<u8>>>,
}

impl Running {
    fn new(config: Config, table: toml::Table) -> Self {
        let files = file_digests(&config);
        Self {
            config,
            table,
            files,
        }
    }
}

/// Re-reads one configuration file into a running server.
pub struct Reloader {
    path: PathBuf,
    serving: Arc<Serving>,
    clock: Arc<dyn Clock>,
    running: Running,
}

impl Reloader {
    /// A reloader of the server serving `config`, which was loaded from `path`.
    pub fn new(
        path: PathBuf,
        config: Config,
        serving: Arc<Serving>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        // Only the change summary uses the table: an unreadable file leaves it empty.
        let table = std::fs::read_to_string(&path)
            .ok()
            .and_then(|text| text.parse::<toml::Table>().ok())
            .unwrap_or_default();
        Self {
            path,
            serving,
            clock,
            running: Running::new(config, table),
        }
    }

    /// Re-reads, checks and swaps in the configuration; on `Err` nothing changed.
    async fn reload(&mut self) -> Result<Changes, ReloadError> {
        let path = self.path.clone();
        let running = self.running.config.clone();
        let current = self.serving.get();
        let clock = self.clock.clone();
        let prepared =
            tokio::task::spawn_blocking(move || prepare(&path, &running, &current, clock))
                .await
                .map_err(|_| ReloadError::Stopped)??;
        let changes = Changes {
            keys: changed_keys(&self.running.table, &prepared.running.table),
            files: changed_files(&self.running.files, &prepared.running.files),
        };
        let replaced = self.serving.get();
        self.serving.replace(prepared.service);
        self.running = prepared.running;
        // When no request holds the old service any more, it is dropped here, off the async
        // threads: closing PKCS#11 sessions waits for their worker threads.
        tokio::task::spawn_blocking(move || drop(replaced));
        Ok(changes)
    }

    /// [`Self::reload`] with its log lines: started, then what changed or why it was refused.
    async fn reload_and_log(&mut self) {
        tracing::info!(config = %self.path.display(), "reload: started");
        match self.reload().await {
            Ok(changes) => log_success(&changes),
            Err(error) => log_refusal(&error),
        }
    }

    /// Reloads once per trigger received, one reload at a time, until every [`Trigger`] is gone.
    pub async fn run(mut self, mut triggers: Triggers) {
        while triggers.0.recv().await.is_some() {
            self.reload_and_log().await;
        }
    }
}

/// Asks for a reload. However often it is pulled during a reload, one more reload follows.
#[derive(Clone, Debug)]
pub struct Trigger(mpsc::Sender<()>);

/// The reloads asked for, for [`Reloader::run`].
#[derive(Debug)]
pub struct Triggers(mpsc::Receiver<()>);

/// A trigger and its queue of one.
pub fn trigger() -> (Trigger, Triggers) {
    let (sender, receiver) = mpsc::channel(1);
    (Trigger(sender), Triggers(receiver))
}

impl Trigger {
    /// Queues a reload unless one is queued already.
    pub fn pull(&self) {
        // Full: a reload is queued and will read the file as it is then. Closed: shutting down.
        let _ = self.0.try_send(());
    }
}

/// Pulls `trigger` on every SIGHUP (installed now, before the server says it is up, so that a
/// SIGHUP never takes the default action and ends the process). Without a trigger (embedded
/// defaults: there is no file to re-read) each SIGHUP is logged and ignored.
#[cfg(unix)]
pub fn on_hangup(
    trigger: Option<Trigger>,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    Ok(async move {
        while hangups.recv().await.is_some() {
            match &trigger {
                Some(trigger) => trigger.pull(),
                None => tracing::warn!(
                    "reload refused: SIGHUP, but the server runs on embedded defaults with no configuration file — start it with --config FILE to reload"
                ),
            }
        }
    })
}

/// A configuration built and checked, ready to swap in.
struct Prepared {
    service: Service,
    running: Running,
}

fn prepare(
    path: &Path,
    running: &Config,
    current: &Service,
    clock: Arc<dyn Clock>,
) -> Result<Prepared, ReloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| {
        ReloadError::Config(ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
    })?;
    let parse_error = |message: String| ReloadError::Syntax {
        path: path.to_path_buf(),
        message: without_source_lines(&message),
    };
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    let config = Config::parse(&text, base).map_err(|e| parse_error(e.to_string()))?;
    let table = text
        .parse::<toml::Table>()
        .map_err(|e| parse_error(e.to_string()))?;
    let restart = restart_only_changes(running, &config);
    if !restart.is_empty() {
        return Err(ReloadError::RestartNeeded(restart));
    }
    let problems = preflight::check_serving(&config, clock.now());
    if !problems.is_empty() {
        return Err(ReloadError::Invalid(problems));
    }
    for warning in preflight::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let sts = current.sts.reloaded(&config)?;
    let tls = tls::reloaded_server_config(&config, clock, &current.tls)?;
    warn_unpublished_signing(&config, &current.sts, &sts);
    Ok(Prepared {
        service: Service {
            sts: Arc::new(sts),
            tls,
        },
        running: Running::new(config, table),
    })
}

/// Warns for each app whose new signing certificate the running one never published (as
/// current, next or previous): Entra ID refuses its tokens until it is told (the commands page).
/// Not a refusal: the admin may have told Entra already.
fn warn_unpublished_signing(config: &Config, running: &Sts, reloaded: &Sts) {
    for (i, app) in config.apps.iter().enumerate() {
        let (Some(before), Some(after)) = (running.app(&app.id), reloaded.app(&app.id)) else {
            continue;
        };
        let signing = after
            .published()
            .signing
            .current
            .certificate
            .base64()
            .to_owned();
        if !before
            .published()
            .signing
            .published_certificates()
            .contains(&signing)
        {
            tracing::warn!(
                key = %format!("apps[{i}].signing_cert"),
                app = %app.id,
                "reload: the new token-signing certificate was not published before (not the next certificate) — Entra ID refuses its tokens until you run the commands page (fedsts commands --app {})",
                app.id
            );
        }
    }
}

/// The TOML parser's message without the lines that quote the file: the quoted line may hold a
/// secret (a PIN, a Redis password in a URL), and the message still names line, column and key.
fn without_source_lines(message: &str) -> String {
    message
        .lines()
        .filter(|line| {
            let quoted = line
                .trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start();
            !quoted.starts_with('|')
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keys that changed between `running` and `new` but take effect only at a restart: the
/// listening sockets and their caps are bound once; the caps judge client addresses by the
/// trusted proxies they started with; the session key and the state store hold what must
/// survive a reload (sessions; lockout counters, replay marks, rate buckets).
pub fn restart_only_changes(running: &Config, new: &Config) -> Vec<ConfigProblem> {
    restart_only_values(running)
        .into_iter()
        .zip(restart_only_values(new))
        .filter(|((_, before), (_, after))| before != after)
        .map(|((key, _), _)| {
            ConfigProblem::new(
                key,
                "changed, and it takes effect only at a restart (restart needed)",
                "put the running value back and reload, or restart fedsts (systemctl restart fedsts) to apply it",
            )
        })
        .collect()
}

/// Each restart-only key with its value as written after defaults (compared, never logged).
fn restart_only_values(config: &Config) -> [(&'static str, String); 14] {
    let server = &config.server;
    let caps = &server.connections;
    let state = &config.state;
    [
        ("server.listen", format!("{:?}", config.listen_addr().ok())),
        ("server.connections.max", format!("{:?}", caps.max)),
        (
            "server.connections.max_per_address",
            format!("{:?}", caps.max_per_address),
        ),
        (
            "server.connections.write_timeout_secs",
            format!("{:?}", caps.write_timeout_secs),
        ),
        (
            "server.connections.health_listen",
            format!("{:?}", caps.health_listen),
        ),
        (
            "server.trusted_proxies",
            format!("{:?}", server.trusted_proxies),
        ),
        (
            "server.trust_ms_forwarded_client_ip",
            format!("{:?}", server.trust_ms_forwarded_client_ip),
        ),
        ("server.session_key", format!("{:?}", server.session_key)),
        ("state.redis_url", format!("{:?}", state.redis_url)),
        ("state.key_prefix", state.prefix().to_owned()),
        (
            "state.max_memory_entries",
            format!("{:?}", state.max_memory_entries),
        ),
        ("metrics.listen", format!("{:?}", config.metrics.listen)),
        ("metrics.path", format!("{:?}", config.metrics.path)),
        ("metrics.allow", format!("{:?}", config.metrics.allow)),
    ]
}

/// The files the configuration names, by key, with a SHA-256 of their content (`None`:
/// unreadable), so a reload can say which changed in place.
fn file_digests(config: &Config) -> BTreeMap<String, Option<Vec<u8>>> {
    let mut files: Vec<(String, &Path)> = vec![
        ("server.tls_cert".into(), &config.server.tls_cert),
        ("server.tls_key".into(), &config.server.tls_key),
    ];
    for (i, app) in config.apps.iter().enumerate() {
        let key = |field: &str| format!("apps[{i}].{field}");
        files.push((key("signing_cert"), &app.signing_cert));
        let optional = [
            ("signing_key", &app.signing_key),
            ("next_signing_cert", &app.next_signing_cert),
            ("next_signing_key", &app.next_signing_key),
        ];
        for (field, path) in optional {
            if let Some(path) = path {
                files.push((key(field), path));
            }
        }
        if let Some(kerberos) = &app.kerberos {
            files.push((key("kerberos.keytab"), &kerberos.keytab));
        }
    }
    for (name, directory) in &config.directories {
        if let DirectoryConfig::File { path } = directory {
            files.push((format!("directories.{name}.path"), path));
        }
    }
    if let Some(device) = &config.device_trust {
        files.push(("device_trust.ca_file".into(), &device.ca_file));
        if let Some(crl) = &device.crl_file {
            files.push(("device_trust.crl_file".into(), crl));
        }
    }
    files
        .into_iter()
        .map(|(key, path)| (key, digest_of(path)))
        .collect()
}

fn digest_of(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes)
            .as_ref()
            .to_vec(),
    )
}

/// Keys naming a file whose content differs (a key that appeared or went is a changed key of
/// the file itself, reported by [`changed_keys`]).
fn changed_files(
    old: &BTreeMap<String, Option<Vec<u8>>>,
    new: &BTreeMap<String, Option<Vec<u8>>>,
) -> Vec<String> {
    new.iter()
        .filter(|(key, digest)| old.get(*key).is_some_and(|before| before != *digest))
        .map(|(key, _)| key.clone())
        .collect()
}

/// Dotted keys whose value differs between two parsed files (`apps[0].id`, `server.listen`).
fn changed_keys(old: &toml::Table, new: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    diff_tables("", old, new, &mut keys);
    keys
}

fn diff_tables(prefix: &str, old: &toml::Table, new: &toml::Table, keys: &mut Vec<String>) {
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for name in names {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        diff_values(&key, old.get(name), new.get(name), keys);
    }
}

fn diff_values(
    key: &str,
    old: Option<&toml::Value>,
    new: Option<&toml::Value>,
    keys: &mut Vec<String>,
) {
    use toml::Value;
    match (old, new) {
        (Some(Value::Table(a)), Some(Value::Table(b))) => diff_tables(key, a, b, keys),
        (Some(Value::Array(a)), Some(Value::Array(b)))
            if a.len() == b.len() && a.iter().chain(b).all(Value::is_table) =>
        {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{key}[{i}]"), Some(x), Some(y), keys);
            }
        }
        (a, b) if a != b => keys.push(key.to_owned()),
        _ => {}
    }
}

fn log_success(changes: &Changes) {
    if changes.keys.is_empty() && changes.files.is_empty() {
        tracing::info!("reload: done; nothing changed in the file or in the files it names");
        return;
    }
    tracing::info!(
        changed_keys = %summary(&changes.keys),
        changed_files = %summary(&changes.files),
        "reload: done; new requests are served by the re-read configuration"
    );
}

fn summary(keys: &[String]) -> String {
    let mut text = keys
        .iter()
        .take(MAX_KEYS_LOGGED)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > MAX_KEYS_LOGGED {
        text.push_str(&format!(" and {} more", keys.len() - MAX_KEYS_LOGGED));
    }
    text
}

fn log_refusal(error: &ReloadError) {
    const KEPT: &str = "the running configuration keeps serving";
    match error {
        ReloadError::Invalid(problems) | ReloadError::RestartNeeded(problems) => {
            for problem in problems {
                tracing::warn!(key = %problem.key, "reload refused: {problem}; {KEPT}");
            }
        }
        other => tracing::warn!("reload refused: {other}; {KEPT}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> toml::Table {
        text.parse().unwrap()
    }

    #[test]
    fn twenty_pulls_during_a_reload_queue_one_more_reload() {
        let (trigger, mut triggers) = trigger();
        for _ in 0..20 {
            trigger.pull();
        }
        assert!(triggers.0.try_recv().is_ok(), "one reload is queued");
        assert!(triggers.0.try_recv().is_err(), "and only one");
        trigger.pull();
        assert!(
            triggers.0.try_recv().is_ok(),
            "a pull after it queues the next"
        );
    }

    #[test]
    fn changed_keys_name_each_changed_value_by_its_dotted_key() {
        let old = table(
            "[server]\nlisten = \"a\"\n[[apps]]\nid = \"x\"\nlife = 1\n[[apps]]\nid = \"y\"\n",
        );
        let new = table(
            "[server]\nlisten = \"a\"\nextra = 1\n[[apps]]\nid = \"x\"\nlife = 2\n[[apps]]\nid = \"y\"\n",
        );
        assert_eq!(changed_keys(&old, &new), ["apps[0].life", "server.extra"]);
        let fewer = table("[server]\nlisten = \"a\"\n[[apps]]\nid = \"x\"\nlife = 1\n");
        assert_eq!(changed_keys(&old, &fewer), ["apps"]);
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn a_parse_error_is_logged_without_the_quoted_line() {
        let error = "x = ".parse::<toml::Table>().unwrap_err().to_string();
        let secret = "pin = \"s3cr3t-pin\" x";
        let quoted = format!("{secret}\n")
            .parse::<toml::Table>()
            .unwrap_err()
            .to_string();
        assert!(
            quoted.contains("s3cr3t-pin"),
            "the parser quotes the line: {quoted}"
        );
        let cleaned = without_source_lines(&quoted);
        assert!(!cleaned.contains("s3cr3t-pin"), "{cleaned}");
        assert!(cleaned.contains("line 1"), "{cleaned}");
        assert!(!without_source_lines(&error).is_empty());
    }
}
