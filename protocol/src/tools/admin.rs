//! Pool administration: `pool_status`, `pool_scale_up`, `pool_scale_down`,
//! `pool_set_target_slots`, `pool_drain`, and the budget as `pool://budget` shows it.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{SlotId, TaskId};
use crate::status::SlotStatus;
use crate::timeout::Timeout;

/// Parameters of `pool_status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// Wait for every slot to be idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ready: Option<Timeout>,
}

/// One slot in `pool_status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SlotReport {
    /// The slot's id.
    pub id: SlotId,
    /// starting, idle, busy, cancelling, restarting, stopping, stopped, failed or cold.
    pub status: SlotStatus,
    /// Whether it has (or is getting) a Claude process: false once cold.
    #[serde(default = "yes")]
    pub warm: bool,
    /// Tasks running on the slot (0 or 1).
    pub active_tasks: u32,
    /// The task it is running.
    pub task_id: Option<TaskId>,
    /// How many times its supervisor restarted it.
    pub restarts: u32,
    /// Pid (and process-group id) of its Claude process.
    pub pid: Option<u32>,
    /// Tasks its current process has served.
    pub turns: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// With --worktree: the slot's git worktree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<String>,
    /// Resident memory of its process group, in bytes (read at most once a second).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// The machine it runs on, for a slot of a host that joined the pool; absent for this
    /// machine's own slots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

fn yes() -> bool {
    true
}

/// Task counts by status. They always add up to `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskCounts {
    /// Every task the pool has seen.
    pub total: u64,
    /// Waiting for a slot.
    pub pending: u64,
    /// Running on a slot.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Interrupted: running when an earlier server stopped without a graceful shutdown.
    #[serde(default)]
    pub interrupted: u64,
}

/// Task counts for each kind of work.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TasksByKind {
    /// Pool tasks (pool_run, pool_submit, fan-outs, chain steps, skills).
    pub task: TaskCounts,
    /// Jobs of claude_run.
    pub run: TaskCounts,
    /// Jobs of claude_build.
    pub build: TaskCounts,
}

impl TasksByKind {
    /// The counts of `kind`.
    pub fn of(&self, kind: super::task::TaskKind) -> &TaskCounts {
        match kind {
            super::task::TaskKind::Task => &self.task,
            super::task::TaskKind::Run => &self.run,
            super::task::TaskKind::Build => &self.build,
        }
    }

    /// The counts of `kind`, to change.
    pub fn of_mut(&mut self, kind: super::task::TaskKind) -> &mut TaskCounts {
        match kind {
            super::task::TaskKind::Task => &mut self.task,
            super::task::TaskKind::Run => &mut self.run,
            super::task::TaskKind::Build => &mut self.build,
        }
    }

    /// Every kind together.
    pub fn sum(&self) -> TaskCounts {
        let mut all = TaskCounts::default();
        for c in [&self.task, &self.run, &self.build] {
            all.add(c);
        }
        all
    }

    /// Adds `other`'s counts, kind by kind.
    pub fn add(&mut self, other: &TasksByKind) {
        self.task.add(&other.task);
        self.run.add(&other.run);
        self.build.add(&other.build);
    }
}

impl TaskCounts {
    /// Adds `other`'s counts, status by status.
    pub fn add(&mut self, other: &TaskCounts) {
        self.total += other.total;
        self.pending += other.pending;
        self.running += other.running;
        self.completed += other.completed;
        self.failed += other.failed;
        self.cancelled += other.cancelled;
        self.timed_out += other.timed_out;
        self.interrupted += other.interrupted;
    }
}

