//! Starts a real fedsts server in-process on an ephemeral loopback port, with certificates and
//! users made at test time, and talks HTTPS to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use fedsts::clock::{Clock, SystemClock};
use fedsts::config::{Config, DirectoryConfig};
use fedsts::directory::file::hash_password;
use fedsts::state::StateStore;
use fedsts::sts::Sts;
use http_body_util::{BodyExt, Full};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
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
    /// The plain-HTTP `/healthz` listener (`server.connections.health_listen`).
    pub health_addr: SocketAddr,
    /// The plain-HTTP `/metrics` listener, when the test set `metrics.listen` (port 0: any).
    pub metrics_addr: Option<SocketAddr>,
    pub base_url: String,
    pub app_id: String,
    pub config: Config,
    pub tls_cert_path: PathBuf,
    pub signing_cert_path: PathBuf,
    pub sts: Arc<Sts>,
    /// What the listener serves; [`TestServer::reload`] replaces it.
    pub serving: Arc<fedsts::server::Serving>,
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

/// A change to the embedded configuration; gets the server's temp dir.
pub type Configure = Box<dyn FnOnce(&mut Config, &Path)>;

/// How a test wants its server: clock, state store, configuration changes.
pub struct Options {
    /// The service clock.
    pub clock: Arc<dyn Clock>,
    /// The state store; `None` for a fresh in-memory one.
    pub store: Option<Arc<dyn StateStore>>,
    /// Changes to the embedded configuration; gets the server's temp dir.
    pub configure: Configure,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            store: None,
            configure: Box::new(|_, _| {}),
        }
    }
}

/// A TLS client certificate chain and its key.
pub struct ClientIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl TestServer {
    /// Starts the demo app with alice, bob (disabled) and carol (other domain).
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// Starts the demo app with the given clock, store and configuration changes.
    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let embedded = fedsts::first_run::prepare(dir.path(), &addr.to_string()).unwrap();
        let mut config = embedded.config;
        let users = dir.path().join("users.toml");
        std::fs::write(&users, users_file()).unwrap();
        config
            .directories
            .insert("demo".into(), DirectoryConfig::File { path: users });
        (options.configure)(&mut config, dir.path());
        let store = options
            .store
            .unwrap_or_else(|| Arc::new(fedsts::state::memory::MemoryStore::new("test")));
        let sts = Arc::new(Sts::with_state(&config, options.clock.clone(), store).unwrap());
        let tls = fedsts::server::tls::server_config_for(&config, options.clock).unwrap();
        let health_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let health_addr = health_listener.local_addr().unwrap();
        let metrics_listener = match &config.metrics.listen {
            Some(listen) => Some(TcpListener::bind(listen.as_str()).await.unwrap()),
            None => None,
        };
        let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr().unwrap());
        let setup = fedsts::server::Server::new(
            listener,
            Some(health_listener),
            sts.clone(),
            tls,
            fedsts::server::ConnectionLimits::resolve(&config.server.connections),
        )
        .with_metrics(metrics_listener, config.metrics.clone());
        let serving = setup.serving.clone();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(fedsts::server::serve(setup, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            health_addr,
            metrics_addr,
            base_url: config.public_base().to_owned(),
            app_id: config.apps[0].id.clone(),
            tls_cert_path: config.server.tls_cert.clone(),
            signing_cert_path: config.apps[0].signing_cert.clone(),
            sts,
            serving,
            config,
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// Serves `config` from now on as a SIGHUP reload does: a service rebuilt over the same
    /// state store and session key, and the TLS configuration read again.
    pub fn reload(&self, config: &Config) {
        let current = self.serving.get();
        let sts = current.sts.reloaded(config).unwrap();
        let tls = fedsts::server::tls::reloaded_server_config(
            config,
            Arc::new(SystemClock),
            &current.tls,
        )
        .unwrap();
        self.serving.replace(fedsts::server::Service {
            sts: Arc::new(sts),
            tls,
        });
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
        self.request_as(None, method, path, headers, body)
            .await
            .unwrap()
    }

    /// A TLS connector trusting the server's certificate, presenting `identity` if given.
    pub fn tls_connector(&self, identity: Option<&ClientIdentity>) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.tls_cert_path).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let client = match identity {
            Some(id) => client
                .with_client_auth_cert(id.chain.clone(), id.key.clone_key())
                .unwrap(),
            None => client.with_no_client_auth(),
        };
        tokio_rustls::TlsConnector::from(Arc::new(client))
    }

    /// Sends one request over a fresh TLS connection, presenting `identity` as the client
    /// certificate; `Err` when the TLS handshake (or the exchange) fails.
    pub async fn request_as(
        &self,
        identity: Option<&ClientIdentity>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        self.request_from(None, identity, method, path, headers, body)
            .await
    }

    /// POSTs a SOAP 1.2 body from the loopback address `source` (any of 127.0.0.0/8), so one
    /// test can be several clients; `Err` when the exchange fails.
    pub async fn post_soap_from(
        &self,
        source: std::net::IpAddr,
        path: &str,
        body: impl Into<Vec<u8>>,
    ) -> Result<Reply, String> {
        let headers = [("content-type", "application/soap+xml; charset=utf-8")];
        self.request_from(Some(source), None, "POST", path, &headers, body.into())
            .await
    }

    /// [`Self::request_as`] from the local address `source` (`None`: the system's choice).
    async fn request_from(
        &self,
        source: Option<std::net::IpAddr>,
        identity: Option<&ClientIdentity>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        let connector = self.tls_connector(identity);
        let tcp = match source {
            None => TcpStream::connect(self.addr).await.unwrap(),
            Some(source) => {
                let socket = tokio::net::TcpSocket::new_v4().unwrap();
                socket.bind(SocketAddr::new(source, 0)).unwrap();
                socket
                    .connect(self.addr)
                    .await
                    .map_err(|e| format!("connect from {source}: {e}"))?
            }
        };
        let tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                .await
                .map_err(|e| format!("HTTP handshake: {e}"))?;
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
            .map_err(|e| format!("request: {e}"))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let content_type = headers
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        Ok(Reply {
            status,
            content_type,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
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

/// Writes `users_file()` plus one user with a TOTP secret (for MFA step-up) to `dir/name` and
/// returns its path.
pub fn users_file_with_totp_user(
    dir: &std::path::Path,
    name: &str,
    upn: &str,
    immutable_id: &str,
    totp_secret: &str,
) -> std::path::PathBuf {
    let users = users_file();
    let hash = users
        .split("password = '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_owned();
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "{users}\n[[users]]\nupn = \"{upn}\"\nimmutable_id = \"{immutable_id}\"\npassword = '{hash}'\ntotp_secret = \"{totp_secret}\"\n"
        ),
    )
    .unwrap();
    path
}
