//! Warm when it pays: `--idle-timeout` releases idle slots' processes down to `--warm`, and
//! queued work wakes cold slots together. Over the suite's transport, with the fake CLI.

use std::collections::BTreeSet;
use std::time::Duration;

use claude_pool_tests::procs::{self, assert_group_gone};
use claude_pool_tests::server::{ResourceNote, Server, ServerOptions, content};
use claude_pool_tests::{Scratch, git, within};
use serde_json::{Value, json};

const GONE: Duration = Duration::from_secs(10);

fn idle_server(slots: usize, timeout: &str, warm: usize) -> ServerOptions {
    ServerOptions::fake(slots).args(&["--idle-timeout", timeout, "--warm", &warm.to_string()])
}

/// Waits (on `pool://slots` updates) until the slots satisfy `pred`; returns pool_status.
async fn wait_slots(server: &Server, what: &str, pred: impl Fn(&[Value]) -> bool) -> Value {
    let uri = "pool://slots";
    server.subscribe(uri).await.expect("subscribe to the slots");
    within(Duration::from_secs(60), what, async {
        loop {
            let status = server.status().await;
            if pred(status["slots"].as_array().unwrap()) {
                return status;
            }
            let want = ResourceNote::Updated(uri.to_owned());
            server.resource_note_until(what, |n| *n == want).await;
        }
    })
    .await
}

/// Slots taken for cold (their process may still be on its way out).
fn cold(slots: &[Value]) -> usize {
    slots.iter().filter(|s| s["status"] == "cold").count()
}

/// Slots whose process is gone: cold, no pid.
fn released(slots: &[Value]) -> usize {
    slots
        .iter()
        .filter(|s| s["status"] == "cold" && s["pid"].is_null())
        .count()
}

fn pids(status: &Value) -> BTreeSet<u32> {
    Server::slot_pids(status).into_iter().collect()
}

#[tokio::test]
async fn after_the_idle_timeout_only_the_floor_stays_warm_and_no_released_process_is_left() {
    let server = Server::start(idle_server(4, "1s", 1)).await;
    let ready = server.wait_ready().await;
    let before = pids(&ready);
    assert_eq!(before.len(), 4);
    let status = wait_slots(&server, "three slots released", |s| released(s) == 3).await;
    let slots = status["slots"].as_array().unwrap();
    assert_eq!(
        slots[0]["status"], "idle",
        "the floor is the first slot: {status}"
    );
    assert_eq!(slots[0]["warm"], true);
    let kept = slots[0]["pid"].as_u64().unwrap() as u32;
    assert!(before.contains(&kept), "the floor kept its process");
    for s in &slots[1..] {
        assert_eq!(
            (s["status"].as_str(), s["warm"].as_bool()),
            (Some("cold"), Some(false)),
            "{s}"
        );
        assert!(s["pid"].is_null() && s["rss_bytes"].is_null(), "{s}");
    }
    for pid in before.iter().filter(|p| **p != kept) {
        assert_group_gone(*pid, GONE, "a released slot's process group").await;
        assert!(
            !procs::exists(*pid),
            "released process {pid} is still there"
        );
    }
    assert_eq!(status["warm_slots"], 1);
    assert_eq!(status["warm_floor"], 1);
    assert_eq!(status["idle_timeout_secs"], 1.0);
    let rss = status["slots_rss_bytes"].as_u64().unwrap();
    assert!(
        rss > 0 && Some(rss) == slots[0]["rss_bytes"].as_u64(),
        "{status}"
    );
    // Nothing was a failure: no restart was counted.
    assert!(slots.iter().all(|s| s["restarts"] == 0), "{status}");
    server.close().await;
}

