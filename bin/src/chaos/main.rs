//! `claude-pool-chaos`: runs a workload against an embedded pool of `fake-claude` slots,
//! injects faults on purpose, and checks the invariants a pool owes its users. The verdict is
//! a table on stdout and, with `--json`, a JSON report; the exit status is 1 on any violation.
//!
//! Faults are planned per task from `--seed`, so the same seed replays the same schedule and
//! the same counts: turn faults travel in the task's own prompt (an API error, a crash
//! mid-turn, garbage on stdout); the others are injected from the embedding handle the
//! moment the task's start is seen on the event bus (SIGKILL of its slot's process, SIGSTOP
//! past a 1 s deadline, a cancel, a SIGKILL followed by a slow restart).
//!
//! Invariants: every task reaches exactly one terminal state, once; a completed output is its
//! own prompt's and came from a turn a process really finished; every completed task is billed its own forced tokens once, and the ledger
//! equals the sum of the tasks' spends; the pool never runs more processes than slots; no
//! process, process group or zombie outlives the run; every slot is idle again within
//! `--recovery-bound` of the last task.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use claude_pool::events::PoolEvent;
use claude_pool::protocol::{SlotId, SlotStatus, TaskId, TaskStatus};
use claude_pool::{FakeFaults, Pool, TaskSpec};
use serde_json::{Value, json};

mod procs;
use procs::{fake_beside_me, group_left, running, started};

/// Chaos testing for a claude-pool setup: faults on purpose, invariants checked.
#[derive(Debug, Parser)]
#[command(name = "claude-pool-chaos", version)]
struct Args {
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
    /// cancel, slow-start.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "kill,hang,api-error,crash,garbage,cancel,slow-start"
    )]
    faults: Vec<FaultKind>,
    /// The CLI the slots run: `fake-claude` (default: the one beside this binary).
    #[arg(long)]
    claude_bin: Option<PathBuf>,
    /// How long every slot may take to be idle again after the last task.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    recovery_bound: Duration,
    /// Write the verdict as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Test-only: break an invariant on purpose (`drop-terminal`: forget one task's terminal
    /// event), to show the harness reports it.
    #[arg(long, hide = true)]
    break_invariant: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
enum FaultKind {
    Kill,
    Hang,
    ApiError,
    Crash,
    Garbage,
    Cancel,
    SlowStart,
}

impl FaultKind {
    fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Hang => "hang",
            FaultKind::ApiError => "api-error",
            FaultKind::Crash => "crash",
            FaultKind::Garbage => "garbage",
            FaultKind::Cancel => "cancel",
            FaultKind::SlowStart => "slow-start",
        }
    }

    /// Injected from the handle when the task starts (the rest travel in the prompt).
    fn on_start(self) -> bool {
        matches!(
            self,
            FaultKind::Kill | FaultKind::Hang | FaultKind::Cancel | FaultKind::SlowStart
        )
    }
}

/// splitmix64: a small, fixed generator, so a seed means the same schedule everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One planned task.
#[derive(Debug, Clone)]
struct Plan {
    token: String,
    input: u64,
    output: u64,
    fault: Option<FaultKind>,
}

/// Task `i`'s plan: a function of the seed and `i` alone.
fn plan(args: &Args, i: usize) -> Plan {
    let mut rng = Rng(args.seed ^ (i as u64).wrapping_mul(0xd6e8_feb8_6659_fd93));
    let fault = (!args.faults.is_empty() && rng.unit() < args.fault_rate)
        .then(|| args.faults[(rng.next() % args.faults.len() as u64) as usize]);
    Plan {
        token: format!("chaos-{}-{i}", args.seed),
        input: 100 + rng.next() % 900,
        output: 10 + rng.next() % 90,
        fault,
    }
}

fn spec(p: &Plan) -> TaskSpec {
    let directive = match p.fault {
        Some(FaultKind::ApiError) => "MOCK_STATUS:500",
        Some(FaultKind::Crash) => "MOCK_CRASH_MID:1",
        Some(FaultKind::Garbage) => "MOCK_GARBAGE",
        Some(f) if f.on_start() => "MOCK_SLEEP:20",
        _ => "",
    };
    let spec = TaskSpec::new(format!(
        "{directive} MOCK_USAGE:{},{} MOCK_TEXT: {}",
        p.input, p.output, p.token
    ));
    match p.fault {
        Some(FaultKind::Hang) => spec.timeout(Duration::from_secs(1)),
        _ => spec.timeout(Duration::from_secs(60)),
    }
}

