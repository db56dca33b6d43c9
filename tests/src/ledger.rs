//! The usage ledger as the fault tests read it: its records (with the
//! `sqlite3` command-line tool, as ops would), the runs' lives from their
//! exec and exit records, and the billing check every fault test makes.
//!
//! [`check_billing`] holds each run to DESIGN §8: its records tile its life
//! without gap or overlap, only the last is `final`, none passes the exit
//! the shim recorded (or, for a run that vanished without one, the moment
//! the test made it vanish), and they add up to its running time within
//! 1 s. It also reports the worst billing error it saw.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use chrono::{DateTime, Utc};
use dyno_agent::runs::{ExecRecord, ExitRecord, read_json};
use serde_json::Value;

/// One row of the ledger's `usage` table (the fields the checks need).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rec {
    pub seq: u64,
    pub run_id: String,
    pub start: i64,
    pub end: i64,
    pub seconds: i64,
    pub is_final: bool,
}

/// Runs `query` on the ledger of state directory `state` (`-json` rows).
pub fn sql(state: &Path, query: &str) -> Vec<Value> {
    let db = state.join("ledger.db");
    let out = Command::new("sqlite3")
        .args(["-json", "-cmd", ".timeout 20000"])
        .arg(&db)
        .arg(query)
        .output()
        .expect("run sqlite3 (the sqlite3 command-line tool reads the ledger in these tests)");
    assert!(
        out.status.success(),
        "sqlite3 {} {query:?}: {}",
        db.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sqlite3 json {text:?}: {e}"))
    }
}

/// Every record of the ledger, in `seq` order.
pub fn records(state: &Path) -> Vec<Rec> {
    let int = |v: &Value, k: &str| v[k].as_i64().unwrap_or_else(|| panic!("no integer {k} in {v}"));
    sql(
        state,
        "SELECT seq, run_id, start, end, seconds, final FROM usage ORDER BY seq",
    )
    .iter()
    .map(|v| Rec {
        seq: int(v, "seq") as u64,
        run_id: v["run_id"].as_str().expect("run_id").to_string(),
        start: int(v, "start"),
        end: int(v, "end"),
        seconds: int(v, "seconds"),
        is_final: int(v, "final") == 1,
    })
    .collect()
}

/// Meters not closed yet.
pub fn open_meters(state: &Path) -> i64 {
    sql(state, "SELECT count(*) AS n FROM meters WHERE closed_at IS NULL")[0]["n"]
        .as_i64()
        .expect("count")
}

/// What the shim recorded about a run: exec'd at, exited at (None: no exit
/// record).
#[derive(Clone, Copy, Debug)]
pub struct Life {
    pub started: DateTime<Utc>,
    pub exited: Option<DateTime<Utc>>,
}

/// The lives of every run directory under `state/runs` now, added to `lives`
/// (a run already known keeps what was read first: directories of old runs
/// are removed by the agent).
pub fn read_lives(state: &Path, lives: &mut BTreeMap<String, Life>) {
    let Ok(dir) = std::fs::read_dir(state.join("runs")) else {
        return;
    };
    for e in dir.flatten() {
        let id = e.file_name().to_string_lossy().into_owned();
        let Some(exec) = read_json::<ExecRecord>(&e.path().join("exec.json")).ok().flatten() else {
            continue;
        };
        let exit = read_json::<ExitRecord>(&e.path().join("exit.json")).ok().flatten();
        let life = lives.entry(id).or_insert(Life {
            started: exec.started_at,
            exited: None,
        });
        if life.exited.is_none() {
            life.exited = exit.map(|x| x.exited_at);
        }
    }
}

fn secs_f(t: DateTime<Utc>) -> f64 {
    t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) / 1e9
}

/// What [`check_billing`] found.
#[derive(Debug, Default)]
pub struct Billing {
    /// Every violation of the contract.
    pub bad: Vec<String>,
    /// The largest |billed - ran| of a run with an exit record, or of
    /// (vanished - billed end) for a vanished one, in seconds.
    pub worst_error: f64,
    pub worst_run: String,
    pub runs: usize,
}

