//! Kernel keyrings and the syscalls a dyno never needs, probed as an attacker
//! from inside dynos of two apps with a static probe (`tests/src/probes/
//! keyring.c`): a key root put in the agent's session keyring cannot be found
//! or read, a key a dyno tries to add is refused (so no other app can read
//! it), and `io_uring_setup`, `userfaultfd`, `perf_event_open` and `bpf` fail.
//!
//! Every agent here runs in an anonymous session keyring the test creates
//! (the probe's `host-session` mode, as systemd gives each service a private
//! one), holding a key that root added before the agent started; the keyring
//! and everything in it go away with the agent and its runs.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use dyno_tests::probe::{KEYRING, static_probe};
use dyno_tests::*;
use nix::errno::Errno;

/// An agent in a session keyring of its own holding root's key
/// `description` = `payload`; returns it with the key's serial.
fn agent_with_root_key(description: &str, payload: &str) -> (TestAgent, i64) {
    let launcher: Vec<OsString> = vec![
        static_probe(KEYRING).into(),
        "host-session".into(),
        description.into(),
        payload.into(),
        "--".into(),
    ];
    let a = TestAgent::start_under(launcher, "");
    let log = a.agent_log();
    let serial = kv(&log)
        .get("root_key")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("the launcher added no key to the agent's session keyring:\n{log}"));
    (a, serial)
}

/// A directory slug holding the probe as `/app/keyring-probe`.
fn probe_slug(a: &TestAgent) -> PathBuf {
    let slug = a.slug("keyring-probe", &[]);
    let bin = slug.join("app/keyring-probe");
    std::fs::copy(static_probe(KEYRING), &bin).expect("copy the probe into the slug");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod the probe");
    slug
}

/// Runs the probe with `args` in a one-off dyno of `app`; returns its
/// `name=value` lines (and the whole output, for messages).
fn probe(a: &TestAgent, app: &str, slug: &Path, args: &[&str]) -> (BTreeMap<String, String>, String) {
    let slug = show(slug);
    let mut argv = vec!["run", "--app", app, "--slug", &slug, "--", "/app/keyring-probe"];
    argv.extend_from_slice(args);
    let out = a.ctl(&argv);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "probe {args:?} in {app}: {}; stdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    (kv(&stdout), stdout)
}

/// `key=value` lines (the first occurrence of a key wins).
fn kv(out: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once('=') {
            m.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    m
}

/// The errno a probe printed for `name` (0: the call succeeded).
fn errno(m: &BTreeMap<String, String>, name: &str, out: &str) -> i32 {
    m.get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the probe printed no {name}=…; output:\n{out}"))
}

/// Asserts that a `find` probe found and read nothing: every way of looking
/// failed and `payload` appears nowhere in its output.
fn assert_found_nothing(app: &str, m: &BTreeMap<String, String>, out: &str, payload: &str) {
    for way in ["search", "request"] {
        assert_ne!(errno(m, way, out), 0, "{app}'s dyno found the key by {way}:\n{out}");
    }
    if m.contains_key("read_by_serial") {
        assert_ne!(
            errno(m, "read_by_serial", out),
            0,
            "{app}'s dyno read the key by serial:\n{out}"
        );
    }
    assert!(!out.contains(payload), "{app}'s dyno read the payload:\n{out}");
}

#[test]
fn a_key_root_added_to_the_agents_session_keyring_is_out_of_every_dynos_reach() {
    let description = format!("dyno-e2e-root-{}", std::process::id());
    let payload = format!("root-secret-{}", std::process::id());
    let (a, serial) = agent_with_root_key(&description, &payload);
    let slug = probe_slug(&a);
    let agent_session = kv(&a.agent_log())
        .get("session")
        .cloned()
        .expect("the agent's session keyring");
    for app in ["alpha", "beta"] {
        let (m, out) = probe(&a, app, &slug, &["find", &description, &serial.to_string()]);
        assert_ne!(
            m.get("session_id"),
            Some(&agent_session),
            "{app}'s dyno is in the agent's session keyring:\n{out}"
        );
        assert_found_nothing(app, &m, &out, &payload);
    }
}

#[test]
fn a_key_a_dyno_adds_is_refused_and_never_reaches_another_apps_dyno() {
    let n = std::process::id();
    let (a, _) = agent_with_root_key(&format!("dyno-e2e-root-{n}-b"), "unused");
    let slug = probe_slug(&a);
    let description = format!("dyno-e2e-alpha-{n}");
    let payload = format!("alpha-secret-{n}");
    let (added, add_out) = probe(&a, "alpha", &slug, &["add", &description, &payload]);
    let mut find = vec!["find", description.as_str()];
    if let Some(serial) = added.get("serial") {
        find.push(serial);
    }
    let (m, out) = probe(&a, "beta", &slug, &find);
    assert_found_nothing("beta", &m, &out, &payload);
    assert_ne!(
        errno(&added, "add", &add_out),
        0,
        "alpha's dyno added a key:\n{add_out}"
    );
}

#[test]
fn io_uring_userfaultfd_perf_events_and_bpf_fail_inside_a_dyno() {
    let a = TestAgent::start("");
    let slug = probe_slug(&a);
    let (m, out) = probe(&a, "alpha", &slug, &["syscalls"]);
    for call in ["io_uring_setup", "userfaultfd", "perf_event_open", "bpf"] {
        assert_eq!(
            errno(&m, call, &out),
            Errno::ENOSYS as i32,
            "{call} inside a dyno (0 = it worked):\n{out}"
        );
    }
}
