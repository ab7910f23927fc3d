//! The slot supervisor: starts one slot actor per slot and restarts them one-for-one.
//!
//! **Place in the tree.** Child of the root supervisor; parent of every slot actor.
//!
//! **Strategy.** One-for-one: a failed slot is restarted alone, after the backoff of
//! [`crate::restart`], and keeps its id. Only crash loops count towards a slot's limit —
//! processes that die before they ever became ready, `slot_restart.max_restarts` times
//! within `slot_restart.window`; a process that was healthy and got killed is always
//! restarted. A slot over its limit is given up (status `failed`, reason kept) rather than
//! taking healthy slots with it, and probed again with the long probe backoff until its
//! CLI starts; when **every** slot is given up this supervisor escalates by failing, and
//! the root decides.
//!
//! It also carries out the scheduler's sizing decisions: [`SlotSupervisorMsg::AddSlots`]
//! starts new slots, [`SlotSupervisorMsg::RetireSlots`] removes slots (each stops its own
//! process group first) and cleans their worktrees.
//!
//! Every failure is reported to the scheduler ([`SlotEvent::Down`]) so the task that
//! was running there gets a terminal state even if the slot could not report it itself.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::SlotId;
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::time::Instant;

use crate::config::PoolConfig;
use crate::events::{EventBus, PoolEvent};
use crate::restart::{Decision, FailureKind, RestartTracker, SlotFailure, child_exit};
use crate::slot::{SlotActor, SlotArgs, SlotMsg};
use crate::wire::{Healthy, SlotEvent, Uplinks};
use crate::worktree::Worktrees;

/// Behaviour of the slot supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct SlotSupervisorActor;

/// What the slot supervisor starts with.
#[derive(Clone)]
pub struct SlotSupervisorArgs {
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
    /// The slots to start.
    pub slots: Vec<SlotId>,
    /// Where its slots and it report (the scheduler, the ledger, the approval desk).
    pub up: Uplinks,
    /// With `--worktree`: the repository's slot worktrees.
    pub worktrees: Option<Arc<Worktrees>>,
    /// Where slot failures are published.
    pub events: EventBus,
    /// Where every task's stream-json events are kept, with a store.
    pub transcripts: Option<crate::store::transcripts::TranscriptSink>,
    /// With a store file: a task's prompt is written only once its start is committed.
    pub record_starts: bool,
}

impl fmt::Debug for SlotSupervisorArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlotSupervisorArgs")
            .field("slots", &self.slots)
            .finish_non_exhaustive()
    }
}

/// Messages the slot supervisor handles.
#[derive(Debug)]
pub enum SlotSupervisorMsg {
    /// A backoff or a probe delay ran out: start this slot again.
    RestartSlot(SlotId),
    /// A slot's process answered its warm-up: its CLI starts.
    SlotHealthy(Healthy),
    /// Start these new slots.
    AddSlots(Vec<SlotId>),
    /// Remove these slots: each stops its process group (a busy one after `grace` at most).
    RetireSlots {
        /// The slots.
        slots: Vec<SlotId>,
        /// How long a running task may still take.
        grace: Duration,
    },
    /// Stop every slot (killing their processes) and answer when done.
    Shutdown(RpcReplyPort<()>),
}

struct SlotEntry {
    actor: Option<ActorRef<SlotMsg>>,
    tracker: RestartTracker,
    restarts: u32,
    given_up: bool,
    /// Probes of a given-up slot so far (sets the probe backoff).
    probes: u32,
    retiring: bool,
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
        let initial = args.slots.clone();
        let mut state = SlotSupervisorState {
            slots: HashMap::new(),
            by_actor: HashMap::new(),
            stopping: false,
            args,
        };
        for slot in initial {
            state.add_slot(&myself, slot).await?;
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
                let wanted = state
                    .slots
                    .get(&slot)
                    .is_some_and(|e| !e.retiring && e.actor.is_none());
                if !state.stopping && wanted {
                    state.start_slot(&myself, slot).await?;
                }
            }
            SlotSupervisorMsg::SlotHealthy(Healthy(slot)) => {
                if let Some(e) = state.slots.get_mut(&slot) {
                    e.tracker.on_ready();
                    if e.given_up {
                        tracing::info!(%slot, probes = e.probes, "a given-up slot works again");
                    }
                    e.given_up = false;
                    e.probes = 0;
                }
            }
            SlotSupervisorMsg::AddSlots(slots) => {
                for slot in slots {
                    if !state.stopping {
                        state.add_slot(&myself, slot).await?;
                    }
                }
            }
            SlotSupervisorMsg::RetireSlots { slots, grace } => {
                for slot in slots {
                    state.retire(slot, grace).await;
                }
            }
            SlotSupervisorMsg::Shutdown(reply) => {
                state.stopping = true;
                let grace = state.args.config.kill_grace * 2 + Duration::from_secs(1);
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
        let Some((cell, reason, err)) = child_exit(event) else {
            return Ok(());
        };
        let Some(slot) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        if state.slots.get(&slot).is_some_and(|e| e.retiring) {
            state.removed(slot).await;
            return Ok(());
        }
        let kind = match &err {
            Some(_) => SlotFailure::kind_of(err.as_ref()),
            // A slot actor only stops by itself when it is removed: anything else is a bug
            // of the slot, not of the CLI.
            None => FailureKind::AfterReady,
        };
        state.on_slot_down(&myself, slot, reason, kind)
    }
}

