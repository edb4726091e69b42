//! `fedsts lockout show|reset USER`: the extranet lockout state of a user, read from and
//! cleared in the shared state store (Redis); a memory store lives inside each server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use super::fail;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::policy::lockout::{Location, Lockout, UserRecord};
use crate::state;

/// `fedsts lockout` actions.
#[derive(Debug, Subcommand)]
pub enum LockoutAction {
    /// Print the user's bad-password counters and familiar IPs.
    Show {
        /// User name (UPN).
        user: String,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Clear the user's bad-password counters (familiar IPs are kept).
    Reset {
        /// User name (UPN).
        user: String,
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs a lockout action.
pub fn run(action: LockoutAction) -> ExitCode {
    let (LockoutAction::Show { user, config } | LockoutAction::Reset { user, config }) = &action;
    let config = match Config::load(config) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if config.state.redis_url.is_none() {
        return fail(
            "lockout state lives in the memory of each running server; set [state] redis_url to \
             keep it in Redis, where this command can show and reset it",
        );
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(async {
        let store = match state::build(&config.state) {
            Ok(s) => s,
            Err(e) => return fail(format!("state.redis_url: {e}")),
        };
        let lockout = Lockout::new(config.lockout.clone(), store);
        let now = SystemClock.now();
        let result = match &action {
            LockoutAction::Show { .. } => lockout.show(user, now).await.map(|record| {
                print!("{}", describe_lockout(&lockout, user, &record, now));
            }),
            LockoutAction::Reset { .. } => lockout.reset(user, now).await.map(|()| {
                println!("{user}: bad-password counters cleared");
            }),
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!(
                "{e} — check that Redis at state.redis_url is running"
            )),
        }
    })
}

/// The text `fedsts lockout show` prints.
fn describe_lockout(
    lockout: &Lockout,
    user: &str,
    record: &UserRecord,
    now: time::OffsetDateTime,
) -> String {
    let mut text = format!("user: {user}\n");
    for location in [Location::Familiar, Location::Unfamiliar] {
        let counter = record.counter(location);
        let last = counter
            .last_bad
            .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "never".into());
        let locked = if lockout.is_locked(counter, now) {
            "locked"
        } else {
            "not locked"
        };
        text.push_str(&format!(
            "{}: {} bad password(s), last {last}, {locked}\n",
            location.as_str(),
            counter.bad
        ));
    }
    let ips: Vec<String> = record
        .familiar_ips
        .iter()
        .map(ToString::to_string)
        .collect();
    text.push_str(&format!("familiar IPs: {}\n", ips.join(", ")));
    text
}
