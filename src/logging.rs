//! The log output on stderr: text (default) or JSON lines (`FEDSTS_LOG_FORMAT=json`), filtered by
//! `FEDSTS_LOG`.
//!
//! Logged fields carry what clients sent (user names, User-Agent), so no field may shape the
//! output. A user name with `&#10;` is a newline after XML decoding and would forge a whole audit
//! line; ESC and other control characters would drive the reader's terminal; a space and `=`
//! would forge a `key=value` pair on the line. The text format therefore writes every field
//! with [`EscapingFields`]: values with anything but plain printable characters are quoted,
//! and control characters become `\n`, `\r`, `\t` or `\u{..}`. JSON is escaped by serde, which
//! leaves DEL, C1 controls (U+009B is a CSI on some terminals) and the Unicode separators raw
//! inside strings; [`JsonEscaping`] writes those as `\uXXXX`.
//! Colour is used only when stderr is a terminal and `NO_COLOR` is unset.

use std::fmt;
use std::io::IsTerminal as _;

use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::{MakeVisitor, VisitFmt, VisitOutput};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// One human-readable line per event, fields escaped by [`EscapingFields`].
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The format `FEDSTS_LOG_FORMAT` asks for.
    pub fn from_env() -> Self {
        match std::env::var("FEDSTS_LOG_FORMAT") {
            Ok(v) if v == "json" => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

/// Installs the process-wide subscriber: stderr, `FEDSTS_LOG` filter (default `info`),
/// `FEDSTS_LOG_FORMAT`, colour only on a terminal.
pub fn init() {
    let filter = EnvFilter::try_from_env("FEDSTS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    subscriber(filter, LogFormat::from_env(), colour, std::io::stderr)
        .try_init()
        .unwrap_or_else(|_| eprintln!("fedsts: a log subscriber was already installed"));
}

/// The subscriber fedsts logs through, writing to `writer` (tests pass a buffer).
pub fn subscriber<W>(
    filter: EnvFilter,
    format: LogFormat,
    colour: bool,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => Box::new(
            builder
                .with_writer(JsonEscaping(writer))
                .with_ansi(false)
                .json()
                .finish(),
        ),
        LogFormat::Text => Box::new(
            builder
                .with_writer(writer)
                .with_ansi(colour)
                .fmt_fields(EscapingFields)
                .finish(),
        ),
    }
}

/// Field formatter of the text format: `message` as is (escaped), others as `name=value`,
/// space-separated, values quoted when they hold more than plain printable characters.
#[derive(Clone, Copy, Debug, Default)]
pub struct EscapingFields;

impl<'w> MakeVisitor<Writer<'w>> for EscapingFields {
    type Visitor = EscapingVisitor<'w>;

    fn make_visitor(&self, target: Writer<'w>) -> Self::Visitor {
        EscapingVisitor {
            writer: target,
            result: Ok(()),
            first: true,
        }
    }
}

/// Writes one event's (or span's) fields for [`EscapingFields`].
pub struct EscapingVisitor<'w> {
    writer: Writer<'w>,
    result: fmt::Result,
    first: bool,
}

impl EscapingVisitor<'_> {
    fn write(&mut self, field: &Field, text: &str) {
        if self.result.is_err() {
            return;
        }
        let separator = if self.first { "" } else { " " };
        self.first = false;
        // Pieces written straight to the line: `write!` would pad each one through a Formatter,
        // and the audit line has some twenty fields (callgrind).
        let out = &mut self.writer;
        self.result = out.write_str(separator).and_then(|()| {
            if field.name() == "message" {
                write_escaped(out, text)
            } else {
                out.write_str(field.name())?;
                out.write_char('=')?;
                write_quoted(out, text)
            }
        });
    }
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.write(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.write(field, &format!("{value:?}"));
    }
}

impl VisitOutput<fmt::Result> for EscapingVisitor<'_> {
    fn finish(self) -> fmt::Result {
        self.result
    }
}

impl VisitFmt for EscapingVisitor<'_> {
    fn writer(&mut self) -> &mut dyn fmt::Write {
        &mut self.writer
    }
}

/// The writer of the JSON format: the non-ASCII unsafe characters serde_json leaves raw become
/// JSON `\uXXXX` escapes (outside strings JSON is ASCII, so the value stays the same). The fmt
/// layer hands over each line in one write; a buffer that is not UTF-8 is passed on unchanged.
struct JsonEscaping<M>(M);

