//! The run's exit record: the command's status (a jailed run's as its init
//! reported it) and the time it exited, written atomically to `exit.json`.

use std::io::{self, Read};
use std::os::fd::OwnedFd;

use chrono::Utc;

use crate::logs::LogWriter;
use crate::os::ExitStatus;
use crate::os::report::Report;
use crate::runs::{ExitRecord, RunDir, write_json_atomic};

/// Closes the log and writes `exit.json` for a command that ended with
/// `status`, now; returns the status recorded. `init_report` is the read end of the init's report pipe,
/// for a jailed run.
pub(super) fn record(
    run: &RunDir,
    init_report: Option<&OwnedFd>,
    status: ExitStatus,
    mut log: LogWriter,
) -> io::Result<ExitStatus> {
    let exited_at = Utc::now();
    // A jailed run's status is the command's, as its init reported it.
    let status = match init_report {
        Some(report) => last_reported_status(report).unwrap_or(status),
        None => status,
    };
    let _ = log.finish();
    let (code, signal) = match status {
        ExitStatus::Code(c) => (Some(c), None),
        ExitStatus::Signal(s) => (None, Some(s)),
    };
    write_json_atomic(
        &run.exit(),
        &ExitRecord {
            code,
            signal,
            exited_at,
        },
    )?;
    Ok(status)
}

/// The last `Exited` report of the dyno's init, if it sent one.
fn last_reported_status(report: &OwnedFd) -> Option<ExitStatus> {
    let mut bytes = Vec::new();
    let _ = (&std::fs::File::from(report.try_clone().ok()?)).read_to_end(&mut bytes);
    Report::decode_all(&bytes)
        .filter_map(|r| match r {
            Ok(Report::Exited(status)) => Some(status),
            _ => None,
        })
        .last()
}
