//! Cutting a run's time into records: slices, CPU shares, and the insert of
//! a run's records from its `billed_until` onwards.

use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::{OpenRun, Secs};
use crate::cgroup::Usage;

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
pub(super) fn cpu_shares(billed_ns: u64, total_ns: u64, pieces: &[(Secs, Secs)]) -> Vec<u64> {
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

pub(super) fn next_seq(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT value FROM ledger_meta WHERE key = 'next_seq'", [], |r| {
        r.get::<_, i64>(0)
    })
    .optional()
    .map(|v| v.unwrap_or(1) as u64)
}

pub(super) fn set_next_seq(tx: &Transaction<'_>, seq: u64) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE ledger_meta SET value = ?1 WHERE key = 'next_seq'",
        params![seq as i64],
    )
    .map(|_| ())
}

/// Where [`bill`] writes: the transaction, the host's id, the slice and the
/// next `seq` (moved past what is written).
pub(super) struct Writer<'a> {
    pub tx: &'a Transaction<'a>,
    pub host_id: &'a str,
    pub slice: u64,
    pub seq: u64,
    pub written: usize,
}

impl Writer<'_> {
    /// Writes the records of `m` from its `billed_until` to `to`, one per
    /// slice, and returns it billed up to `to`. `last`: these are the run's
    /// last records; the final one says so, and a run that already has
    /// records but nothing left to bill gets an empty final record
    /// `[billed_until, billed_until)`, so that every ended run with records
    /// has exactly one final record, its last.
    pub(super) fn bill(
        &mut self,
        m: &OpenRun,
        to: Secs,
        usage: Option<Usage>,
        last: bool,
    ) -> rusqlite::Result<OpenRun> {
        let mut spans = pieces(m.billed_until, to, self.slice);
        let mut next = m.clone();
        if spans.is_empty() {
            if !(last && m.billed_until > m.start) {
                return Ok(next);
            }
            spans.push((m.billed_until, m.billed_until));
        }
        // A counter that went backwards (a new cgroup?) bills no CPU.
        let cpu_total = usage.map_or(0, |u| u.cpu_ns.saturating_sub(m.cpu_ns));
        let peak = usage.map_or(0, |u| u.mem_peak_bytes);
        let shares = cpu_shares(m.cpu_ns, cpu_total, &spans);
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO usage (seq, id, run_id, app, dyno, dyno_id, type, size, release, start, end, seconds,
                                cpu_ms, mem_peak_bytes, final)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
        )?;
        let r = &m.run;
        let n = spans.len();
        for (i, ((start, end), cpu_ms)) in spans.into_iter().zip(shares).enumerate() {
            let seq = self.seq;
            stmt.execute(params![
                seq as i64,
                format!("{}:{seq}", self.host_id),
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
                peak as i64,
                last && i + 1 == n
            ])?;
            self.seq += 1;
            self.written += 1;
        }
        next.billed_until = to.max(m.billed_until);
        next.cpu_ns = m.cpu_ns + cpu_total;
        Ok(next)
    }
}
