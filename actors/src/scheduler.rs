//! The scheduler actor: the task table and the FIFO queue.
//!
//! **Place in the tree.** Child of the root supervisor, started first. It is not restarted:
//! it holds every task's state, and a fresh one would silently forget tasks, so its failure
//! stops the pool (fail-stop; see the failure matrix).
//!
//! **Owns** every task record, the queue of pending tasks, and the scheduler's view of each
//! slot. Slots announce themselves when idle ([`SchedulerMsg::SlotReady`]); a task is handed
//! out the moment both a pending task and an idle slot exist — on submission or on
//! readiness, never by polling. One slot runs at most one task, so no more Claude processes
//! work than there are slots.
//!
//! Every count in [`PoolStatusReport`] is derived from the task table, so the counts always
//! add up. A terminal task never changes again; late reports about it are ignored.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::tools::{
    CancelReport, PoolStatusReport, SlotReport, TaskCounts, TaskReport, TokensUsed,
};
use claude_pool_protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, MessagingErr, RpcReplyPort};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{PoolConfig, ProcSettings};
use crate::error::PoolError;
use crate::slot::SlotMsg;
use crate::task::{Assignment, ProgressSink, TaskOutcome, TaskSpec};

/// Behaviour of the scheduler.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerActor;

/// What the scheduler starts with.
#[derive(Clone)]
pub struct SchedulerArgs {
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
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
    /// A task's report now.
    Get(TaskId, RpcReplyPort<Option<TaskReport>>),
    /// A task's report once it is terminal.
    Wait(TaskId, RpcReplyPort<Option<TaskReport>>),
    /// Cancel a task; answered once it is terminal.
    Cancel(TaskId, RpcReplyPort<Option<CancelReport>>),
    /// The pool's status.
    Status(RpcReplyPort<PoolStatusReport>),
    /// Answered once every slot is idle (warm and free) or given up, at the same moment.
    WaitReady(RpcReplyPort<()>),
    /// A slot exists (at start, or after its supervisor was restarted).
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
        /// Whether it will be restarted.
        restarting: bool,
    },
    /// Every slot went down at once (the slot supervisor failed).
    AllSlotsDown {
        /// Why.
        reason: String,
    },
    /// A pending task's deadline passed.
    QueueDeadline(TaskId),
    /// The pool can no longer run tasks.
    Halt {
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
            SchedulerMsg::Get(..) => "Get",
            SchedulerMsg::Wait(..) => "Wait",
            SchedulerMsg::Cancel(..) => "Cancel",
            SchedulerMsg::Status(..) => "Status",
            SchedulerMsg::WaitReady(..) => "WaitReady",
            SchedulerMsg::SlotAdded { .. } => "SlotAdded",
            SchedulerMsg::SlotReady { .. } => "SlotReady",
            SchedulerMsg::SlotChanged { .. } => "SlotChanged",
            SchedulerMsg::TaskStarted { .. } => "TaskStarted",
            SchedulerMsg::TaskRejected { .. } => "TaskRejected",
            SchedulerMsg::TaskFinished { .. } => "TaskFinished",
            SchedulerMsg::SlotDown { .. } => "SlotDown",
            SchedulerMsg::AllSlotsDown { .. } => "AllSlotsDown",
            SchedulerMsg::QueueDeadline(..) => "QueueDeadline",
            SchedulerMsg::Halt { .. } => "Halt",
            SchedulerMsg::Shutdown(..) => "Shutdown",
        };
        f.write_str(name)
    }
}

enum TaskState {
    Pending,
    Running {
        slot: SlotId,
        started_at: Option<Instant>,
    },
    Done {
        outcome: TaskOutcome,
        slot: Option<SlotId>,
        finished_at: Instant,
    },
}

