//! A test agent's configuration file: [`FAST`] lifecycle durations, the
//! agent's own port range, host id, parent cgroup and stack, the test's
//! extra keys; and edits between restarts ([`TestAgent::set_config`]).

use std::path::Path;

use crate::agent::TestAgent;
use crate::cleanup::cgroup_parent;

/// Lifecycle durations short enough for tests, and no prepared networks
/// (each agent would make and tear down eight; the network tests and the
/// benchmark ask for them).
pub const FAST: &str = r#"
boot_timeout = "3s"
stop_grace = "2s"
restart_cooloffs = ["2s", "3s"]
stable_window = "10m"
cycling = false
network_pool = 0
"#;

/// The key of a `key = value` line.
fn key(line: &str) -> String {
    line.split('=').next().unwrap_or("").trim().to_string()
}

/// The CNI network of agent `n`: the built-in chain with a name and a /24 of
/// the agent's own. The host's filter is per network (chains named after it,
/// matched on its subnet), so agents that run side by side with different
/// `network_*` keys must not share one; the kit removes its chains when the
/// agent is dropped.
pub fn own_network(n: u32) -> (String, String) {
    let pid = std::process::id();
    (
        format!("e2e-{}-{n}", pid % 100_000),
        format!("10.{}.{}.0/24", 100 + pid % 100, n % 256),
    )
}

/// Writes agent `n`'s conflist (see [`own_network`]) into `dir`.
fn write_conflist(dir: &Path, n: u32) -> std::path::PathBuf {
    let (name, subnet) = own_network(n);
    let mut list: serde_json::Value =
        serde_json::from_str(dyno_agent::net::cni::DEFAULT_CONFLIST).expect("the built-in chain is JSON");
    list["name"] = name.into();
    list["plugins"][0]["ipam"]["ranges"] = serde_json::json!([[{ "subnet": subnet }]]);
    let path = dir.join("cni.conflist");
    std::fs::write(&path, serde_json::to_vec_pretty(&list).expect("json")).expect("write the conflist");
    path
}

/// Writes the first configuration of agent `n`: `FAST`, `slug_dir_root`
/// (the agent's own directory, where [`TestAgent::slug`] writes),
/// `cni_config` (its own network), its port range, host id and parent
/// cgroup, each overridden by the keys `extra` repeats, then `extra`.
pub(crate) fn write_initial(config: &Path, n: u32, ports: (u16, u16), stack: &Path, extra: &str) {
    let extra_keys: Vec<String> = extra.lines().map(key).filter(|k| !k.is_empty()).collect();
    let dir = config.parent().expect("the agent's directory");
    let slug_root = format!("slug_dir_root = \"{}\"", dir.display());
    let cni = format!("cni_config = \"{}\"", write_conflist(dir, n).display());
    let own = [
        format!("port_range = \"{}-{}\"", ports.0, ports.1),
        format!("host_id = \"e2e-{n}\""),
        format!("cgroup_parent = \"{}\"", cgroup_parent(n)),
    ];
    // A slower machine gets as long to bind $PORT and to stop, relative to
    // its speed.
    let boot = format!("boot_timeout = \"{}\"", crate::env::scaled_secs(3));
    let grace = format!("stop_grace = \"{}\"", crate::env::scaled_secs(2));
    let fast: String = FAST
        .lines()
        .map(|l| match key(l).as_str() {
            "boot_timeout" => boot.as_str(),
            "stop_grace" => grace.as_str(),
            _ => l,
        })
        .chain([slug_root.as_str(), cni.as_str()])
        .chain(own.iter().map(String::as_str))
        .filter(|l| !extra_keys.contains(&key(l)))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        config,
        format!("{fast}{extra}\n[stacks]\ndefault = \"{}\"\n", stack.display()),
    )
    .expect("config");
}

impl TestAgent {
    /// Sets a top-level key of the agent's configuration file (for the next
    /// `spawn`): replaces its line, or adds it before the `[stacks]` table.
    /// `value` is TOML (`"1s"` with its quotes, `0.5`, `true`).
    pub fn set_config(&self, key: &str, value: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let line = format!("{key} = {value}");
        let is_key = |l: &str| l.split('=').next().is_some_and(|k| k.trim() == key) && l.contains('=');
        let mut out = Vec::new();
        let mut done = false;
        let mut in_table = false;
        for l in text.lines() {
            if l.trim_start().starts_with('[') {
                if !done {
                    out.push(line.clone());
                    done = true;
                }
                in_table = true;
            }
            if !in_table && is_key(l) {
                if !done {
                    out.push(line.clone());
                    done = true;
                }
                continue;
            }
            out.push(l.to_string());
        }
        if !done {
            out.push(line);
        }
        std::fs::write(&self.config, out.join("\n") + "\n").expect("write config");
    }

    /// Removes a top-level key from the configuration file.
    pub fn unset_config(&self, key: &str) {
        let text = std::fs::read_to_string(&self.config).expect("read config");
        let mut out = Vec::new();
        let mut in_table = false;
        for l in text.lines() {
            in_table |= l.trim_start().starts_with('[');
            if !in_table && l.contains('=') && l.split('=').next().is_some_and(|k| k.trim() == key) {
                continue;
            }
            out.push(l.to_string());
        }
        std::fs::write(&self.config, out.join("\n") + "\n").expect("write config");
    }
}
