//! Unit tests of `exec_limits`: sizes as the kernel counts them, and that
//! the limits said are the ones `execve` applies.

use std::path::Path;

use super::*;
use crate::os::spawn::{ExecPlan, spawn_command};

#[test]
fn sizes_count_every_string_its_nul_and_a_pointer() {
    let ptr = std::mem::size_of::<usize>();
    let s = exec_size("/bin/sh", &["sh", "-c", "true"], [("A", "bc")]);
    assert_eq!(s.env, 5 + ptr);
    assert_eq!(s.total, 8 + (3 + 3 + 5 + 5) + 4 * ptr);
    assert_eq!(s.longest, 5);
}

#[test]
fn the_limits_are_within_what_the_kernel_allows() {
    assert!((128 << 10..=6 << 20).contains(&arg_max()));
    assert_eq!(max_arg_strlen(), 131072);
}

#[test]
fn an_exec_over_the_limit_is_refused_by_the_kernel_and_under_it_runs() {
    let null = std::os::fd::OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
    let run = |env: Vec<(String, String)>| {
        let plan = ExecPlan::shell("exit 0", &env, Path::new("/")).unwrap();
        spawn_command(&plan, &null, &null, &null)
    };
    // Just over the limit: refused with E2BIG.
    let value = "x".repeat(max_arg_strlen() - 16);
    let n = arg_max() / value.len() + 1;
    let env: Vec<_> = (0..n).map(|i| (format!("V{i}"), value.clone())).collect();
    let size = exec_size(
        "/bin/sh",
        &["sh", "-c", "exit 0"],
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    );
    assert!(size.total > arg_max());
    let err = run(env).unwrap_err();
    assert!(err.to_string().contains("Argument list too long"), "{err}");
    // One string over MAX_ARG_STRLEN alone is refused too.
    let err = run(vec![("V".into(), "x".repeat(max_arg_strlen()))]).unwrap_err();
    assert!(err.to_string().contains("Argument list too long"), "{err}");
    // Half the limit runs.
    let half: Vec<_> = (0..n / 2).map(|i| (format!("V{i}"), value.clone())).collect();
    let pid = run(half).unwrap();
    crate::os::process::wait_exit(pid).unwrap();
}
