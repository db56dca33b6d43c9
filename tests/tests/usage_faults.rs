//! Billing under faults (issue 17, items 4 and 6): the agent frozen while a
//! dyno exits, the ledger locked by another process across a restart, a run
//! whose exit record could never be written. Each test checks every run in
//! the ledger ([`dyno_tests::ledger::check_billing`]: tiled, `final` on the
//! last record only, no second past the recorded exit, within 1 s of the
//! running time) and prints the worst billing error it saw.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dyno_agent::runs::{ExecRecord, read_json};
use dyno_proto::v1 as pb;
use dyno_tests::ledger::{read_lives, records, stop_and_check};
use dyno_tests::*;
use nix::sys::signal::Signal;

/// The exec record of a run.
fn exec_of(a: &TestAgent, run_id: &str) -> ExecRecord {
    read_json(&a.state.join("runs").join(run_id).join("exec.json"))
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no exec record for {run_id}"))
}

fn has_exit(a: &TestAgent, run_id: &str) -> bool {
    a.state.join("runs").join(run_id).join("exit.json").is_file()
}

/// The current run of a dyno once it is up.
fn up_run(a: &TestAgent, app: &str, name: &str) -> String {
    a.wait_state(app, name, "up")["run_id"]
        .as_str()
        .expect("run_id")
        .to_string()
}

/// Waits until a run has at least one record.
fn wait_billed(a: &TestAgent, run_id: &str) {
    wait_for(&format!("{run_id} billed for a second"), || {
        records(&a.state).iter().any(|r| r.run_id == run_id).then_some(())
    });
}

/// SIGKILLs a run's command (a process of a dyno this test's agent started).
fn kill_command(a: &TestAgent, run_id: &str) -> DateTime<Utc> {
    let exec = exec_of(a, run_id);
    assert_eq!(
        dyno_agent::os::start_ticks(exec.pid),
        Some(exec.start_ticks),
        "{run_id} still runs"
    );
    let at = Utc::now();
    signal(exec.pid, Signal::SIGKILL);
    at
}

// ---------------------------------------------------------------------------
// (a) The agent frozen while a dyno exits
// ---------------------------------------------------------------------------

#[test]
fn a_run_that_exits_while_the_agent_is_frozen_is_billed_to_its_exit() {
    let a = TestAgent::start("usage_slice = \"1s\"");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, SLEEPER);
    a.start_dyno("shop", "worker.2", &slug, SLEEPER);
    let ending = up_run(&a, "shop", "worker.1");
    let staying = up_run(&a, "shop", "worker.2");
    wait_billed(&a, &ending);
    wait_billed(&a, &staying);
    let mut lives = BTreeMap::new();
    read_lives(&a.state, &mut lives);

    // Frozen for 10 s; the dyno's command is killed a second in (its shim
    // is not frozen: it records the exit).
    let agent = a.agent_pid();
    signal(agent, Signal::SIGSTOP);
    let frozen = Instant::now();
    let cont = scopeguard(agent);
    nothing_happens_for(Duration::from_secs(1));
    kill_command(&a, &ending);
    wait_for("the exit record, written while the agent is frozen", || {
        has_exit(&a, &ending).then_some(())
    });
    nothing_happens_for(Duration::from_secs(10).saturating_sub(frozen.elapsed()));
    drop(cont);
    println!("agent frozen for {:.1} s", frozen.elapsed().as_secs_f64());

    wait_for("the ended run's final record", || {
        records(&a.state)
            .iter()
            .any(|r| r.run_id == ending && r.is_final)
            .then_some(())
    });
    // The survivor goes on being billed after the freeze.
    let before = records(&a.state).iter().filter(|r| r.run_id == staying).count();
    wait_for("the surviving run billed again", || {
        (records(&a.state).iter().filter(|r| r.run_id == staying).count() > before).then_some(())
    });
    let worst = stop_and_check(&a, "agent frozen 10 s", &mut lives, &BTreeMap::new());
    assert!(worst.abs() <= 1.0);
}

/// SIGCONTs the agent when dropped (also when the test fails while it is
/// frozen).
struct Cont(u32);

