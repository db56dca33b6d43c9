//! Validation of the names the API accepts (DESIGN §9): apps, process types,
//! dyno names, env keys, sizes and stacks. Each check returns the reason, and
//! callers name the field.

/// Longest env value accepted, and the most env vars per dyno.
pub const MAX_ENV_VALUE: usize = 32 * 1024;
pub const MAX_ENV_VARS: usize = 500;
/// Longest command line accepted.
pub const MAX_COMMAND: usize = 16 * 1024;

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

/// `<type>.<n>` with n a positive integer without leading zeros; returns the
/// type and number.
pub fn parse_dyno_name(s: &str) -> Option<(&str, u32)> {
    let (ty, n) = s.rsplit_once('.')?;
    if !valid_type(ty) || n.is_empty() || n.len() > 6 || n.starts_with('0') || !n.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((ty, n.parse().ok()?))
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

/// Release labels: printable ASCII without spaces, at most 64 bytes.
pub fn valid_release(s: &str) -> bool {
    s.len() <= 64 && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for ok in ["shop", "abc", "my-app-2", "a23456789012345678901234567890"] {
            assert!(valid_app(ok), "{ok}");
        }
        for bad in [
            "",
            "ab",
            "Shop",
            "1shop",
            "-shop",
            "sh_op",
            "shop!",
            "a234567890123456789012345678901",
            "shöp",
        ] {
            assert!(!valid_app(bad), "{bad}");
        }
    }

    #[test]
    fn process_types() {
        for ok in ["web", "w", "worker_2", "clock-x"] {
            assert!(valid_type(ok), "{ok}");
        }
        for bad in ["", "Web", "2web", "we b", "web.1", "a234567890123456789012345678901"] {
            assert!(!valid_type(bad), "{bad}");
        }
    }

    #[test]
    fn dyno_names() {
        assert_eq!(parse_dyno_name("web.1"), Some(("web", 1)));
        assert_eq!(parse_dyno_name("run.4711"), Some(("run", 4711)));
        for bad in [
            "web",
            "web.",
            ".1",
            "web.0",
            "web.01",
            "web.x",
            "Web.1",
            "web.1234567",
            "web.-1",
        ] {
            assert_eq!(parse_dyno_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn env_keys() {
        for ok in ["PORT", "_x", "DATABASE_URL", "a1"] {
            assert!(valid_env_key(ok), "{ok}");
        }
        for bad in ["", "1A", "A-B", "A B", "A=B", "É"] {
            assert!(!valid_env_key(bad), "{bad}");
        }
    }

    #[test]
    fn stacks_and_releases() {
        assert!(valid_stack("heroku-24") && valid_stack("cedar.14") && !valid_stack("../x") && !valid_stack(""));
        assert!(valid_release("v42") && valid_release("") && !valid_release("v 4") && !valid_release("v\n"));
    }
}
