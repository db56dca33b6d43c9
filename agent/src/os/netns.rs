//! Network namespaces kept by a file: created empty (loopback up, IPv6 off
//! for every interface added later), bind-mounted on a path so that they
//! outlive every process (the agent's included), joined by a dyno's init,
//! and removed by unmounting that path.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;

/// Creates a network namespace kept by the file `path` (which must not
/// exist): loopback is up, and interfaces added later (the CNI plugin's
/// `eth0`) have IPv6 off, so that a dyno has no IPv6 address to reach the
/// host's link-local ones with; `::1` still works.
///
/// The namespace is made on a thread of its own (unshare there changes only
/// that thread), which ends as soon as the mount holds the namespace.
pub fn create(path: &Path) -> io::Result<()> {
    let path = path.to_path_buf();
    std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || create_on_this_thread(&path))?
        .join()
        .map_err(|_| io::Error::other("the netns thread panicked"))?
}

fn create_on_this_thread(path: &Path) -> io::Result<()> {
    // The mount point: created first, so that nothing is left in a new
    // namespace when the path is taken.
    let file = nix::fcntl::open(
        path,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    drop(file);
    let made = (|| {
        nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
        // /proc/sys/net is the opening thread's namespace: this one's now.
        match std::fs::write("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1") {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        loopback_up()?;
        nix::mount::mount(
            Some("/proc/thread-self/ns/net"),
            path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
        Ok(())
    })();
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Sets `lo` up in the calling thread's network namespace.
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes plain integers; the fd it returns is owned here.
    let sock = unsafe {
        use std::os::fd::FromRawFd;
        OwnedFd::from_raw_fd(super::cvt(libc::socket(
            libc::AF_INET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            0,
        ))?)
    };
    // SAFETY: ifreq is plain data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS fills the flags of the interface named in `req`,
    // which lives on this frame.
    super::cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) })?;
    // SAFETY: the union's flags member is the one SIOCGIFFLAGS filled.
    unsafe { req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: as above; SIOCSIFFLAGS reads `req`.
    super::cvt(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) })?;
    Ok(())
}

/// Unmounts and removes the file that keeps a namespace (the namespace
/// ends once no process is in it). A path that is gone, or no longer a
/// mount, is not an error.
pub fn remove(path: &Path) -> io::Result<()> {
    match nix::mount::umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` keeps a network namespace (a bind mount of one).
pub fn is_netns(path: &Path) -> bool {
    match std::fs::File::open(path) {
        Ok(f) => {
            // SAFETY: NS_GET_NSTYPE takes no argument and returns the type of
            // the namespace the fd refers to (fails on any other file).
            let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
            kind == libc::CLONE_NEWNET
        }
        Err(_) => false,
    }
}

/// `_IO(0xb7, 0x3)`: the namespace type of an nsfs fd.
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

/// Opens a kept namespace for [`join`] (close-on-exec).
pub fn open(path: &Path) -> io::Result<OwnedFd> {
    if !is_netns(path) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} keeps no network namespace", path.display()),
        ));
    }
    Ok(nix::fcntl::open(
        path,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?)
}

/// Moves the calling thread into the namespace `fd` refers to.
pub fn join(fd: &OwnedFd) -> io::Result<()> {
    Ok(nix::sched::setns(fd, CloneFlags::CLONE_NEWNET)?)
}
