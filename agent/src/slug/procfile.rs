//! The slug's Procfile: the command of a process type, read on the host
//! without following a symlink out of the slug.

use std::fs;
use std::path::Path;

use crate::error::Error;

/// The command of process type `ptype` from `<app_dir>/Procfile`.
pub fn procfile_command(app_dir: &Path, ptype: &str) -> Result<String, Error> {
    let text = read_procfile(app_dir)?;
    parse_procfile(&text)
        .into_iter()
        .find(|(t, _)| t == ptype)
        .map(|(_, c)| c)
        .ok_or_else(|| {
            Error::invalid(
                "command",
                format!("no command given and the Procfile has no `{ptype}` process type"),
            )
        })
}

/// Largest Procfile read.
const PROCFILE_MAX: u64 = 1 << 20;

/// The slug's Procfile, read on the host: it may be a symlink, but only to a
/// regular file inside the slug's `app/` (never to a host file or a device).
fn read_procfile(app_dir: &Path) -> Result<String, Error> {
    let bad = |why: String| Error::invalid("command", format!("no command given and {why}"));
    let path = app_dir.join("Procfile");
    if fs::symlink_metadata(&path).is_err() {
        return Err(bad("no Procfile in the slug".into()));
    }
    let root = app_dir
        .canonicalize()
        .map_err(|e| Error::Internal(format!("{}: {e}", app_dir.display())))?;
    let real = path
        .canonicalize()
        .map_err(|e| bad(format!("the slug's Procfile cannot be resolved ({e})")))?;
    if !real.starts_with(&root) {
        return Err(bad(
            "the slug's Procfile is a symlink that points outside the slug".into()
        ));
    }
    let meta = fs::metadata(&real).map_err(|e| bad(format!("the slug's Procfile is unreadable ({e})")))?;
    if !meta.is_file() {
        return Err(bad("the slug's Procfile is not a regular file".into()));
    }
    if meta.len() > PROCFILE_MAX {
        return Err(bad(format!("the slug's Procfile is over {PROCFILE_MAX} bytes")));
    }
    fs::read_to_string(&real).map_err(|e| bad(format!("the slug's Procfile is unreadable ({e})")))
}

/// `type: command` lines; blank lines and `#` comments skipped.
pub fn parse_procfile(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            if l.is_empty() || l.starts_with('#') {
                return None;
            }
            let (t, c) = l.split_once(':')?;
            let (t, c) = (t.trim(), c.trim());
            (crate::names::valid_type(t) && !c.is_empty()).then(|| (t.to_string(), c.to_string()))
        })
        .collect()
}
