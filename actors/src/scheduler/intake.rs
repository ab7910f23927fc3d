//! Whether the pool takes new work, and the ways it stops: a drain, an exhausted budget, a
//! halt (no slot can start; reversible), and shutdown.

use std::time::Duration;

use claude_pool_protocol::tools::DrainReport;
use claude_pool_protocol::{SlotStatus, TaskId, TaskStatus};
use ractor::{MessagingErr, RpcReplyPort};
use tokio::task::JoinHandle;

use super::{SchedulerMsg, SchedulerState, TaskState};
use crate::error::PoolError;
use crate::events::PoolEvent;
use crate::task::TaskOutcome;

/// Whether new work is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intake {
    /// Work is accepted.
    Open,
    /// No slot can start; the pool is probed and opens again once a slot starts.
    Halted(String),
    /// The budget is exhausted (the message names spend and cap). For good.
    BudgetExhausted(String),
    /// `pool_drain` is letting running tasks finish.
    Draining,
    /// `pool_drain` finished; the slots' processes are stopped. For good.
    Drained,
    /// The pool shut down.
    Shutdown,
}

impl Intake {
    /// The error a new task gets, or `None` while work is accepted.
    pub fn refusal(&self) -> Option<PoolError> {
        match self {
            Intake::Open => None,
            Intake::Shutdown => Some(PoolError::Stopped("the pool is shut down".into())),
            other => Some(PoolError::Refused(other.describe())),
        }
    }

    /// Why work is refused, in words.
    pub fn describe(&self) -> String {
        match self {
            Intake::Open => "the pool accepts work".into(),
            Intake::Halted(reason) => format!(
                "no slot can start ({reason}); the pool keeps probing and accepts work again once a slot starts"
            ),
            Intake::BudgetExhausted(reason) => reason.clone(),
            Intake::Draining => {
                "the pool is draining (pool_drain): it accepts no new work".into()
            }
            Intake::Drained => "the pool was drained (pool_drain): it accepts no new work; restart the server to use it again".into(),
            Intake::Shutdown => "the pool is shut down".into(),
        }
    }

    /// Whether resizing the pool is refused (once it is being drained or shut down).
    pub fn scaling_refusal(&self) -> Option<PoolError> {
        match self {
            Intake::Draining | Intake::Drained | Intake::Shutdown => self.refusal(),
            _ => None,
        }
    }

    /// Whether the pool runs no tasks now: halted, drained or shut down (for
    /// `pool_status.running`).
    pub fn is_stopped(&self) -> bool {
        matches!(self, Intake::Halted(_) | Intake::Drained | Intake::Shutdown)
    }

    /// Whether the pool is halted (no slot can start).
    pub fn is_halted(&self) -> bool {
        matches!(self, Intake::Halted(_))
    }
}

/// A drain in progress.
pub(super) struct DrainState {
    replies: Vec<RpcReplyPort<DrainReport>>,
    timer: Option<JoinHandle<Result<(), MessagingErr<SchedulerMsg>>>>,
    cancelled_running: u64,
}

