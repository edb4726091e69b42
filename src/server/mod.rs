//! The HTTPS listener: TLS accept, HTTP/1.1, routing, body limits, timeouts and graceful
//! shutdown. It never parses XML: it turns a request into an [`Endpoint`] plus body bytes and
//! hands them to [`Sts::handle`].

pub mod router;
pub mod tls;

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::sts::{Credential, Endpoint, HttpReply, RequestInfo, Sts};

/// Largest request body we read on any endpoint (RSTs are under 4 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Time allowed for the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to receive the request head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Time allowed to receive the request body.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Time in-flight requests get to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Accepts connections on `listener` until `shutdown` completes, then lets in-flight
/// requests finish (up to a grace period).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    sts: Arc<Sts>,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let acceptor = acceptor.clone();
        let sts = sts.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls_stream =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
            let device_certificate = verified_client_certificate(&tls_stream);
            let service = service_fn(move |req| {
                let sts = sts.clone();
                let device_certificate = device_certificate.clone();
                async move { Ok::<_, Infallible>(handle(&sts, req, peer, device_certificate).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(64 * 1024);
            let conn = builder.serve_connection(TokioIo::new(tls_stream), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
            }
        });
    }
    tracing::info!("shutting down: waiting for in-flight requests");
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within the grace period");
    }
}

/// The leaf of the client certificate chain, which the TLS verifier accepted (device CA).
fn verified_client_certificate(
    stream: &tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
) -> Option<Arc<[u8]>> {
    let (_, connection) = stream.get_ref();
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| Arc::from(leaf.as_ref()))
}

async fn handle(
    sts: &Sts,
    req: Request<Incoming>,
    peer: SocketAddr,
    device_certificate: Option<Arc<[u8]>>,
) -> Response<Full<Bytes>> {
    let endpoint = router::route(req.method(), req.uri().path());
    let mut info = request_info(&req, peer.ip());
    info.device_certificate = device_certificate;
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
    into_response(reply)
}

fn request_info(req: &Request<Incoming>, client_ip: IpAddr) -> RequestInfo {
    let header_text = |name: header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(256).collect::<String>())
    };
    RequestInfo {
        correlation_id: uuid::Uuid::new_v4().to_string(),
        client_ip,
        user_agent: header_text(header::USER_AGENT),
        query: req.uri().query().map(str::to_owned),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| Credential(v.to_owned())),
        forwarded_for: header_text(header::HeaderName::from_static("x-forwarded-for")),
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
