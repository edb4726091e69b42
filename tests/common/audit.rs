//! Captures the `fedsts::audit` JSON records written while a test runs (current-thread tokio
//! tests: the server's tasks run on the test's thread, under its default subscriber).
#![allow(dead_code)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracing::subscriber::DefaultGuard;

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
    /// Starts capturing on this thread until the guard drops.
    pub fn capture() -> (Self, DefaultGuard) {
        let log = Self::default();
        let buffer = log.0.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter("fedsts::audit=info")
            .with_writer(move || Sink(buffer.clone()))
            .finish();
        (log, tracing::subscriber::set_default(subscriber))
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
