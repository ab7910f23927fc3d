//! Pool configuration: what every slot's Claude process runs with, and the supervision knobs.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_pool_protocol::stream::PERSISTENT_ARGS;
use claude_pool_protocol::{Effort, PermissionMode};

use crate::process::SpawnSpec;
use crate::restart::RestartPolicy;

mod budget;
mod tools;
pub use budget::BudgetPeriod;
pub use tools::ToolProfile;

/// The CLI's own retry budget for a failed API call.
pub const MAX_RETRIES_ENV: &str = "CLAUDE_CODE_MAX_RETRIES";

/// Variables a child Claude must never inherit: under a Claude Code parent they make the
/// child refuse to start.
pub const SCRUBBED_ENV: [&str; 2] = ["CLAUDECODE", "CLAUDE_CODE_ENTRYPOINT"];

/// The recursion depth a Claude process runs at: the depth of the request it serves, plus
/// one. A server reads its own depth from it; a nested call through the pool carries it.
pub const DEPTH_ENV: &str = "CLAUDE_MCP_DEPTH";

/// The settings one Claude process runs with. Model and permission mode can change inside a
/// running process (control requests); effort is fixed per process.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct ProcSettings {
    /// `--model`, or the CLI's default.
    pub model: Option<String>,
    /// `--permission-mode`.
    pub permission_mode: Option<PermissionMode>,
    /// `--effort`, or the CLI's default.
    pub effort: Option<Effort>,
    /// The working directory, when a task needs its own (a project's, a build's worktree);
    /// `None`: the slot's worktree or the pool's directory.
    pub cwd: Option<PathBuf>,
    /// `--allowedTools`.
    pub allowed_tools: Option<Vec<String>>,
    /// The recursion depth of the requests the process serves: it runs with
    /// `CLAUDE_MCP_DEPTH` one more than this.
    pub depth: u32,
}

