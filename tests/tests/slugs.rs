//! Tarball slugs through the real API (`StartDyno` via `dynoctl start`).
//!
//! Positive control: a real slug (relative and absolute symlinks, nested
//! directories, executables, a hardlink, a Procfile, `.profile` and
//! `.profile.d`) unpacks into the cache with setuid/setgid/sticky bits
//! stripped and root as owner, and its web dyno serves HTTP on `$PORT`.
//!
//! The hostile battery: archives generated here, in code (streamed when
//! large), each refused with INVALID_ARGUMENT (dynoctl exit code 2) and a
//! message naming the cause and the entry. After each one: a canary tree
//! next to the state directory is unchanged (mode, owner, size, links, inode,
//! mtime, ctime, content), and so are `/etc/passwd` and the modes of `/`,
//! `/etc`, `/tmp` and the state directory; no `.staging-*` is left in
//! `<state>/slugs`; the cache has no entry for the refused digest; no dyno
//! was made; the agent still serves. After the battery a good slug starts
//! and its web dyno serves. Every case runs even when one fails; the failure
//! lists them all.
//!
//! Apart: the gzip bomb (8 MB on disk, 8 GiB inflated, stopped at the 4 GiB
//! limit; the agent answers `ps` while it works on it); a path at the length
//! limit; slug sources that are not regular files; a Procfile that is a
//! symlink out of the slug. (The unpacker's unit-level battery is in
//! `agent/src/unpack.rs`.)

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use dyno_tests::tarball::{MTIME, Tar, block, tgz, tgz_file};
use dyno_tests::*;
use flate2::Compression;
use flate2::write::GzEncoder;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// What the gzip bomb inflates to: twice the unpacked limit.
const BOMB: u64 = 2 * UNPACKED_LIMIT;
/// The agent's default limits (`agent/src/unpack.rs`; not configurable yet).
const UNPACKED_LIMIT: u64 = 4 * GIB;
const ENTRIES_LIMIT: u64 = 200_000;
const DEPTH_LIMIT: usize = 64;
const PATH_LIMIT: usize = 4096;

// ---- archives (built with the kit's `tarball::Tar`) -----------------------

/// One gzip member of `n` zeros.
fn zeros_member(n: u64) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::best());
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..n / MIB {
        enc.write_all(&zeros).expect("gzip");
    }
    enc.finish().expect("gzip")
}

/// Deterministic bytes that do not compress (so that damage lands in data).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The entries of a small good slug: what damaged archives are made from.
fn small_good(t: &mut Tar<impl Write>) {
    t.dir("app/")
        .file("app/Procfile", b"worker: exec sleep 600\n")
        .file("app/data", &noise(256 * 1024));
}

/// A small good slug, gzipped.
fn small_good_tgz() -> Vec<u8> {
    tgz(|t| {
        small_good(t);
        t.end();
    })
}

/// The real slug of the positive controls: a web dyno from its Procfile,
/// serving `public/` with busybox httpd on `$PORT`.
fn real_slug(t: &mut Tar<impl Write>) {
    t.dir("./app/")
        .file(
            "./app/Procfile",
            b"# the web process\nweb: serve\nworker: exec sleep 600\n",
        )
        .file("./app/.profile", b"export GREETING=\"hello from .profile\"\n")
        .dir("./app/.profile.d/")
        .file("./app/.profile.d/10-flavor.sh", b"export FLAVOR=profile.d\n")
        .dir("./app/bin/")
        .file_mode(
            "./app/bin/serve",
            0o755,
            b"#!/bin/sh\necho \"greeting: $GREETING, flavor: $FLAVOR, port: $PORT\"\n\
              exec busybox httpd -f -p \"$PORT\" -h /app/public\n",
        )
        .hardlink("./app/bin/serve-too", "./app/bin/serve")
        .file_mode("./app/bin/suid", 0o4755, b"#!/bin/sh\nid -u\n")
        .file_mode("./app/bin/sgid", 0o2750, b"#!/bin/sh\nid -g\n")
        .file_mode("./app/bin/both", 0o6777, b"#!/bin/sh\nid\n")
        .symlink("./app/bin/bb", "/bin/busybox")
        .dir_mode("./app/sticky/", 0o1777)
        .dir("./app/public/")
        .file("./app/public/index.html", b"index of the real slug\n")
        .dir("./app/public/nested/")
        .dir("./app/public/nested/deep/")
        .dir("./app/public/nested/deep/er/")
        .file("./app/public/nested/deep/er/page.html", b"the deep page\n")
        .symlink("./app/public/rel.html", "nested/deep/er/page.html")
        .symlink("./app/public/abs.html", "/app/public/nested/deep/er/page.html")
        .symlink("./app/public/docs", "../docs")
        .dir("./app/docs/")
        .file("./app/docs/readme.html", b"the docs\n")
        .end();
}

// ---- what must not change ---------------------------------------------------

/// One file system object, as compared before and after each case.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Meta {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    size: u64,
    nlink: u64,
    ino: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    /// A file's content or a symlink's target.
    content: Vec<u8>,
}

fn meta(path: &Path) -> Option<Meta> {
    let m = fs::symlink_metadata(path).ok()?;
    let ft = m.file_type();
    let (kind, content) = if ft.is_symlink() {
        (
            "symlink",
            fs::read_link(path).ok()?.into_os_string().into_encoded_bytes(),
        )
    } else if ft.is_dir() {
        ("dir", Vec::new())
    } else if ft.is_file() {
        ("file", fs::read(path).ok()?)
    } else {
        ("other", Vec::new())
    };
    Some(Meta {
        kind,
        mode: m.mode(),
        owner: (m.uid(), m.gid()),
        size: m.size(),
        nlink: m.nlink(),
        ino: m.ino(),
        mtime: (m.mtime(), m.mtime_nsec()),
        ctime: (m.ctime(), m.ctime_nsec()),
        content,
    })
}

