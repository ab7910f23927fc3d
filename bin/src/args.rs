//! The server's flags: every option with its default, and the parsers of their values.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use claude_pool::protocol::{Effort, PermissionMode};

/// A pool of warm Claude Code CLI processes behind an MCP server (stdio).
#[derive(Debug, Parser)]
#[command(name = "claude-pool-server", version, about, args_override_self = true)]
pub struct Args {
    /// Number of slots (warm Claude processes) to run.
    #[arg(short = 'n', long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) slots: u16,

    /// Take slot hosts from other machines at this address (e.g. 127.0.0.1:7878); hosts
    /// join with `claude-pool-server host --join`. Needs --cluster-cookie-file, and TLS
    /// (--cluster-tls-dir) unless the address is loopback.
    #[cfg(feature = "cluster")]
    #[arg(long)]
    pub(crate) listen_hosts: Option<std::net::SocketAddr>,

    /// Run as a slot host (`claude-pool-server host --join ADDR`): offer --slots slots to the
    /// scheduler at ADDR instead of serving MCP.
    #[cfg(feature = "cluster")]
    #[arg(long)]
    pub(crate) join: Option<std::net::SocketAddr>,

    /// This host's name among the scheduler's hosts (its slots are NAME/slot-N); the
    /// machine's hostname by default.
    #[cfg(feature = "cluster")]
    #[arg(long)]
    pub(crate) host_name: Option<String>,

    /// The file holding the cluster's shared secret (private to its owner: mode 0600).
    #[cfg(feature = "cluster")]
    #[arg(long)]
    pub(crate) cluster_cookie_file: Option<PathBuf>,

    /// A directory with the cluster's TLS files: ca.pem, node.pem, node.key.
    #[cfg(feature = "cluster")]
    #[arg(long)]
    pub(crate) cluster_tls_dir: Option<PathBuf>,

    /// The version a host announces (to test the scheduler's version check).
    #[cfg(feature = "cluster")]
    #[arg(long, hide = true)]
    pub(crate) cluster_version: Option<String>,

