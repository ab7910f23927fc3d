//! Handles: what an MCP protocol task follows. A protocol task started by a tool call is
//! the pool's own work — a task, a job, a chain, or a fan-out's tasks — and its handle
//! records which, under the id the client polls, with the time to live the client asked
//! for. Handles live in the store (so another session, or the next server on the same
//! store, reads them); a pool without a store keeps them in memory. What the work is
//! doing right now (the line a progress notification would carry) is kept beside them in
//! memory while the work runs.

use std::sync::Arc;

use claude_pool_protocol::{ChainId, TaskId};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Mutex;

use super::Pool;
use crate::error::PoolError;
use crate::store::db::HandleRow;

/// Most handles a pool without a file store keeps (the oldest go first).
const MEMORY_KEEP: usize = 10_000;

/// The pool work a protocol task follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// A pool task (`pool_run`, `pool_skill_run`, `pool_submit`).
    Task(TaskId),
    /// A job (`claude_run`, `claude_build`): a pool task read as a job.
    Job(TaskId),
    /// A chain.
    Chain(ChainId),
    /// A fan-out's tasks, in prompt order.
    FanOut(Vec<TaskId>),
}

/// A protocol task: its id, the tool that started it, what it follows, its ttl.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handle {
    /// The id clients poll: the task's, job's or chain's own id; `fanout-…` for a fan-out.
    pub id: String,
    /// The tool called.
    pub tool: String,
    /// What it follows.
    pub work: Work,
    /// Kept this long after creation, in ms (`None`: as long as its work is kept).
    pub ttl_ms: Option<u64>,
    /// When it was created (unix ms).
    pub created_at_ms: i64,
}

impl Handle {
    /// Whether its ttl has passed at `now_ms`.
    pub fn expired(&self, now_ms: i64) -> bool {
        self.ttl_ms.is_some_and(|ttl| {
            self.created_at_ms
                .saturating_add(i64::try_from(ttl).unwrap_or(i64::MAX))
                <= now_ms
        })
    }

    fn row(&self) -> HandleRow {
        HandleRow {
            id: self.id.clone(),
            tool: self.tool.clone(),
            work: serde_json::to_string(&self.work).unwrap_or_default(),
            ttl_ms: self.ttl_ms.map(|t| i64::try_from(t).unwrap_or(i64::MAX)),
            created_at_ms: self.created_at_ms,
        }
    }

    fn from_row(row: HandleRow) -> Option<Handle> {
        Some(Handle {
            work: serde_json::from_str(&row.work).ok()?,
            id: row.id,
            tool: row.tool,
            ttl_ms: row.ttl_ms.and_then(|t| u64::try_from(t).ok()),
            created_at_ms: row.created_at_ms,
        })
    }
}

/// The handles of a pool without a store, and every pool's live status lines.
#[derive(Debug, Default)]
pub(crate) struct HandleBook {
    /// Handles by id, with their insertion number (pools without a store only).
    memory: Mutex<Memory>,
    /// What each running protocol task is doing, by handle id.
    status: Mutex<HashMap<String, String>>,
}

/// Handles by id, with the number they were kept under (for their order).
#[derive(Debug, Default)]
struct Memory {
    by_id: HashMap<String, (u64, Handle)>,
    next: u64,
}

impl Memory {
    fn keep(&mut self, handle: &Handle) {
        self.next += 1;
        self.by_id
            .insert(handle.id.clone(), (self.next, handle.clone()));
        if self.by_id.len() > MEMORY_KEEP {
            let now = now_ms();
            self.by_id.retain(|_, (_, h)| !h.expired(now));
        }
        if self.by_id.len() > MEMORY_KEEP
            && let Some(oldest) = self
                .by_id
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(id, _)| id.clone())
        {
            self.by_id.remove(&oldest);
        }
    }

    /// A page, newest first, after `after`; whether more follow.
    fn page(&self, after: Option<&str>, limit: usize, now: i64) -> (Vec<Handle>, bool) {
        let mut all: Vec<&(u64, Handle)> = self
            .by_id
            .values()
            .filter(|(_, h)| !h.expired(now))
            .collect();
        all.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
        let start = match after {
            Some(a) => all
                .iter()
                .position(|(_, h)| h.id == a)
                .map_or(all.len(), |i| i + 1),
            None => 0,
        };
        let page: Vec<Handle> = all[start..]
            .iter()
            .take(limit)
            .map(|(_, h)| h.clone())
            .collect();
        let more = all.len() > start + page.len();
        (page, more)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub use crate::clock::now_ms;

impl Pool {
    /// Records a protocol task's handle; returns once it is committed (with a store).
    pub async fn keep_handle(&self, handle: &Handle) -> Result<(), PoolError> {
        let Some(store) = &self.durable.writer else {
            lock(&self.handles.memory).keep(handle);
            return Ok(());
        };
        let row = handle.row();
        let keep = if store.path().is_some() {
            usize::MAX
        } else {
            self.config.max_finished_tasks.max(1)
        };
        store
            .read(move |db| {
                db.insert_handle(&row)?;
                db.prune_handles(keep, now_ms()).map(drop)
            })
            .await
            .map_err(PoolError::Stopped)?
            .map_err(|e| PoolError::Stopped(format!("the store cannot record the task: {e}")))
    }

    /// The handle `id`, expired or not; `None` when no protocol task has that id.
    pub async fn handle(&self, id: &str) -> Result<Option<Handle>, PoolError> {
        let Some(store) = &self.durable.writer else {
            return Ok(lock(&self.handles.memory)
                .by_id
                .get(id)
                .map(|(_, h)| h.clone()));
        };
        let id = id.to_owned();
        let row = store
            .read(move |db| db.handle(&id))
            .await
            .map_err(PoolError::Stopped)?
            .map_err(|e| PoolError::Stopped(format!("the store cannot be read: {e}")))?;
        Ok(row.and_then(Handle::from_row))
    }

    /// A page of the handles not expired, newest first, after the handle `after`; the
    /// flag says whether more follow.
    pub async fn handles(
        &self,
        after: Option<String>,
        limit: usize,
    ) -> Result<(Vec<Handle>, bool), PoolError> {
        let now = now_ms();
        let Some(store) = &self.durable.writer else {
            return Ok(lock(&self.handles.memory).page(after.as_deref(), limit, now));
        };
        let (rows, more) = store
            .read(move |db| db.handles(after.as_deref(), limit, now))
            .await
            .map_err(PoolError::Stopped)?
            .map_err(|e| PoolError::Stopped(format!("the store cannot be read: {e}")))?;
        Ok((
            rows.into_iter().filter_map(Handle::from_row).collect(),
            more,
        ))
    }

    /// Sets what the protocol task `id` is doing now (`None`: it ended).
    pub fn set_handle_status(&self, id: &str, line: Option<String>) {
        match line {
            Some(l) => {
                lock(&self.handles.status).insert(id.to_owned(), l);
            }
            None => {
                lock(&self.handles.status).remove(id);
            }
        }
    }

    /// What the protocol task `id` is doing now, if it runs here and said so.
    pub fn handle_status(&self, id: &str) -> Option<String> {
        lock(&self.handles.status).get(id).cloned()
    }
}

/// Shared by every clone of a pool.
pub(crate) type Handles = Arc<HandleBook>;
