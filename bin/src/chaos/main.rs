//! `claude-pool-chaos`: runs a workload against a pool of `fake-claude` slots — embedded in
//! this process, or a `claude-pool-server` it starts and talks to over stdio or Streamable
//! HTTP — injects faults on purpose, and checks the invariants a pool owes its users. The
//! verdict is a table on stdout and, with `--json`, a JSON report; the exit status is 1 on
//! any violation.
//!
//! Faults are planned per task from `--seed` ([`plan`]), so the same seed replays the same
//! schedule and the same counts. Turn faults travel in the task's own prompt (an API error, a
//! crash mid-turn, garbage on stdout); the others are injected the moment the fake CLI logs
//! the task's turn starting: SIGKILL of its slot's process, SIGSTOP past a 1 s deadline, a
//! cancel, a SIGKILL followed by a slow restart, and (external server) a SIGKILL of the
//! server followed by a restart on the same store. Embedded, the slot faults go through the
//! embedding handle's fault API; external, through signals to the logged pid.
//!
//! The invariants are listed in [`verdict`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use claude_pool::events::PoolEvent;
use claude_pool::protocol::tools::TaskReport;
use claude_pool::protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use claude_pool::{FakeFaults, Pool};

#[cfg(feature = "cluster")]
mod hosts;
mod plan;
mod procs;
mod server;
mod target;
mod verdict;

use plan::{EMBEDDED_FAULTS, FaultKind, Plan, Schedule};
use procs::{Tail, beside_me, running};
use server::{External, Launch, Wire};
use target::Target;
use verdict::Seen;

