//! Request validation: every field a request carries is checked before the
//! engine sees it, and a bad one is `INVALID_ARGUMENT` naming the field.

use std::collections::BTreeMap;

use dyno_proto::v1 as pb;

use crate::config::Config;
use crate::engine::{self, Selector};
use crate::error::{Error, Result};
use crate::names::{self, quote};
use crate::os::exec_limits;

/// The names of a table's entries, comma separated.
fn keys<V>(table: &BTreeMap<String, V>) -> String {
    table.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}

/// The field of env key `k`: `env.K`, or when the key is long or not
/// printable `env["…"]`, quoted and cut.
fn env_field(k: &str) -> String {
    if k.len() <= names::QUOTE_MAX && k.bytes().all(|b| b.is_ascii_graphic()) {
        format!("env.{k}")
    } else {
        format!("env[{}]", quote(k))
    }
}

/// Checks a start request field by field; the slug is resolved separately.
pub fn validate_start(req: &pb::StartDynoRequest, cfg: &Config) -> Result<()> {
    if !names::valid_app(&req.app) {
        return Err(Error::invalid(
            "app",
            format!("{} must match ^[a-z][a-z0-9-]{{2,29}}$", quote(&req.app)),
        ));
    }
    if req.name.is_empty() {
        if !req.one_off {
            return Err(Error::invalid(
                "name",
                "required (only a one-off dyno gets a name picked for it)",
            ));
        }
    } else {
        let Some((ptype, _)) = names::parse_dyno_name(&req.name) else {
            return Err(Error::invalid(
                "name",
                format!("{} must be <type>.<n>, like web.1", quote(&req.name)),
            ));
        };
        if req.one_off && ptype != "run" {
            return Err(Error::invalid(
                "name",
                format!("{}: a one-off dyno is named run.N", quote(&req.name)),
            ));
        }
    }
    if req.command.len() > names::MAX_COMMAND || req.command.contains('\0') {
        return Err(Error::invalid(
            "command",
            format!("at most {} bytes, no NUL bytes", names::MAX_COMMAND),
        ));
    }
    if req.one_off && req.command.trim().is_empty() {
        return Err(Error::invalid("command", "a one-off dyno needs a command"));
    }
    if !req.size.is_empty() && !cfg.sizes.contains_key(&req.size) {
        return Err(Error::invalid(
            "size",
            format!("unknown size {}; known: {}", quote(&req.size), keys(&cfg.sizes)),
        ));
    }
    if !names::valid_release(&req.release) {
        return Err(Error::invalid(
            "release",
            format!(
                "{} must be printable ASCII without spaces, at most 64 bytes",
                quote(&req.release)
            ),
        ));
    }
    if req.env.len() > names::MAX_ENV_VARS {
        return Err(Error::invalid(
            "env",
            format!("at most {} variables", names::MAX_ENV_VARS),
        ));
    }
    for (k, v) in &req.env {
        if !names::valid_env_key(k) {
            return Err(Error::invalid(env_field(k), "keys must match ^[A-Za-z_][A-Za-z0-9_]*$"));
        }
        if v.len() > names::MAX_ENV_VALUE || v.contains('\0') {
            return Err(Error::invalid(
                env_field(k),
                format!("values have at most {} bytes and no NUL", names::MAX_ENV_VALUE),
            ));
        }
    }
    if req.slug.is_empty() {
        return Err(Error::invalid("slug", "required: a path or URL of the slug"));
    }
    if !req.stack.is_empty() && !cfg.stacks.contains_key(&req.stack) {
        return Err(Error::invalid(
            "stack",
            format!(
                "unknown stack {}; configured: [{}]",
                quote(&req.stack),
                keys(&cfg.stacks)
            ),
        ));
    }
    if req.stack.is_empty() && cfg.default_stack().is_none() && !cfg.allow_unjailed {
        return Err(Error::invalid(
            "stack",
            "no stack is configured on this agent (start it with --stack NAME=DIR; rootfs/build.sh builds one)",
        ));
    }
    if let Some(ttl) = &req.time_to_live {
        if !req.one_off {
            return Err(Error::invalid("time_to_live", "only one-off dynos have a time to live"));
        }
        // google.protobuf.Duration: nanos in [0, 10^9) for a positive duration.
        if !(0..1_000_000_000).contains(&ttl.nanos) {
            return Err(Error::invalid(
                "time_to_live.nanos",
                format!(
                    "{} is not a Duration's nanos: 0 to 999999999 for a positive duration",
                    ttl.nanos
                ),
            ));
        }
        let max = cfg.oneoff_ttl.as_secs() as i64;
        if ttl.seconds <= 0 || ttl.seconds > max {
            return Err(Error::invalid("time_to_live", format!("must be between 1s and {max}s")));
        }
    }
    if req.request_id.len() > 128 {
        return Err(Error::invalid("request_id", "at most 128 bytes"));
    }
    labels(&req.labels)?;
    exec_fits(req, cfg)
}

