//! Extension records: what GNU long name, long link name and pax headers say
//! about the entry that follows them, and the pax record parser.
//!
//! Only the keywords the policy needs are kept (`path`, `linkpath`, `size`,
//! and whether any `GNU.sparse.*` keyword is present); a pax `size` record
//! must agree with the header's size (checked by the policy).

/// Largest pax extended header (per entry) read into memory.
pub(super) const PAX_MAX: u64 = 1 << 20;

/// Extension records describing the next entry.
#[derive(Default)]
pub(super) struct Ext {
    pub(super) long_name: Option<Vec<u8>>,
    pub(super) long_link: Option<Vec<u8>>,
    pub(super) pax: Option<Vec<u8>>,
}

impl Ext {
    pub(super) fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && self.pax.is_none()
    }
}

/// The pax records of one entry that matter here; `None` where the header's field applies.
#[derive(Default)]
pub(super) struct Pax {
    pub(super) path: Option<Vec<u8>>,
    pub(super) link_path: Option<Vec<u8>>,
    pub(super) size: Option<u64>,
    /// A `GNU.sparse.*` keyword was present.
    pub(super) sparse: bool,
}

/// Parses pax records (`<len> <key>=<value>\n`) by their length prefixes.
pub(super) fn parse_pax(mut data: &[u8]) -> Result<Pax, String> {
    let mut pax = Pax::default();
    // Some writers pad the records with NULs.
    while !data.iter().all(|&b| b == 0) {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or("malformed pax record: no length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("malformed pax record: bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("malformed pax record: bad length".to_owned());
        }
        let record = &data[space + 1..len - 1];
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or("malformed pax record: no `=`")?;
        let (key, value) = (&record[..eq], &record[eq + 1..]);
        // An empty value unsets the keyword (the header's field applies).
        let some = |v: &[u8]| (!v.is_empty()).then(|| v.to_vec());
        match key {
            b"path" => pax.path = some(value),
            b"linkpath" => pax.link_path = some(value),
            b"size" if value.is_empty() => pax.size = None,
            b"size" => {
                pax.size = Some(
                    std::str::from_utf8(value)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or("malformed pax size record")?,
                );
            }
            k if k.starts_with(b"GNU.sparse.") => pax.sparse = true,
            _ => {}
        }
        data = &data[len..];
    }
    Ok(pax)
}
