#![allow(dead_code)] // each test file uses a different part of the harness
//! Harness for the end-to-end tests: a real `dynoagent` in a temporary state
//! directory, driven with the real `dynoctl` and a gRPC client over its Unix
//! socket.
//!
//! Every [`TestAgent`] has its own state directory, socket and port range, so
//! tests run in parallel. Dropping it (also when a test fails) kills the agent,
//! every dyno process and shim it started (found by pid from its own run
//! records, never by name), and removes the directory.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use serde_json::Value;
use tonic::transport::Channel;

/// Generous: the CI machine has 2 cores and runs tests in parallel.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Lifecycle durations short enough for tests.
pub const FAST: &str = r#"
boot_timeout = "3s"
stop_grace = "2s"
restart_cooloffs = ["2s", "3s"]
stable_window = "10m"
cycling = false
"#;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The stack image every test agent serves as `default`, built once by
/// `rootfs/build.sh` into cargo's target tmpdir.
pub fn stack() -> &'static Path {
    static STACK: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    STACK.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-stack");
        // One builder at a time across test binaries.
        let lock = std::fs::File::create(dir.with_extension("lock")).expect("stack lock");
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("flock");
        if !dir.join("bin/busybox").exists() {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rootfs/build.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(&dir)
                .output()
                .expect("run rootfs/build.sh");
            assert!(
                out.status.success(),
                "rootfs/build.sh failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        dir
    })
}

/// The end-to-end tests run real jails: they need root. They never pass
/// without having run.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests start real jails and must run as root (scripts/test)"
    );
}

pub fn agent_bin() -> &'static str {
    env!("CARGO_BIN_EXE_e2e-dynoagent")
}

pub fn ctl_bin() -> &'static str {
    env!("CARGO_BIN_EXE_e2e-dynoctl")
}

