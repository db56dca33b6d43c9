//! What a scheduler needs from the API (issue 13 item 8, DESIGN §9): a `Dyno`
//! with its creation time, memory quota, spec hash, labels and last spawn
//! error; `ListDynos` filtered by state and the event seq it reflects (list,
//! then watch, nothing missed); errors with `google.rpc` details; per-dyno
//! figures; a cordoned host. Asked by a stock client built from reflection
//! alone (Python grpcio + grpcio-status) and by the tests' own tonic client.

use dyno_proto::v1 as pb;
use dyno_tests::*;
use serde_json::Value;
use std::process::Command;
use tonic::Code;
use tonic_types::StatusExt;

/// A web slug serving `public/`.
fn web_slug(a: &TestAgent, name: &str) -> std::path::PathBuf {
    a.slug(name, &[("public/index.html", "hi\n")])
}

fn reason(v: &Value) -> Option<&str> {
    v["details"].as_array()?.iter().find(|d| d["type"] == "ErrorInfo")?["reason"].as_str()
}

#[test]
fn a_stock_client_built_from_reflection_gets_what_a_scheduler_needs() {
    let python = python_with_grpcio();
    // Room for a few standard-1x (about 2.3 GiB), never for a performance-l (14 GiB).
    let a = TestAgent::start("memory_overcommit = 0.1\n");
    let slug = web_slug(&a, "sched");
    let out = Command::new(python)
        .arg(stock_script("scheduler_client.py"))
        .arg(&a.socket)
        .arg("schedapp")
        .arg(&slug)
        .output()
        .expect("python3");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "the client: {}\n{stdout}\n{stderr}", out.status);
    let v: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {stdout}"));

    // What a Dyno carries.
    let web = &v["web"];
    assert_eq!(web["labels"]["team"], "payments", "{web:#}");
    assert_eq!(web["labels"]["example.com/tier"], "gold", "{web:#}");
    assert_eq!(web["memoryQuotaBytes"], (512u64 << 20).to_string(), "{web:#}");
    let hash = web["specHash"].as_str().expect("spec hash");
    assert_eq!(hash.len(), 64, "{web:#}");
    let created = web["createdAt"].as_str().expect("created_at");
    assert!(created.starts_with("20"), "{created}");
    // New labels only: the same run goes on with them.
    let after = &v["web_after_relabel"];
    assert_eq!(after["labels"], serde_json::json!({"team": "billing"}), "{after:#}");
    assert_eq!(after["runId"], web["runId"], "nothing restarted: {after:#}");
    assert_eq!(after["pid"], web["pid"], "{after:#}");
    assert_eq!(after["specHash"], hash, "{after:#}");

    // The state filter, and the listing's position in the event log.
    let up = &v["list_up"]["ok"];
    let names: Vec<&str> = up["dynos"]
        .as_array()
        .expect("dynos")
        .iter()
        .filter_map(|d| d["name"].as_str())
        .collect();
    assert_eq!(names, ["web.1"], "{up:#}");
    assert!(
        v["list_down"]["ok"].get("dynos").is_none(),
        "no down dyno: {:#}",
        v["list_down"]
    );
    let seq: u64 = up["seq"].as_str().expect("seq").parse().expect("a number");
    assert!(seq > 0 && !up["series"].as_str().unwrap_or("").is_empty(), "{up:#}");
    // The first event after the listing is the worker's start, numbered
    // right after it: nothing before the listing, nothing missed.
    let first = &v["first_event_after_list"]["event"];
    assert_eq!(first["seq"], (seq + 1).to_string(), "{:#}", v["first_event_after_list"]);
    assert_eq!(first["dyno"]["name"], "worker.1", "{first:#}");
    assert_eq!(first["series"], up["series"], "{first:#}");

    // Per-dyno figures, read from the cgroups.
    let stats = v["stats"]["ok"]["stats"].as_array().expect("stats");
    assert_eq!(stats.len(), 2, "{:#}", v["stats"]);
    for s in stats {
        let mem: u64 = s["memoryBytes"].as_str().unwrap_or("0").parse().expect("bytes");
        assert!(mem > 0, "a running dyno holds memory: {s:#}");
        assert_eq!(s["memoryQuotaBytes"], (512u64 << 20).to_string(), "{s:#}");
        assert!(s["runId"].as_str().is_some_and(|r| !r.is_empty()), "{s:#}");
    }

    // Errors with details a program can act on.
    let bad = &v["bad_label"];
    assert_eq!(bad["code"], "INVALID_ARGUMENT", "{bad:#}");
    assert_eq!(reason(bad), Some("INVALID_FIELD"), "{bad:#}");
    let violation = bad["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["type"] == "BadRequest"))
        .unwrap_or_else(|| panic!("a BadRequest: {bad:#}"));
    assert_eq!(violation["fieldViolations"][0]["field"], "labels[\"Team\"]", "{bad:#}");
    let no_memory = &v["no_memory"];
    assert_eq!(no_memory["code"], "RESOURCE_EXHAUSTED", "{no_memory:#}");
    assert_eq!(reason(no_memory), Some("INSUFFICIENT_MEMORY"), "{no_memory:#}");

    // A cordoned host refuses starts, says so in HostInfo, and takes them
    // again once uncordoned.
    assert_eq!(v["cordon"]["ok"]["cordoned"], true, "{:#}", v["cordon"]);
    let info = &v["info_cordoned"];
    assert_eq!(info["cordoned"], true, "{info:#}");
    assert_eq!(info["cordonReason"], "kernel upgrade", "{info:#}");
    assert!(info["cordonedSince"].is_string(), "{info:#}");
    let refused = &v["start_cordoned"];
    assert_eq!(refused["code"], "FAILED_PRECONDITION", "{refused:#}");
    assert_eq!(reason(refused), Some("HOST_CORDONED"), "{refused:#}");
    assert!(
        refused["message"].as_str().unwrap_or("").contains("kernel upgrade"),
        "{refused:#}"
    );
    assert!(v["uncordon"]["ok"].get("cordoned").is_none(), "{:#}", v["uncordon"]);
    assert!(v["start_uncordoned"]["ok"].is_object(), "{:#}", v["start_uncordoned"]);
    assert!(
        v["info_uncordoned"].get("cordoned").is_none(),
        "{:#}",
        v["info_uncordoned"]
    );
    a.ctl_ok(&["stop", "--app", "schedapp"]);
}

