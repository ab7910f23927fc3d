//! What a host's agent relays: the scheduler's commands to its slots (and to itself), and
//! its slots' events, spend and questions to the scheduler, as frames.

use std::time::Duration;

use claude_pool_protocol::SlotId;
use tokio::sync::mpsc;

use super::{HostMsg, HostState};
use crate::cluster::frame::{Command, Event, HostCommand};
use crate::slot_supervisor::SlotSupervisorMsg;
use crate::wire::{ApprovalNote, SlotCommand, SlotEvent};

impl HostState {
    /// The scheduler sizes this host.
    pub(super) fn on_host_command(&mut self, command: HostCommand) {
        let Some(sup) = self.supervisor.clone() else {
            return;
        };
        match command {
            HostCommand::AddSlots { slots } => {
                let prefix = format!("{}/", self.args.name);
                let slots: Vec<SlotId> = slots
                    .into_iter()
                    .filter(|s| s.0.starts_with(&prefix))
                    .collect();
                tracing::info!(slots = ?slots, "the scheduler adds slots to this host");
                let _ = sup.cast(SlotSupervisorMsg::AddSlots(slots));
            }
            HostCommand::RetireSlots { count, grace_ms } => {
                // Idle ones first, then the rest; the newest first within each.
                let mut all: Vec<(bool, std::cmp::Reverse<usize>, SlotId)> = self
                    .statuses
                    .iter()
                    .map(|(id, st)| {
                        let index = id.0.rsplit('-').next().and_then(|n| n.parse().ok());
                        (
                            *st != claude_pool_protocol::SlotStatus::Idle,
                            std::cmp::Reverse(index.unwrap_or(0)),
                            id.clone(),
                        )
                    })
                    .collect();
                all.sort();
                let slots: Vec<SlotId> = all.into_iter().take(count).map(|(_, _, id)| id).collect();
                tracing::info!(slots = ?slots, "the scheduler removes slots of this host");
                for s in &slots {
                    self.statuses.remove(s);
                }
                let _ = sup.cast(SlotSupervisorMsg::RetireSlots {
                    slots: slots.clone(),
                    grace: Duration::from_millis(grace_ms),
                });
                self.tell_scheduler(Event::Retiring { slots });
            }
        }
    }

    pub(super) fn on_command(&mut self, slot: SlotId, command: Command) {
        let Some(link) = self.links.get(&slot).cloned() else {
            if let Command::Run(a) = command {
                self.tell_scheduler(Event::Rejected {
                    slot,
                    task: a.task,
                    died_before_turn: None,
                });
            }
            return;
        };
        let command = match command {
            Command::Run(a) => {
                let task = a.task.clone();
                let progress = a.progress.then(|| {
                    let (tx, mut rx) = mpsc::unbounded_channel();
                    let me = self.myself.clone();
                    let t = task.clone();
                    tokio::spawn(async move {
                        while let Some(p) = rx.recv().await {
                            if me.cast(HostMsg::Progress(t.clone(), p)).is_err() {
                                break;
                            }
                        }
                    });
                    tx
                });
                let assignment = a.into_assignment(progress);
                if link.send(SlotCommand::Run(assignment)).is_err() {
                    self.tell_scheduler(Event::Rejected {
                        slot,
                        task,
                        died_before_turn: None,
                    });
                }
                return;
            }
            Command::StartRecorded { task, result } => SlotCommand::StartRecorded { task, result },
            Command::Cancel {
                task,
                status,
                reason,
            } => SlotCommand::Cancel {
                task,
                status,
                reason,
            },
            Command::Release => SlotCommand::Release,
            Command::Wake => SlotCommand::Wake,
            Command::Answered(a) => {
                if let Some(to) = self.answers.remove(&a.request_id) {
                    let _ = to.send_message(a);
                }
                return;
            }
        };
        let _ = link.send(command);
    }

    pub(super) fn on_slot(&mut self, event: SlotEvent) {
        let event = match event {
            SlotEvent::Added { slot } => {
                self.statuses
                    .insert(slot.clone(), claude_pool_protocol::SlotStatus::Starting);
                Event::Added { slot }
            }
            SlotEvent::Ready {
                slot,
                link,
                pid,
                turns,
                worktree,
                cwd,
            } => {
                self.links.insert(slot.clone(), link);
                if let Some(st) = self.statuses.get_mut(&slot) {
                    *st = claude_pool_protocol::SlotStatus::Idle;
                }
                Event::Ready {
                    slot,
                    pid,
                    turns,
                    worktree,
                    cwd,
                }
            }
            SlotEvent::Changed {
                slot,
                status,
                pid,
                turns,
            } => {
                if let Some(st) = self.statuses.get_mut(&slot) {
                    *st = status;
                }
                Event::Changed {
                    slot,
                    status,
                    pid,
                    turns,
                }
            }
            SlotEvent::Removed { slot } => {
                self.links.remove(&slot);
                self.statuses.remove(&slot);
                Event::Removed { slot }
            }
            SlotEvent::Down {
                slot,
                reason,
                restarts,
                restarting,
            } => {
                self.links.remove(&slot);
                Event::Down {
                    slot,
                    reason,
                    restarts,
                    restarting,
                }
            }
            SlotEvent::Lost { .. } => return,
            SlotEvent::Started {
                task,
                slot,
                started_at: _,
                ack,
            } => Event::Started {
                task,
                slot,
                ack: ack.is_some(),
            },
            SlotEvent::Rejected {
                slot,
                assignment,
                died_before_turn,
            } => Event::Rejected {
                slot,
                task: assignment.task,
                died_before_turn,
            },
            SlotEvent::RateLimited {
                slot,
                assignment,
                error,
            } => Event::RateLimited {
                slot,
                task: assignment.task,
                error,
            },
            SlotEvent::ApiPressure { slot, status } => Event::ApiPressure { slot, status },
            SlotEvent::ApiWindows(info) => Event::ApiWindows(info),
            SlotEvent::Finished {
                task,
                slot,
                outcome,
            } => Event::Finished {
                task,
                slot,
                started_ms_ago: outcome
                    .started_at
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                outcome: Box::new(outcome),
            },
        };
        self.tell_scheduler(event);
    }

    pub(super) fn on_approval(&mut self, note: ApprovalNote) {
        let event = match note {
            ApprovalNote::Ask {
                request,
                slot,
                listener: _,
                timeout,
            } => {
                self.answers.insert(request.request_id.clone(), slot);
                Event::Ask {
                    request: Box::new(request),
                    timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
                }
            }
            ApprovalNote::Decided { outcome, by } => Event::Decided { outcome, by },
            ApprovalNote::TaskEnded(task) => Event::TaskEnded { task },
            ApprovalNote::Withdrawn(request_id) => Event::Withdrawn { request_id },
        };
        self.tell_scheduler(event);
    }
}