/// Chaos testing for a claude-pool setup: faults on purpose, invariants checked.
#[derive(Debug, Parser)]
#[command(name = "claude-pool-chaos", version)]
struct Args {
    /// The pool under test: `embedded` (in this process), or a `claude-pool-server` this
    /// harness starts and reaches over `stdio` or `http`, on a store of its own.
    #[arg(long, value_enum, default_value = "embedded")]
    target: TargetKind,
    /// The server binary for `--target stdio|http` (default: the one beside this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Slots of the pool.
    #[arg(long, default_value_t = 4)]
    slots: usize,
    /// Tasks in the workload (default 200; with --duration, no limit but the time).
    #[arg(long)]
    tasks: Option<usize>,
    /// Keep submitting tasks for this long (e.g. `10m`); the counts then depend on speed,
    /// the schedule of task n does not.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    /// Tasks in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seed of the fault schedule: the same seed replays the same schedule.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of tasks that get a fault (0 to 1).
    #[arg(long, default_value_t = 0.3)]
    fault_rate: f64,
    /// Fault kinds to draw from (comma-separated): kill, hang, api-error, crash, garbage,
    /// cancel, slow-start, server-kill (external only). Default: all the target allows.
    #[arg(long, value_delimiter = ',')]
    faults: Option<Vec<FaultKind>>,
    /// The CLI the slots run: `fake-claude` (default: the one beside this binary).
    #[arg(long)]
    claude_bin: Option<PathBuf>,
    /// How long every slot may take to be idle again after the last task.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    recovery_bound: Duration,
    /// Slot hosts joined to the server (`--target stdio|http`): more processes, each a
    /// `claude-pool-server host`, and the faults `host-kill`, `host-stop` and (as root,
    /// each host in a network namespace of its own) `host-cut`.
    #[cfg(feature = "cluster")]
    #[arg(long, default_value_t = 0)]
    hosts: usize,
    /// Slots of each host.
    #[cfg(feature = "cluster")]
    #[arg(long, default_value_t = 2)]
    host_slots: usize,
    /// Write the verdict as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Test-only: break an invariant on purpose (`drop-terminal`: forget one task's terminal
    /// state), to show the harness reports it.
    #[arg(long, hide = true)]
    break_invariant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TargetKind {
    Embedded,
    Stdio,
    Http,
}

/// A planned task's turn, seen starting in the fake CLI's log.
struct Started {
    index: usize,
    slot: SlotId,
    pid: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let limit = match (args.tasks, args.duration) {
        (Some(n), _) => n,
        (None, Some(_)) => usize::MAX,
        (None, None) => 200,
    };
    if args.slots == 0 || limit == 0 {
        bail!("--slots and --tasks must be at least 1");
    }
    let embedded = args.target == TargetKind::Embedded;
    let faults = match &args.faults {
        Some(f) => f.clone(),
        None => {
            let mut f: Vec<FaultKind> = EMBEDDED_FAULTS
                .split(',')
                .filter_map(|n| clap::ValueEnum::from_str(n, false).ok())
                .collect();
            if !embedded {
                f.push(FaultKind::ServerKill);
            }
            f
        }
    };
    if embedded && faults.contains(&FaultKind::ServerKill) {
        bail!("server-kill needs a server to kill: use --target stdio or --target http");
    }
    #[cfg(feature = "cluster")]
    let host_count = args.hosts;
    #[cfg(not(feature = "cluster"))]
    let host_count = 0usize;
    if host_count > 0 && embedded {
        bail!("--hosts needs a server for them to join: use --target stdio or --target http");
    }
    if host_count == 0 && faults.iter().any(|f| f.on_host()) {
        bail!("host faults need hosts: give --hosts N");
    }
    let schedule = Schedule {
        seed: args.seed,
        fault_rate: args.fault_rate,
        faults,
    };
    let scratch = std::env::temp_dir().join(format!(
        "claude-pool-chaos-{}-{}",
        std::process::id(),
        args.seed
    ));
    std::fs::create_dir_all(&scratch).context("scratch directory")?;
    let log = scratch.join("fake.log");
    let fault_files = FakeFaults::new(&scratch.join("faults"))?;
    let claude_bin = args
        .claude_bin
        .clone()
        .unwrap_or_else(|| beside_me("fake-claude"));
    let (fk, fv) = fault_files.env();
    let env: Vec<(OsString, OsString)> = vec![
        ("HOME".into(), scratch.clone().into()),
        ("FAKE_CLAUDE_LOG".into(), log.clone().into()),
        ("FAKE_CLAUDE_TURN_MS".into(), "5".into()),
        (fk.into(), fv.into()),
    ];
    #[cfg(feature = "cluster")]
    let hosts = if host_count > 0 {
        let h = hosts::Hosts::new(
            host_count,
            args.host_slots,
            args.server_bin
                .clone()
                .unwrap_or_else(|| beside_me("claude-pool-server")),
            claude_bin.clone(),
            env.clone(),
            &scratch,
        )?;
        Some(Arc::new(h))
    } else {
        None
    };
    #[cfg(feature = "cluster")]
    let faults_note = {
        // Host faults the schedule may draw when none were named.
        let mut f = schedule.faults.clone();
        if args.faults.is_none()
            && let Some(h) = &hosts
        {
            f.extend([FaultKind::HostKill, FaultKind::HostStop]);
            if h.can_cut() {
                f.push(FaultKind::HostCut);
            }
        }
        if f.contains(&FaultKind::HostCut) && !hosts.as_ref().is_some_and(|h| h.can_cut()) {
            bail!("host-cut needs network namespaces: run as root with iproute2");
        }
        f
    };
    #[cfg(feature = "cluster")]
    let schedule = Schedule {
        faults: faults_note,
        ..schedule
    };
    let target = match args.target {
        TargetKind::Embedded => {
            let mut b = Pool::builder().slots(args.slots).claude_bin(&claude_bin);
            for (k, v) in &env {
                b = b.env(k, v);
            }
            let pool = b
                .build()
                .await
                .map_err(|e| anyhow::anyhow!("the pool did not start: {e}"))?;
            Target::Embedded(pool)
        }
        TargetKind::Stdio | TargetKind::Http => {
            let mut server_args: Vec<OsString> = vec![
                "--slots".into(),
                args.slots.to_string().into(),
                "--claude-bin".into(),
                claude_bin.clone().into(),
                "--db".into(),
                scratch.join("pool.db").into(),
            ];
            server_args.extend(["--log-level".into(), "info".into()]);
            #[cfg(feature = "cluster")]
            if let Some(h) = &hosts {
                server_args.extend(h.server_args());
            }
            let launch = Launch {
                bin: args
                    .server_bin
                    .clone()
                    .unwrap_or_else(|| beside_me("claude-pool-server")),
                args: server_args,
                env: env.clone(),
                remove: vec![
                    "CLAUDE_MCP_DEPTH",
                    "CLAUDE_MCP_PORT",
                    "CLAUDE_MCP_DB_PATH",
                    "CLAUDE_POOL_HTTP_TOKEN",
                ],
                wire: if args.target == TargetKind::Http {
                    Wire::Http
                } else {
                    Wire::Stdio
                },
                logs: scratch.clone(),
            };
            Target::External(External::start(launch).await?)
        }
    };
    let target = Arc::new(target);
    #[cfg(feature = "cluster")]
    if let Some(h) = &hosts {
        for i in 0..h.len() {
            h.start(i)?;
        }
    }
    let total_slots = args.slots + {
        #[cfg(feature = "cluster")]
        {
            hosts.as_ref().map_or(0, |h| h.len() * h.slots)
        }
        #[cfg(not(feature = "cluster"))]
        {
            0
        }
    };
    if !target
        .wait_slots(total_slots, Duration::from_secs(60))
        .await
    {
        bail!("the pool did not reach {total_slots} slots within 60 s");
    }
    if !target.wait_idle(Duration::from_secs(60)).await {
        bail!("the pool did not become ready within 60 s");
    }

