//! Benchmark: warm start latency of a jailed dyno, side by side with Debian's
//! `crun` and `runc` starting the same busybox stack with equivalent
//! namespaces, and with a bare `unshare … chroot` as the floor.
//!
//! Run with `cargo bench -p dyno-tests --bench jail_start` (as root; installs
//! crun and runc with apt-get when `crun` is missing).
//!
//! Contestants, sampled round-robin (`BENCH_N` rounds, default 200, after 5
//! warm-up rounds) so that machine noise hits all of them alike:
//! - agent: a worker dyno (non-web: `up` as soon as its command is exec'd) of
//!   a cached tarball slug, started with `StartDyno` on a release build of the
//!   real `dynoagent`; its command is `echo x; exec sleep 600`. Timed from the
//!   `StartDyno` call to (a) the `up` event on `WatchEvents`, the primary
//!   "command running" figure, and (b) the first output line, by the
//!   timestamp the shim gave it when it read it from the command's stdout.
//!   Each dyno is stopped (and its `down` event awaited) outside the timing.
//! - agent, no cgroups: the same with a second agent that finds no cgroup
//!   hierarchy (`cgroup_root` points at an empty directory, `allow_unjailed`
//!   lets it run without limits; its dynos are jailed all the same).
//! - crun: `crun run` of an OCI bundle whose rootfs is the same stack image,
//!   read-only; namespaces pid, mount, uts, ipc (no network, no cgroup: the
//!   agent shares the host's); uid 100000, no capabilities, no terminal;
//!   /proc, /dev (tmpfs, with pts and shm) and /tmp (tmpfs). Its command is
//!   `/bin/sh -c 'echo x'`; timed from spawning `crun run` to the first byte of
//!   the container's stdout (inherited from `crun run`) read here. Debian's
//!   crun 1.8.1 refuses this host's hybrid cgroup layout, so the crun samples
//!   are taken by a helper (this binary, re-executed) that lives in a private
//!   mount namespace with `/sys/fs/cgroup/unified` unmounted; the helper
//!   times each start itself, so the wrapper costs nothing per sample.
//!   Also sampled with `--cgroup-manager=disabled`.
//! - runc: `runc run` of the same bundle, same timing.
//! - floor: `unshare --fork --pid --mount --uts --ipc chroot STACK
//!   /bin/sh -c 'echo x'`, same timing.
//!
//! Every start follows `BENCH_PAUSE_MS` (default 100) of idling. Moving a
//! process into a cgroup (a `cgroup.procs` write) takes the kernel's
//! cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period
//! (~10-20 ms here) unless another writer ran within the last few tens of
//! milliseconds; back to back, whoever follows a cgroup writer gets it nearly
//! free (crun: ~12 ms back to back, ~21 ms after 50 ms idle). The pause gives
//! every contestant the cold start a sporadic dyno start sees.
//!
//! Environment: `BENCH_N` (rounds, default 200), `BENCH_PAUSE_MS` (idle time
//! before each start, default 100), `BENCH_SLUG_FILES` (extra small files in
//! the slug, default 0: the slug holds a Procfile and one script).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dyno_proto::v1 as pb;
use dyno_tests::bench::{Stats, env_usize, have, ms, stats};
use dyno_tests::grpc::next_event_of;
use dyno_tests::{TestAgent, require_root, selector, show, stack, tarball, watch_events};
use pb::agent_client::AgentClient;
use serde_json::{Value, json};
use tonic::Streaming;
use tonic::transport::Channel;

const APP: &str = "bench";
const AGENT_COMMAND: &str = "echo x; exec sleep 600";
const OCI_ARGS: [&str; 3] = ["/bin/sh", "-c", "echo x"];
const OUTPUT: &[u8] = b"x\n";
const WARMUP: usize = 5;
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);
/// Set in the helper's environment: it then serves crun samples on stdin/stdout.
const HELPER_ENV: &str = "JAIL_START_CRUN_HELPER";
const BUNDLE_ENV: &str = "JAIL_START_BUNDLE";
/// The private mount namespace crun 1.8.1 needs on this host (DESIGN §12).
const CRUN_WRAPPER: &str = "mount --make-rprivate / && umount /sys/fs/cgroup/unified && exec \"$0\"";

