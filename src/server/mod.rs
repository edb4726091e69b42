//! The HTTPS listener: TLS accept, HTTP/1.1, routing, body limits, timeouts and graceful
//! shutdown. It never parses XML: it turns a request into an [`Endpoint`] plus body bytes and
//! hands them to [`Sts::handle`].

mod health;
pub mod limits;
pub mod metrics;
pub mod router;
mod stall;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::autoroll::Swappable;
use crate::config::MetricsConfig;
use crate::protocol::wstrust::{self, FaultKind};
use crate::secret::Secret;
use crate::sts::{Endpoint, HttpReply, RequestInfo, Sts};
use limits::{Admission, LogThrottle, Permit, Refused};
pub use limits::{ConnectionLimits, raise_fd_limit};
use metrics::{Scrape, Scraper};
use stall::WriteTimeout;

/// Largest request body we read on any endpoint (RSTs are under 4 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time allowed for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to receive the request head (also bounds an idle keep-alive connection: hyper
/// starts this timer whenever it waits for the next request).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to receive the request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Shortest and longest pause after a failed accept (out of descriptors, say): never a spin.
const ACCEPT_BACKOFF: (Duration, Duration) = (Duration::from_millis(10), Duration::from_secs(1));
/// At most one log line per this interval for accept errors and for refused connections.
const FLOOD_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// Largest `X-Forwarded-For` kept, from its right end (the end our proxies write).
const MAX_FORWARDED_HEADER_BYTES: usize = 2048;

/// What [`serve`] runs.
pub struct Server {
    /// The HTTPS listener.
    pub listener: TcpListener,
    /// The plain-HTTP `GET /healthz` listener (`server.connections.health_listen`), if any.
    pub health_listener: Option<TcpListener>,
    /// The plain-HTTP `GET /metrics` listener (`metrics.listen`), if any.
    pub metrics_listener: Option<TcpListener>,
    /// `[metrics]`: the scrape path on this listener and who may scrape.
    pub metrics: MetricsConfig,
    /// The service and its TLS identity; a reload (SIGHUP) replaces them.
    pub serving: Arc<Serving>,
    /// Connection caps and write timeout.
    pub limits: ConnectionLimits,
}

/// What the listener serves now, replaced as a whole by a reload: each TLS handshake takes the
/// TLS configuration of the moment it starts (an open connection keeps its certificate), each
/// request the service of the moment it arrives.
pub type Serving = Swappable<Service>;

/// One configuration in service: the STS and the TLS identity built from the same file.
#[derive(Debug)]
pub struct Service {
    /// The service.
    pub sts: Arc<Sts>,
    /// TLS identity and client-certificate policy.
    pub tls: Arc<rustls::ServerConfig>,
}

impl Server {
    /// A server of `sts` with TLS configuration `tls` (not yet listening for reloads: the
    /// caller keeps [`Server::serving`] to replace them).
    pub fn new(
        listener: TcpListener,
        health_listener: Option<TcpListener>,
        sts: Arc<Sts>,
        tls: Arc<rustls::ServerConfig>,
        limits: ConnectionLimits,
    ) -> Self {
        Self {
            listener,
            health_listener,
            metrics_listener: None,
            metrics: MetricsConfig::default(),
            serving: Arc::new(Serving::new(Service { sts, tls })),
            limits,
        }
    }

    /// The same server with the Prometheus scrape on `listener` (`metrics.listen`) and/or the
    /// HTTPS path `config` names.
    pub fn with_metrics(self, listener: Option<TcpListener>, config: MetricsConfig) -> Self {
        Self {
            metrics_listener: listener,
            metrics: config,
            ..self
        }
    }
}

/// Accepts connections until `shutdown` completes, then lets in-flight requests finish (up to a
/// grace period). Connections past the caps are closed at once, so descriptors stay bounded and
/// the health listener keeps answering.
pub async fn serve(server: Server, shutdown: impl Future<Output = ()>) {
    let Server {
        listener,
        health_listener,
        metrics_listener,
        metrics,
        serving,
        limits,
    } = server;
    let graceful = GracefulShutdown::new();
    let health = health_listener
        .map(|l| tokio::spawn(health::serve(l, serving.clone(), limits.write_timeout)));
    let rollover = tokio::spawn(rollover_ticks(serving.clone()));
    let write_timeout = limits.write_timeout;
    // The trusted proxies are restart-only at a reload: the caps judge addresses by the
    // list the server started with.
    let admission = Admission::new(limits, serving.get().sts.policies().proxies.clone());
    let scrape = Arc::new(Scrape::new(
        serving.clone(),
        &metrics,
        Some(admission.clone()),
    ));
    let metrics_task =
        metrics_listener.map(|l| tokio::spawn(metrics::serve(l, scrape.clone(), write_timeout)));
    let https_scrape = scrape.is_configured_on_https().then_some(scrape);
    let mut accepting = Accepting::new(&listener, "https");
    let mut refusals = LogThrottle::new(FLOOD_LOG_INTERVAL);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            pair = accepting.next() => pair,
            () = &mut shutdown => break,
        };
        match admission.admit(peer.ip()) {
            Ok(permit) => {
                let connection = Connection {
                    acceptor: TlsAcceptor::from(serving.get().tls.clone()),
                    serving: serving.clone(),
                    scrape: https_scrape.clone(),
                    watcher: graceful.watcher(),
                    write_timeout: admission.limits().write_timeout,
                    _permit: permit,
                };
                tokio::spawn(connection.run(tcp, peer));
            }
            Err(refused) => log_refusal(&mut refusals, refused, peer, &admission),
        }
    }
    for task in [health, metrics_task].into_iter().flatten() {
        task.abort();
    }
    rollover.abort();
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
}