    let seen = Arc::new(Mutex::new(Seen::default()));
    let ids: Arc<Mutex<HashMap<usize, TaskId>>> = Arc::default();
    let drop_one = Arc::new(AtomicBool::new(
        args.break_invariant.as_deref() == Some("drop-terminal"),
    ));

    // Embedded, the terminal states are counted off the pool's event bus.
    let watcher = match &*target {
        Target::Embedded(pool) => {
            let mut events = pool.events();
            let (seen, drop_one) = (seen.clone(), drop_one.clone());
            Some(tokio::spawn(async move {
                loop {
                    let event = match events.recv().await {
                        Ok(e) => e,
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                            eprintln!(
                                "claude-pool-chaos: missed {n} events (the verdict may be off)"
                            );
                            continue;
                        }
                        Err(_) => return,
                    };
                    if let PoolEvent::Task { id, status } = event
                        && status.is_terminal()
                    {
                        record_terminal(&seen, &drop_one, id, status);
                    }
                }
            }))
        }
        Target::External(_) => None,
    };

    // The fake's log: slot processes started (never more alive than slots) and planned
    // turns starting (the moment to inject their fault).
    let (started_tx, mut started_rx) = tokio::sync::mpsc::unbounded_channel::<Started>();
    let watching = Arc::new(AtomicBool::new(true));
    let log_watcher = {
        let (log, watching, schedule) = (log.clone(), watching.clone(), schedule.clone());
        tokio::spawn(async move {
            let mut tail = Tail::new(&log);
            let mut live: HashSet<u32> = HashSet::new();
            let mut max_live = 0usize;
            while watching.load(Ordering::Relaxed) {
                for e in tail.read() {
                    let pid = e["pid"].as_u64().and_then(|p| u32::try_from(p).ok());
                    match (e["event"].as_str(), pid) {
                        (Some("start"), Some(pid)) => {
                            live.insert(pid);
                        }
                        (Some("turn_start"), Some(pid)) => {
                            let index = e["head"].as_str().and_then(|h| schedule.index_of(h));
                            let slot = e["slot"].as_str().map(|s| SlotId(s.to_owned()));
                            if let (Some(index), Some(slot)) = (index, slot) {
                                let _ = started_tx.send(Started { index, slot, pid });
                            }
                        }
                        _ => {}
                    }
                }
                live.retain(|p| running(*p));
                max_live = max_live.max(live.len());
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            max_live
        })
    };

    // The injector: each planned fault when its turn is seen starting; then, for a fault
    // that takes a slot down, the time until that slot serves again.
    let injector = {
        let (target, seen, ids, schedule) =
            (target.clone(), seen.clone(), ids.clone(), schedule.clone());
        let faults = fault_files.clone();
        let bound = args.recovery_bound;
        #[cfg(feature = "cluster")]
        let (hosts, log) = (hosts.clone(), log.clone());
        tokio::spawn(async move {
            let mut done: HashSet<usize> = HashSet::new();
            while let Some(s) = started_rx.recv().await {
                let Some(fault) = schedule.plan(s.index).fault else {
                    continue;
                };
                if !done.insert(s.index) {
                    continue; // one injection per task
                }
                let (target, seen, ids, faults) =
                    (target.clone(), seen.clone(), ids.clone(), faults.clone());
                #[cfg(feature = "cluster")]
                let (hosts, log) = (hosts.clone(), log.clone());
                tokio::spawn(async move {
                    let began = Instant::now();
                    match fault {
                        FaultKind::Kill => target.kill(&s.slot, s.pid).await,
                        FaultKind::Hang => target.hang(&s.slot, s.pid).await,
                        FaultKind::SlowStart => target.slow_start(&faults, &s.slot, s.pid).await,
                        FaultKind::Cancel => {
                            if let Some(id) = id_of(&ids, s.index).await {
                                let _ = target.cancel(&id).await;
                            }
                        }
                        FaultKind::ServerKill => {
                            if let Err(e) = target.kill_server().await {
                                eprintln!("claude-pool-chaos: restarting the server failed: {e:#}");
                            }
                        }
                        FaultKind::ApiError | FaultKind::Crash | FaultKind::Garbage => {}
                        #[cfg(feature = "cluster")]
                        FaultKind::HostKill | FaultKind::HostStop | FaultKind::HostCut => {
                            let Some(h) = &hosts else { return };
                            // The task's own host, or (on a local slot) one in turn.
                            let own = hosts::Hosts::index_of(&s.slot);
                            let i = own.unwrap_or(s.index % h.len().max(1));
                            if own.is_some()
                                && let Some(id) = id_of(&ids, s.index).await
                                && let Ok(mut seen) = seen.lock()
                            {
                                seen.fenced.push(id);
                            }
                            match fault {
                                FaultKind::HostKill => h.kill(i, &log).await,
                                FaultKind::HostStop => h.stop(i).await,
                                _ => h.cut(i).await,
                            }
                        }
                        #[cfg(not(feature = "cluster"))]
                        FaultKind::HostKill | FaultKind::HostStop | FaultKind::HostCut => {}
                    }
                    if !fault.takes_a_slot_down() {
                        return;
                    }
                    let id = id_of(&ids, s.index).await;
                    let all = fault == FaultKind::ServerKill;
                    if recovered(&target, &s.slot, id.as_ref(), all, began + bound).await
                        && let Ok(mut seen) = seen.lock()
                    {
                        seen.recoveries.push(began.elapsed());
                    }
                });
            }
        })
    };

    let started_at = Instant::now();
    let more = |n: usize| n < limit && args.duration.is_none_or(|d| started_at.elapsed() < d);
    let mut plans: Vec<Plan> = Vec::new();
    let mut reports: Vec<(usize, TaskId, anyhow::Result<TaskReport>)> = Vec::new();
    let mut next = 0;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut last_line = Instant::now();
    while more(next) || !in_flight.is_empty() {
        while more(next) && in_flight.len() < args.concurrency {
            let p = schedule.plan(next);
            let id = target.submit(&p).await?;
            plans.push(p);
            if let Ok(mut ids) = ids.lock() {
                ids.insert(next, id.clone());
            }
            let (target, seen, drop_one) = (target.clone(), seen.clone(), drop_one.clone());
            let i = next;
            in_flight.spawn(async move {
                let r = target.wait(&id).await;
                // External, the terminal state is the one the wait returned.
                if let (Target::External(_), Ok(r)) = (&*target, &r) {
                    record_terminal(&seen, &drop_one, id.clone(), r.status);
                }
                (i, id, r)
            });
            next += 1;
        }
        if let Some(done) = in_flight.join_next().await {
            reports.push(done?);
        }
        if last_line.elapsed() > Duration::from_secs(1) {
            last_line = Instant::now();
            eprintln!(
                "claude-pool-chaos: {}/{next} tasks done, {:.0} s",
                reports.len(),
                started_at.elapsed().as_secs_f64()
            );
        }
    }
    let idle = target.wait_idle(args.recovery_bound).await;
    if watcher.is_some() {
        // Events of the last tasks may still be on the bus: wait (bounded) until every
        // task's terminal event is counted.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let n = seen.lock().map(|s| s.terminal.len()).unwrap_or(0);
            if n >= plans.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let status = target.status().await?;
    let restarts = target.restarts().await;
    // A terminal state, once reached, reads the same at the end (after every restart).
    let mut reread = BTreeMap::new();
    for (_, id, _) in &reports {
        if let Ok(r) = target.result(id).await {
            reread.insert(id.clone(), r.status);
        }
    }
    injector.abort();
    let shutdown = target.shutdown().await;
    #[cfg(feature = "cluster")]
    if let Some(h) = &hosts {
        h.shutdown().await;
    }
    watching.store(false, Ordering::Relaxed);
    let max_live = log_watcher.await.unwrap_or(0);
    if let Some(w) = watcher {
        w.abort();
    }
    let stdout_problems = match &*target {
        Target::External(s) => s
            .stdout_problems
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default(),
        Target::Embedded(_) => Vec::new(),
    };
    let servers = match &*target {
        Target::External(s) => Some(s.servers()),
        Target::Embedded(_) => None,
    };

    let seen = std::mem::take(&mut *seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let report = verdict::Run {
        schedule: &schedule,
        slots: total_slots,
        plans: &plans,
        reports: &reports,
        reread: &reread,
        seen,
        ledger_usd: status.spend_usd,
        restarts,
        servers,
        max_live,
        idle,
        recovery_bound: args.recovery_bound,
        shutdown: shutdown.err().map(|e| format!("{e:#}")),
        stdout_problems,
        events: procs::events(&log),
        wall: started_at.elapsed(),
        target: match args.target {
            TargetKind::Embedded => "embedded",
            TargetKind::Stdio => "stdio",
            TargetKind::Http => "http",
        },
    }
    .judge()
    .await;
    report.print();
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report.json)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if report.violations() > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// Notes a terminal state of task `id` (unless the broken invariant drops this one).
fn record_terminal(seen: &Mutex<Seen>, drop_one: &AtomicBool, id: TaskId, status: TaskStatus) {
    if drop_one.swap(false, Ordering::Relaxed) {
        return; // the broken invariant: this one is "lost"
    }
    if let Ok(mut s) = seen.lock() {
        s.terminal.entry(id).or_default().push(status);
    }
}

/// The id of task `index`: its turn can be logged before its submit's answer is in.
async fn id_of(ids: &Mutex<HashMap<usize, TaskId>>, index: usize) -> Option<TaskId> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(id) = ids.lock().ok().and_then(|m| m.get(&index).cloned()) {
            return Some(id);
        }
        if Instant::now() >= until {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until `slot` serves again (idle, or busy with another task than `task`), or with
/// `all` until every slot does; false if `until` comes first.
async fn recovered(
    target: &Target,
    slot: &SlotId,
    task: Option<&TaskId>,
    all: bool,
    until: Instant,
) -> bool {
    let serving = |s: &claude_pool::protocol::tools::SlotReport| {
        s.status == SlotStatus::Idle || (s.status == SlotStatus::Busy && s.task_id.as_ref() != task)
    };
    while Instant::now() < until {
        if let Ok(status) = target.status().await {
            let ok = if all {
                !status.slots.is_empty() && status.slots.iter().all(serving)
            } else {
                status.slots.iter().any(|s| &s.id == slot && serving(s))
            };
            if ok {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}
