//! Typed pool events: what changed, as it changes.
//!
//! The scheduler, the slots' supervisor, the chain supervisor, the ledger and the context
//! table publish on one broadcast channel per pool; MCP resource subscriptions and embedding
//! programs ([`crate::Pool::events`]) read it. An event says *what* changed, not the new
//! state: readers fetch the state they care about, so a lagging reader loses nothing but
//! intermediate states.

use claude_pool_protocol::{ChainId, ChainStatus, SlotId, SlotStatus, TaskId, TaskStatus};
use tokio::sync::broadcast;

use crate::restart::FailureKind;

/// Something changed in the pool.
#[derive(Debug, Clone, PartialEq)]
pub enum PoolEvent {
    /// A task was submitted or changed status.
    Task {
        /// The task.
        id: TaskId,
        /// Its status now.
        status: TaskStatus,
    },
    /// A slot changed status.
    Slot {
        /// The slot.
        id: SlotId,
        /// Its status now.
        status: SlotStatus,
    },
    /// A slot's actor failed and its supervisor decided what to do.
    SlotFailed {
        /// The slot.
        id: SlotId,
        /// What happened.
        reason: String,
        /// What it says about the CLI.
        kind: FailureKind,
        /// Whether it will be restarted (false: given up, probed later).
        restarting: bool,
    },
    /// Slots were added or removed.
    SlotsChanged,
    /// A chain was submitted or changed.
    Chain {
        /// The chain.
        id: ChainId,
        /// Its status now.
        status: ChainStatus,
    },
    /// Spend or the budget changed.
    Budget,
    /// The context table changed.
    Context,
    /// The projects file was read again (SIGHUP), whether or not it could be used.
    Projects,
    /// The admission gate moved (the API refused turns, or calmed down).
    Api,
    /// A task's approval requests changed (one was asked, answered, timed out or dropped).
    Approvals {
        /// The task.
        task: TaskId,
    },
}

/// Where a pool's events are published.
#[derive(Debug, Clone)]
pub struct EventBus {
    tx: broadcast::Sender<PoolEvent>,
    /// Each new approval request, whole (for [`crate::Pool::approvals`]).
    asked: broadcast::Sender<claude_pool_protocol::approvals::ApprovalRequest>,
}

impl EventBus {
    /// Events a slow reader may fall behind by before it loses some (it is told it lagged).
    const CAPACITY: usize = 4096;

    /// A bus with no readers yet.
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(Self::CAPACITY);
        let (asked, _) = broadcast::channel(Self::CAPACITY);
        EventBus { tx, asked }
    }

    /// Publishes a new approval request (a no-op without readers).
    pub fn asked(&self, request: claude_pool_protocol::approvals::ApprovalRequest) {
        let _ = self.asked.send(request);
    }

    /// A new reader of approval requests, seeing those asked from now on.
    pub fn approval_requests(
        &self,
    ) -> broadcast::Receiver<claude_pool_protocol::approvals::ApprovalRequest> {
        self.asked.subscribe()
    }

    /// Publishes `event` (a no-op without readers).
    pub fn publish(&self, event: PoolEvent) {
        let _ = self.tx.send(event);
    }

    /// A new reader, seeing events from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<PoolEvent> {
        self.tx.subscribe()
    }
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus::new()
    }
}
