//! Streams that end (issue 13 item 7): a `StreamLogs` follow whose client
//! went away is released although the dyno writes nothing more (its log
//! files closed: the agent's open fds come back down), and a tail of a few
//! lines of a long log reads the end of it, not the whole (the agent's
//! memory stays flat).

use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use dyno_tests::*;

/// Open fds of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// A `/proc/<pid>/status` figure in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, key: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_follow_streams_release_their_files() {
    let a = TestAgent::start("");
    let slug = a.slug("quiet", &[]);
    // Writes a few lines, then nothing more.
    a.start_dyno("quiet", "worker.1", &slug, "echo one; echo two; exec sleep 600");
    a.wait_state("quiet", "worker.1", "up");
    wait_for("the dyno's lines in its log", || {
        a.ctl_ok(&["logs", "--app", "quiet"])
            .contains("app[worker.1]: two")
            .then_some(())
    });
    let pid = a.agent_pid();
    let before = fds(pid);
    let ch = dyno_agent::client::connect(&a.socket).await.expect("connect");
    let mut streams = Vec::new();
    for _ in 0..60 {
        let mut c = pb::agent_client::AgentClient::new(ch.clone());
        let req = pb::StreamLogsRequest {
            app: "quiet".into(),
            dyno: "worker.1".into(),
            tail: 1,
            follow: true,
            ..Default::default()
        };
        let mut s = c.stream_logs(req).await.expect("stream").into_inner();
        // The tail arrived: the stream is following now.
        let first = tokio::time::timeout(DEADLINE, s.message())
            .await
            .expect("first line in time");
        assert!(first.expect("a line").is_some(), "the stream ended");
        streams.push(s);
    }
    let open = fds(pid);
    eprintln!("agent fds: {before} before, {open} with 60 follow streams");
    assert!(open >= before + 60, "{before} → {open}: the streams hold no files?");
    drop(streams);
    drop(ch);
    let started = Instant::now();
    // Well before anything else would make the agent notice: the dyno
    // writes nothing more, and the runtime's own lines come every 20 s.
    let after = poll(Duration::from_secs(5), Duration::from_millis(50), || {
        let n = fds(pid);
        if n <= before + 2 { Ok(n) } else { Err(n) }
    });
    match after {
        Ok(n) => eprintln!("agent fds: {n} {:?} after the clients went", started.elapsed()),
        Err(n) => panic!("the agent still holds {n} fds ({before} before 60 abandoned streams)"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_of_a_long_log_reads_its_end_only() {
    let a = TestAgent::start("log_rate_lines = 10000000\nlog_rate_burst = 10000000\n");
    let slug = a.slug("long", &[]);
    a.start_dyno(
        "long",
        "worker.1",
        &slug,
        "yes 'a line of the long log of this dyno' | head -n 300000; echo finished-$((299+1)); exec sleep 600",
    );
    // Read by the test itself, not through the agent: the agent's peak
    // memory is measured from here.
    let pid = a.agent_pid();
    let rss_before = status_kb(pid, "VmRSS");
    let hwm_before = status_kb(pid, "VmHWM");
    wait_for("300 000 lines in the log", || {
        let runs = std::fs::read_dir(a.state.join("runs")).ok()?;
        runs.flatten()
            .any(|r| {
                let log = std::fs::read(r.path().join("log")).unwrap_or_default();
                log.ends_with(b"app[worker.1]: finished-300\n")
            })
            .then_some(())
    });
    let mut c = a.client().await;
    for _ in 0..8 {
        let req = pb::StreamLogsRequest {
            app: "long".into(),
            dyno: "worker.1".into(),
            tail: 1,
            ..Default::default()
        };
        let mut s = c.stream_logs(req).await.expect("tail").into_inner();
        let mut lines = Vec::new();
        while let Some(l) = s.message().await.expect("line") {
            lines.push(l.line);
        }
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].ends_with("finished-300"), "{lines:?}");
    }
    let rss_after = status_kb(pid, "VmRSS");
    let hwm_after = status_kb(pid, "VmHWM");
    eprintln!("agent RSS {rss_before} → {rss_after} kB, peak {hwm_before} → {hwm_after} kB over 8 tails of one line");
    // Reading the 2 × 10 MiB of log into lines takes well over 20 MB.
    assert!(
        hwm_after < hwm_before + 16 * 1024,
        "peak RSS {hwm_before} → {hwm_after} kB: the tails read the whole log"
    );
}