/// A start's labels: their number, keys and values.
fn labels(labels: &std::collections::HashMap<String, String>) -> Result<()> {
    if labels.len() > names::MAX_LABELS {
        return Err(Error::invalid(
            "labels",
            format!("{} labels; at most {}", labels.len(), names::MAX_LABELS),
        ));
    }
    // In key order, so that the first bad one named is always the same.
    let sorted: BTreeMap<&String, &String> = labels.iter().collect();
    for (k, v) in sorted {
        if !names::valid_label_key(k) {
            return Err(Error::invalid(
                format!("labels[{}]", quote(k)),
                "label keys must match ^[a-z0-9]([a-z0-9._/-]{0,62})$",
            ));
        }
        if v.len() > names::MAX_LABEL_VALUE || v.contains('\0') {
            return Err(Error::invalid(
                format!("labels.{k}"),
                format!("label values have at most {} bytes and no NUL", names::MAX_LABEL_VALUE),
            ));
        }
    }
    Ok(())
}

/// Stands in for the app directory of an unjailed run in `HOME` and `PATH`
/// (it is only known once the slug is unpacked): as long as a path may be.
const UNJAILED_ROOT_BYTES: usize = 4096;

/// The command and environment as the run's `execve` will take them (the
/// profile prefix before the command, the runtime's `DYNO`, `HOME`, `PATH`
/// and `PORT` in the environment, at their longest) within what the kernel
/// accepts: a start it would refuse with `E2BIG` is refused here instead.
fn exec_fits(req: &pb::StartDynoRequest, cfg: &Config) -> Result<()> {
    let name = if req.name.is_empty() {
        format!("run.{}", names::MAX_DYNO_NUMBER)
    } else {
        req.name.clone()
    };
    let jailed = cfg.stacks.contains_key(&req.stack) || (req.stack.is_empty() && cfg.default_stack().is_some());
    let root = if jailed {
        "/app".to_string()
    } else {
        "/".repeat(UNJAILED_ROOT_BYTES)
    };
    let command = engine::shell_command(&req.command);
    let mut vars: BTreeMap<String, String> = req.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    // A run id is a UUID and a run number.
    let run_id = format!("{}.{}", uuid::Uuid::nil(), u32::MAX);
    vars.extend(engine::dyno_metadata(&req.app, &run_id, &req.release));
    let env = engine::run_env(&vars, &name, &root, Some(u16::MAX));
    let envp = env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let size = exec_limits::exec_size("/bin/sh", &["sh", "-c", &command], envp);
    let strlen = exec_limits::max_arg_strlen();
    if command.len() + 1 > strlen {
        return Err(Error::invalid(
            "command",
            format!(
                "{} bytes with the profile prefix; exec takes at most {} bytes in one argument (MAX_ARG_STRLEN)",
                command.len() + 1,
                strlen
            ),
        ));
    }
    if let Some((k, v)) = req.env.iter().find(|(k, v)| k.len() + v.len() + 2 > strlen) {
        return Err(Error::invalid(
            env_field(k),
            format!(
                "{} bytes as KEY=value; exec takes at most {strlen} bytes in one variable (MAX_ARG_STRLEN)",
                k.len() + v.len() + 2
            ),
        ));
    }
    let limit = exec_limits::arg_max();
    if size.total > limit {
        let field = if size.env >= size.total - size.env {
            "env"
        } else {
            "command"
        };
        return Err(Error::invalid(
            field,
            format!(
                "the command and environment take {} bytes as exec counts them (environment {} bytes, command {} bytes), over the {limit} bytes the kernel accepts (ARG_MAX)",
                size.total,
                size.env,
                size.total - size.env
            ),
        ));
    }
    Ok(())
}

/// An app name, or `INVALID_ARGUMENT` naming `field`.
pub(super) fn app(field: &str, app: &str) -> Result<()> {
    if names::valid_app(app) {
        Ok(())
    } else {
        Err(Error::invalid(field, format!("{} is not a valid app name", quote(app))))
    }
}

