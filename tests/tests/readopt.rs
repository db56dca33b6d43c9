//! The agent may die at any moment: dynos keep running, a new agent
//! re-adopts them, and runs that ended meanwhile are settled from their exit
//! records (or as `lost` when there is none).

use dyno_tests::*;
use nix::sys::signal::Signal;
use serde_json::Value;

fn exec_record(a: &TestAgent, d: &Value) -> dyno_agent::runs::ExecRecord {
    let run = d["run_id"].as_str().expect("run id");
    dyno_agent::runs::read_json(&a.state.join("runs").join(run).join("exec.json"))
        .expect("exec.json readable")
        .expect("exec.json present")
}

#[test]
fn dynos_survive_kill_9_of_the_agent_and_are_readopted() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[("index.html", "ok\n")]);
    a.start_dyno("shop", "web.1", &slug, "exec busybox httpd -f -p $PORT -h .");
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.start_dyno("shop", "clock.1", &slug, "exec sleep 600");
    for name in ["web.1", "worker.1", "clock.1"] {
        a.wait_state("shop", name, "up");
    }
    // The baseline, once all three are up (once up, only a crash restarts
    // one). Under emulation (DYNO_E2E_SLOWDOWN > 1) a first boot may miss
    // its timeout and be restarted before the kill: that is the emulator,
    // not what this test is about, so such restarts are the baseline; only
    // those caused by the kill must be none. On the host none is allowed.
    let [web, worker, clock] = ["web.1", "worker.1", "clock.1"].map(|name| {
        let d = a.dyno("shop", name).expect(name);
        assert_eq!(d["state"], "up", "{d}");
        if dyno_tests::env::slowdown() == 1 {
            assert_eq!(d["restarts"], 0, "restarted before the kill: {d}");
        } else if d["restarts"] != 0 {
            eprintln!("note: {name} restarted before the kill under emulation: {d}");
        }
        d
    });
    let before: Vec<Value> = serde_json::from_str(&a.ctl_ok(&["--json", "events"])).unwrap();
    // Each came up once per run that got that far: once, unless restarted
    // (a boot timeout restarts a run that never came up).
    for d in [&web, &worker, &clock] {
        let ups = before
            .iter()
            .filter(|e| e["to"] == "up" && e["app"] == d["app"] && e["dyno"] == d["name"])
            .count() as u64;
        let runs = 1 + d["restarts"].as_u64().expect("restarts");
        assert!((1..=runs).contains(&ups), "{ups} up events for {d}: {before:#?}");
    }

    a.kill9();
    for d in [&web, &worker, &clock] {
        assert!(alive(pid_of(d)), "dyno {} died with the agent", d["name"]);
    }
    a.spawn();
    for d in [&web, &worker, &clock] {
        let now = a.dyno("shop", d["name"].as_str().unwrap()).unwrap();
        assert_eq!(now["state"], "up", "{now}");
        assert_eq!(now["pid"], d["pid"], "same process, not a new one");
        assert_eq!(now["restarts"], d["restarts"], "not started again: {now}");
    }

    // Re-adoption is silent: no state change was published for it.
    let events: Vec<Value> = serde_json::from_str(&a.ctl_ok(&["--json", "events"])).unwrap();
    assert!(events.iter().all(|e| e["from"] != e["to"]), "{events:#?}");
    assert_eq!(events, before, "re-adoption published events");

    // The new agent supervises them: a stop stops, a crash restarts.
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    let w = a.wait_state("shop", "worker.1", "down");
    assert_eq!(w["last_exit"]["reason"], "stopped");
    assert!(!alive(pid_of(&worker)));

    signal(pid_of(&web), Signal::SIGKILL);
    let web_restarts = web["restarts"].as_u64().expect("restarts");
    let web2 = a.wait_dyno("shop", "web.1", "restarted after a crash", |d| {
        d["restarts"] == web_restarts + 1 && d["state"] == "up"
    });
    assert_ne!(web2["pid"], web["pid"]);

    // Its logs continue in the same place.
    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "worker.1"]));
    assert!(
        logs.iter().any(|l| l == "Stopping all processes with SIGTERM"),
        "{logs:#?}"
    );
}