impl Drop for Cont {
    fn drop(&mut self) {
        signal(self.0, Signal::SIGCONT);
    }
}

fn scopeguard(pid: u32) -> Cont {
    Cont(pid)
}

// ---------------------------------------------------------------------------
// (b) The ledger locked by another process across a restart
// ---------------------------------------------------------------------------

/// `sqlite3` holding the ledger's write lock (an open `BEGIN EXCLUSIVE`
/// transaction; in WAL mode readers go on, writers get `SQLITE_BUSY`) until
/// [`Locker::release`].
struct Locker(Child);

impl Locker {
    fn lock(state: &std::path::Path) -> Locker {
        let mut child = Command::new("sqlite3")
            .arg("-bail")
            .arg(state.join("ledger.db"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("run sqlite3");
        let stdin = child.stdin.as_mut().expect("stdin");
        stdin
            .write_all(b".timeout 20000\nBEGIN EXCLUSIVE;\nUPDATE ledger_meta SET value = value;\nSELECT 'locked';\n")
            .expect("write to sqlite3");
        stdin.flush().expect("flush");
        // Our word comes once it holds the lock (-bail: it exits if it cannot).
        let mut out = BufReader::new(child.stdout.as_mut().expect("stdout"));
        let mut seen = String::new();
        loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).expect("read sqlite3");
            assert!(n > 0, "sqlite3 did not take the lock: {seen}");
            if line.trim() == "locked" {
                break;
            }
            seen.push_str(&line);
        }
        Locker(child)
    }

    fn release(mut self) {
        let mut stdin = self.0.stdin.take().expect("stdin");
        stdin.write_all(b"COMMIT;\n.quit\n").expect("commit");
        drop(stdin);
        let status = self.0.wait().expect("wait sqlite3");
        assert!(status.success(), "sqlite3 {status}");
    }
}

impl Drop for Locker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Times `f`, printing how long it took.
fn timed<T>(what: &str, f: impl FnOnce() -> T) -> (T, Duration) {
    let t = Instant::now();
    let v = f();
    let d = t.elapsed();
    println!("{what}: {:.1} ms", d.as_secs_f64() * 1000.0);
    (v, d)
}

