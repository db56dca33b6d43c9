//! The state directory is root's alone: the config vars in `spec.json` and
//! the dyno records, the logs, the events and the ledger are readable by
//! nobody else.
//!
//! - Everything the agent and the shim keep there is created private, files
//!   0600 and directories 0700, by the call that creates it (`open` or
//!   `mkdir` with that mode): there is no moment at which one is readable by
//!   others. The process-wide umask is left alone on purpose: the shim's is
//!   inherited by the dyno's init and command (an app's own files, `/tmp`,
//!   the overlay's upper layer) and the agent's applies to the slug cache,
//!   whose files keep the archive's modes for the dynos that read them.
//! - [`tighten`] makes an existing state directory private at start (one an
//!   older agent or an operator left open): the directory itself, every file
//!   at its top (the lock, `events.jsonl`, `ledger.db` and its `-wal` and
//!   `-shm`), and the `dynos/`, `runs/` and `net/` trees (but for `net/`'s
//!   namespace handles and dyno `resolv.conf`s). The slug cache and any other
//!   directory (the sample's slug) keep their modes: dynos reach them through
//!   mounts made by root, never through the state directory's path.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of every file the agent keeps in the state directory.
pub const FILE_MODE: u32 = 0o600;
/// Mode of every directory of the state directory's private trees.
pub const DIR_MODE: u32 = 0o700;

/// The trees under the state directory that are made private at start, two
/// levels deep (`dynos/<app>/<name>.json`, `runs/<run-id>/<file>`,
/// `net/<lease>.json`).
const TREES: [&str; 3] = ["dynos", "runs", "net"];

/// Files of a private tree that keep their mode, by extension, in `net/`: a
/// dyno's `resolv.conf` (nameservers only; the dyno reads it through its
/// bind mount, so it is 0644) and the handle of its network namespace (an
/// nsfs inode, 0444 by the kernel, whose mode cannot change). `net/` itself
/// is 0700: nobody else reaches them by path.
const NET_SHARED: [&str; 2] = ["resolv", "ns"];

fn shared_by_design(path: &Path) -> bool {
    path.parent().and_then(Path::file_name).is_some_and(|d| d == "net")
        && path.extension().is_some_and(|e| NET_SHARED.iter().any(|s| e == *s))
}

/// Creates `path` and its missing parents, each 0700 (the parents are
/// below the state directory).
pub fn create_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(path)
}

/// Creates the state directory itself, 0700; its missing parents get the
/// usual modes (they are not the agent's).
pub fn create_state_dir(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match DirBuilder::new().mode(DIR_MODE).create(path) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && path.is_dir() => Ok(()),
        other => other,
    }
}

/// Opens `path` for writing, created 0600 if missing, truncated.
pub fn create(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Creates a new file 0600 for writing; fails if `path` exists.
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Opens `path` for appending, created 0600 if missing.
pub fn append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path)
}

/// What [`tighten`] changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tightened {
    pub files: usize,
    pub dirs: usize,
    /// The first path it changed, with its old mode.
    pub first: Option<(PathBuf, u32)>,
}

impl Tightened {
    pub fn changed(&self) -> usize {
        self.files + self.dirs
    }

    /// Takes group and other permissions away from `path` (never following
    /// a symlink); a path that vanished meanwhile is skipped.
    fn fix(&mut self, path: &Path) -> io::Result<()> {
        let meta = match fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(named(path, e)),
        };
        let kind = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        if !(kind.is_file() || kind.is_dir()) || mode & 0o7077 == 0 || shared_by_design(path) {
            return Ok(());
        }
        match fs::set_permissions(path, fs::Permissions::from_mode(mode & 0o700)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(named(path, e)),
        }
        if kind.is_dir() {
            self.dirs += 1;
        } else {
            self.files += 1;
        }
        self.first.get_or_insert_with(|| (path.to_path_buf(), mode));
        Ok(())
    }

    /// Fixes `dir`, its files and subdirectories, descending `depth` more
    /// levels (the directories below that, like a run's mountpoints `root/`
    /// and `rw/`, are fixed but not entered).
    fn fix_tree(&mut self, dir: &Path, depth: usize) -> io::Result<()> {
        self.fix(dir)?;
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(named(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| named(dir, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| named(&path, e))?;
            if kind.is_dir() && depth > 0 {
                self.fix_tree(&path, depth - 1)?;
            } else {
                self.fix(&path)?;
            }
        }
        Ok(())
    }
}

/// Makes the state directory private: see the module's documentation.
/// Returns what it changed, for one line in the agent's log.
pub fn tighten(state_dir: &Path) -> io::Result<Tightened> {
    let mut t = Tightened::default();
    t.fix(state_dir)?;
    for entry in fs::read_dir(state_dir).map_err(|e| named(state_dir, e))? {
        let entry = entry.map_err(|e| named(state_dir, e))?;
        let path = entry.path();
        let kind = entry.file_type().map_err(|e| named(&path, e))?;
        if kind.is_file() {
            t.fix(&path)?;
        } else if kind.is_dir() && TREES.iter().any(|n| entry.file_name() == *n) {
            t.fix_tree(&path, 1)?;
        }
    }
    Ok(t)
}

fn named(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
#[path = "private_tests.rs"]
mod tests;
