//! Tests of what both backends share: the limits and their conversions,
//! the rules for names, and telling v1 from v2 from nothing.

use std::fs;
use std::path::PathBuf;

use super::fake::fake_v2;
use super::testkit::size;
use super::{DEFAULT_PARENT, Error, Limits, Version, check_name, check_parent, detect, shares_to_weight};

#[test]
fn shares_convert_to_weights_like_runc() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(2048), 79);
    assert_eq!(shares_to_weight(8192), 313);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(0), 1);
    assert_eq!(shares_to_weight(u64::MAX), 10_000);
}

#[test]
fn quotas_are_microseconds_per_period() {
    assert_eq!(size("standard-1x").cpu_quota_us(), Some(100_000));
    assert_eq!(size("standard-2x").cpu_quota_us(), Some(200_000));
    assert_eq!(size("performance-m").cpu_quota_us(), None);
    let tiny = Limits {
        cpu_quota: Some(0.001),
        ..size("standard-1x")
    };
    assert_eq!(tiny.cpu_quota_us(), Some(1000));
}

#[test]
fn bad_names_and_limits_are_refused() {
    for name in ["", ".", "..", ".x", "a/b", "a b", "x\0", "é", &"a".repeat(201)] {
        assert!(matches!(check_name(name), Err(Error::InvalidName(_))), "{name:?}");
    }
    for name in ["web.1", "run-7", "0b8e7f4c-1d2e-4f00-9a1b-1234567890ab", "a:b@c_d"] {
        check_name(name).unwrap();
    }
    assert_eq!(check_parent("/a/b/").unwrap(), PathBuf::from("a/b"));
    assert!(check_parent("a/../b").is_err());
    assert!(check_parent("").is_err());
    for bad in [
        Limits {
            cpu_quota: Some(0.0),
            ..size("standard-1x")
        },
        Limits {
            cpu_quota: Some(f64::NAN),
            ..size("standard-1x")
        },
        Limits {
            memory_bytes: 0,
            ..size("standard-1x")
        },
        Limits {
            pids_max: 0,
            ..size("standard-1x")
        },
    ] {
        assert!(matches!(bad.validate(), Err(Error::InvalidLimits(_))), "{bad:?}");
    }
}

#[test]
fn detect_tells_v2_from_v1_from_nothing() {
    let (tmp, _) = fake_v2();
    assert_eq!(detect(tmp.path(), DEFAULT_PARENT).unwrap().version(), Version::V2);

    let v1 = tempfile::tempdir().unwrap();
    for c in ["memory", "cpu", "cpuacct", "pids", "freezer"] {
        fs::create_dir(v1.path().join(c)).unwrap();
        fs::write(v1.path().join(c).join("cgroup.procs"), "").unwrap();
    }
    // A cgroup2 mount without the memory controller (this host's
    // /sys/fs/cgroup/unified) beside the v1 hierarchies.
    fs::write(v1.path().join("cgroup.controllers"), "hugetlb\n").unwrap();
    let found = detect(v1.path(), DEFAULT_PARENT).unwrap();
    assert_eq!(found.version(), Version::V1);
    assert!(found.list().unwrap().is_empty());

    fs::remove_dir_all(v1.path().join("pids")).unwrap();
    let err = detect(v1.path(), DEFAULT_PARENT).err().unwrap();
    assert!(
        matches!(err, Error::MissingController { controller: "pids", .. }),
        "{err}"
    );

    let empty = tempfile::tempdir().unwrap();
    assert!(matches!(
        detect(empty.path(), DEFAULT_PARENT),
        Err(Error::NoHierarchy(_))
    ));
    assert_eq!(Version::V1.to_string(), "v1");
}
