//! Messages two actors exchange, which belong to neither of them.
//!
//! **The slot protocol.** The scheduler gives a slot [`SlotCommand`]s through a
//! [`SlotLink`], and hears back [`SlotEvent`]s; a slot reports spend as [`Spend`] and asks
//! its permission questions as [`ApprovalNote`]s, answered with [`Answered`]. Neither side
//! names the other's actor: each holds a `DerivedActorRef` of the message it sends, which
//! the receiver turns into its own message (`From`, and `TryFrom` back so a refused send
//! returns the message). A slot on another machine is reached the same way: its host
//! forwards these over the network, so the scheduler cannot tell a remote slot from a local
//! one.
//!
//! **Other notes between actors:** the ledger's budget decisions for the scheduler
//! ([`BudgetNote`]), the scheduler's sizing decisions for the root ([`SizingNote`]), and a
//! slot's first warm process for its supervisor ([`Healthy`]).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use claude_pool_protocol::approvals::{Answer, ApprovalRequest};
use claude_pool_protocol::limits::RateLimitInfo;
use claude_pool_protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use ractor::{ActorId, DerivedActorRef};
use tokio::time::Instant;

use crate::task::{Assignment, ProgressSink, TaskOutcome};

/// What the scheduler tells a slot.
#[derive(Debug)]
pub enum SlotCommand {
    /// Run this task.
    Run(Assignment),
    /// The store committed the start of this task (or could not): its prompt may go.
    StartRecorded {
        /// The task.
        task: TaskId,
        /// `Err` with why, when its start could not be recorded.
        result: Result<(), String>,
    },
    /// Stop this task if it is still running here.
    Cancel {
        /// The task.
        task: TaskId,
        /// The terminal status it gets (cancelled, or failed for a budget stop).
        status: TaskStatus,
        /// Why, for the task's error text.
        reason: String,
    },
    /// Let the idle process go (the idle timeout): the slot stays, cold. Ignored unless the
    /// slot is idle with nothing assigned.
    Release,
    /// Warm up again: spawn a process if the slot is cold.
    Wake,
}

/// How the scheduler reaches one slot, wherever it runs.
#[derive(Clone)]
pub struct SlotLink(DerivedActorRef<SlotCommand>);

impl SlotLink {
    /// A link through `to` (the slot's actor, or its stand-in for a slot on another host).
    pub fn new(to: DerivedActorRef<SlotCommand>) -> Self {
        SlotLink(to)
    }

    /// Sends a command; `Err` when the slot's actor is gone.
    pub fn send(&self, command: SlotCommand) -> Result<(), SlotGone> {
        self.0.send_message(command).map_err(|_| SlotGone)
    }

    /// The actor behind the link.
    pub fn actor(&self) -> ActorId {
        self.0.get_id()
    }
}

/// The slot behind a [`SlotLink`] is gone (its supervisor reports why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotGone;

impl fmt::Debug for SlotLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotLink({})", self.0.get_id())
    }
}

/// What a slot (or its supervisor) tells the scheduler.
#[derive(Debug)]
pub enum SlotEvent {
    /// A slot exists (at start, after a scale-up, or after its supervisor was restarted).
    Added {
        /// The slot.
        slot: SlotId,
    },
    /// A slot is warm, clean and free.
    Ready {
        /// The slot.
        slot: SlotId,
        /// How to reach it now.
        link: SlotLink,
        /// Its process.
        pid: u32,
        /// Tasks its process has served.
        turns: u64,
        /// Its worktree, with `--worktree`.
        worktree: Option<PathBuf>,
        /// The directory its process runs in, when a task asked for its own.
        cwd: Option<PathBuf>,
    },
    /// A slot's visible status changed.
    Changed {
        /// The slot.
        slot: SlotId,
        /// Its new status.
        status: SlotStatus,
        /// Its process, if any.
        pid: Option<u32>,
        /// Tasks its process has served.
        turns: u64,
    },
    /// A slot was removed (scale-down) and its process group is gone.
    Removed {
        /// The slot.
        slot: SlotId,
    },
    /// A slot's actor failed (reported by its supervisor).
    Down {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
        /// Restarts so far.
        restarts: u32,
        /// Whether it will be restarted (false: given up, probed later).
        restarting: bool,
    },
    /// A slot wrote the task's prompt to its process.
    Started {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: SlotId,
        /// When.
        started_at: Instant,
        /// With a store file: the slot holds the prompt until told (through this link)
        /// that the start is committed.
        ack: Option<SlotLink>,
    },
    /// A slot could not take a task after all; it goes back to the front of the queue.
    Rejected {
        /// The slot.
        slot: SlotId,
        /// The task, returned whole.
        assignment: Assignment,
        /// Set when the slot's process died after the prompt was written but before the
        /// turn began (no init event: no API call, no tool ran). Such a task is retried
        /// once; a second time it fails with this reason.
        died_before_turn: Option<String>,
    },
    /// The API refused a task's turn for rate or load (429, 529) before it ran a tool or
    /// spent anything: it is queued again after a backoff, up to a bound.
    RateLimited {
        /// The slot.
        slot: SlotId,
        /// The task, returned whole.
        assignment: Assignment,
        /// What the CLI said.
        error: String,
    },
    /// A slot saw a rate or load refusal (HTTP 429 or 529).
    ApiPressure {
        /// The slot whose turn was refused.
        slot: SlotId,
        /// The status.
        status: u64,
    },
    /// What the API said about its usage windows on a slot's turn.
    ApiWindows(RateLimitInfo),
    /// A slot's host was lost (on another machine): whatever the slot ran is given up.
    Lost {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
    },
    /// A task reached a terminal state on a slot.
    Finished {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: SlotId,
        /// How it ended.
        outcome: TaskOutcome,
    },
}

