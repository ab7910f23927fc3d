//! Between the scheduler's records and the store's rows: a task's options as the JSON the
//! store keeps, a report from a stored row, and a task to queue again from a pending row.

use std::path::PathBuf;
use std::time::Duration;

use claude_pool_protocol::tools::{TaskKind, TaskReport, TokensUsed};
use claude_pool_protocol::{Effort, PermissionMode, SlotId, TaskId, TaskStatus};
use serde::{Deserialize, Serialize};

use super::db::{Finish, TaskRow};
use crate::build::BuildPlan;
use crate::config::ProcSettings;
use crate::task::TaskOutcome;

/// A task's options, as stored (the `options` column).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredOptions {
    /// The deadline, counted from submission.
    pub timeout_ms: u64,
    /// Model override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Permission mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
    /// Effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
    /// The task's own spend cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_budget_usd: Option<f64>,
    /// `--allowedTools`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_tools: Option<Vec<String>>,
    /// The request's recursion depth.
    #[serde(default)]
    pub depth: u32,
    /// Its working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
    /// A build's worktree and branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build: Option<BuildPlan>,
    /// The task's own allow rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The task's own deny rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// How long its permission questions wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_timeout_ms: Option<u64>,
}

impl StoredOptions {
    /// The options of a task with these settings.
    pub fn of(
        settings: &ProcSettings,
        timeout: Duration,
        max_budget_usd: Option<f64>,
        build: Option<&BuildPlan>,
    ) -> StoredOptions {
        StoredOptions {
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
            model: settings.model.clone(),
            permission_mode: settings.permission_mode,
            effort: settings.effort,
            max_budget_usd,
            allowed_tools: settings.allowed_tools.clone(),
            depth: settings.depth,
            cwd: settings.cwd.clone(),
            build: build.cloned(),
            allow: Vec::new(),
            deny: Vec::new(),
            approval_timeout_ms: None,
        }
    }

    /// The settings they give a process.
    pub fn settings(&self) -> ProcSettings {
        ProcSettings {
            model: self.model.clone(),
            permission_mode: self.permission_mode,
            effort: self.effort,
            cwd: self.cwd.clone(),
            allowed_tools: self.allowed_tools.clone(),
            depth: self.depth,
        }
    }

    /// The options of a stored row (defaults where the JSON lacks a field).
    pub fn parse(row: &TaskRow) -> StoredOptions {
        serde_json::from_value(row.options.clone()).unwrap_or_default()
    }
}

/// The report of a stored task.
pub fn report_of(row: &TaskRow) -> TaskReport {
    let status = TaskStatus::parse(&row.state).unwrap_or(TaskStatus::Failed);
    let duration_ms = match (row.started_at_ms, row.finished_at_ms) {
        (Some(s), Some(f)) => u64::try_from(f - s).ok(),
        _ => None,
    };
    let queued_ms = row
        .started_at_ms
        .or(row.finished_at_ms)
        .and_then(|t| u64::try_from(t - row.enqueued_at_ms).ok());
    TaskReport {
        task_id: TaskId(row.id.clone()),
        status,
        output: row.output.clone(),
        error: row.error.clone(),
        spend_usd: row.spend_usd,
        tokens_used: TokensUsed {
            input: row.tokens[0],
            output: row.tokens[1],
            cache_read: row.tokens[2],
            cache_write: row.tokens[3],
        },
        session_id: row.session_id.clone(),
        duration_ms,
        queued_ms,
        slot_id: row.slot.clone().map(SlotId),
        model: row.model.clone(),
        worktree: row.worktree.clone(),
        branch: row.branch.clone(),
        commit: row.commit_sha.clone(),
        project: row.project.clone(),
        kind: TaskKind::parse(&row.kind).unwrap_or_default(),
        enqueued_at: Some(crate::clock::rfc3339(row.enqueued_at_ms)),
        started_at: row.started_at_ms.map(crate::clock::rfc3339),
        finished_at: row.finished_at_ms.map(crate::clock::rfc3339),
        output_truncated: row.output_truncated(),
        approvals: row
            .approvals
            .clone()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        waiting_for_approval: None,
        waiting_for_window: None,
        rate_limited: 0,
    }
}

/// The store's record of a task's end.
pub fn finish_of(
    id: &TaskId,
    outcome: &TaskOutcome,
    slot: Option<&SlotId>,
    started_ms: Option<i64>,
    finished_ms: i64,
) -> Finish {
    let u = outcome.cost.usage;
    let wt = outcome.worktree.as_ref();
    Finish {
        id: id.0.clone(),
        state: outcome.status.as_str().to_owned(),
        finished_at_ms: finished_ms,
        output: outcome.output.clone(),
        error: outcome.error.clone(),
        session_id: outcome.session_id.clone(),
        spend_usd: outcome.cost.usd,
        tokens: [
            u.input_tokens,
            u.output_tokens,
            u.cache_read_input_tokens,
            u.cache_creation_input_tokens,
        ],
        model: outcome.model.clone(),
        branch: wt.map(|w| w.branch.clone()),
        commit_sha: wt.and_then(|w| w.commit.clone()),
        worktree: wt.map(|w| w.path.display().to_string()),
        started_at_ms: started_ms,
        slot: slot.map(|s| s.0.clone()),
        approvals: (!outcome.approvals.is_empty())
            .then(|| serde_json::to_string(&outcome.approvals).ok())
            .flatten(),
    }
}
