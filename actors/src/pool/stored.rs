//! What a task must pass before it is queued (the recursion guard, its project, its
//! session), and what the store answers for the embedding handle: tasks and chains the
//! scheduler has forgotten, the newest tasks, transcripts, the store's health.

use std::path::PathBuf;

use claude_pool_protocol::tools::{ChainParams, ChainReport, TaskReport, TranscriptReport};
use claude_pool_protocol::{ChainId, PermissionMode, TaskId, validate};

use super::Pool;
use super::jobs::known_project;
use crate::error::PoolError;
use crate::store::actor::StoreWriter;
use crate::store::convert::report_of;
use crate::store::db::{Db, TaskFilter};
use crate::store::transcripts::TranscriptPage;
use crate::task::TaskSpec;

/// The largest transcript page one call returns.
const MAX_TRANSCRIPT_PAGE: usize = 4 * 1024 * 1024;

/// Runs a read on the store's thread; either failure is the store's.
pub(super) async fn query<R, F>(store: &StoreWriter, f: F) -> Result<R, PoolError>
where
    R: Send + 'static,
    F: FnOnce(&mut Db) -> rusqlite::Result<R> + Send + 'static,
{
    store
        .read(f)
        .await
        .map_err(PoolError::Stopped)?
        .map_err(|e| PoolError::Stopped(format!("the store could not be read: {e}")))
}

impl Pool {
    /// The newest task (`Tasks`) or chain (`Chains`) ids starting with `prefix`, at most
    /// `limit`, from the store (none without one): what completions offer.
    pub async fn recent_ids(
        &self,
        table: crate::store::db::RecentTable,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<String>, PoolError> {
        let Some(store) = &self.durable.writer else {
            return Ok(Vec::new());
        };
        let prefix = prefix.to_owned();
        query(store, move |db| db.recent_ids(table, &prefix, limit)).await
    }

    /// The depth of requests made through this handle: the server's own
    /// (`CLAUDE_MCP_DEPTH` of its environment, or the builder's).
    pub fn depth(&self) -> u32 {
        self.config.defaults.depth
    }

    /// Refuses work at `--max-depth` or deeper (`recursion_limit_exceeded`).
    pub fn check_depth(&self, depth: Option<u32>) -> Result<(), PoolError> {
        let depth = depth.unwrap_or(self.config.defaults.depth);
        if depth >= self.config.max_depth {
            return Err(PoolError::RecursionLimit {
                depth,
                max: self.config.max_depth,
            });
        }
        Ok(())
    }

    /// What a task must pass before it is queued: the recursion guard, a permission mode
    /// within the server's ceiling, well-formed values for the command line, a known
    /// project (whose directory it then runs in), a session that exists.
    pub(super) async fn admit(&self, mut spec: TaskSpec) -> Result<TaskSpec, PoolError> {
        self.check_depth(spec.depth)?;
        self.check_permission_mode(spec.permission_mode)?;
        if let Some(model) = &spec.model {
            validate::model(model)
                .map_err(|e| PoolError::InvalidArgument(format!("model: {e}")))?;
        }
        for tool in spec.allowed_tools.iter().flatten() {
            validate::tool(tool)
                .map_err(|e| PoolError::InvalidArgument(format!("allowed tools: {e}")))?;
        }
        if let Some(name) = &spec.project
            && spec.cwd.is_none()
        {
            let projects = self.durable.projects.current();
            let project = known_project(&projects, name)?;
            spec.cwd = Some(project.path.clone());
        }
        if let Some(session) = &spec.session_id {
            self.check_session(session).await?;
        }
        Ok(spec)
    }

    /// Refuses a permission mode above the server's ceiling (`--max-permission-mode`);
    /// `None` (the server's own default mode) is always allowed.
    pub fn check_permission_mode(&self, mode: Option<PermissionMode>) -> Result<(), PoolError> {
        match mode {
            Some(mode) => self
                .config
                .check_permission_mode("permission_mode", mode)
                .map_err(PoolError::InvalidArgument),
            None => Ok(()),
        }
    }

    /// What a chain's steps must pass before any runs (they are queued by the chain, not
    /// through [`Pool::submit`]): the permission ceiling and well-formed model names.
    pub(super) fn check_chain_values(&self, params: &ChainParams) -> Result<(), PoolError> {
        self.check_permission_mode(params.permission_mode)?;
        self.config
            .task_rules(
                params.allow.as_deref().unwrap_or_default(),
                params.deny.as_deref().unwrap_or_default(),
            )
            .map_err(PoolError::InvalidArgument)?;
        let models =
            params.model.iter().map(|m| ("model".to_owned(), m)).chain(
                params.steps.iter().enumerate().filter_map(|(i, s)| {
                    s.model.as_ref().map(|m| (format!("steps[{i}].model"), m))
                }),
            );
        for (field, model) in models {
            validate::model(model)
                .map_err(|e| PoolError::InvalidArgument(format!("{field}: {e}")))?;
        }
        Ok(())
    }

    /// A session can be resumed when a task of this store reported it, or when the CLI's
    /// own transcript of it exists.
    async fn check_session(&self, session: &str) -> Result<(), PoolError> {
        validate::session_id(session).map_err(PoolError::NotFound)?;
        if let Some(store) = &self.durable.writer {
            let s = session.to_owned();
            let known = query(store, move |db| db.session_known(&s)).await?;
            if known {
                return Ok(());
            }
        }
        if cli_transcript_exists(session) {
            return Ok(());
        }
        Err(PoolError::NotFound(format!(
            "unknown session \"{session}\": no task of this pool reported it and Claude Code has no conversation with that id; start a fresh one without a session id"
        )))
    }

    /// A task's report from the store, for tasks the scheduler no longer holds (finished
    /// long ago, or by an earlier server).
    pub(super) async fn stored_report(&self, id: &TaskId) -> Result<TaskReport, PoolError> {
        let Some(store) = &self.durable.writer else {
            return Err(PoolError::UnknownTask(id.clone()));
        };
        let key = id.0.clone();
        let row = query(store, move |db| db.task(&key)).await?;
        row.map(|r| report_of(&r))
            .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// A chain's report from the store.
    pub(super) async fn stored_chain(&self, id: &ChainId) -> Result<ChainReport, PoolError> {
        let Some(store) = &self.durable.writer else {
            return Err(PoolError::UnknownChain(id.clone()));
        };
        let key = id.0.clone();
        let row = query(store, move |db| db.chain(&key)).await?;
        row.and_then(|r| serde_json::from_value(r.report).ok())
            .ok_or_else(|| PoolError::UnknownChain(id.clone()))
    }

    /// The newest tasks of every kind, as the status page lists them (the store answers;
    /// without one, nothing is listed).
    pub async fn recent_tasks(&self, limit: usize) -> Result<Vec<TaskReport>, PoolError> {
        let Some(store) = &self.durable.writer else {
            return Ok(Vec::new());
        };
        let filter = TaskFilter {
            limit: Some(limit),
            ..TaskFilter::default()
        };
        let rows = query(store, move |db| db.list(&filter)).await?;
        Ok(self.live_reports(rows).await)
    }

    /// Reports of stored rows; rows are written behind the scheduler, so its live view of a
    /// task wins.
    pub(super) async fn live_reports(
        &self,
        rows: Vec<crate::store::db::TaskRow>,
    ) -> Vec<TaskReport> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let live = self.result(&TaskId(row.id.clone())).await.ok();
            out.push(live.unwrap_or_else(|| report_of(&row)));
        }
        out
    }

