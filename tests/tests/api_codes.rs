//! Codes and messages end to end (DESIGN §9): bytes that do not decode are
//! INVALID_ARGUMENT naming the field, a message over the limit
//! RESOURCE_EXHAUSTED, values quoted short, Duration nanos checked, a
//! request id that belongs to one dyno, and one-off numbers that run out
//! without a panic.

use dyno_proto::v1 as pb;
use dyno_tests::*;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_that_do_not_decode_and_oversize_messages_get_their_codes() {
    let a = TestAgent::start("");
    let ch = dyno_agent::client::connect(&a.socket).await.expect("connect");
    let cases: [(&str, &'static str, Vec<u8>, Code, &str); 4] = [
        (
            "invalid UTF-8 in GetDyno.app",
            "/dyno.v1.Agent/GetDyno",
            vec![0x0a, 0x02, 0xff, 0xfe],
            Code::InvalidArgument,
            "app: does not decode",
        ),
        (
            "a truncated varint in Ack.seq",
            "/dyno.v1.Usage/Ack",
            vec![0x08, 0xff],
            Code::InvalidArgument,
            "seq: does not decode",
        ),
        (
            "garbage",
            "/dyno.v1.Agent/HostInfo",
            vec![0xff; 16],
            Code::InvalidArgument,
            "request: does not decode",
        ),
        (
            "a message over 4 MiB",
            "/dyno.v1.Agent/HostInfo",
            vec![0; 5 << 20],
            Code::ResourceExhausted,
            "request: message too large",
        ),
    ];
    for (what, path, body, code, start) in cases {
        let status = raw_unary(ch.clone(), path, body).await.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(status.message().starts_with(start), "{what}: {:?}", status.message());
    }
    // And the agent still serves.
    let mut c = a.client().await;
    c.host_info(pb::HostInfoRequest {})
        .await
        .expect("host info after bad bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_values_are_quoted_short_and_duration_nanos_are_checked() {
    let a = TestAgent::start("");
    let slug = a.slug("q", &[]);
    let mut c = a.client().await;
    let big = "A".repeat(8192);
    for (what, req) in [
        (
            "8 KB app",
            pb::StartDynoRequest {
                app: big.clone(),
                ..start_req("shop", "worker.1", &slug, SLEEPER)
            },
        ),
        (
            "8 KB size",
            pb::StartDynoRequest {
                size: big.clone(),
                ..start_req("shop", "worker.1", &slug, SLEEPER)
            },
        ),
        ("8 KB name", start_req("shop", &big, &slug, SLEEPER)),
    ] {
        let s = c.start_dyno(req).await.expect_err(what);
        assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
        assert!(s.message().len() < 300, "{what}: {} bytes", s.message().len());
        assert!(s.message().contains("(8192 bytes)"), "{what}: {}", s.message());
    }
    for nanos in [1_000_000_000, -5] {
        let req = pb::StartDynoRequest {
            one_off: true,
            time_to_live: Some(prost_types::Duration { seconds: 60, nanos }),
            ..start_req("shop", "run.1", &slug, SLEEPER)
        };
        let s = c.start_dyno(req).await.expect_err("bad nanos");
        assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
        assert!(s.message().starts_with("time_to_live.nanos: "), "{}", s.message());
    }
    assert!(blocking(|| a.ps()).is_empty(), "nothing started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_belongs_to_one_app_dyno_and_spec() {
    let a = TestAgent::start("");
    let slug = a.slug("rid", &[]);
    let mut c = a.client().await;
    let first = pb::StartDynoRequest {
        request_id: "deploy-42".into(),
        ..start_req("shop", "worker.1", &slug, SLEEPER)
    };
    let d = c.start_dyno(first.clone()).await.expect("start").into_inner();
    let retry = c
        .start_dyno(first.clone())
        .await
        .expect("the same request again")
        .into_inner();
    assert_eq!((&retry.id, &retry.app, &retry.name), (&d.id, &d.app, &d.name));

    for (what, req) in [
        (
            "another app",
            pb::StartDynoRequest {
                app: "blog".into(),
                ..first.clone()
            },
        ),
        (
            "another dyno",
            pb::StartDynoRequest {
                name: "worker.2".into(),
                ..first.clone()
            },
        ),
        (
            "another spec",
            pb::StartDynoRequest {
                command: "exec sleep 601".into(),
                ..first.clone()
            },
        ),
    ] {
        let s = c.start_dyno(req).await.expect_err(what);
        assert_eq!(s.code(), Code::FailedPrecondition, "{what}: {s:?}");
        assert!(
            s.message().contains("request_id \"deploy-42\""),
            "{what}: {}",
            s.message()
        );
    }
    let ps = blocking(|| a.ps());
    assert_eq!(ps.len(), 1, "only shop worker.1: {ps:#?}");
    let now = get_dyno(&mut c, "shop", "worker.1").await;
    assert_eq!((now.command.as_str(), &now.run_id), (SLEEPER, &d.run_id), "unchanged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_999999_then_run_does_not_panic_and_the_agent_keeps_serving() {
    let a = TestAgent::start("");
    let slug = a.slug("last", &[]);
    let mut c = a.client().await;
    let last = pb::StartDynoRequest {
        one_off: true,
        ..start_req("shop", "run.999999", &slug, SLEEPER)
    };
    c.start_dyno(last).await.expect("run.999999");
    // The number after it does not exist: the lowest free one is taken.
    let s = show(&slug);
    let out = blocking(|| a.ctl_ok(&run_args("shop", &s, &["--", "sh", "-c", "echo $DYNO"])));
    assert_eq!(out.trim(), "run.1", "{out}");
    // A name past the last number is refused, naming the field.
    let past = pb::StartDynoRequest {
        one_off: true,
        ..start_req("shop", "run.1000000", &slug, SLEEPER)
    };
    let status = c.start_dyno(past).await.expect_err("run.1000000");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().starts_with("name: "), "{}", status.message());
    c.host_info(pb::HostInfoRequest {}).await.expect("still serving");
    let names: Vec<String> = blocking(|| a.ps())
        .iter()
        .map(|d| d["name"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}
