//! claude-pool: a supervised pool of warm Claude Code CLI processes.
//!
//! The tree (see `supervision-tree.md` at the repository root):
//!
//! ```text
//! RootActor (root supervisor)
//! ├── LedgerActor           spend, budget cap, reservations
//! ├── ContextActor          the shared context table
//! ├── SchedulerActor        task table + FIFO queue + pool size
//! ├── SlotSupervisorActor   one-for-one, crash-loop limits + backoff + probes
//! │   ├── SlotActor slot-0  one warm `claude -p --input-format stream-json …`
//! │   └── SlotActor slot-N
//! ├── ChainSupervisorActor  chain registry
//! │   └── ChainActor chain-… one per chain
//! └── FrontendActor         MCP over stdio (attached by the server binary)
//! ```
//!
//! Embed it with [`Pool`]; serve it over MCP with [`FrontendActor`] / [`PoolServer`].
#![warn(missing_docs)]

pub mod approvals;
pub mod build;
pub mod chain;
pub mod chains;
pub mod clock;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod config;
pub mod context;
pub mod credentials;
pub mod error;
pub mod events;
pub mod frontend;
pub mod http;
pub mod ledger;
pub mod mcp;
pub mod metrics;
pub mod pool;
pub mod private;
pub mod process;
pub mod projects;
pub mod restart;
pub mod root;
pub mod scheduler;
pub mod skills;
pub mod slot;
pub mod slot_supervisor;
pub mod store;
pub mod task;
pub mod wire;

/// With ractor's `cluster` feature, a message type implements `ractor::Message` itself
/// (without it, ractor's blanket impl covers every type). None of these crosses the network:
/// only [`cluster`]'s port does.
#[cfg(feature = "cluster")]
mod local_messages {
    impl ractor::Message for crate::approvals::ApprovalsMsg {}
    impl ractor::Message for crate::chain::ChainMsg {}
    impl ractor::Message for crate::chains::ChainSupervisorMsg {}
    impl ractor::Message for crate::context::ContextMsg {}
    impl ractor::Message for crate::frontend::FrontendMsg {}
    impl ractor::Message for crate::ledger::LedgerMsg {}
    impl ractor::Message for crate::root::RootMsg {}
    impl ractor::Message for crate::scheduler::SchedulerMsg {}
    impl ractor::Message for crate::slot::SlotMsg {}
    impl ractor::Message for crate::slot_supervisor::SlotSupervisorMsg {}
    impl ractor::Message for crate::store::actor::StoreMsg {}
}
pub mod worktree;

pub use claude_pool_protocol as protocol;
pub use config::{PoolConfig, ProcSettings, StoreLocation};
pub use error::PoolError;
pub use events::PoolEvent;
pub use frontend::{FrontendActor, FrontendTransport};
pub use mcp::PoolServer;
pub use pool::faults::{FakeFaults, TurnFault};
pub use pool::{FanOutProgress, Pool, PoolBuilder};
pub use restart::{FailureKind, RestartPolicy};
pub use root::PoolHealth;
pub use skills::{Skill, SkillRegistry};
pub use task::{TaskProgress, TaskSpec};
