//! Benchmark: how fast a dyno starts, and what its shim costs in memory.
//!
//! Run with `cargo bench -p dyno-tests --bench startup` (a release build of the
//! real `dynoagent`, started by the end-to-end harness in a temp directory).
//!
//! 1. Start latency: from a `StartDyno` call to the dyno's `up` event on the
//!    `WatchEvents` stream, for `BENCH_N` (default 100) sequential starts of
//!    worker dynos running `exec sleep 600`; each is stopped (and its `down`
//!    event awaited) before the next start. The floor, sampled in the same
//!    loop, is a bare `std::process::Command` spawn of
//!    `/bin/sh -c 'exec sleep 600'`, which returns once the child has exec'd:
//!    once with std's default (a vfork-style `posix_spawn`) and once forced
//!    onto fork+exec (what the shim does) by setting the child's group to
//!    the one it has anyway.
//! 2. Memory per dyno: with `BENCH_MEM_DYNOS` (default 20) idle worker dynos
//!    up, `/proc/<pid>/smaps_rollup` of each shim and of each dyno's command
//!    (the `sleep`, as a reference).

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use dyno_tests::bench::{Stats, env_usize, ms, stats};
use dyno_tests::grpc::next_event_of;
use dyno_tests::{TestAgent, alive, selector, show, watch_events};
use pb::agent_client::AgentClient;
use tonic::Streaming;
use tonic::transport::Channel;

const APP: &str = "bench";
const COMMAND: &str = "exec sleep 600";
const WARMUP: usize = 3;
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The goal of the issue: shim + init under 1 MB of private memory per dyno.
const GOAL_PRIVATE_KIB: u64 = 1024;

fn main() {
    let n = env_usize("BENCH_N", 100).max(1);
    let mem_dynos = env_usize("BENCH_MEM_DYNOS", 20).max(1);

    let agent = TestAgent::start("");
    let slug = show(&agent.slug("bench", &[]));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let report = rt.block_on(run(&agent, &slug, n, mem_dynos));
    drop(rt);
    // Dropping the agent kills it and anything its runs left behind.
    drop(agent);
    print!("{report}");
}

/// One StartDyno, then waits for the dyno's `up` event; returns (time to
/// `up`, time until the StartDyno call returned, the `up` event).
async fn start_and_wait_up(
    client: &mut AgentClient<Channel>,
    events: &mut Streaming<pb::WatchEventsResponse>,
    slug: &str,
    name: &str,
) -> (Duration, Duration, pb::Event) {
    let req = pb::StartDynoRequest {
        app: APP.into(),
        name: name.into(),
        command: COMMAND.into(),
        slug: slug.into(),
        ..Default::default()
    };
    let t0 = Instant::now();
    let dyno = client
        .start_dyno(req)
        .await
        .unwrap_or_else(|e| panic!("StartDyno {name}: {e}"))
        .into_inner();
    let rpc = t0.elapsed();
    let up = wait_event(events, name, &dyno.run_id, pb::DynoState::Up).await;
    (t0.elapsed(), rpc, up)
}

/// Reads the event stream until run `run_id` of `name` changes to `to`.
async fn wait_event(
    events: &mut Streaming<pb::WatchEventsResponse>,
    name: &str,
    run_id: &str,
    to: pb::DynoState,
) -> pb::Event {
    loop {
        let ev = next_event_of(events, APP, name, run_id, EVENT_TIMEOUT).await;
        if ev.to == to as i32 {
            return ev;
        }
        let down_or_crashed = [pb::DynoState::Crashed as i32, pb::DynoState::Down as i32];
        assert!(
            to == pb::DynoState::Down || !down_or_crashed.contains(&ev.to),
            "{name} went {:?} ({}) while waiting for {to:?}",
            pb::DynoState::try_from(ev.to),
            ev.reason
        );
    }
}

async fn stop(client: &mut AgentClient<Channel>, target: &str) {
    client
        .stop_dyno(pb::StopDynoRequest {
            selector: selector(APP, target),
        })
        .await
        .unwrap_or_else(|e| panic!("StopDyno {target}: {e}"));
}

/// The floor: the same shell command started straight from here. std's spawn
/// returns only once the child has exec'd: by default through `posix_spawn`
/// (glibc: `clone(CLONE_VM | CLONE_VFORK)`, the parent resumes after the
/// exec); with a group to set (see below) through fork+exec, the exec's result read
/// from a close-on-exec pipe (the way the shim starts a command).
fn floor_sample(fork: bool) -> Duration {
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", COMMAND])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if fork {
        // std never uses posix_spawn for a command that changes its group;
        // changing it to the group it already has only rules posix_spawn out
        // (one setgid(2) that changes nothing, between fork and exec), with no
        // `unsafe` `pre_exec` hook.
        cmd.gid(nix::unistd::getgid().as_raw());
    }
    let t0 = Instant::now();
    let mut child = cmd.spawn().expect("spawn /bin/sh");
    let dt = t0.elapsed();
    let _ = child.kill();
    let _ = child.wait();
    dt
}

