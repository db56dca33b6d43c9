//! The syscall boundary: every raw libc call of the agent and the shim lives
//! here, each `unsafe` block with the reason it is sound. The rest of the code
//! sees `Result`s and owned fds, never an errno.
//!
//! Today a dyno's command is started in its own session in the slug's `app/`
//! directory ([`spawn_command`]); the namespaces, `pivot_root`, credentials and
//! capabilities of the jail will be set up here as well, between fork and exec.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Everything the child needs between fork and exec, prepared before the fork
/// so that the child only makes syscalls (no allocation, no locks).
pub struct ExecPlan {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    workdir: CString,
}

impl ExecPlan {
    /// `/bin/sh -c <command>` with exactly `env`, run in `workdir`.
    pub fn shell(command: &str, env: &[(String, String)], workdir: &Path) -> io::Result<ExecPlan> {
        let c = |b: &[u8]| {
            CString::new(b)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in command, environment or path"))
        };
        Ok(ExecPlan {
            path: c(b"/bin/sh")?,
            argv: vec![c(b"sh")?, c(b"-c")?, c(command.as_bytes())?],
            envp: env
                .iter()
                .map(|(k, v)| c(format!("{k}={v}").as_bytes()))
                .collect::<io::Result<_>>()?,
            workdir: c(workdir.as_os_str().as_bytes())?,
        })
    }
}

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// A pipe whose both ends are close-on-exec: (read, write).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both fds are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Replaces `target` (0, 1 or 2) with a duplicate of `fd`.
pub fn redirect(fd: &OwnedFd, target: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on an fd we own onto a standard stream number; no memory involved.
    cvt(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Starts a new session with the calling process as its leader.
pub fn new_session() -> io::Result<()> {
    // SAFETY: setsid takes no arguments and touches no memory.
    cvt(unsafe { libc::setsid() }).map(drop)
}

/// Forks; returns `Some(child pid)` in the parent and `None` in the child.
///
/// # Safety
/// The caller must be single-threaded (the shim is), or the child must only
/// make async-signal-safe calls until it execs or exits.
pub unsafe fn fork() -> io::Result<Option<u32>> {
    // SAFETY: forwarded to the caller's contract above.
    match cvt(unsafe { libc::fork() })? {
        0 => Ok(None),
        pid => Ok(Some(pid as u32)),
    }
}

/// Leaves the process at once, without running destructors or atexit hooks.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is always safe to call; it does not return.
    unsafe { libc::_exit(code) }
}

/// Reports a failed step (and errno) of a child between fork and exec on its
/// status pipe, then exits. Async-signal-safe.
fn exec_failed(status_fd: RawFd, step: i32) -> ! {
    // SAFETY: reads errno, writes 8 bytes from the stack, exits; no allocation.
    unsafe {
        let msg = [step, *libc::__errno_location()];
        libc::write(status_fd, msg.as_ptr().cast(), std::mem::size_of_val(&msg));
        libc::_exit(127)
    }
}

/// Gives the calling process default signal dispositions and an empty signal
/// mask: ignored signals would otherwise stay ignored across exec.
/// Async-signal-safe: only raw syscalls on the stack.
fn default_signals() {
    // SAFETY: signal, sigemptyset and sigprocmask on a stack-local set.
    unsafe {
        for sig in 1..libc::SIGRTMIN() {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Forks and execs `plan` in a new session with the given standard streams.
/// Returns the child's pid once the exec succeeded, or the exec's error (read
/// from a close-on-exec status pipe).
///
/// Must be called from a single-threaded process (the shim).
pub fn spawn_command(plan: &ExecPlan, stdin: &OwnedFd, stdout: &OwnedFd, stderr: &OwnedFd) -> io::Result<u32> {
    let (status_r, status_w) = pipe()?;
    let argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let fds = [stdin.as_raw_fd(), stdout.as_raw_fd(), stderr.as_raw_fd()];
    let status_fd = status_w.as_raw_fd();

    // SAFETY: the shim is single-threaded; the child below only makes raw
    // syscalls on memory prepared before the fork, then execs or _exits.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: child of fork: only async-signal-safe syscalls on
        // pre-built, NUL-terminated buffers and arrays; never returns.
        unsafe {
            let fail = |step: i32| exec_failed(status_fd, step);
            if libc::setsid() < 0 {
                fail(1);
            }
            default_signals();
            for (target, fd) in fds.iter().enumerate() {
                if libc::dup2(*fd, target as libc::c_int) < 0 {
                    fail(2);
                }
            }
            if libc::chdir(plan.workdir.as_ptr()) < 0 {
                fail(3);
            }
            // Every fd above the standard three closes at exec: nothing of
            // the shim or the agent leaks into the dyno.
            if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) < 0 {
                fail(4);
            }
            libc::execve(plan.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
            fail(5);
        }
    }
    drop(status_w);
    let mut msg = [0u8; 8];
    let n = read_full(&status_r, &mut msg)?;
    if n == 0 {
        return Ok(pid as u32);
    }
    // The child failed before exec and has exited: reap it.
    let _ = wait_exit(pid as u32);
    let step = i32::from_ne_bytes(msg[0..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(msg[4..8].try_into().expect("4 bytes"));
    let what = match step {
        1 => "setsid",
        2 => "redirecting standard streams",
        3 => "chdir to the app directory",
        4 => "closing inherited fds",
        _ => "exec /bin/sh",
    };
    Err(io::Error::new(
        io::Error::from_raw_os_error(errno).kind(),
        format!("{what}: {}", io::Error::from_raw_os_error(errno)),
    ))
}

fn read_full(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reads into the unfilled tail of `buf`, within its bounds.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        match n {
            0 => break,
            n if n < 0 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            n => got += n as usize,
        }
    }
    Ok(got)
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

/// Whether child `pid` has exited, without reaping it (so that its pid and
/// process group stay reserved). `None` while it runs.
pub fn peek_exit(pid: u32) -> io::Result<Option<ExitStatus>> {
    // SAFETY: siginfo_t is plain data; zeroed is a valid value for waitid to fill.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid siginfo_t owned by this frame.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        break;
    }
    // SAFETY: waitid filled `info` (or left si_pid 0 when nothing exited).
    let (child, code, status) = unsafe { (info.si_pid(), info.si_code, info.si_status()) };
    if child == 0 {
        return Ok(None);
    }
    Ok(Some(if code == libc::CLD_EXITED {
        ExitStatus::Code(status)
    } else {
        ExitStatus::Signal(status)
    }))
}

/// Reaps child `pid`, blocking until it has exited.
pub fn wait_exit(pid: u32) -> io::Result<ExitStatus> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int for waitpid to fill.
        let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
        if r >= 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(if libc::WIFEXITED(status) {
        ExitStatus::Code(libc::WEXITSTATUS(status))
    } else {
        ExitStatus::Signal(libc::WTERMSIG(status))
    })
}

/// Sends `sig` to every process of the process group `pgid`.
pub fn kill_group(pgid: u32, sig: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal process group 0 or 1",
        ));
    }
    // SAFETY: kill with a negative pid signals a process group; no memory involved.
    cvt(unsafe { libc::kill(-(pgid as libc::pid_t), sig) }).map(drop)
}

