//! Attached one-offs, detached one-offs and exec (issue 15): the real
//! `dynoctl` driven in a pty the test opens, as a person at a terminal
//! would; piped streams without a terminal; callers and agents that go away;
//! `Attach` and `Exec` over gRPC without dynoctl.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dyno_proto::v1 as pb;
use dyno_tests::*;
use nix::pty::{Winsize, openpty};
use nix::sys::termios::tcgetattr;

/// dynoctl in a terminal of the test's own: the pty's master side.
struct Term {
    master: std::fs::File,
    slave: OwnedFd,
    child: Child,
    out: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Term {
    /// `dynoctl ARGS` as the session leader of a new pty of 24x80 (its
    /// controlling terminal, so that it gets SIGWINCH).
    fn spawn(a: &TestAgent, args: &[&str]) -> Term {
        let size = Winsize {
            ws_row: 24,
            ws_col: 80,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(Some(&size), None).expect("openpty");
        let slave = pty.slave;
        let io = || Stdio::from(slave.try_clone().expect("dup slave"));
        let child = Command::new("setsid")
            .arg("--ctty")
            .arg(env::ctl_bin())
            .arg("--socket")
            .arg(&a.socket)
            .args(args)
            .stdin(io())
            .stdout(io())
            .stderr(io())
            .spawn()
            .expect("setsid dynoctl");
        let master = std::fs::File::from(pty.master);
        let mut reader = master.try_clone().expect("dup master");
        let (tx, out) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    return;
                }
            }
        });
        Term {
            master,
            slave,
            child,
            out,
            seen: String::new(),
        }
    }

    fn type_(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).expect("type");
    }

    /// Reads until `want` appears after everything read so far; returns
    /// what came up to and including it.
    fn expect(&mut self, want: &str) -> String {
        let deadline = Instant::now() + wait::DEADLINE;
        loop {
            if let Some(i) = self.seen.find(want) {
                let got = self.seen[..i + want.len()].to_string();
                self.seen.drain(..i + want.len());
                return got;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.out.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(b) => self.seen.push_str(&String::from_utf8_lossy(&b)),
                Err(mpsc::RecvTimeoutError::Timeout) if !left.is_zero() => {}
                _ => panic!("the terminal never showed {want:?}; it showed:\n{}", self.seen),
            }
        }
    }

    fn resize(&self, rows: u16, cols: u16) {
        let size = Winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        dyno_agent::os::tty::set_size(self.master.as_fd(), size.ws_row, size.ws_col).expect("resize");
    }

    fn wait_exit(&mut self) -> i32 {
        let status = wait::wait_for("dynoctl to exit", || self.child.try_wait().ok().flatten());
        status.code().unwrap_or_else(|| panic!("dynoctl killed: {status:?}"))
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Whether a `sleep` runs in the pid namespace of `pid`.
fn sleeping(pid: u32) -> bool {
    procs::pid_namespace_members(pid)
        .into_iter()
        .any(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "sleep"))
}

/// The one one-off of `app` (from `ps`).
fn one_off(a: &TestAgent, app: &str) -> Option<serde_json::Value> {
    a.ps().into_iter().find(|d| d["app"] == app && d["type"] == "run")
}

