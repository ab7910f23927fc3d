//! Running one task: `pool_run`, `pool_submit`, `pool_result`, `pool_cancel`, and the task
//! report they answer with.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{ChainId, SlotId, TaskId};
use crate::status::TaskStatus;
use crate::timeout::Timeout;

use super::with_task_options;

with_task_options! {
    /// Parameters of `pool_run` and `pool_submit`.
    pub struct TaskParams {
        pub prompt: String,
        /// An earlier result's, to continue it.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "crate::validate::de::opt_session_id"
        )]
        pub session_id: Option<String>,
    }
}

/// Parameters of `pool_cancel`: a task id or a chain id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_id: Option<ChainId>,
}

/// Parameters of `pool_result`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultParams {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Timeout>,
}

/// Tokens a task used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TokensUsed {
    /// Input tokens (not counting the prompt cache).
    pub input: u64,
    /// Output tokens.
    pub output: u64,
    /// Input tokens read from the prompt cache.
    pub cache_read: u64,
    /// Input tokens written to the prompt cache.
    pub cache_write: u64,
}

/// A task as `pool_run` and `pool_result` report it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TaskReport {
    pub task_id: TaskId,
    /// pending, running, completed, failed, cancelled, timed_out or interrupted.
    pub status: TaskStatus,
    /// Claude's answer, once completed.
    pub output: Option<String>,
    /// Why the task did not complete, for failed, cancelled and timed_out tasks.
    pub error: Option<String>,
    /// Dollars this task cost (its own turn only).
    pub spend_usd: f64,
    /// Tokens this task used.
    pub tokens_used: TokensUsed,
    /// The Claude conversation the task ran in.
    pub session_id: Option<String>,
    /// Wall time from start on a slot to the end, in milliseconds.
    pub duration_ms: Option<u64>,
    /// Time spent waiting in the queue, in milliseconds.
    pub queued_ms: Option<u64>,
    /// The slot that ran it.
    pub slot_id: Option<SlotId>,
    /// The model that answered.
    pub model: Option<String>,
    /// With --worktree: the git worktree the task ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// With --worktree: the branch checked out in that worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// With --worktree: the branch's head commit when the task ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// A job's project (claude_run, claude_build).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// What started it: a pool task, or a job (`run`, `build`).
    #[serde(default)]
    pub kind: TaskKind,
    /// Every permission question the task's Claude asked and how it ended: who decided
    /// (a rule, a client, the page, pool_approve, the timeout) and what.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<crate::approvals::ApprovalRecord>,
    /// Times the API refused its turn for rate or load (HTTP 429, 529) and it was queued
    /// again after a backoff; each refused turn ran no tool and cost nothing.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub rate_limited: u32,
    /// While queued: the API's usage window that holds it back, and until when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_window: Option<String>,
    /// While running: the question it is waiting on (answer with pool_approve).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for_approval: Option<crate::approvals::ApprovalRequest>,
    /// When it was submitted (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<String>,
    /// When a slot wrote its prompt to Claude (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When it reached its terminal state (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// Set when `output` holds only the end of the answer (the store keeps the last 50 KiB);
    /// the full answer is in the task's transcript.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub output_truncated: bool,
}

/// What kind of work a task is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// A pool task (pool_run, pool_submit, fan-outs, chains, skills).
    #[default]
    Task,
    /// A job of claude_run.
    Run,
    /// A job of claude_build.
    Build,
}

impl TaskKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskKind::Task => "task",
            TaskKind::Run => "run",
            TaskKind::Build => "build",
        }
    }

    /// The kind of a wire name.
    pub fn parse(name: &str) -> Option<TaskKind> {
        [TaskKind::Task, TaskKind::Run, TaskKind::Build]
            .into_iter()
            .find(|k| k.as_str() == name)
    }
}

/// What `pool_submit` returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubmitReport {
    /// Id to pass to pool_result and pool_cancel.
    pub task_id: TaskId,
    /// Always pending right after submission.
    pub status: TaskStatus,
}

/// What `pool_cancel` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CancelReport {
    pub task_id: TaskId,
    /// The task's final status: cancelled, or the terminal state it had already reached.
    pub status: TaskStatus,
    /// True when this call cancelled the task.
    pub cancelled: bool,
    /// What happened, in words.
    pub message: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}
