//! `fedsts loadtest`: drives a running fedsts with valid, unique WS-Trust usernamemixed requests
//! (or passive sign-ins that ride a browser session) and reports throughput, latency percentiles, errors by kind and — for a local server — the
//! server's CPU per token next to one RSA-2048 signature measured in the same run. Kept out of
//! the request path: it is a client of the server, never a part of it.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::protocol::xml;

/// Largest reply the tool reads; a bigger one counts as an error.
const MAX_REPLY_BYTES: usize = 1 << 20;

/// Why a load test could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("--url: {0} — give https://host:port/wsfed/<app>/trust/13/usernamemixed")]
    Url(String),
    #[error(
        "--url: host {0} is not loopback — name it with --allow-host {0} if you mean to load it"
    )]
    HostNotAllowed(String),
    #[error("--users {path}: {problem} — one `upn:password` per line")]
    Users { path: PathBuf, problem: String },
    #[error("--ca {path}: {problem} — give the server's TLS certificate (PEM)")]
    Ca { path: PathBuf, problem: String },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("passive sign-in as {upn} failed: {problem} — check --users, or give --session-cookie")]
    SignIn { upn: String, problem: String },
}

/// What each request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// A WS-Trust 1.3 usernamemixed RST (password checked, token signed).
    Trust13,
    /// A WS-Trust 2005 usernamemixed RST.
    Trust2005,
    /// A passive `GET ?wa=wsignin1.0` that carries a session cookie (no password check; the
    /// response form with a signed token). The URL is the passive endpoint `/wsfed/<app>`.
    Passive,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadTest {
    /// The usernamemixed endpoint (also the request's wsa:To), or the passive endpoint.
    pub url: String,
    pub workload: Workload,
    /// `(upn, password)` pairs, used round-robin.
    pub users: Vec<(String, String)>,
    /// PEM file with the certificate(s) the server's TLS certificate must chain to.
    pub ca: PathBuf,
    pub connections: usize,
    /// A new TLS handshake for every request instead of keep-alive.
    pub fresh_handshake: bool,
    /// Whether new handshakes may resume an earlier TLS session (as browsers do); without it
    /// each one is a full handshake with the server's certificate signature.
    pub tls_resumption: bool,
    /// Stop after this many requests …
    pub requests: u64,
    /// … or after this long, whichever comes first.
    pub duration: Duration,
    /// Open loop: start requests at this fixed rate per second (all connections together).
    pub target_rate: Option<f64>,
    /// A non-loopback host the admin explicitly allows.
    pub allow_host: Option<String>,
    /// The server's process id, for its CPU time from /proc.
    pub server_pid: Option<u32>,
    /// Passive only: a `name=value` cookie that carries a session. Without it, the tool signs
    /// the first user in once through the password form before the measured run.
    pub session_cookie: Option<String>,
}

/// What a load test measured.
#[derive(Debug, Clone)]
pub struct Report {
    pub tokens: u64,
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Latencies of all requests, sorted.
    pub latencies: Vec<Duration>,
    /// Server CPU time spent during the run, when the pid was known.
    pub server_cpu: Option<Duration>,
    /// CPU time of one RSA-2048 PKCS#1 SHA-256 signature, measured on the server's CPUs around
    /// the run (and during a closed-loop one, [`Baseline`]).
    pub rsa_sign: Option<SignTimes>,
}

/// Medians of the baseline's signatures: all of them (the figure the ratio uses), those signed
/// back to back around the run, and the warm ones of the bursts during it. The last two differ
/// when the machine's speed moved during the run.
#[derive(Debug, Clone, Copy)]
pub struct SignTimes {
    /// Median of every counted signature.
    pub all: Duration,
    /// Median of the back-to-back signatures before and after the run.
    pub around: Duration,
    /// Median of the warm signatures during a closed-loop run; `None` for an open-loop one.
    pub during: Option<Duration>,
}

