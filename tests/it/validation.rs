//! Every tool checks its arguments before anything runs: a missing or wrongly typed
//! argument is an invalid-params error naming it, and no Claude turn starts.

use claude_pool_tests::server::{Server, ServerOptions};
use serde_json::json;

#[tokio::test]
async fn every_tool_refuses_bad_arguments_by_name_before_anything_runs() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    let processes = server.processes_started();
    let cases = [
        ("pool_run", json!({}), "prompt"),
        ("pool_run", json!({ "prompt": 7 }), "prompt"),
        (
            "pool_run",
            json!({ "prompt": "x", "timeout": "soon" }),
            "timeout",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "timeout": 0 }),
            "timeout",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "max_budget_usd": -1 }),
            "max_budget_usd",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "effort": "huge" }),
            "effort",
        ),
        ("pool_submit", json!({ "prompt": "x", "model": 3 }), "model"),
        ("pool_result", json!({}), "task_id"),
        (
            "pool_result",
            json!({ "task_id": "task-1", "wait": -2 }),
            "wait",
        ),
        ("pool_cancel", json!({}), "task_id"),
        ("pool_fan_out", json!({ "prompts": "x" }), "prompts"),
        (
            "pool_fan_out",
            json!({ "prompts": ["a"], "timeout": [] }),
            "timeout",
        ),
        ("pool_chain", json!({ "steps": {} }), "steps"),
        (
            "pool_chain",
            json!({ "steps": [{ "prompt": 1 }] }),
            "steps[0].prompt",
        ),
        (
            "pool_chain",
            json!({ "steps": [{ "prompt": "a", "retries": -1 }] }),
            "steps[0].retries",
        ),
        (
            "pool_chain",
            json!({ "steps": [{ "prompt": "a", "retries": 1.5 }] }),
            "steps[0].retries",
        ),
        ("pool_submit_chain", json!({}), "steps"),
        ("pool_chain_result", json!({ "chain_id": 5 }), "chain_id"),
        ("context_set", json!({ "key": "k" }), "value"),
        ("context_get", json!({}), "key"),
        ("context_delete", json!({ "key": ["k"] }), "key"),
        ("pool_scale_up", json!({ "count": -1 }), "count"),
        ("pool_scale_up", json!({ "count": 0.5 }), "count"),
        ("pool_scale_down", json!({}), "count"),
        ("pool_set_target_slots", json!({ "target": "4" }), "target"),
        ("pool_drain", json!({ "timeout": -1 }), "timeout"),
        ("pool_skill_run", json!({ "arguments": {} }), "skill"),
        ("pool_skill_get", json!({}), "skill"),
        (
            "pool_status",
            json!({ "wait_ready": "later" }),
            "wait_ready",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "surprise": true }),
            "surprise",
        ),
    ];
    for (tool, args, field) in cases {
        server.expect_argument_error(tool, args, field).await;
    }
    for (tool, args) in [
        ("pool_result", json!({ "task_id": "task-nope" })),
        ("pool_cancel", json!({ "task_id": "task-nope" })),
        ("pool_cancel", json!({ "chain_id": "chain-nope" })),
        ("pool_chain_result", json!({ "chain_id": "chain-nope" })),
    ] {
        server.expect_argument_error(tool, args, "not found").await;
    }
    assert_eq!(server.turns_started(), 0, "a bad call reached Claude");
    assert_eq!(
        server.processes_started(),
        processes,
        "a bad call started a process"
    );
    let s = server.status().await;
    assert_eq!(s["tasks"]["total"], 0, "{s}");
    assert_eq!(s["slots"].as_array().unwrap().len(), 1, "{s}");
    server.close().await;
}
