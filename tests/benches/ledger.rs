//! Benchmark: what the usage ledger costs with many running dynos.
//!
//! Run with `cargo bench -p dyno-tests --bench ledger` (as root: a release
//! build of the real `dynoagent`, started by the end-to-end harness).
//!
//! Two agents run side by side on the same machine, each with `BENCH_DYNOS`
//! (default 1000) idle worker dynos (`exec sleep 100000`, started over the
//! gRPC API, `BENCH_CONCURRENCY` calls at a time): one with
//! `usage_slice = "1s"`, which writes one record per dyno every second, and
//! one with `usage_slice = "1h"`, which writes none during the window (the
//! window is placed so that it crosses no UTC hour). Everything else is the
//! same, so the difference between them is what metering at 1 s costs, and
//! both see the same background load in the same window.
//!
//! Once every dyno is up and the 1 s ledger writes exactly one record per
//! dyno per slice, both agents are measured over the same `BENCH_WINDOW_SECS`
//! (default 30) seconds, from mid-slice to mid-slice:
//! - the CPU time of the agent's `meter` thread, from
//!   `/proc/<pid>/task/<tid>/schedstat` (nanoseconds) and from `stat`
//!   (utime + stime, in 10 ms ticks), and per slice (sampled every second);
//! - the CPU time of the whole agent process (`/proc/<pid>/stat`);
//! - the meter thread's I/O (`/proc/<pid>/task/<tid>/io`);
//! - the ledger: records written (`SELECT count(*) FROM usage`, with the
//!   `sqlite3` command line tool when it is installed, else the agent's
//!   `usage_last_seq`), the bytes of `ledger.db` + `ledger.db-wal`, and the
//!   database's logical size (`page_count * page_size`, which counts pages
//!   still in the WAL); the WAL is checkpointed into `ledger.db` every 1000
//!   pages and then reused from its start, so the files grow in steps.
//!
//! When `perf` is installed, the 1 s agent's meter thread is then profiled
//! for `BENCH_PERF_SECS` (default 15; 0 turns it off) seconds, outside the
//! measured window, and the top symbols are printed.
//!
//! Both agents are stopped with `StopDyno --all` and dropped afterwards, and
//! their parent cgroups are checked to be gone (and removed if not), also
//! when the benchmark fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dyno_proto::v1 as pb;
use dyno_tests::bench::{env_usize, have, percentile};
use dyno_tests::cleanup::remove_cgroup_tree;
use dyno_tests::grpc::host_info;
use dyno_tests::{TestAgent, require_root, show};
use pb::agent_client::AgentClient;
use tonic::transport::Channel;

const APP: &str = "ledger-bench";
const COMMAND: &str = "exec sleep 100000";
/// The goal of the issue: under 5 ms of CPU per second at 1000 dynos.
const GOAL_MS_PER_SEC: f64 = 5.0;
/// `/proc` reports utime and stime in USER_HZ ticks, 100 per second on Linux.
const USER_HZ: f64 = 100.0;
/// Where in a second the samples are taken: the meter writes a slice 5 ms
/// after its boundary, so mid-second nothing of it is in flight.
const SAMPLE_AT_MS: u64 = 500;

