//! `dynoctl`: the ops command line, a thin gRPC client of the agent.
//!
//! Listings print Heroku's formats for people and, with `--json`, arrays of
//! objects with the contract fields for scripts. Errors print one line naming
//! the problem and exit non-zero (see [`exit_code`], the one place exit codes
//! are decided).
//!
//! - [`args`]: the grammar;
//! - `commands`: one function per command;
//! - `start`: `start` and `run` (attached or detached one-offs);
//! - `session`: the attached session of `run` and `exec` (pty or streams);
//! - `render`: tables, Heroku's `ps`, JSON.

pub mod args;
mod commands;
mod render;
mod session;
mod start;

use std::io::Write;

pub use self::args::{Cli, Command, SlugArgs};
pub use self::render::{dyno_json, format_ps, state_name};
pub use self::start::shell_quote;

/// A failure of a dynoctl command, with its exit code.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub code: i32,
}

impl Failure {
    /// A failure of dynoctl's own, classed as the gRPC `code` it resembles
    /// (a bad flag is `InvalidArgument`, no agent `Unavailable`).
    fn new(code: tonic::Code, message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: exit_code(code),
        }
    }
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Failure {
        use tonic_types::StatusExt;
        // Where the code alone does not say why (which resource, which
        // precondition), the reason does.
        let reason = match s.code() {
            tonic::Code::ResourceExhausted | tonic::Code::FailedPrecondition => s
                .get_details_error_info()
                .map(|i| format!(", {}", i.reason))
                .unwrap_or_default(),
            _ => String::new(),
        };
        Failure::new(s.code(), format!("{} ({}{reason})", s.message(), code_name(s.code())))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Failure {
        Failure::new(tonic::Code::Unknown, e.to_string())
    }
}

fn code_name(c: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match c {
        InvalidArgument => "invalid argument",
        NotFound => "not found",
        ResourceExhausted => "resource exhausted",
        FailedPrecondition => "failed precondition",
        Unavailable => "unavailable",
        Unimplemented => "unimplemented",
        Internal => "internal error",
        _ => "error",
    }
}

/// The one place gRPC codes become exit codes.
pub fn exit_code(c: tonic::Code) -> i32 {
    match c {
        tonic::Code::InvalidArgument => 2,
        tonic::Code::NotFound => 3,
        tonic::Code::ResourceExhausted => 4,
        tonic::Code::Unavailable => 5,
        _ => 1,
    }
}

type R<T = ()> = Result<T, Failure>;

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    // `run` and `exec` exit with the command's status: their own errors are
    // 125 (as `docker run`'s), never mistaken for the command's.
    let attached = matches!(cli.command, Command::Run { .. } | Command::Exec { .. });
    match commands::dispatch(cli).await {
        Ok(code) => code,
        Err(f) => {
            let _ = std::io::stdout().flush();
            eprintln!("dynoctl: {}", f.message);
            if attached { OWN_ERROR } else { f.code }
        }
    }
}

/// `dynoctl run`'s and `dynoctl exec`'s exit code for their own errors.
pub const OWN_ERROR: i32 = 125;

/// The whole `dynoctl` binary; returns its exit code.
pub fn main() -> i32 {
    let cli = <Cli as clap::Parser>::parse();
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt.block_on(run(cli)),
        Err(e) => {
            eprintln!("dynoctl: starting the runtime: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests;