/// Sends `sig` to one process.
pub fn kill_pid(pid: u32, sig: i32) -> io::Result<()> {
    if pid <= 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "refusing to signal pid 0 or 1",
        ));
    }
    // SAFETY: kill on a positive pid; no memory involved.
    cvt(unsafe { libc::kill(pid as libc::pid_t, sig) }).map(drop)
}

/// A pidfd for `pid`: readable once the process has exited, immune to pid reuse.
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0u32) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Waits until the process of `pidfd` has exited.
pub async fn pidfd_wait(pidfd: OwnedFd) -> io::Result<()> {
    // SAFETY: the AsyncFd owns `pidfd`, so the fd stays open (and is not
    // reused) for as long as it is registered with the reactor.
    let afd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)?;
    let _ready = afd.readable().await?;
    Ok(())
}

/// The start time of `pid` in clock ticks since boot (field 22 of
/// `/proc/PID/stat`): with the pid, it identifies a process across pid reuse.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// The arguments of `pid` as in `/proc/PID/cmdline`.
pub fn cmdline(pid: u32) -> Option<Vec<Vec<u8>>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(<[u8]>::to_vec)
            .collect(),
    )
}

/// Whether `pid` lives in the caller's pid namespace (a dyno's init, a fork
/// of its shim with the same command line, does not).
pub fn in_my_pid_namespace(pid: u32) -> bool {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    ns(&pid.to_string()).is_some_and(|n| Some(n) == ns("self"))
}

