//! The chain supervisor: starts one chain actor per chain and keeps every chain's report.
//!
//! **Place in the tree.** Child of the root supervisor; parent of every chain actor. Not
//! restarted (fail-stop: it holds the chains' reports).
//!
//! **Strategy.** Chain actors are never restarted — a restart would run steps again and pay
//! for them twice. A chain actor that fails has its chain marked `failed` with the reason
//! and its running step tasks cancelled.
//!
//! **Owns** the registry: every chain's latest report (sent by its actor on every change),
//! the callers waiting for a chain to end, and a bounded history of finished chains.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use claude_pool_protocol::tools::{ChainCancelReport, ChainCounts, ChainParams, ChainReport};
use claude_pool_protocol::{ChainId, ChainStatus, StepStatus};
use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};

use crate::chain::plan::{self, ChainPlan};
use crate::chain::{ChainActor, ChainArgs, ChainMsg, ChainProgressSink};
use crate::error::PoolError;
use crate::events::{EventBus, PoolEvent};
use crate::restart::child_exit;
use crate::scheduler::SchedulerMsg;

/// Behaviour of the chain supervisor.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChainSupervisorActor;

/// What the chain supervisor starts with.
#[derive(Debug, Clone)]
pub struct ChainSupervisorArgs {
    /// Where chain steps are submitted.
    pub scheduler: ActorRef<SchedulerMsg>,
    /// Where chain changes are published.
    pub events: EventBus,
    /// Finished chains kept for `pool_chain_result`.
    pub max_finished: usize,
    /// Where every chain's report is kept durable, if anywhere.
    pub store: Option<crate::store::actor::StoreWriter>,
}

/// Messages the chain supervisor handles.
pub enum ChainSupervisorMsg {
    /// Validate and start a chain.
    Submit {
        /// Its steps and options.
        params: ChainParams,
        /// Where its progress lines go.
        progress: Option<ChainProgressSink>,
        /// The recursion depth of the request that started it (its steps run one deeper);
        /// `None`: the server's own.
        depth: Option<u32>,
        /// Its id, or why it was refused (nothing ran).
        reply: RpcReplyPort<Result<ChainId, PoolError>>,
    },
    /// A chain's report now.
    Get(ChainId, RpcReplyPort<Option<ChainReport>>),
    /// A chain's report once it is terminal.
    Wait(ChainId, RpcReplyPort<Option<ChainReport>>),
    /// Cancel a chain; answered once it is terminal.
    Cancel(ChainId, RpcReplyPort<Option<ChainCancelReport>>),
    /// Chain counts by status.
    Counts(RpcReplyPort<ChainCounts>),
    /// Tell every running chain to start nothing new; answered once all have heard it.
    Drain(RpcReplyPort<()>),
    /// Answered once no chain runs, with how many chains a drain stopped.
    WaitIdle(RpcReplyPort<u64>),
    /// A chain actor's latest report.
    Update(ChainReport),
    /// Cancel every running chain and stop; answered when done.
    Shutdown(RpcReplyPort<()>),
}

impl fmt::Debug for ChainSupervisorMsg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            ChainSupervisorMsg::Submit { .. } => "Submit",
            ChainSupervisorMsg::Get(..) => "Get",
            ChainSupervisorMsg::Wait(..) => "Wait",
            ChainSupervisorMsg::Cancel(..) => "Cancel",
            ChainSupervisorMsg::Counts(..) => "Counts",
            ChainSupervisorMsg::Drain(..) => "Drain",
            ChainSupervisorMsg::WaitIdle(..) => "WaitIdle",
            ChainSupervisorMsg::Update(..) => "Update",
            ChainSupervisorMsg::Shutdown(..) => "Shutdown",
        };
        f.write_str(name)
    }
}

struct ChainEntry {
    actor: Option<ActorRef<ChainMsg>>,
    report: ChainReport,
    waiters: Vec<RpcReplyPort<Option<ChainReport>>>,
    cancel_waiters: Vec<RpcReplyPort<Option<ChainCancelReport>>>,
    drained: bool,
}

