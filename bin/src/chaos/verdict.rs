//! The verdict: the invariants a pool owes its users, checked against what the run saw.
//!
//! - every task is answered and reaches exactly one terminal state, once, which reads the
//!   same at the end (after every server restart);
//! - a completed output is its own prompt's, and came from a turn a process really finished;
//!   no task's turn finished twice;
//! - every completed task is billed its own forced tokens, once, and the ledger equals the
//!   sum of the tasks' spends;
//! - the pool never runs more slot processes than slots;
//! - no slot process, process group or grandchild outlives the run;
//! - every slot is idle again within the recovery bound of the last task;
//! - an external server writes nothing but JSON-RPC on stdout and stops cleanly;
//! - with slot hosts, no task running on a host when it was killed, stopped or cut off
//!   completes (its result would come from a fenced epoch).

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use claude_pool::protocol::tools::TaskReport;
use claude_pool::protocol::{TaskId, TaskStatus};
use serde_json::{Value, json};

use crate::plan::{Plan, Schedule};
use crate::procs::{children, group_left, running};

/// What the run saw as it went.
#[derive(Debug, Default)]
pub struct Seen {
    /// Terminal states seen per task (from the event bus embedded, from the waits external).
    pub terminal: HashMap<TaskId, Vec<TaskStatus>>,
    /// From each fault that took a slot down until the slot served again.
    pub recoveries: Vec<Duration>,
    /// Tasks that were running on a slot host when the host was killed, stopped or cut
    /// off: none may complete (its result would come from a fenced epoch).
    pub fenced: Vec<TaskId>,
}

/// Everything the verdict is made of.
pub struct Run<'a> {
    pub schedule: &'a Schedule,
    pub slots: usize,
    pub plans: &'a [Plan],
    pub reports: &'a [(usize, TaskId, anyhow::Result<TaskReport>)],
    pub reread: &'a BTreeMap<TaskId, TaskStatus>,
    pub seen: Seen,
    pub ledger_usd: f64,
    pub restarts: u64,
    pub servers: Option<u64>,
    pub max_live: usize,
    pub idle: bool,
    pub recovery_bound: Duration,
    pub shutdown: Option<String>,
    pub stdout_problems: Vec<String>,
    pub events: Vec<Value>,
    pub wall: Duration,
    pub target: &'static str,
}

/// The verdict, as JSON.
pub struct Verdict {
    pub json: Value,
}

fn violation(invariant: &str, task: Option<String>, detail: String) -> Value {
    json!({ "invariant": invariant, "task": task, "detail": detail })
}

