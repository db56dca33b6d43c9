//! The dyno lifecycle end to end: up, crash restarts and cool-offs, graceful
//! and forced stops, boot timeouts, one-off dynos.

use std::time::Duration;

use dyno_tests::*;
use nix::sys::signal::Signal;

#[test]
fn web_dyno_serves_then_crash_restarts_with_cooloff() {
    let a = TestAgent::start("");
    let slug = a.slug("web", &[("index.html", "hello from web.1\n")]);
    a.start_dyno("shop", "web.1", &slug, WEB);
    let d = a.wait_state("shop", "web.1", "up");
    let port = d["port"].as_u64().expect("web dyno has a port");
    assert!((a.ports.0 as u64..=a.ports.1 as u64).contains(&port));
    assert!(http_get(port, "/index.html").contains("hello from web.1"));
    assert_eq!(d["restarts"], 0);

    // First crash: restarted at once.
    let pid1 = pid_of(&d);
    signal(pid1, Signal::SIGKILL);
    let d = a.wait_dyno("shop", "web.1", "restarted once and up", |d| {
        d["restarts"] == 1 && d["state"] == "up"
    });
    assert_ne!(pid_of(&d), pid1);
    assert_eq!(d["last_exit"]["signal"], 9);
    assert_eq!(d["last_exit"]["reason"], "signal");

    // Second crash: crashed, with a cool-off before the restart.
    signal(pid_of(&d), Signal::SIGKILL);
    let d = a.wait_state("shop", "web.1", "crashed");
    assert!(d["next_restart_at"].is_string(), "next_restart_at set: {d}");
    let human = a.ctl_ok(&["ps", "--app", "shop"]);
    assert!(
        human.contains("web.1: crashed") && human.contains("restart in ~"),
        "{human}"
    );
    let d = a.wait_dyno("shop", "web.1", "restarted after the cool-off", |d| {
        d["restarts"] == 2 && d["state"] == "up"
    });
    assert!(d["next_restart_at"].is_null());
    assert!(http_get(d["port"].as_u64().unwrap(), "/index.html").contains("hello"));

    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "web.1", "-n", "50"]));
    for line in [
        "State changed from crashed to starting",
        "Process exited with status 137",
        "State changed from starting to up",
    ] {
        assert!(logs.iter().any(|l| l == line), "{line:?} missing in {logs:#?}");
    }
}

#[test]
fn stop_is_graceful_then_forced_after_the_grace() {
    let a = TestAgent::start("");
    let slug = a.slug("w", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.start_dyno("shop", "stubborn.1", &slug, "trap '' TERM; exec sleep 600");
    let w = a.wait_state("shop", "worker.1", "up");
    let s = a.wait_state("shop", "stubborn.1", "up");

    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    let w2 = a.wait_state("shop", "worker.1", "down");
    assert_eq!(w2["last_exit"]["reason"], "stopped");
    assert_eq!(w2["last_exit"]["signal"], 15);
    assert!(!alive(pid_of(&w)));

    a.ctl_ok(&["stop", "--app", "shop", "stubborn"]);
    nothing_happens_for(Duration::from_millis(500)); // no kill before the grace ends
    assert!(alive(pid_of(&s)), "SIGTERM is ignored: still running within the grace");
    let s2 = a.wait_state("shop", "stubborn.1", "down");
    assert_eq!(s2["last_exit"]["reason"], "stop_timeout");
    assert_eq!(s2["last_exit"]["signal"], 9);
    assert!(!alive(pid_of(&s)));
    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "stubborn.1"]));
    assert!(
        logs.iter().any(|l| l.starts_with("Error R12 (Exit timeout)")),
        "{logs:#?}"
    );
    assert!(
        logs.iter().any(|l| l == "Stopping all processes with SIGTERM"),
        "{logs:#?}"
    );

    // Stopped dynos stay down: not restarted.
    nothing_happens_for(Duration::from_secs(3));
    assert_eq!(a.dyno("shop", "worker.1").unwrap()["state"], "down");
}