/// How long a slot stays warm with nothing to do, by default.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// Everything a pool needs. Build one with [`crate::PoolBuilder`].
#[derive(Clone)]
pub struct PoolConfig {
    /// Number of slots at start.
    pub slots: usize,
    /// The floor of scaling down.
    pub min_slots: usize,
    /// The ceiling of scaling up.
    pub max_slots: usize,
    /// How long a busy slot being removed may finish its task before it is cancelled.
    pub scale_down_grace: Duration,
    /// The pool's spend cap in dollars; `None` for no cap.
    pub budget_usd: Option<f64>,
    /// Token cap over the same period (`--budget-tokens`): every token the API processed
    /// for the pool's tasks — input, output, cache reads and writes.
    pub budget_tokens: Option<u64>,
    /// Each slot works in its own git worktree of the repository at `cwd`.
    pub worktree: bool,
    /// Directories of Claude Code-style skills (`<dir>/<name>/SKILL.md` or `<dir>/<name>.md`).
    pub skill_dirs: Vec<PathBuf>,
    /// Whether the built-in skills (code_review, write_tests, refactor, summarize) exist.
    pub builtin_skills: bool,
    /// The `claude` executable.
    pub claude_bin: PathBuf,
    /// Default settings for every task.
    pub defaults: ProcSettings,
    /// Appended to Claude Code's own system prompt (`--append-system-prompt`); never replaces it.
    pub append_system_prompt: Option<String>,
    /// Deadline of a task that does not set its own, counted from submission.
    pub default_timeout: Duration,
    /// A process is replaced after serving this many tasks (its memory grows per turn).
    pub recycle_after_turns: u64,
    /// A process whose group's resident memory passes this many bytes is replaced after
    /// its task (never during one). `None`: no limit.
    pub max_slot_rss: Option<u64>,
    /// A slot idle this long lets its process go and stays cold until work needs it;
    /// `None` keeps every slot warm.
    pub idle_timeout: Option<Duration>,
    /// The slots kept warm whatever the idle timeout (the floor).
    pub warm_slots: usize,
    /// How many finished tasks the scheduler keeps for `pool_result`; older ones are
    /// forgotten (their counts stay in the status) so a long-running pool's memory is bounded.
    pub max_finished_tasks: usize,
    /// Working directory of the Claude processes.
    pub cwd: Option<PathBuf>,
    /// Extra variables for the children, on top of the inherited environment.
    pub env: Vec<(OsString, OsString)>,
    /// Whether children inherit the server's environment (minus [`SCRUBBED_ENV`]).
    pub inherit_env: bool,
    /// Extra CLI arguments for every process.
    pub extra_args: Vec<String>,
    /// How the slot supervisor restarts a failed slot.
    pub slot_restart: RestartPolicy,
    /// How the root supervisor restarts a failed slot supervisor.
    pub supervisor_restart: RestartPolicy,
    /// How a given-up slot, and a pool halted because no slot could start, are probed.
    pub probe: RestartPolicy,
    /// After an interrupt, how long to wait for the turn's result before SIGTERM.
    pub interrupt_grace: Duration,
    /// After SIGTERM, how long to wait for the exit before SIGKILL.
    pub kill_grace: Duration,
    /// How long a fresh process may take to answer its first `/clear`.
    pub startup_timeout: Duration,
    /// Where tasks, chains, the context table and spend are kept; `None`: in memory only.
    pub store: Option<StoreLocation>,
    /// Per-task transcripts kept next to the store (oldest deleted first).
    pub keep_transcripts: usize,
    /// The projects file of the job API (`projects.json`).
    pub projects_file: Option<PathBuf>,
    /// Requests at this depth or deeper may not start work (`recursion_limit_exceeded`).
    pub max_depth: u32,
    /// The most a job's `allowedTools` may ask for; `None`: no limit.
    pub max_allowed_tools: Option<Vec<String>>,
    /// What `budget_usd` caps: one run, or a calendar window kept in the store.
    pub budget_period: BudgetPeriod,
    /// How long finished task rows stay in a store file.
    pub retention: Retention,
    /// The most bytes the transcripts beside the store may take together.
    pub transcripts_max_bytes: u64,
    /// Set by the pool when it opens its store: the marker every process it starts
    /// carries (`crate::process::leftovers`). Not for callers to set.
    pub process_marker: Option<PathBuf>,
    /// Over HTTP: the main token, kept out of every child's environment, and the depth
    /// tokens each child gets instead (`CLAUDE_POOL_TOKEN`); `None` over stdio.
    pub credentials: Option<std::sync::Arc<crate::credentials::Credentials>>,
    /// Take slot hosts from other machines at this address (`--listen-hosts`).
    #[cfg(feature = "cluster")]
    pub hosts: Option<(std::net::SocketAddr, crate::cluster::ClusterOptions)>,
    /// The most a task may ask for as its permission mode (`--max-permission-mode`): a
    /// client may lower a task's mode, never raise it past what the operator allowed. See
    /// [`PoolConfig::permission_ceiling`].
    pub max_permission_mode: PermissionMode,
    /// The server's permission rules (`--allow`, `--deny`, `--rules`): they answer a
    /// worker's permission question before anyone is asked. Deny rules also go to every
    /// process as `--disallowedTools`, so they hold in modes that never ask.
    pub rules: std::sync::Arc<claude_pool_protocol::rules::RuleSet>,
    /// How long a permission question waits for an answer before it is denied, unless its
    /// task sets its own (`--approval-timeout`).
    pub approval_timeout: Duration,
    /// The first wait of a task whose turn the API refused for rate or load, before it is
    /// queued again; it doubles with each refusal, up to 30 s (`--requeue-backoff`).
    pub requeue_backoff: Duration,
    /// Whether the pool answers the API's rate and load refusals itself (`--api-adapt`,
    /// on by default): fewer turns at once, refused turns queued again, the CLI's own
    /// retries cut to two. Off, each slot's CLI retries on its own (its default) and a turn
    /// still refused fails.
    pub api_adapt: bool,
    /// Which tools the MCP front-end lists and serves (`--tools`).
    pub tools: ToolProfile,
    /// Whether sessions are told what ended as Claude Code channel messages (`--channels`).
    pub channels: bool,
    /// Hold dispatch when a subscription usage window reaches this utilisation (0..1),
    /// until it resets (`--max-window-use`); a used-up window holds it regardless.
    pub max_window_use: Option<f64>,
}

/// How long a worker's permission question waits for a person by default.
pub const DEFAULT_APPROVAL_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// The ceiling of a task's permission mode when the operator sets none: edits are the most
/// a client may ask for, never a classifier's or no checks at all.
pub const DEFAULT_MAX_PERMISSION_MODE: PermissionMode = PermissionMode::AcceptEdits;

