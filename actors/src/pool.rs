//! The embedding API: a typed handle on a supervision tree.
//!
//! ```no_run
//! # async fn demo() -> Result<(), claude_pool::PoolError> {
//! use claude_pool::{Pool, TaskSpec};
//! let pool = Pool::builder().slots(4).model("sonnet").build().await?;
//! let report = pool.run(TaskSpec::new("write a haiku about rust")).await?;
//! println!("{:?} {:?} ${}", report.status, report.output, report.spend_usd);
//! pool.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Every method is a message to the scheduler or the root; the handle holds only actor
//! references, so it is cheap to clone and several pools can live in one process.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use claude_pool_protocol::tools::{CancelReport, PoolStatusReport, TaskReport};
use claude_pool_protocol::{Effort, PermissionMode, TaskId};
use ractor::{Actor, ActorCell, ActorRef, RpcReplyPort};
use tokio::sync::watch;

use crate::config::PoolConfig;
use crate::error::PoolError;
use crate::restart::RestartPolicy;
use crate::root::{PoolHealth, RootActor, RootArgs, RootMsg};
use crate::scheduler::SchedulerMsg;
use crate::task::TaskSpec;

/// A running pool. Clone it freely; [`Pool::shutdown`] stops it for every clone.
#[derive(Clone, Debug)]
pub struct Pool {
    root: ActorRef<RootMsg>,
    scheduler: ActorRef<SchedulerMsg>,
    config: Arc<PoolConfig>,
    health: watch::Receiver<PoolHealth>,
}

