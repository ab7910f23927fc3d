//! The store's schema, its migrations, and the crash rule run on every open.
//!
//! A store is marked ours by `PRAGMA application_id` = [`APPLICATION_ID`]; its schema version
//! is `PRAGMA user_version`. [`MIGRATIONS`]`[i]` takes version `i` to `i + 1`; all pending
//! ones run in one transaction that also sets both pragmas, so a store is never left half
//! migrated.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows::{
    CHAIN_COLUMNS, CHAIN_DONE_SQL, Lifetime, Recovered, RunInfo, TASK_COLUMNS, chain_from_row,
    task_from_row,
};

/// `PRAGMA application_id` of a claude-pool store: "ClPl".
pub const APPLICATION_ID: i32 = 0x436C_506C;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i32 = 5;

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
    // 2 → 3: runs, and servers sharing one store. A run is a server's life from start to a
    // graceful stop (continued by the next server after a crash); every task and context
    // entry belongs to one. `servers` holds each live server's lease; `owner` says which
    // server runs a task or chain. The context table of every earlier server is dropped: it
    // belonged to no run, and yesterday's context is never today's. `pruned` keeps the
    // counts and spend of task rows the retention rule deleted, by run and UTC day (when they
    // finished), so run, window and lifetime totals survive retention. `text_bytes` is a row's
    // stored text (prompt, options, output, error), so retention's byte bound reads an index
    // instead of every prompt.
    "CREATE TABLE runs (
        id            TEXT PRIMARY KEY NOT NULL,
        started_at_ms INTEGER NOT NULL,
        ended_at_ms   INTEGER
    );
    CREATE TABLE servers (
        id            TEXT PRIMARY KEY NOT NULL,
        pid           INTEGER NOT NULL,
        run_id        TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL
    );
    ALTER TABLE tasks ADD COLUMN run_id TEXT;
    ALTER TABLE tasks ADD COLUMN owner TEXT;
    ALTER TABLE chains ADD COLUMN owner TEXT;
    ALTER TABLE tasks ADD COLUMN text_bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE tasks SET text_bytes = LENGTH(CAST(prompt AS BLOB)) + LENGTH(CAST(options AS BLOB))
        + COALESCE(LENGTH(CAST(output AS BLOB)), 0) + COALESCE(LENGTH(CAST(error AS BLOB)), 0);
    CREATE INDEX tasks_run ON tasks (run_id, state);
    CREATE INDEX tasks_finished ON tasks (finished_at_ms);
    CREATE INDEX tasks_retention ON tasks (state, finished_at_ms, text_bytes);
    DROP TABLE context;
    CREATE TABLE context (
        run_id        TEXT NOT NULL,
        key           TEXT NOT NULL,
        value         TEXT NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (run_id, key)
    );
    CREATE TABLE pruned (
        run_id    TEXT NOT NULL,
        day       INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        state     TEXT NOT NULL,
        tasks     INTEGER NOT NULL,
        spend_usd REAL NOT NULL,
        PRIMARY KEY (run_id, day, kind, state)
    );",
    // 3 → 4: every permission question of a task and how it ended (a JSON array), kept
    // with the task as its audit trail.
    "ALTER TABLE tasks ADD COLUMN approvals TEXT;",
    // 4 → 5: the tokens of pruned rows, so a token budget's window survives retention.
    "ALTER TABLE pruned ADD COLUMN tokens INTEGER NOT NULL DEFAULT 0;",
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

/// Bytes the WAL file is cut back to after a checkpoint (`PRAGMA journal_size_limit`).
pub const JOURNAL_SIZE_LIMIT: i64 = 16 * 1024 * 1024;

/// Sets the connection's pragmas: WAL, `synchronous = NORMAL`, a 5 s busy timeout, foreign
/// keys on. (An in-memory database stays in its own journal mode.)
pub(crate) fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_millis(5000))?;
    // Pages freed by retention go back to the file system (`incremental_vacuum` after a
    // prune) instead of waiting on a free list. Settable only while the file is new: before
    // its first page is written, which switching to WAL does.
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let vacuum: i64 = conn.pragma_query_value(None, "auto_vacuum", |r| r.get(0))?;
    if pages == 0 && vacuum == 0 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
    }
    let _mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // A checkpoint that empties the WAL also cuts the file back to this size, so one burst
    // of large writes does not leave a WAL of its size behind for ever.
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
    Ok(())
}

/// Brings a store at version `from` (0 for a new one) to [`SCHEMA_VERSION`] in one
/// transaction; does nothing when it is already there.
pub(crate) fn migrate(conn: &mut Connection, from: i32) -> rusqlite::Result<()> {
    // Another server of the project may have migrated the file since it was inspected.
    let current: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let from = usize::try_from(from.max(current)).unwrap_or(0);
    if from >= MIGRATIONS.len() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for step in &MIGRATIONS[from..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "application_id", APPLICATION_ID)?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()
}

