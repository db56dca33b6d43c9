//! Benchmark: a cold start from an HTTP slug, against `curl | tar -xz`.
//!
//! Run with `cargo bench -p dyno-tests --bench cold_start` (a release build of
//! the real `dynoagent`, started by the end-to-end harness in a temp
//! directory).
//!
//! The slug: about 200 MB in 5 000 files (source-like text that compresses
//! about 4:1, every tenth file incompressible) plus a Procfile whose web
//! process is busybox httpd, built with the kit's tar builder. It is served
//! from memory by the kit's loopback HTTP/1.1 server.
//!
//! One cold start: `StartDyno` with the slug's URL and sha256 while the digest
//! is not cached (download, sha256, gunzip, untar in one streamed pass, sync,
//! rename into the cache), until the web dyno's `up` event (it accepts
//! connections on $PORT). Between rounds the dyno is stopped and its cache
//! entry deleted. The baseline, in the same loop: GNU
//! `curl -s URL | tar -xz -C DIR` from the same server into the same
//! filesystem, and the same followed by `sync -f DIR` (the agent syncs the
//! filesystem before it makes an entry visible). `BENCH_ROUNDS` (default 5)
//! rounds; best and median of each are printed, and the ratio of the bests.

use std::process::Command;
use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use dyno_tests::bench::{ms, percentile};
use dyno_tests::grpc::next_event_of;
use dyno_tests::tarball::tgz_with;
use dyno_tests::{Reply, TestAgent, TestServer, selector, watch_events};

const APP: &str = "bench";
const FILES: u32 = 5_000;
const EVENT_TIMEOUT: Duration = Duration::from_secs(120);

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .map(|v| v.trim().parse().expect("BENCH_ROUNDS is a number"))
        .unwrap_or(5)
        .max(1);
    let (slug, unpacked) = make_slug();
    let digest = {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("slug.tgz");
        std::fs::write(&p, &slug).expect("write");
        dyno_agent::slug::sha256_file(&p).expect("sha256")
    };
    eprintln!(
        "slug: {unpacked} bytes in {} files, {} compressed, sha256 {digest}",
        FILES + 2,
        slug.len()
    );
    let compressed = slug.len();
    let server = TestServer::start(vec![Reply::Body(slug)]);
    let url = server.url("/slug.tgz");

    let agent = TestAgent::start("boot_timeout = \"120s\"");
    let scratch = tempfile::Builder::new()
        .prefix("cold-start-")
        .tempdir_in(agent.dir.path())
        .expect("scratch dir");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");

    let (mut ours, mut rpc, mut tar, mut tar_sync) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    rt.block_on(async {
        let mut client = agent.client().await;
        let mut events = watch_events(&mut client.clone(), 0, true).await;
        for round in 1..=rounds {
            let entry = agent.state.join("slugs").join(&digest);
            assert!(!entry.exists(), "not cold: {} exists", entry.display());
            let name = format!("web.{round}");
            let t0 = Instant::now();
            let dyno = client
                .start_dyno(pb::StartDynoRequest {
                    app: APP.into(),
                    name: name.clone(),
                    slug: url.clone(),
                    sha256: digest.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_or_else(|e| panic!("StartDyno {name}: {e}"))
                .into_inner();
            let resolved = t0.elapsed();
            wait_event(&mut events, &name, &dyno.run_id, pb::DynoState::Up).await;
            ours.push(t0.elapsed());
            rpc.push(resolved);
            client
                .stop_dyno(pb::StopDynoRequest {
                    selector: selector(APP, &name),
                })
                .await
                .expect("StopDyno");
            wait_event(&mut events, &name, &dyno.run_id, pb::DynoState::Down).await;
            std::fs::remove_dir_all(&entry).expect("remove the cache entry");

            let out = scratch.path().join(format!("tar{round}"));
            tar.push(curl_tar(&url, &out, false));
            std::fs::remove_dir_all(&out).expect("remove tar output");
            tar_sync.push(curl_tar(&url, &out, true));
            std::fs::remove_dir_all(&out).expect("remove tar output");
            eprintln!(
                "round {round}: cold start {:.0} ms (StartDyno returned after {:.0} ms); curl | tar -xz {:.0} ms; with sync -f {:.0} ms",
                ms(ours[round - 1]),
                ms(rpc[round - 1]),
                ms(tar[round - 1]),
                ms(tar_sync[round - 1])
            );
        }
    });
    drop(rt);
    assert_eq!(server.gets(), rounds * 3, "every round downloaded the slug three times");
    // The agent's own split of each cold start: fetch + verify + unpack, then sync + rename.
    for line in agent.agent_log().lines().filter(|l| l.contains("slug downloaded")) {
        let line = strip_ansi(line);
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|w| w.strip_prefix(k))
                .unwrap_or("?")
                .to_string()
        };
        eprintln!(
            "agent: fetch+verify+unpack {}, sync+rename {}",
            field("fetch_and_unpack="),
            field("sync_and_rename=")
        );
    }
    drop(agent);

    let best = |v: &[Duration]| *v.iter().min().expect("samples");
    let median = |v: &[Duration]| {
        let mut s = v.to_vec();
        s.sort();
        percentile(&s, 50.0)
    };
    println!(
        "cold start from an HTTP slug ({} MB unpacked, {} files, {} MB compressed), {rounds} rounds:",
        unpacked / 1_000_000,
        FILES + 2,
        compressed / 1_000_000
    );
    println!("  {:<44} {:>9} {:>9}", "", "best ms", "median ms");
    for (label, v) in [
        ("dynoagent: StartDyno to up", &ours),
        ("  of which StartDyno returned (fetch+unpack)", &rpc),
        ("curl -s URL | tar -xz", &tar),
        ("curl -s URL | tar -xz; sync -f", &tar_sync),
    ] {
        println!("  {label:<44} {:>9.0} {:>9.0}", ms(best(v)), ms(median(v)));
    }
    println!(
        "  ratio dynoagent / curl|tar (best): {:.2}; against curl|tar + sync: {:.2}",
        best(&ours).as_secs_f64() / best(&tar).as_secs_f64(),
        best(&ours).as_secs_f64() / best(&tar_sync).as_secs_f64()
    );
}

