//! The usage ledger: what billing is owed, in SQLite at `<state-dir>/ledger.db`.
//!
//! Two tables carry the invariant "the records of a run tile its life from
//! exec to exit, without gap or overlap":
//! - `meters`: one row per run that was ever metered: who it belongs to, when
//!   it was exec'd (`start`), how far it is billed (`billed_until`), the CPU
//!   time billed so far, and whether it is closed;
//! - `usage`: the records, immutable once written; each covers
//!   `[start, end)` of one run within one slice.
//!
//! A record is only ever written from a meter's `billed_until` onwards, and
//! the meter is moved forward in the same transaction; a transaction that
//! fails moves nothing. So after any crash the next write starts where the
//! last committed one stopped: nothing is billed twice and no second is
//! skipped. Times are whole UTC seconds (a run exec'd at 10:00:00.7 starts at
//! 10:00:00; one ending at 10:05:03.2 ends at 10:05:03), so a run's records
//! add up to its running time within one second. A time before
//! `billed_until` (the wall clock stepped back) is clamped: never a negative
//! or doubled second.
//!
//! `seq` is assigned here from `ledger_meta.next_seq`, in the same
//! transaction as the record, so it is strictly increasing with no holes and
//! is never reused, even after collected records are pruned. `id` is
//! `<host-id>:<seq>`, written with the record.
//!
//! Durability: WAL with `synchronous = FULL`: a commit is on disk before it
//! returns, so a record that Collect has handed out survives even a power
//! loss (with NORMAL, a lost commit would give its `seq` and `id` to a
//! different record).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::cgroup::Usage;

/// Unix seconds, UTC.
pub type Secs = i64;

/// The schema this agent writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE usage (
    seq            INTEGER PRIMARY KEY,
    id             TEXT    NOT NULL,
    run_id         TEXT    NOT NULL,
    app            TEXT    NOT NULL,
    dyno           TEXT    NOT NULL,
    dyno_id        TEXT    NOT NULL,
    type           TEXT    NOT NULL,
    size           TEXT    NOT NULL,
    release        TEXT    NOT NULL,
    start          INTEGER NOT NULL,
    end            INTEGER NOT NULL,
    seconds        INTEGER NOT NULL,
    cpu_ms         INTEGER NOT NULL,
    mem_peak_bytes INTEGER NOT NULL,
    collected_at   INTEGER
);
CREATE INDEX usage_uncollected ON usage (seq) WHERE collected_at IS NULL;
CREATE INDEX usage_collected ON usage (collected_at) WHERE collected_at IS NOT NULL;
CREATE TABLE meters (
    run_id       TEXT    PRIMARY KEY,
    app          TEXT    NOT NULL,
    dyno         TEXT    NOT NULL,
    dyno_id      TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    size         TEXT    NOT NULL,
    release      TEXT    NOT NULL,
    start        INTEGER NOT NULL,
    billed_until INTEGER NOT NULL,
    cpu_ns       INTEGER NOT NULL,
    closed_at    INTEGER
);
CREATE TABLE ledger_meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO ledger_meta (key, value) VALUES ('next_seq', 1);
";

/// What went wrong with the ledger; every variant names the database.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {error}")]
    Sqlite {
        path: PathBuf,
        #[source]
        error: rusqlite::Error,
    },
    #[error("ledger {path}: {error}")]
    Io {
        path: PathBuf,
        #[source]
        error: std::io::Error,
    },
    #[error("ledger {path}: schema version {found} is newer than this agent's ({SCHEMA_VERSION})")]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("seq {seq} was never written (the last record is {last})")]
    AckBeyondEnd { seq: u64, last: u64 },
}

pub type Result<T, E = LedgerError> = std::result::Result<T, E>;

/// Who a run belongs to, as its records say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunInfo {
    pub run_id: String,
    pub app: String,
    pub dyno: String,
    pub dyno_id: String,
    pub ptype: String,
    pub size: String,
    pub release: String,
}

/// A metered run not closed yet (its row in `meters`) and how far it is
/// billed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenRun {
    pub run: RunInfo,
    /// Exec time.
    pub start: Secs,
    /// Everything before this is in `usage`.
    pub billed_until: Secs,
    /// CPU time billed so far (the cgroup's cumulative counter at `billed_until`).
    pub cpu_ns: u64,
}

/// One usage record (the contract fields, plus the run it belongs to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub id: String,
    pub run_id: String,
    pub app: String,
    pub dyno: String,
    pub dyno_id: String,
    pub ptype: String,
    pub size: String,
    pub release: String,
    pub start: Secs,
    pub end: Secs,
    pub seconds: u64,
    pub cpu_ms: u64,
    pub mem_peak_bytes: u64,
}

