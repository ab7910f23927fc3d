//! `claude-pool-server`: a pool of warm Claude Code processes, served as an MCP server over
//! stdio. Stdout carries MCP messages only; logs go to stderr or `--log-file`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use claude_pool::protocol::{Effort, PermissionMode};
use claude_pool::{
    FrontendActor, FrontendTransport, Pool, PoolConfig, ProcSettings, RestartPolicy, StoreLocation,
};
use tokio::signal::unix::{SignalKind, signal};

/// The log filter when none is given.
const DEFAULT_LOG: &str = "info";

/// A pool of warm Claude Code CLI processes behind an MCP server (stdio).
#[derive(Debug, Parser)]
#[command(name = "claude-pool-server", version, about, args_override_self = true)]
struct Args {
    /// Number of slots (warm Claude processes) to run.
    #[arg(short = 'n', long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    slots: u16,

    /// Fewest slots pool_scale_down may leave.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    min_slots: u16,

    /// Most slots pool_scale_up may reach.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=256))]
    max_slots: u16,

    /// How long a busy slot being removed by a scale-down may finish its task before the
    /// task is cancelled: seconds or "30s".
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    scale_down_grace: Duration,

    /// Total budget cap in US dollars (e.g. 10.0): once spent, running tasks are stopped and
    /// new work is refused.
    #[arg(long, value_parser = parse_usd)]
    budget_usd: Option<f64>,

    /// Give each slot its own git worktree (on branch claude-pool/<slot>) of the repository
    /// the server runs in (or --cwd).
    #[arg(short = 'w', long)]
    worktree: bool,

    /// Do not offer the built-in skills (code_review, write_tests, refactor, summarize).
    #[arg(long)]
    no_builtins: bool,

    /// A directory of skills (`<name>/SKILL.md` or `<name>.md`); may be given more than once.
    #[arg(long = "skills-dir")]
    skills_dirs: Vec<PathBuf>,

    /// Default model for every task (e.g. sonnet, opus).
    #[arg(long)]
    model: Option<String>,

    /// Default effort: min, low, medium, high, xhigh, max.
    #[arg(long, value_parser = parse_effort)]
    effort: Option<Effort>,

    /// Text appended to Claude Code's own system prompt for every slot (it never replaces it).
    #[arg(long)]
    system_prompt: Option<String>,

    /// Default permission mode: default, acceptEdits, auto, bypassPermissions, manual, dontAsk, plan.
    #[arg(long, default_value = "plan", value_parser = parse_permission_mode)]
    permission_mode: PermissionMode,

    /// The Claude Code CLI to run.
    #[arg(long, env = "CLAUDE_BIN", default_value = "claude")]
    claude_bin: PathBuf,

    /// Deadline of a task that sets none, counted from submission: seconds ("90", "0.5") or "90s", "30m".
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    timeout: Duration,

    /// Replace a slot's process after it served this many tasks.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    recycle_after: u64,

    /// Replace a slot's process after its task once its process group's resident memory
    /// passes this ("800MB", "1.5GiB", or bytes). Default: no limit.
    #[arg(long, value_parser = parse_size)]
    max_slot_rss: Option<u64>,

    /// A slot idle this long lets its Claude process go (the slot stays, "cold") until work
    /// needs it; "0" keeps every slot warm.
    #[arg(long, default_value = "10m", value_parser = parse_idle)]
    idle_timeout: IdleTimeout,

    /// Slots kept warm whatever the idle timeout.
    #[arg(long, default_value_t = 1)]
    warm: usize,

    /// Finished tasks kept for pool_result; older ones are forgotten (counts are kept).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    keep_finished: u64,

    /// Working directory of the Claude processes (default: the server's).
    #[arg(long)]
    cwd: Option<PathBuf>,

    /// Start failures (processes that die before they ever became ready) allowed per slot
    /// within --restart-window before the slot is given up and only probed.
    #[arg(long, default_value_t = 5)]
    max_restarts: u32,

    /// The window --max-restarts is counted in.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    restart_window: Duration,

    /// First delay before a given-up slot (or a pool where no slot can start) is tried
    /// again; it doubles up to 15 minutes.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    probe_interval: Duration,

    /// The durable store (SQLite): tasks, jobs, chains, the context table and spend survive
    /// restarts and crashes. Default: $XDG_STATE_HOME/claude-pool/pool.db (or
    /// ~/.local/state/claude-pool/pool.db). Transcripts go beside it in <name>-transcripts/.
    #[arg(long, env = "CLAUDE_MCP_DB_PATH", conflicts_with = "no_db")]
    db: Option<PathBuf>,

    /// Keep everything in memory only (nothing survives the process; the job API works).
    #[arg(long)]
    no_db: bool,

    /// Task transcripts kept beside the store; the oldest are deleted first (0: none kept).
    #[arg(long, default_value_t = 2000)]
    keep_transcripts: usize,

