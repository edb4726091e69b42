//! The Prometheus metrics of one running service: the families, their label sets, and the text
//! a scrape returns. A leaf: it knows no request, app or directory type, only the label values
//! it is given.
//!
//! Every label value is either an app or directory name from the configuration (a bounded set
//! an operator chose) or a `&'static str` written in this binary (endpoints, refusal reasons,
//! lockout events). Nothing a client sends — user names, paths, addresses, realms — can become a
//! label, so the scrape output stays the same size however many distinct values a flood sends:
//! the types enforce it, not a filter.
//!
//! Counting is lock-free on the hot path except where `prometheus-client` itself takes a lock:
//! a family's read lock to find the labelled series (a write lock only the first time a label
//! set is seen) and a histogram's mutex for one observation.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `Content-Type` of a scrape (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Bounds (seconds) of the request and password-check latency histograms: a MEX GET takes well
/// under a millisecond, an argon2 check tens of milliseconds, an LDAP bind over a WAN a second.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A name from the configuration (app id, directory name), shared rather than copied per request.
pub type ConfigName = Arc<String>;

/// Labels of an issued token.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuedLabels {
    app: ConfigName,
    endpoint: &'static str,
    /// How the user proved themselves (`ok` on WS-Trust; `password`, `session`, `totp` passive).
    reason: &'static str,
}