/// What the run saw.
#[derive(Default)]
struct Seen {
    terminal: HashMap<TaskId, Vec<TaskStatus>>,
    /// When a fault hit a slot, until the slot is idle again.
    hit: HashMap<SlotId, Instant>,
    recoveries: Vec<Duration>,
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
    let scratch = std::env::temp_dir().join(format!(
        "claude-pool-chaos-{}-{}",
        std::process::id(),
        args.seed
    ));
    std::fs::create_dir_all(&scratch).context("scratch directory")?;
    let log = scratch.join("fake.log");
    let faults = FakeFaults::new(&scratch.join("faults"))?;
    let (fk, fv) = faults.env();
    let pool = Pool::builder()
        .slots(args.slots)
        .claude_bin(args.claude_bin.clone().unwrap_or_else(fake_beside_me))
        .env("HOME", &scratch)
        .env("FAKE_CLAUDE_LOG", &log)
        .env("FAKE_CLAUDE_TURN_MS", "5")
        .env(fk, fv)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("the pool did not start: {e}"))?;
    pool.wait_ready()
        .await
        .map_err(|e| anyhow::anyhow!("the pool did not become ready: {e}"))?;

    let mut plans: Vec<Plan> = Vec::new();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let planned: Arc<Mutex<HashMap<TaskId, FaultKind>>> = Arc::default();
    let mut events = pool.events();
    let watcher = {
        let (pool, seen, planned, faults) =
            (pool.clone(), seen.clone(), planned.clone(), faults.clone());
        let drop_one = args.break_invariant.as_deref() == Some("drop-terminal");
        tokio::spawn(async move {
            let mut dropped = !drop_one;
            loop {
                let event = match events.recv().await {
                    Ok(e) => e,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        eprintln!("claude-pool-chaos: missed {n} events (the verdict may be off)");
                        continue;
                    }
                    Err(_) => return,
                };
                match event {
                    PoolEvent::Task { id, status } if status == TaskStatus::Running => {
                        let fault = planned.lock().ok().and_then(|p| p.get(&id).copied());
                        let Some(fault) = fault.filter(|f| f.on_start()) else {
                            continue;
                        };
                        let slot = match pool.result(&id).await {
                            Ok(r) => r.slot_id,
                            Err(_) => None,
                        };
                        let Some(slot) = slot else { continue };
                        if let Ok(mut s) = seen.lock() {
                            s.hit.insert(slot.clone(), Instant::now());
                        }
                        let _ = match fault {
                            FaultKind::Kill => pool.kill_slot(&slot).await.map(drop),
                            FaultKind::Hang => pool.hang_slot(&slot).await.map(drop),
                            FaultKind::Cancel => pool.cancel(&id).await.map(drop),
                            FaultKind::SlowStart => {
                                let _ = faults.slow_start(&slot, 300);
                                pool.kill_slot(&slot).await.map(drop)
                            }
                            _ => Ok(()),
                        };
                    }
                    PoolEvent::Task { id, status } if status.is_terminal() => {
                        if !dropped {
                            dropped = true; // the broken invariant: this one is "lost"
                            continue;
                        }
                        if let Ok(mut s) = seen.lock() {
                            s.terminal.entry(id).or_default().push(status);
                        }
                    }
                    PoolEvent::SlotFailed { id, .. } => {
                        if let Ok(mut s) = seen.lock() {
                            s.hit.entry(id).or_insert_with(Instant::now);
                        }
                    }
                    PoolEvent::Slot { id, status } if status == SlotStatus::Idle => {
                        if let Ok(mut s) = seen.lock()
                            && let Some(t) = s.hit.remove(&id)
                        {
                            s.recoveries.push(t.elapsed());
                        }
                    }
                    _ => {}
                }
            }
        })
    };

    // The process audit: never more live slot processes than slots.
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (log, sampling, slots) = (log.clone(), sampling.clone(), args.slots);
        tokio::spawn(async move {
            let mut max = 0usize;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                let live = started(&log).into_iter().filter(|p| running(*p)).count();
                max = max.max(live);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let _ = slots;
            max
        })
    };

    let started_at = Instant::now();
    let more = |n: usize| n < limit && args.duration.is_none_or(|d| started_at.elapsed() < d);
    let mut reports = Vec::new();
    let mut ids = Vec::new();
    let mut next = 0;
    let mut in_flight = tokio::task::JoinSet::new();
    let mut last_line = Instant::now();
    while more(next) || !in_flight.is_empty() {
        while more(next) && in_flight.len() < args.concurrency {
            let p = plan(&args, next);
            plans.push(p.clone());
            let id = pool
                .submit(spec(&p))
                .await
                .map_err(|e| anyhow::anyhow!("submit: {e}"))?;
            if let Some(f) = p.fault {
                planned
                    .lock()
                    .map_err(|_| anyhow::anyhow!("poisoned"))?
                    .insert(id.clone(), f);
            }
            ids.push((id.clone(), next));
            let pool = pool.clone();
            in_flight.spawn(async move { (next, pool.wait(&id).await) });
            next += 1;
        }
        if let Some(done) = in_flight.join_next().await {
            let (i, report) = done?;
            reports.push((i, report));
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
    let total = plans.len();
    let mut by_fault: BTreeMap<&str, u64> = BTreeMap::new();
    for p in &plans {
        if let Some(f) = p.fault {
            *by_fault.entry(f.name()).or_default() += 1;
        }
    }
    let idle = tokio::time::timeout(args.recovery_bound, pool.wait_ready()).await;
    // Events of the last tasks may still be on the bus: wait (bounded) until every task's
    // terminal event is counted.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let n = seen.lock().map(|s| s.terminal.len()).unwrap_or(0);
        if n >= total {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = pool.status().await.map_err(|e| anyhow::anyhow!("{e}"))?;
    pool.shutdown().await;
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let max_live = sampler.await.unwrap_or(0);
    watcher.abort();

    // The verdict.
    let mut violations: Vec<Value> = Vec::new();
    let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
    let seen = std::mem::take(&mut *seen.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
    let mut spend_sum = 0.0;
    for (i, report) in &reports {
        let p = &plans[*i];
        let r = match report {
            Ok(r) => r,
            Err(e) => {
                violations.push(
                    json!({ "invariant": "answered", "task": p.token, "detail": e.to_string() }),
                );
                continue;
            }
        };
        *by_state.entry(r.status.to_string()).or_default() += 1;
        spend_sum += r.spend_usd;
        let ends = seen.terminal.get(&r.task_id).map_or(0, Vec::len);
        if ends != 1 {
            violations.push(
                json!({ "invariant": "exactly one terminal state", "task": r.task_id.to_string(),
                "detail": format!("{ends} terminal states seen") }),
            );
        }
        if r.status == TaskStatus::Completed {
            if r.output.as_deref() != Some(p.token.as_str()) {
                violations.push(json!({ "invariant": "output belongs to its prompt", "task": r.task_id.to_string(),
                    "detail": format!("expected {:?}, got {:?}", p.token, r.output) }));
            }
            if (r.tokens_used.input, r.tokens_used.output) != (p.input, p.output) {
                violations.push(json!({ "invariant": "billed once, its own tokens", "task": r.task_id.to_string(),
                    "detail": format!("expected {}/{} tokens, billed {}/{}", p.input, p.output, r.tokens_used.input, r.tokens_used.output) }));
            }
        }
    }
    // Every completed output came from a turn some process really finished.
    let finished_turns = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["event"] == "turn_end" && e["subtype"] == "success")
        .count();
    let completed = by_state.get("completed").copied().unwrap_or(0);
    if (finished_turns as u64) < completed {
        violations.push(
            json!({ "invariant": "outputs come from finished turns", "task": null,
            "detail": format!("{completed} completed tasks but {finished_turns} turns finished") }),
        );
    }
    if (spend_sum - status.spend_usd).abs() > 1e-9 {
        violations.push(
            json!({ "invariant": "ledger equals the tasks' spends", "task": null,
            "detail": format!("ledger {} vs sum {}", status.spend_usd, spend_sum) }),
        );
    }
    if max_live > args.slots {
        violations.push(
            json!({ "invariant": "never more processes than slots", "task": null,
            "detail": format!("{max_live} live processes with {} slots", args.slots) }),
        );
    }
    if idle.is_err() {
        violations.push(
            json!({ "invariant": "idle again after the last task", "task": null,
            "detail": format!("not every slot idle within {:?}", args.recovery_bound) }),
        );
    }
    let pids = started(&log);
    let wait_gone = Instant::now() + Duration::from_secs(10);
    for pid in &pids {
        while (running(*pid) || !group_left(*pid).is_empty()) && Instant::now() < wait_gone {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if running(*pid) || !group_left(*pid).is_empty() {
            violations.push(
                json!({ "invariant": "nothing outlives the run", "task": null,
                "detail": format!("process {pid} or its group is still there") }),
            );
        }
    }
    let mut rec = seen.recoveries.clone();
    rec.sort();
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let verdict = json!({
        "seed": args.seed,
        "slots": args.slots,
        "tasks": total,
        "faults": by_fault,
        "tasks_by_state": by_state,
        "restarts": status.slots.iter().map(|s| u64::from(s.restarts)).sum::<u64>(),
        "processes_started": pids.len(),
        "max_live_processes": max_live,
        "recovery_ms": { "n": rec.len(), "p50": ms(rec.get(rec.len() / 2)), "max": ms(rec.last()) },
        "spend_usd": status.spend_usd,
        "wall_s": started_at.elapsed().as_secs_f64(),
        "violations": violations,
    });
    println!(
        "claude-pool-chaos verdict (seed {}, {} slots, {total} tasks)",
        args.seed, args.slots
    );
    println!("  faults injected   {}", table(&verdict["faults"]));
    println!("  tasks by state    {}", table(&verdict["tasks_by_state"]));
    println!(
        "  restarts {}   processes started {}   max live {}   recovery p50 {:.0} ms max {:.0} ms (n={})",
        verdict["restarts"],
        pids.len(),
        max_live,
        ms(rec.get(rec.len() / 2)),
        ms(rec.last()),
        rec.len()
    );
    let bad = verdict["violations"].as_array().map_or(0, Vec::len);
    if bad == 0 {
        println!("  violations        none");
    } else {
        println!("  violations        {bad}");
        for v in verdict["violations"].as_array().into_iter().flatten() {
            println!("    - {}: {} {}", v["invariant"], v["task"], v["detail"]);
        }
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&verdict)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    if bad > 0 {
        std::process::exit(1);
    }
    Ok(())
}

fn table(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
