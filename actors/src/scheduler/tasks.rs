//! What happens to a task in the scheduler: accepted, queued, handed back, cancelled, timed
//! out while queued, and finalized — once — with its outcome settled with the ledger.

use std::sync::Arc;

use claude_pool_protocol::tools::{CancelReport, TaskCounts, TaskReport, TasksByKind};
use claude_pool_protocol::{SlotId, TaskId, TaskStatus};
use ractor::RpcReplyPort;
use tokio::time::Instant;

use super::msg::SubmitReply;
use super::table::{self, TaskMeta, TaskRecord, TaskState};
use super::{SchedulerMsg, SchedulerState};
use crate::config::ProcSettings;
use crate::error::PoolError;
use crate::events::PoolEvent;
use crate::ledger::LedgerMsg;
use crate::store::db::Write;
use crate::task::{Assignment, TaskOutcome, TaskSpec};
use crate::wire::{SlotCommand, SlotLink};

fn new_task_id() -> TaskId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    TaskId(format!("task-{}", &id[..12]))
}

impl SchedulerState {
    /// Queues `specs` if every one is acceptable; none otherwise. With a store the caller
    /// is answered by the store's thread once the tasks are committed, so an id is never
    /// returned before its task is durable; the scheduler does not wait for that, and the
    /// tasks may start meanwhile. Should the commit fail, the caller gets the error and the
    /// tasks are stopped ([`SchedulerMsg::NotPersisted`]).
    pub(super) fn accept(&mut self, specs: Vec<TaskSpec>, reply: SubmitReply) {
        if let Err(e) = self.check(&specs) {
            reply.send(Err(e));
            return;
        }
        let ids: Vec<TaskId> = specs.into_iter().map(|spec| self.enqueue(spec)).collect();
        for id in &ids {
            self.queue.push_back(id.clone());
            self.events.publish(PoolEvent::Task {
                id: id.clone(),
                status: TaskStatus::Pending,
            });
        }
        let Some(store) = self.store.clone() else {
            reply.send(Ok(ids));
            return;
        };
        let rows = ids
            .iter()
            .filter_map(|id| self.tasks.get(id).map(|r| Write::InsertTask(r.row(id))))
            .collect();
        let me = self.myself.clone();
        store.write_then(
            rows,
            Box::new(move |result| match result {
                Ok(()) => reply.send(Ok(ids)),
                Err(e) => {
                    reply.send(Err(PoolError::Refused(e.clone())));
                    let _ = me.cast(SchedulerMsg::NotPersisted { ids, reason: e });
                }
            }),
        );
    }

    /// The store could not record these tasks, whose caller was refused: they end at once
    /// (a running one is stopped like a cancel).
    pub(super) fn on_not_persisted(&mut self, ids: Vec<TaskId>, reason: &str) {
        let why = format!("the store could not record the task: {reason}");
        for id in ids {
            match self.tasks.get(&id).map(|r| r.is_running()) {
                Some(true) => self.stop_running(&id, TaskStatus::Failed, why.clone()),
                Some(false) => {
                    self.queue.retain(|q| q != &id);
                    self.finalize(
                        &id,
                        TaskOutcome::unbilled(TaskStatus::Failed, why.clone()),
                        None,
                    );
                }
                None => {}
            }
        }
    }

    fn check(&self, specs: &[TaskSpec]) -> Result<(), PoolError> {
        if let Some(refusal) = self.intake.refusal() {
            return Err(refusal);
        }
        if let Some(store) = &self.store
            && let Some(e) = store.health()
        {
            return Err(PoolError::Refused(e));
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
            self.config
                .task_rules(&spec.allow, &spec.deny)
                .map_err(PoolError::InvalidArgument)?;
        }
        Ok(())
    }

    /// Creates the record of a new task (not queued yet).
    pub(super) fn enqueue(&mut self, spec: TaskSpec) -> TaskId {
        let id = new_task_id();
        let timeout = spec.timeout.unwrap_or(self.config.default_timeout);
        let defaults = &self.config.defaults;
        let settings = ProcSettings {
            model: spec.model.or_else(|| defaults.model.clone()),
            permission_mode: spec.permission_mode.or(defaults.permission_mode),
            effort: spec.effort.or(defaults.effort),
            cwd: spec.cwd,
            allowed_tools: spec.allowed_tools,
            depth: spec.depth.unwrap_or(defaults.depth),
        };
        let meta = TaskMeta {
            kind: spec.kind,
            project: spec.project,
            resume: spec.session_id,
            chain: spec.chain,
            build: spec.build,
            enqueued_ms: crate::clock::now_ms(),
            started_ms: None,
            finished_ms: None,
            keep_queued: false,
            // Checked when the task was accepted.
            rules: self
                .config
                .task_rules(&spec.allow, &spec.deny)
                .ok()
                .flatten(),
            approval_timeout: spec.approval_timeout,
            retry_if_lost: spec.retry_if_lost,
        };
        self.insert_record(
            id.clone(),
            Instant::now(),
            timeout,
            settings,
            spec.max_budget_usd,
            (Arc::from(spec.prompt), spec.progress),
            meta,
        );
        id
    }

