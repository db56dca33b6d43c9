//! Benchmark: a dense host. How the agent's costs grow with the number of
//! idle dynos it runs, from 1 000 to 5 000 (issue 18, item 3).
//!
//! Run with `cargo bench -p dyno-tests --bench density` (as root: a release
//! build of the real `dynoagent`, started by the end-to-end harness).
//!
//! For each scale of `BENCH_DYNOS` (default `1000,5000`), one after the
//! other, a fresh agent (jailed dynos with cgroups, `network = "host"` unless
//! `BENCH_NETWORK=isolated`, logging at `info`) is filled with that many idle
//! worker dynos (`exec sleep 100000`) spread over `BENCH_APPS` (default 10)
//! apps, `BENCH_CONCURRENCY` (default 4) StartDyno calls at a time, and then
//! measured, doing nothing else meanwhile:
//! - **fill**: from the first StartDyno to every dyno `up` (HostInfo), per
//!   start and starts a second; each StartDyno call's latency (p50, p99);
//! - **idle CPU**: the agent's utime + stime over `BENCH_IDLE_SECS` (default
//!   30) seconds in which nothing happens (after `BENCH_SETTLE_SECS`, default
//!   5, of quiet), in ms a second, and which of its threads spent it;
//! - **memory and descriptors**: the agent's RSS (`VmRSS`, and its peak
//!   `VmHWM`) and open descriptors after the idle window;
//! - **`ps`**: `dynoctl ps`, `dynoctl --json ps` and gRPC `ListDynos` (all
//!   dynos each time), median and best of `BENCH_PS_RUNS` (default 5);
//! - **a start at scale**: `BENCH_PROBES` (default 20) sequential starts of
//!   one more worker (another app), StartDyno → its `up` event on
//!   `WatchEvents`, each stopped and removed before the next;
//! - **`stop --all`**: `dynoctl stop --all` until the call returns, until
//!   every dyno is down, and until every run's cgroup is gone.
//!
//! Every figure is printed with its ratio to the first scale's and with the
//! ratio of the dynos: growing no worse than linearly means a ratio at most
//! that of the dynos (a time per start or per dyno: at most 1).
//!
//! Each agent is cleaned up before the next scale, also when the bench
//! fails: `stop --all` (waited for), then the agent is ended by its pid and
//! whatever its runs left is killed by pid (the harness); then no run cgroup,
//! no parent cgroup and no mount under its state directory may be left.
//! The bench raises its soft `RLIMIT_NOFILE` to the hard limit (the agent
//! inherits it); if the agent runs out of descriptors or processes, that is
//! reported with the scale it happened at.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use dyno_tests::bench::{env_usize, ms, percentile};
use dyno_tests::grpc::{host_info, next_event_of};
use dyno_tests::{TestAgent, require_root, selector, show, watch_events};
use pb::agent_client::AgentClient;
use tonic::transport::Channel;

const COMMAND: &str = "exec sleep 100000";
const PROBE_APP: &str = "density-probe";
/// `/proc` reports utime and stime in USER_HZ ticks, 100 per second on Linux.
const USER_HZ: f64 = 100.0;
/// The goals of the issue at 5 000 dynos.
const GOAL_RSS_MIB: f64 = 128.0;
const GOAL_PS_MS: f64 = 100.0;

struct Settings {
    scales: Vec<usize>,
    apps: usize,
    concurrency: usize,
    idle_secs: u64,
    settle_secs: u64,
    ps_runs: usize,
    probes: usize,
    network: String,
}

fn settings() -> Settings {
    let scales: Vec<usize> = std::env::var("BENCH_DYNOS")
        .unwrap_or_else(|_| "1000,5000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("BENCH_DYNOS: {s:?} is not a number"))
        })
        .filter(|n| *n > 0)
        .collect();
    assert!(!scales.is_empty(), "BENCH_DYNOS names no scale");
    let network = std::env::var("BENCH_NETWORK").unwrap_or_else(|_| "host".into());
    assert!(
        network == "host" || network == "isolated",
        "BENCH_NETWORK={network:?}: host or isolated"
    );
    Settings {
        scales,
        apps: env_usize("BENCH_APPS", 10).max(1),
        concurrency: env_usize("BENCH_CONCURRENCY", 4).max(1),
        idle_secs: env_usize("BENCH_IDLE_SECS", 30).max(2) as u64,
        settle_secs: env_usize("BENCH_SETTLE_SECS", 5) as u64,
        ps_runs: env_usize("BENCH_PS_RUNS", 5).max(1),
        probes: env_usize("BENCH_PROBES", 20),
        network,
    }
}

