//! The shared context table over stdio with the fake CLI.

use claude_pool_tests::server::{Server, ServerOptions, finish_call};
use serde_json::json;

#[tokio::test]
async fn context_tools_answer_with_the_documented_fields() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let set = server
        .call_ok("context_set", json!({ "key": "language", "value": "rust" }))
        .await;
    assert_eq!(set, json!({ "key": "language", "value": "rust" }));
    server
        .call_ok(
            "context_set",
            json!({ "key": "framework", "value": "tokio" }),
        )
        .await;
    let got = server
        .call_ok("context_get", json!({ "key": "language" }))
        .await;
    assert_eq!(got["value"], "rust");
    let list = server.call_ok("context_list", json!({})).await;
    assert_eq!(list, json!({ "language": "rust", "framework": "tokio" }));
    let del = server
        .call_ok("context_delete", json!({ "key": "framework" }))
        .await;
    assert_eq!(del, json!({ "key": "framework", "deleted": true }));
    let del = server
        .call_ok("context_delete", json!({ "key": "framework" }))
        .await;
    assert_eq!(del["deleted"], false);
    server
        .expect_argument_error("context_get", json!({ "key": "framework" }), "not found")
        .await;
    server.close().await;
}

#[tokio::test]
async fn every_task_that_starts_after_a_change_sees_the_new_table_and_never_a_deleted_key() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server
        .call_ok("context_set", json!({ "key": "language", "value": "rust" }))
        .await;
    let out = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_ECHO_PROMPT go" }))
        .await;
    let text = out["output"].as_str().unwrap();
    assert!(text.contains("- language: rust"), "{text}");
    assert!(
        text.ends_with("MOCK_ECHO_PROMPT go>>"),
        "the prompt follows the context: {text}"
    );
    // Claude Code's own system prompt is untouched: nothing replaces or appends to it.
    let cfg = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_SHOW_CONFIG" }))
        .await;
    let cfg = cfg["output"].as_str().unwrap();
    assert!(
        cfg.contains("append_system_prompt=none system_prompt=none"),
        "{cfg}"
    );

    server
        .call_ok("context_delete", json!({ "key": "language" }))
        .await;
    let out = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_ECHO_PROMPT go" }))
        .await;
    assert_eq!(
        out["output"], "prompt=<<MOCK_ECHO_PROMPT go>>",
        "a deleted key reached a task"
    );
    server.close().await;
}

#[tokio::test]
async fn a_context_change_while_a_task_runs_reaches_the_next_task_only() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server
        .call_ok("context_set", json!({ "key": "phase", "value": "old" }))
        .await;
    let (running, _, _) = server
        .start_run("MOCK_SLEEP:0.5 MOCK_ECHO_PROMPT first")
        .await;
    server
        .call_ok("context_set", json!({ "key": "phase", "value": "new" }))
        .await;
    let next = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_ECHO_PROMPT second" }),
        )
        .await;
    let first = finish_call(running, "the running task").await;
    let first = claude_pool_tests::server::content(&first);
    let first = first["output"].as_str().unwrap();
    assert!(
        first.contains("- phase: old") && !first.contains("new"),
        "{first}"
    );
    let second = server.wait_task(next["task_id"].as_str().unwrap()).await;
    let second = second["output"].as_str().unwrap();
    assert!(
        second.contains("- phase: new") && !second.contains("old"),
        "{second}"
    );
    server.close().await;
}

#[tokio::test]
async fn context_limits_are_clear_errors_that_change_nothing() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server
        .call_ok("context_set", json!({ "key": "k", "value": "v" }))
        .await;
    let cases = [
        (json!({ "key": "has space", "value": "v" }), "contains ' '"),
        (json!({ "key": "", "value": "v" }), "must not be empty"),
        (
            json!({ "key": "k".repeat(129), "value": "v" }),
            "limit is 128",
        ),
        (
            json!({ "key": "big", "value": "x".repeat(16 * 1024 + 1) }),
            "limit is 16384",
        ),
        (json!({ "key": "k" }), "value"),
    ];
    for (args, needle) in cases {
        server
            .expect_argument_error("context_set", args, needle)
            .await;
    }
    for i in 0..63 {
        server
            .call_ok(
                "context_set",
                json!({ "key": format!("k{i}"), "value": "v" }),
            )
            .await;
    }
    server
        .expect_argument_error(
            "context_set",
            json!({ "key": "one-more", "value": "v" }),
            "full",
        )
        .await;
    let list = server.call_ok("context_list", json!({})).await;
    assert_eq!(list.as_object().unwrap().len(), 64);
    assert_eq!(list["k"], "v");
    server.close().await;
}
