//! Retention: how long finished task rows stay in a store file, and the totals that outlive
//! them (`pruned`, by run and UTC day), so run, window and lifetime figures stay exact.

use super::schema::TOKENS;
use super::{Db, Retention, file_bytes_of, now_ms};

impl Db {
    /// Deletes the oldest terminal tasks beyond `keep` (the in-memory store's bound);
    /// returns how many.
    pub fn prune_finished(&mut self, keep: usize) -> rusqlite::Result<usize> {
        self.prune(&Retention {
            max_tasks: keep,
            ..Retention::UNBOUNDED
        })
    }

    /// Applies `retention`: deletes the terminal task rows past its count, age or byte
    /// bounds (oldest first: by finish time, then insertion order), keeping their counts
    /// and spend in `pruned` by run and UTC day, so run, window and lifetime totals stay
    /// exact. Pending and running tasks are never deleted. Returns how many rows went.
    pub fn prune(&mut self, retention: &Retention) -> rusqlite::Result<usize> {
        // Terminal rows always have a finish time; ordering on the column itself lets the
        // queries read the `tasks_retention` index instead of the rows.
        const AGE: &str = "finished_at_ms";
        const TERMINAL: &str = "state NOT IN ('pending','running')";
        let keep = i64::try_from(retention.max_tasks).unwrap_or(i64::MAX);
        let cutoff = retention
            .max_age
            .map(|age| now_ms() - i64::try_from(age.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(i64::MIN);
        let max_bytes = i64::try_from(retention.max_bytes).unwrap_or(i64::MAX);
        // Immediate: another server of the project writing between this read and its
        // deletes would otherwise fail the upgrade to a write (SQLITE_BUSY_SNAPSHOT).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(
            "CREATE TEMP TABLE IF NOT EXISTS victims (id INTEGER PRIMARY KEY); \
             DELETE FROM temp.victims;",
        )?;
        tx.prepare_cached(&format!(
            "INSERT OR IGNORE INTO temp.victims SELECT rowid FROM tasks WHERE {TERMINAL} \
             ORDER BY {AGE} DESC, rowid DESC LIMIT -1 OFFSET ?1"
        ))?
        .execute([keep])?;
        if cutoff > i64::MIN {
            tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO temp.victims SELECT rowid FROM tasks \
                 WHERE {TERMINAL} AND {AGE} < ?1"
            ))?
            .execute([cutoff])?;
        }
        if max_bytes < i64::MAX {
            // A row's bytes: its texts (`text_bytes`) plus a fixed share for the rest of it.
            tx.prepare_cached(&format!(
                "INSERT OR IGNORE INTO temp.victims SELECT id FROM (SELECT rowid AS id, \
                 SUM(text_bytes + 256) OVER (ORDER BY {AGE} DESC, rowid DESC) AS total \
                 FROM tasks WHERE {TERMINAL}) WHERE total > ?1"
            ))?
            .execute([max_bytes])?;
        }
        tx.execute_batch(&format!(
            "INSERT INTO pruned (run_id, day, kind, state, tasks, spend_usd, tokens) \
             SELECT COALESCE(run_id, ''), COALESCE({AGE}, enqueued_at_ms) / 86400000, kind, \
             state, COUNT(*), \
             SUM(spend_usd), SUM({TOKENS}) FROM tasks WHERE rowid IN (SELECT id FROM temp.victims) \
             GROUP BY 1, 2, 3, 4 \
             ON CONFLICT (run_id, day, kind, state) DO UPDATE SET \
             tasks = tasks + excluded.tasks, spend_usd = spend_usd + excluded.spend_usd, \
             tokens = tokens + excluded.tokens;"
        ))?;
        let n = tx.execute(
            "DELETE FROM tasks WHERE rowid IN (SELECT id FROM temp.victims)",
            [],
        )?;
        tx.commit()?;
        if n > 0 {
            if self.path.is_none() {
                self.conn.execute_batch("PRAGMA shrink_memory;")?;
            } else {
                // Give the freed pages back to the file system (auto_vacuum = INCREMENTAL):
                // each step of the pragma frees one page, so it is stepped to the end. The
                // file shrinks at the next checkpoint.
                // 4,096 pages (16 MiB) a step, each step its own transaction, so the write
                // lock other servers of the project wait on is held briefly each time.
                loop {
                    let free: i64 = self
                        .conn
                        .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
                    if free == 0 {
                        break;
                    }
                    let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum(4096)")?;
                    let mut rows = stmt.query([])?;
                    while rows.next()?.is_some() {}
                    drop(rows);
                    let after: i64 = self
                        .conn
                        .pragma_query_value(None, "freelist_count", |r| r.get(0))?;
                    if after >= free {
                        break; // auto_vacuum is off (an older store): nothing to give back
                    }
                }
            }
        }
        Ok(n)
    }

    /// Dollars spent by tasks that finished at or after `since_ms` (unix ms; a UTC day
    /// boundary, so pruned rows count exactly), for a budget window.
    pub fn spend_since(&self, since_ms: i64) -> rusqlite::Result<f64> {
        self.used_since(since_ms).map(|(usd, _)| usd)
    }

    /// Dollars and tokens of every task that finished at or after `since_ms`, pruned
    /// rows included.
    pub fn used_since(&self, since_ms: i64) -> rusqlite::Result<(f64, u64)> {
        self.conn.query_row(
            &format!(
                "SELECT COALESCE((SELECT SUM(spend_usd) FROM tasks WHERE finished_at_ms >= ?1), 0.0) \
                 + COALESCE((SELECT SUM(spend_usd) FROM pruned WHERE day >= ?1 / 86400000), 0.0), \
                 COALESCE((SELECT SUM({TOKENS}) FROM tasks WHERE finished_at_ms >= ?1), 0) \
                 + COALESCE((SELECT SUM(tokens) FROM pruned WHERE day >= ?1 / 86400000), 0)"
            ),
            [since_ms],
            |r| Ok((r.get(0)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0))),
        )
    }

    /// The bytes of the store's files: the database and its WAL (0 and 0 in memory).
    pub fn file_bytes(&self) -> (u64, u64) {
        self.path.as_deref().map_or((0, 0), file_bytes_of)
    }
}