/// Where the durable store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A SQLite file (created when absent) this server holds alone (an explicit `--db`),
    /// with transcripts in `<file stem>-transcripts/` and build worktrees in
    /// `<file stem>-builds/` beside it.
    File(PathBuf),
    /// A project's SQLite file, shared by every server started in that project at once,
    /// each with a lease of its own (the default: [`StoreLocation::for_project`]).
    Shared(PathBuf),
    /// An in-memory database: the job API works, nothing survives the process.
    Memory,
}

impl StoreLocation {
    /// The directory of claude-pool's state: `$XDG_STATE_HOME/claude-pool`, else
    /// `~/.local/state/claude-pool`, else `./.claude-pool`.
    pub fn state_dir() -> PathBuf {
        let state = std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|v| !v.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/state"))
            });
        match state {
            Some(dir) => dir.join("claude-pool"),
            None => PathBuf::from(".claude-pool"),
        }
    }

    /// The store of the project in `dir` (made absolute):
    /// `<state dir>/projects/<dir's name>-<16 hex digits of a hash of its path>/pool.db`.
    /// Every server started in one directory shares it; two directories never do.
    pub fn for_project(dir: &Path) -> PathBuf {
        Self::project_store_in(&Self::state_dir(), dir)
    }

    /// [`StoreLocation::for_project`] under another state directory.
    pub fn project_store_in(state_dir: &Path, dir: &Path) -> PathBuf {
        let abs = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let name: String = abs
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "root".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(48)
            .collect();
        let hash = fnv1a64(abs.as_os_str().as_encoded_bytes());
        state_dir
            .join("projects")
            .join(format!("{name}-{hash:016x}"))
            .join("pool.db")
    }

    /// The store's file, if it has one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            StoreLocation::File(f) | StoreLocation::Shared(f) => Some(f),
            StoreLocation::Memory => None,
        }
    }

    /// How the store is held, in words: `exclusive`, `project` or `memory`.
    pub fn mode(&self) -> &'static str {
        match self {
            StoreLocation::File(_) => "exclusive",
            StoreLocation::Shared(_) => "project",
            StoreLocation::Memory => "memory",
        }
    }

    /// A directory beside the store file named `<stem>-<what>`; `None` in memory.
    pub fn beside(&self, what: &str) -> Option<PathBuf> {
        let f = self.file()?;
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pool".into());
        let dir = f.parent().unwrap_or_else(|| Path::new("."));
        Some(dir.join(format!("{stem}-{what}")))
    }
}

/// FNV-1a, 64 bits: a hash whose value never changes between builds (a project's store
/// must be found again by every later server).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            slots: 2,
            min_slots: 1,
            max_slots: 16,
            scale_down_grace: Duration::from_secs(30),
            budget_usd: None,
            budget_tokens: None,
            worktree: false,
            skill_dirs: Vec::new(),
            builtin_skills: true,
            claude_bin: PathBuf::from("claude"),
            defaults: ProcSettings {
                model: None,
                permission_mode: Some(PermissionMode::Plan),
                effort: None,
                cwd: None,
                allowed_tools: None,
                depth: 0,
            },
            append_system_prompt: None,
            default_timeout: Duration::from_secs(30 * 60),
            recycle_after_turns: 50,
            max_slot_rss: None,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            warm_slots: 1,
            max_finished_tasks: 10_000,
            cwd: None,
            env: Vec::new(),
            inherit_env: true,
            extra_args: Vec::new(),
            slot_restart: RestartPolicy::SLOT_DEFAULT,
            supervisor_restart: RestartPolicy::SLOT_SUPERVISOR_DEFAULT,
            probe: RestartPolicy::PROBE_DEFAULT,
            interrupt_grace: Duration::from_secs(2),
            kill_grace: Duration::from_secs(2),
            startup_timeout: Duration::from_secs(60),
            store: None,
            keep_transcripts: 2000,
            budget_period: BudgetPeriod::Run,
            retention: Retention::DEFAULT,
            transcripts_max_bytes: 1 << 30,
            process_marker: None,
            projects_file: None,
            max_depth: 2,
            max_allowed_tools: None,
            #[cfg(feature = "cluster")]
            hosts: None,
            credentials: None,
            max_permission_mode: DEFAULT_MAX_PERMISSION_MODE,
            rules: std::sync::Arc::default(),
            approval_timeout: DEFAULT_APPROVAL_TIMEOUT,
            requeue_backoff: Duration::from_secs(1),
            api_adapt: true,
            tools: ToolProfile::All,
            channels: false,
            max_window_use: None,
        }
    }
}