fn main() {
    require_root();
    let s = settings();
    raise_nofile();
    let limits = format!(
        "RLIMIT_NOFILE {} (soft = hard), pid_max {}, {} cpus, load {}",
        nofile_hard(),
        read_trim("/proc/sys/kernel/pid_max"),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        read_trim("/proc/loadavg")
    );
    eprintln!("density bench: {limits}");
    let mut results = Vec::new();
    for &n in &s.scales {
        eprintln!("density bench: {n} dynos ({} network)", s.network);
        let r = measure_scale(&s, n);
        eprintln!("density bench: {n} dynos done");
        eprint!(
            "{}",
            report(&s, &results.iter().chain([&r]).cloned().collect::<Vec<_>>())
        );
        results.push(r);
    }
    print!("\ndensity benchmark, {limits}\n{}", report(&s, &results));
}

// ----------------------------------------------------------------- set-up ---

/// The agents inherit the bench's soft limit on open files.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn nofile_hard() -> u64 {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map_or(0, |(_, h)| h)
}

/// One agent under measurement; dropping it (also on a panic) stops every
/// dyno and waits for them, then the harness ends the agent by its pid and
/// kills what its runs left.
struct Bench {
    agent: TestAgent,
    rt: tokio::runtime::Runtime,
    stopped: bool,
}

impl Bench {
    fn pid(&self) -> u32 {
        self.agent.agent_pid()
    }

    fn client(&self) -> AgentClient<Channel> {
        self.rt
            .block_on(self.agent.client())
            .max_decoding_message_size(256 << 20)
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        eprintln!("density bench: cleaning up: stop --all");
        let out = self.agent.ctl(&["stop", "--all"]);
        if !out.status.success() {
            eprintln!(
                "density bench: stop --all failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut client = self.client();
        let deadline = Instant::now() + Duration::from_secs(300);
        while Instant::now() < deadline {
            match self.rt.block_on(host_info(&mut client)) {
                Ok(h) if h.dynos_up + h.dynos_starting + h.dynos_crashed == 0 => break,
                Ok(_) => std::thread::sleep(Duration::from_millis(500)),
                Err(e) => {
                    eprintln!("density bench: {e}");
                    break;
                }
            }
        }
    }
}

fn agent_config(s: &Settings) -> String {
    // Thousands of sleeping dynos of 512 MiB each: admission must allow far
    // more than this host's memory (they use almost none of it).
    format!("network = \"{}\"\nmemory_overcommit = 1000.0\n", s.network)
}

fn app_of(i: usize, apps: usize) -> String {
    format!("density-{}", i % apps)
}

// ---------------------------------------------------------------- figures ---

#[derive(Clone, Debug, Default)]
struct Scale {
    n: usize,
    fill_secs: f64,
    call_p50_ms: f64,
    call_p99_ms: f64,
    idle_cpu_ms_per_s: f64,
    idle_secs: f64,
    /// (thread name, ms a second) of the threads alive at both ends.
    idle_threads: Vec<(String, f64)>,
    rss_mib: f64,
    hwm_mib: f64,
    fds: usize,
    threads: usize,
    ps_text_ms: (f64, f64),
    ps_json_ms: (f64, f64),
    list_ms: (f64, f64),
    probe_p50_ms: f64,
    probe_p99_ms: f64,
    stop_call_secs: f64,
    stop_down_secs: f64,
    stop_cgroups_secs: f64,
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

/// utime + stime (ticks) from a `stat` file.
fn stat_ticks(path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let (_, rest) = text.rsplit_once(") ")?;
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 of the file; `rest` starts at field 3.
    Some(f.get(11)? + f.get(12)?)
}

/// Each thread's (tid, name, utime + stime ticks).
fn thread_ticks(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tid| {
            let comm = read_trim(&format!("/proc/{pid}/task/{tid}/comm"));
            Some((tid, comm, stat_ticks(&format!("/proc/{pid}/task/{tid}/stat"))?))
        })
        .collect()
}

/// A `kB` field of `/proc/PID/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map_or(0, |d| d.count())
}

/// (median, best) in ms of `runs` timings of `f`.
fn timed(runs: usize, mut f: impl FnMut()) -> (f64, f64) {
    let mut v: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            ms(t.elapsed())
        })
        .collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 50.0), v[0])
}

// ------------------------------------------------------------ measurement ---