impl SlotSupervisorState {
    /// Registers a new slot with the scheduler and starts it.
    async fn add_slot(
        &mut self,
        myself: &ActorRef<SlotSupervisorMsg>,
        slot: SlotId,
    ) -> Result<(), ActorProcessingErr> {
        self.slots.insert(
            slot.clone(),
            SlotEntry {
                actor: None,
                tracker: RestartTracker::new(self.args.config.slot_restart),
                restarts: 0,
                given_up: false,
                probes: 0,
                retiring: false,
            },
        );
        self.args
            .up
            .events
            .send_message(SlotEvent::Added { slot: slot.clone() })
            .map_err(|_| "the scheduler is gone")?;
        self.start_slot(myself, slot).await
    }

    /// Starts a slot actor; a refusal counts as a failure of that slot (and may escalate).
    async fn start_slot(
        &mut self,
        myself: &ActorRef<SlotSupervisorMsg>,
        slot: SlotId,
    ) -> Result<(), ActorProcessingErr> {
        let args = SlotArgs {
            slot: slot.clone(),
            config: self.args.config.clone(),
            up: self.args.up.clone(),
            supervisor: myself.get_derived(),
            worktrees: self.args.worktrees.clone(),
            transcripts: self.args.transcripts.clone(),
            record_starts: self.args.record_starts,
        };
        match Actor::spawn_linked(None, SlotActor, args, myself.get_cell()).await {
            Ok((actor, _join)) => {
                self.by_actor.insert(actor.get_id(), slot.clone());
                if let Some(e) = self.slots.get_mut(&slot) {
                    e.actor = Some(actor);
                }
                Ok(())
            }
            // The worktree could not be made, or the actor could not start: a start failure.
            Err(e) => self.on_slot_down(
                myself,
                slot,
                format!("the slot could not start: {e}"),
                FailureKind::StartFailed,
            ),
        }
    }

    async fn retire(&mut self, slot: SlotId, grace: Duration) {
        let Some(e) = self.slots.get_mut(&slot) else {
            let _ = self
                .args
                .up
                .events
                .send_message(SlotEvent::Removed { slot });
            return;
        };
        e.retiring = true;
        match &e.actor {
            Some(actor) => {
                let _ = actor.cast(SlotMsg::Retire { grace });
            }
            // Down (restarting or given up): nothing runs, it is removed now.
            None => self.removed(slot).await,
        }
    }

    /// A removed slot's actor is gone (and with it its process group): forget it.
    async fn removed(&mut self, slot: SlotId) {
        self.slots.remove(&slot);
        if let Some(w) = &self.args.worktrees
            && let Err(e) = w.remove_if_clean(&slot).await
        {
            tracing::warn!(%slot, error = %e, "could not remove the slot's worktree");
        }
        let _ = self
            .args
            .up
            .events
            .send_message(SlotEvent::Removed { slot });
    }

    fn on_slot_down(
        &mut self,
        myself: &ActorRef<SlotSupervisorMsg>,
        slot: SlotId,
        reason: String,
        kind: FailureKind,
    ) -> Result<(), ActorProcessingErr> {
        let probe = self.args.config.probe;
        let Some(entry) = self.slots.get_mut(&slot) else {
            return Ok(());
        };
        entry.actor = None;
        entry.restarts += 1;
        let decision = if entry.given_up && kind != FailureKind::AfterReady {
            // A probe that failed again: wait longer before the next one.
            entry.probes += 1;
            None
        } else {
            entry.given_up = false;
            Some(entry.tracker.on_failure(Instant::now().into_std(), kind))
        };
        let restarts = entry.restarts;
        let (delay, restarting, reason) = match decision {
            Some(Decision::Restart { delay, attempt }) => {
                tracing::warn!(%slot, %reason, ?kind, attempt, ?delay, "slot failed; restarting");
                (delay, true, reason)
            }
            Some(Decision::GiveUp { restarts_in_window }) => {
                entry.given_up = true;
                entry.probes = 1;
                let policy = self.args.config.slot_restart;
                let reason = format!(
                    "{slot} exceeded its restart limit ({restarts_in_window} start failures within {}, none ready); last failure: {reason}",
                    humantime::format_duration(policy.window)
                );
                let delay = probe.delay(1);
                tracing::error!(%slot, %reason, probe_in = ?delay, "slot given up; it will be probed");
                (delay, false, reason)
            }
            None => {
                let delay = probe.delay(entry.probes);
                tracing::warn!(%slot, %reason, probe_in = ?delay, "probe of a given-up slot failed");
                (delay, false, reason)
            }
        };
        self.args.events.publish(PoolEvent::SlotFailed {
            id: slot.clone(),
            reason: reason.clone(),
            kind,
            restarting,
        });
        let _ = self.args.up.events.send_message(SlotEvent::Down {
            slot: slot.clone(),
            reason: reason.clone(),
            restarts,
            restarting,
        });
        let again = slot.clone();
        myself.send_after(delay, move || SlotSupervisorMsg::RestartSlot(again));
        let live: Vec<&SlotEntry> = self.slots.values().filter(|e| !e.retiring).collect();
        if !restarting && !live.is_empty() && live.iter().all(|e| e.given_up) {
            // Every slot is down: escalate to the root supervisor.
            return Err(format!("every slot exceeded its restart limit; {reason}").into());
        }
        Ok(())
    }
}

impl From<Healthy> for SlotSupervisorMsg {
    fn from(n: Healthy) -> Self {
        SlotSupervisorMsg::SlotHealthy(n)
    }
}

impl TryFrom<SlotSupervisorMsg> for Healthy {
    type Error = SlotSupervisorMsg;
    fn try_from(m: SlotSupervisorMsg) -> Result<Self, SlotSupervisorMsg> {
        match m {
            SlotSupervisorMsg::SlotHealthy(n) => Ok(n),
            other => Err(other),
        }
    }
}
