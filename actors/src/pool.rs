//! The embedding API: a typed handle on a supervision tree.
//!
//! ```no_run
//! # async fn demo() -> Result<(), claude_pool::PoolError> {
//! use claude_pool::{Pool, TaskSpec};
//! let pool = Pool::builder().slots(4).model("sonnet").build().await?;
//! let report = pool.run(TaskSpec::new("write a haiku about rust")).await?;
//! println!("{:?} {:?} ${}", report.status, report.output, report.spend_usd);
//! let many = pool
//!     .fan_out(vec![TaskSpec::new("a poem"), TaskSpec::new("a limerick")], None)
//!     .await?;
//! pool.context_set("language", "rust").await?;
//! pool.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Every capability is here first and in MCP second; every method is a message to one of
//! the pool's actors. The handle holds only actor references, so it is cheap to clone and
//! several pools can live in one process.

mod builder;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::tools::{
    BudgetReport, CancelReport, ChainCancelReport, ChainParams, ChainReport, ContextEntry,
    DrainReport, MAX_FAN_OUT, PoolStatusReport, ScaleReport, SlotReport, TaskReport,
};
use claude_pool_protocol::{ChainId, SlotId, TaskId};
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc, watch};

pub use builder::PoolBuilder;

use crate::chain::ChainProgressSink;
use crate::chains::ChainSupervisorMsg;
use crate::config::PoolConfig;
use crate::context::ContextMsg;
use crate::error::PoolError;
use crate::events::{EventBus, PoolEvent};
use crate::ledger::LedgerMsg;
use crate::root::{PoolHealth, PoolRefs, RootActor, RootArgs, RootMsg};
use crate::scheduler::{ScaleRequest, SchedulerMsg};
use crate::skills::SkillRegistry;
use crate::task::TaskSpec;
use crate::worktree::Worktrees;

/// How a fan-out reports items as they finish: `(done, total, report)`.
pub type FanOutProgress = mpsc::UnboundedSender<(usize, usize, TaskReport)>;

/// A running pool. Clone it freely; [`Pool::shutdown`] stops it for every clone.
#[derive(Clone, Debug)]
pub struct Pool {
    root: ActorRef<RootMsg>,
    refs: PoolRefs,
    config: Arc<PoolConfig>,
    skills: Arc<SkillRegistry>,
    events: EventBus,
    health: watch::Receiver<PoolHealth>,
    worktrees: Option<Arc<Worktrees>>,
}

impl Pool {
    /// Starts configuring a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Starts a pool with `config`. Slots warm up in the background; tasks submitted
    /// before that wait in the queue. See [`Pool::wait_ready`].
    pub async fn start(config: PoolConfig) -> Result<Pool, PoolError> {
        config.validate().map_err(PoolError::InvalidArgument)?;
        let skills = SkillRegistry::load(config.builtin_skills, &config.skill_dirs)
            .map_err(PoolError::InvalidArgument)?;
        let worktrees = if config.worktree {
            let cwd = match &config.cwd {
                Some(c) => c.clone(),
                None => std::env::current_dir().map_err(|e| {
                    PoolError::InvalidArgument(format!("cannot read the working directory: {e}"))
                })?,
            };
            let w = Worktrees::open(&cwd)
                .await
                .map_err(PoolError::InvalidArgument)?;
            let sweep = w.sweep_stale().await.map_err(PoolError::InvalidArgument)?;
            if !sweep.removed.is_empty() || !sweep.kept.is_empty() {
                tracing::info!(
                    removed = sweep.removed.len(),
                    kept = sweep.kept.len(),
                    "swept the worktrees of an earlier server"
                );
            }
            Some(Arc::new(w))
        } else {
            None
        };
        let config = Arc::new(config);
        let events = EventBus::new();
        let (health_tx, health) = watch::channel(PoolHealth::Running);
        let args = RootArgs {
            config: config.clone(),
            health: Arc::new(health_tx),
            events: events.clone(),
            worktrees: worktrees.clone(),
        };
        let (root, _join) = Actor::spawn(None, RootActor, args)
            .await
            .map_err(|e| PoolError::Stopped(format!("the pool could not start: {e}")))?;
        let refs = ractor::call!(root, RootMsg::GetRefs)
            .map_err(|e| PoolError::Stopped(format!("the pool could not start: {e}")))?;
        Ok(Pool {
            root,
            refs,
            config,
            skills: Arc::new(skills),
            events,
            health,
            worktrees,
        })
    }

