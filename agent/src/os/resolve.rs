//! Path resolution that cannot be led astray by symlinks (`openat2`):
//! opening a directory beneath another one (no `..` or symlink out of it, no
//! magic links) and a directory by a path that must hold no symlink at all;
//! the real path of an open fd; and fds named as paths for mount options.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};

/// What an opened path turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Dir,
    Symlink,
    Other,
}

fn opath() -> OFlag {
    OFlag::O_PATH | OFlag::O_CLOEXEC
}

/// Opens `root` (following symlinks: the operator's path) as an `O_PATH`
/// directory fd.
pub fn open_dir(root: &Path) -> io::Result<OwnedFd> {
    let how = OpenHow::new().flags(opath() | OFlag::O_DIRECTORY);
    Ok(openat2(nix::fcntl::AT_FDCWD, root, how)?)
}

/// Opens `rel` beneath `dir` as an `O_PATH` fd: `..` and symlinks may not
/// leave `dir` (absolute symlinks are refused), magic links (`/proc/*/fd`)
/// are refused. Unless `follow_last`, a symlink as the last component is
/// opened itself, not followed (see [`kind`]). Fails with `EXDEV` when the
/// path leaves `dir`.
pub fn open_beneath(dir: BorrowedFd<'_>, rel: &Path, follow_last: bool) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let flags = if follow_last {
        opath()
    } else {
        opath() | OFlag::O_NOFOLLOW
    };
    let how = OpenHow::new()
        .flags(flags)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(openat2(dir, rel, how)?)
}

/// Opens the directory `path` as an `O_PATH` fd, refusing (`ELOOP`) any
/// symlink on the way: `path` must be a real path.
pub fn open_dir_no_symlinks(path: &Path) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(opath() | OFlag::O_DIRECTORY)
        .resolve(ResolveFlag::RESOLVE_NO_SYMLINKS);
    Ok(openat2(nix::fcntl::AT_FDCWD, path, how)?)
}

/// What `fd` refers to (without following it).
pub fn kind(fd: impl AsFd) -> io::Result<Kind> {
    let st = nix::sys::stat::fstat(fd.as_fd())?;
    Ok(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Kind::Dir,
        libc::S_IFLNK => Kind::Symlink,
        _ => Kind::Other,
    })
}

/// The path `fd` was opened at, as the kernel sees it now (no symlinks).
pub fn real_path(fd: impl AsFd) -> io::Result<PathBuf> {
    std::fs::read_link(fd_path(fd))
}

/// `/proc/self/fd/N`: a path naming an open fd, for a mount option that must
/// not carry a path from a request (the kernel follows it to the fd's file).
pub fn fd_path(fd: impl AsFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beneath_refuses_escapes_and_reports_symlinks() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir_all(root.join("slug/app")).unwrap();
        std::fs::create_dir_all(t.path().join("outside")).unwrap();
        std::os::unix::fs::symlink(t.path().join("outside"), root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../outside", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("slug", root.join("inside")).unwrap();
        let r = open_dir(&root).unwrap();
        let app = open_beneath(r.as_fd(), Path::new("slug/app"), false).unwrap();
        assert_eq!(kind(&app).unwrap(), Kind::Dir);
        assert_eq!(real_path(&app).unwrap(), root.canonicalize().unwrap().join("slug/app"));
        assert_eq!(
            kind(open_beneath(r.as_fd(), Path::new("abs"), false).unwrap()).unwrap(),
            Kind::Symlink
        );
        for escape in ["abs/x", "rel/x", "../outside", "slug/../../outside"] {
            let e = open_beneath(r.as_fd(), Path::new(escape), true).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EXDEV), "{escape}: {e}");
        }
        let via = open_beneath(r.as_fd(), Path::new("inside/app"), false).unwrap();
        assert_eq!(kind(&via).unwrap(), Kind::Dir);
        assert!(open_beneath(r.as_fd(), Path::new("/proc/self/root"), true).is_err());
        let e = open_beneath(r.as_fd(), Path::new("abs"), true).unwrap_err();
        assert_eq!(
            e.raw_os_error(),
            Some(libc::EXDEV),
            "a trailing symlink out is refused too"
        );
    }

    #[test]
    fn no_symlinks_means_none() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().canonicalize().unwrap();
        std::fs::create_dir(real.join("d")).unwrap();
        std::os::unix::fs::symlink("d", real.join("l")).unwrap();
        assert!(open_dir_no_symlinks(&real.join("d")).is_ok());
        let e = open_dir_no_symlinks(&real.join("l")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ELOOP));
        let fd = open_dir_no_symlinks(&real.join("d")).unwrap();
        assert_eq!(std::fs::read_link(fd_path(&fd)).unwrap(), real.join("d"));
    }
}
