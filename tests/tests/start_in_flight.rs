//! A stop during a start in flight (issue 13 item 7): while a start's slug
//! is still being fetched, a `StopDyno` for the dyno is answered (not
//! `NOT_FOUND`), the start is refused with `ABORTED`, and the dyno never
//! comes up.

use std::time::Duration;

use dyno_proto::v1 as pb;
use dyno_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_while_the_slug_is_fetched_cancels_the_start() {
    let a = TestAgent::start("");
    let slug = tarball::slug_tgz(&[("Procfile", "worker: exec sleep 600\n")]);
    let server = TestServer::paths(vec![("/late.tgz", Reply::Body(slug))]);
    // The download waits until the test lets it go.
    server.hold(true);
    let req = pb::StartDynoRequest {
        app: "inflight".into(),
        name: "worker.1".into(),
        slug: server.url("/late.tgz"),
        ..Default::default()
    };
    let mut starter = a.client().await;
    let start = tokio::spawn(async move { starter.start_dyno(req).await });
    let server = tokio::task::spawn_blocking(move || {
        wait_for("the slug's download to begin", || {
            (server.gets_of("/late.tgz") >= 1).then_some(())
        });
        server
    })
    .await
    .unwrap();
    let mut c = a.client().await;
    let stopped = c
        .stop_dyno(pb::StopDynoRequest {
            selector: Some(pb::DynoSelector {
                app: "inflight".into(),
                target: "worker.1".into(),
                ..Default::default()
            }),
        })
        .await;
    assert!(stopped.is_ok(), "a stop of a start in flight: {stopped:?}");
    server.hold(false);
    let started = tokio::time::timeout(DEADLINE, start)
        .await
        .expect("the start answers")
        .unwrap();
    let status = started.expect_err("the start was cancelled");
    assert_eq!(status.code(), Code::Aborted, "{status:?}");
    assert!(status.message().contains("cancelled"), "{status:?}");
    // It never comes up, and nothing of it is left running.
    tokio::task::spawn_blocking(move || {
        nothing_happens_for(Duration::from_secs(2));
        let d = a.dyno("inflight", "worker.1");
        assert!(d.as_ref().is_none_or(|d| d["state"] == "down"), "{d:?}");
        // A start after it is a start as any other.
        a.ctl_ok(&start_args("inflight", "worker.1", &server.url("/late.tgz"), &[]));
        a.wait_state("inflight", "worker.1", "up");
    })
    .await
    .unwrap();
}