/// Every pid currently in `/proc`.
pub fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|d| d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// Sets the calling process's `oom_score_adj`.
pub fn set_oom_score_adj(value: i32) -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", value.to_string())
}

/// `true` when `arg` equals `s`.
pub fn arg_is(arg: &[u8], s: &str) -> bool {
    OsStr::from_bytes(arg) == OsStr::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_of_self_is_stable() {
        let me = std::process::id();
        let a = start_ticks(me).expect("own stat");
        assert_eq!(Some(a), start_ticks(me));
        assert!(start_ticks(u32::MAX).is_none());
    }

    #[test]
    fn exec_plan_rejects_nul_bytes() {
        assert!(ExecPlan::shell("echo\0hi", &[], Path::new("/")).is_err());
        assert!(ExecPlan::shell("echo hi", &[("K".into(), "v\0".into())], Path::new("/")).is_err());
        assert!(ExecPlan::shell("echo hi", &[("K".into(), "v".into())], Path::new("/")).is_ok());
    }

    /// Installs the dyno's seccomp filter in a forked child and reports what
    /// `unshare(flags)` and `clone3` return there.
    fn under_the_filter(flags: libc::c_int) -> (i32, i32) {
        let filter = user_namespace_filter();
        let (r, w) = pipe().unwrap();
        // SAFETY: the child only makes raw syscalls on prepared memory, then _exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let fprog = libc::sock_fprog {
                    len: filter.len() as u16,
                    filter: filter.as_ptr() as *mut _,
                };
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
                if libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const _) < 0 {
                    libc::_exit(100);
                }
                let errno = || *libc::__errno_location();
                let a = if libc::unshare(flags) < 0 { errno() } else { 0 };
                let b = if libc::syscall(libc::SYS_clone3, std::ptr::null::<u8>(), 0usize) < 0 {
                    errno()
                } else {
                    0
                };
                let msg = [a, b];
                libc::write(w.as_raw_fd(), msg.as_ptr().cast(), 8);
                libc::_exit(0);
            }
        }
        drop(w);
        let mut buf = [0u8; 8];
        assert_eq!(
            read_full(&r, &mut buf).unwrap(),
            8,
            "the child could not install the filter"
        );
        assert_eq!(wait_exit(pid as u32).unwrap(), ExitStatus::Code(0));
        (
            i32::from_ne_bytes(buf[..4].try_into().unwrap()),
            i32::from_ne_bytes(buf[4..].try_into().unwrap()),
        )
    }

    #[test]
    fn seccomp_filter_refuses_user_namespaces_only() {
        let (newuser, clone3) = under_the_filter(libc::CLONE_NEWUSER);
        assert_eq!(newuser, libc::EPERM);
        assert_eq!(clone3, libc::ENOSYS, "clone3 must fall back to clone");
        let (newuser_and_ns, _) = under_the_filter(libc::CLONE_NEWUSER | libc::CLONE_NEWNS);
        assert_eq!(newuser_and_ns, libc::EPERM);
        // Other flags pass the filter (and then succeed or fail on capabilities).
        let (files, _) = under_the_filter(libc::CLONE_FILES);
        assert_eq!(files, 0);
    }

    #[test]
    fn a_failed_step_before_exec_is_reported_by_name() {
        let plan = ExecPlan::shell("true", &[], Path::new("/nonexistent-app-dir")).unwrap();
        let null = OwnedFd::from(std::fs::File::open("/dev/null").unwrap());
        let err = spawn_command(&plan, &null, &null, &null).unwrap_err();
        assert!(err.to_string().starts_with("chdir to the app directory: "), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let ok = ExecPlan::shell("exit 3", &[], Path::new("/")).unwrap();
        let pid = spawn_command(&ok, &null, &null, &null).unwrap();
        assert_eq!(wait_exit(pid).unwrap(), ExitStatus::Code(3));
    }

    #[test]
    fn refuses_to_signal_init_or_everyone() {
        assert!(kill_group(1, libc::SIGTERM).is_err());
        assert!(kill_pid(0, libc::SIGTERM).is_err());
    }
}