    /// Adds a pending record (not yet queued) with its queue deadline.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn insert_record(
        &mut self,
        id: TaskId,
        submitted_at: Instant,
        timeout: std::time::Duration,
        settings: ProcSettings,
        max_budget_usd: Option<f64>,
        payload: (Arc<str>, Option<crate::task::ProgressSink>),
        meta: TaskMeta,
    ) {
        self.deadlines
            .arm(submitted_at + timeout, id.clone(), &self.myself);
        table::count(self.live.of_mut(meta.kind), TaskStatus::Pending);
        self.tasks.insert(
            id,
            Box::new(TaskRecord {
                submitted_at,
                timeout,
                settings,
                max_budget_usd,
                payload: Some(payload),
                state: TaskState::Pending,
                retries: 0,
                rate_limits: 0,
                window_waits: 0,
                told_hold: None,
                waiters: Vec::new(),
                cancel_waiters: Vec::new(),
                stopping: false,
                meta,
            }),
        );
    }

    pub(super) fn on_wait(&mut self, id: TaskId, reply: RpcReplyPort<Option<TaskReport>>) {
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

    pub(super) fn on_cancel(&mut self, id: TaskId, reply: RpcReplyPort<Option<CancelReport>>) {
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
    pub(super) fn cancel_pending(&mut self, id: &TaskId, why: &str) {
        self.queue.retain(|q| q != id);
        let outcome = TaskOutcome::unbilled(TaskStatus::Cancelled, why);
        self.finalize(id, outcome, None);
    }

    /// Asks the slot running `id` to stop it with `status` (once); a task whose slot is
    /// gone ends at once.
    pub(super) fn stop_running(&mut self, id: &TaskId, status: TaskStatus, reason: String) {
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
            a.send(SlotCommand::Cancel {
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

    pub(super) fn on_rejected(
        &mut self,
        slot: SlotId,
        assignment: Assignment,
        died: Option<String>,
    ) {
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

    /// A slot is writing a task's prompt — or, with `ack`, holds it until the store has
    /// committed the start, so that a task a crash finds pending never reached Claude.
    pub(super) fn on_task_started(
        &mut self,
        task: TaskId,
        slot: SlotId,
        started_at: Instant,
        ack: Option<SlotLink>,
    ) {
        let recorded = move |task: TaskId, result: Result<(), String>| {
            if let Some(ack) = &ack {
                let _ = ack.send(SlotCommand::StartRecorded { task, result });
            }
        };
        let Some(r) = self.tasks.get_mut(&task) else {
            recorded(task, Err("the task is gone".into()));
            return;
        };
        let TaskState::Running {
            slot: s,
            started_at: at,
        } = &mut r.state
        else {
            recorded(task, Err("the task is no longer running".into()));
            return;
        };
        if *s != slot {
            recorded(task, Err(format!("the task runs on {s} now")));
            return;
        }
        *at = Some(started_at);
        // The prompt is on its way to Claude: the scheduler's copy is no longer needed (a
        // slot that hands the task back returns it).
        r.payload = None;
        let at_ms = crate::clock::now_ms();
        r.meta.started_ms = Some(at_ms);
        let write = Write::Started {
            id: task.0.clone(),
            slot: slot.0.clone(),
            at_ms,
        };
        // Its report changed (it has a start now), though not its status.
        self.events.publish(PoolEvent::Task {
            id: task.clone(),
            status: TaskStatus::Running,
        });
        match &self.store {
            Some(store) => {
                store.write_then(vec![write], Box::new(move |result| recorded(task, result)));
            }
            None => recorded(task, Ok(())),
        }
    }

    /// Times out every queued task whose deadline passed.
    pub(super) fn on_queue_deadlines(&mut self) {
        let due: Vec<TaskId> = self
            .deadlines
            .take_due(&self.myself)
            .into_iter()
            .filter(|id| {
                self.tasks
                    .get(id)
                    .is_some_and(|r| matches!(r.state, TaskState::Pending))
            })
            .collect();
        if due.is_empty() {
            return;
        }
        let gone: std::collections::HashSet<&TaskId> = due.iter().collect();
        self.queue.retain(|q| !gone.contains(q));
        let busy = self.slots.len();
        let held = self.windows.hold(crate::clock::now_ms());
        for id in &due {
            let Some(r) = self.tasks.get(id) else {
                continue;
            };
            let timeout = humantime::format_duration(r.timeout);
            let waiting = match &held {
                Some(h) => format!("waiting because {}", h.why),
                None => format!("waiting for a free slot ({busy} slots, none free)"),
            };
            let outcome = TaskOutcome::unbilled(
                TaskStatus::TimedOut,
                format!("timed out after {timeout} while {waiting}; it never started"),
            );
            self.finalize(id, outcome, None);
        }
    }

    /// Records a terminal state (once), settles it with the ledger, and answers everyone
    /// waiting for it.
    pub(super) fn finalize(&mut self, id: &TaskId, outcome: TaskOutcome, slot: Option<SlotId>) {
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
                    tokens: outcome.cost.usage.total(),
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
        self.deadlines.disarm(r.deadline(), id);
        r.payload = None;
        let _ = self.ledger.cast(LedgerMsg::Settle {
            task: id.clone(),
            usd: outcome.cost.usd,
            tokens: outcome.cost.usage.total(),
            started: outcome.started_at.is_some(),
        });
        self.budget_wait = false;
        let status = outcome.status;
        r.set_state(
            TaskState::Done {
                outcome,
                slot,
                finished_at: Instant::now(),
            },
            &mut self.live,
        );
        r.meta.finished_ms = Some(crate::clock::now_ms());
        let report = r.report(id);
        tracing::debug!(task = %id, %status, "task finished");
        self.finished.push_back(id.clone());
        let waiters = std::mem::take(&mut r.waiters);
        let cancel_waiters = std::mem::take(&mut r.cancel_waiters);
        let task_id = id.clone();
        let answer = Box::new(move || {
            for w in waiters {
                let _ = w.send(Some(report.clone()));
            }
            for w in cancel_waiters {
                let cancelled = status == TaskStatus::Cancelled;
                let message = if cancelled {
                    report.error.clone().unwrap_or_else(|| "cancelled".into())
                } else {
                    format!("the task ended as {status} before the cancel took effect")
                };
                let _ = w.send(Some(CancelReport {
                    task_id: task_id.clone(),
                    status,
                    cancelled,
                    message,
                }));
            }
        });
        self.events.publish(PoolEvent::Task {
            id: id.clone(),
            status,
        });
        self.persist_end(id, answer);
        self.check_drained();
    }

    /// Forgets the oldest finished tasks beyond `max_finished_tasks`, keeping their counts,
    /// and gives back what a burst grew the tables to once they are mostly empty.
    pub(super) fn forget_old_tasks(&mut self) {
        self.shrink_tables();
        while self.finished.len() > self.config.max_finished_tasks {
            let Some(id) = self.finished.pop_front() else {
                return;
            };
            if let Some(r) = self.tasks.remove(&id) {
                table::uncount(self.live.of_mut(r.meta.kind), r.status());
                table::count(self.forgotten.of_mut(r.meta.kind), r.status());
                if self.forgotten.sum().total.is_multiple_of(1024)
                    && let Some(store) = &self.store
                {
                    store.prune_memory(self.config.max_finished_tasks);
                }
            }
        }
    }

    /// A map or queue that grew for a burst keeps its capacity when the burst is over:
    /// once it holds less than a quarter of it, it is shrunk to twice what it holds, and
    /// the allocator is asked to give the freed pages back to the system.
    fn shrink_tables(&mut self) {
        const FLOOR: usize = 1024;
        let mut shrunk = false;
        let (len, cap) = (self.tasks.len(), self.tasks.capacity());
        if cap > FLOOR && len < cap / 4 {
            self.tasks.shrink_to((len * 2).max(FLOOR));
            shrunk = true;
        }
        for q in [&mut self.queue, &mut self.finished] {
            if q.capacity() > FLOOR && q.len() < q.capacity() / 4 {
                q.shrink_to((q.len() * 2).max(FLOOR));
                shrunk = true;
            }
        }
        if shrunk {
            crate::process::give_back_memory();
        }
    }

    /// Every task's count by status.
    pub(super) fn counts(&self) -> TaskCounts {
        self.counts_by_kind().sum()
    }

    /// Every task's count by kind and status: those forgotten and those remembered, each
    /// kept as tasks change state, so no task is visited.
    pub(super) fn counts_by_kind(&self) -> TasksByKind {
        let mut counts = self.forgotten;
        counts.add(&self.live);
        #[cfg(debug_assertions)]
        {
            let mut walked = self.forgotten;
            for r in self.tasks.values() {
                table::count(walked.of_mut(r.meta.kind), r.status());
            }
            debug_assert_eq!(
                counts, walked,
                "the kept task counts drifted from the table"
            );
        }
        counts
    }
}
