//! The scheduler's task table: one record per task, its state, and its report.

use crate::clock::rfc3339;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::tools::{
    CancelReport, TaskCounts, TaskKind, TaskReport, TasksByKind, TokensUsed,
};
use claude_pool_protocol::{SlotId, TaskStatus};
use ractor::RpcReplyPort;
use tokio::time::Instant;

use crate::config::ProcSettings;
use crate::store::convert::StoredOptions;
use crate::store::db::TaskRow;
use crate::task::{ProgressSink, TaskOutcome};

/// Where a task is.
pub(super) enum TaskState {
    Pending,
    Running {
        slot: SlotId,
        started_at: Option<Instant>,
    },
    Done {
        outcome: TaskOutcome,
        slot: Option<SlotId>,
        finished_at: Instant,
    },
}

pub(super) struct TaskRecord {
    /// Start of the deadline and of `queued_ms`.
    pub submitted_at: Instant,
    /// The deadline, counted from submission.
    pub timeout: Duration,
    /// Pool defaults with the task's overrides applied, handed to the slot.
    pub settings: ProcSettings,
    /// The task's own spend cap.
    pub max_budget_usd: Option<f64>,
    /// The prompt and progress sink, held until a slot has started the task, so a task
    /// whose slot goes down before it started can run elsewhere.
    pub payload: Option<(Arc<str>, Option<ProgressSink>)>,
    /// Pending, running on a slot, or done with its outcome.
    pub state: TaskState,
    /// Times the task was retried because its process died before its turn began.
    pub retries: u32,
    /// Times the API refused its turn for rate or load and it was queued again.
    pub rate_limits: u32,
    /// Of those, the refusals that came from a used-up usage window (they do not count
    /// towards the bound: the task waits for the reset instead).
    pub window_waits: u32,
    /// The reset time (unix ms) of the window hold its caller was last told about.
    pub told_hold: Option<i64>,
    /// `Wait` callers, answered when the task ends.
    pub waiters: Vec<RpcReplyPort<Option<TaskReport>>>,
    /// `Cancel` callers, answered when the task ends (a cancel completes only then).
    pub cancel_waiters: Vec<RpcReplyPort<Option<CancelReport>>>,
    /// Set once a stop (cancel, budget) was sent to its slot, so it is sent once.
    pub stopping: bool,
    /// What the task is beyond its prompt: kind, project, session, chain, build, times.
    pub meta: TaskMeta,
}

/// What a task is beyond its prompt and settings.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskMeta {
    /// Pool task or job.
    pub kind: TaskKind,
    /// A job's project.
    pub project: Option<String>,
    /// The conversation it continues.
    pub resume: Option<String>,
    /// The chain it is a step of.
    pub chain: Option<claude_pool_protocol::ChainId>,
    /// A build's worktree and branch.
    pub build: Option<crate::build::BuildPlan>,
    /// Wall-clock submission, start and end (unix ms).
    pub enqueued_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Shut down while queued with a durable store: the store keeps it pending.
    pub keep_queued: bool,
    /// Its own permission rules.
    pub rules: Option<Arc<claude_pool_protocol::rules::RuleSet>>,
    /// How long its permission questions wait.
    pub approval_timeout: Option<Duration>,
    /// Runs again if its slot's host is lost after it started.
    pub retry_if_lost: bool,
}

impl TaskRecord {
    pub fn status(&self) -> TaskStatus {
        match &self.state {
            TaskState::Pending => TaskStatus::Pending,
            TaskState::Running { .. } => TaskStatus::Running,
            TaskState::Done { outcome, .. } => outcome.status,
        }
    }

