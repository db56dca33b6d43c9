//! Unit tests of dynoctl: the `ps` and JSON formats, shell quoting, slug
//! paths and exit codes.

use chrono::Utc;
use dyno_proto::v1 as pb;
use serde_json::Value;

use super::exit_code;
use super::render::{dyno_json, format_ps};
use super::start::{local_slug, shell_quote};
use chrono::TimeZone;

fn at(h: u32, m: u32) -> prost_types::Timestamp {
    let t = Utc.with_ymd_and_hms(2026, 11, 22, h, m, 0).unwrap();
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    }
}

#[test]
fn ps_is_heroku_shaped() {
    let web = |name: &str, state, updated, exit: Option<i32>, next| pb::Dyno {
        app: "shop".into(),
        name: name.into(),
        r#type: "web".into(),
        size: "standard-1x".into(),
        command: "bin/web".into(),
        state: state as i32,
        updated_at: Some(updated),
        last_exit: exit.map(|c| pb::LastExit {
            code: Some(c),
            signal: None,
            reason: pb::ExitReason::Exit as i32,
            at: Some(updated),
            message: String::new(),
        }),
        next_restart_at: next,
        ..Default::default()
    };
    let dynos = [
        web("web.2", pb::DynoState::Crashed, at(10, 4), Some(1), Some(at(10, 23))),
        web("web.1", pb::DynoState::Up, at(10, 0), None, None),
    ];
    let now = Utc.with_ymd_and_hms(2026, 11, 22, 10, 5, 0).unwrap();
    assert_eq!(
        format_ps(&dynos, now),
        "=== shop web (standard-1x): bin/web (2)\n\
         web.1: up 2026/11/22 10:00:00 +0000 (~ 5m ago)\n\
         web.2: crashed 2026/11/22 10:04:00 +0000 (~ 1m ago), exit 1, restart in ~ 18m\n\n"
    );
}

#[test]
fn words_are_quoted_for_the_shell() {
    assert_eq!(shell_quote("sh"), "sh");
    assert_eq!(shell_quote("echo hi; exit 7"), "'echo hi; exit 7'");
    assert_eq!(shell_quote("it's"), r"'it'\''s'");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("$HOME"), "'$HOME'");
}

#[test]
fn json_has_the_contract_fields() {
    let d = pb::Dyno {
        state: pb::DynoState::Up as i32,
        pid: 42,
        ..Default::default()
    };
    let v = dyno_json(&d);
    for k in [
        "id",
        "app",
        "name",
        "type",
        "state",
        "size",
        "command",
        "release",
        "pid",
        "port",
        "started_at",
        "updated_at",
        "restarts",
        "last_exit",
        "next_restart_at",
    ] {
        assert!(v.get(k).is_some(), "{k} missing");
    }
    assert_eq!(v["state"], "up");
    assert_eq!(v["pid"], 42);
    assert_eq!(v["port"], Value::Null);
}

#[test]
fn grpc_codes_map_to_distinct_exit_codes() {
    assert_eq!(exit_code(tonic::Code::InvalidArgument), 2);
    assert_eq!(exit_code(tonic::Code::NotFound), 3);
    assert_ne!(exit_code(tonic::Code::Internal), 0);
}

#[test]
fn slug_paths_are_made_absolute_and_urls_pass_through() {
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(local_slug("s.tgz").unwrap(), cwd.join("s.tgz").display().to_string());
    for given in [
        "/abs/s.tgz",
        "file:///abs/s.tgz",
        "http://127.0.0.1:8080/s.tgz",
        "https://slugs.example/s.tgz?sig=x",
    ] {
        assert_eq!(local_slug(given).unwrap(), given);
    }
}
