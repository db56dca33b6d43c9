//! The jail end to end, probed from inside real dynos: credentials and
//! capabilities, the read-only stack and the ephemeral writable `/app` and
//! `/tmp`, what of the host can be seen (paths, processes, fds, hostname),
//! what cannot be done (chroot, mount, unshare, setuid, signalling another
//! dyno), the disk bound, and the environment a command starts with.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Output;

use dyno_tests::*;
use serde_json::Value;

/// The agent's default `uid_range`.
const UIDS: std::ops::RangeInclusive<u32> = 100_000..=165_535;

/// `dynoctl run` of `sh -c script` in a one-off dyno: (exit code, output).
fn run_sh(a: &TestAgent, slug: &Path, script: &str) -> (i32, String) {
    run_argv(a, slug, &[], &["sh", "-c", script])
}

/// `dynoctl run [extra…] -- argv…`: (exit code, stdout then stderr).
fn run_argv(a: &TestAgent, slug: &Path, extra: &[&str], argv: &[&str]) -> (i32, String) {
    let slug = show(slug);
    let mut args = vec!["run", "--app", "shop", "--slug", &slug];
    args.extend_from_slice(extra);
    args.push("--");
    args.extend_from_slice(argv);
    let out: Output = a.ctl(&args);
    let code = out
        .status
        .code()
        .unwrap_or_else(|| panic!("dynoctl run killed: {:?}", out.status));
    // The command's stderr comes on dynoctl's stderr (streams, no pty): the
    // probes read both; dynoctl's own errors (`dynoctl: …`) fail the test.
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("dynoctl: ") || code != 0,
        "dynoctl run {argv:?}: unexpected error: {stderr}"
    );
    (code, String::from_utf8_lossy(&out.stdout).into_owned() + &stderr)
}

/// `key=value` lines of a probe's output (the first occurrence of a key wins).
fn kv(out: &str) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for line in out.lines() {
        if let Some((k, v)) = line.split_once('=') {
            m.entry(k.to_string()).or_insert_with(|| v.to_string());
        }
    }
    m
}

fn get<'a>(m: &'a BTreeMap<String, String>, key: &str, out: &str) -> &'a str {
    m.get(key)
        .unwrap_or_else(|| panic!("probe printed no {key}=…; output:\n{out}"))
}

/// Starts a long-running dyno and waits until it is up.
fn start(a: &TestAgent, name: &str, slug: &Path, command: &str, extra: &[&str]) -> Value {
    let slug = show(slug);
    let mut more = vec!["--command", command];
    more.extend_from_slice(extra);
    a.ctl_ok(&start_args("shop", name, &slug, &more));
    a.wait_dyno("shop", name, "up with a pid", |d| {
        d["state"] == "up" && d["pid"].is_u64()
    })
}

/// The log texts of one dyno, over all its runs.
fn dyno_logs(a: &TestAgent, name: &str) -> Vec<String> {
    texts(&a.ctl_ok(&["logs", "--app", "shop", "--dyno", name, "-n", "500"]))
}

/// Waits until the dyno's log has at least `n` lines equal to `line`; returns the log.
fn wait_log_lines(a: &TestAgent, name: &str, line: &str, n: usize) -> Vec<String> {
    wait_for(&format!("{n} × {line:?} in the log of {name}"), || {
        let logs = dyno_logs(a, name);
        (logs.iter().filter(|l| *l == line).count() >= n).then_some(logs)
    })
}

/// A field of `/proc/PID/status` on the host, split into words.
fn status_field(pid: u32, field: &str) -> Vec<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// The uid of a host pid: real, effective, saved and fs uid all equal.
fn host_uid(pid: u32) -> u32 {
    let ids: BTreeSet<u32> = status_field(pid, "Uid")
        .iter()
        .map(|u| u.parse().expect("uid"))
        .collect();
    assert_eq!(ids.len(), 1, "pid {pid} has mixed uids {ids:?}");
    ids.into_iter().next().expect("one uid")
}

