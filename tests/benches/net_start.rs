//! Benchmark: what an isolated network (`network = "isolated"`: a network
//! namespace per run through CNI, from the agent's pool of prepared ones)
//! adds to a warm dyno start, against `network = "host"`, side by side in
//! one run, for worker dynos and for web dynos (a published `$PORT`).
//!
//! Run with `cargo bench -p dyno-tests --bench net_start` (as root, with
//! `containernetworking-plugins` and `iptables` installed).
//!
//! Two agents (release builds of the real `dynoagent`) on one machine: one
//! with `network = "host"`, one isolated with `network_pool = BENCH_POOL`
//! (default 4, the agent's default). Each round samples, in turn, a worker
//! and a web dyno on each agent, every start after `BENCH_PAUSE_MS` of
//! idling (default 300: the pool refills in the background meanwhile, as it
//! would between the starts of a busy host). Timed from the `StartDyno` call:
//! - exec: the command exec'd (`exec.json`'s `started_at`, the shim's clock):
//!   everything a start does, the network included, without the readiness
//!   probe's 50 ms polling;
//! - up: the `up` event received here (for a web dyno, the probe found
//!   `$PORT` bound: up to 50 ms of polling on top).
//!
//! Each dyno is stopped (and its `down` awaited: the network is torn down
//! by then) outside the timing. Also printed: how many isolated starts
//! found a prepared network (a start that finds none sets one up inline).
//!
//! Environment: `BENCH_N` (rounds, default 50), `BENCH_PAUSE_MS`,
//! `BENCH_POOL`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use dyno_proto::v1 as pb;
use dyno_tests::bench::{Stats, env_usize, ms, stats};
use dyno_tests::grpc::next_event_of;
use dyno_tests::{TestAgent, require_root, selector, show, tarball, watch_events};
use pb::agent_client::AgentClient;
use tonic::Streaming;
use tonic::transport::Channel;

const APP: &str = "netbench";
const WARMUP: usize = 3;
const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

struct Bench {
    client: AgentClient<Channel>,
    events: Streaming<pb::WatchEventsResponse>,
    slug: String,
    runs: PathBuf,
    net: PathBuf,
}

/// One start: (exec, up), and whether it took a network prepared before it.
struct Sample {
    exec: Duration,
    up: Duration,
    prepared: bool,
}

impl Bench {
    async fn connect(agent: &TestAgent, slug: &str) -> Bench {
        let mut client = agent.client().await;
        let events = watch_events(&mut client, 0, true).await;
        Bench {
            client,
            events,
            slug: slug.to_string(),
            runs: agent.state.join("runs"),
            net: agent.state.join("net"),
        }
    }

    /// Whether a lease record names `run_id`: only a network set up for
    /// the run itself is recorded with it (a prepared one's record, written
    /// before any run took it, names none).
    fn set_up_inline(&self, run_id: &str) -> bool {
        std::fs::read_dir(&self.net).into_iter().flatten().flatten().any(|e| {
            e.path().extension().is_some_and(|x| x == "json")
                && dyno_agent::runs::read_json::<dyno_agent::net::Lease>(&e.path())
                    .ok()
                    .flatten()
                    .is_some_and(|l| l.run.as_deref() == Some(run_id))
        })
    }

    async fn sample(&mut self, name: &str, command: &str) -> Sample {
        let req = pb::StartDynoRequest {
            app: APP.into(),
            name: name.into(),
            command: command.into(),
            slug: self.slug.clone(),
            ..Default::default()
        };
        let wall0 = Utc::now();
        let t0 = Instant::now();
        let dyno = self
            .client
            .start_dyno(req)
            .await
            .unwrap_or_else(|e| panic!("StartDyno {name}: {e}"))
            .into_inner();
        let run_id = dyno.run_id;
        loop {
            let ev = self.next_event(name, &run_id).await;
            match pb::DynoState::try_from(ev.to).unwrap_or(pb::DynoState::Unspecified) {
                pb::DynoState::Up => break,
                pb::DynoState::Starting => {}
                other => panic!("{name} went {other:?} ({}) while starting", ev.reason),
            }
        }
        let up = t0.elapsed();
        let exec = dyno_agent::runs::RunDir::new(&self.runs, &run_id)
            .read_exec()
            .expect("exec.json")
            .unwrap_or_else(|| panic!("{name}: no exec.json after up"));
        let exec = (exec.started_at - wall0).to_std().unwrap_or(Duration::ZERO);
        let prepared = !self.set_up_inline(&run_id);
        self.client
            .stop_dyno(pb::StopDynoRequest {
                selector: selector(APP, name),
            })
            .await
            .unwrap_or_else(|e| panic!("StopDyno {name}: {e}"));
        while self.next_event(name, &run_id).await.to != pb::DynoState::Down as i32 {}
        Sample { exec, up, prepared }
    }