    /// The job API's projects file ({"name": {"path": "/abs", "defaultBranch": "main",
    /// "maxConcurrent": 1}}); SIGHUP reads it again.
    #[arg(long)]
    projects: Option<PathBuf>,

    /// Requests at this recursion depth or deeper may not start work (each Claude process
    /// the pool starts runs one level deeper than the request that started it).
    #[arg(long, env = "CLAUDE_MCP_MAX_DEPTH", default_value_t = 2)]
    max_depth: u32,

    /// The most a job's allowedTools may ask for (comma-separated); default: no limit.
    #[arg(long, value_delimiter = ',')]
    allowed_tools: Option<Vec<String>>,

    /// Serve MCP over Streamable HTTP at /mcp (and GET /health) instead of stdio; many
    /// clients share the pool.
    #[arg(long)]
    http: bool,

    /// The HTTP port (0: any free one; the log says which).
    #[arg(long, env = "CLAUDE_MCP_PORT", default_value_t = 3101)]
    port: u16,

    /// The address to listen on; anything but loopback needs --http-token.
    #[arg(long, default_value = "127.0.0.1")]
    bind: std::net::IpAddr,

    /// Require `Authorization: Bearer <token>` on every HTTP request.
    #[arg(long, env = "CLAUDE_POOL_HTTP_TOKEN", hide_env_values = true)]
    http_token: Option<String>,

    /// Read the HTTP token from this file (its first line).
    #[arg(long, conflicts_with = "http_token")]
    http_token_file: Option<PathBuf>,

    /// The most MCP sessions open at once over HTTP; one more gets 503.
    #[arg(long, default_value_t = 256)]
    http_max_sessions: usize,

    /// An MCP session over HTTP with no request open for this long is closed (a call in
    /// flight keeps its session open however long it runs).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    http_session_idle: Duration,

    /// A host name HTTP clients may use besides the loopback ones (repeatable), for a
    /// non-loopback --bind.
    #[arg(long = "allowed-host")]
    allowed_hosts: Vec<String>,

    /// Log filter (error, warn, info, debug, trace, or tracing directives); else env
    /// CLAUDE_POOL_LOG, else LOG_LEVEL (ClaudeMCP's); default info.
    #[arg(long, env = "CLAUDE_POOL_LOG")]
    log_level: Option<String>,

    /// Append logs to this file instead of stderr.
    #[arg(long)]
    log_file: Option<PathBuf>,
}

fn parse_effort(s: &str) -> Result<Effort, String> {
    s.parse()
}

fn parse_permission_mode(s: &str) -> Result<PermissionMode, String> {
    s.parse()
}

fn parse_usd(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not an amount of dollars"))?;
    claude_pool::protocol::tools::Usd::new(v).map(|u| u.0)
}

/// `--idle-timeout`: a duration, or 0 for never.
#[derive(Debug, Clone, Copy)]
struct IdleTimeout(Option<Duration>);

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

fn parse_duration(s: &str) -> Result<Duration, String> {
    claude_pool::protocol::Timeout::parse(s).map(|t| t.0)
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = init_tracing(&args) {
        eprintln!("claude-pool-server: {e:#}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("claude-pool-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let logs_to_file = args.log_file.is_some();
    let code = match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            if logs_to_file {
                eprintln!("claude-pool-server: {e:#}");
            }
            ExitCode::FAILURE
        }
    };
    // Every process is already stopped. When stdin is not a pipe (a terminal), a blocking
    // read of it may still be pending; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(200));
    code
}

fn init_tracing(args: &Args) -> anyhow::Result<()> {
    let level = args
        .log_level
        .clone()
        .or_else(|| std::env::var("LOG_LEVEL").ok().filter(|l| !l.is_empty()))
        .unwrap_or_else(|| DEFAULT_LOG.to_owned());
    let filter = tracing_subscriber::EnvFilter::try_new(&level)
        .with_context(|| format!("invalid --log-level {level:?}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    match &args.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open --log-file {}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        None => builder.with_ansi(false).with_writer(std::io::stderr).init(),
    }
    Ok(())
}

/// Finds the CLI the way a shell would, so a missing one is reported before any slot starts.
fn resolve_program(program: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 {
        if executable(program) {
            return Ok(program.to_path_buf());
        }
        bail!(
            "--claude-bin {} is not an executable file",
            program.display()
        );
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(program);
        if executable(&candidate) {
            return Ok(candidate);
        }
    }
    bail!(
        "cannot find `{}` on PATH; install Claude Code or pass --claude-bin /path/to/claude",
        program.display()
    )
}

/// With `--http`: the bound listener and its rules. A non-loopback address needs a token.
fn http_options(args: &Args) -> anyhow::Result<Option<claude_pool::http::HttpOptions>> {
    if !args.http {
        return Ok(None);
    }
    let token = match &args.http_token_file {
        Some(f) => Some(
            std::fs::read_to_string(f)
                .with_context(|| format!("cannot read --http-token-file {}", f.display()))?
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_owned(),
        ),
        None => args.http_token.clone(),
    };
    if token.as_deref().is_some_and(str::is_empty) {
        bail!("the HTTP token is empty");
    }
    if !args.bind.is_loopback() && token.is_none() {
        bail!(
            "--bind {} is reachable from other machines: give --http-token (or --http-token-file) so that only your clients can use the pool",
            args.bind
        );
    }
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Some(claude_pool::http::HttpOptions {
        listener: std::sync::Arc::new(listener),
        token,
        allowed_hosts: args.allowed_hosts.clone(),
        max_sessions: args.http_max_sessions,
        session_idle: args.http_session_idle,
    }))
}

