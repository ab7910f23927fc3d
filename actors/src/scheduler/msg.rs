//! The scheduler's messages: its whole interface.

use std::fmt;
use std::time::Duration;

use claude_pool_protocol::tools::{
    CancelReport, DrainReport, PoolStatusReport, ScaleReport, TaskReport,
};
use claude_pool_protocol::{SlotId, TaskId};
use ractor::RpcReplyPort;

use super::ScaleRequest;
use crate::error::PoolError;
use crate::task::{TaskOutcome, TaskSpec};
use crate::wire::{BudgetNote, SlotEvent};

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
    /// What a slot (or its supervisor) reports.
    Slot(SlotEvent),
    /// What the ledger decided.
    Budget(BudgetNote),
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
    /// The gate's calm timer: it may open by a turn.
    GateTick,
    /// A usage window that held dispatch back should have started again.
    WindowTick,
    /// A rate-limited task's backoff is over: back to the head of the queue.
    Requeue(TaskId),
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
    /// Queued tasks of a server of the project that died, adopted by this one: queue them.
    Adopt(Vec<crate::store::db::TaskRow>),
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
            SchedulerMsg::Slot(e) => return write!(f, "Slot({e:?})"),
            SchedulerMsg::Budget(n) => return write!(f, "Budget({n:?})"),
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
            SchedulerMsg::AllSlotsDown { .. } => "AllSlotsDown",
            SchedulerMsg::QueueDeadlines => "QueueDeadlines",
            SchedulerMsg::GateTick => "GateTick",
            SchedulerMsg::WindowTick => "WindowTick",
            SchedulerMsg::Requeue(_) => "Requeue",
            SchedulerMsg::IdleCheck => "IdleCheck",
            SchedulerMsg::Halt { .. } => "Halt",
            SchedulerMsg::Adopt(_) => "Adopt",
            SchedulerMsg::Shutdown(..) => "Shutdown",
        };
        f.write_str(name)
    }
}

impl From<SlotEvent> for SchedulerMsg {
    fn from(e: SlotEvent) -> Self {
        SchedulerMsg::Slot(e)
    }
}

impl TryFrom<SchedulerMsg> for SlotEvent {
    type Error = SchedulerMsg;
    fn try_from(m: SchedulerMsg) -> Result<Self, SchedulerMsg> {
        match m {
            SchedulerMsg::Slot(e) => Ok(e),
            other => Err(other),
        }
    }
}

impl From<BudgetNote> for SchedulerMsg {
    fn from(n: BudgetNote) -> Self {
        SchedulerMsg::Budget(n)
    }
}

impl TryFrom<SchedulerMsg> for BudgetNote {
    type Error = SchedulerMsg;
    fn try_from(m: SchedulerMsg) -> Result<Self, SchedulerMsg> {
        match m {
            SchedulerMsg::Budget(n) => Ok(n),
            other => Err(other),
        }
    }
}
