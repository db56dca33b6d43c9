//! The configuration's own value forms: a range written `"FIRST-LAST"` and a
//! list of human durations (`["20m", "40m"]`).

use serde::{Deserialize, Serialize};

/// A range of ports or ids, inclusive, written `"20000-29999"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    pub first: u32,
    pub last: u32,
}

impl Serialize for Range {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}-{}", self.first, self.last))
    }
}

impl<'de> Deserialize<'de> for Range {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parse = |p: &str| p.trim().parse::<u32>().ok();
        match s.split_once('-').map(|(a, b)| (parse(a), parse(b))) {
            Some((Some(first), Some(last))) if first <= last => Ok(Range { first, last }),
            _ => Err(serde::de::Error::custom(format!(
                "expected a range `FIRST-LAST` with FIRST <= LAST, got {s:?}"
            ))),
        }
    }
}

/// `["20m", "40m"]` as a list of durations.
pub(super) mod duration_list {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| humantime::format_duration(*d).to_string()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| humantime::parse_duration(s).map_err(|e| serde::de::Error::custom(format!("{s:?}: {e}"))))
            .collect()
    }
}