#[test]
fn stop_ends_background_processes_of_the_dyno() {
    let a = TestAgent::start("");
    let slug = a.slug("bg", &[]);
    // A child in the background that detaches into its own session, then the main process.
    a.start_dyno(
        "shop",
        "worker.1",
        &slug,
        "setsid sleep 600 & sleep 601 & exec sleep 602",
    );
    let d = a.wait_state("shop", "worker.1", "up");
    // init, the command and its two children, all in the dyno's pid namespace.
    let members = wait_for("the background processes", || {
        let m = pid_namespace_members(pid_of(&d));
        (m.len() >= 4).then_some(m)
    });
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.1", "down");
    wait_for("every process of the dyno to end", || {
        members.iter().all(|p| !alive(*p)).then_some(())
    });
}

#[test]
fn web_dyno_that_never_binds_hits_the_boot_timeout() {
    let a = TestAgent::start("");
    let slug = a.slug("slow", &[]);
    a.start_dyno("shop", "web.1", &slug, "exec sleep 600");
    let d = a.wait_dyno("shop", "web.1", "starting with a pid", |d| {
        d["state"] == "starting" && d["pid"].is_u64()
    });
    assert!(alive(pid_of(&d)));
    let d = a.wait_dyno("shop", "web.1", "a boot timeout", |d| {
        d["last_exit"]["reason"] == "boot_timeout"
    });
    // The first crash restarts at once: the dyno is starting again.
    assert_eq!(d["restarts"], 1);
    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "-n", "200"]));
    assert!(
        logs.iter()
            .any(|l| l.starts_with("Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 3 seconds")),
        "{logs:#?}"
    );
}

#[test]
fn one_off_run_streams_output_and_returns_the_exit_status() {
    let a = TestAgent::start("");
    let slug = a.slug("one", &[("hello.sh", "echo \"hello $1 from $DYNO\"\n")]);
    let out = a.ctl(&run_args(
        "shop",
        &show(&slug),
        &["--", "sh", "-c", "echo hi; sh hello.sh there; echo oops >&2; exit 7"],
    ));
    assert_eq!(
        out.status.code(),
        Some(7),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Attached without a terminal: stdout and stderr streamed apart, byte for byte.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout, "hi\nhello there from run.1\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");

    // Words with spaces and quotes arrive intact.
    let out = a.ctl(&run_args(
        "shop",
        &show(&slug),
        &["--", "printf", "%s|", "a b", "it's", "$HOME"],
    ));
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "a b|it's|$HOME|");

    let d = a.dyno("shop", "run.1").expect("run.1 listed");
    assert_eq!(d["state"], "down");
    assert_eq!(d["last_exit"]["code"], 7);
    assert_eq!(a.dyno("shop", "run.2").expect("run.2")["last_exit"]["code"], 0);
    // One-off dynos are never restarted.
    nothing_happens_for(Duration::from_secs(3));
    assert_eq!(a.dyno("shop", "run.1").unwrap()["restarts"], 0);
}

#[test]
fn one_off_killed_by_a_signal_exits_128_plus_signal() {
    let a = TestAgent::start("");
    let slug = a.slug("sig", &[]);
    let out = a.ctl(&run_args("shop", &show(&slug), &["--", "sh", "-c", "kill -9 $$"]));
    assert_eq!(out.status.code(), Some(137));
}

#[test]
fn restart_resets_and_replaces_the_run() {
    let a = TestAgent::start("");
    let slug = a.slug("r", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    a.ctl_ok(&["restart", "--app", "shop", "worker"]);
    let d2 = a.wait_dyno("shop", "worker.1", "a new run", |x| {
        x["state"] == "up" && x["pid"] != d["pid"]
    });
    assert_eq!(d2["restarts"], 1);
    assert!(!alive(pid_of(&d)));
    assert_ne!(d2["run_id"], d["run_id"]);
}
