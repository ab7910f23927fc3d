//! The durable store's SQLite layer: synchronous, owned by one thread (the store actor's).
//!
//! - [`Db::open`] refuses a file that is not a claude-pool store without touching it: an
//!   existing file is first read through a read-only connection (SQLite, `quick_check`, our
//!   `application_id`, a schema version we know), and only then is `<path>.lock` locked for
//!   the life of the [`Db`] and the file opened for writing. Before returning what it
//!   [`Recovered`] it applies the crash rule: running tasks and a chain's pending tasks become
//!   `interrupted`, unfinished chains `failed`; pending tasks without a chain are kept.
//! - [`Db::apply`] commits a batch of [`Write`]s in one transaction (group commit). A
//!   terminal task never changes: every task update is guarded by
//!   `state IN ('pending','running')`.
//! - [`Db::open_memory`] is the same store in memory, for a server run without `--db`; it
//!   bounds its history with [`Db::prune_finished`].

mod apply;
mod handles;
mod open;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_open;
#[cfg(test)]
mod tests_query;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

pub use handles::HandleRow;
pub use open::OpenError;
pub use rows::{ChainRow, Finish, OUTPUT_KEEP_BYTES, Recovered, TaskFilter, TaskRow, Write};
pub use schema::{
    APPLICATION_ID, INTERRUPTED_CHAIN, INTERRUPTED_CHAIN_TASK, INTERRUPTED_RUNNING, MIGRATIONS,
    SCHEMA_VERSION,
};

use rows::{CHAIN_COLUMNS, TASK_COLUMNS, chain_from_row, task_from_row};

/// Most rows [`Db::list`] returns.
pub const LIST_MAX: usize = 1000;
/// Rows [`Db::list`] returns when the filter sets no limit.
pub const LIST_DEFAULT: usize = 50;

/// An open store.
#[derive(Debug)]
pub struct Db {
    /// The one connection; every read and write goes through it, on its owner's thread.
    conn: Connection,
    /// Where the store lives (`None` in memory), for messages and [`Db::path`].
    path: Option<PathBuf>,
    /// The locked `<path>.lock`: held, never read, so a second server is refused while this
    /// one lives. Released on drop (and by the OS if the process is killed).
    _lock: Option<File>,
}

impl Db {
    /// Runs raw SQL on the connection (tests that break the store on purpose).
    #[cfg(test)]
    pub(crate) fn execute_for_test(&self, sql: &str) -> rusqlite::Result<()> {
        self.conn.execute_batch(sql)
    }

    /// Hands checkpoints to another connection: this one no longer copies the WAL into
    /// the database (and fsyncs it) when the WAL grows, so its commits never wait on that.
    /// The returned connection is for [`checkpoint`]; `None` in memory.
    pub fn split_checkpoints(&self) -> rusqlite::Result<Option<Connection>> {
        let Some(path) = &self.path else {
            return Ok(None);
        };
        let other = Connection::open(path)?;
        other.busy_timeout(std::time::Duration::from_millis(5000))?;
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        Ok(Some(other))
    }

    /// Opens (creating if absent) the store at `path` and applies the crash rule.
    ///
    /// `pid` is written into the lock file so that a second server can say who holds it.
    pub fn open(path: &Path, pid: u32) -> Result<(Db, Recovered), OpenError> {
        let opened = open::open_checked(path, pid)?;
        let unusable = |e: rusqlite::Error| OpenError::Unusable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let mut conn = opened.conn;
        schema::configure(&conn).map_err(unusable)?;
        schema::migrate(&mut conn, opened.version).map_err(unusable)?;
        let recovered = schema::recover(&mut conn, now_ms()).map_err(unusable)?;
        let db = Db {
            conn,
            path: Some(path.to_owned()),
            _lock: Some(opened.lock),
        };
        Ok((db, recovered))
    }

