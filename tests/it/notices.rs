//! A session hears when work it started without waiting ends: as Claude Code channel
//! messages with `--channels` (also a question waiting for approval, and the budget at 90%),
//! and as `notifications/tasks/status` for the MCP tasks of a 2025-11-25 session (the
//! official Python SDK's). Each thing once; a batch at most once a second.

use std::collections::BTreeMap;
use std::time::Instant;

use claude_pool_tests::python::{PyClient, mcp_python};
use claude_pool_tests::server::{Server, ServerOptions, Transport};
use serde_json::{Value, json};

const CHANNEL: &str = "notifications/claude/channel";

/// How many times each of `ids` is named in the channel messages `notes`.
fn mentions(notes: &[Value], ids: &[String]) -> BTreeMap<String, usize> {
    ids.iter()
        .map(|id| {
            let n = notes
                .iter()
                .filter(|m| m["method"] == CHANNEL)
                .flat_map(|m| {
                    m["params"]["content"]
                        .as_str()
                        .unwrap_or_default()
                        .lines()
                        .map(str::to_owned)
                        .collect::<Vec<_>>()
                })
                .filter(|line| line.starts_with(&format!("{id} ")))
                .count();
            (id.clone(), n)
        })
        .collect()
}

fn content(params: &Value) -> &str {
    params["content"].as_str().unwrap_or_default()
}

/// Whether a channel message in `notes` contains `needle`.
fn told(notes: &[Value], needle: &str) -> bool {
    notes
        .iter()
        .any(|m| m["method"] == CHANNEL && content(&m["params"]).contains(needle))
}

#[tokio::test]
async fn with_channels_a_session_is_told_once_what_it_submitted_ended_and_where_to_read_it() {
    let server = Server::start(ServerOptions::fake(2).arg("--channels")).await;
    let info = server.client().peer_info().expect("server info");
    assert!(
        info.capabilities
            .experimental
            .as_ref()
            .is_some_and(|e| e.contains_key("claude/channel")),
        "the server declares the channel capability: {:?}",
        info.capabilities
    );
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..6 {
        let r = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("MOCK_TEXT: t{i}") }),
            )
            .await;
        tasks.push(r["task_id"].as_str().unwrap().to_owned());
    }
    let failed = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_STATUS:500 broken" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let chain = server
        .call_ok(
            "pool_submit_chain",
            json!({ "steps": [{ "prompt": "MOCK_TEXT: a" }, { "prompt": "MOCK_TEXT: {previous_output}b" }] }),
        )
        .await["chain_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A blocking call is answered; it is not told again.
    let ran = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: waited" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut notes = server
        .notices_until("the chain's end", |n| told(n, &format!("{chain} ")))
        .await;
    // A later submission's notice comes after every earlier one.
    let last = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_TEXT: last" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    notes.extend(
        server
            .notices_until("the last task's end", |n| told(n, &format!("{last} ")))
            .await,
    );
    let elapsed = started.elapsed();
    notes.extend(server.drain_notices().await);
    let mut all = tasks.clone();
    all.extend([failed.clone(), chain.clone(), last.clone()]);
    let counts = mentions(&notes, &all);
    assert!(
        counts.values().all(|n| *n == 1),
        "each told once: {counts:?}"
    );
    assert_eq!(mentions(&notes, std::slice::from_ref(&ran))[&ran], 0);
    let messages = notes.iter().filter(|m| m["method"] == CHANNEL).count();
    assert!(
        messages <= 1 + elapsed.as_secs() as usize,
        "{messages} channel messages in {elapsed:?}: at most one a second"
    );
    let text: String = notes
        .iter()
        .map(|m| content(&m["params"]).to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for t in &tasks {
        assert!(
            text.contains(&format!("{t} completed (pool_submit)"))
                && text.contains(&format!("pool_result {{\"task_id\":\"{t}\"}}")),
            "{t}: {text}"
        );
    }
    assert!(
        text.contains(&format!("{failed} failed (pool_submit)")),
        "{text}"
    );
    let meta = notes
        .iter()
        .find(|m| m["method"] == CHANNEL && m["params"]["meta"].is_object())
        .map(|m| m["params"]["meta"].clone())
        .expect("a message with meta");
    assert_eq!(meta["source"], "claude-pool");
    server.close().await;
}