/// Every object under `root` (itself included), by path.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Meta> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(p) = todo.pop() {
        let Some(m) = meta(&p) else { continue };
        if m.kind == "dir" {
            todo.extend(fs::read_dir(&p).expect("read_dir").flatten().map(|e| e.path()));
        }
        out.insert(p, m);
    }
    out
}

/// A directory's type, mode and owner.
type DirMeta = Option<(&'static str, u32, (u32, u32))>;

/// What may legitimately change about a shared directory (`/tmp`, the state
/// directory) is left out: only its type, mode and owner are compared.
fn dir_meta(path: &Path) -> DirMeta {
    meta(path).map(|m| (m.kind, m.mode, m.owner))
}

/// `/etc/passwd`: everything a hardlink, chmod, chown or write would change.
fn passwd_meta() -> Meta {
    let mut m = meta(Path::new("/etc/passwd")).expect("/etc/passwd");
    m.ctime = (0, 0);
    m
}

fn set_mtime(path: &Path, secs: u64) {
    File::open(path)
        .expect("open")
        .set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
        .expect("set mtime");
}

/// A canary tree: a file, a directory with a file and a subdirectory, a
/// symlink; unusual modes and an old mtime, so that any touch shows.
fn make_canary(root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    fs::create_dir_all(root.join("dir/sub")).expect("canary dirs");
    fs::write(root.join("file"), "canary\n").expect("canary file");
    fs::write(root.join("dir/inner"), "inner\n").expect("canary inner");
    std::os::unix::fs::symlink("file", root.join("link")).expect("canary link");
    mode(&root.join("file"), 0o640);
    mode(&root.join("dir/inner"), 0o600);
    mode(&root.join("dir/sub"), 0o700);
    mode(&root.join("dir"), 0o750);
    mode(root, 0o711);
    for p in ["file", "dir/inner", "dir/sub", "dir", ""] {
        set_mtime(&root.join(p), 1_000_000_000);
    }
}

// ---- the battery ------------------------------------------------------------

/// How a case writes its archive.
type Build = Box<dyn Fn(&Path)>;

/// One hostile archive and what its refusal must say.
struct Case {
    name: &'static str,
    build: Build,
    /// Given to `dynoctl start --sha256`; `{digest}` is replaced by the archive's sha256.
    sha256: Option<String>,
    /// Fragments of the message; `{digest}` is replaced by the archive's sha256.
    want: Vec<String>,
}

fn strings(want: &[&str]) -> Vec<String> {
    want.iter().map(|s| s.to_string()).collect()
}

/// A gzipped archive built in memory; the end-of-archive marker is added.
fn case(name: &'static str, want: &[&str], build: impl Fn(&mut Tar<GzEncoder<Vec<u8>>>) + 'static) -> Case {
    Case {
        name,
        build: Box::new(move |path: &Path| {
            fs::write(
                path,
                tgz(|t| {
                    build(t);
                    t.end();
                }),
            )
            .expect("write archive")
        }),
        sha256: None,
        want: strings(want),
    }
}

/// An archive given as raw bytes.
fn bytes_case(name: &'static str, want: &[&str], build: impl Fn() -> Vec<u8> + 'static) -> Case {
    Case {
        name,
        build: Box::new(move |path: &Path| fs::write(path, build()).expect("write archive")),
        sha256: None,
        want: strings(want),
    }
}

/// An archive streamed to its file.
fn file_case(name: &'static str, want: &[&str], build: impl Fn(&Path) + 'static) -> Case {
    Case {
        name,
        build: Box::new(build),
        sha256: None,
        want: strings(want),
    }
}

/// One agent, a canary tree next to its state directory, and what must not change.
struct Battery {
    a: TestAgent,
    /// The canary tree, at `<tmp>/canary`; the state directory is `<tmp>/state`.
    canary: PathBuf,
    archives: PathBuf,
    canary_before: BTreeMap<PathBuf, Meta>,
    passwd_before: Meta,
    dirs_before: Vec<(PathBuf, DirMeta)>,
}

impl Battery {
    fn new() -> Battery {
        let a = TestAgent::start("");
        let canary = a.dir.path().join("canary");
        make_canary(&canary);
        let archives = a.dir.path().join("archives");
        fs::create_dir(&archives).expect("archives dir");
        let dirs: Vec<PathBuf> = ["/", "/etc", "/tmp"]
            .iter()
            .map(PathBuf::from)
            .chain([a.dir.path().to_owned(), a.state.clone()])
            .collect();
        Battery {
            canary_before: snapshot(&canary),
            passwd_before: passwd_meta(),
            dirs_before: dirs.into_iter().map(|d| (d.clone(), dir_meta(&d))).collect(),
            canary,
            archives,
            a,
        }
    }

    /// The canary's absolute path.
    fn canary_abs(&self) -> String {
        show(&self.canary)
    }

    fn slugs(&self) -> PathBuf {
        self.a.state.join("slugs")
    }

    fn cache_entries(&self) -> BTreeSet<String> {
        fs::read_dir(self.slugs())
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Builds the case's archive; returns its path, digest and how long it took.
    fn build(&self, case: &Case) -> (PathBuf, String, Duration) {
        let path = self.archives.join(format!("{}.tgz", case.name));
        let started = Instant::now();
        (case.build)(&path);
        let made = started.elapsed();
        let digest = dyno_agent::slug::sha256_file(&path).expect("sha256 of the archive");
        (path, digest, made)
    }

    /// `dynoctl start` of dyno `hostile/<dyno>` (one per case, so that a
    /// wrongly accepted case shows only in its own report).
    fn start_args(&self, case: &Case, dyno: &str, path: &Path, digest: &str) -> Vec<String> {
        let mut args = strings(&["start", "--app", "hostile", "--name", dyno]);
        args.extend(["--slug".to_owned(), show(path)]);
        if let Some(sha) = &case.sha256 {
            args.extend(["--sha256".to_owned(), sha.replace("{digest}", digest)]);
        }
        args.extend(strings(&["--command", "exec sleep 600"]));
        args
    }

    /// Runs one case; returns what went wrong (empty when it was refused as it must be).
    fn refuse(&self, case: &Case, dyno: &str) -> Vec<String> {
        let (path, digest, made) = self.build(case);
        let cache_before = self.cache_entries();
        let started = Instant::now();
        let args = self.start_args(case, dyno, &path, &digest);
        let out = self.a.ctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let took = started.elapsed();
        eprintln!(
            "{:<40} {:>10} bytes, made in {:>9.3?}, answered in {:>9.3?}",
            case.name,
            fs::metadata(&path).map(|m| m.len()).unwrap_or(0),
            made,
            took
        );
        self.check(case, dyno, &digest, &cache_before, &out)
    }

    /// Everything that must hold after a refusal.
    fn check(
        &self,
        case: &Case,
        dyno: &str,
        digest: &str,
        cache_before: &BTreeSet<String>,
        out: &Output,
    ) -> Vec<String> {
        let mut problems = Vec::new();
        let mut problem = |what: String| problems.push(format!("{}: {what}", case.name));
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(2) || !err.contains("(invalid argument)") {
            problem(format!(
                "want INVALID_ARGUMENT (exit code 2), got {:?}: {}",
                out.status.code(),
                err.trim()
            ));
        }
        for want in &case.want {
            let want = want.replace("{digest}", digest);
            if !err.contains(&want) {
                problem(format!("the message does not say {want:?}: {}", err.trim()));
            }
        }
        let canary = snapshot(&self.canary);
        if canary != self.canary_before {
            for (p, m) in &canary {
                if self.canary_before.get(p) != Some(m) {
                    problem(format!(
                        "canary {} changed: {:?} -> {m:?}",
                        p.display(),
                        self.canary_before.get(p)
                    ));
                }
            }
            for p in self.canary_before.keys().filter(|p| !canary.contains_key(*p)) {
                problem(format!("canary {} is gone", p.display()));
            }
        }
        if passwd_meta() != self.passwd_before {
            problem(format!(
                "/etc/passwd changed: {:?} -> {:?}",
                self.passwd_before,
                passwd_meta()
            ));
        }
        for (d, before) in &self.dirs_before {
            let now = dir_meta(d);
            if &now != before {
                problem(format!("{} changed: {before:?} -> {now:?}", d.display()));
            }
        }
        let cache = self.cache_entries();
        let staging: Vec<&String> = cache.iter().filter(|n| n.starts_with(".staging")).collect();
        if !staging.is_empty() {
            problem(format!("staging left in {}: {staging:?}", self.slugs().display()));
        }
        if self.slugs().join(digest).exists() {
            problem(format!("the cache has an entry for the refused digest {digest}"));
        }
        if &cache != cache_before {
            problem(format!("the cache changed: {cache_before:?} -> {cache:?}"));
        }
        if !alive(self.a.agent_pid()) {
            problem("the agent is gone".to_owned());
        }
        let ps = self.a.ctl(&["--json", "ps"]);
        match serde_json::from_slice::<Vec<serde_json::Value>>(&ps.stdout) {
            Ok(dynos) if ps.status.success() => {
                if let Some(d) = dynos.iter().find(|d| d["app"] == "hostile" && d["name"] == dyno) {
                    problem(format!("a dyno was made for a refused slug: {d}"));
                }
            }
            _ => problem(format!(
                "dynoctl ps failed after the case: {}",
                String::from_utf8_lossy(&ps.stderr)
            )),
        }
        problems
    }

    /// Runs every case, then shows that a good slug still starts and serves;
    /// panics listing every problem of every case.
    fn run(&self, cases: Vec<Case>) {
        let started = Instant::now();
        let n = cases.len();
        let mut names = BTreeSet::new();
        let mut problems = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            assert!(names.insert(case.name), "two cases named {}", case.name);
            problems.extend(self.refuse(case, &format!("worker.{}", i + 1)));
        }
        eprintln!("{n} hostile cases in {:.3?}", started.elapsed());
        self.still_serves();
        assert!(
            problems.is_empty(),
            "{} problem(s) in {n} hostile cases:\n  {}",
            problems.len(),
            problems.join("\n  "),
        );
    }

    /// After refusals: a good slug starts, and its web dyno serves.
    fn still_serves(&self) {
        serves_the_real_slug(&self.a, &self.archives.join("real-after.tgz"), "web.1");
    }
}

/// HTTP/1.0 GET; the whole response.
/// Writes the real slug, starts its web dyno from the Procfile, checks it
/// serves every page (through both kinds of symlinks) and that `.profile` and
/// `.profile.d` ran; returns the slug's path.
fn serves_the_real_slug(a: &TestAgent, path: &Path, name: &str) -> PathBuf {
    tgz_file(path, Compression::default(), real_slug);
    a.ctl_ok(&["start", "--app", "shop", "--name", name, "--slug", &show(path)]);
    let d = a.wait_state("shop", name, "up");
    let port = d["port"].as_u64().expect("a web dyno has a port");
    for (page, body) in [
        ("/index.html", "index of the real slug"),
        ("/rel.html", "the deep page"),
        ("/abs.html", "the deep page"),
        ("/nested/deep/er/page.html", "the deep page"),
        ("/docs/readme.html", "the docs"),
    ] {
        let response = http_get(port, page);
        assert!(
            response.starts_with("HTTP/1.") && response.contains(" 200 ") && response.contains(body),
            "GET {page}: {response}"
        );
    }
    let want = format!("greeting: hello from .profile, flavor: profile.d, port: {port}");
    wait_for("the greeting of .profile", || {
        texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", name]))
            .contains(&want)
            .then_some(())
    });
    path.to_owned()
}

// ---- the tests --------------------------------------------------------------

#[test]
fn a_real_slug_serves_http_and_is_cached_without_setuid_bits_or_owners() {
    let a = TestAgent::start("");
    let slug = serves_the_real_slug(&a, &a.dir.path().join("real.tgz"), "web.1");
    let digest = dyno_agent::slug::sha256_file(&slug).expect("sha256");
    let app = a.state.join("slugs").join(&digest).join("app");

    // Modes: setuid, setgid and sticky stripped, the rest kept.
    let mode = |p: &str| {
        fs::symlink_metadata(app.join(p))
            .unwrap_or_else(|e| panic!("{p} in the cache: {e}"))
            .mode()
            & 0o7777
    };
    assert_eq!(mode("bin/suid"), 0o755, "setuid stripped");
    assert_eq!(mode("bin/sgid"), 0o750, "setgid stripped");
    assert_eq!(mode("bin/both"), 0o755, "setuid, setgid and group/other write stripped");
    assert_eq!(
        mode("sticky"),
        0o755,
        "sticky and world write stripped from a directory"
    );
    assert_eq!(mode("bin/serve"), 0o755);
    assert_eq!(mode("Procfile"), 0o644);
    // The hardlink is one file with its target; symlinks are kept verbatim.
    let serve = fs::metadata(app.join("bin/serve")).expect("serve");
    assert_eq!(
        fs::metadata(app.join("bin/serve-too")).expect("serve-too").ino(),
        serve.ino()
    );
    assert_eq!(serve.mtime(), MTIME as i64, "the archive's mtime");
    for (link, target) in [
        ("public/rel.html", "nested/deep/er/page.html"),
        ("public/abs.html", "/app/public/nested/deep/er/page.html"),
        ("public/docs", "../docs"),
        ("bin/bb", "/bin/busybox"),
    ] {
        assert_eq!(fs::read_link(app.join(link)).expect(link), Path::new(target));
    }
    // Nothing in the cache is owned by the archive's uid or has a setuid/setgid bit.
    let tree = snapshot(&app);
    assert!(tree.len() > 20, "{tree:?}");
    for (p, m) in &tree {
        assert_eq!(
            m.owner,
            (0, 0),
            "{} is owned by root, not the archive's owner",
            p.display()
        );
        assert_eq!(m.mode & 0o7000, 0, "{} has no setuid/setgid/sticky bit", p.display());
    }

    // The same slug again: the cache is used as is, nothing staged.
    a.ctl_ok(&["start", "--app", "shop", "--name", "worker.1", "--slug", &show(&slug)]);
    a.wait_state("shop", "worker.1", "up");
    let cache = || -> BTreeSet<String> {
        fs::read_dir(a.state.join("slugs"))
            .expect("slugs")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(cache(), BTreeSet::from([digest.clone()]), "one cache entry, no staging");
    assert_eq!(snapshot(&app), tree, "the cached slug is unchanged by its dynos");

    // A new slug started by three dynos at once: unpacked once (or more, but
    // renamed into place once), no staging left.
    let small = a.dir.path().join("small.tgz");
    fs::write(&small, small_good_tgz()).expect("small slug");
    let small_digest = dyno_agent::slug::sha256_file(&small).expect("sha256");
    let starts: Vec<_> = (2..=4)
        .map(|n| {
            std::process::Command::new(ctl_bin())
                .arg("--socket")
                .arg(&a.socket)
                .args(["start", "--app", "shop", "--name", &format!("worker.{n}"), "--slug"])
                .arg(&small)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dynoctl start")
        })
        .collect();
    for start in starts {
        let out = start.wait_with_output().expect("dynoctl start");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for n in 2..=4 {
        a.wait_state("shop", &format!("worker.{n}"), "up");
    }
    assert_eq!(
        cache(),
        BTreeSet::from([digest, small_digest]),
        "two cache entries, no staging"
    );
}

/// A path within every documented limit (4096 bytes, 22 components, none over
/// 255 bytes) is unpacked, or refused as the slug's fault, naming the entry;
/// never an internal error. (Joined to the agent's staging directory, it is
/// longer than PATH_MAX.)
#[test]
fn a_path_at_the_length_limit_is_unpacked_or_refused_as_invalid() {
    let b = Battery::new();
    let name = format!("app/{}{}", format!("{}/", "p".repeat(200)).repeat(20), "f".repeat(72));
    assert_eq!(name.len(), PATH_LIMIT);
    let long = case("path-at-the-length-limit", &["`app/pppp"], move |t| {
        t.dir("app/").file(&name, b"at the limit");
    });
    let (path, digest, _) = b.build(&long);
    let cache_before = b.cache_entries();
    let args = b.start_args(&long, "worker.1", &path, &digest);
    let out = b.a.ctl(&args.iter().map(String::as_str).collect::<Vec<_>>());
    if out.status.success() {
        b.a.wait_state("hostile", "worker.1", "up");
        let cache = b.cache_entries();
        assert!(cache.contains(&digest), "{cache:?}");
        assert!(!cache.iter().any(|n| n.starts_with(".staging")), "{cache:?}");
    } else {
        let problems = b.check(&long, "worker.1", &digest, &cache_before, &out);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
    }
}

#[test]
fn hostile_slugs_are_refused_and_leave_nothing_behind() {
    let b = Battery::new();
    let c = b.canary_abs();
    // From `<state>/slugs/.staging-*/app/`, four levels up is the directory holding the canary.
    let up = "../../../..";
    let wrong = "0123456789abcdef".repeat(4);
    let cases = vec![
        // Absolute paths.
        case(
            "absolute-file-path",
            &[&format!("hostile slug entry `{c}/pwned`"), "absolute path"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/").file(&format!("{c}/pwned"), b"x");
                }
            },
        ),
        case(
            "absolute-directory-path",
            &[&format!("hostile slug entry `{c}/dir/`"), "absolute path"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/").dir_mode(&format!("{c}/dir/"), 0o777);
                }
            },
        ),
        case(
            "absolute-pax-path",
            &[&format!("hostile slug entry `{c}/pwned`"), "absolute path"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/")
                        .pax(&[("path", format!("{c}/pwned").as_bytes())])
                        .file("app/innocent", b"x");
                }
            },
        ),
        // `..` components.
        case(
            "dotdot-escape",
            &[
                &format!("hostile slug entry `./app/{up}/canary/pwned`"),
                "`..` component",
            ],
            move |t| {
                t.dir("./app/").file(&format!("./app/{up}/canary/pwned"), b"x");
            },
        ),
        case(
            "dotdot-staying-inside",
            &["hostile slug entry `app/bin/../Procfile`", "`..` component"],
            |t| {
                t.dir("app/").dir("app/bin/").file("app/bin/../Procfile", b"web: x\n");
            },
        ),
        case(
            "dotdot-outside-app",
            &["hostile slug entry `../canary/pwned`", "`..` component"],
            |t| {
                t.dir("app/").file("../canary/pwned", b"x");
            },
        ),
        case(
            "dotdot-in-a-gnu-long-name",
            &["hostile slug entry `app/aaaa", "`..` component"],
            move |t| {
                let name = format!("app/{}/../../{up}/canary/pwned", "a".repeat(120));
                t.dir("app/").file(&name, b"x");
            },
        ),
        // Hardlinks to anything but an earlier regular file of the archive.
        case(
            "hardlink-to-etc-passwd",
            &[
                "hostile slug entry `app/passwd`",
                "absolute hardlink target `/etc/passwd`",
            ],
            |t| {
                t.dir("app/").hardlink("app/passwd", "/etc/passwd");
            },
        ),
        case(
            "hardlink-dotdot-out",
            &["hostile slug entry `app/h`", "`..` component in its hardlink target"],
            move |t| {
                t.dir("app/").hardlink("app/h", &format!("app/{up}/canary/file"));
            },
        ),
        case(
            "hardlink-to-a-later-file",
            &[
                "hostile slug entry `app/h`",
                "`app/later` is not an earlier regular file",
            ],
            |t| {
                t.dir("app/").hardlink("app/h", "app/later").file("app/later", b"x");
            },
        ),
        case(
            "hardlink-to-a-symlink",
            &["hostile slug entry `app/h`", "`app/s` is not an earlier regular file"],
            |t| {
                t.dir("app/").symlink("app/s", "/etc/passwd").hardlink("app/h", "app/s");
            },
        ),
        case(
            "hardlink-to-a-directory",
            &["hostile slug entry `app/h`", "`app/d` is not an earlier regular file"],
            |t| {
                t.dir("app/").dir("app/d/").hardlink("app/h", "app/d");
            },
        ),
        case(
            "hardlink-to-a-file-outside-app",
            &[
                "hostile slug entry `app/h`",
                "`etc/shadow` is not an earlier regular file",
            ],
            |t| {
                t.dir("app/").file("etc/shadow", b"x").hardlink("app/h", "etc/shadow");
            },
        ),
        case(
            "hardlink-relative-host-path",
            &[
                "hostile slug entry `app/h`",
                "`etc/passwd` is not an earlier regular file",
            ],
            |t| {
                t.dir("app/").hardlink("app/h", "etc/passwd");
            },
        ),
        case(
            "hardlink-through-a-symlink",
            &[
                "hostile slug entry `app/h`",
                "`app/s/passwd` is not an earlier regular file",
            ],
            |t| {
                t.dir("app/").symlink("app/s", "/etc").hardlink("app/h", "app/s/passwd");
            },
        ),
        // Entries that would be written through a symlink.
        case(
            "symlink-to-root-then-a-file-through-it",
            &[
                &format!("hostile slug entry `app/root{c}/pwned`"),
                "through the symlink `app/root`",
            ],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/")
                        .symlink("app/root", "/")
                        .file(&format!("app/root{c}/pwned"), b"x");
                }
            },
        ),
        case(
            "symlink-up-then-a-directory-entry-of-its-name",
            &["hostile slug entry `app/x/`", "`app/x` already exists as a symlink"],
            |t| {
                t.dir("app/").symlink("app/x", "../../..").dir_mode("app/x/", 0o777);
            },
        ),
        case(
            "symlink-to-the-canary-then-a-directory-entry-of-its-name",
            &["hostile slug entry `app/x`", "`app/x` already exists as a symlink"],
            move |t| {
                t.dir("app/")
                    .symlink("app/x", &format!("{up}/canary/dir"))
                    .dir_mode("app/x", 0o777);
            },
        ),
        case(
            "symlink-up-then-a-directory-below-it",
            &["hostile slug entry `app/x/new/`", "through the symlink `app/x`"],
            move |t| {
                t.dir("app/")
                    .symlink("app/x", &format!("{up}/canary"))
                    .dir("app/x/new/");
            },
        ),
        case(
            "file-then-symlink-of-its-name-then-file-again",
            &["hostile slug entry `app/f`", "`app/f` already exists as a file"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/")
                        .file("app/f", b"first")
                        .symlink("app/f", &format!("{c}/file"))
                        .file("app/f", b"pwned");
                }
            },
        ),
        case(
            "symlink-then-a-file-of-its-name",
            &["hostile slug entry `app/f`", "`app/f` already exists as a symlink"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/")
                        .symlink("app/f", &format!("{c}/file"))
                        .file("app/f", b"pwned");
                }
            },
        ),
        case(
            "chain-of-symlinks-then-a-file-through-it",
            &["hostile slug entry `app/a/pwned`", "through the symlink `app/a`"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/")
                        .symlink("app/a", "b")
                        .symlink("app/b", "c")
                        .symlink("app/c", &format!("{c}/dir"))
                        .file("app/a/pwned", b"x");
                }
            },
        ),
        case(
            "relative-chain-then-a-file-through-it",
            &["hostile slug entry `app/a/dir/inner`", "through the symlink `app/a`"],
            move |t| {
                t.dir("app/")
                    .symlink("app/a", "b")
                    .symlink("app/b", &format!("{up}/canary"))
                    .file("app/a/dir/inner", b"pwned");
            },
        ),
        case(
            "hardlink-named-through-a-symlink",
            &["hostile slug entry `app/s/h`", "through the symlink `app/s`"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/")
                        .file("app/f", b"x")
                        .symlink("app/s", &format!("{c}/dir"))
                        .hardlink("app/s/h", "app/f");
                }
            },
        ),
        case(
            "symlink-named-through-a-symlink",
            &["hostile slug entry `app/s/evil`", "through the symlink `app/s`"],
            {
                let c = c.clone();
                move |t| {
                    t.dir("app/").symlink("app/s", &c).symlink("app/s/evil", "/");
                }
            },
        ),
        case(
            "app-is-a-symlink",
            &["hostile slug entry `app`", "`app` must be a directory"],
            {
                let c = c.clone();
                move |t| {
                    t.symlink("app", &c).file("app/pwned", b"x");
                }
            },
        ),
        Case {
            sha256: Some("{digest}".to_owned()),
            ..case(
                "through-a-symlink-with-its-own-sha256",
                &["hostile slug entry `app/l/pwned`", "through the symlink `app/l`"],
                move |t| {
                    t.dir("app/")
                        .symlink("app/l", &format!("{up}/canary/dir"))
                        .file("app/l/pwned", b"x");
                },
            )
        },
        // Device nodes and FIFOs.
        case(
            "character-device",
            &["hostile slug entry `app/null`", "character device nodes are refused"],
            |t| {
                t.dir("app/").node(b'3', "app/null", 1, 3);
            },
        ),
        case(
            "block-device",
            &["hostile slug entry `app/disk`", "block device nodes are refused"],
            |t| {
                t.dir("app/").node(b'4', "app/disk", 8, 0);
            },
        ),
        case("fifo", &["hostile slug entry `app/fifo`", "FIFOs are refused"], |t| {
            t.dir("app/").node(b'6', "app/fifo", 0, 0);
        }),
        case(
            "device-outside-app",
            &["hostile slug entry `dev/kmsg`", "character device nodes are refused"],
            |t| {
                t.dir("app/").node(b'3', "dev/kmsg", 1, 11);
            },
        ),
        case(
            "control-characters-in-a-name-are-escaped",
            &[
                "hostile slug entry `app/\\u{1b}[2J\\nevil`",
                "character device nodes are refused",
            ],
            |t| {
                t.dir("app/").node(b'3', "app/\x1b[2J\nevil", 1, 3);
            },
        ),
        // Other entries the unpacker refuses.
        case(
            "duplicate-file",
            &["hostile slug entry `app/f`", "`app/f` already exists as a file"],
            |t| {
                t.dir("app/").file("app/f", b"one").file("app/f", b"two");
            },
        ),
        case(
            "nul-byte-in-a-pax-path",
            &["hostile slug entry `app/a\\u{0}", "NUL byte in its path"],
            |t| {
                t.dir("app/")
                    .pax(&[("path", b"app/a\0/../../x")])
                    .file("app/innocent", b"x");
            },
        ),
        case(
            "gnu-sparse-file",
            &["hostile slug entry `app/sparse`", "sparse files are not supported"],
            |t| {
                t.dir("app/").entry(b'S', "app/sparse", "", 0o644, b"");
            },
        ),
        case(
            "unknown-entry-type",
            &["hostile slug entry `app/what`", "unsupported entry type 'Z'"],
            |t| {
                t.dir("app/").entry(b'Z', "app/what", "", 0o644, b"");
            },
        ),
        case(
            "pax-size-disagrees-with-the-header",
            &["hostile slug entry `app/f`", "pax size record (1000000)"],
            |t| {
                t.dir("app/").pax(&[("size", b"1000000")]).file("app/f", b"x");
            },
        ),
        // Limits (the gzip bomb has its own test).
        case(
            "entry-claiming-more-than-the-unpacked-limit",
            &[
                "limit exceeded",
                "unpacked bytes at entry `app/big`, which claims 5368709120 bytes",
                "(limit 4294967296)",
            ],
            |t| {
                t.dir("app/")
                    .header(b'0', b"app/big", b"", 0o644, 5 * GIB)
                    .put(&[0; 4096]);
            },
        ),
        file_case(
            "three-hundred-thousand-empty-entries",
            &[
                "limit exceeded",
                "number of entries at entry `junk/e998`",
                "(limit 200000)",
            ],
            |path| {
                tgz_file(path, Compression::fast(), |t| {
                    t.dir("app/").file("app/Procfile", b"worker: exec sleep 600\n");
                    // 1000 empty entries outside app/ (skipped, but counted), over and over.
                    let mut chunk = Tar::new(Vec::new());
                    for i in 0..1000 {
                        chunk.header(b'0', format!("junk/e{i:03}").as_bytes(), b"", 0o644, 0);
                    }
                    for _ in 0..(ENTRIES_LIMIT + 100_000) / 1000 {
                        t.put(chunk.get_ref());
                    }
                    t.end();
                })
            },
        ),
        case(
            "file-nested-past-depth-64",
            &[
                "limit exceeded",
                "path depth of entry `app/d/d/d/",
                "66 components",
                "(limit 64)",
            ],
            |t| {
                t.dir("app/")
                    .file(&format!("app/{}f", "d/".repeat(DEPTH_LIMIT)), b"deep");
            },
        ),
        case(
            "directories-nested-past-depth-64",
            &[
                "limit exceeded",
                "path depth of entry `app/d/d/",
                "65 components",
                "(limit 64)",
            ],
            |t| {
                t.dir("app/");
                for depth in 1..=DEPTH_LIMIT {
                    t.dir(&format!("app/{}", "d/".repeat(depth)));
                }
            },
        ),
        case(
            "path-over-4096-bytes-in-a-gnu-long-name",
            &["limit exceeded", "path length of entry `app/xxxx", "(limit 4096)"],
            |t| {
                let name = format!("app/{}f", format!("{}/", "x".repeat(99)).repeat(41));
                assert!(name.len() > PATH_LIMIT);
                t.dir("app/").file(&name, b"x");
            },
        ),
        case(
            "path-over-4096-bytes-in-a-pax-header",
            &[
                "limit exceeded",
                "path length of entry `app/y/y/y/",
                "5004 bytes",
                "(limit 4096)",
            ],
            |t| {
                let name = format!("app/{}", "y/".repeat(2500));
                t.dir("app/")
                    .pax(&[("path", name.as_bytes())])
                    .file("app/innocent", b"x");
            },
        ),
        case(
            "link-target-over-4096-bytes-in-a-pax-header",
            &["limit exceeded", "link target length of entry `app/l`", "(limit 4096)"],
            |t| {
                let target = "z/".repeat(2500);
                t.dir("app/")
                    .pax(&[("linkpath", target.as_bytes())])
                    .symlink("app/l", "z");
            },
        ),
        case(
            "link-target-over-4096-bytes-in-a-gnu-long-link",
            &["limit exceeded", "link target length", "`zzzz"],
            |t| {
                t.dir("app/").symlink("app/l", &"z".repeat(5000));
            },
        ),
        case("name-component-over-255-bytes", &["`app/nnnnnnnnnnnnnnnn"], |t| {
            t.dir("app/").file(&format!("app/{}", "n".repeat(256)), b"x");
        }),
        // Truncated or corrupt gzip or tar.
        bytes_case("truncated-gzip", &["corrupt slug", "truncated"], || {
            let whole = small_good_tgz();
            whole[..whole.len() / 2].to_vec()
        }),
        Case {
            sha256: Some("{digest}".to_owned()),
            ..bytes_case(
                "truncated-gzip-with-its-own-sha256",
                &["corrupt slug", "truncated"],
                || {
                    let whole = small_good_tgz();
                    whole[..whole.len() / 3].to_vec()
                },
            )
        },
        bytes_case(
            "tar-without-its-end-of-archive-block",
            &["corrupt slug", "end-of-archive block", "after entry `app/f`"],
            || {
                tgz(|t| {
                    t.dir("app/").file("app/f", b"data");
                })
            },
        ),
        bytes_case(
            "header-claiming-more-data-than-exists",
            &["corrupt slug", "entry `app/big` claims 1048576 bytes"],
            || {
                tgz(|t| {
                    t.dir("app/").header(b'0', b"app/big", b"", 0o644, MIB).put(&[7; 1000]);
                })
            },
        ),
        bytes_case("flipped-bytes-in-the-middle", &["corrupt slug"], || {
            let mut bytes = small_good_tgz();
            let mid = bytes.len() / 2;
            for b in &mut bytes[mid..mid + 16] {
                *b ^= 0x5a;
            }
            bytes
        }),
        bytes_case("wrong-gzip-crc", &["corrupt slug"], || {
            let mut bytes = small_good_tgz();
            let crc = bytes.len() - 8;
            bytes[crc] ^= 0xff;
            bytes
        }),
        bytes_case("not-gzip-at-all", &["corrupt slug"], || {
            let mut t = Tar::new(Vec::new());
            small_good(&mut t);
            t.end();
            t.into_inner()
        }),
        bytes_case("garbage-after-the-gzip-stream", &["corrupt slug"], || {
            let mut bytes = small_good_tgz();
            bytes.extend_from_slice(b"this is not a gzip member");
            bytes
        }),
        bytes_case("tar-header-checksum-wrong", &["corrupt slug"], || {
            tgz(|t| {
                let mut h = block(b'0', b"app/f", b"", 0o644, 1);
                h.set_mode(0o4777); // after the checksum
                t.dir("app/").put(h.as_bytes()).put(b"x").pad().end();
            })
        }),
        bytes_case("empty-file", &["corrupt slug", "truncated"], Vec::new),
        // A wrong checksum: the message names both digests.
        Case {
            sha256: Some(wrong.clone()),
            want: vec![
                "sha256".to_owned(),
                "mismatch".to_owned(),
                format!("expected {wrong}"),
                "got {digest}".to_owned(),
            ],
            ..case("wrong-sha256", &[], small_good)
        },
        Case {
            sha256: Some("NOT-A-DIGEST".to_owned()),
            want: strings(&["sha256", "\"NOT-A-DIGEST\" is not 64 lowercase hex digits"]),
            ..case("malformed-sha256", &[], small_good)
        },
        // No app/.
        case("no-app-directory", &["slug has no app/ directory"], |t| {
            t.dir("./other/").file("./other/Procfile", b"web: x\n");
        }),
        case(
            "app-is-a-file",
            &["hostile slug entry `app`", "`app` must be a directory"],
            |t| {
                t.file("app", b"not a directory");
            },
        ),
        case("application-is-not-app", &["slug has no app/ directory"], |t| {
            t.dir("application/").file("application/Procfile", b"web: x\n");
        }),
        case("empty-archive", &["slug has no app/ directory"], |_| {}),
    ];
    assert!(cases.len() >= 20);
    b.run(cases);
}

