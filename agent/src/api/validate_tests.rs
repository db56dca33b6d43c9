//! Unit tests of request validation: each bad field is named, selectors parse.

use super::*;

fn good() -> pb::StartDynoRequest {
    pb::StartDynoRequest {
        app: "shop".into(),
        name: "web.1".into(),
        command: "bin/web".into(),
        slug: "/tmp/slug".into(),
        ..Default::default()
    }
}

/// The defaults plus a default stack.
fn cfg() -> Config {
    let mut c = Config::default();
    c.stacks
        .insert("default".into(), "/var/lib/dynoagent/stacks/busybox".into());
    c
}

fn field_of(req: pb::StartDynoRequest) -> String {
    match validate_start(&req, &cfg()) {
        Err(Error::InvalidArgument { field, .. }) => field,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn a_good_request_passes() {
    validate_start(&good(), &cfg()).unwrap();
}

#[test]
fn each_bad_field_is_named() {
    type Mutation = Box<dyn Fn(&mut pb::StartDynoRequest)>;
    let cases: Vec<(&str, Mutation)> = vec![
        ("app", Box::new(|r| r.app = "Shop!".into())),
        ("name", Box::new(|r| r.name = "web".into())),
        ("name", Box::new(|r| r.name = String::new())),
        ("name", Box::new(|r| r.one_off = true)),
        ("command", Box::new(|r| r.command = "a\0b".into())),
        ("size", Box::new(|r| r.size = "huge".into())),
        ("release", Box::new(|r| r.release = "v 1".into())),
        (
            "env.1BAD",
            Box::new(|r| {
                r.env.insert("1BAD".into(), "x".into());
            }),
        ),
        ("slug", Box::new(|r| r.slug = String::new())),
        ("stack", Box::new(|r| r.stack = "nope".into())),
        (
            "time_to_live",
            Box::new(|r| r.time_to_live = Some(prost_types::Duration { seconds: 5, nanos: 0 })),
        ),
        ("request_id", Box::new(|r| r.request_id = "x".repeat(200))),
    ];
    for (field, mutate) in cases {
        let mut r = good();
        mutate(&mut r);
        assert_eq!(field_of(r), field);
    }
}

#[test]
fn one_off_needs_a_command_and_a_sane_ttl() {
    let mut r = good();
    r.name = String::new();
    r.one_off = true;
    r.command = " ".into();
    assert_eq!(field_of(r.clone()), "command");
    r.command = "true".into();
    r.time_to_live = Some(prost_types::Duration {
        seconds: 90_000,
        nanos: 0,
    });
    assert_eq!(field_of(r.clone()), "time_to_live");
    r.time_to_live = Some(prost_types::Duration { seconds: 60, nanos: 0 });
    validate_start(&r, &cfg()).unwrap();
}

#[test]
fn without_a_stack_only_an_explicit_development_agent_runs_dynos() {
    let mut c = Config::default();
    match validate_start(&good(), &c) {
        Err(Error::InvalidArgument { field, message }) => {
            assert_eq!(field, "stack");
            assert!(message.contains("--stack"), "{message}");
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
    c.allow_unjailed = true;
    validate_start(&good(), &c).unwrap();
}

#[test]
fn selectors() {
    let s = |app: &str, target: &str, all| {
        selector(Some(pb::DynoSelector {
            app: app.into(),
            target: target.into(),
            all,
        }))
    };
    assert_eq!(s("", "", true).unwrap(), Selector::All);
    assert_eq!(s("shop", "", false).unwrap(), Selector::App("shop".into()));
    assert_eq!(
        s("shop", "web", false).unwrap(),
        Selector::Type("shop".into(), "web".into())
    );
    assert_eq!(
        s("shop", "web.2", false).unwrap(),
        Selector::Dyno("shop".into(), "web.2".into())
    );
    assert!(s("shop", "web.x!", false).is_err());
    assert!(s("shop", "", true).is_err());
    assert!(s("", "", false).is_err());
    assert!(selector(None).is_err());
}

#[test]
fn a_duration_with_nanos_out_of_range_is_invalid() {
    for nanos in [1_000_000_000, -1, i32::MAX, i32::MIN] {
        let req = pb::StartDynoRequest {
            name: "run.1".into(),
            one_off: true,
            time_to_live: Some(prost_types::Duration { seconds: 60, nanos }),
            ..good()
        };
        assert_eq!(field_of(req), "time_to_live.nanos", "nanos {nanos}");
    }
    let fine = pb::StartDynoRequest {
        name: "run.1".into(),
        one_off: true,
        time_to_live: Some(prost_types::Duration {
            seconds: 60,
            nanos: 999_999_999,
        }),
        ..good()
    };
    validate_start(&fine, &cfg()).expect("nanos below 10^9");
}

#[test]
fn error_messages_quote_at_most_about_a_hundred_bytes_of_a_value() {
    type Mutation = Box<dyn Fn(&mut pb::StartDynoRequest, String)>;
    let big = "Z\n".repeat(4096);
    let cases: Vec<(&str, Mutation)> = vec![
        ("app", Box::new(|r, v| r.app = v)),
        ("name", Box::new(|r, v| r.name = v)),
        ("size", Box::new(|r, v| r.size = v)),
        ("release", Box::new(|r, v| r.release = v)),
        ("stack", Box::new(|r, v| r.stack = v)),
        ("env key", Box::new(|r, v| _ = r.env.insert(v, "x".into()))),
    ];
    for (what, set) in cases {
        let mut req = good();
        set(&mut req, big.clone());
        let err = validate_start(&req, &cfg()).expect_err(what);
        let msg = err.to_string();
        assert!(msg.len() < 300, "{what}: {} bytes: {msg}", msg.len());
        assert!(msg.contains("(8192 bytes)"), "{what}: {msg}");
    }
    let sel = pb::DynoSelector {
        app: "shop".into(),
        target: big.clone(),
        all: false,
    };
    let msg = selector(Some(sel)).expect_err("target").to_string();
    assert!(msg.len() < 300, "{msg}");
}

/// A request with `n` variables of `bytes` bytes each.
fn with_env(n: usize, bytes: usize) -> pb::StartDynoRequest {
    let mut r = good();
    for i in 0..n {
        r.env.insert(format!("V{i}"), "x".repeat(bytes));
    }
    r
}

#[test]
fn an_environment_exec_would_refuse_is_invalid_with_its_sizes() {
    // 100 values of 32 KiB: over ARG_MAX with the usual 8 MiB stack, and
    // over the kernel's 6 MiB cap whatever the stack.
    let n = crate::os::exec_limits::arg_max() / names::MAX_ENV_VALUE + 1;
    match validate_start(&with_env(n.max(100), names::MAX_ENV_VALUE), &cfg()) {
        Err(Error::InvalidArgument { field, message }) => {
            assert_eq!(field, "env");
            assert!(message.contains("ARG_MAX"), "{message}");
            assert!(
                message.contains(&crate::os::exec_limits::arg_max().to_string()),
                "{message}"
            );
        }
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn an_environment_within_the_limit_passes() {
    let n = crate::os::exec_limits::arg_max() / names::MAX_ENV_VALUE / 2;
    validate_start(&with_env(n, names::MAX_ENV_VALUE), &cfg()).unwrap();
}

#[test]
fn the_runtime_variables_and_the_profile_count() {
    // Fill the limit with the app's own variables, leaving less room than
    // DYNO, HOME, PATH, PORT and the profile prefix take: refused.
    let limit = crate::os::exec_limits::arg_max();
    let ptr = std::mem::size_of::<usize>();
    let mut r = good();
    let mut left = limit - 8 - (3 + 3 + r.command.len() + 1 + 3 * ptr);
    let mut i = 0;
    while left > 0 {
        let key = format!("V{i:05}");
        let room = left.saturating_sub(key.len() + 2 + ptr).min(names::MAX_ENV_VALUE);
        if room == 0 {
            break;
        }
        left -= key.len() + 2 + ptr + room;
        r.env.insert(key, "x".repeat(room));
        i += 1;
    }
    assert!(matches!(validate_start(&r, &cfg()), Err(Error::InvalidArgument { .. })));
}

#[test]
fn labels_are_bounded_and_named_when_bad() {
    let cfg = cfg();
    let with = |labels: &[(&str, String)]| {
        let mut r = good();
        r.labels = labels.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        validate_start(&r, &cfg)
    };
    let field = |r: Result<()>| match r {
        Err(Error::InvalidArgument { field, .. }) => field,
        other => panic!("not invalid: {other:?}"),
    };
    with(&[("team", "payments".into()), ("example.com/tier", "gold".into())]).expect("valid labels");
    assert_eq!(field(with(&[("Team", "x".into())])), "labels[\"Team\"]");
    assert_eq!(field(with(&[("-x", "x".into())])), "labels[\"-x\"]");
    assert_eq!(field(with(&[("team", "v".repeat(257))])), "labels.team");
    assert_eq!(field(with(&[("team", "a\0b".into())])), "labels.team");
    let many: Vec<(String, String)> = (0..65).map(|i| (format!("k{i}"), String::new())).collect();
    let many: Vec<(&str, String)> = many.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    assert_eq!(field(with(&many)), "labels");
}

fn bad_field(r: Result<impl std::fmt::Debug>) -> String {
    match r {
        Err(Error::InvalidArgument { field, .. }) => field,
        other => panic!("expected INVALID_ARGUMENT, got {other:?}"),
    }
}

#[test]
fn terminal_sizes_default_and_are_bounded() {
    assert_eq!(terminal_size("start.size", None).unwrap(), (24, 80));
    let size = |rows, cols| pb::TerminalSize { rows, cols };
    assert_eq!(terminal_size("start.size", Some(&size(40, 120))).unwrap(), (40, 120));
    assert_eq!(
        bad_field(terminal_size("start.size", Some(&size(0, 80)))),
        "start.size.rows"
    );
    assert_eq!(
        bad_field(terminal_size("input.resize", Some(&size(24, 70_000)))),
        "input.resize.cols"
    );
}

#[test]
fn session_signals_are_signal_numbers() {
    assert_eq!(session_signal("input.signal", 2).unwrap(), 2);
    assert_eq!(bad_field(session_signal("input.signal", 0)), "input.signal");
    assert_eq!(bad_field(session_signal("input.signal", 65)), "input.signal");
    assert_eq!(bad_field(session_signal("input.signal", -9)), "input.signal");
}

#[test]
fn exec_argv_needs_words_without_nul_within_bounds() {
    exec_argv("start.argv", &["sh".into(), "-c".into(), "echo hi".into()]).unwrap();
    assert_eq!(bad_field(exec_argv("start.argv", &[])), "start.argv");
    assert_eq!(
        bad_field(exec_argv("start.argv", &["a".into(), "b\0c".into()])),
        "start.argv[1]"
    );
    assert_eq!(
        bad_field(exec_argv("start.argv", &vec!["x".to_string(); 1025])),
        "start.argv"
    );
    assert_eq!(
        bad_field(exec_argv("start.argv", &["y".repeat(129 * 1024)])),
        "start.argv"
    );
}
