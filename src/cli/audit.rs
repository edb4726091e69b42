//! `fedsts audit by-key`: reads audit log lines (JSON, `FEDSTS_LOG_FORMAT=json`) and lists the
//! issued assertions per signing key fingerprint, flagging keys that are not one of the
//! configured certificates — how an incident responder finds tokens signed by a key that should
//! not sign (a stolen or forgotten key in another instance) or outside normal sign-ins.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;

use super::fail;
use crate::autoroll;
use crate::config::Config;
use crate::crypto::Certificate;

/// Longest log line read; longer lines are counted as skipped.
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// `fedsts audit …` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditAction {
    /// List issued assertions per signing key fingerprint; exit 1 when a key is not configured.
    ByKey {
        /// Configuration file (its signing_cert, next_signing_cert and rolled-over keys are known).
        #[arg(long)]
        config: PathBuf,
        /// Audit log of JSON lines (default: standard input).
        #[arg(long)]
        log: Option<PathBuf>,
    },
}

/// One issued assertion as the audit log has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// `time` field.
    pub time: String,
    /// `app` field.
    pub app: String,
    /// `user` field.
    pub user: String,
    /// `assertion_id` field.
    pub assertion_id: String,
    /// `endpoint` field.
    pub endpoint: String,
    /// `signing_store` field.
    pub store: String,
}

/// What the log holds, grouped by key.
#[derive(Debug, Default)]
pub struct ByKey {
    /// Issued assertions per fingerprint (lowercase hex).
    pub keys: BTreeMap<String, Vec<Issued>>,
    /// Issued records without a fingerprint (written before fingerprints were logged).
    pub unattributed: usize,
    /// Lines that are not JSON audit records (other log lines, too long, not JSON).
    pub skipped: usize,
}

/// Normalises a fingerprint as `openssl x509 -fingerprint -sha256` or the log writes it.
pub fn normalise_fingerprint(text: &str) -> String {
    text.chars()
        .filter(|c| *c != ':')
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Reads `input` line by line (each at most [`MAX_LINE_BYTES`]).
pub fn read_log(mut input: impl BufRead) -> std::io::Result<ByKey> {
    let mut result = ByKey::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut input)
            .take(MAX_LINE_BYTES)
            .read_until(b'\n', &mut line)?;
        if read == 0 {
            return Ok(result);
        }
        if !line.ends_with(b"\n") && read as u64 == MAX_LINE_BYTES {
            result.skipped += 1;
            // Drop the rest of the over-long line.
            let mut rest = Vec::new();
            input.read_until(b'\n', &mut rest)?;
            continue;
        }
        match issued_record(&line) {
            Some((Some(fingerprint), issued)) => {
                result.keys.entry(fingerprint).or_default().push(issued)
            }
            Some((None, _)) => result.unattributed += 1,
            None => result.skipped += 1,
        }
    }
}

/// The fingerprint and facts of an `issued` audit line; `None` for anything else.
fn issued_record(line: &[u8]) -> Option<(Option<String>, Issued)> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    if value.get("target").and_then(|t| t.as_str()) != Some("fedsts::audit") {
        return None;
    }
    let fields = value.get("fields").unwrap_or(&value);
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned()
    };
    if text("decision") != "issued" {
        return None;
    }
    let fingerprint =
        Some(normalise_fingerprint(&text("signing_key_sha256"))).filter(|f| !f.is_empty());
    Some((
        fingerprint,
        Issued {
            time: text("time"),
            app: text("app"),
            user: text("user"),
            assertion_id: text("assertion_id"),
            endpoint: text("endpoint"),
            store: text("signing_store"),
        },
    ))
}

/// The configured keys: fingerprint → what names it (`apps[0].signing_cert (contoso)`); with
/// automatic rollover also the next and previous certificates beside `signing_cert` and the
/// ones its promotions replaced (the state file's `retired`).
pub fn configured_keys(config: &Config) -> BTreeMap<String, String> {
    let mut known = BTreeMap::new();
    for (i, app) in config.apps.iter().enumerate() {
        let (next, previous) = (
            autoroll::next_certificate_path(&app.signing_cert),
            autoroll::previous_certificate_path(&app.signing_cert),
        );
        let certs = [
            ("signing_cert", Some(&app.signing_cert)),
            ("next_signing_cert", app.next_signing_cert.as_ref()),
            ("signing_cert's rollover next", Some(&next)),
            ("signing_cert's rollover previous", Some(&previous)),
        ];
        for (field, path) in certs {
            let Some(path) = path else { continue };
            if let Some(cert) = std::fs::read_to_string(path)
                .ok()
                .and_then(|pem| Certificate::from_pem(&pem).ok())
            {
                known
                    .entry(cert.sha256_thumbprint_hex())
                    .or_insert_with(|| format!("apps[{i}].{field} ({})", app.id));
            }
        }
        let state = autoroll::state_path_of(app.signing_key.as_deref(), &app.signing_cert);
        // An unreadable state file names no keys: their tokens are then flagged, never hidden.
        for thumbprint in autoroll::read_state(&state)
            .map(|s| s.retired)
            .unwrap_or_default()
        {
            known
                .entry(thumbprint)
                .or_insert_with(|| format!("apps[{i}] rolled over ({})", app.id));
        }
    }
    known
}