// ---------------------------------------------------------------------------
// The jail: namespaces, mounts, pivot_root, credentials, capabilities
// ---------------------------------------------------------------------------

/// What a jailed run looks like; everything prepared before any fork.
#[derive(Clone, Debug)]
pub struct JailPlan {
    /// Empty directory the new root is mounted on (`<run-dir>/root`).
    pub root: std::path::PathBuf,
    /// Empty directory the run's writable tmpfs is mounted on (`<run-dir>/rw`).
    pub rw: std::path::PathBuf,
    /// The stack image, bind-mounted read-only as `/`.
    pub stack: std::path::PathBuf,
    /// The slug's unpacked `app/`: the read-only lower layer of `/app`.
    pub app: std::path::PathBuf,
    /// Bytes a dyno may write (`/app` changes and `/tmp` together).
    pub disk_bytes: u64,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub nofile: u64,
}

/// Messages from the dyno's init to the shim, on the report pipe: three
/// native-endian i32s each.
pub mod report {
    /// The command was exec'd: `[STARTED, 0, 0]`.
    pub const STARTED: i32 = 0;
    /// Setting up the jail failed: `[FAILED, step, errno]`.
    pub const FAILED: i32 = 1;
    /// The command exited: `[EXITED, 0, code]` or `[EXITED, 1, signal]`.
    pub const EXITED: i32 = 2;
}

/// Steps of the jail set-up, named in errors.
pub fn step_name(step: i32) -> &'static str {
    match step {
        1 => "unshare(mount, uts, ipc)",
        2 => "making / private",
        3 => "mounting the run's tmpfs",
        4 => "preparing the writable layer",
        5 => "bind-mounting the stack read-only",
        6 => "mounting /app (overlayfs)",
        7 => "giving /app to the dyno's uid",
        8 => "mounting /tmp",
        9 => "mounting /proc",
        10 => "masking /proc paths",
        11 => "mounting /dev",
        12 => "setting the hostname",
        13 => "pivot_root",
        14 => "forking the command",
        20 => "setsid",
        21 => "setting rlimits",
        22 => "chdir /app",
        23 => "dropping capabilities",
        24 => "switching to the dyno's uid/gid",
        25 => "no_new_privs",
        26 => "redirecting standard streams",
        27 => "closing inherited fds",
        28 => "exec /bin/sh",
        29 => "installing the seccomp filter",
        _ => "setting up the jail",
    }
}

fn c(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let src = src.map(c).transpose()?;
    let target = c(target)?;
    let fstype = fstype.map(|f| CString::new(f).expect("static fs type"));
    let data = data
        .map(|d| CString::new(d).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in mount data")))
        .transpose()?;
    let ptr = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
    // SAFETY: every pointer is either null or a NUL-terminated string that
    // outlives the call.
    cvt(unsafe { libc::mount(ptr(&src), target.as_ptr(), ptr(&fstype), flags, ptr(&data).cast()) }).map(drop)
}

fn bind(src: &Path, target: &Path, extra: libc::c_ulong) -> io::Result<()> {
    mount(Some(src), target, None, libc::MS_BIND | libc::MS_REC, None)?;
    if extra != 0 {
        mount(None, target, None, libc::MS_BIND | libc::MS_REMOUNT | extra, None)?;
    }
    Ok(())
}

fn mknod(path: &Path, major: u32, minor: u32) -> io::Result<()> {
    let p = c(path)?;
    // SAFETY: `p` is a NUL-terminated path; makedev only computes a number.
    cvt(unsafe { libc::mknod(p.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(major, minor)) })?;
    // mknod honours the umask; devices must be usable by the dyno.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            chown_tree(&path, uid, gid)?;
        } else {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid))?;
        }
    }
    Ok(())
}

/// Paths of a fresh `/proc` that leak host information: masked with /dev/null.
const PROC_MASKED: &[&str] = &[
    "kcore",
    "keys",
    "timer_list",
    "sched_debug",
    "latency_stats",
    "timer_stats",
    "kallsyms",
];
/// Directories of `/proc` hidden behind an empty read-only tmpfs.
const PROC_HIDDEN: &[&str] = &["acpi", "scsi", "asound"];
/// Paths of `/proc` made read-only.
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

