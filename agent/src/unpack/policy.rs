//! The decision on each entry, made before anything is written: its type,
//! its name and link target (absolute paths, `..`, NUL bytes, length and
//! depth), the entry and unpacked-size limits, whether it goes under `app/`
//! or is read through, and `app` itself being a directory. Duplicates and
//! symlinks on the way are refused by [`Tree`](super::write::Tree), which
//! knows what this unpack created.

use std::io::{Read, Write};

use super::pax::{Ext, parse_pax};
use super::walk::Walker;
use super::write::finish_file;
use super::{UnpackError, io_error, show};

/// What an entry is, once its type byte is accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    /// A pax global header: read through.
    Global,
}

impl Walker<'_> {
    /// Checks one entry (its extension records in `ext`) and writes it under
    /// staging, or reads it through when it is outside `app/`.
    pub(super) fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, ext: Ext) -> Result<(), UnpackError> {
        let header = entry.header().clone();
        let size = entry.size();
        let type_byte = header.entry_type().as_byte();
        self.entries += 1;
        let pax = match ext.pax.as_deref().map(parse_pax).transpose() {
            Ok(pax) => pax.unwrap_or_default(),
            Err(why) => return Err(self.corrupt_here(&why)),
        };
        let raw_path: Vec<u8> = match (ext.long_name, pax.path) {
            (Some(mut long), _) => {
                while long.last() == Some(&0) {
                    long.pop();
                }
                long
            }
            (None, Some(path)) => path,
            (None, None) => header.path_bytes().into_owned(),
        };
        let name = show(&raw_path);
        self.last = Some(name.clone());
        let hostile = |why: String| UnpackError::Hostile {
            entry: name.clone(),
            why,
        };
        if self.entries > self.limits.entries {
            return Err(UnpackError::LimitExceeded {
                what: format!("number of entries at entry `{name}`"),
                limit: self.limits.entries,
            });
        }
        if let Some(pax_size) = pax.size
            && pax_size != size
        {
            return Err(hostile(format!(
                "its pax size record ({pax_size}) disagrees with its header size ({size})"
            )));
        }
        let kind = match type_byte {
            b'0' | b'\0' | b'7' if raw_path.ends_with(b"/") => Kind::Dir,
            b'0' | b'\0' | b'7' => Kind::File,
            b'5' => Kind::Dir,
            b'2' => Kind::Symlink,
            b'1' => Kind::Hardlink,
            b'g' => Kind::Global,
            b'3' => return Err(hostile("character device nodes are refused".to_owned())),
            b'4' => return Err(hostile("block device nodes are refused".to_owned())),
            b'6' => return Err(hostile("FIFOs are refused".to_owned())),
            b'S' => return Err(hostile("GNU sparse files are not supported".to_owned())),
            other => {
                return Err(hostile(format!("unsupported entry type {:?}", char::from(other))));
            }
        };
        if pax.sparse {
            return Err(hostile("GNU sparse files are not supported".to_owned()));
        }
        if self.data_bytes.saturating_add(size) > self.limits.unpacked_bytes {
            return Err(UnpackError::LimitExceeded {
                what: format!("unpacked bytes at entry `{name}`, which claims {size} bytes"),
                limit: self.limits.unpacked_bytes,
            });
        }
        if kind == Kind::Global {
            return self.skip(entry, size, &name);
        }
        let comps = self.normalize(&raw_path, &name, "path")?;
        let link: Option<Vec<u8>> = match kind {
            Kind::Symlink | Kind::Hardlink => {
                let mut link = match (ext.long_link, pax.link_path) {
                    (Some(long), _) => long,
                    (None, Some(link)) => link,
                    (None, None) => header.link_name_bytes().map(|l| l.into_owned()).unwrap_or_default(),
                };
                while link.last() == Some(&0) {
                    link.pop();
                }
                if link.is_empty() {
                    return Err(hostile("empty link target".to_owned()));
                }
                if link.len() > self.limits.path_bytes {
                    return Err(UnpackError::LimitExceeded {
                        what: format!("link target length of entry `{name}`: {} bytes", link.len()),
                        limit: self.limits.path_bytes as u64,
                    });
                }
                if link.contains(&0) {
                    return Err(hostile("NUL byte in its link target".to_owned()));
                }
                Some(link)
            }
            _ => None,
        };
        let hardlink_target = match (kind, &link) {
            (Kind::Hardlink, Some(link)) => Some(self.normalize(link, &name, "hardlink target")?),
            _ => None,
        };
        if comps.first().copied() != Some(b"app".as_slice()) {
            return self.skip(entry, size, &name);
        }
        if comps.len() == 1 && kind != Kind::Dir {
            return Err(hostile("`app` must be a directory".to_owned()));
        }
        let rel = comps.join(&b'/');
        self.tree.parents(&comps, &name)?;
        match kind {
            Kind::Dir => {
                // Every directory gets DIR_MODE; a corrupt mode field is still refused.
                header
                    .mode()
                    .map_err(|e| UnpackError::Corrupt(format!("entry `{name}`: {e}")))?;
                self.tree.dir(&rel, &name)?;
                self.skip(entry, size, &name)
            }
            Kind::File => {
                let mode = header
                    .mode()
                    .map_err(|e| UnpackError::Corrupt(format!("entry `{name}`: {e}")))?;
                let (mut file, path) = self.tree.create_file(rel, &name)?;
                self.copy(entry, size, &name, |chunk| {
                    file.write_all(chunk).map_err(|e| io_error(&path, e))
                })?;
                finish_file(&file, &path, mode, header.mtime().ok())
            }
            Kind::Symlink => {
                self.tree.symlink(rel, &name, &link.unwrap_or_default())?;
                self.skip(entry, size, &name)
            }
            Kind::Hardlink => {
                let target = hardlink_target.unwrap_or_default().join(&b'/');
                self.tree.hardlink(rel, &name, &target)?;
                self.skip(entry, size, &name)
            }
            Kind::Global => unreachable!("handled above"),
        }
    }

    /// Splits a path into its components: `.` and empty ones dropped; refuses
    /// absolute paths, `..`, NUL bytes; checks length and depth.
    fn normalize<'p>(&self, raw: &'p [u8], name: &str, role: &str) -> Result<Vec<&'p [u8]>, UnpackError> {
        let hostile = |why: String| UnpackError::Hostile {
            entry: name.to_owned(),
            why,
        };
        if raw.len() > self.limits.path_bytes {
            return Err(UnpackError::LimitExceeded {
                what: format!("{role} length of entry `{name}`: {} bytes", raw.len()),
                limit: self.limits.path_bytes as u64,
            });
        }
        if raw.contains(&0) {
            return Err(hostile(format!("NUL byte in its {role}")));
        }
        if raw.starts_with(b"/") {
            return Err(hostile(format!("absolute {role} `{}`", show(raw))));
        }
        let mut comps = Vec::new();
        for comp in raw.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => return Err(hostile(format!("`..` component in its {role} `{}`", show(raw)))),
                _ => comps.push(comp),
            }
        }
        if comps.len() > self.limits.depth {
            return Err(UnpackError::LimitExceeded {
                what: format!("{role} depth of entry `{name}`: {} components", comps.len()),
                limit: self.limits.depth as u64,
            });
        }
        Ok(comps)
    }
}