    /// A page of a task's transcript: the prompt as sent, then every stream-json event.
    pub async fn transcript(
        &self,
        id: &str,
        offset: u64,
        max_bytes: Option<usize>,
    ) -> Result<TranscriptReport, PoolError> {
        let Some(t) = self.durable.transcripts.clone() else {
            return Err(PoolError::NotFound(
                "transcripts are kept only with a store file (--db)".into(),
            ));
        };
        if let Some(sink) = &self.durable.sink {
            sink.flush();
        }
        let max = max_bytes
            .unwrap_or(256 * 1024)
            .clamp(1024, MAX_TRANSCRIPT_PAGE);
        let key = id.to_owned();
        let page: Option<TranscriptPage> =
            tokio::task::spawn_blocking(move || t.read(&key, offset, max))
                .await
                .map_err(|e| PoolError::Stopped(e.to_string()))?
                .map_err(|e| PoolError::Stopped(format!("cannot read the transcript: {e}")))?;
        let page = page.ok_or_else(|| {
            PoolError::NotFound(format!(
                "no transcript for \"{id}\": no such task, it never started, or its transcript was deleted by the retention policy"
            ))
        })?;
        Ok(TranscriptReport {
            task_id: id.to_owned(),
            offset: page.offset,
            next_offset: page.next_offset,
            total_bytes: page.total_bytes,
            ndjson: page.text,
        })
    }

    /// The store as `/health` shows it: where it is, and whether it writes.
    pub fn store_health(&self) -> serde_json::Value {
        match &self.durable.writer {
            None => serde_json::json!({ "open": false }),
            Some(w) => serde_json::json!({
                "open": true,
                "path": w.path().map(|p| p.display().to_string()),
                "error": w.health(),
            }),
        }
    }
}

/// Whether Claude Code keeps a conversation with this id (`~/.claude/projects/*/<id>.jsonl`).
fn cli_transcript_exists(session: &str) -> bool {
    let Some(home) = std::env::var_os("CLAUDE_CONFIG_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".claude")))
    else {
        return false;
    };
    let Ok(dirs) = std::fs::read_dir(home.join("projects")) else {
        return false;
    };
    let file = format!("{session}.jsonl");
    dirs.flatten().any(|d| d.path().join(&file).is_file())
}