struct TaskRecord {
    /// Start of the deadline and of `queued_ms`.
    submitted_at: Instant,
    /// The deadline, counted from submission.
    timeout: Duration,
    /// Pool defaults with the task's overrides applied, handed to the slot.
    settings: ProcSettings,
    /// The prompt and progress sink, held until a slot has started the task, so a task
    /// whose slot goes down before it started can run elsewhere.
    payload: Option<(Arc<str>, Option<ProgressSink>)>,
    /// Pending, running on a slot, or done with its outcome.
    state: TaskState,
    /// Times the task was retried because its process died before its turn began.
    retries: u32,
    /// `Wait` callers, answered when the task ends.
    waiters: Vec<RpcReplyPort<Option<TaskReport>>>,
    /// `Cancel` callers, answered when the task ends (a cancel completes only then).
    cancel_waiters: Vec<RpcReplyPort<Option<CancelReport>>>,
    /// Fires the deadline while the task is queued; aborted once a slot has it.
    queue_timer: Option<JoinHandle<Result<(), MessagingErr<SchedulerMsg>>>>,
}

impl TaskRecord {
    fn status(&self) -> TaskStatus {
        match &self.state {
            TaskState::Pending => TaskStatus::Pending,
            TaskState::Running { .. } => TaskStatus::Running,
            TaskState::Done { outcome, .. } => outcome.status,
        }
    }

    fn report(&self, id: &TaskId) -> TaskReport {
        let now = Instant::now();
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let (slot, started, finished, outcome) = match &self.state {
            TaskState::Pending => (None, None, None, None),
            TaskState::Running { slot, started_at } => {
                (Some(slot.clone()), *started_at, None, None)
            }
            TaskState::Done {
                outcome,
                slot,
                finished_at,
            } => (
                slot.clone(),
                outcome.started_at,
                Some(*finished_at),
                Some(outcome),
            ),
        };
        let queued_until = started.or(finished).unwrap_or(now);
        let usage = outcome.map(|o| o.cost.usage).unwrap_or_default();
        TaskReport {
            task_id: id.clone(),
            status: self.status(),
            output: outcome.and_then(|o| o.output.clone()),
            error: outcome.and_then(|o| o.error.clone()),
            spend_usd: outcome.map(|o| o.cost.usd).unwrap_or(0.0),
            tokens_used: TokensUsed {
                input: usage.input_tokens,
                output: usage.output_tokens,
                cache_read: usage.cache_read_input_tokens,
                cache_write: usage.cache_creation_input_tokens,
            },
            session_id: outcome.and_then(|o| o.session_id.clone()),
            duration_ms: started.map(|s| ms(finished.unwrap_or(now).saturating_duration_since(s))),
            queued_ms: Some(ms(queued_until.saturating_duration_since(self.submitted_at))),
            slot_id: slot,
            model: outcome.and_then(|o| o.model.clone()),
        }
    }
}

struct SlotEntry {
    /// Position in `pool_status` (slot-2 before slot-10).
    index: usize,
    /// What `pool_status` shows; only `Idle` slots get tasks.
    status: SlotStatus,
    /// The slot's current actor (a restarted slot has a new one); `None` while down.
    actor: Option<ActorRef<SlotMsg>>,
    /// Its Claude process, for `pool_status` and for tests that check it is gone.
    pid: Option<u32>,
    /// The task it runs, so a slot failure can end or requeue that task.
    task: Option<TaskId>,
    /// Tasks its current process has served.
    turns: u64,
    /// Restarts by its supervisor so far.
    restarts: u32,
    /// The last failure, kept for `pool_status`.
    last_error: Option<String>,
}

