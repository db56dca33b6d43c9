//! Faults lose nothing: a state disk that fills up, records that cannot be
//! read, an agent killed with events or records waiting for the disk, an API
//! socket someone deleted. Each test runs its own agent, on a small tmpfs of
//! its own where the disk must fill.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use dyno_tests::ledger::{read_lives, records, stop_and_check};
use dyno_tests::*;
use serde_json::Value;

/// The state directory's tmpfs: room for the agent, a stack's slug and a
/// few runs, small enough to fill in a moment.
const STATE_BYTES: u64 = 48 << 20;

/// Fills the file system of `dir` to the last byte; the file is removed
/// when dropped (or with [`Filler::free`]).
struct Filler(Option<PathBuf>);

impl Filler {
    fn fill(dir: &Path) -> Filler {
        let filler = Filler(Some(dir.join("filler")));
        filler.top_up();
        filler
    }

    /// Takes whatever room the file system has again (the agent frees a
    /// page now and then: a failed run's directory, a temp file).
    fn top_up(&self) {
        let path = self.0.as_ref().expect("not freed");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("filler");
        for size in [64 * 1024, 4096, 512, 1] {
            let chunk = vec![0u8; size];
            loop {
                match f.write(&chunk) {
                    Ok(n) if n > 0 => {}
                    Ok(_) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling {}: {e}", path.display()),
                }
            }
        }
    }

    fn free(&mut self) {
        if let Some(p) = self.0.take() {
            std::fs::remove_file(&p).unwrap_or_else(|e| panic!("removing {}: {e}", p.display()));
        }
    }
}