/// Who is opening a store: the server's id and pid, and which earlier servers still live.
pub(crate) struct Opener<'a> {
    /// This server's id (a fresh UUID per start).
    pub(crate) server_id: &'a str,
    /// Its pid, kept in its `servers` row for messages.
    pub(crate) pid: u32,
    /// Whether the server with this id (a row of `servers`) is alive: its lease is held.
    /// An exclusive opener answers false for every one.
    pub(crate) live: &'a mut dyn FnMut(&str) -> bool,
}

/// Work no live server owns: its owner is no row of `servers` (it died), or it has none
/// (written before servers had owners).
const UNOWNED: &str = "(owner IS NULL OR owner NOT IN (SELECT id FROM servers))";

/// What the crash rule did to the work of servers found dead.
#[derive(Debug, Default)]
pub(crate) struct TakenOver {
    /// Servers whose leases were free: their rows are gone.
    pub(crate) dead_servers: Vec<String>,
    /// Their tasks that were running (and their chains' pending steps), now `interrupted`.
    pub(crate) interrupted: Vec<String>,
    /// Their chains, now `failed`.
    pub(crate) chains_interrupted: Vec<String>,
}

/// The crash rule for servers that are gone, inside `tx`: removes the rows of servers
/// whose lease `live` says is free; their running tasks and their chains' pending steps
/// read `interrupted`, their unfinished chains `failed`. Their pending tasks are left for
/// [`adopt_pending`].
pub(crate) fn take_over_the_dead(
    tx: &Connection,
    now_ms: i64,
    live: &mut dyn FnMut(&str) -> bool,
) -> rusqlite::Result<TakenOver> {
    let servers: Vec<String> = tx
        .prepare("SELECT id FROM servers ORDER BY started_at_ms")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut dead_servers = Vec::new();
    for id in servers {
        if !live(&id) {
            tx.execute("DELETE FROM servers WHERE id = ?1", [&id])?;
            dead_servers.push(id);
        }
    }
    let mut interrupted = ids(
        tx,
        &format!("SELECT id FROM tasks WHERE state = 'running' AND {UNOWNED}"),
    )?;
    tx.execute(
        &format!(
            "UPDATE tasks SET state = 'interrupted', error = ?1, finished_at_ms = ?2 \
             WHERE state = 'running' AND {UNOWNED}"
        ),
        params![INTERRUPTED_RUNNING, now_ms],
    )?;
    interrupted.extend(ids(
        tx,
        &format!(
            "SELECT id FROM tasks WHERE state = 'pending' AND chain_id IS NOT NULL AND {UNOWNED}"
        ),
    )?);
    tx.execute(
        &format!(
            "UPDATE tasks SET state = 'interrupted', error = ?1, finished_at_ms = ?2 \
             WHERE state = 'pending' AND chain_id IS NOT NULL AND {UNOWNED}"
        ),
        params![INTERRUPTED_CHAIN_TASK, now_ms],
    )?;
    let chains = tx
        .prepare(&format!(
            "SELECT {CHAIN_COLUMNS} FROM chains WHERE status NOT IN {CHAIN_DONE_SQL} \
             AND {UNOWNED} ORDER BY created_at_ms, rowid"
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
    Ok(TakenOver {
        dead_servers,
        interrupted,
        chains_interrupted,
    })
}

/// Makes the pending tasks no live server owns (outside chains) this server's, in its
/// run; returns their ids, oldest first.
pub(crate) fn adopt_pending(
    tx: &Connection,
    server_id: &str,
    run_id: &str,
) -> rusqlite::Result<Vec<String>> {
    let adopted = ids(
        tx,
        &format!("SELECT id FROM tasks WHERE state = 'pending' AND chain_id IS NULL AND {UNOWNED}"),
    )?;
    tx.execute(
        &format!(
            "UPDATE tasks SET owner = ?1, run_id = ?2 \
             WHERE state = 'pending' AND chain_id IS NULL AND {UNOWNED}"
        ),
        params![server_id, run_id],
    )?;
    Ok(adopted)
}

/// Applies the crash rule in one transaction, picks the run, then reads what the server
/// starts from.
///
/// Servers whose lease is no longer held are dead: their rows leave `servers`. Of the work
/// no live server owns (a dead one's, or rows written before servers had owners): running
/// tasks become `interrupted`; so do pending tasks of a chain (the chain's actor is gone);
/// chains not completed, failed or cancelled become `failed`, their report saying why;
/// pending tasks without a chain are adopted by this server, in its run, to run again.
///
/// The run: the newest run that never ended gracefully and that no live server is in is
/// continued (its server crashed); otherwise a new one starts.
pub(crate) fn recover(
    conn: &mut Connection,
    now_ms: i64,
    me: Opener<'_>,
) -> rusqlite::Result<Recovered> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let TakenOver {
        dead_servers,
        interrupted,
        chains_interrupted,
    } = take_over_the_dead(&tx, now_ms, me.live)?;
    let continued: Option<(String, i64)> = tx
        .query_row(
            "SELECT id, started_at_ms FROM runs WHERE ended_at_ms IS NULL \
             AND id NOT IN (SELECT run_id FROM servers) \
             ORDER BY started_at_ms DESC, rowid DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let run = match continued {
        Some((id, started_at_ms)) => RunInfo {
            id,
            started_at_ms,
            continued: true,
        },
        None => {
            let run = RunInfo {
                id: uuid::Uuid::new_v4().to_string(),
                started_at_ms: now_ms,
                continued: false,
            };
            tx.execute(
                "INSERT INTO runs (id, started_at_ms) VALUES (?1, ?2)",
                params![run.id, run.started_at_ms],
            )?;
            run
        }
    };
    adopt_pending(&tx, me.server_id, &run.id)?;
    tx.execute(
        "INSERT INTO servers (id, pid, run_id, started_at_ms) VALUES (?1, ?2, ?3, ?4)",
        params![me.server_id, me.pid, run.id, now_ms],
    )?;
    tx.commit()?;

    let pending = conn
        .prepare(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE state = 'pending' AND chain_id IS NULL \
             AND owner = ?1 ORDER BY enqueued_at_ms, rowid"
        ))?
        .query_map([me.server_id], task_from_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let context = conn
        .prepare("SELECT key, value FROM context WHERE run_id = ?1 ORDER BY key")?
        .query_map([&run.id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (spend_usd, tokens) = conn.query_row(
        &format!(
            "SELECT COALESCE((SELECT SUM(spend_usd) FROM tasks WHERE run_id = ?1), 0.0) \
             + COALESCE((SELECT SUM(spend_usd) FROM pruned WHERE run_id = ?1), 0.0), \
             COALESCE((SELECT SUM({TOKENS}) FROM tasks WHERE run_id = ?1), 0) \
             + COALESCE((SELECT SUM(tokens) FROM pruned WHERE run_id = ?1), 0)"
        ),
        [&run.id],
        |r| Ok((r.get(0)?, r.get::<_, i64>(1)?)),
    )?;
    let mut counts_by_kind = counts_by_kind_where(conn, "run_id = ?1", &run.id)?;
    counts_by_kind.extend(pruned_counts(conn, "run_id = ?1", &run.id)?);
    let counts = counts_of(&counts_by_kind);
    let mut before = counts_by_kind_where(conn, "(run_id IS NULL OR run_id != ?1)", &run.id)?;
    before.extend(pruned_counts(conn, "run_id != ?1", &run.id)?);
    let spend_before: f64 = conn.query_row(
        "SELECT COALESCE((SELECT SUM(spend_usd) FROM tasks WHERE run_id IS NULL OR run_id != ?1), 0.0) \
         + COALESCE((SELECT SUM(spend_usd) FROM pruned WHERE run_id != ?1), 0.0)",
        [&run.id],
        |r| r.get(0),
    )?;
    Ok(Recovered {
        pending,
        interrupted,
        chains_interrupted,
        context,
        spend_usd,
        tokens: u64::try_from(tokens).unwrap_or(0),
        counts,
        counts_by_kind,
        run,
        dead_servers,
        lifetime_before: Lifetime {
            counts_by_kind: before,
            spend_usd: spend_before,
        },
    })
}

/// A task row's tokens: every token the API processed for it.
pub const TOKENS: &str = "input_tokens + output_tokens + cache_read_tokens + cache_write_tokens";

/// Counts by (kind, state) of the tasks matching `clause` (which may use `?1` = `value`).
fn counts_by_kind_where(
    conn: &Connection,
    clause: &str,
    value: &str,
) -> rusqlite::Result<Vec<(String, String, u64)>> {
    grouped(conn, "COUNT(*) FROM tasks", clause, value)
}

/// Counts by (kind, state) of the pruned rows matching `clause`.
fn pruned_counts(
    conn: &Connection,
    clause: &str,
    value: &str,
) -> rusqlite::Result<Vec<(String, String, u64)>> {
    grouped(conn, "SUM(tasks) FROM pruned", clause, value)
}

/// `SELECT kind, state, <what> WHERE <clause> GROUP BY kind, state`, as counts.
fn grouped(
    conn: &Connection,
    what: &str,
    clause: &str,
    value: &str,
) -> rusqlite::Result<Vec<(String, String, u64)>> {
    conn.prepare(&format!(
        "SELECT kind, state, {what} WHERE {clause} GROUP BY kind, state ORDER BY kind, state"
    ))?
    .query_map([value], |r| {
        let n: i64 = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, u64::try_from(n).unwrap_or(0)))
    })?
    .collect()
}

/// Counts by state, summed over kinds.
fn counts_of(by_kind: &[(String, String, u64)]) -> Vec<(String, u64)> {
    let mut by_state = std::collections::BTreeMap::<String, u64>::new();
    for (_, state, n) in by_kind {
        *by_state.entry(state.clone()).or_default() += n;
    }
    by_state.into_iter().collect()
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

fn ids(conn: &Connection, sql: &str) -> rusqlite::Result<Vec<String>> {
    conn.prepare(&format!("{sql} ORDER BY enqueued_at_ms, rowid"))?
        .query_map([], |r| r.get(0))?
        .collect()
}
