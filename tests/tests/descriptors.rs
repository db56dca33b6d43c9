//! The descriptor budget end to end: an agent under a low hard
//! `RLIMIT_NOFILE` (set by `prlimit`) and a 1 s usage slice admits exactly
//! the dynos its budget (`engine/fds.rs`) has room for, refuses the next
//! start with `RESOURCE_EXHAUSTED` (`NO_FREE_DESCRIPTORS`) before anything
//! of it exists, keeps what runs up and billed across slice boundaries,
//! serves a crash restart at the limit, and stops everything. The agent's
//! real descriptors (`/proc/<agent>/fd`) are counted all along against what
//! the budget declares.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dyno_agent::engine::fds;
use dyno_proto::v1 as pb;
use dyno_tests::ledger::{Life, read_lives, records, stop_and_check};
use dyno_tests::*;
use nix::sys::signal::Signal;
use tonic_types::StatusExt;

/// Workers the budget must have room for under the limit chosen below.
const ROOM: u64 = 8;

/// A 1 s usage slice, and dynos whose own descriptor limit is under the
/// agent's (raising a limit past the hard one takes `CAP_SYS_RESOURCE`,
/// which a container's root may lack).
const CONFIG: &str = r#"
usage_slice = "1s"
default_size = "small"
[sizes.small]
memory_bytes = 33554432
cpu_shares = 512
cpu_quota = 0.5
pids_max = 32
nofile = 64
"#;

/// The refusal of a start as dynoctl prints it: exit code, reason, limit.
fn assert_refused(out: &std::process::Output, limit: u64, expect_code: i32, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(expect_code), "{what}: {stderr}");
    for needle in [
        "NO_FREE_DESCRIPTORS",
        "resource exhausted",
        &format!("of {limit} committed"),
        &format!("(RLIMIT_NOFILE soft=hard={limit}); raise LimitNOFILE"),
    ] {
        assert!(stderr.contains(needle), "{what}: no {needle:?} in {stderr}");
    }
    assert!(!stderr.contains("invalid argument"), "{what}: {stderr}");
}

/// The agent's open descriptors by kind (what their links name, with
/// cgroup files by file name and state files by directory).
fn kinds(a: &TestAgent) -> BTreeMap<String, usize> {
    let dir = format!("/proc/{}/fd", a.agent_pid());
    let mut kinds = BTreeMap::new();
    for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let t = target.display().to_string();
        let kind = if t.starts_with("/sys/fs/cgroup/") {
            format!(
                "cgroup {}",
                target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            )
        } else if t.starts_with('/') {
            match t.strip_prefix(&a.state.display().to_string()) {
                Some(rest) => format!("state {rest}"),
                None => t,
            }
        } else {
            t.split(':').next().unwrap_or(&t).to_string()
                + t.strip_prefix("anon_inode:")
                    .map(|k| format!(":{k}"))
                    .as_deref()
                    .unwrap_or("")
        };
        *kinds.entry(kind).or_default() += 1;
    }
    kinds
}