/// Memory figures of one process from `/proc/<pid>/smaps_rollup`, in KiB.
#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    private: u64,
    private_dirty: u64,
    private_clean: u64,
    pss: u64,
    rss: u64,
    anon: u64,
    swap: u64,
}

fn smaps_rollup(pid: u32) -> Mem {
    let path = format!("/proc/{pid}/smaps_rollup");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut kib = BTreeMap::new();
    for line in text.lines().skip(1) {
        if let Some((key, rest)) = line.split_once(':')
            && let Some(v) = rest.split_whitespace().next().and_then(|v| v.parse::<u64>().ok())
        {
            kib.insert(key.trim().to_string(), v);
        }
    }
    let get = |k: &str| *kib.get(k).unwrap_or_else(|| panic!("{path}: no {k}"));
    Mem {
        private: get("Private_Clean") + get("Private_Dirty"),
        private_dirty: get("Private_Dirty"),
        private_clean: get("Private_Clean"),
        pss: get("Pss"),
        rss: get("Rss"),
        anon: get("Anonymous"),
        swap: get("Swap"),
    }
}

fn stats_row(label: &str, s: &Stats) -> String {
    format!(
        "  {label:<34} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}\n",
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max),
        ms(s.mean)
    )
}

fn mean_max(v: &[u64]) -> (f64, u64) {
    (
        v.iter().sum::<u64>() as f64 / v.len() as f64,
        v.iter().copied().max().unwrap_or(0),
    )
}

