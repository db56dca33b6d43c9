//! Stock clients against the agent's Unix socket by its absolute path, no
//! authority set: Python grpcio with a client built from reflection alone
//! (no .proto), and grpcurl 1.8 (reflection v1alpha only). Both send the
//! socket's path as `:authority`, which h2 alone would refuse.

use std::process::Command;

use dyno_tests::*;
use serde_json::Value;

/// Runs a stock client; its stdout, or a panic with everything it said.
fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        out.status.success(),
        "{what}: {}\nstdout: {stdout}\nstderr: {stderr}",
        out.status
    );
    stdout
}

#[test]
fn a_grpcio_client_built_from_reflection_alone_works_over_the_socket_path() {
    let python = python_with_grpcio();
    let a = TestAgent::start("");
    assert!(a.socket.is_absolute());
    let out = run_ok(
        "the grpcio client",
        Command::new(python)
            .arg(stock_script("reflection_client.py"))
            .arg(&a.socket),
    );
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let services: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        services,
        [
            "dyno.v1.Agent",
            "dyno.v1.Usage",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ],
        "served services only (no dyno.v1.Scheduler)"
    );
    assert_eq!(v["host_info"]["ok"]["hostId"], a.info()["host_id"], "{v:#}");
    assert!(v["list"]["ok"].is_object(), "{v:#}");
    assert_eq!(v["get_unknown"]["code"], "NOT_FOUND", "{v:#}");
    // An 8 KB value is quoted short: a C-core client takes the reply.
    assert_eq!(v["bad_app_8k"]["code"], "INVALID_ARGUMENT", "{v:#}");
    let msg = v["bad_app_8k"]["message"].as_str().expect("message");
    assert!(msg.starts_with("app: ") && msg.len() < 300, "{msg}");
    assert_eq!(v["health"], "SERVING");
}

#[test]
fn grpcurl_lists_describes_and_calls_over_the_socket_path() {
    let grpcurl = grpcurl();
    let a = TestAgent::start("");
    let sock = show(&a.socket);
    let call = |args: &[&str]| {
        let mut cmd = Command::new(grpcurl);
        cmd.args(["-plaintext", "-unix"]);
        let (flags, rest) = args.split_at(args.iter().position(|w| *w == "SOCK").expect("SOCK"));
        cmd.args(flags).arg(&sock).args(&rest[1..]);
        cmd
    };
    let list = run_ok("grpcurl list", &mut call(&["SOCK", "list"]));
    let listed: Vec<&str> = list.lines().collect();
    assert!(
        listed.contains(&"dyno.v1.Agent") && listed.contains(&"dyno.v1.Usage"),
        "{list}"
    );
    assert!(!listed.contains(&"dyno.v1.Scheduler"), "{list}");

    let described = run_ok("grpcurl describe", &mut call(&["SOCK", "describe", "dyno.v1.Agent"]));
    assert!(described.contains("rpc HostInfo"), "{described}");

    let info = run_ok(
        "grpcurl HostInfo",
        &mut call(&["-d", "{}", "SOCK", "dyno.v1.Agent/HostInfo"]),
    );
    let v: Value = serde_json::from_str(&info).unwrap_or_else(|e| panic!("{e}: {info}"));
    assert_eq!(v["hostId"], a.info()["host_id"], "{info}");

    // An error arrives as a code, not a reset stream.
    let out = call(&[
        "-d",
        r#"{"app":"shop","name":"web.1"}"#,
        "SOCK",
        "dyno.v1.Agent/GetDyno",
    ])
    .output()
    .expect("grpcurl GetDyno");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("Code: NotFound"), "{stderr}");
}