/// Builds the dyno's filesystem in a new mount namespace and pivots into it.
/// Runs in the dyno's init (PID 1 of its pid namespace), single-threaded.
fn build_root(plan: &JailPlan) -> Result<(), (i32, io::Error)> {
    use libc::{MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_PRIVATE, MS_RDONLY, MS_REC};
    let at = |step: i32| move |e: io::Error| (step, e);
    // SAFETY: unshare takes flags only.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWNS | libc::CLONE_NEWUTS | libc::CLONE_NEWIPC) }).map_err(at(1))?;
    mount(None, Path::new("/"), None, MS_REC | MS_PRIVATE, None).map_err(at(2))?;

    let rw = &plan.rw;
    mount(
        None,
        rw,
        Some("tmpfs"),
        MS_NOSUID | MS_NODEV,
        Some(&format!("size={},mode=0755", plan.disk_bytes)),
    )
    .map_err(at(3))?;
    let (upper, work, tmp, shm) = (rw.join("upper"), rw.join("work"), rw.join("tmp"), rw.join("shm"));
    (|| {
        std::fs::create_dir(&upper)?;
        std::fs::create_dir(&work)?;
        for dir in [&tmp, &shm] {
            std::fs::create_dir(dir)?;
            std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))?;
        }
        std::os::unix::fs::chown(&upper, Some(plan.uid), Some(plan.gid))
    })()
    .map_err(at(4))?;

    let root = &plan.root;
    bind(&plan.stack, root, MS_RDONLY | MS_NOSUID | MS_NODEV).map_err(at(5))?;

    let app = root.join("app");
    let lower = format!(
        "lowerdir={},upperdir={},workdir={}",
        plan.app.display(),
        upper.display(),
        work.display()
    );
    // metacopy: the chown below copies up metadata only, not file data.
    mount(
        None,
        &app,
        Some("overlay"),
        MS_NOSUID | MS_NODEV,
        Some(&format!("{lower},metacopy=on")),
    )
    .or_else(|_| mount(None, &app, Some("overlay"), MS_NOSUID | MS_NODEV, Some(&lower)))
    .map_err(at(6))?;
    chown_tree(&app, plan.uid, plan.gid).map_err(at(7))?;

    bind(&tmp, &root.join("tmp"), MS_NOSUID | MS_NODEV).map_err(at(8))?;

    let proc_ = root.join("proc");
    mount(None, &proc_, Some("proc"), MS_NOSUID | MS_NODEV | MS_NOEXEC, None).map_err(at(9))?;
    (|| {
        for p in PROC_MASKED {
            let target = proc_.join(p);
            if target.exists() {
                bind(Path::new("/dev/null"), &target, 0)?;
            }
        }
        for p in PROC_HIDDEN {
            let target = proc_.join(p);
            if target.is_dir() {
                mount(
                    None,
                    &target,
                    Some("tmpfs"),
                    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                    Some("size=0"),
                )?;
            }
        }
        for p in PROC_READ_ONLY {
            let target = proc_.join(p);
            if target.exists() {
                bind(&target, &target, MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)?;
            }
        }
        Ok(())
    })()
    .map_err(at(10))?;

    let dev = root.join("dev");
    (|| {
        mount(
            None,
            &dev,
            Some("tmpfs"),
            MS_NOSUID | MS_NOEXEC,
            Some("mode=0755,size=65536k"),
        )?;
        for (name, major, minor) in [
            ("null", 1, 3),
            ("zero", 1, 5),
            ("full", 1, 7),
            ("random", 1, 8),
            ("urandom", 1, 9),
            ("tty", 5, 0),
        ] {
            mknod(&dev.join(name), major, minor)?;
        }
        std::fs::create_dir(dev.join("pts"))?;
        mount(
            None,
            &dev.join("pts"),
            Some("devpts"),
            MS_NOSUID | MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
        std::os::unix::fs::symlink("pts/ptmx", dev.join("ptmx"))?;
        std::fs::create_dir(dev.join("shm"))?;
        mount(
            None,
            &dev.join("shm"),
            Some("tmpfs"),
            MS_NOSUID | MS_NODEV | MS_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;
        for (name, target) in [
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            std::os::unix::fs::symlink(target, dev.join(name))?;
        }
        Ok(())
    })()
    .map_err(at(11))?;

    // SAFETY: the pointer and length describe the hostname's bytes.
    cvt(unsafe { libc::sethostname(plan.hostname.as_ptr().cast(), plan.hostname.len()) }).map_err(at(12))?;

    (|| {
        let dot = CString::new(".").expect("static");
        std::env::set_current_dir(root)?;
        // pivot_root(".", "."): the old root ends up on top of the new one;
        // detaching it leaves nothing of the host reachable.
        // SAFETY: both arguments are the static "." string.
        cvt(unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) } as libc::c_int)?;
        // SAFETY: "." is a NUL-terminated string.
        cvt(unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) })?;
        std::env::set_current_dir("/")
    })()
    .map_err(at(13))?;
    Ok(())
}

