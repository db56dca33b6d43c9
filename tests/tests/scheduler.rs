//! Issue 6 end to end: the agent's push stream to a scheduler (a hello with a
//! snapshot, then every change and heartbeats; a fresh hello after the
//! scheduler comes back), WatchEvents resuming from a seq across agent
//! restarts, memory admission, idempotent starts by request id, and the TCP
//! API with TLS and client certificates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dyno_agent::ctl::dyno_json;
use dyno_proto::v1 as pb;
use dyno_tests::*;
use pb::report_message::Kind;
use pb::watch_events_response::Kind as WatchKind;
use serde_json::Value;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status, Streaming};

const MIB: u64 = 1 << 20;

fn host_id(a: &TestAgent) -> String {
    format!("e2e-{}", a.n)
}

/// How many lines of the agent's log contain `text`.
fn log_count(a: &TestAgent, text: &str) -> usize {
    a.agent_log().lines().filter(|l| l.contains(text)).count()
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

// ---------------------------------------------------------------------------
// A fake scheduler
// ---------------------------------------------------------------------------

/// Every Report call the scheduler received, each as the messages it carried.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Vec<pb::ReportMessage>>>>);

struct FakeService(Recorder);

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for FakeService {
    async fn report(
        &self,
        request: Request<Streaming<pb::ReportMessage>>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let mut stream = request.into_inner();
        let i = {
            let mut conns = self.0.0.lock().unwrap();
            conns.push(Vec::new());
            conns.len() - 1
        };
        while let Ok(Some(m)) = stream.message().await {
            self.0.0.lock().unwrap()[i].push(m);
        }
        Ok(Response::new(pb::ReportResponse {}))
    }
}

/// A `dyno.v1.Scheduler` on 127.0.0.1, on a tokio runtime of its own: stopping
/// it shuts that runtime down, which drops the listener and every connection
/// task, so the agent's connections are really closed (a server merely told
/// to shut down gracefully would keep the open report stream alive).
struct FakeScheduler {
    port: u16,
    rec: Recorder,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeScheduler {
    /// Serves on `port` (0: any free port).
    fn start(port: u16) -> FakeScheduler {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("scheduler runtime");
        // std's listener sets SO_REUSEADDR: the port can be bound again while
        // the closed connections are in TIME_WAIT.
        let listener = wait_ok(&format!("binding 127.0.0.1:{port}"), || {
            std::net::TcpListener::bind(("127.0.0.1", port)).map_err(|e| e.to_string())
        });
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("local addr").port();
        let rec = Recorder::default();
        let service = pb::scheduler_server::SchedulerServer::new(FakeService(rec.clone()));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
            let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
            if let Err(e) = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await
            {
                eprintln!("fake scheduler: {e}");
            }
        });
        FakeScheduler {
            port,
            rec,
            runtime: Some(runtime),
        }
    }

    /// Stops serving; every task (listener, connections, calls) is dropped
    /// before this returns.
    fn stop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(Duration::from_secs(10));
        }
    }

    fn connections(&self) -> Vec<Vec<pb::ReportMessage>> {
        self.rec.0.lock().unwrap().clone()
    }

    /// Waits for the `n`th connection (0-based) to have said hello; returns it.
    fn wait_connection(&self, n: usize, a: &TestAgent) -> Vec<pb::ReportMessage> {
        wait_ok(&format!("connection #{n} to the scheduler with its hello"), || {
            self.connections()
                .get(n)
                .filter(|c| !c.is_empty())
                .cloned()
                .ok_or_else(|| {
                    let log = a.agent_log();
                    let tail: Vec<&str> = log.lines().filter(|l| l.contains("scheduler")).collect();
                    format!(
                        "{} connections; the agent's scheduler lines:\n{}",
                        self.connections().len(),
                        tail.join("\n")
                    )
                })
        })
    }
}

impl Drop for FakeScheduler {
    fn drop(&mut self) {
        self.stop();
    }
}

fn hello(conn: &[pb::ReportMessage]) -> &pb::Hello {
    match conn.first().and_then(|m| m.kind.as_ref()) {
        Some(Kind::Hello(h)) => h,
        other => panic!("a connection must begin with a hello, not {other:?}"),
    }
}