/// The scheduler's state. Private: only the actor touches it.
pub struct SchedulerState {
    /// Defaults and limits for new tasks.
    config: Arc<PoolConfig>,
    /// For timers that message the scheduler itself.
    myself: ActorRef<SchedulerMsg>,
    /// Every task still remembered, whatever its state.
    tasks: HashMap<TaskId, TaskRecord>,
    /// Pending tasks, oldest first (a task handed back goes to the front).
    queue: VecDeque<TaskId>,
    /// The scheduler's view of each slot, for dispatch and `pool_status`.
    slots: HashMap<SlotId, SlotEntry>,
    /// Slots that announced themselves idle, in order; checked again when popped.
    idle: VecDeque<SlotId>,
    /// Finished tasks in the order they finished, for forgetting the oldest.
    finished: VecDeque<TaskId>,
    /// Counts of finished tasks already forgotten, so the status counts still add up.
    forgotten: TaskCounts,
    /// Dollars spent by every task so far.
    spend_usd: f64,
    /// Why new tasks are refused, once they are.
    closed: Option<String>,
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
            config: args.config,
            myself,
            tasks: HashMap::new(),
            queue: VecDeque::new(),
            slots: HashMap::new(),
            idle: VecDeque::new(),
            finished: VecDeque::new(),
            forgotten: TaskCounts::default(),
            spend_usd: 0.0,
            closed: None,
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
            SchedulerMsg::Submit(spec, reply) => state.on_submit(spec, reply),
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
            SchedulerMsg::SlotAdded { slot } => state.on_slot_added(slot),
            SchedulerMsg::SlotReady {
                slot,
                actor,
                pid,
                turns,
            } => {
                state.on_slot_ready(slot, actor, pid, turns);
            }
            SchedulerMsg::SlotChanged {
                slot,
                status,
                pid,
                turns,
            } => {
                if let Some(e) = state.slots.get_mut(&slot) {
                    e.status = status;
                    e.pid = pid;
                    e.turns = turns;
                }
                state.check_ready();
            }
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
            } => {
                state.on_slot_down(slot, reason, restarts, restarting);
            }
            SchedulerMsg::AllSlotsDown { reason } => {
                let ids: Vec<SlotId> = state.slots.keys().cloned().collect();
                for slot in ids {
                    let restarts = state.slots.get(&slot).map(|e| e.restarts).unwrap_or(0);
                    state.on_slot_down(slot, reason.clone(), restarts, true);
                }
            }
            SchedulerMsg::QueueDeadline(id) => state.on_queue_deadline(id),
            SchedulerMsg::Halt { reason } => {
                // Nothing will restart the slots any more.
                for e in state.slots.values_mut().filter(|e| e.actor.is_none()) {
                    e.status = SlotStatus::Failed;
                }
                state.close(
                    TaskStatus::Failed,
                    &format!("the pool stopped: {reason}"),
                    reason.clone(),
                );
            }
            SchedulerMsg::Shutdown(reply) => {
                state.close(
                    TaskStatus::Cancelled,
                    "the pool shut down",
                    "the pool is shut down".into(),
                );
                let _ = reply.send(());
            }
        }
        state.forget_old_tasks();
        Ok(())
    }
}

fn new_task_id() -> TaskId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TaskId(format!("task-{}", &id[..12]))
}

