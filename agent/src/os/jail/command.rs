//! The dyno's command process, forked by its init: leaves the init's
//! session, limits its open files, drops every privilege, installs the
//! seccomp filter, takes its standard streams and execs `/bin/sh -c`. A
//! failed step is reported to the init on a status pipe (see
//! `os/child.rs`).

use std::os::fd::BorrowedFd;

use super::init::Child;
use super::{privileges, seccomp};
use crate::os::{child, process};

/// Drops every privilege and execs the command; never returns. Only
/// async-signal-safe syscalls on memory prepared before the init was forked.
pub(super) fn exec_dropped(c: &Child<'_>, status: BorrowedFd<'_>) -> ! {
    let fail = |step: i32, e| child::fail(status, step, e);
    if let Err(e) = process::new_session() {
        fail(20, e);
    }
    if let Err(e) = privileges::limit_open_files(c.plan.nofile) {
        fail(21, e);
    }
    if let Err(e) = child::chdir(c.exec.workdir()) {
        fail(22, e);
    }
    if let Err(e) = privileges::drop_bounding_and_ambient(c.cap_last) {
        fail(23, e);
    }
    if let Err(e) = privileges::become_user(c.plan.uid, c.plan.gid) {
        fail(24, e);
    }
    if let Err(e) = privileges::clear_capabilities() {
        fail(23, e);
    }
    if let Err(e) = privileges::no_new_privs() {
        fail(25, e);
    }
    if let Err(e) = seccomp::install(c.filter) {
        fail(29, e);
    }
    if let Err(e) = child::take_streams(c.streams) {
        fail(26, e);
    }
    if c.tty
        && let Err(e) = crate::os::tty::make_controlling()
    {
        fail(30, e);
    }
    child::default_signals();
    if let Err(e) = child::close_inherited_on_exec() {
        fail(27, e);
    }
    fail(28, c.exec.exec())
}