impl fmt::Debug for PoolConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values of `env` may be API keys: names only.
        let env_names: Vec<_> = self.env.iter().map(|(k, _)| k.to_string_lossy()).collect();
        f.debug_struct("PoolConfig")
            .field("slots", &self.slots)
            .field("min_slots", &self.min_slots)
            .field("max_slots", &self.max_slots)
            .field("budget_usd", &self.budget_usd)
            .field("budget_tokens", &self.budget_tokens)
            .field("worktree", &self.worktree)
            .field("claude_bin", &self.claude_bin)
            .field("defaults", &self.defaults)
            .field(
                "append_system_prompt",
                &self.append_system_prompt.as_ref().map(|s| s.len()),
            )
            .field("default_timeout", &self.default_timeout)
            .field("recycle_after_turns", &self.recycle_after_turns)
            .field("max_slot_rss", &self.max_slot_rss)
            .field("idle_timeout", &self.idle_timeout)
            .field("warm_slots", &self.warm_slots)
            .field("cwd", &self.cwd)
            .field("env_names", &env_names)
            .field("inherit_env", &self.inherit_env)
            .field("extra_args", &self.extra_args)
            .field("slot_restart", &self.slot_restart)
            .field("supervisor_restart", &self.supervisor_restart)
            .field("store", &self.store)
            .field("projects_file", &self.projects_file)
            .field("max_depth", &self.max_depth)
            .field("credentials", &self.credentials)
            .field("max_permission_mode", &self.max_permission_mode)
            .field("rules", &self.rules)
            .field("approval_timeout", &self.approval_timeout)
            .finish_non_exhaustive()
    }
}

impl PoolConfig {
    /// The most a task may ask for as its permission mode: `--max-permission-mode`, or the
    /// server's own default mode when that is higher (an operator who starts the server in
    /// a mode has allowed it). A server without a default mode runs the CLI's `default`.
    pub fn permission_ceiling(&self) -> PermissionMode {
        let own = self
            .defaults
            .permission_mode
            .unwrap_or(PermissionMode::Default);
        self.max_permission_mode.most(own)
    }

    /// Refuses a task's permission mode above [`PoolConfig::permission_ceiling`], naming
    /// the ceiling and the order; `what` names the asker in the message.
    pub fn check_permission_mode(&self, what: &str, mode: PermissionMode) -> Result<(), String> {
        let ceiling = self.permission_ceiling();
        if mode.within(ceiling) {
            return Ok(());
        }
        Err(format!(
            "{what} \"{mode}\" is above this server's permission ceiling \"{ceiling}\" (modes from least to most allowed: {}); the operator raises the ceiling with --max-permission-mode or --permission-mode",
            PermissionMode::order_text()
        ))
    }

    /// A task's own permission rules, refused when one does not parse or an allow rule
    /// reaches past every one of the server's allow rules (a task may narrow what the
    /// server allows without asking, never widen it). `None` when it gives none.
    pub fn task_rules(
        &self,
        allow: &[String],
        deny: &[String],
    ) -> Result<Option<std::sync::Arc<claude_pool_protocol::rules::RuleSet>>, String> {
        if allow.is_empty() && deny.is_empty() {
            return Ok(None);
        }
        let set = claude_pool_protocol::rules::RuleSet::parse(allow, deny)
            .map_err(|e| format!("permission rules: {e}"))?;
        for rule in set.allow() {
            if !self.rules.allow().iter().any(|wide| rule.covered_by(wide)) {
                let server: Vec<String> =
                    self.rules.allow().iter().map(ToString::to_string).collect();
                let server = if server.is_empty() {
                    "none".to_owned()
                } else {
                    server.join(", ")
                };
                return Err(format!(
                    "allow: {rule} is wider than this server's allow rules ({server}); a task's rules may only narrow them (the operator adds rules with --allow or --rules)"
                ));
            }
        }
        Ok(Some(std::sync::Arc::new(set)))
    }

