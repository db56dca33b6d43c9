//! The CNI side of a dyno's network: a `.conflist` (the chain of plugins)
//! and running it the way the CNI specification (1.0) says a runtime does:
//! each plugin of the chain in turn for ADD, with the previous plugin's
//! result, and in reverse order for DEL, with the chain's result; the
//! runtime's values for the capabilities a plugin declares (`portMappings`)
//! in its `runtimeConfig`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::AsyncWriteExt;

/// Longest a plugin may take for one command.
const PLUGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// The interface name of a dyno's network in its namespace.
pub const IFNAME: &str = "eth0";

/// The built-in chain (`cni_config` unset): ptp with host-local addresses
/// and NAT, then portmap for `$PORT`.
pub const DEFAULT_CONFLIST: &str = include_str!("default.conflist");

/// A parsed, checked `.conflist`.
#[derive(Clone, Debug)]
pub struct Conflist {
    /// Where it came from, for messages (`built-in` for the default).
    pub origin: String,
    pub name: String,
    pub version: String,
    pub plugins: Vec<Map<String, Value>>,
}

impl Conflist {
    /// Parses a conflist; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Conflist, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{origin}: not JSON: {e}"))?;
        let str_field = |k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("{origin}: `{k}` must be a string"))
        };
        let name = str_field("name")?;
        let version = str_field("cniVersion")?;
        let plugins: Vec<Map<String, Value>> = v
            .get("plugins")
            .and_then(Value::as_array)
            .ok_or_else(|| format!("{origin}: `plugins` must be a list"))?
            .iter()
            .map(|p| p.as_object().cloned())
            .collect::<Option<_>>()
            .ok_or_else(|| format!("{origin}: every plugin must be an object"))?;
        if plugins.is_empty() {
            return Err(format!("{origin}: `plugins` is empty"));
        }
        for (i, p) in plugins.iter().enumerate() {
            match p.get("type").and_then(Value::as_str) {
                Some(t) if !t.is_empty() && !t.contains('/') && t != "." && t != ".." => {}
                _ => return Err(format!("{origin}: plugins[{i}].type must be a plugin's file name")),
            }
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) || name.is_empty() {
            return Err(format!(
                "{origin}: `name` {name:?} may hold only letters, digits, '-', '_' and '.'"
            ));
        }
        Ok(Conflist {
            origin: origin.to_string(),
            name,
            version,
            plugins,
        })
    }

    /// Reads `path`, or the built-in chain when `None`.
    pub fn load(path: Option<&Path>) -> Result<Conflist, String> {
        match path {
            None => Conflist::parse(DEFAULT_CONFLIST, "the built-in CNI chain"),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| format!("cni_config {}: {e}", p.display()))?;
                Conflist::parse(&text, &format!("cni_config {}", p.display()))
            }
        }
    }

    /// The plugin types of the chain.
    pub fn types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
    }

    /// Every `subnet` the chain's IPAM hands addresses from (host-local's
    /// `ranges` and its older `subnet` form): the dynos' addresses.
    pub fn subnets(&self) -> Vec<String> {
        let mut out = Vec::new();
        for p in &self.plugins {
            let Some(ipam) = p.get("ipam") else { continue };
            if let Some(s) = ipam.get("subnet").and_then(Value::as_str) {
                out.push(s.to_string());
            }
            for set in ipam.get("ranges").and_then(Value::as_array).into_iter().flatten() {
                for r in set.as_array().into_iter().flatten() {
                    if let Some(s) = r.get("subnet").and_then(Value::as_str) {
                        out.push(s.to_string());
                    }
                }
            }
        }
        out
    }

    /// Whether some plugin publishes ports (declares `portMappings`).
    pub fn maps_ports(&self) -> bool {
        self.plugins.iter().any(|p| declares(p, "portMappings"))
    }
}

fn declares(plugin: &Map<String, Value>, capability: &str) -> bool {
    plugin
        .get("capabilities")
        .and_then(|c| c.get(capability))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// One attachment of the chain to a namespace.
#[derive(Clone, Debug)]
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    /// `$PORT`, published on the host at the same number.
    pub port: Option<u16>,
}

/// Runs conflists' plugins from one directory.
#[derive(Clone, Debug)]
pub struct Runner {
    pub bin_dir: PathBuf,
}

