//! `claude-pool-server`: a pool of warm Claude Code processes, served as an MCP server over
//! stdio. Stdout carries MCP messages only; logs go to stderr or `--log-file`.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use claude_pool::{
    FrontendActor, FrontendTransport, Pool, PoolConfig, ProcSettings, RestartPolicy, StoreLocation,
};
use tokio::signal::unix::{SignalKind, signal};

mod args;
mod cluster;
mod http_token;

use args::Args;

/// The log filter when none is given.
const DEFAULT_LOG: &str = "info";

fn main() -> ExitCode {
    // `claude-pool-server host --join ADDR …`: the same flags, as a slot host.
    let mut argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "cluster-certs") {
        return cluster::certs(&argv[2..]);
    }
    let host_mode = argv.get(1).is_some_and(|a| a == "host");
    if host_mode {
        argv.remove(1);
    }
    let args = Args::parse_from(argv);
    if host_mode && !cluster::joins(&args) {
        eprintln!(
            "claude-pool-server: `host` needs --join ADDR (and a build with the cluster feature)"
        );
        return ExitCode::from(2);
    }
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
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let output = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_ansi(false);
    let output = match &args.log_file {
        Some(path) => {
            // Private whatever the umask: logs name prompts, paths and sessions. A file that
            // exists keeps the mode its owner gave it.
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(claude_pool::private::FILE_MODE)
                .open(path)
                .with_context(|| format!("cannot open --log-file {}", path.display()))?;
            output
                .with_writer(std::sync::Mutex::new(file))
                .with_filter(filter)
                .boxed()
        }
        None => output
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    // Sessions that ask (logging/setLevel) get the log as MCP notifications, at their own
    // level, whatever --log-level says.
    tracing_subscriber::registry()
        .with(output)
        .with(claude_pool::mcp::logging::layer())
        .init();
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

/// With `--http`: the bound listener and its rules. Authentication is on unless
/// `--http-no-auth`, which only a loopback address may have.
fn http_options(args: &Args) -> anyhow::Result<Option<claude_pool::http::HttpOptions>> {
    if !args.http {
        return Ok(None);
    }
    let credentials = if args.http_no_auth {
        if !args.bind.is_loopback() {
            bail!(
                "--http-no-auth with --bind {}: the pool would be open to other machines; drop --http-no-auth (the server then makes a token) or bind to 127.0.0.1",
                args.bind
            );
        }
        tracing::warn!(
            "--http-no-auth: any local user can drive the pool over HTTP, and x-mcp-depth alone says a request's depth"
        );
        None
    } else {
        let (token, source) =
            http_token::resolve(args.http_token.as_deref(), args.http_token_file.as_deref())?;
        match &source {
            http_token::Source::Given => tracing::info!(
                "HTTP clients need the token given (--http-token or CLAUDE_POOL_HTTP_TOKEN)"
            ),
            http_token::Source::File(f) => {
                tracing::info!(file = %f.display(), "HTTP clients need the token in --http-token-file")
            }
            http_token::Source::Reused(f) => {
                tracing::info!(file = %f.display(), "HTTP clients need the token in this file (reused); export CLAUDE_POOL_TOKEN=$(cat <file>)")
            }
            http_token::Source::Created(f) => {
                tracing::info!(file = %f.display(), "HTTP clients need the token in this file (new, mode 0600); export CLAUDE_POOL_TOKEN=$(cat <file>)")
            }
        }
        Some(std::sync::Arc::new(
            claude_pool::credentials::Credentials::new(&token, own_depth()?),
        ))
    };
    let addr = std::net::SocketAddr::new(args.bind, args.port);
    let listener =
        std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    Ok(Some(claude_pool::http::HttpOptions {
        listener: std::sync::Arc::new(listener),
        credentials,
        allowed_hosts: args.allowed_hosts.clone(),
        max_sessions: args.http_max_sessions,
        session_idle: args.http_session_idle,
        limits: claude_pool::http::HttpLimits {
            header_timeout: args.http_header_timeout,
            body_timeout: args.http_body_timeout,
            max_connections: usize::try_from(args.http_max_connections).unwrap_or(usize::MAX),
            max_streams_per_session: usize::try_from(args.http_max_streams).unwrap_or(usize::MAX),
            ..claude_pool::http::HttpLimits::default()
        },
    }))
}

/// Where the store is: in memory (`--no-db`), an explicit `--db` held alone, or the
/// project's store shared by every server started in the same directory.
fn store_location(args: &Args) -> anyhow::Result<StoreLocation> {
    if args.no_db {
        if args.budget_period != claude_pool::config::BudgetPeriod::Run {
            bail!(
                "--budget-period {} keeps its window's spend in the store: it cannot be used with --no-db",
                args.budget_period.name()
            );
        }
        return Ok(StoreLocation::Memory);
    }
    if let Some(db) = &args.db {
        return Ok(StoreLocation::File(db.clone()));
    }
    let dir = match &args.cwd {
        Some(c) => c.clone(),
        None => std::env::current_dir().context("cannot read the working directory")?,
    };
    Ok(StoreLocation::Shared(StoreLocation::for_project(&dir)))
}

/// The server's own recursion depth: `CLAUDE_MCP_DEPTH` of its environment (0 when unset).
/// The server's permission rules: `--allow`, `--deny`, and a `--rules` file.
fn server_rules(
    allow: &[String],
    deny: &[String],
    file: Option<&Path>,
) -> anyhow::Result<claude_pool::protocol::rules::RuleSet> {
    use anyhow::Context as _;
    let mut rules = claude_pool::protocol::rules::RuleSet::parse(allow, deny)
        .map_err(|e| anyhow::anyhow!("--allow/--deny: {e}"))?;
    if let Some(path) = file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("--rules {}", path.display()))?;
        let from_file = claude_pool::protocol::rules::RuleSet::from_file_text(&text)
            .map_err(|e| anyhow::anyhow!("--rules {}: {e}", path.display()))?;
        rules.extend(from_file);
    }
    Ok(rules)
}

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
    #[cfg(feature = "cluster")]
    let args_cluster = cluster::ClusterArgs::of(&args);
    let claude_bin = resolve_program(&args.claude_bin)?;
    let store = store_location(&args)?;
    let transport = match http_options(&args)? {
        Some(options) => FrontendTransport::Http(options),
        None => FrontendTransport::Stdio,
    };
    // Over HTTP, children get depth tokens and never the main token.
    let credentials = match &transport {
        FrontendTransport::Http(o) => o.credentials.clone(),
        _ => None,
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
        store: Some(store),
        keep_transcripts: args.keep_transcripts,
        transcripts_max_bytes: args.transcripts_max_bytes,
        budget_period: args.budget_period,
        retention: claude_pool::store::db::Retention {
            max_tasks: usize::try_from(args.retain_tasks).unwrap_or(usize::MAX),
            max_age: args.retain_for.0,
            max_bytes: args.store_max_bytes,
        },
        projects_file: args.projects,
        max_depth: args.max_depth,
        max_allowed_tools: args.allowed_tools,
        max_permission_mode: args.max_permission_mode,
        rules: std::sync::Arc::new(server_rules(
            &args.allow,
            &args.deny,
            args.rules.as_deref(),
        )?),
        approval_timeout: args.approval_timeout,
        requeue_backoff: args.requeue_backoff,
        api_adapt: args.api_adapt,
        tools: args.tools,
        channels: args.channels,
        budget_tokens: args.budget_tokens,
        max_window_use: args.max_window_use,
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
        credentials,
        ..PoolConfig::default()
    };
    #[cfg(feature = "cluster")]
    let config = match cluster::options(&args_cluster)? {
        Some(options) if args_cluster.join.is_some() => {
            return cluster::run_host(&args_cluster, options, config).await;
        }
        Some(options) => match args_cluster.listen_hosts {
            Some(listen) => PoolConfig {
                hosts: Some((listen, options)),
                ..config
            },
            None => config,
        },
        None => config,
    };
    let store = config
        .store
        .as_ref()
        .and_then(|s| s.file().map(|f| format!("{} ({})", f.display(), s.mode())))
        .unwrap_or_else(|| "memory".into());
    tracing::info!(slots = config.slots, claude = %config.claude_bin.display(), %store, "starting claude-pool");
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