    /// How often scheduler and hosts ping each other.
    #[cfg(feature = "cluster")]
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) host_heartbeat: Duration,

    /// How long without a word before a host (or the scheduler, seen from a host) is given
    /// up: its running tasks end interrupted and its slots read lost.
    #[cfg(feature = "cluster")]
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub(crate) host_deadline: Duration,

    /// Fewest slots pool_scale_down may leave.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) min_slots: u16,

    /// Most slots pool_scale_up may reach.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) max_slots: u16,

    /// How long a busy slot being removed by a scale-down may finish its task before the
    /// task is cancelled: seconds or "30s".
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) scale_down_grace: Duration,

    /// Total budget cap in US dollars (e.g. 10.0): once spent, running tasks are stopped and
    /// new work is refused. It caps one run (this server's life, continued after a crash)
    /// unless --budget-period says a calendar window.
    #[arg(long, value_parser = parse_usd)]
    pub(crate) budget_usd: Option<f64>,

    /// Token cap over the same period as --budget-usd (e.g. 5000000): every token the API
    /// processes for the pool's tasks — input, output, cache reads and writes. Once used,
    /// running tasks are stopped and new work is refused, as with the dollar cap.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) budget_tokens: Option<u64>,

    /// What --budget-usd caps: run (this server's run), or a UTC calendar day, week
    /// (Monday to Sunday) or month, kept in the store across restarts and shared by the
    /// project's servers.
    #[arg(long, default_value = "run", value_parser = parse_period)]
    pub(crate) budget_period: claude_pool::config::BudgetPeriod,

    /// Give each slot its own git worktree (on branch claude-pool/<slot>) of the repository
    /// the server runs in (or --cwd).
    #[arg(short = 'w', long)]
    pub(crate) worktree: bool,

    /// Do not offer the built-in skills (code_review, write_tests, refactor, summarize).
    #[arg(long)]
    pub(crate) no_builtins: bool,

    /// A directory of skills (`<name>/SKILL.md` or `<name>.md`); may be given more than once.
    #[arg(long = "skills-dir")]
    pub(crate) skills_dirs: Vec<PathBuf>,

    /// Default model for every task (e.g. sonnet, opus).
    #[arg(long, value_parser = parse_model)]
    pub(crate) model: Option<String>,

    /// Default effort: min, low, medium, high, xhigh, max.
    #[arg(long, value_parser = parse_effort)]
    pub(crate) effort: Option<Effort>,

    /// Text appended to Claude Code's own system prompt for every slot (it never replaces it).
    #[arg(long)]
    pub(crate) system_prompt: Option<String>,

    /// Default permission mode: default, acceptEdits, auto, bypassPermissions, manual, dontAsk, plan.
    #[arg(long, default_value = "plan", value_parser = parse_permission_mode)]
    pub(crate) permission_mode: PermissionMode,

    /// The most a task may ask for as its permission_mode (a higher one is refused). Modes
    /// from least to most allowed: plan < dontAsk < manual < default < acceptEdits < auto <
    /// bypassPermissions. Never below --permission-mode.
    #[arg(long, default_value = "acceptEdits", value_parser = parse_permission_mode)]
    pub(crate) max_permission_mode: PermissionMode,

    /// A permission rule (Claude Code's syntax: "Bash(cargo test:*)", "Edit(src/**)",
    /// "WebFetch(domain:docs.rs)", "mcp__github") whose matches a worker may do without
    /// asking anyone. Repeatable.
    #[arg(long = "allow", value_name = "RULE")]
    pub(crate) allow: Vec<String>,

    /// A permission rule whose matches are refused without asking anyone; a deny always
    /// wins over an allow, and holds in every permission mode. Repeatable.
    #[arg(long = "deny", value_name = "RULE")]
    pub(crate) deny: Vec<String>,

    /// A file of permission rules: Claude Code's settings JSON
    /// ({"permissions": {"allow": [...], "deny": [...]}}) or lines "allow RULE" / "deny RULE".
    #[arg(long = "rules", value_name = "FILE")]
    pub(crate) rules: Option<PathBuf>,

    /// How long a worker's permission question that no rule answers waits for a person
    /// (elicitation, pool_approve, the status page) before it is denied.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub(crate) approval_timeout: Duration,

    /// The first wait of a task whose turn the API refused for rate or load (429, 529)
    /// before it is queued again; it doubles with each refusal (up to 30 s, with jitter),
    /// and the fifth refusal fails the task.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub(crate) requeue_backoff: Duration,

    /// Which tools to offer: "core" (the pool toolkit: run, submit, results, fan-out,
    /// chains, context, status, scaling, drain, skills), "jobs" (claude_run, claude_build
    /// and the job tools), or "all". Every profile keeps pool_approvals and pool_approve.
    #[arg(long, default_value = "all", value_parser = parse_tools)]
    pub(crate) tools: claude_pool::config::ToolProfile,

    /// Tell each session, as Claude Code channel messages (`notifications/claude/channel`,
    /// the server declaring the experimental `claude/channel` capability), when work it
    /// submitted ends, when one of its tasks waits for an approval, and when the budget
    /// passes 90%. Claude Code delivers them only from a server a plugin bundles.
    #[arg(long)]
    pub(crate) channels: bool,

    /// Whether the pool answers the API's rate and load refusals (429, 529) itself: fewer
    /// turns at once while they come, refused turns queued again, each CLI's own retries
    /// cut to two. "off": every CLI retries on its own (its default, about 3 minutes) and
    /// a turn still refused fails.
    #[arg(long, default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub(crate) api_adapt: bool,

    /// Stop starting turns when a subscription usage window (five-hour, seven-day) is this
    /// much used — 0.8 leaves a fifth of it for interactive use — until the window resets.
    /// A used-up window always pauses the pool until its reset.
    #[arg(long, value_parser = parse_fraction)]
    pub(crate) max_window_use: Option<f64>,

    /// The Claude Code CLI to run.
    #[arg(long, env = "CLAUDE_BIN", default_value = "claude")]
    pub(crate) claude_bin: PathBuf,

    /// Deadline of a task that sets none, counted from submission: seconds ("90", "0.5") or "90s", "30m".
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub(crate) timeout: Duration,

    /// Replace a slot's process after it served this many tasks.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) recycle_after: u64,

    /// Replace a slot's process after its task once its process group's resident memory
    /// passes this ("800MB", "1.5GiB", or bytes). Default: no limit.
    #[arg(long, value_parser = parse_size)]
    pub(crate) max_slot_rss: Option<u64>,

    /// A slot idle this long lets its Claude process go (the slot stays, "cold") until work
    /// needs it; "0" keeps every slot warm.
    #[arg(long, default_value = "10m", value_parser = parse_idle)]
    pub(crate) idle_timeout: IdleTimeout,

    /// Slots kept warm whatever the idle timeout.
    #[arg(long, default_value_t = 1)]
    pub(crate) warm: usize,

    /// Finished tasks kept for pool_result; older ones are forgotten (counts are kept).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) keep_finished: u64,

    /// Working directory of the Claude processes (default: the server's).
    #[arg(long)]
    pub(crate) cwd: Option<PathBuf>,

    /// Start failures (processes that die before they ever became ready) allowed per slot
    /// within --restart-window before the slot is given up and only probed.
    #[arg(long, default_value_t = 5)]
    pub(crate) max_restarts: u32,

    /// The window --max-restarts is counted in.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) restart_window: Duration,

    /// First delay before a given-up slot (or a pool where no slot can start) is tried
    /// again; it doubles up to 15 minutes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub(crate) probe_interval: Duration,

    /// The durable store (SQLite) for this server alone: a second server on it is refused.
    /// Default: the project's store, shared by every server started in the same directory
    /// (--cwd, else the server's own): $XDG_STATE_HOME/claude-pool/projects/<dir>-<hash>/pool.db
    /// (or under ~/.local/state). Transcripts go beside it in <name>-transcripts/.
    #[arg(long, env = "CLAUDE_MCP_DB_PATH", conflicts_with = "no_db")]
    pub(crate) db: Option<PathBuf>,

    /// Keep everything in memory only (nothing survives the process; the job API works).
    #[arg(long)]
    pub(crate) no_db: bool,

    /// Task transcripts kept beside the store; the oldest are deleted first (0: none kept).
    #[arg(long, default_value_t = 2000)]
    pub(crate) keep_transcripts: usize,

    /// The most bytes the transcripts may take together ("1GiB", "500MB"); the oldest go
    /// first.
    #[arg(long, default_value = "1GiB", value_parser = parse_size)]
    pub(crate) transcripts_max_bytes: u64,

    /// Finished task rows kept in the store file; the oldest are deleted first (their
    /// counts and spend stay in the totals).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) retain_tasks: u64,

    /// Finished task rows older than this are deleted from the store ("30d", "12h"; "0":
    /// no age limit).
    #[arg(long, default_value = "30d", value_parser = parse_retain_for)]
    pub(crate) retain_for: IdleTimeout,

    /// The most bytes finished task rows (prompts, outputs) may take in the store ("256MiB").
    #[arg(long, default_value = "256MiB", value_parser = parse_size)]
    pub(crate) store_max_bytes: u64,

    /// The job API's projects file ({"name": {"path": "/abs", "defaultBranch": "main",
    /// "maxConcurrent": 1}}); SIGHUP reads it again.
    #[arg(long)]
    pub(crate) projects: Option<PathBuf>,

    /// Requests at this recursion depth or deeper may not start work (each Claude process
    /// the pool starts runs one level deeper than the request that started it).
    #[arg(long, env = "CLAUDE_MCP_MAX_DEPTH", default_value_t = 2)]
    pub(crate) max_depth: u32,

    /// The most a job's allowedTools may ask for, and the Bash rules a claude_build gets
    /// (comma-separated; a build needs Bash or a Bash(...) rule); default: no limit.
    #[arg(long, value_delimiter = ',', value_parser = parse_tool)]
    pub(crate) allowed_tools: Option<Vec<String>>,

    /// Serve MCP over Streamable HTTP at /mcp (and GET /health) instead of stdio; many
    /// clients share the pool. Every request but GET /health needs `Authorization: Bearer
    /// <token>`; with no token given, the token is in $XDG_RUNTIME_DIR/claude-pool/http-token
    /// (else $XDG_STATE_HOME/claude-pool/http-token, else ~/.local/state/claude-pool/http-token),
    /// made (mode 0600) when absent and reused when present.
    #[arg(long)]
    pub(crate) http: bool,

    /// The HTTP port (0: any free one; the log says which).
    #[arg(long, env = "CLAUDE_MCP_PORT", default_value_t = 3101)]
    pub(crate) port: u16,

    /// The address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub(crate) bind: std::net::IpAddr,

    /// The HTTP token (`Authorization: Bearer <token>`). Prefer --http-token-file or the
    /// environment: a command line is visible to every user in `ps`.
    #[arg(long, env = "CLAUDE_POOL_HTTP_TOKEN", hide_env_values = true)]
    pub(crate) http_token: Option<String>,

    /// Read the HTTP token from this file (its first line); it must be yours and mode 0600.
    /// Default: the token file named under --http.
    #[arg(long, conflicts_with = "http_token")]
    pub(crate) http_token_file: Option<PathBuf>,

    /// Serve HTTP without any token (loopback --bind only): any local user can then drive
    /// the pool, and the recursion depth is whatever x-mcp-depth says.
    #[arg(long, conflicts_with_all = ["http_token", "http_token_file"])]
    pub(crate) http_no_auth: bool,

    /// How long an HTTP request's headers may take, counted from when the connection waits
    /// for one (so also how long an idle keep-alive connection stays open).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub(crate) http_header_timeout: Duration,

    /// How long an HTTP request's body may take after its headers.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub(crate) http_body_timeout: Duration,

    /// The most HTTP connections open at once; one more is closed at once, unread.
    #[arg(long, default_value_t = 512, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub(crate) http_max_connections: u64,

    /// The most event streams (GET /mcp) one MCP session may hold open; one more gets 429.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub(crate) http_max_streams: u64,

    /// The most MCP sessions open at once over HTTP; one more gets 503.
    #[arg(long, default_value_t = 256)]
    pub(crate) http_max_sessions: usize,

    /// An MCP session over HTTP with no request open for this long is closed (a call in
    /// flight keeps its session open however long it runs).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub(crate) http_session_idle: Duration,

    /// A host name HTTP clients may use besides the loopback ones (repeatable), for a
    /// non-loopback --bind.
    #[arg(long = "allowed-host")]
    pub(crate) allowed_hosts: Vec<String>,

    /// Log filter (error, warn, info, debug, trace, or tracing directives); else env
    /// CLAUDE_POOL_LOG, else LOG_LEVEL (ClaudeMCP's); default info.
    #[arg(long, env = "CLAUDE_POOL_LOG")]
    pub(crate) log_level: Option<String>,

    /// Append logs to this file instead of stderr.
    #[arg(long)]
    pub(crate) log_file: Option<PathBuf>,
}