/// The text without terminal colour sequences (`ESC [ … m`).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `curl -s URL | tar -xz -C out` (then `sync -f out` with `sync`).
fn curl_tar(url: &str, out: &std::path::Path, sync: bool) -> Duration {
    std::fs::create_dir(out).expect("mkdir");
    let script = if sync {
        "set -o pipefail; curl -sf \"$1\" | tar -xz -C \"$2\" && sync -f \"$2\""
    } else {
        "set -o pipefail; curl -sf \"$1\" | tar -xz -C \"$2\""
    };
    let t0 = Instant::now();
    let ok = Command::new("bash")
        .args(["-c", script, "curl-tar", url])
        .arg(out)
        .status()
        .expect("run curl | tar")
        .success();
    let dt = t0.elapsed();
    assert!(ok, "curl | tar failed");
    dt
}

async fn wait_event(
    events: &mut tonic::Streaming<pb::WatchEventsResponse>,
    name: &str,
    run_id: &str,
    to: pb::DynoState,
) {
    loop {
        let ev = next_event_of(events, APP, name, run_id, EVENT_TIMEOUT).await;
        if ev.to == to as i32 {
            return;
        }
        assert!(
            to == pb::DynoState::Down || ev.to == pb::DynoState::Starting as i32,
            "{name} went {:?} ({}) while waiting for {to:?}",
            pb::DynoState::try_from(ev.to),
            ev.reason
        );
    }
}

/// The slug: (compressed bytes, unpacked bytes of file data).
fn make_slug() -> (Vec<u8>, u64) {
    let words: Vec<&str> = "the quick brown fox jumps over a lazy dog while some code runs in a loop and \
        returns values from functions that read and write buffers of data into files on disk"
        .split_whitespace()
        .collect();
    let mut state = 0x853c_49e6_748f_ea9bu64;
    let mut rand = move || {
        // splitmix64
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut total = 0u64;
    let bytes = tgz_with(flate2::Compression::default(), |t| {
        t.file("app/Procfile", b"web: exec busybox httpd -f -p $PORT -h public\n")
            .file("app/public/index.html", b"cold start\n");
        for i in 0..FILES {
            let size = 39_000 + (rand() % 2_000) as usize;
            let mut data = Vec::with_capacity(size + 16);
            while data.len() < size {
                if i % 10 == 0 {
                    data.extend_from_slice(&rand().to_le_bytes());
                } else {
                    data.extend_from_slice(words[(rand() % words.len() as u64) as usize].as_bytes());
                    data.push(if rand() % 10 == 0 { b'\n' } else { b' ' });
                }
            }
            total += data.len() as u64;
            t.file(&format!("app/lib/m{:02}/p{}/file{i}.rb", i % 40, i % 5), &data);
        }
        t.end();
    });
    (bytes, total)
}