/// The chain supervisor's state.
pub struct ChainSupervisorState {
    args: ChainSupervisorArgs,
    chains: HashMap<ChainId, ChainEntry>,
    by_actor: HashMap<ActorId, ChainId>,
    finished: VecDeque<ChainId>,
    forgotten: ChainCounts,
    idle_waiters: Vec<RpcReplyPort<u64>>,
    stopping: bool,
}

impl fmt::Debug for ChainSupervisorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChainSupervisorState")
            .field("chains", &self.chains.len())
            .finish_non_exhaustive()
    }
}

fn new_chain_id() -> ChainId {
    let id = uuid::Uuid::new_v4().simple().to_string();
    ChainId(format!("{}{}", ChainId::PREFIX, &id[..12]))
}

/// The report of a chain that has not reported yet.
fn initial_report(id: &ChainId, plan: &ChainPlan) -> ChainReport {
    ChainReport {
        chain_id: id.clone(),
        status: ChainStatus::InProgress,
        completed_steps: 0,
        total_steps: plan.steps.len(),
        current_step: None,
        running_steps: Vec::new(),
        steps: plan
            .steps
            .iter()
            .map(|s| claude_pool_protocol::tools::StepReport {
                name: s.name.clone(),
                status: StepStatus::Pending,
                output: None,
                spend_usd: 0.0,
                error: None,
                task_id: None,
                attempts: Vec::new(),
                depends_on: s.deps.iter().map(|&d| plan.steps[d].name.clone()).collect(),
            })
            .collect(),
        final_output: None,
        total_spend: 0.0,
        error: None,
    }
}

