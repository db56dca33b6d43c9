//! Unit tests of `spawn`: plans and the unjailed fork→exec child.

use std::os::fd::OwnedFd;
use std::path::Path;

use super::*;
use crate::os::process::{ExitStatus, wait_exit};

#[test]
fn exec_plan_rejects_nul_bytes() {
    assert!(ExecPlan::shell("echo\0hi", &[], Path::new("/")).is_err());
    assert!(ExecPlan::shell("echo hi", &[("K".into(), "v\0".into())], Path::new("/")).is_err());
    assert!(ExecPlan::shell("echo hi", &[("K".into(), "v".into())], Path::new("/")).is_ok());
}

#[test]
fn a_failed_step_before_exec_is_reported_by_name() {
    let plan = ExecPlan::shell("true", &[], Path::new("/nonexistent-app-dir")).unwrap();
    let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let err = spawn_command(&plan, &null, &null, &null).unwrap_err();
    assert!(err.to_string().starts_with("chdir to the app directory: "), "{err}");
    assert_eq!(err.kind(), io::ErrorKind::NotFound);
    let ok = ExecPlan::shell("exit 3", &[], Path::new("/")).unwrap();
    let pid = spawn_command(&ok, &null, &null, &null).unwrap();
    assert_eq!(wait_exit(pid).unwrap(), ExitStatus::Code(3));
}

#[test]
fn a_command_can_be_started_through_fork_and_exec() {
    let mut cmd = std::process::Command::new("/bin/sh");
    cmd.args(["-c", "exit 4"]);
    let status = use_fork_exec(&mut cmd).status().unwrap();
    assert_eq!(status.code(), Some(4));
}