    /// The configuration the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// The root supervisor's cell, for attaching front-ends under it.
    pub fn root_cell(&self) -> ActorCell {
        self.root.get_cell()
    }

    /// The pool's events from now on: task, slot, chain, budget and context changes.
    pub fn events(&self) -> broadcast::Receiver<PoolEvent> {
        self.events.subscribe()
    }

    /// The repository the slots' worktrees belong to, with `--worktree`.
    pub fn worktree_repo(&self) -> Option<PathBuf> {
        self.worktrees.as_ref().map(|w| w.repo().to_path_buf())
    }

    // ---- tasks

    /// Queues a task and returns its id at once.
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskId, PoolError> {
        self.ask(&self.refs.scheduler, |reply| {
            SchedulerMsg::Submit(spec, reply)
        })
        .await?
    }

    /// Runs a task and waits for its terminal state.
    pub async fn run(&self, spec: TaskSpec) -> Result<TaskReport, PoolError> {
        let id = self.submit(spec).await?;
        self.wait(&id).await
    }

    /// The task's report as it is now.
    pub async fn result(&self, id: &TaskId) -> Result<TaskReport, PoolError> {
        let task = id.clone();
        self.ask(&self.refs.scheduler, |reply| SchedulerMsg::Get(task, reply))
            .await?
            .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// Waits until the task is terminal and returns its report.
    pub async fn wait(&self, id: &TaskId) -> Result<TaskReport, PoolError> {
        let task = id.clone();
        self.ask(&self.refs.scheduler, |reply| {
            SchedulerMsg::Wait(task, reply)
        })
        .await?
        .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// Cancels a task. A queued task never starts; a running one has its process group
    /// stopped (interrupt, SIGTERM, SIGKILL). Returns once the task is terminal.
    pub async fn cancel(&self, id: &TaskId) -> Result<CancelReport, PoolError> {
        let task = id.clone();
        self.ask(&self.refs.scheduler, |reply| {
            SchedulerMsg::Cancel(task, reply)
        })
        .await?
        .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// Queues every spec at once: all are accepted, or none (at most [`MAX_FAN_OUT`]).
    pub async fn submit_many(&self, specs: Vec<TaskSpec>) -> Result<Vec<TaskId>, PoolError> {
        let n = specs.len();
        if n == 0 {
            return Err(PoolError::InvalidTask(
                "a fan-out needs at least one prompt".into(),
            ));
        }
        if n > MAX_FAN_OUT {
            return Err(PoolError::InvalidTask(format!(
                "a fan-out takes at most {MAX_FAN_OUT} prompts; this one has {n}"
            )));
        }
        self.ask(&self.refs.scheduler, |reply| {
            SchedulerMsg::SubmitMany(specs, reply)
        })
        .await?
    }

    /// Waits for every task in `ids` and returns their reports in the same order,
    /// reporting each as it ends to `progress`.
    pub async fn wait_all(
        &self,
        ids: &[TaskId],
        progress: Option<FanOutProgress>,
    ) -> Result<Vec<TaskReport>, PoolError> {
        let n = ids.len();
        let mut waits = tokio::task::JoinSet::new();
        for (i, id) in ids.iter().enumerate() {
            let pool = self.clone();
            let id = id.clone();
            waits.spawn(async move { (i, pool.wait(&id).await) });
        }
        let mut reports: Vec<Option<TaskReport>> = vec![None; n];
        let mut done = 0;
        while let Some(joined) = waits.join_next().await {
            let (i, report) = joined.map_err(|e| PoolError::Stopped(e.to_string()))?;
            let report = report?;
            done += 1;
            if let Some(p) = &progress {
                let _ = p.send((done, n, report.clone()));
            }
            reports[i] = Some(report);
        }
        reports
            .into_iter()
            .enumerate()
            .map(|(i, r)| r.ok_or_else(|| PoolError::UnknownTask(ids[i].clone())))
            .collect()
    }

    /// Runs every spec concurrently over the pool (more than there are slots wait in the
    /// queue) and returns one report per spec, in order, once all are terminal. One task's
    /// failure never fails the others.
    pub async fn fan_out(
        &self,
        specs: Vec<TaskSpec>,
        progress: Option<FanOutProgress>,
    ) -> Result<Vec<TaskReport>, PoolError> {
        let ids = self.submit_many(specs).await?;
        self.wait_all(&ids, progress).await
    }

    // ---- chains

    /// Validates a chain (every mistake is reported before anything runs) and starts it.
    pub async fn submit_chain(
        &self,
        params: ChainParams,
        progress: Option<ChainProgressSink>,
    ) -> Result<ChainId, PoolError> {
        self.ask(&self.refs.chains, |reply| ChainSupervisorMsg::Submit {
            params,
            progress,
            reply,
        })
        .await?
    }

    /// Runs a chain and waits until it is terminal.
    pub async fn run_chain(
        &self,
        params: ChainParams,
        progress: Option<ChainProgressSink>,
    ) -> Result<ChainReport, PoolError> {
        let id = self.submit_chain(params, progress).await?;
        self.wait_chain(&id).await
    }

    /// A chain's progress and results now.
    pub async fn chain_result(&self, id: &ChainId) -> Result<ChainReport, PoolError> {
        let chain = id.clone();
        self.ask(&self.refs.chains, |reply| {
            ChainSupervisorMsg::Get(chain, reply)
        })
        .await?
        .ok_or_else(|| PoolError::UnknownChain(id.clone()))
    }

    /// Waits until the chain is terminal.
    pub async fn wait_chain(&self, id: &ChainId) -> Result<ChainReport, PoolError> {
        let chain = id.clone();
        self.ask(&self.refs.chains, |reply| {
            ChainSupervisorMsg::Wait(chain, reply)
        })
        .await?
        .ok_or_else(|| PoolError::UnknownChain(id.clone()))
    }

    /// Cancels a chain: its running steps are cancelled and the rest never run. Returns
    /// once it is terminal.
    pub async fn cancel_chain(&self, id: &ChainId) -> Result<ChainCancelReport, PoolError> {
        let chain = id.clone();
        self.ask(&self.refs.chains, |reply| {
            ChainSupervisorMsg::Cancel(chain, reply)
        })
        .await?
        .ok_or_else(|| PoolError::UnknownChain(id.clone()))
    }

    // ---- shared context

    /// Sets a context key; every task that starts from now on sees it.
    pub async fn context_set(
        &self,
        key: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<ContextEntry, PoolError> {
        let (key, value) = (key.into(), value.into());
        self.ask(&self.refs.context, |reply| ContextMsg::Set {
            key,
            value,
            reply,
        })
        .await?
    }

    /// One context key's value.
    pub async fn context_get(&self, key: &str) -> Result<ContextEntry, PoolError> {
        let k = key.to_owned();
        let value = self
            .ask(&self.refs.context, |reply| ContextMsg::Get(k, reply))
            .await?;
        value
            .map(|value| ContextEntry {
                key: key.to_owned(),
                value,
            })
            .ok_or_else(|| PoolError::NotFound(format!("context key not found: {key:?}")))
    }

    /// Every context entry.
    pub async fn context_list(&self) -> Result<BTreeMap<String, String>, PoolError> {
        self.ask(&self.refs.context, ContextMsg::List).await
    }

    /// Removes a context key; true when it existed. No later task sees it.
    pub async fn context_delete(&self, key: &str) -> Result<bool, PoolError> {
        let k = key.to_owned();
        self.ask(&self.refs.context, |reply| ContextMsg::Delete(k, reply))
            .await
    }

    // ---- budget, status, scaling, drain

    /// Spend, the cap and what is left.
    pub async fn budget(&self) -> Result<BudgetReport, PoolError> {
        self.ask(&self.refs.ledger, LedgerMsg::Report).await
    }

    /// Slots, task and chain counts, spend and budget.
    pub async fn status(&self) -> Result<PoolStatusReport, PoolError> {
        let mut status = self.ask(&self.refs.scheduler, SchedulerMsg::Status).await?;
        let budget = self.budget().await?;
        status.spend_usd = budget.spend_usd;
        status.budget_usd = budget.budget_usd;
        status.budget_remaining = budget.budget_remaining;
        status.chains = self
            .ask(&self.refs.chains, ChainSupervisorMsg::Counts)
            .await?;
        Ok(status)
    }

    /// One slot's report.
    pub async fn slot(&self, id: &SlotId) -> Result<SlotReport, PoolError> {
        let status = self.ask(&self.refs.scheduler, SchedulerMsg::Status).await?;
        status
            .slots
            .into_iter()
            .find(|s| &s.id == id)
            .ok_or_else(|| PoolError::NotFound(format!("slot not found: {id}")))
    }

    /// Waits until every slot has warmed up once (or the pool stopped).
    pub async fn wait_ready(&self) -> Result<(), PoolError> {
        self.ask(&self.refs.scheduler, SchedulerMsg::WaitReady)
            .await
    }

    /// Adds `count` slots (within the bounds; out of them, nothing changes).
    pub async fn scale_up(&self, count: u32) -> Result<ScaleReport, PoolError> {
        self.scale(ScaleRequest::Up(count)).await
    }

    /// Removes `count` slots, idle ones first; a busy slot gets the scale-down grace to
    /// finish, then its task is cancelled. Returns once their process groups are gone.
    pub async fn scale_down(&self, count: u32) -> Result<ScaleReport, PoolError> {
        self.scale(ScaleRequest::Down(count)).await
    }

    /// Sizes the pool to exactly `target` slots.
    pub async fn set_target_slots(&self, target: u32) -> Result<ScaleReport, PoolError> {
        self.scale(ScaleRequest::Target(target)).await
    }

    async fn scale(&self, request: ScaleRequest) -> Result<ScaleReport, PoolError> {
        self.ask(&self.refs.scheduler, |reply| {
            SchedulerMsg::Scale(request, reply)
        })
        .await?
    }

    /// Drains the pool: pending tasks are cancelled, chains start nothing new, running
    /// tasks finish (cancelled after `timeout`, if given), new work is refused from now on,
    /// and the slots' processes are stopped. Returns the summary of every task.
    pub async fn drain(&self, timeout: Option<Duration>) -> Result<DrainReport, PoolError> {
        self.ask(&self.refs.chains, ChainSupervisorMsg::Drain)
            .await?;
        let mut report = self
            .ask(&self.refs.scheduler, |reply| {
                SchedulerMsg::Drain(timeout, reply)
            })
            .await?;
        report.cancelled_chains = self
            .ask(&self.refs.chains, ChainSupervisorMsg::WaitIdle)
            .await?;
        report.total_spend = self.budget().await?.spend_usd;
        let _ = ractor::call!(self.root, RootMsg::StopSlots);
        Ok(report)
    }

    // ---- skills

    /// The pool's skills.
    pub fn skills(&self) -> &SkillRegistry {
        &self.skills
    }

    /// The task a skill run would submit: the skill's prompt for `arguments`, or what is
    /// wrong with them (nothing runs).
    pub fn skill_task(
        &self,
        skill: &str,
        arguments: &Map<String, Value>,
    ) -> Result<TaskSpec, PoolError> {
        let s = self.skills.get(skill).ok_or_else(|| {
            PoolError::NotFound(format!(
                "skill not found: {skill:?} (known skills: {})",
                self.skills.names().join(", ")
            ))
        })?;
        let prompt = s.render(arguments).map_err(PoolError::InvalidTask)?;
        Ok(TaskSpec::new(prompt))
    }

    // ---- life

    /// Whether the pool still runs tasks.
    pub fn health(&self) -> PoolHealth {
        self.health.borrow().clone()
    }

    /// The pool's health as it changes (running, halted and probed, stopped).
    pub fn health_changes(&self) -> watch::Receiver<PoolHealth> {
        self.health.clone()
    }

    /// Stops the pool in order: chains and open tasks end as cancelled, every slot's
    /// process group is stopped and reaped, then the actors stop. Idempotent.
    pub async fn shutdown(&self) {
        let _ = ractor::call!(self.root, RootMsg::Shutdown);
        let mut health = self.health.clone();
        let _ = health
            .wait_for(|h| matches!(h, PoolHealth::Stopped(_)))
            .await;
    }

    async fn ask<M, T, F>(&self, actor: &ActorRef<M>, msg: F) -> Result<T, PoolError>
    where
        M: ractor::Message,
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> M,
    {
        match actor.call(msg, None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(PoolError::Stopped(match self.health() {
                PoolHealth::Stopped(reason) => reason,
                PoolHealth::Halted(reason) => reason,
                PoolHealth::Running => "the pool did not answer".into(),
            })),
        }
    }
}
