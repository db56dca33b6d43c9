//! The usage probe, on v2 against the fake cgroup2 fs (on v1 it is tested for
//! real in `v1_tests.rs`).

use std::fs;
use std::io::Write as _;

use crate::cgroup::Cgroups as _;
use crate::cgroup::Usage;
use crate::cgroup::fake::fake_v2;
use crate::cgroup::testkit::size;

#[test]
fn v2_usage_probe_reads_cpu_and_resets_the_peak_through_its_fd() {
    let (tmp, cgroups) = fake_v2();
    let cg = cgroups.create("web-1", &size("standard-1x")).unwrap();
    let dir = tmp.path().join("dynoagent/web-1");
    fs::write(
        dir.join("cpu.stat"),
        "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
    )
    .unwrap();
    fs::write(dir.join("memory.peak"), "4096\n").unwrap();
    let mut probe = cg.usage_probe().unwrap();
    assert_eq!(
        probe.read().unwrap(),
        Usage {
            cpu_ns: 2_500_000,
            mem_peak_bytes: 4096
        }
    );
    // The reset went to memory.peak (a fake file keeps what was written).
    assert!(
        fs::read_to_string(dir.join("memory.peak"))
            .unwrap()
            .starts_with("reset")
    );
    // The probe keeps its descriptors: the kernel rewrites the same files in place.
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cpu.stat"))
        .unwrap()
        .write_all(b"usage_usec 9000\nuser_usec 8000\nsystem_usec 1000\n")
        .unwrap();
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("memory.peak"))
        .unwrap()
        .write_all(b"1024\n")
        .unwrap();
    assert_eq!(
        probe.read().unwrap(),
        Usage {
            cpu_ns: 9_000_000,
            mem_peak_bytes: 1024
        }
    );
    // A malformed file is an error naming it.
    fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(dir.join("cpu.stat"))
        .unwrap()
        .write_all(b"user_usec 1\n")
        .unwrap();
    let err = probe.read().unwrap_err().to_string();
    assert!(err.contains("cpu.stat") && err.contains("usage_usec"), "{err}");
    // Without memory.peak (before Linux 5.19) there is no probe, and the error says which file.
    fs::remove_file(dir.join("memory.peak")).unwrap();
    let err = cg.usage_probe().err().expect("no memory.peak").to_string();
    assert!(err.contains("memory.peak"), "{err}");
}
