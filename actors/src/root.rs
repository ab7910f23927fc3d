//! The root supervisor: the top of a pool's tree.
//!
//! **Children**, started in this order: the store, the budget ledger, the approval desk, the
//! context table, the scheduler, the slot supervisor, the chain supervisor. Front-ends (the MCP server) attach
//! themselves to it later.
//!
//! **Strategy.**
//! - Ledger, approval desk, context table, scheduler or chain supervisor failure →
//!   fail-stop: each holds state a fresh one would silently lose (spend, the questions slots
//!   wait on, the table, every task, every chain), so
//!   the pool stops (slots killed, health `Stopped` with the reason).
//! - Slot supervisor failure (every slot over its restart limit) → the running tasks fail,
//!   and the slot supervisor is restarted after a backoff with the pool's current slots, at
//!   most `supervisor_restart.max_restarts` times within `supervisor_restart.window`.
//!   Beyond that the pool halts — open tasks fail with the last reason and new work is
//!   refused — and is probed: the slot supervisor is started again after the probe
//!   backoff, and again, until a slot starts; then the pool accepts work again.
//! - A front-end's exit is logged and never restarted (its transport is gone).
//!
//! It also forwards the scheduler's sizing decisions to the current slot supervisor, and
//! stops the slots for good after a drain.
//!
//! **Shutdown order** (on [`RootMsg::Shutdown`]): the chain supervisor cancels every chain;
//! the scheduler ends every open task and refuses new ones; the slot supervisor stops every
//! slot, each of which kills its process group (SIGTERM, SIGKILL after the grace) and waits
//! for the reaper; then the other children stop, the store records the run's end and
//! empties its WAL, and the root stops.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::SlotId;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tokio::sync::watch;
use tokio::time::Instant;

/// How often a server on a project store looks for servers of the project that died.
const ADOPT_EVERY: Duration = Duration::from_secs(10);

use crate::approvals::{ApprovalsActor, ApprovalsArgs, ApprovalsMsg};
use crate::chains::{ChainSupervisorActor, ChainSupervisorArgs, ChainSupervisorMsg};
use crate::config::PoolConfig;
use crate::context::{ContextActor, ContextArgs, ContextMsg};
use crate::events::EventBus;
use crate::ledger::{LedgerActor, LedgerArgs, LedgerMsg};
use crate::restart::{Decision, FailureKind, RestartTracker, child_exit};
use crate::scheduler::{SchedulerActor, SchedulerArgs, SchedulerMsg};
use crate::slot_supervisor::{SlotSupervisorActor, SlotSupervisorArgs, SlotSupervisorMsg};
use crate::store::actor::{StoreActor, StoreMsg};
use crate::store::durable::Durable;
use crate::wire::{SizingNote, SlotEvent, Uplinks};
use crate::worktree::Worktrees;

/// Whether a pool still runs tasks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolHealth {
    /// Running.
    Running,
    /// No slot can start; the pool is probed and comes back by itself once one does.
    Halted(String),
    /// Stopped for good, with the reason.
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
    /// The pool's event bus.
    pub events: EventBus,
    /// With `--worktree`: the repository's slot worktrees.
    pub worktrees: Option<Arc<Worktrees>>,
    /// The store, transcripts and projects.
    pub durable: Durable,
}

impl fmt::Debug for RootArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootArgs").finish_non_exhaustive()
    }
}

/// The actors an embedding handle talks to.
#[derive(Debug, Clone)]
pub struct PoolRefs {
    /// Tasks.
    pub scheduler: ActorRef<SchedulerMsg>,
    /// Spend and budget.
    pub ledger: ActorRef<LedgerMsg>,
    /// The shared context table.
    pub context: ActorRef<ContextMsg>,
    /// Chains.
    pub chains: ActorRef<ChainSupervisorMsg>,
    /// Permission questions waiting for a person.
    pub approvals: ActorRef<ApprovalsMsg>,
}

