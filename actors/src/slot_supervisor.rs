//! The slot supervisor: starts one slot actor per slot and restarts them one-for-one.
//!
//! **Place in the tree.** Child of the root supervisor; parent of every slot actor.
//!
//! **Strategy.** One-for-one: a failed slot is restarted alone, after the backoff of
//! [`crate::restart`], and keeps its id. Each slot may restart at most
//! `slot_restart.max_restarts` times within `slot_restart.window`. A slot over its limit is
//! left down (status `failed`, reason kept) rather than taking healthy slots with it; when
//! every slot is down this supervisor escalates by failing, and the root decides.
//!
//! Every failure is reported to the scheduler ([`SchedulerMsg::SlotDown`]) so the task that
//! was running there gets a terminal state even if the slot could not report it itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use claude_pool_protocol::SlotId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;

use crate::config::PoolConfig;
use crate::restart::{Decision, RestartTracker, child_exit};
use crate::scheduler::SchedulerMsg;
use crate::slot::{SlotActor, SlotArgs, SlotMsg};

/// Behaviour of the slot supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotSupervisorActor;

/// What the slot supervisor starts with.
#[derive(Clone)]
pub struct SlotSupervisorArgs {
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
    /// The scheduler, handed to every slot.
    pub scheduler: ActorRef<SchedulerMsg>,
}

impl fmt::Debug for SlotSupervisorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotSupervisorArgs").finish_non_exhaustive()
    }
}

/// Messages the slot supervisor handles.
#[derive(Debug)]
pub enum SlotSupervisorMsg {
    /// A backoff ran out: start this slot again.
    RestartSlot(SlotId),
    /// Stop every slot (killing their processes) and answer when done.
    Shutdown(RpcReplyPort<()>),
}

struct SlotEntry {
    actor: Option<ActorRef<SlotMsg>>,
    tracker: RestartTracker,
    restarts: u32,
    given_up: bool,
}

/// The slot supervisor's state.
pub struct SlotSupervisorState {
    args: SlotSupervisorArgs,
    slots: HashMap<SlotId, SlotEntry>,
    by_actor: HashMap<ActorId, SlotId>,
    stopping: bool,
}

impl fmt::Debug for SlotSupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotSupervisorState")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Actor for SlotSupervisorActor {
    type Msg = SlotSupervisorMsg;
    type State = SlotSupervisorState;
    type Arguments = SlotSupervisorArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SlotSupervisorMsg>,
        args: SlotSupervisorArgs,
    ) -> Result<SlotSupervisorState, ActorProcessingErr> {
        let mut state = SlotSupervisorState {
            slots: HashMap::new(),
            by_actor: HashMap::new(),
            stopping: false,
            args,
        };
        for index in 0..state.args.config.slots {
            let slot = SlotId::from_index(index);
            state.slots.insert(
                slot.clone(),
                SlotEntry {
                    actor: None,
                    tracker: RestartTracker::new(state.args.config.slot_restart),
                    restarts: 0,
                    given_up: false,
                },
            );
            state
                .args
                .scheduler
                .cast(SchedulerMsg::SlotAdded { slot: slot.clone() })?;
            state.start_slot(&myself, slot).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<SlotSupervisorMsg>,
        msg: SlotSupervisorMsg,
        state: &mut SlotSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SlotSupervisorMsg::RestartSlot(slot) => {
                if !state.stopping {
                    state.start_slot(&myself, slot).await?;
                }
            }
            SlotSupervisorMsg::Shutdown(reply) => {
                state.stopping = true;
                let grace = state.args.config.kill_grace * 2 + std::time::Duration::from_secs(1);
                myself
                    .stop_children_and_wait(Some("pool shutdown".into()), Some(grace))
                    .await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SlotSupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SlotSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, reason)) = child_exit(event) else {
            return Ok(());
        };
        let Some(slot) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        state.on_slot_down(&myself, slot, reason)
    }
}

impl SlotSupervisorState {
    /// Starts a slot actor; a refusal counts as a failure of that slot (and may escalate).
    async fn start_slot(
        &mut self,
        myself: &ActorRef<SlotSupervisorMsg>,
        slot: SlotId,
    ) -> Result<(), ActorProcessingErr> {
        let args = SlotArgs {
            slot: slot.clone(),
            config: self.args.config.clone(),
            scheduler: self.args.scheduler.clone(),
        };
        match Actor::spawn_linked(None, SlotActor, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                self.by_actor.insert(actor.get_id(), slot.clone());
                if let Some(e) = self.slots.get_mut(&slot) {
                    e.actor = Some(actor);
                }
                Ok(())
            }
            // pre_start only queues the first spawn, so this is rare; treat it as a failure.
            Err(e) => {
                self.on_slot_down(myself, slot, format!("the slot actor could not start: {e}"))
            }
        }
    }

    fn on_slot_down(
        &mut self,
        myself: &ActorRef<SlotSupervisorMsg>,
        slot: SlotId,
        reason: String,
    ) -> Result<(), ActorProcessingErr> {
        let Some(entry) = self.slots.get_mut(&slot) else {
            return Ok(());
        };
        entry.actor = None;
        match entry.tracker.on_failure(Instant::now().into_std()) {
            Decision::Restart { delay, attempt } => {
                entry.restarts += 1;
                tracing::warn!(%slot, %reason, attempt, delay = ?delay, "slot failed; restarting");
                let _ = self.args.scheduler.cast(SchedulerMsg::SlotDown {
                    slot: slot.clone(),
                    reason,
                    restarts: entry.restarts,
                    restarting: true,
                });
                let again = slot.clone();
                myself.send_after(delay, move || SlotSupervisorMsg::RestartSlot(again));
                Ok(())
            }
            Decision::GiveUp { restarts_in_window } => {
                entry.given_up = true;
                let policy = self.args.config.slot_restart;
                let reason = format!(
                    "{slot} exceeded its restart limit ({restarts_in_window} restarts within {}); last failure: {reason}",
                    humantime::format_duration(policy.window)
                );
                tracing::error!(%slot, %reason, "slot given up");
                let _ = self.args.scheduler.cast(SchedulerMsg::SlotDown {
                    slot: slot.clone(),
                    reason: reason.clone(),
                    restarts: entry.restarts,
                    restarting: false,
                });
                if self.slots.values().all(|e| e.given_up) {
                    // Every slot is down: escalate to the root supervisor.
                    return Err(format!("every slot exceeded its restart limit; {reason}").into());
                }
                Ok(())
            }
        }
    }
}
