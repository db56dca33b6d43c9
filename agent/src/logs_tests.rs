//! Unit tests of the log format, rotation, the rate limit, tail and follow.

use super::*;
use chrono::TimeZone;

fn bounds(max_bytes: u64) -> Bounds {
    Bounds {
        max_bytes,
        ..Bounds::default()
    }
}

#[test]
fn line_format_is_the_contract() {
    let at = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + chrono::Duration::microseconds(123456);
    assert_eq!(
        format_line(at, Source::App, "web.1", "hello"),
        "2026-11-22T10:00:00.123456+00:00 app[web.1]: hello\n"
    );
    assert_eq!(
        format_line(at, Source::Dyno, "web.1", "State changed from starting to up"),
        "2026-11-22T10:00:00.123456+00:00 dyno[web.1]: State changed from starting to up\n"
    );
}

#[test]
fn parse_roundtrips() {
    let line = "2026-11-22T10:00:00.123456+00:00 app[worker.3]: a: b]: c";
    let p = parse_line(line).unwrap();
    assert_eq!(p.timestamp, "2026-11-22T10:00:00.123456+00:00");
    assert_eq!(p.source, Source::App);
    assert_eq!(p.dyno, "worker.3");
    assert_eq!(p.text, "a: b]: c");
    assert_eq!(parse_line("garbage"), None);
}

#[test]
fn writer_splits_lines_per_stream_and_bounds_long_ones() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(1 << 20)).unwrap();
    w.feed(0, b"one\ntw").unwrap();
    w.feed(1, b"err\r\n").unwrap();
    w.feed(0, b"o\n").unwrap();
    w.feed(0, &vec![b'x'; MAX_LINE + 5]).unwrap();
    w.feed(0, b"tail-without-newline").unwrap();
    w.finish().unwrap();
    let texts: Vec<String> = tail(&log, 100)
        .iter()
        .map(|l| parse_line(l).unwrap().text.to_string())
        .collect();
    assert_eq!(texts[..3], ["one", "err", "two"]);
    assert_eq!(texts[3].len(), MAX_LINE);
    assert_eq!(texts[4], "xxxxxtail-without-newline");
    assert_eq!(texts.len(), 5);
}

#[test]
fn writer_rotates_and_tail_spans_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(4096)).unwrap();
    for i in 0..200 {
        w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
    }
    assert!(fs::metadata(&log).unwrap().len() <= 4096);
    assert!(fs::metadata(rotated(&log)).unwrap().len() <= 4096);
    let last = tail(&log, 3);
    let texts: Vec<_> = last.iter().map(|l| parse_line(l).unwrap().text).collect();
    assert_eq!(texts, ["line 197", "line 198", "line 199"]);
}

#[test]
fn follower_sees_new_lines_across_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(4096)).unwrap();
    w.feed(0, b"before\n").unwrap();
    let mut f = Follower::new(log.clone(), false);
    assert!(f.poll().is_empty());
    let mut seen = Vec::new();
    for i in 0..300 {
        w.feed(0, format!("n{i}\n").as_bytes()).unwrap();
        if i % 7 == 0 {
            seen.extend(f.poll());
        }
    }
    seen.extend(f.poll());
    let texts: Vec<String> = seen.iter().map(|l| parse_line(l).unwrap().text.to_string()).collect();
    let want: Vec<String> = (0..300).map(|i| format!("n{i}")).collect();
    assert_eq!(texts, want);
}

#[test]
fn runtime_lines_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    append_runtime(&log, "run.1", "Starting process with command `true`", 4096).unwrap();
    let lines = tail(&log, 10);
    let p = parse_line(&lines[0]).unwrap();
    assert_eq!(
        (p.source, p.dyno, p.text),
        (Source::Dyno, "run.1", "Starting process with command `true`")
    );
}

