//! The semantic checks of a configuration; every problem is reported, not
//! just the first.

use std::time::Duration;

use super::Config;

impl Config {
    /// Semantic checks, all of them.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.host_id.is_empty() || self.host_id.contains(':') || self.host_id.len() > 253 {
            p.push(format!(
                "host_id: {:?} must be 1-253 characters without ':'",
                self.host_id
            ));
        }
        if !self.state_dir.is_absolute() {
            p.push(format!(
                "state_dir: {} must be an absolute path",
                self.state_dir.display()
            ));
        }
        if self.socket.as_os_str().is_empty() {
            p.push("socket: must not be empty".into());
        }
        if self.port_range.first == 0 || self.port_range.last > 65535 {
            p.push("port_range: ports must lie in 1-65535".into());
        }
        if self.uid_range.first == 0 {
            p.push("uid_range: must not include uid 0".into());
        }
        for (name, d) in [
            ("boot_timeout", self.boot_timeout),
            ("stable_window", self.stable_window),
            ("cycle_interval", self.cycle_interval),
            ("oneoff_ttl", self.oneoff_ttl),
            ("oneoff_retention", self.oneoff_retention),
            ("usage_slice", self.usage_slice),
            ("usage_retention", self.usage_retention),
            ("metrics_interval", self.metrics_interval),
            ("heartbeat_interval", self.heartbeat_interval),
            ("report_backoff_max", self.report_backoff_max),
        ] {
            if d.is_zero() {
                p.push(format!("{name}: must be greater than zero"));
            }
        }
        if self.oneoff_ttl > Duration::from_secs(24 * 3600) {
            p.push("oneoff_ttl: must be at most 24h".into());
        }
        if self.usage_slice.subsec_nanos() != 0 {
            p.push("usage_slice: must be a whole number of seconds".into());
        }
        if self.usage_slice > Duration::from_secs(24 * 3600) {
            p.push("usage_slice: must be at most 24h".into());
        }
        if self.restart_cooloffs.is_empty() {
            p.push("restart_cooloffs: needs at least one duration".into());
        }
        if self.cgroup_parent.is_empty()
            || self.cgroup_parent.starts_with('/')
            || self
                .cgroup_parent
                .split('/')
                .any(|p| p.is_empty() || p == "." || p == "..")
        {
            p.push(format!(
                "cgroup_parent: {:?} must be a relative cgroup path like `dynoagent`",
                self.cgroup_parent
            ));
        }
        for (key, list) in [
            ("network_deny", &self.network_deny),
            ("network_allow", &self.network_allow),
        ] {
            for range in list {
                if !is_cidr(range) {
                    p.push(format!(
                        "{key}: {range:?} is not an address range like 10.0.0.0/8 or fc00::/7"
                    ));
                }
            }
        }
        if self.network_max_connections == 0 {
            p.push("network_max_connections: must be greater than zero".into());
        }
        if self.network_pool > 64 {
            p.push("network_pool: must be at most 64".into());
        }
        if !self.cni_bin_dir.is_absolute() {
            p.push(format!(
                "cni_bin_dir: {} must be an absolute path",
                self.cni_bin_dir.display()
            ));
        }
        if self.disk_limit < 1024 * 1024 {
            p.push("disk_limit: must be at least 1 MiB".into());
        }
        if !(-1000..=1000).contains(&self.dyno_oom_score_adj) {
            p.push("dyno_oom_score_adj: must lie in -1000..=1000".into());
        }
        if self.log_max_bytes < 4096 {
            p.push("log_max_bytes: must be at least 4096".into());
        }
        if self.log_rate_lines == 0 || self.log_rate_burst == 0 {
            p.push("log_rate_lines, log_rate_burst: must be at least 1 (lines)".into());
        }
        p.extend(self.slug_problems());
        if !self.sizes.contains_key(&self.default_size) {
            p.push(format!(
                "default_size: {:?} is not in the size table",
                self.default_size
            ));
        }
        for (name, s) in &self.sizes {
            if s.memory_bytes < 4 * 1024 * 1024 {
                p.push(format!("sizes.{name}.memory_bytes: must be at least 4 MiB"));
            }
            if !(s.memory_kill_ratio.is_finite() && (1.0..=16.0).contains(&s.memory_kill_ratio)) {
                p.push(format!(
                    "sizes.{name}.memory_kill_ratio: must be a number from 1.0 (Private Space) to 16.0, got {}",
                    s.memory_kill_ratio
                ));
            }
            if s.cpu_quota.is_some_and(|q| q.is_nan() || q <= 0.0) {
                p.push(format!("sizes.{name}.cpu_quota: must be greater than zero"));
            }
            if s.pids_max == 0 || s.nofile == 0 || s.cpu_shares == 0 {
                p.push(format!(
                    "sizes.{name}: pids_max, nofile and cpu_shares must be greater than zero"
                ));
            }
        }
        if !(self.memory_overcommit.is_finite() && self.memory_overcommit > 0.0) {
            p.push("memory_overcommit: must be a number greater than zero".into());
        }
        if let Some(addr) = &self.metrics_listen
            && addr.parse::<std::net::SocketAddr>().is_err()
        {
            p.push(format!(
                "metrics_listen: {addr:?} is not an address like 127.0.0.1:9431"
            ));
        }
        if let Some(addr) = &self.listen {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                p.push(format!("listen: {addr:?} is not an address like 0.0.0.0:7443"));
            }
            if self.tls_cert.is_none() || self.tls_key.is_none() {
                p.push("listen: needs tls_cert and tls_key (the TCP API is served with TLS only)".into());
            }
            if self.tls_client_ca.is_none() && !self.listen_without_client_auth {
                p.push(
                    "listen: needs tls_client_ca (client certificates), or listen_without_client_auth = true \
                     to serve the whole API to anyone who can connect, dynos included"
                        .into(),
                );
            }
        } else if self.tls_client_ca.is_some() {
            p.push("tls_client_ca: only applies with listen".into());
        }
        if let Some(url) = &self.scheduler
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            p.push(format!("scheduler: {url:?} must be an http:// or https:// URL"));
        }
        if self.scheduler.as_deref().is_some_and(|u| u.starts_with("https://")) && self.scheduler_ca.is_none() {
            p.push("scheduler: an https:// scheduler needs scheduler_ca".into());
        }
        for (name, path) in [
            ("tls_cert", &self.tls_cert),
            ("tls_key", &self.tls_key),
            ("tls_client_ca", &self.tls_client_ca),
            ("scheduler_ca", &self.scheduler_ca),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                p.push(format!("{name}: {} is not a readable file", path.display()));
            }
        }
        for (name, dir) in &self.stacks {
            if !crate::names::valid_stack(name) {
                p.push(format!("stacks: invalid stack name {name:?}"));
            }
            if !dir.is_absolute() {
                p.push(format!("stacks.{name}: {} must be an absolute path", dir.display()));
            }
        }
        p
    }

    fn slug_problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for (name, v, min) in [
            ("slug_max_compressed_bytes", self.slug_max_compressed_bytes, 1024),
            ("slug_max_unpacked_bytes", self.slug_max_unpacked_bytes, 1024),
            ("slug_max_entries", self.slug_max_entries, 1),
            ("slug_max_depth", self.slug_max_depth as u64, 2),
            ("slug_max_path_bytes", self.slug_max_path_bytes as u64, 16),
        ] {
            if v < min {
                p.push(format!("{name}: must be at least {min}"));
            }
        }
        for (name, d) in [
            ("slug_connect_timeout", self.slug_connect_timeout),
            ("slug_read_timeout", self.slug_read_timeout),
            ("slug_fetch_timeout", self.slug_fetch_timeout),
            ("slug_retry_backoff", self.slug_retry_backoff),
            ("slug_cache_grace", self.slug_cache_grace),
        ] {
            if d.is_zero() {
                p.push(format!("{name}: must be greater than zero"));
            }
        }
        if self.slug_retry_backoff_max < self.slug_retry_backoff {
            p.push("slug_retry_backoff_max: must be at least slug_retry_backoff".into());
        }
        if self.slug_fetch_retries > 100 {
            p.push("slug_fetch_retries: must be at most 100".into());
        }
        if let Some(root) = &self.slug_dir_root {
            if !root.is_absolute() {
                p.push(format!("slug_dir_root: {} must be an absolute path", root.display()));
            } else if !root.is_dir() {
                p.push(format!("slug_dir_root: {} is not a directory", root.display()));
            }
        }
        p
    }
}

/// An IPv4 or IPv6 address, or a range of either in CIDR form.
fn is_cidr(s: &str) -> bool {
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let max = match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => 32,
        Ok(std::net::IpAddr::V6(_)) => 128,
        Err(_) => return false,
    };
    len.is_none_or(|l| l.parse::<u8>().is_ok_and(|l| l <= max))
}
