//! Control files, the one way both backends read and write them: whole-file
//! reads and writes that name the file in every error, the kernel's formats
//! (a number, a pid list, `key value` lines), and the listing of the cgroups
//! under a parent.
//!
//! Every file the results depend on is read here rather than through
//! `cgroups-rs`, which turns read errors into zeros or empty lists.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

use super::{Error, Result, check_name};

pub(super) fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|error| Error::io("reading", path, error))
}

/// Writes `value` to an existing control file (never creates one).
pub(super) fn write(path: &Path, value: &str) -> Result<()> {
    let failed = |error| Error::Write {
        path: path.to_path_buf(),
        value: value.to_string(),
        error,
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(failed)?;
    file.write_all(value.as_bytes()).map_err(failed)
}

/// One number, the text of `path`.
pub(super) fn parse_u64(path: &Path, s: &str) -> Result<u64> {
    s.trim()
        .parse()
        .map_err(|_| Error::parse(path, format!("expected a number, got {:?}", s.trim())))
}

pub(super) fn read_u64(path: &Path) -> Result<u64> {
    parse_u64(path, &read(path)?)
}

/// A `cgroup.procs` file: one pid a line; returned sorted, without repeats.
pub(super) fn read_pids(path: &Path) -> Result<Vec<u32>> {
    let text = read(path)?;
    let mut pids = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .map_err(|_| Error::parse(path, format!("expected a pid, got {l:?}")))
        })
        .collect::<Result<Vec<u32>>>()?;
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// A flat keyed file (`key value` lines: `memory.stat`, `cpu.stat`,
/// `memory.events`, `memory.oom_control`), `text` being the contents of `path`.
pub(super) fn parse_keyed(path: &Path, text: &str) -> Result<HashMap<String, u64>> {
    let mut map = HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (k, v) = line
            .split_once(' ')
            .ok_or_else(|| Error::parse(path, format!("expected `key value`, got {line:?}")))?;
        map.insert(k.to_string(), parse_u64(path, v)?);
    }
    Ok(map)
}

pub(super) fn read_keyed(path: &Path) -> Result<HashMap<String, u64>> {
    parse_keyed(path, &read(path)?)
}

/// The value of `key` in a keyed file read from `path`; an error if missing.
pub(super) fn key(map: &HashMap<String, u64>, key: &str, path: &Path) -> Result<u64> {
    map.get(key)
        .copied()
        .ok_or_else(|| Error::parse(path, format!("no {key:?} line")))
}

/// The names of the subdirectories of `dir` (none if `dir` is missing): the
/// cgroups under a parent. Names that are not valid cgroup names are skipped
/// with a warning.
pub(super) fn subdirs(dir: &Path) -> Result<BTreeSet<String>> {
    let listing_failed = |error| Error::io("listing", dir, error);
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(listing_failed(e)),
    };
    let mut names = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(listing_failed)?;
        if !entry.file_type().map_err(listing_failed)?.is_dir() {
            continue;
        }
        match entry.file_name().into_string() {
            Ok(name) if check_name(&name).is_ok() => {
                names.insert(name);
            }
            name => tracing::warn!(dir = %dir.display(), ?name, "ignoring a cgroup with an unexpected name"),
        }
    }
    Ok(names)
}
