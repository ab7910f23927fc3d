//! Turns the API refused: queued again after a backoff, or at once behind a used-up
//! usage window; failed after [`MAX_RATE_LIMITS`] refusals.

use claude_pool_protocol::{SlotId, TaskId, TaskStatus};
use tokio::time::Instant;

use super::table::TaskState;
use super::{SchedulerMsg, SchedulerState};
use crate::events::PoolEvent;
use crate::ledger::LedgerMsg;
use crate::store::db::Write;
use crate::task::{Assignment, TaskOutcome};

/// How many times a task whose turns the API refuses for rate or load is queued again.
pub const MAX_RATE_LIMITS: u32 = 5;

impl SchedulerState {
    /// The API refused `assignment`'s turn for rate or load: the task waits out a backoff
    /// (doubling from `--requeue-backoff`, 1 s, up to 30 s, with up to 50 % jitter so refused turns do not come
    /// back in lock-step) and goes back to the head of the queue — up to
    /// [`MAX_RATE_LIMITS`] times, then it fails with the API's words. Its deadline holds.
    pub(super) fn on_rate_limited(&mut self, slot: SlotId, assignment: Assignment, error: String) {
        if let Some(e) = self.slots.get_mut(&slot)
            && e.task.as_ref() == Some(&assignment.task)
        {
            e.task = None;
        }
        let id = assignment.task.clone();
        let _ = self.ledger.cast(LedgerMsg::Release(id.clone()));
        // A used-up usage window is not a rate: the turn waits for the reset, and the
        // gate stays as it is.
        let window = self.windows.hold(crate::clock::now_ms());
        let model = super::slots::model_key(assignment.settings.model.as_deref());
        let in_flight = self.in_flight_of(&model) + 1; // its own turn just ended
        if window.is_none()
            && self.config.api_adapt
            && self.gate.refused(&model, Instant::now(), in_flight)
        {
            tracing::info!(ceiling = ?self.gate.ceiling(), "the API refused a turn: fewer turns at once");
            self.events.publish(PoolEvent::Api);
        }
        self.arm_gate_tick();
        let Some(r) = self.tasks.get_mut(&id) else {
            return;
        };
        if r.payload.is_none() {
            r.payload = Some((assignment.prompt, assignment.progress));
        }
        if !r.cancel_waiters.is_empty() || r.stopping {
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Cancelled,
                "cancelled by request while the API refused its turn",
            );
            self.finalize(&id, outcome, None);
            return;
        }
        if self.intake.refusal().is_some() {
            let why = self.intake.describe();
            let outcome =
                TaskOutcome::unbilled(TaskStatus::Cancelled, format!("{why}; it never ran"));
            self.finalize(&id, outcome, None);
            return;
        }
        if window.is_none() && !self.config.api_adapt {
            // --api-adapt off: the CLI's own retries were the only ones.
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Failed,
                format!("claude reported an error: {error}"),
            );
            self.finalize(&id, outcome, Some(slot));
            return;
        }
        let Some(r) = self.tasks.get_mut(&id) else {
            return;
        };
        r.rate_limits += 1;
        if window.is_some() {
            r.window_waits += 1;
            tracing::info!(task = %id, "the API's usage window is used up: queued until it resets");
            self.requeue_front(&id);
            return;
        }
        if r.rate_limits - r.window_waits > MAX_RATE_LIMITS {
            let outcome = TaskOutcome::unbilled(
                TaskStatus::Failed,
                format!("the API refused it {MAX_RATE_LIMITS} times for rate or load: {error}"),
            );
            self.finalize(&id, outcome, Some(slot));
            return;
        }
        r.set_state(TaskState::Pending, &mut self.live);
        r.meta.started_ms = None;
        if let Some(store) = &self.store {
            store.write(Write::Requeued { id: id.0.clone() });
        }
        self.deadlines.arm(r.deadline(), id.clone(), &self.myself);
        let n = r.rate_limits;
        let base = self
            .config
            .requeue_backoff
            .saturating_mul(1 << (n - 1).min(5))
            .min(std::time::Duration::from_secs(30));
        let jitter = base.mul_f64(f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 510.0);
        let wait = base + jitter;
        tracing::info!(task = %id, attempt = n, wait = ?wait, %error, "rate limited: queued again after a backoff");
        let again = id.clone();
        self.myself
            .send_after(wait, move || SchedulerMsg::Requeue(again));
        self.events.publish(PoolEvent::Task {
            id,
            status: TaskStatus::Pending,
        });
    }

    /// A rate-limited task's backoff ended: to the head of the queue, unless it ended or
    /// was queued meanwhile.
    pub(super) fn on_requeue(&mut self, id: TaskId) {
        let pending = self
            .tasks
            .get(&id)
            .is_some_and(|r| matches!(r.state, TaskState::Pending));
        if pending && !self.queue.contains(&id) {
            self.queue.push_front(id);
        }
    }

    /// Puts a task that has not started back at the head of the queue, with its deadline.
    pub(super) fn requeue_front(&mut self, id: &TaskId) {
        let Some(r) = self.tasks.get_mut(id) else {
            return;
        };
        if r.status().is_terminal() || r.payload.is_none() || matches!(r.state, TaskState::Pending)
        {
            return; // ended, started, or already queued
        }
        r.set_state(TaskState::Pending, &mut self.live);
        r.meta.started_ms = None;
        if let Some(store) = &self.store {
            store.write(Write::Requeued { id: id.0.clone() });
        }
        self.deadlines.arm(r.deadline(), id.clone(), &self.myself);
        self.queue.push_front(id.clone());
        self.events.publish(PoolEvent::Task {
            id: id.clone(),
            status: TaskStatus::Pending,
        });
    }
}
