//! Writing under the staging directory without ever following a symlink.
//!
//! Every created path is recorded in memory (dir, file, symlink); an entry's
//! ancestors must all be directories recorded as created by this unpack
//! (missing ones are created 0755), which is what keeps writes from going
//! through a symlink. Files are opened `O_CREAT|O_EXCL|O_NOFOLLOW`,
//! directories made with `mkdir` and chmod'ed through an
//! `O_NOFOLLOW|O_DIRECTORY` descriptor, symlinks with `symlink(2)`, hardlinks
//! with `linkat(2)` between two paths inside staging. A name that already
//! exists is refused, never replaced (a directory entry repeated on a
//! directory apart). Files get `mode & 0o755` and the archive's mtime,
//! directories 0755; owners are never taken from the archive. No fsync: the
//! caller syncs and renames.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;

use super::{UnpackError, io_error, show};

/// What is kept of an archived file's mode.
const FILE_MODE_MASK: u32 = 0o755;
/// The mode of every unpacked directory.
const DIR_MODE: u32 = 0o755;
/// `create_error`'s errnos: the path exists, or is a symlink `O_NOFOLLOW` refused.
const EEXIST: i32 = Errno::EEXIST as i32;
const ELOOP: i32 = Errno::ELOOP as i32;

/// What this unpack created at a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    Dir,
    File,
    Symlink,
}

/// The staging directory and everything this unpack created under it, by
/// normalized relative path (components joined by `/`).
pub(super) struct Tree<'a> {
    root: &'a Path,
    nodes: HashMap<Vec<u8>, Node>,
}

impl<'a> Tree<'a> {
    /// An empty staging directory `root`.
    pub(super) fn new(root: &'a Path) -> Self {
        Tree {
            root,
            nodes: HashMap::new(),
        }
    }
}

impl Tree<'_> {
    fn path(&self, rel: &[u8]) -> PathBuf {
        self.root.join(OsStr::from_bytes(rel))
    }

    /// `app` was created as a directory and still is one.
    pub(super) fn app_is_dir(&self) -> bool {
        self.nodes.get(b"app".as_slice()) == Some(&Node::Dir)
            && fs::symlink_metadata(self.root.join("app")).is_ok_and(|m| m.is_dir())
    }

    /// Makes sure every ancestor of `comps` is a real directory we created,
    /// creating missing ones; refuses a symlink or a file on the way.
    pub(super) fn parents(&mut self, comps: &[&[u8]], name: &str) -> Result<(), UnpackError> {
        let Some((_, ancestors)) = comps.split_last() else {
            return Ok(());
        };
        if ancestors.is_empty() {
            return Ok(());
        }
        // A directory in `nodes` had all its ancestors checked when it was made.
        if self.nodes.get(&ancestors.join(&b'/')) == Some(&Node::Dir) {
            return Ok(());
        }
        let mut rel = Vec::new();
        for comp in ancestors {
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.extend_from_slice(comp);
            match self.nodes.get(&rel) {
                Some(Node::Dir) => {}
                Some(Node::Symlink) => return Err(through_symlink(name, &rel)),
                Some(Node::File) => {
                    return Err(UnpackError::Hostile {
                        entry: name.to_owned(),
                        why: format!("its parent `{}` is not a directory", show(&rel)),
                    });
                }
                None => {
                    let path = self.path(&rel);
                    self.make_dir(&path, &rel, name)?;
                }
            }
        }
        Ok(())
    }

    /// Creates one directory (its parent is known to be a real directory).
    fn make_dir(&mut self, path: &Path, rel: &[u8], name: &str) -> Result<(), UnpackError> {
        match DirBuilder::new().mode(0o755).create(path) {
            Ok(()) => set_dir_mode(path, 0o755)?,
            // Only through an alias we did not see (a case-insensitive file system): check what is there.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => match fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => return Err(through_symlink(name, rel)),
                Ok(m) if m.is_dir() => {}
                _ => {
                    return Err(UnpackError::Hostile {
                        entry: name.to_owned(),
                        why: format!("`{}` already exists and is not a directory", show(rel)),
                    });
                }
            },
            Err(e) => return Err(io_error(path, e)),
        }
        self.nodes.insert(rel.to_vec(), Node::Dir);
        Ok(())
    }

    /// A directory entry at `rel`: made unless this unpack already made it,
    /// then given [`DIR_MODE`].
    pub(super) fn dir(&mut self, rel: &[u8], name: &str) -> Result<(), UnpackError> {
        let path = self.path(rel);
        match self.nodes.get(rel) {
            Some(Node::Dir) => {}
            Some(&node) => return Err(exists(name, rel, node)),
            None => self.make_dir(&path, rel, name)?,
        }
        set_dir_mode(&path, DIR_MODE)
    }

    /// A new, empty file at `rel` (mode 0600 until [`finish_file`]) and its path.
    pub(super) fn create_file(&mut self, rel: Vec<u8>, name: &str) -> Result<(File, PathBuf), UnpackError> {
        if let Some(&node) = self.nodes.get(&rel) {
            return Err(exists(name, &rel, node));
        }
        let path = self.path(&rel);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(OFlag::O_NOFOLLOW.bits())
            .open(&path)
            .map_err(|e| create_error(name, &path, e))?;
        self.nodes.insert(rel, Node::File);
        Ok((file, path))
    }

    /// A symlink at `rel` to `target`, kept verbatim and never followed.
    pub(super) fn symlink(&mut self, rel: Vec<u8>, name: &str, target: &[u8]) -> Result<(), UnpackError> {
        if let Some(&node) = self.nodes.get(&rel) {
            return Err(exists(name, &rel, node));
        }
        let path = self.path(&rel);
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &path).map_err(|e| create_error(name, &path, e))?;
        self.nodes.insert(rel, Node::Symlink);
        Ok(())
    }

    /// A hardlink at `rel` to `target` (normalized), which must be a regular
    /// file this unpack wrote earlier.
    pub(super) fn hardlink(&mut self, rel: Vec<u8>, name: &str, target: &[u8]) -> Result<(), UnpackError> {
        if self.nodes.get(target) != Some(&Node::File) {
            return Err(UnpackError::Hostile {
                entry: name.to_owned(),
                why: format!(
                    "hardlink target `{}` is not an earlier regular file of this slug's app/",
                    show(target)
                ),
            });
        }
        if let Some(&node) = self.nodes.get(&rel) {
            return Err(exists(name, &rel, node));
        }
        let path = self.path(&rel);
        // linkat(2) without AT_SYMLINK_FOLLOW; the target is a regular file we wrote.
        fs::hard_link(self.path(target), &path).map_err(|e| create_error(name, &path, e))?;
        self.nodes.insert(rel, Node::File);
        Ok(())
    }
}

