//! The store's rows and writes: plain data, and how each maps to and from SQLite.
//!
//! Counters the caller sees as `u64` are stored as SQLite integers (`i64`); a value past
//! `i64::MAX` is saved as `i64::MAX` and a negative one read back as 0 (neither occurs in
//! practice, and neither may panic). JSON columns are stored as text.

use rusqlite::Row;
use rusqlite::types::Type;

/// Most bytes of a task's output the store keeps: the last 50 KiB.
pub const OUTPUT_KEEP_BYTES: usize = 51_200;

/// Chain statuses the crash rule leaves alone (SQL list form).
pub(crate) const CHAIN_DONE_SQL: &str = "('completed','failed','cancelled')";

/// One task as stored: everything needed to answer about it after a restart.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The task id (primary key).
    pub id: String,
    /// What started it: `"task"`, `"run"` or `"build"`.
    pub kind: String,
    /// The project it belongs to, if any (listings filter on it).
    pub project: Option<String>,
    /// The chain that owns it; the crash rule interrupts pending tasks of a chain.
    pub chain_id: Option<String>,
    /// The prompt as given.
    pub prompt: String,
    /// The caller's task options, opaque to the store and returned as saved.
    pub options: serde_json::Value,
    /// `"pending"`, `"running"`, `"completed"`, `"failed"`, `"cancelled"`, `"timed_out"`
    /// or `"interrupted"`.
    pub state: String,
    /// When it was accepted (unix ms); listings sort on it.
    pub enqueued_at_ms: i64,
    /// When a slot took it (unix ms).
    pub started_at_ms: Option<i64>,
    /// When it reached a terminal state (unix ms).
    pub finished_at_ms: Option<i64>,
    /// The slot that runs or ran it.
    pub slot: Option<String>,
    /// The result text: at most the last [`OUTPUT_KEEP_BYTES`] of it.
    pub output: Option<String>,
    /// The output's full length in bytes before truncation.
    pub output_bytes: Option<u64>,
    /// Why it failed, was cancelled or was interrupted.
    pub error: Option<String>,
    /// The Claude session it ran in (lets a later task resume it).
    pub session_id: Option<String>,
    /// The session it asked to resume.
    pub resume_session: Option<String>,
    /// What it cost, in USD.
    pub spend_usd: f64,
    /// Tokens: input, output, cache read, cache write.
    pub tokens: [u64; 4],
    /// The model that answered.
    pub model: Option<String>,
    /// The git branch it worked on (builds).
    pub branch: Option<String>,
    /// The commit it produced (builds).
    pub commit_sha: Option<String>,
    /// The worktree it worked in (builds).
    pub worktree: Option<String>,
    /// Its permission questions and how they ended (a JSON array), once finished.
    pub approvals: Option<serde_json::Value>,
}

impl TaskRow {
    /// A pending task as first written: nothing started, nothing spent.
    pub fn pending(
        id: String,
        kind: &str,
        prompt: String,
        options: serde_json::Value,
        enqueued_at_ms: i64,
    ) -> TaskRow {
        TaskRow {
            id,
            kind: kind.to_owned(),
            project: None,
            chain_id: None,
            prompt,
            options,
            state: "pending".to_owned(),
            enqueued_at_ms,
            started_at_ms: None,
            finished_at_ms: None,
            slot: None,
            output: None,
            output_bytes: None,
            error: None,
            session_id: None,
            resume_session: None,
            spend_usd: 0.0,
            tokens: [0; 4],
            model: None,
            branch: None,
            commit_sha: None,
            worktree: None,
            approvals: None,
        }
    }

    /// Whether the stored output is shorter than what the task produced.
    pub fn output_truncated(&self) -> bool {
        match (self.output_bytes, &self.output) {
            (Some(full), Some(kept)) => full > kept.len() as u64,
            (Some(full), None) => full > 0,
            (None, _) => false,
        }
    }
}

/// A task reaching its terminal state. Optional fields left `None` keep what the row holds
/// (`output` and `error` excepted: they are the final word).
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    /// The task.
    pub id: String,
    /// Its terminal state (`"completed"`, `"failed"`, `"cancelled"`, `"timed_out"`, ...).
    pub state: String,
    /// When it finished (unix ms).
    pub finished_at_ms: i64,
    /// Its full output; the store keeps the last [`OUTPUT_KEEP_BYTES`].
    pub output: Option<String>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// The session it ran in.
    pub session_id: Option<String>,
    /// What it cost, in USD.
    pub spend_usd: f64,
    /// Tokens: input, output, cache read, cache write.
    pub tokens: [u64; 4],
    /// The model that answered.
    pub model: Option<String>,
    /// The git branch (builds).
    pub branch: Option<String>,
    /// The commit produced (builds).
    pub commit_sha: Option<String>,
    /// The worktree (builds).
    pub worktree: Option<String>,
    /// Its permission questions and how they ended (a JSON array); `None` when it had none.
    pub approvals: Option<String>,
    /// When it started, for a task whose start was never written.
    pub started_at_ms: Option<i64>,
    /// The slot that ran it, for a task whose start was never written.
    pub slot: Option<String>,
}

/// One chain as stored; `report` is the chain's own JSON report, opaque to the store.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRow {
    /// The chain id (primary key).
    pub id: String,
    /// Its status; anything but `"completed"`, `"failed"` or `"cancelled"` is still running.
    pub status: String,
    /// Why it failed.
    pub error: Option<String>,
    /// The chain's report (a JSON object).
    pub report: serde_json::Value,
    /// When it was first written (unix ms); later upserts keep it.
    pub created_at_ms: i64,
    /// When it was last written (unix ms).
    pub updated_at_ms: i64,
}

