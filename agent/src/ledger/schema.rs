//! The ledger's tables and their migrations, and how a connection to it is
//! set up.
//!
//! A new database gets version 1's tables and then every migration, so a
//! fresh ledger and one upgraded from an older agent go through the same
//! statements (and the same tests).

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use super::{LedgerError, Result};

/// The schema this agent writes (`PRAGMA user_version`).
pub(super) const SCHEMA_VERSION: i64 = 2;

/// How long one statement waits for another process's lock before it gives
/// up (`SQLITE_BUSY`). Short: the meter retries every second on its own, and
/// a long wait would stall its thread (and anything waiting for it).
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_millis(250);

/// Version 1: records, meters and the next `seq`.
const V1: &str = "
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

/// Version 2: `usage.final` (the run's last record) and
/// `meters.seen_alive` (the last second the run was seen running, where a
/// run that vanished without an exit record is billed to).
///
/// Old rows: a run's last record is final when its meter is closed (or
/// pruned, which only happens to closed meters); an open meter was seen
/// alive as far as it is billed, no further.
const V2: &str = "
ALTER TABLE usage ADD COLUMN final INTEGER NOT NULL DEFAULT 0;
ALTER TABLE meters ADD COLUMN seen_alive INTEGER NOT NULL DEFAULT 0;
UPDATE meters SET seen_alive = billed_until;
UPDATE usage SET final = 1
 WHERE seq IN (SELECT max(seq) FROM usage GROUP BY run_id)
   AND run_id NOT IN (SELECT run_id FROM meters WHERE closed_at IS NULL);
";

/// The statements that take a database from version `i` to `i + 1`.
const MIGRATIONS: [&str; 2] = [V1, V2];

/// Opens the database at `path` (created 0600 if missing), sets it up (WAL,
/// full sync, the busy timeout) and brings its schema to
/// [`SCHEMA_VERSION`] in one transaction.
pub(super) fn connect(path: &Path) -> Result<Connection> {
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
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    migrate(&conn, path)?;
    Ok(conn)
}

fn migrate(conn: &Connection, path: &Path) -> Result<()> {
    let sql = |error| LedgerError::Sqlite {
        path: path.to_owned(),
        error,
    };
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(sql)?;
    if version > SCHEMA_VERSION {
        return Err(LedgerError::NewerSchema {
            path: path.to_owned(),
            found: version,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.unchecked_transaction().map_err(sql)?;
    for step in &MIGRATIONS[version as usize..] {
        tx.execute_batch(step).map_err(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(sql)?;
    tx.commit().map_err(sql)?;
    if version > 0 {
        tracing::info!(path = %path.display(), from = version, to = SCHEMA_VERSION, "ledger schema migrated");
    }
    Ok(())
}

/// Creates a version-1 ledger at `path`, as the previous agent did (for the
/// migration's tests).
#[cfg(test)]
pub(super) fn create_v1(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    conn
}
