//! What the end-to-end tests run on: root, the binaries under test and the
//! stack image.
//!
//! The binaries are this package's own `e2e-dynoagent` and `e2e-dynoctl`
//! (cargo builds them before the tests and benches that use them): found by
//! `CARGO_BIN_EXE_<name>` when cargo sets it, else next to the profile
//! directory of the running test or bench (`target/<profile>/deps/…`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The end-to-end tests run real jails: they need root. They never pass
/// without having run.
pub fn require_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "the end-to-end tests start real jails and must run as root (scripts/test)"
    );
}

/// `target/<profile>`: the parent of the `deps/` directory holding the
/// running test or bench.
fn profile_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let deps = exe.parent().expect("the test binary's directory");
        deps.parent().expect("the profile directory").to_path_buf()
    })
}

/// A binary of this package, built by cargo for the same profile.
fn bin(name: &str) -> PathBuf {
    let path = std::env::var_os(format!("CARGO_BIN_EXE_{name}"))
        .map(PathBuf::from)
        .unwrap_or_else(|| profile_dir().join(name));
    assert!(
        path.is_file(),
        "{} is missing (built by cargo with the tests)",
        path.display()
    );
    path
}

/// The `dynoagent` under test.
pub fn agent_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| bin("e2e-dynoagent"))
}

/// The `dynoctl` under test.
pub fn ctl_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| bin("e2e-dynoctl"))
}

/// Cargo's `target/tmp` (shared by every profile), created if missing.
pub fn target_tmp() -> PathBuf {
    let target = profile_dir().parent().expect("the target directory");
    let tmp = target.join("tmp");
    std::fs::create_dir_all(&tmp).expect("target/tmp");
    tmp
}

/// The stack image every test agent serves as `default`, built once by
/// `rootfs/build.sh` into cargo's `target/tmp` (shared by every profile).
pub fn stack() -> &'static Path {
    static STACK: OnceLock<PathBuf> = OnceLock::new();
    STACK.get_or_init(|| {
        let dir = target_tmp().join("e2e-stack");
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

/// Whether this host's cgroups are v2 only (`/sys/fs/cgroup` a cgroup2
/// mount offering the memory controller), as in the VM of `scripts/vm-test`.
pub fn cgroup_v2() -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
}

/// On v2, the cgroup an agent started by this test process runs in and
/// puts its dynos' parent under (it inherits the test's cgroup; its own
/// leaf excluded).
pub fn v2_own_base() -> PathBuf {
    let text = std::fs::read_to_string("/proc/self/cgroup").expect("/proc/self/cgroup");
    let own = dyno_agent::cgroup::own_v2_cgroup(&text).expect("a 0:: line in /proc/self/cgroup");
    let mut base = Path::new("/sys/fs/cgroup").join(own.trim().trim_start_matches('/'));
    if base.file_name().is_some_and(|n| n == dyno_agent::cgroup::AGENT_LEAF) {
        base.pop();
    }
    base
}

/// How many times slower than this host the tests run (`DYNO_E2E_SLOWDOWN`,
/// default 1; scripts/test-v2 sets 10 for the emulated VM): durations a test
/// races against (boot timeouts, cool-offs) are this many times longer.
pub fn slowdown() -> u32 {
    std::env::var("DYNO_E2E_SLOWDOWN")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|n| *n >= 1)
        .unwrap_or(1)
}

/// `secs` seconds [`slowdown`] times over, as a configuration duration.
pub fn scaled_secs(secs: u32) -> String {
    format!("{}s", secs * slowdown())
}
