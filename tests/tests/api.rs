//! The gRPC API and `dynoctl` end to end: validation and error codes,
//! idempotent starts, Procfiles, event and log streams, host info, health and
//! reflection, and an agent that stops on SIGTERM while its dynos keep running.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use dyno_tests::*;
use serde_json::Value;
use tonic::{Code, Status};

/// Whether `message` names `field` as a word of its own (`app: …`,
/// `env.1BAD: …`, `… sha256 mismatch …`), not just as part of a path.
fn names_field(message: &str, field: &str) -> bool {
    message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .any(|w| w == field)
}

/// Asserts an error with `code` whose message names `field`; returns the status.
#[track_caller]
fn expect_err<T: std::fmt::Debug>(what: &str, r: Result<T, Status>, code: Code, field: Option<&str>) -> Status {
    let status = match r {
        Ok(resp) => panic!("{what}: expected {code:?}, got a success: {resp:?}"),
        Err(s) => s,
    };
    assert_ne!(status.code(), Code::Unknown, "{what}: never UNKNOWN: {status:?}");
    assert_eq!(status.code(), code, "{what}: {status:?}");
    if let Some(field) = field {
        assert!(
            names_field(status.message(), field),
            "{what}: the message should name the field {field:?}: {:?}",
            status.message()
        );
    }
    status
}

/// The events of a WatchEvents stream until one satisfies `until` (included).
async fn events_until(
    stream: &mut tonic::Streaming<pb::WatchEventsResponse>,
    what: &str,
    until: impl Fn(&pb::Event) -> bool,
) -> Vec<pb::Event> {
    let start = Instant::now();
    let mut got = Vec::new();
    loop {
        let left = DEADLINE.saturating_sub(start.elapsed());
        assert!(
            !left.is_zero(),
            "timed out waiting for {what}; got {:#?}",
            summarize(&got)
        );
        match next_within(stream, left).await.and_then(|m| m.kind) {
            Some(pb::watch_events_response::Kind::Event(e)) => {
                let done = until(&e);
                got.push(e);
                if done {
                    return got;
                }
            }
            Some(pb::watch_events_response::Kind::Snapshot(s)) => {
                panic!("{what}: unexpected snapshot at seq {} (gap {})", s.seq, s.gap)
            }
            None => {}
        }
    }
}

fn is(e: &pb::Event, name: &str, from: pb::DynoState, to: pb::DynoState) -> bool {
    e.dyno.as_ref().is_some_and(|d| d.name == name) && e.from == from as i32 && e.to == to as i32
}

fn assert_strictly_increasing(what: &str, events: &[pb::Event]) {
    for w in events.windows(2) {
        assert!(
            w[0].seq < w[1].seq,
            "{what}: seqs must strictly increase: {:#?}",
            summarize(events)
        );
    }
}

/// stderr of a failed dynoctl: exactly one line, starting with `dynoctl: `.
#[track_caller]
fn one_error_line(what: &str, out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "{what}: should fail; stdout {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: one line on stderr, got {stderr:?}");
    assert!(lines[0].starts_with("dynoctl: "), "{what}: {stderr:?}");
    lines[0].to_string()
}

