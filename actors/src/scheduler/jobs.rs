//! What the store and the job API add to the scheduler: tasks restored at start, the
//! gates a queued task waits behind (its project's concurrency limit, its session's one
//! running turn), and a build's branch checked before its task ends.

use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::tools::TaskKind;
use claude_pool_protocol::{SlotId, TaskId, TaskStatus};
use tokio::time::Instant;

use super::table::{self, TaskMeta, TaskState};
use super::{SchedulerMsg, SchedulerState};
use crate::store::convert::{StoredOptions, finish_of};
use crate::store::db::{Recovered, Write};
use crate::task::{TaskOutcome, WorktreeState};

impl SchedulerState {
    /// Queues again what the store held as pending (oldest first, with their ids and their
    /// deadlines counted from their first submission), and carries the finished tasks'
    /// counts.
    pub(super) fn restore(&mut self, restored: &Recovered) {
        self.queue_stored(&restored.pending);
        for (kind, state, n) in &restored.counts_by_kind {
            let (Some(kind), Some(status)) = (TaskKind::parse(kind), TaskStatus::parse(state))
            else {
                continue;
            };
            if status.is_terminal() {
                for _ in 0..*n {
                    table::count(self.forgotten.of_mut(kind), status);
                }
            }
        }
        if !restored.pending.is_empty() {
            tracing::info!(
                pending = restored.pending.len(),
                "queued again the tasks an earlier server left pending"
            );
        }
    }

    /// Queues tasks the store holds as pending for this server (left by a server that
    /// stopped or died), oldest first, with their ids and their deadlines counted from
    /// their first submission. A task already known is skipped.
    pub(super) fn queue_stored(&mut self, rows: &[crate::store::db::TaskRow]) {
        let now_ms = crate::clock::now_ms();
        for row in rows {
            if self.tasks.contains_key(&TaskId(row.id.clone())) {
                continue;
            }
            let options = StoredOptions::parse(row);
            let elapsed =
                Duration::from_millis(u64::try_from(now_ms - row.enqueued_at_ms).unwrap_or(0));
            let submitted_at = Instant::now()
                .checked_sub(elapsed)
                .unwrap_or_else(Instant::now);
            let id = TaskId(row.id.clone());
            let meta = TaskMeta {
                kind: claude_pool_protocol::tools::TaskKind::parse(&row.kind).unwrap_or_default(),
                project: row.project.clone(),
                resume: row.resume_session.clone(),
                chain: None,
                build: options.build.clone(),
                enqueued_ms: row.enqueued_at_ms,
                started_ms: None,
                finished_ms: None,
                keep_queued: false,
                rules: None,
                approval_timeout: options.approval_timeout_ms.map(Duration::from_millis),
                // A restored task's first run was on this machine or given up.
                retry_if_lost: false,
            };
            let settings = options.settings();
            // Queued under another server's limits (or this one's before a restart with a
            // lower ceiling): it runs only within this server's — its own rules too.
            let mut refused = self.beyond_limits(&settings);
            let mut meta = meta;
            match self.config.task_rules(&options.allow, &options.deny) {
                Ok(rules) => meta.rules = rules,
                Err(why) => refused = refused.or(Some(why)),
            }
            self.insert_record(
                id.clone(),
                submitted_at,
                Duration::from_millis(options.timeout_ms),
                settings,
                options.max_budget_usd,
                (Arc::from(row.prompt.as_str()), None),
                meta,
            );
            match refused {
                Some(why) => {
                    tracing::warn!(task = %id, "a stored task is beyond this server's limits: {why}");
                    let outcome = TaskOutcome::unbilled(
                        TaskStatus::Failed,
                        format!("{why}; the task never started"),
                    );
                    self.finalize(&id, outcome, None);
                }
                None => self.queue.push_back(id),
            }
        }
    }

    /// Why a task with `settings` may not run on this server (its permission mode above the
    /// ceiling, or a tool `--allowed-tools` does not allow), if it may not.
    fn beyond_limits(&self, settings: &crate::config::ProcSettings) -> Option<String> {
        if let Some(mode) = settings.permission_mode
            && let Err(why) = self.config.check_permission_mode("permission_mode", mode)
        {
            return Some(why);
        }
        let (Some(asked), Some(allowed)) =
            (&settings.allowed_tools, &self.config.max_allowed_tools)
        else {
            return None;
        };
        asked
            .iter()
            .find(|t| !allowed.contains(t))
            .map(|t| format!("the allowed tool {t:?} is not in this server's --allowed-tools"))
    }

