//! `cargo bench --bench server_load`: a load generator for the whole server. It starts fedsts
//! in-process on a loopback port (embedded defaults, rate limiting off), drives the WS-Trust 1.3
//! usernamemixed endpoint from several keep-alive HTTPS clients for a bounded time, and reports
//! tokens/s next to two baselines measured in the same run on the same machine: argon2id
//! verifications/s (the password check every request pays) and RSA-2048 signatures/s.
//!
//! Knobs (environment): `FEDSTS_LOAD_SECS` (default 5), `FEDSTS_LOAD_CLIENTS` (default 8).
//! Traffic goes to 127.0.0.1 only and stops by itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use bytes::Bytes;
use fedsts::clock::SystemClock;
use fedsts::crypto::{SigningIdentity, SoftwareSigner, generate_self_signed};
use fedsts::directory::file::hash_password;
use fedsts::sts::Sts;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::{TcpListener, TcpStream};

/// Most requests one run sends, whatever the time budget.
const MAX_REQUESTS: u64 = 200_000;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Operations per second of `op`, run on this thread for about `budget`.
fn per_second(budget: Duration, mut op: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < budget {
        op();
        count += 1;
    }
    count as f64 / start.elapsed().as_secs_f64()
}

fn argon2_verifications_per_second() -> f64 {
    let hash = hash_password("load test password").unwrap();
    let parsed = PasswordHash::new(&hash).unwrap();
    per_second(Duration::from_secs(2), || {
        Argon2::default()
            .verify_password(b"load test password", &parsed)
            .unwrap();
    })
}

fn rsa_signatures_per_second() -> f64 {
    let pair = generate_self_signed("load baseline", &[], 2).unwrap();
    let signer = SoftwareSigner::from_pem(&pair.private_key_pem).unwrap();
    let certificate = fedsts::crypto::Certificate::from_pem(&pair.certificate_pem).unwrap();
    let identity = SigningIdentity::new(Arc::new(signer), certificate).unwrap();
    let message = vec![b'x'; 700];
    per_second(Duration::from_secs(1), || {
        identity.signer.sign_rsa_sha256(&message).unwrap();
    })
}

fn rst(to: &str, username: &str, password: &str) -> String {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let created = now.format(&Rfc3339).unwrap();
    let expires = (now + time::Duration::minutes(10))
        .format(&Rfc3339)
        .unwrap();
    let id = uuid::Uuid::new_v4();
    format!(
        r#"<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:wsa="http://www.w3.org/2005/08/addressing" xmlns:wsu="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><s:Header><wsa:Action s:mustUnderstand="1">http://docs.oasis-open.org/ws-sx/ws-trust/200512/RST/Issue</wsa:Action><wsa:MessageID>urn:uuid:{id}</wsa:MessageID><wsa:To s:mustUnderstand="1">{to}</wsa:To><wsse:Security s:mustUnderstand="1" xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"><wsu:Timestamp wsu:Id="_0"><wsu:Created>{created}</wsu:Created><wsu:Expires>{expires}</wsu:Expires></wsu:Timestamp><wsse:UsernameToken wsu:Id="ADALUsernameToken"><wsse:Username>{username}</wsse:Username><wsse:Password>{password}</wsse:Password></wsse:UsernameToken></wsse:Security></s:Header><s:Body><wst:RequestSecurityToken xmlns:wst="http://docs.oasis-open.org/ws-sx/ws-trust/200512"><wsp:AppliesTo xmlns:wsp="http://schemas.xmlsoap.org/ws/2004/09/policy"><wsa:EndpointReference><wsa:Address>urn:federation:MicrosoftOnline</wsa:Address></wsa:EndpointReference></wsp:AppliesTo><wst:KeyType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Bearer</wst:KeyType><wst:RequestType>http://docs.oasis-open.org/ws-sx/ws-trust/200512/Issue</wst:RequestType></wst:RequestSecurityToken></s:Body></s:Envelope>"#
    )
}

/// One keep-alive client: sends RSTs until the deadline or the global cap, counts 200s.
async fn client(
    addr: std::net::SocketAddr,
    tls: Arc<rustls::ClientConfig>,
    url: String,
    password: String,
    deadline: Instant,
    sent: Arc<AtomicU64>,
    issued: Arc<AtomicU64>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let path = format!("/{}", url.splitn(4, '/').nth(3).unwrap());
    while Instant::now() < deadline && sent.fetch_add(1, Ordering::Relaxed) < MAX_REQUESTS {
        let body = rst(&url, fedsts::first_run::DEMO_UPN, &password);
        let request = http::Request::post(path.as_str())
            .header("host", "localhost")
            .header("content-type", "application/soap+xml; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let ok = response.status() == 200;
        response.into_body().collect().await.unwrap();
        if ok {
            issued.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn main() {
    let seconds = env_number("FEDSTS_LOAD_SECS", 5);
    let clients = env_number("FEDSTS_LOAD_CLIENTS", 8);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("baselines (one thread each):");
    let argon2 = argon2_verifications_per_second();
    println!("  argon2id verify (m=19456,t=2,p=1): {argon2:8.1}/s");
    let rsa = rsa_signatures_per_second();
    println!("  RSA-2048 PKCS#1 v1.5 SHA-256 sign: {rsa:8.1}/s");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let embedded = fedsts::first_run::prepare(dir.path(), &addr.to_string()).unwrap();
        let mut config = embedded.config;
        config.rate_limit.enabled = false;
        let sts = Arc::new(Sts::from_config(&config, Arc::new(SystemClock)).unwrap());
        let tls = fedsts::server::tls::server_config(&config.server.tls_cert, &config.server.tls_key)
            .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let setup = fedsts::server::Server::new(
            listener,
            None,
            sts.clone(),
            tls,
            fedsts::server::ConnectionLimits::resolve(&config.server.connections),
        );
        let server = tokio::spawn(fedsts::server::serve(setup, async {
            let _ = stopped.await;
        }));

        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&config.server.tls_cert).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let client_tls = Arc::new(
            rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::aws_lc_rs::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        );
        let url = sts
            .app(fedsts::first_run::DEMO_APP_ID)
            .unwrap()
            .urls
            .usernamemixed(fedsts::protocol::wstrust::TrustVersion::V13);
        let (sent, issued) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let start = Instant::now();
        let deadline = start + Duration::from_secs(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                tokio::spawn(client(
                    addr,
                    client_tls.clone(),
                    url.clone(),
                    embedded.demo_password.clone(),
                    deadline,
                    sent.clone(),
                    issued.clone(),
                ))
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = start.elapsed().as_secs_f64();
        let _ = stop.send(());
        server.await.unwrap();

        let issued = issued.load(Ordering::Relaxed);
        let tokens = issued as f64 / elapsed;
        println!(
            "server: {clients} keep-alive clients, {elapsed:.1} s, {issued} tokens issued, {tokens:.1} tokens/s on {cores} core(s)"
        );
        println!(
            "ratio tokens/s ÷ (argon2 verify/s × cores) = {:.2}",
            tokens / (argon2 * cores as f64)
        );
        println!("ratio tokens/s ÷ RSA signs/s = {:.3}", tokens / rsa);
    });
}
