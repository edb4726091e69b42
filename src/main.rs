//! The `fedsts` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let filter = EnvFilter::try_from_env("FEDSTS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("FEDSTS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    fedsts::cli::run(fedsts::cli::Cli::parse())
}
