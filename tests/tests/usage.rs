//! Usage metering end to end: the ledger's records tile every run's life
//! (from its exec record to its exit record), one record per slice, across
//! `kill -9`s of the agent at any moment; runs that end while the agent is
//! down are billed to their real exit; slices that pass while it is down are
//! written on recovery; billing collects them at least once through
//! `Usage.Collect`/`Ack`, and `dynoctl usage` shows them.
//!
//! The ledger is read with the `sqlite3` command-line tool (the `usage`
//! table's `run_id` is not part of the API), the runs' lives from the exec
//! and exit records the shims write. The agent deletes a dyno's run
//! directories older than its previous run, so a watcher thread snapshots
//! every run directory while the tests run.
//!
//! `USAGE_CHAOS_SEED=N` replays the chaos tests' random choices.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dyno_agent::runs::{ExecRecord, ExitRecord, read_json};
use dyno_proto::v1 as pb;
use dyno_tests::*;
use nix::sys::signal::Signal;
use serde_json::Value;
use tonic::transport::Channel;

// ---------------------------------------------------------------------------
// Reading the ledger and the runs
// ---------------------------------------------------------------------------

/// One row of the ledger's `usage` table.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Rec {
    seq: u64,
    id: String,
    run_id: String,
    app: String,
    dyno: String,
    dyno_id: String,
    ptype: String,
    size: String,
    release: String,
    start: i64,
    end: i64,
    seconds: i64,
    cpu_ms: i64,
    mem_peak_bytes: i64,
}

/// One row of the ledger's `meters` table.
#[derive(Clone, Debug)]
struct MeterRow {
    run_id: String,
    start: i64,
    billed_until: i64,
    closed_at: Option<i64>,
}

/// Runs a query on the agent's ledger with the sqlite3 CLI (`-json` rows).
fn sql(a: &TestAgent, query: &str) -> Vec<Value> {
    dyno_tests::ledger::sql(&a.state, query)
}

fn int(v: &Value, k: &str) -> i64 {
    v[k].as_i64().unwrap_or_else(|| panic!("no integer {k} in {v}"))
}

fn text(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no string {k} in {v}"))
        .to_string()
}

/// Every record in the ledger, in `seq` order.
fn ledger(a: &TestAgent) -> Vec<Rec> {
    sql(
        a,
        "SELECT seq, id, run_id, app, dyno, dyno_id, type, size, release, start, end, seconds, cpu_ms, \
         mem_peak_bytes FROM usage ORDER BY seq",
    )
    .iter()
    .map(|v| Rec {
        seq: int(v, "seq") as u64,
        id: text(v, "id"),
        run_id: text(v, "run_id"),
        app: text(v, "app"),
        dyno: text(v, "dyno"),
        dyno_id: text(v, "dyno_id"),
        ptype: text(v, "type"),
        size: text(v, "size"),
        release: text(v, "release"),
        start: int(v, "start"),
        end: int(v, "end"),
        seconds: int(v, "seconds"),
        cpu_ms: int(v, "cpu_ms"),
        mem_peak_bytes: int(v, "mem_peak_bytes"),
    })
    .collect()
}

/// The records of one run, in `seq` order.
fn run_records(a: &TestAgent, run_id: &str) -> Vec<Rec> {
    ledger(a).into_iter().filter(|r| r.run_id == run_id).collect()
}

fn meters(a: &TestAgent) -> Vec<MeterRow> {
    sql(
        a,
        "SELECT run_id, start, billed_until, closed_at FROM meters ORDER BY run_id",
    )
    .iter()
    .map(|v| MeterRow {
        run_id: text(v, "run_id"),
        start: int(v, "start"),
        billed_until: int(v, "billed_until"),
        closed_at: v["closed_at"].as_i64(),
    })
    .collect()
}

fn open_meters(a: &TestAgent) -> i64 {
    int(
        &sql(a, "SELECT count(*) AS n FROM meters WHERE closed_at IS NULL")[0],
        "n",
    )
}

fn meter_of(a: &TestAgent, run_id: &str) -> Option<MeterRow> {
    meters(a).into_iter().find(|m| m.run_id == run_id)
}

/// The start of the slice holding `t`.
fn slice_start(t: i64, slice: i64) -> i64 {
    t.div_euclid(slice) * slice
}

fn secs_f(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// What the shim recorded about a run.
#[derive(Clone, Debug, Default)]
struct Life {
    exec: Option<ExecRecord>,
    exit: Option<ExitRecord>,
}

fn run_dir(a: &TestAgent, run_id: &str) -> PathBuf {
    a.state.join("runs").join(run_id)
}

fn read_exec(a: &TestAgent, run_id: &str) -> Option<ExecRecord> {
    read_json(&run_dir(a, run_id).join("exec.json")).ok().flatten()
}

fn read_exit(a: &TestAgent, run_id: &str) -> Option<ExitRecord> {
    read_json(&run_dir(a, run_id).join("exit.json")).ok().flatten()
}

type Lives = Arc<Mutex<BTreeMap<String, Life>>>;

/// Adds what the run directories hold now to `lives` (records are
/// immutable: the first one seen is kept, a different one later is noted).
fn snapshot(runs: &Path, lives: &Mutex<BTreeMap<String, Life>>, changed: &Mutex<Vec<String>>) {
    let Ok(dir) = std::fs::read_dir(runs) else { return };
    for e in dir.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        let exec = read_json::<ExecRecord>(&p.join("exec.json")).ok().flatten();
        let exit = read_json::<ExitRecord>(&p.join("exit.json")).ok().flatten();
        let mut lives = lives.lock().unwrap();
        let life = lives.entry(id.clone()).or_default();
        match (&life.exec, exec) {
            (None, new) => life.exec = new,
            (Some(old), Some(new)) if *old != new => changed
                .lock()
                .unwrap()
                .push(format!("{id}: exec record changed {old:?} -> {new:?}")),
            _ => {}
        }
        match (&life.exit, exit) {
            (None, new) => life.exit = new,
            (Some(old), Some(new)) if *old != new => changed
                .lock()
                .unwrap()
                .push(format!("{id}: exit record changed {old:?} -> {new:?}")),
            _ => {}
        }
    }
}