/// The dyno a `GetDyno` names.
pub(super) fn get_request(req: &pb::GetDynoRequest) -> Result<()> {
    dyno(&req.app, &req.name)
}

/// An app and a dyno name (`GetDyno`, `RemoveDyno`).
pub(super) fn dyno(app_name: &str, name: &str) -> Result<()> {
    app("app", app_name)?;
    if names::parse_dyno_name(name).is_none() {
        return Err(Error::invalid("name", format!("{} must be <type>.<n>", quote(name))));
    }
    Ok(())
}

/// The optional app of a listing.
pub(super) fn list_request(app_name: &Option<String>) -> Result<()> {
    match app_name {
        Some(a) => app("app", a),
        None => Ok(()),
    }
}

/// A cordon's reason: printable, bounded.
pub(super) fn cordon_reason(reason: &str) -> Result<()> {
    if reason.len() > engine::CORDON_REASON_MAX || reason.chars().any(char::is_control) {
        return Err(Error::invalid(
            "reason",
            format!("at most {} bytes, no control characters", engine::CORDON_REASON_MAX),
        ));
    }
    Ok(())
}

/// The app and dyno (name or process type) a `StreamLogs` reads.
pub(super) fn logs_request(app_name: &Option<String>, dyno: &Option<String>) -> Result<()> {
    list_request(app_name)?;
    if let Some(d) = dyno {
        if names::parse_dyno_name(d).is_none() && !names::valid_type(d) {
            return Err(Error::invalid(
                "dyno",
                format!("{} is neither a dyno name nor a process type", quote(d)),
            ));
        }
        if app_name.is_none() {
            return Err(Error::invalid("app", "required with dyno"));
        }
    }
    Ok(())
}

/// Which dynos a stop or restart is about.
pub(super) fn selector(sel: Option<pb::DynoSelector>) -> Result<Selector> {
    let sel = sel.ok_or_else(|| Error::invalid("selector", "required"))?;
    if sel.all {
        if !sel.app.is_empty() || !sel.target.is_empty() {
            return Err(Error::invalid("selector.all", "cannot be combined with app or target"));
        }
        return Ok(Selector::All);
    }
    app("selector.app", &sel.app)?;
    if sel.target.is_empty() {
        Ok(Selector::App(sel.app))
    } else if names::parse_dyno_name(&sel.target).is_some() {
        Ok(Selector::Dyno(sel.app, sel.target))
    } else if names::valid_type(&sel.target) {
        Ok(Selector::Type(sel.app, sel.target))
    } else {
        Err(Error::invalid(
            "selector.target",
            format!("{} is neither a dyno name nor a process type", quote(&sel.target)),
        ))
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;

/// A pty's size: `None` (unset) is 24x80; rows and columns are 1..=1000.
pub(super) fn terminal_size(field: &str, size: Option<&pb::TerminalSize>) -> Result<(u16, u16)> {
    let Some(s) = size else { return Ok((24, 80)) };
    let check = |name: &str, v: u32| {
        if (1..=1000).contains(&v) {
            Ok(v as u16)
        } else {
            Err(Error::invalid(
                format!("{field}.{name}"),
                format!("{v} is not within 1..=1000"),
            ))
        }
    };
    Ok((check("rows", s.rows)?, check("cols", s.cols)?))
}

/// A signal for an attached command: 1..=64, not SIGKILL's or SIGSTOP's
/// job (those are the stop sequence's).
pub(super) fn session_signal(field: &str, sig: i32) -> Result<i32> {
    if (1..=64).contains(&sig) {
        Ok(sig)
    } else {
        Err(Error::invalid(field, format!("{sig} is not a signal number (1..=64)")))
    }
}

/// Exec's argv: at least one word, no NUL byte, at most 1024 words and
/// 128 KiB together.
pub(super) fn exec_argv(field: &str, argv: &[String]) -> Result<()> {
    if argv.is_empty() {
        return Err(Error::invalid(field, "needs at least one word"));
    }
    if argv.len() > 1024 {
        return Err(Error::invalid(field, format!("{} words, at most 1024", argv.len())));
    }
    if argv.iter().map(String::len).sum::<usize>() > 128 * 1024 {
        return Err(Error::invalid(field, "longer than 128 KiB"));
    }
    if let Some((i, w)) = argv.iter().enumerate().find(|(_, w)| w.contains('\0')) {
        return Err(Error::invalid(
            format!("{field}[{i}]"),
            format!("{} has a NUL byte", names::quote(w)),
        ));
    }
    Ok(())
}
