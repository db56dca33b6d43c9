//! Unit tests of settling decisions: from an exit record (or none) and the
//! cgroup's OOM kills to the supervisor's input and, through it, the crash
//! reason.

use super::*;
use crate::engine::testkit::t0;
use crate::supervisor::{Ctx, ExitReason, Policy, Profile, Supervision};

fn exit(code: Option<i32>, signal: Option<i32>) -> ExitRecord {
    ExitRecord {
        code,
        signal,
        exited_at: t0() + chrono::Duration::seconds(30),
    }
}

const SIGKILL: i32 = NixSignal::SIGKILL as i32;
const SIGTERM: i32 = NixSignal::SIGTERM as i32;

/// The reason a worker that was up gets for a run that ended with `end`.
fn reason(end: RunEnd) -> ExitReason {
    let profile = Profile {
        web: false,
        one_off: false,
        time_to_live: Duration::from_secs(24 * 3600),
        command: "bundle exec sidekiq".into(),
    };
    let policy = Policy::default();
    let mut sup = Supervision::new("d", t0());
    let mut jitter = || 0.5;
    let mut step = |sup: &mut Supervision, input| {
        let mut cx = Ctx {
            profile: &profile,
            policy: &policy,
            now: t0(),
            jitter: &mut jitter,
            peers: &crate::supervisor::NO_PEERS,
        };
        sup.step(&mut cx, input)
    };
    step(&mut sup, Input::Start);
    let run_id = sup.run.as_ref().unwrap().id.clone();
    step(
        &mut sup,
        Input::Spawned {
            run_id: run_id.clone(),
            pid: 4242,
            at: t0(),
        },
    );
    step(&mut sup, Input::Exited { run_id, end });
    sup.last_exit.expect("an exit is recorded").reason
}

#[test]
fn an_exit_code_is_an_exit() {
    for code in [0, 1, 127] {
        let end = run_end(Some(exit(Some(code), None)), 0, t0());
        assert_eq!(
            end,
            RunEnd {
                code: Some(code),
                signal: None,
                oom: false,
                lost: false,
                at: t0() + chrono::Duration::seconds(30),
            }
        );
        assert_eq!(reason(end), ExitReason::Exit, "code {code}");
    }
}

#[test]
fn a_signal_is_a_signal() {
    for sig in [SIGTERM, SIGKILL] {
        let end = run_end(Some(exit(None, Some(sig))), 0, t0());
        assert_eq!(
            (end.code, end.signal, end.oom, end.lost),
            (None, Some(sig), false, false)
        );
        assert_eq!(end.at, t0() + chrono::Duration::seconds(30), "the record's time");
        assert_eq!(reason(end), ExitReason::Signal, "signal {sig}");
    }
}

#[test]
fn a_sigkill_with_oom_kills_in_the_cgroup_is_oom() {
    let end = run_end(Some(exit(None, Some(SIGKILL))), 1, t0());
    assert!(end.oom && !end.lost, "{end:?}");
    assert_eq!(reason(end), ExitReason::Oom);
}

#[test]
fn oom_kills_without_a_sigkill_of_the_command_are_not_oom() {
    // Something inside the dyno was OOM-killed, but the command itself
    // exited or was ended by another signal.
    let end = run_end(Some(exit(Some(1), None)), 3, t0());
    assert!(!end.oom);
    assert_eq!(reason(end), ExitReason::Exit);
    let end = run_end(Some(exit(None, Some(SIGTERM))), 3, t0());
    assert!(!end.oom);
    assert_eq!(reason(end), ExitReason::Signal);
}

#[test]
fn no_exit_record_is_lost_now() {
    let now = t0() + chrono::Duration::seconds(99);
    for oom_kills in [0, 2] {
        let end = run_end(None, oom_kills, now);
        assert_eq!(
            end,
            RunEnd {
                code: None,
                signal: None,
                oom: false,
                lost: true,
                at: now,
            }
        );
        assert_eq!(reason(end), ExitReason::Lost);
    }
}

#[test]
fn a_run_dir_without_records_and_no_cgroups_settles_as_lost() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path(), "d.1");
    let now = t0() + chrono::Duration::seconds(5);
    let (input, usage) = ended_input(&run, "d.1".into(), now, None);
    assert_eq!(
        input,
        Input::Exited {
            run_id: "d.1".into(),
            end: RunEnd::lost(now)
        }
    );
    assert_eq!(usage, None);
}

#[test]
fn a_run_dir_with_an_exit_record_settles_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path(), "d.2");
    std::fs::create_dir_all(&run.path).unwrap();
    crate::runs::write_json_atomic(&run.exit(), &exit(Some(3), None)).unwrap();
    let (input, _) = ended_input(&run, "d.2".into(), t0(), None);
    let Input::Exited { run_id, end } = input else {
        panic!("{input:?}")
    };
    assert_eq!(run_id, "d.2");
    assert_eq!((end.code, end.lost), (Some(3), false));
    assert_eq!(end.at, t0() + chrono::Duration::seconds(30));
}

#[test]
fn the_supervisor_signals_become_sigterm_and_sigkill() {
    use crate::engine::signal::signo;
    use crate::supervisor::Signal;
    assert_eq!(signo(Signal::Term), 15);
    assert_eq!(signo(Signal::KillAll), 9);
}
