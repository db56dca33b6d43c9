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
//! A run is billed only as far as it was *seen alive*: the meter checks
//! every open run each second and moves its `seen_alive` (one statement for
//! all of them), and a slice is written once the run was seen alive at least
//! a second into the next one. So a run's records never pass its exit,
//! however late the meter hears of it, and its close (at the exit record's
//! time, or at `seen_alive` for a run that vanished without one) always
//! writes its last record, marked `final`.
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
//!
//! Files: this one (the [`Ledger`] and its operations), `schema` (tables,
//! migrations, connection setup), `bill` (slices, CPU shares, writing a
//! run's records).

mod bill;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, params};

use self::bill::{Writer, next_seq, set_next_seq};
pub use self::bill::{pieces, slice_start};
use crate::cgroup::Usage;

/// Unix seconds, UTC.
pub type Secs = i64;

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
    #[error(
        "ledger {path}: schema version {found} is newer than this agent's ({})",
        schema::SCHEMA_VERSION
    )]
    NewerSchema { path: PathBuf, found: i64 },
    #[error("seq {seq} was never written (the last record is {last})")]
    AckBeyondEnd { seq: u64, last: u64 },
}

impl LedgerError {
    /// Another connection holds a lock SQLite waited for in vain
    /// (`SQLITE_BUSY`, `SQLITE_LOCKED`): it may pass.
    pub fn is_locked(&self) -> bool {
        matches!(
            self,
            LedgerError::Sqlite {
                error: rusqlite::Error::SqliteFailure(e, _),
                ..
            } if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
        )
    }
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
    /// The last second the run was seen running (as committed).
    pub seen_alive: Secs,
}

/// One usage record (the contract fields, plus the run it belongs to and
/// whether it is the run's last).
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
    /// The run's last record (`final` in the API).
    pub is_final: bool,
}

/// The ledger database.
pub struct Ledger {
    conn: Connection,
    path: PathBuf,
    host_id: String,
    slice: u64,
    /// Open runs, as committed (reloaded after a failed transaction).
    open: HashMap<String, OpenRun>,
    /// The next `seq`, as committed.
    next_seq: u64,
}

