//! The scheduler actor: the task table and the FIFO queue.
//!
//! **Place in the tree.** Child of the root supervisor. It is not restarted: it holds every
//! task's state, and a fresh one would silently forget tasks, so its failure stops the pool
//! (fail-stop; see the failure matrix).
//!
//! **Owns** every task record, the queue of pending tasks, the scheduler's view of each slot
//! (which it also sizes: scaling is decided here and carried out by the slot supervisor),
//! and the pool's intake (open, draining, drained, budget exhausted, halted, shut down).
//! Slots announce themselves when idle ([`SchedulerMsg::SlotReady`]); a task is handed out
//! the moment a pending task, an idle slot and the budget ledger's reservation all exist —
//! on submission, on readiness or on a settlement, never by polling. One slot runs at most
//! one task, so no more Claude processes work than there are slots.
//!
//! Every count in [`PoolStatusReport`] is derived from the task table, so the counts always
//! add up. A terminal task never changes again; late reports about it are ignored (a late
//! cost is still billed, once).
//!
//! The task table is in [`table`], the slot view, dispatch and scaling in [`slots`], and the
//! intake (drain, budget stops, halts, shutdown) in [`intake`].

mod intake;
mod slots;
mod table;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::tools::{
    CancelReport, DrainReport, PoolStatusReport, ScaleReport, TaskCounts, TaskReport,
};
use claude_pool_protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{PoolConfig, ProcSettings};
use crate::context::Preamble;
use crate::error::PoolError;
use crate::events::{EventBus, PoolEvent};
use crate::ledger::LedgerMsg;
use crate::root::RootMsg;
use crate::slot::SlotMsg;
use crate::task::{Assignment, TaskOutcome, TaskSpec};
pub use intake::Intake;
pub use slots::ScaleRequest;
use slots::{PendingScale, SlotEntry};
use table::{TaskRecord, TaskState};

/// Behaviour of the scheduler.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerActor;

/// What the scheduler starts with.
#[derive(Clone)]
pub struct SchedulerArgs {
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
    /// The root, which forwards slot additions and removals to the slot supervisor.
    pub root: ActorRef<RootMsg>,
    /// The budget ledger.
    pub ledger: ActorRef<LedgerMsg>,
    /// The context table's current preamble.
    pub preamble: watch::Receiver<Preamble>,
    /// Where task and slot changes are published.
    pub events: EventBus,
}

impl fmt::Debug for SchedulerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerArgs").finish_non_exhaustive()
    }
}

/// Messages the scheduler handles.
pub enum SchedulerMsg {
    /// Queue a task.
    Submit(TaskSpec, RpcReplyPort<Result<TaskId, PoolError>>),
    /// Queue several tasks at once: all are accepted, or none.
    SubmitMany(Vec<TaskSpec>, RpcReplyPort<Result<Vec<TaskId>, PoolError>>),
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
    /// A pending task's deadline passed.
    QueueDeadline(TaskId),
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

impl fmt::Debug for SchedulerMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            SchedulerMsg::Submit(..) => "Submit",
            SchedulerMsg::SubmitMany(..) => "SubmitMany",
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
            SchedulerMsg::QueueDeadline(..) => "QueueDeadline",
            SchedulerMsg::Halt { .. } => "Halt",
            SchedulerMsg::BudgetExhausted { .. } => "BudgetExhausted",
            SchedulerMsg::TaskOverBudget { .. } => "TaskOverBudget",
            SchedulerMsg::Shutdown(..) => "Shutdown",
        };
        f.write_str(name)
    }
}

