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
mod retention;
mod rows;
mod schema;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_open;
#[cfg(test)]
mod tests_query;
#[cfg(test)]
mod tests_runs;

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension};

pub use crate::config::Retention;
pub use apply::Writer;
pub use handles::HandleRow;
pub use open::{Lease, OpenError, Sharing};
pub use rows::{
    ChainRow, Finish, Lifetime, OUTPUT_KEEP_BYTES, Recovered, RunInfo, TaskFilter, TaskRow, Write,
};
pub use schema::{
    APPLICATION_ID, INTERRUPTED_CHAIN, INTERRUPTED_CHAIN_TASK, INTERRUPTED_RUNNING, MIGRATIONS,
    SCHEMA_VERSION,
};

use rows::{CHAIN_COLUMNS, TASK_COLUMNS, chain_from_row, task_from_row};

/// What [`Db::adopt_orphans`] took over.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Orphans {
    /// Queued tasks of dead servers, now this server's, oldest first.
    pub pending: Vec<TaskRow>,
    /// Their running tasks, now `interrupted`.
    pub interrupted: Vec<String>,
    /// The servers found dead.
    pub dead_servers: Vec<String>,
}

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
    /// one lives (shared by the servers of one project). Released on drop (and by the OS if
    /// the process is killed).
    _lock: Option<File>,
    /// This server's lease on a shared store.
    lease: Option<Lease>,
    /// The server and run new rows belong to.
    me: Writer,
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

    /// Opens (creating if absent) the store at `path` for this server alone and applies
    /// the crash rule.
    ///
    /// `pid` is written into the lock file so that a second server can say who holds it.
    pub fn open(path: &Path, pid: u32) -> Result<(Db, Recovered), OpenError> {
        Db::open_as(path, pid, Sharing::Exclusive)
    }

    /// Opens the store at `path` as [`Sharing`] says. A shared store is opened under a
    /// short lock that serializes servers starting at once, and this server takes a lease
    /// of its own; the crash rule then applies to the work of servers whose leases are free.
    pub fn open_as(path: &Path, pid: u32, sharing: Sharing) -> Result<(Db, Recovered), OpenError> {
        let unusable_io = |e: std::io::Error| OpenError::Unusable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let opened = open::open_checked(path, pid, sharing)?;
        let unusable = |e: rusqlite::Error| OpenError::Unusable {
            path: path.to_owned(),
            reason: e.to_string(),
        };
        let _opening = match sharing {
            Sharing::Shared => Some(open::opening_lock(path).map_err(unusable_io)?),
            Sharing::Exclusive => None,
        };
        let server_id = uuid::Uuid::new_v4().to_string();
        let lease = match sharing {
            Sharing::Shared => Some(Lease::take(path, &server_id, pid).map_err(unusable_io)?),
            Sharing::Exclusive => None,
        };
        let mut conn = opened.conn;
        schema::configure(&conn).map_err(unusable)?;
        schema::migrate(&mut conn, opened.version).map_err(unusable)?;
        let mut live = |id: &str| sharing == Sharing::Shared && Lease::alive(path, id);
        let recovered = schema::recover(
            &mut conn,
            now_ms(),
            schema::Opener {
                server_id: &server_id,
                pid,
                live: &mut live,
            },
        )
        .map_err(unusable)?;
        let me = Writer {
            server_id,
            run_id: recovered.run.id.clone(),
        };
        let db = Db {
            conn,
            path: Some(path.to_owned()),
            _lock: Some(opened.lock),
            lease,
            me,
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
        let server_id = uuid::Uuid::new_v4().to_string();
        let recovered = schema::recover(
            &mut conn,
            now_ms(),
            schema::Opener {
                server_id: &server_id,
                pid: std::process::id(),
                live: &mut |_| false,
            },
        )
        .map_err(unusable)?;
        let me = Writer {
            server_id,
            run_id: recovered.run.id.clone(),
        };
        Ok((
            Db {
                conn,
                path: None,
                _lock: None,
                lease: None,
                me,
            },
            recovered,
        ))
    }

    /// Copies the whole WAL into the database and cuts the file to nothing, waiting (up to
    /// the busy timeout) for readers; a WAL another server still reads is left as it is.
    /// Returns whether it completed (false: busy).
    pub fn checkpoint_truncate(&self) -> rusqlite::Result<bool> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0).map(|busy| busy == 0)
            })
    }

    /// Copies the WAL into the database now (passive: it never waits on another server).
    pub fn checkpoint_now(&self) -> rusqlite::Result<()> {
        checkpoint(&self.conn)
    }

    /// On a shared store, while this server runs: the crash rule for servers of the project
    /// that died since (their leases free), and their queued tasks adopted into this run.
    /// Returns the adopted rows (to queue) and the dead servers (whose processes to sweep);
    /// nothing on a store held alone, where no other server writes.
    pub fn adopt_orphans(&mut self) -> rusqlite::Result<Orphans> {
        let Some(path) = self.path.clone().filter(|_| self.lease.is_some()) else {
            return Ok(Orphans::default());
        };
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // First this server's own row, should anything have removed it: without it, its own
        // work would read as nobody's.
        tx.execute(
            "INSERT OR IGNORE INTO servers (id, pid, run_id, started_at_ms) \
             VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                self.me.server_id,
                std::process::id(),
                self.me.run_id,
                now_ms()
            ],
        )?;
        let me = self.me.server_id.clone();
        let mut live = |id: &str| id == me || Lease::alive(&path, id);
        let taken = schema::take_over_the_dead(&tx, now_ms(), &mut live)?;
        let adopted = schema::adopt_pending(&tx, &self.me.server_id, &self.me.run_id)?;
        tx.commit()?;
        let mut pending = Vec::with_capacity(adopted.len());
        for id in &adopted {
            pending.extend(self.task(id)?);
        }
        Ok(Orphans {
            pending,
            interrupted: taken.interrupted,
            dead_servers: taken.dead_servers,
        })
    }

    /// This server's lease file on a shared store (the marker its processes carry).
    pub fn lease_path(&self) -> Option<&Path> {
        self.lease.as_ref().map(|l| l.path.as_path())
    }

    /// The server and run this store writes for.
    pub fn writer(&self) -> &Writer {
        &self.me
    }

    /// A graceful stop: the run ends (the next server starts a new one), this server's
    /// lease row goes (its pending tasks are adopted by the next server), and the WAL is
    /// copied into the database and emptied, so `pool.db` alone is a full copy.
    pub fn close_gracefully(&mut self) -> rusqlite::Result<()> {
        let now = now_ms();
        let tx = self.conn.transaction()?;
        tx.execute(
            "UPDATE runs SET ended_at_ms = ?2 WHERE id = ?1",
            rusqlite::params![self.me.run_id, now],
        )?;
        tx.execute("DELETE FROM servers WHERE id = ?1", [&self.me.server_id])?;
        tx.commit()?;
        if self.path.is_some() {
            // The checkpointer thread may be mid-checkpoint (which answers busy at once):
            // try again for a while. Still busy (another server of the project reading) is
            // no failure: the last one out empties it.
            for _ in 0..40 {
                match self.checkpoint_truncate() {
                    Ok(true) | Err(_) => break,
                    Ok(false) => std::thread::sleep(std::time::Duration::from_millis(25)),
                }
            }
        }
        if let Some(lease) = self.lease.take() {
            let _ = std::fs::remove_file(&lease.path);
        }
        Ok(())
    }

    /// Applies every write of `batch` in ONE transaction (group commit): all of them are
    /// durable together, or (on error) none is.
    pub fn apply(&mut self, batch: &[Write]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        for write in batch {
            apply::apply_one(&tx, &self.me, write)?;
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

    /// The newest ids of `table` (`tasks` or `chains`) that start with `prefix`, at most
    /// `limit` (for completions).
    pub fn recent_ids(
        &self,
        table: RecentTable,
        prefix: &str,
        limit: usize,
    ) -> rusqlite::Result<Vec<String>> {
        let (table, order) = match table {
            RecentTable::Tasks => ("tasks", "enqueued_at_ms"),
            RecentTable::Chains => ("chains", "created_at_ms"),
        };
        let limit = i64::try_from(limit.clamp(1, LIST_MAX)).unwrap_or(1);
        self.conn
            .prepare_cached(&format!(
                "SELECT id FROM {table} WHERE substr(id, 1, length(?1)) = ?1 \
                 ORDER BY {order} DESC, rowid DESC LIMIT ?2"
            ))?
            .query_map(rusqlite::params![prefix, limit], |r| r.get(0))?
            .collect()
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

    /// Counts of tasks by state (all rows), by state name.
    pub fn counts(&self) -> rusqlite::Result<Vec<(String, u64)>> {
        schema::counts(&self.conn)
    }

    /// Where the store lives; `None` for an in-memory store.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

pub use crate::clock::now_ms;

/// The bytes of the store file at `path` and of its WAL.
pub fn file_bytes_of(path: &Path) -> (u64, u64) {
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    (len(path), len(Path::new(&wal)))
}

/// Copies what the WAL holds into the database without blocking writers (a passive
/// checkpoint); run on the connection [`Db::split_checkpoints`] returned.
pub fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

/// What [`Db::recent_ids`] lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecentTable {
    /// Task (and job) ids.
    Tasks,
    /// Chain ids.
    Chains,
}
