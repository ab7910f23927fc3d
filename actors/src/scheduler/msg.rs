//! The scheduler's messages: its whole interface.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use claude_pool_protocol::tools::{
    CancelReport, DrainReport, PoolStatusReport, ScaleReport, TaskReport,
};
use claude_pool_protocol::{SlotId, SlotStatus, TaskId};
use ractor::{ActorRef, RpcReplyPort};
use tokio::time::Instant;

use super::ScaleRequest;
use crate::error::PoolError;
use crate::slot::SlotMsg;
use crate::task::{Assignment, TaskOutcome, TaskSpec};

/// Messages the scheduler handles.
pub enum SchedulerMsg {
    /// Queue a task.
    Submit(TaskSpec, RpcReplyPort<Result<TaskId, PoolError>>),
    /// Queue several tasks at once: all are accepted, or none.
    SubmitMany(Vec<TaskSpec>, RpcReplyPort<Result<Vec<TaskId>, PoolError>>),
    /// The store could not record new tasks (their caller was refused): end them.
    NotPersisted {
        /// The tasks.
        ids: Vec<TaskId>,
        /// Why.
        reason: String,
    },
    /// A build's branch was checked after its turn: the task ends with this outcome.
    BuildChecked {
        /// The task.
        task: TaskId,
        /// The slot that ran it.
        slot: SlotId,
        /// Its outcome, with the commit (or why the build failed).
        outcome: TaskOutcome,
    },
    /// A task's report now.
    Get(TaskId, RpcReplyPort<Option<TaskReport>>),
    /// A task's report once it is terminal.
    Wait(TaskId, RpcReplyPort<Option<TaskReport>>),
    /// Cancel a task; answered once it is terminal.
    Cancel(TaskId, RpcReplyPort<Option<CancelReport>>),
    /// The pool's status (spend, budget and chains are filled in by [`crate::Pool`]).
    Status(RpcReplyPort<PoolStatusReport>),
    /// Answered once every slot is idle (warm and free) or given up, at the same moment.
    WaitReady(RpcReplyPort<()>),
    /// Grow or shrink the pool; answered once added slots exist and removed ones are gone.
    Scale(ScaleRequest, RpcReplyPort<Result<ScaleReport, PoolError>>),
    /// The slots the pool is sized to (for a restarted slot supervisor).
    SlotIds(RpcReplyPort<Vec<SlotId>>),
    /// Stop taking work, cancel pending tasks, let running ones finish (within the
    /// timeout, if any); answered with the summary once nothing runs.
    Drain(Option<Duration>, RpcReplyPort<DrainReport>),
    /// The drain's timeout ran out: cancel what still runs.
    DrainDeadline,
    /// The slot processes were stopped for good (after a drain).
    SlotsStopped,
    /// A slot exists (at start, after a scale-up, or after its supervisor was restarted).
    SlotAdded {
        /// The slot.
        slot: SlotId,
    },
    /// A slot is warm, clean and free.
    SlotReady {
        /// The slot.
        slot: SlotId,
        /// Its current actor.
        actor: ActorRef<SlotMsg>,
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
    SlotChanged {
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
    SlotRemoved {
        /// The slot.
        slot: SlotId,
    },
    /// A slot wrote the task's prompt to its process.
    TaskStarted {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: SlotId,
        /// When.
        started_at: Instant,
        /// With a store file: the slot holds the prompt until told the start is committed.
        ack: Option<ActorRef<SlotMsg>>,
    },
    /// A slot could not take a task after all; it goes back to the front of the queue.
    TaskRejected {
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
    /// A slot saw a rate or load refusal (HTTP 429 or 529): the admission gate closes in.
    ApiPressure {
        /// The slot whose turn was refused (its task's model is the one refused).
        slot: SlotId,
        /// The status.
        status: u64,
    },
    /// The gate's calm timer: it may open by a turn.
    GateTick,
    /// What the API said about its usage windows on a slot's turn (`rate_limit_event`).
    ApiWindows(claude_pool_protocol::limits::RateLimitInfo),
    /// A usage window that held dispatch back should have started again.
    WindowTick,
    /// A rate-limited task's backoff is over: back to the head of the queue.
    Requeue(TaskId),
    /// A task reached a terminal state on a slot.
    TaskFinished {
        /// The task.
        task: TaskId,
        /// The slot.
        slot: SlotId,
        /// How it ended.
        outcome: TaskOutcome,
    },
    /// A slot's actor failed (reported by the slot supervisor).
    SlotDown {
        /// The slot.
        slot: SlotId,
        /// Why.
        reason: String,
        /// Restarts so far.
        restarts: u32,
        /// Whether it will be restarted (false: given up, probed later).
        restarting: bool,
    },
    /// Every slot went down at once (the slot supervisor failed).
    AllSlotsDown {
        /// Why.
        reason: String,
    },
    /// The earliest deadline of a queued task passed: time out what is due.
    QueueDeadlines,
    /// The idle check's timer fired: release slots idle past the idle timeout.
    IdleCheck,
    /// No slot can start: fail what is open, refuse new work until a slot starts again.
    Halt {
        /// Why.
        reason: String,
    },
    /// The pool's budget is exhausted (from the ledger).
    BudgetExhausted {
        /// The message naming spend and cap.
        reason: String,
    },
    /// Queued tasks of a server of the project that died, adopted by this one: queue them.
    Adopt(Vec<crate::store::db::TaskRow>),
    /// A new budget window began: work is accepted again (unless something else refuses
    /// it).
    BudgetRenewed,
    /// A task's own spend reached its cap (from the ledger).
    TaskOverBudget {
        /// The task.
        task: TaskId,
        /// Why.
        reason: String,
    },
    /// Stop accepting work and end every task; answered when done.
    Shutdown(RpcReplyPort<()>),
}

/// Who waits for a submission's answer.
#[derive(Debug)]
pub enum SubmitReply {
    /// One task.
    One(RpcReplyPort<Result<TaskId, PoolError>>),
    /// A fan-out.
    Many(RpcReplyPort<Result<Vec<TaskId>, PoolError>>),
}

impl SubmitReply {
    /// Answers with the ids (or why not).
    pub fn send(self, answer: Result<Vec<TaskId>, PoolError>) {
        match self {
            SubmitReply::One(r) => {
                let _ = r.send(answer.and_then(|mut ids| {
                    ids.pop()
                        .ok_or_else(|| PoolError::InvalidTask("nothing was submitted".into()))
                }));
            }
            SubmitReply::Many(r) => {
                let _ = r.send(answer);
            }
        }
    }
}

impl fmt::Debug for SchedulerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SchedulerMsg::Submit(..) => "Submit",
            SchedulerMsg::SubmitMany(..) => "SubmitMany",
            SchedulerMsg::NotPersisted { .. } => "NotPersisted",
            SchedulerMsg::BuildChecked { .. } => "BuildChecked",
            SchedulerMsg::Get(..) => "Get",
            SchedulerMsg::Wait(..) => "Wait",
            SchedulerMsg::Cancel(..) => "Cancel",
            SchedulerMsg::Status(..) => "Status",
            SchedulerMsg::WaitReady(..) => "WaitReady",
            SchedulerMsg::Scale(..) => "Scale",
            SchedulerMsg::SlotIds(..) => "SlotIds",
            SchedulerMsg::Drain(..) => "Drain",
            SchedulerMsg::DrainDeadline => "DrainDeadline",
            SchedulerMsg::SlotsStopped => "SlotsStopped",
            SchedulerMsg::SlotAdded { .. } => "SlotAdded",
            SchedulerMsg::SlotReady { .. } => "SlotReady",
            SchedulerMsg::SlotChanged { .. } => "SlotChanged",
            SchedulerMsg::SlotRemoved { .. } => "SlotRemoved",
            SchedulerMsg::TaskStarted { .. } => "TaskStarted",
            SchedulerMsg::TaskRejected { .. } => "TaskRejected",
            SchedulerMsg::TaskFinished { .. } => "TaskFinished",
            SchedulerMsg::SlotDown { .. } => "SlotDown",
            SchedulerMsg::AllSlotsDown { .. } => "AllSlotsDown",
            SchedulerMsg::QueueDeadlines => "QueueDeadlines",
            SchedulerMsg::RateLimited { .. } => "RateLimited",
            SchedulerMsg::ApiPressure { .. } => "ApiPressure",
            SchedulerMsg::GateTick => "GateTick",
            SchedulerMsg::ApiWindows(_) => "ApiWindows",
            SchedulerMsg::WindowTick => "WindowTick",
            SchedulerMsg::Requeue(_) => "Requeue",
            SchedulerMsg::IdleCheck => "IdleCheck",
            SchedulerMsg::Halt { .. } => "Halt",
            SchedulerMsg::BudgetExhausted { .. } => "BudgetExhausted",
            SchedulerMsg::TaskOverBudget { .. } => "TaskOverBudget",
            SchedulerMsg::BudgetRenewed => "BudgetRenewed",
            SchedulerMsg::Adopt(_) => "Adopt",
            SchedulerMsg::Shutdown(..) => "Shutdown",
        };
        f.write_str(name)
    }
}