/// The scheduler's state. Private: only the actor touches it.
pub struct SchedulerState {
    /// Defaults and limits for new tasks.
    config: Arc<PoolConfig>,
    /// For timers that message the scheduler itself.
    myself: ActorRef<SchedulerMsg>,
    /// Forwards slot additions and removals to the slot supervisor.
    root: ActorRef<RootMsg>,
    /// Reservations before dispatch, settlements after.
    ledger: ActorRef<LedgerMsg>,
    /// The shared context every task handed out gets.
    preamble: watch::Receiver<Preamble>,
    /// Task and slot changes.
    events: EventBus,
    /// Every task still remembered, whatever its state.
    tasks: HashMap<TaskId, TaskRecord>,
    /// Pending tasks, oldest first (a task handed back goes to the front).
    queue: VecDeque<TaskId>,
    /// The scheduler's view of each slot, for dispatch and `pool_status`.
    slots: HashMap<SlotId, SlotEntry>,
    /// Slots that announced themselves idle, in order; checked again when popped.
    idle: VecDeque<SlotId>,
    /// The index the next added slot gets (ids are never reused).
    next_slot_index: usize,
    /// Scale-downs waiting for their slots to be gone.
    scale_waiters: Vec<PendingScale>,
    /// Finished tasks in the order they finished, for forgetting the oldest.
    finished: VecDeque<TaskId>,
    /// Counts of finished tasks already forgotten, so the status counts still add up.
    forgotten: TaskCounts,
    /// Whether new work is accepted, and why not.
    intake: Intake,
    /// A drain in progress.
    drain: Option<intake::DrainState>,
    /// The ledger asked the head of the queue to wait for a settlement.
    budget_wait: bool,
    /// Callers of `WaitReady` not answered yet.
    ready_waiters: Vec<RpcReplyPort<()>>,
}

impl fmt::Debug for SchedulerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerState")
            .field("tasks", &self.tasks.len())
            .field("queue", &self.queue.len())
            .field("idle", &self.idle.len())
            .finish_non_exhaustive()
    }
}

impl Actor for SchedulerActor {
    type Msg = SchedulerMsg;
    type State = SchedulerState;
    type Arguments = SchedulerArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SchedulerMsg>,
        args: SchedulerArgs,
    ) -> Result<SchedulerState, ActorProcessingErr> {
        Ok(SchedulerState {
            next_slot_index: args.config.slots,
            config: args.config,
            myself,
            root: args.root,
            ledger: args.ledger,
            preamble: args.preamble,
            events: args.events,
            tasks: HashMap::new(),
            queue: VecDeque::new(),
            slots: HashMap::new(),
            idle: VecDeque::new(),
            scale_waiters: Vec::new(),
            finished: VecDeque::new(),
            forgotten: TaskCounts::default(),
            intake: Intake::Open,
            drain: None,
            budget_wait: false,
            ready_waiters: Vec::new(),
        })
    }

    async fn handle(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Submit(spec, reply) => {
                let answer = state.accept(vec![spec]).map(|mut ids| ids.remove(0));
                let _ = reply.send(answer);
            }
            SchedulerMsg::SubmitMany(specs, reply) => {
                let _ = reply.send(state.accept(specs));
            }
            SchedulerMsg::Get(id, reply) => {
                let _ = reply.send(state.tasks.get(&id).map(|r| r.report(&id)));
            }
            SchedulerMsg::Wait(id, reply) => state.on_wait(id, reply),
            SchedulerMsg::Cancel(id, reply) => state.on_cancel(id, reply),
            SchedulerMsg::Status(reply) => {
                let _ = reply.send(state.status());
            }
            SchedulerMsg::WaitReady(reply) => {
                state.ready_waiters.retain(|w| !w.is_closed());
                state.ready_waiters.push(reply);
                state.check_ready();
            }
            SchedulerMsg::Scale(request, reply) => state.on_scale(request, reply),
            SchedulerMsg::SlotIds(reply) => {
                let _ = reply.send(state.slot_ids());
            }
            SchedulerMsg::Drain(timeout, reply) => state.on_drain(timeout, reply),
            SchedulerMsg::DrainDeadline => state.on_drain_deadline(),
            SchedulerMsg::SlotsStopped => state.on_slots_stopped(),
            SchedulerMsg::SlotAdded { slot } => state.on_slot_added(slot),
            SchedulerMsg::SlotReady {
                slot,
                actor,
                pid,
                turns,
                worktree,
            } => state.on_slot_ready(slot, actor, pid, turns, worktree),
            SchedulerMsg::SlotChanged {
                slot,
                status,
                pid,
                turns,
            } => state.on_slot_changed(slot, status, pid, turns),
            SchedulerMsg::SlotRemoved { slot } => state.on_slot_removed(slot),
            SchedulerMsg::TaskStarted {
                task,
                slot,
                started_at,
            } => {
                if let Some(r) = state.tasks.get_mut(&task)
                    && let TaskState::Running {
                        slot: s,
                        started_at: at,
                    } = &mut r.state
                    && *s == slot
                {
                    *at = Some(started_at);
                    // The prompt is on its way to Claude: the scheduler's copy is no longer needed.
                    r.payload = None;
                }
            }
            SchedulerMsg::TaskRejected {
                slot,
                assignment,
                died_before_turn,
            } => state.on_rejected(slot, assignment, died_before_turn),
            SchedulerMsg::TaskFinished {
                task,
                slot,
                outcome,
            } => {
                if let Some(e) = state.slots.get_mut(&slot)
                    && e.task.as_ref() == Some(&task)
                {
                    e.task = None;
                }
                state.finalize(&task, outcome, Some(slot));
            }
            SchedulerMsg::SlotDown {
                slot,
                reason,
                restarts,
                restarting,
            } => state.on_slot_down(slot, reason, restarts, restarting),
            SchedulerMsg::AllSlotsDown { reason } => state.on_all_slots_down(&reason),
            SchedulerMsg::QueueDeadline(id) => state.on_queue_deadline(id),
            SchedulerMsg::Halt { reason } => state.on_halt(reason),
            SchedulerMsg::BudgetExhausted { reason } => state.on_budget_exhausted(reason),
            SchedulerMsg::TaskOverBudget { task, reason } => {
                state.stop_running(&task, TaskStatus::Failed, reason);
            }
            SchedulerMsg::Shutdown(reply) => {
                state.on_shutdown();
                let _ = reply.send(());
            }
        }
        state.dispatch().await;
        state.forget_old_tasks();
        Ok(())
    }
}