impl Run<'_> {
    /// Checks every invariant.
    pub async fn judge(self) -> Verdict {
        let mut v: Vec<Value> = Vec::new();
        let mut by_state: BTreeMap<String, u64> = BTreeMap::new();
        let mut spend_sum = 0.0;
        // Turns each planned task finished successfully, per the fake's log.
        let mut finished: HashMap<usize, u64> = HashMap::new();
        for e in &self.events {
            if e["event"] == "turn_end"
                && e["subtype"] == "success"
                && let Some(i) = e["head"].as_str().and_then(|h| self.schedule.index_of(h))
            {
                *finished.entry(i).or_default() += 1;
            }
        }
        for (i, id, report) in self.reports {
            let p = &self.plans[*i];
            let task = Some(id.to_string());
            let r = match report {
                Ok(r) => r,
                Err(e) => {
                    v.push(violation("answered", task, format!("{e:#}")));
                    continue;
                }
            };
            *by_state.entry(r.status.to_string()).or_default() += 1;
            spend_sum += r.spend_usd;
            let ends = self.seen.terminal.get(id).map_or(0, Vec::len);
            if ends != 1 {
                v.push(violation(
                    "exactly one terminal state",
                    task.clone(),
                    format!("{ends} terminal states seen"),
                ));
            }
            match self.reread.get(id) {
                Some(s) if *s == r.status => {}
                other => v.push(violation(
                    "a terminal state stays",
                    task.clone(),
                    format!("{} when it ended, {other:?} at the end", r.status),
                )),
            }
            let turns = finished.get(i).copied().unwrap_or(0);
            if turns > 1 {
                v.push(violation(
                    "a task runs once",
                    task.clone(),
                    format!("{turns} turns of it finished"),
                ));
            }
            if r.status == TaskStatus::Completed {
                if r.output.as_deref() != Some(p.token.as_str()) {
                    v.push(violation(
                        "output belongs to its prompt",
                        task.clone(),
                        format!("expected {:?}, got {:?}", p.token, r.output),
                    ));
                }
                if turns == 0 {
                    v.push(violation(
                        "outputs come from finished turns",
                        task.clone(),
                        "completed, but no process finished a turn of it".into(),
                    ));
                }
                if (r.tokens_used.input, r.tokens_used.output) != (p.input, p.output) {
                    v.push(violation(
                        "billed once, its own tokens",
                        task.clone(),
                        format!(
                            "expected {}/{} tokens, billed {}/{}",
                            p.input, p.output, r.tokens_used.input, r.tokens_used.output
                        ),
                    ));
                }
            }
        }
        if (spend_sum - self.ledger_usd).abs() > 1e-9 {
            v.push(violation(
                "ledger equals the tasks' spends",
                None,
                format!("ledger {} vs sum {spend_sum}", self.ledger_usd),
            ));
        }
        if self.max_live > self.slots {
            v.push(violation(
                "never more processes than slots",
                None,
                format!("{} live processes with {} slots", self.max_live, self.slots),
            ));
        }
        if !self.idle {
            v.push(violation(
                "idle again after the last task",
                None,
                format!("not every slot idle within {:?}", self.recovery_bound),
            ));
        }
        let pids: Vec<u32> = self
            .events
            .iter()
            .filter(|e| e["event"] == "start")
            .filter_map(|e| e["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
            .collect();
        let grandchildren = children(&self.events);
        let wait_gone = Instant::now() + Duration::from_secs(10);
        let left = |pid: u32, group: bool| running(pid) || (group && !group_left(pid).is_empty());
        for (pid, group, what) in pids
            .iter()
            .map(|p| (*p, true, "slot process or its group"))
            .chain(grandchildren.iter().map(|p| (*p, false, "grandchild")))
        {
            while left(pid, group) && Instant::now() < wait_gone {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if left(pid, group) {
                v.push(violation(
                    "nothing outlives the run",
                    None,
                    format!("{what} {pid} is still there"),
                ));
            }
        }
        for id in &self.seen.fenced {
            let done = self.reports.iter().any(|(_, t, r)| {
                t == id && r.as_ref().is_ok_and(|r| r.status == TaskStatus::Completed)
            });
            if done || self.reread.get(id) == Some(&TaskStatus::Completed) {
                v.push(violation(
                    "no result from a fenced host",
                    Some(id.to_string()),
                    "completed though its host was lost while it ran".into(),
                ));
            }
        }
        for line in &self.stdout_problems {
            v.push(violation(
                "stdout carries only MCP",
                None,
                format!("the server wrote {line:?}"),
            ));
        }
        if let Some(e) = &self.shutdown {
            v.push(violation("a clean shutdown", None, e.clone()));
        }
        let mut by_fault: BTreeMap<&str, u64> = BTreeMap::new();
        for p in self.plans {
            if let Some(f) = p.fault {
                *by_fault.entry(f.name()).or_default() += 1;
            }
        }
        let mut rec = self.seen.recoveries.clone();
        rec.sort();
        let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        Verdict {
            json: json!({
                "target": self.target,
                "seed": self.schedule.seed,
                "slots": self.slots,
                "tasks": self.plans.len(),
                "faults": by_fault,
                "tasks_by_state": by_state,
                "restarts": self.restarts,
                "servers": self.servers,
                "processes_started": pids.len(),
                "grandchildren": grandchildren.len(),
                "max_live_processes": self.max_live,
                "recovery_ms": { "n": rec.len(), "p50": ms(rec.get(rec.len() / 2)), "max": ms(rec.last()) },
                "spend_usd": self.ledger_usd,
                "wall_s": self.wall.as_secs_f64(),
                "violations": v,
            }),
        }
    }
}

impl Verdict {
    /// How many invariants were broken.
    pub fn violations(&self) -> usize {
        self.json["violations"].as_array().map_or(0, Vec::len)
    }

    /// The table on stdout.
    pub fn print(&self) {
        let j = &self.json;
        println!(
            "claude-pool-chaos verdict ({}, seed {}, {} slots, {} tasks, {:.0} s)",
            j["target"].as_str().unwrap_or(""),
            j["seed"],
            j["slots"],
            j["tasks"],
            j["wall_s"].as_f64().unwrap_or(0.0)
        );
        println!("  faults injected   {}", table(&j["faults"]));
        println!("  tasks by state    {}", table(&j["tasks_by_state"]));
        let servers = match j["servers"].as_u64() {
            Some(n) => format!("   servers {n}"),
            None => String::new(),
        };
        println!(
            "  restarts {}{servers}   processes started {}   grandchildren {}   max live {}",
            j["restarts"], j["processes_started"], j["grandchildren"], j["max_live_processes"]
        );
        println!(
            "  recovery          p50 {:.0} ms, max {:.0} ms (n={})",
            j["recovery_ms"]["p50"].as_f64().unwrap_or(0.0),
            j["recovery_ms"]["max"].as_f64().unwrap_or(0.0),
            j["recovery_ms"]["n"]
        );
        let bad = self.violations();
        if bad == 0 {
            println!("  violations        none");
        } else {
            println!("  violations        {bad}");
            for v in j["violations"].as_array().into_iter().flatten().take(SHOWN) {
                println!("    - {}: {} {}", v["invariant"], v["task"], v["detail"]);
            }
            if bad > SHOWN {
                println!(
                    "    … and {} more (all of them in the JSON report)",
                    bad - SHOWN
                );
            }
        }
    }
}

/// Violations listed in the table.
const SHOWN: usize = 20;

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
