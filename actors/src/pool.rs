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
//! the pool's actors. Tasks, fan-outs and chains are here; the context table, budget,
//! status, scaling, drain and skills in [`admin`]. The handle holds only actor references, so it is cheap to clone and
//! several pools can live in one process.

mod admin;
mod approvals;
mod builder;
pub mod faults;
pub mod handles;
mod jobs;
mod stored;

use std::path::PathBuf;
use std::sync::Arc;

use claude_pool_protocol::tools::{
    CancelReport, ChainCancelReport, ChainParams, ChainReport, MAX_FAN_OUT, TaskReport,
};
use claude_pool_protocol::{ChainId, TaskId};
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use tokio::sync::{broadcast, mpsc, watch};

pub use builder::PoolBuilder;

use crate::chain::ChainProgressSink;
use crate::chains::ChainSupervisorMsg;
use crate::config::PoolConfig;
use crate::error::PoolError;
use crate::events::{EventBus, PoolEvent};
use crate::root::{PoolHealth, PoolRefs, RootActor, RootArgs, RootMsg};
use crate::scheduler::SchedulerMsg;
use crate::skills::SkillRegistry;
use crate::store::durable::Durable;
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
    durable: Durable,
    handles: handles::Handles,
    /// The last reading of the slots' memory: when, bytes by process group, of which pids.
    memory: Arc<std::sync::Mutex<Option<MemoryReading>>>,
    /// Set while a new reading is being taken.
    memory_refreshing: Arc<std::sync::atomic::AtomicBool>,
}

/// When, resident bytes by process group, and of which slot processes.
type MemoryReading = (
    std::time::Instant,
    std::collections::HashMap<u32, u64>,
    Vec<u32>,
);

/// How old a memory reading may be when `status` answers with it.
const MEMORY_READING_AGE: std::time::Duration = std::time::Duration::from_secs(1);

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
        let durable = Durable::open(&config).await?;
        let mut config = config;
        config.process_marker = durable.marker.clone();
        let config = Arc::new(config);
        let events = EventBus::new();
        let (health_tx, health) = watch::channel(PoolHealth::Running);
        let args = RootArgs {
            config: config.clone(),
            health: Arc::new(health_tx),
            events: events.clone(),
            worktrees: worktrees.clone(),
            durable: durable.clone(),
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
            durable,
            handles: handles::Handles::default(),
            memory: Arc::default(),
            memory_refreshing: Arc::default(),
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

    /// Queues a task and returns its id at once (with a store: once it is durable).
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskId, PoolError> {
        let spec = self.admit(spec).await?;
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
        match self
            .ask(&self.refs.scheduler, |reply| SchedulerMsg::Get(task, reply))
            .await?
        {
            Some(mut r) => {
                if r.status == claude_pool_protocol::TaskStatus::Running {
                    r.waiting_for_approval = self
                        .pending_approvals(Some(id))
                        .await
                        .ok()
                        .and_then(|p| p.into_iter().next());
                }
                Ok(r)
            }
            None => self.stored_report(id).await,
        }
    }

    /// Waits until the task is terminal and returns its report.
    pub async fn wait(&self, id: &TaskId) -> Result<TaskReport, PoolError> {
        let task = id.clone();
        match self
            .ask(&self.refs.scheduler, |reply| {
                SchedulerMsg::Wait(task, reply)
            })
            .await?
        {
            Some(r) => Ok(r),
            None => self.stored_report(id).await,
        }
    }

    /// Cancels a task. A queued task never starts; a running one has its process group
    /// stopped (interrupt, SIGTERM, SIGKILL). Returns once the task is terminal.
    pub async fn cancel(&self, id: &TaskId) -> Result<CancelReport, PoolError> {
        let task = id.clone();
        match self
            .ask(&self.refs.scheduler, |reply| {
                SchedulerMsg::Cancel(task, reply)
            })
            .await?
        {
            Some(r) => Ok(r),
            None => {
                let r = self.stored_report(id).await?;
                Ok(CancelReport {
                    task_id: id.clone(),
                    status: r.status,
                    cancelled: false,
                    message: format!("the task had already ended: {}", r.status),
                })
            }
        }
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
        let mut admitted = Vec::with_capacity(specs.len());
        for spec in specs {
            admitted.push(self.admit(spec).await?);
        }
        let specs = admitted;
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
        self.submit_chain_at(params, progress, None).await
    }

    /// Starts a chain for a request of recursion depth `depth` (over HTTP, from its
    /// `x-mcp-depth` header; `None`: the pool's own): refused at the limit, and its steps'
    /// processes run one level deeper.
    pub async fn submit_chain_at(
        &self,
        params: ChainParams,
        progress: Option<ChainProgressSink>,
        depth: Option<u32>,
    ) -> Result<ChainId, PoolError> {
        self.check_depth(depth)?;
        self.check_chain_values(&params)?;
        self.ask(&self.refs.chains, |reply| ChainSupervisorMsg::Submit {
            params,
            progress,
            depth,
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
        match self
            .ask(&self.refs.chains, |reply| {
                ChainSupervisorMsg::Get(chain, reply)
            })
            .await?
        {
            Some(r) => Ok(r),
            None => self.stored_chain(id).await,
        }
    }

    /// Waits until the chain is terminal.
    pub async fn wait_chain(&self, id: &ChainId) -> Result<ChainReport, PoolError> {
        let chain = id.clone();
        match self
            .ask(&self.refs.chains, |reply| {
                ChainSupervisorMsg::Wait(chain, reply)
            })
            .await?
        {
            Some(r) => Ok(r),
            None => self.stored_chain(id).await,
        }
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
