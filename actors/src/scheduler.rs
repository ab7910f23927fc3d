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
//! The messages are in [`msg`], the task table in [`table`] and what happens to a task in
//! [`tasks`]; the slot view and dispatch in [`slots`], sizing in [`scale`], and the intake
//! (drain, budget stops, halts, shutdown) in [`intake`].

mod deadlines;
mod gate;
mod intake;
mod jobs;
mod msg;
mod requeue;
mod scale;
mod slots;
pub(crate) mod table;
mod tasks;
mod warmth;
mod windows;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use claude_pool_protocol::tools::{PoolStatusReport, TasksByKind};
use claude_pool_protocol::{SlotId, TaskId, TaskStatus};
use ractor::{Actor, ActorProcessingErr, ActorRef, DerivedActorRef, RpcReplyPort};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::PoolConfig;
use crate::context::Preamble;
use crate::events::EventBus;
use crate::ledger::LedgerMsg;
use crate::projects::ProjectRegistry;
use crate::store::actor::StoreWriter;
use crate::store::db::Recovered;
use crate::wire::{BudgetNote, SizingNote, SlotEvent};
pub use intake::Intake;
pub use msg::{SchedulerMsg, SubmitReply};
use scale::PendingScale;
pub use scale::ScaleRequest;
use slots::SlotEntry;
use table::{TaskRecord, TaskState};

/// Behaviour of the scheduler.
#[derive(Debug, Clone, Copy, Default)]
pub struct SchedulerActor;

/// What the scheduler starts with.
#[derive(Clone)]
pub struct SchedulerArgs {
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
    /// Where sizing decisions go (the root, which forwards them to the slot supervisor).
    pub sizing: DerivedActorRef<SizingNote>,
    /// The budget ledger.
    pub ledger: ActorRef<LedgerMsg>,
    /// The context table's current preamble.
    pub preamble: watch::Receiver<Preamble>,
    /// Where task and slot changes are published.
    pub events: EventBus,
    /// The durable store, if any.
    pub store: Option<StoreWriter>,
    /// What the store held at start: pending tasks to run again, and the counts of the
    /// finished ones.
    pub restored: Arc<Recovered>,
    /// The job API's projects (their concurrency limits).
    pub projects: Arc<ProjectRegistry>,
}

impl fmt::Debug for SchedulerArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerArgs").finish_non_exhaustive()
    }
}

/// The scheduler's state. Private: only the actor touches it.
pub struct SchedulerState {
    /// Defaults and limits for new tasks.
    config: Arc<PoolConfig>,
    /// For timers that message the scheduler itself.
    myself: ActorRef<SchedulerMsg>,
    /// Where sizing decisions go.
    sizing: DerivedActorRef<SizingNote>,
    /// Reservations before dispatch, settlements after.
    ledger: ActorRef<LedgerMsg>,
    /// The shared context every task handed out gets.
    preamble: watch::Receiver<Preamble>,
    /// Task and slot changes.
    events: EventBus,
    /// Every task still remembered, whatever its state. Boxed: a record is a few hundred
    /// bytes, and the map's spare capacity (up to half of it after it grows) costs a
    /// pointer per bucket instead of a record.
    tasks: HashMap<TaskId, Box<TaskRecord>>,
    /// Pending tasks, oldest first (a task handed back goes to the front).
    queue: VecDeque<TaskId>,
    /// The queued tasks' deadlines, with one timer for the earliest.
    deadlines: deadlines::Deadlines,
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
    forgotten: TasksByKind,
    /// Counts of the tasks in `tasks`, by kind and status, kept as they change.
    live: TasksByKind,
    /// Whether new work is accepted, and why not.
    intake: Intake,
    /// A drain in progress.
    drain: Option<intake::DrainState>,
    /// The ledger asked the head of the queue to wait for a settlement.
    budget_wait: bool,
    /// Callers of `WaitReady` not answered yet.
    ready_waiters: Vec<RpcReplyPort<()>>,
    /// The durable store, if any.
    store: Option<StoreWriter>,
    /// The job API's projects.
    projects: Arc<ProjectRegistry>,
    /// The idle check's timer, if armed (see [`warmth`]).
    idle_timer: Option<warmth::IdleTimer>,
    /// How many turns may be in flight while the API pushes back ([`gate`]).
    gate: gate::Gates,
    /// Whether the gate's calm timer is armed.
    gate_tick_armed: bool,
    /// The API's usage windows: a used-up one holds dispatch until it resets ([`windows`]).
    windows: windows::Windows,
    /// When the armed window timer fires (unix ms), if one is armed.
    window_timer: Option<i64>,
}

