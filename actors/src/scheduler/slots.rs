//! The scheduler's view of the slots: their status for `pool_status`, handing tasks to idle
//! ones, and sizing the pool (scale-up and scale-down are decided here and carried out by
//! the slot supervisor, through the root).

use std::path::PathBuf;

use claude_pool_protocol::tools::SlotReport;
use claude_pool_protocol::{SlotId, SlotStatus, TaskId, TaskStatus};

use super::{SchedulerState, TaskState};
use crate::events::PoolEvent;
use crate::ledger::LedgerMsg;
use crate::ledger::book::Reservation;
use crate::task::{Assignment, TaskOutcome};
use crate::wire::{SizingNote, SlotCommand, SlotLink};

pub(super) struct SlotEntry {
    /// Position in `pool_status` (slot-2 before slot-10).
    pub index: usize,
    /// What `pool_status` shows; only `Idle` slots get tasks.
    pub status: SlotStatus,
    /// The slot's current actor (a restarted slot has a new one); `None` while down.
    pub actor: Option<SlotLink>,
    /// Its Claude process, for `pool_status` and for tests that check it is gone.
    pub pid: Option<u32>,
    /// The task it runs, so a slot failure can end or requeue that task.
    pub task: Option<TaskId>,
    /// Tasks its current process has served.
    pub turns: u64,
    /// Restarts by its supervisor so far.
    pub restarts: u32,
    /// The last failure, kept for `pool_status`.
    pub last_error: Option<String>,
    /// Being removed by a scale-down: it gets no more tasks.
    pub retiring: bool,
    /// Its worktree, with `--worktree`.
    pub worktree: Option<PathBuf>,
    /// The directory its process runs in when a task asked for one (a project's).
    pub cwd: Option<PathBuf>,
    /// Since when it has been idle (for the idle timeout).
    pub idle_since: Option<std::time::Instant>,
}

/// A slot on another machine (`<host>/slot-N`).
pub(super) fn is_remote(slot: &SlotId) -> bool {
    slot.0.contains('/')
}

/// The host a slot runs on; `None` for this machine.
pub(super) fn host_of(slot: &SlotId) -> Option<&str> {
    slot.0.split_once('/').map(|(host, _)| host)
}

impl SchedulerState {
    pub(super) fn on_slot_added(&mut self, slot: SlotId) {
        let index = slot.index().unwrap_or(usize::MAX);
        let old = self.slots.remove(&slot);
        self.slots.insert(
            slot.clone(),
            SlotEntry {
                index,
                status: SlotStatus::Starting,
                actor: None,
                pid: None,
                task: None,
                turns: 0,
                restarts: old.as_ref().map(|e| e.restarts).unwrap_or(0),
                last_error: old.as_ref().and_then(|e| e.last_error.clone()),
                retiring: false,
                worktree: old.and_then(|e| e.worktree),
                cwd: None,
                idle_since: None,
            },
        );
        self.events.publish(PoolEvent::Slot {
            id: slot,
            status: SlotStatus::Starting,
        });
    }

    pub(super) fn on_slot_ready(
        &mut self,
        slot: SlotId,
        actor: SlotLink,
        pid: u32,
        turns: u64,
        worktree: Option<PathBuf>,
        cwd: Option<PathBuf>,
    ) {
        let Some(e) = self.slots.get_mut(&slot) else {
            return;
        };
        e.status = SlotStatus::Idle;
        e.idle_since = Some(std::time::Instant::now());
        e.cwd = cwd;
        e.actor = Some(actor);
        e.pid = Some(pid);
        e.turns = turns;
        if worktree.is_some() {
            e.worktree = worktree;
        }
        let retiring = e.retiring;
        if !retiring && !self.idle.contains(&slot) {
            self.idle.push_back(slot.clone());
        }
        self.events.publish(PoolEvent::Slot {
            id: slot,
            status: SlotStatus::Idle,
        });
        self.on_slot_works();
        self.check_ready();
    }