/// One line per message, for failure messages.
fn describe(conn: &[pb::ReportMessage]) -> String {
    conn.iter()
        .map(|m| match &m.kind {
            Some(Kind::Hello(h)) => {
                let s = h.snapshot.clone().unwrap_or_default();
                format!("hello host {} seq {} dynos {}", h.host_id, s.seq, s.dynos.len())
            }
            Some(Kind::Event(e)) => {
                let d = e.dyno.clone().unwrap_or_default();
                format!(
                    "event {} {}/{} {}->{} ({})",
                    e.seq, d.app, d.name, e.from, e.to, e.reason
                )
            }
            Some(Kind::Heartbeat(_)) => "heartbeat".into(),
            None => "(empty)".into(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Checks one connection: a hello for this host first and only first, with
/// capacity and a snapshot; then events numbered on from the snapshot's seq,
/// strictly increasing and without a hole; heartbeats with the host's usage.
/// Returns the snapshot's seq and the last seq the connection carried.
fn check_connection(what: &str, conn: &[pb::ReportMessage], host: &str) -> (u64, u64) {
    let h = hello(conn);
    assert_eq!(h.host_id, host, "{what}: the hello names the agent's host_id");
    assert_eq!(h.agent_version, env!("CARGO_PKG_VERSION"), "{what}");
    let cap = h
        .capacity
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: hello without capacity"));
    assert_eq!(cap.host_id, host, "{what}: capacity");
    assert!(
        cap.memory_total_bytes > 0 && cap.memory_allocatable_bytes > 0 && cap.cpus > 0,
        "{what}: capacity {cap:?}"
    );
    let snap = h
        .snapshot
        .as_ref()
        .unwrap_or_else(|| panic!("{what}: hello without snapshot"));
    assert!(!snap.gap, "{what}: a hello's snapshot is complete");
    let mut last = snap.seq;
    for (i, m) in conn.iter().enumerate().skip(1) {
        match &m.kind {
            Some(Kind::Hello(_)) => panic!("{what}: a second hello (message {i}):\n{}", describe(conn)),
            Some(Kind::Event(e)) => {
                assert!(
                    e.seq > last,
                    "{what}: event seqs must strictly increase, all after the snapshot's {}:\n{}",
                    snap.seq,
                    describe(conn)
                );
                assert_eq!(
                    e.seq,
                    last + 1,
                    "{what}: no event is missing on a live connection:\n{}",
                    describe(conn)
                );
                assert!(e.at.is_some() && e.dyno.is_some(), "{what}: event {e:?}");
                assert_eq!(
                    e.dyno.as_ref().unwrap().state,
                    e.to,
                    "{what}: the dyno after the change"
                );
                last = e.seq;
            }
            Some(Kind::Heartbeat(hb)) => {
                assert!(hb.at.is_some(), "{what}: heartbeat without time");
                let usage = hb
                    .usage
                    .as_ref()
                    .unwrap_or_else(|| panic!("{what}: heartbeat without usage"));
                assert_eq!(usage.host_id, host, "{what}: heartbeat usage");
            }
            None => panic!("{what}: an empty message (message {i})"),
        }
    }
    (snap.seq, last)
}

/// The scheduler's view after a connection: the hello's snapshot, then each
/// event's dyno, in order; as `dynoctl --json ps` would print it.
fn view(conn: &[pb::ReportMessage]) -> Vec<Value> {
    let mut dynos: BTreeMap<(String, String), pb::Dyno> = BTreeMap::new();
    for m in conn {
        match &m.kind {
            Some(Kind::Hello(h)) => {
                dynos.clear();
                for d in h.snapshot.iter().flat_map(|s| &s.dynos) {
                    dynos.insert((d.app.clone(), d.name.clone()), d.clone());
                }
            }
            Some(Kind::Event(e)) => {
                if let Some(d) = &e.dyno {
                    dynos.insert((d.app.clone(), d.name.clone()), d.clone());
                }
            }
            _ => {}
        }
    }
    dynos.values().map(dyno_json).collect()
}

/// Sorted by app and name.
fn sorted(mut dynos: Vec<Value>) -> Vec<Value> {
    dynos.sort_by_key(|d| (d["app"].to_string(), d["name"].to_string()));
    dynos
}

/// Waits until the view of the scheduler's latest connection is what
/// `dynoctl --json ps` shows (every field of every dyno).
fn converge(sched: &FakeScheduler, a: &TestAgent, what: &str) {
    wait_ok(what, || {
        let conns = sched.connections();
        let conn = conns.last().ok_or("no connection")?;
        let view = sorted(view(conn));
        let ps = sorted(a.ps());
        if view == ps {
            Ok(())
        } else {
            Err(format!(
                "the scheduler's view:\n{view:#?}\n`dynoctl --json ps`:\n{ps:#?}\nthe connection:\n{}",
                describe(conn)
            ))
        }
    });
}

/// Waits for a heartbeat on the latest connection whose usage satisfies `pred`.
fn wait_heartbeat(sched: &FakeScheduler, what: &str, pred: impl Fn(&pb::HostInfoResponse) -> bool) {
    wait_ok(what, || {
        let conns = sched.connections();
        let conn = conns.last().ok_or("no connection")?;
        let beats: Vec<&pb::HostInfoResponse> = conn
            .iter()
            .filter_map(|m| match &m.kind {
                Some(Kind::Heartbeat(h)) => h.usage.as_ref(),
                _ => None,
            })
            .collect();
        if beats.len() >= 2 && beats.iter().any(|u| pred(u)) {
            Ok(())
        } else {
            Err(format!("{} heartbeats, last {:?}", beats.len(), beats.last()))
        }
    });
}

#[test]
fn the_scheduler_gets_a_hello_then_every_change_and_catches_up_after_an_outage() {
    let mut sched = FakeScheduler::start(0);
    let port = sched.port;
    let a = TestAgent::start(&format!(
        "scheduler = \"http://127.0.0.1:{port}\"\nheartbeat_interval = \"200ms\"\nreport_backoff_max = \"1s\"\n\
         restart_cooloffs = [\"10m\"]\n"
    ));
    let host = host_id(&a);
    let slug = a.slug("s", &[("index.html", "ok\n")]);

    // Connected from the start: a fresh agent's hello has nothing in it.
    let first = sched.wait_connection(0, &a);
    let h = hello(&first);
    let snap = h.snapshot.clone().unwrap_or_default();
    assert_eq!((snap.seq, snap.dynos.len()), (0, 0), "a fresh agent: {h:?}");

    // Changes arrive as events; the view converges to ps, heartbeats carry usage.
    a.start_dyno("shop", "web.1", &slug, WEB);
    a.start_dyno("shop", "worker.1", &slug, SLEEPER);
    a.wait_state("shop", "web.1", "up");
    a.wait_state("shop", "worker.1", "up");
    converge(&sched, &a, "the scheduler's view to converge to ps while connected");
    wait_heartbeat(&sched, "a heartbeat counting 2 dynos up", |u| u.dynos_up == 2);
    let conns = sched.connections();
    assert_eq!(
        conns.len(),
        1,
        "one connection while the scheduler is up\n--- agent log ---\n{}",
        a.agent_log()
    );
    let (_, seen) = check_connection("connection #0", &conns[0], &host);
    assert!(
        seen >= 4,
        "start and up of two dynos at least:\n{}",
        describe(&conns[0])
    );

    // The scheduler goes away: the agent notices (its connection is closed).
    let reconnects = log_count(&a, "reconnecting to the scheduler");
    sched.stop();
    let recorded = sched.connections();
    wait_ok("the agent to notice the scheduler is gone", || {
        if log_count(&a, "reconnecting to the scheduler") > reconnects {
            Ok(())
        } else {
            Err("no `reconnecting to the scheduler` line since the stop".into())
        }
    });

    // While it is down: a start, a crash (restarted once at once, then a
    // 10 min cool-off: it stays crashed) and a stop.
    a.start_dyno("shop", "worker.2", &slug, SLEEPER);
    a.start_dyno("shop", "crash.1", &slug, "echo boom; exit 1");
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.2", "up");
    a.wait_state("shop", "worker.1", "down");
    a.wait_dyno("shop", "crash.1", "crashed, waiting for its cool-off", |d| {
        d["state"] == "crashed" && d["restarts"] == 1 && d["next_restart_at"].is_string()
    });
    assert!(
        sched.connections() == recorded,
        "nothing reached the stopped scheduler (its connections are gone)"
    );

    // Back on the same port: the agent reconnects with a fresh hello whose
    // snapshot has everything that changed meanwhile.
    let sched2 = FakeScheduler::start(port);
    assert_eq!(sched2.port, port);
    let conn = sched2.wait_connection(0, &a);
    let h = hello(&conn);
    let snap = h.snapshot.clone().unwrap_or_default();
    assert!(
        snap.seq > seen,
        "the new hello's seq {} is past what the scheduler saw ({seen})",
        snap.seq
    );
    let mut names: Vec<&str> = snap.dynos.iter().map(|d| d.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["crash.1", "web.1", "worker.1", "worker.2"], "{snap:?}");
    converge(&sched2, &a, "the scheduler's view to converge to ps after the outage");

    // And it is live again: a change after the reconnect arrives as an event.
    a.ctl_ok(&["stop", "--app", "shop", "web.1"]);
    a.wait_state("shop", "web.1", "down");
    converge(&sched2, &a, "the view to follow a stop after the reconnect");
    wait_heartbeat(&sched2, "heartbeats on the new connection", |u| {
        u.dynos_up == 1 && u.dynos_down == 2 && u.dynos_crashed == 1
    });
    let conns = sched2.connections();
    for (i, c) in conns.iter().enumerate() {
        check_connection(&format!("connection #{i} after the outage"), c, &host);
    }
    let last = conns.last().unwrap();
    assert!(
        last.iter().any(|m| matches!(&m.kind, Some(Kind::Event(e))
            if e.dyno.as_ref().is_some_and(|d| d.name == "web.1") && e.to == pb::DynoState::Down as i32)),
        "web.1's stop came as an event:\n{}",
        describe(last)
    );
}

// ---------------------------------------------------------------------------
// WatchEvents resumes from a seq across agent restarts
// ---------------------------------------------------------------------------

/// WatchEvents(after_seq, follow = false): the snapshot (if any) and the
/// events, until the stream ends.
async fn watch_once(
    c: &mut pb::agent_client::AgentClient<Channel>,
    after_seq: u64,
) -> (Option<pb::Snapshot>, Vec<pb::Event>) {
    let mut stream = watch_events(c, after_seq, false).await;
    let (mut snap, mut events) = (None, Vec::new());
    loop {
        let m = match tokio::time::timeout(DEADLINE, stream.message()).await {
            Err(_) => panic!("WatchEvents({after_seq}, follow = false) did not end within {DEADLINE:?}"),
            Ok(Err(s)) => panic!("WatchEvents({after_seq}) failed: {s:?}"),
            Ok(Ok(None)) => return (snap, events),
            Ok(Ok(Some(m))) => m,
        };
        match m.kind {
            Some(WatchKind::Snapshot(s)) => {
                assert!(
                    snap.is_none() && events.is_empty(),
                    "WatchEvents({after_seq}): a snapshot comes first, once"
                );
                snap = Some(s);
            }
            Some(WatchKind::Event(e)) => events.push(e),
            None => panic!("WatchEvents({after_seq}): an empty message"),
        }
    }
}

/// The events are numbered `first`, `first + 1`, … without a hole.
#[track_caller]
fn assert_numbered_from(what: &str, first: u64, events: &[pb::Event]) {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (first..first + events.len() as u64).collect();
    assert_eq!(seqs, want, "{what}: {:#?}", summarize(events));
}

fn has(events: &[pb::Event], name: &str, to: pb::DynoState) -> bool {
    events
        .iter()
        .any(|e| e.dyno.as_ref().is_some_and(|d| d.name == name) && e.to == to as i32)
}

/// The snapshot's dynos as `dynoctl --json ps` prints them equal ps now.
fn assert_snapshot_is_ps(what: &str, snap: &pb::Snapshot, a: &TestAgent) {
    let dynos = sorted(snap.dynos.iter().map(dyno_json).collect());
    let ps = sorted(blocking(|| a.ps()));
    assert_eq!(dynos, ps, "{what}: the snapshot is every dyno as ps shows it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_resumes_from_a_seq_across_agent_restarts() {
    use pb::DynoState::{Down, Up};
    let mut a = TestAgent::start("");
    let slug = a.slug("w", &[]);
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.1", &slug, SLEEPER))
        .await
        .expect("start worker.1");
    blocking(|| a.wait_state("shop", "worker.1", "up"));
    let (snap, before) = watch_once(&mut c, 0).await;
    assert!(snap.is_none(), "from 0 on a young agent: the events, no snapshot");
    assert_numbered_from("the first events", 1, &before);
    assert!(has(&before, "worker.1", Up), "{:#?}", summarize(&before));
    let seen = before.last().unwrap().seq;

    // SIGTERM, restart, more changes: from `seen` exactly the later events.
    assert!(blocking(|| a.sigterm()).success());
    blocking(|| a.spawn());
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.2", &slug, SLEEPER))
        .await
        .expect("start worker.2");
    blocking(|| a.wait_state("shop", "worker.2", "up"));
    c.stop_dyno(pb::StopDynoRequest {
        selector: selector("shop", "worker.1"),
    })
    .await
    .expect("stop worker.1");
    blocking(|| a.wait_state("shop", "worker.1", "down"));
    let (snap, later) = watch_once(&mut c, seen).await;
    assert!(
        snap.is_none(),
        "every event after {seen} is kept: no snapshot, got {snap:?}"
    );
    assert_numbered_from("after a SIGTERM restart", seen + 1, &later);
    assert!(
        has(&later, "worker.2", Up) && has(&later, "worker.1", Down),
        "{:#?}",
        summarize(&later)
    );
    let (_, all) = watch_once(&mut c, 0).await;
    assert_numbered_from("everything kept", 1, &all);
    let tail: Vec<pb::Event> = all.iter().filter(|e| e.seq > seen).cloned().collect();
    assert_eq!(later, tail, "the same events as the tail of everything");

    // kill -9, restart, another change.
    let seen = later.last().unwrap().seq;
    blocking(|| a.kill9());
    blocking(|| a.spawn());
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.3", &slug, SLEEPER))
        .await
        .expect("start worker.3");
    blocking(|| a.wait_state("shop", "worker.3", "up"));
    let (snap, later) = watch_once(&mut c, seen).await;
    assert!(snap.is_none(), "after kill -9: no snapshot, got {snap:?}");
    assert_numbered_from("after a kill -9 restart", seen + 1, &later);
    assert!(has(&later, "worker.3", Up), "{:#?}", summarize(&later));
    let last = later.last().unwrap().seq;

    // Caught up: nothing at all.
    let (snap, none) = watch_once(&mut c, last).await;
    assert!(snap.is_none() && none.is_empty(), "caught up: {snap:?} {none:?}");

    // A seq from the future (a scheduler that remembers another life of this
    // host): a snapshot with gap at the agent's own last seq, then nothing.
    for after in [last + 1, last + 1000, u64::MAX] {
        let (snap, events) = watch_once(&mut c, after).await;
        let snap = snap.unwrap_or_else(|| panic!("after_seq {after} > {last}: a snapshot"));
        assert!(snap.gap, "after_seq {after}: gap");
        assert_eq!(
            snap.seq, last,
            "after_seq {after}: the snapshot is at the agent's last seq"
        );
        assert!(events.is_empty(), "after_seq {after}: {:#?}", summarize(&events));
        assert_snapshot_is_ps(&format!("after_seq {after}"), &snap, &a);
    }
    // Following from the future: the next change comes numbered after the snapshot.
    let mut follow = watch_events(&mut c, last + 1000, true).await;
    let first = tokio::time::timeout(DEADLINE, follow.message()).await;
    assert!(
        matches!(&first, Ok(Ok(Some(pb::WatchEventsResponse { kind: Some(WatchKind::Snapshot(s)) }))) if s.seq == last),
        "{first:?}"
    );
    c.start_dyno(start_req("shop", "worker.4", &slug, SLEEPER))
        .await
        .expect("start worker.4");
    match tokio::time::timeout(DEADLINE, follow.message()).await {
        Ok(Ok(Some(pb::WatchEventsResponse {
            kind: Some(WatchKind::Event(e)),
        }))) => assert_eq!(e.seq, last + 1, "{e:?}"),
        other => panic!("the next event after the snapshot: {other:?}"),
    }
    drop(follow);
    blocking(|| a.wait_state("shop", "worker.4", "up"));

    // Older than what is kept: compact the event log to its last two events,
    // as the agent itself does at start past 2 × 10 000 events.
    assert!(blocking(|| a.sigterm()).success());
    let log = a.state.join("events.jsonl");
    let text = std::fs::read_to_string(&log).expect("events.jsonl");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() > 4, "{text}");
    let kept = &lines[lines.len() - 2..];
    std::fs::write(&log, kept.join("\n") + "\n").expect("compact events.jsonl");
    let kept_seqs: Vec<u64> = kept
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("event json")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    let (oldest, newest) = (kept_seqs[0], kept_seqs[1]);
    blocking(|| a.spawn());
    let mut c = a.client().await;
    let (snap, events) = watch_once(&mut c, 1).await;
    let snap = snap.expect("after_seq older than the kept events: a snapshot");
    assert!(snap.gap, "events in between are missing: gap");
    assert_eq!(snap.seq, newest);
    assert!(events.is_empty(), "{:#?}", summarize(&events));
    assert_snapshot_is_ps("an after_seq older than kept", &snap, &a);
    // Just before the oldest kept event: no gap, the kept events.
    let (snap, events) = watch_once(&mut c, oldest - 1).await;
    assert!(snap.is_none(), "nothing is missing after {}: {snap:?}", oldest - 1);
    assert_numbered_from("the kept events", oldest, &events);
    assert_eq!(events.len(), 2);
}

// ---------------------------------------------------------------------------
// Memory admission
// ---------------------------------------------------------------------------

async fn host_info(c: &mut pb::agent_client::AgentClient<Channel>) -> pb::HostInfoResponse {
    c.host_info(pb::HostInfoRequest {})
        .await
        .expect("HostInfo")
        .into_inner()
}

/// A RESOURCE_EXHAUSTED whose message says how much memory is free.
#[track_caller]
fn assert_no_room<T: std::fmt::Debug>(what: &str, r: Result<T, Status>, free_mib: u64) {
    let s = match r {
        Ok(v) => panic!("{what}: expected RESOURCE_EXHAUSTED, got a success: {v:?}"),
        Err(s) => s,
    };
    assert_eq!(s.code(), Code::ResourceExhausted, "{what}: {s:?}");
    let m = s.message();
    assert!(
        m.contains("free") && m.contains(&format!(" {free_mib} MiB")) && m.contains("512 MiB"),
        "{what}: the message says what is needed (512 MiB) and how much is free ({free_mib} MiB): {m:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_starts_beyond_allocatable_memory_and_a_stop_frees_it() {
    let mut a = TestAgent::start("memory_overcommit = 0.00001\n");
    let slug = a.slug("m", &[]);
    let mut c = a.client().await;
    let info = host_info(&mut c).await;
    assert_eq!(info.memory_overcommit, 0.00001);
    assert_eq!(info.memory_reserve_bytes, 1 << 30, "the default reserve");
    let allocatable = dyno_agent::host::allocatable(
        info.memory_total_bytes,
        info.memory_reserve_bytes,
        info.memory_overcommit,
    );
    assert_eq!(info.memory_allocatable_bytes, allocatable, "{info:?}");
    assert!(allocatable < 512 * MIB);
    assert_eq!(info.dyno_memory_committed_bytes, 0);

    // No room for a standard-1x (512 MiB): RESOURCE_EXHAUSTED, nothing created.
    let req = start_req("shop", "worker.1", &slug, SLEEPER);
    assert_no_room(
        "StartDyno with a tiny overcommit",
        c.start_dyno(req.clone()).await,
        allocatable / MIB,
    );
    let out = blocking(|| a.ctl(&start_args("shop", "worker.1", &show(&slug), &["--command", SLEEPER])));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "dynoctl: RESOURCE_EXHAUSTED is exit 4: {stderr}"
    );
    assert!(
        stderr.contains("resource exhausted") && stderr.contains("free") && stderr.contains("512 MiB"),
        "{stderr}"
    );
    assert!(blocking(|| a.ps()).is_empty(), "a refused start leaves no dyno");

    // A larger overcommit (config edited, agent restarted): room for one
    // standard-1x, not for two.
    let base = info.memory_total_bytes - info.memory_reserve_bytes;
    let overcommit = (768 * MIB) as f64 / base as f64;
    a.set_config("memory_overcommit", &format!("{overcommit:?}"));
    assert!(blocking(|| a.sigterm()).success());
    blocking(|| a.spawn());
    let mut c = a.client().await;
    let info = host_info(&mut c).await;
    assert_eq!(info.memory_overcommit, overcommit);
    let allocatable = info.memory_allocatable_bytes;
    assert!(
        (512 * MIB..1024 * MIB).contains(&allocatable),
        "{allocatable} bytes allocatable"
    );
    let w1 = c
        .start_dyno(req.clone())
        .await
        .expect("the same start is accepted with a larger overcommit")
        .into_inner();
    blocking(|| a.wait_state("shop", "worker.1", "up"));
    assert_eq!(host_info(&mut c).await.dyno_memory_committed_bytes, 512 * MIB);
    let info_json: Value = serde_json::from_str(&blocking(|| a.ctl_ok(&["--json", "info"]))).expect("info json");
    assert_eq!(info_json["dyno_memory_committed_bytes"], 512 * MIB, "{info_json}");

    let req2 = start_req("shop", "worker.2", &slug, SLEEPER);
    let free = (allocatable - 512 * MIB) / MIB;
    assert_no_room("a second standard-1x", c.start_dyno(req2.clone()).await, free);
    // The running dyno's own start again commits nothing new.
    let again = c
        .start_dyno(req.clone())
        .await
        .expect("repeating a running dyno's start needs no new room")
        .into_inner();
    assert_eq!((again.id, again.run_id), (w1.id.clone(), w1.run_id.clone()));

    // Stopping it frees its memory: now worker.2 fits, and worker.1 no longer.
    c.stop_dyno(pb::StopDynoRequest {
        selector: selector("shop", "worker.1"),
    })
    .await
    .expect("stop");
    blocking(|| a.wait_state("shop", "worker.1", "down"));
    assert_eq!(host_info(&mut c).await.dyno_memory_committed_bytes, 0);
    c.start_dyno(req2).await.expect("the stop freed room for worker.2");
    blocking(|| a.wait_state("shop", "worker.2", "up"));
    assert_no_room(
        "worker.1 back while worker.2 holds the memory",
        c.start_dyno(req).await,
        free,
    );
    assert_eq!(blocking(|| a.dyno("shop", "worker.1")).unwrap()["state"], "down");
}

#[test]
fn dynoctl_info_shows_what_admission_allows() {
    let a = TestAgent::start("memory_reserve = 2147483648\nmemory_overcommit = 0.5\n");
    let j: Value = serde_json::from_str(&a.ctl_ok(&["--json", "info"])).expect("info json");
    let total = j["memory_total_bytes"].as_u64().expect("memory_total_bytes");
    let want = dyno_agent::host::allocatable(total, 2 << 30, 0.5);
    let mut problems = Vec::new();
    if j["memory_allocatable_bytes"] != want {
        problems.push(format!("memory_allocatable_bytes should be {want}"));
    }
    if j["memory_reserve_bytes"] != 2u64 << 30 {
        problems.push("memory_reserve_bytes should be 2147483648".to_string());
    }
    if j["memory_overcommit"] != 0.5 {
        problems.push("memory_overcommit should be 0.5".to_string());
    }
    let text = a.ctl_ok(&["info"]);
    if !text.contains("allocatable") {
        problems.push("the text form should say what is allocatable".to_string());
    }
    assert!(
        problems.is_empty(),
        "dynoctl info does not show admission's figures:\n  {}\n--- dynoctl --json info ---\n{j:#}\n--- dynoctl info ---\n{text}",
        problems.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// Idempotent starts by request id
// ---------------------------------------------------------------------------

/// The run directories of a dyno (`runs/<dyno-id>.<n>`).
fn runs_of(a: &TestAgent, dyno_id: &str) -> Vec<String> {
    let mut runs: Vec<String> = std::fs::read_dir(a.state.join("runs"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.starts_with(&format!("{dyno_id}.")))
                .collect()
        })
        .unwrap_or_default();
    runs.sort();
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_start_with_the_same_request_id_starts_one_run_even_across_a_restart() {
    let mut a = TestAgent::start("");
    let slug = a.slug("i", &[]);
    let c = a.client().await;
    let req = pb::StartDynoRequest {
        request_id: "req-7f3a9c".into(),
        ..start_req("shop", "worker.1", &slug, SLEEPER)
    };
    // The request and its retry at once (the first answer was "lost").
    let (mut c1, mut c2) = (c.clone(), c.clone());
    let (r1, r2) = tokio::join!(c1.start_dyno(req.clone()), c2.start_dyno(req.clone()));
    let (d1, d2) = (r1.expect("start").into_inner(), r2.expect("retry").into_inner());
    assert_eq!((&d1.id, &d1.run_id), (&d2.id, &d2.run_id), "one dyno, one run");
    // A one-off without a name: the agent picks run.N; its retry must not pick another.
    let one_off = pb::StartDynoRequest {
        request_id: "req-oneoff-51".into(),
        one_off: true,
        ..start_req("shop", "", &slug, SLEEPER)
    };
    let mut c = c;
    let o1 = c.start_dyno(one_off.clone()).await.expect("one-off").into_inner();
    let o2 = c.start_dyno(one_off.clone()).await.expect("one-off retry").into_inner();
    assert_eq!(o1.name, "run.1");
    assert_eq!((&o2.id, &o2.name, &o2.run_id), (&o1.id, &o1.name, &o1.run_id));

    let up = blocking(|| a.wait_state("shop", "worker.1", "up"));
    let pid = pid_of(&up);
    blocking(|| a.wait_state("shop", "run.1", "up"));
    let d3 = c.start_dyno(req.clone()).await.expect("third try").into_inner();
    assert_eq!((&d3.id, &d3.run_id, d3.pid, d3.restarts), (&d1.id, &d1.run_id, pid, 0));
    let ps = blocking(|| a.ps());
    assert_eq!(ps.len(), 2, "worker.1 and run.1 only: {ps:#?}");
    assert_eq!(runs_of(&a, &d1.id), std::slice::from_ref(&d1.run_id), "one run");
    assert_eq!(runs_of(&a, &o1.id), std::slice::from_ref(&o1.run_id), "one run");

    // After kill -9 and a new agent: the same request is still the same dyno,
    // and no second run starts.
    blocking(|| a.kill9());
    blocking(|| a.spawn());
    let mut c = a.client().await;
    let d4 = c
        .start_dyno(req.clone())
        .await
        .expect("retry after the restart")
        .into_inner();
    assert_eq!(
        (&d4.id, &d4.run_id, d4.pid, d4.restarts, d4.state),
        (&d1.id, &d1.run_id, pid, 0, pb::DynoState::Up as i32),
        "{d4:?}"
    );
    let o3 = c
        .start_dyno(one_off)
        .await
        .expect("one-off retry after the restart")
        .into_inner();
    assert_eq!((&o3.id, &o3.name, &o3.run_id), (&o1.id, &o1.name, &o1.run_id));
    assert!(alive(pid));
    let ps = blocking(|| a.ps());
    assert_eq!(ps.len(), 2, "{ps:#?}");
    assert!(ps.iter().all(|d| d["restarts"] == 0 && d["state"] == "up"), "{ps:#?}");
    assert_eq!(runs_of(&a, &d1.id), std::slice::from_ref(&d1.run_id), "one run");
    assert_eq!(runs_of(&a, &o1.id), std::slice::from_ref(&o1.run_id), "one run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_retry_of_an_earlier_request_does_not_undo_a_later_one() {
    let a = TestAgent::start("");
    let slug = a.slug("late", &[]);
    let mut c = a.client().await;
    // A deploy of v1, then of v2, each with its own request id.
    let v1 = pb::StartDynoRequest {
        request_id: "deploy-v1".into(),
        release: "v1".into(),
        ..start_req("shop", "worker.1", &slug, SLEEPER)
    };
    let v2 = pb::StartDynoRequest {
        request_id: "deploy-v2".into(),
        release: "v2".into(),
        command: "exec sleep 601".into(),
        ..v1.clone()
    };
    let first = c.start_dyno(v1.clone()).await.expect("v1").into_inner();
    let up1 = blocking(|| {
        a.wait_dyno("shop", "worker.1", "v1 up", |d| {
            d["state"] == "up" && d["release"] == "v1"
        })
    });
    c.start_dyno(v2).await.expect("v2");
    // The record says v2 as soon as the restart is asked for, while v1's run
    // is still up: wait for the new run.
    let up2 = blocking(|| {
        a.wait_dyno("shop", "worker.1", "v2's run up", |d| {
            d["state"] == "up" && d["release"] == "v2" && d["run_id"] != up1["run_id"]
        })
    });
    // The v1 request's retry arrives late (its first answer was lost): it is
    // the request that started the dyno, so it gets the dyno back, unchanged.
    let late = c.start_dyno(v1).await.expect("the late retry").into_inner();
    assert_eq!(late.id, first.id);
    let now = get_dyno(&mut c, "shop", "worker.1").await;
    assert_eq!(
        (now.release.as_str(), now.run_id.as_str()),
        ("v2", up2["run_id"].as_str().unwrap()),
        "a late retry of the v1 request rolled worker.1 back to v1 (a new run): the agent remembers only the \
         last request id of a dyno, so an earlier one is taken for a new request"
    );
}

// ---------------------------------------------------------------------------
// The TCP API with TLS
// ---------------------------------------------------------------------------

/// PEM certificate and key.
struct Pem {
    cert: String,
    key: String,
}

/// A CA, the agent's certificate (127.0.0.1, localhost) and a client
/// certificate it signed; another CA with its own client certificate.
struct Pki {
    ca: String,
    server: Pem,
    client: Pem,
    other_ca: String,
    other_client: Pem,
}

fn new_ca(name: &str) -> (String, rcgen::Issuer<'static, rcgen::KeyPair>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), rcgen::Issuer::new(params, key))
}

fn new_leaf(
    ca: &rcgen::Issuer<'static, rcgen::KeyPair>,
    cn: &str,
    names: &[&str],
    usage: rcgen::ExtendedKeyUsagePurpose,
) -> Pem {
    use rcgen::{CertificateParams, DnType, KeyPair, KeyUsagePurpose};
    let key = KeyPair::generate().expect("leaf key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut params = CertificateParams::new(names).expect("leaf params");
    params.distinguished_name.push(DnType::CommonName, cn);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, ca).expect("sign leaf");
    Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

impl Pki {
    fn generate() -> Pki {
        use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
        let (ca, issuer) = new_ca("dynoagent e2e CA");
        let (other_ca, other) = new_ca("some other CA");
        Pki {
            server: new_leaf(&issuer, "dynoagent", &["127.0.0.1", "localhost"], ServerAuth),
            client: new_leaf(&issuer, "scheduler", &["scheduler"], ClientAuth),
            other_client: new_leaf(&other, "intruder", &["intruder"], ClientAuth),
            ca,
            other_ca,
        }
    }

    /// Writes the agent's files; returns their paths (cert, key, client CA).
    fn write(&self, dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
        let paths = (dir.join("server.pem"), dir.join("server.key"), dir.join("ca.pem"));
        std::fs::write(&paths.0, &self.server.cert).expect("write cert");
        std::fs::write(&paths.1, &self.server.key).expect("write key");
        std::fs::write(&paths.2, &self.ca).expect("write ca");
        (paths.0, paths.1, paths.2)
    }
}

/// Agent.HostInfo over TLS on 127.0.0.1:`port`, trusting `ca`, presenting
/// `identity` if any, checking the agent's certificate for `domain` (default:
/// the IP address). Any failure (handshake, call, time-out) as text.
async fn tls_host_info(
    port: u16,
    ca: &str,
    identity: Option<&Pem>,
    domain: Option<&str>,
) -> Result<pb::HostInfoResponse, String> {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert, &id.key));
    }
    if let Some(d) = domain {
        tls = tls.domain_name(d);
    }
    let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
        .map_err(|e| format!("endpoint: {e}"))?
        .tls_config(tls)
        .map_err(|e| format!("tls config: {e:?}"))?
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(10));
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| format!("connect: {e:?}"))?;
        pb::agent_client::AgentClient::new(channel)
            .host_info(pb::HostInfoRequest {})
            .await
            .map(Response::into_inner)
            .map_err(|s| format!("HostInfo: {s:?}"))
    };
    tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .map_err(|_| "timed out".to_string())?
}

fn tls_config(port: u16, cert: &Path, key: &Path, client_ca: Option<&Path>) -> String {
    let mut extra = format!(
        "listen = \"127.0.0.1:{port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    match client_ca {
        Some(ca) => extra.push_str(&format!("tls_client_ca = \"{}\"\n", ca.display())),
        None => extra.push_str("listen_without_client_auth = true\n"),
    }
    extra
}

fn wait_listening(port: u16) {
    wait_for("the agent's TCP listener", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok().map(drop)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tcp_api_needs_tls_and_a_client_certificate_from_the_configured_ca() {
    let pki = Pki::generate();
    let files = tempfile::tempdir().expect("tempdir");
    let (cert, key, ca) = pki.write(files.path());
    let port = free_port();
    let a = TestAgent::start(&tls_config(port, &cert, &key, Some(&ca)));
    blocking(|| wait_listening(port));
    let log = || a.agent_log();

    // A client certificate the CA signed: served, by address and by name.
    let info = tls_host_info(port, &pki.ca, Some(&pki.client), None)
        .await
        .unwrap_or_else(|e| panic!("a client with a good certificate: {e}\n--- agent log ---\n{}", log()));
    assert_eq!(info.host_id, host_id(&a));
    tls_host_info(port, &pki.ca, Some(&pki.client), Some("localhost"))
        .await
        .unwrap_or_else(|e| panic!("by the name localhost: {e}"));

    // Refused: no client certificate; one from another CA.
    let r = tls_host_info(port, &pki.ca, None, None).await;
    assert!(r.is_err(), "a client without a certificate must be refused: {r:?}");
    eprintln!("refused as expected: {r:?}");
    let r = tls_host_info(port, &pki.ca, Some(&pki.other_client), None).await;
    assert!(r.is_err(), "a certificate of another CA must be refused: {r:?}");
    eprintln!("refused as expected: {r:?}");
    // The client checks the agent too: one that trusts only the other CA refuses it.
    let r = tls_host_info(port, &pki.other_ca, Some(&pki.client), None).await;
    assert!(r.is_err(), "the agent's certificate is not the other CA's: {r:?}");
    eprintln!("refused as expected: {r:?}");
    // No plain-text gRPC on the TLS port.
    let plain = async {
        let ch = Endpoint::from_shared(format!("http://127.0.0.1:{port}"))
            .unwrap()
            .connect()
            .await
            .map_err(|e| format!("{e:?}"))?;
        pb::agent_client::AgentClient::new(ch)
            .host_info(pb::HostInfoRequest {})
            .await
            .map_err(|s| format!("{s:?}"))
    };
    let r = tokio::time::timeout(Duration::from_secs(20), plain).await;
    assert!(!matches!(r, Ok(Ok(_))), "plain text must not be served: {r:?}");
    eprintln!("refused as expected: {r:?}");

    // The refusals did not hurt the listener; the Unix socket serves as before.
    tls_host_info(port, &pki.ca, Some(&pki.client), None)
        .await
        .unwrap_or_else(|e| panic!("a good client after the refusals: {e}\n--- agent log ---\n{}", log()));
    let mut c = a.client().await;
    assert_eq!(host_info(&mut c).await.host_id, host_id(&a));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_client_ca_tls_clients_need_no_certificate_and_bad_tls_config_is_refused() {
    let pki = Pki::generate();
    let files = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = pki.write(files.path());
    let port = free_port();
    let mut a = TestAgent::start(&tls_config(port, &cert, &key, None));
    blocking(|| wait_listening(port));
    let info = tls_host_info(port, &pki.ca, None, None)
        .await
        .unwrap_or_else(|e| panic!("no client CA: a client without a certificate is served: {e}"));
    assert_eq!(info.host_id, host_id(&a));
    let r = tls_host_info(port, &pki.other_ca, None, None).await;
    assert!(
        r.is_err(),
        "still TLS: a client that does not trust the agent's CA refuses it: {r:?}"
    );
    eprintln!("refused as expected: {r:?}");
    assert!(blocking(|| a.sigterm()).success());

    // `listen` without tls_cert: the agent refuses to start and says why.
    a.unset_config("tls_cert");
    let (status, log) = blocking(|| a.spawn_expect_exit());
    assert!(!status.success(), "{status}");
    assert!(log.contains("tls_cert"), "the error names tls_cert: {log}");
    // A tls_cert that does not exist.
    let missing = files.path().join("missing.pem");
    a.set_config("tls_cert", &format!("\"{}\"", missing.display()));
    let (status, log) = blocking(|| a.spawn_expect_exit());
    assert!(!status.success(), "{status}");
    assert!(
        log.contains("tls_cert") && log.contains(&show(&missing)),
        "the error names tls_cert and the file: {log}"
    );
    // tls_client_ca without listen.
    a.set_config("tls_cert", &format!("\"{}\"", cert.display()));
    a.unset_config("listen");
    a.set_config(
        "tls_client_ca",
        &format!("\"{}\"", files.path().join("ca.pem").display()),
    );
    let (status, log) = blocking(|| a.spawn_expect_exit());
    assert!(!status.success(), "{status}");
    assert!(log.contains("tls_client_ca"), "the error names tls_client_ca: {log}");

    // Fixed again: the agent starts and serves.
    a.unset_config("tls_client_ca");
    a.set_config("listen", &format!("\"127.0.0.1:{port}\""));
    blocking(|| a.spawn());
    blocking(|| wait_listening(port));
    tls_host_info(port, &pki.ca, None, None)
        .await
        .unwrap_or_else(|e| panic!("after the config was fixed: {e}"));
}

#[test]
fn unreadable_tls_material_is_refused_naming_the_key() {
    let pki = Pki::generate();
    let files = tempfile::tempdir().expect("tempdir");
    let (cert, key, _) = pki.write(files.path());
    let port = free_port();
    let mut a = TestAgent::start(&tls_config(port, &cert, &key, None));
    wait_listening(port);
    assert!(a.sigterm().success());
    let garbage = files.path().join("garbage.pem");
    std::fs::write(&garbage, "not a PEM file\n").expect("write");
    let mut problems = Vec::new();
    for bad in ["tls_cert", "tls_key"] {
        a.set_config("tls_cert", &format!("\"{}\"", cert.display()));
        a.set_config("tls_key", &format!("\"{}\"", key.display()));
        a.set_config(bad, &format!("\"{}\"", garbage.display()));
        let (status, log) = a.spawn_expect_exit();
        assert!(!status.success(), "{bad} not PEM: the agent must not run ({status})");
        let error = log
            .lines()
            .filter(|l| l.starts_with("dynoagent: "))
            .collect::<Vec<_>>()
            .join("\n");
        if !(error.contains(bad) && error.contains(&show(&garbage))) {
            problems.push(format!(
                "{bad} = a file that is not PEM: the error {error:?} names neither {bad} nor the file"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_key_that_is_not_the_certificates_is_refused_naming_both_files() {
    let (pki, other) = (Pki::generate(), Pki::generate());
    let (files, other_files) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let (cert, key, _) = pki.write(files.path());
    let (_, other_key, _) = other.write(other_files.path());
    let port = free_port();
    let mut a = TestAgent::start(&tls_config(port, &cert, &key, None));
    wait_listening(port);
    assert!(a.sigterm().success());
    a.set_config("tls_key", &format!("\"{}\"", other_key.display()));
    let (status, log) = a.spawn_expect_exit();
    assert!(
        !status.success(),
        "a key of another certificate: the agent must not run ({status})"
    );
    let error = log
        .lines()
        .filter(|l| l.starts_with("dynoagent: "))
        .collect::<Vec<_>>()
        .join("\n");
    for word in ["tls_key", "tls_cert", &show(&other_key), &show(&cert)] {
        assert!(error.contains(word), "the error names {word}: {error:?}");
    }
}