/// The start of the slice holding `t` (slices are aligned to the Unix
/// epoch, so 3600 s slices are UTC hours).
pub fn slice_start(t: Secs, slice: u64) -> Secs {
    let slice = slice as i64;
    t.div_euclid(slice) * slice
}

/// `[from, to)` cut at every slice boundary; empty when `to <= from`.
pub fn pieces(from: Secs, to: Secs, slice: u64) -> Vec<(Secs, Secs)> {
    let mut out = Vec::new();
    let mut at = from;
    while at < to {
        let next = (slice_start(at, slice) + slice as i64).min(to);
        out.push((at, next));
        at = next;
    }
    out
}

/// Shares `total_ns` of CPU among `pieces` in proportion to their length, as
/// whole milliseconds that add up to what the cumulative counter crossed:
/// with `billed_ns` already billed, piece `i` gets
/// `ms(billed + share(0..=i)) - ms(billed + share(0..i))`.
fn cpu_shares(billed_ns: u64, total_ns: u64, pieces: &[(Secs, Secs)]) -> Vec<u64> {
    let secs: u64 = pieces.iter().map(|(a, b)| (b - a) as u64).sum();
    let mut done = 0u64;
    let mut given = 0u64;
    pieces
        .iter()
        .map(|(a, b)| {
            done += (b - a) as u64;
            let upto = if done == secs {
                total_ns
            } else {
                (total_ns as u128 * done as u128 / secs as u128) as u64
            };
            let ms = (billed_ns + upto) / 1_000_000 - (billed_ns + given) / 1_000_000;
            given = upto;
            ms
        })
        .collect()
}

/// The ledger database.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    host_id: String,
    slice: u64,
    /// Open runs, as committed (reloaded after a failed transaction).
    open: HashMap<String, OpenRun>,
}