#[test]
fn an_interactive_session_in_a_pty() {
    let a = TestAgent::start("");
    let slug = a.slug("tty", &[]);
    let slug = show(&slug);
    let mut t = Term::spawn(&a, &run_args("shop", &slug, &["--", "sh"]));
    let before = tcgetattr(t.slave.as_fd()).expect("termios");
    // The shell's prompt, then a command and its answer.
    t.type_("echo hel''lo-$((6*7))\r");
    t.expect("hello-42");
    t.type_("tty\r");
    t.expect("/dev/pts/");
    t.type_("stty size\r");
    t.expect("24 80");
    t.resize(40, 100);
    t.type_("stty size\r");
    t.expect("40 100");
    // The pty belongs to the dyno's uid, and so does the shell.
    t.type_("echo \"U=$(id -u)=O=$(stat -c %u $(tty))=E\"\r");
    let shown = t.expect("=E\r\n");
    let line = &shown[shown.rfind("U=").expect("the answer")..];
    let (uid, owner) = line
        .trim_end()
        .trim_end_matches("=E")
        .trim_start_matches("U=")
        .split_once("=O=")
        .expect("uid and owner");
    assert_eq!(uid, owner, "the pty belongs to the dyno's uid");
    assert_ne!(owner, "0", "the pty is root's");
    // Ctrl-C stops a sleep; the shell goes on.
    t.type_("sleep 1000; echo slept\r");
    wait::wait_for("the sleep in the dyno", || {
        one_off(&a, "shop").and_then(|d| sleeping(procs::pid_of(&d)).then_some(()))
    });
    t.type_("\x03");
    t.type_("echo after-$((1+1))\r");
    let shown = t.expect("after-2");
    assert!(!shown.contains("\nslept"), "the sleep was not interrupted: {shown}");
    t.type_("exit 3\r");
    assert_eq!(t.wait_exit(), 3, "dynoctl exits with the command's status");
    let after = tcgetattr(t.slave.as_fd()).expect("termios");
    assert_eq!(
        (before.local_flags, before.input_flags, before.output_flags),
        (after.local_flags, after.input_flags, after.output_flags),
        "the terminal is restored"
    );
    let d = a.wait_state("shop", one_off(&a, "shop").unwrap()["name"].as_str().unwrap(), "down");
    assert_eq!(d["last_exit"]["code"], 3);
    let logs = a.ctl_ok(&["logs", "--app", "shop"]);
    assert!(logs.contains("Starting process with command"), "{logs}");
    assert!(
        !logs.contains("hello-42"),
        "attached output is the caller's, not the log's: {logs}"
    );
}