#[test]
fn control_characters_are_escaped_and_the_rest_kept() {
    assert!(matches!(escape_control("plain `cmd` \\n é"), Cow::Borrowed(_)));
    assert_eq!(
        escape_control("a\nb\r\tc\x1b[31m\x7f\u{85}\u{2028}d"),
        "a\\nb\\r\\tc\\x1b[31m\\x7f\\u{85}\\u{2028}d"
    );
    assert_eq!(escape_control("\0"), "\\x00");
}

#[test]
fn a_runtime_line_quoting_a_newline_stays_one_line() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("log");
    let forged = "2026-01-01T00:00:00.000000+00:00 dyno[run.1]: Error R15 (Memory quota vastly exceeded)";
    append_runtime(
        &log,
        "run.1",
        &format!("Starting process with command `x\n{forged}`"),
        1 << 20,
    )
    .unwrap();
    let text = fs::read_to_string(&log).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    let p = parse_line(text.trim_end_matches('\n')).unwrap();
    assert_eq!(p.source, Source::Dyno);
    assert_eq!(p.text, format!("Starting process with command `x\\n{forged}`"));
}

#[test]
fn an_app_line_never_parses_as_a_runtime_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let mut w = LogWriter::open(path.clone(), "web.1", bounds(1 << 20)).unwrap();
    let forged = "2026-01-01T00:00:00.000000+00:00 dyno[web.1]: Error R15 (Memory quota vastly exceeded)";
    w.feed(0, format!("{forged}\n\r{forged}\n]: {forged}\n").as_bytes())
        .unwrap();
    w.finish().unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for line in lines {
        assert_eq!(parse_line(line).unwrap().source, Source::App, "{line:?}");
    }
}

#[test]
fn logs_are_created_readable_by_root_only() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("log");
    let mut w = LogWriter::open(path.clone(), "web.1", bounds(64)).unwrap();
    w.feed(0, b"a line that fills the log past its bound\n").unwrap();
    w.feed(0, b"and one that rotates it\n").unwrap();
    append_runtime(
        &tmp.path().join("other"),
        "web.1",
        "State changed from starting to up",
        1 << 20,
    )
    .unwrap();
    for p in [path.clone(), rotated(&path), tmp.path().join("other")] {
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            p.display()
        );
    }
}

#[test]
fn a_batch_of_tiny_lines_never_takes_the_log_past_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(4096)).unwrap();
    // One 64 KiB read of `x` lines formats to about 1.5 MB.
    let flood: Vec<u8> = b"x\n".repeat(32 * 1024);
    w.feed(0, &flood[..20_000]).unwrap();
    assert!(fs::metadata(&log).unwrap().len() <= 4096);
    assert!(fs::metadata(rotated(&log)).unwrap().len() <= 4096);
    // The runtime's lines obey the same bound, and one longer than it is cut.
    let long = "y".repeat(MAX_LINE);
    append_runtime(&log, "web.1", &long, 4096).unwrap();
    assert_eq!(fs::metadata(&log).unwrap().len(), 4096);
    let last = tail(&log, 1).pop().unwrap();
    assert!(parse_line(&last).unwrap().text.starts_with("yyy"));
}

#[test]
fn lines_of_a_batch_read_as_format_line_writes_them() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(1 << 20)).unwrap();
    let wall = Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap();
    w.feed_at(1, b"one\ntwo\r\n", Instant::now(), wall).unwrap();
    let want = format_line(wall, Source::App, "web.1", "one") + &format_line(wall, Source::App, "web.1", "two");
    assert_eq!(fs::read_to_string(&log).unwrap(), want);
}