impl Actor for ChainSupervisorActor {
    type Msg = ChainSupervisorMsg;
    type State = ChainSupervisorState;
    type Arguments = ChainSupervisorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<ChainSupervisorMsg>,
        args: ChainSupervisorArgs,
    ) -> Result<ChainSupervisorState, ActorProcessingErr> {
        Ok(ChainSupervisorState {
            args,
            chains: HashMap::new(),
            by_actor: HashMap::new(),
            finished: VecDeque::new(),
            forgotten: ChainCounts::default(),
            idle_waiters: Vec::new(),
            stopping: false,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ChainSupervisorMsg>,
        msg: ChainSupervisorMsg,
        state: &mut ChainSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ChainSupervisorMsg::Submit {
                params,
                progress,
                depth,
                reply,
            } => {
                let answer = state.submit(&myself, params, progress, depth).await;
                let _ = reply.send(answer);
            }
            ChainSupervisorMsg::Get(id, reply) => {
                let _ = reply.send(state.chains.get(&id).map(|e| e.report.clone()));
            }
            ChainSupervisorMsg::Wait(id, reply) => match state.chains.get_mut(&id) {
                None => {
                    let _ = reply.send(None);
                }
                Some(e) if e.report.status.is_terminal() => {
                    let _ = reply.send(Some(e.report.clone()));
                }
                Some(e) => e.waiters.push(reply),
            },
            ChainSupervisorMsg::Cancel(id, reply) => state.cancel(id, reply),
            ChainSupervisorMsg::Counts(reply) => {
                let _ = reply.send(state.counts());
            }
            ChainSupervisorMsg::Drain(reply) => {
                for e in state.chains.values_mut() {
                    if let Some(actor) = &e.actor
                        && !e.report.status.is_terminal()
                    {
                        e.drained = true;
                        let _ = actor.call(ChainMsg::Drain, None).await;
                    }
                }
                let _ = reply.send(());
            }
            ChainSupervisorMsg::WaitIdle(reply) => {
                state.idle_waiters.push(reply);
                state.check_idle();
            }
            ChainSupervisorMsg::Update(report) => state.update(report),
            ChainSupervisorMsg::Shutdown(reply) => {
                state.stopping = true;
                let open: Vec<ChainId> = state
                    .chains
                    .iter()
                    .filter(|(_, e)| !e.report.status.is_terminal())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in open {
                    state.end(&id, ChainStatus::Cancelled, "the pool shut down".into());
                }
                myself
                    .stop_children_and_wait(Some("pool shutdown".into()), None)
                    .await;
                let _ = reply.send(());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ChainSupervisorMsg>,
        event: SupervisionEvent,
        state: &mut ChainSupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let Some((cell, reason, err)) = child_exit(event) else {
            return Ok(());
        };
        let Some(id) = state.by_actor.remove(&cell.get_id()) else {
            return Ok(());
        };
        if let Some(e) = state.chains.get_mut(&id) {
            e.actor = None;
        }
        // A chain actor stops by itself once its chain is terminal, right after sending its
        // final report — which may arrive after this event. Only a failure needs action.
        let open = state
            .chains
            .get(&id)
            .is_some_and(|e| !e.report.status.is_terminal());
        if let Some(err) = err
            && open
            && !state.stopping
        {
            let why = format!("the chain's actor failed: {err}");
            tracing::error!(chain = %id, %why, %reason, "chain actor failed");
            state.cancel_tasks_of(&id);
            state.end(&id, ChainStatus::Failed, why);
        }
        Ok(())
    }
}

impl ChainSupervisorState {
    async fn submit(
        &mut self,
        myself: &ActorRef<ChainSupervisorMsg>,
        params: ChainParams,
        progress: Option<ChainProgressSink>,
        depth: Option<u32>,
    ) -> Result<ChainId, PoolError> {
        if self.stopping {
            return Err(PoolError::Stopped("the pool is shut down".into()));
        }
        let plan = Arc::new(plan::plan(&params).map_err(PoolError::InvalidTask)?);
        let id = new_chain_id();
        let args = ChainArgs {
            id: id.clone(),
            plan: plan.clone(),
            scheduler: self.args.scheduler.clone(),
            supervisor: myself.get_derived(),
            progress,
            depth,
        };
        let (actor, _) = Actor::spawn_linked(None, ChainActor, args, myself.get_cell())
            .await
            .map_err(|e| PoolError::Stopped(format!("the chain could not start: {e}")))?;
        self.by_actor.insert(actor.get_id(), id.clone());
        self.chains.insert(
            id.clone(),
            ChainEntry {
                actor: Some(actor),
                report: initial_report(&id, &plan),
                waiters: Vec::new(),
                cancel_waiters: Vec::new(),
                drained: false,
            },
        );
        self.args.events.publish(PoolEvent::Chain {
            id: id.clone(),
            status: ChainStatus::InProgress,
        });
        self.persist(&id);
        Ok(id)
    }

    fn update(&mut self, report: ChainReport) {
        let id = report.chain_id.clone();
        let Some(e) = self.chains.get_mut(&id) else {
            return;
        };
        if e.report.status.is_terminal() {
            return; // ended already (shutdown, or its actor failed)
        }
        let status = report.status;
        e.report = report;
        self.args.events.publish(PoolEvent::Chain {
            id: id.clone(),
            status,
        });
        self.persist(&id);
        if status.is_terminal() {
            self.answer(&id);
        }
    }

    /// Writes the chain's report to the store.
    fn persist(&self, id: &ChainId) {
        let (Some(store), Some(e)) = (&self.args.store, self.chains.get(id)) else {
            return;
        };
        let now = crate::clock::now_ms();
        store.write(crate::store::db::Write::Chain(crate::store::db::ChainRow {
            id: id.0.clone(),
            status: e.report.status.as_str().to_owned(),
            error: e.report.error.clone(),
            report: serde_json::to_value(&e.report).unwrap_or_default(),
            created_at_ms: now,
            updated_at_ms: now,
        }));
    }

    /// Ends a chain from here (shutdown, or its actor gone).
    fn end(&mut self, id: &ChainId, status: ChainStatus, why: String) {
        let Some(e) = self.chains.get_mut(id) else {
            return;
        };
        e.report.status = status;
        e.report.error = Some(why.clone());
        e.report.running_steps.clear();
        for s in &mut e.report.steps {
            if !s.status.is_terminal() {
                s.status = StepStatus::Cancelled;
                s.error = Some(why.clone());
            }
        }
        if let Some(actor) = e.actor.take() {
            actor.stop(Some(why));
        }
        self.args.events.publish(PoolEvent::Chain {
            id: id.clone(),
            status,
        });
        self.persist(id);
        self.answer(id);
    }

    fn answer(&mut self, id: &ChainId) {
        let Some(e) = self.chains.get_mut(id) else {
            return;
        };
        let report = e.report.clone();
        for w in e.waiters.drain(..) {
            let _ = w.send(Some(report.clone()));
        }
        for w in e.cancel_waiters.drain(..) {
            let cancelled = report.status == ChainStatus::Cancelled;
            let message = if cancelled {
                report.error.clone().unwrap_or_else(|| "cancelled".into())
            } else {
                format!(
                    "the chain ended as {} before the cancel took effect",
                    report.status
                )
            };
            let _ = w.send(Some(ChainCancelReport {
                chain_id: id.clone(),
                status: report.status,
                cancelled,
                message,
            }));
        }
        self.finished.push_back(id.clone());
        while self.finished.len() > self.args.max_finished {
            if let Some(old) = self.finished.pop_front()
                && let Some(e) = self.chains.remove(&old)
            {
                count(&mut self.forgotten, e.report.status);
            }
        }
        self.check_idle();
    }

    fn cancel(&mut self, id: ChainId, reply: RpcReplyPort<Option<ChainCancelReport>>) {
        let Some(e) = self.chains.get_mut(&id) else {
            let _ = reply.send(None);
            return;
        };
        if e.report.status.is_terminal() {
            let _ = reply.send(Some(ChainCancelReport {
                chain_id: id,
                status: e.report.status,
                cancelled: false,
                message: format!("the chain had already ended: {}", e.report.status),
            }));
            return;
        }
        e.cancel_waiters.push(reply);
        match &e.actor {
            Some(actor) => {
                let _ = actor.cast(ChainMsg::Cancel("cancelled by request".into()));
            }
            None => self.end(&id, ChainStatus::Cancelled, "cancelled by request".into()),
        }
    }

    /// Cancels the tasks of a chain whose actor is gone.
    fn cancel_tasks_of(&self, id: &ChainId) {
        let Some(e) = self.chains.get(id) else {
            return;
        };
        for s in &e.report.steps {
            let Some(last) = s.attempts.last() else {
                continue;
            };
            if last.status.is_terminal() {
                continue;
            }
            let task = last.task_id.clone();
            let scheduler = self.args.scheduler.clone();
            tokio::spawn(async move {
                let _ = scheduler
                    .call(|reply| SchedulerMsg::Cancel(task, reply), None)
                    .await;
            });
        }
    }

    fn counts(&self) -> ChainCounts {
        let mut c = self.forgotten;
        for e in self.chains.values() {
            count(&mut c, e.report.status);
        }
        c
    }

    fn check_idle(&mut self) {
        if self.idle_waiters.is_empty()
            || self.chains.values().any(|e| !e.report.status.is_terminal())
        {
            return;
        }
        let drained = self
            .chains
            .values()
            .filter(|e| e.drained && e.report.status == ChainStatus::Cancelled)
            .count() as u64;
        for w in self.idle_waiters.drain(..) {
            let _ = w.send(drained);
        }
    }
}

fn count(c: &mut ChainCounts, status: ChainStatus) {
    c.total += 1;
    match status {
        ChainStatus::InProgress => c.in_progress += 1,
        ChainStatus::Completed => c.completed += 1,
        ChainStatus::Failed => c.failed += 1,
        ChainStatus::Cancelled => c.cancelled += 1,
    }
}

impl From<ChainReport> for ChainSupervisorMsg {
    fn from(r: ChainReport) -> Self {
        ChainSupervisorMsg::Update(r)
    }
}

impl TryFrom<ChainSupervisorMsg> for ChainReport {
    type Error = ChainSupervisorMsg;
    fn try_from(m: ChainSupervisorMsg) -> Result<Self, ChainSupervisorMsg> {
        match m {
            ChainSupervisorMsg::Update(r) => Ok(r),
            other => Err(other),
        }
    }
}