fn main() {
    let n = env_usize("BENCH_DYNOS", 1000).max(1);
    let window = env_usize("BENCH_WINDOW_SECS", 30).max(2) as u64;
    let concurrency = env_usize("BENCH_CONCURRENCY", 8).max(1);
    let perf_secs = env_usize("BENCH_PERF_SECS", 15) as u64;
    require_root();
    raise_nofile();

    let load_before = loadavg();
    let overcommit = read_trim("/proc/sys/vm/overcommit_memory");
    // Declared first, dropped last: after both agents' own clean-up, it
    // checks that their parent cgroups are gone and removes what is left.
    let mut guard = CgroupGuard::default();
    let mut twins = Vec::new();
    for (label, slice) in [("1s slice", "1s"), ("1h slice", "1h")] {
        // 1000 sleeping dynos of 512 MiB each: admission must allow far more
        // than this host's memory (they use almost none of it).
        let agent = TestAgent::start(&format!("usage_slice = \"{slice}\"\nmemory_overcommit = 100.0"));
        guard.dirs.extend(agent.cgroup_dirs());
        let pid = agent.agent_pid();
        twins.push(Twin {
            label,
            agent,
            pid,
            meter_tid: 0,
            start_secs: 0.0,
        });
    }
    assert_eq!(
        guard.dirs.len() % 2,
        0,
        "expected each agent's parent cgroup in the same hierarchies: {:?}",
        guard.dirs
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = rt.block_on(bench(&mut twins, n, window, concurrency, perf_secs));
    // Stop every dyno (also when the bench failed), then drop the agents:
    // the harness kills each agent and whatever its runs left, and removes
    // its cgroups; the guard checks.
    let stopped = rt.block_on(stop_all(&twins, n));
    drop(rt);
    drop(twins);
    let left = guard.clean();
    let measured = match result {
        Ok(m) => m,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = stopped {
        panic!("{e}");
    }
    assert!(left.is_empty(), "cgroups were left behind (removed now): {left:?}");
    print!(
        "{}",
        report(&measured, n, window, concurrency, &load_before, &overcommit)
    );
}

// ----------------------------------------------------------------- set-up ---

struct Twin {
    label: &'static str,
    agent: TestAgent,
    pid: u32,
    meter_tid: u32,
    /// Seconds from the first StartDyno call to every dyno `up`.
    start_secs: f64,
}

impl Twin {
    fn ledger(&self) -> PathBuf {
        self.agent.state.join("ledger.db")
    }
}

/// The agents inherit the soft limit on open files: each holds a pidfd per
/// shim and the meter two control files per run.
fn raise_nofile() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

#[derive(Default)]
struct CgroupGuard {
    dirs: Vec<PathBuf>,
}

impl CgroupGuard {
    /// Removes what is left of the agents' parent cgroups (killing, by pid,
    /// the processes still in their runs' cgroups: only dynos started here);
    /// returns the directories that had to be cleaned up.
    fn clean(&mut self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for dir in std::mem::take(&mut self.dirs) {
            if !dir.exists() {
                continue;
            }
            left.push(dir.clone());
            remove_cgroup_tree(&dir, Duration::from_secs(60));
            if dir.exists() {
                eprintln!("ledger bench: could not remove {}", dir.display());
            }
        }
        left
    }
}

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        let left = self.clean();
        if !left.is_empty() {
            eprintln!("ledger bench: removed leftover cgroups {left:?}");
        }
    }
}

