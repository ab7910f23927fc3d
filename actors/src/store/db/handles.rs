//! The `handles` table: one row per MCP protocol task, naming the pool work it follows
//! (a task, a job, a chain, or a fan-out's tasks) and its time to live.

use rusqlite::{OptionalExtension, params};

use super::Db;

/// One stored handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandleRow {
    /// The protocol task's id.
    pub id: String,
    /// The tool whose work it is.
    pub tool: String,
    /// What it follows, as JSON (see [`crate::pool::handles::Work`]).
    pub work: String,
    /// Kept this long after creation (`None`: as long as its work is kept).
    pub ttl_ms: Option<i64>,
    /// When it was created (unix ms).
    pub created_at_ms: i64,
}

const COLUMNS: &str = "id, tool, work, ttl_ms, created_at_ms";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HandleRow> {
    Ok(HandleRow {
        id: r.get(0)?,
        tool: r.get(1)?,
        work: r.get(2)?,
        ttl_ms: r.get(3)?,
        created_at_ms: r.get(4)?,
    })
}

impl Db {
    /// Stores a handle (committed when this returns).
    pub fn insert_handle(&self, h: &HandleRow) -> rusqlite::Result<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT OR REPLACE INTO handles ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"
            ))?
            .execute(params![h.id, h.tool, h.work, h.ttl_ms, h.created_at_ms])
            .map(drop)
    }

    /// One handle by id, expired or not.
    pub fn handle(&self, id: &str) -> rusqlite::Result<Option<HandleRow>> {
        self.conn
            .prepare_cached(&format!("SELECT {COLUMNS} FROM handles WHERE id = ?1"))?
            .query_row([id], from_row)
            .optional()
    }

    /// Up to `limit` handles not expired at `now_ms`, newest first, starting after the
    /// handle `after` (a cursor from the previous page); the flag says whether more follow.
    pub fn handles(
        &self,
        after: Option<&str>,
        limit: usize,
        now_ms: i64,
    ) -> rusqlite::Result<(Vec<HandleRow>, bool)> {
        let after_rowid: Option<i64> = match after {
            Some(id) => self
                .conn
                .prepare_cached("SELECT rowid FROM handles WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
                .optional()?
                .or(Some(i64::MIN)), // an unknown cursor: nothing after it
            None => None,
        };
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let mut rows: Vec<HandleRow> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM handles \
                 WHERE (?1 IS NULL OR rowid < ?1) \
                 AND (ttl_ms IS NULL OR created_at_ms + ttl_ms > ?2) \
                 ORDER BY rowid DESC LIMIT ?3"
            ))?
            .query_map(params![after_rowid, now_ms, fetch], from_row)?
            .collect::<rusqlite::Result<_>>()?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        Ok((rows, more))
    }

    /// Deletes the handles expired at `now_ms` and all but the newest `keep`; returns how
    /// many went.
    pub fn prune_handles(&self, keep: usize, now_ms: i64) -> rusqlite::Result<usize> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let expired = self
            .conn
            .prepare_cached(
                "DELETE FROM handles WHERE ttl_ms IS NOT NULL AND created_at_ms + ttl_ms <= ?1",
            )?
            .execute([now_ms])?;
        let old = self
            .conn
            .prepare_cached(
                "DELETE FROM handles WHERE rowid IN \
                 (SELECT rowid FROM handles ORDER BY rowid DESC LIMIT -1 OFFSET ?1)",
            )?
            .execute([keep])?;
        Ok(expired + old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, ttl_ms: Option<i64>, created_at_ms: i64) -> HandleRow {
        HandleRow {
            id: id.into(),
            tool: "pool_run".into(),
            work: format!(r#"{{"task":"{id}"}}"#),
            ttl_ms,
            created_at_ms,
        }
    }

    #[test]
    fn handles_page_newest_first_and_expired_ones_are_not_listed() {
        let (db, _) = Db::open_memory().expect("an in-memory store opens");
        for i in 0..5 {
            db.insert_handle(&row(&format!("t{i}"), None, 1000 + i))
                .unwrap();
        }
        db.insert_handle(&row("short", Some(10), 1000)).unwrap();
        let (first, more) = db.handles(None, 2, 5000).unwrap();
        let ids: Vec<_> = first.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["t4", "t3"]);
        assert!(more);
        let (next, more) = db.handles(Some("t3"), 10, 5000).unwrap();
        let ids: Vec<_> = next.iter().map(|h| h.id.as_str()).collect();
        assert_eq!(ids, ["t2", "t1", "t0"], "the expired handle is not listed");
        assert!(!more);
        assert_eq!(
            db.handle("short").unwrap(),
            Some(row("short", Some(10), 1000))
        );
        assert_eq!(db.prune_handles(3, 5000).unwrap(), 1 + 2);
        assert_eq!(db.handle("short").unwrap(), None);
        assert_eq!(db.handle("t1").unwrap(), None, "beyond the newest three");
        assert!(db.handle("t2").unwrap().is_some());
    }
}
