//! `dynoctl start` and `dynoctl run`: StartDyno requests from the command
//! line (config vars, slug paths made absolute, argv quoted for the shell)
//! and the attached one-off that streams its output and exits with its
//! status.

use dyno_proto::v1 as pb;
use pb::agent_client::AgentClient;
use tonic::transport::Channel;

use super::args::SlugArgs;
use super::render::dyno_json;
use super::session::{attach_session, terminal};
use super::{Failure, R};

pub(super) fn start_request(s: &SlugArgs) -> R<pb::StartDynoRequest> {
    let mut env = std::collections::HashMap::new();
    for kv in &s.env {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Failure::new(tonic::Code::InvalidArgument, format!("--env {kv:?}: expected K=V")))?;
        env.insert(k.to_string(), v.to_string());
    }
    Ok(pb::StartDynoRequest {
        app: s.app.clone(),
        size: s.size.clone().unwrap_or_default(),
        env,
        slug: local_slug(&s.slug)?,
        sha256: s.sha256.clone().unwrap_or_default(),
        stack: s.stack.clone().unwrap_or_default(),
        ..Default::default()
    })
}

/// Local paths are made absolute: the agent does not share our directory.
pub(super) fn local_slug(slug: &str) -> R<String> {
    if slug.contains("://") || slug.starts_with('/') {
        return Ok(slug.to_string());
    }
    let abs = std::env::current_dir()?.join(slug);
    Ok(abs.display().to_string())
}

/// Quotes one word for `/bin/sh`.
pub fn shell_quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if safe {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `dynoctl run`: a detached one-off (its name printed), or one attached
/// to this terminal (see [`super::session`]).
pub(super) async fn run_one_off(
    agent: &mut AgentClient<Channel>,
    slug: &SlugArgs,
    argv: &[String],
    detached: bool,
    no_tty: bool,
    json: bool,
) -> R<i32> {
    let mut req = start_request(slug)?;
    req.one_off = true;
    req.command = argv.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ");
    if detached {
        let d = agent.start_dyno(req).await?.into_inner();
        if json {
            println!("{}", dyno_json(&d));
        } else {
            println!("{}", d.name);
        }
        return Ok(0);
    }
    let size = terminal(no_tty);
    let pty = size.is_some();
    let first = pb::AttachRequest {
        request: Some(pb::attach_request::Request::Start(pb::AttachStart {
            start: Some(req),
            tty: pty,
            size,
        })),
    };
    let wrap = |i| pb::AttachRequest {
        request: Some(pb::attach_request::Request::Input(i)),
    };
    attach_session(first, wrap, |s| agent.attach(s), pty, json).await
}
