//! Task and slot status enums as the outside world sees them.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a task is in its life. `Completed`, `Failed`, `Cancelled` and `TimedOut` are
/// terminal: once a task reaches one it never changes again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Waiting in the queue for an idle slot.
    Pending,
    /// A slot's Claude process is working on it.
    Running,
    /// Claude answered and reported no error.
    Completed,
    /// Claude reported an error, or its process died, hung or misbehaved.
    Failed,
    /// Cancelled by a caller (or by shutdown) before it completed.
    Cancelled,
    /// Its deadline passed before it completed.
    TimedOut,
    /// It was running (or belonged to a chain that was) when the server stopped without a
    /// graceful shutdown; found so by the store's crash rule on the next start.
    Interrupted,
}

impl TaskStatus {
    /// True for the four terminal states.
    pub fn is_terminal(self) -> bool {
        !matches!(self, TaskStatus::Pending | TaskStatus::Running)
    }

    /// The wire name (`"timed_out"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Interrupted => "interrupted",
        }
    }

    /// Every status, in lifecycle order.
    pub const ALL: [TaskStatus; 7] = [
        TaskStatus::Pending,
        TaskStatus::Running,
        TaskStatus::Completed,
        TaskStatus::Failed,
        TaskStatus::Cancelled,
        TaskStatus::TimedOut,
        TaskStatus::Interrupted,
    ];

    /// The status of a wire name.
    pub fn parse(name: &str) -> Option<TaskStatus> {
        TaskStatus::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A slot as `pool_status` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SlotStatus {
    /// Its Claude process is being spawned and warmed up.
    Starting,
    /// Warm and waiting for work.
    Idle,
    /// Running a task (or resetting its conversation right after one).
    Busy,
    /// Its process is being stopped after a cancel or a deadline.
    Cancelling,
    /// The slot actor failed; its supervisor restarts it after a backoff.
    Restarting,
    /// The slot is being removed (scale-down) or shut down.
    Stopping,
    /// The slot's process was stopped for good (after a drain).
    Stopped,
    /// The slot exceeded its restart limit and is no longer restarted.
    Failed,
    /// Its process was let go after the idle timeout (or is being); a task wakes it.
    Cold,
    /// Its host (another machine) was lost; it comes back when the host joins again.
    Lost,
}

impl SlotStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Starting => "starting",
            SlotStatus::Idle => "idle",
            SlotStatus::Busy => "busy",
            SlotStatus::Cancelling => "cancelling",
            SlotStatus::Restarting => "restarting",
            SlotStatus::Stopping => "stopping",
            SlotStatus::Stopped => "stopped",
            SlotStatus::Failed => "failed",
            SlotStatus::Cold => "cold",
            SlotStatus::Lost => "lost",
        }
    }
}

impl fmt::Display for SlotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a chain is in its life. `Completed`, `Failed` and `Cancelled` are terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChainStatus {
    /// Steps are waiting or running.
    InProgress,
    /// Every step completed (or failed with failure_policy skip).
    Completed,
    /// A step failed (after its retries) and the chain stopped.
    Failed,
    /// Cancelled by a caller, a drain or shutdown.
    Cancelled,
}

impl ChainStatus {
    /// True for the three terminal states.
    pub fn is_terminal(self) -> bool {
        self != ChainStatus::InProgress
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainStatus::InProgress => "in_progress",
            ChainStatus::Completed => "completed",
            ChainStatus::Failed => "failed",
            ChainStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for ChainStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one chain step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// Waiting for its dependencies.
    Pending,
    /// Its task is queued or running.
    Running,
    /// Its task completed.
    Completed,
    /// It did not complete and stopped the chain.
    Failed,
    /// It did not complete; failure_policy skip let the chain go on.
    Skipped,
    /// It never ran to the end: the chain was cancelled or stopped by another step.
    Cancelled,
}

impl StepStatus {
    /// True once the step will not change again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, StepStatus::Pending | StepStatus::Running)
    }

    /// True when later steps may use it (completed, or skipped with an empty output).
    pub fn is_done(self) -> bool {
        matches!(self, StepStatus::Completed | StepStatus::Skipped)
    }

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Completed => "completed",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
            StepStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