/// Messages the root handles.
#[derive(Debug)]
pub enum RootMsg {
    /// The children's references.
    GetRefs(RpcReplyPort<PoolRefs>),
    /// On a project store: take over the work of the project's servers that died.
    AdoptOrphans,
    /// A backoff or a probe delay ran out: start the slot supervisor again.
    RestartSlotSupervisor,
    /// The scheduler's sizing decisions.
    Sizing(SizingNote),
    /// Stop every slot for good (after a drain); answered when their processes are gone.
    StopSlots(RpcReplyPort<()>),
    /// A backoff ran out: start the hosts actor again (it failed).
    #[cfg(feature = "cluster")]
    RestartHosts,
    /// The hosts actor now, if the pool takes hosts and it runs.
    #[cfg(feature = "cluster")]
    Hosts(RpcReplyPort<Option<ActorRef<crate::cluster::hosts::HostsMsg>>>),
    /// Stop the whole pool in order; answered when every process is gone.
    Shutdown(RpcReplyPort<()>),
}

/// The root's state.
pub struct RootState {
    args: RootArgs,
    refs: PoolRefs,
    slot_supervisor: Option<ActorRef<SlotSupervisorMsg>>,
    /// The store actor, stopped last (after a flush).
    store: Option<ActorRef<StoreMsg>>,
    tracker: RestartTracker,
    /// Set while the pool is halted; counts the probes so far.
    probes: Option<u32>,
    /// After a drain the slots stay stopped.
    slots_stopped: bool,
    stopping: bool,
    /// With `listen_for_hosts`: the actor that takes slot hosts, and its restarts.
    #[cfg(feature = "cluster")]
    hosts: Option<ActorRef<crate::cluster::hosts::HostsMsg>>,
    #[cfg(feature = "cluster")]
    hosts_tracker: RestartTracker,
}