fn host_gid(pid: u32) -> u32 {
    let ids: BTreeSet<u32> = status_field(pid, "Gid")
        .iter()
        .map(|u| u.parse().expect("gid"))
        .collect();
    assert_eq!(ids.len(), 1, "pid {pid} has mixed gids {ids:?}");
    ids.into_iter().next().expect("one gid")
}

/// No mount on the host mentions the agent's directory (state, runs, slugs):
/// every mount of a jail lives in the dyno's own mount namespace.
fn assert_no_host_mounts(a: &TestAgent) {
    let dir = show(a.dir.path());
    let state = show(&a.state);
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let leaked: Vec<&str> = info
        .lines()
        .filter(|l| l.contains(&dir) || l.contains(&state))
        .collect();
    assert!(leaked.is_empty(), "host mounts of the test's state dir: {leaked:#?}");
}

/// Stops every dyno and waits until no process any run of this agent started
/// (command, init, shim) is left and every dyno is down; then checks for
/// leaked mounts.
fn assert_all_ended(a: &TestAgent) {
    a.ctl_ok(&["stop", "--all"]);
    let runs = a.state.join("runs");
    let mut pids = Vec::new();
    for run in std::fs::read_dir(&runs).expect("runs").flatten() {
        if let Ok(Some(exec)) =
            dyno_agent::runs::read_json::<dyno_agent::runs::ExecRecord>(&run.path().join("exec.json"))
        {
            pids.extend(pid_namespace_members(exec.pid));
            pids.push(exec.pid);
            pids.push(exec.shim_pid);
            pids.extend(exec.init_pid);
        }
    }
    assert!(!pids.is_empty(), "no run recorded a pid");
    wait_for("every process of every run to end", || {
        pids.iter().all(|p| !alive(*p)).then_some(())
    });
    // A run is settled (its network namespace torn down) before its dyno
    // is `down`.
    wait_for("every dyno to be down", || {
        a.ps().iter().all(|d| d["state"] == "down").then_some(())
    });
    assert_no_host_mounts(a);
}

#[test]
fn runs_as_an_unprivileged_uid_without_capabilities_and_with_no_new_privs() {
    let a = TestAgent::start("");
    let slug = a.slug("caps", &[]);
    let (code, out) = run_sh(
        &a,
        &slug,
        "echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); \
         awk -F':[ \\t]*' '/^(Cap|NoNewPrivs)/ {print $1 \"=\" $2}' /proc/self/status",
    );
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    let uid: u32 = get(&m, "uid", &out).parse().expect("uid");
    assert_ne!(uid, 0, "{out}");
    assert!(UIDS.contains(&uid), "uid {uid} outside uid_range: {out}");
    assert_eq!(get(&m, "gid", &out), uid.to_string(), "{out}");
    assert_eq!(
        get(&m, "groups", &out),
        uid.to_string(),
        "no supplementary groups: {out}"
    );
    for cap in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(get(&m, cap, &out), "0000000000000000", "{cap}: {out}");
    }
    assert_eq!(get(&m, "NoNewPrivs", &out), "1", "{out}");
    assert_no_host_mounts(&a);
}

#[test]
fn two_live_dynos_have_different_uids() {
    let a = TestAgent::start("");
    let slug = a.slug("w", &[]);
    let w1 = start(&a, "worker.1", &slug, SLEEPER, &[]);
    let w2 = start(&a, "worker.2", &slug, SLEEPER, &[]);
    let (p1, p2) = (pid_of(&w1), pid_of(&w2));
    let (u1, u2) = (host_uid(p1), host_uid(p2));
    for (pid, uid) in [(p1, u1), (p2, u2)] {
        assert_ne!(uid, 0);
        assert!(UIDS.contains(&uid), "uid {uid} outside uid_range");
        assert_eq!(host_gid(pid), uid, "gid is the uid");
        assert_eq!(status_field(pid, "Groups"), vec![uid.to_string()]);
        assert_eq!(status_field(pid, "NoNewPrivs"), vec!["1"]);
        assert_eq!(status_field(pid, "CapBnd"), vec!["0000000000000000"]);
    }
    assert_ne!(u1, u2, "two live dynos share uid {u1}");
    assert_all_ended(&a);
}

