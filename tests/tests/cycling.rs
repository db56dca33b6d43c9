//! Daily cycling that keeps an app up (DESIGN §4), end to end with short
//! intervals: four dynos of one type cycle again and again, and never two
//! of them are out of `up` because of cycling at once.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dyno_tests::*;

/// Cycles every 4 s + 0–4 s: a window shorter than one restart (stop
/// grace 2 s + boot timeout 3 s), so spreading alone cannot keep them
/// apart; a due cycle must wait for a cycling peer.
const CYCLING: &str = r#"
cycling = true
cycle_interval = "4s"
cycle_jitter = "4s"
"#;

/// A worker that takes about a second to stop, as real apps do.
const WORKER: &str = "trap 'sleep 1; exit 0' TERM; while :; do sleep 0.2; done";

#[test]
fn four_dynos_of_one_type_cycling_are_never_two_out_of_up_at_once() {
    let a = TestAgent::start(CYCLING);
    let slug = a.slug("s", &[]);
    for n in 1..=4 {
        a.start_dyno("shop", &format!("worker.{n}"), &slug, WORKER);
    }
    for n in 1..=4 {
        a.wait_state("shop", &format!("worker.{n}"), "up");
    }
    // Every runtime line of the app, as they come (dynoctl is ours: killed
    // by its pid below).
    let mut follow = Command::new(ctl_bin())
        .arg("--socket")
        .arg(&a.socket)
        .args(["logs", "--app", "shop", "-f", "-n", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dynoctl logs -f");
    let (tx, rx) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Out of up because of cycling: from `Cycling` to the next run's `up`.
    let mut out_since: BTreeMap<String, f64> = BTreeMap::new();
    let mut spans: Vec<(String, f64, f64)> = Vec::new();
    let started = Instant::now();
    while spans.len() < 12 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} cycles completed in 120 s: {spans:?}",
            spans.len()
        );
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        let Some((head, text)) = line.split_once("]: ") else {
            continue;
        };
        let Some(dyno) = head.rsplit_once(" dyno[").map(|(_, d)| d.to_string()) else {
            continue;
        };
        match text {
            "Cycling" => {
                assert!(!out_since.contains_key(&dyno), "{dyno} cycled twice: {line}");
                out_since.insert(dyno, log_stamp(&line));
            }
            "State changed from starting to up" => {
                if let Some(from) = out_since.remove(&dyno) {
                    spans.push((dyno, from, log_stamp(&line)));
                }
            }
            _ => {}
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let _ = reader.join();
    // Each one about a second (the stop) and never overlapping another.
    spans.sort_by(|x, y| x.1.total_cmp(&y.1));
    for (d, from, to) in &spans {
        assert!(to - from >= 0.5, "{d}: out of up for only {:.3} s", to - from);
    }
    for w in spans.windows(2) {
        assert!(
            w[1].1 >= w[0].2,
            "{} left up at {:.3} before {} was back up at {:.3}: {spans:?}",
            w[1].0,
            w[1].1,
            w[0].0,
            w[0].2
        );
    }
    let dynos: std::collections::BTreeSet<&str> = spans.iter().map(|s| s.0.as_str()).collect();
    assert!(dynos.len() >= 3, "cycles of only {dynos:?}");
    a.ctl_ok(&["stop", "--all"]);
    for n in 1..=4 {
        a.wait_state("shop", &format!("worker.{n}"), "down");
    }
}