impl Ledger {
    /// Opens (creating or migrating if needed) the ledger at `path`. `slice`
    /// is in seconds (at least 1). A statement waits at most a quarter of a
    /// second for another process's lock.
    pub fn open(path: &Path, host_id: &str, slice: u64) -> Result<Ledger> {
        assert!(slice >= 1, "the usage slice is at least one second");
        let conn = schema::connect(path)?;
        let mut ledger = Ledger {
            conn,
            path: path.to_owned(),
            host_id: host_id.to_owned(),
            slice,
            open: HashMap::new(),
            next_seq: 1,
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

    /// Reloads the open runs and the next seq from the database (after a
    /// failed write, the in-memory copy may be ahead of what was committed).
    fn reload(&mut self) -> Result<()> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT run_id, app, dyno, dyno_id, type, size, release, start, billed_until, cpu_ns, seen_alive
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
                    seen_alive: r.get(10)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        drop(stmt);
        self.next_seq = next_seq(&self.conn).map_err(|e| self.sql(e))?;
        self.open = open.into_iter().map(|m| (m.run.run_id.clone(), m)).collect();
        Ok(())
    }

    /// The runs metered and not closed yet.
    pub fn open_runs(&self) -> impl Iterator<Item = &OpenRun> {
        self.open.values()
    }

    /// The open meter of `run_id`.
    pub fn open_run_of(&self, run_id: &str) -> Option<&OpenRun> {
        self.open.get(run_id)
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
                 (run_id, app, dyno, dyno_id, type, size, release, start, billed_until, cpu_ns, seen_alive)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, 0, ?8)",
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
                    seen_alive: start,
                },
            );
        }
        Ok(added)
    }

    /// How far a run last seen alive at `seen_alive` may be billed: to the
    /// last slice boundary at least one second before it. The second after
    /// stays for the close, which therefore always writes the run's final
    /// record (the run exited after it was seen alive, so its exit rounded
    /// down is at least `seen_alive` rounded down).
    pub fn billable_to(&self, seen_alive: Secs) -> Secs {
        slice_start(seen_alive - 1, self.slice)
    }

    /// The open runs with a slice to bill, given the last second each was
    /// seen alive (`seen`; the committed value when it says nothing).
    pub fn due(&self, seen: impl Fn(&str) -> Option<Secs>) -> Vec<String> {
        self.open
            .values()
            .filter(|m| {
                let at = seen(&m.run.run_id).unwrap_or(m.seen_alive).max(m.seen_alive);
                self.billable_to(at) > m.billed_until
            })
            .map(|m| m.run.run_id.clone())
            .collect()
    }

    /// One tick of the meter, in one transaction:
    /// - every open run was seen alive at `now`, except those of `gone`,
    ///   each with the last second it was seen alive (runs whose command has
    ///   exited and whose close has not come yet): `seen_alive` moves
    ///   forward, never back (one statement for all the live ones);
    /// - every run of `bills` is billed up to [`Ledger::billable_to`] its
    ///   `seen_alive`, with its `usage` reading (None: not readable, bill no
    ///   CPU and no memory for it).
    ///
    /// Returns the records written.
    pub fn tick(
        &mut self,
        now: Secs,
        gone: &HashMap<String, Secs>,
        bills: &[(String, Option<Usage>)],
    ) -> Result<usize> {
        let seen_of = |m: &OpenRun| gone.get(&m.run.run_id).copied().unwrap_or(now).max(m.seen_alive);
        let tx = self.conn.unchecked_transaction().map_err(|e| self.sql(e))?;
        let mut updates = Vec::new();
        let result = (|| {
            let gone_ids = serde_json::to_string(&gone.keys().collect::<Vec<_>>()).unwrap_or_else(|_| "[]".into());
            tx.prepare_cached(
                "UPDATE meters SET seen_alive = ?1
                 WHERE closed_at IS NULL AND seen_alive < ?1 AND run_id NOT IN (SELECT value FROM json_each(?2))",
            )?
            .execute(params![now, gone_ids])?;
            for (run_id, at) in gone {
                tx.prepare_cached(
                    "UPDATE meters SET seen_alive = ?2 WHERE run_id = ?1 AND closed_at IS NULL AND seen_alive < ?2",
                )?
                .execute(params![run_id, at])?;
            }
            let mut w = Writer {
                tx: &tx,
                host_id: &self.host_id,
                slice: self.slice,
                seq: self.next_seq,
                written: 0,
            };
            for (run_id, usage) in bills {
                let Some(m) = self.open.get(run_id) else { continue };
                let to = self.billable_to(seen_of(m));
                if to <= m.billed_until {
                    continue;
                }
                let m = w.bill(m, to, *usage, false)?;
                tx.prepare_cached("UPDATE meters SET billed_until = ?2, cpu_ns = ?3 WHERE run_id = ?1")?
                    .execute(params![m.run.run_id, m.billed_until, m.cpu_ns as i64])?;
                updates.push(m);
            }
            set_next_seq(&tx, w.seq)?;
            Ok::<_, rusqlite::Error>((w.written, w.seq))
        })();
        let (written, seq) = result.and_then(|w| tx.commit().map(|()| w)).map_err(|e| self.sql(e))?;
        self.next_seq = seq;
        for m in self.open.values_mut() {
            m.seen_alive = seen_of(m);
        }
        for m in updates {
            let seen = self.open.get(&m.run.run_id).map_or(m.seen_alive, |o| o.seen_alive);
            self.open
                .insert(m.run.run_id.clone(), OpenRun { seen_alive: seen, ..m });
        }
        Ok(written)
    }

    /// Bills a run up to its end and closes its meter; its last record is
    /// marked final. A run without an open meter is left alone (returns 0),
    /// so closing twice is harmless.
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
            let mut w = Writer {
                tx: &tx,
                host_id: &self.host_id,
                slice: self.slice,
                seq: self.next_seq,
                written: 0,
            };
            let m = w.bill(m, end, usage, true)?;
            tx.execute(
                "UPDATE meters SET billed_until = ?2, cpu_ns = ?3, closed_at = ?2 WHERE run_id = ?1",
                params![m.run.run_id, m.billed_until, m.cpu_ns as i64],
            )?;
            set_next_seq(&tx, w.seq)?;
            Ok::<_, rusqlite::Error>((w.written, w.seq))
        })();
        let (written, seq) = result.and_then(|w| tx.commit().map(|()| w)).map_err(|e| self.sql(e))?;
        self.next_seq = seq;
        self.open.remove(run_id);
        Ok(written)
    }

    /// Records with `seq > after_seq` in `seq` order, at most `limit`, and
    /// whether more follow. Only uncollected ones unless `include_collected`.
    pub fn collect(&self, after_seq: u64, limit: u32, include_collected: bool) -> Result<(Vec<Record>, bool)> {
        let sql = format!(
            "SELECT seq, id, run_id, app, dyno, dyno_id, type, size, release, start, end, seconds, cpu_ms,
                    mem_peak_bytes, final
             FROM usage WHERE seq > ?1 {} ORDER BY seq LIMIT ?2",
            if include_collected {
                ""
            } else {
                "AND collected_at IS NULL"
            }
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
                    is_final: r.get(14)?,
                })
            })
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(|e| self.sql(e))?;
        let more = records.len() > limit as usize;
        records.truncate(limit as usize);
        Ok((records, more))
    }

    /// The last `seq` written (0 before the first record), as committed by
    /// this connection (no query: answers while the database is locked).
    pub fn last_seq(&self) -> u64 {
        self.next_seq - 1
    }

    /// Marks every record with `seq <= seq` collected at `now`; returns how
    /// many were newly marked. Acking a `seq` not written yet is an error (a
    /// collector must never confirm records it has not seen).
    pub fn ack(&mut self, seq: u64, now: Secs) -> Result<u64> {
        let last = self.last_seq();
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

#[cfg(test)]
mod tests;