impl Drop for Filler {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Every event `dynoctl events` gives after `after`, by seq, with their series.
fn events_after(a: &TestAgent, after: u64) -> BTreeMap<u64, Value> {
    let out = a.ctl_ok(&["--json", "events", "--after", &after.to_string()]);
    let items: Vec<Value> = serde_json::from_str(&out).expect("events json");
    let mut events = BTreeMap::new();
    for ev in items
        .into_iter()
        .filter(|e| e.get("seq").is_some() && e.get("snapshot").is_none())
    {
        let seq = ev["seq"].as_u64().expect("seq");
        assert!(events.insert(seq, ev).is_none(), "seq {seq} twice");
    }
    events
}

/// What identifies an event, besides its seq.
fn identity(ev: &Value) -> (Value, Value, Value, Value, Value, Value) {
    (
        ev["series"].clone(),
        ev["at"].clone(),
        ev["dyno"].clone(),
        ev["from"].clone(),
        ev["to"].clone(),
        ev["reason"].clone(),
    )
}

/// The events seen before are the same events after (no seq handed out
/// twice), and seqs go on strictly increasing within one series.
fn assert_no_event_reused_or_lost(before: &BTreeMap<u64, Value>, after: &BTreeMap<u64, Value>) {
    for (seq, ev) in before {
        let now = after
            .get(seq)
            .unwrap_or_else(|| panic!("event {seq} was seen, then lost: {ev}"));
        assert_eq!(identity(now), identity(ev), "seq {seq} was given to another event");
    }
    let series: Vec<&Value> = after.values().map(|e| &e["series"]).collect();
    assert!(
        series.windows(2).all(|w| w[0] == w[1])
            && series
                .first()
                .is_some_and(|s| s.as_str().is_some_and(|s| !s.is_empty())),
        "one series: {series:?}"
    );
}

fn run_dirs(a: &TestAgent) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(a.state.join("runs"))
        .expect("runs dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Sleeping dynos `sleeper.1..=n`, up; their views.
fn sleepers(a: &TestAgent, slug: &Path, n: usize) -> Vec<Value> {
    for i in 1..=n {
        a.start_dyno("shop", &format!("sleeper.{i}"), slug, "exec sleep 600");
    }
    let up: Vec<Value> = (1..=n)
        .map(|i| a.wait_state("shop", &format!("sleeper.{i}"), "up"))
        .collect();
    // Billed for a second at least, so that the ledger has something to
    // lose when they crash on a full disk.
    wait_for("every sleeper billed", || {
        let billed = records(&a.state);
        up.iter()
            .all(|d| billed.iter().any(|r| d["run_id"] == r.run_id.as_str()))
            .then_some(())
    });
    up
}

/// Kills the sleepers' processes: each crash is a state change (several
/// events, more than a full disk's last page can take). Returns when each
/// run vanished, by run id (their shims cannot record the exit).
fn crash(a: &TestAgent, sleepers: &[Value], filler: &Filler) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    let mut vanished = BTreeMap::new();
    for d in sleepers {
        vanished.insert(d["run_id"].as_str().expect("run id").to_string(), chrono::Utc::now());
        signal(pid_of(d), nix::sys::signal::Signal::SIGKILL);
    }
    wait_for("info to tell the events waiting for the disk", || {
        filler.top_up();
        let info = a.info();
        info["state"]["unwritten"]
            .as_array()?
            .iter()
            .any(|s| s.as_str().is_some_and(|s| s.contains("events")))
            .then_some(())
    });
    vanished
}

/// The run cgroups of the agent (in the memory hierarchy).
fn run_cgroups(a: &TestAgent) -> Vec<String> {
    let parent = a
        .cgroup_dirs()
        .into_iter()
        .find(|d| d.starts_with("/sys/fs/cgroup/memory"))
        .expect("the agent's memory cgroup");
    std::fs::read_dir(parent)
        .expect("cgroup dir")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn a_full_state_disk_degrades_and_events_wait_for_it_without_reusing_a_seq() {
    // A crash after the first waits an hour: a spawn failure counted as a
    // crash would keep the sleepers down past every deadline below.
    let mut a = TestAgent::start_on_tmpfs("restart_cooloffs = [\"1h\"]\nusage_slice = \"1s\"", STATE_BYTES);
    let slug = a.slug("s", &[]);
    // A dyno that logs all the time (lines longer than the slack of a
    // file's last page, so that the full disk takes none), one to restart,
    // some to crash.
    a.start_dyno(
        "shop",
        "worker.1",
        &slug,
        "while true; do printf '%5000s\\n' tick; sleep 0.05; done",
    );
    a.start_dyno("shop", "clock.1", &slug, "exec sleep 600");
    let logger = a.wait_state("shop", "worker.1", "up");
    let clock = a.wait_state("shop", "clock.1", "up");
    let sleeping = sleepers(&a, &slug, 6);
    let before = events_after(&a, 0);
    let last = *before.keys().last().expect("events so far");
    let mut lives = BTreeMap::new();
    read_lives(&a.state, &mut lives);

    let mut filler = Filler::fill(&a.state);
    wait_for("info to say the state disk is full", || {
        (a.info()["state"]["disk_full"] == true).then_some(())
    });
    // A restart is refused: its record cannot be written.
    let out = a.ctl(&["restart", "--app", "shop", "clock.1"]);
    assert!(!out.status.success(), "a restart answered without its record");
    assert!(String::from_utf8_lossy(&out.stderr).contains("state disk is full"));
    assert_eq!(
        a.dyno("shop", "clock.1").unwrap()["pid"],
        clock["pid"],
        "the refused restart changed nothing"
    );
    // Crashes are restarted, but their runs cannot be prepared: they wait
    // as spawn_failed, not as the app's crash, leaving no run directory or
    // cgroup per attempt.
    let mut vanished = crash(&a, &sleeping, &filler);
    let failed = wait_for("a sleeper's spawn failure", || {
        filler.top_up();
        a.ps()
            .into_iter()
            .find(|d| d["type"] == "sleeper" && d["last_exit"]["reason"] == "spawn_failed")
    });
    assert_eq!(failed["state"], "starting", "{failed}");
    assert!(
        failed["last_exit"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("No space left")),
        "{failed}"
    );
    // Events the disk took before it was full are streamed; the rest wait.
    let streamed = events_after(&a, last);
    assert_no_event_reused_or_lost(&before, &events_after(&a, 0));
    // The logging dyno keeps running while its lines cannot be written.
    wait_for("a few more failed tries", || {
        filler.top_up();
        (a.agent_log().matches("SpawnFailed").count() >= 6).then_some(())
    });
    let now = a.dyno("shop", "worker.1").expect("worker");
    assert_eq!(
        (now["state"].clone(), now["pid"].clone()),
        ("up".into(), logger["pid"].clone())
    );
    assert!(alive(pid_of(&logger)));
    // Runs that never started leave nothing: every run directory is of a
    // run that exec'd, and only live runs have cgroups.
    wait_for("the failed runs' leftovers to go", || {
        filler.top_up();
        let unstarted: Vec<String> = run_dirs(&a)
            .into_iter()
            .filter(|r| !a.state.join("runs").join(r).join("exec.json").exists())
            .collect();
        let live = a.ps().iter().filter(|d| d["pid"].is_u64()).count();
        (unstarted.is_empty() && run_cgroups(&a).len() == live).then_some(())
    });

    // kill -9 with events waiting: they were never seen, so their seqs may
    // be given again, but no seq anyone saw is.
    let seen: BTreeMap<u64, Value> = before.into_iter().chain(streamed).collect();
    a.kill9();
    filler.free();
    a.spawn();
    for i in 1..=6 {
        let d = a.wait_state("shop", &format!("sleeper.{i}"), "up");
        assert_ne!(d["pid"], sleeping[i - 1]["pid"]);
    }
    let after = events_after(&a, 0);
    assert_no_event_reused_or_lost(&seen, &after);
    assert!(*after.keys().last().unwrap() > last, "the crashes' events are there");

    // The logger's log says how many lines the full disk cost.
    wait_for("the count of lines the full disk dropped", || {
        let logs = a.ctl_ok(&["logs", "--app", "shop", "--dyno", "worker.1", "-n", "2000"]);
        logs.lines()
            .any(|l| l.contains("log lines were dropped: the log could not be written") && l.contains("No space left"))
            .then_some(())
    });
    let info = a.info();
    assert_eq!(info["state"]["disk_full"], false, "{info}");
    assert_eq!(info["state"]["unwritten"], serde_json::json!([]), "{info}");
    // Billing lost nothing and billed nothing past an end: a sleeper whose
    // shim could write its exit record is held to it, not to the kill.
    read_lives(&a.state, &mut lives);
    vanished.retain(|run, _| lives.get(run).is_some_and(|l| l.exited.is_none()));
    stop_and_check(&a, "a full state disk", &mut lives, &vanished);
}

#[test]
fn events_that_waited_for_the_disk_keep_their_seqs_across_a_clean_restart() {
    let mut a = TestAgent::start_on_tmpfs("usage_slice = \"1s\"", STATE_BYTES);
    let slug = a.slug("s", &[]);
    let sleeping = sleepers(&a, &slug, 6);
    let last = *events_after(&a, 0).keys().last().unwrap();
    let mut lives = BTreeMap::new();
    read_lives(&a.state, &mut lives);

    let mut filler = Filler::fill(&a.state);
    let mut vanished = crash(&a, &sleeping, &filler);
    let streamed = events_after(&a, last);
    filler.free();
    // Written by the next housekeeping, then streamed, with the seqs they
    // were given after the ones already streamed.
    let written = wait_for("the waiting events to be written", || {
        let info = a.info();
        info["state"]["unwritten"]
            .as_array()
            .is_some_and(|w| w.is_empty())
            .then(|| events_after(&a, last))
    });
    assert!(written.len() > streamed.len(), "{written:?}");
    assert_no_event_reused_or_lost(&streamed, &written);
    let seqs: Vec<u64> = written.keys().copied().collect();
    assert_eq!(
        seqs,
        (last + 1..=last + seqs.len() as u64).collect::<Vec<_>>(),
        "no seq skipped"
    );
    let status = a.sigterm();
    assert!(status.success(), "{status}");
    a.spawn();
    assert_no_event_reused_or_lost(&written, &events_after(&a, last));
    read_lives(&a.state, &mut lives);
    vanished.retain(|run, _| lives.get(run).is_some_and(|l| l.exited.is_none()));
    stop_and_check(&a, "events waiting for the disk", &mut lives, &vanished);
}

#[test]
fn a_start_that_cannot_be_recorded_is_refused_and_leaves_nothing() {
    let mut a = TestAgent::start_on_tmpfs("", STATE_BYTES);
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.wait_state("shop", "worker.1", "up");
    let dirs = run_dirs(&a);

    let mut filler = Filler::fill(&a.state);
    // The same slug: cached, so only the record needs the disk.
    let out = a.ctl(&start_args(
        "shop",
        "worker.2",
        &show(&slug),
        &["--command", "exec sleep 600"],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a start answered without its record");
    assert!(
        stderr.contains("state disk is full") && stderr.contains("nothing was changed"),
        "{stderr}"
    );
    assert!(a.dyno("shop", "worker.2").is_none(), "{:?}", a.ps());
    assert_eq!(run_dirs(&a), dirs);

    a.kill9();
    filler.free();
    a.spawn();
    assert!(
        a.dyno("shop", "worker.2").is_none(),
        "a refused start came back: {:?}",
        a.ps()
    );
    assert_eq!(a.wait_state("shop", "worker.1", "up")["restarts"], 0);
    // And an acknowledged start survives kill -9 at once.
    a.start_dyno("shop", "worker.3", &slug, "exec sleep 600");
    a.kill9();
    a.spawn();
    a.wait_state("shop", "worker.3", "up");
}

#[test]
fn an_unreadable_dyno_record_costs_no_running_dyno() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[("index.html", "ok\n")]);
    a.start_dyno("shop", "web.1", &slug, "exec busybox httpd -f -p $PORT -h .");
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let web = a.wait_state("shop", "web.1", "up");
    let worker = a.wait_state("shop", "worker.1", "up");
    a.kill9();
    // Torn records, as a crash of the file system might leave them.
    for name in ["web.1", "worker.1"] {
        let record = a.state.join("dynos/shop").join(format!("{name}.json"));
        let text = std::fs::read(&record).expect("record");
        std::fs::write(&record, &text[..text.len() / 2]).expect("tear the record");
    }
    a.spawn();
    for d in [&web, &worker] {
        let name = d["name"].as_str().unwrap();
        let now = a.wait_state("shop", name, "up");
        assert_eq!(now["pid"], d["pid"], "the same process, kept: {now}");
        assert_eq!(
            (now["port"].clone(), now["command"].clone(), now["address"].clone()),
            (d["port"].clone(), d["command"].clone(), d["address"].clone())
        );
        assert!(alive(pid_of(d)), "{name} was killed");
        assert!(
            a.state
                .join("dynos/shop")
                .join(format!("{name}.json.unreadable"))
                .exists(),
            "the unreadable record is kept aside"
        );
    }
    let log = a.agent_log();
    assert!(log.contains("CANNOT READ A DYNO RECORD"), "said loudly");
    // The rebuilt dynos are whole dynos: a restart of the agent keeps them,
    // a stop ends them.
    a.kill9();
    a.spawn();
    assert_eq!(a.wait_state("shop", "worker.1", "up")["pid"], worker["pid"]);
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.1", "down");
    wait_for("the worker's process to end", || {
        (!alive(pid_of(&worker))).then_some(())
    });
}

#[test]
fn a_deleted_api_socket_is_bound_again() {
    let a = TestAgent::start("");
    std::fs::remove_file(&a.socket).expect("remove the socket");
    wait_for("the agent to answer on its socket again", || {
        a.ctl(&["ps"]).status.success().then_some(())
    });
    assert!(a.agent_log().contains("THE API SOCKET WAS REMOVED OR REPLACED"));
}

#[test]
fn a_reader_of_a_reset_event_log_gets_a_snapshot_not_other_events_under_its_seqs() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.wait_state("shop", "worker.1", "up");
    let seen = events_after(&a, 0);
    let (&last, ev) = seen.iter().next_back().expect("events");
    let series = ev["series"].as_str().expect("series").to_string();
    // The host's event log is lost (a new disk, a wiped state directory).
    let status = a.sigterm();
    assert!(status.success(), "{status}");
    std::fs::remove_file(a.state.join("events.jsonl")).expect("remove the event log");
    a.spawn();
    // More events than the reader saw, under the same numbers.
    for _ in 0..=last {
        let before = a.wait_state("shop", "worker.1", "up");
        a.ctl_ok(&["restart", "--app", "shop", "worker.1"]);
        a.wait_dyno("shop", "worker.1", "a new run, up", |d| {
            d["state"] == "up" && d["pid"] != before["pid"]
        });
    }
    let fresh = events_after(&a, 0);
    assert!(*fresh.keys().last().unwrap() > last);
    assert!(fresh.values().all(|e| e["series"] != series.as_str()), "a new series");
    // Resuming with the old series: a snapshot marked as a gap comes first.
    let out = a.ctl_ok(&["--json", "events", "--after", &last.to_string(), "--series", &series]);
    let items: Vec<Value> = serde_json::from_str(&out).expect("events json");
    let snap = &items.first().expect("something")["snapshot"];
    assert_eq!(snap["gap"], true, "{items:?}");
    assert_eq!(snap["series"], fresh.values().next().unwrap()["series"]);
    // Resuming within the current series: no snapshot.
    let current = snap["series"].as_str().unwrap();
    let out = a.ctl_ok(&["--json", "events", "--after", "1", "--series", current]);
    let items: Vec<Value> = serde_json::from_str(&out).expect("events json");
    assert!(items.iter().all(|i| i.get("snapshot").is_none()), "{items:?}");
    assert_eq!(items.first().and_then(|i| i["seq"].as_u64()), Some(2));
}

#[test]
fn an_unreadable_record_of_a_dyno_that_is_not_running_is_rebuilt_down_not_forgotten() {
    // Crashed twice: the second crash waits an hour.
    let mut a = TestAgent::start("restart_cooloffs = [\"1h\"]");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "echo bye; sleep 1; exit 3");
    let crashed = a.wait_dyno("shop", "worker.1", "a crash in its cool-off", |d| {
        d["state"] == "crashed" && d["restarts"] == 1 && d["next_restart_at"].is_string()
    });
    a.kill9();
    let record = a.state.join("dynos/shop/worker.1.json");
    let text = std::fs::read(&record).expect("record");
    std::fs::write(&record, &text[..text.len() / 2]).expect("tear the record");
    a.spawn();
    let d = a.dyno("shop", "worker.1").expect("the dyno is still known");
    assert_eq!(
        (d["state"].clone(), d["id"].clone()),
        ("down".into(), crashed["id"].clone()),
        "{d}"
    );
    assert_eq!(d["run_id"], crashed["run_id"], "its last run is the one that crashed");
    // Its logs are kept, and an event tells the scheduler.
    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "worker.1", "-n", "50"]));
    assert!(logs.iter().any(|l| l == "bye"), "{logs:#?}");
    let events = events_after(&a, 0);
    assert!(
        events
            .values()
            .any(|e| e["reason"] == "record_lost" && e["dyno"] == "worker.1" && e["to"] == "down"),
        "{events:#?}"
    );
    // It is whole again: it starts when asked.
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.wait_state("shop", "worker.1", "up");
}
