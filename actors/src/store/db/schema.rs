//! The store's schema, its migrations, and the crash rule run on every open.
//!
//! A store is marked ours by `PRAGMA application_id` = [`APPLICATION_ID`]; its schema version
//! is `PRAGMA user_version`. [`MIGRATIONS`]`[i]` takes version `i` to `i + 1`; all pending
//! ones run in one transaction that also sets both pragmas, so a store is never left half
//! migrated.

use std::time::Duration;

use rusqlite::{Connection, params};

use super::rows::{
    CHAIN_COLUMNS, CHAIN_DONE_SQL, Recovered, TASK_COLUMNS, chain_from_row, task_from_row,
};

/// `PRAGMA application_id` of a claude-pool store: "ClPl".
pub const APPLICATION_ID: i32 = 0x436C_506C;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i32 = 2;

/// `MIGRATIONS[i]` migrates schema version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 0 → 1: the first schema.
    "CREATE TABLE tasks (
        id                 TEXT PRIMARY KEY NOT NULL,
        kind               TEXT NOT NULL,
        project            TEXT,
        chain_id           TEXT,
        prompt             TEXT NOT NULL,
        options            TEXT NOT NULL,
        state              TEXT NOT NULL,
        enqueued_at_ms     INTEGER NOT NULL,
        started_at_ms      INTEGER,
        finished_at_ms     INTEGER,
        slot               TEXT,
        output             TEXT,
        output_bytes       INTEGER,
        error              TEXT,
        session_id         TEXT,
        resume_session     TEXT,
        spend_usd          REAL NOT NULL DEFAULT 0,
        input_tokens       INTEGER NOT NULL DEFAULT 0,
        output_tokens      INTEGER NOT NULL DEFAULT 0,
        cache_read_tokens  INTEGER NOT NULL DEFAULT 0,
        cache_write_tokens INTEGER NOT NULL DEFAULT 0,
        model              TEXT,
        branch             TEXT,
        commit_sha         TEXT,
        worktree           TEXT
    );
    CREATE INDEX tasks_state ON tasks (state);
    CREATE INDEX tasks_project ON tasks (project, enqueued_at_ms);
    CREATE INDEX tasks_session ON tasks (session_id);
    CREATE INDEX tasks_resume_session ON tasks (resume_session);
    CREATE TABLE context (
        key           TEXT PRIMARY KEY NOT NULL,
        value         TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );
    CREATE TABLE chains (
        id            TEXT PRIMARY KEY NOT NULL,
        status        TEXT NOT NULL,
        error         TEXT,
        report        TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL
    );",
    // 1 → 2: the handles of MCP protocol tasks (what each follows, its ttl).
    "CREATE TABLE handles (
        id            TEXT PRIMARY KEY NOT NULL,
        tool          TEXT NOT NULL,
        work          TEXT NOT NULL,
        ttl_ms        INTEGER,
        created_at_ms INTEGER NOT NULL
    );",
];

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// The error of a task that was running when the server stopped.
pub const INTERRUPTED_RUNNING: &str = "interrupted: the server stopped while the task was running";
/// The error of a chain's pending task when the server stopped.
pub const INTERRUPTED_CHAIN_TASK: &str =
    "interrupted: the server stopped before the task's chain finished";
/// The error of a chain that was running when the server stopped.
pub const INTERRUPTED_CHAIN: &str = "interrupted: the server stopped while the chain ran";

/// What a database file turned out to be, read without writing anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Empty: no tables and no application id. Initialize it.
    New,
    /// A claude-pool store at this schema version.
    Ours {
        /// Its `user_version`.
        version: i32,
    },
    /// Another program's database.
    Foreign {
        /// Its `application_id`.
        application_id: i32,
        /// Its tables, by name.
        tables: Vec<String>,
    },
}

/// Reads the application id, schema version and tables.
///
/// A database with another program's application id is foreign even without tables; one
/// with application id 0 is foreign only if it has tables.
pub(crate) fn inspect(conn: &Connection) -> rusqlite::Result<Found> {
    let tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let application_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok(match application_id {
        APPLICATION_ID => Found::Ours { version },
        0 if tables.is_empty() => Found::New,
        _ => Found::Foreign {
            application_id,
            tables,
        },
    })
}

/// `PRAGMA quick_check`'s findings; empty when the file is sound.
pub(crate) fn quick_check(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let found = conn
        .prepare("PRAGMA quick_check")?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(if found == ["ok"] { Vec::new() } else { found })
}