fn send_report(fd: RawFd, msg: [i32; 3]) {
    // SAFETY: writes the 12 bytes of `msg`; a failed write is ignored (the
    // shim then learns of the end from init's exit status).
    unsafe { libc::write(fd, msg.as_ptr().cast(), std::mem::size_of_val(&msg)) };
}

/// The architecture the seccomp filter is built for (`AUDIT_ARCH_*`) and the
/// syscall numbers it looks at.
#[cfg(target_arch = "x86_64")]
const SECCOMP_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const SECCOMP_ARCH: u32 = 0xc000_00b7;

/// A seccomp filter that refuses new user namespaces (in which a dyno would
/// regain every capability: mounts, chroot, unbounded tmpfs): `unshare` and
/// `clone` with `CLONE_NEWUSER` fail with EPERM; `clone3`, whose flags a
/// filter cannot read, fails with ENOSYS so that libc falls back to `clone`.
/// A foreign architecture's syscalls kill the process.
fn user_namespace_filter() -> [libc::sock_filter; 14] {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;
    const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    /// x32 syscalls carry x86_64's audit arch; their numbers have this bit.
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let errno = |e: i32| libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA);
    let op = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // struct seccomp_data: nr at 0, arch at 4, args[0] at 16 (low half first).
    // Jumps are relative to the next instruction and only go forward.
    [
        /* 0 */ op(LD_W_ABS, 0, 0, 4),
        /* 1 */ op(JEQ, 1, 0, SECCOMP_ARCH), // -> 3, else 2
        /* 2 */ op(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
        /* 3 */ op(LD_W_ABS, 0, 0, 0),
        /* 4 */ op(JGE, 8, 0, X32_SYSCALL_BIT), // -> 13
        /* 5 */ op(JEQ, 3, 0, libc::SYS_unshare as u32), // -> 9
        /* 6 */ op(JEQ, 2, 0, libc::SYS_clone as u32), // -> 9
        /* 7 */ op(JEQ, 0, 4, libc::SYS_clone3 as u32), // -> 8, else 12
        /* 8 */ op(RET, 0, 0, errno(libc::ENOSYS)),
        /* 9 */ op(LD_W_ABS, 0, 0, 16),
        /* 10 */ op(JSET, 0, 1, libc::CLONE_NEWUSER as u32), // -> 11, else 12
        /* 11 */ op(RET, 0, 0, errno(libc::EPERM)),
        /* 12 */ op(RET, 0, 0, libc::SECCOMP_RET_ALLOW),
        /* 13 */ op(RET, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ]
}

/// Drops every privilege and execs the command. Runs in the command's
/// process (a child of the dyno's init), single-threaded; never returns.
///
/// # Safety
/// Must be called in a freshly forked child of a single-threaded process.
unsafe fn exec_dropped(plan: &JailPlan, exec: &ExecPlan, streams: [RawFd; 3], status_fd: RawFd, cap_last: u32) -> ! {
    let argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = exec.envp.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let filter = user_namespace_filter();
    // SAFETY: raw syscalls on memory owned by this frame; fail() never returns.
    unsafe {
        let fail = |step: i32| exec_failed(status_fd, step);
        if libc::setsid() < 0 {
            fail(20);
        }
        let nofile = libc::rlimit {
            rlim_cur: plan.nofile,
            rlim_max: plan.nofile,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &nofile) < 0 {
            fail(21);
        }
        if libc::chdir(exec.workdir.as_ptr()) < 0 {
            fail(22);
        }
        // Empty the bounding and ambient sets while still privileged.
        for cap in 0..=cap_last {
            if libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0 {
                fail(23);
            }
        }
        if libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        ) < 0
        {
            fail(23);
        }
        let gid = plan.gid;
        if libc::setgroups(1, &gid) < 0
            || libc::setresgid(gid, gid, gid) < 0
            || libc::setresuid(plan.uid, plan.uid, plan.uid) < 0
        {
            fail(24);
        }
        // Leaving uid 0 cleared the permitted and effective sets; clear the
        // inheritable one too.
        #[repr(C)]
        struct CapHeader {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct CapData {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let mut header = CapHeader {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
            CapData {
                effective: 0,
                permitted: 0,
                inheritable: 0,
            },
        ];
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) < 0 {
            fail(23);
        }
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            fail(25);
        }
        let fprog = libc::sock_fprog {
            len: filter.len() as u16,
            filter: filter.as_ptr() as *mut libc::sock_filter,
        };
        if libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &fprog as *const libc::sock_fprog,
        ) < 0
        {
            fail(29);
        }
        for (target, fd) in streams.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) < 0 {
                fail(26);
            }
        }
        default_signals();
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) < 0 {
            fail(27);
        }
        libc::execve(exec.path.as_ptr(), argv.as_ptr(), envp.as_ptr());
        fail(28)
    }
}