impl<'w, M: MakeWriter<'w>> MakeWriter<'w> for JsonEscaping<M> {
    type Writer = JsonEscapingWriter<M::Writer>;

    fn make_writer(&'w self) -> Self::Writer {
        JsonEscapingWriter(self.0.make_writer())
    }
}

/// See [`JsonEscaping`].
struct JsonEscapingWriter<W>(W);

impl<W: std::io::Write> std::io::Write for JsonEscapingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) if text.chars().any(needs_json_escape) => {
                self.0.write_all(json_escaped(text).as_bytes())?;
            }
            _ => self.0.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Unsafe characters serde_json does not escape (it escapes everything below U+0020).
fn needs_json_escape(c: char) -> bool {
    u32::from(c) >= 0x7f && is_unsafe(c)
}

fn json_escaped(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if needs_json_escape(c) {
            // Every unsafe character is in the Basic Multilingual Plane: one \uXXXX.
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            escaped.push(c);
        }
    }
    escaped
}

/// Characters that end a line or steer a terminal or a reader: C0, DEL, C1, the Unicode line and
/// paragraph separators, and the bidirectional overrides and isolates.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `c` as an escape sequence.
fn write_escape(out: &mut impl fmt::Write, c: char) -> fmt::Result {
    match c {
        '\n' => out.write_str("\\n"),
        '\r' => out.write_str("\\r"),
        '\t' => out.write_str("\\t"),
        c => write!(out, "\\u{{{:x}}}", u32::from(c)),
    }
}

/// Writes text with unsafe characters escaped (the message of an event); text without any is
/// written in one piece.
fn write_escaped(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    if !text.chars().any(is_unsafe) {
        return out.write_str(text);
    }
    for c in text.chars() {
        if is_unsafe(c) {
            write_escape(out, c)?;
        } else {
            out.write_char(c)?;
        }
    }
    Ok(())
}

fn is_plain(text: &str) -> bool {
    if text.is_ascii() {
        // Every audit value but a foreign name: printable ASCII other than space, bytewise.
        return !text.is_empty()
            && text
                .bytes()
                .all(|b| matches!(b, b'!'..=b'~') && !matches!(b, b'"' | b'=' | b'\\'));
    }
    !text
        .chars()
        .any(|c| is_unsafe(c) || c.is_whitespace() || matches!(c, '"' | '=' | '\\'))
}

/// Writes a field value: bare when it is plain (non-empty, no space, quote, `=`, backslash or
/// unsafe character), else in double quotes with `"` and `\` escaped too, so a value never
/// looks like more than one field.
fn write_quoted(out: &mut impl fmt::Write, text: &str) -> fmt::Result {
    if is_plain(text) {
        return out.write_str(text);
    }
    out.write_char('"')?;
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.write_char('\\')?;
                out.write_char(c)?;
            }
            c if is_unsafe(c) => write_escape(out, c)?,
            c => out.write_char(c)?,
        }
    }
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bare_only_when_plain() {
        let quoted = |text: &str| {
            let mut out = String::new();
            write_quoted(&mut out, text).unwrap();
            out
        };
        let escaped = |text: &str| {
            let mut out = String::new();
            write_escaped(&mut out, text).unwrap();
            out
        };
        assert_eq!(quoted("alice@example.com"), "alice@example.com");
        assert_eq!(quoted(""), "\"\"");
        assert_eq!(quoted("a decision=issued"), "\"a decision=issued\"");
        assert_eq!(
            quoted("x\ny\r\u{1b}[31m\"\\"),
            "\"x\\ny\\r\\u{1b}[31m\\\"\\\\\""
        );
        assert_eq!(quoted("a\u{2028}\u{202e}"), "\"a\\u{2028}\\u{202e}\"");
        assert_eq!(escaped("line\nnext \u{9b}"), "line\\nnext \\u{9b}");
        assert_eq!(escaped("plain text"), "plain text");
        assert_eq!(
            json_escaped("{\"u\":\"a\u{9b}\u{2028}\u{7f}é\"}\n"),
            "{\"u\":\"a\\u009b\\u2028\\u007fé\"}\n"
        );
    }
}
