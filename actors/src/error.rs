//! Errors of the embedding API.

use claude_pool_protocol::TaskId;

/// Why a pool call did not do what was asked. A task that ran and failed is not an error:
/// it is a [`claude_pool_protocol::tools::TaskReport`] with a terminal status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The task cannot be accepted as given.
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// No task has this id.
    #[error("unknown task id \"{0}\"")]
    UnknownTask(TaskId),
    /// The pool no longer runs tasks (it was shut down or could not keep slots alive).
    #[error("the pool is stopped: {0}")]
    Stopped(String),
}