/// The server's own recursion depth: `CLAUDE_MCP_DEPTH` of its environment (0 when unset).
fn own_depth() -> anyhow::Result<u32> {
    match std::env::var("CLAUDE_MCP_DEPTH") {
        Ok(v) if !v.trim().is_empty() => v
            .trim()
            .parse()
            .with_context(|| format!("CLAUDE_MCP_DEPTH={v:?} is not a depth (0, 1, 2, ...)")),
        _ => Ok(0),
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let claude_bin = resolve_program(&args.claude_bin)?;
    let transport = match http_options(&args)? {
        Some(options) => FrontendTransport::Http(options),
        None => FrontendTransport::Stdio,
    };
    let config = PoolConfig {
        slots: usize::from(args.slots),
        min_slots: usize::from(args.min_slots),
        max_slots: usize::from(args.max_slots),
        scale_down_grace: args.scale_down_grace,
        budget_usd: args.budget_usd,
        worktree: args.worktree,
        builtin_skills: !args.no_builtins,
        skill_dirs: args.skills_dirs,
        probe: RestartPolicy {
            backoff_base: args.probe_interval,
            backoff_max: args.probe_interval.max(Duration::from_secs(900)),
            ..RestartPolicy::PROBE_DEFAULT
        },
        claude_bin,
        defaults: ProcSettings {
            model: args.model,
            permission_mode: Some(args.permission_mode),
            effort: args.effort,
            cwd: None,
            allowed_tools: None,
            depth: own_depth()?,
        },
        store: Some(if args.no_db {
            StoreLocation::Memory
        } else {
            StoreLocation::File(args.db.unwrap_or_else(StoreLocation::default_file))
        }),
        keep_transcripts: args.keep_transcripts,
        projects_file: args.projects,
        max_depth: args.max_depth,
        max_allowed_tools: args.allowed_tools,
        append_system_prompt: args.system_prompt,
        default_timeout: args.timeout,
        recycle_after_turns: args.recycle_after,
        max_slot_rss: args.max_slot_rss,
        idle_timeout: args.idle_timeout.0,
        warm_slots: args.warm,
        max_finished_tasks: usize::try_from(args.keep_finished).unwrap_or(usize::MAX),
        cwd: args.cwd,
        slot_restart: RestartPolicy {
            max_restarts: args.max_restarts,
            window: args.restart_window,
            ..RestartPolicy::SLOT_DEFAULT
        },
        ..PoolConfig::default()
    };
    tracing::info!(slots = config.slots, claude = %config.claude_bin.display(), "starting claude-pool");
    let pool = Pool::start(config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let FrontendTransport::Http(o) = &transport
        && let Ok(addr) = o.listener.local_addr()
    {
        tracing::info!("listening on http://{addr}/mcp");
    }
    let (frontend, serving) = FrontendActor::start(pool.clone(), transport)
        .await
        .context("cannot start the MCP front-end")?;

    let mut sigterm = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut sigint = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut sighup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::pin!(serving);
    let mut served = false;
    let why = loop {
        tokio::select! {
            _ = &mut serving => { served = true; break "stdin closed" },
            _ = sigterm.recv() => break "SIGTERM",
            _ = sigint.recv() => break "SIGINT",
            _ = sighup.recv() => match pool.reload_projects() {
                Ok(r) => tracing::info!(added = ?r.added, removed = ?r.removed, changed = ?r.changed, "reloaded the projects file"),
                Err(e) => tracing::error!("the projects file was not reloaded (the old projects stay): {e}"),
            },
        }
    };
    tracing::info!(reason = why, "shutting down");
    frontend.stop(Some(why.into()));
    pool.shutdown().await;
    // Over HTTP the front-end ends once the calls in flight have had their answers (the
    // shutdown above ended their tasks); wait for that, bounded, before the runtime goes.
    if !served
        && tokio::time::timeout(Duration::from_secs(35), &mut serving)
            .await
            .is_err()
    {
        tracing::warn!("the MCP front-end did not end in 35 s");
    }
    tracing::info!("every slot stopped; bye");
    Ok(())
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