impl Runner {
    /// ADD through the whole chain; returns the chain's result. On a
    /// failure the plugins already added are deleted again.
    pub async fn add(&self, list: &Conflist, at: &Attachment<'_>) -> Result<Value, String> {
        let mut prev: Option<Value> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let config = self.config(list, plugin, at, prev.as_ref());
            match self.exec("ADD", plugin, &config, at).await {
                Ok(result) => prev = Some(result),
                Err(e) => {
                    // Undo what the earlier plugins did (DEL is idempotent).
                    let partial = Conflist {
                        plugins: list.plugins[..=i].to_vec(),
                        ..list.clone()
                    };
                    let _ = self.del(&partial, at, prev.as_ref()).await;
                    return Err(e);
                }
            }
        }
        prev.ok_or_else(|| format!("{}: the chain returned no result", list.origin))
    }

    /// DEL through the chain in reverse order, each plugin given `result`
    /// (the chain's ADD result, when known). Stops at the first failure: a
    /// plugin before it (the IPAM's owner) must not give the address back
    /// while a later one's rule for it (portmap's DNAT of `$PORT`) is still
    /// there, or the next dyno given that address would receive this one's
    /// traffic. DEL is idempotent: the caller tries the whole chain again.
    pub async fn del(&self, list: &Conflist, at: &Attachment<'_>, result: Option<&Value>) -> Result<(), String> {
        for plugin in list.plugins.iter().rev() {
            let config = self.config(list, plugin, at, result);
            self.exec("DEL", plugin, &config, at).await?;
        }
        Ok(())
    }

    /// The network configuration one plugin reads on stdin.
    fn config(&self, list: &Conflist, plugin: &Map<String, Value>, at: &Attachment<'_>, prev: Option<&Value>) -> Value {
        let mut config = plugin.clone();
        config.insert("name".into(), Value::String(list.name.clone()));
        config.insert("cniVersion".into(), Value::String(list.version.clone()));
        if let Some(prev) = prev {
            config.insert("prevResult".into(), prev.clone());
        }
        let mut runtime = Map::new();
        if declares(plugin, "portMappings") {
            let mappings: Vec<Value> = at
                .port
                .iter()
                .map(|p| json!({"hostPort": p, "containerPort": p, "protocol": "tcp"}))
                .collect();
            runtime.insert("portMappings".into(), Value::Array(mappings));
        }
        if !runtime.is_empty() {
            config.insert("runtimeConfig".into(), Value::Object(runtime));
        }
        Value::Object(config)
    }

    async fn exec(
        &self,
        command: &str,
        plugin: &Map<String, Value>,
        config: &Value,
        at: &Attachment<'_>,
    ) -> Result<Value, String> {
        let kind = plugin.get("type").and_then(Value::as_str).unwrap_or_default();
        let bin = self.bin_dir.join(kind);
        let fail = |why: String| format!("CNI plugin {kind} {command} ({}): {why}", at.container_id);
        let mut child = tokio::process::Command::new(&bin)
            .env_clear()
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", at.container_id)
            .env("CNI_NETNS", at.netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_PATH", &self.bin_dir)
            // Plugins run iptables and ip themselves.
            .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| fail(format!("{}: {e}", bin.display())))?;
        let input = serde_json::to_vec(config).expect("a JSON value serializes");
        let mut stdin = child.stdin.take().expect("piped");
        let write = async move {
            stdin.write_all(&input).await?;
            stdin.shutdown().await
        };
        let run = async {
            let (written, out) = tokio::join!(write, child.wait_with_output());
            (written, out)
        };
        let (written, out) = tokio::time::timeout(PLUGIN_TIMEOUT, run)
            .await
            .map_err(|_| fail(format!("no answer within {}s", PLUGIN_TIMEOUT.as_secs())))?;
        let out = out.map_err(|e| fail(e.to_string()))?;
        if !out.status.success() {
            // The spec's error object on stdout; else whatever was said.
            let said = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|v| {
                    let msg = v.get("msg")?.as_str()?.to_string();
                    Some(match v.get("details").and_then(Value::as_str) {
                        Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                        _ => msg,
                    })
                })
                .unwrap_or_else(|| {
                    let text = String::from_utf8_lossy(if out.stdout.is_empty() {
                        &out.stderr
                    } else {
                        &out.stdout
                    });
                    text.trim().chars().take(300).collect()
                });
            return Err(fail(format!("{}: {said}", out.status)));
        }
        written.map_err(|e| fail(format!("writing its configuration: {e}")))?;
        if command == "DEL" || out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout).map_err(|e| fail(format!("its result is not JSON: {e}")))
    }
}

/// The gateway of the first IPv4 address of a CNI result.
pub fn gateway_of(result: &Value) -> Option<Ipv4Addr> {
    result
        .get("ips")?
        .as_array()?
        .iter()
        .filter(|ip| {
            ip.get("address")
                .and_then(Value::as_str)
                .is_some_and(|a| a.contains('.'))
        })
        .find_map(|ip| ip.get("gateway")?.as_str()?.parse().ok())
}

/// The host's interfaces of a CNI result (those outside the namespace).
pub fn host_interfaces(result: &Value) -> Vec<String> {
    result
        .get("interfaces")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|i| i.get("sandbox").and_then(Value::as_str).is_none_or(str::is_empty))
        .filter_map(|i| i.get("name")?.as_str())
        .filter(|n| !n.is_empty() && !n.contains('/') && *n != "." && *n != "..")
        .map(str::to_string)
        .collect()
}

/// The first IPv4 address of a CNI result (`ips[].address`, CIDR form).
pub fn ipv4_of(result: &Value) -> Option<Ipv4Addr> {
    result
        .get("ips")?
        .as_array()?
        .iter()
        .filter_map(|ip| ip.get("address")?.as_str())
        .find_map(|a| a.split('/').next()?.parse().ok())
}

#[cfg(test)]
#[path = "cni_tests.rs"]
mod tests;
