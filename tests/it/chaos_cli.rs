//! `claude-pool-chaos`, the harness users run: a bounded run with every fault kind passes
//! its invariants, the same seed replays the same schedule and counts, and a broken
//! invariant makes it name the task and exit non-zero.

use std::time::Duration;

use claude_pool_tests::{Scratch, chaos_bin, fake_claude_bin, within};
use serde_json::Value;
use tokio::process::Command;

pub(crate) async fn chaos(
    args: &[&str],
    scratch: &Scratch,
    name: &str,
) -> (Option<i32>, Value, String) {
    let json = scratch.join(name);
    let out = within(
        Duration::from_secs(240),
        "the chaos run",
        Command::new(chaos_bin())
            .args(args)
            .arg("--claude-bin")
            .arg(fake_claude_bin())
            .arg("--json")
            .arg(&json)
            .output(),
    )
    .await
    .expect("run claude-pool-chaos");
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let verdict: Value = serde_json::from_slice(&std::fs::read(&json).unwrap_or_default())
        .unwrap_or_else(|e| {
            panic!(
                "no JSON verdict ({e}); stdout:\n{table}\nstderr:\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    (out.status.code(), verdict, table)
}

const KINDS: [&str; 7] = [
    "kill",
    "hang",
    "api-error",
    "crash",
    "garbage",
    "cancel",
    "slow-start",
];

#[tokio::test]
async fn a_bounded_run_with_every_fault_kind_keeps_every_invariant() {
    let scratch = Scratch::new("chaos-cli");
    let (code, v, table) = chaos(
        &[
            "--tasks",
            "300",
            "--slots",
            "4",
            "--seed",
            "11",
            "--fault-rate",
            "0.35",
        ],
        &scratch,
        "run.json",
    )
    .await;
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
    for kind in KINDS {
        assert!(v["faults"][kind].as_u64() > Some(0), "no {kind} fault: {v}");
    }
    let states: u64 = v["tasks_by_state"]
        .as_object()
        .expect("tasks by state")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(states, 300, "every task ends in one state: {v}");
    assert!(v["max_live_processes"].as_u64() <= Some(4), "{v}");
    assert!(table.contains("violations        none"), "{table}");
}

#[tokio::test]
async fn the_same_seed_replays_the_same_schedule_and_counts() {
    let scratch = Scratch::new("chaos-cli");
    let args = ["--tasks", "80", "--slots", "3", "--seed", "5"];
    let (a_code, a, _) = chaos(&args, &scratch, "a.json").await;
    let (b_code, b, _) = chaos(&args, &scratch, "b.json").await;
    assert_eq!((a_code, b_code), (Some(0), Some(0)), "{a}\n{b}");
    assert_eq!(a["faults"], b["faults"]);
    assert_eq!(a["tasks_by_state"], b["tasks_by_state"], "{a}\n{b}");
    let (_, other, _) = chaos(
        &["--tasks", "80", "--slots", "3", "--seed", "6"],
        &scratch,
        "c.json",
    )
    .await;
    assert_ne!(
        a["faults"], other["faults"],
        "another seed, another schedule"
    );
}

#[tokio::test]
async fn a_broken_invariant_is_reported_with_its_task_and_fails_the_run() {
    let scratch = Scratch::new("chaos-cli");
    let (code, v, table) = chaos(
        &[
            "--tasks",
            "30",
            "--slots",
            "2",
            "--seed",
            "3",
            "--break-invariant",
            "drop-terminal",
        ],
        &scratch,
        "broken.json",
    )
    .await;
    assert_eq!(code, Some(1), "{table}");
    let violations = v["violations"].as_array().expect("violations");
    assert_eq!(violations.len(), 1, "{v}");
    assert_eq!(violations[0]["invariant"], "exactly one terminal state");
    let task = violations[0]["task"].as_str().expect("the task's id");
    assert!(task.starts_with("task-") && table.contains(task), "{table}");
}

/// A run against a `claude-pool-server` the harness starts on a store of its own, with
/// every fault kind and SIGKILLs of the server between them.
async fn external_run(target: &str) {
    let scratch = Scratch::new("chaos-cli");
    let server = claude_pool_tests::server_bin();
    let (code, v, table) = chaos(
        &[
            "--target",
            target,
            "--server-bin",
            server.to_str().expect("utf-8 path"),
            "--tasks",
            "160",
            "--slots",
            "3",
            "--seed",
            "2",
            "--fault-rate",
            "0.4",
        ],
        &scratch,
        "external.json",
    )
    .await;
    assert_eq!(code, Some(0), "{table}");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
    for kind in KINDS.iter().chain(&["server-kill"]) {
        assert!(v["faults"][kind].as_u64() > Some(0), "no {kind} fault: {v}");
    }
    let kills = v["faults"]["server-kill"].as_u64().unwrap_or(0);
    assert_eq!(
        v["servers"].as_u64(),
        Some(kills + 1),
        "one restart per server kill: {v}"
    );
    // Each server-kill task was mid-turn when its server died: the next one reads it
    // interrupted.
    assert!(
        v["tasks_by_state"]["interrupted"].as_u64() >= Some(kills),
        "{v}"
    );
    let states: u64 = v["tasks_by_state"]
        .as_object()
        .expect("tasks by state")
        .values()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(states, 160, "every task ends in one state: {v}");
    assert!(v["grandchildren"].as_u64() > Some(0), "{v}");
}

#[tokio::test]
async fn a_stdio_server_killed_between_slot_faults_keeps_every_invariant() {
    external_run("stdio").await;
}

#[tokio::test]
async fn an_http_server_killed_between_slot_faults_keeps_every_invariant() {
    external_run("http").await;
}