/// A cordon leaves running dynos alone, keeps a down dyno down (a restart
/// is a new start), survives an agent restart, and `dynoctl` shows it.
#[tokio::test(flavor = "multi_thread")]
async fn a_cordoned_host_drains_and_stays_cordoned_across_restarts() {
    let mut a = blocking(|| TestAgent::start(""));
    let slug = blocking(|| web_slug(&a, "cordon"));
    let mut c = a.client().await;
    c.start_dyno(start_req("cordapp", "worker.1", &slug, "exec sleep 600"))
        .await
        .expect("start worker.1");
    c.start_dyno(start_req("cordapp", "worker.2", &slug, "exec sleep 600"))
        .await
        .expect("start worker.2");
    let w1 = blocking(|| a.wait_state("cordapp", "worker.1", "up"));
    blocking(|| a.wait_state("cordapp", "worker.2", "up"));
    c.stop_dyno(pb::StopDynoRequest {
        selector: selector("cordapp", "worker.2"),
    })
    .await
    .expect("stop worker.2");
    blocking(|| a.wait_state("cordapp", "worker.2", "down"));

    let out = blocking(|| a.ctl_ok(&["cordon", "--reason", "drain for maintenance"]));
    assert!(
        out.contains("cordoned since") && out.contains("drain for maintenance"),
        "{out}"
    );
    // A restart of the running one goes on; of the down one, refused.
    c.restart_dyno(pb::RestartDynoRequest {
        selector: selector("cordapp", "worker.1"),
    })
    .await
    .expect("a running dyno restarts on a cordoned host");
    let err = c
        .restart_dyno(pb::RestartDynoRequest {
            selector: selector("cordapp", "worker.2"),
        })
        .await
        .expect_err("a down dyno stays down");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert_eq!(err.get_details_error_info().expect("details").reason, "HOST_CORDONED");
    // dynoctl names the reason, and exits non-zero.
    let refused = blocking(|| {
        a.ctl(&[
            "start",
            "--app",
            "cordapp",
            "--slug",
            &show(&slug),
            "--name",
            "worker.3",
            "--command",
            "exec sleep 600",
        ])
    });
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && stderr.contains("HOST_CORDONED"),
        "{stderr}"
    );
    assert!(
        blocking(|| a.dyno("cordapp", "worker.3")).is_none(),
        "nothing of a refused start"
    );

    // The agent restarts: still cordoned; the running dyno was never touched
    // by the cordon (restarted by request only).
    let w1_after = blocking(|| {
        a.wait_dyno("cordapp", "worker.1", "its restart", |d| {
            d["run_id"] != w1["run_id"] && d["state"] == "up"
        })
    });
    assert!(blocking(|| a.sigterm()).success());
    blocking(|| a.spawn());
    let info = blocking(|| a.info());
    assert_eq!(info["cordoned"], true, "{info}");
    assert_eq!(info["cordon_reason"], "drain for maintenance", "{info}");
    let text = blocking(|| a.ctl_ok(&["info"]));
    assert!(
        text.contains("CORDONED:") && text.contains("drain for maintenance"),
        "{text}"
    );
    let d = blocking(|| a.wait_state("cordapp", "worker.1", "up"));
    assert_eq!(d["pid"], w1_after["pid"], "re-adopted, not restarted: {d}");
    let mut c = a.client().await;
    let err = c
        .start_dyno(start_req("cordapp", "worker.3", &slug, "exec sleep 600"))
        .await
        .expect_err("still cordoned after the restart");
    assert_eq!(err.get_details_error_info().expect("details").reason, "HOST_CORDONED");

    blocking(|| a.ctl_ok(&["uncordon"]));
    c.restart_dyno(pb::RestartDynoRequest {
        selector: selector("cordapp", "worker.2"),
    })
    .await
    .expect("uncordoned: the down dyno starts");
    blocking(|| a.wait_state("cordapp", "worker.2", "up"));
    assert_eq!(blocking(|| a.info())["cordoned"], false);
    blocking(|| a.ctl_ok(&["stop", "--app", "cordapp"]));
}

