//! Starts that can never exec (issue 13 item 4, DESIGN §4, §9): an
//! environment the kernel's `execve` would refuse is `INVALID_ARGUMENT` at
//! the start, naming the field and the sizes; and a run whose exec fails
//! inside the jail anyway is `spawn_failed` with the exec's error in
//! `last_exit.message`, never `lost` or a crash, and leaves no cgroup,
//! network or process behind.

use std::path::Path;
use std::time::Duration;

use dyno_proto::v1 as pb;
use dyno_tests::*;
use tonic::Code;

/// Names of the run cgroups left under the agent's parent cgroups.
fn run_cgroups(a: &TestAgent) -> Vec<String> {
    a.run_cgroups_left().iter().map(|p| p.display().to_string()).collect()
}

/// The network namespace files the agent has under its state directory.
fn netns_files(a: &TestAgent) -> Vec<String> {
    std::fs::read_dir(a.state.join("net"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "ns"))
        .map(|p| p.display().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_environment_exec_would_refuse_is_refused_at_the_start() {
    let a = TestAgent::start("");
    let slug = a.slug("big", &[]);
    // A dyno that runs, so that there is a parent cgroup to look in.
    a.start_dyno("fine", "worker.1", &slug, "exec sleep 600");
    let fine = a.wait_state("fine", "worker.1", "up");
    let fine_cgroup = |p: &String| p.ends_with(fine["run_id"].as_str().unwrap());
    let mut c = a.client().await;
    // 100 values of 32 KiB: 3.2 MB, more than exec takes.
    let env = (0..100).map(|i| (format!("BIG_{i}"), "x".repeat(32 * 1024))).collect();
    let req = pb::StartDynoRequest {
        app: "bigenv".into(),
        name: "worker.1".into(),
        command: "exec sleep 600".into(),
        slug: show(&slug),
        env,
        ..Default::default()
    };
    let status = c.start_dyno(req).await.expect_err("an environment exec refuses");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let msg = status.message();
    assert!(msg.starts_with("env: "), "{msg}");
    assert!(msg.contains("ARG_MAX") && msg.contains("bytes"), "{msg}");
    assert!(msg.len() < 400, "{msg}");
    // Nothing was created for it.
    assert!(a.dyno("bigenv", "worker.1").is_none(), "{:?}", a.ps());
    assert!(run_cgroups(&a).iter().all(fine_cgroup), "{:?}", run_cgroups(&a));
    // A command alone too long for one argument is refused as well (the
    // request limit on a command is below it: refused as too long).
    let req = pb::StartDynoRequest {
        app: "bigenv".into(),
        name: "worker.1".into(),
        command: "x".repeat(200 * 1024),
        slug: show(&slug),
        ..Default::default()
    };
    let status = c.start_dyno(req).await.expect_err("a command exec refuses");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("command: "), "{status:?}");
}

/// A copy of the kit's stack whose `/bin/sh` is not executable: every exec
/// of a run fails inside the jail, after the init has forked the command.
fn stack_without_a_shell(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let copy = dir.join("stack-no-sh");
    let out = std::process::Command::new("cp")
        .arg("-a")
        .arg(stack())
        .arg(&copy)
        .output()
        .expect("cp");
    assert!(out.status.success(), "cp -a: {}", String::from_utf8_lossy(&out.stderr));
    let sh = copy.join("bin/sh");
    std::fs::remove_file(&sh).expect("remove bin/sh");
    std::fs::write(&sh, "not a program\n").expect("write bin/sh");
    std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    copy
}

#[test]
fn a_run_whose_exec_fails_in_the_jail_is_spawn_failed_and_leaves_nothing() {
    let mut a = TestAgent::start("");
    let broken = stack_without_a_shell(a.dir.path());
    assert!(a.sigterm().success());
    let mut config = std::fs::read_to_string(&a.config).expect("config");
    config.push_str(&format!("noshell = \"{}\"\n", broken.display()));
    std::fs::write(&a.config, config).expect("config");
    a.spawn();
    let slug = a.slug("noexec", &[]);
    a.ctl_ok(&start_args(
        "noexec",
        "worker.1",
        &show(&slug),
        &["--stack", "noshell", "--command", "exec sleep 600"],
    ));
    // A spawn failure, tried again on the short backoff: never the app's
    // crash, never lost.
    let d = a.wait_dyno("noexec", "worker.1", "a second failed exec", |d| {
        d["last_exit"]["reason"] == "spawn_failed" && d["restarts"].as_u64() >= Some(1)
    });
    assert_eq!(d["state"], "starting", "{d}");
    assert!(d["pid"].is_null(), "{d}");
    let message = d["last_exit"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exec /bin/sh") && message.contains("Permission denied"),
        "{d}"
    );
    // The scheduler sees why, apart from how the last run ended.
    let spawn_error = &d["last_spawn_error"];
    assert!(
        spawn_error["message"]
            .as_str()
            .is_some_and(|m| m.contains("exec /bin/sh") && m.contains("Permission denied")),
        "{d}"
    );
    assert!(
        spawn_error["run_id"].is_string() && spawn_error["at"].is_string(),
        "{d}"
    );
    let log = a.agent_log();
    assert!(!log.contains("reason=lost") && !log.contains("\"lost\""), "{log}");
    a.ctl_ok(&["stop", "--app", "noexec"]);
    let d = a.wait_state("noexec", "worker.1", "down");
    assert_ne!(d["last_exit"]["reason"], "lost", "{d}");
    // Nothing of any attempt is left: no run cgroup (so no process), no
    // network namespace, no run directory with a spec or exec record.
    let left = poll(DEADLINE, Duration::from_millis(100), || {
        let mut left = run_cgroups(&a);
        left.extend(netns_files(&a));
        for run in std::fs::read_dir(a.state.join("runs")).into_iter().flatten().flatten() {
            for f in ["spec.json", "exec.json"] {
                if run.path().join(f).exists() {
                    left.push(run.path().join(f).display().to_string());
                }
            }
        }
        if left.is_empty() { Ok(()) } else { Err(left) }
    });
    if let Err(left) = left {
        panic!("failed execs left {left:?}\n{}", a.agent_log());
    }
}
