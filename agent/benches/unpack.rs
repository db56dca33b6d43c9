//! Unpack throughput of the hardened slug unpacker against GNU `tar -xzf` of
//! the same file, side by side (best of 3 each): a slug of ~200 MB in 5 000
//! files. `cargo bench -p dyno-agent --bench unpack`

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
    let best = |f: &mut dyn FnMut(&Path)| {
        (0..3)
            .map(|n| {
                let out = dir.path().join(format!("out{n}"));
                let t = std::time::Instant::now();
                f(&out);
                let elapsed = t.elapsed();
                fs::remove_dir_all(&out).unwrap();
                elapsed
            })
            .min()
            .unwrap()
    };
    let ours = best(&mut |out| {
        unpack(fs::File::open(&tgz).unwrap(), out, None, &Limits::default()).unwrap();
    });
    let theirs = best(&mut |out| {
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
    });
    let mbs = |d: Duration| total as f64 / 1e6 / d.as_secs_f64();
    let compressed_bytes = fs::read(&tgz).unwrap();
    let hash_only = best(&mut |out| {
        fs::create_dir(out).unwrap();
        Sha256::digest(&compressed_bytes);
    });
    let gunzip_only = best(&mut |out| {
        fs::create_dir(out).unwrap();
        io::copy(&mut MultiGzDecoder::new(&compressed_bytes[..]), &mut io::sink()).unwrap();
    });
    eprintln!("parts: sha256 of the compressed bytes {hash_only:?}; gunzip to nowhere {gunzip_only:?}");
    eprintln!(
        "unpack: {ours:?} ({:.0} MB/s); tar -xzf: {theirs:?} ({:.0} MB/s); ratio ours/tar = {:.2}",
        mbs(ours),
        mbs(theirs),
        ours.as_secs_f64() / theirs.as_secs_f64()
    );
}
