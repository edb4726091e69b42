//! The `fedsts` command line: `serve`, `hash-password`, `check-config`, `commands`, `lockout`,
//! `rollover`, `user totp-enroll`. Admin commands that change state live in submodules.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

mod admin;
mod lockout;

pub use lockout::LockoutAction;

use crate::clock::SystemClock;
use crate::config::Config;
use crate::defaults;
use crate::directory::file::hash_password;
use crate::preflight;
use crate::server;
use crate::state;
use crate::sts::{App, Sts};
use crate::wstrust::TrustVersion;

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
    /// defaults: self-signed certificates under certs/ and a demo user.
    Serve {
        /// Configuration file.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Listen address for the embedded defaults (ignored with a config file).
        #[arg(long, default_value = defaults::DEFAULT_LISTEN)]
        listen: String,
    },
    /// Read a password on standard input and print its argon2id PHC string.
    HashPassword,
    /// Validate a configuration offline; prints `key: problem — fix` lines.
    CheckConfig {
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
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve { config, listen } => serve(config, &listen),
        Command::HashPassword => hash_password_from_stdin(),
        Command::CheckConfig { config } => check_config(&config),
        Command::Commands { config, app } => print_commands(&config, &app),
        Command::Lockout { action } => lockout::run(action),
        Command::Rollover { config, app } => admin::roll_over(&config, &app),
        Command::User {
            command: UserCommand::TotpEnroll { config, app, upn },
        } => admin::totp_enroll(&config, &app, &upn),
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

fn check_config(path: &Path) -> ExitCode {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    let problems = preflight::check(&config, time::OffsetDateTime::now_utc());
    for warning in preflight::warnings(&config) {
        println!("warning: {warning}");
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
    let (config, demo_password) = match config_path {
        Some(path) => match Config::load(&path) {
            Ok(c) => (c, None),
            Err(e) => return fail(e),
        },
        None => match defaults::prepare(Path::new("."), listen) {
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
    runtime.block_on(serve_config(config, demo_password))
}

async fn serve_config(config: Config, demo_password: Option<String>) -> ExitCode {
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
    print_banner(&config, &sts, demo_password.as_deref());
    server::serve(listener, tls, sts, shutdown_signal()).await;
    ExitCode::SUCCESS
}

fn print_banner(config: &Config, sts: &Sts, demo_password: Option<&str>) {
    println!(
        "fedsts listening on {} ({})",
        config.server.listen,
        config.public_base()
    );
    for app in sts.apps() {
        print_app_urls(app);
    }
    if let Some(password) = demo_password {
        println!("demo user:     {}", defaults::DEMO_UPN);
        println!("demo password: {password}   (new at every start with embedded defaults)");
    }
}

fn print_app_urls(app: &App) {
    println!(
        "app {} — domain {}, issuer {}",
        app.config.id, app.config.domain, app.config.issuer_uri
    );
    println!("  MEX:             {}", app.urls.mex());
    println!(
        "  WS-Trust 1.3:    {}",
        app.urls.usernamemixed(TrustVersion::V13)
    );
    println!(
        "  WS-Trust 2005:   {}",
        app.urls.usernamemixed(TrustVersion::V2005)
    );
    if app.config.kerberos.is_some() {
        let windows = |v| app.urls.windowstransport(v);
        println!("  Kerberos 1.3:    {}", windows(TrustVersion::V13));
        println!("  Kerberos 2005:   {}", windows(TrustVersion::V2005));
    }
    println!("  passive sign-in: {}", app.urls.passive());
    println!("  metadata:        {}", app.urls.metadata());
    println!("  commands page:   {}", app.urls.commands());
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
