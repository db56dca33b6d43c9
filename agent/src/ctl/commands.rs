//! One function per `dynoctl` command: each builds its request, calls the
//! agent and prints the answer through [`super::render`].

use chrono::Utc;
use dyno_proto::v1 as pb;
use pb::agent_client::AgentClient;
use serde_json::{Value, json};
use tonic::transport::Channel;

use super::args::{Cli, Command};
use super::render::{
    Listing, dyno_json, format_ps, print_cordon, print_dynos, print_info, print_json, print_stats, state_name, ts,
    ts_secs, usage_table,
};
use super::session::{attach_session, terminal};
use super::start::{run_one_off, start_request};
use super::{Failure, R};

/// Connects to the agent and runs one command; returns its exit code.
pub(super) async fn dispatch(cli: Cli) -> R<i32> {
    let channel = crate::client::connect(&cli.socket).await.map_err(|e| {
        Failure::new(
            tonic::Code::Unavailable,
            format!("cannot reach the agent at {}: {e}", cli.socket.display()),
        )
    })?;
    let mut agent = AgentClient::new(channel.clone());
    let json = cli.json;
    match cli.command {
        Command::Ps { app, states } => ps(&mut agent, app, &states, json).await,
        Command::Start {
            slug,
            name,
            command,
            release,
            labels,
        } => {
            let mut req = start_request(&slug)?;
            req.name = name;
            req.command = command.unwrap_or_default();
            req.release = release.unwrap_or_default();
            req.labels = key_values("--label", &labels)?;
            let d = agent.start_dyno(req).await?.into_inner();
            if json {
                print_json(&dyno_json(&d));
            } else {
                println!("{} {}: {}", d.app, d.name, state_name(d.state));
            }
            Ok(0)
        }
        Command::Run {
            slug,
            detached,
            no_tty,
            argv,
        } => run_one_off(&mut agent, &slug, &argv, detached, no_tty, json).await,
        Command::Exec {
            app,
            name,
            no_tty,
            argv,
        } => {
            let size = terminal(no_tty);
            let first = pb::ExecRequest {
                request: Some(pb::exec_request::Request::Start(pb::ExecStart {
                    app,
                    name,
                    argv,
                    tty: size.is_some(),
                    size,
                })),
            };
            let wrap = |i| pb::ExecRequest {
                request: Some(pb::exec_request::Request::Input(i)),
            };
            let pty = first_is_tty(&first);
            attach_session(first, wrap, |s| agent.exec(s), pty, json).await
        }
        Command::Stop { app, target, all } => {
            let selector = selector(app.unwrap_or_default(), target, all);
            let r = agent.stop_dyno(pb::StopDynoRequest { selector }).await?;
            print_dynos(&r.into_inner().dynos, json, "stopping");
            Ok(0)
        }
        Command::Restart { app, target } => {
            let selector = selector(app, target, false);
            let r = agent.restart_dyno(pb::RestartDynoRequest { selector }).await?;
            print_dynos(&r.into_inner().dynos, json, "restarting");
            Ok(0)
        }
        Command::Rm { app, name } => {
            let r = agent.remove_dyno(pb::RemoveDynoRequest { app, name }).await?;
            let removed: Vec<pb::Dyno> = r.into_inner().dyno.into_iter().collect();
            print_dynos(&removed, json, "removed");
            Ok(0)
        }
        Command::Logs {
            app,
            dyno,
            lines,
            follow,
        } => {
            let req = pb::StreamLogsRequest {
                app: app.unwrap_or_default(),
                dyno: dyno.unwrap_or_default(),
                tail: lines,
                follow,
                ..Default::default()
            };
            let mut stream = agent.stream_logs(req).await?.into_inner();
            let mut out = Listing::new(json, follow);
            while let Some(line) = stream.message().await? {
                let v = json!({"app": line.app, "dyno": line.dyno, "source": line.source, "text": line.text, "line": line.line});
                out.item(v, || line.line.clone());
            }
            out.finish();
            Ok(0)
        }
        Command::Events { after, series, follow } => events(&mut agent, after, series, follow, json).await,
        Command::Usage { after, csv } => usage(channel, after, csv, json).await,
        Command::Info => {
            let i = agent.host_info(pb::HostInfoRequest {}).await?.into_inner();
            print_info(&i, json);
            Ok(0)
        }
        Command::Stats { app, dyno } => {
            let req = pb::ListDynoStatsRequest {
                app: app.unwrap_or_default(),
                dyno: dyno.unwrap_or_default(),
            };
            let r = agent.list_dyno_stats(req).await?.into_inner();
            print_stats(&r, json);
            Ok(0)
        }
        Command::Cordon { reason } => {
            let c = agent.cordon(pb::CordonRequest { reason }).await?.into_inner();
            print_cordon(&c, json);
            Ok(0)
        }
        Command::Uncordon => {
            let c = agent.uncordon(pb::UncordonRequest {}).await?.into_inner();
            print_cordon(&c, json);
            Ok(0)
        }
    }
}

/// `K=V` words of a repeated flag as a map.
pub(super) fn key_values(flag: &str, words: &[String]) -> R<std::collections::HashMap<String, String>> {
    let mut map = std::collections::HashMap::new();
    for kv in words {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Failure::new(tonic::Code::InvalidArgument, format!("{flag} {kv:?}: expected K=V")))?;
        map.insert(k.to_string(), v.to_string());
    }
    Ok(map)
}