/// The dyno's init: PID 1 of its pid namespace. Builds the jail, starts the
/// command, reaps every zombie, passes termination signals to every process
/// of the dyno, and reports the command's status on `report` before exiting.
///
/// # Safety
/// Must be called in a freshly forked child of a single-threaded process
/// that unshared its pid namespace before the fork.
unsafe fn run_init(
    plan: &JailPlan,
    exec: &ExecPlan,
    streams: [RawFd; 3],
    go: RawFd,
    report: RawFd,
    cap_last: u32,
) -> ! {
    // Shown by `ps` inside the dyno (the command line stays the shim's).
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { libc::prctl(libc::PR_SET_NAME, c"dyno-init".as_ptr(), 0, 0, 0) };
    // Wait until the shim has put us into the dyno's cgroup.
    let mut byte = [0u8; 1];
    // SAFETY: reads one byte into a local buffer.
    if unsafe { libc::read(go, byte.as_mut_ptr().cast(), 1) } != 1 {
        exit_now(1);
    }
    if let Err((step, e)) = build_root(plan) {
        send_report(report, [report::FAILED, step, e.raw_os_error().unwrap_or(0)]);
        exit_now(1);
    }
    // Block every signal: init takes them synchronously with sigwaitinfo.
    // SAFETY: sigset_t is plain data; the calls only fill and install it.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    unsafe {
        libc::sigfillset(&mut all);
        libc::sigprocmask(libc::SIG_SETMASK, &all, std::ptr::null_mut());
    }
    let (status_r, status_w) = match pipe() {
        Ok(p) => p,
        Err(e) => {
            send_report(report, [report::FAILED, 14, e.raw_os_error().unwrap_or(0)]);
            exit_now(1);
        }
    };
    // SAFETY: init is single-threaded.
    let cmd = unsafe { libc::fork() };
    if cmd < 0 {
        send_report(
            report,
            [
                report::FAILED,
                14,
                io::Error::last_os_error().raw_os_error().unwrap_or(0),
            ],
        );
        exit_now(1);
    }
    if cmd == 0 {
        // SAFETY: freshly forked child of single-threaded init.
        unsafe { exec_dropped(plan, exec, streams, status_w.as_raw_fd(), cap_last) }
    }
    drop(status_w);
    for fd in streams {
        // SAFETY: init's copies of the dyno's streams; the command has its own.
        unsafe { libc::close(fd) };
    }
    let mut msg = [0u8; 8];
    match read_full(&status_r, &mut msg) {
        Ok(0) => send_report(report, [report::STARTED, 0, 0]),
        _ => {
            let step = i32::from_ne_bytes(msg[0..4].try_into().expect("4 bytes"));
            let errno = i32::from_ne_bytes(msg[4..8].try_into().expect("4 bytes"));
            send_report(report, [report::FAILED, step, errno]);
        }
    }
    drop(status_r);

    let mut result: Option<[i32; 3]> = None;
    loop {
        // SAFETY: siginfo_t is plain data for sigwaitinfo to fill.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `all` and `info` are valid for the call.
        let sig = unsafe { libc::sigwaitinfo(&all, &mut info) };
        if sig < 0 {
            continue;
        }
        if sig != libc::SIGCHLD {
            if matches!(
                sig,
                libc::SIGTERM | libc::SIGINT | libc::SIGHUP | libc::SIGQUIT | libc::SIGUSR1 | libc::SIGUSR2
            ) {
                // Every process of the dyno (all of this pid namespace but init).
                // SAFETY: kill(-1) from PID 1 signals only this namespace.
                unsafe { libc::kill(-1, sig) };
            }
            continue;
        }
        loop {
            let mut status = 0;
            // SAFETY: `status` is a valid int for waitpid to fill.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            if pid == cmd {
                result = Some(if libc::WIFEXITED(status) {
                    [report::EXITED, 0, libc::WEXITSTATUS(status)]
                } else {
                    [report::EXITED, 1, libc::WTERMSIG(status)]
                });
                // The command is gone: the dyno is over. End the rest.
                // SAFETY: as above, only this namespace.
                unsafe { libc::kill(-1, libc::SIGKILL) };
            }
        }
        if let Some(r) = result {
            // Reap what the SIGKILL left behind, then report.
            loop {
                let mut status = 0;
                // SAFETY: blocking waitpid for any child; ECHILD ends the loop.
                if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
                    break;
                }
            }
            send_report(report, r);
            exit_now(0);
        }
    }
}