impl Ledger {
    /// Opens (creating if needed) the ledger at `path`. `slice` is in
    /// seconds (at least 1).
    pub fn open(path: &Path, host_id: &str, slice: u64) -> Result<Ledger> {
        assert!(slice >= 1, "the usage slice is at least one second");
        let sql = |error| LedgerError::Sqlite {
            path: path.to_owned(),
            error,
        };
        // Created 0600 before SQLite opens it (an empty file is an empty
        // database): SQLite gives the `-wal` and `-shm` files the database
        // file's mode, so none of them is ever readable by other users.
        crate::private::append(path).map_err(|error| LedgerError::Io {
            path: path.to_owned(),
            error,
        })?;
        let conn = Connection::open(path).map_err(sql)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(sql)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(sql)?;
        if version > SCHEMA_VERSION {
            return Err(LedgerError::NewerSchema {
                path: path.to_owned(),
                found: version,
            });
        }
        if version == 0 {
            let tx = conn.unchecked_transaction().map_err(sql)?;
            tx.execute_batch(SCHEMA).map_err(sql)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sql)?;
            tx.commit().map_err(sql)?;
        }
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            host_id: host_id.to_owned(),
            slice,
            open: HashMap::new(),
        };
        ledger.reload()?;
        Ok(ledger)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sql(&self, error: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            error,
        }
    }

    /// Reloads the open runs from the database (after a failed write, the
    /// in-memory copy may be ahead of what was committed).
    fn reload(&mut self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, app, dyno, dyno_id, type, size, release, start, billed_until, cpu_ns
                 FROM meters WHERE closed_at IS NULL",
            )
            .map_err(|e| self.sql(e))?;
        let open = stmt
            .query_map([], |r| {
                Ok(OpenRun {
                    run: RunInfo {
                        run_id: r.get(0)?,
                        app: r.get(1)?,
                        dyno: r.get(2)?,
                        dyno_id: r.get(3)?,
                        ptype: r.get(4)?,
                        size: r.get(5)?,
                        release: r.get(6)?,
                    },
                    start: r.get(7)?,
                    billed_until: r.get(8)?,
                    cpu_ns: r.get::<_, i64>(9)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        drop(stmt);
        self.open = open.into_iter().map(|m| (m.run.run_id.clone(), m)).collect();
        Ok(())
    }

    /// The runs metered and not closed yet.
    pub fn open_runs(&self) -> impl Iterator<Item = &OpenRun> {
        self.open.values()
    }

    /// Whether `run_id` has an open meter.
    pub fn is_open(&self, run_id: &str) -> bool {
        self.open.contains_key(run_id)
    }

    /// Starts metering a run exec'd at `start`. Idempotent: a run that is
    /// already metered, open or closed, is left alone (returns false).
    pub fn open_run(&mut self, run: &RunInfo, start: Secs) -> Result<bool> {
        let added = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO meters
                 (run_id, app, dyno, dyno_id, type, size, release, start, billed_until, cpu_ns)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0)",
                params![
                    run.run_id,
                    run.app,
                    run.dyno,
                    run.dyno_id,
                    run.ptype,
                    run.size,
                    run.release,
                    start
                ],
            )
            .map_err(|e| self.sql(e))?
            == 1;
        if added {
            self.open.insert(
                run.run_id.clone(),
                OpenRun {
                    run: run.clone(),
                    start,
                    billed_until: start,
                    cpu_ns: 0,
                },
            );
        }
        Ok(added)
    }

    /// The open runs with a whole slice not yet billed at `now`.
    pub fn due(&self, now: Secs) -> Vec<String> {
        let boundary = slice_start(now, self.slice);
        self.open
            .values()
            .filter(|m| m.billed_until < boundary)
            .map(|m| m.run.run_id.clone())
            .collect()
    }

    /// Bills every listed open run up to the start of the slice holding
    /// `now`, with its `usage` reading (None: not readable, bill no CPU and
    /// no memory for it). One transaction; returns the records written.
    pub fn advance(&mut self, now: Secs, readings: &[(String, Option<Usage>)]) -> Result<usize> {
        let boundary = slice_start(now, self.slice);
        let mut updates = Vec::new();
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let result = (|| {
            let mut seq = next_seq(&tx)?;
            let mut written = 0;
            for (run_id, usage) in readings {
                let Some(m) = self.open.get(run_id) else { continue };
                if m.billed_until >= boundary {
                    continue;
                }
                let m = bill(
                    &tx,
                    &self.host_id,
                    self.slice,
                    &mut seq,
                    m,
                    boundary,
                    *usage,
                    &mut written,
                )?;
                tx.prepare_cached("UPDATE meters SET billed_until = ?2, cpu_ns = ?3 WHERE run_id = ?1")?
                    .execute(params![m.run.run_id, m.billed_until, m.cpu_ns as i64])?;
                updates.push(m);
            }
            set_next_seq(&tx, seq)?;
            Ok::<_, rusqlite::Error>(written)
        })();
        let written = result.and_then(|w| tx.commit().map(|()| w)).map_err(|e| self.sql(e))?;
        for m in updates {
            self.open.insert(m.run.run_id.clone(), m);
        }
        Ok(written)
    }

    /// Bills a run up to its end and closes its meter. A run without an
    /// open meter is left alone (returns 0), so closing twice is harmless.
    pub fn close(&mut self, run_id: &str, end: Secs, usage: Option<Usage>) -> Result<usize> {
        let Some(m) = self.open.get(run_id) else { return Ok(0) };
        if end < m.billed_until {
            tracing::warn!(
                run = run_id,
                end,
                billed_until = m.billed_until,
                "a run ended before the time it is billed to (the clock stepped back?): billed to then"
            );
        }
        let end = end.max(m.billed_until);
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let result = (|| {
            let mut seq = next_seq(&tx)?;
            let mut written = 0;
            let m = bill(&tx, &self.host_id, self.slice, &mut seq, m, end, usage, &mut written)?;
            tx.execute(
                "UPDATE meters SET billed_until = ?2, cpu_ns = ?3, closed_at = ?2 WHERE run_id = ?1",
                params![m.run.run_id, m.billed_until, m.cpu_ns as i64],
            )?;
            set_next_seq(&tx, seq)?;
            Ok::<_, rusqlite::Error>(written)
        })();
        let written = result.and_then(|w| tx.commit().map(|()| w)).map_err(|e| self.sql(e))?;
        self.open.remove(run_id);
        Ok(written)
    }

    /// Records with `seq > after_seq` in `seq` order, at most `limit`, and
    /// whether more follow. Only uncollected ones unless `include_collected`.
    pub fn collect(&self, after_seq: u64, limit: u32, include_collected: bool) -> Result<(Vec<Record>, bool)> {
        let sql = format!(
            "SELECT seq, id, run_id, app, dyno, dyno_id, type, size, release, start, end, seconds, cpu_ms, mem_peak_bytes
             FROM usage WHERE seq > ?1 {} ORDER BY seq LIMIT ?2",
            if include_collected { "" } else { "AND collected_at IS NULL" }
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(|e| self.sql(e))?;
        let mut records = stmt
            .query_map(params![after_seq.min(i64::MAX as u64) as i64, limit as i64 + 1], |r| {
                Ok(Record {
                    seq: r.get::<_, i64>(0)? as u64,
                    id: r.get(1)?,
                    run_id: r.get(2)?,
                    app: r.get(3)?,
                    dyno: r.get(4)?,
                    dyno_id: r.get(5)?,
                    ptype: r.get(6)?,
                    size: r.get(7)?,
                    release: r.get(8)?,
                    start: r.get(9)?,
                    end: r.get(10)?,
                    seconds: r.get::<_, i64>(11)? as u64,
                    cpu_ms: r.get::<_, i64>(12)? as u64,
                    mem_peak_bytes: r.get::<_, i64>(13)? as u64,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        let more = records.len() > limit as usize;
        records.truncate(limit as usize);
        Ok((records, more))
    }

    /// The last `seq` written (0 before the first record).
    pub fn last_seq(&self) -> Result<u64> {
        next_seq(&self.conn).map(|n| n - 1).map_err(|e| self.sql(e))
    }

    /// Marks every record with `seq <= seq` collected at `now`; returns how
    /// many were newly marked. Acking a `seq` not written yet is an error (a
    /// collector must never confirm records it has not seen).
    pub fn ack(&mut self, seq: u64, now: Secs) -> Result<u64> {
        let last = self.last_seq()?;
        if seq > last {
            return Err(LedgerError::AckBeyondEnd { seq, last });
        }
        let n = self
            .conn
            .execute(
                "UPDATE usage SET collected_at = ?2 WHERE seq <= ?1 AND collected_at IS NULL",
                params![seq as i64, now],
            )
            .map_err(|e| self.sql(e))?;
        Ok(n as u64)
    }

    /// Deletes records collected before `now - retention` and closed meters
    /// older than that; uncollected records are never deleted. Returns the
    /// records deleted.
    pub fn prune(&mut self, now: Secs, retention: u64) -> Result<usize> {
        let before = now - retention as i64;
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let n = tx
            .execute(
                "DELETE FROM usage WHERE collected_at IS NOT NULL AND collected_at < ?1",
                params![before],
            )
            .and_then(|n| {
                tx.execute(
                    "DELETE FROM meters WHERE closed_at IS NOT NULL AND closed_at < ?1",
                    params![before],
                )?;
                Ok(n)
            })
            .and_then(|n| tx.commit().map(|()| n))
            .map_err(|e| self.sql(e))?;
        Ok(n)
    }
}

fn next_seq(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM ledger_meta WHERE key = 'next_seq'", [], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map(|v| v.unwrap_or(1) as u64)
}

fn set_next_seq(tx: &Transaction<'_>, seq: u64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE ledger_meta SET value = ?1 WHERE key = 'next_seq'",
        params![seq as i64],
    )
    .map(|_| ())
}

/// Writes the records of `m` from its `billed_until` to `to`, one per slice,
/// and returns it billed up to `to`.
#[allow(clippy::too_many_arguments)]
fn bill(
    tx: &Transaction<'_>,
    host_id: &str,
    slice: u64,
    seq: &mut u64,
    m: &OpenRun,
    to: Secs,
    usage: Option<Usage>,
    written: &mut usize,
) -> rusqlite::Result<OpenRun> {
    let spans = pieces(m.billed_until, to, slice);
    let mut next = m.clone();
    if spans.is_empty() {
        return Ok(next);
    }
    // A counter that went backwards (a new cgroup?) bills no CPU.
    let cpu_total = usage.map_or(0, |u| u.cpu_ns.saturating_sub(m.cpu_ns));
    let peak = usage.map_or(0, |u| u.mem_peak_bytes);
    let shares = cpu_shares(m.cpu_ns, cpu_total, &spans);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO usage (seq, id, run_id, app, dyno, dyno_id, type, size, release, start, end, seconds, cpu_ms,
                            mem_peak_bytes)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    let r = &m.run;
    for ((start, end), cpu_ms) in spans.into_iter().zip(shares) {
        stmt.execute(params![
            *seq as i64,
            format!("{host_id}:{seq}"),
            r.run_id,
            r.app,
            r.dyno,
            r.dyno_id,
            r.ptype,
            r.size,
            r.release,
            start,
            end,
            end - start,
            cpu_ms as i64,
            peak as i64
        ])?;
        *seq += 1;
        *written += 1;
    }
    next.billed_until = to;
    next.cpu_ns = m.cpu_ns + cpu_total;
    Ok(next)
}

#[cfg(test)]
mod tests;