#[test]
fn root_is_read_only_while_app_and_tmp_are_writable() {
    let a = TestAgent::start("");
    let slug = a.slug("rw", &[("hello.txt", "from the slug\n")]);
    let (code, out) = run_sh(
        &a,
        &slug,
        "touch /etc/x 2>/dev/null; echo etc=$?; touch /x 2>/dev/null; echo root=$?; \
         touch /bin/x 2>/dev/null; echo bin=$?; \
         echo new >/app/new.txt; echo app=$?; mkdir -p /app/tmp /app/log; echo appdirs=$?; \
         echo changed >/app/hello.txt; echo appedit=$?; \
         echo t >/tmp/t; echo tmp=$?; \
         echo appowner=$(stat -c %u /app); echo fileowner=$(stat -c %u /app/hello.txt); echo uid=$(id -u); \
         echo hello=$(cat /app/hello.txt)",
    );
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    for k in ["etc", "root", "bin"] {
        assert_ne!(get(&m, k, &out), "0", "{k}: writable in the read-only stack: {out}");
    }
    for k in ["app", "appdirs", "appedit", "tmp"] {
        assert_eq!(get(&m, k, &out), "0", "{k}: not writable: {out}");
    }
    let uid = get(&m, "uid", &out);
    assert_eq!(get(&m, "appowner", &out), uid, "/app belongs to the dyno: {out}");
    assert_eq!(get(&m, "fileowner", &out), uid, "/app/* belongs to the dyno: {out}");
    assert_eq!(get(&m, "hello", &out), "changed");

    // The slug on the host is untouched: a copy-on-write view, not the slug itself.
    let app = slug.join("app");
    assert_eq!(
        std::fs::read_to_string(app.join("hello.txt")).unwrap(),
        "from the slug\n"
    );
    assert!(!app.join("new.txt").exists() && !app.join("tmp").exists());
    assert_eq!(
        std::fs::metadata(app.join("hello.txt")).unwrap().uid(),
        0,
        "slug file chowned on the host"
    );
    assert!(!stack().join("x").exists());
    assert_no_host_mounts(&a);
}

#[test]
fn writes_to_app_and_tmp_do_not_survive_a_restart() {
    let a = TestAgent::start("");
    let slug = a.slug("eph", &[]);
    let cmd = "if [ -e /app/marker ]; then echo seen-app >&2; fi; \
               if [ -e /tmp/marker ]; then echo seen-tmp >&2; fi; \
               touch /app/marker /tmp/marker && echo wrote; exec sleep 600";
    let d1 = start(&a, "worker.1", &slug, cmd, &[]);
    wait_log_lines(&a, "worker.1", "wrote", 1);
    // Seen from the host, through the run's own root: the markers exist.
    let p1 = pid_of(&d1);
    for m in ["app/marker", "tmp/marker"] {
        assert!(Path::new(&format!("/proc/{p1}/root/{m}")).exists(), "run 1 wrote /{m}");
    }

    a.ctl_ok(&["restart", "--app", "shop", "worker.1"]);
    let d2 = a.wait_dyno("shop", "worker.1", "a new run up", |d| {
        d["state"] == "up" && d["pid"].is_u64() && pid_of(d) != p1
    });
    let logs = wait_log_lines(&a, "worker.1", "wrote", 2);
    assert!(
        !logs.iter().any(|l| l.starts_with("seen")),
        "writes of the previous run survived the restart: {logs:#?}"
    );
    assert_ne!(d1["run_id"], d2["run_id"]);
    assert!(!slug.join("app/marker").exists(), "the slug itself was written");
    assert_all_ended(&a);
}

