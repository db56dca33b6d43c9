//! Unpack throughput of the hardened slug unpacker against GNU `tar -xzf` of
//! the same file, side by side in one run (interleaved, best of 3 each, each
//! run once creating files is fast: see below): a slug of ~200 MB in 5 000
//! files. `cargo bench -p dyno-agent --bench unpack`
//!
//! The number to read is the last line's `unpack throughput / tar's`: above 1, the unpacker is faster.

use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use dyno_agent::unpack::{Limits, unpack};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let tgz = dir.path().join("slug.tgz");
    // ~200 MB in 5 000 files: source-like text (compresses ~4:1) with some incompressible data.
    let words: Vec<&str> = "fn let mut self return match impl pub struct use crate Some None Ok Err if else for \
            while loop break continue async await def class end require module import from export const var \
            function this that value index count data buffer result error"
        .split_whitespace()
        .collect();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut b = tar::Builder::new(GzEncoder::new(
        io::BufWriter::new(fs::File::create(&tgz).unwrap()),
        Compression::default(),
    ));
    let mut total = 0u64;
    for i in 0..5_000u32 {
        let size = 40_000 + (next() % 1_000) as usize;
        let mut data = Vec::with_capacity(size + 16);
        if i % 10 == 0 {
            while data.len() < size {
                data.extend_from_slice(&next().to_le_bytes());
            }
        } else {
            while data.len() < size {
                data.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
                data.push(if next() % 8 == 0 { b'\n' } else { b' ' });
            }
        }
        total += data.len() as u64;
        let mut h = tar::Header::new_gnu();
        h.set_mode(if i % 7 == 0 { 0o755 } else { 0o644 });
        h.set_size(data.len() as u64);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, format!("./app/d{}/s{}/f{i}.txt", i % 50, i % 7), &data[..])
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap().into_inner().unwrap();
    let compressed = fs::metadata(&tgz).unwrap().len();
    eprintln!("slug: {total} bytes in 5000 files, {compressed} compressed");
    // Every run extracts into a directory of its own, and none is removed before all are timed: ext4 without a
    // journal (as here) looks at every inode freed in the last one to five minutes, one by one, each time it
    // allocates one, so runs right after a large removal (this bench's own, run again, or anything else on the
    // machine) spend most of their time creating files, both tools alike. Each run waits for file creation to be
    // fast first (see `wait_for_fast_creates`). The two are interleaved (ours, tar, tar, ours, ours, tar) so that
    // neither is favoured by what the machine does meanwhile.
    let mut n = 0;
    let mut waited = Duration::ZERO;
    let mut run = |f: &dyn Fn(&Path)| {
        waited += wait_for_fast_creates(dir.path(), n, WAIT_MAX.saturating_sub(waited));
        let out = dir.path().join(format!("out{n}"));
        n += 1;
        let t = std::time::Instant::now();
        f(&out);
        (t.elapsed(), out)
    };
    let ours = |out: &Path| {
        unpack(fs::File::open(&tgz).unwrap(), out, None, &Limits::default()).unwrap();
    };
    let theirs = |out: &Path| {
        fs::create_dir(out).unwrap();
        let ok = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(out)
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let (mut ours_times, mut tar_times, mut outs) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        let pair = if round % 2 == 0 {
            let a = run(&ours);
            (a, run(&theirs))
        } else {
            let b = run(&theirs);
            (run(&ours), b)
        };
        ours_times.push(pair.0.0);
        tar_times.push(pair.1.0);
        outs.push((pair.0.1, pair.1.1));
    }
    // Both wrote the same files.
    for (a, b) in &outs {
        assert_eq!(tree(&a.join("app")), tree(&b.join("app")));
    }
    for (a, b) in outs {
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }
    let ours = *ours_times.iter().min().unwrap();
    let theirs = *tar_times.iter().min().unwrap();
    let mbs = |d: Duration| total as f64 / 1e6 / d.as_secs_f64();
    let compressed_bytes = fs::read(&tgz).unwrap();
    let best = |f: &dyn Fn()| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                f();
                t.elapsed()
            })
            .min()
            .unwrap()
    };
    let hash_only = best(&|| {
        Sha256::digest(&compressed_bytes);
    });
    let gunzip_only = best(&|| {
        io::copy(&mut MultiGzDecoder::new(&compressed_bytes[..]), &mut io::sink()).unwrap();
    });
    eprintln!("parts: sha256 of the compressed bytes {hash_only:?}; gunzip to nowhere {gunzip_only:?}");
    eprintln!("runs: unpack {ours_times:?}; tar -xzf {tar_times:?} (waited {waited:.0?} for fast file creation)");
    eprintln!(
        "unpack: {ours:?} ({:.0} MB/s); tar -xzf: {theirs:?} ({:.0} MB/s); unpack throughput / tar's = {:.2}x",
        mbs(ours),
        mbs(theirs),
        theirs.as_secs_f64() / ours.as_secs_f64()
    );
}

/// Longest wait for fast file creation, over all runs.
const WAIT_MAX: Duration = Duration::from_secs(300);

/// Waits (at most `max`) until creating an empty file in `dir` takes less than 25 µs (about 3× what it takes on
/// a quiet file system here), probing with 200 files at a time that stay until the end (removing them would add
/// to what is being waited out). Returns how long it waited.
fn wait_for_fast_creates(dir: &Path, run: usize, max: Duration) -> Duration {
    let start = std::time::Instant::now();
    for probe in 0.. {
        let probe_dir = dir.join(format!("probe{run}-{probe}"));
        fs::create_dir(&probe_dir).unwrap();
        let t = std::time::Instant::now();
        for i in 0..200 {
            fs::File::create(probe_dir.join(format!("f{i}"))).unwrap();
        }
        let per_file = t.elapsed() / 200;
        if per_file < Duration::from_micros(25) {
            break;
        }
        if start.elapsed() >= max {
            eprintln!("run {run}: file creation still takes {per_file:?} per file; timing anyway");
            break;
        }
        std::thread::sleep(Duration::from_secs(5).min(max));
    }
    start.elapsed()
}

/// Relative path, mode and size of every file under `root` (modes of files only: tar applies the umask to
/// directories it creates implicitly).
fn tree(root: &Path) -> Vec<(std::path::PathBuf, u32, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.is_dir() {
                todo.push(e.path());
            } else {
                let rel = e.path().strip_prefix(root).unwrap().to_owned();
                out.push((rel, m.mode(), m.len()));
            }
        }
    }
    out.sort();
    out
}
