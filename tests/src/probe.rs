//! Static probe programs for tests that must make raw syscalls from inside a
//! dyno, whose busybox stack has no libc: C sources in `tests/src/probes/`,
//! compiled with `gcc -static -O2` once per source text into cargo's
//! `target/tmp` (shared by every profile and test binary).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::env::target_tmp;

/// The keyring test's probe (`probes/keyring.c`).
pub const KEYRING: (&str, &str) = ("keyring", include_str!("probes/keyring.c"));

/// The network test's probe (`probes/net.c`): connects, held connections,
/// filled TCP buffers.
pub const NET: (&str, &str) = ("net", include_str!("probes/net.c"));

/// The memory tests' probe (`probes/mem.c`): allocates and holds MiB,
/// optionally after forking a sleeping child and after SIGUSR1.
pub const MEM: (&str, &str) = ("mem", include_str!("probes/mem.c"));

/// The static binary of `probe` (a name and its C source), compiled if this
/// source text was never compiled before. Panics, naming gcc's complaint, when
/// it cannot be built: a test never passes without its probe.
pub fn static_probe((name, source): (&str, &str)) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    source.hash(&mut hasher);
    let dir = target_tmp().join("e2e-probes");
    std::fs::create_dir_all(&dir).expect("target/tmp/e2e-probes");
    let bin = dir.join(format!("{name}-{:016x}", hasher.finish()));
    // One compiler at a time across test binaries.
    let lock = std::fs::File::create(dir.join(".lock")).expect("probe lock");
    let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).expect("flock");
    if !bin.is_file() {
        compile(name, source, &bin);
    }
    bin
}

fn compile(name: &str, source: &str, bin: &Path) {
    let c = bin.with_extension("c");
    let partial = bin.with_extension("partial");
    std::fs::write(&c, source).expect("write the probe's source");
    let out = Command::new("gcc")
        .args(["-static", "-O2", "-Wall", "-Werror", "-o"])
        .arg(&partial)
        .arg(&c)
        .output()
        .unwrap_or_else(|e| panic!("running gcc for the {name} probe: {e} (scripts/test installs gcc and libc6-dev)"));
    let _ = std::fs::remove_file(&c);
    assert!(
        out.status.success(),
        "gcc -static could not build the {name} probe (scripts/test installs gcc and libc6-dev): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::rename(&partial, bin).expect("install the probe");
}