fn parse_effort(s: &str) -> Result<Effort, String> {
    s.parse()
}

fn parse_permission_mode(s: &str) -> Result<PermissionMode, String> {
    s.parse()
}

fn parse_period(s: &str) -> Result<claude_pool::config::BudgetPeriod, String> {
    s.parse()
}

/// `--retain-for`: a duration (humantime, e.g. "30d"), or 0 for no limit.
fn parse_retain_for(s: &str) -> Result<IdleTimeout, String> {
    let t = s.trim();
    if t.parse::<f64>().is_ok_and(|n| n == 0.0) {
        return Ok(IdleTimeout(None));
    }
    let d = humantime::parse_duration(t)
        .map_err(|e| format!("{s:?} is not a duration (e.g. 30d, 12h): {e}"))?;
    Ok(IdleTimeout((!d.is_zero()).then_some(d)))
}

/// A model name as a client's must be: it goes on every process's command line.
fn parse_model(s: &str) -> Result<String, String> {
    claude_pool::protocol::validate::model(s).map(|()| s.to_owned())
}

/// One `--allowed-tools` entry, as a client's must be: they travel joined by commas.
fn parse_tool(s: &str) -> Result<String, String> {
    claude_pool::protocol::validate::tool(s).map(|()| s.to_owned())
}

