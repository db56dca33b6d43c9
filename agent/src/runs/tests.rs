//! Unit tests of run records: atomic writes and reads.

use super::*;

#[test]
fn atomic_write_roundtrips_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exit.json");
    let rec = ExitRecord {
        code: Some(3),
        signal: None,
        exited_at: chrono::Utc::now(),
    };
    write_json_atomic(&path, &rec).unwrap();
    assert_eq!(read_json::<ExitRecord>(&path).unwrap(), Some(rec));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["exit.json"]);
}

#[test]
fn missing_record_is_none_and_garbage_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exec.json");
    assert_eq!(read_json::<ExecRecord>(&path).unwrap(), None);
    fs::write(&path, b"{not json").unwrap();
    let err = read_json::<ExecRecord>(&path).unwrap_err();
    assert!(err.to_string().contains("exec.json"), "{err}");
}

#[test]
fn records_are_created_readable_by_root_only_even_over_a_stale_temp_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spec.json");
    // What a crash of an older agent left: its temp file, readable by all.
    let stale = dir.path().join(format!(".spec.json.tmp.{}", std::process::id()));
    fs::write(&stale, b"old").unwrap();
    fs::set_permissions(&stale, fs::Permissions::from_mode(0o644)).unwrap();
    write_atomic(&path, b"{}").unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(fs::read(&path).unwrap(), b"{}");
    assert!(!stale.exists());
}