impl Report {
    /// Requests that failed, all kinds together.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// The latency at `fraction` (0..=1) of the sorted requests.
    pub fn percentile(&self, fraction: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.latencies.len() - 1) as f64 * fraction).round() as usize;
        self.latencies[at.min(self.latencies.len() - 1)]
    }

    /// Server CPU per issued token.
    pub fn cpu_per_token(&self) -> Option<Duration> {
        let cpu = self.server_cpu?;
        (self.tokens > 0).then(|| cpu / u32::try_from(self.tokens).unwrap_or(u32::MAX))
    }

    /// The human-readable report.
    pub fn render(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let mut out = format!(
            "tokens: {}\nerrors: {}\nelapsed_s: {:.3}\ntokens_per_s: {:.1}\nlatency_ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}\n",
            self.tokens,
            self.error_count(),
            secs,
            self.tokens as f64 / secs,
            ms(self.percentile(0.5)),
            ms(self.percentile(0.9)),
            ms(self.percentile(0.99)),
            ms(self.latencies.last().copied().unwrap_or_default()),
        );
        for (kind, count) in &self.errors {
            out.push_str(&format!("error {kind}: {count}\n"));
        }
        if let Some(cpu) = self.cpu_per_token() {
            out.push_str(&format!(
                "server_cpu_per_token_us: {:.0}\n",
                cpu.as_secs_f64() * 1e6
            ));
            if let Some(sign) = self.rsa_sign {
                let us = |d: Duration| format!("{:.0}", d.as_secs_f64() * 1e6);
                out.push_str(&format!(
                    "rsa2048_sign_us: {}\nrsa2048_sign_us_around_during: {} {}\ncpu_per_token_over_rsa_sign: {:.2}\n",
                    us(sign.all),
                    us(sign.around),
                    sign.during.map_or_else(|| "-".to_owned(), us),
                    cpu.as_secs_f64() / sign.all.as_secs_f64().max(1e-12)
                ));
            }
        }
        out
    }
}

/// Reads `upn:password` lines (blank lines and `#` comments skipped).
pub fn read_users(path: &Path) -> Result<Vec<(String, String)>, LoadTestError> {
    let problem = |problem: String| LoadTestError::Users {
        path: path.to_owned(),
        problem,
    };
    let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
    let mut users = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((upn, password)) = line.split_once(':') else {
            return Err(problem(format!("line {} has no `:`", n + 1)));
        };
        users.push((upn.trim().to_owned(), password.to_owned()));
    }
    if users.is_empty() {
        return Err(problem("no users".into()));
    }
    Ok(users)
}

/// Where the URL points.
struct Target {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    host_header: String,
    path: String,
}

fn parse_target(url: &str, allow_host: Option<&str>) -> Result<Target, LoadTestError> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| LoadTestError::Url("not an https:// URL".into()))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse::<u16>()
                .map_err(|_| LoadTestError::Url(format!("bad port {p}")))?,
        ),
        None => (authority, 443),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| LoadTestError::Url(format!("cannot resolve {host}: {e}")))?
        .next()
        .ok_or_else(|| LoadTestError::Url(format!("{host} has no address")))?;
    let named = allow_host.is_some_and(|allowed| allowed.eq_ignore_ascii_case(host));
    if !addr.ip().is_loopback() && !named {
        return Err(LoadTestError::HostNotAllowed(host.to_owned()));
    }
    let server_name = match host.parse::<IpAddr>() {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_owned())
            .map_err(|_| LoadTestError::Url(format!("bad host {host}")))?,
    };
    Ok(Target {
        addr,
        server_name,
        host_header: authority.to_owned(),
        path: if path.is_empty() {
            "/".into()
        } else {
            path.to_owned()
        },
    })
}

