//! Positive controls: real slugs (written by `tar::Builder` and by the
//! system's tar, read whole or in tiny chunks) unpack as they should.

use super::*;

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// A slug written with tar::Builder the way a builder would: symlinks, nested dirs, executables,
/// setuid bits, a hardlink, long and pax names, entries outside app/.
fn real_slug() -> Vec<u8> {
    let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), Compression::default()));
    type B = tar::Builder<GzEncoder<Vec<u8>>>;
    fn put(b: &mut B, path: &str, ty: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(ty);
        h.set_mode(mode);
        h.set_uid(4242);
        h.set_gid(4242);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        match link {
            Some(target) => b.append_link(&mut h, path, target).unwrap(),
            None => b.append_data(&mut h, path, data).unwrap(),
        }
    }
    let mut add = |path: &str, ty: tar::EntryType, mode: u32, data: &[u8], link: Option<&str>| {
        put(&mut b, path, ty, mode, data, link)
    };
    use tar::EntryType as T;
    add("./", T::Directory, 0o755, b"", None);
    add("./README", T::Regular, 0o644, b"outside app, skipped", None);
    add("./app/", T::Directory, 0o700, b"", None);
    add(
        "./app/Procfile",
        T::Regular,
        0o644,
        b"web: bin/web --port $PORT\nworker: bin/worker\n",
        None,
    );
    add(
        "./app/.profile",
        T::Regular,
        0o644,
        b"export PATH=/app/bin:$PATH\n",
        None,
    );
    add("./app/bin/", T::Directory, 0o2775, b"", None);
    add("./app/bin/web", T::Regular, 0o755, b"#!/bin/sh\necho web\n", None);
    add("./app/bin/suid", T::Regular, 0o4755, b"#!/bin/sh\n", None);
    add("./app/bin/sgid", T::Regular, 0o2711, b"#!/bin/sh\n", None);
    add("./app/bin/sticky", T::Regular, 0o1644, b"x", None);
    add("./app/bin/private", T::Regular, 0o600, b"secret", None);
    add("./app/bin/web-hard", T::Link, 0o755, b"", Some("./app/bin/web"));
    add("./app/lib/a/b/c/deep.txt", T::Regular, 0o644, b"deep", None);
    add("./app/link-rel", T::Symlink, 0o777, b"", Some("bin/web"));
    add("./app/link-abs", T::Symlink, 0o777, b"", Some("/app/bin/web"));
    add("./app/link-up", T::Symlink, 0o777, b"", Some("../../../etc/passwd"));
    add("./app/lib/dangling", T::Symlink, 0o777, b"", Some("/nonexistent/x"));
    let long = format!("./app/lib/{}.txt", "long-name-".repeat(20));
    add(&long, T::Regular, 0o644, b"long", None);
    b.append_pax_extensions([("path", b"app/pax named.txt".as_slice())])
        .unwrap();
    put(&mut b, "./app/pax-short", T::Regular, 0o644, b"pax", None);
    put(&mut b, "./app/empty-dir/", T::Directory, 0o750, b"", None);
    put(&mut b, "./app/big.bin", T::Regular, 0o644, &vec![0xab; 300_000], None);
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_real_slug_unpacks() {
    let fx = fixture();
    let archive = real_slug();
    let digest = sha256_hex(&archive);
    let done = fx
        .unpack(&archive, &Limits::default(), Some(&digest.to_uppercase()))
        .unwrap();
    assert_eq!(done.sha256, digest);
    assert_eq!(done.compressed_bytes, archive.len() as u64);
    assert_eq!(done.entries, 21);
    assert!(done.unpacked_bytes >= 300_000, "{done:?}");
    let app = fx.staging.join("app");
    let s = &fx.staging;
    assert_eq!(mode(s), 0o755);
    assert_eq!(mode(&app), 0o755);
    assert!(!s.join("README").exists());
    assert_eq!(
        fs::read_to_string(app.join("Procfile")).unwrap(),
        "web: bin/web --port $PORT\nworker: bin/worker\n"
    );
    assert_eq!(
        fs::read_to_string(app.join(".profile")).unwrap(),
        "export PATH=/app/bin:$PATH\n"
    );
    assert_eq!(
        mode(&app.join("bin")),
        0o755,
        "setgid and group write stripped from a directory"
    );
    assert_eq!(mode(&app.join("bin/web")), 0o755);
    assert_eq!(mode(&app.join("bin/suid")), 0o755, "setuid stripped");
    assert_eq!(mode(&app.join("bin/sgid")), 0o711, "setgid stripped");
    assert_eq!(mode(&app.join("bin/sticky")), 0o644, "sticky stripped");
    assert_eq!(mode(&app.join("bin/private")), 0o600);
    assert_eq!(mode(&app.join("empty-dir")), 0o755);
    let web = fs::metadata(app.join("bin/web")).unwrap();
    assert_eq!(
        fs::metadata(app.join("bin/web-hard")).unwrap().ino(),
        web.ino(),
        "hardlink"
    );
    assert_eq!(web.mtime(), 1_600_000_000);
    let euid = nix::unistd::geteuid().as_raw();
    assert_eq!(web.uid(), euid, "owner not taken from the archive");
    assert_eq!(fs::read(app.join("lib/a/b/c/deep.txt")).unwrap(), b"deep");
    assert_eq!(mode(&app.join("lib/a/b")), 0o755);
    assert_eq!(fs::read_link(app.join("link-rel")).unwrap(), Path::new("bin/web"));
    assert_eq!(fs::read_link(app.join("link-abs")).unwrap(), Path::new("/app/bin/web"));
    assert_eq!(
        fs::read_link(app.join("link-up")).unwrap(),
        Path::new("../../../etc/passwd")
    );
    assert_eq!(
        fs::read_link(app.join("lib/dangling")).unwrap(),
        Path::new("/nonexistent/x")
    );
    assert_eq!(
        fs::read(app.join(format!("lib/{}.txt", "long-name-".repeat(20)))).unwrap(),
        b"long"
    );
    assert_eq!(fs::read(app.join("pax named.txt")).unwrap(), b"pax");
    assert!(!app.join("pax-short").exists());
    assert_eq!(fs::read(app.join("big.bin")).unwrap(), vec![0xab; 300_000]);
    assert_eq!(snapshot(&fx.root, &fx.staging), fx.before, "outside staging changed");
}

