//! What a dyno may reach, as iptables rules in two chains of the agent's
//! own (`DYNO-IN-<network>` from INPUT, `DYNO-FWD-<network>` from FORWARD),
//! matched on the dynos' subnets. Written whole with one `iptables-restore`
//! at start (the chains are flushed and refilled, so a changed configuration
//! takes effect); the jumps are added once. IPv6 needs no rules: a dyno's
//! interface has IPv6 off (see [`crate::os::netns::create`]).
//!
//! Order in `DYNO-FWD`: replies pass; a dyno never reaches another dyno
//! (directly or through a published port); from outside only published ports
//! (DNAT) reach a dyno; past `max_conns` tracked connections a dyno's new
//! ones are refused; link-local never; DNS to the configured resolvers;
//! `allow` before `deny`; the rest (the internet, through NAT) passes.
//! `DYNO-IN` refuses everything new from a dyno to the host itself.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

/// The filter's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// The CNI network's name (chains are named after it).
    pub network: String,
    /// The dynos' IPv4 subnets.
    pub subnets: Vec<String>,
    /// IPv4 nameservers reachable on port 53.
    pub dns: Vec<String>,
    /// A resolver on the host's loopback: a dyno's queries to any host
    /// address (its gateway, in its `resolv.conf`) go to it.
    pub local_dns: Option<String>,
    /// IPv4 ranges reachable although `deny` lists them.
    pub allow: Vec<String>,
    /// IPv4 ranges a dyno may not reach.
    pub deny: Vec<String>,
    /// Tracked connections a dyno may have open.
    pub max_conns: u32,
}

/// `169.254.0.0/16`: link-local, where clouds serve instance metadata.
const LINK_LOCAL: &str = "169.254.0.0/16";

impl Rules {
    /// The longest network name whose chains' names hold it whole.
    pub const NAME_MAX: usize = 28 - "DYNO-FWD-".len();

    fn chain(&self, kind: &str) -> String {
        // iptables chain names are at most 28 characters.
        let name: String = self.network.chars().take(28 - "DYNO--".len() - kind.len()).collect();
        format!("DYNO-{kind}-{name}")
    }

    /// The chain of the INPUT hook.
    pub fn input_chain(&self) -> String {
        self.chain("IN")
    }

    /// The chain of the FORWARD hook.
    pub fn forward_chain(&self) -> String {
        self.chain("FWD")
    }

