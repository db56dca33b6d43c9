//! Supervisor tests: the boot timeout (R10) of web dynos.

use super::*;

// ---------------------------------------------------------------------------
// Boot timeout (R10)
// ---------------------------------------------------------------------------

const R10_LINE: &str = "Error R10 (Boot timeout) -> Web process failed to bind to $PORT within 7 seconds of launch";

fn boot_timeout_kill() -> Vec<Action> {
    vec![
        log(R10_LINE),
        log("Stopping process with SIGKILL"),
        Action::Signal(Signal::KillAll),
    ]
}

#[test]
fn boot_timeout_kills_a_web_dyno_and_counts_as_a_crash() {
    let mut d = Dyno::web();
    d.start();
    d.advance(secs(1));
    d.spawned();

    d.advance(secs(5)); // t0 + 6 s: not yet
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Starting);

    d.advance(secs(1)); // t0 + 7 s: the boot deadline
    assert_eq!(d.tick(), boot_timeout_kill());
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.boot_deadline, None);
    assert_eq!(
        d.sup.stopping,
        Some(Stopping {
            intent: Intent::BootTimeout,
            grace_until: t0() + secs(7),
            killed: true,
        })
    );
    // Killed once: a later tick neither logs nor signals again.
    d.advance(secs(10));
    assert_eq!(d.tick(), vec![]);

    let end = exited_signal(9, d.now);
    let mut expected = vec![log("Process exited with status 137")];
    expected.extend(crash_and_restart(State::Starting, "boot_timeout", WEB_CMD, "web.1.2"));
    assert_eq!(d.exited(end), expected);
    assert_eq!(
        d.sup.last_exit,
        Some(LastExit {
            code: None,
            signal: Some(9),
            reason: ExitReason::BootTimeout,
            at: t0() + secs(17),
            message: None,
        })
    );
    assert_eq!(d.sup.crashes, 1);
    assert_eq!(d.sup.stopping, None);
    assert_eq!(d.sup.state, State::Starting);
    assert_eq!(d.sup.boot_deadline, Some(t0() + secs(17 + 7)));
}

#[test]
fn second_boot_timeout_stays_crashed_with_a_cooloff() {
    let mut d = Dyno::web();
    d.u = 0.0;
    d.start();
    for _ in 0..2 {
        d.spawned();
        d.advance(secs(7));
        assert_eq!(d.tick(), boot_timeout_kill());
        d.advance(secs(1));
        let end = exited_signal(9, d.now);
        d.exited(end);
    }
    assert_eq!(d.sup.state, State::Crashed);
    assert_eq!(d.sup.crashes, 2);
    assert_eq!(d.sup.run, None);
    assert_eq!(d.sup.last_exit.clone().unwrap().reason, ExitReason::BootTimeout);
    assert_eq!(d.sup.next_restart_at, Some(d.now + mins(10)));
}

#[test]
fn boot_timeout_exit_actions_when_not_restarted_at_once() {
    let mut d = Dyno::web();
    d.start();
    d.spawned();
    d.port_bound();
    d.crash(); // first crash: restarted at once
    d.spawned();
    d.advance(secs(7));
    d.tick();
    let end = exited_signal(9, d.now);
    assert_eq!(
        d.exited(end),
        vec![
            log("Process exited with status 137"),
            log("State changed from starting to crashed"),
            changed(State::Starting, State::Crashed, "boot_timeout"),
        ]
    );
}

#[test]
fn no_boot_timeout_once_the_port_is_bound() {
    let mut d = Dyno::web().started_up();
    d.advance(secs(30));
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Up);
    assert_eq!(d.sup.stopping, None);
}

#[test]
fn boot_timeout_also_fires_before_the_exec() {
    let mut d = Dyno::web();
    d.start();
    d.advance(secs(7));
    assert_eq!(d.tick(), boot_timeout_kill());
    // The exec comes late: the kill is delivered again, no port watch.
    assert_eq!(d.spawned(), vec![Action::Signal(Signal::KillAll)]);
}

#[test]
fn workers_never_boot_timeout() {
    let mut d = Dyno::worker();
    d.start();
    d.advance(secs(3600));
    assert_eq!(d.tick(), vec![]);
    assert_eq!(d.sup.state, State::Starting);
}