    /// An in-memory store (nothing survives the process); same schema, same behaviour.
    pub fn open_memory() -> Result<(Db, Recovered), OpenError> {
        let unusable = |e: rusqlite::Error| OpenError::Unusable {
            path: PathBuf::from(":memory:"),
            reason: e.to_string(),
        };
        let mut conn = Connection::open_in_memory().map_err(unusable)?;
        // In memory the pages are the store: with `auto_vacuum` the pages of pruned rows
        // leave the database (and its cache) instead of waiting on a free list, so memory
        // held for a burst comes back once its tasks are forgotten.
        conn.execute_batch("PRAGMA auto_vacuum = FULL;")
            .map_err(unusable)?;
        schema::configure(&conn).map_err(unusable)?;
        schema::migrate(&mut conn, 0).map_err(unusable)?;
        let recovered = schema::recover(&mut conn, now_ms()).map_err(unusable)?;
        Ok((
            Db {
                conn,
                path: None,
                _lock: None,
            },
            recovered,
        ))
    }

    /// Applies every write of `batch` in ONE transaction (group commit): all of them are
    /// durable together, or (on error) none is.
    pub fn apply(&mut self, batch: &[Write]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for write in batch {
            apply::apply_one(&tx, write)?;
        }
        tx.commit()
    }

    /// One task by id.
    pub fn task(&self, id: &str) -> rusqlite::Result<Option<TaskRow>> {
        self.conn
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
            .query_row([id], task_from_row)
            .optional()
    }

    /// Newest first (by enqueued_at desc, then rowid desc); filter fields are optional;
    /// limit is clamped to 1..=1000 (default 50 when None).
    pub fn list(&self, filter: &TaskFilter) -> rusqlite::Result<Vec<TaskRow>> {
        let mut clauses = Vec::new();
        let mut values = Vec::new();
        for (column, value) in [
            ("project", &filter.project),
            ("state", &filter.state),
            ("kind", &filter.kind),
        ] {
            if let Some(value) = value {
                values.push(Value::Text(value.clone()));
                clauses.push(format!("{column} = ?{}", values.len()));
            }
        }
        let limit = filter.limit.unwrap_or(LIST_DEFAULT).clamp(1, LIST_MAX);
        values.push(Value::Integer(i64::try_from(limit).unwrap_or(1)));
        let filter_sql = if clauses.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", clauses.join(" AND "))
        };
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks {filter_sql} \
             ORDER BY enqueued_at_ms DESC, rowid DESC LIMIT ?{}",
            values.len()
        );
        self.conn
            .prepare_cached(&sql)?
            .query_map(rusqlite::params_from_iter(values), task_from_row)?
            .collect()
    }

    /// Whether any task row has this session_id (or resume_session).
    pub fn session_known(&self, session: &str) -> rusqlite::Result<bool> {
        self.conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE session_id = ?1) \
                 OR EXISTS (SELECT 1 FROM tasks WHERE resume_session = ?1)",
            )?
            .query_row([session], |r| r.get(0))
    }

    /// One chain by id.
    pub fn chain(&self, id: &str) -> rusqlite::Result<Option<ChainRow>> {
        self.conn
            .prepare_cached(&format!("SELECT {CHAIN_COLUMNS} FROM chains WHERE id = ?1"))?
            .query_row([id], chain_from_row)
            .optional()
    }

    /// Deletes the oldest terminal tasks beyond `keep` (used by the in-memory store only);
    /// returns how many.
    ///
    /// Age is the finish time (the enqueue time for a terminal row without one), then
    /// insertion order. Pending and running tasks are never deleted.
    pub fn prune_finished(&mut self, keep: usize) -> rusqlite::Result<usize> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks \
                 WHERE state NOT IN ('pending','running') \
                 ORDER BY COALESCE(finished_at_ms, enqueued_at_ms) DESC, rowid DESC \
                 LIMIT -1 OFFSET ?1)",
            )?
            .execute([keep])
            .and_then(|n| {
                if self.path.is_none() {
                    self.conn.execute_batch("PRAGMA shrink_memory;")?;
                }
                Ok(n)
            })
    }

    /// Counts of tasks by state (all rows), by state name.
    pub fn counts(&self) -> rusqlite::Result<Vec<(String, u64)>> {
        schema::counts(&self.conn)
    }

    /// Where the store lives; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// Now, in unix milliseconds (0 if the clock is before 1970).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Copies what the WAL holds into the database without blocking writers (a passive
/// checkpoint); run on the connection [`Db::split_checkpoints`] returned.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}