impl SchedulerState {
    fn open_tasks(&self, running: bool) -> Vec<TaskId> {
        self.tasks
            .iter()
            .filter(|(_, r)| {
                if running {
                    r.is_running()
                } else {
                    matches!(r.state, TaskState::Pending)
                }
            })
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub(super) fn on_drain(&mut self, timeout: Option<Duration>, reply: RpcReplyPort<DrainReport>) {
        if let Some(d) = self.drain.as_mut() {
            d.replies.push(reply);
            return;
        }
        if matches!(self.intake, Intake::Drained | Intake::Shutdown) {
            let _ = reply.send(self.drain_report(0));
            return;
        }
        tracing::info!(?timeout, "draining the pool");
        self.intake = Intake::Draining;
        for id in self.open_tasks(false) {
            self.cancel_pending(&id, "cancelled by pool_drain before it started");
        }
        let timer = timeout.map(|t| self.myself.send_after(t, || SchedulerMsg::DrainDeadline));
        self.drain = Some(DrainState {
            replies: vec![reply],
            timer,
            cancelled_running: 0,
        });
        self.check_drained();
    }

    pub(super) fn on_drain_deadline(&mut self) {
        let running = self.open_tasks(true);
        if let Some(d) = self.drain.as_mut() {
            d.cancelled_running += running.len() as u64;
        } else {
            return;
        }
        for id in running {
            self.stop_running(
                &id,
                TaskStatus::Cancelled,
                "cancelled: pool_drain's timeout ran out before the task finished".into(),
            );
        }
    }

    /// Answers the drain once nothing runs any more.
    pub(super) fn check_drained(&mut self) {
        if self.drain.is_none() || self.tasks.values().any(|r| !r.status().is_terminal()) {
            return;
        }
        let Some(d) = self.drain.take() else { return };
        if let Some(t) = d.timer {
            t.abort();
        }
        if self.intake == Intake::Draining {
            self.intake = Intake::Drained;
        }
        let report = self.drain_report(d.cancelled_running);
        tracing::info!(?report, "pool drained");
        for r in d.replies {
            let _ = r.send(report.clone());
        }
    }

    fn drain_report(&self, cancelled_running: u64) -> DrainReport {
        let c = self.counts();
        DrainReport {
            total_tasks: c.total,
            completed: c.completed,
            errors: c.failed + c.timed_out,
            cancelled: c.cancelled,
            failed: c.failed,
            timed_out: c.timed_out,
            total_spend: 0.0,
            cancelled_running,
            cancelled_chains: 0,
        }
    }

    pub(super) fn on_slots_stopped(&mut self) {
        self.idle.clear();
        let ids: Vec<_> = self.slots.keys().cloned().collect();
        for id in ids {
            if let Some(e) = self.slots.get_mut(&id) {
                e.status = SlotStatus::Stopped;
                e.actor = None;
                e.pid = None;
            }
            self.events.publish(PoolEvent::Slot {
                id,
                status: SlotStatus::Stopped,
            });
        }
        self.check_ready();
    }

    /// The budget is exhausted: no task starts any more, running ones are stopped (what
    /// they ran is billed), and new work is refused with the ledger's message.
    pub(super) fn on_budget_exhausted(&mut self, reason: String) {
        if matches!(
            self.intake,
            Intake::Open | Intake::Halted(_) | Intake::BudgetExhausted(_)
        ) {
            self.intake = Intake::BudgetExhausted(reason.clone());
        }
        for id in self.open_tasks(false) {
            self.queue.retain(|q| q != &id);
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Failed,
                format!("{reason}; the task never started"),
            );
            self.finalize(&id, outcome, None);
        }
        for id in self.open_tasks(true) {
            self.stop_running(&id, TaskStatus::Failed, format!("stopped: {reason}"));
        }
    }

    /// A new budget window began: an intake closed by the budget opens again.
    pub(super) fn on_budget_renewed(&mut self) {
        if matches!(self.intake, Intake::BudgetExhausted(_)) {
            self.intake = Intake::Open;
        }
    }

    /// No slot can start: open tasks fail with the reason, new work is refused until a
    /// slot starts again.
    pub(super) fn on_halt(&mut self, reason: String) {
        for e in self.slots.values_mut().filter(|e| e.actor.is_none()) {
            e.status = SlotStatus::Failed;
        }
        if self.intake == Intake::Open {
            self.intake = Intake::Halted(reason.clone());
        }
        let why = format!("the pool stopped: {reason}");
        self.end_open_tasks(TaskStatus::Failed, &why);
        self.check_ready();
    }

    pub(super) fn on_shutdown(&mut self) {
        self.intake = Intake::Shutdown;
        if self.store.as_ref().is_some_and(|s| s.path().is_some()) {
            // A durable store keeps queued tasks for the next server on it; what runs now
            // reads as interrupted, as after a crash.
            for r in self.tasks.values_mut() {
                if matches!(r.state, TaskState::Pending) && r.meta.chain.is_none() {
                    r.meta.keep_queued = true;
                }
            }
            let running: Vec<TaskId> = self
                .tasks
                .iter()
                .filter(|(_, r)| r.is_running())
                .map(|(id, _)| id.clone())
                .collect();
            for id in running {
                let outcome = TaskOutcome::unbilled(
                    TaskStatus::Interrupted,
                    "interrupted: the server shut down while the task was running",
                );
                self.finalize(&id, outcome, None);
            }
        }
        self.end_open_tasks(
            TaskStatus::Cancelled,
            "the pool shut down (a task kept in the store runs when a server starts on it again)",
        );
        for w in self.scale_waiters.drain(..) {
            let _ = w
                .reply
                .send(Err(PoolError::Stopped("the pool shut down".into())));
        }
        self.check_drained();
        self.check_ready();
    }

    /// Ends every open task with `status`.
    fn end_open_tasks(&mut self, status: TaskStatus, why: &str) {
        let open: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, r)| !r.status().is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        for id in open {
            let running = self.tasks.get(&id).is_some_and(|r| r.is_running());
            let text = if running {
                format!("{why} while the task was running")
            } else {
                format!("{why} before the task started")
            };
            self.finalize(&id, TaskOutcome::unbilled(status, text), None);
        }
        self.queue.clear();
    }
}