/// Waits until `check` returns `Some`, polling; panics with `what` after `DEADLINE`.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > DEADLINE {
            panic!("timed out after {DEADLINE:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Each test agent has its own parent cgroup: an agent reaps every cgroup
/// under its parent that is not one of its runs.
fn cgroup_parent(n: u32) -> String {
    format!("dynoagent-e2e-{}-{n}", std::process::id())
}

pub struct TestAgent {
    pub n: u32,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub ports: (u16, u16),
    child: Option<Child>,
}

impl TestAgent {
    /// Starts an agent with `FAST` durations plus `extra` configuration.
    pub fn start(extra: &str) -> TestAgent {
        require_root();
        let stack = stack();
        let dir = tempfile::Builder::new().prefix("dyno-e2e-").tempdir().expect("tempdir");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Disjoint port ranges per agent, across test binaries too.
        let base = 30000 + ((std::process::id() % 97) * 300 + n * 20) as u16 % 30000;
        let ports = (base, base + 19);
        let config = dir.path().join("agent.toml");
        // `extra` overrides the FAST keys it repeats.
        let key = |l: &str| l.split('=').next().unwrap_or("").trim().to_string();
        let extra_keys: Vec<String> = extra.lines().map(key).filter(|k| !k.is_empty()).collect();
        let fast: String = FAST
            .lines()
            .filter(|l| !extra_keys.contains(&key(l)))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(
            &config,
            format!(
                "{fast}port_range = \"{}-{}\"\nhost_id = \"e2e-{n}\"\ncgroup_parent = \"{}\"\n{extra}\n[stacks]\ndefault = \"{}\"\n",
                ports.0,
                ports.1,
                cgroup_parent(n),
                stack.display()
            ),
        )
        .expect("config");
        let mut a = TestAgent {
            n,
            state: dir.path().join("state"),
            socket: dir.path().join("agent.sock"),
            config,
            ports,
            dir,
            child: None,
        };
        a.spawn();
        a
    }

    /// (Re)starts the agent process on the same state directory.
    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        let child = self.launch();
        self.child = Some(child);
        wait_for("the agent's socket", || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dynoagent exited early with {status}:\n{}", self.agent_log());
            }
            std::os::unix::net::UnixStream::connect(&self.socket).ok().map(drop)
        });
    }

    /// Starts `dynoagent` on this agent's configuration, logging to `agent.log`.
    fn launch(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        Command::new(agent_bin())
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .env("DYNOAGENT_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn dynoagent")
    }

    pub fn agent_pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9` the agent (dynos keep running).
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        let _ = c.kill();
        let _ = c.wait();
    }

    /// SIGTERM the agent and return its exit status.
    pub fn sigterm(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("kill");
        let start = Instant::now();
        loop {
            if let Some(s) = c.try_wait().expect("wait") {
                return s;
            }
            assert!(start.elapsed() < DEADLINE, "agent did not exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn agent_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    /// Runs dynoctl against this agent.
    pub fn ctl(&self, args: &[&str]) -> Output {
        Command::new(ctl_bin())
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run dynoctl")
    }

    /// Runs dynoctl, asserts success, returns stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "dynoctl {args:?} failed with {}: {}\n--- agent log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.agent_log()
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    /// `dynoctl start --app APP --name NAME --slug SLUG --command COMMAND`.
    pub fn start_dyno(&self, app: &str, name: &str, slug: &Path, command: &str) -> String {
        self.ctl_ok(&[
            "start",
            "--app",
            app,
            "--name",
            name,
            "--slug",
            &show(slug),
            "--command",
            command,
        ])
    }

    /// `dynoctl --json ps` as JSON.
    pub fn ps(&self) -> Vec<Value> {
        let out = self.ctl_ok(&["--json", "ps"]);
        serde_json::from_str::<Vec<Value>>(&out).expect("ps json")
    }

    /// One dyno from `ps --json`.
    pub fn dyno(&self, app: &str, name: &str) -> Option<Value> {
        self.ps().into_iter().find(|d| d["app"] == app && d["name"] == name)
    }

    /// Waits until the dyno satisfies `pred`; returns it.
    pub fn wait_dyno(&self, app: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            if let Some(d) = self.dyno(app, name)
                && pred(&d)
            {
                return d;
            }
            if start.elapsed() > DEADLINE {
                panic!(
                    "timed out waiting for {app}/{name}: {what}; last seen: {:?}\n--- agent log ---\n{}",
                    self.dyno(app, name),
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for a state; returns the dyno.
    pub fn wait_state(&self, app: &str, name: &str, state: &str) -> Value {
        self.wait_dyno(app, name, state, |d| d["state"] == state)
    }

    pub async fn client(&self) -> pb::agent_client::AgentClient<Channel> {
        let ch = dyno_agent::client::connect(&self.socket).await.expect("connect");
        pb::agent_client::AgentClient::new(ch)
    }

    /// A directory slug with the given files under `app/` (mode 0755).
    pub fn slug(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let root = self.dir.path().join("slugs").join(name);
        for (path, body) in files {
            let p = root.join("app").join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::create_dir_all(root.join("app")).expect("mkdir app");
        root
    }

    /// Kills every dyno process and shim this agent's runs recorded.
    fn kill_runs(&self) {
        let runs = self.state.join("runs");
        let Ok(dir) = std::fs::read_dir(&runs) else { return };
        for run in dir.flatten() {
            let path = run.path();
            if let Ok(Some(exec)) = dyno_agent::runs::read_json::<dyno_agent::runs::ExecRecord>(&path.join("exec.json"))
                && dyno_agent::os::start_ticks(exec.pid) == Some(exec.start_ticks)
            {
                let _ = dyno_agent::os::kill_group(exec.pid, libc_sigkill());
            }
        }
        for (_, shim) in dyno_agent::runs::live_shims(&runs) {
            let _ = dyno_agent::os::kill_pid(shim, libc_sigkill());
        }
    }
}

impl TestAgent {
    /// The cgroup directories of this agent's parent, in every hierarchy.
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let parent = cgroup_parent(self.n);
        let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
            return Vec::new();
        };
        hierarchies
            .flatten()
            .map(|h| h.path().join(&parent))
            .filter(|d| d.is_dir())
            .collect()
    }

    /// Removes the agent's parent cgroup and whatever runs are left in it.
    fn remove_cgroups(&self) {
        for dir in self.cgroup_dirs() {
            for _ in 0..100 {
                let runs: Vec<PathBuf> = std::fs::read_dir(&dir)
                    .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect())
                    .unwrap_or_default();
                for run in &runs {
                    if let Ok(procs) = std::fs::read_to_string(run.join("cgroup.procs")) {
                        for pid in procs.split_whitespace().filter_map(|p| p.parse().ok()) {
                            let _ = dyno_agent::os::kill_pid(pid, libc_sigkill());
                        }
                    }
                    let _ = std::fs::remove_dir(run);
                }
                if std::fs::remove_dir(&dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

fn libc_sigkill() -> i32 {
    nix::sys::signal::Signal::SIGKILL as i32
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        self.kill_runs();
        self.remove_cgroups();
        if std::thread::panicking() {
            eprintln!(
                "--- agent log ({}) ---\n{}",
                self.dir.path().display(),
                self.agent_log()
            );
        }
    }
}

/// Reads the run's log lines (text after `…]: `) for a dyno from `dynoctl logs`.
pub fn texts(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| l.split_once("]: ").map(|(_, t)| t.to_string()))
        .collect()
}

/// The pid field of a dyno, as u32.
pub fn pid_of(d: &Value) -> u32 {
    d["pid"].as_u64().unwrap_or_else(|| panic!("no pid in {d}")) as u32
}

/// Host pids of every process in the pid namespace of `pid` (a dyno's init,
/// its command and whatever they started).
pub fn pid_namespace_members(pid: u32) -> Vec<u32> {
    let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/pid")) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| std::fs::read_link(format!("/proc/{p}/ns/pid")).is_ok_and(|n| n == ns))
        .collect()
}

/// Sends a signal to a pid.
pub fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), sig).expect("kill");
}

/// Path helper for messages.
pub fn show(p: &Path) -> String {
    p.display().to_string()
}

impl TestAgent {
    /// A `dyno.v1.Usage` client over the agent's socket.
    pub async fn usage_client(&self) -> pb::usage_client::UsageClient<Channel> {
        let ch = dyno_agent::client::connect(&self.socket).await.expect("connect");
        pb::usage_client::UsageClient::new(ch)
    }

    /// `dynoctl --json info` as JSON.
    pub fn info(&self) -> Value {
        serde_json::from_str(&self.ctl_ok(&["--json", "info"])).expect("info json")
    }
}

/// Waits until `check` returns `Ok`, polling; panics with `what` and the last
/// `Err` it returned (what was still wrong) after `DEADLINE`.
pub fn wait_ok<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if start.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last: {last}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

impl TestAgent {
    /// Sets a top-level key of the agent's configuration file (for the next
    /// `spawn`): replaces its line, or adds it before the `[stacks]` table.
    /// `value` is TOML (`"1s"` with its quotes, `0.5`, `true`).
    pub fn set_config(&self, key: &str, value: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let line = format!("{key} = {value}");
        let is_key = |l: &str| l.split('=').next().is_some_and(|k| k.trim() == key) && l.contains('=');
        let mut out = Vec::new();
        let mut done = false;
        let mut in_table = false;
        for l in text.lines() {
            if l.trim_start().starts_with('[') {
                if !done {
                    out.push(line.clone());
                    done = true;
                }
                in_table = true;
            }
            if !in_table && is_key(l) {
                if !done {
                    out.push(line.clone());
                    done = true;
                }
                continue;
            }
            out.push(l.to_string());
        }
        if !done {
            out.push(line);
        }
        std::fs::write(&self.config, out.join("\n") + "\n").expect("write config");
    }

    /// Removes a top-level key from the configuration file.
    pub fn unset_config(&self, key: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let mut out = Vec::new();
        let mut in_table = false;
        for l in text.lines() {
            in_table |= l.trim_start().starts_with('[');
            if !in_table && l.contains('=') && l.split('=').next().is_some_and(|k| k.trim() == key) {
                continue;
            }
            out.push(l.to_string());
        }
        std::fs::write(&self.config, out.join("\n") + "\n").expect("write config");
    }

    /// Starts the agent on the current configuration expecting it to refuse
    /// to run: waits (up to `DEADLINE`) for it to exit and returns its status
    /// and what it logged. Panics if it is still running then (and kills it).
    pub fn spawn_expect_exit(&mut self) -> (std::process::ExitStatus, String) {
        assert!(self.child.is_none(), "agent already running");
        let before = self.agent_log().len();
        let mut child = self.launch();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                let text = self.agent_log();
                return (status, text.get(before..).unwrap_or(&text).to_string());
            }
            if start.elapsed() > DEADLINE {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dynoagent kept running for {DEADLINE:?} on a configuration it should refuse:\n{}",
                    self.agent_log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
