//! The `fedsts` command line: `serve`, `hash-password`, `check-config`, `self-signed`,
//! `commands`, `lockout`, `rollover`, `user totp-enroll`, `user totp-reset`. Admin commands that change state live in submodules.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

mod admin;
pub mod audit;
mod keys;
pub mod loadtest;
mod lockout;

pub use lockout::LockoutAction;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::directory::file::hash_password;
use crate::first_run;
use crate::preflight;
use crate::protocol::wstrust::TrustVersion;
use crate::reload;
use crate::server;
use crate::state;
use crate::sts::{App, Sts};

/// A WS-Trust / WS-Federation identity provider for Microsoft Entra ID federated domains.
#[derive(Debug, Parser)]
#[command(name = "fedsts", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server. Without --config and without ./fedsts.toml it runs on embedded
    /// defaults: self-signed certificates under certs/ and a demo user. SIGHUP (systemctl
    /// reload) re-reads the configuration file, users files and certificates without downtime.
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address for the embedded defaults (ignored with a config file).
        #[arg(long, default_value = first_run::DEFAULT_LISTEN)]
        listen: String,
    },
    /// Read a password on standard input and print its argon2id PHC string.
    HashPassword,
    /// Validate a configuration offline; prints `key: problem — fix` lines.
    CheckConfig {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Also connect to every LDAP directory: TLS, service bind, and the probe user.
        #[arg(long)]
        online: bool,
        /// With --online: a user (UPN) to look up, reporting each mapped attribute and the
        /// ImmutableID it would issue.
        #[arg(long, requires = "online")]
        probe_user: Option<String>,
        /// Also compare an app against what Entra holds for its domain: the JSON of
        /// `Get-MgDomainFederationConfiguration` (issuer, URLs, signing certificate).
        #[arg(long)]
        compare_federation: Option<PathBuf>,
        /// With --compare-federation: the app to compare (needed when there are several).
        #[arg(long, requires = "compare_federation")]
        app: Option<String>,
    },
    /// Write an app's configuration from an ADFS export: the token-signing PFX and the JSON of
    /// `Get-MgDomainFederationConfiguration`, after checking fedsts will serve what Entra holds.
    ImportAdfs {
        /// PKCS#12 file of the ADFS token-signing certificate with its private key.
        #[arg(long)]
        pfx: PathBuf,
        /// File whose first line is the PFX password.
        #[arg(long)]
        pfx_password_file: PathBuf,
        /// The JSON of `Get-MgDomainFederationConfiguration -DomainId DOMAIN | ConvertTo-Json`.
        #[arg(long)]
        federation_json: PathBuf,
        /// The federated domain, e.g. contoso.com.
        #[arg(long)]
        domain: String,
        /// App id to write (default: the domain with dots as dashes).
        #[arg(long)]
        app: Option<String>,
        /// The `[directories.NAME]` the app's users are in.
        #[arg(long, default_value = "main")]
        directory: String,
        /// Directory the fragment, certificate and key are written to.
        #[arg(long, default_value = ".")]
        out: PathBuf,
    },
    /// Make a self-signed certificate and key for every pair the configuration names whose
    /// certificate is missing: TLS (for public_url's host) and each app's token signing
    /// (renewed by automatic rollover). Never overwrites a file; the package runs it on install.
    SelfSigned {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the PowerShell commands that federate an app's domain in Entra ID.
    Commands {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// App id.
        #[arg(long)]
        app: String,
    },
    /// Show or reset a user's extranet lockout state (needs `[state] redis_url`).
    Lockout {
        /// What to do.
        #[command(subcommand)]
        action: LockoutAction,
    },
    /// Promote an app's next token-signing pair to current (old files are kept as backups) and
    /// print the commands that tell Entra ID.
    Rollover {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// App id.
        #[arg(long)]
        app: String,
    },
    /// Drive a running fedsts (loopback, or a host named with --allow-host) with valid,
    /// unique WS-Trust usernamemixed requests (or passive sign-ins with a session) and report
    /// tokens/s, latency and CPU per token.
    Loadtest {
        /// The usernamemixed endpoint, e.g. https://127.0.0.1:8443/wsfed/demo/trust/13/usernamemixed
        /// (the passive endpoint https://127.0.0.1:8443/wsfed/demo with --workload passive).
        #[arg(long)]
        url: String,
        /// What each request is.
        #[arg(long, alias = "dialect", value_enum, default_value = "trust13")]
        workload: loadtest::Workload,
        /// File of `upn:password` lines, used round-robin.
        #[arg(long)]
        users: PathBuf,
        /// The server's TLS certificate (PEM) to trust.
        #[arg(long)]
        ca: PathBuf,
        /// Concurrent keep-alive connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// A new TLS handshake for every request.
        #[arg(long)]
        fresh_handshake: bool,
        /// Never resume a TLS session: every new handshake is a full one.
        #[arg(long)]
        no_resumption: bool,
        /// Stop after this many requests.
        #[arg(long, default_value_t = 1000)]
        requests: u64,
        /// Stop after this many seconds (at most 600).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=600))]
        seconds: u64,
        /// Open loop: a fixed arrival rate in requests per second.
        #[arg(long)]
        target_rate: Option<f64>,
        /// A non-loopback host you mean to load.
        #[arg(long)]
        allow_host: Option<String>,
        /// The server's process id (for CPU per token from /proc).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Passive: a `name=value` session cookie to send (else the first user signs in once).
        #[arg(long)]
        session_cookie: Option<String>,
    },
    /// Check token-signing keys against their certificates, or make one in a PKCS#11 token.
    Keys {
        /// What to do.
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// Read audit log lines: which key signed which assertion.
    Audit {
        /// What to do.
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Manage users of a file directory.
    User {
        /// What to do.
        #[command(subcommand)]
        command: UserCommand,
    },
}

/// `fedsts user …` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Make a new TOTP secret for a user, store it in the app's users file, and print an
    /// otpauth:// URI and a QR code for an authenticator app.
    TotpEnroll {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// App id (names the directory and the issuer shown in the authenticator).
        #[arg(long)]
        app: String,
        /// The user's UPN.
        #[arg(long)]
        upn: String,
    },
    /// Remove a user's TOTP secret from the app's users file, so the user can enrol a new
    /// authenticator while signing in (`passive.totp_self_enrolment`) or get one from
    /// `totp-enroll`.
    TotpReset {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// App id (names the directory).
        #[arg(long)]
        app: String,
        /// The user's UPN.
        #[arg(long)]
        upn: String,
    },
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config, listen } => serve(config, &listen),
        Command::HashPassword => hash_password_from_stdin(),
        Command::CheckConfig {
            config,
            online,
            probe_user,
            compare_federation,
            app,
        } => check_config(
            &config,
            online.then_some(probe_user.as_deref()),
            compare_federation
                .as_deref()
                .map(|json| (json, app.as_deref())),
        ),
        Command::ImportAdfs {
            pfx,
            pfx_password_file,
            federation_json,
            domain,
            app,
            directory,
            out,
        } => {
            let app = app.unwrap_or_else(|| domain.replace('.', "-"));
            let request = crate::adfs::ImportRequest {
                pfx: &pfx,
                federation: &federation_json,
                domain: &domain,
                app_id: &app,
                directory: &directory,
                out: &out,
            };
            admin::import_adfs(&request, &pfx_password_file)
        }
        Command::SelfSigned { config } => make_self_signed(&config),
        Command::Commands { config, app } => print_commands(&config, &app),
        Command::Lockout { action } => lockout::run(action),
        Command::Rollover { config, app } => admin::roll_over(&config, &app),
        Command::Loadtest {
            url,
            workload,
            users,
            ca,
            connections,
            fresh_handshake,
            no_resumption,
            requests,
            seconds,
            target_rate,
            allow_host,
            server_pid,
            session_cookie,
        } => {
            let users = match loadtest::read_users(&users) {
                Ok(u) => u,
                Err(e) => return fail(e),
            };
            let test = loadtest::LoadTest {
                url,
                workload,
                users,
                ca,
                connections,
                fresh_handshake,
                tls_resumption: !no_resumption,
                requests,
                duration: std::time::Duration::from_secs(seconds),
                target_rate,
                allow_host,
                server_pid,
                session_cookie,
            };
            match loadtest::run(&test) {
                Ok(report) => {
                    print!("{}", report.render());
                    ExitCode::SUCCESS
                }
                Err(e) => fail(e),
            }
        }
        Command::Keys { action } => keys::run(action),
        Command::Audit { action } => audit::run(action),
        Command::User {
            command: UserCommand::TotpEnroll { config, app, upn },
        } => admin::totp_enroll(&config, &app, &upn),
        Command::User {
            command: UserCommand::TotpReset { config, app, upn },
        } => admin::totp_reset(&config, &app, &upn),
    }
}