// ---------------------------------------------------------------------------
// 1. Bad inputs over gRPC
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_get_the_right_codes_and_name_the_field() {
    let a = TestAgent::start("");
    let slug = a.slug("ok", &[("Procfile", "worker: exec sleep 600\n")]);
    let tgz = a.tarball("tb", &[("Procfile", "worker: exec sleep 600\n")]);
    let digest = dyno_agent::slug::sha256_file(&tgz).expect("sha256 of the tarball");
    let mut c = a.client().await;
    let good = || start_req("shop", "worker.1", &slug, SLEEPER);
    let (tgz_s, zeros) = (show(&tgz), "0".repeat(64));

    type Mutate<'a> = Box<dyn Fn(&mut pb::StartDynoRequest) + 'a>;
    let cases: Vec<(&str, &str, Mutate)> = vec![
        ("invalid app name", "app", Box::new(|r| r.app = "Shop!".into())),
        ("too short app name", "app", Box::new(|r| r.app = "ab".into())),
        (
            "dyno name without a number",
            "name",
            Box::new(|r| r.name = "worker".into()),
        ),
        (
            "dyno name with a bad type",
            "name",
            Box::new(|r| r.name = "Web.1".into()),
        ),
        ("missing dyno name", "name", Box::new(|r| r.name = String::new())),
        (
            "bad env key",
            "env.1BAD",
            Box::new(|r| {
                r.env.insert("GOOD".into(), "1".into());
                r.env.insert("1BAD".into(), "x".into());
            }),
        ),
        ("unknown size", "size", Box::new(|r| r.size = "huge-9x".into())),
        ("unknown stack", "stack", Box::new(|r| r.stack = "nope".into())),
        ("bad release", "release", Box::new(|r| r.release = "v 2".into())),
        ("empty slug", "slug", Box::new(|r| r.slug = String::new())),
        ("relative slug path", "slug", Box::new(|r| r.slug = "slugs/ok".into())),
        (
            "missing slug",
            "slug",
            Box::new(|r| r.slug = format!("{tgz_s}.missing")),
        ),
        (
            "wrong sha256 of a tarball",
            "sha256",
            Box::new(|r| (r.slug, r.sha256) = (tgz_s.clone(), zeros.clone())),
        ),
        (
            "malformed sha256",
            "sha256",
            Box::new(|r| (r.slug, r.sha256) = (tgz_s.clone(), "XYZ".into())),
        ),
        (
            "sha256 for a directory slug",
            "sha256",
            Box::new(|r| r.sha256 = digest.clone()),
        ),
        (
            "time_to_live of a dyno that is not one-off",
            "time_to_live",
            Box::new(|r| {
                // A protobuf Duration, its type taken from the field (no prost-types here).
                let mut ttl = r.time_to_live.unwrap_or_default();
                ttl.seconds = 60;
                r.time_to_live = Some(ttl);
            }),
        ),
    ];
    for (what, field, mutate) in cases {
        let mut req = good();
        mutate(&mut req);
        let st = expect_err(what, c.start_dyno(req).await, Code::InvalidArgument, Some(field));
        if what == "wrong sha256 of a tarball" {
            assert!(
                st.message().contains(&digest),
                "the actual digest is reported: {:?}",
                st.message()
            );
        }
    }

    // Unknown dynos and apps, bad selectors and filters.
    let get = |app: &str, name: &str| pb::GetDynoRequest {
        app: app.into(),
        name: name.into(),
    };
    let sel = |app: &str, target: &str, all: bool| {
        Some(pb::DynoSelector {
            app: app.into(),
            target: target.into(),
            all,
        })
    };
    let stop = |selector| pb::StopDynoRequest { selector };
    let restart = |selector| pb::RestartDynoRequest { selector };
    let logs = |app: &str, dyno: &str| pb::StreamLogsRequest {
        app: app.into(),
        dyno: dyno.into(),
        ..Default::default()
    };
    use Code::{InvalidArgument as Invalid, NotFound};
    // What was called, its outcome, the expected code and the field to name.
    type Check<'a> = (&'a str, Result<(), Status>, Code, Option<&'a str>);
    let checks: Vec<Check> = vec![
        (
            "GetDyno unknown",
            c.get_dyno(get("shop", "worker.9")).await.map(drop),
            NotFound,
            None,
        ),
        (
            "GetDyno bad app",
            c.get_dyno(get("Shop", "worker.1")).await.map(drop),
            Invalid,
            Some("app"),
        ),
        (
            "GetDyno bad name",
            c.get_dyno(get("shop", "worker")).await.map(drop),
            Invalid,
            Some("name"),
        ),
        (
            "StopDyno unknown app",
            c.stop_dyno(stop(sel("nosuchapp", "", false))).await.map(drop),
            NotFound,
            None,
        ),
        (
            "StopDyno unknown dyno",
            c.stop_dyno(stop(sel("shop", "web.3", false))).await.map(drop),
            NotFound,
            None,
        ),
        (
            "RestartDyno unknown app",
            c.restart_dyno(restart(sel("nosuchapp", "", false))).await.map(drop),
            NotFound,
            None,
        ),
        (
            "RestartDyno unknown type",
            c.restart_dyno(restart(sel("shop", "clock", false))).await.map(drop),
            NotFound,
            None,
        ),
        (
            "StopDyno without selector",
            c.stop_dyno(stop(None)).await.map(drop),
            Invalid,
            Some("selector"),
        ),
        (
            "RestartDyno without selector",
            c.restart_dyno(restart(None)).await.map(drop),
            Invalid,
            Some("selector"),
        ),
        (
            "StopDyno empty selector",
            c.stop_dyno(stop(sel("", "", false))).await.map(drop),
            Invalid,
            Some("selector.app"),
        ),
        (
            "StopDyno bad target",
            c.stop_dyno(stop(sel("shop", "Web!", false))).await.map(drop),
            Invalid,
            Some("selector.target"),
        ),
        (
            "StopDyno all and app",
            c.stop_dyno(stop(sel("shop", "", true))).await.map(drop),
            Invalid,
            Some("selector.all"),
        ),
        (
            "RestartDyno all",
            c.restart_dyno(restart(sel("", "", true))).await.map(drop),
            Invalid,
            Some("selector.all"),
        ),
        (
            "ListDynos bad app",
            c.list_dynos(pb::ListDynosRequest {
                app: "A".into(),
                ..Default::default()
            })
            .await
            .map(drop),
            Invalid,
            Some("app"),
        ),
        (
            "StreamLogs dyno without app",
            c.stream_logs(logs("", "web.1")).await.map(drop),
            Invalid,
            Some("app"),
        ),
        (
            "StreamLogs bad dyno",
            c.stream_logs(logs("shop", "Web!")).await.map(drop),
            Invalid,
            Some("dyno"),
        ),
        (
            "StreamLogs unknown dyno",
            c.stream_logs(logs("shop", "web.1")).await.map(drop),
            NotFound,
            None,
        ),
    ];
    for (what, r, code, field) in checks {
        expect_err(what, r, code, field);
    }

    // None of that created a dyno, and the agent still serves.
    let list = c
        .list_dynos(pb::ListDynosRequest::default())
        .await
        .expect("ListDynos still works");
    assert!(
        list.get_ref().dynos.is_empty(),
        "bad requests created nothing: {:?}",
        list.get_ref().dynos
    );

    // The right sha256 for the same tarball is accepted (the refusal above was
    // about the digest, not the slug), and a StopDyno of `all` is fine.
    let d = c
        .start_dyno(pb::StartDynoRequest {
            slug: show(&tgz),
            sha256: digest.clone(),
            command: String::new(),
            ..good()
        })
        .await
        .expect("a tarball slug with its sha256")
        .into_inner();
    assert_eq!(d.slug_sha256, digest);
    assert_eq!(d.command, "exec sleep 600", "command from the tarball's Procfile");
    blocking(|| a.wait_state("shop", "worker.1", "up"));
    let stopped = c
        .stop_dyno(stop(sel("", "", true)))
        .await
        .expect("stop --all")
        .into_inner();
    assert_eq!(stopped.dynos.len(), 1);
}

