//! MCP tool parameters and results. Names and fields follow claude-pool-server's documented
//! interface (`output`, `spend_usd`, `tokens_used {input, output}`, `task_id`, `status`, the
//! `pool_status` fields), plus what a caller needs to act on a result: `session_id`,
//! `duration_ms`, `error`.
//!
//! Every field's doc comment becomes its JSON-schema description.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{SlotId, TaskId};
use crate::settings::{Effort, PermissionMode};
use crate::status::{SlotStatus, TaskStatus};
use crate::timeout::Timeout;

/// Parameters of `pool_run` and `pool_submit`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskParams {
    /// The task to execute: one user message to Claude. Any size; it travels on the CLI's
    /// stdin, never on a command line.
    pub prompt: String,
    /// Deadline for the task, counted from submission: "90s", "5m", or milliseconds.
    /// Defaults to the server's --timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Model for this task only (e.g. "sonnet", "opus"); defaults to the server's --model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Permission mode for this task only; defaults to the server's --permission-mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_mode: Option<PermissionMode>,
    /// Effort for this task only; defaults to the server's --effort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<Effort>,
}

/// Parameters naming one task.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskRef {
    /// Task id, as returned by pool_submit or pool_run.
    pub task_id: TaskId,
}

/// Parameters of `pool_result`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResultParams {
    /// Task id, as returned by pool_submit or pool_run.
    pub task_id: TaskId,
    /// Wait up to this long for the task to end before answering ("30s", or milliseconds).
    /// Without it the current state is returned at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Timeout>,
}

/// Parameters of `pool_status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// Answer only once every slot is idle (warm and free) or given up, waiting up to this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ready: Option<Timeout>,
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
    /// The task's id.
    pub task_id: TaskId,
    /// pending, running, completed, failed, cancelled or timed_out.
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
    /// The task's id.
    pub task_id: TaskId,
    /// The task's final status: cancelled, or the terminal state it had already reached.
    pub status: TaskStatus,
    /// True when this call cancelled the task.
    pub cancelled: bool,
    /// What happened, in words.
    pub message: String,
}

/// One slot in `pool_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlotReport {
    /// The slot's id.
    pub id: SlotId,
    /// starting, idle, busy, cancelling, restarting, stopping or failed.
    pub status: SlotStatus,
    /// Tasks running on the slot (0 or 1).
    pub active_tasks: u32,
    /// The task it is running.
    pub task_id: Option<TaskId>,
    /// How many times its supervisor restarted it.
    pub restarts: u32,
    /// Pid (and process-group id) of its Claude process.
    pub pid: Option<u32>,
    /// Tasks its current process has served.
    pub turns: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Task counts by status. They always add up to `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCounts {
    /// Every task the pool has seen.
    pub total: u64,
    /// Waiting for a slot.
    pub pending: u64,
    /// Running on a slot.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Timed out.
    pub timed_out: u64,
}

/// What `pool_status` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoolStatusReport {
    /// Every slot.
    pub slots: Vec<SlotReport>,
    /// Tasks running now.
    pub active_tasks: u64,
    /// Tasks waiting for a slot.
    pub pending_tasks: u64,
    /// Dollars spent by all tasks so far.
    pub spend_usd: f64,
    /// The budget cap, null while none is set.
    pub budget_usd: Option<f64>,
    /// Dollars left under the cap, null while none is set.
    pub budget_remaining: Option<f64>,
    /// Task counts by status.
    pub tasks: TaskCounts,
    /// False once the pool has stopped (shutdown or an unrecoverable failure).
    pub running: bool,
}