impl fmt::Debug for RootState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootState")
            .field("stopping", &self.stopping)
            .field("probes", &self.probes)
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
        let cell = myself.get_cell();
        let store = match &args.durable.writer {
            Some(w) => Some(
                Actor::spawn_linked(None, StoreActor, w.clone(), cell.clone())
                    .await?
                    .0,
            ),
            None => None,
        };
        let restored = args.durable.restored.clone();
        let (ledger, _) = Actor::spawn_linked(
            None,
            LedgerActor,
            LedgerArgs {
                cap: args.config.budget_usd,
                events: args.events.clone(),
                period: match args.config.budget_period.window(crate::store::db::now_ms()) {
                    Some((start, end)) if args.durable.window_spend_usd.is_some() => {
                        crate::ledger::book::Period {
                            name: args.config.budget_period.name(),
                            start_ms: start,
                            end_ms: Some(end),
                        }
                    }
                    _ => crate::ledger::book::Period {
                        name: "run",
                        start_ms: restored.run.started_at_ms,
                        end_ms: None,
                    },
                },
                budget_period: args.config.budget_period,
                window_spent: args.durable.window_spend_usd.unwrap_or(restored.spend_usd),
                run_spent: restored.spend_usd,
                token_cap: args.config.budget_tokens,
                window_tokens: args.durable.window_tokens.unwrap_or(restored.tokens),
                lifetime_before: restored.lifetime_before.spend_usd,
                store: args.durable.writer.clone(),
            },
            cell.clone(),
        )
        .await?;
        let (approvals, _) = Actor::spawn_linked(
            None,
            ApprovalsActor,
            ApprovalsArgs {
                events: args.events.clone(),
            },
            cell.clone(),
        )
        .await?;
        let (preamble_tx, preamble_rx) = watch::channel(None);
        let (context, _) = Actor::spawn_linked(
            None,
            ContextActor,
            ContextArgs {
                preamble: preamble_tx,
                events: args.events.clone(),
                store: args.durable.writer.clone(),
                restored: restored.context.clone(),
            },
            cell.clone(),
        )
        .await?;
        let (scheduler, _) = Actor::spawn_linked(
            None,
            SchedulerActor,
            SchedulerArgs {
                config: args.config.clone(),
                sizing: myself.get_derived(),
                ledger: ledger.clone(),
                preamble: preamble_rx,
                events: args.events.clone(),
                store: args.durable.writer.clone(),
                restored,
                projects: args.durable.projects.clone(),
            },
            cell.clone(),
        )
        .await?;
        ledger.cast(LedgerMsg::Attach(scheduler.get_derived()))?;
        let (chains, _) = Actor::spawn_linked(
            None,
            ChainSupervisorActor,
            ChainSupervisorArgs {
                scheduler: scheduler.clone(),
                events: args.events.clone(),
                max_finished: args.config.max_finished_tasks,
                store: args.durable.writer.clone(),
            },
            cell,
        )
        .await?;
        let mut state = RootState {
            tracker: RestartTracker::new(args.config.supervisor_restart),
            args,
            refs: PoolRefs {
                scheduler,
                ledger,
                context,
                chains,
                approvals,
            },
            slot_supervisor: None,
            store,
            probes: None,
            slots_stopped: false,
            stopping: false,
            #[cfg(feature = "cluster")]
            hosts: None,
            #[cfg(feature = "cluster")]
            hosts_tracker: RestartTracker::new(
                crate::restart::RestartPolicy::SLOT_SUPERVISOR_DEFAULT,
            ),
        };

        // Before any slot: a pool that cannot take its hosts starts no process.
        #[cfg(feature = "cluster")]
        if state.args.config.hosts.is_some() {
            state.start_hosts(&myself).await?;
        }
        let initial: Vec<SlotId> = (0..state.args.config.slots)
            .map(SlotId::from_index)
            .collect();
        state.start_slot_supervisor(&myself, initial).await?;
        if matches!(
            state.args.config.store,
            Some(crate::config::StoreLocation::Shared(_))
        ) {
            myself.send_after(ADOPT_EVERY, || RootMsg::AdoptOrphans);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<RootMsg>,
        msg: RootMsg,
        state: &mut RootState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RootMsg::GetRefs(reply) => {
                let _ = reply.send(state.refs.clone());
            }
            RootMsg::AdoptOrphans => {
                if !state.stopping {
                    state.adopt_orphans();
                    myself.send_after(ADOPT_EVERY, || RootMsg::AdoptOrphans);
                }
            }
            RootMsg::RestartSlotSupervisor => {
                if state.stopping || state.slots_stopped || state.slot_supervisor.is_some() {
                    return Ok(());
                }
                let slots =
                    ractor::call!(state.refs.scheduler, SchedulerMsg::SlotIds).unwrap_or_default();
                if let Err(e) = state.start_slot_supervisor(&myself, slots).await {
                    let why = format!("the slot supervisor could not be restarted: {e}");
                    state.on_slot_supervisor_failed(&myself, why);
                }
            }
            RootMsg::Sizing(SizingNote::Add(slots)) => {
                // Without a supervisor, they start with the pool's slots when it comes back.
                if let Some(sup) = &state.slot_supervisor {
                    let _ = sup.cast(SlotSupervisorMsg::AddSlots(slots));
                }
            }
            RootMsg::Sizing(SizingNote::Retire { slots, grace }) => match &state.slot_supervisor {
                Some(sup) => {
                    let _ = sup.cast(SlotSupervisorMsg::RetireSlots { slots, grace });
                }
                None => {
                    // Nothing runs on them while their supervisor is down.
                    for slot in slots {
                        let _ = state
                            .refs
                            .scheduler
                            .cast(SchedulerMsg::Slot(SlotEvent::Removed { slot }));
                    }
                }
            },
            RootMsg::Sizing(SizingNote::Recovered) => {
                if state.probes.take().is_some() {
                    tracing::info!("the pool works again");
                    state.tracker = RestartTracker::new(state.args.config.supervisor_restart);
                    state.args.health.send_replace(PoolHealth::Running);
                }
            }
            RootMsg::StopSlots(reply) => {
                state.slots_stopped = true;
                if let Some(sup) = state.slot_supervisor.take() {
                    let _ = ractor::call!(sup, SlotSupervisorMsg::Shutdown);
                    sup.stop(Some("the pool was drained".into()));
                }
                let _ = state.refs.scheduler.cast(SchedulerMsg::SlotsStopped);
                let _ = reply.send(());
            }
            #[cfg(feature = "cluster")]
            RootMsg::RestartHosts => {
                if !state.stopping
                    && state.hosts.is_none()
                    && let Err(e) = state.start_hosts(&myself).await
                {
                    state.on_hosts_failed(&myself, format!("it could not start again: {e}"));
                }
            }
            #[cfg(feature = "cluster")]
            RootMsg::Hosts(reply) => {
                let _ = reply.send(state.hosts.clone());
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
        let Some((cell, reason, _)) = child_exit(event) else {
            return Ok(());
        };
        if state.stopping {
            return Ok(());
        }
        let id = cell.get_id();
        #[cfg(feature = "cluster")]
        if state.hosts.as_ref().is_some_and(|h| h.get_id() == id) {
            state.hosts = None;
            state.on_hosts_failed(&myself, reason);
            return Ok(());
        }
        let refs = &state.refs;
        let essential = [
            (refs.scheduler.get_id(), "the scheduler"),
            (refs.ledger.get_id(), "the budget ledger"),
            (refs.context.get_id(), "the context table"),
            (refs.chains.get_id(), "the chain supervisor"),
            (refs.approvals.get_id(), "the approval desk"),
        ];
        if let Some((_, name)) = essential.iter().find(|(a, _)| *a == id) {
            tracing::error!(%reason, "{name} failed; stopping the pool");
            let why = format!("{name} failed: {reason}");
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
            if state.slots_stopped {
                return Ok(());
            }
            let _ = state.refs.scheduler.cast(SchedulerMsg::AllSlotsDown {
                reason: reason.clone(),
            });
            state.on_slot_supervisor_failed(&myself, reason);
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

#[cfg(feature = "cluster")]
impl RootState {
    /// Starts the actor that takes slot hosts, linked here.
    async fn start_hosts(&mut self, myself: &ActorRef<RootMsg>) -> Result<(), ActorProcessingErr> {
        let Some((listen, options)) = self.args.config.hosts.clone() else {
            return Ok(());
        };
        let args = crate::cluster::hosts::HostsArgs {
            listen,
            options,
            up: Uplinks {
                events: self.refs.scheduler.get_derived(),
                spend: self.refs.ledger.get_derived(),
                approvals: self.refs.approvals.get_derived(),
            },
            record_starts: self
                .args
                .durable
                .writer
                .as_ref()
                .is_some_and(|w| w.path().is_some()),
            transcripts: self.args.durable.sink.clone(),
            grace: self.args.config.scale_down_grace,
        };
        let (hosts, _) = Actor::spawn_linked(
            None,
            crate::cluster::hosts::HostsActor,
            args,
            myself.get_cell(),
        )
        .await?;
        self.hosts = Some(hosts);
        Ok(())
    }

    /// The hosts actor failed (its hosts are lost with it): start it again after a backoff,
    /// or, past its restart limit, leave the pool to its own slots.
    fn on_hosts_failed(&mut self, myself: &ActorRef<RootMsg>, reason: String) {
        match self
            .hosts_tracker
            .on_failure(std::time::Instant::now(), FailureKind::StartFailed)
        {
            Decision::Restart { delay, attempt } => {
                tracing::warn!(%reason, attempt, ?delay, "the hosts actor failed; starting it again");
                myself.send_after(delay, || RootMsg::RestartHosts);
            }
            Decision::GiveUp { restarts_in_window } => {
                tracing::error!(%reason, restarts_in_window, "the hosts actor keeps failing; the pool runs on its own slots");
            }
        }
    }
}

impl RootState {
    async fn start_slot_supervisor(
        &mut self,
        myself: &ActorRef<RootMsg>,
        slots: Vec<SlotId>,
    ) -> Result<(), ActorProcessingErr> {
        let args = SlotSupervisorArgs {
            config: self.args.config.clone(),
            slots,
            up: Uplinks {
                events: self.refs.scheduler.get_derived(),
                spend: self.refs.ledger.get_derived(),
                approvals: self.refs.approvals.get_derived(),
            },
            worktrees: self.args.worktrees.clone(),
            events: self.args.events.clone(),
            transcripts: self.args.durable.sink.clone(),
            record_starts: self
                .args
                .durable
                .writer
                .as_ref()
                .is_some_and(|w| w.path().is_some()),
        };
        let (sup, _) =
            Actor::spawn_linked(None, SlotSupervisorActor, args, myself.get_cell()).await?;
        self.slot_supervisor = Some(sup);
        Ok(())
    }

    /// Restarts the slot supervisor after a backoff; past the limit, halts and probes.
    fn on_slot_supervisor_failed(&mut self, myself: &ActorRef<RootMsg>, reason: String) {
        let delay = match self.probes.as_mut() {
            Some(n) => {
                *n += 1;
                let delay = self.args.config.probe.delay(*n);
                tracing::warn!(%reason, probe = *n, ?delay, "the pool is still halted; probing again later");
                delay
            }
            None => match self
                .tracker
                .on_failure(Instant::now().into_std(), FailureKind::StartFailed)
            {
                Decision::Restart { delay, attempt } => {
                    tracing::error!(%reason, attempt, ?delay, "the slot supervisor failed; restarting it");
                    delay
                }
                Decision::GiveUp { .. } => {
                    self.halt(reason);
                    self.probes = Some(1);
                    self.args.config.probe.delay(1)
                }
            },
        };
        myself.send_after(delay, || RootMsg::RestartSlotSupervisor);
    }

    fn halt(&mut self, reason: String) {
        tracing::error!(%reason, "no slot can start; halting the pool and probing it");
        self.args
            .health
            .send_replace(PoolHealth::Halted(reason.clone()));
        let _ = self.refs.scheduler.cast(SchedulerMsg::Halt { reason });
    }

    /// Asks the store for the work of the project's servers that died since, sweeps what
    /// their processes left, and queues their tasks here; off the root's loop.
    fn adopt_orphans(&self) {
        let (Some(writer), Some(store)) = (
            self.args.durable.writer.clone(),
            self.args
                .config
                .store
                .as_ref()
                .filter(|s| matches!(s, crate::config::StoreLocation::Shared(_)))
                .and_then(|s| s.file().map(std::path::Path::to_path_buf)),
        ) else {
            return;
        };
        let scheduler = self.refs.scheduler.clone();
        tokio::spawn(async move {
            let orphans = match writer.read(|db| db.adopt_orphans()).await {
                Ok(Ok(o)) => o,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot take over a dead server's work");
                    return;
                }
                Err(_) => return,
            };
            if orphans.dead_servers.is_empty() && orphans.pending.is_empty() {
                return;
            }
            tracing::warn!(
                servers = orphans.dead_servers.len(),
                interrupted = orphans.interrupted.len(),
                adopted = orphans.pending.len(),
                "took over the work a server of this project left (it stopped or died)"
            );
            let dead = orphans.dead_servers.clone();
            let _ = tokio::task::spawn_blocking(move || {
                for id in &dead {
                    let lease = crate::store::db::Lease::path_of(&store, id);
                    crate::process::leftovers::sweep(&lease);
                }
            })
            .await;
            if !orphans.pending.is_empty() {
                let _ = scheduler.cast(SchedulerMsg::Adopt(orphans.pending));
            }
        });
    }

    async fn shutdown(&mut self) {
        if self.stopping && self.slot_supervisor.is_none() {
            return;
        }
        self.stopping = true;
        let _ = ractor::call!(self.refs.chains, ChainSupervisorMsg::Shutdown);
        let _ = ractor::call!(self.refs.scheduler, SchedulerMsg::Shutdown);
        // Hosts stop their slots when their link closes.
        #[cfg(feature = "cluster")]
        if let Some(hosts) = self.hosts.take() {
            hosts.stop(None);
        }
        if let Some(sup) = self.slot_supervisor.take() {
            let _ = ractor::call!(sup, SlotSupervisorMsg::Shutdown);
            sup.stop(None);
        }
        if !matches!(*self.args.health.borrow(), PoolHealth::Stopped(_)) {
            self.args
                .health
                .send_replace(PoolHealth::Stopped("the pool is shut down".into()));
        }
        self.refs.chains.stop(None);
        self.refs.scheduler.stop(None);
        self.refs.ledger.stop(None);
        self.refs.context.stop(None);
        self.refs.approvals.stop(None);
        if let Some(sink) = &self.args.durable.sink {
            sink.flush();
        }
        if let Some(store) = self.store.take() {
            // A graceful stop ends the run: the next server starts a new one.
            let _ = ractor::call!(store, StoreMsg::Close);
            store.stop(None);
        }
    }
}

impl From<SizingNote> for RootMsg {
    fn from(n: SizingNote) -> Self {
        RootMsg::Sizing(n)
    }
}

impl TryFrom<RootMsg> for SizingNote {
    type Error = RootMsg;
    fn try_from(m: RootMsg) -> Result<Self, RootMsg> {
        match m {
            RootMsg::Sizing(n) => Ok(n),
            other => Err(other),
        }
    }
}
