//! Errors of the embedding API.

use claude_pool_protocol::{ChainId, TaskId};

/// Why a pool call did not do what was asked. A task that ran and failed is not an error:
/// it is a [`claude_pool_protocol::tools::TaskReport`] with a terminal status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PoolError {
    /// The request cannot be accepted as given (nothing was started).
    #[error("invalid task: {0}")]
    InvalidTask(String),
    /// An argument is out of bounds or malformed (nothing was changed).
    #[error("{0}")]
    InvalidArgument(String),
    /// No task has this id.
    #[error("task not found: no task has the id \"{0}\"")]
    UnknownTask(TaskId),
    /// No chain has this id.
    #[error("chain not found: no chain has the id \"{0}\"")]
    UnknownChain(ChainId),
    /// Nothing has this name (a context key, a skill, a slot, a resource).
    #[error("{0}")]
    NotFound(String),
    /// New work is refused for now or for good: the pool is draining or drained, its budget
    /// is exhausted, or it cannot keep slots alive. Says why.
    #[error("{0}")]
    Refused(String),
    /// The pool no longer runs (it was shut down or an actor it cannot do without failed).
    #[error("the pool is stopped: {0}")]
    Stopped(String),
    /// The request comes from too deep a chain of Claude processes calling the pool (each
    /// process the pool starts runs one level deeper); nothing was started.
    #[error(
        "recursion_limit_exceeded: this request is at depth {depth} and the server refuses work at depth {max} or deeper (--max-depth); a Claude process started by the pool cannot start more work through it at this depth"
    )]
    RecursionLimit {
        /// The request's depth.
        depth: u32,
        /// The server's limit.
        max: u32,
    },
}
