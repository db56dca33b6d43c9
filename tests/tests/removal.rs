//! Nothing runs out (issue 13 item 5, DESIGN §4, §9): a `down` dyno holds no
//! uid and no port (starting again takes fresh ones), `dynoctl rm` /
//! `RemoveDyno` removes a down dyno's record and run directories with a
//! removal event and refuses a live one, and finished one-offs go after
//! `oneoff_retention`.

use dyno_proto::v1 as pb;
use dyno_tests::*;
use serde_json::Value;
use tonic::Code;

/// The real uid of process `pid`.
fn uid_of(pid: u64) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("Uid line")
}

fn uid_of_dyno(d: &Value) -> u32 {
    uid_of(d["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {d}")))
}

/// Events `dynoctl events` gives, as JSON.
fn events(a: &TestAgent) -> Vec<Value> {
    serde_json::from_str(&a.ctl_ok(&["--json", "events"])).expect("events json")
}

#[test]
fn a_down_dyno_holds_no_uid_or_port_and_only_a_down_one_is_removed() {
    let a = TestAgent::start("");
    let slug = a.slug("rm", &[("public/index.html", "hi\n")]);
    a.start_dyno("rmapp", "worker.1", &slug, "exec sleep 600");
    let w1 = a.wait_state("rmapp", "worker.1", "up");
    let uid1 = uid_of_dyno(&w1);
    a.start_dyno("rmapp", "web.1", &slug, "exec busybox httpd -f -p $PORT -h public");
    let web = a.wait_state("rmapp", "web.1", "up");
    assert!(web["port"].as_u64().is_some(), "{web}");

    // A live dyno is not removed.
    let out = a.ctl(&["rm", "--app", "rmapp", "worker.1"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only a down dyno can be removed"), "{err}");
    let out = a.ctl(&["rm", "--app", "rmapp", "worker.9"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "NOT_FOUND: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Down: no port shown, and its uid is free for the next dyno.
    a.ctl_ok(&["stop", "--app", "rmapp"]);
    let web = a.wait_state("rmapp", "web.1", "down");
    assert!(web["port"].is_null(), "a down dyno holds no port: {web}");
    a.wait_state("rmapp", "worker.1", "down");
    a.start_dyno("rmapp", "worker.2", &slug, "exec sleep 600");
    let w2 = a.wait_state("rmapp", "worker.2", "up");
    assert_eq!(
        uid_of_dyno(&w2),
        uid1,
        "the lowest free uid: worker.1's, which it no longer holds"
    );
    // Starting worker.1 again takes a fresh uid, not worker.2's.
    a.ctl_ok(&["restart", "--app", "rmapp", "worker.1"]);
    let w1 = a.wait_dyno("rmapp", "worker.1", "up with a pid", |d| {
        d["state"] == "up" && d["pid"].is_u64()
    });
    assert_ne!(uid_of_dyno(&w1), uid1, "{w1}");
    a.ctl_ok(&[
        "start",
        "--app",
        "rmapp",
        "--name",
        "web.1",
        "--slug",
        &show(&slug),
        "--command",
        "exec busybox httpd -f -p $PORT -h public",
    ]);
    let web = a.wait_state("rmapp", "web.1", "up");
    assert!(web["port"].as_u64().is_some(), "a fresh port: {web}");

    // Removed once down: record, run directories, listed no more, an event.
    a.ctl_ok(&["stop", "--app", "rmapp", "worker.1"]);
    let w1 = a.wait_state("rmapp", "worker.1", "down");
    let id = w1["id"].as_str().expect("id").to_string();
    let out = a.ctl_ok(&["rm", "--app", "rmapp", "worker.1"]);
    assert!(out.contains("removed"), "{out}");
    assert!(a.dyno("rmapp", "worker.1").is_none(), "{:?}", a.ps());
    assert!(!a.state.join("dynos/rmapp/worker.1.json").exists());
    let left: Vec<String> = std::fs::read_dir(a.state.join("runs"))
        .expect("runs")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(&id))
        .collect();
    assert!(left.is_empty(), "run directories left: {left:?}");
    let last = events(&a)
        .into_iter()
        .rev()
        .find(|e| e["dyno"] == "worker.1")
        .expect("an event");
    assert_eq!(last["removed"], true, "{last}");
    assert_eq!(last["reason"], "removed", "{last}");
    // The others are untouched.
    assert_eq!(a.dyno("rmapp", "worker.2").expect("worker.2")["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_one_offs_are_removed_after_the_retention() {
    let a = TestAgent::start("oneoff_retention = \"1s\"\n");
    let slug = a.slug("once", &[]);
    let mut c = a.client().await;
    let d = c
        .start_dyno(pb::StartDynoRequest {
            app: "once".into(),
            one_off: true,
            command: "echo done".into(),
            slug: show(&slug),
            ..Default::default()
        })
        .await
        .expect("one-off")
        .into_inner();
    let name = d.name.clone();
    // A live dyno is refused through the API too.
    let live = c
        .start_dyno(pb::StartDynoRequest {
            app: "once".into(),
            name: "worker.1".into(),
            command: "exec sleep 600".into(),
            slug: show(&slug),
            ..Default::default()
        })
        .await
        .expect("worker");
    drop(live);
    let refused = c
        .remove_dyno(pb::RemoveDynoRequest {
            app: "once".into(),
            name: "worker.1".into(),
        })
        .await
        .expect_err("a live dyno");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    tokio::task::spawn_blocking(move || {
        wait_for("the finished one-off to be removed", || {
            a.dyno("once", &name).is_none().then_some(())
        });
        let ev = events(&a)
            .into_iter()
            .rev()
            .find(|e| e["dyno"] == name.as_str())
            .expect("an event");
        assert_eq!(ev["removed"], true, "{ev}");
        assert_eq!(ev["reason"], "retention", "{ev}");
        assert!(a.dyno("once", "worker.1").is_some(), "a live dyno stays");
    })
    .await
    .unwrap();
}