#[test]
fn piped_stdin_streams_without_a_tty() {
    let a = TestAgent::start("");
    let slug = show(&a.slug("pipes", &[]));
    let mut child = Command::new(env::ctl_bin())
        .arg("--socket")
        .arg(&a.socket)
        .args(run_args(
            "shop",
            &slug,
            &["--", "sh", "-c", "cat; echo err >&2; tty || exit 7"],
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dynoctl");
    child.stdin.take().unwrap().write_all(b"select 1\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "select 1\nnot a tty\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    // dynoctl's own error is 125, never a command's status.
    let bad = a.ctl(&run_args("shop", "/nonexistent/slug", &["--", "true"]));
    assert_eq!(bad.status.code(), Some(125), "{bad:?}");
}

#[test]
fn detached_prints_the_name_and_logs_the_output() {
    let a = TestAgent::start("");
    let slug = show(&a.slug("det", &[]));
    let name = a.ctl_ok(&run_args("shop", &slug, &["--detached", "--", "echo", "from-detached"]));
    let name = name.trim().to_string();
    assert!(name.starts_with("run."), "{name}");
    a.wait_state("shop", &name, "down");
    wait::wait_for("the detached output in the logs", || {
        a.ctl_ok(&["logs", "--app", "shop", "--dyno", &name])
            .contains("from-detached")
            .then_some(())
    });
}

/// Starts `dynoctl run --no-tty -- sleep 1000` with stdin kept open; returns
/// it and the one-off once it is up.
fn attached_sleeper(a: &TestAgent, slug: &str) -> (Child, serde_json::Value) {
    let child = Command::new(env::ctl_bin())
        .arg("--socket")
        .arg(&a.socket)
        .args(run_args("shop", slug, &["--no-tty", "--", "sleep", "1000"]))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dynoctl");
    let d = wait::wait_for("the attached one-off to be up", || {
        one_off(a, "shop").filter(|d| d["state"] == "up" && d["pid"].as_u64().unwrap_or(0) > 0)
    });
    (child, d)
}

#[test]
fn disconnecting_the_client_ends_the_one_off() {
    let a = TestAgent::start("");
    let slug = show(&a.slug("gone", &[]));
    let (mut child, d) = attached_sleeper(&a, &slug);
    let pid = procs::pid_of(&d);
    child.kill().unwrap();
    child.wait().unwrap();
    let name = d["name"].as_str().unwrap();
    a.wait_state("shop", name, "down");
    wait::wait_for("the one-off's command to be gone", || {
        (!procs::alive(pid)).then_some(())
    });
}

#[test]
fn an_agent_restart_ends_an_attached_one_off() {
    let mut a = TestAgent::start("");
    let slug = show(&a.slug("restart", &[]));
    let (mut child, d) = attached_sleeper(&a, &slug);
    let pid = procs::pid_of(&d);
    a.kill9();
    let status = wait::wait_for("dynoctl to see the agent go", || child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(125), "dynoctl's own error");
    wait::wait_for("the one-off's command to be gone", || {
        (!procs::alive(pid)).then_some(())
    });
    a.spawn();
    a.wait_state("shop", d["name"].as_str().unwrap(), "down");
}

/// A web dyno that is up; returns its `ps` entry.
fn web(a: &TestAgent) -> serde_json::Value {
    let slug = a.slug("web", &[("index.html", "hi\n")]);
    a.start_dyno("shop", "web.1", &slug, "exec busybox httpd -f -p $PORT -h .");
    a.wait_state("shop", "web.1", "up")
}

#[test]
fn exec_runs_inside_the_dyno_and_no_more() {
    let a = TestAgent::start("");
    let d = web(&a);
    let exec = |argv: &[&str]| {
        let mut args = vec!["exec", "--app", "shop", "web.1", "--"];
        args.extend_from_slice(argv);
        a.ctl(&args)
    };
    let out = exec(&[
        "sh",
        "-c",
        "cat index.html; pwd; cat /proc/1/comm; ls /proc | grep -c '^[0-9]'; echo PORT=$PORT DYNO=$DYNO; grep -E '^(Uid|CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{out:?}\n{}", a.agent_log());
    assert!(text.starts_with("hi\n/app\ndyno-init\n"), "{text}");
    assert!(text.contains(&format!("PORT={} DYNO=web.1", d["port"])), "{text}");
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}:")))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    };
    let dyno_uid = std::fs::read_to_string(format!("/proc/{}/status", procs::pid_of(&d)))
        .unwrap()
        .lines()
        .find_map(|l| {
            l.strip_prefix("Uid:")
                .map(|v| v.split_whitespace().next().unwrap().to_string())
        })
        .unwrap();
    assert_eq!(field("Uid"), dyno_uid, "exec runs as the dyno's uid");
    assert_ne!(dyno_uid, "0");
    assert_eq!(field("CapEff"), "0000000000000000");
    assert_eq!(field("CapBnd"), "0000000000000000");
    assert_eq!(field("NoNewPrivs"), "1");
    assert_eq!(field("Seccomp"), "2");
    // As an attacker: the dyno's init and the host are out of reach.
    let kill = exec(&["sh", "-c", "kill -9 1; echo rc=$?"]);
    assert!(String::from_utf8_lossy(&kill.stdout).contains("rc=1"), "{kill:?}");
    // The status comes back; the dyno goes on after the session.
    assert_eq!(exec(&["sh", "-c", "exit 4"]).status.code(), Some(4));
    assert_eq!(a.dyno("shop", "web.1").unwrap()["state"], "up");
    assert_eq!(procs::pid_of(&a.dyno("shop", "web.1").unwrap()), procs::pid_of(&d));
    let logs = a.ctl_ok(&["logs", "--app", "shop", "--dyno", "web.1"]);
    assert!(logs.contains("Starting exec session for uid 0: sh -c"), "{logs}");
    // Exec into a dyno that is not there.
    assert_eq!(exec(&["true"]).status.code(), Some(0));
    let missing = a.ctl(&["exec", "--app", "shop", "web.9", "--", "true"]);
    assert_eq!(missing.status.code(), Some(125));
    // No helper is left behind.
    wait::wait_for("every exec helper to end", || helpers(&a).is_empty().then_some(()));
}

/// Live exec helpers of this agent (`dynoagent exec <run-dir> …`).
fn helpers(a: &TestAgent) -> Vec<String> {
    let runs = format!(" exec {}/", a.state.join("runs").display());
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().expect("ps");
    String::from_utf8_lossy(&ps.stdout)
        .lines()
        .filter(|l| l.contains(&runs))
        .map(str::to_string)
        .collect()
}

#[test]
fn exec_in_a_pty_and_its_caller_going() {
    let a = TestAgent::start("");
    web(&a);
    let mut t = Term::spawn(&a, &["exec", "--app", "shop", "web.1", "--", "sh"]);
    t.type_("tty; echo in-$HOSTNAME-$((2+3))\r");
    t.expect("/dev/pts/");
    t.expect("-5");
    t.type_("exit 6\r");
    assert_eq!(t.wait_exit(), 6);
    // A caller that goes: its session ends, the dyno does not.
    let mut t = Term::spawn(&a, &["exec", "--app", "shop", "web.1", "--", "sh"]);
    // (What is typed is echoed by the pty before the shell runs: the
    // answer is what only the shell can say.)
    t.type_("echo re''ady\r");
    t.expect("ready");
    let ps = Command::new("ps").args(["-eo", "pid,args"]).output().expect("ps");
    assert_eq!(
        helpers(&a).len(),
        1,
        "one exec helper while the session lasts; state {}; ps:\n{}",
        a.state.display(),
        String::from_utf8_lossy(&ps.stdout)
    );
    // What a session costs the host: the helper (its memory and fds) and
    // the agent's extra fds (the pty master and the channel).
    let helper: u32 = helpers(&a)[0].split_whitespace().next().unwrap().parse().unwrap();
    let fds = |pid: u32| std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let rss = std::fs::read_to_string(format!("/proc/{helper}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let agent_during = fds(a.agent_pid());
    let helper_fds = fds(helper);
    let _ = t.child.kill();
    let _ = t.child.wait();
    wait::wait_for("the exec session to end", || helpers(&a).is_empty().then_some(()));
    let agent_after = wait::wait_for("the agent to close the session's fds", || {
        let n = fds(a.agent_pid());
        (n < agent_during).then_some(n)
    });
    eprintln!(
        "exec session cost: 1 helper process (rss {rss}, {} fds) + the command; agent fds {agent_during} during, {agent_after} after",
        helper_fds
    );
    assert_eq!(a.dyno("shop", "web.1").unwrap()["state"], "up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_and_exec_over_grpc() {
    let a = grpc::blocking(|| TestAgent::start(""));
    let slug = grpc::blocking(|| a.slug("grpc", &[]));
    let mut client = a.client().await;
    let input = |i| pb::AttachRequest {
        request: Some(pb::attach_request::Request::Input(pb::SessionInput { input: Some(i) })),
    };
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut start = grpc::start_req("shop", "", &slug, "cat; exit 9");
    start.one_off = true;
    tx.send(pb::AttachRequest {
        request: Some(pb::attach_request::Request::Start(pb::AttachStart {
            start: Some(start),
            tty: false,
            size: None,
        })),
    })
    .await
    .unwrap();
    tx.send(input(pb::session_input::Input::Stdin(b"over grpc\n".to_vec())))
        .await
        .unwrap();
    tx.send(input(pb::session_input::Input::StdinEof(true))).await.unwrap();
    let mut out = client
        .attach(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let (mut started, mut stdout, mut exit) = (None, Vec::new(), None);
    while let Some(m) = grpc::next_within(&mut out, wait::DEADLINE).await {
        match m.output {
            Some(pb::session_output::Output::Started(d)) => started = Some(d),
            Some(pb::session_output::Output::Stdout(b)) => stdout.extend(b),
            Some(pb::session_output::Output::Exit(x)) => exit = Some(x),
            _ => {}
        }
    }
    let started = started.expect("the started one-off comes first");
    assert!(started.name.starts_with("run."));
    assert_eq!(stdout, b"over grpc\n");
    assert_eq!(exit.expect("an exit status").code, Some(9));

    // Exec: a web dyno, a pty, a resize and a signal.
    grpc::blocking(|| web(&a));
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let einput = |i| pb::ExecRequest {
        request: Some(pb::exec_request::Request::Input(pb::SessionInput { input: Some(i) })),
    };
    tx.send(pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            app: "shop".into(),
            name: "web.1".into(),
            argv: vec!["sh".into()],
            tty: true,
            size: Some(pb::TerminalSize { rows: 10, cols: 50 }),
        })),
    })
    .await
    .unwrap();
    let mut out = client
        .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    tx.send(einput(pb::session_input::Input::Stdin(b"stty size\r".to_vec())))
        .await
        .unwrap();
    let mut seen = String::new();
    let mut read_until = async |want: &str, seen: &mut String| {
        while !seen.contains(want) {
            match grpc::next_within(&mut out, wait::DEADLINE).await {
                Some(pb::SessionOutput {
                    output: Some(pb::session_output::Output::Stdout(b)),
                }) => seen.push_str(&String::from_utf8_lossy(&b)),
                Some(pb::SessionOutput {
                    output: Some(pb::session_output::Output::Exit(x)),
                }) => return Some(x),
                Some(_) => {}
                None => panic!("no {want:?} in {seen}"),
            }
        }
        None
    };
    read_until("10 50", &mut seen).await;
    tx.send(einput(pb::session_input::Input::Resize(pb::TerminalSize {
        rows: 33,
        cols: 77,
    })))
    .await
    .unwrap();
    tx.send(einput(pb::session_input::Input::Stdin(
        b"stty size; sleep 1000\r".to_vec(),
    )))
    .await
    .unwrap();
    read_until("33 77", &mut seen).await;
    let web_pid = grpc::blocking(|| procs::pid_of(&a.dyno("shop", "web.1").unwrap()));
    grpc::blocking(|| wait_for("the sleep in the dyno", || sleeping(web_pid).then_some(())));
    tx.send(einput(pb::session_input::Input::Signal(2))).await.unwrap();
    grpc::blocking(|| wait_for("SIGINT to end the sleep", || (!sleeping(web_pid)).then_some(())));
    tx.send(einput(pb::session_input::Input::Stdin(b"exit 5\r".to_vec())))
        .await
        .unwrap();
    let exit = read_until("never-printed", &mut seen).await.expect("an exit status");
    assert_eq!(exit.code, Some(5));

    // The same codes as the rest of the API.
    let code_of = async |client: &mut pb::agent_client::AgentClient<_>, req: pb::ExecRequest| {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(req).await.unwrap();
        client
            .exec(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .map(drop)
            .unwrap_err()
            .code()
    };
    let exec_start = |app: &str, name: &str, argv: Vec<String>| pb::ExecRequest {
        request: Some(pb::exec_request::Request::Start(pb::ExecStart {
            app: app.into(),
            name: name.into(),
            argv,
            tty: false,
            size: None,
        })),
    };
    assert_eq!(
        code_of(&mut client, exec_start("shop", "web.9", vec!["true".into()])).await,
        tonic::Code::NotFound
    );
    assert_eq!(
        code_of(&mut client, exec_start("Shop!", "web.1", vec!["true".into()])).await,
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code_of(&mut client, exec_start("shop", "web.1", vec![])).await,
        tonic::Code::InvalidArgument
    );
    assert_eq!(
        code_of(&mut client, pb::ExecRequest { request: None }).await,
        tonic::Code::InvalidArgument
    );
}

#[test]
fn an_agent_restart_ends_an_exec_session_and_not_its_dyno() {
    let mut a = TestAgent::start("");
    let d = web(&a);
    let pid = procs::pid_of(&d);
    let mut child = Command::new(env::ctl_bin())
        .arg("--socket")
        .arg(&a.socket)
        .args(["exec", "--app", "shop", "web.1", "--no-tty", "--", "sleep", "1000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dynoctl exec");
    wait::wait_for("the exec'd sleep", || sleeping(pid).then_some(()));
    a.kill9();
    let status = wait::wait_for("dynoctl to see the agent go", || child.try_wait().ok().flatten());
    assert_eq!(status.code(), Some(125));
    wait::wait_for("the exec session to end", || {
        (helpers(&a).is_empty() && !sleeping(pid)).then_some(())
    });
    a.spawn();
    let after = a.wait_state("shop", "web.1", "up");
    assert_eq!(procs::pid_of(&after), pid, "the dyno went on");
}