#[test]
fn starts_past_the_descriptor_budget_are_refused_and_what_runs_is_served_and_stopped() {
    let per = fds::dyno_need(false, false);
    // Room for ROOM workers, each admitted while its slug is prepared
    // (PENDING_START more for that moment), and not one more.
    let limit = fds::reserve() + ROOM * per + fds::PENDING_START;
    let a = TestAgent::start_with_nofile(CONFIG, limit);
    wait_ok("the ledger open", || match a.info()["usage"]["ledger"].as_str() {
        Some("ok") => Ok(()),
        other => Err(format!("ledger {other:?}")),
    });
    let info = a.info();
    let d = &info["descriptors"];
    assert_eq!(d["limit"], limit, "{info}");
    assert_eq!(d["reserve"], fds::reserve(), "{info}");
    assert_eq!(d["per_dyno"], per, "{info}");
    assert_eq!(d["committed"], fds::reserve(), "{info}");
    let text = a.ctl_ok(&["info"]);
    assert!(
        text.contains(&format!("descriptors: {} of {limit} in use", fds::reserve())),
        "{text}"
    );
    // A follower of WatchEvents from the start: it must see every stop.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let mut client = rt.block_on(a.client());
    let mut events = rt.block_on(watch_events(&mut client, 0, true));
    let baseline = a.open_fds();
    println!("idle (a WatchEvents follower connected): {:?}", kinds(&a));
    println!(
        "descriptors: limit {limit}, reserve {}, a worker needs {per}; the idle agent has {baseline} open",
        fds::reserve()
    );
    assert!(
        baseline < fds::reserve(),
        "the idle agent holds {baseline}, over its reserve"
    );

    // Start workers one by one until one is refused.
    let slug = a.slug("fd", &[("Procfile", "worker: exec sleep 600\n")]);
    let app = "fdapp";
    let mut started = Vec::new();
    let refused = loop {
        let name = format!("worker.{}", started.len() + 1);
        let out = a.ctl(&start_args(app, &name, &show(&slug), &["--command", SLEEPER]));
        if !out.status.success() {
            break (name, out);
        }
        a.wait_state(app, &name, "up");
        started.push(name);
        assert!(
            started.len() as u64 <= ROOM,
            "more than {ROOM} workers admitted under {limit}"
        );
    };
    assert_eq!(started.len() as u64, ROOM, "admitted {:?}", started);
    assert_refused(&refused.1, limit, 4, "dynoctl start");
    let (refused_name, _) = refused;

    // The code and the reason in the status details, through gRPC.
    let err = rt.block_on(async {
        let mut client = a.client().await;
        client
            .start_dyno(start_req(app, "worker.99", &slug, SLEEPER))
            .await
            .expect_err("a start past the budget")
    });
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert_eq!(
        err.get_details_error_info().expect("details").reason,
        "NO_FREE_DESCRIPTORS"
    );
    // A one-off is refused the same way (dynoctl run's own errors are 125).
    let out = a.ctl(&run_args(app, &show(&slug), &["--detached", "--", "true"]));
    assert_refused(&out, limit, 125, "dynoctl run");

    // The same start of a running dyno again is no new start: answered.
    a.ctl_ok(&start_args(app, &started[2], &show(&slug), &["--command", SLEEPER]));

    // Nothing of the refused starts exists.
    let ps = a.ps();
    assert_eq!(ps.len() as u64, ROOM, "{ps:?}");
    for name in [refused_name.as_str(), "worker.99"] {
        assert!(a.dyno(app, name).is_none(), "{name} listed");
        assert!(
            !a.state.join("dynos").join(app).join(format!("{name}.json")).exists(),
            "{name} has a record"
        );
    }
    assert!(
        !ps.iter()
            .any(|d| d["name"].as_str().is_some_and(|n| n.starts_with("run."))),
        "{ps:?}"
    );
    let run_cgroups: std::collections::BTreeSet<_> = a
        .run_cgroups_left()
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_owned()))
        .collect();
    assert_eq!(run_cgroups.len() as u64, ROOM, "{run_cgroups:?}");
    let runs = std::fs::read_dir(a.state.join("runs")).expect("runs").count() as u64;
    assert_eq!(runs, ROOM, "run directories");
    let netns = std::fs::read_dir(a.state.join("net"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".ns"))
                .count()
        })
        .unwrap_or(0) as u64;
    assert_eq!(netns, ROOM, "network namespaces");
    let staging = std::fs::read_dir(a.state.join("slugs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with(".staging"))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(staging, 0, "slug staging left");

    // What runs stays up and billed across slice boundaries; the agent's
    // descriptors never pass what the budget committed, and each dyno
    // holds no more than its declared need.
    let pids: Vec<u64> = started
        .iter()
        .map(|n| a.dyno(app, n).expect("dyno")["pid"].as_u64().expect("pid"))
        .collect();
    let committed = a.info()["descriptors"]["committed"].as_u64().expect("committed");
    assert_eq!(committed, fds::reserve() + ROOM * per);
    let until = Instant::now() + Duration::from_secs(4);
    let (mut least, mut most) = (u64::MAX, 0);
    let mut at_most = BTreeMap::new();
    while Instant::now() < until {
        let open = a.open_fds();
        least = least.min(open);
        if open > most {
            at_most = kinds(&a);
        }
        most = most.max(open);
        std::thread::sleep(Duration::from_millis(50));
    }
    let per_dyno = (least.saturating_sub(baseline)) as f64 / ROOM as f64;
    println!(
        "descriptors with {ROOM} workers across 4 one-second slices: {least}..{most} open \
         ({per_dyno:.2} a dyno over the idle {baseline}; declared {per}), {committed} committed"
    );
    println!("at {most} open: {at_most:?}");
    assert!(most <= committed, "{most} open, over the {committed} committed");
    assert!(
        least.saturating_sub(baseline) <= ROOM * per,
        "{least} open: more than {per} a dyno over {baseline}"
    );
    assert!(
        least >= baseline + ROOM,
        "{least} open with {ROOM} dynos: not even a pidfd each over {baseline}? nothing measured"
    );
    for (name, pid) in started.iter().zip(&pids) {
        let d = a.dyno(app, name).expect("dyno");
        assert_eq!(d["state"], "up", "{d}");
        assert_eq!(d["pid"].as_u64(), Some(*pid), "{name} restarted: {d}");
    }
    wait_ok("two records of every run", || {
        let recs = records(&a.state);
        let runs: BTreeMap<&str, usize> = recs.iter().fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.run_id.as_str()).or_default() += 1;
            m
        });
        if runs.len() as u64 == ROOM && runs.values().all(|n| *n >= 2) {
            Ok(())
        } else {
            Err(format!("records per run: {runs:?}"))
        }
    });

    // A crash restart of an admitted dyno is served at the limit.
    signal(pids[0] as u32, Signal::SIGKILL);
    a.wait_dyno(app, &started[0], "restarted and up", |d| {
        d["state"] == "up" && d["restarts"] == 1 && d["pid"].as_u64() != Some(pids[0])
    });

    // A stopped dyno gives its room back: a new start takes it, with its
    // slug's share, and then no other start fits; a restart of the down
    // dyno needs no slug and fits in what is left.
    a.ctl_ok(&["stop", "--app", app, &started[1]]);
    a.wait_state(app, &started[1], "down");
    a.ctl_ok(&start_args(app, &refused_name, &show(&slug), &["--command", SLEEPER]));
    a.wait_state(app, &refused_name, "up");
    let out = a.ctl(&start_args(app, "worker.100", &show(&slug), &["--command", SLEEPER]));
    assert_refused(&out, limit, 4, "dynoctl start after a stop and a start");
    a.ctl_ok(&["restart", "--app", app, &started[1]]);
    a.wait_state(app, &started[1], "up");
    assert_eq!(
        a.info()["descriptors"]["committed"],
        fds::reserve() + (ROOM + 1) * per,
        "the restarted dyno takes its need again"
    );

    // stop --all stops every dyno and leaves nothing.
    let mut lives: BTreeMap<String, Life> = BTreeMap::new();
    read_lives(&a.state, &mut lives);
    stop_and_check(&a, "descriptors", &mut lives, &BTreeMap::new());
    assert!(a.ps().iter().all(|d| d["state"] == "down"));
    // The follower saw each of them go down.
    let mut down = std::collections::BTreeSet::new();
    rt.block_on(async {
        while down.len() as u64 <= ROOM {
            let Some(m) = next_within(&mut events, Duration::from_secs(30)).await else {
                break;
            };
            if let Some(pb::watch_events_response::Kind::Event(e)) = m.kind
                && e.to == pb::DynoState::Down as i32
                && e.reason == "stop"
            {
                down.insert(e.dyno.map(|d| d.name).unwrap_or_default());
            }
        }
    });
    assert_eq!(
        down.len() as u64,
        ROOM + 1,
        "stops the WatchEvents follower saw: {down:?}"
    );
    drop(events);
    drop(client);
    wait_ok("no run cgroup left", || match a.run_cgroups_left() {
        left if left.is_empty() => Ok(()),
        left => Err(format!("{left:?}")),
    });
    let after = wait_ok("the agent's descriptors back to idle", || match a.open_fds() {
        n if n <= baseline => Ok(n),
        n => Err(format!("{n} open, {baseline} before any dyno")),
    });
    let info = a.info();
    assert_eq!(info["descriptors"]["committed"], fds::reserve(), "{info}");
    println!("descriptors after stop --all: {after} open (idle {baseline})");
}