// ---------------------------------------------------------------------------
// 2. dynoctl error paths
// ---------------------------------------------------------------------------

#[test]
fn dynoctl_errors_are_one_line_with_distinct_exit_codes() {
    let a = TestAgent::start("");
    let slug = a.slug("ok", &[]);
    let slug = show(&slug);

    let out = a.ctl(&start_args("Bad!", "worker.1", &slug, &["--command", "true"]));
    let line = one_error_line("start with a bad app", &out);
    assert_eq!(out.status.code(), Some(2), "invalid argument exits 2: {line}");
    assert!(names_field(&line, "app"), "{line}");

    let out = a.ctl(&start_args(
        "shop",
        "worker.1",
        &slug,
        &["--command", "true", "--env", "NOEQUALS"],
    ));
    let line = one_error_line("start with --env without =", &out);
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(line.contains("NOEQUALS"), "{line}");

    let out = a.ctl(&start_args(
        "shop",
        "worker.1",
        &slug,
        &["--size", "huge-9x", "--command", "true"],
    ));
    let line = one_error_line("start with an unknown size", &out);
    assert_eq!(out.status.code(), Some(2), "{line}");
    assert!(names_field(&line, "size"), "{line}");

    let out = a.ctl(&["stop", "--app", "nosuchapp"]);
    let line = one_error_line("stop of an unknown app", &out);
    assert_eq!(out.status.code(), Some(3), "not found exits 3: {line}");
    assert!(line.contains("nosuchapp"), "{line}");

    let out = a.ctl(&["restart", "--app", "nosuchapp", "web"]);
    let line = one_error_line("restart of an unknown app", &out);
    assert_eq!(out.status.code(), Some(3), "{line}");

    let out = a.ctl(&["logs", "--app", "nosuchapp", "--dyno", "web.1"]);
    let line = one_error_line("logs of an unknown dyno", &out);
    assert_eq!(out.status.code(), Some(3), "{line}");

    // No agent behind the socket: a clear message, non-zero.
    let out = Command::new(ctl_bin())
        .args(["--socket", "/nonexistent/dynoagent.sock", "ps"])
        .env_remove("DYNOAGENT_SOCKET")
        .stdin(Stdio::null())
        .output()
        .expect("run dynoctl");
    let line = one_error_line("ps without an agent", &out);
    assert!(
        line.contains("/nonexistent/dynoagent.sock") && line.contains("cannot reach the agent"),
        "{line}"
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "nothing on stdout");

    // A usage error from the argument parser is non-zero too.
    let out = a.ctl(&["frobnicate"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "unknown subcommand: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The socket also comes from $DYNOAGENT_SOCKET.
    let out = Command::new(ctl_bin())
        .arg("ps")
        .env("DYNOAGENT_SOCKET", &a.socket)
        .stdin(Stdio::null())
        .output()
        .expect("run dynoctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "No dynos on this host.\n");
}

// ---------------------------------------------------------------------------
// 3. Idempotent StartDyno; a new spec replaces the run
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_start_is_idempotent_and_a_new_spec_replaces_the_run() {
    let a = TestAgent::start("");
    let slug = a.slug("idem", &[]);
    let mut c = a.client().await;
    let req = pb::StartDynoRequest {
        release: "v1".into(),
        env: HashMap::from([("GREETING".to_string(), "hi".to_string())]),
        ..start_req("shop", "worker.1", &slug, SLEEPER)
    };
    let first = c.start_dyno(req.clone()).await.expect("start").into_inner();
    let up = blocking(|| a.wait_state("shop", "worker.1", "up"));
    let pid = pid_of(&up);
    assert_eq!(up["id"], first.id.as_str());

    // The same request again, twice: nothing changes.
    for i in 0..2 {
        let again = c.start_dyno(req.clone()).await.expect("repeated start").into_inner();
        assert_eq!(again.id, first.id, "same dyno id (repeat {i})");
        assert_eq!(again.pid, pid, "same pid (repeat {i})");
        assert_eq!(again.run_id, first.run_id, "same run (repeat {i})");
        assert_eq!(again.restarts, 0);
        assert_eq!(again.state, pb::DynoState::Up as i32);
    }
    // Also through dynoctl, with the same spec.
    a.ctl_ok(&start_args(
        "shop",
        "worker.1",
        &show(&slug),
        &["--command", SLEEPER, "--release", "v1", "--env", "GREETING=hi"],
    ));
    blocking(|| nothing_happens_for(Duration::from_millis(500))); // no new run
    let d = get_dyno(&mut c, "shop", "worker.1").await;
    assert_eq!(
        (d.pid, d.restarts, d.run_id.as_str()),
        (pid, 0, first.run_id.as_str()),
        "not restarted: {d:?}"
    );
    assert_eq!(d.state, pb::DynoState::Up as i32);
    assert!(alive(pid));

    // A new release with a new command replaces the run.
    let v2 = pb::StartDynoRequest {
        release: "v2".into(),
        command: "exec sleep 601".into(),
        ..req.clone()
    };
    let replaced = c.start_dyno(v2.clone()).await.expect("start v2").into_inner();
    assert_eq!(replaced.id, first.id, "still the same dyno");
    assert_eq!(replaced.release, "v2");
    let d2 = blocking(|| {
        a.wait_dyno("shop", "worker.1", "up with the v2 run", |d| {
            d["state"] == "up" && d["release"] == "v2" && d["pid"].is_u64() && d["pid"] != up["pid"]
        })
    });
    assert_eq!(d2["command"], "exec sleep 601");
    assert_ne!(d2["run_id"], up["run_id"]);
    blocking(|| wait_for("the v1 process to end", || (!alive(pid)).then_some(())));
    // And v2 repeated is again a no-op.
    let again = c.start_dyno(v2).await.expect("repeat v2").into_inner();
    assert_eq!(again.pid, pid_of(&d2));
    assert_eq!(again.run_id, d2["run_id"].as_str().unwrap());
}

// ---------------------------------------------------------------------------
// 4. Procfile
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_command_comes_from_the_procfile() {
    let a = TestAgent::start("");
    let procfile = format!("# process types\nworker: {SLEEPER}\nweb: {WEB}\n");
    let slug = a.slug("pf", &[("Procfile", &procfile), ("index.html", "from the procfile\n")]);
    let bare = a.slug("bare", &[]);
    let mut c = a.client().await;

    let d = c
        .start_dyno(start_req("shop", "worker.1", &slug, ""))
        .await
        .expect("worker from Procfile")
        .into_inner();
    assert_eq!(d.command, SLEEPER);
    let d = c
        .start_dyno(start_req("shop", "web.1", &slug, "  "))
        .await
        .expect("web from Procfile")
        .into_inner();
    assert_eq!(d.command, WEB);
    let w = blocking(|| a.wait_state("shop", "worker.1", "up"));
    assert_eq!(w["command"], SLEEPER);
    let web = blocking(|| a.wait_state("shop", "web.1", "up"));
    let port = web["port"].as_u64().expect("port") as u16;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").unwrap();
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    assert!(body.contains("from the procfile"), "{body}");

    // dynoctl start without --command, too.
    let out = a.ctl_ok(&[vec!["--json"], start_args("shop", "worker.2", &show(&slug), &[])].concat());
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["command"], SLEEPER);

    expect_err(
        "a type missing from the Procfile",
        c.start_dyno(start_req("shop", "clock.1", &slug, "")).await,
        Code::InvalidArgument,
        Some("command"),
    );
    let st = expect_err(
        "a slug without a Procfile",
        c.start_dyno(start_req("shop", "worker.3", &bare, "")).await,
        Code::InvalidArgument,
        Some("command"),
    );
    assert!(st.message().contains("Procfile"), "{st:?}");
    assert!(a.dyno("shop", "clock.1").is_none() && a.dyno("shop", "worker.3").is_none());
}

// ---------------------------------------------------------------------------
// 5. WatchEvents and `dynoctl events`
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_replays_then_follows() {
    use pb::DynoState::{Down, Starting, Up};
    let a = TestAgent::start("");
    let slug = a.slug("ev", &[]);
    let mut c = a.client().await;
    c.start_dyno(start_req("evapp", "worker.1", &slug, SLEEPER))
        .await
        .expect("start");
    blocking(|| a.wait_state("evapp", "worker.1", "up"));

    // From 0: the kept events, in order, no snapshot.
    let mut w1 = watch_events(&mut c, 0, true).await;
    let replay = events_until(&mut w1, "worker.1 starting -> up", |e| is(e, "worker.1", Starting, Up)).await;
    assert_strictly_increasing("replay", &replay);
    assert!(
        replay
            .iter()
            .any(|e| is(e, "worker.1", Down, Starting) && e.reason == "start"),
        "{:#?}",
        summarize(&replay)
    );
    let up_ev = replay.last().unwrap();
    assert_eq!(up_ev.reason, "up");
    let dyno = up_ev.dyno.as_ref().unwrap();
    assert_eq!((dyno.app.as_str(), dyno.state), ("evapp", Up as i32));
    assert!(dyno.pid > 0 && up_ev.at.is_some());
    assert_eq!(replay[0].seq, 1, "a fresh agent numbers from 1");

    // From the seq of the first event: exactly the later ones.
    let from = replay[0].seq;
    let mut w2 = watch_events(&mut c, from, true).await;
    let last = up_ev.seq;
    let later = events_until(&mut w2, "the replay's last event", |e| e.seq >= last).await;
    let want: Vec<u64> = replay.iter().map(|e| e.seq).filter(|s| *s > from).collect();
    assert_eq!(
        later.iter().map(|e| e.seq).collect::<Vec<_>>(),
        want,
        "{:#?}",
        summarize(&later)
    );
    assert!(
        next_within(&mut w2, Duration::from_millis(300)).await.is_none(),
        "nothing more yet"
    );

    // Live: a new dyno's events reach both watchers.
    c.start_dyno(start_req("evapp", "worker.2", &slug, SLEEPER))
        .await
        .expect("start 2");
    let live1 = events_until(&mut w1, "live worker.2 up", |e| is(e, "worker.2", Starting, Up)).await;
    let live2 = events_until(&mut w2, "live worker.2 up", |e| is(e, "worker.2", Starting, Up)).await;
    assert_eq!(
        live1.iter().map(|e| e.seq).collect::<Vec<_>>(),
        live2.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "both watchers see the same events"
    );
    assert!(live1[0].seq > last, "live events come after the replayed ones");
    assert!(is(&live1[0], "worker.2", Down, Starting), "{:#?}", summarize(&live1));
    let mut all = replay.clone();
    all.extend(live1.iter().cloned());
    assert_strictly_increasing("replay + live", &all);

    // dynoctl events (no -f): prints exactly what the agent has, then ends.
    let events_text = |args: &[&str]| blocking(|| a.ctl_ok(args));
    let text = events_text(&["events"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), all.len(), "one line per event: {text}");
    for (l, e) in lines.iter().zip(&all) {
        assert!(
            l.trim_start().starts_with(&format!("{} ", e.seq)),
            "{l:?} for seq {}",
            e.seq
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("evapp worker.2: starting -> up (up)")),
        "{text}"
    );
    let text = events_text(&["events", "--after", &from.to_string()]);
    assert_eq!(text.lines().count(), all.len() - 1, "{text}");

    let json: Vec<Value> = blocking(|| serde_json::from_str(&a.ctl_ok(&["--json", "events"])).expect("events json"));
    assert_eq!(json.len(), all.len());
    for (v, e) in json.iter().zip(&all) {
        for k in ["seq", "app", "dyno", "from", "to", "reason"] {
            assert!(v.get(k).is_some_and(|x| !x.is_null()), "{k} missing in {v}");
        }
        assert_eq!(v["seq"], e.seq);
        assert_eq!(v["app"], "evapp");
        assert_eq!(v["reason"], e.reason.as_str());
    }
    let up2 = json
        .iter()
        .find(|v| v["dyno"] == "worker.2" && v["to"] == "up")
        .expect("worker.2 up in json");
    assert_eq!(
        (up2["from"].as_str(), up2["reason"].as_str()),
        (Some("starting"), Some("up"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_from_a_seq_the_agent_never_reached_gets_a_snapshot() {
    let a = TestAgent::start("");
    let slug = a.slug("fut", &[]);
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.1", &slug, SLEEPER))
        .await
        .expect("start");
    blocking(|| a.wait_state("shop", "worker.1", "up"));

    // A scheduler that remembers a seq from a previous life of the host
    // (state reset), and the largest one there is.
    for after_seq in [1_000_000, u64::MAX] {
        let r = c
            .watch_events(pb::WatchEventsRequest {
                after_seq,
                follow: true,
                series: String::new(),
            })
            .await;
        let mut s = match r {
            Ok(s) => s.into_inner(),
            Err(st) => panic!(
                "WatchEvents({after_seq}) failed: {st:?}\n--- agent log ---\n{}",
                a.agent_log()
            ),
        };
        match next_within(&mut s, DEADLINE).await.and_then(|m| m.kind) {
            Some(pb::watch_events_response::Kind::Snapshot(snap)) => {
                assert!(snap.gap, "after_seq {after_seq}: a gap");
                assert_eq!(snap.dynos.len(), 1);
                assert_eq!(snap.dynos[0].name, "worker.1");
                assert!(
                    snap.seq >= 2 && snap.seq < 1_000_000,
                    "the agent's own last seq: {}",
                    snap.seq
                );
            }
            other => panic!("after_seq {after_seq}: expected a snapshot first, got {other:?}"),
        }
    }
    // The agent still serves.
    let list = c.list_dynos(pb::ListDynosRequest::default()).await;
    assert!(
        list.is_ok(),
        "ListDynos after the watches: {list:?}\n--- agent log ---\n{}",
        a.agent_log()
    );
    c.start_dyno(start_req("shop", "worker.2", &slug, SLEEPER))
        .await
        .expect("start after the watches");
    blocking(|| a.wait_state("shop", "worker.2", "up"));
}

// ---------------------------------------------------------------------------
// 6. StreamLogs follow, and `dynoctl logs -n`
// ---------------------------------------------------------------------------

/// The date and the second of the day of a contract timestamp
/// (`2026-11-22T10:00:00.123456+00:00` → (`2026-11-22`, 36000.123456)).
fn day_seconds(ts: &str) -> (&str, f64) {
    let num = |r: std::ops::Range<usize>| ts[r].parse::<f64>().unwrap_or_else(|_| panic!("timestamp {ts:?}"));
    (&ts[..10], num(11..13) * 3600.0 + num(14..16) * 60.0 + num(17..26))
}

/// The numbers a dyno printed (`w1 7` → 7), in the order received.
fn counter(text: &str, tag: &str) -> Option<u64> {
    text.strip_prefix(tag)?.strip_prefix(' ')?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_logs_follows_every_dyno_of_an_app_in_order() {
    let a = TestAgent::start("");
    let slug = a.slug("logs", &[]);
    let mut c = a.client().await;
    for (name, tag) in [("worker.1", "w1"), ("worker.2", "w2")] {
        let cmd = format!("i=0; while :; do echo \"{tag} $i\"; i=$((i+1)); sleep 0.1; done");
        c.start_dyno(start_req("logapp", name, &slug, &cmd))
            .await
            .expect("start");
    }
    // Another app's output must not show up.
    c.start_dyno(start_req(
        "other",
        "worker.1",
        &slug,
        "while :; do echo noise; sleep 0.1; done",
    ))
    .await
    .expect("start other");
    blocking(|| {
        a.wait_state("logapp", "worker.1", "up");
        a.wait_state("logapp", "worker.2", "up");
    });

    let mut s = c
        .stream_logs(pb::StreamLogsRequest {
            app: "logapp".into(),
            tail: 5,
            follow: true,
            ..Default::default()
        })
        .await
        .expect("stream logs")
        .into_inner();
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut stamps: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut received = 0;
    // The latest timestamp of the stream so far.
    let mut latest: Option<String> = None;
    let start = Instant::now();
    while seen.values().filter(|v| v.len() >= 20).count() < 2 {
        assert!(start.elapsed() < DEADLINE, "timed out following logs; got {seen:?}");
        let Some(l) = next_within(&mut s, Duration::from_secs(5)).await else {
            continue;
        };
        received += 1;
        assert_eq!(l.app, "logapp", "only the app's lines: {l:?}");
        assert!(l.line.ends_with(&format!("[{}]: {}", l.dyno, l.text)), "{l:?}");
        if l.source != "app" {
            continue;
        }
        let tag = match l.dyno.as_str() {
            "worker.1" => "w1",
            "worker.2" => "w2",
            other => panic!("unexpected dyno {other}: {l:?}"),
        };
        let n = counter(&l.text, tag).unwrap_or_else(|| panic!("{l:?}"));
        seen.entry(l.dyno.clone()).or_default().push(n);
        let ts = l.line[..32].to_string();
        if let Some(prev) = &latest {
            // Lines of both dynos interleave by time: at most one poll
            // interval (100 ms) out of order.
            let ((d0, s0), (d1, s1)) = (day_seconds(prev), day_seconds(&ts));
            assert!(
                d0 != d1 || s1 >= s0 - 0.1,
                "the stream went back in time: {prev} then {ts}"
            );
        }
        if latest.as_ref().is_none_or(|p| *p < ts) {
            latest = Some(ts.clone());
        }
        stamps.entry(l.dyno.clone()).or_default().push(ts);
    }
    assert!(received >= 40);
    for (dyno, ns) in &seen {
        for w in ns.windows(2) {
            assert_eq!(w[1], w[0] + 1, "{dyno}: lines in order, none lost or repeated: {ns:?}");
        }
        let ts = &stamps[dyno];
        assert!(
            ts.windows(2).all(|w| w[0] <= w[1]),
            "{dyno}: timestamps never go back: {ts:?}"
        );
    }
    drop(s);

    // dynoctl logs -n 3: exactly three lines in the contract format.
    let out = blocking(|| a.ctl_ok(&["logs", "--app", "logapp", "-n", "3"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    for l in lines {
        let (ts, rest) = l.split_once(' ').unwrap_or_else(|| panic!("{l:?}"));
        assert_eq!(ts.len(), 32, "timestamp {ts:?}");
        assert!(ts.ends_with("+00:00"), "{ts:?}");
        let b = ts.as_bytes();
        for (i, ch) in [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':'), (19, b'.')] {
            assert_eq!(b[i], ch, "{ts:?} at {i}");
        }
        assert!(
            b[..19]
                .iter()
                .enumerate()
                .all(|(i, c)| [4, 7, 10, 13, 16].contains(&i) || c.is_ascii_digit()),
            "{ts:?}"
        );
        assert!(b[20..26].iter().all(u8::is_ascii_digit), "microseconds: {ts:?}");
        let ok = ["w1", "w2"].iter().zip(["worker.1", "worker.2"]).any(|(tag, dyno)| {
            rest.strip_prefix(&format!("app[{dyno}]: "))
                .and_then(|t| counter(t, tag))
                .is_some()
        });
        assert!(ok, "app[worker.N]: wN <n>: {l:?}");
    }
}

// ---------------------------------------------------------------------------
// 7. HostInfo
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_info_counts_match_the_dynos() {
    let a = TestAgent::start("");
    let slug = a.slug("info", &[]);
    let mut c = a.client().await;
    let empty = c
        .host_info(pb::HostInfoRequest {})
        .await
        .expect("host info")
        .into_inner();
    assert_eq!(
        (
            empty.dynos_up,
            empty.dynos_starting,
            empty.dynos_crashed,
            empty.dynos_down
        ),
        (0, 0, 0, 0)
    );
    assert_eq!(empty.dyno_memory_committed_bytes, 0);

    for name in ["worker.1", "worker.2", "worker.3"] {
        c.start_dyno(start_req("infoapp", name, &slug, SLEEPER))
            .await
            .expect("start");
    }
    c.start_dyno(pb::StartDynoRequest {
        size: "standard-2x".into(),
        ..start_req("infoapp", "big.1", &slug, SLEEPER)
    })
    .await
    .expect("start big");
    blocking(|| {
        for name in ["worker.1", "worker.2", "worker.3", "big.1"] {
            a.wait_state("infoapp", name, "up");
        }
    });
    a.ctl_ok(&["stop", "--app", "infoapp", "worker.3"]);
    blocking(|| a.wait_state("infoapp", "worker.3", "down"));

    let i = c
        .host_info(pb::HostInfoRequest {})
        .await
        .expect("host info")
        .into_inner();
    let list = c
        .list_dynos(pb::ListDynosRequest::default())
        .await
        .expect("list")
        .into_inner()
        .dynos;
    let count = |s: pb::DynoState| list.iter().filter(|d| d.state == s as i32).count() as u32;
    assert_eq!(i.dynos_up, count(pb::DynoState::Up));
    assert_eq!(i.dynos_starting, count(pb::DynoState::Starting));
    assert_eq!(i.dynos_crashed, count(pb::DynoState::Crashed));
    assert_eq!(i.dynos_down, count(pb::DynoState::Down));
    assert_eq!((i.dynos_up, i.dynos_down), (3, 1));
    const MIB: u64 = 1 << 20;
    assert_eq!(
        i.dyno_memory_committed_bytes,
        2 * 512 * MIB + 1024 * MIB,
        "2 × standard-1x + standard-2x up"
    );
    assert!(i.cpus >= 1);
    assert!(
        i.memory_total_bytes > 0 && i.memory_available_bytes <= i.memory_total_bytes,
        "{i:?}"
    );
    assert!(i.host_id.starts_with("e2e-"), "{}", i.host_id);
    assert!(!i.agent_version.is_empty());
    assert!(i.load1 >= 0.0);

    let text = blocking(|| a.ctl_ok(&["info"]));
    assert!(text.contains("3 up") && text.contains("1 down"), "{text}");
    assert!(text.contains(&i.host_id), "{text}");
    let v: Value = serde_json::from_str(&blocking(|| a.ctl_ok(&["--json", "info"]))).expect("info json");
    assert_eq!(v["dynos"]["up"], 3);
    assert_eq!(v["dynos"]["down"], 1);
    assert_eq!(v["cpus"], i.cpus);
    assert_eq!(v["host_id"], i.host_id.as_str());
    assert_eq!(v["dyno_memory_committed_bytes"], i.dyno_memory_committed_bytes);
}

// ---------------------------------------------------------------------------
// 8. Health and reflection
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_reflection_are_served() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let a = TestAgent::start("");
    let ch = dyno_agent::client::connect(&a.socket).await.expect("connect");
    let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
    for service in ["dyno.v1.Agent", "dyno.v1.Usage", ""] {
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|s| panic!("health of {service:?}: {s:?}"))
            .into_inner();
        assert_eq!(r.status(), ServingStatus::Serving, "{service:?}");
    }
    let unknown = h
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(unknown.expect_err("unknown service").code(), Code::NotFound);

    // Reflection: list the services over a raw HTTP/2 stream.
    let socket = a.socket.clone();
    let body = blocking(|| reflection_list_services(&socket));
    for name in [
        "dyno.v1.Agent",
        "dyno.v1.Usage",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
    ] {
        assert!(
            body.windows(name.len()).any(|w| w == name.as_bytes()),
            "reflection lists {name}: {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// Sends one `ServerReflectionRequest { list_services: "" }` on a raw HTTP/2
/// connection (this crate has no reflection client) and returns the gRPC
/// payload bytes of the response.
fn reflection_list_services(socket: &Path) -> Vec<u8> {
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    // HPACK: literal header fields without indexing, new names, no Huffman.
    let mut block = Vec::new();
    for (k, v) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"),
        (":authority", "dynoagent.local"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(k.len() as u8);
        block.extend_from_slice(k.as_bytes());
        block.push(v.len() as u8);
        block.extend_from_slice(v.as_bytes());
    }
    // field 7 (list_services), an empty string, in the gRPC length-prefixed framing.
    let msg = [0x3a, 0x00];
    let mut data = vec![0u8];
    data.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    data.extend_from_slice(&msg);

    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[])); // SETTINGS
    out.extend(frame(1, 0x4, 1, &block)); // HEADERS, END_HEADERS
    out.extend(frame(0, 0x1, 1, &data)); // DATA, END_STREAM
    s.write_all(&out).expect("write");

    let mut body = Vec::new();
    loop {
        let mut head = [0u8; 9];
        s.read_exact(&mut head)
            .unwrap_or_else(|e| panic!("reading a frame: {e}; body so far {body:?}"));
        let len = (usize::from(head[0]) << 16) | (usize::from(head[1]) << 8) | usize::from(head[2]);
        let (kind, flags) = (head[3], head[4]);
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        s.read_exact(&mut payload).expect("frame payload");
        match kind {
            4 if flags & 1 == 0 => s.write_all(&frame(4, 1, 0, &[])).expect("settings ack"),
            0 if stream == 1 => body.extend_from_slice(&payload),
            3 => panic!("RST_STREAM {payload:?}"),
            7 => panic!("GOAWAY {payload:?}"),
            _ => {}
        }
        if stream == 1 && flags & 1 == 1 && (kind == 0 || kind == 1) {
            return body;
        }
    }
}

// ---------------------------------------------------------------------------
// 9. SIGTERM: the agent exits, dynos keep running and are re-adopted
// ---------------------------------------------------------------------------

#[test]
fn sigterm_exits_cleanly_and_dynos_keep_running() {
    let mut a = TestAgent::start("");
    let slug = a.slug("term", &[("index.html", "still here\n")]);
    a.start_dyno("shop", "worker.1", &slug, SLEEPER);
    a.start_dyno("shop", "web.1", &slug, WEB);
    let w = a.wait_state("shop", "worker.1", "up");
    let web = a.wait_state("shop", "web.1", "up");
    let (wpid, webpid) = (pid_of(&w), pid_of(&web));

    let status = a.sigterm();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status 0 on SIGTERM: {status}\n{}",
        a.agent_log()
    );
    assert!(!a.socket.exists(), "the socket is removed");
    assert!(alive(wpid) && alive(webpid), "dynos keep running without the agent");
    nothing_happens_for(Duration::from_millis(300)); // still running a moment later
    assert!(alive(wpid) && alive(webpid));

    a.spawn();
    let w2 = a.wait_state("shop", "worker.1", "up");
    let web2 = a.wait_state("shop", "web.1", "up");
    assert_eq!(pid_of(&w2), wpid, "re-adopted, not restarted");
    assert_eq!(pid_of(&web2), webpid);
    assert_eq!((w2["restarts"].as_u64(), web2["restarts"].as_u64()), (Some(0), Some(0)));
    assert_eq!(w2["run_id"], w["run_id"]);
    // The re-adopted dynos are still managed: a stop works.
    a.ctl_ok(&["stop", "--app", "shop", "worker.1"]);
    a.wait_state("shop", "worker.1", "down");
    wait_for("the worker to end", || (!alive(wpid)).then_some(()));
}

/// A child process of the test, killed (by its handle) when the test ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM to the agent and waits until it has exited.
fn sigterm_and_wait(a: &TestAgent, what: &str) {
    let pid = a.agent_pid();
    signal(pid, nix::sys::signal::Signal::SIGTERM);
    wait_for(&format!("the agent to exit after SIGTERM while {what}"), || {
        (!alive(pid)).then_some(())
    });
    assert!(!a.socket.exists(), "the socket is removed");
}

#[test]
fn sigterm_exits_while_dynoctl_follows_logs() {
    let mut a = TestAgent::start("");
    let slug = a.slug("follow", &[]);
    let cmd = "while :; do echo tick; sleep 0.2; done";
    a.start_dyno("shop", "worker.1", &slug, cmd);
    let d = a.wait_state("shop", "worker.1", "up");
    // An ops person follows the app's logs in a terminal.
    let mut follower = KillOnDrop(
        Command::new(ctl_bin())
            .arg("--socket")
            .arg(&a.socket)
            .args(["logs", "--app", "shop", "-f"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("dynoctl logs -f"),
    );
    // Its output is drained all along; the first line proves it follows.
    let stdout = follower.0.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(DEADLINE).expect("a first line from dynoctl logs -f");
    assert!(first.contains("[worker.1]: "), "{first:?}");

    sigterm_and_wait(&a, "`dynoctl logs -f` follows the logs");
    let status = a.sigterm(); // reaps it
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(alive(pid_of(&d)), "the dyno keeps running");
    // The follower ends too, instead of hanging on a dead agent.
    let _status = wait_for("dynoctl logs -f to end", || follower.0.try_wait().expect("try_wait"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_while_a_client_watches_events() {
    let mut a = TestAgent::start("");
    let slug = a.slug("watch", &[]);
    let mut c = a.client().await;
    c.start_dyno(start_req("shop", "worker.1", &slug, SLEEPER))
        .await
        .expect("start");
    blocking(|| a.wait_state("shop", "worker.1", "up"));
    // A scheduler watches the host's events.
    let mut events = watch_events(&mut c, 0, true).await;
    assert!(
        next_within(&mut events, DEADLINE).await.is_some(),
        "the event stream is live"
    );

    blocking(|| sigterm_and_wait(&a, "a client watches events"));
    let status = a.sigterm(); // reaps it
    assert_eq!(status.code(), Some(0), "{status}");
    // The stream ends (with an error or cleanly) rather than hanging.
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(_)) = events.message().await {}
    })
    .await;
    assert!(end.is_ok(), "the event stream ends when the agent exits");
}