impl fmt::Debug for SchedulerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchedulerState")
            .field("tasks", &self.tasks.len())
            .field("queue", &self.queue.len())
            .field("deadlines", &self.deadlines.len())
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
        let max_window_use = args.config.max_window_use;
        let mut state = SchedulerState {
            next_slot_index: args.config.slots,
            config: args.config,
            myself,
            sizing: args.sizing,
            ledger: args.ledger,
            preamble: args.preamble,
            events: args.events,
            tasks: HashMap::new(),
            queue: VecDeque::new(),
            deadlines: deadlines::Deadlines::default(),
            slots: HashMap::new(),
            idle: VecDeque::new(),
            scale_waiters: Vec::new(),
            finished: VecDeque::new(),
            forgotten: TasksByKind::default(),
            live: TasksByKind::default(),
            intake: Intake::Open,
            drain: None,
            budget_wait: false,
            ready_waiters: Vec::new(),
            store: args.store,
            projects: args.projects,
            idle_timer: None,
            gate: gate::Gates::default(),
            gate_tick_armed: false,
            windows: windows::Windows::new(max_window_use),
            window_timer: None,
        };
        state.restore(&args.restored);
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<SchedulerMsg>,
        msg: SchedulerMsg,
        state: &mut SchedulerState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SchedulerMsg::Submit(spec, reply) => state.accept(vec![spec], SubmitReply::One(reply)),
            SchedulerMsg::SubmitMany(specs, reply) => {
                state.accept(specs, SubmitReply::Many(reply));
            }
            SchedulerMsg::NotPersisted { ids, reason } => state.on_not_persisted(ids, &reason),
            SchedulerMsg::BuildChecked {
                task,
                slot,
                outcome,
            } => state.finalize(&task, outcome, Some(slot)),
            SchedulerMsg::Get(id, reply) => {
                let _ = reply.send(state.report(&id));
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
            SchedulerMsg::Slot(event) => state.on_slot_event(event),
            SchedulerMsg::Budget(note) => state.on_budget(note),
            SchedulerMsg::AllSlotsDown { reason } => state.on_all_slots_down(&reason),
            SchedulerMsg::QueueDeadlines => state.on_queue_deadlines(),
            SchedulerMsg::WindowTick => state.on_window_tick(),
            SchedulerMsg::GateTick => {
                state.gate_tick_armed = false;
                let slots = state.slots.values().filter(|e| !e.retiring).count();
                if state.gate.tick(Instant::now(), slots) {
                    tracing::info!(ceiling = ?state.gate.ceiling(), "the API is calm: more turns at once");
                    state.events.publish(crate::events::PoolEvent::Api);
                }
                state.arm_gate_tick();
            }
            SchedulerMsg::Requeue(id) => state.on_requeue(id),
            SchedulerMsg::IdleCheck => state.on_idle_check(),
            SchedulerMsg::Halt { reason } => state.on_halt(reason),
            SchedulerMsg::Adopt(rows) => {
                if !state.intake.is_stopped() {
                    tracing::info!(
                        tasks = rows.len(),
                        "queued the tasks a server of this project left when it died"
                    );
                    state.queue_stored(&rows);
                }
            }
            SchedulerMsg::Shutdown(reply) => {
                state.on_shutdown();
                let _ = reply.send(());
            }
        }
        state.dispatch().await;
        state.tend_warmth();
        state.forget_old_tasks();
        Ok(())
    }
}