/// What a running task has spent so far (a slot to the ledger).
#[derive(Debug, Clone, PartialEq)]
pub struct Spend {
    /// The task.
    pub task: TaskId,
    /// Dollars so far.
    pub usd: f64,
    /// Tokens so far.
    pub tokens: u64,
}

/// What a slot tells the approval desk.
pub enum ApprovalNote {
    /// A slot's Claude asks, and no rule answered.
    Ask {
        /// The question.
        request: ApprovalRequest,
        /// Where the answer goes.
        slot: DerivedActorRef<Answered>,
        /// The task's listener: the front-end that submitted it.
        listener: Option<ProgressSink>,
        /// How long to wait for an answer.
        timeout: Duration,
    },
    /// A rule (or a task's grant) answered a question without asking: counted.
    Decided {
        /// allow or deny.
        outcome: String,
        /// `rule:<rule>` or `grant:<request id>`.
        by: String,
    },
    /// A task ended: its open requests are gone.
    TaskEnded(TaskId),
    /// The CLI withdrew this request (its turn is being interrupted).
    Withdrawn(String),
}

impl fmt::Debug for ApprovalNote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApprovalNote::Ask { request, .. } => write!(f, "Ask({})", request.request_id),
            ApprovalNote::Decided { outcome, by } => write!(f, "Decided({outcome} by {by})"),
            ApprovalNote::TaskEnded(t) => write!(f, "TaskEnded({t})"),
            ApprovalNote::Withdrawn(id) => write!(f, "Withdrawn({id})"),
        }
    }
}

/// The answer to a running task's permission question (the desk to the slot).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Answered {
    /// The task that asked.
    pub task: TaskId,
    /// The question (`apr-…`).
    pub request_id: String,
    /// The answer.
    pub answer: Answer,
    /// Who answered.
    pub by: String,
}

/// A slot's process answered its warm-up: its CLI starts (a slot to its supervisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Healthy(pub SlotId);

/// The ledger's decisions the scheduler acts on.
#[derive(Debug, Clone, PartialEq)]
pub enum BudgetNote {
    /// The pool's budget is exhausted.
    Exhausted {
        /// The message naming spend and cap.
        reason: String,
    },
    /// A new budget window began: work is accepted again.
    Renewed,
    /// A task's own spend reached its cap.
    TaskOver {
        /// The task.
        task: TaskId,
        /// Why.
        reason: String,
    },
}

/// The scheduler's sizing decisions, carried out by the root through the slot supervisor.
#[derive(Debug, Clone, PartialEq)]
pub enum SizingNote {
    /// Start these new slots.
    Add(Vec<SlotId>),
    /// Remove these slots.
    Retire {
        /// The slots.
        slots: Vec<SlotId>,
        /// How long a running task may still take.
        grace: Duration,
    },
    /// A halted pool has a working slot again.
    Recovered,
}

/// Where a slot and its supervisor report: the scheduler, the ledger and the approval desk
/// (or, on a slot host, the host's link that forwards to them).
#[derive(Clone)]
pub struct Uplinks {
    /// Slot events.
    pub events: DerivedActorRef<SlotEvent>,
    /// Live spend.
    pub spend: DerivedActorRef<Spend>,
    /// Permission questions.
    pub approvals: DerivedActorRef<ApprovalNote>,
}

impl fmt::Debug for Uplinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Uplinks")
            .field("events", &self.events.get_id())
            .finish_non_exhaustive()
    }
}
