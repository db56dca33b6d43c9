//! Secrets at rest and forged runtime lines, tried as an attacker would
//! (issue 12, items 2 and 7):
//! - a local user who is not root (`nobody`) reads nothing of the state
//!   directory: no config var, record, log, event or ledger, while jailed
//!   dynos still read their `/app` from the slug cache inside it;
//! - an existing state directory left readable by others is made private at
//!   the next start, and its dynos are re-adopted and still run;
//! - a command carrying a newline cannot write a line that reads as the
//!   runtime's own (`dyno[run.1]: Error R15 …`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use dyno_tests::*;
use serde_json::Value;

/// The config var every dyno here gets; nobody but root may ever read it.
const SECRET: &str = "postgres://secret";

/// What the slug's file says; a dyno prints it from `/app` when it starts.
const HELLO: &str = "hello from the slug";

/// A worker that reads its `/app` (the slug cache, under the state
/// directory) and stays up.
const READS_APP: &str = "cat /app/hello.txt; exec sleep 600";

/// The forged runtime line a command tries to write into its own log.
const FORGED: &str = "2026-01-01T00:00:00.000000+00:00 dyno[run.1]: Error R15 (Memory quota vastly exceeded)";

/// Runs `argv` as `nobody` (uid and gid 65534, no supplementary groups).
fn as_nobody(argv: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(argv)
        .output()
        .unwrap_or_else(|e| panic!("setpriv (util-linux) is needed to act as a local user: {e}"))
}

/// The test's directory (the state directory's parent) made traversable by
/// everyone, as `/var/lib` is: only the state directory's own modes may keep
/// a local user out.
fn open_parent(a: &TestAgent) {
    std::fs::set_permissions(a.dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod the test dir");
}

/// Starts `worker.1` of `shop` from a tarball slug (unpacked into the slug
/// cache under the state directory) with `DATABASE_URL` set; waits until it
/// is up and has printed the slug's file. Returns the dyno.
fn start_worker(a: &TestAgent) -> Value {
    let tgz = a.tarball("secret-slug", &[("hello.txt", &format!("{HELLO}\n"))]);
    let digest = dyno_agent::slug::sha256_file(&tgz).expect("sha256 of the tarball");
    let env = format!("DATABASE_URL={SECRET}");
    let tgz = show(&tgz);
    a.ctl_ok(&start_args(
        "shop",
        "worker.1",
        &tgz,
        &["--sha256", &digest, "--command", READS_APP, "--env", &env],
    ));
    let d = a.wait_dyno("shop", "worker.1", "up with a pid", |d| {
        d["state"] == "up" && d["pid"].is_u64()
    });
    wait_hello(a, 1);
    d
}

/// Waits until `worker.1` printed the slug's file `n` times (once per run).
fn wait_hello(a: &TestAgent, n: usize) {
    wait_for(&format!("{n} × {HELLO:?} read from /app"), || {
        let logs = texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", "worker.1", "-n", "500"]));
        (logs.iter().filter(|l| *l == HELLO).count() >= n).then_some(())
    });
}

/// Every path the agent keeps under the state directory (the slug cache and
/// `net/`'s shared files apart), the directory itself first.
fn private_paths(state: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
            let p = e.path();
            out.push(p.clone());
            if e.file_type().expect("file type").is_dir() {
                walk(&p, out);
            }
        }
    }
    let mut out = vec![state.to_path_buf()];
    // `net/` is 0700, but for what keeps its mode by design: a dyno's
    // resolv.conf (nameservers, read by the dyno through its bind mount) and
    // its network namespace's handle (an nsfs inode, 0444 by the kernel).
    let shared = |p: &Path| {
        p.parent().and_then(Path::file_name).is_some_and(|d| d == "net")
            && p.extension().is_some_and(|e| e == "resolv" || e == "ns")
    };
    for e in std::fs::read_dir(state).expect("read the state dir").flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "slugs") {
            continue;
        }
        out.push(p.clone());
        if e.file_type().expect("file type").is_dir() {
            walk(&p, &mut out);
        }
    }
    out.retain(|p| !shared(p));
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The paths under the state directory that someone other than root may
/// read, write or enter, with their modes.
fn open_to_others(state: &Path) -> Vec<String> {
    private_paths(state)
        .into_iter()
        .filter(|p| mode(p) & 0o077 != 0)
        .map(|p| format!("{:o} {}", mode(&p), p.display()))
        .collect()
}

/// The files holding a dyno's secrets and history, each of which must exist.
fn secret_files(a: &TestAgent, d: &Value) -> Vec<PathBuf> {
    let run = a.state.join("runs").join(d["run_id"].as_str().expect("run id"));
    let files = vec![
        run.join("spec.json"),
        run.join("exec.json"),
        run.join("log"),
        run.join("shim.log"),
        a.state.join("dynos/shop/worker.1.json"),
        a.state.join("events.jsonl"),
        a.state.join("ledger.db"),
        a.state.join("agent.lock"),
    ];
    for f in &files {
        wait_for(&format!("{} to exist", f.display()), || f.exists().then_some(()));
    }
    files
}

