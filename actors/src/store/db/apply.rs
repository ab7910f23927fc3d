//! Applying a [`Write`] inside a batch's transaction.
//!
//! Every task update is guarded by `state IN ('pending','running')`: a terminal task never
//! changes. An insert of an id already stored is ignored.

use rusqlite::{ToSql, Transaction, params};

use super::rows::{Finish, OUTPUT_KEEP_BYTES, TASK_COLUMNS, TaskRow, Write};

/// Who writes: the server that owns new tasks and chains, and the run they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Writer {
    /// The server's id (its `servers` row).
    pub server_id: String,
    /// Its run.
    pub run_id: String,
}

/// Applies one write inside the batch's transaction.
pub(crate) fn apply_one(tx: &Transaction<'_>, me: &Writer, write: &Write) -> rusqlite::Result<()> {
    match write {
        Write::InsertTask(t) => insert_task(tx, me, t),
        Write::Started { id, slot, at_ms } => tx
            .prepare_cached(
                "UPDATE tasks SET state = 'running', slot = ?2, started_at_ms = ?3 \
                 WHERE id = ?1 AND state IN ('pending','running')",
            )?
            .execute(params![id, slot, at_ms])
            .map(drop),
        Write::Requeued { id } => tx
            .prepare_cached(
                "UPDATE tasks SET state = 'pending', slot = NULL, started_at_ms = NULL \
                 WHERE id = ?1 AND state IN ('pending','running')",
            )?
            .execute([id])
            .map(drop),
        Write::Finished(f) => finish_task(tx, f),
        Write::ContextSet { key, value, at_ms } => tx
            .prepare_cached(
                "INSERT INTO context (run_id, key, value, updated_at_ms) VALUES (?4, ?1, ?2, ?3) \
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, \
                 updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![key, value, at_ms, me.run_id])
            .map(drop),
        Write::ContextDelete { key } => tx
            .prepare_cached("DELETE FROM context WHERE run_id = ?2 AND key = ?1")?
            .execute([key, &me.run_id])
            .map(drop),
        Write::ContextClear => tx
            .execute("DELETE FROM context WHERE run_id = ?1", [&me.run_id])
            .map(drop),
        Write::Chain(c) => tx
            .prepare_cached(
                "INSERT INTO chains (id, status, error, report, created_at_ms, updated_at_ms, \
                 owner) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, \
                 error = excluded.error, report = excluded.report, \
                 updated_at_ms = excluded.updated_at_ms",
            )?
            .execute(params![
                c.id,
                c.status,
                c.error,
                c.report.to_string(),
                c.created_at_ms,
                c.updated_at_ms,
                me.server_id
            ])
            .map(drop),
    }
}

fn insert_task(tx: &Transaction<'_>, me: &Writer, t: &TaskRow) -> rusqlite::Result<()> {
    let output_bytes = t.output_bytes.map(to_i64);
    let [input, output, cache_read, cache_write] = t.tokens.map(to_i64);
    let text_bytes = to_i64((t.prompt.len() + t.options.to_string().len()) as u64);
    let approvals = t.approvals.as_ref().map(ToString::to_string);
    let values: [&dyn ToSql; 29] = [
        &t.id,
        &t.kind,
        &t.project,
        &t.chain_id,
        &t.prompt,
        &t.options.to_string(),
        &t.state,
        &t.enqueued_at_ms,
        &t.started_at_ms,
        &t.finished_at_ms,
        &t.slot,
        &t.output,
        &output_bytes,
        &t.error,
        &t.session_id,
        &t.resume_session,
        &t.spend_usd,
        &input,
        &output,
        &cache_read,
        &cache_write,
        &t.model,
        &t.branch,
        &t.commit_sha,
        &t.worktree,
        &approvals,
        &me.run_id,
        &me.server_id,
        &text_bytes,
    ];
    let sql = format!(
        "INSERT INTO tasks ({TASK_COLUMNS}, run_id, owner, text_bytes) VALUES (?1, ?2, ?3, ?4, \
         ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, \
         ?23, ?24, ?25, ?26, ?27, ?28, ?29) \
         ON CONFLICT (id) DO NOTHING"
    );
    tx.prepare_cached(&sql)?.execute(&values[..]).map(drop)
}

fn finish_task(tx: &Transaction<'_>, f: &Finish) -> rusqlite::Result<()> {
    let output_bytes = f.output.as_ref().map(|o| to_i64(o.len() as u64));
    let output = f.output.as_deref().map(keep_tail);
    let [input, out_tokens, cache_read, cache_write] = f.tokens.map(to_i64);
    let added = to_i64(
        (output.map_or(0, str::len)
            + f.error.as_ref().map_or(0, String::len)
            + f.approvals.as_ref().map_or(0, String::len)) as u64,
    );
    let values: [&dyn ToSql; 20] = [
        &f.id,
        &f.state,
        &f.finished_at_ms,
        &output,
        &output_bytes,
        &f.error,
        &f.session_id,
        &f.spend_usd,
        &input,
        &out_tokens,
        &cache_read,
        &cache_write,
        &f.model,
        &f.branch,
        &f.commit_sha,
        &f.worktree,
        &f.started_at_ms,
        &f.slot,
        &added,
        &f.approvals,
    ];
    tx.prepare_cached(
        "UPDATE tasks SET state = ?2, finished_at_ms = ?3, output = ?4, output_bytes = ?5, \
         error = ?6, session_id = COALESCE(?7, session_id), spend_usd = ?8, \
         input_tokens = ?9, output_tokens = ?10, cache_read_tokens = ?11, \
         cache_write_tokens = ?12, model = COALESCE(?13, model), \
         branch = COALESCE(?14, branch), commit_sha = COALESCE(?15, commit_sha), \
         worktree = COALESCE(?16, worktree), \
         started_at_ms = COALESCE(started_at_ms, ?17), slot = COALESCE(slot, ?18), \
         text_bytes = text_bytes + ?19, approvals = ?20 \
         WHERE id = ?1 AND state IN ('pending','running')",
    )?
    .execute(&values[..])
    .map(drop)
}

/// The last [`OUTPUT_KEEP_BYTES`] of `text`, starting at a char boundary (so possibly a few
/// bytes fewer).
pub(crate) fn keep_tail(text: &str) -> &str {
    let mut start = text.len().saturating_sub(OUTPUT_KEEP_BYTES);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