/// Which dynos a stop or restart is about.
fn selector(app: String, target: Option<String>, all: bool) -> Option<pb::DynoSelector> {
    Some(pb::DynoSelector {
        app,
        target: target.unwrap_or_default(),
        all,
    })
}

async fn events(agent: &mut AgentClient<Channel>, after: u64, series: String, follow: bool, json: bool) -> R<i32> {
    let mut stream = agent
        .watch_events(pb::WatchEventsRequest {
            after_seq: after,
            follow,
            series,
        })
        .await?
        .into_inner();
    let mut out = Listing::new(json, follow);
    while let Some(msg) = stream.message().await? {
        match msg.kind {
            Some(pb::watch_events_response::Kind::Snapshot(s)) => {
                let v = json!({"snapshot": {"seq": s.seq, "series": s.series, "gap": s.gap, "dynos": s.dynos.iter().map(dyno_json).collect::<Vec<_>>()}});
                out.item(v, || {
                    format!(
                        "snapshot at seq {} ({} dynos{})",
                        s.seq,
                        s.dynos.len(),
                        if s.gap { ", events before it are gone" } else { "" }
                    )
                });
            }
            Some(pb::watch_events_response::Kind::Event(e)) => {
                let d = e.dyno.clone().unwrap_or_default();
                let v = json!({"seq": e.seq, "series": e.series, "at": e.at.map(ts), "app": d.app, "dyno": d.name,
                    "from": state_name(e.from), "to": state_name(e.to), "reason": e.reason, "removed": e.removed});
                out.item(v, || {
                    let change = if e.removed {
                        "removed".to_string()
                    } else {
                        format!("{} -> {}", state_name(e.from), state_name(e.to))
                    };
                    format!(
                        "{:>6} {} {} {}: {change} ({})",
                        e.seq,
                        e.at.map(ts).unwrap_or_default(),
                        d.app,
                        d.name,
                        e.reason
                    )
                });
            }
            None => {}
        }
    }
    out.finish();
    Ok(0)
}

async fn usage(channel: Channel, after: u64, csv: bool, json: bool) -> R<i32> {
    let mut usage = pb::usage_client::UsageClient::new(channel);
    let mut records = Vec::new();
    let mut after = after;
    loop {
        let r = usage
            .collect(pb::CollectRequest {
                after_seq: after,
                limit: 1000,
                // Ops see what billing collected too, until it is pruned.
                include_collected: true,
            })
            .await?
            .into_inner();
        after = r.records.last().map_or(after, |x| x.seq);
        records.extend(r.records);
        if !r.more {
            break;
        }
    }
    let rows: Vec<Value> = records
        .iter()
        .map(|u| {
            json!({"seq": u.seq, "id": u.id, "app": u.app, "dyno": u.dyno, "dyno_id": u.dyno_id, "type": u.r#type,
                "size": u.size, "release": u.release, "start": u.start.map(ts_secs), "end": u.end.map(ts_secs),
                "seconds": u.seconds, "cpu_ms": u.cpu_ms, "mem_peak_bytes": u.mem_peak_bytes,
                "run_id": u.run_id, "final": u.r#final})
        })
        .collect();
    if json {
        print_json(&Value::Array(rows));
    } else if csv {
        println!("seq,id,app,dyno,dyno_id,type,size,release,start,end,seconds,cpu_ms,mem_peak_bytes,run_id,final");
        for u in &records {
            println!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                u.seq,
                u.id,
                u.app,
                u.dyno,
                u.dyno_id,
                u.r#type,
                u.size,
                u.release,
                u.start.map(ts_secs).unwrap_or_default(),
                u.end.map(ts_secs).unwrap_or_default(),
                u.seconds,
                u.cpu_ms,
                u.mem_peak_bytes,
                u.run_id,
                u.r#final
            );
        }
    } else {
        print!("{}", usage_table(&records));
    }
    Ok(0)
}

async fn ps(agent: &mut AgentClient<Channel>, app: Option<String>, states: &[String], json: bool) -> R<i32> {
    let mut wanted = Vec::new();
    for s in states {
        let state = pb::DynoState::from_str_name(&format!("DYNO_STATE_{}", s.to_ascii_uppercase()))
            .filter(|s| *s != pb::DynoState::Unspecified)
            .ok_or_else(|| {
                Failure::new(
                    tonic::Code::InvalidArgument,
                    format!("--state {s:?}: one of starting, up, crashed, down"),
                )
            })?;
        wanted.push(state as i32);
    }
    let r = agent
        .list_dynos(pb::ListDynosRequest {
            app: app.unwrap_or_default(),
            states: wanted,
        })
        .await?
        .into_inner();
    if json {
        print_json(&Value::Array(r.dynos.iter().map(dyno_json).collect()));
    } else if r.dynos.is_empty() {
        println!("No dynos on this host.");
    } else {
        print!("{}", format_ps(&r.dynos, Utc::now()));
    }
    Ok(0)
}

fn first_is_tty(first: &pb::ExecRequest) -> bool {
    matches!(&first.request, Some(pb::exec_request::Request::Start(s)) if s.tty)
}