/// The report text and whether every key is configured.
pub fn render(by_key: &ByKey, known: &BTreeMap<String, String>) -> (String, bool) {
    let mut out = String::new();
    let mut all_known = true;
    for (fingerprint, issued) in &by_key.keys {
        let name = match known.get(fingerprint) {
            Some(name) => format!("configured: {name}"),
            None => {
                all_known = false;
                "NOT A CONFIGURED KEY".to_owned()
            }
        };
        let mut stores: Vec<&str> = issued.iter().map(|i| i.store.as_str()).collect();
        stores.sort_unstable();
        stores.dedup();
        // RFC 3339 times of the service clock (UTC) sort as text.
        let first = issued
            .iter()
            .map(|i| i.time.as_str())
            .min()
            .unwrap_or_default();
        let last = issued
            .iter()
            .map(|i| i.time.as_str())
            .max()
            .unwrap_or_default();
        out.push_str(&format!(
            "key {fingerprint} ({name}; store {}): {} assertion(s), first {first}, last {last}\n",
            stores.join(", "),
            issued.len()
        ));
        for i in issued {
            out.push_str(&format!(
                "  {} app={} user={} assertion={} endpoint={}\n",
                i.time, i.app, i.user, i.assertion_id, i.endpoint
            ));
        }
    }
    if by_key.unattributed > 0 {
        out.push_str(&format!(
            "{} issued record(s) name no signing key (written before fedsts logged it)\n",
            by_key.unattributed
        ));
    }
    out.push_str(&format!(
        "{} line(s) were not audit records and were skipped\n",
        by_key.skipped
    ));
    (out, all_known)
}

/// Runs an `audit` subcommand.
pub fn run(action: AuditAction) -> ExitCode {
    let AuditAction::ByKey { config, log } = action;
    let config = match Config::load(&config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let read = match &log {
        Some(path) => open(path).and_then(read_log),
        None => read_log(std::io::stdin().lock()),
    };
    let by_key = match read {
        Ok(b) => b,
        Err(e) => return fail(format!("cannot read the audit log: {e}")),
    };
    let (text, all_known) = render(&by_key, &configured_keys(&config));
    print!("{text}");
    if all_known {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn open(path: &Path) -> std::io::Result<std::io::BufReader<std::fs::File>> {
    std::fs::File::open(path).map(std::io::BufReader::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(fields: &str) -> String {
        format!(
            "{{\"timestamp\":\"t\",\"level\":\"INFO\",\"fields\":{{{fields}}},\"target\":\"fedsts::audit\"}}\n"
        )
    }

    #[test]
    fn groups_issued_records_by_key_and_flags_unknown_keys() {
        let log = [
            line("\"decision\":\"issued\",\"time\":\"2026-12-02T10:00:00Z\",\"app\":\"a\",\"assertion_id\":\"_1\",\"signing_key_sha256\":\"ab\",\"signing_store\":\"pkcs11\""),
            line("\"decision\":\"issued\",\"time\":\"2026-12-01T09:00:00Z\",\"app\":\"a\",\"assertion_id\":\"_0\",\"signing_key_sha256\":\"AB\",\"signing_store\":\"pkcs11\""),
            line("\"decision\":\"refused\",\"app\":\"a\",\"signing_key_sha256\":\"\""),
            line("\"decision\":\"issued\",\"app\":\"a\",\"assertion_id\":\"_2\",\"signing_key_sha256\":\"cd\",\"signing_store\":\"file\""),
            line("\"decision\":\"issued\",\"app\":\"a\",\"assertion_id\":\"_3\""),
            "not json\n".to_owned(),
            format!("{}\n", "x".repeat(MAX_LINE_BYTES as usize + 10)),
        ]
        .concat();
        let by_key = read_log(log.as_bytes()).unwrap();
        assert_eq!(by_key.keys["ab"][0].assertion_id, "_1");
        assert_eq!(by_key.keys["ab"][1].assertion_id, "_0");
        assert_eq!(by_key.keys["cd"][0].store, "file");
        assert_eq!(by_key.unattributed, 1);
        assert_eq!(by_key.skipped, 3);
        let known = BTreeMap::from([("ab".to_owned(), "apps[0].signing_cert (a)".to_owned())]);
        let (text, all_known) = render(&by_key, &known);
        assert!(!all_known);
        assert!(
            text.contains(
                "key cd (NOT A CONFIGURED KEY; store file): 1 assertion(s), first , last "
            ),
            "{text}"
        );
        assert!(
            text.contains("key ab (configured: apps[0].signing_cert (a); store pkcs11): 2 assertion(s), first 2026-12-01T09:00:00Z, last 2026-12-02T10:00:00Z"),
            "{text}"
        );
        let only_known = BTreeMap::from([
            ("ab".to_owned(), "x".to_owned()),
            ("cd".to_owned(), "y".to_owned()),
        ]);
        assert!(render(&by_key, &only_known).1);
    }

    #[test]
    fn fingerprints_in_openssl_form_match() {
        assert_eq!(normalise_fingerprint("AB:CD:01"), "abcd01");
    }
}
