//! The server's log as MCP notifications (`logging/setLevel`, 2025-11-25): a session that
//! asks gets its own calls' lines and the pool's own events at the level it asked, never
//! another session's calls. Runs over stdio and, in the HTTP pass, over Streamable HTTP
//! (where a second session checks the last part).
#![allow(deprecated)] // logging: the 2025-11-25 revision's

use claude_pool_tests::server::{Server, ServerOptions, Transport};
use rmcp::model::{CallToolRequestParams, LoggingLevel, SetLevelRequestParams};
use serde_json::{Value, json};

fn is_call(m: &Value, tool: &str, message: &str) -> bool {
    m["level"] == "debug" && m["data"]["tool"] == tool && m["data"]["message"] == message
}

#[tokio::test]
async fn a_session_that_asks_for_debug_gets_its_calls_and_the_pools_lines_and_no_one_elses() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    let info = server.client().peer_info().expect("server info");
    assert!(
        info.capabilities.logging.is_some(),
        "the logging capability is declared"
    );
    server.call_ok("pool_status", json!({})).await;
    assert!(
        server.drain_logs().await.is_empty(),
        "nothing is sent before a session asks"
    );
    server
        .client()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
        .await
        .expect("logging/setLevel");
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: logged" }))
        .await;
    let task = r["task_id"].as_str().unwrap().to_owned();
    let call = server
        .log_until("the call's own line", |m| is_call(m, "pool_run", "call"))
        .await;
    assert!(
        call["logger"].as_str().unwrap().starts_with("claude_pool"),
        "{call}"
    );
    // The pool's own events about the task reach the session too.
    server
        .log_until("the task's end in the log", |m| {
            m["data"]["task"] == task.as_str() && m["data"]["message"] == "task finished"
        })
        .await;
    // At `warning`, debug lines stop.
    server
        .client()
        .set_level(SetLevelRequestParams::new(LoggingLevel::Warning))
        .await
        .expect("logging/setLevel");
    server.call_ok("pool_status", json!({})).await;
    server.call_ok("pool_status", json!({})).await;
    let after: Vec<Value> = server
        .drain_logs()
        .await
        .into_iter()
        .filter(|m| is_call(m, "pool_status", "call"))
        .collect();
    assert!(
        after.len() <= 1,
        "debug lines after warning was asked: {after:?}"
    );

    if server.transport() == Transport::Http {
        // A second session hears its own calls, not the first session's.
        let (other, mut lines) = server.log_client().await;
        other
            .set_level(SetLevelRequestParams::new(LoggingLevel::Debug))
            .await
            .expect("logging/setLevel");
        server
            .call_ok("pool_result", json!({ "task_id": task }))
            .await;
        other
            .call_tool(CallToolRequestParams::new("pool_status"))
            .await
            .expect("the second session's call");
        let own = claude_pool_tests::within(
            std::time::Duration::from_secs(30),
            "the second session's own call line",
            async {
                let mut seen = Vec::new();
                loop {
                    let m = lines.recv().await.expect("log channel open");
                    if is_call(&m, "pool_status", "answered") {
                        return seen;
                    }
                    seen.push(m);
                }
            },
        )
        .await;
        assert!(
            !own.iter().any(|m| m["data"]["tool"] == "pool_result"),
            "the second session heard the first one's call: {own:?}"
        );
        let _ = other.cancel().await;
    }
    server.close().await;
}
