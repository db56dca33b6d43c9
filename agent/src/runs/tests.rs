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