    pub(super) fn on_slot_changed(
        &mut self,
        slot: SlotId,
        status: SlotStatus,
        pid: Option<u32>,
        turns: u64,
    ) {
        if let Some(e) = self.slots.get_mut(&slot) {
            // A released process's exit changes only the pid: subscribers hear of it too.
            let changed = e.status != status || e.pid != pid;
            e.status = if e.retiring && status == SlotStatus::Idle {
                SlotStatus::Stopping
            } else {
                status
            };
            e.pid = pid;
            e.turns = turns;
            if changed {
                self.events.publish(PoolEvent::Slot { id: slot, status });
            }
        }
        self.check_ready();
    }

    pub(super) fn on_slot_removed(&mut self, slot: SlotId) {
        self.idle.retain(|s| s != &slot);
        if let Some(e) = self.slots.remove(&slot)
            && let Some(task) = e.task
        {
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Failed,
                format!("{slot} was removed while running the task"),
            );
            self.finalize(&task, outcome, Some(slot.clone()));
        }
        for w in &mut self.scale_waiters {
            w.remaining.remove(&slot);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.scale_waiters)
            .into_iter()
            .partition(|w| w.remaining.is_empty());
        self.scale_waiters = waiting;
        for w in done {
            let _ = w.reply.send(Ok(w.report));
        }
        tracing::info!(%slot, "slot removed");
        self.events.publish(PoolEvent::SlotsChanged);
        self.check_ready();
    }

    pub(super) fn on_slot_down(
        &mut self,
        slot: SlotId,
        reason: String,
        restarts: u32,
        restarting: bool,
    ) {
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
        let status = e.status;
        if let Some(task) = e.task.take() {
            let started = self.tasks.get(&task).is_some_and(|r| r.started());
            if started {
                let outcome = TaskOutcome::unbilled(
                    TaskStatus::Failed,
                    format!("{slot} failed while running the task: {reason}"),
                );
                self.finalize(&task, outcome, Some(slot.clone()));
            } else {
                // Its prompt never reached Claude: it runs on the next free slot instead.
                tracing::info!(%task, %slot, "slot went down before the task started; requeued");
                let _ = self.ledger.cast(LedgerMsg::Release(task.clone()));
                self.requeue_front(&task);
            }
        }
        self.events.publish(PoolEvent::Slot { id: slot, status });
        self.check_ready();
    }

    /// A slot's host was lost: a task that started there may or may not have run, so it
    /// ends `interrupted`; one not started yet runs elsewhere.
    pub(super) fn on_slot_lost(&mut self, slot: SlotId, reason: String) {
        self.idle.retain(|s| s != &slot);
        let Some(e) = self.slots.get_mut(&slot) else {
            return;
        };
        e.status = SlotStatus::Lost;
        e.actor = None;
        e.pid = None;
        e.last_error = Some(reason.clone());
        if let Some(task) = e.task.take() {
            let started = self.tasks.get(&task).is_some_and(|r| r.started());
            if started {
                let outcome = TaskOutcome::unbilled(
                    TaskStatus::Interrupted,
                    format!("{slot} was lost while running the task: {reason}"),
                );
                self.finalize(&task, outcome, Some(slot.clone()));
            } else {
                tracing::info!(%task, %slot, "host lost before the task started; requeued");
                let _ = self.ledger.cast(LedgerMsg::Release(task.clone()));
                self.requeue_front(&task);
            }
        }
        self.events.publish(PoolEvent::Slot {
            id: slot,
            status: SlotStatus::Lost,
        });
        self.check_ready();
    }

    pub(super) fn on_all_slots_down(&mut self, reason: &str) {
        let ids: Vec<SlotId> = self.slots.keys().cloned().collect();
        for slot in ids {
            let Some(e) = self.slots.get(&slot) else {
                continue;
            };
            if e.retiring {
                // Its actor is gone with the supervisor: the removal is complete.
                self.on_slot_removed(slot);
                continue;
            }
            let restarts = e.restarts;
            self.on_slot_down(slot, reason.to_owned(), restarts, true);
        }
    }

    /// The model key of the task running on `slot` (see [`super::gate::Gates`]).
    pub(super) fn model_on(&self, slot: &SlotId) -> String {
        self.slots
            .get(slot)
            .and_then(|e| e.task.as_ref())
            .and_then(|id| self.tasks.get(id))
            .map(|r| model_key(r.settings.model.as_deref()))
            .unwrap_or_default()
    }

    /// Turns in flight of tasks asking for `model`.
    pub(super) fn in_flight_of(&self, model: &str) -> usize {
        self.slots
            .values()
            .filter_map(|e| e.task.as_ref())
            .filter_map(|id| self.tasks.get(id))
            .filter(|r| model_key(r.settings.model.as_deref()) == model)
            .count()
    }

    /// Arms the gate's calm timer while the gate is not open.
    pub(super) fn arm_gate_tick(&mut self) {
        if self.gate_tick_armed || !self.gate.limited() {
            return;
        }
        self.gate_tick_armed = true;
        self.myself
            .send_after(self.gate.step(), || super::SchedulerMsg::GateTick);
    }

    /// Answers `WaitReady` callers once every slot is idle or given up.
    pub(super) fn check_ready(&mut self) {
        if self.ready_waiters.is_empty() {
            return;
        }
        let settled = !self.slots.is_empty()
            && self.slots.values().all(|e| {
                matches!(
                    e.status,
                    SlotStatus::Idle | SlotStatus::Failed | SlotStatus::Stopped | SlotStatus::Cold
                ) && !e.retiring
            });
        if settled || self.intake.is_stopped() {
            for w in self.ready_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Hands pending tasks to idle slots until one of them runs out, or the ledger asks the
    /// queue to wait.
    pub(super) async fn dispatch(&mut self) {
        while !self.queue.is_empty() && !self.budget_wait {
            if !self.has_idle() {
                return;
            }
            if self.window_holds() {
                return; // a usage window is used up: its reset timer dispatches again
            }
            let Some(id) = self.take_next() else { return };
            let Some(slot) = self.pick_slot(&id) else {
                self.queue.push_front(id);
                return;
            };
            let Some(r) = self
                .tasks
                .get(&id)
                .filter(|r| matches!(r.state, TaskState::Pending))
            else {
                self.idle.push_front(slot);
                continue;
            };
            let Some((prompt, progress)) = r.payload.clone() else {
                self.idle.push_front(slot);
                continue;
            };
            let Some(actor) = self.slots.get(&slot).and_then(|e| e.actor.clone()) else {
                self.queue.push_front(id);
                continue;
            };
            let max = r.max_budget_usd;
            if !self.reserve(&id, max).await {
                self.queue.push_front(id);
                self.idle.push_front(slot);
                return;
            }
            let Some(r) = self.tasks.get_mut(&id) else {
                continue;
            };
            let assignment = Assignment {
                task: id.clone(),
                prompt,
                preamble: self.preamble.borrow().clone(),
                settings: r.settings.clone(),
                deadline: r.submitted_at + r.timeout,
                timeout: r.timeout,
                progress,
                resume: r.meta.resume.clone(),
                rules: r.meta.rules.clone(),
                approval_timeout: r.meta.approval_timeout,
                retry_if_lost: r.meta.retry_if_lost,
            };
            match actor.send(SlotCommand::Run(assignment)) {
                Ok(()) => {
                    r.set_state(
                        TaskState::Running {
                            slot: slot.clone(),
                            started_at: None,
                        },
                        &mut self.live,
                    );
                    self.deadlines.disarm(r.deadline(), &id);
                    if let Some(e) = self.slots.get_mut(&slot) {
                        e.task = Some(id.clone());
                        e.status = SlotStatus::Busy;
                    }
                    self.events.publish(PoolEvent::Task {
                        id,
                        status: TaskStatus::Running,
                    });
                }
                Err(_) => {
                    // The slot's actor is gone; its supervisor will report it.
                    let _ = self.ledger.cast(LedgerMsg::Release(id.clone()));
                    if let Some(e) = self.slots.get_mut(&slot) {
                        e.actor = None;
                    }
                    self.queue.push_front(id);
                }
            }
        }
    }

    /// Asks the ledger whether `id` may start. With a pool cap this is a round trip; without
    /// one the task is only registered, so its live spend is followed.
    async fn reserve(&mut self, id: &TaskId, max: Option<f64>) -> bool {
        if self.config.budget_usd.is_none() {
            let _ = self.ledger.cast(LedgerMsg::Start {
                task: id.clone(),
                max,
            });
            return true;
        }
        let task = id.clone();
        let answer = self
            .ledger
            .call(|reply| LedgerMsg::Reserve { task, max, reply }, None)
            .await;
        match answer {
            Ok(ractor::rpc::CallResult::Success(Reservation::Granted)) => true,
            Ok(ractor::rpc::CallResult::Success(Reservation::Wait)) => {
                self.budget_wait = true;
                false
            }
            Ok(ractor::rpc::CallResult::Success(Reservation::Refused(reason))) => {
                self.on_budget_exhausted(reason);
                false
            }
            _ => {
                self.on_budget_exhausted("the budget ledger did not answer".into());
                false
            }
        }
    }

    /// Whether some slot is idle and usable (dropping stale entries from the front).
    fn has_idle(&mut self) -> bool {
        match self.pop_idle() {
            Some(slot) => {
                self.idle.push_front(slot);
                true
            }
            None => false,
        }
    }

    pub(super) fn pop_idle(&mut self) -> Option<SlotId> {
        while let Some(slot) = self.idle.pop_front() {
            let usable = self.slots.get(&slot).is_some_and(|e| {
                e.status == SlotStatus::Idle && e.actor.is_some() && e.task.is_none() && !e.retiring
            });
            if usable {
                return Some(slot);
            }
        }
        None
    }

    pub(super) fn slot_reports(&self) -> Vec<SlotReport> {
        let mut slots: Vec<(&SlotId, &SlotEntry)> = self.slots.iter().collect();
        slots.sort_by(|a, b| (a.1.index, a.0).cmp(&(b.1.index, b.0)));
        slots
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
                worktree: e.worktree.as_ref().map(|p| p.display().to_string()),
                warm: !matches!(
                    e.status,
                    SlotStatus::Cold | SlotStatus::Failed | SlotStatus::Stopped
                ),
                rss_bytes: None,
                host: host_of(id).map(str::to_owned),
            })
            .collect()
    }

    /// The slots this machine's supervisor keeps (a host's slots come and go with it).
    pub(super) fn target_slots(&self) -> usize {
        self.slots
            .iter()
            .filter(|(id, e)| !e.retiring && !is_remote(id))
            .count()
    }

    pub(super) fn slot_ids(&self) -> Vec<SlotId> {
        let mut ids: Vec<(usize, SlotId)> = self
            .slots
            .iter()
            .filter(|(id, e)| !e.retiring && !is_remote(id))
            .map(|(id, e)| (e.index, id.clone()))
            .collect();
        ids.sort();
        ids.into_iter().map(|(_, id)| id).collect()
    }

    /// A slot became ready: a pool halted because no slot could start works again.
    fn on_slot_works(&mut self) {
        if self.intake.is_halted() {
            tracing::info!("a slot started again: the pool accepts work again");
            self.intake = super::Intake::Open;
            let _ = self.sizing.send_message(SizingNote::Recovered);
        }
    }
}

/// A task's model as the admission gates key it: its own, or the server's; empty for the
/// CLI's default.
pub(super) fn model_key(model: Option<&str>) -> String {
    model.unwrap_or_default().to_owned()
}
