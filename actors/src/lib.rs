//! claude-pool: a supervised pool of warm Claude Code CLI processes.
//!
//! The tree (see `supervision-tree.md` at the repository root):
//!
//! ```text
//! RootActor (root supervisor)
//! ├── SchedulerActor        task table + FIFO queue
//! ├── SlotSupervisorActor   one-for-one, restart limits + backoff
//! │   ├── SlotActor slot-0  one warm `claude -p --input-format stream-json …`
//! │   └── SlotActor slot-N
//! └── FrontendActor         MCP over stdio (attached by the server binary)
//! ```
//!
//! Embed it with [`Pool`]; serve it over MCP with [`FrontendActor`] / [`PoolServer`].
#![warn(missing_docs)]

pub mod config;
pub mod error;
pub mod frontend;
pub mod mcp;
pub mod pool;
pub mod process;
pub mod restart;
pub mod root;
pub mod scheduler;
pub mod slot;
pub mod slot_supervisor;
pub mod task;

pub use claude_pool_protocol as protocol;
pub use config::{PoolConfig, ProcSettings};
pub use error::PoolError;
pub use frontend::{FrontendActor, FrontendTransport};
pub use mcp::PoolServer;
pub use pool::{Pool, PoolBuilder};
pub use restart::RestartPolicy;
pub use root::PoolHealth;
pub use task::{TaskProgress, TaskSpec};
