//! The deadlines of queued tasks: an index ordered by time, and one timer for the earliest.
//!
//! A task's deadline counts from its submission, so one that waits in the queue long enough
//! times out there. Ten thousand queued tasks are ten thousand deadlines; each in a timer
//! task of its own would cost a tokio task apiece. Here they cost one entry in an ordered
//! set, and the scheduler holds a single timer, armed for the earliest, which asks it to
//! expire everything due ([`SchedulerMsg::QueueDeadlines`]) and is armed again for the next.

use std::collections::BTreeSet;

use claude_pool_protocol::TaskId;
use ractor::{ActorRef, MessagingErr};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::SchedulerMsg;

type Timer = JoinHandle<Result<(), MessagingErr<SchedulerMsg>>>;

/// The queued tasks' deadlines and the one timer.
#[derive(Default)]
pub(super) struct Deadlines {
    /// Every queued task's deadline, earliest first.
    due: BTreeSet<(Instant, TaskId)>,
    /// The timer, and the instant it fires at.
    timer: Option<(Instant, Timer)>,
}

impl Deadlines {
    /// Watches `id`'s deadline `at`, firing the timer sooner if it is now the earliest.
    pub fn arm(&mut self, at: Instant, id: TaskId, myself: &ActorRef<SchedulerMsg>) {
        self.due.insert((at, id));
        if self.timer.as_ref().is_none_or(|(fires, _)| at < *fires) {
            self.rearm(myself);
        }
    }

    /// Stops watching `id`'s deadline `at` (the task started or ended). The timer stays:
    /// should it fire with nothing due, it is armed for the next deadline.
    pub fn disarm(&mut self, at: Instant, id: &TaskId) {
        // The set is keyed by value; the id is cloned only to look it up.
        self.due.remove(&(at, id.clone()));
    }

    /// Takes every deadline due by now, earliest first, and arms the timer for the next.
    pub fn take_due(&mut self, myself: &ActorRef<SchedulerMsg>) -> Vec<TaskId> {
        self.timer = None;
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(first) = self.due.first()
            && first.0 <= now
        {
            if let Some((_, id)) = self.due.pop_first() {
                due.push(id);
            }
        }
        self.rearm(myself);
        due
    }

    /// How many deadlines are watched.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Arms the timer for the earliest deadline (none when nothing is watched).
    fn rearm(&mut self, myself: &ActorRef<SchedulerMsg>) {
        if let Some((_, t)) = self.timer.take() {
            t.abort();
        }
        let Some((at, _)) = self.due.first() else {
            return;
        };
        let at = *at;
        let wait = at.saturating_duration_since(Instant::now());
        let timer = myself.send_after(wait, || SchedulerMsg::QueueDeadlines);
        self.timer = Some((at, timer));
    }
}

impl Drop for Deadlines {
    fn drop(&mut self) {
        if let Some((_, t)) = self.timer.take() {
            t.abort();
        }
    }
}