pub(crate) fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("{message}");
    ExitCode::FAILURE
}

fn hash_password_from_stdin() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().take(4096).read_to_string(&mut input) {
        return fail(format!("cannot read the password from standard input: {e}"));
    }
    let password = input.strip_suffix('\n').unwrap_or(&input);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return fail("empty password — type the password on standard input");
    }
    match hash_password(password) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `online` is `Some(probe user)` with `--online`; `compare` is the federation JSON and app.
fn check_config(
    path: &Path,
    online: Option<Option<&str>>,
    compare: Option<(&Path, Option<&str>)>,
) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let mut problems = preflight::check(&config, time::OffsetDateTime::now_utc());
    for warning in preflight::warnings(&config) {
        println!("warning: {warning}");
    }
    if let Some(probe_user) = online {
        match check_online(&config, probe_user) {
            Ok(found) => problems.extend(found),
            Err(code) => return code,
        }
    }
    if let Some((json, app)) = compare {
        match admin::compare_federation(&config, json, app) {
            Ok(found) => problems.extend(found),
            Err(code) => return code,
        }
    }
    if problems.is_empty() {
        println!("{}: OK ({} app(s))", path.display(), config.apps.len());
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        println!("{p}");
    }
    ExitCode::FAILURE
}

/// Prints what the online probes saw and returns their problems.
fn check_online(
    config: &Config,
    probe_user: Option<&str>,
) -> Result<Vec<crate::config::ConfigProblem>, ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(format!("cannot start the async runtime: {e}")))?;
    let reports = runtime.block_on(preflight::check_online(config, probe_user));
    let mut problems = Vec::new();
    for report in reports {
        for finding in &report.findings {
            println!("online: {}: {finding}", report.prefix());
        }
        for warning in &report.warnings {
            println!("warning: {warning}");
        }
        problems.extend(report.problems);
    }
    Ok(problems)
}

