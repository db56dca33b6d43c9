//! Unit tests of run preparation that need no root: the shim's spec and
//! which old run directory goes.

use std::path::PathBuf;

use super::*;
use crate::engine::testkit::spec;

fn jail() -> JailSpec {
    JailSpec {
        stack: PathBuf::from("/stacks/heroku-24"),
        uid: 100_000,
        gid: 100_000,
        hostname: "id-web.1".into(),
        disk_bytes: 1 << 30,
        nofile: 10_000,
        cgroup_procs: Vec::new(),
        oom_score_adj: 800,
        netns: None,
        resolv_conf: None,
    }
}

fn bounds(max_bytes: u64) -> crate::logs::Bounds {
    crate::logs::Bounds {
        max_bytes,
        rate_lines: 50,
        burst: 500,
    }
}

fn env<'a>(spec: &'a RunSpec, name: &str) -> Option<&'a str> {
    spec.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn a_jailed_run_lives_in_app_and_sources_the_profile_first() {
    let mut s = spec("web.1", "standard-1x");
    s.port = Some(20001);
    let rs = run_spec(&s, "id.3", Some(jail()), bounds(4096));
    assert_eq!(rs.run_id, "id.3");
    assert_eq!((rs.app.as_str(), rs.dyno.as_str()), ("shop", "web.1"));
    assert!(rs.command.starts_with("for f in .profile.d/*.sh;"), "{}", rs.command);
    assert!(
        rs.command
            .ends_with("[ -r .profile ] && . ./.profile; bundle exec sidekiq"),
        "{}",
        rs.command
    );
    assert_eq!(env(&rs, "HOME"), Some("/app"));
    assert_eq!(env(&rs, "PATH"), Some("/app/bin:/usr/local/bin:/usr/bin:/bin"));
    assert_eq!(env(&rs, "PORT"), Some("20001"));
    assert_eq!(env(&rs, "DYNO"), Some("web.1"));
    assert_eq!(env(&rs, "RACK_ENV"), Some("production"));
    assert_eq!(rs.workdir, s.app_dir);
    assert_eq!(rs.log_bounds(), bounds(4096));
    assert_eq!(rs.jail, Some(jail()));
}

#[test]
fn an_unjailed_run_lives_in_the_slug_directory_and_has_no_port_unless_web() {
    let s = spec("worker.1", "standard-1x");
    let rs = run_spec(&s, "id.1", None, bounds(4096));
    let root = "/var/lib/dynoagent/slugs/ab/app";
    assert_eq!(env(&rs, "HOME"), Some(root));
    assert_eq!(
        env(&rs, "PATH"),
        Some(format!("{root}/bin:/usr/local/bin:/usr/bin:/bin").as_str())
    );
    assert_eq!(env(&rs, "PORT"), None);
    assert_eq!(rs.jail, None);
}

#[test]
fn the_runtime_variables_win_over_config_vars_of_the_same_name() {
    let mut s = spec("web.1", "standard-1x");
    s.port = Some(20001);
    for var in ["HOME", "PATH", "PORT", "DYNO"] {
        s.env.insert(var.into(), "from-the-request".into());
    }
    let rs = run_spec(&s, "id.1", Some(jail()), bounds(4096));
    assert_eq!(env(&rs, "HOME"), Some("/app"));
    assert_eq!(env(&rs, "PORT"), Some("20001"));
    assert_eq!(env(&rs, "DYNO"), Some("web.1"));
    assert_eq!(rs.env.iter().filter(|(k, _)| k == "PATH").count(), 1);
}

#[test]
fn a_new_run_removes_the_directory_of_the_one_before_the_previous() {
    assert_eq!(stale_run("abc", "abc.1"), None);
    assert_eq!(stale_run("abc", "abc.2"), None, "the previous run keeps its logs");
    assert_eq!(stale_run("abc", "abc.3").as_deref(), Some("abc.1"));
    assert_eq!(stale_run("abc", "abc.10").as_deref(), Some("abc.8"));
    assert_eq!(stale_run("abc", "garbage"), None);
}
