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

/// Something a task did, or what it waits for. New kinds may be added.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
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
    /// Claude (or one of its MCP servers) asks, and waits for an answer
    /// ([`crate::Pool::approve`]).
    Approval(claude_pool_protocol::approvals::ApprovalRequest),
    /// The task waits in the queue for the API: a usage window is used up (or at the
    /// operator's cap) until a reset time. Says why and until when.
    Held(String),
}

/// One task handed to one slot.
pub struct Assignment {
    /// The task.
    pub task: TaskId,
    /// The user message as submitted (shared with the scheduler until the task has started).
    pub prompt: std::sync::Arc<str>,
    /// The shared context table as it was when the task was handed out, written before the
    /// prompt in the same user message (`None` while the table is empty).
    pub preamble: Option<std::sync::Arc<str>>,
    /// The settings the task must run with (task overrides over pool defaults).
    pub settings: ProcSettings,
    /// When the task must be over.
    pub deadline: Instant,
    /// The timeout the deadline came from, for messages.
    pub timeout: std::time::Duration,
    /// Where progress goes, if anyone listens.
    pub progress: Option<ProgressSink>,
    /// Continue this conversation: the process is started with `--resume` for the task.
    pub resume: Option<String>,
    /// The task's own permission rules (never wider than the server's).
    pub rules: Option<std::sync::Arc<claude_pool_protocol::rules::RuleSet>>,
    /// How long its permission questions wait; the pool's `--approval-timeout` when `None`.
    pub approval_timeout: Option<std::time::Duration>,
    /// Run it again elsewhere if its slot's host is lost after it started.
    pub retry_if_lost: bool,
}

impl fmt::Debug for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Assignment")
            .field("task", &self.task)
            .field("prompt_bytes", &self.prompt.len())
            .field("preamble_bytes", &self.preamble.as_ref().map(|p| p.len()))
            .field("settings", &self.settings)
            .field("resume", &self.resume)
            .field("deadline", &self.deadline)
            .finish_non_exhaustive()
    }
}

/// How a task ended, as the slot saw it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
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
    /// When the prompt was written to the process (on this machine: not sent between
    /// hosts).
    #[serde(skip)]
    pub started_at: Option<Instant>,
    /// With worktrees: where the task ran and the head it left.
    pub worktree: Option<WorktreeState>,
    /// Every permission question of the task and how it ended.
    pub approvals: Vec<claude_pool_protocol::approvals::ApprovalRecord>,
    /// The API refused the turn for rate or load (429, 529) before it ran any tool or
    /// spent anything: the task may run again.
    pub rate_limited: bool,
}

/// A slot's git worktree as a task left it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorktreeState {
    /// The worktree's directory.
    pub path: std::path::PathBuf,
    /// The branch checked out there.
    pub branch: String,
    /// The branch's head commit after the task.
    pub commit: Option<String>,
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
            worktree: None,
            approvals: Vec::new(),
            rate_limited: false,
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
    /// Spend cap of this task in dollars: once what it has spent reaches it, it is stopped
    /// (what ran is billed) and fails.
    pub max_budget_usd: Option<f64>,
    /// Where to send progress while it runs.
    pub progress: Option<ProgressSink>,
    /// Continue this Claude conversation (`--resume`) instead of a fresh one.
    pub session_id: Option<String>,
    /// A job's project: its directory is the working directory, and the project's
    /// concurrency limit applies.
    pub project: Option<String>,
    /// What started the task.
    pub kind: claude_pool_protocol::tools::TaskKind,
    /// Tools Claude may use without asking (`--allowedTools`).
    pub allowed_tools: Option<Vec<String>>,
    /// The recursion depth of the request that submitted it (the server's own when `None`).
    pub depth: Option<u32>,
    /// Permission rules that allow without asking, in Claude Code's syntax; each must be
    /// within the server's allow rules, and when any is given only these allow.
    pub allow: Vec<String>,
    /// Permission rules that deny without asking, on top of the server's.
    pub deny: Vec<String>,
    /// How long a permission question waits for a person; the pool's default when `None`.
    pub approval_timeout: Option<std::time::Duration>,
    /// If the host of its slot (another machine) is lost after it started, run it again
    /// elsewhere instead of ending it `interrupted` (it may then have run twice).
    pub retry_if_lost: bool,
    /// Set by the pool: the chain the task is a step of.
    pub(crate) chain: Option<claude_pool_protocol::ChainId>,
    /// Set by the pool: the working directory (a project's, or a build's worktree).
    pub(crate) cwd: Option<std::path::PathBuf>,
    /// Set by the pool: the worktree and branch of a build.
    pub(crate) build: Option<crate::build::BuildPlan>,
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

    /// Caps this task's own spend.
    pub fn max_budget_usd(mut self, usd: f64) -> Self {
        self.max_budget_usd = Some(usd);
        self
    }

    /// Applies the per-task options of an MCP call.
    pub fn with_options(mut self, o: &claude_pool_protocol::tools::TaskOptions) -> Self {
        self.timeout = o.timeout.map(|t| t.0).or(self.timeout);
        self.model = o.model.clone().or(self.model);
        self.permission_mode = o.permission_mode.or(self.permission_mode);
        self.effort = o.effort.or(self.effort);
        self.max_budget_usd = o.max_budget_usd.map(|u| u.0).or(self.max_budget_usd);
        if let Some(allow) = &o.allow {
            self.allow.clone_from(allow);
        }
        if let Some(deny) = &o.deny {
            self.deny.clone_from(deny);
        }
        self.approval_timeout = o.approval_timeout.map(|t| t.0).or(self.approval_timeout);
        #[cfg(feature = "cluster")]
        if let Some(r) = o.retry_if_lost {
            self.retry_if_lost = r;
        }
        self
    }

    /// Continues the conversation `session_id` (from an earlier result).
    pub fn session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = Some(session_id.into());
        self
    }

    /// Runs the task in a project's directory, under its concurrency limit.
    pub fn project(mut self, name: impl Into<String>) -> Self {
        self.project = Some(name.into());
        self
    }

    /// Lets tools that `rules` match run without asking (each within the server's allow
    /// rules).
    pub fn allow(mut self, rules: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.allow = rules.into_iter().map(Into::into).collect();
        self
    }

    /// Refuses tools that `rules` match without asking.
    pub fn deny(mut self, rules: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.deny = rules.into_iter().map(Into::into).collect();
        self
    }

    /// How long a permission question of this task waits for an answer.
    pub fn approval_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.approval_timeout = Some(timeout);
        self
    }

    /// Runs it again elsewhere if its slot's host is lost after it started.
    pub fn retry_if_lost(mut self, yes: bool) -> Self {
        self.retry_if_lost = yes;
        self
    }

    /// Sends progress to `sink`.
    pub fn progress(mut self, sink: ProgressSink) -> Self {
        self.progress = Some(sink);
        self
    }
}