fn main() {
    if std::env::var_os(HELPER_ENV).is_some() {
        crun_helper();
        return;
    }
    let n = env_usize("BENCH_N", 200).max(1);
    let slug_files = env_usize("BENCH_SLUG_FILES", 0);
    let pause = Duration::from_millis(env_usize("BENCH_PAUSE_MS", 100) as u64);
    require_root();
    let runc = ensure_tools();

    let work = tempfile::Builder::new()
        .prefix("jail-start-")
        .tempdir()
        .expect("tempdir");
    // The host's network, like the OCI runtimes here (the isolated network's
    // cost is `net_start`'s subject).
    let agent = TestAgent::start("network = \"host\"");
    // The same agent without cgroups: no usable hierarchy under `cgroup_root`,
    // which `allow_unjailed` accepts (dynos are still jailed: the stack is set).
    let agent_nocg = TestAgent::start(&format!(
        "network = \"host\"\nallow_unjailed = true\ncgroup_root = \"{}\"",
        work.path().join("no-cgroups").display()
    ));
    let stack = stack().to_path_buf();
    let slug = slug_tarball(work.path(), slug_files);
    let bundle = oci_bundle(work.path(), &stack);
    let id_prefix = format!("jailstart-{}", std::process::id());

    let (mut helper, wrapped) = CrunHelper::start(&bundle, &id_prefix);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut dynos = rt.block_on(AgentBench::connect(&agent, &slug));
    let mut dynos_nocg = rt.block_on(AgentBench::connect(&agent_nocg, &slug));
    let host = rt.block_on(dynos.host());
    let host_nocg = rt.block_on(dynos_nocg.host());
    assert!(
        !host.cgroup_version.is_empty() && host_nocg.cgroup_version.is_empty(),
        "expected the first agent with cgroups ({:?}) and the second without ({:?})",
        host.cgroup_version,
        host_nocg.cgroup_version
    );

    let mut s = Samples::default();
    for round in 0..WARMUP + n {
        let keep = round >= WARMUP;
        let name = if keep {
            format!("worker.{}", round - WARMUP + 1)
        } else {
            format!("warmup.{}", round + 1)
        };
        // Every start begins from an idle machine (see the module doc).
        std::thread::sleep(pause);
        let a = rt.block_on(dynos.sample(&name));
        std::thread::sleep(pause);
        let an = rt.block_on(dynos_nocg.sample(&name));
        std::thread::sleep(pause);
        let c = helper.sample("crun", &format!("{id_prefix}-c-{round}"));
        std::thread::sleep(pause);
        let cn = helper.sample("crun-nocg", &format!("{id_prefix}-n-{round}"));
        let r = runc.then(|| {
            std::thread::sleep(pause);
            runc_sample(&bundle, &format!("{id_prefix}-r-{round}"))
        });
        std::thread::sleep(pause);
        let f = floor_sample(&stack);
        if keep {
            s.agent.push(a);
            s.agent_nocg.push(an);
            s.crun.push(c);
            s.crun_nocg.push(cn);
            if let Some(r) = r {
                s.runc.push(r);
            }
            s.floor.push(f);
        }
    }

    // --- clean up: the helper, leftover containers, the dynos ---
    drop(helper);
    let left = leftover_containers(&id_prefix, runc);
    rt.block_on(dynos.assert_all_down());
    rt.block_on(dynos_nocg.assert_all_down());
    drop((dynos, dynos_nocg));
    drop(rt);
    drop((agent, agent_nocg));
    drop(work);
    assert!(left.is_empty(), "containers left behind (deleted now): {left:?}");

    let setup = Setup {
        n,
        slug_files,
        pause,
        wrapped,
        host,
    };
    print!("{}", report(&setup, &s));
}

// ---------------------------------------------------------------- set-up ---

