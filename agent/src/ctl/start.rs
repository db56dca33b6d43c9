//! `dynoctl start` and `dynoctl run`: StartDyno requests from the command
//! line (config vars, slug paths made absolute, argv quoted for the shell)
//! and the attached one-off that streams its output and exits with its
//! status.

use std::io::Write;

use dyno_proto::v1 as pb;
use pb::agent_client::AgentClient;
use tonic::transport::Channel;

use super::args::SlugArgs;
use super::render::dyno_json;
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

pub(super) async fn run_one_off(
    agent: &mut AgentClient<Channel>,
    slug: &SlugArgs,
    argv: &[String],
    json: bool,
) -> R<i32> {
    let mut req = start_request(slug)?;
    req.one_off = true;
    req.command = argv.iter().map(|w| shell_quote(w)).collect::<Vec<_>>().join(" ");
    let d = agent.start_dyno(req).await?.into_inner();
    let mut stream = agent
        .stream_logs(pb::StreamLogsRequest {
            app: d.app.clone(),
            dyno: d.name.clone(),
            follow: true,
            from_run_start: true,
            until_exit: true,
            ..Default::default()
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    while let Some(line) = stream.message().await? {
        if line.source == "app" {
            let _ = writeln!(out, "{}", line.text);
        }
    }
    let _ = out.flush();
    drop(out);
    let d = agent
        .get_dyno(pb::GetDynoRequest {
            app: d.app,
            name: d.name,
        })
        .await?
        .into_inner();
    if json {
        eprintln!("{}", dyno_json(&d));
    }
    let exit = d.last_exit.as_ref();
    let status = exit.and_then(|x| x.code.or(x.signal.map(|s| 128 + s)));
    Ok(status.unwrap_or(1))
}