/// Starts `n` worker dynos, `concurrency` calls at a time, and waits until
/// all are up; returns the seconds that took.
async fn start_dynos(twin: &Twin, slug: &str, n: usize, concurrency: usize) -> Result<f64, String> {
    let client = twin.agent.client().await;
    let next = Arc::new(AtomicUsize::new(1));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency.min(n) {
        let mut client = client.clone();
        let next = next.clone();
        let slug = slug.to_string();
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i > n {
                    return Ok::<(), String>(());
                }
                let req = pb::StartDynoRequest {
                    app: APP.into(),
                    name: format!("worker.{i}"),
                    command: COMMAND.into(),
                    slug: slug.clone(),
                    ..Default::default()
                };
                client
                    .start_dyno(req)
                    .await
                    .map_err(|e| format!("StartDyno worker.{i}: {e}"))?;
            }
        }));
    }
    for t in tasks {
        t.await.map_err(|e| format!("start task: {e}"))??;
    }
    let mut client = client;
    let deadline = Duration::from_secs(120) + Duration::from_millis(300) * n as u32;
    loop {
        let h = host_info(&mut client).await?;
        if h.dynos_crashed > 0 {
            return Err(format!(
                "{}: {} dynos crashed while starting",
                twin.label, h.dynos_crashed
            ));
        }
        if h.dynos_up as usize == n {
            return Ok(t0.elapsed().as_secs_f64());
        }
        if t0.elapsed() > deadline {
            return Err(format!(
                "{}: only {} of {n} dynos up after {deadline:?} ({} starting)",
                twin.label, h.dynos_up, h.dynos_starting
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The tid of the agent's thread named `comm`.
fn find_thread(pid: u32, comm: &str) -> Option<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|tid| read_trim(&format!("/proc/{pid}/task/{tid}/comm")) == comm)
}

/// Stops every dyno of both agents and waits until all are down and their
/// runs' cgroups are gone.
async fn stop_all(twins: &[Twin], n: usize) -> Result<(), String> {
    let mut errors = Vec::new();
    for twin in twins {
        let mut client = twin.agent.client().await;
        if let Err(e) = client
            .stop_dyno(pb::StopDynoRequest {
                selector: Some(pb::DynoSelector {
                    all: true,
                    ..Default::default()
                }),
            })
            .await
        {
            errors.push(format!("{}: StopDyno --all: {e}", twin.label));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(120) + Duration::from_millis(100) * n as u32;
    for twin in twins {
        let mut client = twin.agent.client().await;
        loop {
            match host_info(&mut client).await {
                Ok(h) if h.dynos_up + h.dynos_starting + h.dynos_crashed == 0 => break,
                Ok(h) if Instant::now() > deadline => {
                    errors.push(format!(
                        "{}: still {} up, {} starting, {} crashed after StopDyno --all",
                        twin.label, h.dynos_up, h.dynos_starting, h.dynos_crashed
                    ));
                    break;
                }
                Err(e) => {
                    errors.push(format!("{}: {e}", twin.label));
                    break;
                }
                Ok(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
        // The agent removes a run's cgroup when it has seen the run end.
        while twin.agent.cgroup_dirs().iter().any(|d| has_subdirs(d)) {
            if Instant::now() > deadline {
                errors.push(format!(
                    "{}: run cgroups still there after every dyno is down",
                    twin.label
                ));
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

fn has_subdirs(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.path().is_dir())))
}

// ------------------------------------------------------------ measurement ---

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_string()
}

/// utime + stime (ticks) from a `stat` file.
fn stat_ticks(path: &str) -> u64 {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let (_, rest) = text.rsplit_once(") ").unwrap_or_else(|| panic!("{path}: {text:?}"));
    let f: Vec<u64> = rest.split_whitespace().map(|v| v.parse().unwrap_or(0)).collect();
    // Fields 14 and 15 of the file; `rest` starts at field 3.
    f[11] + f[12]
}

/// The thread's time on a CPU, in nanoseconds (first field of `schedstat`).
fn schedstat_ns(pid: u32, tid: u32) -> u64 {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    read_trim(&path)
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no run time"))
}

#[derive(Clone, Copy, Debug, Default)]
struct Io {
    /// Bytes asked for by read and write system calls.
    rchar: u64,
    wchar: u64,
    syscr: u64,
    syscw: u64,
    /// Bytes sent to the storage layer.
    write_bytes: u64,
}

fn task_io(pid: u32, tid: u32) -> Io {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/io")).unwrap_or_default();
    let mut io = Io::default();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().parse().unwrap_or(0);
            match k {
                "rchar" => io.rchar = v,
                "wchar" => io.wchar = v,
                "syscr" => io.syscr = v,
                "syscw" => io.syscw = v,
                "write_bytes" => io.write_bytes = v,
                _ => {}
            }
        }
    }
    io
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// (busy, all) jiffies of the whole machine.
fn machine_jiffies() -> (u64, u64) {
    let text = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = text.lines().next().expect("cpu line");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    let idle = v[3] + v[4];
    let all: u64 = v.iter().take(8).sum();
    (all - idle, all)
}

fn loadavg() -> String {
    read_trim("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the ledger holds, asked of SQLite itself.
#[derive(Clone, Copy, Debug, Default)]
struct LedgerSize {
    records: u64,
    /// page_count * page_size: the database as a reader sees it, WAL included.
    logical_bytes: Option<u64>,
}

fn ledger_size(db: &Path) -> Option<LedgerSize> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg("SELECT count(*) FROM usage; PRAGMA page_count; PRAGMA page_size;")
        .stdin(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "ledger bench: sqlite3 {}: {}",
            db.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<u64> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    (v.len() == 3).then(|| LedgerSize {
        records: v[0],
        logical_bytes: Some(v[1] * v[2]),
    })
}

/// One agent at one instant.
#[derive(Clone, Copy, Debug, Default)]
struct Snap {
    meter_ns: u64,
    meter_ticks: u64,
    agent_ticks: u64,
    io: Io,
    db_bytes: u64,
    wal_bytes: u64,
    log_bytes: u64,
}

fn snap(t: &Twin) -> Snap {
    Snap {
        meter_ns: schedstat_ns(t.pid, t.meter_tid),
        meter_ticks: stat_ticks(&format!("/proc/{}/task/{}/stat", t.pid, t.meter_tid)),
        agent_ticks: stat_ticks(&format!("/proc/{}/stat", t.pid)),
        io: task_io(t.pid, t.meter_tid),
        db_bytes: file_len(&t.ledger()),
        wal_bytes: file_len(&t.ledger().with_extension("db-wal")),
        log_bytes: file_len(&t.agent.dir.path().join("agent.log")),
    }
}

/// Sleeps until `SAMPLE_AT_MS` into the next wall-clock second (the meter's
/// slices are aligned to the Unix epoch).
async fn to_mid_second() {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock");
    let into = now.subsec_millis() as u64;
    let wait = if into < SAMPLE_AT_MS {
        SAMPLE_AT_MS - into
    } else {
        1000 - into + SAMPLE_AT_MS
    };
    tokio::time::sleep(Duration::from_millis(wait)).await;
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

/// Waits until the 1 s ledger has written exactly `n` records in each of
/// two consecutive slices and neither ledger has writes pending.
async fn wait_caught_up(twins: &[Twin], clients: &mut [AgentClient<Channel>], n: usize) -> Result<f64, String> {
    let t0 = Instant::now();
    let mut good = 0;
    let mut last: Option<u64> = None;
    for _ in 0..120 {
        to_mid_second().await;
        let fast = host_info(&mut clients[0]).await?;
        let slow = host_info(&mut clients[1]).await?;
        for (t, h) in twins.iter().zip([&fast, &slow]) {
            if !h.usage_error.is_empty() {
                return Err(format!("{}: the ledger fails: {}", t.label, h.usage_error));
            }
        }
        let settled = fast.usage_open_runs as usize == n
            && slow.usage_open_runs as usize == n
            && fast.usage_pending_writes == 0
            && slow.usage_pending_writes == 0;
        let per_slice = last.map(|l| fast.usage_last_seq - l);
        last = Some(fast.usage_last_seq);
        good = if settled && per_slice == Some(n as u64) {
            good + 1
        } else {
            0
        };
        if good >= 2 {
            return Ok(t0.elapsed().as_secs_f64());
        }
    }
    Err(format!(
        "the 1 s ledger did not settle at {n} records per slice within 120 s (last seq {last:?})"
    ))
}

struct Measured {
    twins: Vec<TwinResult>,
    window_secs: f64,
    machine_busy_cores: f64,
    load_start: String,
    load_end: String,
    catch_up_secs: f64,
    counted_with: &'static str,
    /// A slice boundary passed between the last snapshot and the count.
    end_crossed: bool,
    profile: Option<String>,
    cgroup_version: String,
    cpus: u32,
}

struct TwinResult {
    start_secs: f64,
    a: Snap,
    b: Snap,
    /// The meter thread's CPU in each slice of the window, ns.
    per_slice: Vec<u64>,
    records: u64,
    logical_growth: Option<u64>,
    logical_end: Option<u64>,
}

async fn bench(
    twins: &mut [Twin],
    n: usize,
    window: u64,
    concurrency: usize,
    perf_secs: u64,
) -> Result<Measured, String> {
    let slug = show(&twins[0].agent.slug("bench", &[]));
    let mut clients = Vec::new();
    for t in twins.iter() {
        clients.push(t.agent.client().await);
    }
    let host = host_info(&mut clients[0]).await?;
    for t in twins.iter_mut() {
        eprintln!("ledger bench: {}: starting {n} dynos", t.label);
        t.start_secs = start_dynos(t, &slug, n, concurrency).await?;
        eprintln!("ledger bench: {}: {n} dynos up in {:.1} s", t.label, t.start_secs);
        t.meter_tid = find_thread(t.pid, "meter").ok_or_else(|| format!("{}: no thread named meter", t.label))?;
    }
    let mut catch_up_secs = wait_caught_up(twins, &mut clients, n).await?;
    // The 1 h agent writes a slice at every UTC hour: keep the window clear of one.
    let need = window + 10;
    let to_hour = 3600 - unix_now() % 3600;
    if to_hour < need {
        eprintln!("ledger bench: waiting {} s for the UTC hour to pass", to_hour + 15);
        tokio::time::sleep(Duration::from_secs(to_hour + 15)).await;
        catch_up_secs += wait_caught_up(twins, &mut clients, n).await?;
    }
    let use_sqlite = have("sqlite3");
    let counted_with = if use_sqlite {
        "sqlite3: SELECT count(*) FROM usage"
    } else {
        "HostInfo usage_last_seq (sqlite3 not installed)"
    };

    // --- the window: from mid-slice to mid-slice ---
    // The ledgers are counted in the same half slice as the first and last
    // snapshot, with no slice boundary in between (else the start is retried
    // a second later, and a crossing at the end is reported).
    eprintln!("ledger bench: measuring {window} s");
    let load_start = loadavg();
    let (before, m0, t0, a) = {
        let mut tries = 0;
        loop {
            to_mid_second().await;
            let sec = unix_now();
            let mut before = Vec::new();
            for (t, c) in twins.iter().zip(clients.iter_mut()) {
                before.push(count(t, c, use_sqlite).await?);
            }
            let m0 = machine_jiffies();
            let t0 = Instant::now();
            let a: Vec<Snap> = twins.iter().map(snap).collect();
            if unix_now() == sec {
                break (before, m0, t0, a);
            }
            tries += 1;
            if tries == 10 {
                return Err("cannot count the ledgers within half a slice (the machine is too busy)".into());
            }
        }
    };
    let mut per_slice = vec![Vec::new(); twins.len()];
    let mut prev: Vec<u64> = a.iter().map(|s| s.meter_ns).collect();
    for _ in 0..window {
        to_mid_second().await;
        for (i, t) in twins.iter().enumerate() {
            let ns = schedstat_ns(t.pid, t.meter_tid);
            per_slice[i].push(ns - prev[i]);
            prev[i] = ns;
        }
    }
    let sec = unix_now();
    let b: Vec<Snap> = twins.iter().map(snap).collect();
    let window_secs = t0.elapsed().as_secs_f64();
    let m1 = machine_jiffies();
    let mut after = Vec::new();
    for (t, c) in twins.iter().zip(clients.iter_mut()) {
        after.push(count(t, c, use_sqlite).await?);
    }
    let end_crossed = unix_now() != sec;
    let load_end = loadavg();

    let profile = if perf_secs > 0 && have("perf") {
        eprintln!("ledger bench: profiling the 1 s agent's meter thread for {perf_secs} s");
        Some(profile_thread(&twins[0], perf_secs).await)
    } else {
        None
    };

    let results = twins
        .iter()
        .enumerate()
        .map(|(i, t)| TwinResult {
            start_secs: t.start_secs,
            a: a[i],
            b: b[i],
            per_slice: per_slice[i].clone(),
            records: after[i].records - before[i].records,
            logical_growth: after[i]
                .logical_bytes
                .zip(before[i].logical_bytes)
                .map(|(x, y)| x.saturating_sub(y)),
            logical_end: after[i].logical_bytes,
        })
        .collect();
    Ok(Measured {
        twins: results,
        window_secs,
        machine_busy_cores: (m1.0 - m0.0) as f64 / USER_HZ / window_secs,
        load_start,
        load_end,
        catch_up_secs,
        counted_with,
        end_crossed,
        profile,
        cgroup_version: host.cgroup_version,
        cpus: host.cpus,
    })
}

async fn count(t: &Twin, client: &mut AgentClient<Channel>, use_sqlite: bool) -> Result<LedgerSize, String> {
    if use_sqlite && let Some(s) = ledger_size(&t.ledger()) {
        return Ok(s);
    }
    let h = host_info(client).await?;
    Ok(LedgerSize {
        records: h.usage_last_seq,
        logical_bytes: None,
    })
}

/// `perf record` of one thread (with DWARF call graphs), then its top
/// symbols by self time and by time including callees, and its DSOs.
async fn profile_thread(t: &Twin, secs: u64) -> String {
    let data = t.agent.dir.path().join("meter.perf.data");
    let rec = tokio::process::Command::new("perf")
        .args([
            "record",
            "-q",
            "-e",
            "cpu-clock",
            "-F",
            "1999",
            "--call-graph",
            "dwarf,8192",
            "-t",
        ])
        .arg(t.meter_tid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg(secs.to_string())
        .stdin(Stdio::null())
        .output()
        .await;
    match rec {
        Ok(o) if o.status.success() => {}
        Ok(o) => return format!("perf record failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => return format!("perf record: {e}"),
    }
    let report = |args: &[&str], lines: usize| {
        let out = Command::new("perf")
            .args(["report", "--stdio", "-q", "-g", "none", "--percent-limit", "1"])
            .args(args)
            .arg("-i")
            .arg(&data)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .take(lines)
                .map(|l| format!("    {}\n", l.trim_end()))
                .collect::<String>(),
            Err(e) => format!("    perf report: {e}\n"),
        }
    };
    format!(
        "  by shared object (self):\n{}\
         \x20 top symbols, self:\n{}\
         \x20 top symbols, with callees (children):\n{}",
        report(&["--no-children", "--sort", "dso"], 8),
        report(&["--no-children", "--sort", "dso,sym"], 25),
        report(&["--children", "--sort", "sym"], 40),
    )
}

// ---------------------------------------------------------------- report ---

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

fn report(m: &Measured, n: usize, window: u64, concurrency: usize, load_before: &str, overcommit: &str) -> String {
    let w = m.window_secs;
    let (f, s) = (&m.twins[0], &m.twins[1]);
    let meter_ms = |t: &TwinResult| (t.b.meter_ns - t.a.meter_ns) as f64 / 1e6 / w;
    let meter_tick_ms = |t: &TwinResult| (t.b.meter_ticks - t.a.meter_ticks) as f64 * 1000.0 / USER_HZ / w;
    let agent_ms = |t: &TwinResult| (t.b.agent_ticks - t.a.agent_ticks) as f64 * 1000.0 / USER_HZ / w;
    let slices = |t: &TwinResult| {
        let mut v = t.per_slice.clone();
        v.sort_unstable();
        (
            percentile(&v, 50.0) as f64 / 1e6,
            percentile(&v, 90.0) as f64 / 1e6,
            *v.last().unwrap_or(&0) as f64 / 1e6,
        )
    };
    let per_s = |t: &TwinResult, x: fn(&Io) -> u64| (x(&t.b.io) - x(&t.a.io)) as f64 / w;
    let files = |x: &Snap| x.db_bytes + x.wal_bytes;
    let file_growth = |t: &TwinResult| files(&t.b) as f64 - files(&t.a) as f64;

    let mut out = String::new();
    out.push_str(&format!(
        "\nledger benchmark: {n} idle worker dynos (`{COMMAND}`) per agent, two agents side by side\n\
         \x20 (usage_slice 1s vs 1h, otherwise the same configuration, measured over the same window)\n\
         host: {} cpus, cgroups {}, vm.overcommit_memory={overcommit} (unchanged)\n\
         load average: {load_before} before the starts, {} at the window's start, {} at its end;\n\
         \x20 the whole machine was busy {:.2} of {} cores during the window (other builds included)\n\
         starts ({concurrency} StartDyno calls at a time): {n} dynos up in {:.1} s (1s agent), {:.1} s (1h agent);\n\
         \x20 the 1s ledger was at {n} records per slice {:.1} s after that\n\
         window: {w:.2} s ({window} slices), mid-slice to mid-slice; records counted with {}\n",
        m.cpus,
        if m.cgroup_version.is_empty() {
            "none"
        } else {
            &m.cgroup_version
        },
        m.load_start,
        m.load_end,
        m.machine_busy_cores,
        m.cpus,
        f.start_secs,
        s.start_secs,
        m.catch_up_secs,
        m.counted_with,
    ));

    let row = |label: &str, x: f64, y: f64, prec: usize| {
        let ratio = if y > 0.0 {
            format!("{:.1}x", x / y)
        } else {
            "-".to_string()
        };
        format!(
            "  {label:<46} {x:>12.prec$} {y:>12.prec$} {:>12.prec$} {ratio:>8}\n",
            x - y
        )
    };
    out.push_str(&format!(
        "\n  {:<46} {:>12} {:>12} {:>12} {:>8}\n",
        "per second of wall time", "1s slice", "1h slice", "difference", "ratio"
    ));
    out.push_str(&row("meter thread CPU, ms/s (schedstat)", meter_ms(f), meter_ms(s), 3));
    out.push_str(&row(
        "meter thread CPU, ms/s (stat utime+stime)",
        meter_tick_ms(f),
        meter_tick_ms(s),
        2,
    ));
    out.push_str(&row(
        "agent process CPU, ms/s (stat utime+stime)",
        agent_ms(f),
        agent_ms(s),
        2,
    ));
    let (fp50, fp90, fmax) = slices(f);
    let (sp50, sp90, smax) = slices(s);
    out.push_str(&row("meter CPU per slice, p50 ms", fp50, sp50, 3));
    out.push_str(&row("meter CPU per slice, p90 ms", fp90, sp90, 3));
    out.push_str(&row("meter CPU per slice, max ms", fmax, smax, 3));
    out.push_str(&row(
        "meter read syscalls /s",
        per_s(f, |i| i.syscr),
        per_s(s, |i| i.syscr),
        0,
    ));
    out.push_str(&row(
        "meter write syscalls /s",
        per_s(f, |i| i.syscw),
        per_s(s, |i| i.syscw),
        0,
    ));
    out.push_str(&row(
        "meter bytes written (write calls), KiB/s",
        per_s(f, |i| i.wchar) / 1024.0,
        per_s(s, |i| i.wchar) / 1024.0,
        1,
    ));
    out.push_str(&row(
        "meter bytes to storage (write_bytes), KiB/s",
        per_s(f, |i| i.write_bytes) / 1024.0,
        per_s(s, |i| i.write_bytes) / 1024.0,
        1,
    ));
    out.push_str(&row(
        "agent log written (debug level), KiB/s",
        (f.b.log_bytes - f.a.log_bytes) as f64 / 1024.0 / w,
        (s.b.log_bytes - s.a.log_bytes) as f64 / 1024.0 / w,
        1,
    ));
    out.push_str(&row(
        "records written /s",
        f.records as f64 / w,
        s.records as f64 / w,
        1,
    ));
    if m.end_crossed {
        out.push_str(
            "  NOTE: a slice boundary passed before the ledgers were counted at the end: one slice too many\n",
        );
    }

    out.push_str(&format!("\n  {:<46} {:>12} {:>12}\n", "ledger", "1s slice", "1h slice"));
    let pair = |label: &str, x: String, y: String| format!("  {label:<46} {x:>12} {y:>12}\n");
    out.push_str(&pair(
        "records in the window",
        f.records.to_string(),
        s.records.to_string(),
    ));
    out.push_str(&pair(
        "expected (dynos x slices)",
        (n as u64 * window).to_string(),
        "0".to_string(),
    ));
    for (label, pick) in [
        (
            "ledger.db bytes, start -> end",
            (|x: &Snap| x.db_bytes) as fn(&Snap) -> u64,
        ),
        ("ledger.db-wal bytes, start -> end", |x: &Snap| x.wal_bytes),
    ] {
        out.push_str(&pair(
            label,
            format!("{:.1}->{:.1}M", mib(pick(&f.a) as f64), mib(pick(&f.b) as f64)),
            format!("{:.1}->{:.1}M", mib(pick(&s.a) as f64), mib(pick(&s.b) as f64)),
        ));
    }
    let opt_mib = |v: Option<u64>| v.map_or("-".to_string(), |b| format!("{:.2} MiB", mib(b as f64)));
    out.push_str(&pair(
        "logical size at the end (pages x page size)",
        opt_mib(f.logical_end),
        opt_mib(s.logical_end),
    ));
    out.push_str(&pair(
        "growth in the window, files (db + wal)",
        format!("{:.2} MiB", mib(file_growth(f))),
        format!("{:.2} MiB", mib(file_growth(s))),
    ));
    out.push_str(&pair(
        "growth in the window, logical",
        opt_mib(f.logical_growth),
        opt_mib(s.logical_growth),
    ));
    let per_hour = |x: f64| x / w * 3600.0;
    out.push_str(&pair(
        "records per hour (extrapolated)",
        format!("{:.0}", per_hour(f.records as f64)),
        format!("{}", n),
    ));
    let growth = f.logical_growth.map(|g| g as f64).unwrap_or_else(|| file_growth(f));
    let growth_kind = if f.logical_growth.is_some() { "logical" } else { "files" };
    out.push_str(&pair(
        &format!("growth per hour ({growth_kind}, extrapolated)"),
        format!("{:.0} MiB", mib(per_hour(growth))),
        "-".to_string(),
    ));
    let per_record = |g: f64| {
        if f.records > 0 {
            format!("{:.0} B", g / f.records as f64)
        } else {
            "-".to_string()
        }
    };
    out.push_str(&pair("bytes per record (logical)", per_record(growth), "-".to_string()));
    out.push_str(&pair(
        "bytes per record (files, WAL-step noise)",
        per_record(file_growth(f)),
        "-".to_string(),
    ));
    out.push_str(
        "  (the WAL is checkpointed into ledger.db every 1000 pages and then reused from its start: the\n\
         \x20  files grow in steps; the logical size counts the pages still in the WAL)\n",
    );

    let cost = meter_ms(f);
    let extra = meter_ms(f) - meter_ms(s);
    let per_record_us = if f.records > 0 {
        (f.b.meter_ns - f.a.meter_ns) as f64 / 1e3 / f.records as f64
    } else {
        0.0
    };
    out.push_str(&format!(
        "\n  meter CPU per record written: {per_record_us:.2} us (1s agent, everything the thread did / records)\n\
         \x20 goal: meter < {GOAL_MS_PER_SEC} ms of CPU per second at 1000 dynos, 1 s slice\n\
         \x20   1s agent's meter thread: {cost:.3} ms/s ({extra:.3} ms/s over the 1h agent's) at {n} dynos -> {}\n",
        if n != 1000 {
            format!(
                "{} at {n} dynos (the goal is stated for 1000; linear: {:.2} ms/s)",
                if cost < GOAL_MS_PER_SEC { "under" } else { "over" },
                cost * 1000.0 / n as f64
            )
        } else if cost < GOAL_MS_PER_SEC {
            "MET".to_string()
        } else {
            "NOT MET".to_string()
        }
    ));
    if let Some(p) = &m.profile {
        out.push_str("\nwhere the 1s agent's meter thread spends its CPU (perf, cpu-clock, after the window):\n");
        out.push_str(p);
    }
    out
}