/// Snapshots the run directories every 40 ms until dropped.
struct Watcher {
    runs: PathBuf,
    lives: Lives,
    changed: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn new(a: &TestAgent) -> Watcher {
        let runs = a.state.join("runs");
        let lives: Lives = Arc::default();
        let changed: Arc<Mutex<Vec<String>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (runs, lives, changed, stop) = (runs.clone(), lives.clone(), changed.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    snapshot(&runs, &lives, &changed);
                    std::thread::sleep(Duration::from_millis(40));
                }
            })
        };
        Watcher {
            runs,
            lives,
            changed,
            stop,
            thread: Some(thread),
        }
    }

    /// Snapshots now (call after every step).
    fn now(&self) {
        snapshot(&self.runs, &self.lives, &self.changed);
    }

    /// Stops the thread; returns every run seen and the records that changed.
    fn finish(mut self) -> (BTreeMap<String, Life>, Vec<String>) {
        self.now();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("watcher");
        }
        let lives = self.lives.lock().unwrap().clone();
        let changed = self.changed.lock().unwrap().clone();
        (lives, changed)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

// ---------------------------------------------------------------------------
// The invariant
// ---------------------------------------------------------------------------

/// Checks the ledger against the runs' lives; returns every violation.
///
/// - `seq` is 1..=N without holes, `id` is `<host-id>:<seq>` and unique;
/// - every record is `[start, end)` with `seconds = end - start > 0`
///   inside one slice;
/// - a run's records, sorted by start, tile `[floor(exec), floor(exit))`
///   (first start and last end within 1 s of those), in `seq` order, with the
///   same dyno fields, and add up to its running time within 1 s;
/// - every run that ran for a whole second has records, every run in the
///   ledger has exec and exit records, and every meter is closed where its
///   records end.
fn check_ledger(
    host: &str,
    slice: i64,
    recs: &[Rec],
    lives: &BTreeMap<String, Life>,
    meters: &[MeterRow],
) -> Vec<String> {
    let mut bad = Vec::new();
    let mut ids = HashSet::new();
    for (i, r) in recs.iter().enumerate() {
        if r.seq != i as u64 + 1 {
            bad.push(format!(
                "seq hole: record #{} has seq {} (expected {})",
                i + 1,
                r.seq,
                i + 1
            ));
        }
        if r.id != format!("{host}:{}", r.seq) {
            bad.push(format!("seq {}: id {:?} is not {host}:{}", r.seq, r.id, r.seq));
        }
        if !ids.insert(r.id.clone()) {
            bad.push(format!("seq {}: id {:?} repeats", r.seq, r.id));
        }
        if r.end <= r.start || r.seconds != r.end - r.start {
            bad.push(format!(
                "seq {} ({}): [{}, {}) with seconds {}",
                r.seq, r.run_id, r.start, r.end, r.seconds
            ));
        }
        if slice_start(r.start, slice) != slice_start(r.end - 1, slice) {
            bad.push(format!(
                "seq {} ({}): [{}, {}) spans a {slice} s slice boundary",
                r.seq, r.run_id, r.start, r.end
            ));
        }
    }

    let mut by_run: BTreeMap<&str, Vec<&Rec>> = BTreeMap::new();
    for r in recs {
        by_run.entry(&r.run_id).or_default().push(r);
    }
    for (run, rs) in &by_run {
        let mut sorted = rs.clone();
        sorted.sort_by_key(|r| r.start);
        if sorted.iter().map(|r| r.seq).collect::<Vec<_>>() != rs.iter().map(|r| r.seq).collect::<Vec<_>>() {
            bad.push(format!("{run}: records not written in time order"));
        }
        for w in sorted.windows(2) {
            if w[1].start != w[0].end {
                bad.push(format!(
                    "{run}: {}: [{}, {}) (seq {}) then [{}, {}) (seq {})",
                    if w[1].start > w[0].end { "gap" } else { "overlap" },
                    w[0].start,
                    w[0].end,
                    w[0].seq,
                    w[1].start,
                    w[1].end,
                    w[1].seq,
                ));
            }
        }
        let first = sorted[0];
        for r in &sorted {
            if (&r.app, &r.dyno, &r.dyno_id, &r.ptype, &r.size, &r.release)
                != (
                    &first.app,
                    &first.dyno,
                    &first.dyno_id,
                    &first.ptype,
                    &first.size,
                    &first.release,
                )
            {
                bad.push(format!(
                    "{run}: seq {} belongs to another dyno than seq {}",
                    r.seq, first.seq
                ));
            }
        }
        let last = sorted[sorted.len() - 1];
        let billed: i64 = sorted.iter().map(|r| r.seconds).sum();
        let life = lives.get(*run).cloned().unwrap_or_default();
        let Some(exec) = life.exec else {
            bad.push(format!("{run}: billed but no exec record was ever seen"));
            continue;
        };
        let started = exec.started_at.timestamp();
        if (first.start - started).abs() > 1 {
            bad.push(format!(
                "{run}: first record starts at {}, exec'd at {} ({})",
                first.start, started, exec.started_at
            ));
        }
        let Some(exit) = life.exit else {
            bad.push(format!("{run}: billed but no exit record was ever seen"));
            continue;
        };
        let exited = exit.exited_at.timestamp();
        if (last.end - exited).abs() > 1 {
            bad.push(format!(
                "{run}: last record ends at {} (seq {}), {} s after its exit at {} ({})",
                last.end,
                last.seq,
                last.end - exited,
                exited,
                exit.exited_at
            ));
        }
        let ran = secs_f(exit.exited_at) - secs_f(exec.started_at);
        if (billed as f64 - ran).abs() > 1.0 {
            bad.push(format!("{run}: billed {billed} s, ran {ran:.3} s"));
        }
    }

    for (run, life) in lives {
        if let (Some(exec), Some(exit)) = (&life.exec, &life.exit)
            && exit.exited_at.timestamp() - exec.started_at.timestamp() >= 2
            && !by_run.contains_key(run.as_str())
        {
            bad.push(format!(
                "{run}: ran from {} to {} and has no record",
                exec.started_at, exit.exited_at
            ));
        }
        if life.exec.is_some() && life.exit.is_none() {
            bad.push(format!("{run}: exec'd and never exited (everything was stopped)"));
        }
    }

    for m in meters {
        let Some(closed) = m.closed_at else {
            bad.push(format!("{}: meter still open", m.run_id));
            continue;
        };
        if closed != m.billed_until {
            bad.push(format!(
                "{}: meter closed at {closed}, billed until {}",
                m.run_id, m.billed_until
            ));
        }
        if let Some(rs) = by_run.get(m.run_id.as_str()) {
            let end = rs.iter().map(|r| r.end).max().unwrap_or_default();
            let start = rs.iter().map(|r| r.start).min().unwrap_or_default();
            if end != m.billed_until || start != m.start {
                bad.push(format!(
                    "{}: meter [{}, {}) but records [{start}, {end})",
                    m.run_id, m.start, m.billed_until
                ));
            }
        }
        match lives.get(&m.run_id).and_then(|l| l.exec) {
            Some(exec) if exec.started_at.timestamp() != m.start => bad.push(format!(
                "{}: meter starts at {}, exec'd at {}",
                m.run_id, m.start, exec.started_at
            )),
            _ => {}
        }
    }
    for run in by_run.keys() {
        if !meters.iter().any(|m| m.run_id == *run) {
            bad.push(format!("{run}: records but no meter"));
        }
    }
    bad
}