#[test]
fn a_run_that_ended_while_the_agent_was_down_is_settled_from_its_exit_record() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    // Each run ends with status 3 when told to (SIGUSR1).
    let cmd = "trap 'echo bye; exit 3' USR1; while :; do sleep 0.05; done";
    a.start_dyno("shop", "worker.1", &slug, cmd);
    let d = a.wait_state("shop", "worker.1", "up");
    let run_dir = a.state.join("runs").join(d["run_id"].as_str().unwrap());
    // The trap is set once the shell has run the app's profile: wait for it.
    let pid = pid_of(&d);
    wait_for_handler(pid, Signal::SIGUSR1);

    a.kill9();
    signal(pid, Signal::SIGUSR1);
    wait_for("the exit record", || run_dir.join("exit.json").exists().then_some(()));
    let exit: dyno_agent::runs::ExitRecord = dyno_agent::runs::read_json(&run_dir.join("exit.json"))
        .unwrap()
        .unwrap();
    // Restarted well after the exit, so that settling at the restart's time
    // would show.
    wait_for("the clock 1.2 s past the recorded exit", || {
        (chrono::Utc::now() - exit.exited_at >= chrono::Duration::milliseconds(1200)).then_some(())
    });
    a.spawn();

    // Settled as a crash with the recorded status and time, then restarted.
    let d2 = a.wait_dyno("shop", "worker.1", "settled and restarted", |d| {
        d["restarts"] == 1 && d["state"] == "up"
    });
    assert_eq!(d2["last_exit"]["code"], 3);
    assert_eq!(d2["last_exit"]["reason"], "exit");
    let at = chrono::DateTime::parse_from_rfc3339(d2["last_exit"]["at"].as_str().unwrap()).unwrap();
    assert_eq!(
        at.timestamp_micros(),
        exit.exited_at.timestamp_micros(),
        "billed to its real exit time"
    );
    let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "-n", "100"]));
    assert!(logs.iter().any(|l| l == "bye"), "{logs:#?}");
    assert!(logs.iter().any(|l| l == "Process exited with status 3"), "{logs:#?}");
}

#[test]
fn a_killed_shim_is_a_lost_run_and_its_command_does_not_linger() {
    let a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    let exec = exec_record(&a, &d);
    signal(exec.shim_pid, Signal::SIGKILL);
    let d2 = a.wait_dyno("shop", "worker.1", "lost and restarted", |d| {
        d["restarts"] == 1 && d["state"] == "up"
    });
    assert_eq!(d2["last_exit"]["reason"], "lost");
    wait_for("the old command to be ended", || (!alive(exec.pid)).then_some(()));
    assert_ne!(d2["pid"], d["pid"]);
}

#[test]
fn a_shim_killed_while_the_agent_was_down_is_lost_on_restart() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    let exec = exec_record(&a, &d);
    a.kill9();
    signal(exec.shim_pid, Signal::SIGKILL);
    wait_for("the shim to be gone", || (!alive(exec.shim_pid)).then_some(()));
    a.spawn();
    let d2 = a.wait_dyno("shop", "worker.1", "lost and restarted", |d| {
        d["restarts"] == 1 && d["state"] == "up"
    });
    assert_eq!(d2["last_exit"]["reason"], "lost");
    wait_for("the orphaned command to be ended", || (!alive(exec.pid)).then_some(()));
    // Exactly one live command for the dyno.
    assert!(alive(pid_of(&d2)));
}

#[test]
fn a_crashed_dyno_keeps_its_cooloff_across_an_agent_restart() {
    let cooloff = format!("restart_cooloffs = [\"{}\"]", dyno_tests::env::scaled_secs(4));
    let mut a = TestAgent::start(&cooloff);
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    signal(pid_of(&d), Signal::SIGKILL);
    let d = a.wait_dyno("shop", "worker.1", "restarted once", |d| {
        d["restarts"] == 1 && d["state"] == "up"
    });
    signal(pid_of(&d), Signal::SIGKILL);
    let crashed = a.wait_state("shop", "worker.1", "crashed");
    let due = crashed["next_restart_at"]
        .as_str()
        .expect("next_restart_at")
        .to_string();

    a.kill9();
    a.spawn();
    let after = a.dyno("shop", "worker.1").unwrap();
    assert_eq!(after["state"], "crashed");
    assert_eq!(after["next_restart_at"], due.as_str(), "the same restart time");
    let up = a.wait_dyno("shop", "worker.1", "restarted when due", |d| {
        d["restarts"] == 2 && d["state"] == "up"
    });
    let started = chrono::DateTime::parse_from_rfc3339(up["started_at"].as_str().unwrap()).unwrap();
    let due = chrono::DateTime::parse_from_rfc3339(&due).unwrap();
    assert!(started >= due, "restarted at {started}, not before {due}");
}

#[test]
fn a_one_off_that_ended_while_the_agent_was_down_is_down_with_its_status() {
    let mut a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let socket = a.socket.clone();
    let view = rt.block_on(async {
        let mut c = dyno_proto::v1::agent_client::AgentClient::new(dyno_agent::client::connect(&socket).await.unwrap());
        c.start_dyno(dyno_proto::v1::StartDynoRequest {
            app: "shop".into(),
            one_off: true,
            slug: show(&slug),
            command: "trap 'exit 4' USR1; while :; do sleep 0.05; done".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
    });
    assert_eq!(view.name, "run.1");
    let d = a.wait_state("shop", "run.1", "up");
    wait_for_handler(pid_of(&d), Signal::SIGUSR1);
    a.kill9();
    signal(pid_of(&d), Signal::SIGUSR1);
    let run_dir = a.state.join("runs").join(&view.run_id);
    wait_for("the exit record", || run_dir.join("exit.json").exists().then_some(()));
    a.spawn();
    let d = a.wait_state("shop", "run.1", "down");
    assert_eq!(d["last_exit"]["code"], 4);
    assert_eq!(d["restarts"], 0);
}
