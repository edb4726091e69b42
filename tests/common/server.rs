//! Starts a real fedsts server in-process on an ephemeral loopback port, with certificates and
//! users made at test time, and talks HTTPS to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use fedsts::clock::SystemClock;
use fedsts::config::{Config, DirectoryConfig};
use fedsts::directory::file::hash_password;
use fedsts::sts::Sts;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// Password of every test user.
pub const PASSWORD: &str = "p&ss<wörd>\"'";
/// An enabled user of the app's domain.
pub const ALICE: &str = "alice@example.com";
/// ImmutableID of alice.
pub const ALICE_IMMUTABLE_ID: &str = "1TIu064jGEmmf+hnI+F0Jg==";
/// A disabled user.
pub const BOB_DISABLED: &str = "bob@example.com";
/// A user of another domain (authenticates, but this app must not issue for it).
pub const CAROL_OTHER_DOMAIN: &str = "carol@other.org";

/// A running server and what a client needs to talk to it.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base_url: String,
    pub app_id: String,
    pub config: Config,
    pub tls_cert_path: PathBuf,
    pub signing_cert_path: PathBuf,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

/// A response as a test sees it.
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl TestServer {
    /// Starts the demo app with alice, bob (disabled) and carol (other domain).
    pub async fn start() -> Self {
        Self::start_with(Arc::new(SystemClock), |_, _| {}).await
    }

    /// Like [`TestServer::start`], with a clock of the test's choosing and a hook that may change
    /// the configuration (and write files into the server's temp dir) before the server starts.
    pub async fn start_with(
        clock: Arc<dyn fedsts::clock::Clock>,
        tweak: impl FnOnce(&mut Config, &std::path::Path),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let embedded = fedsts::defaults::prepare(dir.path(), &addr.to_string()).unwrap();
        let mut config = embedded.config;
        let users = dir.path().join("users.toml");
        std::fs::write(&users, users_file()).unwrap();
        config
            .directories
            .insert("demo".into(), DirectoryConfig::File { path: users });
        tweak(&mut config, dir.path());
        let sts = Arc::new(Sts::from_config(&config, clock).unwrap());
        let tls =
            fedsts::server::tls::server_config(&config.server.tls_cert, &config.server.tls_key)
                .unwrap();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(fedsts::server::serve(listener, tls, sts, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            base_url: config.public_base().to_owned(),
            app_id: config.apps[0].id.clone(),
            tls_cert_path: config.server.tls_cert.clone(),
            signing_cert_path: config.apps[0].signing_cert.clone(),
            config,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Full URL of a path under the app, e.g. `app_url("mex")`.
    pub fn app_url(&self, rest: &str) -> String {
        format!("{}/wsfed/{}/{rest}", self.base_url, self.app_id)
    }

    /// Sends one request over a fresh TLS connection.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.tls_cert_path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let tcp = TcpStream::connect(self.addr).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .unwrap();
        tokio::spawn(conn);
        let mut builder = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let response = sender
            .send_request(builder.body(Full::new(Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            content_type,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// POSTs a SOAP 1.2 body.
    pub async fn post_soap(&self, path: &str, body: impl Into<Vec<u8>>) -> Reply {
        self.request(
            "POST",
            path,
            &[("content-type", "application/soap+xml; charset=utf-8")],
            body.into(),
        )
        .await
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

/// The users file of [`TestServer::start`].
pub fn users_file() -> String {
    let hash = hash_password(PASSWORD).unwrap();
    format!(
        r#"
[[users]]
upn = "{ALICE}"
immutable_id = "{ALICE_IMMUTABLE_ID}"
password = '{hash}'
display_name = "Alice"
[[users]]
upn = "{BOB_DISABLED}"
immutable_id = "bob-immutable"
password = '{hash}'
enabled = false
[[users]]
upn = "{CAROL_OTHER_DOMAIN}"
immutable_id = "carol-immutable"
password = '{hash}'
"#
    )
}
