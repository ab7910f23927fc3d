//! The root supervisor: the top of a pool's tree.
//!
//! **Children**, started in this order: the scheduler, then the slot supervisor. Front-ends
//! (the MCP server) attach themselves to it later.
//!
//! **Strategy.**
//! - Scheduler failure → fail-stop: it holds every task's state and a fresh one would lose
//!   tasks silently, so the pool stops (slots killed, health `Stopped` with the reason).
//! - Slot supervisor failure (every slot over its restart limit) → the running tasks fail,
//!   and the slot supervisor is restarted after a backoff with fresh slots, at most
//!   `supervisor_restart.max_restarts` times within `supervisor_restart.window`. Beyond that
//!   the pool halts: pending and new tasks fail with the last reason.
//! - A front-end's exit is logged and never restarted (its transport is gone).
//!
//! **Shutdown order** (on [`RootMsg::Shutdown`]): the scheduler ends every open task and
//! refuses new ones; the slot supervisor stops every slot, each of which kills its process
//! group (SIGTERM, SIGKILL after the grace) and waits for the reaper; then the scheduler and
//! the root stop.

use std::fmt;
use std::sync::Arc;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::PoolConfig;
use crate::restart::{Decision, RestartTracker, child_exit};
use crate::scheduler::{SchedulerActor, SchedulerArgs, SchedulerMsg};
use crate::slot_supervisor::{SlotSupervisorActor, SlotSupervisorArgs, SlotSupervisorMsg};

/// Whether a pool still runs tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolHealth {
    /// Running.
    Running,
    /// Stopped, with the reason.
    Stopped(String),
}

/// Behaviour of the root supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RootActor;

/// What the root starts with.
#[derive(Clone)]
pub struct RootArgs {
    /// The pool's configuration.
    pub config: Arc<PoolConfig>,
    /// Where the pool's health is published.
    pub health: Arc<watch::Sender<PoolHealth>>,
}

impl fmt::Debug for RootArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootArgs").finish_non_exhaustive()
    }
}

/// Messages the root handles.
#[derive(Debug)]
pub enum RootMsg {
    /// The scheduler's reference.
    GetScheduler(RpcReplyPort<ActorRef<SchedulerMsg>>),
    /// A backoff ran out: start the slot supervisor again.
    RestartSlotSupervisor,
    /// Stop the whole pool in order; answered when every process is gone.
    Shutdown(RpcReplyPort<()>),
}

/// The root's state.
pub struct RootState {
    args: RootArgs,
    scheduler: ActorRef<SchedulerMsg>,
    slot_supervisor: Option<ActorRef<SlotSupervisorMsg>>,
    tracker: RestartTracker,
    stopping: bool,
}

impl fmt::Debug for RootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootState")
            .field("stopping", &self.stopping)
            .finish_non_exhaustive()
    }
}

impl Actor for RootActor {
    type Msg = RootMsg;
    type State = RootState;
    type Arguments = RootArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<RootMsg>,
        args: RootArgs,
    ) -> Result<RootState, ActorProcessingErr> {
        let (scheduler, _) = Actor::spawn_linked(
            None,
            SchedulerActor,
            SchedulerArgs {
                config: args.config.clone(),
            },
            myself.get_cell(),
        )
        .await?;
        let mut state = RootState {
            tracker: RestartTracker::new(args.config.supervisor_restart),
            args,
            scheduler,
            slot_supervisor: None,
            stopping: false,
        };
        state.start_slot_supervisor(&myself).await?;
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::GetScheduler(reply) => {
                let _ = reply.send(state.scheduler.clone());
            }
            RootMsg::RestartSlotSupervisor => {
                if !state.stopping
                    && let Err(e) = state.start_slot_supervisor(&myself).await
                {
                    state.halt(format!("the slot supervisor could not be restarted: {e}"));
                }
            }
            RootMsg::Shutdown(reply) => {
                state.shutdown().await;
                let _ = reply.send(());
                myself.stop(Some("shutdown".into()));
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<RootMsg>,
        event: SupervisionEvent,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, reason)) = child_exit(event) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        let id = cell.get_id();
        if id == state.scheduler.get_id() {
            tracing::error!(%reason, "the scheduler failed; stopping the pool");
            let why = format!("the scheduler failed: {reason}");
            state
                .args
                .health
                .send_replace(PoolHealth::Stopped(why.clone()));
            state.stopping = true;
            if let Some(sup) = state.slot_supervisor.take() {
                let _ = ractor::call!(sup, SlotSupervisorMsg::Shutdown);
            }
            myself.stop(Some(why));
        } else if state
            .slot_supervisor
            .as_ref()
            .is_some_and(|s| s.get_id() == id)
        {
            state.slot_supervisor = None;
            let _ = state.scheduler.cast(SchedulerMsg::AllSlotsDown {
                reason: reason.clone(),
            });
            match state.tracker.on_failure(Instant::now().into_std()) {
                Decision::Restart { delay, attempt } => {
                    tracing::error!(%reason, attempt, ?delay, "the slot supervisor failed; restarting it");
                    myself.send_after(delay, || RootMsg::RestartSlotSupervisor);
                }
                Decision::GiveUp { .. } => state.halt(reason),
            }
        } else {
            tracing::info!(%reason, "a front-end stopped");
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<RootMsg>,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        state.shutdown().await;
        Ok(())
    }
}

impl RootState {
    async fn start_slot_supervisor(
        &mut self,
        myself: &ActorRef<RootMsg>,
    ) -> Result<(), ActorProcessingErr> {
        let args = SlotSupervisorArgs {
            config: self.args.config.clone(),
            scheduler: self.scheduler.clone(),
        };
        let (sup, _) =
            Actor::spawn_linked(None, SlotSupervisorActor, args, myself.get_cell()).await?;
        self.slot_supervisor = Some(sup);
        Ok(())
    }

    fn halt(&mut self, reason: String) {
        tracing::error!(%reason, "the pool cannot keep slots alive; halting");
        self.args
            .health
            .send_replace(PoolHealth::Stopped(reason.clone()));
        let _ = self.scheduler.cast(SchedulerMsg::Halt { reason });
    }

    async fn shutdown(&mut self) {
        if self.stopping && self.slot_supervisor.is_none() {
            return;
        }
        self.stopping = true;
        let _ = ractor::call!(self.scheduler, SchedulerMsg::Shutdown);
        if let Some(sup) = self.slot_supervisor.take() {
            let _ = ractor::call!(sup, SlotSupervisorMsg::Shutdown);
            sup.stop(None);
        }
        if matches!(*self.args.health.borrow(), PoolHealth::Running) {
            self.args
                .health
                .send_replace(PoolHealth::Stopped("the pool is shut down".into()));
        }
        self.scheduler.stop(None);
    }
}
