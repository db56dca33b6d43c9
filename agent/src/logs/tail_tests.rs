//! Unit tests of the backwards tail and the forwards line reader.

use std::io::Write;

use super::*;

fn file_with(text: &[u8]) -> (tempfile::TempDir, File) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log");
    std::fs::File::create(&path).unwrap().write_all(text).unwrap();
    let f = File::open(&path).unwrap();
    (dir, f)
}

fn numbered(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| format!("line {i}\n").into_bytes()).collect()
}

#[test]
fn the_last_lines_are_found_backwards_across_blocks() {
    // ~1.3 MB: many blocks; only the end is read.
    let text = numbered(130_000);
    let (_d, f) = file_with(&text);
    let t = last_lines(&f, text.len() as u64, 3, 1 << 20).unwrap();
    assert_eq!(t.lines, ["line 129997", "line 129998", "line 129999"]);
    assert!(t.partial.is_empty());
    assert!(!t.whole);
    assert_eq!(t.bytes, "line 129997\n".len() * 3);
}

#[test]
fn a_line_across_a_block_boundary_is_whole() {
    let mut text = vec![b'a'; BLOCK as usize - 3];
    text.extend_from_slice(b"\nspans the boundary\nlast\n");
    let (_d, f) = file_with(&text);
    let t = last_lines(&f, text.len() as u64, 2, 1 << 20).unwrap();
    assert_eq!(t.lines, ["spans the boundary", "last"]);
}

#[test]
fn fewer_lines_than_asked_reach_the_start() {
    let (_d, f) = file_with(b"one\ntwo\nthr");
    let t = last_lines(&f, 11, 10, 1 << 20).unwrap();
    assert_eq!(t.lines, ["one", "two"]);
    assert_eq!(t.partial, b"thr");
    assert!(t.whole);
    let empty = last_lines(&f, 0, 10, 1 << 20).unwrap();
    assert!(empty.lines.is_empty() && empty.whole);
    let none = last_lines(&f, 11, 0, 1 << 20).unwrap();
    assert!(none.lines.is_empty() && !none.whole);
}

#[test]
fn the_budget_bounds_what_is_held() {
    let text = numbered(300_000);
    let (_d, f) = file_with(&text);
    let t = last_lines(&f, text.len() as u64, 300_000, 256 * 1024).unwrap();
    assert!(t.bytes <= 256 * 1024 + BLOCK as usize, "{}", t.bytes);
    assert!(t.lines.len() > 1000);
    assert_eq!(t.lines.last().unwrap(), "line 299999");
    // Only whole lines, in order.
    let first: usize = t.lines[0].strip_prefix("line ").unwrap().parse().unwrap();
    assert_eq!(first + t.lines.len(), 300_000);
    assert!(!t.whole);
}

#[test]
fn lines_reads_forwards_and_keeps_an_unfinished_line() {
    let (_d, f) = file_with(b"a\nb\nunfinished");
    let mut lines = Lines::new(f);
    assert_eq!(lines.by_ref().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(lines.partial, b"unfinished");
    let mut file = lines.into_file();
    use std::io::Seek;
    assert_eq!(file.stream_position().unwrap(), 14);
}