fn measure_scale(s: &Settings, n: usize) -> Scale {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let agent = TestAgent::start_logging(&agent_config(s), "info");
    let mut b = Bench {
        agent,
        rt,
        stopped: false,
    };
    let slug = show(&b.agent.slug("density", &[]));
    let mut r = Scale {
        n,
        ..Default::default()
    };

    // --- fill ---
    let t0 = Instant::now();
    let calls = b.rt.block_on(fill(&b.agent, &slug, n, s)).unwrap_or_else(|e| {
        panic!(
            "{n} dynos: {e}\n(agent: {} fds, {} threads; machine: {} processes)",
            count_dir(&format!("/proc/{}/fd", b.pid())),
            count_dir(&format!("/proc/{}/task", b.pid())),
            count_dir("/proc")
        )
    });
    let mut client = b.client();
    let up_deadline = Duration::from_secs(120) + Duration::from_millis(200) * n as u32;
    loop {
        let h = b.rt.block_on(host_info(&mut client)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(h.dynos_crashed, 0, "{n} dynos: some crashed while starting");
        if h.dynos_up as usize == n {
            break;
        }
        assert!(
            t0.elapsed() < up_deadline,
            "{n} dynos: only {} up after {up_deadline:?} ({} starting); agent log:\n{}",
            h.dynos_up,
            h.dynos_starting,
            tail(&b.agent.agent_log(), 30)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    r.fill_secs = t0.elapsed().as_secs_f64();
    let mut calls = calls;
    calls.sort_by(f64::total_cmp);
    r.call_p50_ms = percentile(&calls, 50.0);
    r.call_p99_ms = percentile(&calls, 99.0);
    eprintln!("density bench: {n} dynos up in {:.1} s", r.fill_secs);

    // --- idle ---
    std::thread::sleep(Duration::from_secs(s.settle_secs));
    let pid = b.pid();
    let stat = format!("/proc/{pid}/stat");
    let before = thread_ticks(pid);
    let a0 = stat_ticks(&stat).expect("agent stat");
    let w0 = Instant::now();
    // Nothing happens: the point of the window.
    std::thread::sleep(Duration::from_secs(s.idle_secs));
    let a1 = stat_ticks(&stat).expect("agent stat");
    r.idle_secs = w0.elapsed().as_secs_f64();
    let after = thread_ticks(pid);
    r.idle_cpu_ms_per_s = (a1 - a0) as f64 * 1000.0 / USER_HZ / r.idle_secs;
    let mut by_name: std::collections::BTreeMap<String, u64> = Default::default();
    for (tid, comm, t1) in &after {
        if let Some((_, _, t0)) = before.iter().find(|(t, _, _)| t == tid) {
            *by_name.entry(comm.clone()).or_default() += t1 - t0;
        }
    }
    r.idle_threads = by_name
        .into_iter()
        .filter(|(_, t)| *t > 0)
        .map(|(c, t)| (c, t as f64 * 1000.0 / USER_HZ / r.idle_secs))
        .collect();
    r.idle_threads.sort_by(|a, b| b.1.total_cmp(&a.1));
    r.rss_mib = status_mib(pid, "VmRSS:");
    r.hwm_mib = status_mib(pid, "VmHWM:");
    r.fds = count_dir(&format!("/proc/{pid}/fd"));
    r.threads = count_dir(&format!("/proc/{pid}/task"));

    // --- ps ---
    let lines = |out: &str| out.lines().filter(|l| l.starts_with("worker.")).count();
    r.ps_text_ms = timed(s.ps_runs, || {
        let out = b.agent.ctl_ok(&["ps"]);
        assert_eq!(lines(&out), n, "dynoctl ps shows every dyno");
    });
    r.ps_json_ms = timed(s.ps_runs, || {
        let out = b.agent.ctl_ok(&["--json", "ps"]);
        assert!(out.len() > n * 100, "dynoctl --json ps shows every dyno");
    });
    r.list_ms = timed(s.ps_runs, || {
        let got =
            b.rt.block_on(client.list_dynos(pb::ListDynosRequest::default()))
                .unwrap_or_else(|e| panic!("ListDynos at {n} dynos: {e}"))
                .into_inner();
        assert_eq!(got.dynos.len(), n, "ListDynos lists every dyno");
    });

    // --- a start at scale ---
    if s.probes > 0 {
        let mut v = b.rt.block_on(probe_starts(&b.agent, &slug, s.probes));
        v.sort_by(f64::total_cmp);
        r.probe_p50_ms = percentile(&v, 50.0);
        r.probe_p99_ms = percentile(&v, 99.0);
    }

    // --- stop --all ---
    let t = Instant::now();
    b.agent.ctl_ok(&["stop", "--all"]);
    r.stop_call_secs = t.elapsed().as_secs_f64();
    let stop_deadline = Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
    loop {
        let h = b.rt.block_on(host_info(&mut client)).unwrap_or_else(|e| panic!("{e}"));
        if h.dynos_up + h.dynos_starting + h.dynos_crashed == 0 {
            break;
        }
        assert!(
            t.elapsed() < stop_deadline,
            "{n} dynos: {} up, {} starting, {} crashed {stop_deadline:?} after stop --all",
            h.dynos_up,
            h.dynos_starting,
            h.dynos_crashed
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    r.stop_down_secs = t.elapsed().as_secs_f64();
    b.stopped = true;
    while !b.agent.run_cgroups_left().is_empty() {
        assert!(
            t.elapsed() < stop_deadline,
            "{n} dynos: {} run cgroups left {stop_deadline:?} after stop --all",
            b.agent.run_cgroups_left().len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    r.stop_cgroups_secs = t.elapsed().as_secs_f64();

    // --- clean up and check ---
    let state = b.agent.state.clone();
    let cgroups = b.agent.cgroup_dirs();
    assert!(
        !cgroups.is_empty(),
        "no parent cgroup for the agent: nothing was checked"
    );
    drop(b);
    let left: Vec<_> = cgroups.iter().filter(|d| d.exists()).collect();
    assert!(left.is_empty(), "parent cgroups left behind: {left:?}");
    let mounts = mounts_under(&state);
    assert!(mounts.is_empty(), "mounts left under {}: {mounts:?}", state.display());
    r
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = show(dir);
    read_trim("/proc/self/mountinfo")
        .lines()
        .filter(|l| l.split_whitespace().nth(4).is_some_and(|m| m.starts_with(&dir)))
        .map(String::from)
        .collect()
}

/// Starts `n` workers spread over the apps, `concurrency` calls at a time;
/// returns each call's latency (ms).
async fn fill(agent: &TestAgent, slug: &str, n: usize, s: &Settings) -> Result<Vec<f64>, String> {
    let client = agent.client().await;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..s.concurrency.min(n) {
        let mut client = client.clone();
        let next = next.clone();
        let slug = slug.to_string();
        let apps = s.apps;
        tasks.push(tokio::spawn(async move {
            let mut calls = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, String>(calls);
                }
                let req = pb::StartDynoRequest {
                    app: app_of(i, apps),
                    name: format!("worker.{}", i / apps + 1),
                    command: COMMAND.into(),
                    slug: slug.clone(),
                    ..Default::default()
                };
                let t = Instant::now();
                client
                    .start_dyno(req)
                    .await
                    .map_err(|e| format!("StartDyno #{i}: {e}"))?;
                calls.push(ms(t.elapsed()));
            }
        }));
    }
    let mut calls = Vec::new();
    for t in tasks {
        calls.extend(t.await.map_err(|e| format!("start task: {e}"))??);
    }
    Ok(calls)
}

/// `probes` sequential starts of one more worker, each StartDyno → its `up`
/// event (ms); each is stopped, its `down` awaited, and removed.
async fn probe_starts(agent: &TestAgent, slug: &str, probes: usize) -> Vec<f64> {
    let mut client = agent.client().await;
    let listing = client
        .clone()
        .max_decoding_message_size(256 << 20)
        .list_dynos(pb::ListDynosRequest {
            app: PROBE_APP.into(),
            states: Vec::new(),
        })
        .await
        .expect("ListDynos")
        .into_inner();
    let mut events = watch_events(&mut client, listing.seq, true).await;
    let timeout = Duration::from_secs(60);
    let mut v = Vec::new();
    for i in 0..probes {
        let name = format!("worker.{}", i + 1);
        let t = Instant::now();
        let d = client
            .start_dyno(pb::StartDynoRequest {
                app: PROBE_APP.into(),
                name: name.clone(),
                command: COMMAND.into(),
                slug: slug.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("probe StartDyno: {e}"))
            .into_inner();
        loop {
            let ev = next_event_of(&mut events, PROBE_APP, &name, &d.run_id, timeout).await;
            assert!(
                ev.to != pb::DynoState::Crashed as i32,
                "probe {name} crashed: {}",
                ev.reason
            );
            if ev.to == pb::DynoState::Up as i32 {
                break;
            }
        }
        v.push(ms(t.elapsed()));
        client
            .stop_dyno(pb::StopDynoRequest {
                selector: selector(PROBE_APP, &name),
            })
            .await
            .unwrap_or_else(|e| panic!("probe StopDyno: {e}"));
        while next_event_of(&mut events, PROBE_APP, &name, &d.run_id, timeout)
            .await
            .to
            != pb::DynoState::Down as i32
        {}
        client
            .remove_dyno(pb::RemoveDynoRequest {
                app: PROBE_APP.into(),
                name: name.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("probe RemoveDyno: {e}"));
    }
    v
}

// ---------------------------------------------------------------- report ---

fn report(s: &Settings, rs: &[Scale]) -> String {
    let Some(first) = rs.first() else {
        return String::new();
    };
    let mut out = format!(
        "\n{} idle worker dynos (`{COMMAND}`), jailed, cgroups, network {}, {} apps, {} StartDyno calls at a time;\n\
         a fresh agent per scale; ratio: to the {}-dyno figure (dynos: {})\n\n",
        rs.iter().map(|r| r.n.to_string()).collect::<Vec<_>>().join(" / "),
        s.network,
        s.apps,
        s.concurrency,
        first.n,
        rs.iter()
            .map(|r| format!("{:.1}x", r.n as f64 / first.n as f64))
            .collect::<Vec<_>>()
            .join(" ")
    );
    out.push_str(&format!("  {:<52}", "figure"));
    for r in rs {
        out.push_str(&format!(" {:>10} {:>6}", format!("{} dynos", r.n), "ratio"));
    }
    out.push('\n');
    let mut row = |label: &str, f: &dyn Fn(&Scale) -> f64, prec: usize| {
        out.push_str(&format!("  {label:<52}"));
        let base = f(first);
        for r in rs {
            let x = f(r);
            let ratio = if base > 0.0 {
                format!("{:.2}x", x / base)
            } else {
                "-".into()
            };
            out.push_str(&format!(" {x:>10.prec$} {ratio:>6}"));
        }
        out.push('\n');
    };
    row("agent RSS, MiB (VmRSS)", &|r| r.rss_mib, 1);
    row("agent peak RSS, MiB (VmHWM)", &|r| r.hwm_mib, 1);
    row("agent open descriptors", &|r| r.fds as f64, 0);
    row("agent threads", &|r| r.threads as f64, 0);
    row("dynoctl ps, ms (median)", &|r| r.ps_text_ms.0, 1);
    row("dynoctl ps, ms (best)", &|r| r.ps_text_ms.1, 1);
    row("dynoctl --json ps, ms (median)", &|r| r.ps_json_ms.0, 1);
    row("gRPC ListDynos, ms (median)", &|r| r.list_ms.0, 1);
    row("fill: seconds to all up", &|r| r.fill_secs, 1);
    row(
        "fill: ms per start (fill time / dynos)",
        &|r| r.fill_secs * 1000.0 / r.n as f64,
        2,
    );
    row("fill: starts a second", &|r| r.n as f64 / r.fill_secs, 1);
    row("fill: StartDyno call, ms p50", &|r| r.call_p50_ms, 2);
    row("fill: StartDyno call, ms p99", &|r| r.call_p99_ms, 2);
    row("at scale: StartDyno -> up, ms p50", &|r| r.probe_p50_ms, 1);
    row("at scale: StartDyno -> up, ms p99 (max)", &|r| r.probe_p99_ms, 1);
    row("stop --all: call returned, s", &|r| r.stop_call_secs, 2);
    row("stop --all: every dyno down, s", &|r| r.stop_down_secs, 2);
    row("stop --all: every run cgroup gone, s", &|r| r.stop_cgroups_secs, 2);
    row(
        "stop --all: ms per dyno (to all down)",
        &|r| r.stop_down_secs * 1000.0 / r.n as f64,
        2,
    );
    row("idle agent CPU, ms/s", &|r| r.idle_cpu_ms_per_s, 2);
    row(
        "idle agent CPU per 1000 dynos, ms/s",
        &|r| r.idle_cpu_ms_per_s * 1000.0 / r.n as f64,
        2,
    );
    for r in rs {
        out.push_str(&format!(
            "  idle window at {} dynos: {:.1} s; by thread (ms/s): {}\n",
            r.n,
            r.idle_secs,
            r.idle_threads
                .iter()
                .map(|(c, v)| format!("{c} {v:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if let Some(last) = rs.iter().find(|r| r.n == 5000) {
        let ps = last.ps_text_ms.0.max(last.list_ms.0);
        out.push_str(&format!(
            "  goals at 5000 dynos: agent RSS <= {GOAL_RSS_MIB} MiB: {:.1} MiB {}; ps <= {GOAL_PS_MS} ms: {ps:.1} ms {}\n",
            last.rss_mib,
            if last.rss_mib <= GOAL_RSS_MIB { "MET" } else { "NOT MET" },
            if ps <= GOAL_PS_MS { "MET" } else { "NOT MET" }
        ));
    }
    out
}