    async fn next_event(&mut self, name: &str, run_id: &str) -> pb::Event {
        next_event_of(&mut self.events, APP, name, run_id, EVENT_TIMEOUT).await
    }
}

#[derive(Default)]
struct Column {
    exec: Vec<Duration>,
    up: Vec<Duration>,
    prepared: usize,
}

impl Column {
    fn push(&mut self, s: Sample) {
        self.exec.push(s.exec);
        self.up.push(s.up);
        self.prepared += usize::from(s.prepared);
    }
}

fn row(label: &str, s: &Stats) -> String {
    format!(
        "{label:<34} {:>7.1} {:>7.1} {:>7.1} {:>7.1}\n",
        ms(s.p50),
        ms(s.p90),
        ms(s.mean),
        ms(s.max)
    )
}

fn main() {
    require_root();
    let n = env_usize("BENCH_N", 50).max(1);
    let pause = Duration::from_millis(env_usize("BENCH_PAUSE_MS", 300) as u64);
    let pool = env_usize("BENCH_POOL", 4);
    let work = tempfile::Builder::new()
        .prefix("net-start-")
        .tempdir()
        .expect("tempdir");
    let slug = work.path().join("slug.tar.gz");
    let files = [
        (
            "Procfile".to_string(),
            "web: exec busybox httpd -f -p $PORT\nworker: exec sleep 600\n".to_string(),
        ),
        ("index.html".to_string(), "ok\n".to_string()),
    ];
    std::fs::write(&slug, tarball::slug_tgz(&files)).expect("write the slug");
    let slug = show(&slug);

    // Every web dyno keeps its port while its record lives (down included):
    // ranges wider than the kit's 20 ports.
    let host_agent = TestAgent::start("network = \"host\"\nport_range = \"41000-41999\"");
    let iso_agent = TestAgent::start(&format!(
        "network = \"isolated\"\nnetwork_pool = {pool}\nport_range = \"42000-42999\""
    ));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut host = rt.block_on(Bench::connect(&host_agent, &slug));
    let mut iso = rt.block_on(Bench::connect(&iso_agent, &slug));
    let (mut hw, mut iw, mut hweb, mut iweb) = Default::default();
    for round in 0..WARMUP + n {
        let keep = round >= WARMUP;
        let take = |b: &mut Bench, name: String, command: &str, col: &mut Column| {
            std::thread::sleep(pause);
            let s = rt.block_on(b.sample(&name, command));
            if keep {
                col.push(s);
            }
        };
        take(&mut host, format!("worker.{}", round + 1), "exec sleep 600", &mut hw);
        take(&mut iso, format!("worker.{}", round + 1), "exec sleep 600", &mut iw);
        take(
            &mut host,
            format!("web.{}", round + 1),
            "exec busybox httpd -f -p $PORT",
            &mut hweb,
        );
        take(
            &mut iso,
            format!("web.{}", round + 1),
            "exec busybox httpd -f -p $PORT",
            &mut iweb,
        );
    }
    drop((host, iso));
    drop(rt);
    drop((host_agent, iso_agent));

    let (hw, iw, hweb, iweb): (Column, Column, Column, Column) = (hw, iw, hweb, iweb);
    let mut out = format!(
        "net_start: {n} rounds (+{WARMUP} warm-up), {} ms idle before each start, network_pool {pool}\n\n\
         {:<34} {:>7} {:>7} {:>7} {:>7}\n",
        pause.as_millis(),
        "StartDyno → (ms)",
        "p50",
        "p90",
        "mean",
        "max"
    );
    for (label, col) in [
        ("worker exec'd, host network", &hw.exec),
        ("worker exec'd, isolated", &iw.exec),
        ("worker up, host network", &hw.up),
        ("worker up, isolated", &iw.up),
        ("web exec'd, host network", &hweb.exec),
        ("web exec'd, isolated", &iweb.exec),
        ("web up ($PORT bound), host network", &hweb.up),
        ("web up ($PORT bound), isolated", &iweb.up),
    ] {
        out.push_str(&row(label, &stats(col)));
    }
    let added = |iso: &[Duration], host: &[Duration]| ms(stats(iso).p50) - ms(stats(host).p50);
    out.push_str(&format!(
        "\nadded by the isolated network at p50: worker {:+.1} ms exec'd, {:+.1} ms up; \
         web {:+.1} ms exec'd, {:+.1} ms up\n\
         isolated starts that took a prepared network: worker {}/{n}, web {}/{n}\n",
        added(&iw.exec, &hw.exec),
        added(&iw.up, &hw.up),
        added(&iweb.exec, &hweb.exec),
        added(&iweb.up, &hweb.up),
        iw.prepared,
        iweb.prepared,
    ));
    print!("{out}");
}