/// Runs the automatic rollover at start and then every `TICK_INTERVAL`, on the service in
/// service at each tick.
async fn rollover_ticks(serving: Arc<Serving>) {
    let mut interval = tokio::time::interval(crate::autoroll::TICK_INTERVAL);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let sts = serving.get().sts.clone();
        sts.rollover_tick().await;
    }
}

fn log_refusal(
    throttle: &mut LogThrottle,
    refused: Refused,
    peer: SocketAddr,
    admission: &Admission,
) {
    if let Some(held_back) = throttle.allow(Instant::now()) {
        let limits = admission.limits();
        tracing::warn!(
            reason = refused.as_str(),
            peer = %peer.ip(),
            max = limits.max,
            max_per_address = limits.max_per_address,
            refused_since_last_line = held_back,
            "connection refused: cap reached"
        );
    }
}

/// A listener's accept loop state: back-off after errors and their throttled log line.
struct Accepting<'a> {
    listener: &'a TcpListener,
    name: &'static str,
    backoff: Duration,
    errors: LogThrottle,
}

impl<'a> Accepting<'a> {
    fn new(listener: &'a TcpListener, name: &'static str) -> Self {
        Self {
            listener,
            name,
            backoff: ACCEPT_BACKOFF.0,
            errors: LogThrottle::new(FLOOD_LOG_INTERVAL),
        }
    }

    /// The next connection. A failed accept sleeps before the next try, doubling the pause up
    /// to a second while errors continue.
    async fn next(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok(pair) => {
                    self.backoff = ACCEPT_BACKOFF.0;
                    return pair;
                }
                Err(e) => {
                    if let Some(held_back) = self.errors.allow(Instant::now()) {
                        tracing::warn!(
                            listener = self.name,
                            error = %e,
                            errors_since_last_line = held_back,
                            pause_ms = self.backoff.as_millis(),
                            "accept failed: pausing"
                        );
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(ACCEPT_BACKOFF.1);
                }
            }
        }
    }
}

/// One admitted HTTPS connection; its slot under the caps is held until it ends. Its TLS
/// identity is the one in service when it was accepted; each of its requests is answered by the
/// service in service when that request arrives.
struct Connection {
    acceptor: TlsAcceptor,
    serving: Arc<Serving>,
    /// The scrape, when `metrics.path` serves it on this listener.
    scrape: Option<Arc<Scrape>>,
    watcher: Watcher,
    write_timeout: Duration,
    _permit: Permit,
}

impl Connection {
    async fn run(self, tcp: TcpStream, peer: SocketAddr) {
        // Each answer leaves in one write; without this, a reply that the TLS layer happens to
        // split waits for the client's delayed ACK (Nagle): a 40 ms stall in the tail.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(peer = %peer, error = %e, "could not set TCP_NODELAY");
        }
        let io = WriteTimeout::new(tcp, self.write_timeout);
        let mut tls_stream =
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, self.acceptor.accept(io)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            };
        if !first_request_arrives(&mut tls_stream).await {
            tracing::debug!(peer = %peer, "no request within the header timeout after the handshake");
            return;
        }
        let device_certificate = verified_client_certificate(&tls_stream);
        let (serving, scrape) = (self.serving, self.scrape);
        let service = service_fn(move |req| {
            let (sts, scrape) = (serving.get().sts.clone(), scrape.clone());
            let device_certificate = device_certificate.clone();
            async move {
                let started = Instant::now();
                let (endpoint, response) =
                    handle(&sts, scrape.as_deref(), req, peer, device_certificate).await;
                sts.metrics().request(endpoint, started.elapsed());
                Ok::<_, Infallible>(response)
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(64 * 1024);
        let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
        }
    }
}

/// Waits (at most [`HEADER_READ_TIMEOUT`], as hyper would) until the client sends something
/// after the handshake, before hyper's connection exists: hyper reserves its 8 KiB read buffer
/// as soon as it waits for a request, so a handshaken, silent connection would hold it for
/// nothing. True at once when the handshake's last read already brought a request (rustls holds
/// it decrypted); false when the time runs out (the connection is then closed, as hyper closes
/// an idle one). An end of stream or a TLS error also counts as "something": hyper sees it.
async fn first_request_arrives(
    tls_stream: &mut tokio_rustls::server::TlsStream<WriteTimeout<TcpStream>>,
) -> bool {
    let (io, connection) = tls_stream.get_mut();
    match connection.process_new_packets() {
        Ok(state) if state.plaintext_bytes_to_read() > 0 || state.peer_has_closed() => {
            return true;
        }
        Ok(_) => {}
        Err(_) => return true,
    }
    tokio::time::timeout(HEADER_READ_TIMEOUT, io.get_ref().readable())
        .await
        .is_ok()
}

