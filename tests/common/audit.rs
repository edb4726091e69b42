//! Captures the `fedsts::audit` JSON records written while a test runs (current-thread tokio
//! tests: the server's tasks run on the test's thread, under its default subscriber).
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};

use tracing::subscriber::DefaultGuard;

/// Tests of one binary capture one at a time: per-thread default subscribers set and dropped
/// by tests running side by side race in tracing's callsite-interest cache, and a capture can
/// then miss every record (seen once: 0 of 60).
static ONE_CAPTURE: Mutex<()> = Mutex::new(());

/// Keeps the capture running; dropping it restores the previous subscriber, then lets the next
/// test capture.
pub struct CaptureGuard {
    _subscriber: DefaultGuard,
    _turn: MutexGuard<'static, ()>,
}

/// Collected log output.
#[derive(Clone, Default)]
pub struct AuditLog(Arc<Mutex<Vec<u8>>>);

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AuditLog {
    /// Starts capturing on this thread until the guard drops (waits for another test's capture
    /// to end first).
    pub fn capture() -> (Self, CaptureGuard) {
        let turn = ONE_CAPTURE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let log = Self::default();
        let buffer = log.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("fedsts::audit=info")
            .with_writer(move || Sink(buffer.clone()))
            .finish();
        let guard = CaptureGuard {
            _subscriber: tracing::subscriber::set_default(subscriber),
            _turn: turn,
        };
        (log, guard)
    }

    /// The JSON lines written so far, as a log file would hold them.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Every audit record so far, as the `fields` objects of the JSON lines.
    pub fn records(&self) -> Vec<serde_json::Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
            .filter(|v| v["target"] == "fedsts::audit")
            .map(|v| v["fields"].clone())
            .collect()
    }

    /// The `reason` of every record, in order.
    pub fn reasons(&self) -> Vec<String> {
        self.records()
            .iter()
            .map(|r| r["reason"].as_str().unwrap().to_owned())
            .collect()
    }
}
