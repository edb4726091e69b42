//! The `fedsts` binary: parses the command line and runs it.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    fedsts::logging::init();
    fedsts::cli::run(fedsts::cli::Cli::parse())
}