/// `dynoctl ps --state`, `stats` and `--json ps` carry the new fields.
#[test]
fn dynoctl_filters_by_state_and_shows_figures_and_labels() {
    let a = TestAgent::start("");
    let slug = web_slug(&a, "ctl");
    a.ctl_ok(&start_args(
        "ctlapp",
        "worker.1",
        &show(&slug),
        &["--command", "exec sleep 600", "--label", "team=core"],
    ));
    a.ctl_ok(&start_args(
        "ctlapp",
        "worker.2",
        &show(&slug),
        &["--command", "exec sleep 600"],
    ));
    a.wait_state("ctlapp", "worker.1", "up");
    a.wait_state("ctlapp", "worker.2", "up");
    a.ctl_ok(&["stop", "--app", "ctlapp", "worker.2"]);
    a.wait_state("ctlapp", "worker.2", "down");

    let up: Value =
        serde_json::from_str(&a.ctl_ok(&["--json", "ps", "--app", "ctlapp", "--state", "up"])).expect("json");
    let up = up.as_array().expect("array");
    assert_eq!(up.len(), 1, "{up:?}");
    assert_eq!(up[0]["name"], "worker.1");
    assert_eq!(up[0]["labels"]["team"], "core");
    assert_eq!(up[0]["memory_quota_bytes"], 512u64 << 20);
    assert!(up[0]["created_at"].is_string() && up[0]["spec_hash"].as_str().is_some_and(|h| h.len() == 64));
    let down = a.ctl_ok(&["ps", "--app", "ctlapp", "--state", "down"]);
    assert!(down.contains("worker.2: down") && !down.contains("worker.1"), "{down}");
    let bad = a.ctl(&["ps", "--state", "sleeping"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--state"));

    let stats = a.ctl_ok(&["stats", "--app", "ctlapp"]);
    assert!(
        stats.contains("ctlapp worker.1: cpu ") && stats.contains("of 512 MiB"),
        "{stats}"
    );
    assert!(!stats.contains("worker.2"), "a down dyno has no figures: {stats}");
    let js: Value =
        serde_json::from_str(&a.ctl_ok(&["--json", "stats", "--app", "ctlapp", "--dyno", "worker"])).expect("json");
    let s = &js["stats"][0];
    assert_eq!(s["dyno"], "worker.1", "{js}");
    assert!(s["memory_bytes"].as_u64().is_some_and(|m| m > 0), "{js}");
    assert_eq!(js["unreadable"], serde_json::json!([]), "{js}");
    a.ctl_ok(&["stop", "--app", "ctlapp"]);
}