    /// The deadline, as an instant.
    pub fn deadline(&self) -> Instant {
        self.submitted_at + self.timeout
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state, TaskState::Running { .. })
    }

    /// Whether the task's prompt may have reached Claude.
    pub fn started(&self) -> bool {
        self.payload.is_none()
            || matches!(
                self.state,
                TaskState::Running {
                    started_at: Some(_),
                    ..
                }
            )
    }

    /// The store's row of this (new) task.
    pub fn row(&self, id: &claude_pool_protocol::TaskId) -> TaskRow {
        let mut options = StoredOptions::of(
            &self.settings,
            self.timeout,
            self.max_budget_usd,
            self.meta.build.as_ref(),
        );
        if let Some(rules) = &self.meta.rules {
            options.allow = rules.allow().iter().map(ToString::to_string).collect();
            options.deny = rules.deny().iter().map(ToString::to_string).collect();
        }
        options.approval_timeout_ms = self
            .meta
            .approval_timeout
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        let prompt = self
            .payload
            .as_ref()
            .map(|(p, _)| p.to_string())
            .unwrap_or_default();
        TaskRow {
            project: self.meta.project.clone(),
            chain_id: self.meta.chain.as_ref().map(|c| c.0.clone()),
            state: self.status().as_str().to_owned(),
            resume_session: self.meta.resume.clone(),
            branch: self.meta.build.as_ref().map(|b| b.branch.clone()),
            ..TaskRow::pending(
                id.0.clone(),
                self.meta.kind.as_str(),
                prompt,
                serde_json::to_value(options).unwrap_or_default(),
                self.meta.enqueued_ms,
            )
        }
    }

    pub fn report(&self, id: &claude_pool_protocol::TaskId) -> TaskReport {
        let now = Instant::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (slot, started, finished, outcome) = match &self.state {
            TaskState::Pending => (None, None, None, None),
            TaskState::Running { slot, started_at } => {
                (Some(slot.clone()), *started_at, None, None)
            }
            TaskState::Done {
                outcome,
                slot,
                finished_at,
            } => (
                slot.clone(),
                outcome.started_at,
                Some(*finished_at),
                Some(outcome),
            ),
        };
        let queued_until = started.or(finished).unwrap_or(now);
        let usage = outcome.map(|o| o.cost.usage).unwrap_or_default();
        let worktree = outcome.and_then(|o| o.worktree.as_ref());
        TaskReport {
            task_id: id.clone(),
            status: self.status(),
            output: outcome.and_then(|o| o.output.clone()),
            error: outcome.and_then(|o| o.error.clone()),
            spend_usd: outcome.map(|o| o.cost.usd).unwrap_or(0.0),
            tokens_used: TokensUsed {
                input: usage.input_tokens,
                output: usage.output_tokens,
                cache_read: usage.cache_read_input_tokens,
                cache_write: usage.cache_creation_input_tokens,
            },
            session_id: outcome.and_then(|o| o.session_id.clone()),
            duration_ms: started.map(|s| ms(finished.unwrap_or(now).saturating_duration_since(s))),
            queued_ms: Some(ms(queued_until.saturating_duration_since(self.submitted_at))),
            slot_id: slot,
            model: outcome.and_then(|o| o.model.clone()),
            worktree: worktree.map(|w| w.path.display().to_string()),
            branch: worktree.map(|w| w.branch.clone()),
            commit: worktree.and_then(|w| w.commit.clone()),
            project: self.meta.project.clone(),
            kind: self.meta.kind,
            approvals: outcome.map(|o| o.approvals.clone()).unwrap_or_default(),
            waiting_for_approval: None,
            waiting_for_window: None,
            rate_limited: self.rate_limits,
            enqueued_at: Some(rfc3339(self.meta.enqueued_ms)),
            started_at: self.meta.started_ms.map(rfc3339),
            finished_at: self.meta.finished_ms.map(rfc3339),
            output_truncated: false,
        }
    }
}

/// Adds one task of `status` to `counts`.
pub(super) fn count(counts: &mut TaskCounts, status: TaskStatus) {
    counts.total += 1;
    *slot_of(counts, status) += 1;
}

/// Takes one task of `status` out of `counts`.
pub(super) fn uncount(counts: &mut TaskCounts, status: TaskStatus) {
    counts.total = counts.total.saturating_sub(1);
    let n = slot_of(counts, status);
    *n = n.saturating_sub(1);
}

fn slot_of(counts: &mut TaskCounts, status: TaskStatus) -> &mut u64 {
    match status {
        TaskStatus::Pending => &mut counts.pending,
        TaskStatus::Running => &mut counts.running,
        TaskStatus::Completed => &mut counts.completed,
        TaskStatus::Failed => &mut counts.failed,
        TaskStatus::Cancelled => &mut counts.cancelled,
        TaskStatus::TimedOut => &mut counts.timed_out,
        TaskStatus::Interrupted => &mut counts.interrupted,
    }
}

impl TaskRecord {
    /// Moves the task to `state`, keeping `live` (the counts of remembered tasks) true.
    pub fn set_state(&mut self, state: TaskState, live: &mut TasksByKind) {
        let counts = live.of_mut(self.meta.kind);
        uncount(counts, self.status());
        self.state = state;
        count(counts, self.status());
    }
}