#[test]
fn no_host_path_is_visible() {
    let a = TestAgent::start("");
    let slug = a.slug("iso", &[]);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let canary = format!("canary-{}-{nanos}", std::process::id());
    let host_dir = a.dir.path().to_path_buf();
    for dir in [host_dir.clone(), a.state.clone(), slug.clone()] {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&canary), "host\n").unwrap();
    }
    let script = format!(
        "echo found=$(find / -name {canary} 2>/dev/null | tr '\\n' ' '); \
         ls {dir} >/dev/null 2>&1; echo lsdir=$?; \
         ls {state} >/dev/null 2>&1; echo lsstate=$?; \
         ls {stack} >/dev/null 2>&1; echo lsstack=$?; \
         cat {dir}/{canary} >/dev/null 2>&1; echo cat=$?",
        dir = show(&host_dir),
        state = show(&a.state),
        stack = show(stack()),
    );
    let (code, out) = run_sh(&a, &slug, &script);
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    assert_eq!(
        get(&m, "found", &out).trim(),
        "",
        "host canary visible in the dyno: {out}"
    );
    for k in ["lsdir", "lsstate", "lsstack", "cat"] {
        assert_ne!(get(&m, k, &out), "0", "{k}: a host path is reachable: {out}");
    }
    assert_no_host_mounts(&a);
}

#[test]
fn proc_lists_only_the_dynos_processes() {
    let a = TestAgent::start("");
    let slug = a.slug("proc", &[]);
    // A worker dyno too, so that there is another dyno to not see.
    let other = start(&a, "worker.1", &slug, SLEEPER, &[]);
    let (code, out) = run_sh(&a, &slug, "echo pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ')");
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    let pids: BTreeSet<u32> = get(&m, "pids", &out)
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect();
    assert!(pids.contains(&1), "no PID 1 in the dyno: {pids:?}");
    assert!(pids.len() <= 8, "more than a handful of processes: {pids:?}");
    assert!(pids.iter().all(|p| *p < 64), "host-sized pids: {pids:?}");
    for host in [a.agent_pid(), std::process::id(), pid_of(&other)] {
        assert!(!pids.contains(&host), "host pid {host} visible: {pids:?}");
    }
    assert_all_ended(&a);
}

#[test]
fn cannot_chroot_mount_or_unshare() {
    let a = TestAgent::start("");
    let slug = a.slug("nope", &[]);
    // Each attempt prints `name=<status>:<its error message>`. chroot into an
    // empty directory fails either way: only EPERM shows it was refused.
    let (code, out) = run_sh(
        &a,
        &slug,
        "try() { n=$1; shift; \"$@\" 2>/tmp/err >/dev/null; echo \"$n=$?:$(tr '\\n' ' ' </tmp/err)\"; }; \
         mkdir x; try chroot chroot x /bin/true; \
         mkdir -p /tmp/x; try mount mount -t tmpfs none /tmp/x; \
         try remount mount -o remount,rw /; \
         try bind mount --bind /tmp /app; \
         try unshare unshare -m true; \
         try unsharepid unshare -p -f true; \
         try unshareuts unshare -u true; \
         echo mounted=$(grep -c ' /tmp/x ' /proc/self/mountinfo)",
    );
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    for k in [
        "chroot",
        "mount",
        "remount",
        "bind",
        "unshare",
        "unsharepid",
        "unshareuts",
    ] {
        let v = get(&m, k, &out);
        let (status, err) = v.split_once(':').expect("status:message");
        assert_ne!(status, "0", "{k} succeeded in a dyno: {out}");
        assert!(
            err.contains("Operation not permitted") || err.contains("ermission denied"),
            "{k} failed for another reason than a missing privilege: {out}"
        );
    }
    assert_eq!(get(&m, "mounted", &out), "0", "{out}");
    assert_no_host_mounts(&a);
}

