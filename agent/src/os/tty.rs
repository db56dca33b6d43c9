//! Terminals and fd passing: a pty allocated in the calling process's mount
//! namespace (a dyno's own devpts once its root is built), its window size,
//! a controlling terminal for a new session, and fds sent over a Unix socket
//! (`SCM_RIGHTS`) from the dyno's init (or the exec helper) to the shim and
//! the agent.
//!
//! [`open_pty`], [`make_controlling`] and [`send_fds`] make raw syscalls on
//! memory of their own stack frames only: usable between fork and exec.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use super::cvt;

/// The most fds one message carries.
pub const MAX_FDS: usize = 3;

/// A pty pair from this mount namespace's `/dev/ptmx`: (master, slave). The
/// slave belongs to `uid`:`gid` with mode 0620 and has the given size; the
/// master is close-on-exec, the slave is not a controlling terminal yet.
pub fn open_pty(uid: u32, gid: u32, rows: u16, cols: u16) -> io::Result<(OwnedFd, OwnedFd)> {
    // SAFETY: a NUL-terminated literal path; the returned fd is owned below.
    let master = cvt(unsafe { libc::open(c"/dev/ptmx".as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })?;
    // SAFETY: open succeeded: the fd is ours alone.
    let master = unsafe { OwnedFd::from_raw_fd(master) };
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which outlives the call.
    cvt(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let slave = cvt(unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: the ioctl returned a new fd that nobody else owns.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // SAFETY: fchown/fchmod of an fd we own; no memory involved.
    cvt(unsafe { libc::fchown(slave.as_raw_fd(), uid, gid) })?;
    // SAFETY: as above.
    cvt(unsafe { libc::fchmod(slave.as_raw_fd(), 0o620) })?;
    set_size(master.as_fd(), rows, cols)?;
    Ok((master, slave))
}

/// Sets a terminal's window size (the kernel sends SIGWINCH to its
/// foreground process group when it changed).
pub fn set_size(tty: BorrowedFd<'_>, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which outlives the call.
    cvt(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// A terminal's window size: (rows, cols).
pub fn size(tty: BorrowedFd<'_>) -> io::Result<(u16, u16)> {
    // SAFETY: an all-zero winsize is a valid value.
    let mut size: libc::winsize = unsafe { std::mem::zeroed() };
    // SAFETY: TIOCGWINSZ writes a winsize through the pointer, which outlives the call.
    cvt(unsafe { libc::ioctl(tty.as_raw_fd(), libc::TIOCGWINSZ, &mut size) })?;
    Ok((size.ws_row, size.ws_col))
}

/// Makes the terminal on fd 0 the controlling terminal of the calling
/// session leader. Async-signal-safe.
pub(super) fn make_controlling() -> io::Result<()> {
    // SAFETY: TIOCSCTTY takes an int by value; no memory involved.
    cvt(unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) }).map(drop)
}

/// The foreground process group of a pty, seen from its master, as a pid of
/// the caller's pid namespace (`None` when it has none there).
pub fn foreground_group(master: BorrowedFd<'_>) -> Option<u32> {
    let mut pgrp: libc::pid_t = 0;
    // SAFETY: TIOCGPGRP writes one pid_t through the pointer, which outlives the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPGRP, &mut pgrp) };
    (r == 0 && pgrp > 0).then_some(pgrp as u32)
}

/// A connected pair of close-on-exec Unix stream sockets.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid array of two ints for socketpair to fill.
    cvt(unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    })?;
    // SAFETY: socketpair succeeded, so both fds are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Control-message buffer for [`MAX_FDS`] fds, aligned as `cmsghdr` wants.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

/// Sends `fds` (at most [`MAX_FDS`]) with the one byte `tag` over a Unix
/// socket. No allocation: usable between fork and exec.
pub fn send_fds(sock: BorrowedFd<'_>, tag: u8, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() || fds.len() > MAX_FDS {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let mut byte = [tag];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut buf = CmsgBuf([0; 64]);
    let payload = (fds.len() * size_of::<RawFd>()) as u32;
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(payload) } as usize;
    // SAFETY: an all-zero msghdr is valid; every pointer set below points
    // into this stack frame and outlives the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = buf.0.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: the control buffer holds `space` (≤ 64) bytes, so the first
    // header and its data (payload bytes) lie inside it.
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(payload) as _;
        let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
        for (i, fd) in fds.iter().enumerate() {
            data.add(i).write_unaligned(fd.as_raw_fd());
        }
    }
    loop {
        // SAFETY: `msg` and everything it points to are valid (see above).
        let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message of [`send_fds`]: its tag and the fds it carried
/// (made close-on-exec). `None` at end of stream.
pub fn recv_fds(sock: BorrowedFd<'_>) -> io::Result<Option<(u8, Vec<OwnedFd>)>> {
    let mut byte = [0u8];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut buf = CmsgBuf([0; 64]);
    // SAFETY: an all-zero msghdr is valid; its pointers are set to buffers of
    // this frame below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = buf.0.as_mut_ptr().cast();
    msg.msg_controllen = buf.0.len() as _;
    let n = loop {
        // SAFETY: `msg` points to `iov` and `buf`, valid for the call.
        let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_control` with well-formed headers
    // within `msg_controllen`; CMSG_NXTHDR stops at its end. Each SCM_RIGHTS
    // fd is new in this process and owned by nobody else.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                for i in 0..len / size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 && fds.is_empty() {
        return Ok(None);
    }
    Ok(Some((byte[0], fds)))
}

/// The caller's terminal in raw mode until this is dropped (or
/// [`RawMode::restore`]d): the bytes typed go to the dyno as they are.
pub struct RawMode {
    fd: RawFd,
    saved: libc::termios,
    restored: bool,
}

impl RawMode {
    /// Puts the terminal on `fd` in raw mode; remembers how it was.
    pub fn enter(fd: impl AsFd) -> io::Result<RawMode> {
        let fd = fd.as_fd().as_raw_fd();
        // SAFETY: an all-zero termios is a valid value to be overwritten.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr writes a termios through the pointer.
        cvt(unsafe { libc::tcgetattr(fd, &mut saved) })?;
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the termios in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        // SAFETY: tcsetattr reads the termios through the pointer.
        cvt(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &raw) })?;
        Ok(RawMode {
            fd,
            saved,
            restored: false,
        })
    }

    /// Gives the terminal back its settings.
    pub fn restore(&mut self) {
        if !self.restored {
            // SAFETY: tcsetattr reads the saved termios through the pointer.
            unsafe { libc::tcsetattr(self.fd, libc::TCSANOW, &self.saved) };
            self.restored = true;
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Whether `fd` is a terminal.
pub fn is_terminal(fd: impl AsFd) -> bool {
    // SAFETY: isatty only inspects the fd.
    unsafe { libc::isatty(fd.as_fd().as_raw_fd()) == 1 }
}

/// A non-blocking fd (a pty master, a pipe end) driven by the tokio runtime.
pub struct AsyncIo(tokio::io::unix::AsyncFd<OwnedFd>);

impl AsyncIo {
    /// Makes `fd` non-blocking and registers it with the runtime.
    pub fn new(fd: OwnedFd) -> io::Result<AsyncIo> {
        // SAFETY: F_GETFL/F_SETFL on an fd we own; no memory involved.
        let flags = cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) })?;
        // SAFETY: the AsyncFd owns the fd, so it stays open while it is
        // registered and is closed only when the AsyncFd deregistered it.
        unsafe { tokio::io::unix::AsyncFd::register(fd) }
            .map(AsyncIo)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    /// Reads some bytes; 0 at end of file.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.0.readable().await?;
            match guard.try_io(|f| nix::unistd::read(f.get_ref(), buf).map_err(io::Error::from)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `bytes`.
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.0.writable().await?;
            match guard.try_io(|f| nix::unistd::write(f.get_ref(), bytes).map_err(io::Error::from)) {
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

impl AsFd for AsyncIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.get_ref().as_fd()
    }
}

#[cfg(test)]
#[path = "tty_tests.rs"]
mod tests;