fn new_task_id() -> TaskId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TaskId(format!("task-{}", &id[..12]))
}

impl SchedulerState {
    /// Queues `specs` if every one is acceptable; none otherwise.
    fn accept(&mut self, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, PoolError> {
        if let Some(refusal) = self.intake.refusal() {
            return Err(refusal);
        }
        for (i, spec) in specs.iter().enumerate() {
            if spec.prompt.trim().is_empty() {
                let which = if specs.len() > 1 {
                    format!("prompt {} of {} is empty", i + 1, specs.len())
                } else {
                    "the prompt is empty".into()
                };
                return Err(PoolError::InvalidTask(which));
            }
            if let Some(m) = spec.max_budget_usd
                && !(m.is_finite() && m > 0.0)
            {
                return Err(PoolError::InvalidTask(format!(
                    "max_budget_usd must be a positive amount, not {m}"
                )));
            }
        }
        let mut ids = Vec::with_capacity(specs.len());
        for spec in specs {
            ids.push(self.enqueue(spec));
        }
        Ok(ids)
    }

    fn enqueue(&mut self, spec: TaskSpec) -> TaskId {
        let id = new_task_id();
        let timeout = spec.timeout.unwrap_or(self.config.default_timeout);
        let defaults = &self.config.defaults;
        let settings = ProcSettings {
            model: spec.model.or_else(|| defaults.model.clone()),
            permission_mode: spec.permission_mode.or(defaults.permission_mode),
            effort: spec.effort.or(defaults.effort),
        };
        let queue_id = id.clone();
        let queue_timer = self
            .myself
            .send_after(timeout, move || SchedulerMsg::QueueDeadline(queue_id));
        self.tasks.insert(
            id.clone(),
            TaskRecord {
                submitted_at: Instant::now(),
                timeout,
                settings,
                max_budget_usd: spec.max_budget_usd,
                payload: Some((Arc::from(spec.prompt), spec.progress)),
                state: TaskState::Pending,
                retries: 0,
                waiters: Vec::new(),
                cancel_waiters: Vec::new(),
                queue_timer: Some(queue_timer),
                stopping: false,
            },
        );
        self.queue.push_back(id.clone());
        self.events.publish(PoolEvent::Task {
            id: id.clone(),
            status: TaskStatus::Pending,
        });
        id
    }

    fn on_wait(&mut self, id: TaskId, reply: RpcReplyPort<Option<TaskReport>>) {
        match self.tasks.get_mut(&id) {
            None => {
                let _ = reply.send(None);
            }
            Some(r) if r.status().is_terminal() => {
                let _ = reply.send(Some(r.report(&id)));
            }
            Some(r) => {
                r.waiters.retain(|w| !w.is_closed());
                r.waiters.push(reply);
            }
        }
    }

    fn on_cancel(&mut self, id: TaskId, reply: RpcReplyPort<Option<CancelReport>>) {
        let Some(r) = self.tasks.get_mut(&id) else {
            let _ = reply.send(None);
            return;
        };
        match &r.state {
            TaskState::Done { outcome, .. } => {
                let _ = reply.send(Some(CancelReport {
                    task_id: id.clone(),
                    status: outcome.status,
                    cancelled: false,
                    message: format!("the task had already ended: {}", outcome.status),
                }));
            }
            TaskState::Pending => {
                r.cancel_waiters.push(reply);
                self.cancel_pending(&id, "cancelled while queued; it never started");
            }
            TaskState::Running { .. } => {
                r.cancel_waiters.push(reply);
                self.stop_running(&id, TaskStatus::Cancelled, "cancelled by request".into());
            }
        }
    }

    /// Ends a queued task as cancelled: it never reaches a slot.
    fn cancel_pending(&mut self, id: &TaskId, why: &str) {
        self.queue.retain(|q| q != id);
        let outcome = TaskOutcome::unbilled(TaskStatus::Cancelled, why);
        self.finalize(id, outcome, None);
    }

    /// Asks the slot running `id` to stop it with `status` (once); a task whose slot is
    /// gone ends at once.
    fn stop_running(&mut self, id: &TaskId, status: TaskStatus, reason: String) {
        let Some(r) = self.tasks.get_mut(id) else {
            return;
        };
        let TaskState::Running { slot, .. } = &r.state else {
            return;
        };
        if r.stopping {
            return;
        }
        r.stopping = true;
        let slot = slot.clone();
        let actor = self.slots.get(&slot).and_then(|e| e.actor.clone());
        let sent = actor.is_some_and(|a| {
            a.cast(SlotMsg::Cancel {
                task: id.clone(),
                status,
                reason: reason.clone(),
            })
            .is_ok()
        });
        if !sent {
            self.finalize(id, TaskOutcome::unbilled(status, reason), Some(slot));
        }
    }

    fn on_rejected(&mut self, slot: SlotId, assignment: Assignment, died: Option<String>) {
        if let Some(e) = self.slots.get_mut(&slot)
            && e.task.as_ref() == Some(&assignment.task)
        {
            e.task = None;
        }
        let id = assignment.task.clone();
        let _ = self.ledger.cast(LedgerMsg::Release(id.clone()));
        let Some(r) = self.tasks.get_mut(&id) else {
            return;
        };
        if let Some(reason) = died {
            if r.retries >= 1 {
                let outcome = TaskOutcome::unbilled(
                    TaskStatus::Failed,
                    format!("{reason}; it had already been retried once after the same failure"),
                );
                self.finalize(&id, outcome, Some(slot));
                return;
            }
            r.retries += 1;
            tracing::info!(task = %id, %slot, %reason, "retrying a task whose turn never began");
        }
        if r.payload.is_none() {
            r.payload = Some((assignment.prompt, assignment.progress));
        }
        if !r.cancel_waiters.is_empty() || r.stopping {
            // A cancel reached the slot while it was handing the task back: honour it here.
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Cancelled,
                "cancelled by request before it started",
            );
            self.finalize(&id, outcome, None);
            return;
        }
        if self.intake.refusal().is_some() {
            let why = self.intake.describe();
            let outcome =
                TaskOutcome::unbilled(TaskStatus::Cancelled, format!("{why}; it never started"));
            self.finalize(&id, outcome, None);
            return;
        }
        self.requeue_front(&id);
    }