#[test]
fn a_setuid_root_binary_in_the_slug_does_not_raise_privileges() {
    let a = TestAgent::start("");
    let slug = a.slug("suid", &[]);
    // Named busybox*: busybox takes its applet from argv[1] then, not argv[0].
    let suid = slug.join("app/busybox-suid");
    std::fs::copy(stack().join("bin/busybox"), &suid).expect("copy busybox");
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");

    let (code, out) = run_sh(
        &a,
        &slug,
        "echo uid=$(id -u); echo suid=$(./busybox-suid id -u); echo ruid=$(./busybox-suid id -u -r); \
         echo mode=$(stat -c %a:%u busybox-suid)",
    );
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    let uid = get(&m, "uid", &out);
    assert_ne!(uid, "0");
    assert_eq!(get(&m, "suid", &out), uid, "setuid binary ran with another uid: {out}");
    assert_eq!(get(&m, "ruid", &out), uid, "{out}");
    // (Today the agent's chown of /app to the dyno clears the setuid bit
    // already; nosuid and no_new_privs would stop it otherwise.)
    // The slug on the host keeps its owner and mode.
    let meta = std::fs::metadata(&suid).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (0, 0o4755));
    assert_no_host_mounts(&a);
}

#[test]
fn masked_proc_paths_are_unreadable_and_sysrq_is_not_writable() {
    let a = TestAgent::start("");
    let slug = a.slug("mask", &[]);
    let (code, out) = run_sh(
        &a,
        &slug,
        "for p in kcore keys timer_list sched_debug kallsyms; do \
           echo $p=$(cat /proc/$p 2>/dev/null | wc -c); done; \
         echo h >/proc/sysrq-trigger 2>/dev/null; echo sysrq=$?; \
         echo x >/proc/sys/kernel/hostname 2>/dev/null; echo sys=$?",
    );
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    for p in ["kcore", "keys", "timer_list", "sched_debug", "kallsyms"] {
        assert_eq!(get(&m, p, &out).trim(), "0", "/proc/{p} readable: {out}");
    }
    assert_ne!(get(&m, "sysrq", &out), "0", "/proc/sysrq-trigger writable: {out}");
    assert_ne!(get(&m, "sys", &out), "0", "/proc/sys writable: {out}");
    assert_no_host_mounts(&a);
}

#[test]
fn only_the_standard_streams_are_inherited() {
    let a = TestAgent::start("");
    let slug = a.slug("fds", &[]);
    // `ls` opens the directory it lists: one fd beyond the standard three,
    // closed again by the time `ls -l` would read its link.
    let (code, out) = run_sh(&a, &slug, "echo fds=$(ls /proc/self/fd | tr '\\n' ' ')");
    assert_eq!(code, 0, "{out}");
    let fds: BTreeSet<u32> = get(&kv(&out), "fds", &out)
        .split_whitespace()
        .map(|f| f.parse().expect("fd"))
        .collect();
    assert_eq!(
        fds,
        BTreeSet::from([0, 1, 2, 3]),
        "fds of a dyno (3 is ls's own): {out}"
    );

    // Exactly, from the host: a long-running command holds 0, 1 and 2 only.
    let d = start(&a, "worker.1", &slug, SLEEPER, &[]);
    let pid = pid_of(&d);
    // Once it is `sleep`: the shell before it briefly opens `.profile.d/`.
    wait_for("the command to exec sleep", || {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "sleep").then_some(())
    });
    let fds: BTreeMap<String, String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("fd dir")
        .flatten()
        .map(|e| {
            let link = std::fs::read_link(e.path()).map(|p| show(&p)).unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), link)
        })
        .collect();
    assert_eq!(
        fds.keys().map(String::as_str).collect::<Vec<_>>(),
        ["0", "1", "2"],
        "{fds:#?}"
    );
    assert_eq!(fds["0"], "/dev/null");
    assert!(
        fds["1"].starts_with("pipe:") && fds["2"].starts_with("pipe:"),
        "{fds:#?}"
    );
    assert_all_ended(&a);
}

