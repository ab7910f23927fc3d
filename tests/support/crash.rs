//! A crash run: a workload of tasks over a server that is SIGKILLed at random moments and
//! restarted on the same store, then checked. Used by the chaos test (small) and the
//! durability bench (500 tasks, 10 kills).
//!
//! Every prompt names its task (`MOCK_TEXT: task-<n>`) and forces its usage, so each
//! expectation is computed from the run's own inputs: which output belongs to which task,
//! and what each task and the whole ledger must have cost.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::server::{Server, ServerOptions};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct CrashPlan {
    /// Tasks submitted over the whole run.
    pub tasks: usize,
    /// Times the server is SIGKILLed (and restarted).
    pub kills: usize,
    /// Slots of each server.
    pub slots: usize,
    /// Seeds the prompts' lengths and the kill moments.
    pub seed: u64,
}

/// What the run found.
#[derive(Debug, Default)]
pub struct CrashReport {
    /// Task ids the servers returned.
    pub submitted: usize,
    /// Final states, by name.
    pub states: BTreeMap<String, usize>,
    /// Violations found, each naming its task.
    pub violations: Vec<String>,
    /// The ledger at the end and the sum of the stored task spends.
    pub ledger_usd: f64,
    /// The sum of every task's spend.
    pub sum_usd: f64,
    /// Servers started (kills + 1).
    pub servers: usize,
    /// Time from a restart's spawn to its first answered call, per restart.
    pub restart_ms: Vec<f64>,
    /// Wall time of the run.
    pub wall: Duration,
}

/// Dollars of one API call at the fake's default model ($4 / $20 per million tokens).
pub fn call_usd(input: u64, output: u64) -> f64 {
    (input as f64 * 4.0 + output as f64 * 20.0) / 1e6
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The prompt of task `n`: its own text, usage and duration.
fn prompt(n: usize, rng: &mut Rng) -> (String, u64, u64) {
    let input = 1000 + rng.below(4000);
    let output = 10 + rng.below(300);
    let sleep_ms = 20 + rng.below(250);
    (
        format!(
            "MOCK_SLEEP:{:.3} MOCK_USAGE:{input},{output} MOCK_TEXT: task-{n}",
            sleep_ms as f64 / 1000.0
        ),
        input,
        output,
    )
}

async fn start(state: &Path, slots: usize) -> Server {
    Server::start(ServerOptions::fake(slots).state(state)).await
}

/// Runs the plan in `state` (a directory the run owns).
pub async fn crash_run(plan: CrashPlan, state: &Path) -> CrashReport {
    let began = Instant::now();
    let mut rng = Rng(plan.seed | 1);
    let mut report = CrashReport::default();
    // task id -> (n, expected spend)
    let mut expected: BTreeMap<String, (usize, f64)> = BTreeMap::new();
    // Completed results seen before a kill: they must read the same at the end.
    let mut seen_done: BTreeMap<String, String> = BTreeMap::new();
    let per_round = plan.tasks.div_ceil(plan.kills + 1);
    let mut next = 0usize;
    let mut server = start(state, plan.slots).await;
    report.servers = 1;
    for round in 0..=plan.kills {
        let upto = (next + per_round).min(plan.tasks);
        for n in next..upto {
            let (p, input, output) = prompt(n, &mut rng);
            let r = server.call_ok("pool_submit", json!({ "prompt": p })).await;
            let id = r["task_id"].as_str().expect("task_id").to_owned();
            expected.insert(id, (n, call_usd(input, output)));
        }
        next = upto;
        report.submitted = expected.len();
        if round == plan.kills {
            break;
        }
        // Let work flow for a random moment, note what completed, then kill.
        let pause = Duration::from_millis(100 + rng.below(900));
        let until = Instant::now() + pause;
        let ids: Vec<String> = expected.keys().cloned().collect();
        for id in &ids {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let r = server
                .call_ok(
                    "pool_result",
                    json!({ "task_id": id, "wait": left.as_secs_f64() }),
                )
                .await;
            if r["status"] == "completed" {
                seen_done.insert(id.clone(), r["output"].as_str().unwrap_or("").to_owned());
            }
        }
        server.signal_and_wait(libc::SIGKILL).await;
        let spawned = Instant::now();
        server = start(state, plan.slots).await;
        report
            .restart_ms
            .push(spawned.elapsed().as_secs_f64() * 1000.0);
        report.servers += 1;
    }
    check(&server, &expected, &seen_done, &mut report).await;
    server.close().await;
    report.wall = began.elapsed();
    report
}

async fn check(
    server: &Server,
    expected: &BTreeMap<String, (usize, f64)>,
    seen_done: &BTreeMap<String, String>,
    report: &mut CrashReport,
) {
    for (id, (n, usd)) in expected {
        let r: Value = match server
            .try_call("pool_result", json!({ "task_id": id, "wait": 120 }))
            .await
        {
            Ok(r) => r.structured_content.unwrap_or_default(),
            Err(e) => {
                report
                    .violations
                    .push(format!("{id} (task-{n}) was lost: {e}"));
                continue;
            }
        };
        let status = r["status"].as_str().unwrap_or("missing").to_owned();
        *report.states.entry(status.clone()).or_default() += 1;
        let spend = r["spend_usd"].as_f64().unwrap_or(f64::NAN);
        report.sum_usd += spend;
        match status.as_str() {
            "completed" => {
                if r["output"] != format!("task-{n}") {
                    report.violations.push(format!(
                        "{id}: task-{n} completed with another task's output {}",
                        r["output"]
                    ));
                }
                if (spend - usd).abs() > 1e-9 {
                    report
                        .violations
                        .push(format!("{id}: billed {spend} for a turn that cost {usd}"));
                }
            }
            "interrupted" | "failed" | "cancelled" | "timed_out" => {
                if spend > usd + 1e-9 {
                    report
                        .violations
                        .push(format!("{id}: billed {spend}, more than its turn's {usd}"));
                }
            }
            other => report
                .violations
                .push(format!("{id}: not terminal at the end ({other})")),
        }
        if let Some(out) = seen_done.get(id)
            && (status != "completed" || r["output"].as_str() != Some(out.as_str()))
        {
            report.violations.push(format!(
                "{id}: completed before a crash, reads {status} {} after",
                r["output"]
            ));
        }
    }
    let status = server.status().await;
    report.ledger_usd = status["spend_usd"].as_f64().unwrap_or(f64::NAN);
    if (report.ledger_usd - report.sum_usd).abs() > 1e-6 {
        report.violations.push(format!(
            "the ledger {} is not the sum of the task spends {}",
            report.ledger_usd, report.sum_usd
        ));
    }
    let total = status["tasks"]["total"].as_u64().unwrap_or(0) as usize;
    if total != expected.len() {
        report.violations.push(format!(
            "the pool counts {total} tasks; {} were submitted",
            expected.len()
        ));
    }
}