    /// Puts a task that has not started back at the head of the queue, with its deadline.
    fn requeue_front(&mut self, id: &TaskId) {
        let Some(r) = self.tasks.get_mut(id) else {
            return;
        };
        if r.status().is_terminal() || r.payload.is_none() || matches!(r.state, TaskState::Pending) {
            return; // ended, started, or already queued
        }
        r.state = TaskState::Pending;
        let remaining = (r.submitted_at + r.timeout).saturating_duration_since(Instant::now());
        let again = id.clone();
        if let Some(t) = r.queue_timer.take() {
            t.abort();
        }
        r.queue_timer = Some(
            self.myself
                .send_after(remaining, move || SchedulerMsg::QueueDeadline(again)),
        );
        self.queue.push_front(id.clone());
        self.events.publish(PoolEvent::Task {
            id: id.clone(),
            status: TaskStatus::Pending,
        });
    }

    fn on_queue_deadline(&mut self, id: TaskId) {
        let Some(r) = self.tasks.get(&id) else { return };
        if !matches!(r.state, TaskState::Pending) {
            return;
        }
        let timeout = humantime::format_duration(r.timeout);
        self.queue.retain(|q| q != &id);
        let busy = self.slots.len();
        let outcome = TaskOutcome::unbilled(
            TaskStatus::TimedOut,
            format!(
                "timed out after {timeout} while waiting for a free slot ({busy} slots, none free); it never started"
            ),
        );
        self.finalize(&id, outcome, None);
    }