    /// The `iptables-restore --noflush` input that (re)fills the chains.
    pub fn restore_script(&self) -> String {
        let (input, fwd) = (self.input_chain(), self.forward_chain());
        let reject = "-j REJECT --reject-with icmp-port-unreachable";
        let reset = "-p tcp -j REJECT --reject-with tcp-reset";
        let mut s = format!("*filter\n:{input} - [0:0]\n:{fwd} - [0:0]\n-F {input}\n-F {fwd}\n");
        let mut add = |chain: &str, rule: String| {
            s.push_str(&format!("-A {chain} {rule}\n"));
        };
        add(&input, "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into());
        // The loopback resolver's path is the one way in: bound like the
        // way out, or one dyno's queries fill the host's conntrack table.
        let connlimit = format!(
            "-m conntrack --ctstate NEW -m connlimit --connlimit-above {} --connlimit-mask 32 --connlimit-saddr {reject}",
            self.max_conns
        );
        if let Some(local) = &self.local_dns {
            add(&input, connlimit.clone());
            for proto in ["udp", "tcp"] {
                add(&input, format!("-d {local} -p {proto} --dport 53 -j ACCEPT"));
            }
        }
        add(&input, reset.into());
        add(&input, reject.into());
        add(&fwd, "-m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT".into());
        // What conntrack cannot place would leave un-NATed: never forwarded.
        add(&fwd, "-m conntrack --ctstate INVALID -j DROP".into());
        for src in &self.subnets {
            for dst in &self.subnets {
                add(&fwd, format!("-s {src} -d {dst} {reset}"));
                add(&fwd, format!("-s {src} -d {dst} {reject}"));
            }
        }
        for sub in &self.subnets {
            add(&fwd, format!("-d {sub} -m conntrack --ctstate DNAT -j ACCEPT"));
            add(&fwd, format!("-d {sub} {reject}"));
        }
        for sub in &self.subnets {
            add(&fwd, format!("-s {sub} {connlimit}"));
            add(&fwd, format!("-s {sub} -d {LINK_LOCAL} {reject}"));
            for ns in &self.dns {
                for proto in ["udp", "tcp"] {
                    add(&fwd, format!("-s {sub} -d {ns} -p {proto} --dport 53 -j ACCEPT"));
                }
            }
            for a in &self.allow {
                add(&fwd, format!("-s {sub} -d {a} -j ACCEPT"));
            }
            for d in &self.deny {
                add(&fwd, format!("-s {sub} -d {d} {reset}"));
                add(&fwd, format!("-s {sub} -d {d} {reject}"));
            }
            add(&fwd, format!("-s {sub} -j ACCEPT"));
        }
        s.push_str("COMMIT\n");
        // Always there, empty without a loopback resolver: a resolver an
        // earlier configuration named is forgotten.
        let dns = self.dns_chain();
        s.push_str(&format!("*nat\n:{dns} - [0:0]\n-F {dns}\n"));
        if let Some(local) = &self.local_dns {
            for proto in ["udp", "tcp"] {
                s.push_str(&format!(
                    "-A {dns} -p {proto} --dport 53 -m addrtype --dst-type LOCAL -j DNAT --to-destination {local}\n"
                ));
            }
        }
        s.push_str("COMMIT\n");
        s
    }

    /// The chain (nat table) that sends dynos' DNS to a loopback resolver.
    pub fn dns_chain(&self) -> String {
        self.chain("DNS")
    }

    /// The jumps into the chains: (table, hook, rule arguments).
    pub fn jumps(&self) -> Vec<(&'static str, &'static str, Vec<String>)> {
        let mut out = Vec::new();
        let jump = |dir: &str, sub: &String, chain: String| vec![dir.into(), sub.clone(), "-j".into(), chain];
        for sub in &self.subnets {
            // Not the host's own packets to its own addresses (those leave
            // by `lo`, some with a dyno-side source: the veths' address).
            let mut input = jump("-s", sub, self.input_chain());
            input.splice(2..2, ["!".to_string(), "-i".into(), "lo".into()]);
            out.push(("filter", "INPUT", input));
            out.push(("filter", "FORWARD", jump("-s", sub, self.forward_chain())));
            out.push(("filter", "FORWARD", jump("-d", sub, self.forward_chain())));
            out.push(("nat", "PREROUTING", jump("-s", sub, self.dns_chain())));
        }
        out
    }

    /// Fills the chains and adds the jumps that are missing (first in their
    /// hook, so that no host rule lets a dyno's packet through before them);
    /// returns how many jumps were missing.
    pub async fn install(&self) -> Result<usize, String> {
        let mut child = tokio::process::Command::new("iptables-restore")
            .args(["--noflush", "-w"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("iptables-restore: {e} (is iptables installed?)"))?;
        let script = self.restore_script();
        let mut stdin = child.stdin.take().expect("piped");
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("iptables-restore: {e}"))?;
        drop(stdin);
        let out = child
            .wait_with_output()
            .await
            .map_err(|e| format!("iptables-restore: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "iptables-restore of the dyno filter: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let mut added = 0;
        for (table, hook, rule) in self.jumps() {
            let with = |head: &[&str]| -> Vec<String> {
                ["-t", table]
                    .iter()
                    .chain(head)
                    .map(|s| s.to_string())
                    .chain(rule.iter().cloned())
                    .collect()
            };
            if iptables(&with(&["-w", "-C", hook])).await.is_ok() {
                continue;
            }
            iptables(&with(&["-w", "-I", hook, "1"])).await?;
            added += 1;
        }
        self.drop_stale_jumps().await;
        Ok(added)
    }

    /// Deletes jumps into this network's chains that the current rules do
    /// not make (an older agent's, say without `! -i lo`), so an upgrade
    /// leaves no rule of the old version in front of the new ones.
    async fn drop_stale_jumps(&self) {
        let ours = [self.input_chain(), self.forward_chain(), self.dns_chain()];
        let wanted: Vec<(&str, &str, Vec<String>)> = self.jumps();
        for (table, hook) in [("filter", "INPUT"), ("filter", "FORWARD"), ("nat", "PREROUTING")] {
            let Ok(listing) = iptables_output(&["-t", table, "-w", "-S", hook]).await else {
                continue;
            };
            for line in listing.lines() {
                let words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
                let [flag, chain, rule @ ..] = &words[..] else { continue };
                let targets_ours = rule.windows(2).any(|w| w[0] == "-j" && ours.contains(&w[1]));
                let is_wanted = wanted
                    .iter()
                    .any(|(t, h, r)| *t == table && *h == hook && r[..] == rule[..]);
                // Another network's jump (a chain name shared by truncation)
                // names its own subnet: left alone.
                let for_our_subnet = rule.iter().any(|w| self.subnets.contains(w));
                if flag != "-A" || chain != hook || !targets_ours || !for_our_subnet || is_wanted {
                    continue;
                }
                let mut args: Vec<String> = ["-t", table, "-w", "-D", hook].iter().map(|s| s.to_string()).collect();
                args.extend(rule.iter().cloned());
                let _ = iptables(&args).await;
            }
        }
    }
}

impl Rules {
    /// Removes the jumps and the chains (decommissioning the network).
    pub async fn uninstall(&self) {
        for (table, hook, rule) in self.jumps() {
            let args: Vec<String> = ["-t", table, "-w", "-D", hook]
                .iter()
                .map(|s| s.to_string())
                .chain(rule)
                .collect();
            // A jump added twice (two agents racing) is deleted twice.
            while iptables(&args).await.is_ok() {}
        }
        for (table, chain) in [
            ("filter", self.input_chain()),
            ("filter", self.forward_chain()),
            ("nat", self.dns_chain()),
        ] {
            let _ = iptables(&["-t", table, "-w", "-F", &chain]).await;
            let _ = iptables(&["-t", table, "-w", "-X", &chain]).await;
        }
    }
}

/// Runs `iptables` with `args`; its standard output, or its complaint.
async fn iptables_output(args: &[impl AsRef<std::ffi::OsStr>]) -> Result<String, String> {
    let out = tokio::process::Command::new("iptables")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("iptables: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("iptables: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

async fn iptables(args: &[impl AsRef<std::ffi::OsStr>]) -> Result<(), String> {
    iptables_output(args).await.map(drop)
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