#[test]
fn one_dyno_cannot_see_or_signal_another() {
    let a = TestAgent::start("");
    let slug = a.slug("sig", &[]);
    let b = start(&a, "worker.1", &slug, SLEEPER, &[]);
    let b_pid = pid_of(&b);
    let script = format!(
        "kill -0 {b_pid}; echo kill0=$?; kill -9 {b_pid}; echo kill9=$?; \
         kill -0 {agent}; echo agent=$?; [ -e /proc/{b_pid} ]; echo proc=$?",
        agent = a.agent_pid()
    );
    let (code, out) = run_sh(&a, &slug, &script);
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    for k in ["kill0", "kill9", "agent", "proc"] {
        assert_ne!(get(&m, k, &out), "0", "{k}: {out}");
    }
    assert!(
        out.contains("No such process"),
        "another dyno's pid exists inside: {out}"
    );
    assert!(alive(b_pid), "the other dyno was killed");
    let b2 = a.dyno("shop", "worker.1").unwrap();
    assert_eq!((b2["state"].as_str(), b2["restarts"].as_u64()), (Some("up"), Some(0)));
    assert_all_ended(&a);
}

#[test]
fn hostname_is_the_dyno_id() {
    let a = TestAgent::start("");
    let slug = a.slug("host", &[]);
    let host_before = nix::unistd::gethostname().unwrap();
    let d = start(
        &a,
        "worker.1",
        &slug,
        "echo hostname=$(hostname); echo uts=$(cat /proc/sys/kernel/hostname); exec sleep 600",
        &[],
    );
    let id = d["id"].as_str().expect("id").to_string();
    assert!(!id.is_empty());
    let logs = wait_for("the hostname in the log", || {
        let logs = dyno_logs(&a, "worker.1");
        logs.iter().any(|l| l.starts_with("uts=")).then_some(logs)
    });
    let m = kv(&logs.join("\n"));
    assert_eq!(m.get("hostname").map(String::as_str), Some(id.as_str()), "{logs:#?}");
    assert_eq!(m.get("uts").map(String::as_str), Some(id.as_str()), "{logs:#?}");
    assert_eq!(
        nix::unistd::gethostname().unwrap(),
        host_before,
        "the host's hostname changed"
    );
    assert_all_ended(&a);
}

/// Bytes available to unprivileged users on the filesystem of `path`.
fn host_free(path: &Path) -> u64 {
    let s = nix::sys::statvfs::statvfs(path).expect("statvfs");
    s.blocks_available() as u64 * s.fragment_size() as u64
}

#[test]
fn disk_writes_are_bounded_and_spare_the_host() {
    const MIB: u64 = 1024 * 1024;
    let a = TestAgent::start("disk_limit = 8388608");
    let slug = a.slug("disk", &[]);

    // The host's free space must not drop by anything like the 32 MiB the
    // dyno tries to write. Other processes share the disk: a real leak drops
    // it on every attempt, noise does not.
    let mut drops = Vec::new();
    for _ in 0..3 {
        let before = host_free(&a.state);
        let (code, out) = run_argv(
            &a,
            &slug,
            &[],
            &["dd", "if=/dev/zero", "of=/tmp/big", "bs=1M", "count=32"],
        );
        let after = host_free(&a.state);
        assert_ne!(code, 0, "dd of 32 MiB succeeded with an 8 MiB bound: {out}");
        assert!(out.contains("No space left on device"), "{out}");
        drops.push(before.saturating_sub(after));
        if before.saturating_sub(after) < 16 * MIB {
            break;
        }
    }
    assert!(
        drops.iter().any(|d| *d < 16 * MIB),
        "host free space dropped by {drops:?} bytes"
    );

    // /app and /tmp share the bound.
    let (code, out) = run_sh(
        &a,
        &slug,
        "dd if=/dev/zero of=/tmp/a bs=1M count=5 2>/dev/null && echo tmp=ok; \
         dd if=/dev/zero of=/app/b bs=1M count=5 && echo app=ok; \
         echo size=$(df -k /tmp | tail -1 | awk '{print $2}')",
    );
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    assert_eq!(m.get("tmp").map(String::as_str), Some("ok"), "{out}");
    assert_eq!(
        m.get("app"),
        None,
        "10 MiB written to /app and /tmp with an 8 MiB bound: {out}"
    );
    assert!(out.contains("No space left on device"), "{out}");
    assert_eq!(get(&m, "size", &out), "8192", "{out}");
    assert_all_ended(&a);
}

