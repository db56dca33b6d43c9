//! The cost of a Prometheus scrape of `/metrics` (DESIGN §10a) at 10, 100
//! and 1 000 dynos, side by side in one run: the agent's encoding (a fresh
//! `prometheus-client` registry around its counters and a collector writing
//! every dyno's series from the scrape's rows) against the same text written
//! by hand with `write!` into one `String` (the floor of any encoder).
//! Synthetic rows stand for the engine's; the cgroups are not read at a
//! scrape (the samplers' last readings are), so this is the whole per-scrape
//! work besides the actor's copy of the rows and the socket.
//! `cargo bench -p dyno-agent --bench scrape` (BENCH_RUNS=50)
//!
//! The lines to read: `per scrape` at 1 000 dynos, and `encoder / by hand`.

use std::fmt::Write;
use std::time::{Duration, Instant};

use dyno_agent::telemetry::{DynoRow, Scrape, encode};

fn rows(n: usize) -> Vec<DynoRow> {
    let states = ["up", "up", "up", "starting", "crashed", "down"];
    (0..n)
        .map(|i| DynoRow {
            app: format!("app-{:03}", i / 20),
            dyno: format!("{}.{}", if i % 2 == 0 { "web" } else { "worker" }, i % 20 + 1),
            ptype: if i % 2 == 0 { "web" } else { "worker" }.into(),
            size: if i % 3 == 0 { "standard-2x" } else { "standard-1x" }.into(),
            state: states[i % states.len()],
            restarts: (i % 7) as u64,
            oom_kills: (i % 11 == 0) as u64,
            cpu_seconds: i as f64 * 1.25,
            memory_bytes: (100 + i as u64) << 20,
            memory_quota_bytes: 512 << 20,
            memory_kill_bytes: 1024 << 20,
        })
        .collect()
}

/// A per-dyno family: its name and the value of a dyno.
type Family = (&'static str, fn(&DynoRow) -> f64);

/// The per-dyno series written by hand: the floor.
fn by_hand(s: &Scrape) -> String {
    let mut out = String::with_capacity(4096);
    let families: [Family; 6] = [
        ("dyno_restarts_total", |d| d.restarts as f64),
        ("dyno_oom_kills_total", |d| d.oom_kills as f64),
        ("dyno_cpu_seconds_total", |d| d.cpu_seconds),
        ("dyno_memory_bytes", |d| d.memory_bytes as f64),
        ("dyno_memory_quota_bytes", |d| d.memory_quota_bytes as f64),
        ("dyno_memory_kill_bytes", |d| d.memory_kill_bytes as f64),
    ];
    for d in &s.dynos {
        let _ = writeln!(
            out,
            "dynoagent_dyno_state{{app=\"{}\",dyno=\"{}\",type=\"{}\",size=\"{}\",state=\"{}\"}} 1",
            d.app, d.dyno, d.ptype, d.size, d.state
        );
    }
    for (name, value) in families {
        let _ = writeln!(out, "# HELP dynoagent_{name} x\n# TYPE dynoagent_{name} gauge");
        for d in &s.dynos {
            let _ = writeln!(
                out,
                "dynoagent_{name}{{app=\"{}\",dyno=\"{}\",type=\"{}\",size=\"{}\"}} {}",
                d.app,
                d.dyno,
                d.ptype,
                d.size,
                value(d)
            );
        }
    }
    out
}

/// The best of `runs` timings of `f`, and the size of what it wrote.
fn best(runs: usize, mut f: impl FnMut() -> String) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut bytes = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let text = std::hint::black_box(f());
        best = best.min(t.elapsed());
        bytes = text.len();
    }
    (best, bytes)
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    println!("scrape encoding, best of {runs} (interleaved per size)");
    for n in [10, 100, 1000] {
        let scrape = Scrape {
            dynos: rows(n),
            ledger_pending_writes: 0,
        };
        let (enc, enc_bytes) = best(runs, || encode(scrape.clone()));
        let (hand, hand_bytes) = best(runs, || by_hand(&scrape));
        println!(
            "{n:>5} dynos: per scrape {:>8.3} ms ({:>7} bytes, {:.2} µs a dyno); by hand {:>8.3} ms ({:>7} bytes); \
             encoder / by hand {:.2}",
            enc.as_secs_f64() * 1e3,
            enc_bytes,
            enc.as_secs_f64() * 1e6 / n as f64,
            hand.as_secs_f64() * 1e3,
            hand_bytes,
            enc.as_secs_f64() / hand.as_secs_f64()
        );
    }
}