fn connector(ca: &Path, resumption: bool) -> Result<TlsConnector, LoadTestError> {
    let problem = |problem: String| LoadTestError::Ca {
        path: ca.to_owned(),
        problem,
    };
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| problem(e.to_string()))? {
        let cert = cert.map_err(|e| problem(e.to_string()))?;
        roots.add(cert).map_err(|e| problem(e.to_string()))?;
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| problem(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    if !resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

/// Runs a load test on a new runtime and returns its report.
pub fn run(test: &LoadTest) -> Result<Report, LoadTestError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(LoadTestError::Runtime)?;
    runtime.block_on(run_async(test))
}

/// Runs a load test on the current runtime.
pub async fn run_async(test: &LoadTest) -> Result<Report, LoadTestError> {
    let target = Arc::new(parse_target(&test.url, test.allow_host.as_deref())?);
    let tls = connector(&test.ca, test.tls_resumption)?;
    let baseline = Baseline::before_the_run(
        test.server_pid,
        test.target_rate.filter(|r| *r > 0.0).is_none(),
    );
    let session_cookie = match (test.workload, &test.session_cookie) {
        (Workload::Passive, None) => Some(passive_sign_in(test, &target, &tls).await?),
        (_, cookie) => cookie.clone(),
    };
    let shared = Arc::new(Shared {
        session_cookie,
        test: test.clone(),
        next: Mutex::new(0),
        results: Mutex::new(Results::default()),
        started: Instant::now(),
    });
    let cpu_before = test.server_pid.and_then(process_cpu);
    let mut workers = Vec::new();
    for _ in 0..test.connections.max(1) {
        workers.push(tokio::spawn(worker(
            shared.clone(),
            target.clone(),
            tls.clone(),
        )));
    }
    for w in workers {
        let _ = w.await;
    }
    let elapsed = shared.started.elapsed();
    let cpu_after = test.server_pid.and_then(process_cpu);
    let rsa_sign = baseline.after_the_run();
    let mut results = std::mem::take(&mut *shared.results.lock().await);
    results.latencies.sort();
    Ok(Report {
        tokens: results.tokens,
        errors: results.errors,
        elapsed,
        latencies: results.latencies,
        server_cpu: cpu_before
            .zip(cpu_after)
            .map(|(before, after)| after.saturating_sub(before)),
        rsa_sign,
    })
}

#[derive(Default)]
struct Results {
    tokens: u64,
    errors: BTreeMap<String, u64>,
    latencies: Vec<Duration>,
}

struct Shared {
    test: LoadTest,
    /// The cookie every passive request carries.
    session_cookie: Option<String>,
    /// Index of the next request to start.
    next: Mutex<u64>,
    results: Mutex<Results>,
    started: Instant,
}

impl Shared {
    /// Claims the next request, waiting for its slot in open-loop mode; `None` once the count
    /// or the time is used up.
    async fn claim(&self) -> Option<u64> {
        let index = {
            let mut next = self.next.lock().await;
            if *next >= self.test.requests || self.started.elapsed() >= self.test.duration {
                return None;
            }
            *next += 1;
            *next - 1
        };
        if let Some(rate) = self.test.target_rate.filter(|r| *r > 0.0) {
            let due = self.started + Duration::from_secs_f64(index as f64 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        Some(index)
    }
}

async fn worker(shared: Arc<Shared>, target: Arc<Target>, tls: TlsConnector) {
    let mut connection: Option<TlsStream<TcpStream>> = None;
    while let Some(index) = shared.claim().await {
        let test = &shared.test;
        let request = next_request(&shared, &target, index);
        let started = Instant::now();
        let outcome = exchange(
            &mut connection,
            &target,
            &tls,
            &request,
            test.fresh_handshake,
        )
        .await
        .and_then(|reply| classify(test.workload, &reply));
        let latency = started.elapsed();
        let mut results = shared.results.lock().await;
        results.latencies.push(latency);
        match outcome {
            Ok(()) => results.tokens += 1,
            Err(kind) => {
                connection = None;
                *results.errors.entry(kind).or_default() += 1;
            }
        }
    }
}

/// The bytes of request number `index`: a fresh RST for the next user, or the passive GET.
fn next_request(shared: &Shared, target: &Target, index: u64) -> Vec<u8> {
    let test = &shared.test;
    let close = test.fresh_handshake;
    match test.workload {
        Workload::Passive => http_request(
            "GET",
            target,
            &format!("{}?{PASSIVE_QUERY}", target.path),
            shared.session_cookie.as_deref(),
            None,
            close,
        ),
        dialect => {
            let (upn, password) = &test.users[(index as usize) % test.users.len()];
            let body = rst(dialect, &test.url, upn, password);
            let soap = ("application/soap+xml; charset=utf-8", body.as_bytes());
            http_request("POST", target, &target.path, None, Some(soap), close)
        }
    }
}

/// The query of a passive sign-in request for Entra ID.
const PASSIVE_QUERY: &str =
    "wa=wsignin1.0&wtrealm=urn%3afederation%3aMicrosoftOnline&wctx=loadtest";

/// An HTTP/1.1 request: `body` is `(content type, bytes)`.
fn http_request(
    method: &str,
    target: &Target,
    path_and_query: &str,
    cookie: Option<&str>,
    body: Option<(&str, &[u8])>,
    close: bool,
) -> Vec<u8> {
    let mut head = format!(
        "{method} {path_and_query} HTTP/1.1\r\nHost: {}\r\nConnection: {}\r\n",
        target.host_header,
        if close { "close" } else { "keep-alive" }
    );
    if let Some(cookie) = cookie {
        head.push_str(&format!("Cookie: {cookie}\r\n"));
    }
    if let Some((content_type, bytes)) = body {
        head.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    if let Some((_, bytes)) = body {
        request.extend_from_slice(bytes);
    }
    request
}

/// One HTTP response as the tool reads it.
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
}

impl Reply {
    /// The `name=value` of each `Set-Cookie` that sets a value.
    fn cookies(&self) -> Vec<&str> {
        self.head
            .lines()
            .filter_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("set-cookie").then_some(value)
            })
            .filter_map(|value| value.trim().split(';').next())
            .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
            .collect()
    }
}

/// Sends one request, opening a connection first when there is none (or for every request with
/// `fresh`).
async fn exchange(
    connection: &mut Option<TlsStream<TcpStream>>,
    target: &Target,
    tls: &TlsConnector,
    request: &[u8],
    fresh: bool,
) -> Result<Reply, String> {
    if fresh || connection.is_none() {
        let tcp = TcpStream::connect(target.addr)
            .await
            .map_err(|e| format!("connect: {}", e.kind()))?;
        let _ = tcp.set_nodelay(true);
        let stream = tls
            .connect(target.server_name.clone(), tcp)
            .await
            .map_err(|_| "tls handshake".to_owned())?;
        *connection = Some(stream);
    }
    let Some(stream) = connection.as_mut() else {
        return Err("no connection".into());
    };
    stream
        .write_all(request)
        .await
        .map_err(|_| "write".to_owned())?;
    let reply = read_reply(stream).await?;
    if fresh {
        *connection = None;
    }
    Ok(reply)
}

/// Signs `test`'s first user in through the passive password form (GET the form, POST the
/// credentials with its CSRF field and form cookie) and returns the session cookie(s).
async fn passive_sign_in(
    test: &LoadTest,
    target: &Target,
    tls: &TlsConnector,
) -> Result<String, LoadTestError> {
    let (upn, password) = test.users.first().cloned().unwrap_or_default();
    let failed = |problem: String| LoadTestError::SignIn {
        upn: upn.clone(),
        problem,
    };
    let mut connection = None;
    let form_url = format!("{}?{PASSIVE_QUERY}", target.path);
    let get = http_request("GET", target, &form_url, None, None, false);
    let form = exchange(&mut connection, target, tls, &get, false)
        .await
        .map_err(&failed)?;
    let text = String::from_utf8_lossy(&form.body);
    let csrf = hidden_field(&text, "csrf")
        .ok_or_else(|| failed(format!("http {}: no sign-in form", form.status)))?;
    let body = format!(
        "{PASSIVE_QUERY}&step=password&username={}&password={}&csrf={}",
        form_encode(&upn),
        form_encode(&password),
        form_encode(&csrf)
    );
    let form_cookies = form.cookies().join("; ");
    let urlencoded = ("application/x-www-form-urlencoded", body.as_bytes());
    let post = http_request(
        "POST",
        target,
        &target.path,
        Some(&form_cookies),
        Some(urlencoded),
        true,
    );
    let signed_in = exchange(&mut connection, target, tls, &post, true)
        .await
        .map_err(&failed)?;
    classify(Workload::Passive, &signed_in).map_err(&failed)?;
    let cookies = signed_in.cookies().join("; ");
    if cookies.is_empty() {
        return Err(failed("no session cookie".into()));
    }
    Ok(cookies)
}

/// The value of `<input type="hidden" name="{name}" value="…">` in a page.
fn hidden_field(page: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page.find(&marker)? + marker.len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].replace("&amp;", "&"))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// Reads one HTTP/1.1 response with a Content-Length body.
async fn read_reply(stream: &mut TlsStream<TcpStream>) -> Result<Reply, String> {
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        if let Some(at) = find(&buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > MAX_REPLY_BYTES {
            return Err("reply too large".into());
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| "read".to_owned())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..header_end]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "bad status line".to_owned())?;
    let length = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .ok_or_else(|| "no content-length".to_owned())?;
    if length > MAX_REPLY_BYTES {
        return Err("reply too large".into());
    }
    while buffer.len() < header_end + length {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|_| "read".to_owned())?;
        if n == 0 {
            return Err("connection closed".into());
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    Ok(Reply {
        status,
        body: buffer[header_end..header_end + length].to_vec(),
        head,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A token reply is `200` with a RequestSecurityTokenResponse and a signed assertion (WS-Trust)
/// or a response form with a `wresult` (passive); any other reply is an error named by its
/// status and SOAP fault subcode.
fn classify(workload: Workload, reply: &Reply) -> Result<(), String> {
    let text = String::from_utf8_lossy(&reply.body);
    let token = match workload {
        Workload::Passive => text.contains("name=\"wresult\"") && text.contains("SignatureValue"),
        Workload::Trust13 | Workload::Trust2005 => {
            text.contains("RequestSecurityTokenResponse") && text.contains("SignatureValue")
        }
    };
    if reply.status == 200 && token {
        return Ok(());
    }
    let subcode = text
        .find("<s:Subcode>")
        .and_then(|at| {
            let sub = &text[at..];
            let value = &sub[..sub.find("</s:Value>")?];
            Some(value[value.rfind(':')? + 1..].to_owned())
        })
        .unwrap_or_else(|| "no fault".into());
    Err(format!("http {} {subcode}", reply.status))
}

/// A usernamemixed RST with a fresh MessageID and Timestamp, as MSAL writes it.
/// (`Passive` never sends one: the caller matches it first; it gets the 1.3 form.)
fn rst(dialect: Workload, to: &str, upn: &str, password: &str) -> String {
    let (trust, action, key_type, request_type) = match dialect {
        Workload::Trust13 | Workload::Passive => (
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer",
            "http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue",
        ),
        Workload::Trust2005 => (
            "http://schemas.xmlsoap.org/ws/2005/02/trust",
            "http://schemas.xmlsoap.org/ws/2005/02/trust/RST/Issue",
            "http://schemas.xmlsoap.org/ws/2005/05/identity/NoProofKey",
            "http://schemas.xmlsoap.org/ws/2005/02/trust/Issue",
        ),
    };
    let now = OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let created = now.format(&Rfc3339).unwrap_or_default();
    let expires = (now + time::Duration::minutes(10))
        .format(&Rfc3339)
        .unwrap_or_default();
    let message_id = uuid::Uuid::new_v4();
    let (upn, password, to) = (xml::escape(upn), xml::escape(password), xml::escape(to));
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><wsa:Action s:mustUnderstand="1">{action}</wsa:Action><wsa:MessageID>urn:uuid:{message_id}</wsa:MessageID><wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo><wsa:To s:mustUnderstand="1">{to}</wsa:To><wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:UsernameToken wsu:Id="ADALUsernameToken"><wsse:Username>{upn}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><wst:RequestSecurityToken xmlns:wst="{trust}"><wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>{key_type}</wst:KeyType><wst:RequestType>{request_type}</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"#
    )
}

/// User + system CPU time of process `pid` from `/proc/<pid>/stat` (fields 14 and 15, in clock
/// ticks; Linux uses 100 ticks per second for this interface).
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split(' ').collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// The RSA-2048 baseline, measured on the CPUs the server may use (its affinity, when its pid
/// is known) as thread CPU time: 40 signatures just before the run, 40 just after it, and in a
/// closed-loop run a burst every [`SAMPLE_EVERY`] during it, of which the first signature only
/// warms the caches.
///
/// Why during: on a shared machine the same core signed in 700 us and 1,045 us a second apart
/// (2026-12-03, pinned, idle otherwise), so 70 ms of signatures around a 10 s run can miss the
/// speed the run saw by a fifth; samples spread over the run see the same moments the server
/// did. Why not in an open-loop run: there the tail is the figure, and one signature every
/// 80 ms on the server's core took its p99 from 14-39 ms to 70-129 ms (the server's requests
/// waited behind it). The bursts take about 1 % of the server's core; they are not the
/// server's process time, so its CPU per token does not include them.
struct Baseline {
    server_pid: Option<u32>,
    /// A key made for the purpose; `None` when making it failed (no baseline then).
    key: Option<Arc<aws_lc_rs::rsa::KeyPair>>,
    /// The signatures before the run and, once it ended, after it.
    samples: Vec<Duration>,
    during: Option<DuringTheRun>,
}

/// Signatures taken before the run and again after it.
const BASELINE_SAMPLES: usize = 40;
/// How often a closed-loop run is sampled while it runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Signatures counted in each burst during the run, after the one that warms the caches.
const WARM_SAMPLES_PER_BURST: usize = 2;

/// The thread that samples during the run: dropping `stop` ends it.
struct DuringTheRun {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

impl Baseline {
    /// Makes the key and signs the first samples on the CPUs of `server_pid`; with
    /// `sample_during`, keeps sampling until [`Baseline::after_the_run`].
    fn before_the_run(server_pid: Option<u32>, sample_during: bool) -> Baseline {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .ok()
            .map(Arc::new);
        let mut baseline = Baseline {
            server_pid,
            key,
            samples: Vec::new(),
            during: None,
        };
        baseline.sign_on_server_cpus();
        if sample_during {
            baseline.during = baseline
                .key
                .clone()
                .map(|key| sample_until_stopped(key, server_pid));
        }
        baseline
    }

    /// Ends the sampling and signs the samples after the run: the median CPU time of one
    /// signature over all of them, and over each kind.
    fn after_the_run(mut self) -> Option<SignTimes> {
        let mut during = match self.during.take() {
            Some(DuringTheRun { stop, thread }) => {
                drop(stop);
                thread.join().unwrap_or_default()
            }
            None => Vec::new(),
        };
        self.sign_on_server_cpus();
        let mut all = [self.samples.as_slice(), during.as_slice()].concat();
        Some(SignTimes {
            all: median(&mut all)?,
            around: median(&mut self.samples)?,
            during: median(&mut during),
        })
    }

    /// Signs [`BASELINE_SAMPLES`] times on a thread moved onto the server's CPUs (the calling
    /// thread runs the load tool's runtime and stays where it is).
    fn sign_on_server_cpus(&mut self) {
        let Some(key) = &self.key else {
            return;
        };
        let (server_pid, samples) = (self.server_pid, &mut self.samples);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                run_on_cpus_of(server_pid);
                let mut signer = Signer::new(key);
                samples.extend((0..BASELINE_SAMPLES).map_while(|_| signer.sign_timed()));
            });
        });
    }
}