/// `self-signed`: prints each file made, one per line.
fn make_self_signed(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    match first_run::make_missing_pairs(&config) {
        Ok(made) => {
            for file in made {
                println!("created {}", file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

pub(crate) fn print_commands(path: &Path, app_id: &str) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let sts = match Sts::from_config(&config, Arc::new(SystemClock)) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    match sts.app(app_id) {
        Some(app) => {
            print!("{}", app.commands_page());
            ExitCode::SUCCESS
        }
        None => fail(format!(
            "--app: no app with id `{app_id}` — ids in {}: {}",
            path.display(),
            sts.apps()
                .map(|a| a.config.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

fn serve(config_path: Option<PathBuf>, listen: &str) -> ExitCode {
    let local = PathBuf::from("fedsts.toml");
    let config_path = config_path.or_else(|| local.exists().then_some(local));
    let (config, demo_password) = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => (c, None),
            Err(e) => return fail(e),
        },
        None => match first_run::prepare(Path::new("."), listen) {
            Ok(embedded) => {
                for path in &embedded.created {
                    println!("created {}", path.display());
                }
                (embedded.config, Some(embedded.demo_password))
            }
            Err(e) => return fail(e),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(serve_config(config, config_path, demo_password))
}

/// Serves `config`; with `config_path` (the file it was loaded from) SIGHUP reloads it.
async fn serve_config(
    config: Config,
    config_path: Option<PathBuf>,
    demo_password: Option<String>,
) -> ExitCode {
    let store = match state::build(&config.state) {
        Ok(s) => s,
        Err(e) => return fail(format!("state.redis_url: {e}")),
    };
    for warning in preflight::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let sts = match Sts::with_state(&config, Arc::new(SystemClock), store) {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(e),
    };
    let tls = match server::tls::server_config_for(&config, Arc::new(SystemClock)) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let addr = match config.listen_addr() {
        Ok(a) => a,
        Err(p) => return fail(p),
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            return fail(format!(
                "server.listen: cannot listen on {addr}: {e} — choose a free port"
            ));
        }
    };
    let health_listener = match bind_optional(
        "server.connections.health_listen",
        config.server.connections.health_listen.as_deref(),
    )
    .await
    {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let metrics_listener =
        match bind_optional("metrics.listen", config.metrics.listen.as_deref()).await {
            Ok(l) => l,
            Err(e) => return fail(e),
        };
    let fd_limit = server::raise_fd_limit();
    let limits = server::ConnectionLimits::resolve(&config.server.connections);
    tracing::info!(
        fd_limit,
        max_connections = limits.max,
        max_connections_per_address = limits.max_per_address,
        "connection limits"
    );
    let shutdown = match shutdown_signal() {
        Ok(s) => s,
        Err(e) => return fail(format!("cannot listen for SIGTERM: {e}")),
    };
    let banner = banner(&config, &sts, demo_password.as_deref());
    let server = server::Server::new(listener, health_listener, sts, tls, limits)
        .with_metrics(metrics_listener, config.metrics.clone());
    let reloads = match config_path {
        Some(path) => {
            let serving = server.serving.clone();
            let reloader = reload::Reloader::new(path, config, serving, Arc::new(SystemClock));
            let (trigger, triggers) = reload::trigger();
            tokio::spawn(reloader.run(triggers));
            Some(trigger)
        }
        None => None,
    };
    match reload_signal(reloads) {
        Ok(hangups) => drop(tokio::spawn(hangups)),
        Err(e) => return fail(format!("cannot listen for SIGHUP: {e}")),
    }
    print_banner(&banner);
    server::serve(server, shutdown).await;
    ExitCode::SUCCESS
}

/// The extra listener `key` names, when it names one; the error names the key.
async fn bind_optional(
    key: &str,
    addr: Option<&str>,
) -> Result<Option<tokio::net::TcpListener>, String> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    tokio::net::TcpListener::bind(addr)
        .await
        .map(Some)
        .map_err(|e| format!("{key}: cannot listen on {addr}: {e} — choose a free port"))
}

/// Pulls `trigger` on every SIGHUP (see [`reload::on_hangup`]).
#[cfg(unix)]
fn reload_signal(
    trigger: Option<reload::Trigger>,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    reload::on_hangup(trigger)
}

/// No SIGHUP: nothing reloads.
#[cfg(not(unix))]
fn reload_signal(
    _trigger: Option<reload::Trigger>,
) -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    Ok(async {})
}

/// Writes the start banner. A closed standard output (a supervisor that stopped reading) is not
/// an error worth dying for: the server keeps running.
fn print_banner(banner: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(banner.as_bytes());
}

/// The start banner: where we listen, every app's URLs, and the demo credentials if any.
fn banner(config: &Config, sts: &Sts, demo_password: Option<&str>) -> String {
    let mut text = format!(
        "fedsts listening on {} ({})\n",
        config.server.listen,
        config.public_base()
    );
    for app in sts.apps() {
        text.push_str(&app_urls(app));
    }
    if let Some(password) = demo_password {
        text.push_str(&format!("demo user:     {}\n", first_run::DEMO_UPN));
        text.push_str(&format!(
            "demo password: {password}   (new at every start with embedded defaults)\n"
        ));
    }
    text
}

fn app_urls(app: &App) -> String {
    let urls = &app.urls;
    let mut lines = vec![
        format!(
            "app {} — domain {}, issuer {}",
            app.config.id, app.config.domain, app.config.issuer_uri
        ),
        format!("  MEX:             {}", urls.mex()),
        format!(
            "  WS-Trust 1.3:    {}",
            urls.usernamemixed(TrustVersion::V13)
        ),
        format!(
            "  WS-Trust 2005:   {}",
            urls.usernamemixed(TrustVersion::V2005)
        ),
    ];
    if app.config.kerberos.is_some() {
        lines.push(format!(
            "  Kerberos 1.3:    {}",
            urls.windowstransport(TrustVersion::V13)
        ));
        lines.push(format!(
            "  Kerberos 2005:   {}",
            urls.windowstransport(TrustVersion::V2005)
        ));
    }
    lines.push(format!("  passive sign-in: {}", urls.passive()));
    lines.push(format!("  metadata:        {}", urls.metadata()));
    lines.push(format!("  commands page:   {}", urls.commands()));
    lines.join("\n") + "\n"
}

/// Listens for SIGTERM and SIGINT (Ctrl-C) from the moment it is called — before the banner
/// tells anyone the server is up — and completes when one arrives.
#[cfg(unix)]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
    })
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, std::io::Error> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
