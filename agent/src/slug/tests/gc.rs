//! Garbage collection after the grace period, and what opening the cache
//! removes and keeps.

use super::*;

/// Polls `check` until it holds; panics after `DEADLINE`.
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_removes_unused_slugs_after_the_grace_period_only() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(400);
    let c = cache_with(dir.path(), Limits::default(), opts(), grace);
    let a = write(dir.path(), "a.tgz", &tgz(&[("app/a", b"a")]));
    let b = write(dir.path(), "b.tgz", &tgz(&[("app/b", b"b")]));
    let a = c.resolve(a.to_str().unwrap(), None).await.unwrap().sha256.unwrap();
    let b_resolved = Instant::now();
    let b = c.resolve(b.to_str().unwrap(), None).await.unwrap().sha256.unwrap();
    let in_use = HashSet::from([a.clone()]);
    // Just resolved: kept, in use or not.
    assert!(c.gc(&in_use).is_empty());
    let mut removed = Vec::new();
    wait_until("b to be collected", || {
        removed.extend(c.gc(&in_use));
        !removed.is_empty()
    });
    assert!(b_resolved.elapsed() >= grace);
    assert_eq!(removed, vec![b.clone()]);
    assert_eq!(listing(&c), vec![a.clone()], "a kept, b gone, no trash left");
    // `a` stops being used: it lives one more grace period from then.
    let last_seen = Instant::now();
    assert!(c.gc(&in_use).is_empty());
    assert!(c.gc(&HashSet::new()).is_empty());
    wait_until("a to be collected", || !c.gc(&HashSet::new()).is_empty());
    assert!(last_seen.elapsed() >= grace);
    assert!(listing(&c).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_keeps_an_entry_alive() {
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_millis(300);
    let c = cache_with(dir.path(), Limits::default(), opts(), grace);
    let bytes = small_slug();
    let t = write(dir.path(), "a.tgz", &bytes);
    let digest = hex_sha256(&bytes);
    c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
    // Resolved again and again (a cache hit each time): never collected.
    let until = Instant::now() + grace * 4;
    while Instant::now() < until {
        let s = c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
        assert!(c.gc(&HashSet::new()).is_empty());
        assert!(s.app_dir.is_dir());
        tokio::time::sleep(grace / 6).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_removes_what_a_crash_left_and_keeps_the_entries() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = small_slug();
    let t = write(dir.path(), "a.tgz", &bytes);
    let digest = hex_sha256(&bytes);
    {
        let c = cache(dir.path());
        c.resolve(t.to_str().unwrap(), None).await.unwrap();
    }
    let slugs = dir.path().join("slugs");
    fs::create_dir_all(slugs.join(".staging-x/app/bin")).unwrap();
    fs::write(slugs.join(".staging-x/app/bin/half"), b"half").unwrap();
    fs::create_dir_all(slugs.join(format!(".trash-{digest}-y/app"))).unwrap();
    fs::write(slugs.join(".staging-file"), b"").unwrap();
    let c = cache_with(dir.path(), Limits::default(), opts(), Duration::from_millis(200));
    assert_eq!(listing(&c), vec![digest.clone()]);
    // A survivor of the restart gets a full grace period.
    assert!(c.gc(&HashSet::new()).is_empty());
    fs::write(&t, b"not a tarball any more").unwrap();
    c.resolve(t.to_str().unwrap(), Some(&digest)).await.unwrap();
}