#[tokio::test]
async fn with_channels_a_waiting_question_and_the_budget_at_ninety_percent_are_told() {
    // A turn that runs a tool is two API calls, each 1,000 input and 10 output tokens:
    // 2,020 of a 2,200-token budget, 92%.
    let server = Server::start(ServerOptions::fake(1).args(&[
        "--channels",
        "--permission-mode",
        "default",
        "--budget-tokens",
        "2200",
    ]))
    .await;
    let file = server.scratch().join("asked");
    let asking = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": format!("MOCK_USAGE:1000,10 MOCK_TOOL:touch {}", file.display()) }),
        )
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let asked = server
        .notices_until("the waiting question", |n| told(n, "waits for approval"))
        .await;
    let line = asked
        .iter()
        .flat_map(|m| {
            content(&m["params"])
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .find(|l| l.contains("waits for approval"))
        .unwrap();
    assert!(
        line.starts_with(&format!("{asking} waits for approval apr-")),
        "{line}"
    );
    assert!(
        line.contains(&format!("touch {}", file.display())),
        "{line}"
    );
    let start = line.find("apr-").unwrap();
    let request: String = line[start..].chars().take_while(|c| *c != ':').collect();
    server
        .call_ok(
            "pool_approve",
            json!({ "request_id": request, "decision": "allow" }),
        )
        .await;
    let notes = server
        .notices_until("the budget at 90% and the task's end", |n| {
            told(n, "budget ") && told(n, &format!("{asking} completed"))
        })
        .await;
    assert!(
        told(&notes, "budget 92% used: 2020 of 2200 tokens"),
        "{notes:?}"
    );
    server.close().await;
}

#[tokio::test]
async fn without_channels_no_channel_message_is_sent() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let info = server.client().peer_info().expect("server info");
    assert!(info.capabilities.experimental.is_none());
    let id = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_TEXT: quiet" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_task(&id).await;
    // Anything sent would have been sent before the answer to this later call.
    server.status().await;
    let notes = server.drain_notices().await;
    assert!(notes.is_empty(), "{notes:?}");
    server.close().await;
}

#[tokio::test]
async fn an_mcp_task_of_a_2025_session_ends_with_one_task_status_notification() {
    let Some(python) = mcp_python() else {
        return;
    };
    let server = Server::start(ServerOptions::fake(1).transport(Transport::Http)).await;
    let url = server.url.clone().expect("an HTTP server has a URL");
    let mut py = PyClient::http(&python, &url, server.token.as_deref()).await;
    let created = py
        .op(json!({ "op": "call_task", "tool": "pool_run", "arguments": { "prompt": "MOCK_TEXT: told" } }))
        .await;
    let id = created["task"]["taskId"].as_str().unwrap().to_owned();
    let got = py
        .op(json!({ "op": "notices", "until": id, "timeout": 30 }))
        .await;
    assert!(
        got.get("timeout").is_none(),
        "no terminal status notification: {got}"
    );
    // A second task's end comes after the first's, so anything more about the first
    // would be here too.
    let created = py
        .op(json!({ "op": "call_task", "tool": "pool_run", "arguments": { "prompt": "MOCK_TEXT: next" } }))
        .await;
    let next = created["task"]["taskId"].as_str().unwrap().to_owned();
    let more = py
        .op(json!({ "op": "notices", "until": next, "timeout": 30 }))
        .await;
    let mut notes: Vec<Value> = got["notices"].as_array().unwrap().clone();
    notes.extend(more["notices"].as_array().unwrap().iter().cloned());
    let of_first: Vec<&Value> = notes.iter().filter(|n| n["taskId"] == id).collect();
    assert_eq!(of_first.len(), 1, "{notes:?}");
    assert_eq!(of_first[0]["status"], "completed");
    assert_eq!(of_first[0]["pollInterval"], 500);
    let result = py.op(json!({ "op": "result", "id": id })).await;
    assert_eq!(result["structuredContent"]["output"], "told", "{result}");
    py.quit().await;
    server.close().await;
}