/// Checks every run in `recs` against its life (see the module's doc).
/// `vanished` holds, for runs that ended without an exit record, the moment
/// the test made them end: they must be billed to within `lost_slack`
/// seconds before it and never past it.
pub fn check_billing(
    recs: &[Rec],
    lives: &BTreeMap<String, Life>,
    vanished: &BTreeMap<String, DateTime<Utc>>,
    lost_slack: f64,
) -> Billing {
    let mut b = Billing::default();
    let mut by_run: BTreeMap<&str, Vec<&Rec>> = BTreeMap::new();
    for r in recs {
        by_run.entry(&r.run_id).or_default().push(r);
    }
    for (run, rs) in &by_run {
        b.runs += 1;
        for w in rs.windows(2) {
            if w[1].start != w[0].end {
                b.bad.push(format!(
                    "{run}: [{}, {}) then [{}, {})",
                    w[0].start, w[0].end, w[1].start, w[1].end
                ));
            }
        }
        for (i, r) in rs.iter().enumerate() {
            let last = i + 1 == rs.len();
            if r.seconds != r.end - r.start || (r.end <= r.start && !(last && r.is_final)) {
                b.bad.push(format!(
                    "{run}: seq {} [{}, {}) seconds {}",
                    r.seq, r.start, r.end, r.seconds
                ));
            }
            if r.is_final && !last {
                b.bad
                    .push(format!("{run}: seq {} is final and not the last record", r.seq));
            }
        }
        let last = rs[rs.len() - 1];
        if !last.is_final {
            b.bad.push(format!(
                "{run}: ended and its last record (seq {}) is not final",
                last.seq
            ));
        }
        let billed: i64 = rs.iter().map(|r| r.seconds).sum();
        let Some(life) = lives.get(*run) else {
            b.bad.push(format!("{run}: billed, no exec record seen"));
            continue;
        };
        if (rs[0].start - life.started.timestamp()).abs() > 1 {
            b.bad.push(format!(
                "{run}: first record at {}, exec'd at {}",
                rs[0].start, life.started
            ));
        }
        let error = match (life.exited, vanished.get(*run)) {
            (Some(exited), _) => {
                if last.end > exited.timestamp() {
                    b.bad.push(format!(
                        "{run}: billed to {}, {} s past its recorded exit {exited}",
                        last.end,
                        last.end - exited.timestamp()
                    ));
                }
                let error = billed as f64 - (secs_f(exited) - secs_f(life.started));
                if error.abs() > 1.0 {
                    b.bad
                        .push(format!("{run}: billed {billed} s, ran {:.3} s", billed as f64 - error));
                }
                error
            }
            (None, Some(gone)) => {
                let error = last.end as f64 - secs_f(*gone);
                if last.end > gone.timestamp() || error < -lost_slack {
                    b.bad.push(format!(
                        "{run}: vanished at {gone} without an exit record, billed to {} ({error:+.3} s)",
                        DateTime::<Utc>::from_timestamp(last.end, 0).expect("time")
                    ));
                }
                error
            }
            (None, None) => {
                b.bad.push(format!(
                    "{run}: billed to its end but no exit record and no vanishing seen"
                ));
                0.0
            }
        };
        if error.abs() > b.worst_error.abs() {
            b.worst_error = error;
            b.worst_run = run.to_string();
        }
    }
    // A run that ran whole seconds has records: none is forgotten.
    for (run, life) in lives {
        let end = life.exited.or_else(|| vanished.get(run).copied());
        if let Some(end) = end
            && end.timestamp() > life.started.timestamp() + 1
            && !by_run.contains_key(run.as_str())
        {
            b.bad.push(format!(
                "{run}: ran from {} to {end} and was never billed",
                life.started
            ));
        }
    }
    b
}

/// Stops every dyno, waits until every meter is closed, then checks the
/// whole ledger; prints and returns the worst billing error.
pub fn stop_and_check(
    a: &crate::TestAgent,
    what: &str,
    lives: &mut BTreeMap<String, Life>,
    vanished: &BTreeMap<String, DateTime<Utc>>,
) -> f64 {
    a.ctl_ok(&["stop", "--all"]);
    crate::wait_ok("every dyno down and every meter closed", || {
        let down = a.ps().iter().all(|d| d["state"] == "down");
        let info = a.info();
        let settled = info["usage"]["open_runs"] == 0 && info["usage"]["pending_writes"] == 0;
        if down && settled && open_meters(&a.state) == 0 {
            Ok(())
        } else {
            Err(format!("down {down}, info {}", info["usage"]))
        }
    });
    read_lives(&a.state, lives);
    let recs = records(&a.state);
    let b = check_billing(&recs, lives, vanished, 2.5);
    println!(
        "{what}: {} runs, worst billing error {:+.3} s (run {})",
        b.runs, b.worst_error, b.worst_run
    );
    assert!(
        b.bad.is_empty(),
        "{what}: {} violations:\n  {}\nrecords: {recs:?}\nlives: {lives:#?}\n--- agent log ---\n{}",
        b.bad.len(),
        b.bad.join("\n  "),
        a.agent_log()
    );
    b.worst_error
}
