//! Test support: loads the request fixtures in `soap-fixtures/` with their placeholders filled in,
//! and reads `soap-fixtures/expectations.toml`. Shared by the parse-level test and the server
//! integration test; each uses only part of it.
#![allow(dead_code)] // shared support: every test crate that includes it uses a different subset

use std::path::PathBuf;

use serde::Deserialize;
use time::{Duration, OffsetDateTime, UtcOffset};

/// The expected result of replaying one fixture (one `[[fixture]]` table of expectations.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Fixture file name inside `soap-fixtures/`.
    pub file: String,
    /// Which client (or attack) the fixture stands for.
    pub client: String,
    /// Endpoint kind, e.g. `usernamemixed`.
    pub binding: String,
    /// Endpoint path segment: `13` or `2005`.
    pub version: String,
    /// How `{{CREATED}}`/`{{EXPIRES}}` are written: `seconds` or `msalnet`.
    pub time_format: TimeFormat,
    /// `{{CREATED}}` = now + this many seconds.
    pub created_offset_seconds: i64,
    /// `{{EXPIRES}}` = now + this many seconds.
    pub expires_offset_seconds: i64,
    /// User-Agent the replaying client should send, if any.
    pub user_agent: Option<String>,
    /// Number of spaces substituted for `{{PADDING}}`.
    #[serde(default)]
    pub padding_bytes: usize,
    /// `success` or `fault`.
    pub outcome: Outcome,
    /// Expected HTTP status.
    pub http_status: u16,
    /// Local name of the fault subcode, for faults with a SOAP body.
    pub fault_subcode: Option<String>,
    /// Namespace of the fault subcode.
    pub fault_subcode_ns: Option<String>,
    /// Which layer refuses the request, for faults.
    pub refused_by: Option<RefusedBy>,
}

/// How a fixture writes its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeFormat {
    /// `2024-01-01T00:00:00Z`.
    Seconds,
    /// `2024-01-01T00:00:00.068Z` (MSAL.NET's literal milliseconds).
    Msalnet,
}

/// Whether a fixture must succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// HTTP 200 with an RSTR.
    Success,
    /// A SOAP fault or an HTTP error.
    Fault,
}

/// The layer expected to refuse a fixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefusedBy {
    /// The body-size limit, before parsing.
    Size,
    /// `xml::parse`.
    Xml,
    /// `soap::parse_envelope`.
    Soap,
    /// `wstrust::parse_usernamemixed`.
    Wstrust,
}

/// Values for the per-request placeholders.
#[derive(Debug, Clone, Copy)]
pub struct Vars<'a> {
    /// The instant the timestamps are offset from.
    pub now: OffsetDateTime,
    /// `{{USERNAME}}`.
    pub username: &'a str,
    /// `{{PASSWORD}}`.
    pub password: &'a str,
    /// `{{MESSAGE_ID}}` (the whole value, e.g. `urn:uuid:…`).
    pub message_id: &'a str,
    /// `{{TO}}`, the endpoint URL.
    pub to: &'a str,
}

impl Expectation {
    /// The fixture with every placeholder filled in for this expectation.
    pub fn render(&self, vars: &Vars<'_>) -> String {
        let created = format_time(
            vars.now + Duration::seconds(self.created_offset_seconds),
            self.time_format,
        );
        let expires = format_time(
            vars.now + Duration::seconds(self.expires_offset_seconds),
            self.time_format,
        );
        let padding = " ".repeat(self.padding_bytes);
        let rendered = load(
            &self.file,
            &[
                ("CREATED", &created),
                ("EXPIRES", &expires),
                ("USERNAME", vars.username),
                ("PASSWORD", vars.password),
                ("MESSAGE_ID", vars.message_id),
                ("TO", vars.to),
                ("PADDING", &padding),
            ],
        );
        assert!(
            !rendered.contains("{{"),
            "{} has an unknown placeholder",
            self.file
        );
        rendered
    }

    /// The endpoint path for this fixture under app `app_id`, e.g.
    /// `/wsfed/demo/trust/13/usernamemixed`.
    pub fn endpoint_path(&self, app_id: &str) -> String {
        format!("/wsfed/{app_id}/trust/{}/{}", self.version, self.binding)
    }
}

/// The `soap-fixtures/` directory of this crate.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("soap-fixtures")
}

/// Reads fixture `name` and replaces each `{{KEY}}` by its value, XML-escaped.
pub fn load(name: &str, vars: &[(&str, &str)]) -> String {
    let path = fixtures_dir().join(name);
    let mut text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    for (key, value) in vars {
        text = text.replace(&format!("{{{{{key}}}}}"), &escape(value));
    }
    text
}

/// All expectations, in file order.
pub fn expectations() -> Vec<Expectation> {
    #[derive(Deserialize)]
    struct File {
        fixture: Vec<Expectation>,
    }
    let path = fixtures_dir().join("expectations.toml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
    let file: File =
        toml::from_str(&text).unwrap_or_else(|err| panic!("invalid {}: {err}", path.display()));
    file.fixture
}

/// A timestamp as the fixture's client writes it (always UTC).
pub fn format_time(instant: OffsetDateTime, format: TimeFormat) -> String {
    let utc = instant.to_offset(UtcOffset::UTC);
    let seconds = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    );
    match format {
        TimeFormat::Seconds => seconds + "Z",
        TimeFormat::Msalnet => seconds + ".068Z",
    }
}

fn escape(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}
