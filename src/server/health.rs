//! The health listener (`server.connections.health_listen`): plain HTTP, `GET /healthz` only,
//! outside the HTTPS caps, so a supervisor or load balancer still sees the service while a
//! connection flood holds every HTTPS slot. Its own small cap and short deadlines keep it from
//! becoming a second way in for the flood.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use super::limits::{Admission, ConnectionLimits, LogThrottle, Permit};
use super::stall::WriteTimeout;
use super::{Accepting, FLOOD_LOG_INTERVAL, HEADER_READ_TIMEOUT, Serving, into_response};
use crate::policy::TrustedProxies;
use crate::sts::{Endpoint, HttpReply, RequestInfo};

/// Most health connections open at once.
const MAX_HEALTH_CONNECTIONS: usize = 16;
/// Longest a health connection lives.
const HEALTH_CONNECTION_DEADLINE: Duration = Duration::from_secs(15);

/// Serves `GET /healthz` on `listener` until the task is aborted.
pub(super) async fn serve(listener: TcpListener, serving: Arc<Serving>, write_timeout: Duration) {
    let limits = ConnectionLimits {
        max: MAX_HEALTH_CONNECTIONS,
        max_per_address: MAX_HEALTH_CONNECTIONS,
        write_timeout,
    };
    let admission = Admission::new(limits, TrustedProxies::default());
    let mut accepting = Accepting::new(&listener, "health");
    let mut refusals = LogThrottle::new(FLOOD_LOG_INTERVAL);
    loop {
        let (tcp, peer) = accepting.next().await;
        match admission.admit(peer.ip()) {
            Ok(permit) => {
                tokio::spawn(connection(tcp, serving.clone(), write_timeout, permit));
            }
            Err(_) => {
                if let Some(held_back) = refusals.allow(Instant::now()) {
                    tracing::warn!(
                        peer = %peer.ip(),
                        refused_since_last_line = held_back,
                        "health connection refused: {MAX_HEALTH_CONNECTIONS} open"
                    );
                }
            }
        }
    }
}

async fn connection(
    tcp: TcpStream,
    serving: Arc<Serving>,
    write_timeout: Duration,
    _permit: Permit,
) {
    let peer = tcp.peer_addr().ok();
    let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let sts = serving.get().sts.clone();
        async move {
            let reply = if req.method() == http::Method::GET && req.uri().path() == "/healthz" {
                let info = RequestInfo::new(
                    crate::random::correlation_id(),
                    peer.map_or(std::net::Ipv4Addr::LOCALHOST.into(), |p| p.ip()),
                );
                sts.handle(Endpoint::Health, &[], &info).await
            } else {
                HttpReply::text(404, "this listener serves only GET /healthz\n")
            };
            Ok::<_, Infallible>(into_response(reply))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(8 * 1024);
    let io = TokioIo::new(WriteTimeout::new(tcp, write_timeout));
    let conn = builder.serve_connection(io, service);
    match tokio::time::timeout(HEALTH_CONNECTION_DEADLINE, conn).await {
        Ok(Err(e)) => tracing::debug!(error = %e, "health connection ended with an error"),
        Err(_) => tracing::debug!("health connection reached its deadline"),
        Ok(Ok(())) => {}
    }
}
