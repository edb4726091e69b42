//! The Prometheus scrape (`[metrics]`): `GET /metrics` on its own plain-HTTP listener
//! (`metrics.listen`) and/or `GET {metrics.path}` on the HTTPS listener, both only to clients in
//! `metrics.allow`. The client is the socket peer unless one of `server.trusted_proxies`
//! forwarded the request (the same walk the rate limits use), so a client cannot write its way
//! into the allow-list with `X-Forwarded-For`.
//!
//! Scrapes run one at a time: each one probes the directories and the state store, and a
//! burst of scrapes must not become a burst of LDAP binds.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::Serving;
use super::limits::{Admission, ConnectionLimits, LogThrottle, Permit};
use super::stall::WriteTimeout;
use super::{Accepting, FLOOD_LOG_INTERVAL, HEADER_READ_TIMEOUT, forwarded_chain, into_response};
use crate::config::MetricsConfig;
use crate::metrics::CONTENT_TYPE;
use crate::net::Cidr;
use crate::policy::TrustedProxies;
use crate::sts::HttpReply;

/// Most metrics connections open at once on the metrics listener.
const MAX_METRICS_CONNECTIONS: usize = 8;
/// Longest a metrics connection lives (a scrape probes with a 2 s timeout each).
const METRICS_CONNECTION_DEADLINE: Duration = Duration::from_secs(30);
/// The path on the metrics listener.
pub const LISTENER_PATH: &str = "/metrics";

/// Who may scrape, and the one-at-a-time gate.
#[derive(Debug)]
pub struct Scrape {
    /// The service a reload may replace: each scrape reads the one serving now.
    serving: Arc<Serving>,
    allow: Vec<Cidr>,
    proxies: TrustedProxies,
    /// The path on the HTTPS listener, when configured.
    path: Option<String>,
    /// HTTPS connections open (the gauge reads it at scrape time).
    https: Option<Arc<Admission>>,
    one_at_a_time: tokio::sync::Mutex<()>,
    refusals: Mutex<LogThrottle>,
}

/// The request context a scrape is judged on.
pub struct Scraper {
    /// Socket peer.
    pub peer: IpAddr,
    /// Every `X-Forwarded-For` line, joined (believed only from a trusted proxy).
    pub forwarded_for: Option<String>,
    /// Raw `X-MS-Forwarded-Client-IP` (believed only when configured so).
    pub ms_forwarded_client_ip: Option<String>,
}

impl Scraper {
    /// The scraper of a request from `peer` with `headers`.
    pub fn of(peer: IpAddr, headers: &http::HeaderMap) -> Self {
        Self {
            peer,
            forwarded_for: forwarded_chain(headers),
            ms_forwarded_client_ip: headers
                .get("x-ms-forwarded-client-ip")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        }
    }
}

impl Scrape {
    /// The scrape of the service `serving` holds as `config` allows it, counting the HTTPS
    /// connections of `https`. Who may scrape is fixed at start (`metrics.*` is restart-only).
    pub fn new(
        serving: Arc<Serving>,
        config: &MetricsConfig,
        https: Option<Arc<Admission>>,
    ) -> Self {
        let proxies = serving.get().sts.policies().proxies.clone();
        Self {
            serving,
            allow: config.allowed_networks(),
            proxies,
            path: config.path.clone(),
            https,
            one_at_a_time: tokio::sync::Mutex::new(()),
            refusals: Mutex::new(LogThrottle::new(FLOOD_LOG_INTERVAL)),
        }
    }

    /// Whether `metrics.path` serves the scrape on the HTTPS listener.
    pub fn is_configured_on_https(&self) -> bool {
        self.path.is_some()
    }

    /// Whether `path` is the scrape path on the HTTPS listener.
    pub fn is_https_path(&self, path: &str) -> bool {
        self.path.as_deref() == Some(path)
    }

    /// The answer to a scrape: the text for an allowed client, 403 (and a throttled log line)
    /// for anyone else, 405 for a method other than GET.
    pub async fn answer(&self, method: &http::Method, scraper: &Scraper) -> HttpReply {
        let client = self
            .proxies
            .client_addresses(
                scraper.peer,
                scraper.forwarded_for.as_deref(),
                scraper.ms_forwarded_client_ip.as_deref(),
            )
            .client;
        if !self.allow.iter().any(|network| network.contains(client)) {
            self.log_refusal(client);
            return HttpReply::text(403, "metrics are not served to this address\n");
        }
        if method != http::Method::GET {
            let mut reply = HttpReply::text(405, "method not allowed\n");
            reply.headers.push(("allow", "GET".into()));
            return reply;
        }
        let _one = self.one_at_a_time.lock().await;
        let sts = self.serving.get().sts.clone();
        let metrics = sts.metrics();
        if let Some(https) = &self.https {
            metrics.set_open_connections(https.open());
        }
        sts.refresh_metrics().await;
        HttpReply {
            status: 200,
            content_type: CONTENT_TYPE,
            headers: Vec::new(),
            body: metrics.encode(),
        }
    }

    fn log_refusal(&self, client: IpAddr) {
        let mut throttle = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(held_back) = throttle.allow(Instant::now()) {
            tracing::warn!(
                client_ip = %client,
                reason = "metrics_not_allowed",
                refused_since_last_line = held_back,
                "metrics scrape refused: the client is not in metrics.allow"
            );
        }
    }
}

/// Serves `GET /metrics` on `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, scrape: Arc<Scrape>, write_timeout: Duration) {
    let limits = ConnectionLimits {
        max: MAX_METRICS_CONNECTIONS,
        max_per_address: MAX_METRICS_CONNECTIONS,
        write_timeout,
    };
    let admission = Admission::new(limits, TrustedProxies::default());
    let mut accepting = Accepting::new(&listener, "metrics");
    let mut refusals = LogThrottle::new(FLOOD_LOG_INTERVAL);
    loop {
        let (tcp, peer) = accepting.next().await;
        match admission.admit(peer.ip()) {
            Ok(permit) => {
                tokio::spawn(connection(tcp, scrape.clone(), write_timeout, permit));
            }
            Err(_) => {
                if let Some(held_back) = refusals.allow(Instant::now()) {
                    tracing::warn!(
                        peer = %peer.ip(),
                        refused_since_last_line = held_back,
                        "metrics connection refused: {MAX_METRICS_CONNECTIONS} open"
                    );
                }
            }
        }
    }
}

async fn connection(tcp: TcpStream, scrape: Arc<Scrape>, write_timeout: Duration, _permit: Permit) {
    let Ok(peer) = tcp.peer_addr() else {
        return;
    };
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let scrape = scrape.clone();
        async move {
            let reply = if req.uri().path() == LISTENER_PATH {
                let scraper = Scraper::of(peer.ip(), req.headers());
                scrape.answer(req.method(), &scraper).await
            } else {
                HttpReply::text(404, "this listener serves only GET /metrics\n")
            };
            Ok::<_, Infallible>(into_response(reply))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(16 * 1024);
    let io = TokioIo::new(WriteTimeout::new(tcp, write_timeout));
    let conn = builder.serve_connection(io, service);
    match tokio::time::timeout(METRICS_CONNECTION_DEADLINE, conn).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics connection ended with an error"),
        Err(_) => tracing::debug!("metrics connection reached its deadline"),
        Ok(Ok(())) => {}
    }
}