#[test]
fn gzip_bombs_are_stopped_at_the_unpacked_limit_while_the_agent_serves() {
    let b = Battery::new();
    // A small valid slug, then 8 GiB of zeros: the zeros end the tar and go
    // on, and every decompressed byte counts. The zeros are one gzip member of
    // 64 MiB, compressed once and repeated (concatenated members are one gzip
    // stream): compressing 8 GiB here would take a minute.
    let bomb = file_case(
        "gzip-bomb",
        &[
            "limit exceeded",
            "unpacked bytes in data after the end of the tar archive",
            "(limit 4294967296)",
        ],
        |path| {
            let mut out = BufWriter::new(File::create(path).expect("create the bomb"));
            out.write_all(&tgz(|t| {
                t.dir("app/").file("app/Procfile", b"worker: exec sleep 600\n");
            }))
            .expect("write the bomb");
            let member = zeros_member(64 * MIB);
            for _ in 0..BOMB / (64 * MIB) {
                out.write_all(&member).expect("write the bomb");
            }
            out.flush().expect("write the bomb");
        },
    );
    let (path, digest, made) = b.build(&bomb);
    let size = fs::metadata(&path).expect("bomb").len();
    eprintln!("gzip bomb: {size} bytes on disk for {BOMB} bytes, made in {made:.3?}");
    assert!(size < 16 * MIB, "small on disk: {size} bytes");

    // While the agent unpacks it, it answers.
    let cache_before = b.cache_entries();
    let args = b.start_args(&bomb, "worker.1", &path, &digest);
    let mut child = std::process::Command::new(ctl_bin())
        .arg("--socket")
        .arg(&b.a.socket)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dynoctl start");
    let asked_at = Instant::now();
    let mut answered_meanwhile = 0;
    let mut slowest = Duration::ZERO;
    while child.try_wait().expect("wait").is_none() {
        assert!(
            asked_at.elapsed() < DEADLINE,
            "no answer to the bomb within {DEADLINE:?}"
        );
        let asked = Instant::now();
        let ps = b.a.ctl(&["ps"]);
        assert!(ps.status.success(), "ps during the bomb: {ps:?}");
        slowest = slowest.max(asked.elapsed());
        if child.try_wait().expect("wait").is_none() {
            answered_meanwhile += 1;
        }
        // Polling pace.
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("dynoctl start");
    let took = asked_at.elapsed();
    eprintln!(
        "gzip bomb refused in {took:.3?}; the agent answered ps {answered_meanwhile} times meanwhile (slowest {slowest:.3?})"
    );
    let mut problems = b.check(&bomb, "worker.1", &digest, &cache_before, &out);
    if answered_meanwhile == 0 {
        problems.push("the agent did not answer while unpacking the bomb".to_owned());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    b.still_serves();
}

/// A slug path that is not a regular file, here `/dev/zero` (endless) and a
/// FIFO nobody writes to, is refused as invalid, naming the path, within a
/// deadline: the compressed limit bounds what is read, and nothing waits forever.
#[test]
fn a_slug_source_that_is_not_a_regular_file_is_refused() {
    let a = TestAgent::start("");
    let fifo = a.dir.path().join("slug.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).expect("mkfifo");
    let sources = [PathBuf::from("/dev/zero"), fifo];
    let mut starts: Vec<_> = sources
        .iter()
        .enumerate()
        .map(|(n, source)| {
            let child = std::process::Command::new(ctl_bin())
                .arg("--socket")
                .arg(&a.socket)
                .args([
                    "start",
                    "--app",
                    "hostile",
                    "--name",
                    &format!("worker.{}", n + 1),
                    "--slug",
                ])
                .arg(source)
                .args(["--command", "exec sleep 600"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("dynoctl start");
            (source, Some(child))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut problems = Vec::new();
    while starts.iter().any(|(_, c)| c.is_some()) && Instant::now() < deadline {
        for (source, slot) in &mut starts {
            if let Some(child) = slot
                && child.try_wait().expect("wait").is_some()
            {
                let out = slot.take().expect("child").wait_with_output().expect("dynoctl start");
                let err = String::from_utf8_lossy(&out.stderr);
                if out.status.code() != Some(2) || !err.contains(&show(source)) {
                    problems.push(format!(
                        "{}: want INVALID_ARGUMENT naming it, got {:?}: {}",
                        source.display(),
                        out.status.code(),
                        err.trim()
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    for (source, slot) in &mut starts {
        if let Some(mut child) = slot.take() {
            let _ = child.kill();
            let _ = child.wait();
            problems.push(format!("{}: no answer within 10 s", source.display()));
        }
    }
    assert!(a.ps().iter().all(|d| d["app"] != "hostile"), "no dyno made");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The agent reads a slug's Procfile itself, on the host, to pick a command:
/// a Procfile that is a symlink out of the slug must not make it read a host
/// file (whose text would become the dyno's command, shown by `ps` and run).
/// A symlink inside the slug still works.
#[test]
fn a_procfile_symlink_out_of_the_slug_is_not_read_on_the_host() {
    let b = Battery::new();
    let secret = "host-secret-5f3a9c";
    let host_file = b.a.dir.path().join("host-procfile");
    fs::write(&host_file, format!("web: echo {secret}\n")).expect("host file");
    // The cache entry is `<state>/slugs/<sha256>/app/`: four levels up is the temp dir.
    let targets = [show(&host_file), "../../../../host-procfile".to_owned()];
    let mut problems = Vec::new();
    for (n, target) in targets.into_iter().enumerate() {
        let name = format!("web.{}", n + 1);
        let path = b.archives.join(format!("procfile-link-{n}.tgz"));
        fs::write(
            &path,
            tgz(|t| {
                t.dir("app/").symlink("app/Procfile", &target).end();
            }),
        )
        .expect("archive");
        let out =
            b.a.ctl(&["start", "--app", "hostile", "--name", &name, "--slug", &show(&path)]);
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.code() != Some(2) || said.contains(secret) || !said.contains("Procfile") {
            problems.push(format!(
                "Procfile -> {target}: want INVALID_ARGUMENT about the Procfile, the host file unread; got {:?}: {}",
                out.status.code(),
                said.trim()
            ));
        }
        if let Some(d) = b.a.dyno("hostile", &name) {
            problems.push(format!("Procfile -> {target}: a dyno was made: {d}"));
        }
    }
    // Inside the slug, a symlinked Procfile is fine.
    let path = b.archives.join("procfile-link-inside.tgz");
    fs::write(
        &path,
        tgz(|t| {
            t.dir("app/")
                .dir("app/config/")
                .file("app/config/Procfile", b"worker: exec sleep 600\n")
                .symlink("app/Procfile", "config/Procfile")
                .end();
        }),
    )
    .expect("archive");
    b.a.ctl_ok(&["start", "--app", "shop", "--name", "worker.1", "--slug", &show(&path)]);
    let d = b.a.wait_state("shop", "worker.1", "up");
    assert_eq!(d["command"], "exec sleep 600");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