    /// Checks the numbers a pool cannot run with.
    pub fn validate(&self) -> Result<(), String> {
        if self.min_slots == 0 {
            return Err("--min-slots must be at least 1".into());
        }
        if self.min_slots > self.max_slots {
            return Err(format!(
                "--min-slots ({}) is above --max-slots ({})",
                self.min_slots, self.max_slots
            ));
        }
        if self.slots < self.min_slots || self.slots > self.max_slots {
            return Err(format!(
                "--slots ({}) must be within --min-slots ({}) and --max-slots ({})",
                self.slots, self.min_slots, self.max_slots
            ));
        }
        if let Some(b) = self.budget_usd
            && !(b.is_finite() && b > 0.0)
        {
            return Err(format!("--budget-usd must be a positive amount, not {b}"));
        }
        if self.budget_tokens == Some(0) {
            return Err("--budget-tokens must be at least 1".into());
        }
        if let Some(m) = self.max_window_use
            && !(m.is_finite() && m > 0.0 && m <= 1.0)
        {
            return Err(format!(
                "--max-window-use must be above 0 and at most 1, not {m}"
            ));
        }
        Ok(())
    }

    /// The command line and environment for a process running with `settings`, in the
    /// settings' own directory, else `cwd` (a slot's worktree), else the pool's directory;
    /// `resume` continues that conversation.
    pub fn spawn_spec(
        &self,
        settings: &ProcSettings,
        cwd: Option<&Path>,
        resume: Option<&str>,
    ) -> SpawnSpec {
        let mut args: Vec<String> = PERSISTENT_ARGS.map(String::from).to_vec();
        // Permission questions come to the slot as control requests (approvals).
        args.extend(["--permission-prompt-tool".into(), "stdio".into()]);
        if !self.rules.deny().is_empty() {
            let deny: Vec<String> = self.rules.deny().iter().map(ToString::to_string).collect();
            args.extend(["--disallowedTools".into(), deny.join(",")]);
        }
        if let Some(session) = resume {
            args.extend(["--resume".into(), session.to_owned()]);
        }
        if let Some(tools) = &settings.allowed_tools {
            args.extend(["--allowedTools".into(), tools.join(",")]);
        }
        if let Some(model) = &settings.model {
            args.extend(["--model".into(), model.clone()]);
        }
        if let Some(mode) = settings.permission_mode {
            args.extend(["--permission-mode".into(), mode.as_str().into()]);
        }
        if let Some(effort) = settings.effort {
            args.extend(["--effort".into(), effort.cli_value().into()]);
        }
        if let Some(prompt) = &self.append_system_prompt {
            args.extend(["--append-system-prompt".into(), prompt.clone()]);
        }
        args.extend(self.extra_args.iter().cloned());

        let mut env: Vec<(OsString, OsString)> = if self.inherit_env {
            std::env::vars_os().collect()
        } else {
            Vec::new()
        };
        for (k, v) in &self.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env.retain(|(k, _)| !SCRUBBED_ENV.iter().any(|s| k == s) && k != DEPTH_ENV);
        // A refused turn (429, 529) ends after two quick retries of the CLI's own, and the
        // pool takes over: its gate runs fewer turns at once and the task is queued again
        // after a backoff with jitter — instead of every slot's CLI retrying for minutes in
        // lock-step. An operator's own setting wins.
        if self.api_adapt && !env.iter().any(|(k, _)| k == MAX_RETRIES_ENV) {
            env.push((MAX_RETRIES_ENV.into(), "2".into()));
        }
        env.push((DEPTH_ENV.into(), (settings.depth + 1).to_string().into()));
        // The server's HTTP token is never a child's to see.
        env.retain(|(k, _)| k != crate::credentials::SERVER_TOKEN_ENV);
        if let Some(c) = &self.credentials {
            c.child_env(&mut env, settings.depth + 1);
        }
        SpawnSpec {
            program: self.claude_bin.clone(),
            args,
            env,
            cwd: settings
                .cwd
                .clone()
                .or_else(|| cwd.map(Path::to_path_buf))
                .or_else(|| self.cwd.clone()),
            keep_lines: false,
        }
    }
}

#[cfg(test)]
mod tests;

/// How long finished task rows are kept in a store file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// At most this many terminal rows.
    pub max_tasks: usize,
    /// None older than this (by finish time).
    pub max_age: Option<std::time::Duration>,
    /// Their prompts, outputs, options and errors together within this many bytes.
    pub max_bytes: u64,
}

impl Retention {
    /// No bound at all.
    pub const UNBOUNDED: Retention = Retention {
        max_tasks: usize::MAX,
        max_age: None,
        max_bytes: u64::MAX,
    };

    /// The defaults: 50,000 rows, 30 days, 256 MiB.
    pub const DEFAULT: Retention = Retention {
        max_tasks: 50_000,
        max_age: Some(std::time::Duration::from_secs(30 * 24 * 3600)),
        max_bytes: 256 * 1024 * 1024,
    };
}
