//! Validation of the names the API accepts (DESIGN §9): apps, process types,
//! dyno names, env keys, sizes and stacks. Each check returns the reason, and
//! callers name the field.

/// Longest env value accepted, and the most env vars per dyno.
pub const MAX_ENV_VALUE: usize = 32 * 1024;
pub const MAX_ENV_VARS: usize = 500;
/// Longest command line accepted.
pub const MAX_COMMAND: usize = 16 * 1024;
/// Most bytes of a request's value that an error message quotes (DESIGN §9:
/// a value quoted whole, 8 KB or more, makes C-core clients reject the reply).
pub const QUOTE_MAX: usize = 100;

/// `s` quoted for an error message, escaped as `{:?}` does; past
/// [`QUOTE_MAX`] bytes it is cut, and its length said.
pub fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let start = out.len();
        out.extend(c.escape_debug());
        if out.len() > QUOTE_MAX + 1 {
            out.truncate(start);
            return format!("{out}\"… ({} bytes)", s.len());
        }
    }
    out.push('"');
    out
}

/// The longest start of `s` of at most `max` bytes that ends between two characters.
pub fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn lower_start(s: &str) -> bool {
    s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// `^[a-z][a-z0-9-]{2,29}$`
pub fn valid_app(s: &str) -> bool {
    (3..=30).contains(&s.len())
        && lower_start(s)
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `^[a-z][a-z0-9_-]{0,29}$`
pub fn valid_type(s: &str) -> bool {
    (1..=30).contains(&s.len())
        && lower_start(s)
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// The highest `n` of a dyno name `<type>.<n>`.
pub const MAX_DYNO_NUMBER: u32 = 999_999;

/// `<type>.<n>` with n a positive integer without leading zeros; returns the
/// type and number.
pub fn parse_dyno_name(s: &str) -> Option<(&str, u32)> {
    let (ty, n) = s.rsplit_once('.')?;
    if !valid_type(ty) || n.is_empty() || n.len() > 6 || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ty, n.parse().ok().filter(|n| *n <= MAX_DYNO_NUMBER)?))
}

/// `^[A-Za-z_][A-Za-z0-9_]*$`, at most 255 bytes.
pub fn valid_env_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && !s.as_bytes()[0].is_ascii_digit()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Stack names: like process types, dots allowed (`heroku-24`, `cedar.14`).
pub fn valid_stack(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// Most labels per dyno, and the longest label value.
pub const MAX_LABELS: usize = 64;
pub const MAX_LABEL_VALUE: usize = 256;

/// Label keys: `^[a-z0-9]([a-z0-9._/-]{0,62})$` (room for a `domain/name`
/// prefix as Kubernetes and Nomad use).
pub fn valid_label_key(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && matches!(s.as_bytes()[0], b'a'..=b'z' | b'0'..=b'9')
        && s.bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'/' | b'-'))
}

/// Release labels: printable ASCII without spaces, at most 64 bytes.
pub fn valid_release(s: &str) -> bool {
    s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