/// Installs crun and runc if crun is missing; returns whether runc is there.
fn ensure_tools() -> bool {
    for tool in ["unshare", "chroot"] {
        assert!(have(tool), "jail_start needs `{tool}` (util-linux / coreutils)");
    }
    if !have("crun") {
        eprintln!("jail_start: crun is missing; installing crun and runc with apt-get");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .map(|s| s.success())
        };
        let ok = apt(&["update"]).is_ok_and(|ok| ok) && apt(&["install", "-y", "crun", "runc"]).is_ok_and(|ok| ok);
        assert!(
            ok && have("crun"),
            "jail_start: crun is not installed and `apt-get update && apt-get install -y crun runc` failed; \
             install crun (and runc) by hand and rerun"
        );
    }
    let runc = have("runc");
    if !runc {
        eprintln!("jail_start: runc is not installed; its column is left out");
    }
    runc
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tarball slug (`app/Procfile`, `app/bin/run` and `extra` small files),
/// as an absolute path; the warm-up rounds unpack it into the agent's cache.
fn slug_tarball(work: &Path, extra: usize) -> String {
    let mut files = vec![
        ("Procfile".to_string(), format!("worker: {AGENT_COMMAND}\n")),
        ("bin/run".to_string(), "#!/bin/sh\nexec \"$@\"\n".to_string()),
    ];
    files.extend((0..extra).map(|i| (format!("lib/d{}/f{i}.txt", i / 100), format!("file {i}\n"))));
    let path = work.join("slug.tar.gz");
    std::fs::write(&path, tarball::slug_tgz(&files)).expect("write the slug");
    show(&path)
}

/// An OCI bundle for the same stack: `crun spec`, edited (see the module doc).
fn oci_bundle(work: &Path, stack: &Path) -> PathBuf {
    let bundle = work.join("bundle");
    std::fs::create_dir_all(&bundle).expect("bundle dir");
    run_ok(Command::new("crun").arg("spec").arg("--bundle").arg(&bundle));
    let path = bundle.join("config.json");
    let mut c: Value = serde_json::from_str(&std::fs::read_to_string(&path).expect("config.json")).expect("json");
    let p = &mut c["process"];
    p["terminal"] = json!(false);
    p["args"] = json!(OCI_ARGS);
    p["cwd"] = json!("/app");
    p["user"] = json!({"uid": 100000, "gid": 100000});
    // The agent drops every capability and sets RLIMIT_NOFILE to the size's 10 000.
    p["capabilities"] = json!({
        "bounding": [], "effective": [], "inheritable": [], "permitted": [], "ambient": []
    });
    p["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "hard": 10000, "soft": 10000}]);
    p["noNewPrivileges"] = json!(true);
    c["root"] = json!({"path": stack, "readonly": true});
    c["hostname"] = json!("dyno");
    // The agent mounts /proc, a tmpfs /dev with pts and shm, and a tmpfs /tmp;
    // no /sys, no mqueue.
    let keep = ["/proc", "/dev", "/dev/pts", "/dev/shm"];
    let mut mounts: Vec<Value> = c["mounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .filter(|m| keep.contains(&m["destination"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    mounts.push(json!({
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", "size=65536k"]
    }));
    c["mounts"] = json!(mounts);
    let ns = c["linux"]["namespaces"].as_array_mut().expect("namespaces");
    ns.retain(|n| matches!(n["type"].as_str(), Some("pid" | "mount" | "uts" | "ipc")));
    for t in ["pid", "mount", "uts", "ipc"] {
        if !ns.iter().any(|n| n["type"] == t) {
            ns.push(json!({"type": t}));
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(&c).expect("json")).expect("write config.json");
    bundle
}

// ---------------------------------------------------------- OCI runtimes ---

/// Spawns `cmd`, returns the time until the first byte of its stdout arrived
/// here; then checks that it printed `x` and succeeded.
fn first_byte(cmd: &mut Command) -> Result<Duration, String> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = cmd.spawn().map_err(|e| format!("{cmd:?}: {e}"))?;
    let mut out = child.stdout.take().expect("piped");
    let mut first = [0u8; 1];
    let n = out
        .read(&mut first)
        .map_err(|e| format!("{cmd:?}: reading stdout: {e}"))?;
    let dt = t0.elapsed();
    let mut rest = Vec::new();
    let _ = out.read_to_end(&mut rest);
    let mut err = String::new();
    let _ = child.stderr.take().expect("piped").read_to_string(&mut err);
    let status = child.wait().map_err(|e| format!("{cmd:?}: {e}"))?;
    let got = [&first[..n], &rest[..]].concat();
    if n != 1 || got != OUTPUT || !status.success() {
        return Err(format!(
            "{cmd:?}: {status}, stdout {:?}, stderr {:?}",
            String::from_utf8_lossy(&got),
            err.trim()
        ));
    }
    Ok(dt)
}