/// Gives a file written by [`Tree::create_file`] its mode (`mode & 0o755`)
/// and, best effort, the archive's mtime.
pub(super) fn finish_file(file: &File, path: &Path, mode: u32, mtime: Option<u64>) -> Result<(), UnpackError> {
    file.set_permissions(Permissions::from_mode(mode & FILE_MODE_MASK))
        .map_err(|e| io_error(path, e))?;
    if let Some(secs) = mtime
        && let Some(mtime) = SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
    {
        // Best effort, like the mtime itself.
        let _ = file.set_modified(mtime);
    }
    Ok(())
}

fn exists(name: &str, rel: &[u8], node: Node) -> UnpackError {
    let what = match node {
        Node::Dir => "a directory",
        Node::File => "a file",
        Node::Symlink => "a symlink (never written through)",
    };
    UnpackError::Hostile {
        entry: name.to_owned(),
        why: format!(
            "`{}` already exists as {what}; duplicate entries are refused",
            show(rel)
        ),
    }
}

fn create_error(name: &str, path: &Path, e: io::Error) -> UnpackError {
    match e.raw_os_error() {
        Some(EEXIST | ELOOP) => UnpackError::Hostile {
            entry: name.to_owned(),
            why: "its path already exists (duplicate entries are refused)".to_owned(),
        },
        _ => io_error(path, e),
    }
}

fn through_symlink(name: &str, rel: &[u8]) -> UnpackError {
    UnpackError::Hostile {
        entry: name.to_owned(),
        why: format!(
            "it would be written through the symlink `{}` (symlinks are never followed)",
            show(rel)
        ),
    }
}

/// chmod through a descriptor opened without following symlinks.
fn set_dir_mode(path: &Path, mode: u32) -> Result<(), UnpackError> {
    let dir = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW).bits())
        .open(path)
        .map_err(|e| io_error(path, e))?;
    dir.set_permissions(Permissions::from_mode(mode))
        .map_err(|e| io_error(path, e))
}
