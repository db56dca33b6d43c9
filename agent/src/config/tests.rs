//! Unit tests of the configuration: defaults, layering, human durations,
//! validation.

use super::*;

fn load(text: &str, env: &[(&str, &str)], flags: &Overrides) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, text).unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    Config::load(Some(&path), env, flags)
}

#[test]
fn empty_file_gives_the_contract_defaults() {
    let c = load("", &[], &Overrides::default()).unwrap();
    assert_eq!(c.socket, PathBuf::from("/run/dynoagent/dynoagent.sock"));
    assert_eq!(c.boot_timeout, Duration::from_secs(60));
    assert_eq!(c.stop_grace, Duration::from_secs(30));
    assert_eq!(c.stable_window, Duration::from_secs(600));
    let mins: Vec<u64> = c.restart_cooloffs.iter().map(|d| d.as_secs() / 60).collect();
    assert_eq!(mins, [20, 40, 60, 180, 320]);
    assert_eq!(c.sizes["standard-1x"].memory_bytes, 512 * 1024 * 1024);
    assert_eq!(
        c.port_range,
        Range {
            first: 20000,
            last: 29999
        }
    );
    assert_eq!(c.default_size, "standard-1x");
}

#[test]
fn durations_are_human() {
    let c = load(
        "boot_timeout = \"3s\"\nstop_grace = \"1500ms\"\nrestart_cooloffs = [\"1s\", \"2m\"]\n",
        &[],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.boot_timeout, Duration::from_secs(3));
    assert_eq!(c.stop_grace, Duration::from_millis(1500));
    assert_eq!(c.restart_cooloffs, [Duration::from_secs(1), Duration::from_secs(120)]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let err = load(
        "bogus = 1\nboot_timeout = \"soon\"\nport_range = \"9-3\"\ndefault_size = \"huge\"\nlog_max_bytes = 10\n",
        &[("DYNOAGENT_ALSO_BOGUS", "x")],
        &Overrides::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "bogus",
        "boot_timeout",
        "port_range",
        "default_size",
        "log_max_bytes",
        "DYNOAGENT_ALSO_BOGUS",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    assert_eq!(err.0.len(), 6, "{text}");
}

#[test]
fn flags_override_environment_override_file() {
    let flags = Overrides {
        socket: Some("/tmp/flag.sock".into()),
        ..Default::default()
    };
    let c = load(
        "socket = \"/tmp/file.sock\"\nstate_dir = \"/tmp/file\"\nstop_grace = \"9s\"\n",
        &[
            ("DYNOAGENT_SOCKET", "/tmp/env.sock"),
            ("DYNOAGENT_STATE_DIR", "/tmp/env"),
            ("OTHER_VAR", "ignored"),
        ],
        &flags,
    )
    .unwrap();
    assert_eq!(c.socket, PathBuf::from("/tmp/flag.sock"));
    assert_eq!(c.state_dir, PathBuf::from("/tmp/env"));
    assert_eq!(c.stop_grace, Duration::from_secs(9));
}

#[test]
fn environment_values_may_be_toml_literals() {
    let c = load(
        "",
        &[("DYNOAGENT_CYCLING", "false"), ("DYNOAGENT_LOG_MAX_BYTES", "65536")],
        &Overrides::default(),
    )
    .unwrap();
    assert!(!c.cycling);
    assert_eq!(c.log_max_bytes, 65536);
    assert_eq!(c.policy().cycle, None);
}

#[test]
fn default_stack_prefers_the_one_named_default() {
    let flags = Overrides {
        stacks: vec![("cedar".into(), "/s/cedar".into()), ("default".into(), "/s/d".into())],
        ..Default::default()
    };
    let c = load("", &[], &flags).unwrap();
    assert_eq!(c.default_stack(), Some("default"));
    let c = load(
        "[stacks]\nheroku-24 = \"/s/24\"\nabc = \"/s/abc\"\n",
        &[],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.default_stack(), Some("abc"));
}

#[test]
fn slug_keys_default_to_the_design_limits_and_are_validated() {
    let c = load("", &[], &Overrides::default()).unwrap();
    assert_eq!(c.slug_limits(), crate::unpack::Limits::default());
    let c = load(
        "slug_max_compressed_bytes = 2048\nslug_read_timeout = \"250ms\"\n",
        &[("DYNOAGENT_SLUG_FETCH_RETRIES", "0")],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.slug_limits().compressed_bytes, 2048);
    assert_eq!(c.slug_read_timeout, Duration::from_millis(250));
    assert_eq!(c.slug_fetch_retries, 0);
    let err = load(
        "slug_max_entries = 0\nslug_cache_grace = \"0s\"\nslug_retry_backoff = \"10s\"\nslug_retry_backoff_max = \"1s\"\nslug_max_depth = -1\n",
        &[],
        &Overrides::default(),
    )
    .unwrap_err();
    let text = err.to_string();
    for needle in [
        "slug_max_entries",
        "slug_cache_grace",
        "slug_retry_backoff_max",
        "slug_max_depth",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}

#[test]
fn size_table_is_validated() {
    let err = load(
        "[sizes.tiny]\nmemory_bytes = 1\ncpu_shares = 0\npids_max = 1\nnofile = 1\n",
        &[],
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("sizes.tiny.memory_bytes"), "{err}");
    assert!(err.contains("sizes.tiny: pids_max"), "{err}");
}

#[test]
fn memory_kill_ratio_defaults_to_twice_the_quota_and_is_bounded() {
    let c = load("", &[], &Overrides::default()).unwrap();
    for (name, s) in &c.sizes {
        assert_eq!(s.memory_kill_ratio, 2.0, "{name}");
        assert_eq!(s.memory_kill_bytes(), 2 * s.memory_bytes, "{name}");
    }
    let size = |ratio: &str| {
        format!(
            "default_size = \"ps\"\n[sizes.ps]\nmemory_bytes = 536870912\nmemory_kill_ratio = {ratio}\ncpu_shares = 1024\npids_max = 64\nnofile = 64\n"
        )
    };
    let c = load(&size("1.0"), &[], &Overrides::default()).unwrap();
    assert_eq!(c.sizes["ps"].memory_kill_bytes(), 512 << 20, "Private-Space behaviour");
    let limits = c.sizes["ps"].cgroup_limits(true);
    assert_eq!(
        (limits.memory_bytes, limits.memory_kill_bytes, limits.swap),
        (512 << 20, 512 << 20, true)
    );
    for bad in ["0.5", "17.0", "nan"] {
        let err = load(&size(bad), &[], &Overrides::default()).unwrap_err().to_string();
        assert!(err.contains("sizes.ps.memory_kill_ratio"), "{bad}: {err}");
    }
}

#[test]
fn metrics_listen_is_off_by_default_and_must_be_an_address() {
    assert_eq!(load("", &[], &Overrides::default()).unwrap().metrics_listen, None);
    let c = load("metrics_listen = \"127.0.0.1:9431\"", &[], &Overrides::default()).unwrap();
    assert_eq!(c.metrics_listen.as_deref(), Some("127.0.0.1:9431"));
    let err = load("metrics_listen = \"localhost\"", &[], &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("metrics_listen"), "{err}");
}

#[test]
fn log_rate_keys_default_to_the_documented_bound_and_refuse_zero() {
    let c = load("", &[], &Overrides::default()).unwrap();
    assert_eq!((c.log_rate_lines, c.log_rate_burst), (1000, 10_000));
    let err = load("log_rate_lines = 0\n", &[], &Overrides::default()).unwrap_err();
    assert!(err.to_string().contains("log_rate_lines"), "{err}");
    let c = load("log_rate_lines = 50\nlog_rate_burst = 7\n", &[], &Overrides::default()).unwrap();
    assert_eq!(
        c.log_bounds(),
        crate::logs::Bounds {
            max_bytes: 10 * 1024 * 1024,
            rate_lines: 50,
            burst: 7
        }
    );
}

#[test]
fn listen_without_a_client_ca_needs_the_explicit_override() {
    let t = tempfile::tempdir().unwrap();
    let (cert, key) = (t.path().join("c.pem"), t.path().join("k.pem"));
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "x").unwrap();
    let base = format!(
        "listen = \"127.0.0.1:7443\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        cert.display(),
        key.display()
    );
    let err = load(&base, &[], &Overrides::default()).unwrap_err().to_string();
    assert!(
        err.contains("tls_client_ca") && err.contains("listen_without_client_auth = true"),
        "{err}"
    );
    let c = load(
        &format!("{base}listen_without_client_auth = true\n"),
        &[],
        &Overrides::default(),
    )
    .unwrap();
    assert!(c.listen_without_client_auth && c.tls_client_ca.is_none());
    assert!(!load("", &[], &Overrides::default()).unwrap().listen_without_client_auth);
}

#[test]
fn slug_dir_root_has_no_default_and_must_be_an_absolute_directory() {
    assert_eq!(load("", &[], &Overrides::default()).unwrap().slug_dir_root, None);
    let t = tempfile::tempdir().unwrap();
    let c = load(
        &format!("slug_dir_root = \"{}\"\n", t.path().display()),
        &[],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.slug_dir_root.as_deref(), Some(t.path()));
    for bad in ["slugs", "/nonexistent/slug/root"] {
        let err = load(&format!("slug_dir_root = \"{bad}\"\n"), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("slug_dir_root"), "{bad}: {err}");
    }
}

#[test]
fn dynos_are_isolated_on_the_network_by_default() {
    let c = load("", &[], &Overrides::default()).unwrap();
    assert_eq!(c.network, NetworkMode::Isolated);
    assert_eq!(c.cni_config, None, "the built-in chain");
    assert_eq!(c.cni_bin_dir, PathBuf::from("/usr/lib/cni"));
    assert_eq!(
        c.network_deny,
        [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",
            "fc00::/7"
        ]
    );
    assert!(c.network_allow.is_empty());
    assert_eq!(c.network_dns, None, "the host's nameservers");
    let c = load(
        "network = \"host\"\nnetwork_dns = [\"1.1.1.1\"]\nnetwork_allow = [\"10.1.0.0/16\"]\n",
        &[],
        &Overrides::default(),
    )
    .unwrap();
    assert_eq!(c.network, NetworkMode::Host);
    assert_eq!(c.network_dns, Some(vec![std::net::Ipv4Addr::new(1, 1, 1, 1)]));
    assert_eq!(c.network_allow, ["10.1.0.0/16"]);
}

#[test]
fn bad_network_keys_are_named() {
    let err = load(
        "network = \"bridged\"\nnetwork_deny = [\"10.0.0.0/40\", \"nope\"]\nnetwork_dns = [\"fd00::1\"]\n\
         network_max_connections = 0\ncni_bin_dir = \"cni\"\nnetwork_allow = [\"fc00::/7\", \"::1/200\"]\n",
        &[],
        &Overrides::default(),
    )
    .unwrap_err()
    .to_string();
    for needle in [
        "key `network`: unknown variant `bridged`",
        "key `network_dns`: invalid IPv4 address",
        "network_max_connections: must be greater than zero",
        "cni_bin_dir: cni must be an absolute path",
        "network_deny: \"10.0.0.0/40\" is not an address range",
        "network_deny: \"nope\"",
        "network_allow: \"::1/200\"",
    ] {
        assert!(err.contains(needle), "{needle:?} not in {err}");
    }
    assert!(!err.contains("\"fc00::/7\""), "an IPv6 range is a range: {err}");
}