#[tokio::test]
async fn a_burst_after_an_idle_period_wakes_the_cold_slots_together_and_every_task_completes() {
    let server = Server::start(
        idle_server(4, "1s", 1)
            .env("FAKE_CLAUDE_STARTUP_MS", "300")
            .env("FAKE_CLAUDE_TURN_MS", "100"),
    )
    .await;
    let ready = server.wait_ready().await;
    let first = pids(&ready);
    let floor_pid = Server::slot_pids(&ready)[0];
    wait_slots(&server, "three slots released", |s| released(s) == 3).await;
    let since = server.fake_events().len();

    let prompts: Vec<String> = (0..8).map(|i| format!("MOCK_TEXT: item {i}")).collect();
    let fan = server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    let outputs: Vec<&str> = fan["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["output"].as_str().unwrap_or_default())
        .collect();
    let expected: Vec<String> = (0..8).map(|i| format!("item {i}")).collect();
    assert_eq!(outputs, expected, "{fan}");

    let events = &server.fake_events()[since..];
    let started: Vec<(usize, u32)> = events
        .iter()
        .enumerate()
        .filter(|(_, e)| e["event"] == "start")
        .map(|(i, e)| (i, e["pid"].as_u64().unwrap() as u32))
        .collect();
    assert_eq!(
        started.len(),
        3,
        "one process per cold slot, no more: {started:?}"
    );
    assert!(started.iter().all(|(_, p)| !first.contains(p)));
    let woken: BTreeSet<u32> = started.iter().map(|(_, p)| *p).collect();
    let first_turn_on_woken = events
        .iter()
        .position(|e| {
            e["event"] == "turn_start" && woken.contains(&(e["pid"].as_u64().unwrap() as u32))
        })
        .expect("the woken slots ran tasks");
    assert!(
        started.iter().all(|(i, _)| *i < first_turn_on_woken),
        "the cold slots were woken one by one, not together"
    );
    // The first task did not wait for a warm-up: the floor ran it at once.
    let item0 = events
        .iter()
        .find(|e| e["event"] == "turn_start" && e["head"].as_str().unwrap_or("").contains("item 0"))
        .expect("item 0's turn");
    assert_eq!(item0["pid"].as_u64(), Some(u64::from(floor_pid)));
    server.close().await;
}

#[tokio::test]
async fn with_no_floor_a_cold_pool_wakes_as_many_slots_as_the_work_needs_at_once() {
    let server = Server::start(idle_server(4, "0.5", 0).env("FAKE_CLAUDE_STARTUP_MS", "300")).await;
    server.wait_ready().await;
    let status = wait_slots(&server, "every slot released", |s| released(s) == 4).await;
    assert_eq!(status["warm_slots"], 0);
    let since = server.fake_events().len();
    let prompts: Vec<String> = (0..2).map(|i| format!("MOCK_TEXT: cold {i}")).collect();
    let fan = server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    assert_eq!(fan["completed"], 2, "{fan}");
    let events = &server.fake_events()[since..];
    let starts = events.iter().filter(|e| e["event"] == "start").count();
    assert_eq!(starts, 2, "two tasks wake two slots, not four");
    let first_turn = events
        .iter()
        .position(|e| e["event"] == "turn_start")
        .unwrap();
    let last_start = events.iter().rposition(|e| e["event"] == "start").unwrap();
    assert!(last_start < first_turn, "both slots were woken together");
    server.close().await;
}

#[tokio::test]
async fn a_release_never_races_a_dispatch_and_is_never_counted_as_a_failure() {
    // Tasks arrive right as slots are being released (the moment a slot turns cold), and
    // right after tasks end (as slots go idle): each runs on a live process.
    let server = Server::start(idle_server(2, "0.2", 0)).await;
    server.wait_ready().await;
    let uri = "pool://slots";
    server.subscribe(uri).await.unwrap();
    let mut outcomes = Vec::new();
    for round in 0..12 {
        if round % 2 == 0 {
            wait_slots(&server, "a slot turning cold", |s| cold(s) > 0).await;
        }
        let r = server
            .call(
                "pool_run",
                json!({ "prompt": format!("MOCK_TEXT: round {round}") }),
            )
            .await;
        outcomes.push(content(&r));
    }
    for (round, r) in outcomes.iter().enumerate() {
        assert_eq!(r["status"], "completed", "round {round}: {r}");
        assert_eq!(r["output"], format!("round {round}"));
    }
    let status = server.status().await;
    assert!(
        status["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["restarts"] == 0),
        "a release counted as a failure: {status}"
    );
    server.close().await;
}

#[tokio::test]
async fn scaling_drain_budget_and_context_behave_the_same_with_cold_slots() {
    let server = Server::start(idle_server(3, "0.5", 1).args(&["--budget-usd", "100"])).await;
    server.wait_ready().await;
    wait_slots(&server, "two slots released", |s| released(s) == 2).await;

    server
        .call_ok(
            "context_set",
            json!({ "key": "project", "value": "aurora-17" }),
        )
        .await;
    // Each turn holds its slot for a while, so the warm slot cannot serve all three
    // before the woken ones are ready (each task runs on the first slot ready).
    let prompts: Vec<&str> = vec![
        "MOCK_SLEEP:0.5 MOCK_ECHO_PROMPT a",
        "MOCK_SLEEP:0.5 MOCK_ECHO_PROMPT b",
        "MOCK_SLEEP:0.5 MOCK_ECHO_PROMPT c",
    ];
    let fan = server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    let results = fan["results"].as_array().unwrap();
    let slots: BTreeSet<&str> = results
        .iter()
        .map(|r| r["slot_id"].as_str().unwrap())
        .collect();
    assert!(slots.len() >= 2, "the woken slots ran tasks too: {fan}");
    for r in results {
        assert!(
            r["output"].as_str().unwrap().contains("aurora-17"),
            "the context reached a woken slot: {r}"
        );
    }
    let spent: f64 = results
        .iter()
        .map(|r| r["spend_usd"].as_f64().unwrap())
        .sum();
    let budget = server.call_ok("pool_status", json!({})).await;
    assert!(
        (budget["spend_usd"].as_f64().unwrap() - spent).abs() < 1e-9,
        "{budget}"
    );

    // Scale-down takes a cold slot first: nothing running is touched.
    let status = wait_slots(&server, "two slots released again", |s| released(s) == 2).await;
    let cold_ids: BTreeSet<String> = status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["status"] == "cold")
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    let down = server
        .call_ok("pool_scale_down", json!({ "count": 1 }))
        .await;
    assert_eq!(down["new_slot_count"], 2, "{down}");
    let after = server.status().await;
    let left: BTreeSet<String> = after["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        cold_ids.difference(&left).count(),
        1,
        "a cold slot was removed: {after}"
    );
    let up = server.call_ok("pool_scale_up", json!({ "count": 1 })).await;
    assert_eq!(up["new_slot_count"], 3, "{up}");
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: after scaling" }))
        .await;
    assert_eq!(r["output"], "after scaling");

    // A drain with cold slots ends at once and leaves no process.
    let before = pids(&server.status().await);
    let drain = within(
        Duration::from_secs(30),
        "the drain",
        server.call_ok("pool_drain", json!({ "timeout": 10 })),
    )
    .await;
    assert_eq!(drain["failed"], 0, "{drain}");
    for pid in before {
        assert_group_gone(pid, GONE, "a slot process after the drain").await;
    }
    server.close().await;
}

#[tokio::test]
async fn a_woken_slot_works_in_the_same_worktree() {
    let repo = Scratch::new("idle-repo");
    git::init_repo(repo.path());
    let server = Server::start(idle_server(2, "0.5", 1).args(&[
        "--worktree",
        "--cwd",
        &repo.path().to_string_lossy(),
    ]))
    .await;
    let ready = server.wait_ready().await;
    let tree = ready["slots"][1]["worktree"].as_str().unwrap().to_owned();
    wait_slots(&server, "slot-1 released", |s| {
        s[1]["status"] == "cold" && s[1]["pid"].is_null()
    })
    .await;
    let fan = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": ["MOCK_SLEEP:0.5 MOCK_SHELL: pwd", "MOCK_SLEEP:0.5 MOCK_SHELL: pwd"] }),
        )
        .await;
    let on_slot1 = fan["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["slot_id"] == "slot-1")
        .unwrap_or_else(|| panic!("slot-1 ran nothing: {fan}"));
    assert_eq!(on_slot1["worktree"], tree.as_str(), "{on_slot1}");
    assert!(
        on_slot1["output"].as_str().unwrap().contains(&tree),
        "{on_slot1}"
    );
    server.close().await;
}

#[tokio::test]
async fn a_process_over_max_slot_rss_is_replaced_between_tasks_never_during_one() {
    // Any process holds more than a byte: every task's process is replaced after it.
    let small = Server::start(ServerOptions::fake(1).args(&["--max-slot-rss", "1"])).await;
    let ready = small.wait_ready().await;
    let mut seen = pids(&ready);
    for i in 0..3 {
        let r = small
            .call_ok(
                "pool_run",
                json!({ "prompt": format!("MOCK_SLEEP:0.2 MOCK_TEXT: heavy {i}") }),
            )
            .await;
        assert_eq!(r["output"], format!("heavy {i}"), "the task ran whole: {r}");
        let status = wait_slots(&small, "a fresh process", |s| {
            s[0]["status"] == "idle"
                && s[0]["pid"]
                    .as_u64()
                    .is_some_and(|p| !seen.contains(&(p as u32)))
        })
        .await;
        seen.extend(pids(&status));
        assert_eq!(
            status["slots"][0]["restarts"], 0,
            "a replacement is not a failure"
        );
    }
    assert_eq!(seen.len(), 4, "each task's process was replaced after it");
    small.close().await;

    // A limit far above what the fake holds keeps the process.
    let large = Server::start(ServerOptions::fake(1).args(&["--max-slot-rss", "64GiB"])).await;
    let ready = large.wait_ready().await;
    for i in 0..3 {
        large
            .call_ok(
                "pool_run",
                json!({ "prompt": format!("MOCK_TEXT: light {i}") }),
            )
            .await;
    }
    assert_eq!(
        pids(&large.status().await),
        pids(&ready),
        "kept under the limit"
    );
    large.close().await;
}