/// The leaf of the client certificate chain, which the TLS verifier accepted (device CA).
fn verified_client_certificate<Io>(
    stream: &tokio_rustls::server::TlsStream<Io>,
) -> Option<Arc<[u8]>> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::from(leaf.as_ref()))
}

/// Answers one HTTPS request; also returns the endpoint's name for the latency metric.
async fn handle(
    sts: &Sts,
    scrape: Option<&Scrape>,
    req: Request<Incoming>,
    peer: SocketAddr,
    device_certificate: Option<Arc<[u8]>>,
) -> (&'static str, Response<Full<Bytes>>) {
    if let Some(scrape) = scrape.filter(|s| s.is_https_path(req.uri().path())) {
        let scraper = Scraper::of(peer.ip(), req.headers());
        let reply = scrape.answer(req.method(), &scraper).await;
        return ("metrics", into_response(reply));
    }
    let adfs_app = sts
        .apps()
        .find(|a| a.config.adfs_paths)
        .map(|a| a.config.id.as_str());
    let endpoint = router::route_with_adfs(req.method(), req.uri().path(), adfs_app);
    let name = endpoint.metric_name();
    let mut info = request_info(&req, peer.ip());
    info.device_certificate = device_certificate;
    if let Some(version) = router::soap_version(&endpoint) {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if !router::is_soap12(content_type) {
            return (name, into_response(unsupported_media_type(version, &info)));
        }
    }
    let reply = match endpoint {
        Endpoint::NotFound | Endpoint::MethodNotAllowed { .. } => {
            sts.handle(endpoint, &[], &info).await
        }
        _ => match read_body(req).await {
            Ok(body) => sts.handle(endpoint, &body, &info).await,
            Err(reply) => {
                tracing::warn!(correlation_id = %info.correlation_id, status = reply.status, "request body rejected");
                reply
            }
        },
    };
    (name, into_response(reply))
}

fn request_info(req: &Request<Incoming>, client_ip: IpAddr) -> RequestInfo {
    let header_text = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect::<String>())
    };
    RequestInfo {
        correlation_id: crate::random::correlation_id(),
        client_ip,
        user_agent: header_text(header::USER_AGENT),
        query: req.uri().query().map(str::to_owned),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| Secret::new(v.to_owned())),
        forwarded_for: forwarded_chain(req.headers()),
        ms_forwarded_client_ip: header_text(header::HeaderName::from_static(
            "x-ms-forwarded-client-ip",
        )),
        device_certificate: None,
        cookie: req
            .headers()
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    }
}

/// Every `X-Forwarded-For` line joined in order, keeping at most the rightmost
/// [`MAX_FORWARDED_HEADER_BYTES`]: the right end is what our proxies wrote; the left end is the
/// client's and is cut first.
fn forwarded_chain(headers: &http::HeaderMap) -> Option<String> {
    let lines: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if lines.is_empty() {
        return None;
    }
    let chain = lines.join(",");
    if chain.len() <= MAX_FORWARDED_HEADER_BYTES {
        return Some(chain);
    }
    let cut = chain.len() - MAX_FORWARDED_HEADER_BYTES;
    let tail = chain.get(cut..).unwrap_or("");
    Some(tail.split_once(',').map_or("", |(_, rest)| rest).to_owned())
}

/// 415 with a SOAP fault: a SOAP endpoint got a body that is not `application/soap+xml`. Such a
/// body (form or plain text) is what a web page on any site can make a browser send without a
/// CORS preflight, so it is refused before any credential is looked at.
fn unsupported_media_type(version: wstrust::TrustVersion, info: &RequestInfo) -> HttpReply {
    tracing::warn!(
        correlation_id = %info.correlation_id,
        client_ip = %info.client_ip,
        reason = "unsupported_media_type",
        "request refused: Content-Type is not application/soap+xml"
    );
    let reason = format!(
        "The request must be sent as application/soap+xml (SOAP 1.2). Correlation id: {}",
        info.correlation_id
    );
    let fault = wstrust::fault(version, FaultKind::InvalidRequest, &reason, None);
    HttpReply::soap(415, fault.to_xml())
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, HttpReply> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let limited = Limited::new(req.into_body(), MAX_BODY_BYTES);
    match tokio::time::timeout(BODY_READ_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Ok(Err(_)) => Err(HttpReply::text(400, "the request body could not be read\n")),
        Err(_) => Err(HttpReply::text(
            408,
            "the request body did not arrive in time\n",
        )),
    }
}

fn too_large() -> HttpReply {
    HttpReply::text(
        413,
        &format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
    )
}

fn into_response(reply: HttpReply) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(reply.body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000"),
    );
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            if name == "set-cookie" {
                headers.append(name, value);
            } else {
                headers.insert(name, value);
            }
        }
    }
    response
}