#[test]
fn a_ledger_locked_across_a_restart_blocks_nothing_and_loses_nothing() {
    let mut a = TestAgent::start("usage_slice = \"1s\"");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, SLEEPER);
    a.start_dyno("shop", "worker.2", &slug, SLEEPER);
    let staying = up_run(&a, "shop", "worker.1");
    let ending = up_run(&a, "shop", "worker.2");
    wait_billed(&a, &staying);
    wait_billed(&a, &ending);
    let mut lives = BTreeMap::new();
    read_lives(&a.state, &mut lives);

    let lock = Locker::lock(&a.state);
    a.sigterm();
    let ((), spawned) = timed("agent restart with the ledger locked (until it answers ps)", || {
        a.spawn()
    });
    assert!(
        spawned < Duration::from_secs(10),
        "the start waited on the ledger: {spawned:?}"
    );
    let info = wait_ok("info to say the ledger is locked", || {
        let info = a.info();
        (info["usage"]["ledger"] == "locked")
            .then_some(info.clone())
            .ok_or(info.to_string())
    });
    assert!(info["usage"]["failing_since"].is_string(), "{info}");
    assert!(
        info["usage"]["error"].as_str().unwrap_or("").contains("locked"),
        "{info}"
    );
    // The API answers at once, whatever the ledger does.
    for _ in 0..3 {
        let (_, d) = timed("dynoctl info (ledger locked)", || a.ctl_ok(&["info"]));
        assert!(d < Duration::from_secs(2), "info took {d:?}");
        let (_, d) = timed("dynoctl ps (ledger locked)", || a.ctl_ok(&["ps"]));
        assert!(d < Duration::from_secs(2), "ps took {d:?}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut agent = a.client().await;
        let t = Instant::now();
        let host = agent
            .host_info(pb::HostInfoRequest {})
            .await
            .expect("host info")
            .into_inner();
        println!("HostInfo (ledger locked): {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(host.usage_ledger, "locked");
        let mut usage = a.usage_client().await;
        let t = Instant::now();
        let err = usage
            .collect(pb::CollectRequest::default())
            .await
            .expect_err("collect while locked");
        println!(
            "Collect (ledger locked): {:.1} ms: {}",
            t.elapsed().as_secs_f64() * 1000.0,
            err.message()
        );
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(
            err.message().contains("ledger") && err.message().contains("locked"),
            "{err:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(2));
        let t = Instant::now();
        let err = usage
            .ack(pb::AckRequest { seq: 1 })
            .await
            .expect_err("ack while locked");
        println!("Ack (ledger locked): {:.1} ms", t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
        assert!(t.elapsed() < Duration::from_secs(2));
    });
    // A run ends while the ledger is locked; the other goes on.
    kill_command(&a, &ending);
    wait_for("the ended run settled", || has_exit(&a, &ending).then_some(()));
    a.wait_dyno("shop", "worker.2", "restarted", |d| d["run_id"] != ending.as_str());
    nothing_happens_for(Duration::from_secs(3));
    lock.release();
    wait_ok("the ledger back and nothing pending", || {
        let info = a.info();
        let u = &info["usage"];
        (u["ledger"] == "ok" && u["pending_writes"] == 0)
            .then_some(())
            .ok_or(u.to_string())
    });
    let worst = stop_and_check(&a, "ledger locked across a restart", &mut lives, &BTreeMap::new());
    assert!(worst.abs() <= 1.0);
}

// ---------------------------------------------------------------------------
// (c) A run whose exit record is never written
// ---------------------------------------------------------------------------

/// Makes the run's exit record unwritable: a directory where `exit.json`
/// goes (the shim's rename onto it fails).
fn block_exit_record(a: &TestAgent, run_id: &str) {
    std::fs::create_dir(a.state.join("runs").join(run_id).join("exit.json")).expect("mkdir exit.json");
}

#[test]
fn a_run_without_an_exit_record_is_billed_to_the_last_moment_seen_alive() {
    let mut a = TestAgent::start("usage_slice = \"1s\"");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, SLEEPER);
    a.start_dyno("shop", "worker.2", &slug, SLEEPER);
    let seen = up_run(&a, "shop", "worker.1");
    let unseen = up_run(&a, "shop", "worker.2");
    wait_billed(&a, &seen);
    wait_billed(&a, &unseen);
    let mut lives = BTreeMap::new();
    read_lives(&a.state, &mut lives);
    let mut vanished = BTreeMap::new();

    // With the agent up: the command dies, its exit cannot be recorded.
    block_exit_record(&a, &seen);
    vanished.insert(seen.clone(), kill_command(&a, &seen));
    a.wait_dyno("shop", "worker.1", "lost and restarted", |d| {
        d["run_id"] != seen.as_str() && d["last_exit"]["reason"] == "lost"
    });

    // With the agent killed: the command dies right after, and the agent
    // comes back 6 s later.
    block_exit_record(&a, &unseen);
    a.kill9();
    vanished.insert(unseen.clone(), kill_command(&a, &unseen));
    let gone = Instant::now();
    wait_for("the shim gone", || {
        (!alive(exec_of(&a, &unseen).shim_pid)).then_some(())
    });
    nothing_happens_for(Duration::from_secs(6).saturating_sub(gone.elapsed()));
    let restarted = Utc::now();
    a.spawn();
    a.wait_dyno("shop", "worker.2", "lost and restarted", |d| {
        d["run_id"] != unseen.as_str() && d["last_exit"]["reason"] == "lost"
    });
    for run in [&seen, &unseen] {
        wait_for("the lost run's final record", || {
            records(&a.state)
                .iter()
                .any(|r| r.run_id == *run && r.is_final)
                .then_some(())
        });
        let end = records(&a.state)
            .iter()
            .filter(|r| r.run_id == *run)
            .map(|r| r.end)
            .max();
        println!(
            "{run}: vanished at {}, billed to {:?}, agent restarted at {restarted}",
            vanished[run],
            end.and_then(|e| DateTime::<Utc>::from_timestamp(e, 0))
        );
    }
    let worst = stop_and_check(&a, "exit record never written", &mut lives, &vanished);
    assert!(worst.abs() <= 2.5);
}
