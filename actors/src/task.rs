//! What travels between the scheduler and a slot: a task's assignment, its progress, and
//! its outcome.

use std::fmt;

use claude_pool_protocol::cost::TurnCost;
use claude_pool_protocol::{SlotId, TaskId, TaskStatus};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::ProcSettings;

/// Where a task's progress goes while it runs (for MCP progress notifications).
pub type ProgressSink = mpsc::UnboundedSender<TaskProgress>;

/// Something a running task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskProgress {
    /// A slot took the task.
    Started {
        /// The slot.
        slot: SlotId,
    },
    /// The model said something or called tools.
    Assistant {
        /// Text of the message (may be empty).
        text: String,
        /// Tools called.
        tool_uses: Vec<String>,
    },
}

/// One task handed to one slot.
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// The user message (shared with the scheduler until the task has started).
    pub prompt: std::sync::Arc<str>,
    /// The settings the task must run with (task overrides over pool defaults).
    pub settings: ProcSettings,
    /// When the task must be over.
    pub deadline: Instant,
    /// The timeout the deadline came from, for messages.
    pub timeout: std::time::Duration,
    /// Where progress goes, if anyone listens.
    pub progress: Option<ProgressSink>,
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("task", &self.task)
            .field("prompt_bytes", &self.prompt.len())
            .field("settings", &self.settings)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// How a task ended, as the slot saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskOutcome {
    /// A terminal status.
    pub status: TaskStatus,
    /// The answer, when completed.
    pub output: Option<String>,
    /// Why it did not complete.
    pub error: Option<String>,
    /// What the task's own turn cost.
    pub cost: TurnCost,
    /// The conversation it ran in.
    pub session_id: Option<String>,
    /// The model that answered.
    pub model: Option<String>,
    /// When the prompt was written to the process.
    pub started_at: Option<Instant>,
}

impl TaskOutcome {
    /// An outcome with nothing spent.
    pub fn unbilled(status: TaskStatus, error: impl Into<String>) -> Self {
        TaskOutcome {
            status,
            output: None,
            error: Some(error.into()),
            cost: TurnCost::default(),
            session_id: None,
            model: None,
            started_at: None,
        }
    }
}

/// A task as a caller submits it.
#[derive(Debug, Clone, Default)]
pub struct TaskSpec {
    /// The user message.
    pub prompt: String,
    /// Deadline from submission; the pool's default when `None`.
    pub timeout: Option<std::time::Duration>,
    /// Model override.
    pub model: Option<String>,
    /// Permission-mode override.
    pub permission_mode: Option<claude_pool_protocol::PermissionMode>,
    /// Effort override.
    pub effort: Option<claude_pool_protocol::Effort>,
    /// Where to send progress while it runs.
    pub progress: Option<ProgressSink>,
}

impl TaskSpec {
    /// A task with this prompt and every setting at the pool's default.
    pub fn new(prompt: impl Into<String>) -> Self {
        TaskSpec {
            prompt: prompt.into(),
            ..TaskSpec::default()
        }
    }

    /// Sets the deadline.
    pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// Sets the permission mode.
    pub fn permission_mode(mut self, mode: claude_pool_protocol::PermissionMode) -> Self {
        self.permission_mode = Some(mode);
        self
    }

    /// Sets the effort.
    pub fn effort(mut self, effort: claude_pool_protocol::Effort) -> Self {
        self.effort = Some(effort);
        self
    }

    /// Sends progress to `sink`.
    pub fn progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }
}
