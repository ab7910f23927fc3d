//! Scaling over stdio with the fake CLI: bounds, idle slots first, a busy slot's grace, and
//! never more working processes than slots.

use std::time::Duration;

use claude_pool_tests::procs::{assert_gone, assert_group_gone};
use claude_pool_tests::server::{Server, ServerOptions, content, finish_call};
use serde_json::{Value, json};

const GONE: Duration = Duration::from_secs(10);

fn slot_ids(status: &Value) -> Vec<String> {
    status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn scaling_answers_like_the_seed_and_out_of_bounds_changes_nothing() {
    let server =
        Server::start(ServerOptions::fake(2).args(&["--min-slots", "1", "--max-slots", "4"])).await;
    server.wait_ready().await;
    let up = server.call_ok("pool_scale_up", json!({ "count": 2 })).await;
    assert_eq!(up["success"], true);
    assert_eq!(up["new_slot_count"], 4);
    assert_eq!(up["details"], "Scaled up by 2 slots");
    let s = server.wait_ready().await;
    assert_eq!(slot_ids(&s), ["slot-0", "slot-1", "slot-2", "slot-3"]);
    assert_eq!(s["target_slots"], 4);

    server
        .expect_argument_error(
            "pool_scale_up",
            json!({ "count": 1 }),
            "above --max-slots 4",
        )
        .await;
    server
        .expect_argument_error(
            "pool_scale_down",
            json!({ "count": 4 }),
            "below --min-slots 1",
        )
        .await;
    server
        .expect_argument_error(
            "pool_set_target_slots",
            json!({ "target": 0 }),
            "below --min-slots",
        )
        .await;
    server
        .expect_argument_error(
            "pool_set_target_slots",
            json!({ "target": 9 }),
            "above --max-slots",
        )
        .await;
    for (tool, args) in [
        ("pool_scale_up", json!({ "count": -1 })),
        ("pool_scale_up", json!({ "count": 1.5 })),
        ("pool_scale_up", json!({ "count": "2" })),
        ("pool_scale_up", json!({})),
        ("pool_scale_down", json!({ "count": -2 })),
        ("pool_set_target_slots", json!({ "target": 2.5 })),
    ] {
        let field = if tool == "pool_set_target_slots" {
            "target"
        } else {
            "count"
        };
        server.expect_argument_error(tool, args, field).await;
    }
    server
        .expect_argument_error("pool_scale_down", json!({ "count": 0 }), "at least 1")
        .await;
    assert_eq!(
        server.status().await["slots"].as_array().unwrap().len(),
        4,
        "nothing changed"
    );

    let pids = Server::slot_pids(&server.status().await);
    let target = server
        .call_ok("pool_set_target_slots", json!({ "target": 2 }))
        .await;
    assert_eq!(target["success"], true);
    assert_eq!(target["new_slot_count"], 2);
    assert_eq!(target["target"], 2);
    let s = server.status().await;
    assert_eq!(
        slot_ids(&s),
        ["slot-0", "slot-1"],
        "the newest idle slots go first"
    );
    // The removed slots' processes (and their groups) are gone by the time it answers.
    let left = Server::slot_pids(&s);
    for pid in pids.iter().filter(|p| !left.contains(p)) {
        assert_gone(*pid, GONE, "a removed slot's process").await;
        assert_group_gone(*pid, GONE, "a removed slot's group").await;
    }
    server.close().await;
}

#[tokio::test]
async fn scale_down_removes_idle_slots_before_busy_ones() {
    let server = Server::start(ServerOptions::fake(2)).await;
    server.wait_ready().await;
    let (call, _, id) = server.start_run("MOCK_SLEEP:1 MOCK_TEXT: kept").await;
    let busy = server.status().await["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["task_id"] == id.as_str())
        .map(|s| s["id"].clone())
        .unwrap();
    let down = server
        .call_ok("pool_scale_down", json!({ "count": 1 }))
        .await;
    assert_eq!(down["new_slot_count"], 1);
    let s = server.status().await;
    assert_eq!(s["slots"].as_array().unwrap().len(), 1);
    assert_eq!(
        s["slots"][0]["id"], busy,
        "the idle slot went, the busy one stayed"
    );
    let r = finish_call(call, "the task on the busy slot").await;
    assert_ne!(r.is_error, Some(true), "{:?}", r.content);
    server.close().await;
}

#[tokio::test]
async fn a_busy_slot_gets_its_grace_then_its_task_is_cancelled_and_its_group_is_gone() {
    let server = Server::start(ServerOptions::fake(3).args(&["--scale-down-grace", "0.5"])).await;
    server.wait_ready().await;
    // Three busy slots: two tasks that would never end, one that ends within the grace.
    let mut calls = Vec::new();
    for prompt in [
        "MOCK_CHILD:30",
        "MOCK_SLEEP:0.3 MOCK_TEXT: made it",
        "MOCK_CHILD:30",
    ] {
        calls.push((prompt, server.start_run(prompt).await));
    }
    let before = server.status().await;
    let slot_of = |task: &str| -> String {
        before["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["task_id"] == task)
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no slot runs {task}: {before}"))
    };
    let pids = Server::slot_pids(&before);
    let down = server
        .call_ok("pool_set_target_slots", json!({ "target": 1 }))
        .await;
    assert!(down["details"].as_str().unwrap().contains("busy"), "{down}");
    let s = server.status().await;
    assert_eq!(slot_ids(&s), ["slot-0"], "the newest slots were removed");
    for (prompt, (call, _, task)) in calls {
        let removed = slot_of(&task) != "slot-0";
        if !removed && !prompt.contains("made it") {
            // The kept slot's task is untouched by the scale-down.
            let r = server
                .call_ok("pool_result", json!({ "task_id": task }))
                .await;
            assert_eq!(r["status"], "running", "{r}");
            server
                .call_ok("pool_cancel", json!({ "task_id": task }))
                .await;
        }
        let r = content(&finish_call(call, "a task of the scale-down").await);
        if prompt.contains("made it") {
            assert_eq!(
                r["status"], "completed",
                "it finished within the grace: {r}"
            );
        } else if removed {
            assert_eq!(r["status"], "cancelled", "{r}");
            assert!(r["error"].as_str().unwrap().contains("scale-down"), "{r}");
        }
    }
    let left = Server::slot_pids(&server.status().await);
    for pid in pids.iter().filter(|p| !left.contains(p)) {
        assert_gone(*pid, GONE, "a removed slot's process").await;
        assert_group_gone(*pid, GONE, "a removed slot's group (with its grandchild)").await;
    }
    server.close().await;
}

#[tokio::test]
async fn the_pool_never_runs_more_claude_turns_than_slots_at_any_size() {
    let server = Server::start(ServerOptions::fake(2).args(&["--max-slots", "4"])).await;
    server.call_ok("pool_scale_up", json!({ "count": 2 })).await;
    server.wait_ready().await;
    let prompts: Vec<String> = (0..12).map(|i| format!("MOCK_SLEEP:0.1 n{i}")).collect();
    server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    assert_eq!(
        server.max_concurrent_turns(),
        4,
        "12 tasks on 4 slots: 4 at a time"
    );

    server
        .call_ok("pool_scale_down", json!({ "count": 3 }))
        .await;
    let since = claude_pool_tests::mono_ns();
    let prompts: Vec<String> = (0..4).map(|i| format!("MOCK_SLEEP:0.05 m{i}")).collect();
    server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    assert_eq!(
        server.max_concurrent_turns_since(since),
        1,
        "after scaling to 1 slot"
    );
    server.close().await;
}
