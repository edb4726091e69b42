//! The `fedsts` command line: `serve`, `hash-password`, `check-config`, `commands`, `rollover`,
//! `user totp-enroll`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

use crate::clock::SystemClock;
use crate::config::{Config, DirectoryConfig};
use crate::defaults;
use crate::directory::file::hash_password;
use crate::preflight;
use crate::rollover::{self, SigningFiles};
use crate::server;
use crate::sts::{App, Sts};
use crate::totp;
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
        Command::Rollover { config, app } => roll_over(&config, &app),
        Command::User {
            command: UserCommand::TotpEnroll { config, app, upn },
        } => totp_enroll(&config, &app, &upn),
    }
}

fn load_app(path: &Path, app_id: &str) -> Result<(Config, crate::config::AppConfig), String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    let app = config.app(app_id).cloned().ok_or_else(|| {
        format!(
            "--app: no app with id `{app_id}` — ids in {}: {}",
            path.display(),
            config
                .apps
                .iter()
                .map(|a| a.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    Ok((config, app))
}

fn roll_over(path: &Path, app_id: &str) -> ExitCode {
    let (_, app) = match load_app(path, app_id) {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let (Some(next_cert), Some(next_key)) = (app.next_signing_cert, app.next_signing_key) else {
        return fail(format!(
            "app `{app_id}` has no next signing pair — set next_signing_cert and next_signing_key \
             in its [[apps]] table, publish it (restart, then run section B of the commands page), \
             and roll over once Entra ID has it"
        ));
    };
    let files = SigningFiles {
        cert: app.signing_cert,
        key: app.signing_key,
        next_cert,
        next_key,
    };
    let report = match rollover::promote_next(path, app_id, &files, time::OffsetDateTime::now_utc())
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    for backup in &report.backups {
        println!("kept {}", backup.display());
    }
    println!(
        "promoted the next signing pair of app {app_id}; restart fedsts to sign with it, then tell \
         Entra ID (section B below):\n"
    );
    print_commands(path, app_id)
}

fn totp_enroll(path: &Path, app_id: &str, upn: &str) -> ExitCode {
    let (config, app) = match load_app(path, app_id) {
        Ok(pair) => pair,
        Err(e) => return fail(e),
    };
    let users_path = match config.directories.get(&app.directory) {
        Some(DirectoryConfig::File { path }) => path.clone(),
        None => return fail(format!("apps.directory: no directory `{}`", app.directory)),
    };
    let secret = match totp::Secret::generate() {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let backup = match rollover::store_totp_secret(
        &users_path,
        upn,
        &secret.to_base32(),
        time::OffsetDateTime::now_utc(),
    ) {
        Ok(b) => b,
        Err(e) => return fail(e),
    };
    let uri = totp::otpauth_uri(app.display_name(), upn, &secret);
    println!(
        "stored a new TOTP secret for {upn} in {} (previous file kept as {})",
        users_path.display(),
        backup.display()
    );
    println!(
        "restart fedsts to load it, then scan the code below or add this URI to an authenticator app:"
    );
    println!("{uri}");
    if let Some(qr) = totp::terminal_qr(&uri) {
        println!("{qr}");
    }
    ExitCode::SUCCESS
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
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
    if problems.is_empty() {
        println!("{}: OK ({} app(s))", path.display(), config.apps.len());
        return ExitCode::SUCCESS;
    }
    for p in &problems {
        println!("{p}");
    }
    ExitCode::FAILURE
}

fn print_commands(path: &Path, app_id: &str) -> ExitCode {
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
    let sts = match Sts::from_config(&config, Arc::new(SystemClock)) {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(e),
    };
    let tls = match server::tls::server_config(&config.server.tls_cert, &config.server.tls_key) {
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