    /// A slot reported a task's end. A completed build has its branch checked first (off
    /// the scheduler, by git); everything else ends now.
    pub(super) fn on_finished(&mut self, task: TaskId, slot: SlotId, mut outcome: TaskOutcome) {
        // A task's own cap holds however its turn ended: a turn whose only API call had
        // already finished when the cap was passed still spent more than it was allowed.
        if let Some(max) = self.tasks.get(&task).and_then(|r| r.max_budget_usd)
            && outcome.status == TaskStatus::Completed
            && outcome.cost.usd > max
        {
            outcome.status = TaskStatus::Failed;
            outcome.error = Some(over_own_cap(outcome.cost.usd, max));
        }
        let plan = self
            .tasks
            .get(&task)
            .filter(|r| !r.status().is_terminal())
            .and_then(|r| r.meta.build.clone());
        let Some(plan) = plan.filter(|_| outcome.status == TaskStatus::Completed) else {
            self.finalize(&task, outcome, Some(slot));
            return;
        };
        let me = self.myself.clone();
        tokio::spawn(async move {
            let verified = crate::build::verify(&plan, outcome.output.as_deref()).await;
            let mut outcome = outcome;
            outcome.worktree = Some(WorktreeState {
                path: plan.worktree.clone(),
                branch: plan.branch.clone(),
                commit: verified.head,
            });
            if let Some(error) = verified.error {
                outcome.status = TaskStatus::Failed;
                outcome.error = Some(error);
            }
            let _ = me.cast(SchedulerMsg::BuildChecked {
                task,
                slot,
                outcome,
            });
        });
    }

    /// After a task's end: the store's record, and a build's worktree removed. `answer`
    /// replies to the task's waiters once the record is durable, so no caller is told of
    /// an end that a crash could still turn into `interrupted`.
    pub(super) fn persist_end(&mut self, id: &TaskId, answer: Box<dyn FnOnce() + Send>) {
        let Some(r) = self.tasks.get_mut(id) else {
            return answer();
        };
        if r.meta.keep_queued {
            return answer(); // still queued in the store, worktree and all
        }
        let finished_ms = *r.meta.finished_ms.get_or_insert_with(crate::clock::now_ms);
        let TaskState::Done { outcome, slot, .. } = &r.state else {
            return answer();
        };
        match &self.store {
            Some(store) => store.write_then(
                vec![Write::Finished(finish_of(
                    id,
                    outcome,
                    slot.as_ref(),
                    r.meta.started_ms,
                    finished_ms,
                ))],
                // A write that failed is answered too: the store reads as failing.
                Box::new(move |_| answer()),
            ),
            None => answer(),
        }
        if let Some(plan) = r.meta.build.clone() {
            let started = outcome.started_at.is_some();
            tokio::spawn(async move { crate::build::cleanup(&plan, started).await });
        }
    }

    /// Takes the first queued task no gate holds back: its project below its limit of
    /// running jobs, its session not running already, its model below the API's ceiling.
    pub(super) fn take_next(&mut self) -> Option<TaskId> {
        // The common case costs nothing: the head of the queue has no gate.
        let limited = self.gate.limited();
        let head_free = !limited
            && self
                .queue
                .front()
                .and_then(|id| self.tasks.get(id))
                .is_none_or(|r| r.meta.project.is_none() && r.meta.resume.is_none());
        if head_free {
            return self.queue.pop_front();
        }
        let projects = self.projects.current();
        let mut running_projects: std::collections::HashMap<&str, usize> = Default::default();
        let mut running_sessions: std::collections::HashSet<&str> = Default::default();
        let mut running_models: std::collections::HashMap<String, usize> = Default::default();
        let running = self
            .slots
            .values()
            .filter_map(|e| e.task.as_ref())
            .filter_map(|id| self.tasks.get(id));
        for r in running {
            if let Some(p) = &r.meta.project {
                *running_projects.entry(p.as_str()).or_default() += 1;
            }
            if let Some(s) = &r.meta.resume {
                running_sessions.insert(s.as_str());
            }
            if limited {
                *running_models
                    .entry(super::slots::model_key(r.settings.model.as_deref()))
                    .or_default() += 1;
            }
        }
        let pos = self.queue.iter().position(|id| {
            let Some(r) = self.tasks.get(id) else {
                return true; // forgotten: let dispatch drop it
            };
            let project_free = r.meta.project.as_deref().is_none_or(|p| {
                let limit = projects.get(p).map_or(1, |p| p.max_concurrent);
                running_projects.get(p).copied().unwrap_or(0) < limit
            });
            let session_free = r
                .meta
                .resume
                .as_deref()
                .is_none_or(|s| !running_sessions.contains(s));
            let model_free = !limited || {
                let model = super::slots::model_key(r.settings.model.as_deref());
                let running = running_models.get(&model).copied().unwrap_or(0);
                self.gate.admits(&model, running)
            };
            project_free && session_free && model_free
        })?;
        self.queue.remove(pos)
    }

    /// Picks the idle slot for `id`: one whose process already runs in the task's
    /// directory when there is one (no respawn), else the first.
    pub(super) fn pick_slot(&mut self, id: &TaskId) -> Option<SlotId> {
        let want = self.tasks.get(id).map(|r| r.settings.cwd.clone());
        if let Some(want) = want {
            let pos = self.idle.iter().position(|s| {
                self.slots.get(s).is_some_and(|e| {
                    e.status == claude_pool_protocol::SlotStatus::Idle
                        && e.actor.is_some()
                        && e.task.is_none()
                        && !e.retiring
                        && e.cwd == want
                })
            });
            if let Some(pos) = pos {
                return self.idle.remove(pos);
            }
        }
        self.pop_idle()
    }
}

/// The error of a task whose spend passed its own `max_budget_usd`.
pub(crate) fn over_own_cap(spent: f64, max: f64) -> String {
    use crate::ledger::book::usd;
    format!(
        "the task spent {}, over its own cap of {} (max_budget_usd)",
        usd(spent),
        usd(max)
    )
}
