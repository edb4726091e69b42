//! Floods against the listener (loopback, bounded in count and time): connection caps, the write
//! timeout, the health listener, and SOAP endpoints that take only `application/soap+xml`.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::server::{ALICE, Options, PASSWORD, TestServer};
use common::wstrust::{fault_subcode, path_of, rst};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn start(max: usize, per_address: usize, write_timeout_secs: u64) -> TestServer {
    TestServer::start_with(Options {
        configure: Box::new(move |config, _| {
            config.server.connections.max = Some(max);
            config.server.connections.max_per_address = Some(per_address);
            config.server.connections.write_timeout_secs = Some(write_timeout_secs);
        }),
        ..Options::default()
    })
    .await
}

/// A raw TCP connection from `source` (any 127/8 address) that sends nothing.
async fn silent_from(source: &str, to: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(to).await.unwrap()
}

/// Whether the server closed `stream` within `wait` (EOF or reset before any byte).
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, stream.read(&mut byte)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// A TLS connection to `to`, handshaken, nothing sent yet.
async fn handshaken(
    connector: &tokio_rustls::TlsConnector,
    to: SocketAddr,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(to).await.unwrap();
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap()
}

/// `GET /healthz` on the plain-HTTP health listener; the status, or None.
async fn health_status(addr: SocketAddr) -> Option<u16> {
    let exchange = async {
        let mut tcp = TcpStream::connect(addr).await.ok()?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        text.split_whitespace().nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn a_connect_flood_past_the_cap_is_shed_and_healthz_answers() {
    let server = start(20, 1000, 10).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(silent_from("127.0.0.1", server.addr).await);
    }
    // Let the accept loop admit the first 20 before the flood.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(silent_from("127.0.0.1", server.addr).await);
    }
    let mut shed = 0;
    for stream in &mut flood {
        if closed_within(stream, Duration::from_millis(50)).await {
            shed += 1;
        }
    }
    assert!(
        shed >= 190,
        "only {shed} of 200 connections past the cap were closed"
    );
    for stream in &mut held[..3] {
        assert!(
            !closed_within(stream, Duration::from_millis(50)).await,
            "admitted connections stay until their handshake timeout"
        );
    }
    let started = Instant::now();
    assert_eq!(health_status(server.health_addr).await, Some(200));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        server
            .request_as(None, "GET", "/healthz", &[], Vec::new())
            .await
            .is_err(),
        "the HTTPS listener is full"
    );
    drop(held);
    drop(flood);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match server
            .request_as(None, "GET", "/healthz", &[], Vec::new())
            .await
        {
            Ok(reply) => {
                assert_eq!(reply.status, 200);
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "slots never came back: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    server.stop().await;
}

#[tokio::test]
async fn one_address_gets_at_most_its_share() {
    let server = start(100, 3, 10).await;
    let mut own = Vec::new();
    for _ in 0..3 {
        own.push(silent_from("127.0.0.1", server.addr).await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut fourth = silent_from("127.0.0.1", server.addr).await;
    assert!(
        closed_within(&mut fourth, Duration::from_secs(2)).await,
        "a fourth connection from one address is refused"
    );
    let mut other = silent_from("127.0.0.2", server.addr).await;
    assert!(
        !closed_within(&mut other, Duration::from_millis(500)).await,
        "another address has its own share"
    );
    drop(own);
    drop(other);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let reply = server.request("GET", "/healthz", &[], Vec::new()).await;
    assert_eq!(reply.status, 200, "slots come back when connections end");
    server.stop().await;
}

#[tokio::test]
async fn pipelining_clients_that_never_read_are_dropped_by_the_write_timeout() {
    let server = start(10, 100, 3).await;
    let connector = server.tls_connector(None);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: localhost\r\n\r\n",
        path_of(&server.app_url("mex"))
    );
    let burst = std::sync::Arc::new(request.repeat(20_000).into_bytes());
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let (connector, burst, addr) = (connector.clone(), burst.clone(), server.addr);
        tasks.push(tokio::spawn(async move {
            let mut tls = handshaken(&connector, addr).await;
            // Writes until the server stops reading (its answers fill the buffers); never reads.
            let _ = tokio::time::timeout(Duration::from_millis(500), tls.write_all(&burst)).await;
            tls
        }));
    }
    let mut pipeliners = Vec::new();
    for task in tasks {
        pipeliners.push(task.await.unwrap());
    }
    assert!(
        server
            .request_as(None, "GET", "/healthz", &[], Vec::new())
            .await
            .is_err(),
        "ten non-reading clients hold all ten slots"
    );
    // Well inside the 10 s idle timeout: only the write timeout can free the slots this soon.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        if let Ok(reply) = server
            .request_as(None, "GET", "/healthz", &[], Vec::new())
            .await
        {
            assert_eq!(reply.status, 200);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "non-reading clients still hold the server"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(pipeliners);
    server.stop().await;
}

/// A handshaken TLS connection that never sends a request waits outside hyper (no read buffer
/// reserved for it) but not longer than hyper would wait for a request head: it is closed after
/// the 10 s header timeout and its slot freed; one that speaks late within it is answered.
#[tokio::test]
async fn a_silent_tls_connection_is_closed_after_the_header_timeout_and_a_late_one_answered() {
    let server = start(2, 2, 30).await;
    let connector = server.tls_connector(None);
    let started = Instant::now();
    let mut silent = handshaken(&connector, server.addr).await;
    let mut late = handshaken(&connector, server.addr).await;
    assert!(
        server
            .request_as(None, "GET", "/healthz", &[], Vec::new())
            .await
            .is_err(),
        "two handshaken connections hold both slots"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    late.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), late.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(15), silent.read(&mut byte)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "still open: {read:?}"
    );
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(14),
        "closed after {waited:?}"
    );
    let reply = server
        .request_as(None, "GET", "/healthz", &[], Vec::new())
        .await
        .unwrap();
    assert_eq!(reply.status, 200, "the slots are free again");
    server.stop().await;
}

#[tokio::test]
async fn soap_endpoints_refuse_bodies_a_web_page_can_send() {
    let server = TestServer::start().await;
    let url = server.app_url("trust/13/usernamemixed");
    let body = rst("13", &url, Some((ALICE, PASSWORD)));
    for content_type in ["application/x-www-form-urlencoded", "text/plain"] {
        let reply = server
            .request(
                "POST",
                &path_of(&url),
                &[("content-type", content_type)],
                body.clone().into_bytes(),
            )
            .await;
        assert_eq!(reply.status, 415, "{content_type}");
        assert!(reply.content_type.starts_with("application/soap+xml"));
        assert_eq!(fault_subcode(&reply.body), Some("InvalidRequest"));
        assert!(!reply.body.contains("Assertion"), "no password was checked");
    }
    let mex = server
        .request(
            "POST",
            &path_of(&server.app_url("mex")),
            &[("content-type", "text/plain")],
            Vec::new(),
        )
        .await;
    assert_eq!(mex.status, 415);
    let mex_get = server
        .request("GET", &path_of(&server.app_url("mex")), &[], Vec::new())
        .await;
    assert_eq!(mex_get.status, 200, "MEX GET is unaffected");
    let soap = server.post_soap(&path_of(&url), body).await;
    assert_eq!(soap.status, 200, "the same body as SOAP 1.2 is answered");
    server.stop().await;
}
