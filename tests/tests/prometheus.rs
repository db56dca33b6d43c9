//! The Prometheus endpoint (`metrics_listen`, DESIGN §10a): a scrape of
//! `/metrics` passes `promtool check metrics`, and a real Prometheus server
//! scrapes it (`up == 1`, the dynos' series queryable).

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dyno_tests::*;

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a loopback port")
        .local_addr()
        .unwrap()
        .port()
}

/// The status line and the body of an HTTP response.
fn split(response: &str) -> (&str, &str) {
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    (head, body)
}

/// A Prometheus server of the test's own, killed (by its pid) on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: u16) -> Prometheus {
        assert!(
            bench::have("prometheus"),
            "this test needs the prometheus server (scripts/test installs Debian's prometheus)"
        );
        let dir = tempfile::Builder::new().prefix("dyno-prom-").tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: dynoagent\n    \
                 static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        Prometheus { child, port, dir }
    }

    /// The `result` of an instant query, once the server answers.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let q: String = promql
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        // Not listening yet while it starts: nothing to say then.
        if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            return Vec::new();
        }
        let response = http_get(u64::from(self.port), &format!("/api/v1/query?query={q}"));
        let Some((_, body)) = response.split_once("\r\n\r\n") else {
            return Vec::new();
        };
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn metrics_pass_promtool_and_a_real_prometheus_scrapes_them() {
    let port = free_port();
    let a = TestAgent::start(&format!(
        "metrics_listen = \"127.0.0.1:{port}\"\nmetrics_interval = \"1s\""
    ));
    let slug = a.slug("s", &[]);
    a.start_dyno("shop", "web.1", &slug, "exec busybox httpd -f -p $PORT -h .");
    a.start_dyno("shop", "worker.1", &slug, "exec sleep 600");
    a.wait_state("shop", "web.1", "up");
    a.wait_state("shop", "worker.1", "up");
    // Once the sampler has read the dynos' cgroups.
    let body = wait_for("a scrape with the dynos' memory", || {
        let response = http_get(u64::from(port), "/metrics");
        let (head, body) = split(&response);
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}"
        );
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        body.lines()
            .any(|l| l.starts_with("dynoagent_dyno_memory_bytes{app=\"shop\",dyno=\"worker.1\"") && !l.ends_with(" 0"))
            .then(|| body.to_string())
    });
    for want in [
        "dynoagent_dynos{state=\"up\"} 2",
        "dynoagent_dyno_state{app=\"shop\",dyno=\"web.1\",type=\"web\",size=\"standard-1x\",state=\"up\"} 1",
        "dynoagent_dyno_memory_quota_bytes{app=\"shop\",dyno=\"worker.1\",type=\"worker\",size=\"standard-1x\"} 536870912",
        "dynoagent_dyno_restarts_total{app=\"shop\",dyno=\"worker.1\",type=\"worker\",size=\"standard-1x\"} 0",
        "dynoagent_ledger_pending_writes 0",
        "dynoagent_oom_kills_total 0",
        "dynoagent_slug_fetch_errors_total 0",
        "dynoagent_starts_total 2",
        "dynoagent_start_latency_seconds_count 2",
    ] {
        assert!(body.lines().any(|l| l == want), "no {want:?} in:\n{body}");
    }
    for family in [
        "dynoagent_dyno_cpu_seconds_total{",
        "dynoagent_slug_cache_bytes ",
        "dynoagent_dyno_oom_kills_total{",
    ] {
        assert!(body.lines().any(|l| l.starts_with(family)), "no {family} in:\n{body}");
    }
    // Anything but GET /metrics is refused.
    assert!(split(&http_get(u64::from(port), "/")).0.contains(" 404 "));

    // promtool's lint: clean.
    assert!(
        bench::have("promtool"),
        "this test needs promtool (scripts/test installs Debian's prometheus)"
    );
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    promtool.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics: {}\n{}{}\n--- scrape ---\n{body}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A real server scrapes it.
    let prom = Prometheus::start(port);
    let up = poll(DEADLINE, Duration::from_millis(250), || {
        let r = prom.query("up{job=\"dynoagent\"}");
        match r.first().and_then(|s| s["value"][1].as_str()) {
            Some("1") => Ok(()),
            _ => Err(r),
        }
    });
    assert!(up.is_ok(), "prometheus never saw up == 1: {up:?}\n{}", prom.log());
    let states = poll(DEADLINE, Duration::from_millis(250), || {
        let r = prom.query("dynoagent_dyno_state{app=\"shop\",state=\"up\"}");
        if r.len() == 2 { Ok(r) } else { Err(r) }
    })
    .unwrap_or_else(|r| panic!("prometheus has not both dynos: {r:?}\n{}", prom.log()));
    let mut dynos: Vec<&str> = states.iter().filter_map(|s| s["metric"]["dyno"].as_str()).collect();
    dynos.sort();
    assert_eq!(dynos, ["web.1", "worker.1"]);
    drop(prom);
    a.ctl_ok(&["stop", "--all"]);
    a.wait_state("shop", "worker.1", "down");
}