impl SchedulerState {
    fn on_submit(&mut self, spec: TaskSpec, reply: RpcReplyPort<Result<TaskId, PoolError>>) {
        if let Some(reason) = &self.closed {
            let _ = reply.send(Err(PoolError::Stopped(reason.clone())));
            return;
        }
        if spec.prompt.trim().is_empty() {
            let _ = reply.send(Err(PoolError::InvalidTask("the prompt is empty".into())));
            return;
        }
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
                payload: Some((Arc::from(spec.prompt), spec.progress)),
                state: TaskState::Pending,
                retries: 0,
                waiters: Vec::new(),
                cancel_waiters: Vec::new(),
                queue_timer: Some(queue_timer),
            },
        );
        self.queue.push_back(id.clone());
        let _ = reply.send(Ok(id));
        self.dispatch();
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
                self.queue.retain(|q| q != &id);
                let outcome = TaskOutcome::unbilled(
                    TaskStatus::Cancelled,
                    "cancelled while queued; it never started",
                );
                self.finalize(&id, outcome, None);
            }
            TaskState::Running { slot, .. } => {
                let slot = slot.clone();
                r.cancel_waiters.push(reply);
                let actor = self.slots.get(&slot).and_then(|e| e.actor.clone());
                let sent = actor.is_some_and(|a| {
                    a.cast(SlotMsg::Cancel {
                        task: id.clone(),
                        reason: "cancelled by request".into(),
                    })
                    .is_ok()
                });
                if !sent {
                    let outcome =
                        TaskOutcome::unbilled(TaskStatus::Cancelled, "cancelled by request");
                    self.finalize(&id, outcome, Some(slot));
                }
            }
        }
    }

    fn on_slot_added(&mut self, slot: SlotId) {
        let index = slot
            .0
            .rsplit('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(usize::MAX);
        let restarts = self.slots.get(&slot).map(|e| e.restarts).unwrap_or(0);
        self.slots.insert(
            slot,
            SlotEntry {
                index,
                status: SlotStatus::Starting,
                actor: None,
                pid: None,
                task: None,
                turns: 0,
                restarts,
                last_error: None,
            },
        );
    }

    fn on_slot_ready(&mut self, slot: SlotId, actor: ActorRef<SlotMsg>, pid: u32, turns: u64) {
        let Some(e) = self.slots.get_mut(&slot) else {
            return;
        };
        e.status = SlotStatus::Idle;
        e.actor = Some(actor);
        e.pid = Some(pid);
        e.turns = turns;
        if !self.idle.contains(&slot) {
            self.idle.push_back(slot);
        }
        self.dispatch();
        self.check_ready();
    }

    fn check_ready(&mut self) {
        if self.ready_waiters.is_empty() {
            return;
        }
        let settled = !self.slots.is_empty()
            && self
                .slots
                .values()
                .all(|e| matches!(e.status, SlotStatus::Idle | SlotStatus::Failed));
        if settled || self.closed.is_some() {
            for w in self.ready_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn on_rejected(&mut self, slot: SlotId, assignment: Assignment, died: Option<String>) {
        if let Some(e) = self.slots.get_mut(&slot)
            && e.task.as_ref() == Some(&assignment.task)
        {
            e.task = None;
        }
        let id = assignment.task.clone();
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
        if !r.cancel_waiters.is_empty() {
            // A cancel reached the slot while it was handing the task back: honour it here.
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Cancelled,
                "cancelled by request before it started",
            );
            self.finalize(&id, outcome, None);
            return;
        }
        self.requeue_front(&id);
        self.dispatch();
    }

    fn on_slot_down(&mut self, slot: SlotId, reason: String, restarts: u32, restarting: bool) {
        self.idle.retain(|s| s != &slot);
        let Some(e) = self.slots.get_mut(&slot) else {
            return;
        };
        e.status = if restarting {
            SlotStatus::Restarting
        } else {
            SlotStatus::Failed
        };
        e.actor = None;
        e.pid = None;
        e.restarts = restarts;
        e.last_error = Some(reason.clone());
        if let Some(task) = e.task.take() {
            let started = self.tasks.get(&task).is_some_and(|r| {
                r.payload.is_none()
                    || matches!(
                        r.state,
                        TaskState::Running {
                            started_at: Some(_),
                            ..
                        }
                    )
            });
            if started {
                let outcome = TaskOutcome::unbilled(
                    TaskStatus::Failed,
                    format!("{slot} failed while running the task: {reason}"),
                );
                self.finalize(&task, outcome, Some(slot));
            } else {
                // Its prompt never reached Claude: it runs on the next free slot instead.
                tracing::info!(%task, %slot, "slot went down before the task started; requeued");
                self.requeue_front(&task);
            }
        }
        self.check_ready();
        self.dispatch();
    }

    /// Puts a task that has not started back at the head of the queue, with its deadline.
    fn requeue_front(&mut self, id: &TaskId) {
        let Some(r) = self.tasks.get_mut(id) else {
            return;
        };
        if r.status().is_terminal() || r.payload.is_none() {
            return;
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

    /// Hands pending tasks to idle slots until one of the two runs out.
    fn dispatch(&mut self) {
        while !self.queue.is_empty() {
            let Some(slot) = self.pop_idle() else { return };
            let Some(id) = self.queue.pop_front() else {
                return;
            };
            let Some(r) = self.tasks.get_mut(&id) else {
                continue;
            };
            let Some((prompt, progress)) = r.payload.clone() else {
                continue;
            };
            let Some(actor) = self.slots.get(&slot).and_then(|e| e.actor.clone()) else {
                self.queue.push_front(id);
                continue;
            };
            let assignment = Assignment {
                task: id.clone(),
                prompt,
                settings: r.settings.clone(),
                deadline: r.submitted_at + r.timeout,
                timeout: r.timeout,
                progress,
            };
            match actor.cast(SlotMsg::Run(assignment)) {
                Ok(()) => {
                    r.state = TaskState::Running {
                        slot: slot.clone(),
                        started_at: None,
                    };
                    if let Some(t) = r.queue_timer.take() {
                        t.abort();
                    }
                    if let Some(e) = self.slots.get_mut(&slot) {
                        e.task = Some(id);
                        e.status = SlotStatus::Busy;
                    }
                }
                Err(_) => {
                    // The slot's actor is gone; its supervisor will report it.
                    if let Some(e) = self.slots.get_mut(&slot) {
                        e.actor = None;
                    }
                    self.queue.push_front(id);
                }
            }
        }
    }

    fn pop_idle(&mut self) -> Option<SlotId> {
        while let Some(slot) = self.idle.pop_front() {
            let usable = self.slots.get(&slot).is_some_and(|e| {
                e.status == SlotStatus::Idle && e.actor.is_some() && e.task.is_none()
            });
            if usable {
                return Some(slot);
            }
        }
        None
    }

    /// Records a terminal state (once) and answers everyone waiting for it.
    fn finalize(&mut self, id: &TaskId, outcome: TaskOutcome, slot: Option<SlotId>) {
        let Some(r) = self.tasks.get_mut(id) else {
            return;
        };
        if let TaskState::Done { outcome: done, .. } = &mut r.state {
            // Already terminal (shutdown or a slot failure got there first). The slot's own
            // report may still carry what the turn cost: bill it, once.
            if done.cost.usd == 0.0 && outcome.cost.usd > 0.0 {
                done.cost = outcome.cost;
                self.spend_usd += outcome.cost.usd;
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
        self.spend_usd += outcome.cost.usd;
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
    }

    /// Forgets the oldest finished tasks beyond `max_finished_tasks`, keeping their counts.
    fn forget_old_tasks(&mut self) {
        while self.finished.len() > self.config.max_finished_tasks {
            let Some(id) = self.finished.pop_front() else {
                return;
            };
            if let Some(r) = self.tasks.remove(&id) {
                let c = &mut self.forgotten;
                c.total += 1;
                match r.status() {
                    TaskStatus::Completed => c.completed += 1,
                    TaskStatus::Failed => c.failed += 1,
                    TaskStatus::Cancelled => c.cancelled += 1,
                    TaskStatus::TimedOut => c.timed_out += 1,
                    TaskStatus::Pending | TaskStatus::Running => {}
                }
            }
        }
    }

    /// Refuses new work and ends every open task with `status`.
    fn close(&mut self, status: TaskStatus, why: &str, reason: String) {
        if self.closed.is_none() {
            self.closed = Some(reason);
        }
        let open: Vec<TaskId> = self
            .tasks
            .iter()
            .filter(|(_, r)| !r.status().is_terminal())
            .map(|(id, _)| id.clone())
            .collect();
        for id in open {
            let running = self
                .tasks
                .get(&id)
                .is_some_and(|r| matches!(r.state, TaskState::Running { .. }));
            let text = if running {
                format!("{why} while the task was running")
            } else {
                format!("{why} before the task started")
            };
            self.finalize(&id, TaskOutcome::unbilled(status, text), None);
        }
        self.queue.clear();
        self.check_ready();
    }

    fn status(&self) -> PoolStatusReport {
        let mut counts = self.forgotten;
        for r in self.tasks.values() {
            counts.total += 1;
            match r.status() {
                TaskStatus::Pending => counts.pending += 1,
                TaskStatus::Running => counts.running += 1,
                TaskStatus::Completed => counts.completed += 1,
                TaskStatus::Failed => counts.failed += 1,
                TaskStatus::Cancelled => counts.cancelled += 1,
                TaskStatus::TimedOut => counts.timed_out += 1,
            }
        }
        let mut slots: Vec<(&SlotId, &SlotEntry)> = self.slots.iter().collect();
        slots.sort_by_key(|(_, e)| e.index);
        PoolStatusReport {
            slots: slots
                .into_iter()
                .map(|(id, e)| SlotReport {
                    id: id.clone(),
                    status: e.status,
                    active_tasks: u32::from(e.task.is_some()),
                    task_id: e.task.clone(),
                    restarts: e.restarts,
                    pid: e.pid,
                    turns: e.turns,
                    last_error: e.last_error.clone(),
                })
                .collect(),
            active_tasks: counts.running,
            pending_tasks: counts.pending,
            spend_usd: self.spend_usd,
            budget_usd: None,
            budget_remaining: None,
            tasks: counts,
            running: self.closed.is_none(),
        }
    }
}
