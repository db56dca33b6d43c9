//! Unit tests of the name and input checks.

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

#[test]
fn quotes_are_cut_at_about_a_hundred_bytes() {
    assert_eq!(quote("web.1"), "\"web.1\"");
    assert_eq!(quote("a\nb"), "\"a\\nb\"");
    let long = "x".repeat(8192);
    let q = quote(&long);
    assert!(q.len() <= QUOTE_MAX + 30, "{} bytes: {q}", q.len());
    assert!(q.ends_with("… (8192 bytes)"), "{q}");
    // Escapes count as what they become; a character is never split.
    let q = quote(&"\u{1b}é".repeat(1000));
    assert!(q.len() <= QUOTE_MAX + 30, "{} bytes: {q}", q.len());
    assert_eq!(cut("aé", 2), "a");
    assert_eq!(cut("abc", 10), "abc");
}

#[test]
fn dyno_numbers_stop_at_999999() {
    assert_eq!(parse_dyno_name("run.999999"), Some(("run", MAX_DYNO_NUMBER)));
    assert_eq!(parse_dyno_name("run.1000000"), None);
}
