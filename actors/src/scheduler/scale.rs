//! Sizing the pool: scale-up and scale-down are decided here, within `--min-slots` and
//! `--max-slots`, and carried out by the slot supervisor through the root. Out of bounds is
//! an error that changes nothing; a scale-down answers once its slots' processes are gone.

use std::collections::HashSet;

use claude_pool_protocol::tools::ScaleReport;
use claude_pool_protocol::{SlotId, SlotStatus};
use ractor::RpcReplyPort;

use super::SchedulerState;
use crate::error::PoolError;
use crate::events::PoolEvent;
use crate::wire::SizingNote;

/// How a caller wants the pool resized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleRequest {
    /// Add this many slots.
    Up(u32),
    /// Remove this many slots (idle ones first).
    Down(u32),
    /// Have exactly this many.
    Target(u32),
}

/// A scale-down waiting for its slots to be gone.
pub(super) struct PendingScale {
    pub remaining: HashSet<SlotId>,
    pub report: ScaleReport,
    pub reply: RpcReplyPort<Result<ScaleReport, PoolError>>,
}

impl SchedulerState {
    pub(super) fn on_scale(
        &mut self,
        request: ScaleRequest,
        reply: RpcReplyPort<Result<ScaleReport, PoolError>>,
    ) {
        match self.plan_scale(request) {
            Err(e) => {
                let _ = reply.send(Err(e));
            }
            Ok((report, removing)) if removing.is_empty() => {
                let _ = reply.send(Ok(report));
            }
            Ok((report, removing)) => self.scale_waiters.push(PendingScale {
                remaining: removing,
                report,
                reply,
            }),
        }
    }

    /// Checks bounds (changing nothing when out of them), then adds slots or starts
    /// removing them. Returns the report and the slots whose removal must complete first.
    fn plan_scale(
        &mut self,
        request: ScaleRequest,
    ) -> Result<(ScaleReport, HashSet<SlotId>), PoolError> {
        if let Some(refusal) = self.intake.scaling_refusal() {
            return Err(refusal);
        }
        let current = self.target_slots();
        let (min, max) = (self.config.min_slots, self.config.max_slots);
        let (would, asked) = match request {
            ScaleRequest::Up(0) | ScaleRequest::Down(0) => {
                return Err(PoolError::InvalidArgument(
                    "count must be at least 1".into(),
                ));
            }
            ScaleRequest::Up(n) => (current as i64 + i64::from(n), format!("scale up by {n}")),
            ScaleRequest::Down(n) => (current as i64 - i64::from(n), format!("scale down by {n}")),
            ScaleRequest::Target(t) => (i64::from(t), format!("set the target to {t}")),
        };
        if would > max as i64 {
            return Err(PoolError::InvalidArgument(format!(
                "cannot {asked}: the pool would have {would} slots, above --max-slots {max} (it has {current})"
            )));
        }
        if would < min as i64 {
            return Err(PoolError::InvalidArgument(format!(
                "cannot {asked}: the pool would have {would} slots, below --min-slots {min} (it has {current})"
            )));
        }
        let target = usize::try_from(would).unwrap_or(0);
        let as_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        let target_field = matches!(request, ScaleRequest::Target(_)).then_some(as_u32(target));
        if target > current {
            let added: Vec<SlotId> = (0..target - current)
                .map(|_| {
                    let id = SlotId::from_index(self.next_slot_index);
                    self.next_slot_index += 1;
                    id
                })
                .collect();
            for slot in &added {
                self.on_slot_added(slot.clone());
            }
            let _ = self.sizing.send_message(SizingNote::Add(added.clone()));
            self.events.publish(PoolEvent::SlotsChanged);
            let report = ScaleReport {
                success: true,
                new_slot_count: as_u32(target),
                details: format!("Scaled up by {} slots", added.len()),
                target: target_field,
                slots: added,
            };
            return Ok((report, HashSet::new()));
        }
        if target == current {
            let report = ScaleReport {
                success: true,
                new_slot_count: as_u32(current),
                details: format!("The pool already has {current} slots"),
                target: target_field,
                slots: Vec::new(),
            };
            return Ok((report, HashSet::new()));
        }
        let victims = self.choose_victims(current - target);
        let busy: Vec<String> = victims
            .iter()
            .filter(|s| self.slots.get(*s).is_some_and(|e| e.task.is_some()))
            .map(|s| s.0.clone())
            .collect();
        for slot in &victims {
            if let Some(e) = self.slots.get_mut(slot) {
                e.retiring = true;
                e.status = SlotStatus::Stopping;
            }
            self.idle.retain(|s| s != slot);
        }
        let grace = self.config.scale_down_grace;
        let _ = self.sizing.send_message(SizingNote::Retire {
            slots: victims.clone(),
            grace,
        });
        let mut details = format!("Scaled down by {} slots", victims.len());
        if !busy.is_empty() {
            details.push_str(&format!(
                " ({} {} busy: given up to {} to finish, then cancelled)",
                busy.join(", "),
                if busy.len() == 1 { "was" } else { "were" },
                humantime::format_duration(grace)
            ));
        }
        let report = ScaleReport {
            success: true,
            new_slot_count: as_u32(target),
            details,
            target: target_field,
            slots: victims.clone(),
        };
        Ok((report, victims.into_iter().collect()))
    }

    /// Which slots a scale-down removes: idle ones first, then slots without a task
    /// (starting, restarting, given up), then busy ones; the newest first within each.
    fn choose_victims(&self, n: usize) -> Vec<SlotId> {
        let mut candidates: Vec<(u8, std::cmp::Reverse<usize>, SlotId)> = self
            .slots
            .iter()
            .filter(|(id, e)| !e.retiring && !super::slots::is_remote(id))
            .map(|(id, e)| {
                let class = match (e.status, &e.task) {
                    (SlotStatus::Cold, None) => 0,
                    (SlotStatus::Idle, None) => 1,
                    (_, None) => 2,
                    (_, Some(_)) => 3,
                };
                (class, std::cmp::Reverse(e.index), id.clone())
            })
            .collect();
        candidates.sort();
        candidates
            .into_iter()
            .take(n)
            .map(|(_, _, id)| id)
            .collect()
    }
}