impl SchedulerState {
    /// What a slot or its supervisor reported.
    fn on_slot_event(&mut self, event: SlotEvent) {
        match event {
            SlotEvent::Added { slot } => self.on_slot_added(slot),
            SlotEvent::Ready {
                slot,
                link,
                pid,
                turns,
                worktree,
                cwd,
            } => self.on_slot_ready(slot, link, pid, turns, worktree, cwd),
            SlotEvent::Changed {
                slot,
                status,
                pid,
                turns,
            } => self.on_slot_changed(slot, status, pid, turns),
            SlotEvent::Removed { slot } => self.on_slot_removed(slot),
            SlotEvent::Lost { slot, reason } => self.on_slot_lost(slot, reason),
            SlotEvent::Down {
                slot,
                reason,
                restarts,
                restarting,
            } => self.on_slot_down(slot, reason, restarts, restarting),
            SlotEvent::Started {
                task,
                slot,
                started_at,
                ack,
            } => self.on_task_started(task, slot, started_at, ack),
            SlotEvent::Rejected {
                slot,
                assignment,
                died_before_turn,
            } => self.on_rejected(slot, assignment, died_before_turn),
            SlotEvent::RateLimited {
                slot,
                assignment,
                error,
            } => self.on_rate_limited(slot, assignment, error),
            SlotEvent::ApiPressure { slot, status } => {
                if !self.config.api_adapt {
                    return;
                }
                let model = self.model_on(&slot);
                let in_flight = self.in_flight_of(&model);
                if self.gate.refused(&model, Instant::now(), in_flight) {
                    tracing::info!(status, %model, ceiling = ?self.gate.ceiling(), "the API pushes back: fewer turns at once");
                    self.events.publish(crate::events::PoolEvent::Api);
                }
                self.arm_gate_tick();
            }
            SlotEvent::ApiWindows(info) => self.on_api_windows(&info),
            SlotEvent::Finished {
                task,
                slot,
                outcome,
            } => {
                if let Some(e) = self.slots.get_mut(&slot)
                    && e.task.as_ref() == Some(&task)
                {
                    e.task = None;
                }
                self.on_finished(task, slot, outcome);
            }
        }
    }

    /// What the ledger decided.
    fn on_budget(&mut self, note: BudgetNote) {
        match note {
            BudgetNote::Exhausted { reason } => self.on_budget_exhausted(reason),
            BudgetNote::Renewed => self.on_budget_renewed(),
            BudgetNote::TaskOver { task, reason } => {
                self.stop_running(&task, TaskStatus::Failed, reason);
            }
        }
    }

    fn status(&self) -> PoolStatusReport {
        let by_kind = self.counts_by_kind();
        let counts = by_kind.sum();
        let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        PoolStatusReport {
            slots: self.slot_reports(),
            active_tasks: counts.running,
            pending_tasks: counts.pending,
            spend_usd: 0.0,
            budget_usd: None,
            budget_remaining: None,
            tasks: counts,
            tasks_by_kind: by_kind,
            running: !self.intake.is_stopped(),
            refusing: self.intake.refusal().map(|e| e.to_string()),
            target_slots: as_u32(self.target_slots()),
            min_slots: as_u32(self.config.min_slots),
            max_slots: as_u32(self.config.max_slots),
            warm_slots: as_u32(self.warm_count()),
            warm_floor: as_u32(self.config.warm_slots),
            idle_timeout_secs: self.config.idle_timeout.map(|t| t.as_secs_f64()),
            slots_rss_bytes: 0,
            chains: Default::default(),
            store: None,
            run: None,
            lifetime: Default::default(),
            budget: None,
            max_permission_mode: self.config.permission_ceiling(),
            approvals: Default::default(),
            api: {
                let now = Instant::now();
                let slots = self.slots.values().filter(|e| !e.retiring).count();
                let hold = self.windows.hold(crate::clock::now_ms());
                claude_pool_protocol::tools::ApiStatus {
                    state: if hold.is_some() {
                        "paused"
                    } else if self.gate.limited() {
                        "limited"
                    } else {
                        "ok"
                    }
                    .into(),
                    ceiling: self.gate.ceiling().unwrap_or(slots) as u64,
                    retries_last_minute: self.gate.refusals_last_minute(now) as u64,
                    resets_at: hold
                        .as_ref()
                        .map(|h| crate::clock::rfc3339_seconds(h.until_ms)),
                    paused: hold.map(|h| h.why),
                    windows: self.windows.report(),
                    models: self
                        .gate
                        .limited_models()
                        .into_iter()
                        .map(|(model, ceiling)| claude_pool_protocol::tools::ApiModel {
                            model,
                            ceiling: ceiling as u64,
                        })
                        .collect(),
                }
            },
        }
    }
}