/// `crun run` (as `kind` says) in the helper; the container is deleted
/// outside the timing.
fn crun_run(kind: &str, bundle: &Path, id: &str) -> Result<Duration, String> {
    let mut cmd = Command::new("crun");
    if kind == "crun-nocg" {
        cmd.arg("--cgroup-manager=disabled");
    }
    cmd.arg("run").arg("--bundle").arg(bundle).arg(id);
    let r = first_byte(&mut cmd);
    let _ = Command::new("crun")
        .args(["delete", "-f", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    r
}

fn runc_sample(bundle: &Path, id: &str) -> Duration {
    let r = first_byte(Command::new("runc").arg("run").arg("--bundle").arg(bundle).arg(id));
    let _ = Command::new("runc")
        .args(["delete", "-f", id])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    r.unwrap_or_else(|e| panic!("runc: {e}"))
}

fn floor_sample(stack: &Path) -> Duration {
    let mut cmd = Command::new("unshare");
    cmd.args(["--fork", "--pid", "--mount", "--uts", "--ipc", "chroot"])
        .arg(stack)
        .args(OCI_ARGS);
    first_byte(&mut cmd).unwrap_or_else(|e| panic!("floor: {e}"))
}

/// The helper's side: one line per sample on stdin (`<kind> <id>`), one
/// answer per line on stdout (`ok <nanoseconds>` or `err <message>`).
fn crun_helper() {
    let bundle = PathBuf::from(std::env::var_os(BUNDLE_ENV).expect("bundle"));
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let (kind, id) = line.split_once(' ').expect("<kind> <id>");
        let answer = match crun_run(kind, &bundle, id) {
            Ok(d) => format!("ok {}", d.as_nanos()),
            Err(e) => format!("err {}", e.replace('\n', " ")),
        };
        writeln!(out, "{answer}").expect("stdout");
        out.flush().expect("stdout");
    }
}

/// The main side: this binary re-executed, in the private mount namespace
/// when plain `crun run` refuses the host's cgroups.
struct CrunHelper {
    child: Child,
    input: Option<ChildStdin>,
    output: BufReader<ChildStdout>,
}

impl CrunHelper {
    /// Returns the helper and whether it needed the mount-namespace wrapper.
    fn start(bundle: &Path, id_prefix: &str) -> (CrunHelper, bool) {
        let probe = crun_run("crun", bundle, &format!("{id_prefix}-probe"));
        let wrapped = match probe {
            Ok(_) => false,
            Err(e) if e.contains("hybrid") => true,
            Err(e) => panic!("crun run fails, and not because of the hybrid cgroup layout: {e}"),
        };
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = if wrapped {
            let mut c = Command::new("unshare");
            c.args(["-m", "sh", "-c", CRUN_WRAPPER]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let mut child = cmd
            .env(HELPER_ENV, "1")
            .env(BUNDLE_ENV, bundle)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the crun helper");
        let input = child.stdin.take();
        let output = BufReader::new(child.stdout.take().expect("piped"));
        (CrunHelper { child, input, output }, wrapped)
    }

    fn sample(&mut self, kind: &str, id: &str) -> Duration {
        let input = self.input.as_mut().expect("open");
        writeln!(input, "{kind} {id}").expect("write to the crun helper");
        input.flush().expect("write to the crun helper");
        let mut line = String::new();
        self.output.read_line(&mut line).expect("read from the crun helper");
        match line.trim().split_once(' ') {
            Some(("ok", ns)) => Duration::from_nanos(ns.parse().expect("nanoseconds")),
            Some(("err", e)) => panic!("{kind}: {e}"),
            _ => panic!("{kind}: the crun helper ended ({line:?})"),
        }
    }
}

impl Drop for CrunHelper {
    fn drop(&mut self) {
        // EOF ends its loop.
        drop(self.input.take());
        let _ = self.child.wait();
    }
}

/// Our containers still known to crun or runc; deletes them.
fn leftover_containers(prefix: &str, runc: bool) -> Vec<String> {
    let mut left = Vec::new();
    let runtimes: &[&str] = if runc { &["crun", "runc"] } else { &["crun"] };
    for rt in runtimes {
        let Ok(out) = Command::new(rt).args(["list", "-q"]).output() else {
            continue;
        };
        for id in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            if id.starts_with(prefix) {
                let _ = Command::new(rt).args(["delete", "-f", id]).status();
                left.push(format!("{rt}:{id}"));
            }
        }
    }
    left
}

// ----------------------------------------------------------------- agent ---

struct AgentBench {
    client: AgentClient<Channel>,
    events: Streaming<pb::WatchEventsResponse>,
    slug: String,
    runs: PathBuf,
}

/// One agent start, every figure from the `StartDyno` call.
struct AgentSample {
    /// The `up` event received here (primary).
    up: Duration,
    /// The first output line, by the shim's timestamp.
    output: Duration,
    /// The `StartDyno` call returned.
    rpc: Duration,
    /// The engine handled the start (`starting` event's time).
    starting: Duration,
    /// The shim saw the command exec'd (`exec.json`'s `started_at`).
    exec: Duration,
    /// The engine published `up` (the event's time).
    up_published: Duration,
}

fn since(wall0: DateTime<Utc>, at: DateTime<Utc>) -> Duration {
    (at - wall0).to_std().unwrap_or(Duration::ZERO)
}

fn event_time(ev: &pb::Event) -> DateTime<Utc> {
    let at = ev.at.as_ref().expect("event time");
    DateTime::from_timestamp(at.seconds, at.nanos as u32).expect("timestamp")
}

impl AgentBench {
    async fn connect(agent: &TestAgent, slug: &str) -> AgentBench {
        let mut client = agent.client().await;
        let events = watch_events(&mut client, 0, true).await;
        AgentBench {
            client,
            events,
            slug: slug.to_string(),
            runs: agent.state.join("runs"),
        }
    }

    async fn sample(&mut self, name: &str) -> AgentSample {
        let req = pb::StartDynoRequest {
            app: APP.into(),
            name: name.into(),
            command: AGENT_COMMAND.into(),
            slug: self.slug.clone(),
            ..Default::default()
        };
        let wall0 = Utc::now();
        let t0 = Instant::now();
        let dyno = self
            .client
            .start_dyno(req)
            .await
            .unwrap_or_else(|e| panic!("StartDyno {name}: {e}"))
            .into_inner();
        let rpc = t0.elapsed();
        let run_id = dyno.run_id;
        let mut starting = None;
        let up_ev = loop {
            let ev = self.next_event(name, &run_id).await;
            let to = pb::DynoState::try_from(ev.to).unwrap_or(pb::DynoState::Unspecified);
            match to {
                pb::DynoState::Up => break ev,
                pb::DynoState::Starting => starting = Some(event_time(&ev)),
                other => panic!("{name} went {other:?} ({}) while starting", ev.reason),
            }
        };
        let up = t0.elapsed();
        let up_published = since(wall0, event_time(&up_ev));
        // Outside the timing: the records with the remaining figures.
        let dir = dyno_agent::runs::RunDir::new(&self.runs, &run_id);
        let exec = dir
            .read_exec()
            .expect("exec.json")
            .unwrap_or_else(|| panic!("{name}: no exec.json after up"));
        let output = self.first_output(&dir.log(), name, wall0).await;

        self.client
            .stop_dyno(pb::StopDynoRequest {
                selector: selector(APP, name),
            })
            .await
            .unwrap_or_else(|e| panic!("StopDyno {name}: {e}"));
        while self.next_event(name, &run_id).await.to != pb::DynoState::Down as i32 {}

        AgentSample {
            up,
            output,
            rpc,
            starting: starting.map_or(Duration::ZERO, |at| since(wall0, at)),
            exec: since(wall0, exec.started_at),
            up_published,
        }
    }

    /// The next event of this run of `name`.
    async fn next_event(&mut self, name: &str, run_id: &str) -> pb::Event {
        next_event_of(&mut self.events, APP, name, run_id, EVENT_TIMEOUT).await
    }

    /// Waits for the dyno's `x` in its run's log; returns the time of its
    /// timestamp (when the shim read it) after `wall0`.
    async fn first_output(&self, log: &Path, name: &str, wall0: DateTime<Utc>) -> Duration {
        let want = format!("app[{name}]: x");
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.ends_with(&want)) {
                let parsed = dyno_agent::logs::parse_line(line).expect("log line");
                let at = DateTime::parse_from_rfc3339(parsed.timestamp).expect("log timestamp");
                return since(wall0, at.with_timezone(&Utc));
            }
            assert!(
                start.elapsed() < EVENT_TIMEOUT,
                "{name}: no `x` in {} within {EVENT_TIMEOUT:?}:\n{text}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    async fn host(&mut self) -> pb::HostInfoResponse {
        self.client
            .host_info(pb::HostInfoRequest {})
            .await
            .expect("HostInfo")
            .into_inner()
    }

    /// Checks that no dyno is left running (each was stopped after its sample).
    async fn assert_all_down(&mut self) {
        let dynos = self
            .client
            .list_dynos(pb::ListDynosRequest::default())
            .await
            .expect("ListDynos")
            .into_inner()
            .dynos;
        let running: Vec<&str> = dynos
            .iter()
            .filter(|d| d.state != pb::DynoState::Down as i32)
            .map(|d| d.name.as_str())
            .collect();
        assert!(running.is_empty(), "dynos still running: {running:?}");
    }
}

// ---------------------------------------------------------------- report ---

#[derive(Default)]
struct AgentSamples {
    up: Vec<Duration>,
    output: Vec<Duration>,
    rpc: Vec<Duration>,
    starting: Vec<Duration>,
    exec: Vec<Duration>,
    up_published: Vec<Duration>,
}

impl AgentSamples {
    fn push(&mut self, a: AgentSample) {
        self.up.push(a.up);
        self.output.push(a.output);
        self.rpc.push(a.rpc);
        self.starting.push(a.starting);
        self.exec.push(a.exec);
        self.up_published.push(a.up_published);
    }
}

#[derive(Default)]
struct Samples {
    agent: AgentSamples,
    agent_nocg: AgentSamples,
    crun: Vec<Duration>,
    crun_nocg: Vec<Duration>,
    runc: Vec<Duration>,
    floor: Vec<Duration>,
}

struct Setup {
    n: usize,
    slug_files: usize,
    pause: Duration,
    wrapped: bool,
    host: pb::HostInfoResponse,
}

fn row(label: &str, s: &Stats) -> String {
    format!(
        "  {label:<44} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
        ms(s.p50),
        ms(s.p90),
        ms(s.p99),
        ms(s.max)
    )
}

fn report(setup: &Setup, s: &Samples) -> String {
    let Setup {
        n,
        slug_files,
        pause,
        wrapped,
        host,
    } = setup;
    let mut out = String::new();
    out.push_str(&format!(
        "\njail_start: warm start latency, N={n} rounds (+{WARMUP} warm-up), contestants interleaved round-robin,\n\
         \x20 each start after {} ms idle\n\
         host: {} cpus, cgroups {}, agent {}; slug: cached tarball, {} files under app/\n\
         \"command running\":\n\
         \x20 agent  `{AGENT_COMMAND}` in a worker dyno: StartDyno call -> `up` event received\n\
         \x20        (a non-web dyno is `up` once its command is exec'd); also -> first output line\n\
         \x20        (the shim's timestamp when it read `x` from the command's stdout)\n\
         \x20 others `/bin/sh -c 'echo x'`: spawning the runtime -> first byte of the container's\n\
         \x20        stdout read by the bench\n\
         crun runs {}\n",
        pause.as_millis(),
        host.cpus,
        host.cgroup_version,
        host.agent_version,
        2 + slug_files,
        if *wrapped {
            "in a helper inside `unshare -m` with /sys/fs/cgroup/unified unmounted (crun 1.8.1 refuses\n\
             \x20 the hybrid layout); the helper times each start itself, the wrapper is paid once"
        } else {
            "as is"
        }
    ));
    out.push_str(&format!(
        "\n  (ms)                                         {:>8} {:>8} {:>8} {:>8}\n",
        "p50", "p90", "p99", "max"
    ));
    let a = stats(&s.agent.up);
    let ao = stats(&s.agent.output);
    let an = stats(&s.agent_nocg.up);
    let ano = stats(&s.agent_nocg.output);
    let c = stats(&s.crun);
    let cn = stats(&s.crun_nocg);
    let f = stats(&s.floor);
    let r = (!s.runc.is_empty()).then(|| stats(&s.runc));
    out.push_str(&row("agent: StartDyno -> `up` received", &a));
    out.push_str(&row("agent: StartDyno -> first output (shim)", &ao));
    out.push_str(&row("agent, no cgroups: -> `up` received", &an));
    out.push_str(&row("agent, no cgroups: -> first output", &ano));
    out.push_str(&row("crun run (default cgroupfs manager)", &c));
    out.push_str(&row("crun --cgroup-manager=disabled run", &cn));
    if let Some(r) = &r {
        out.push_str(&row("runc run", r));
    }
    out.push_str(&row("floor: unshare --fork --pid ... chroot", &f));

    for (label, x) in [("agent", &s.agent), ("agent, no cgroups", &s.agent_nocg)] {
        out.push_str(&format!("\n  {label}: phases, from the StartDyno call (ms)\n"));
        out.push_str(&row("engine handled the start (`starting` at)", &stats(&x.starting)));
        out.push_str(&row("StartDyno returned", &stats(&x.rpc)));
        out.push_str(&row("shim saw the command exec'd (exec.json)", &stats(&x.exec)));
        out.push_str(&row("engine published `up` (event at)", &stats(&x.up_published)));
        out.push_str(&row("`up` received by the client", &stats(&x.up)));
        out.push_str(&row("first output read by the shim", &stats(&x.output)));
    }

    out.push_str(&format!("\n  {:<52} {:>8} {:>8}\n", "ratios", "p50", "p99"));
    let ratio = |label: &str, x: &Stats, y: &Stats| {
        format!(
            "  {label:<52} {:>7.2}x {:>7.2}x\n",
            ms(x.p50) / ms(y.p50),
            ms(x.p99) / ms(y.p99)
        )
    };
    for (what, x) in [("up", &a), ("first output", &ao)] {
        out.push_str(&ratio(&format!("agent ({what}) / crun"), x, &c));
        if let Some(r) = &r {
            out.push_str(&ratio(&format!("agent ({what}) / runc"), x, r));
        }
        out.push_str(&ratio(&format!("agent ({what}) / floor"), x, &f));
    }
    for (what, x) in [("up", &an), ("first output", &ano)] {
        out.push_str(&ratio(
            &format!("agent, no cgroups ({what}) / crun, no cgroups"),
            x,
            &cn,
        ));
        out.push_str(&ratio(&format!("agent, no cgroups ({what}) / floor"), x, &f));
    }
    let verdict = |x: &Stats, y: &Stats| if ms(x.p50) <= 0.5 * ms(y.p50) { "MET" } else { "NOT MET" };
    out.push_str(&format!(
        "\n  goal: agent p50 <= 0.5 x crun p50 ({:.2} ms)\n\
         \x20   `up`:         p50 {:.2} ms -> {}\n\
         \x20   first output: p50 {:.2} ms -> {}\n\
         \x20 the same without cgroups on either side: <= 0.5 x {:.2} ms = {:.2} ms\n\
         \x20   `up`:         p50 {:.2} ms -> {}\n\
         \x20   first output: p50 {:.2} ms -> {}\n",
        0.5 * ms(c.p50),
        ms(a.p50),
        verdict(&a, &c),
        ms(ao.p50),
        verdict(&ao, &c),
        ms(cn.p50),
        0.5 * ms(cn.p50),
        ms(an.p50),
        verdict(&an, &cn),
        ms(ano.p50),
        verdict(&ano, &cn)
    ));
    out
}