/// What `pool_status` returns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoolStatusReport {
    /// Every slot.
    pub slots: Vec<SlotReport>,
    /// Tasks running now.
    pub active_tasks: u64,
    /// Tasks waiting for a slot.
    pub pending_tasks: u64,
    /// Dollars spent in the budget's period (this run unless `--budget-period` says a
    /// calendar window).
    pub spend_usd: f64,
    /// The budget cap, null while none is set.
    pub budget_usd: Option<f64>,
    /// Dollars left under the cap, null while none is set.
    pub budget_remaining: Option<f64>,
    /// Task counts by status.
    pub tasks: TaskCounts,
    /// The same counts for each kind of work: pool tasks, claude_run jobs, claude_build
    /// jobs. Each kind's counts add up to its total, and the kinds add up to `tasks`.
    #[serde(default)]
    pub tasks_by_kind: TasksByKind,
    /// False once the pool has stopped (shutdown, drain, or slots that cannot be kept alive
    /// — then `refusing` says why).
    pub running: bool,
    /// Why new work is refused right now (drained, shut down, budget exhausted, halted), or
    /// null while the pool accepts work.
    pub refusing: Option<String>,
    /// Slots the pool is sized to (slots being removed are not counted).
    pub target_slots: u32,
    /// --min-slots: the floor of pool_scale_down.
    pub min_slots: u32,
    /// --max-slots: the ceiling of pool_scale_up.
    pub max_slots: u32,
    /// Slots with a process (or getting one).
    #[serde(default)]
    pub warm_slots: u32,
    /// The slots kept warm whatever the idle timeout.
    #[serde(default)]
    pub warm_floor: u32,
    /// Seconds a slot stays warm with nothing to do (`None`: for ever).
    #[serde(default)]
    pub idle_timeout_secs: Option<f64>,
    /// Resident memory of every slot's process group together, in bytes.
    #[serde(default)]
    pub slots_rss_bytes: u64,
    /// Chains by status.
    pub chains: ChainCounts,
    /// Where tasks, chains, context and spend are kept, and how big the files are.
    #[serde(default)]
    pub store: Option<StoreReport>,
    /// The run this server is in; `tasks`, `spend_usd` and the context table are the run's.
    #[serde(default)]
    pub run: Option<RunReport>,
    /// Totals over everything the store ever held, this run included.
    #[serde(default)]
    pub lifetime: LifetimeReport,
    /// The budget: the period the cap covers, the spend in it, the run's and the lifetime's.
    #[serde(default)]
    pub budget: Option<BudgetReport>,
    /// The most a task may ask for as its permission_mode (--max-permission-mode, or the
    /// server's own --permission-mode when higher); a higher mode is refused. Modes from
    /// least to most allowed: plan, dontAsk, manual, default, acceptEdits, auto,
    /// bypassPermissions.
    pub max_permission_mode: crate::PermissionMode,
    /// Workers' permission questions: the server's rules, the timeout, what waits now.
    #[serde(default)]
    pub approvals: ApprovalsStatus,
    /// How the API answers: whether the pool holds turns back because it refuses them.
    #[serde(default)]
    pub api: ApiStatus,
}

/// The admission gate, as `pool_status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiStatus {
    /// `ok` (every slot may run a turn), `limited` (the API refused turns for rate or
    /// load: fewer run at once until it calms down) or `paused` (a usage window is used
    /// up, or at --max-window-use: no turn starts until `resets_at`).
    pub state: String,
    /// Turns allowed at once while limited; the slot count when `ok`.
    pub ceiling: u64,
    /// Rate and load refusals (HTTP 429 and 529) seen in the last minute.
    pub retries_last_minute: u64,
    /// While paused: when turns start again (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
    /// While paused: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<String>,
    /// The subscription's usage windows as the API last reported them (subscription
    /// credentials only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub windows: Vec<ApiWindow>,
    /// While limited: each model held to a ceiling (the API's limits are per model; a
    /// model's refusals hold back only its own turns). The empty name is the CLI's default.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ApiModel>,
}

/// A model the admission gate holds to a ceiling.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiModel {
    /// The model as tasks ask for it.
    pub model: String,
    /// Its turns allowed at once.
    pub ceiling: u64,
}

/// One usage window of a subscription, as the API reports it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApiWindow {
    /// `five_hour`, `seven_day`, …
    pub name: String,
    /// `allowed`, `allowed_warning` or `rejected` (used up until `resets_at`).
    pub status: String,
    /// How much of it is used, 0..1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utilization: Option<f64>,
    /// When it starts again (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<String>,
}

/// The approvals part of `pool_status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ApprovalsStatus {
    /// Rules that allow without asking (a task's own allow rules must lie within them).
    pub allow: Vec<String>,
    /// Rules that deny without asking.
    pub deny: Vec<String>,
    /// How long a question waits for an answer before it is denied, in seconds.
    pub timeout_secs: f64,
    /// Questions waiting now, oldest first (answer with pool_approve).
    pub pending: Vec<crate::approvals::ApprovalRequest>,
}

/// Where the store is and how it is held.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StoreReport {
    /// The SQLite file; null in memory.
    pub path: Option<String>,
    /// `project`: the default, shared by every server started in the same directory;
    /// `exclusive`: an explicit `--db`, one server alone; `memory`: nothing survives.
    pub mode: String,
    /// Bytes of the database file.
    pub db_bytes: u64,
    /// Bytes of its write-ahead log.
    pub wal_bytes: u64,
}