/// A started jailed run.
pub struct Jailed {
    /// Host pid of the dyno's init.
    pub init: u32,
}

/// Starts a jailed run: unshares a pid namespace, forks the dyno's init,
/// puts it into the cgroup (`cgroup_procs` files) and raises its
/// `oom_score_adj`, then lets it build the jail and start the command.
/// The init reports on `report_w`; `streams` become the command's 0/1/2.
///
/// Must be called from a single-threaded process (the shim).
pub fn spawn_jailed(
    plan: &JailPlan,
    exec: &ExecPlan,
    streams: [&OwnedFd; 3],
    report_w: &OwnedFd,
    cgroup_procs: &[std::path::PathBuf],
    oom_score_adj: i32,
) -> io::Result<Jailed> {
    let cap_last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let (go_r, go_w) = pipe()?;
    // SAFETY: unshare takes flags only; it affects the children forked next.
    cvt(unsafe { libc::unshare(libc::CLONE_NEWPID) })?;
    let raw = [streams[0].as_raw_fd(), streams[1].as_raw_fd(), streams[2].as_raw_fd()];
    // SAFETY: the shim is single-threaded; the child runs init, which never returns.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        drop(go_w);
        // SAFETY: freshly forked child of the single-threaded shim, first
        // process of the new pid namespace.
        unsafe { run_init(plan, exec, raw, go_r.as_raw_fd(), report_w.as_raw_fd(), cap_last) }
    }
    drop(go_r);
    let init = pid as u32;
    let admit = (|| {
        for procs in cgroup_procs {
            std::fs::write(procs, init.to_string())
                .map_err(|e| io::Error::new(e.kind(), format!("joining {}: {e}", procs.display())))?;
        }
        std::fs::write(format!("/proc/{init}/oom_score_adj"), oom_score_adj.to_string())
    })();
    if let Err(e) = admit {
        // SAFETY: kill on the pid of our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let _ = wait_exit(init);
        return Err(e);
    }
    // SAFETY: writes one byte from a static buffer to our pipe.
    cvt(unsafe { libc::write(go_w.as_raw_fd(), b"g".as_ptr().cast(), 1) } as libc::c_int)?;
    Ok(Jailed { init })
}

/// Host pids of the children of `pid` (`/proc/PID/task/PID/children`).
pub fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .map(|s| s.split_whitespace().filter_map(|p| p.parse().ok()).collect())
        .unwrap_or_default()
}