/// Sets the connection's pragmas: WAL, `synchronous = NORMAL`, a 5 s busy timeout, foreign
/// keys on. (An in-memory database stays in its own journal mode.)
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(5000))?;
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

/// Brings a store at version `from` (0 for a new one) to [`SCHEMA_VERSION`] in one
/// transaction; does nothing when it is already there.
pub(crate) fn migrate(conn: &mut Connection, from: i32) -> rusqlite::Result<()> {
    let from = usize::try_from(from).unwrap_or(0);
    if from >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction()?;
    for step in &MIGRATIONS[from..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Applies the crash rule in one transaction, then reads what the server starts from.
///
/// Running tasks become `interrupted`; so do pending tasks of a chain (the chain's actor is
/// gone); chains not completed, failed or cancelled become `failed`, their report saying why.
/// Pending tasks without a chain are kept to run again.
pub(crate) fn recover(conn: &mut Connection, now_ms: i64) -> rusqlite::Result<Recovered> {
    let tx = conn.transaction()?;
    let mut interrupted = ids(&tx, "SELECT id FROM tasks WHERE state = 'running'")?;
    tx.execute(
        "UPDATE tasks SET state = 'interrupted', error = ?1, finished_at_ms = ?2 \
         WHERE state = 'running'",
        params![INTERRUPTED_RUNNING, now_ms],
    )?;
    interrupted.extend(ids(
        &tx,
        "SELECT id FROM tasks WHERE state = 'pending' AND chain_id IS NOT NULL",
    )?);
    tx.execute(
        "UPDATE tasks SET state = 'interrupted', error = ?1, finished_at_ms = ?2 \
         WHERE state = 'pending' AND chain_id IS NOT NULL",
        params![INTERRUPTED_CHAIN_TASK, now_ms],
    )?;
    let chains = tx
        .prepare(&format!(
            "SELECT {CHAIN_COLUMNS} FROM chains WHERE status NOT IN {CHAIN_DONE_SQL} \
             ORDER BY created_at_ms, rowid"
        ))?
        .query_map([], chain_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut chains_interrupted = Vec::with_capacity(chains.len());
    for chain in chains {
        let mut report = match chain.report {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        report.insert("status".into(), "failed".into());
        report.insert("error".into(), INTERRUPTED_CHAIN.into());
        tx.execute(
            "UPDATE chains SET status = 'failed', error = ?2, report = ?3, updated_at_ms = ?4 \
             WHERE id = ?1",
            params![
                chain.id,
                INTERRUPTED_CHAIN,
                serde_json::Value::Object(report).to_string(),
                now_ms
            ],
        )?;
        chains_interrupted.push(chain.id);
    }
    tx.commit()?;

    let pending = conn
        .prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'pending' AND chain_id IS NULL \
             ORDER BY enqueued_at_ms, rowid"
        ))?
        .query_map([], task_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let context = conn
        .prepare("SELECT key, value FROM context ORDER BY key")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let spend_usd = conn.query_row("SELECT COALESCE(SUM(spend_usd), 0.0) FROM tasks", [], |r| {
        r.get(0)
    })?;
    Ok(Recovered {
        pending,
        interrupted,
        chains_interrupted,
        context,
        spend_usd,
        counts: counts(conn)?,
        counts_by_kind: counts_by_kind(conn)?,
    })
}

/// How many tasks are in each state, by state name.
pub(crate) fn counts(conn: &Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    conn.prepare_cached("SELECT state, COUNT(*) FROM tasks GROUP BY state ORDER BY state")?
        .query_map([], |r| {
            let n: i64 = r.get(1)?;
            Ok((r.get(0)?, u64::try_from(n).unwrap_or(0)))
        })?
        .collect()
}

/// How many tasks of each kind are in each state.
pub(crate) fn counts_by_kind(conn: &Connection) -> rusqlite::Result<Vec<(String, String, u64)>> {
    conn.prepare_cached(
        "SELECT kind, state, COUNT(*) FROM tasks GROUP BY kind, state ORDER BY kind, state",
    )?
    .query_map([], |r| {
        let n: i64 = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, u64::try_from(n).unwrap_or(0)))
    })?
    .collect()
}

fn ids(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare(&format!("{sql} ORDER BY enqueued_at_ms, rowid"))?
        .query_map([], |r| r.get(0))?
        .collect()
}