fn assert_clean(what: &str, bad: &[String], context: &str) {
    assert!(
        bad.is_empty(),
        "{what}: {} violations of the usage invariant:\n  {}\n{context}",
        bad.len(),
        bad.iter().take(60).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Driving the agent
// ---------------------------------------------------------------------------

/// xorshift64*: small, seeded, replayable.
struct Rng(u64);

impl Rng {
    fn new(name: &str) -> Rng {
        let seed = std::env::var("USAGE_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{name}: USAGE_CHAOS_SEED={seed}");
        Rng(seed | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn ms(&mut self, max: u64) -> Duration {
        Duration::from_millis(self.below(max + 1))
    }
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }
}

fn start_sized(a: &TestAgent, app: &str, name: &str, size: &str, slug: &Path, command: &str) {
    a.ctl_ok(&start_args(
        app,
        name,
        &show(slug),
        &["--size", size, "--release", "v3", "--command", command],
    ));
}

/// SIGKILLs the command of `run_id` if it is still that run's; returns
/// whether it did, after its exit record is written.
fn kill_command(a: &TestAgent, run_id: &str) -> bool {
    let Some(exec) = read_exec(a, run_id) else { return false };
    if read_exit(a, run_id).is_some() || dyno_agent::os::start_ticks(exec.pid) != Some(exec.start_ticks) {
        return false;
    }
    if nix::sys::signal::kill(nix::unistd::Pid::from_raw(exec.pid as i32), Signal::SIGKILL).is_err() {
        return false;
    }
    wait_for("the killed command's exit record", || read_exit(a, run_id).map(drop));
    true
}

/// The current run of a dyno (from `ps`).
fn run_of(a: &TestAgent, app: &str, name: &str) -> Option<String> {
    a.dyno(app, name)?["run_id"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

/// Sleeps until `before` ahead of the next slice boundary (wall clock).
fn sleep_until_boundary(slice: i64, before: Duration) {
    let now = Utc::now();
    let next = slice_start(now.timestamp(), slice) + slice;
    let left = secs_f(DateTime::from_timestamp(next, 0).unwrap()) - secs_f(now) - before.as_secs_f64();
    if left > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(left));
    }
}

/// Stops every dyno and waits until all are down and every meter is closed
/// with nothing waiting for the ledger.
fn stop_all_and_settle(a: &TestAgent) {
    a.ctl_ok(&["stop", "--all"]);
    let settled = poll(DEADLINE * 2, Duration::from_millis(100), || {
        let ps = a.ps();
        let info = a.info();
        let down = ps.iter().all(|d| d["state"] == "down");
        let settled = info["usage"]["open_runs"] == 0 && info["usage"]["pending_writes"] == 0;
        if down && settled && open_meters(a) == 0 {
            Ok(())
        } else {
            Err((ps, info))
        }
    });
    if let Err((ps, info)) = settled {
        panic!(
            "not settled after stop --all: {:#?}\ninfo: {info}\n--- agent log ---\n{}",
            ps.iter()
                .map(|d| format!("{}/{} {}", d["app"], d["name"], d["state"]))
                .collect::<Vec<_>>(),
            a.agent_log()
        );
    }
}

/// One `Usage.Collect` call, which must succeed.
async fn collect(
    c: &mut pb::usage_client::UsageClient<Channel>,
    after_seq: u64,
    limit: u32,
    include_collected: bool,
) -> pb::CollectResponse {
    c.collect(pb::CollectRequest {
        after_seq,
        limit,
        include_collected,
    })
    .await
    .expect("collect")
    .into_inner()
}

/// Every record through `Usage.Collect` (paged).
async fn collect_all(c: &mut pb::usage_client::UsageClient<Channel>, include_collected: bool) -> Vec<pb::UsageRecord> {
    let mut out: Vec<pb::UsageRecord> = Vec::new();
    loop {
        let after = out.last().map_or(0, |r| r.seq);
        let r = collect(c, after, 500, include_collected).await;
        let more = r.more;
        out.extend(r.records);
        if !more {
            return out;
        }
    }
}

/// The API's view of a record equals the ledger's row.
fn same_record(p: &pb::UsageRecord, r: &Rec) -> bool {
    p.seq == r.seq
        && p.id == r.id
        && p.app == r.app
        && p.dyno == r.dyno
        && p.dyno_id == r.dyno_id
        && p.r#type == r.ptype
        && p.size == r.size
        && p.release == r.release
        && p.start.map(|t| t.seconds) == Some(r.start)
        && p.end.map(|t| t.seconds) == Some(r.end)
        && p.seconds as i64 == r.seconds
        && p.cpu_ms as i64 == r.cpu_ms
        && p.mem_peak_bytes as i64 == r.mem_peak_bytes
        && p.run_id == r.run_id
}

fn downtimes_text(down: &[(DateTime<Utc>, DateTime<Utc>)]) -> String {
    let mut s = String::from("agent down (kill -9 .. restart):\n");
    for (k, r) in down {
        s.push_str(&format!(
            "  {} .. {}\n",
            k.format("%H:%M:%S%.3f"),
            r.format("%H:%M:%S%.3f")
        ));
    }
    s
}

// ---------------------------------------------------------------------------
// 1. Chaos
// ---------------------------------------------------------------------------

/// Dynos that run, crash and restart, get stopped and started again and
/// restarted, while the agent is `kill -9`ed `kills` times at random moments
/// and stays down for random times (across slice boundaries, and long
/// enough for dynos to exit meanwhile). Then everything is stopped and the
/// ledger must tile every run's life.
fn chaos(name: &str, slice: i64, kills: usize, many: bool) {
    let t0 = Instant::now();
    let mut rng = Rng::new(name);
    let mut a = TestAgent::start(&format!(
        "usage_slice = \"{slice}s\"\nrestart_cooloffs = [\"1s\", \"2s\"]\nstop_grace = \"1s\"\n"
    ));
    let host = format!("e2e-{}", a.n);
    let watcher = Watcher::new(&a);
    let slug = a.slug("s", &[("index.html", "ok\n")]);

    // (app, name, size, command)
    let mut dynos = vec![
        ("shop", "worker.1", "standard-1x", "exec sleep 600"),
        ("shop", "crash.1", "standard-1x", "sleep 1.5; exit 3"),
        ("blog", "clock.1", "standard-2x", "exec sleep 600"),
    ];
    if many {
        dynos.extend([
            ("shop", "worker.2", "standard-2x", "exec sleep 600"),
            ("blog", "crash.2", "standard-1x", "sleep 0.6; exit 0"),
            ("blog", "web.1", "standard-1x", "exec busybox httpd -f -p $PORT -h ."),
        ]);
    }
    for (app, dyno, size, cmd) in &dynos {
        start_sized(&a, app, dyno, size, &slug, cmd);
    }
    for (app, dyno, _, cmd) in &dynos {
        if cmd.starts_with("exec") {
            a.wait_state(app, dyno, "up");
        }
    }
    watcher.now();

    let mut downtimes: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
    let mut killed_while_down = 0;
    let mut commands: BTreeMap<&str, u32> = BTreeMap::new();
    for i in 0..kills {
        // Whether clock.1 is made to exit while the agent is down this time.
        let deliberate = i % 7 == 3 || rng.below(3) == 0;
        if deliberate {
            a.wait_state("blog", "clock.1", "up");
        }
        // Something happens while the agent is up (each kind now and then
        // for sure, otherwise at random).
        let action = match i % 6 {
            1 => 1,
            4 => 2,
            _ => rng.below(6),
        };
        let mut just_commanded = true;
        match action {
            1 if many => {
                let (app, dyno, size, cmd) = dynos[3];
                if a.dyno(app, dyno).is_some_and(|d| d["state"] == "down") {
                    start_sized(&a, app, dyno, size, &slug, cmd);
                    *commands.entry("start again").or_default() += 1;
                } else {
                    a.ctl_ok(&["stop", "--app", app, dyno]);
                    *commands.entry("stop").or_default() += 1;
                }
            }
            2 if many => {
                a.ctl_ok(&["restart", "--app", "blog", "web.1"]);
                *commands.entry("restart").or_default() += 1;
            }
            3 if !deliberate => {
                if let Some(run) = run_of(&a, "blog", "clock.1")
                    && kill_command(&a, &run)
                {
                    *commands.entry("crash").or_default() += 1;
                }
            }
            4 => {
                a.ctl_ok(&["restart", "--app", "shop", "crash"]);
                *commands.entry("restart").or_default() += 1;
            }
            _ => just_commanded = false,
        }
        watcher.now();
        if just_commanded && rng.below(2) == 0 {
            // Die while the command is being carried out.
            std::thread::sleep(rng.ms(150));
        } else if rng.below(4) == 0 {
            // Die just before a boundary, come back after it.
            sleep_until_boundary(slice, Duration::from_millis(60));
        } else {
            std::thread::sleep(rng.ms(1200));
        }

        let clock_run = run_of(&a, "blog", "clock.1");
        let killed = Utc::now();
        a.kill9();
        watcher.now();
        let down = rng.pick(&[0u64, 150, 400, 900, 1300, 2100, 3000]);
        let start = Instant::now();
        if deliberate {
            std::thread::sleep(Duration::from_millis(down / 3));
            // A dyno ends while the agent is away.
            if let Some(run) = &clock_run
                && kill_command(&a, run)
            {
                killed_while_down += 1;
            }
        }
        if let Some(left) = Duration::from_millis(down).checked_sub(start.elapsed()) {
            std::thread::sleep(left);
        }
        watcher.now();
        let restarted = Utc::now();
        a.spawn();
        downtimes.push((killed, restarted));
        watcher.now();
        std::thread::sleep(rng.ms(700));
    }

    stop_all_and_settle(&a);
    let (lives, changed) = watcher.finish();
    assert!(changed.is_empty(), "exec/exit records changed: {changed:#?}");
    let recs = ledger(&a);
    let meters = meters(&a);

    // The API hands out exactly what the ledger holds.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let api = rt.block_on(async { collect_all(&mut a.usage_client().await, true).await });
    assert_eq!(api.len(), recs.len(), "Collect(include_collected) returns every record");
    for (p, r) in api.iter().zip(&recs) {
        assert!(same_record(p, r), "API record {p:?} differs from the ledger's {r:?}");
    }

    // Runs that ended while the agent was down.
    let ended_while_down: Vec<&String> = lives
        .iter()
        .filter(|(_, l)| {
            l.exit
                .is_some_and(|x| downtimes.iter().any(|(k, r)| x.exited_at > *k && x.exited_at < *r))
        })
        .map(|(id, _)| id)
        .collect();
    let exec_runs = lives.values().filter(|l| l.exec.is_some()).count();
    let billed_runs = recs.iter().map(|r| &r.run_id).collect::<HashSet<_>>().len();
    println!(
        "{name}: slice {slice}s, {} kill -9, {exec_runs} runs exec'd ({billed_runs} billed), {} records, {} runs \
         ended while the agent was down ({killed_while_down} killed by the test), commands {commands:?}, {:.1?}",
        downtimes.len(),
        recs.len(),
        ended_while_down.len(),
        t0.elapsed()
    );

    // The chaos really happened.
    assert_eq!(downtimes.len(), kills);
    assert!(
        killed_while_down >= 1,
        "no dyno was made to exit while the agent was down"
    );
    assert!(ended_while_down.len() >= killed_while_down);
    assert!(exec_runs >= dynos.len() + kills / 3, "only {exec_runs} runs");
    assert!(billed_runs >= dynos.len(), "only {billed_runs} runs billed");
    if many {
        for c in ["stop", "start again", "restart"] {
            assert!(commands.contains_key(c), "no {c} during the chaos: {commands:?}");
        }
    }

    // Each violation says when its run ended relative to the agent's deaths.
    let bad: Vec<String> = check_ledger(&host, slice, &recs, &lives, &meters)
        .into_iter()
        .map(|b| {
            let exit = lives
                .iter()
                .find(|(id, _)| b.starts_with(&format!("{id}:")))
                .and_then(|(_, l)| l.exit);
            let Some(x) = exit else { return b };
            let at = x.exited_at;
            match downtimes
                .iter()
                .find(|(k, r)| at > *k - chrono::Duration::seconds(1) && at < *r)
            {
                Some((k, r)) if at > *k => format!(
                    "{b} [ended while the agent was down: {:.3} s after the kill -9, {:.3} s before the restart]",
                    secs_f(at) - secs_f(*k),
                    secs_f(*r) - secs_f(at)
                ),
                Some((k, _)) => format!(
                    "{b} [ended {:.3} s before a kill -9, settled by the next agent]",
                    secs_f(*k) - secs_f(at)
                ),
                None => b,
            }
        })
        .collect();
    let mut context = downtimes_text(&downtimes);
    context.push_str(&format!(
        "runs that ended while the agent was down: {ended_while_down:?}\n"
    ));
    let mut lines = Vec::new();
    for (id, l) in &lives {
        lines.push(format!(
            "  {id}: exec {:?} exit {:?}",
            l.exec.map(|e| e.started_at),
            l.exit.map(|x| x.exited_at)
        ));
    }
    context.push_str(&format!("runs:\n{}\n", lines.join("\n")));
    assert_clean(name, &bad, &context);
}

#[test]
fn chaos_kill_9_with_one_second_slices_every_run_is_tiled() {
    chaos("chaos-1s", 1, 22, true);
}

#[test]
fn chaos_kill_9_with_two_second_slices_every_run_is_tiled() {
    chaos("chaos-2s", 2, 8, false);
}

// ---------------------------------------------------------------------------
// 2. A run that ends while the agent is down
// ---------------------------------------------------------------------------

#[test]
fn a_run_that_exits_while_the_agent_is_down_is_billed_to_its_exit_record() {
    let mut a = TestAgent::start("usage_slice = \"1s\"");
    let host = format!("e2e-{}", a.n);
    let slug = a.slug("s", &[]);
    // Others keep running across the restart (the agent recovers them too).
    for (app, dyno) in [("shop", "worker.1"), ("blog", "worker.1"), ("shop", "clock.1")] {
        a.start_dyno(app, dyno, &slug, "exec sleep 600");
    }
    a.start_dyno("shop", "job.1", &slug, "exec sleep 600");
    a.start_dyno("blog", "job.1", &slug, "exec sleep 600");
    let jobs: Vec<(&str, String)> = ["shop", "blog"]
        .into_iter()
        .map(|app| {
            let d = a.wait_state(app, "job.1", "up");
            (app, d["run_id"].as_str().unwrap().to_string())
        })
        .collect();
    for (_, run) in &jobs {
        wait_for("the job billed for a second", || {
            (!run_records(&a, run).is_empty()).then_some(())
        });
    }

    a.kill9();
    let mut exits = Vec::new();
    for (_, run) in &jobs {
        assert!(kill_command(&a, run), "killing {run}");
        exits.push(read_exit(&a, run).expect("exit record"));
    }
    // Down long enough for several slices to pass after the exits.
    let last_exit = exits.iter().map(|e| e.exited_at).max().expect("exits");
    wait_for("3.5 s past the last exit", || {
        (Utc::now() - last_exit >= chrono::Duration::milliseconds(3500)).then_some(())
    });
    let restarted = Utc::now();
    a.spawn();
    for (app, _) in &jobs {
        a.wait_dyno(app, "job.1", "settled and restarted", |d| {
            d["restarts"] == 1 && d["state"] == "up"
        });
    }
    for (_, run) in &jobs {
        wait_for("the ended run's meter closed", || {
            meter_of(&a, run).and_then(|m| m.closed_at).map(drop)
        });
    }

    for ((_, run), exit) in jobs.iter().zip(&exits) {
        let exec = read_exec(&a, run).unwrap();
        let rs = run_records(&a, run);
        let spans: Vec<(i64, i64)> = rs.iter().map(|r| (r.start, r.end)).collect();
        let last_end = rs.last().unwrap().end;
        assert!(
            last_end <= exit.exited_at.timestamp() + 1,
            "run {run} exited at {} while the agent was down, restarted at {restarted}: billed to {} ({} s \
             after its exit)\nrecords: {spans:?}\nmeter: {:?}\n--- agent log ---\n{}",
            exit.exited_at,
            DateTime::from_timestamp(last_end, 0).unwrap(),
            last_end - exit.exited_at.timestamp(),
            meter_of(&a, run),
            a.agent_log()
        );
        let lives = BTreeMap::from([(
            run.clone(),
            Life {
                exec: Some(exec),
                exit: Some(*exit),
            },
        )]);
        let meters: Vec<MeterRow> = meter_of(&a, run).into_iter().collect();
        let bad = check_ledger(&host, 1, &rs, &lives, &meters)
            .into_iter()
            // Only this run's records: their seqs have holes.
            .filter(|b| !b.starts_with("seq hole"))
            .collect::<Vec<_>>();
        assert_clean(run, &bad, &format!("records: {spans:?}"));
    }

    // And the whole ledger still holds together once everything stops.
    stop_all_and_settle(&a);
    let lives: BTreeMap<String, Life> = std::fs::read_dir(a.state.join("runs"))
        .unwrap()
        .flatten()
        .map(|e| {
            let id = e.file_name().to_string_lossy().into_owned();
            let life = Life {
                exec: read_exec(&a, &id),
                exit: read_exit(&a, &id),
            };
            (id, life)
        })
        .collect();
    assert_clean(
        "after stopping",
        &check_ledger(&host, 1, &ledger(&a), &lives, &meters(&a)),
        "",
    );
}

// ---------------------------------------------------------------------------
// 3. Slices that pass while the agent is down
// ---------------------------------------------------------------------------

#[test]
fn slices_that_pass_while_the_agent_is_down_are_written_on_recovery() {
    const SLICE: i64 = 2;
    let mut a = TestAgent::start("usage_slice = \"2s\"");
    let host = format!("e2e-{}", a.n);
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    let d = a.wait_state("shop", "worker.1", "up");
    let run = d["run_id"].as_str().unwrap().to_string();
    let exec = read_exec(&a, &run).unwrap();
    wait_for("a first record", || (!run_records(&a, &run).is_empty()).then_some(()));

    // Die just after a boundary, stay down for more than two whole slices.
    let boundary = DateTime::from_timestamp(slice_start(Utc::now().timestamp(), SLICE) + SLICE, 0).unwrap();
    wait_for("200 ms past the next slice boundary", || {
        (Utc::now() - boundary >= chrono::Duration::milliseconds(200)).then_some(())
    });
    let killed = Utc::now();
    a.kill9();
    let before = run_records(&a, &run);
    nothing_happens_for(Duration::from_millis(5300));
    // Nothing is written while the agent is down.
    assert_eq!(
        run_records(&a, &run),
        before,
        "the ledger changed while the agent was down"
    );
    let restarted = Utc::now();
    a.spawn();
    assert_eq!(
        a.dyno("shop", "worker.1").unwrap()["run_id"],
        run.as_str(),
        "the run was re-adopted"
    );
    let upto = slice_start(restarted.timestamp(), SLICE);
    wait_for("the slices missed while down", || {
        meter_of(&a, &run).filter(|m| m.billed_until >= upto).map(drop)
    });

    let rs = run_records(&a, &run);
    let spans: Vec<(i64, i64)> = rs.iter().map(|r| (r.start, r.end)).collect();
    let context = format!("killed {killed}, restarted {restarted}, records {spans:?}");
    assert_eq!(rs[0].start, exec.started_at.timestamp(), "{context}");
    for w in rs.windows(2) {
        assert_eq!(w[1].start, w[0].end, "records tile: {context}");
    }
    // Every whole slice the agent missed has its own full record.
    let missed: Vec<i64> = (slice_start(killed.timestamp(), SLICE)..upto)
        .step_by(SLICE as usize)
        .filter(|b| *b >= rs[0].start)
        .collect();
    assert!(missed.len() >= 2, "the downtime spans slices: {context}");
    for b in &missed {
        assert!(
            rs.iter()
                .any(|r| r.start == *b && r.end == b + SLICE && r.seconds == SLICE),
            "no record [{b}, {}) for a slice that passed while the agent was down: {context}",
            b + SLICE
        );
    }
    // Before the restart nothing covered the time after the kill: the
    // missed slices were written by the new agent.
    assert!(
        before.iter().all(|r| r.end <= killed.timestamp()),
        "billed ahead of time before the kill: {context}"
    );

    // The run's whole life, once it ends.
    stop_all_and_settle(&a);
    let lives = BTreeMap::from([(
        run.clone(),
        Life {
            exec: Some(exec),
            exit: read_exit(&a, &run),
        },
    )]);
    assert_clean(
        "2s slices",
        &check_ledger(&host, SLICE, &ledger(&a), &lives, &meters(&a)),
        &context,
    );
}

// ---------------------------------------------------------------------------
// 4. Collect / Ack and dynoctl usage
// ---------------------------------------------------------------------------

fn is_invalid_argument(r: Result<tonic::Response<pb::AckResponse>, tonic::Status>, field: &str) {
    match r {
        Err(s) => {
            assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
            assert!(s.message().contains(field), "the message names {field}: {s:?}");
        }
        Ok(_) => panic!("expected INVALID_ARGUMENT"),
    }
}

#[test]
fn billing_collects_every_record_once_when_acked_and_again_when_not() {
    let mut a = TestAgent::start("usage_slice = \"1s\"");
    let slug = a.slug("s", &[]);
    start_sized(&a, "shop", "worker.1", "standard-1x", &slug, "exec sleep 600");
    start_sized(&a, "shop", "worker.2", "standard-2x", &slug, "exec sleep 600");
    start_sized(&a, "blog", "worker.1", "standard-2x", &slug, "exec sleep 600");
    for (app, dyno) in [("shop", "worker.1"), ("shop", "worker.2"), ("blog", "worker.1")] {
        a.wait_state(app, dyno, "up");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    // A backlog, so that the first Collects say more follow.
    wait_for("a backlog of records", || (ledger(&a).len() >= 8).then_some(()));

    // A collector that always asks from after_seq = 0 and relies on Ack:
    // every record reaches it exactly once; a batch it does not ack comes
    // back whole, with the same seqs and ids, also across a kill -9.
    let mut billed: BTreeMap<String, pb::UsageRecord> = BTreeMap::new();
    let mut acked_upto = 0;
    let mut unacked: Option<Vec<pb::UsageRecord>> = None;
    let mut saw_more = false;
    let (mut killed_unacked, mut killed_acked) = (false, false);
    let mut round = 0;
    while round < 14 || billed.len() < 12 || !killed_unacked || !killed_acked {
        assert!(round < 200, "the collector got only {} records", billed.len());
        round += 1;
        let batch = rt.block_on(async {
            let mut c = a.usage_client().await;
            collect(&mut c, 0, 3, false).await
        });
        saw_more |= batch.more;
        let records = batch.records;
        if let Some(previous) = unacked.take() {
            assert_eq!(
                records, previous,
                "a batch that was not acked comes back the same in the next Collect"
            );
        }
        if records.is_empty() {
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
        // Only what follows the last ack, from the first record not acked.
        assert_eq!(
            seqs,
            (acked_upto + 1..=acked_upto + seqs.len() as u64).collect::<Vec<_>>(),
            "Collect(after_seq = 0) after Ack({acked_upto})"
        );
        if round % 4 == 2 {
            // Not acked (the collector "crashed" before storing them).
            unacked = Some(records);
            if round >= 6 && !killed_unacked {
                // The batch comes back from the next agent too.
                killed_unacked = true;
                a.kill9();
                a.spawn();
            }
            continue;
        }
        for r in &records {
            assert!(
                billed.insert(r.id.clone(), r.clone()).is_none(),
                "record {} handed out again after it was acked",
                r.id
            );
        }
        let last = *seqs.last().unwrap();
        rt.block_on(async {
            a.usage_client()
                .await
                .ack(pb::AckRequest { seq: last })
                .await
                .expect("ack")
        });
        acked_upto = last;
        if round >= 9 && !killed_acked {
            // Acks survive the agent.
            killed_acked = true;
            a.kill9();
            a.spawn();
        }
        if !batch.more {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    assert!(saw_more, "Collect with a small limit says more follow");
    assert!(killed_unacked && killed_acked);

    // Stop: the ledger no longer changes. Drain it.
    stop_all_and_settle(&a);
    rt.block_on(async {
        let mut c = a.usage_client().await;
        loop {
            let r = collect(&mut c, 0, 0, false).await;
            let again = collect(&mut c, 0, 0, false).await;
            assert_eq!(r, again, "Collect twice without Ack: the same records, the same ids");
            let Some(last) = r.records.last().map(|x| x.seq) else {
                break;
            };
            for x in r.records {
                assert!(billed.insert(x.id.clone(), x).is_none(), "handed out twice");
            }
            c.ack(pb::AckRequest { seq: last }).await.unwrap();
        }
    });

    let all = rt.block_on(async { collect_all(&mut a.usage_client().await, true).await });
    let recs = ledger(&a);
    let n = recs.len() as u64;
    assert_eq!(all.len() as u64, n);
    assert_eq!(
        billed.keys().cloned().collect::<HashSet<_>>(),
        all.iter().map(|r| r.id.clone()).collect::<HashSet<_>>(),
        "the collector got every record exactly once"
    );
    for r in &all {
        assert_eq!(billed[&r.id], *r, "collected as it is stored");
    }
    for (p, r) in all.iter().zip(&recs) {
        assert!(same_record(p, r), "{p:?} vs {r:?}");
    }

    rt.block_on(async {
        let mut c = a.usage_client().await;
        // Everything acked: nothing left to collect.
        let r = collect(&mut c, 0, 0, false).await;
        assert!(r.records.is_empty() && !r.more, "{r:?}");
        // A seq that was never written cannot be acked.
        is_invalid_argument(c.ack(pb::AckRequest { seq: n + 1 }).await, "seq");
        is_invalid_argument(c.ack(pb::AckRequest { seq: n + 1000 }).await, "seq");
        is_invalid_argument(c.ack(pb::AckRequest { seq: u64::MAX }).await, "seq");
        // Acking again what was acked is harmless.
        c.ack(pb::AckRequest { seq: n }).await.expect("ack again");
        let s = c
            .collect(pb::CollectRequest {
                after_seq: 0,
                limit: 10_001,
                include_collected: false,
            })
            .await
            .expect_err("limit over the maximum");
        assert_eq!(s.code(), tonic::Code::InvalidArgument, "{s:?}");
        // after_seq pages.
        let mid = n / 2;
        let r = collect(&mut c, mid, 0, true).await;
        assert_eq!(
            r.records.iter().map(|x| x.seq).collect::<Vec<_>>(),
            (mid + 1..=n).collect::<Vec<_>>()
        );
    });

    check_dynoctl_usage(&a, &all);
}

/// `dynoctl usage` in its three forms, and `--after`, against the API's records.
fn check_dynoctl_usage(a: &TestAgent, all: &[pb::UsageRecord]) {
    let n = all.len() as u64;
    assert!(n >= 12);
    let fields = [
        "seq",
        "id",
        "app",
        "dyno",
        "dyno_id",
        "type",
        "size",
        "release",
        "start",
        "end",
        "seconds",
        "cpu_ms",
        "mem_peak_bytes",
        "run_id",
        "final",
    ];
    let whole_seconds = |v: &Value, t: Option<i64>| {
        let s = v.as_str().unwrap_or_else(|| panic!("time {v}"));
        assert!(s.len() == 20 && s.ends_with('Z'), "RFC 3339 whole seconds, UTC: {s:?}");
        let parsed = DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(Some(parsed.timestamp()), t, "{s}");
        s.to_string()
    };
    let json_of = |args: &[&str]| -> Vec<Value> {
        serde_json::from_str(&a.ctl_ok(args)).unwrap_or_else(|e| panic!("dynoctl {args:?}: {e}"))
    };

    // --json: exactly the contract's fields, the API's values.
    let rows = json_of(&["--json", "usage"]);
    assert_eq!(rows.len() as u64, n, "every record, acked ones too");
    let mut csv_expected = Vec::new();
    for (v, r) in rows.iter().zip(all) {
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = fields.to_vec();
        let mut got = keys.clone();
        want.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, want, "the contract's fields exactly: {v}");
        assert_eq!(v["seq"], r.seq);
        assert_eq!(v["id"], r.id.as_str());
        assert_eq!(v["app"], r.app.as_str());
        assert_eq!(v["dyno"], r.dyno.as_str());
        assert_eq!(v["dyno_id"], r.dyno_id.as_str());
        assert_eq!(v["type"], r.r#type.as_str());
        assert_eq!(v["type"], "worker");
        assert_eq!(v["size"], r.size.as_str());
        assert_eq!(v["release"], "v3");
        assert_eq!(v["seconds"], r.seconds);
        assert_eq!(v["cpu_ms"], r.cpu_ms);
        assert_eq!(v["mem_peak_bytes"], r.mem_peak_bytes);
        assert_eq!(v["run_id"], r.run_id.as_str());
        assert_eq!(v["final"], r.r#final);
        let start = whole_seconds(&v["start"], r.start.map(|t| t.seconds));
        let end = whole_seconds(&v["end"], r.end.map(|t| t.seconds));
        csv_expected.push(format!(
            "{},{},{},{},{},{},{},{},{start},{end},{},{},{},{},{}",
            r.seq,
            r.id,
            r.app,
            r.dyno,
            r.dyno_id,
            r.r#type,
            r.size,
            r.release,
            r.seconds,
            r.cpu_ms,
            r.mem_peak_bytes,
            r.run_id,
            r.r#final
        ));
    }

    // --csv: a header with the same fields, one line per record.
    let csv = a.ctl_ok(&["usage", "--csv"]);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], fields.join(","), "{csv}");
    assert_eq!(
        lines[1..],
        csv_expected.iter().map(String::as_str).collect::<Vec<_>>()[..]
    );

    // --after SEQ: only later records, in every form.
    let mid = n / 3;
    let later = json_of(&["--json", "usage", "--after", &mid.to_string()]);
    assert_eq!(
        later.iter().map(|v| v["seq"].as_u64().unwrap()).collect::<Vec<_>>(),
        (mid + 1..=n).collect::<Vec<_>>()
    );
    assert_eq!(later[..], rows[mid as usize..]);
    let csv_later = a.ctl_ok(&["usage", "--csv", "--after", &mid.to_string()]);
    assert_eq!(
        csv_later.lines().skip(1).collect::<Vec<_>>(),
        csv_expected[mid as usize..]
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        json_of(&["--json", "usage", "--after", &n.to_string()]),
        Vec::<Value>::new()
    );

    // The readable table: a line per record and a total per app and size.
    let check_table = |table: &str, records: &[pb::UsageRecord]| {
        for r in records {
            assert!(
                table
                    .lines()
                    .any(|l| l.split_whitespace().next() == Some(r.seq.to_string().as_str()) && l.contains(&r.app)),
                "no line for seq {} in:\n{table}",
                r.seq
            );
        }
        let mut totals: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for r in records {
            *totals.entry((&r.app, &r.size)).or_default() += r.seconds;
        }
        let total_lines: Vec<&str> = table
            .lines()
            .filter(|l| l.trim_start().to_lowercase().starts_with("total"))
            .collect();
        assert_eq!(total_lines.len(), totals.len(), "one total per app and size:\n{table}");
        for ((app, size), secs) in &totals {
            assert!(
                total_lines.iter().any(|l| {
                    let words: Vec<&str> = l.split([' ', ':']).filter(|w| !w.is_empty()).collect();
                    words.contains(app) && words.contains(size) && words.contains(&secs.to_string().as_str())
                }),
                "no total of {secs} s for {app} {size} in:\n{table}"
            );
        }
    };
    let table = a.ctl_ok(&["usage"]);
    check_table(&table, all);
    // Three (app, size) pairs: shop/standard-1x, shop/standard-2x, blog/standard-2x.
    assert_eq!(
        all.iter().map(|r| (&r.app, &r.size)).collect::<HashSet<_>>().len(),
        3,
        "{table}"
    );
    let table_later = a.ctl_ok(&["usage", "--after", &mid.to_string()]);
    check_table(&table_later, &all[mid as usize..]);
    assert!(
        !table_later
            .lines()
            .any(|l| l.split_whitespace().next() == Some(all[0].seq.to_string().as_str())),
        "--after leaves out earlier records:\n{table_later}"
    );
}

#[test]
fn collect_after_the_last_seq_returns_nothing() {
    let a = TestAgent::start("usage_slice = \"1s\"");
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.wait_state("shop", "worker.1", "up");
    wait_for("a few records", || (ledger(&a).len() >= 2).then_some(()));
    stop_all_and_settle(&a);
    let n = ledger(&a).len() as u64;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = a.usage_client().await;
        for include_collected in [false, true] {
            // "Records with seq > after_seq": none past the last one, however
            // far past it the collector asks.
            for after_seq in [n, n + 1, 1 << 40, (1 << 63) - 1, 1 << 63, u64::MAX] {
                let r = collect(&mut c, after_seq, 0, include_collected).await;
                assert!(
                    r.records.is_empty() && !r.more,
                    "Collect(after_seq = {after_seq}, include_collected = {include_collected}) with {n} records \
                     returned seqs {:?}",
                    r.records.iter().map(|x| x.seq).collect::<Vec<_>>()
                );
            }
        }
    });
}
