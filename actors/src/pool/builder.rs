//! [`PoolBuilder`]: a [`Pool`]'s configuration, one knob at a time.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use claude_pool_protocol::{Effort, PermissionMode};

use super::Pool;
use crate::config::PoolConfig;
use crate::error::PoolError;
use crate::restart::RestartPolicy;

/// Builds a [`Pool`].
#[derive(Debug, Clone, Default)]
pub struct PoolBuilder {
    config: PoolConfig,
}

impl PoolBuilder {
    /// Number of slots at start (default 2).
    pub fn slots(mut self, n: usize) -> Self {
        self.config.slots = n;
        self
    }

    /// Scaling bounds (default 1 and 16).
    pub fn slot_bounds(mut self, min: usize, max: usize) -> Self {
        self.config.min_slots = min;
        self.config.max_slots = max;
        self
    }

    /// How long a busy slot being removed may finish its task (default 30 s).
    pub fn scale_down_grace(mut self, grace: Duration) -> Self {
        self.config.scale_down_grace = grace;
        self
    }

    /// The pool's spend cap in dollars.
    pub fn budget_usd(mut self, usd: f64) -> Self {
        self.config.budget_usd = Some(usd);
        self
    }

    /// Each slot works in its own git worktree of the repository at `cwd`.
    pub fn worktree(mut self, on: bool) -> Self {
        self.config.worktree = on;
        self
    }

    /// Loads skills from this directory too.
    pub fn skill_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.config.skill_dirs.push(dir.into());
        self
    }

    /// Whether the built-in skills exist (default true).
    pub fn builtin_skills(mut self, on: bool) -> Self {
        self.config.builtin_skills = on;
        self
    }

    /// How given-up slots and a halted pool are probed (default 60 s doubling to 15 min).
    pub fn probe(mut self, policy: RestartPolicy) -> Self {
        self.config.probe = policy;
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

    /// The most a task may ask for as its permission mode (default `acceptEdits`; never
    /// below the default mode).
    pub fn max_permission_mode(mut self, mode: PermissionMode) -> Self {
        self.config.max_permission_mode = mode;
        self
    }

    /// Default permission mode (default `plan`); allowed whatever the ceiling.
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

    /// A slot idle this long lets its process go until work needs it (default 10 min;
    /// `None`: never).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.idle_timeout = timeout;
        self
    }

    /// Keeps this many slots warm whatever the idle timeout (default 1).
    pub fn warm_slots(mut self, n: usize) -> Self {
        self.config.warm_slots = n;
        self
    }

    /// Replaces a slot's process after its task once its process group's resident memory
    /// passes `bytes`.
    pub fn max_slot_rss(mut self, bytes: u64) -> Self {
        self.config.max_slot_rss = Some(bytes);
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

    /// Keeps tasks, chains, the context table and spend in a SQLite store at `path`
    /// (created when absent) that this pool holds alone; transcripts go beside it.
    pub fn store(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.store = Some(crate::config::StoreLocation::File(path.into()));
        self
    }

    /// Keeps them in the store of the project in `dir`, shared with every other pool and
    /// server of that project (the server's default): see
    /// [`crate::StoreLocation::for_project`].
    pub fn project_store(mut self, dir: impl AsRef<std::path::Path>) -> Self {
        let path = crate::config::StoreLocation::for_project(dir.as_ref());
        self.config.store = Some(crate::config::StoreLocation::Shared(path));
        self
    }

    /// What `budget_usd` caps: the run (default) or a calendar window kept in the store.
    pub fn budget_period(mut self, period: crate::config::BudgetPeriod) -> Self {
        self.config.budget_period = period;
        self
    }

    /// Keeps the store in memory (the job API works; nothing survives the process).
    pub fn memory_store(mut self) -> Self {
        self.config.store = Some(crate::config::StoreLocation::Memory);
        self
    }

    /// The job API's projects file.
    pub fn projects_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config.projects_file = Some(path.into());
        self
    }

    /// The recursion depth of requests made through this pool (default 0), and the depth
    /// at which work is refused (default 2).
    pub fn depth(mut self, depth: u32, max_depth: u32) -> Self {
        self.config.defaults.depth = depth;
        self.config.max_depth = max_depth;
        self
    }

    /// The configuration as built so far.
    pub fn config(&self) -> &PoolConfig {
        &self.config
    }

    /// Takes slot hosts (`claude-pool-server host --join`, or [`crate::cluster::host`]) from
    /// other machines at `listen`.
    #[cfg(feature = "cluster")]
    pub fn listen_for_hosts(
        mut self,
        listen: std::net::SocketAddr,
        options: crate::cluster::ClusterOptions,
    ) -> Self {
        self.config.hosts = Some((listen, options));
        self
    }

    /// Starts the pool.
    pub async fn build(self) -> Result<Pool, PoolError> {
        Pool::start(self.config).await
    }
}
