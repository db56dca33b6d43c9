//! The agent harness: a real `dynoagent` in a temporary state directory,
//! driven with the real `dynoctl` and a gRPC client over its Unix socket.
//!
//! Every [`TestAgent`] has its own state directory, socket, port range and
//! parent cgroup, so tests run in parallel. Dropping it (also when a test
//! fails) kills the agent and everything its runs started (see
//! [`cleanup`](crate::cleanup)) and removes the directory. Its configuration
//! file is written and edited by [`config`](crate::config).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dyno_proto::v1 as pb;
use serde_json::Value;
use tonic::transport::Channel;

use crate::env::{agent_bin, ctl_bin, require_root, stack};
use crate::wait::{DEADLINE, poll, wait_for};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// How often the harness looks at a process it waits for.
const EVERY: Duration = Duration::from_millis(20);

pub struct TestAgent {
    pub n: u32,
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub ports: (u16, u16),
    /// A program (and its arguments) that execs the agent's command line,
    /// e.g. to start it in a session keyring the test controls; empty: none.
    pub launcher: Vec<OsString>,
    /// On v2, the cgroup the launcher starts the agent in (a delegated
    /// subtree, as systemd's); `None`: the test's own.
    pub v2_base: Option<PathBuf>,
    pub(crate) child: Option<Child>,
    /// Whether `state` is a tmpfs of the test's own (unmounted on drop).
    pub(crate) tmpfs: bool,
    /// The agent's `DYNOAGENT_LOG` filter: `debug` for tests (their
    /// failures print the log); a benchmark measuring the agent's own cost
    /// asks for less.
    pub log_filter: String,
}

impl TestAgent {
    /// Starts an agent with [`FAST`](crate::config::FAST) durations plus
    /// `extra` configuration.
    pub fn start(extra: &str) -> TestAgent {
        TestAgent::start_under(Vec::new(), extra)
    }

    /// [`TestAgent::start`] logging at `filter` (`DYNOAGENT_LOG`, e.g.
    /// `info`) instead of `debug`.
    pub fn start_logging(extra: &str, filter: &str) -> TestAgent {
        let mut a = TestAgent::prepare(Vec::new(), extra);
        a.log_filter = filter.to_string();
        a.spawn();
        a
    }

    /// [`TestAgent::start`], the agent started by `launcher` (a program that
    /// execs its remaining arguments, the agent's command line; the agent
    /// keeps its pid).
    pub fn start_under(launcher: Vec<OsString>, extra: &str) -> TestAgent {
        let mut a = TestAgent::prepare(launcher, extra);
        a.spawn();
        a
    }

    /// [`TestAgent::start`] under a descriptor limit: the agent's
    /// `RLIMIT_NOFILE`, soft and hard, set to `nofile` by `prlimit` (which
    /// execs it, so the agent keeps its pid and cannot raise it).
    pub fn start_with_nofile(extra: &str, nofile: u64) -> TestAgent {
        let launcher = vec![
            "prlimit".into(),
            format!("--nofile={nofile}:{nofile}").into(),
            "--".into(),
        ];
        TestAgent::start_under(launcher, extra)
    }