/// The middle of `samples` once sorted; `None` for none.
fn median(samples: &mut [Duration]) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

/// Starts a thread on the server's CPUs that signs once every [`SAMPLE_EVERY`] until its
/// sender is dropped, and returns the samples when joined.
fn sample_until_stopped(
    key: Arc<aws_lc_rs::rsa::KeyPair>,
    server_pid: Option<u32>,
) -> DuringTheRun {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    let thread = std::thread::spawn(move || {
        run_on_cpus_of(server_pid);
        let mut signer = Signer::new(&key);
        let mut samples = Vec::new();
        while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            stopped.recv_timeout(SAMPLE_EVERY)
        {
            // The first signature of a burst runs in the caches the server left and costs
            // about a seventh more (12-04: 263-266 us against 231 us back to back); it warms
            // them, and only the next ones count, like every tight-loop baseline.
            let _warming = signer.sign_timed();
            samples.extend((0..WARM_SAMPLES_PER_BURST).map_while(|_| signer.sign_timed()));
        }
        samples
    });
    DuringTheRun { stop, thread }
}

/// Moves the calling thread onto the CPUs process `pid` may run on (best effort: without it
/// the baseline is measured where the load tool runs).
fn run_on_cpus_of(pid: Option<u32>) {
    use rustix::thread::{sched_getaffinity, sched_setaffinity};
    let Some(pid) = pid
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Ok(cpus) = sched_getaffinity(Some(pid)) {
        let _ = sched_setaffinity(None, &cpus);
    }
}