#[test]
fn past_the_burst_lines_are_dropped_counted_and_reported_as_l10() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let limits = Bounds {
        max_bytes: 1 << 20,
        rate_lines: 10,
        burst: 5,
    };
    let mut w = LogWriter::open(log.clone(), "web.1", limits).unwrap();
    let (t0, wall) = (Instant::now(), Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap());
    let chunk: Vec<u8> = (0..20).flat_map(|i| format!("n{i}\n").into_bytes()).collect();
    // The last line is unfinished when the limit hits: it is dropped too.
    w.feed_at(0, &chunk, t0, wall).unwrap();
    w.feed_at(0, b"part", t0, wall).unwrap();
    w.feed_at(0, b"ial\n", t0 + Duration::from_millis(10), wall).unwrap();
    assert_eq!(w.next_report().map(|d| d <= rate::REPORT_EVERY), Some(true));
    // A second later: two tokens earned... and the count of the 16 dropped.
    let later = t0 + Duration::from_millis(1000);
    w.feed_at(0, b"back\nagain\n", later, wall).unwrap();
    let texts: Vec<String> = tail(&log, 100)
        .iter()
        .map(|l| parse_line(l).unwrap().text.to_string())
        .collect();
    assert_eq!(
        texts,
        [
            "n0",
            "n1",
            "n2",
            "n3",
            "n4",
            "back",
            "again",
            "Error L10 (output buffer overflow): 16 messages dropped since 2026-11-22T10:00:00+00:00."
        ]
    );
    assert_eq!(w.next_report(), None);
    // Drops not yet reported are at the end of the run.
    w.feed_at(0, &chunk, later, wall).unwrap();
    w.finish().unwrap();
    let last = tail(&log, 1).pop().unwrap();
    let p = parse_line(&last).unwrap();
    assert_eq!(p.source, Source::Dyno);
    assert!(p.text.starts_with("Error L10 (output buffer overflow): "), "{last}");
}

fn texts_of(lines: &[String]) -> Vec<String> {
    lines.iter().map(|l| parse_line(l).unwrap().text.to_string()).collect()
}

#[test]
fn a_tail_reaches_into_the_rotated_log_and_its_follower_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(4096)).unwrap();
    for i in 0..200 {
        w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
    }
    let in_current = fs::read_to_string(&log).unwrap().lines().count();
    let n = in_current + 5;
    let (lines, mut f) = tail_and_follow(&log, n, TAIL_BUDGET);
    let want: Vec<String> = (200 - n..200).map(|i| format!("line {i}")).collect();
    assert_eq!(texts_of(&lines), want);
    for i in 200..260 {
        w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
    }
    let want: Vec<String> = (200..260).map(|i| format!("line {i}")).collect();
    assert_eq!(texts_of(&f.poll()), want);
}

#[test]
fn a_whole_log_is_read_in_order_and_its_follower_goes_on_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let mut w = LogWriter::open(log.clone(), "web.1", bounds(4096)).unwrap();
    for i in 0..150 {
        w.feed(0, format!("line {i}\n").as_bytes()).unwrap();
    }
    let mut whole = Whole::new(&log);
    let read: Vec<String> = whole.by_ref().collect();
    let texts = texts_of(&read);
    assert_eq!(texts.last().unwrap(), "line 149");
    let first: usize = texts[0].strip_prefix("line ").unwrap().parse().unwrap();
    assert_eq!(texts.len(), 150 - first, "in order, none missing");
    let mut f = whole.into_follower();
    w.feed(0, b"after\n").unwrap();
    assert_eq!(texts_of(&f.poll()), ["after"]);
}

#[test]
fn a_follower_behind_catches_up_a_poll_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let line = format!("{}\n", "x".repeat(1000));
    fs::write(&log, line.repeat(3000)).unwrap();
    let mut f = Follower::new(log.clone(), true);
    let mut polls = Vec::new();
    loop {
        let n = f.poll().len();
        if n == 0 {
            break;
        }
        // A poll's bytes, plus the unfinished line the previous one left.
        assert!((n as u64 - 1) * 1001 <= POLL_MAX, "{n} lines in one poll");
        polls.push(n);
    }
    assert_eq!(polls.iter().sum::<usize>(), 3000);
    assert!(polls.len() >= 3, "{polls:?}");
}