    /// How many descriptors the agent has open now (`/proc/<pid>/fd`).
    pub fn open_fds(&self) -> u64 {
        let dir = format!("/proc/{}/fd", self.agent_pid());
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}")).count() as u64
    }

    /// [`TestAgent::start`] with its state directory on a tmpfs of `bytes`
    /// (to fill up), unmounted when the agent is dropped.
    pub fn start_on_tmpfs(extra: &str, bytes: u64) -> TestAgent {
        let mut a = TestAgent::prepare(Vec::new(), extra);
        std::fs::create_dir_all(&a.state).expect("state dir");
        nix::mount::mount(
            Some("tmpfs"),
            &a.state,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={bytes},mode=0700").as_str()),
        )
        .unwrap_or_else(|e| panic!("mounting a tmpfs on {}: {e}", a.state.display()));
        a.tmpfs = true;
        a.spawn();
        a
    }

    /// An agent's directory and configuration, not started yet.
    fn prepare(launcher: Vec<OsString>, extra: &str) -> TestAgent {
        require_root();
        let stack = stack();
        let dir = tempfile::Builder::new().prefix("dyno-e2e-").tempdir().expect("tempdir");
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        // Disjoint port ranges per agent, across test binaries too.
        let base = 30000 + ((std::process::id() % 97) * 300 + n * 20) as u16 % 30000;
        let ports = (base, base + 19);
        let config = dir.path().join("agent.toml");
        crate::config::write_initial(&config, n, ports, stack, extra);
        TestAgent {
            n,
            state: dir.path().join("state"),
            socket: dir.path().join("agent.sock"),
            config,
            ports,
            dir,
            launcher,
            v2_base: None,
            child: None,
            tmpfs: false,
            log_filter: "debug".to_string(),
        }
    }

    /// (Re)starts the agent process on the same state directory; returns once
    /// it answers `dynoctl ps`.
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
        // The socket appears once the engine has re-adopted and reaped;
        // the agent is up once it answers.
        wait_for("the agent to answer ps", || {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("dynoagent exited early with {status}:\n{}", self.agent_log());
            }
            self.ctl(&["ps"]).status.success().then_some(())
        });
    }

    /// Starts `dynoagent` on this agent's configuration, logging to `agent.log`.
    fn launch(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("agent.log"))
            .expect("agent log");
        let mut command = match self.launcher.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(agent_bin());
                c
            }
            None => Command::new(agent_bin()),
        };
        command
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .arg("--socket")
            .arg(&self.socket)
            .env("DYNOAGENT_LOG", &self.log_filter)
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
    pub fn sigterm(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        crate::procs::signal(c.id(), nix::sys::signal::Signal::SIGTERM);
        poll(DEADLINE, EVERY, || c.try_wait().expect("wait").ok_or(()))
            .unwrap_or_else(|()| panic!("agent did not exit after SIGTERM"))
    }

    /// Starts the agent on the current configuration expecting it to refuse
    /// to run: waits (up to `DEADLINE`) for it to exit and returns its status
    /// and what it logged. Panics if it is still running then (and kills it).
    pub fn spawn_expect_exit(&mut self) -> (ExitStatus, String) {
        assert!(self.child.is_none(), "agent already running");
        let before = self.agent_log().len();
        let mut child = self.launch();
        match poll(DEADLINE, EVERY, || child.try_wait().expect("wait").ok_or(())) {
            Ok(status) => {
                let text = self.agent_log();
                (status, text.get(before..).unwrap_or(&text).to_string())
            }
            Err(()) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dynoagent kept running for {DEADLINE:?} on a configuration it should refuse:\n{}",
                    self.agent_log()
                );
            }
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
        self.ctl_ok(&start_args(app, name, &show(slug), &["--command", command]))
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

    /// `dynoctl --json info` as JSON.
    pub fn info(&self) -> Value {
        serde_json::from_str(&self.ctl_ok(&["--json", "info"])).expect("info json")
    }

    /// Waits until the dyno satisfies `pred`; returns it.
    pub fn wait_dyno(&self, app: &str, name: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        poll(DEADLINE, Duration::from_millis(50), || match self.dyno(app, name) {
            Some(d) if pred(&d) => Ok(d),
            _ => Err(()),
        })
        .unwrap_or_else(|()| {
            panic!(
                "timed out waiting for {app}/{name}: {what}; last seen: {:?}\n--- agent log ---\n{}",
                self.dyno(app, name),
                self.agent_log()
            )
        })
    }

    /// Waits for a state; returns the dyno.
    pub fn wait_state(&self, app: &str, name: &str, state: &str) -> Value {
        self.wait_dyno(app, name, state, |d| d["state"] == state)
    }

    /// A `dyno.v1.Agent` client over the agent's socket.
    pub async fn client(&self) -> pb::agent_client::AgentClient<Channel> {
        let ch = dyno_agent::client::connect(&self.socket).await.expect("connect");
        pb::agent_client::AgentClient::new(ch)
    }

    /// A `dyno.v1.Usage` client over the agent's socket.
    pub async fn usage_client(&self) -> pb::usage_client::UsageClient<Channel> {
        let ch = dyno_agent::client::connect(&self.socket).await.expect("connect");
        pb::usage_client::UsageClient::new(ch)
    }

    /// A directory slug with the given files under `app/` (mode 0755).
    pub fn slug(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let root = self.dir.path().join("slugs").join(name);
        for (path, body) in files {
            let p = root.join("app").join(path);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, body).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        std::fs::create_dir_all(root.join("app")).expect("mkdir app");
        root
    }

    /// A `.tar.gz` slug holding `app/<path>` for each file (mode 0755),
    /// written next to the agent's directory slugs; returns its path.
    pub fn tarball(&self, name: &str, files: &[(&str, &str)]) -> PathBuf {
        let out = self.dir.path().join(format!("{name}.tgz"));
        std::fs::write(&out, crate::tarball::slug_tgz(files)).expect("write the tarball");
        out
    }
}

/// The words of `dynoctl start --app APP --name NAME --slug SLUG` followed
/// by `more` (`--command`, `--size`, `--env`, …), for [`TestAgent::ctl`].
pub fn start_args<'a>(app: &'a str, name: &'a str, slug: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut words = vec!["start", "--app", app, "--name", name, "--slug", slug];
    words.extend_from_slice(more);
    words
}

/// The words of `dynoctl run --app APP --slug SLUG` followed by `more`
/// (flags, then `--` and the command's words), for [`TestAgent::ctl`].
pub fn run_args<'a>(app: &'a str, slug: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut words = vec!["run", "--app", app, "--slug", slug];
    words.extend_from_slice(more);
    words
}

/// The text of each line (after `…]: `) of `dynoctl logs` output.
pub fn texts(logs: &str) -> Vec<String> {
    logs.lines()
        .filter_map(|l| l.split_once("]: ").map(|(_, t)| t.to_string()))
        .collect()
}

/// The time of a `dynoctl logs` line (its leading RFC 3339 stamp), in seconds.
pub fn log_stamp(line: &str) -> f64 {
    let ts = line.split_whitespace().next().expect("a timestamp");
    chrono::DateTime::parse_from_rfc3339(ts)
        .unwrap_or_else(|e| panic!("{ts}: {e}"))
        .timestamp_micros() as f64
        / 1e6
}

/// A path as an argument or in a message.
pub fn show(p: &Path) -> String {
    p.display().to_string()
}