/// Signs distinct messages with the baseline key (RSA-2048 PKCS#1 v1.5 SHA-256, aws-lc-rs).
struct Signer<'k> {
    key: &'k aws_lc_rs::rsa::KeyPair,
    rng: aws_lc_rs::rand::SystemRandom,
    signature: Vec<u8>,
    message: u32,
}

impl<'k> Signer<'k> {
    fn new(key: &'k aws_lc_rs::rsa::KeyPair) -> Self {
        Self {
            key,
            rng: aws_lc_rs::rand::SystemRandom::new(),
            signature: vec![0u8; key.public_modulus_len()],
            message: 0,
        }
    }

    /// The thread CPU time of one signature; `None` if signing failed.
    fn sign_timed(&mut self) -> Option<Duration> {
        self.message = self.message.wrapping_add(1);
        let started = thread_cpu_time();
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &self.rng,
                &self.message.to_be_bytes(),
                &mut self.signature,
            )
            .ok()?;
        Some(thread_cpu_time().saturating_sub(started))
    }
}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The during-the-run sampler signs while it runs and ends when its sender is dropped
    /// (the run's end), handing back what it measured.
    #[test]
    fn the_sampler_signs_during_the_run_and_stops_with_it() {
        let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("a test key");
        let sampler = sample_until_stopped(Arc::new(key), None);
        std::thread::sleep(SAMPLE_EVERY * 5);
        drop(sampler.stop);
        let samples = sampler.thread.join().expect("the sampler ends");
        assert!(
            (1..=6 * WARM_SAMPLES_PER_BURST).contains(&samples.len()),
            "one sample per {SAMPLE_EVERY:?}: {}",
            samples.len()
        );
        assert!(samples.iter().all(|sample| *sample > Duration::ZERO));
    }

    /// An open-loop run gets no sampler: its tail is what it measures.
    #[test]
    fn an_open_loop_run_is_only_sampled_around_it() {
        let open_loop = Baseline::before_the_run(None, false);
        assert!(open_loop.during.is_none());
        assert_eq!(open_loop.samples.len(), BASELINE_SAMPLES);
        let closed_loop = Baseline::before_the_run(None, true);
        assert!(closed_loop.during.is_some());
        std::thread::sleep(SAMPLE_EVERY * 2);
        let times = closed_loop.after_the_run().expect("a baseline");
        assert!(times.during.is_some_and(|during| during > Duration::ZERO));
        assert!(
            open_loop
                .after_the_run()
                .is_some_and(|times| times.during.is_none())
        );
    }
}
