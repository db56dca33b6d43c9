//! The dyno's root filesystem: a new mount namespace in which the stack is
//! bind-mounted read-only as `/`, the slug's `app/` is the lower layer of an
//! overlay on `/app`, and `/tmp`, `/proc` (with host-revealing paths masked)
//! and a minimal `/dev` are mounted (`/app`'s upper layer, `/tmp` and
//! `/dev/shm` all on one tmpfs of `disk_limit` bytes); then `pivot_root` leaves nothing of the
//! host reachable. Runs in the dyno's init, single-threaded.

use std::ffi::CString;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};

use super::JailPlan;
use crate::os::cvt;
use crate::os::resolve::{fd_path, open_dir_no_symlinks};

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

/// Gives the directory `dir` and everything under it to `uid:gid`, walking
/// by fd: no symlink is followed, not even one that replaced a directory
/// while the walk ran.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open(dir, flags, Mode::empty())?;
    chown_dir(fd, uid, gid)
}

fn chown_dir(fd: OwnedFd, uid: u32, gid: u32) -> io::Result<()> {
    use nix::dir::{Dir, Type};
    let (owner, group) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    nix::unistd::fchown(&fd, owner, group)?;
    let mut dir = Dir::from_fd(fd)?;
    let mut entries = Vec::new();
    for entry in dir.iter() {
        let entry = entry?;
        let name = entry.file_name().to_owned();
        if name.as_bytes() != b"." && name.as_bytes() != b".." {
            entries.push((name, entry.file_type()));
        }
    }
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    for (name, kind) in entries {
        let kind = match kind {
            Some(k) => k,
            None => match nix::sys::stat::fstatat(&dir, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?.st_mode
                & libc::S_IFMT
            {
                libc::S_IFDIR => Type::Directory,
                _ => Type::File,
            },
        };
        if kind == Type::Directory {
            chown_dir(
                nix::fcntl::openat(&dir, name.as_c_str(), flags, Mode::empty())?,
                uid,
                gid,
            )?;
        } else {
            nix::unistd::fchownat(&dir, name.as_c_str(), owner, group, AtFlags::AT_SYMLINK_NOFOLLOW)?;
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
pub(super) fn build_root(plan: &JailPlan) -> Result<(), (i32, io::Error)> {
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
    // The layers go by fd (`/proc/self/fd/N`): no path, from a request or
    // from the configuration, ever reaches the option string (overlayfs
    // splits it on `,` and `:`). The slug's `app/` is a real path (the agent
    // resolved it); a symlink put anywhere on it since then is refused.
    let layers = (|| {
        let lower = open_dir_no_symlinks(&plan.app)?;
        let upper = std::fs::File::open(&upper)?;
        let work = std::fs::File::open(&work)?;
        Ok::<_, io::Error>((lower, upper, work))
    })()
    .map_err(at(6))?;
    let lower = format!(
        "lowerdir={},upperdir={},workdir={}",
        fd_path(&layers.0).display(),
        fd_path(&layers.1).display(),
        fd_path(&layers.2).display()
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
    drop(layers);
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
        // /dev/shm is rw/shm, on the run's tmpfs: it shares disk_limit with
        // /app and /tmp instead of being a tmpfs of its own beside them.
        std::fs::create_dir(dev.join("shm"))?;
        bind(&shm, &dev.join("shm"), MS_NOSUID | MS_NODEV | MS_NOEXEC)?;
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

    if let Some(resolv) = &plan.resolv_conf {
        let target = root.join("etc/resolv.conf");
        if target.is_file() {
            bind(resolv, &target, MS_RDONLY | MS_NOSUID | MS_NODEV).map_err(at(17))?;
        }
    }

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