/// One change to the store; [`super::Db::apply`] commits a batch of them at once.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// A new task (ignored when the id is already stored).
    InsertTask(TaskRow),
    /// A slot took a pending task.
    Started {
        /// The task.
        id: String,
        /// The slot.
        slot: String,
        /// When (unix ms).
        at_ms: i64,
    },
    /// A running task went back to the queue: pending again, its start and slot cleared.
    Requeued {
        /// The task.
        id: String,
    },
    /// A task finished; ignored when the task is already terminal.
    Finished(Finish),
    /// A context key was set.
    ContextSet {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// When (unix ms).
        at_ms: i64,
    },
    /// A context key was deleted.
    ContextDelete {
        /// The key.
        key: String,
    },
    /// The whole context table was cleared.
    ContextClear,
    /// A chain was created or changed (upsert).
    Chain(ChainRow),
}

impl Write {
    /// The bytes of text this write stores (prompts, outputs, errors), for retention.
    pub fn text_bytes(&self) -> u64 {
        let len = |s: &Option<String>| s.as_ref().map_or(0, String::len) as u64;
        match self {
            Write::InsertTask(t) => t.prompt.len() as u64,
            Write::Finished(f) => len(&f.output).min(OUTPUT_KEEP_BYTES as u64) + len(&f.error),
            _ => 0,
        }
    }
}

/// Which tasks [`super::Db::list`] returns; `None` fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFilter {
    /// Only this project's tasks.
    pub project: Option<String>,
    /// Only tasks in this state.
    pub state: Option<String>,
    /// Only tasks of this kind.
    pub kind: Option<String>,
    /// At most this many (clamped to 1..=1000; 50 when `None`).
    pub limit: Option<usize>,
}

/// What opening a store found, after the crash rule ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    /// Tasks to run again: pending and not owned by a chain, oldest first.
    pub pending: Vec<TaskRow>,
    /// Tasks the crash rule made `interrupted`.
    pub interrupted: Vec<String>,
    /// Chains the crash rule made `failed`.
    pub chains_interrupted: Vec<String>,
    /// The run's context table, by key.
    pub context: Vec<(String, String)>,
    /// What the run's tasks cost together, in USD.
    pub spend_usd: f64,
    /// Tokens this run used (every token of its tasks).
    pub tokens: u64,
    /// How many of the run's tasks are in each state.
    pub counts: Vec<(String, u64)>,
    /// How many of the run's tasks of each kind are in each state: (kind, state, count).
    pub counts_by_kind: Vec<(String, String, u64)>,
    /// The run this server is in.
    pub run: RunInfo,
    /// Servers found dead (their leases free) whose work this open took over.
    pub dead_servers: Vec<String>,
    /// Everything before this run: every other run's tasks and the pruned ones.
    pub lifetime_before: Lifetime,
}

/// A run: a server's life from its start to a graceful stop, continued by the next server
/// when it crashed. Spend, counts and the context table are the run's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunInfo {
    /// The run's id.
    pub id: String,
    /// When it began (unix ms).
    pub started_at_ms: i64,
    /// True when this server continues the run of a server that crashed.
    pub continued: bool,
}

/// Totals over a stretch of the store's history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lifetime {
    /// Tasks by (kind, state).
    pub counts_by_kind: Vec<(String, String, u64)>,
    /// Their spend, in USD.
    pub spend_usd: f64,
}

/// The task columns in the order [`task_from_row`] reads them.
pub(crate) const TASK_COLUMNS: &str = "id, kind, project, chain_id, prompt, options, state, \
     enqueued_at_ms, started_at_ms, finished_at_ms, slot, output, output_bytes, error, \
     session_id, resume_session, spend_usd, input_tokens, output_tokens, cache_read_tokens, \
     cache_write_tokens, model, branch, commit_sha, worktree, approvals";

/// Reads a row selected with [`TASK_COLUMNS`].
pub(crate) fn task_from_row(row: &Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        project: row.get(2)?,
        chain_id: row.get(3)?,
        prompt: row.get(4)?,
        options: json_column(row, 5)?,
        state: row.get(6)?,
        enqueued_at_ms: row.get(7)?,
        started_at_ms: row.get(8)?,
        finished_at_ms: row.get(9)?,
        slot: row.get(10)?,
        output: row.get(11)?,
        output_bytes: row.get::<_, Option<i64>>(12)?.map(from_i64),
        error: row.get(13)?,
        session_id: row.get(14)?,
        resume_session: row.get(15)?,
        spend_usd: row.get(16)?,
        tokens: [
            from_i64(row.get(17)?),
            from_i64(row.get(18)?),
            from_i64(row.get(19)?),
            from_i64(row.get(20)?),
        ],
        model: row.get(21)?,
        branch: row.get(22)?,
        commit_sha: row.get(23)?,
        worktree: row.get(24)?,
        approvals: row
            .get::<_, Option<String>>(25)?
            .and_then(|t| serde_json::from_str(&t).ok()),
    })
}

/// The chain columns in the order [`chain_from_row`] reads them.
pub(crate) const CHAIN_COLUMNS: &str = "id, status, error, report, created_at_ms, updated_at_ms";

/// Reads a row selected with [`CHAIN_COLUMNS`].
pub(crate) fn chain_from_row(row: &Row<'_>) -> rusqlite::Result<ChainRow> {
    Ok(ChainRow {
        id: row.get(0)?,
        status: row.get(1)?,
        error: row.get(2)?,
        report: json_column(row, 3)?,
        created_at_ms: row.get(4)?,
        updated_at_ms: row.get(5)?,
    })
}

fn json_column(row: &Row<'_>, idx: usize) -> rusqlite::Result<serde_json::Value> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, Type::Text, Box::new(e)))
}

fn from_i64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