/// `env` of a dyno's log, as a map.
fn logged_env(a: &TestAgent, name: &str) -> BTreeMap<String, String> {
    let logs = wait_log_lines(a, name, "env-end", 1);
    logs.iter()
        .filter_map(|l| l.strip_prefix("env:"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Variables the shell adds on its own.
const SHELL_VARS: &[&str] = &["PWD", "SHLVL", "OLDPWD", "_"];

fn without_shell_vars(mut env: BTreeMap<String, String>) -> BTreeMap<String, String> {
    env.retain(|k, _| !SHELL_VARS.contains(&k.as_str()));
    env
}

#[test]
fn environment_is_the_config_vars_plus_the_documented_ones() {
    let a = TestAgent::start("");
    let slug = a.slug("env", &[("index.html", "ok\n")]);
    let print = "env | sed 's/^/env:/'; echo env-end";
    let path = "/app/bin:/usr/local/bin:/usr/bin:/bin";
    let vars = ["--env", "K=V", "--env", "SPACED=a b  c"];

    let web = start(
        &a,
        "web.1",
        &slug,
        &format!("{print}; exec busybox httpd -f -p $PORT -h ."),
        &vars,
    );
    let port = web["port"].as_u64().expect("web port").to_string();
    let env = without_shell_vars(logged_env(&a, "web.1"));
    let web_run = web["run_id"].as_str().expect("run id").to_string();
    let release = web["release"].as_str().expect("release").to_string();
    let mut want: BTreeMap<String, String> = [
        ("DYNO", "web.1"),
        ("HOME", "/app"),
        ("PATH", path),
        ("PORT", port.as_str()),
        ("K", "V"),
        ("SPACED", "a b  c"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    // Heroku's dyno metadata: the app, the run's id, the release.
    want.insert("HEROKU_APP_NAME".into(), "shop".into());
    want.insert("HEROKU_DYNO_ID".into(), web_run);
    want.insert("HEROKU_RELEASE_VERSION".into(), release.clone());
    assert_eq!(env, want, "web.1");

    let worker = start(&a, "worker.1", &slug, &format!("{print}; exec sleep 600"), &vars);
    let env = without_shell_vars(logged_env(&a, "worker.1"));
    let mut want_worker = want.clone();
    want_worker.remove("PORT");
    want_worker.insert("DYNO".into(), "worker.1".into());
    want_worker.insert(
        "HEROKU_DYNO_ID".into(),
        worker["run_id"].as_str().expect("run id").into(),
    );
    assert_eq!(env, want_worker, "worker.1: no PORT");

    // A one-off: the same, DYNO=run.N.
    let (code, out) = run_argv(&a, &slug, &["--env", "K=one-off"], &["env"]);
    assert_eq!(code, 0, "{out}");
    let mut env = without_shell_vars(
        out.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    );
    assert_eq!(env.remove("HEROKU_APP_NAME").as_deref(), Some("shop"), "{out}");
    assert_eq!(env.remove("HEROKU_RELEASE_VERSION"), Some(release.clone()), "{out}");
    let run_id = env.remove("HEROKU_DYNO_ID").unwrap_or_default();
    assert!(
        run_id.ends_with(".1") && run_id.len() > 30,
        "HEROKU_DYNO_ID {run_id:?}: {out}"
    );
    let want_run: BTreeMap<String, String> = [("DYNO", "run.1"), ("HOME", "/app"), ("PATH", path), ("K", "one-off")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(env, want_run, "run.1: {out}");
    let (_, pwd) = run_argv(&a, &slug, &[], &["pwd"]);
    assert_eq!(pwd, "/app\n");
    assert_all_ended(&a);
}

#[test]
fn profile_scripts_are_sourced_before_the_command() {
    let a = TestAgent::start("");
    let slug = a.slug(
        "prof",
        &[
            (".profile.d/a.sh", "export A=1\nexport ORDER=profile.d\n"),
            (".profile.d/b.sh", "export PATH=\"/app/vendor:$PATH\"\n"),
            (".profile", "export B=2\nexport ORDER=\"$ORDER,profile\"\n"),
        ],
    );
    let (code, out) = run_sh(&a, &slug, "echo ab=$A$B; echo order=$ORDER; echo path=$PATH");
    assert_eq!(code, 0, "{out}");
    let m = kv(&out);
    assert_eq!(get(&m, "ab", &out), "12", "{out}");
    assert_eq!(get(&m, "order", &out), "profile.d,profile", "{out}");
    assert_eq!(
        get(&m, "path", &out),
        "/app/vendor:/app/bin:/usr/local/bin:/usr/bin:/bin",
        "{out}"
    );

    // For a dyno started with a command, too.
    let d = start(&a, "worker.1", &slug, "echo ab=$A$B; exec sleep 600", &[]);
    assert!(d["pid"].is_u64());
    wait_log_lines(&a, "worker.1", "ab=12", 1);
    assert_all_ended(&a);
}

/// A dyno record written by the agent before dynos were jailed has no `uid`.
/// After an upgrade, such a dyno must still run unprivileged, with a uid of
/// its own.
#[test]
fn a_dyno_recorded_before_the_jail_still_runs_unprivileged() {
    let mut a = TestAgent::start("");
    let slug = a.slug("legacy", &[]);
    let d = start(&a, "worker.1", &slug, SLEEPER, &[]);
    let p1 = pid_of(&d);
    assert_ne!(host_uid(p1), 0);

    // The record as the previous agent version wrote it: without `uid`.
    a.kill9();
    let record = a.state.join("dynos/shop/worker.1.json");
    let mut rec: Value = serde_json::from_str(&std::fs::read_to_string(&record).expect("record")).expect("json");
    assert!(rec.as_object_mut().expect("object").remove("uid").is_some(), "{rec}");
    std::fs::write(&record, serde_json::to_vec_pretty(&rec).unwrap()).unwrap();
    a.spawn();
    a.wait_state("shop", "worker.1", "up");

    // Its next run, and a new dyno next to it.
    a.ctl_ok(&["restart", "--app", "shop", "worker.1"]);
    let d2 = a.wait_dyno("shop", "worker.1", "a new run up", |d| {
        d["state"] == "up" && d["pid"].is_u64() && pid_of(d) != p1
    });
    let w2 = start(&a, "worker.2", &slug, SLEEPER, &[]);
    let (u1, u2) = (host_uid(pid_of(&d2)), host_uid(pid_of(&w2)));
    assert_ne!(u1, 0, "the upgraded dyno runs as root (uid 0)");
    assert!(UIDS.contains(&u1), "uid {u1} outside uid_range");
    assert_ne!(u1, u2, "two live dynos share uid {u1}");
    assert_all_ended(&a);
}

/// A dyno has no capabilities and cannot mount: nor may it get them back in
/// a user namespace of its own, where it would be root with every capability,
/// free to mount filesystems (a tmpfs outside its disk bound) and chroot.
#[test]
fn capabilities_cannot_be_regained_in_a_user_namespace() {
    let a = TestAgent::start("disk_limit = 8388608");
    let slug = a.slug("userns", &[]);
    let (code, out) = run_sh(
        &a,
        &slug,
        "unshare -U -r true; echo userns=$?; \
         unshare -U -r -m sh -c 'echo inner=$(id -u):$(grep CapEff /proc/self/status | tr -d \"\\t \"); \
           mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted=yes; \
           dd if=/dev/zero of=/tmp/m/big bs=1M count=32 2>/dev/null && echo wrote32=yes; \
           mkdir -p /tmp/r && chroot /tmp/r /x 2>&1 | grep -q \"Operation not permitted\" || echo chroot=yes'",
    );
    // The last command is the refused unshare.
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("Operation not permitted"), "{out}");
    let m = kv(&out);
    assert_ne!(
        get(&m, "userns", &out),
        "0",
        "a dyno created a user namespace and regained every capability in it: {out}"
    );
    for k in ["mounted", "wrote32", "chroot"] {
        assert_eq!(m.get(k), None, "{k}: {out}");
    }
    assert_no_host_mounts(&a);
}