#[test]
fn a_slug_read_in_tiny_chunks_and_from_concatenated_members_unpacks() {
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let fx = fixture();
    let tar = Tar::new()
        .dir("app/")
        .file("app/a", b"a")
        .file("app/b", &[9; 5000])
        .finish();
    let mut archive = gz(&tar[..1024]);
    archive.extend_from_slice(&gz(&tar[1024..]));
    let done = unpack(
        Trickle(&archive),
        &fx.staging,
        Some(&sha256_hex(&archive)),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(done.compressed_bytes, archive.len() as u64);
    assert_eq!(fs::read(fx.staging.join("app/b")).unwrap(), vec![9; 5000]);
}

#[test]
fn a_slug_made_by_system_tar_unpacks() {
    let fx = fixture();
    let src = fx.root.join("w/src");
    fs::create_dir_all(src.join("app/bin")).unwrap();
    fs::create_dir_all(src.join("app/vendor/x/y")).unwrap();
    fs::write(src.join("app/Procfile"), "web: bin/web\n").unwrap();
    fs::write(src.join("app/.profile"), "export A=1\n").unwrap();
    fs::write(src.join("app/bin/web"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(src.join("app/bin/web"), Permissions::from_mode(0o755)).unwrap();
    fs::write(src.join("app/vendor/x/y/lib.rb"), "puts 1\n".repeat(1000)).unwrap();
    std::os::unix::fs::symlink("bin/web", src.join("app/web")).unwrap();
    std::os::unix::fs::symlink("/app/vendor", src.join("app/v")).unwrap();
    let tgz = fx.root.join("w/slug.tgz");
    let status = match std::process::Command::new("tar")
        .arg("-C")
        .arg(&src)
        .arg("-czf")
        .arg(&tgz)
        .arg(".")
        .status()
    {
        Ok(status) => status,
        Err(e) => {
            eprintln!("no system tar ({e}); skipped");
            return;
        }
    };
    assert!(status.success());
    let archive = fs::read(&tgz).unwrap();
    let done = fx
        .unpack(&archive, &Limits::default(), Some(&sha256_hex(&archive)))
        .unwrap();
    assert!(done.entries >= 10, "{done:?}");
    // Compare type, mode, size and content; mtimes of files to the second (directories' and symlinks' differ).
    let strip = |m: BTreeMap<PathBuf, Seen>| -> BTreeMap<PathBuf, Seen> {
        m.into_iter()
            .map(|(k, mut v)| {
                v.mtime = v.mtime.filter(|_| v.kind == "file").map(|(secs, _)| (secs, 0));
                (k, v)
            })
            .collect()
    };
    let want = strip(snapshot(&src.join("app"), Path::new("/nonexistent")));
    let got = strip(snapshot(&fx.staging.join("app"), Path::new("/nonexistent")));
    assert_eq!(got, want);
}
