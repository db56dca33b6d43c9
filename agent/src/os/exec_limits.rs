//! What `execve` accepts: the kernel refuses (`E2BIG`) a new program whose
//! argument and environment strings, with the pointers to them, take more
//! than its limit (a quarter of the stack's rlimit, at most 6 MiB, at least
//! 128 KiB; `sysconf(_SC_ARG_MAX)` tells it), or one of whose strings is
//! longer than `MAX_ARG_STRLEN` (32 pages). A request is checked against
//! these before any run of it is prepared.

/// The most bytes the kernel gives a program's arguments and environment
/// whatever the stack's rlimit (`_STK_LIM / 4 * 3`).
const KERNEL_CAP: usize = 6 << 20;
/// The least it gives (the kernel's `ARG_MAX`, 32 pages of 4 KiB).
const KERNEL_FLOOR: usize = 128 << 10;

/// The longest single argument or `KEY=value` string, NUL included, that
/// `execve` takes: 32 pages.
pub fn max_arg_strlen() -> usize {
    32 * page_size()
}

fn page_size() -> usize {
    // SAFETY: sysconf reads a constant of the system; no memory involved.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 { n as usize } else { 4096 }
}

/// The most bytes (strings with their NULs, plus one pointer each) the
/// arguments and environment of a program exec'd by this process (or a
/// child with its rlimits) may take.
pub fn arg_max() -> usize {
    // SAFETY: sysconf reads the process's stack rlimit; no memory involved.
    let n = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    let n = if n > 0 { n as usize } else { KERNEL_FLOOR };
    n.clamp(KERNEL_FLOOR, KERNEL_CAP)
}

/// What an exec of `path` with `argv` and `envp` takes, as the kernel
/// counts it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecSize {
    /// Every string with its NUL (the program's path too), plus a pointer
    /// for each argument and environment string.
    pub total: usize,
    /// The longest argument or environment string, NUL included.
    pub longest: usize,
    /// The part of `total` that is the environment.
    pub env: usize,
}

/// The size of an exec of `path` with `argv` and `envp` (`KEY`, `value`
/// pairs, passed as `KEY=value`).
pub fn exec_size<'a>(path: &str, argv: &[&str], envp: impl IntoIterator<Item = (&'a str, &'a str)>) -> ExecSize {
    let ptr = std::mem::size_of::<usize>();
    let mut size = ExecSize {
        total: path.len() + 1,
        ..ExecSize::default()
    };
    for a in argv {
        let n = a.len() + 1;
        size.total += n + ptr;
        size.longest = size.longest.max(n);
    }
    for (k, v) in envp {
        let n = k.len() + 1 + v.len() + 1;
        size.total += n + ptr;
        size.env += n + ptr;
        size.longest = size.longest.max(n);
    }
    size
}

#[cfg(test)]
#[path = "exec_limits_tests.rs"]
mod tests;
