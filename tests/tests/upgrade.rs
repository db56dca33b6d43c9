//! Upgrading the agent under running dynos: dynos started by the previous
//! release (tag `v0.1.0`, built by `scripts/build-previous` into a target
//! directory of its own) are re-adopted, stopped and restarted by the agent
//! under test, as after `apt upgrade` restarts the service (KillMode=process
//! leaves the dynos running).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use dyno_tests::*;

/// The previous release's agent: `DYNO_E2E_PREVIOUS_AGENT`, else built from
/// the tag now (once; in a clone without the tag, from its commit by id;
/// without either, as in a shallow clone, the test fails).
fn previous_agent() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("DYNO_E2E_PREVIOUS_AGENT") {
            return PathBuf::from(bin);
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/build-previous");
        let out = Command::new(&script)
            .arg("v0.1.0")
            .output()
            .expect("run scripts/build-previous");
        assert!(
            out.status.success(),
            "scripts/build-previous v0.1.0 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

fn exe_of(pid: u32) -> PathBuf {
    std::fs::read_link(format!("/proc/{pid}/exe")).expect("the agent's binary")
}

#[test]
fn dynos_of_the_previous_release_are_readopted_stopped_and_restarted_after_an_upgrade() {
    let old = previous_agent();
    assert!(old.is_file(), "{} missing", old.display());
    // The launcher runs the old binary with the agent's command line.
    let launcher: Vec<OsString> = vec![
        "sh".into(),
        "-c".into(),
        format!("shift; exec '{}' \"$@\"", old.display()).into(),
        "sh".into(),
    ];
    let mut a = TestAgent::start_under(launcher, "");
    assert_eq!(exe_of(a.agent_pid()), old);
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.start_dyno("shop", "worker.2", &slug, "exec sleep 600");
    let w1 = a.wait_state("shop", "worker.1", "up");
    let w2 = a.wait_state("shop", "worker.2", "up");

    // The upgrade: the old agent stops (dynos keep running), the new one
    // starts on the same state.
    assert!(a.sigterm().success());
    assert!(alive(pid_of(&w1)) && alive(pid_of(&w2)));
    a.launcher = Vec::new();
    a.spawn();
    assert_eq!(exe_of(a.agent_pid()), agent_bin());
    let again = a.wait_state("shop", "worker.1", "up");
    assert_eq!(again["pid"], w1["pid"], "worker.1 re-adopted");
    assert_eq!(again["run_id"], w1["run_id"]);
    assert_eq!(
        a.wait_state("shop", "worker.2", "up")["pid"],
        w2["pid"],
        "worker.2 re-adopted"
    );

    // The new agent stops one and restarts the other.
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.1", "down");
    wait_for("the re-adopted worker.1 to be gone", || {
        (!alive(pid_of(&w1))).then_some(())
    });
    a.ctl_ok(&["restart", "--app", "shop", "worker.2"]);
    let restarted = a.wait_dyno("shop", "worker.2", "a new run", |d| {
        d["state"] == "up" && d["run_id"] != w2["run_id"] && d["pid"].is_u64()
    });
    assert_ne!(restarted["pid"], w2["pid"]);
    wait_for("the old run of worker.2 to be gone", || {
        (!alive(pid_of(&w2))).then_some(())
    });
    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "worker.2", "down");
}