fn parse_usd(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not an amount of dollars"))?;
    claude_pool::protocol::tools::Usd::new(v).map(|u| u.0)
}

/// `--idle-timeout`: a duration, or 0 for never.
#[derive(Debug, Clone, Copy)]
pub struct IdleTimeout(pub Option<Duration>);

fn parse_idle(s: &str) -> Result<IdleTimeout, String> {
    let zero = s.trim().parse::<f64>().is_ok_and(|n| n == 0.0)
        || humantime::parse_duration(s.trim()).is_ok_and(|d| d.is_zero());
    if zero {
        return Ok(IdleTimeout(None));
    }
    let d = parse_duration(s)?;
    Ok(IdleTimeout((!d.is_zero()).then_some(d)))
}

/// A size: bytes, or a number with KB/MB/GB (powers of 1000) or KiB/MiB/GiB (of 1024).
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 800MB, 1.5GiB)"))?;
    let k = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = n * k;
    if !(bytes >= 1.0 && bytes < 1e18) {
        return Err(format!("{s:?} is not a usable size"));
    }
    Ok(bytes as u64)
}

pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    claude_pool::protocol::Timeout::parse(s).map(|t| t.0)
}

fn parse_tools(s: &str) -> Result<claude_pool::config::ToolProfile, String> {
    use claude_pool::config::ToolProfile;
    match s {
        "core" => Ok(ToolProfile::Core),
        "jobs" => Ok(ToolProfile::Jobs),
        "all" => Ok(ToolProfile::All),
        _ => Err(format!("expected core, jobs or all, not '{s}'")),
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        _ => Err(format!("expected on or off, not '{s}'")),
    }
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("expected a fraction such as 0.8 or 80%, not '{s}'"))?;
    let v = if s.ends_with('%') { v / 100.0 } else { v };
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!(
            "expected a fraction above 0 and at most 1 (or 100%), not '{s}'"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_idle_timeouts_parse_as_documented() {
        assert_eq!(parse_size("800MB"), Ok(800_000_000));
        assert_eq!(parse_size("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("0").is_err());
        for never in ["0", "0s", "0m"] {
            assert!(parse_idle(never).unwrap().0.is_none(), "{never}");
        }
        assert_eq!(parse_idle("10m").unwrap().0, Some(Duration::from_secs(600)));
        assert_eq!(
            parse_idle("0.5").unwrap().0,
            Some(Duration::from_millis(500))
        );
        assert!(parse_idle("soon").is_err());
    }
}