/// Labels of a refusal or other decision without a token.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    app: ConfigName,
    endpoint: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabel {
    endpoint: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AppLabel {
    app: ConfigName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    app: ConfigName,
    /// `current` (signs now) or `next` (published ahead of a rollover).
    certificate: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectoryLabel {
    directory: ConfigName,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    directory: ConfigName,
    /// `accepted`, `rejected` (a credential failure), `busy`, `error`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreCallLabels {
    /// The `StateStore` method (`take_token`, `count_attempt`, `set_if_absent`, …).
    operation: &'static str,
    /// `ok` or `error`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LockoutLabels {
    /// `blocked`, `would_block` (log-only mode), `failure_counted`.
    event: &'static str,
    /// `familiar` or `unfamiliar`.
    location: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabel {
    /// The request class (`entra_passive`, `windows_logon`, `other`).
    class: &'static str,
}

/// What a token decision is counted as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counted {
    /// A token was issued.
    Issued,
    /// The request was refused.
    Refused,
    /// A browser session was ended.
    SignedOut,
}

/// The gauges of a bounded queue: how many wait or run now, and how long each waited.
#[derive(Clone, Debug)]
pub struct QueueMeter {
    /// Checks admitted (running or waiting).
    pub depth: Gauge,
    /// Seconds from admission to a free hashing thread.
    pub wait: Histogram,
}

impl Default for QueueMeter {
    fn default() -> Self {
        Self {
            depth: Gauge::default(),
            wait: Histogram::new(LATENCY_BUCKETS),
        }
    }
}

/// Every metric of the service and the registry that renders them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    issued: Family<IssuedLabels, Counter>,
    refused: Family<DecisionLabels, Counter>,
    signed_out: Family<AppLabel, Counter>,
    requests: Family<EndpointLabel, Histogram>,
    password_checks: Family<CheckLabels, Histogram>,
    state_store_calls: Family<StoreCallLabels, Histogram>,
    lockout: Family<LockoutLabels, Counter>,
    rate_limited: Family<ClassLabel, Counter>,
    open_connections: Gauge,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    directory_up: Family<DirectoryLabel, Gauge>,
    directory_health_seconds: Family<DirectoryLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
    state_store_up: Gauge,
    state_store_health_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered under the `fedsts_` prefix, none with a series yet.
    pub fn new() -> Self {
        let mut metrics = Self {
            registry: Registry::with_prefix("fedsts"),
            issued: Family::default(),
            refused: Family::default(),
            signed_out: Family::default(),
            requests: Family::new_with_constructor(latency_histogram),
            password_checks: Family::new_with_constructor(latency_histogram),
            state_store_calls: Family::new_with_constructor(latency_histogram),
            lockout: Family::default(),
            rate_limited: Family::default(),
            open_connections: Gauge::default(),
            certificate_expiry: Family::default(),
            directory_up: Family::default(),
            directory_health_seconds: Family::default(),
            state_store_up: Gauge::default(),
            state_store_health_seconds: Gauge::default(),
        };
        metrics.register();
        metrics
    }

    fn register(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tokens_issued",
            "Tokens issued, by app, endpoint and how the user proved themselves",
            self.issued.clone(),
        );
        r.register(
            "tokens_refused",
            "Token requests refused, by app, endpoint and audit reason",
            self.refused.clone(),
        );
        r.register(
            "sign_outs",
            "Passive sign-outs, by app",
            self.signed_out.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from request head to answer, by endpoint",
            self.requests.clone(),
        );
        r.register(
            "password_check_duration_seconds",
            "Time the directory took to check a password (queue wait included), by directory and result",
            self.password_checks.clone(),
        );
        r.register(
            "state_store_duration_seconds",
            "Time a state store call took (Redis round trip included), by operation and result",
            self.state_store_calls.clone(),
        );
        r.register(
            "lockout_events",
            "Smart lockout events (blocked, would_block in log-only mode, failure_counted), by location",
            self.lockout.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused by the per-client rate limit, by request class",
            self.rate_limited.clone(),
        );
        r.register(
            "open_connections",
            "HTTPS connections open now (server.connections caps)",
            self.open_connections.clone(),
        );
        r.register(
            "signing_certificate_expiry_seconds",
            "Seconds until the token-signing certificate expires (negative: expired), by app and certificate (current, next)",
            self.certificate_expiry.clone(),
        );
        r.register(
            "directory_up",
            "1 when the directory answered its health check at the last scrape",
            self.directory_up.clone(),
        );
        r.register(
            "directory_health_check_seconds",
            "Time the directory's health check took at the last scrape",
            self.directory_health_seconds.clone(),
        );
        r.register(
            "state_store_up",
            "1 when the state store answered its health check at the last scrape",
            self.state_store_up.clone(),
        );
        r.register(
            "state_store_health_check_seconds",
            "Time the state store's health check took at the last scrape",
            self.state_store_health_seconds.clone(),
        );
    }

    /// Registers the password-hash queue of directory `name` (a file directory).
    pub fn register_queue(&mut self, name: &str, queue: &QueueMeter) {
        let labelled = self
            .registry
            .sub_registry_with_label(("directory".into(), name.to_owned().into()));
        labelled.register(
            "password_queue_depth",
            "Password checks admitted to the hash queue (running or waiting)",
            queue.depth.clone(),
        );
        labelled.register(
            "password_queue_wait_seconds",
            "Time a password check waited in the hash queue for a hashing thread",
            queue.wait.clone(),
        );
    }

    /// Counts one token decision (called by the audit record, once per decision).
    pub fn decision(
        &self,
        decision: Counted,
        app: &ConfigName,
        endpoint: &'static str,
        reason: &'static str,
    ) {
        match decision {
            Counted::Issued => self.issued.get_or_create(&IssuedLabels {
                app: app.clone(),
                endpoint,
                reason,
            }),
            Counted::Refused => self.refused.get_or_create(&DecisionLabels {
                app: app.clone(),
                endpoint,
                reason,
            }),
            Counted::SignedOut => self
                .signed_out
                .get_or_create(&AppLabel { app: app.clone() }),
        }
        .inc();
    }

    /// Records how long a request on `endpoint` took.
    pub fn request(&self, endpoint: &'static str, took: Duration) {
        self.requests
            .get_or_create(&EndpointLabel { endpoint })
            .observe(took.as_secs_f64());
    }

    /// Records one password check by `directory`.
    pub fn password_check(&self, directory: &ConfigName, result: &'static str, took: Duration) {
        self.password_checks
            .get_or_create(&CheckLabels {
                directory: directory.clone(),
                result,
            })
            .observe(took.as_secs_f64());
    }

    /// Records one state store call.
    pub fn state_store_call(&self, operation: &'static str, ok: bool, took: Duration) {
        let result = if ok { "ok" } else { "error" };
        self.state_store_calls
            .get_or_create(&StoreCallLabels { operation, result })
            .observe(took.as_secs_f64());
    }

    /// Counts a lockout event at a location class.
    pub fn lockout_event(&self, event: &'static str, location: &'static str) {
        self.lockout
            .get_or_create(&LockoutLabels { event, location })
            .inc();
    }

    /// Counts a request of `class` the rate limit refused.
    pub fn rate_limited(&self, class: &'static str) {
        self.rate_limited.get_or_create(&ClassLabel { class }).inc();
    }

    /// Sets the open-connection gauge (read from the admission counter at scrape time).
    pub fn set_open_connections(&self, open: usize) {
        self.open_connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Sets the seconds left on an app's `current` or `next` signing certificate.
    pub fn set_certificate_expiry(
        &self,
        app: &ConfigName,
        certificate: &'static str,
        seconds_left: i64,
    ) {
        self.certificate_expiry
            .get_or_create(&CertificateLabels {
                app: app.clone(),
                certificate,
            })
            .set(seconds_left);
    }

    /// Forgets an app's `next` certificate gauge once none is published.
    pub fn clear_certificate_expiry(&self, app: &ConfigName, certificate: &'static str) {
        self.certificate_expiry.remove(&CertificateLabels {
            app: app.clone(),
            certificate,
        });
    }

    /// Sets a directory's health at this scrape.
    pub fn set_directory_health(&self, directory: &ConfigName, up: bool, took: Duration) {
        let label = DirectoryLabel {
            directory: directory.clone(),
        };
        self.directory_up.get_or_create(&label).set(i64::from(up));
        self.directory_health_seconds
            .get_or_create(&label)
            .set(took.as_secs_f64());
    }

    /// Sets the state store's health at this scrape.
    pub fn set_state_store_health(&self, up: bool, took: Duration) {
        self.state_store_up.set(i64::from(up));
        self.state_store_health_seconds.set(took.as_secs_f64());
    }

    /// The scrape text (Prometheus text format 0.0.4).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would leave a partial text that
        // a scraper rejects as a whole, which is the right failure.
        if prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry).is_err()
        {
            tracing::warn!("metrics: the scrape text could not be encoded");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn decisions_count_per_label_set_and_render_as_prometheus_text() {
        let metrics = Metrics::new();
        let app: ConfigName = Arc::new("contoso".into());
        metrics.decision(Counted::Issued, &app, "trust/13/usernamemixed", "ok");
        metrics.decision(Counted::Issued, &app, "trust/13/usernamemixed", "ok");
        metrics.decision(Counted::Refused, &app, "wsfed/signin", "wrong_password");
        metrics.decision(Counted::SignedOut, &app, "wsfed/signout", "ok");
        metrics.request("trust/13/usernamemixed", Duration::from_millis(30));
        let text = metrics.encode();
        assert_eq!(
            sample(
                &text,
                r#"fedsts_tokens_issued_total{app="contoso",endpoint="trust/13/usernamemixed",reason="ok"}"#
            ),
            Some(2.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"fedsts_tokens_refused_total{app="contoso",endpoint="wsfed/signin",reason="wrong_password"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert_eq!(
            sample(&text, r#"fedsts_sign_outs_total{app="contoso"}"#),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                r#"fedsts_request_duration_seconds_bucket{endpoint="trust/13/usernamemixed",le="0.05"}"#
            ),
            Some(1.0),
            "{text}"
        );
        assert!(text.contains("# TYPE fedsts_tokens_issued_total counter"));
    }

    #[test]
    fn a_queue_renders_under_its_directory_label() {
        let mut metrics = Metrics::new();
        let queue = QueueMeter::default();
        metrics.register_queue("users", &queue);
        queue.depth.set(3);
        queue.wait.observe(0.002);
        let text = metrics.encode();
        assert_eq!(
            sample(&text, r#"fedsts_password_queue_depth{directory="users"}"#),
            Some(3.0),
            "{text}"
        );
        assert_eq!(
            sample(
                &text,
                r#"fedsts_password_queue_wait_seconds_count{directory="users"}"#
            ),
            Some(1.0),
            "{text}"
        );
    }
}