async fn run(agent: &TestAgent, slug: &str, n: usize, mem_dynos: usize) -> String {
    let mut client = agent.client().await;
    let host = client
        .host_info(pb::HostInfoRequest {})
        .await
        .expect("HostInfo")
        .into_inner();
    let mut events = watch_events(&mut client.clone(), 0, true).await;

    // --- 1. start latency, with the floor sampled in the same loop ---
    for i in 1..=WARMUP {
        let name = format!("warmup.{i}");
        let (_, _, up) = start_and_wait_up(&mut client, &mut events, slug, &name).await;
        stop(&mut client, &name).await;
        wait_event(&mut events, &name, &up.dyno.expect("dyno").run_id, pb::DynoState::Down).await;
        floor_sample(false);
        floor_sample(true);
    }
    let (mut to_up, mut rpc, mut floor) = (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
    let mut floor_fork = Vec::with_capacity(n);
    for i in 1..=n {
        floor.push(floor_sample(false));
        floor_fork.push(floor_sample(true));
        let name = format!("worker.{i}");
        let (t, r, up) = start_and_wait_up(&mut client, &mut events, slug, &name).await;
        to_up.push(t);
        rpc.push(r);
        // Stopped (and gone) before the next start, so that runs do not overlap.
        stop(&mut client, &name).await;
        wait_event(&mut events, &name, &up.dyno.expect("dyno").run_id, pb::DynoState::Down).await;
    }

    // --- 2. memory per dyno, with idle dynos up ---
    let mut runs = Vec::with_capacity(mem_dynos);
    for i in 1..=mem_dynos {
        let name = format!("idle.{i}");
        let (_, _, up) = start_and_wait_up(&mut client, &mut events, slug, &name).await;
        let d = up.dyno.expect("dyno");
        runs.push((name, d.run_id, d.pid));
    }
    // Let every shim settle into its idle loop.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (mut shim_mem, mut cmd_mem) = (Vec::new(), Vec::new());
    for (name, run_id, pid) in &runs {
        let exec_json = agent.state.join("runs").join(run_id).join("exec.json");
        let exec = dyno_agent::runs::read_json::<dyno_agent::runs::ExecRecord>(&exec_json)
            .expect("exec.json")
            .unwrap_or_else(|| panic!("{name}: no {}", exec_json.display()));
        assert_eq!(exec.pid, *pid, "{name}: exec.json and the dyno disagree on the pid");
        assert!(
            alive(exec.shim_pid) && alive(exec.pid),
            "{name}: shim or command not running"
        );
        shim_mem.push(smaps_rollup(exec.shim_pid));
        cmd_mem.push(smaps_rollup(exec.pid));
    }

    // --- clean up: stop everything, wait until it is down ---
    client
        .stop_dyno(pb::StopDynoRequest {
            selector: Some(pb::DynoSelector {
                all: true,
                ..Default::default()
            }),
        })
        .await
        .expect("StopDyno all");
    // They go down in any order.
    let mut running: Vec<(&str, &str)> = runs.iter().map(|(n, r, _)| (n.as_str(), r.as_str())).collect();
    while !running.is_empty() {
        let msg = tokio::time::timeout(EVENT_TIMEOUT, events.message())
            .await
            .unwrap_or_else(|_| panic!("no down event within {EVENT_TIMEOUT:?} for {running:?}"))
            .expect("WatchEvents stream failed")
            .expect("WatchEvents stream ended");
        if let Some(pb::watch_events_response::Kind::Event(ev)) = msg.kind
            && let Some(d) = &ev.dyno
            && ev.to == pb::DynoState::Down as i32
        {
            running.retain(|(n, r)| !(d.app == APP && d.name == *n && d.run_id == *r));
        }
    }
    let left = client
        .list_dynos(pb::ListDynosRequest::default())
        .await
        .expect("ListDynos")
        .into_inner()
        .dynos;
    let not_down = left.iter().filter(|d| d.state != pb::DynoState::Down as i32).count();
    assert_eq!(not_down, 0, "dynos still running after stop --all");

    // --- report ---
    let mut out = String::new();
    out.push_str(&format!(
        "\ndynoagent startup benchmark: N={n} starts (+{WARMUP} warm-up), {mem_dynos} idle dynos for memory\n\
         host: {} cpus, cgroups: {}, agent {}\n",
        host.cpus,
        if host.cgroup_version.is_empty() {
            "none"
        } else {
            &host.cgroup_version
        },
        host.agent_version
    ));
    let (a, r, f, ff) = (stats(&to_up), stats(&rpc), stats(&floor), stats(&floor_fork));
    out.push_str(&format!("\n1. Start latency, worker dyno `{COMMAND}` (ms)\n"));
    out.push_str(&format!(
        "  {:<34} {:>9} {:>9} {:>9} {:>9} {:>9}\n",
        "", "p50", "p90", "p99", "max", "mean"
    ));
    out.push_str(&stats_row("agent: StartDyno -> `up` event", &a));
    out.push_str(&stats_row("  of which the StartDyno call", &r));
    out.push_str(&stats_row("floor: spawn sh -c, posix_spawn", &f));
    out.push_str(&stats_row("floor: spawn sh -c, fork+exec", &ff));
    for (what, fl) in [("posix_spawn", &f), ("fork+exec", &ff)] {
        out.push_str(&format!(
            "  ratio agent/floor ({what}): p50 {:.1}x, p99 {:.1}x\n",
            ms(a.p50) / ms(fl.p50),
            ms(a.p99) / ms(fl.p99)
        ));
    }

    let col = |v: &[Mem], f: fn(&Mem) -> u64| mean_max(&v.iter().map(f).collect::<Vec<_>>());
    let row = |label: &str, v: &[Mem]| {
        let (pm, px) = col(v, |m| m.private);
        let (sm, sx) = col(v, |m| m.pss);
        let (rm, rx) = col(v, |m| m.rss);
        format!("  {label:<26} {pm:>9.1} {px:>7} {sm:>9.1} {sx:>7} {rm:>9.1} {rx:>7}\n")
    };
    out.push_str(&format!(
        "\n2. Memory per dyno, {mem_dynos} idle worker dynos (KiB, from /proc/<pid>/smaps_rollup)\n\
         \x20 {:<26} {:>17} {:>17} {:>17}\n\
         \x20 {:<26} {:>9} {:>7} {:>9} {:>7} {:>9} {:>7}\n",
        "", "Private_Clean+Dirty", "Pss", "Rss", "", "mean", "max", "mean", "max", "mean", "max"
    ));
    out.push_str(&row("shim (dynoagent shim)", &shim_mem));
    out.push_str(&row("command (sleep, reference)", &cmd_mem));
    let (shim_priv, shim_priv_max) = col(&shim_mem, |m| m.private);
    let (cmd_priv, _) = col(&cmd_mem, |m| m.private);
    let (shim_pss, _) = col(&shim_mem, |m| m.pss);
    let (cmd_pss, _) = col(&cmd_mem, |m| m.pss);
    out.push_str(&format!(
        "  ratio shim/command (means): private {:.1}x, pss {:.1}x\n",
        shim_priv / cmd_priv,
        shim_pss / cmd_pss
    ));
    out.push_str(&format!(
        "  shim breakdown (means): Private_Dirty {:.1}, Private_Clean {:.1}, Anonymous {:.1}, Swap {:.1}\n",
        col(&shim_mem, |m| m.private_dirty).0,
        col(&shim_mem, |m| m.private_clean).0,
        col(&shim_mem, |m| m.anon).0,
        col(&shim_mem, |m| m.swap).0
    ));
    let met = shim_priv_max < GOAL_PRIVATE_KIB;
    out.push_str(&format!(
        "  goal: shim + init < 1 MiB ({GOAL_PRIVATE_KIB} KiB) private per dyno\n\
         \x20   (no separate init yet: the command is the shim's direct child, so shim + init = shim)\n\
         \x20   shim private: mean {shim_priv:.1} KiB, max {shim_priv_max} KiB -> {}\n",
        if met { "MET" } else { "NOT MET" }
    ));
    out
}