    /// Records a terminal state (once), settles it with the ledger, and answers everyone
    /// waiting for it.
    fn finalize(&mut self, id: &TaskId, outcome: TaskOutcome, slot: Option<SlotId>) {
        let Some(r) = self.tasks.get_mut(id) else {
            return;
        };
        if let TaskState::Done { outcome: done, .. } = &mut r.state {
            // Already terminal (shutdown or a slot failure got there first). The slot's own
            // report may still carry what the turn cost: bill it, once.
            if done.cost.usd == 0.0 && outcome.cost.usd > 0.0 {
                done.cost = outcome.cost;
                let _ = self.ledger.cast(LedgerMsg::Settle {
                    task: id.clone(),
                    usd: outcome.cost.usd,
                    started: false,
                });
            }
            return;
        }
        if let TaskState::Running {
            slot: running_on, ..
        } = &r.state
            && let Some(e) = self.slots.get_mut(running_on)
            && e.task.as_ref() == Some(id)
        {
            e.task = None;
        }
        if let Some(t) = r.queue_timer.take() {
            t.abort();
        }
        r.payload = None;
        let _ = self.ledger.cast(LedgerMsg::Settle {
            task: id.clone(),
            usd: outcome.cost.usd,
            started: outcome.started_at.is_some(),
        });
        self.budget_wait = false;
        let status = outcome.status;
        r.state = TaskState::Done {
            outcome,
            slot,
            finished_at: Instant::now(),
        };
        let report = r.report(id);
        tracing::debug!(task = %id, %status, "task finished");
        self.finished.push_back(id.clone());
        for w in r.waiters.drain(..) {
            let _ = w.send(Some(report.clone()));
        }
        for w in r.cancel_waiters.drain(..) {
            let cancelled = status == TaskStatus::Cancelled;
            let message = if cancelled {
                report.error.clone().unwrap_or_else(|| "cancelled".into())
            } else {
                format!("the task ended as {status} before the cancel took effect")
            };
            let _ = w.send(Some(CancelReport {
                task_id: id.clone(),
                status,
                cancelled,
                message,
            }));
        }
        self.events.publish(PoolEvent::Task {
            id: id.clone(),
            status,
        });
        self.check_drained();
    }

    /// Forgets the oldest finished tasks beyond `max_finished_tasks`, keeping their counts.
    fn forget_old_tasks(&mut self) {
        while self.finished.len() > self.config.max_finished_tasks {
            let Some(id) = self.finished.pop_front() else {
                return;
            };
            if let Some(r) = self.tasks.remove(&id) {
                table::count(&mut self.forgotten, r.status());
            }
        }
    }

    /// Every task's count by status.
    fn counts(&self) -> TaskCounts {
        let mut counts = self.forgotten;
        for r in self.tasks.values() {
            table::count(&mut counts, r.status());
        }
        counts
    }

    fn status(&self) -> PoolStatusReport {
        let counts = self.counts();
        let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PoolStatusReport {
            slots: self.slot_reports(),
            active_tasks: counts.running,
            pending_tasks: counts.pending,
            spend_usd: 0.0,
            budget_usd: None,
            budget_remaining: None,
            tasks: counts,
            running: !self.intake.is_stopped(),
            refusing: self.intake.refusal().map(|e| e.to_string()),
            target_slots: as_u32(self.target_slots()),
            min_slots: as_u32(self.config.min_slots),
            max_slots: as_u32(self.config.max_slots),
            chains: Default::default(),
        }
    }
}