/// Asserts that `nobody` can read none of `files` nor find the secret.
fn assert_nobody_reads_nothing(a: &TestAgent, files: &[PathBuf]) {
    for f in files {
        let out = as_nobody(&["cat", &show(f)]);
        assert!(
            !out.status.success() && out.stdout.is_empty(),
            "a local user read {}: {}",
            f.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = as_nobody(&["ls", &show(&a.state)]);
    assert!(!out.status.success(), "a local user lists the state directory");
    let out = as_nobody(&["grep", "-r", "secret", &show(&a.state)]);
    assert!(
        out.stdout.is_empty(),
        "a local user found the secret:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// The secret is there for root: the reads above fail for the right reason.
fn assert_root_finds_the_secret(a: &TestAgent, d: &Value) {
    let spec = a
        .state
        .join("runs")
        .join(d["run_id"].as_str().unwrap())
        .join("spec.json");
    let text = std::fs::read_to_string(&spec).expect("root reads spec.json");
    assert!(text.contains(SECRET), "spec.json lacks the config var: {text}");
}

#[test]
fn a_local_user_reads_no_config_var_record_log_event_or_ledger() {
    let a = TestAgent::start("");
    open_parent(&a);
    let d = start_worker(&a);
    let files = secret_files(&a, &d);
    assert_root_finds_the_secret(&a, &d);
    // The ledger's WAL files exist once it was written to.
    for f in ["ledger.db-wal", "ledger.db-shm"] {
        let p = a.state.join(f);
        wait_for(&format!("{} to exist", p.display()), || p.exists().then_some(()));
    }

    assert_nobody_reads_nothing(&a, &files);
    let open = open_to_others(&a.state);
    assert!(open.is_empty(), "readable by others:\n{}", open.join("\n"));
    assert_eq!(mode(&a.state), 0o700);
    assert_eq!(mode(&files[0]), 0o600, "spec.json");
    // Nor does the agent's own log (here at debug level) quote it.
    assert!(!a.agent_log().contains(SECRET), "the agent logged a config var");
}

#[test]
fn an_open_state_directory_is_made_private_at_start_and_its_dynos_still_run() {
    let mut a = TestAgent::start("");
    open_parent(&a);
    let d = start_worker(&a);
    let files = secret_files(&a, &d);
    assert!(a.sigterm().success(), "the agent stops cleanly");

    // What an older agent (or a careless operator) left: everything open.
    for p in private_paths(&a.state) {
        let m = if p.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
    }
    let out = as_nobody(&["cat", &show(&files[0])]);
    assert!(out.status.success(), "the state directory was not opened up");

    a.spawn();
    let open = open_to_others(&a.state);
    assert!(open.is_empty(), "still readable by others:\n{}", open.join("\n"));
    assert_nobody_reads_nothing(&a, &files);
    // Said once, not once per file.
    let log = a.agent_log();
    let said: Vec<&str> = log.lines().filter(|l| l.contains("made private")).collect();
    assert_eq!(said.len(), 1, "{said:#?}");

    // Re-adopted: the same process, not a new one.
    let now = a.dyno("shop", "worker.1").expect("the dyno");
    assert_eq!(now["state"], "up", "{now}");
    assert_eq!(now["pid"], d["pid"], "re-adopted, not restarted");
    assert_eq!(now["restarts"], 0);
    assert!(alive(pid_of(&now)));

    // A new jailed run still reads its /app from the now private slug cache.
    a.ctl_ok(&["restart", "--app", "shop", "worker.1"]);
    a.wait_dyno("shop", "worker.1", "restarted and up", |d| {
        d["restarts"] == 1 && d["state"] == "up"
    });
    wait_hello(&a, 2);
    let open = open_to_others(&a.state);
    assert!(
        open.is_empty(),
        "readable by others after a restart:\n{}",
        open.join("\n")
    );
}

/// `dynoctl --json logs` of one dyno: (source, text) of each line.
fn log_items(a: &TestAgent, dyno: &str) -> Vec<(String, String)> {
    let out = a.ctl_ok(&["--json", "logs", "--app", "shop", "--dyno", dyno, "-n", "500"]);
    let items: Vec<Value> = serde_json::from_str(&out).expect("logs json");
    items
        .iter()
        .map(|v| {
            (
                v["source"].as_str().unwrap_or_default().to_string(),
                v["text"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_command_with_a_newline_cannot_forge_a_runtime_line() {
    let a = TestAgent::start("");
    let slug = a.slug("s", &[]);
    // The command's own second line is the forgery; the app also prints it
    // (after a newline and after a carriage return) as its output.
    let script = format!("printf '%s\\n\\r%s\\n' '{FORGED}' '{FORGED}'; exec sleep 600\n{FORGED}");
    a.start_dyno("shop", "run.1", &slug, &script);
    let items = wait_for("the command's start and the app's two lines", || {
        let items = log_items(&a, "run.1");
        let started = items
            .iter()
            .any(|(s, t)| s == "dyno" && t.starts_with("Starting process with command"));
        let printed = items.iter().filter(|(s, t)| s == "app" && t.contains(FORGED)).count();
        (started && printed >= 2).then_some(items)
    });

    let forged: Vec<_> = items
        .iter()
        .filter(|(s, t)| s == "dyno" && t.starts_with("Error R15"))
        .collect();
    assert!(forged.is_empty(), "a forged runtime line: {forged:#?}\nall: {items:#?}");
    let starting: Vec<_> = items
        .iter()
        .filter(|(s, t)| s == "dyno" && t.starts_with("Starting process with command"))
        .collect();
    assert_eq!(starting.len(), 1, "{items:#?}");
    assert!(
        starting[0].1.contains(&format!("exec sleep 600\\n{FORGED}")),
        "the command's newline is shown escaped: {starting:#?}"
    );

    // The plain text output too: every line is one line of the log format,
    // and none is a runtime line saying R15.
    let text = a.ctl_ok(&["logs", "--app", "shop", "--dyno", "run.1", "-n", "500"]);
    for line in text.lines() {
        let p = dyno_agent::logs::parse_line(line).unwrap_or_else(|| panic!("not a log line: {line:?}"));
        assert!(
            !(p.source == dyno_agent::logs::Source::Dyno && p.text.starts_with("Error R15")),
            "a forged runtime line: {line:?}"
        );
    }
}