/// A run: a server's life from its start to a graceful stop (a crash restart continues it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RunReport {
    /// The run's id.
    pub id: String,
    /// When it began (RFC 3339).
    pub started_at: String,
    /// True when this server continues the run of a server that crashed.
    pub continued: bool,
}

/// Lifetime totals of a store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LifetimeReport {
    /// Tasks by status, every run's.
    pub tasks: TaskCounts,
    /// Dollars, every run's.
    pub spend_usd: f64,
}

/// Chain counts by status. They add up to `total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChainCounts {
    /// Every chain the pool has seen.
    pub total: u64,
    /// Waiting to start or running.
    pub in_progress: u64,
    /// Every step completed or was skipped.
    pub completed: u64,
    /// A step failed and the chain stopped.
    pub failed: u64,
    /// Cancelled by a caller, a drain or shutdown.
    pub cancelled: u64,
}

/// Parameters of `pool_scale_up` and `pool_scale_down`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScaleParams {
    pub count: u32,
    /// A slot host's name: scale its slots instead of this machine's; `any`: the least
    /// loaded host.
    #[cfg(feature = "cluster")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
}

/// Parameters of `pool_set_target_slots`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetParams {
    pub target: u32,
}

/// What the scaling tools return.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ScaleReport {
    /// True when the pool now has the asked-for size.
    pub success: bool,
    /// Slots after the change.
    pub new_slot_count: u32,
    /// What happened, in words (e.g. "Scaled up by 2 slots").
    pub details: String,
    /// The target asked for (pool_set_target_slots only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<u32>,
    /// Slots added or removed.
    pub slots: Vec<SlotId>,
}

/// Parameters of `pool_drain`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrainParams {
    /// Cancel running tasks after this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

/// What `pool_drain` returns: every task the pool has run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DrainReport {
    /// Every task the pool has seen.
    pub total_tasks: u64,
    /// Completed tasks.
    pub completed: u64,
    /// Tasks that failed or timed out.
    pub errors: u64,
    /// Cancelled tasks (pending ones cancelled by the drain included).
    pub cancelled: u64,
    /// Of `errors`, the failed ones.
    pub failed: u64,
    /// Of `errors`, the timed-out ones.
    pub timed_out: u64,
    /// Dollars spent by every task.
    pub total_spend: f64,
    /// Tasks still running when the drain's timeout ran out, which it then cancelled.
    pub cancelled_running: u64,
    /// Chains the drain cancelled.
    pub cancelled_chains: u64,
}

/// The budget as `pool://budget` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetReport {
    /// The cap (--budget-usd), null when none is set.
    pub budget_usd: Option<f64>,
    /// Dollars spent in the period the cap covers (`period`): every finished task's own
    /// spend, failed, cancelled and timed-out ones included.
    pub spend_usd: f64,
    /// Dollars left under the cap after spend and what running tasks have spent so far; null
    /// without a cap.
    pub budget_remaining: Option<f64>,
    /// What running tasks have spent so far (input of every API call already made), not yet
    /// in `spend_usd`.
    pub in_flight_usd: f64,
    /// Dollars reserved for running tasks at dispatch.
    pub reserved_usd: f64,
    /// True once the cap is reached: new work is refused.
    pub exhausted: bool,
    /// What the cap covers: `run` (this server's run, from its start to a graceful stop),
    /// or a UTC calendar `day`, `week` or `month` (`--budget-period`).
    #[serde(default)]
    pub period: String,
    /// When the period began (RFC 3339): the run's start, or the window's.
    #[serde(default)]
    pub window_started_at: Option<String>,
    /// When a calendar window ends and its spend starts again from zero (RFC 3339); null for
    /// a run.
    #[serde(default)]
    pub window_ends_at: Option<String>,
    /// Dollars spent in this run (equal to `spend_usd` when the period is the run).
    #[serde(default)]
    pub run_spend_usd: f64,
    /// Dollars spent by every task the store ever held, this run's included.
    #[serde(default)]
    pub lifetime_spend_usd: f64,
    /// The token cap (--budget-tokens) over the same period, null when none is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_tokens: Option<u64>,
    /// Tokens used in the period: input, output, cache reads and writes of every
    /// finished task.
    #[serde(default)]
    pub tokens_used: u64,
    /// Tokens running tasks have used so far.
    #[serde(default)]
    pub tokens_in_flight: u64,
}