impl Pool {
    /// Starts configuring a pool.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// Starts a pool with `config`. Slots warm up in the background; tasks submitted
    /// before that wait in the queue. See [`Pool::wait_ready`].
    pub async fn start(config: PoolConfig) -> Result<Pool, PoolError> {
        if config.slots == 0 {
            return Err(PoolError::InvalidTask(
                "a pool needs at least one slot".into(),
            ));
        }
        let config = Arc::new(config);
        let (health_tx, health) = watch::channel(PoolHealth::Running);
        let args = RootArgs {
            config: config.clone(),
            health: Arc::new(health_tx),
        };
        let (root, _join) = Actor::spawn(None, RootActor, args)
            .await
            .map_err(|e| PoolError::Stopped(format!("the pool could not start: {e}")))?;
        let scheduler = ractor::call!(root, RootMsg::GetScheduler)
            .map_err(|e| PoolError::Stopped(format!("the pool could not start: {e}")))?;
        Ok(Pool {
            root,
            scheduler,
            config,
            health,
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

    /// Queues a task and returns its id at once.
    pub async fn submit(&self, spec: TaskSpec) -> Result<TaskId, PoolError> {
        self.ask(|reply| SchedulerMsg::Submit(spec, reply)).await?
    }

    /// Runs a task and waits for its terminal state.
    pub async fn run(&self, spec: TaskSpec) -> Result<TaskReport, PoolError> {
        let id = self.submit(spec).await?;
        self.wait(&id).await
    }

    /// The task's report as it is now.
    pub async fn result(&self, id: &TaskId) -> Result<TaskReport, PoolError> {
        let task = id.clone();
        self.ask(|reply| SchedulerMsg::Get(task, reply))
            .await?
            .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// Waits until the task is terminal and returns its report.
    pub async fn wait(&self, id: &TaskId) -> Result<TaskReport, PoolError> {
        let task = id.clone();
        self.ask(|reply| SchedulerMsg::Wait(task, reply))
            .await?
            .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// Cancels a task. A queued task never starts; a running one has its process group
    /// stopped (interrupt, SIGTERM, SIGKILL). Returns once the task is terminal.
    pub async fn cancel(&self, id: &TaskId) -> Result<CancelReport, PoolError> {
        let task = id.clone();
        self.ask(|reply| SchedulerMsg::Cancel(task, reply))
            .await?
            .ok_or_else(|| PoolError::UnknownTask(id.clone()))
    }

    /// Slots, task counts and spend.
    pub async fn status(&self) -> Result<PoolStatusReport, PoolError> {
        self.ask(SchedulerMsg::Status).await
    }

    /// Waits until every slot has warmed up once (or the pool stopped).
    pub async fn wait_ready(&self) -> Result<(), PoolError> {
        self.ask(SchedulerMsg::WaitReady).await
    }

    /// Whether the pool still runs tasks.
    pub fn health(&self) -> PoolHealth {
        self.health.borrow().clone()
    }

    /// Stops the pool in order: open tasks end as cancelled, every slot's process group is
    /// stopped and reaped, then the actors stop. Idempotent.
    pub async fn shutdown(&self) {
        let _ = ractor::call!(self.root, RootMsg::Shutdown);
        let mut health = self.health.clone();
        let _ = health
            .wait_for(|h| matches!(h, PoolHealth::Stopped(_)))
            .await;
    }

    async fn ask<T, F>(&self, msg: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(RpcReplyPort<T>) -> SchedulerMsg,
    {
        match self.scheduler.call(msg, None).await {
            Ok(ractor::rpc::CallResult::Success(v)) => Ok(v),
            _ => Err(PoolError::Stopped(match self.health() {
                PoolHealth::Stopped(reason) => reason,
                PoolHealth::Running => "the scheduler did not answer".into(),
            })),
        }
    }
}

/// Builds a [`Pool`].
#[derive(Debug, Clone, Default)]
pub struct PoolBuilder {
    config: PoolConfig,
}

impl PoolBuilder {
    /// Number of slots (default 2).
    pub fn slots(mut self, n: usize) -> Self {
        self.config.slots = n;
        self
    }

    /// The `claude` executable (default: `claude` on PATH).
    pub fn claude_bin(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.claude_bin = path.into();
        self
    }

    /// Default model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.config.defaults.model = Some(model.into());
        self
    }

    /// Default effort.
    pub fn effort(mut self, effort: Effort) -> Self {
        self.config.defaults.effort = Some(effort);
        self
    }

    /// Default permission mode (default `plan`).
    pub fn permission_mode(mut self, mode: PermissionMode) -> Self {
        self.config.defaults.permission_mode = Some(mode);
        self
    }

    /// Text appended to Claude Code's own system prompt.
    pub fn append_system_prompt(mut self, text: impl Into<String>) -> Self {
        self.config.append_system_prompt = Some(text.into());
        self
    }

    /// Deadline of tasks that set none (default 30 min).
    pub fn default_timeout(mut self, timeout: Duration) -> Self {
        self.config.default_timeout = timeout;
        self
    }

    /// Replace a process after this many tasks (default 50).
    pub fn recycle_after_turns(mut self, n: u64) -> Self {
        self.config.recycle_after_turns = n.max(1);
        self
    }

    /// Finished tasks kept for [`Pool::result`] (default 10 000); older ones are forgotten.
    pub fn max_finished_tasks(mut self, n: usize) -> Self {
        self.config.max_finished_tasks = n.max(1);
        self
    }

    /// Working directory of the Claude processes.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.cwd = Some(dir.into());
        self
    }

    /// Adds a variable to the children's environment.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.config.env.push((key.into(), value.into()));
        self
    }

    /// Whether children inherit this process's environment (default true).
    pub fn inherit_env(mut self, inherit: bool) -> Self {
        self.config.inherit_env = inherit;
        self
    }

    /// Extra CLI arguments for every process.
    pub fn extra_args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.config.extra_args.extend(args);
        self
    }

    /// Restart limits and backoff of slots.
    pub fn slot_restart(mut self, policy: RestartPolicy) -> Self {
        self.config.slot_restart = policy;
        self
    }

    /// Restart limits and backoff of the slot supervisor.
    pub fn supervisor_restart(mut self, policy: RestartPolicy) -> Self {
        self.config.supervisor_restart = policy;
        self
    }

    /// Grace after an interrupt, and after SIGTERM.
    pub fn grace(mut self, interrupt: Duration, kill: Duration) -> Self {
        self.config.interrupt_grace = interrupt;
        self.config.kill_grace = kill;
        self
    }

    /// How long a fresh process may take to warm up (default 60 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.config.startup_timeout = timeout;
        self
    }

    /// The configuration as built so far.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Starts the pool.
    pub async fn build(self) -> Result<Pool, PoolError> {
        Pool::start(self.config).await
    }
}
