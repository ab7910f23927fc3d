//! Warm when it pays. A slot idle for `idle_timeout` lets its process go and stays cold,
//! except the floor (the `warm_slots` lowest-numbered warm slots); queued work wakes as many
//! cold slots as it needs, all at once, and runs on the first that is ready.
//!
//! The scheduler decides both, so a release never races a dispatch: a slot is released only
//! while it sits in the idle queue with nothing assigned, and it leaves that queue in the
//! same step, so no task is offered to it afterwards (one already on its way is handed back
//! by the slot, which runs tasks only when idle). A cold slot comes back through the usual
//! `SlotReady`. Its warm-up is an ordinary start: a failure is the slot's, counted by its
//! supervisor as any start failure, never the task's.

use std::time::{Duration, Instant};

use claude_pool_protocol::{SlotId, SlotStatus};

use super::{SchedulerMsg, SchedulerState};
use crate::events::PoolEvent;
use crate::wire::SlotCommand;

/// The one timer of the idle check: when it fires, and the armed message.
pub(super) type IdleTimer = (Instant, tokio::task::JoinHandle<()>);

impl SchedulerState {
    /// After every message: wake what the queue (or the floor) needs, then arm the idle check
    /// for the earliest slot that may be released.
    pub(super) fn tend_warmth(&mut self) {
        self.wake_for_work();
        self.arm_idle_check();
    }

    /// Slots that have, or are getting, a process.
    pub(super) fn warm_count(&self) -> usize {
        self.slots
            .values()
            .filter(|e| {
                !e.retiring
                    && !matches!(
                        e.status,
                        SlotStatus::Cold | SlotStatus::Failed | SlotStatus::Stopped
                    )
            })
            .count()
    }

    /// The floor: the `warm_slots` lowest-numbered slots that are warm. They are never
    /// released, so the same slots stay warm from one idle period to the next.
    fn floor(&self) -> Vec<SlotId> {
        let mut warm: Vec<(usize, &SlotId)> = self
            .slots
            .iter()
            .filter(|(_, e)| {
                !e.retiring
                    && !matches!(
                        e.status,
                        SlotStatus::Cold | SlotStatus::Failed | SlotStatus::Stopped
                    )
            })
            .map(|(id, e)| (e.index, id))
            .collect();
        warm.sort();
        warm.into_iter()
            .take(self.config.warm_slots)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// The idle timer fired: release every slot idle past the timeout, except the floor.
    pub(super) fn on_idle_check(&mut self) {
        self.idle_timer = None;
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        let now = Instant::now();
        let floor = self.floor();
        let due: Vec<SlotId> = self
            .idle
            .iter()
            .filter(|slot| !floor.contains(slot))
            .filter(|slot| {
                self.slots.get(*slot).is_some_and(|e| {
                    e.status == SlotStatus::Idle
                        && e.actor.is_some()
                        && e.task.is_none()
                        && !e.retiring
                        && e.idle_since.is_some_and(|since| since + timeout <= now)
                })
            })
            .cloned()
            .collect();
        for slot in due {
            self.release(&slot);
        }
    }

    fn release(&mut self, slot: &SlotId) {
        self.idle.retain(|s| s != slot);
        let Some(e) = self.slots.get_mut(slot) else {
            return;
        };
        e.status = SlotStatus::Cold;
        e.idle_since = None;
        if let Some(actor) = &e.actor {
            let _ = actor.send(SlotCommand::Release);
        }
        tracing::debug!(%slot, "released after the idle timeout");
        self.events.publish(PoolEvent::Slot {
            id: slot.clone(),
            status: SlotStatus::Cold,
        });
    }

    /// Wakes cold slots: as many as the queued tasks need beyond the slots idle or already
    /// starting, and as many as the floor is short of; all at once.
    fn wake_for_work(&mut self) {
        if self.intake.is_stopped() || self.budget_wait {
            return;
        }
        let mut cold: Vec<(usize, SlotId)> = self
            .slots
            .iter()
            .filter(|(_, e)| e.status == SlotStatus::Cold && !e.retiring && e.actor.is_some())
            .map(|(id, e)| (e.index, id.clone()))
            .collect();
        if cold.is_empty() {
            return;
        }
        let coming = self
            .slots
            .values()
            .filter(|e| {
                !e.retiring
                    && e.task.is_none()
                    && matches!(
                        e.status,
                        SlotStatus::Idle | SlotStatus::Starting | SlotStatus::Restarting
                    )
            })
            .count();
        let for_queue = self.queue.len().saturating_sub(coming);
        let for_floor = self.config.warm_slots.saturating_sub(self.warm_count());
        let n = for_queue.max(for_floor).min(cold.len());
        if n == 0 {
            return;
        }
        cold.sort();
        for (_, slot) in cold.into_iter().take(n) {
            let Some(e) = self.slots.get_mut(&slot) else {
                continue;
            };
            e.status = SlotStatus::Starting;
            if let Some(actor) = &e.actor {
                let _ = actor.send(SlotCommand::Wake);
            }
            tracing::debug!(%slot, "waking for queued work");
            self.events.publish(PoolEvent::Slot {
                id: slot,
                status: SlotStatus::Starting,
            });
        }
    }

    /// Arms the idle check for the earliest moment a slot outside the floor may be released.
    fn arm_idle_check(&mut self) {
        let Some(timeout) = self.config.idle_timeout else {
            return;
        };
        if self.warm_count() <= self.config.warm_slots {
            return;
        }
        let floor = self.floor();
        let earliest = self
            .idle
            .iter()
            .filter(|slot| !floor.contains(slot))
            .filter_map(|slot| self.slots.get(slot)?.idle_since)
            .min();
        let Some(at) = earliest.map(|since| since + timeout) else {
            return;
        };
        if let Some((armed, _)) = &self.idle_timer
            && *armed <= at
        {
            return;
        }
        if let Some((_, old)) = self.idle_timer.take() {
            old.abort();
        }
        let me = self.myself.clone();
        let wait = at.saturating_duration_since(Instant::now()) + Duration::from_millis(1);
        let handle = tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = me.cast(SchedulerMsg::IdleCheck);
        });
        self.idle_timer = Some((at, handle));
    }
}
