//! MCP tasks through the `io.modelcontextprotocol/tasks` extension (2026-07-28), driven by
//! rmcp's own client declaring it: `tools/call` answers with a task, `tasks/get` follows it
//! to the call's result, `tasks/cancel` is the pool's cancel. Runs over the suite's
//! transport (stdio, and HTTP in the suite's HTTP pass).

use std::time::Duration;

use claude_pool_tests::procs::{self, assert_group_gone};
use claude_pool_tests::server::{ResourceNote, Server, ServerOptions, content};
use claude_pool_tests::within;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, DetailedTask,
    GetTaskParams, TaskPayload, TaskStatus,
};
use serde_json::{Value, json};

const GONE: Duration = Duration::from_secs(10);

async fn extension_server(slots: usize) -> Server {
    Server::start(ServerOptions::fake(slots).tasks_extension()).await
}

fn call(tool: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(map) = args else {
        panic!("tool arguments must be an object")
    };
    CallToolRequestParams::new(tool.to_owned()).with_arguments(map)
}

/// Calls `tool`, which must answer with a task; returns the task's id.
async fn start(server: &Server, tool: &str, args: Value) -> String {
    match server.client().call_tool_once(call(tool, args)).await {
        Ok(CallToolResponse::Task(created)) => {
            assert_eq!(created.task.status, TaskStatus::Working, "{created:?}");
            assert_eq!(created.task.poll_interval_ms, Some(500));
            created.task.task_id
        }
        other => panic!("{tool} did not answer with a task: {other:?}"),
    }
}

async fn get(server: &Server, id: &str) -> DetailedTask {
    server
        .client()
        .get_task(GetTaskParams::new(id.to_owned()))
        .await
        .unwrap_or_else(|e| panic!("tasks/get {id}: {e}"))
        .task
}

/// `tasks/get` until the task is terminal: read again on each change of the work's resource
/// (`pool://results/{id}`, or `pool://chains/{id}` for a chain), subscribed before the first
/// read so no change is missed.
async fn until_terminal(server: &Server, id: &str) -> DetailedTask {
    let uri = if id.starts_with("chain-") {
        format!("pool://chains/{id}")
    } else {
        format!("pool://results/{id}")
    };
    server.subscribe(&uri).await.expect("subscribe to the work");
    let what = format!("task {id}'s end");
    within(Duration::from_secs(60), &what, async {
        loop {
            let task = get(server, id).await;
            if task.status().is_terminal() {
                return task;
            }
            let want = ResourceNote::Updated(uri.clone());
            server.resource_note_until(&what, |n| *n == want).await;
        }
    })
    .await
}

fn completed_result(task: &DetailedTask) -> CallToolResult {
    match &task.payload {
        TaskPayload::Completed { result } => {
            serde_json::from_value(Value::Object(result.clone())).expect("a tool result")
        }
        other => panic!("task {} did not complete: {other:?}", task.task.task_id),
    }
}

#[tokio::test]
async fn an_extension_client_gets_pool_run_as_a_task_and_follows_it_to_its_result() {
    let server = extension_server(1).await;
    let id = start(
        &server,
        "pool_run",
        json!({ "prompt": "MOCK_SLEEP:2 MOCK_TEXT: from the extension" }),
    )
    .await;
    assert!(id.starts_with("task-"), "{id}");
    assert_eq!(get(&server, &id).await.status(), TaskStatus::Working);
    let done = until_terminal(&server, &id).await;
    let result = completed_result(&done);
    assert_ne!(result.is_error, Some(true), "{result:?}");
    let report = result.structured_content.expect("a report");
    assert_eq!(report["output"], "from the extension");
    // One id space: the protocol task is the pool task.
    let pooled = content(&server.call("pool_result", json!({ "task_id": id })).await);
    assert_eq!(pooled["output"], "from the extension");
    assert_eq!(pooled["status"], "completed");
    server.close().await;
}

#[tokio::test]
async fn an_extension_task_that_fails_completes_with_the_tool_error_the_blocking_call_returns() {
    let server = extension_server(1).await;
    let id = start(&server, "pool_run", json!({ "prompt": "MOCK_STATUS:529" })).await;
    let done = until_terminal(&server, &id).await;
    let result = completed_result(&done);
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert_eq!(result.structured_content.unwrap()["status"], "failed");
    server.close().await;
}

#[tokio::test]
async fn tasks_cancel_from_an_extension_client_kills_the_process_group() {
    let server = extension_server(1).await;
    let id = start(&server, "pool_run", json!({ "prompt": "MOCK_CHILD:60" })).await;
    server.wait_started(&id).await;
    let status = server.status().await;
    let pid = Server::slot_pids(&status)[0];
    server
        .client()
        .cancel_task(CancelTaskParams::new(id.clone()))
        .await
        .expect("tasks/cancel");
    assert!(
        !procs::exists(pid),
        "the cancelled task's process {pid} is still there"
    );
    assert_group_gone(pid, GONE, "the cancelled task's process group").await;
    let task = get(&server, &id).await;
    assert_eq!(task.status(), TaskStatus::Cancelled, "{task:?}");
    let pooled = content(&server.call("pool_result", json!({ "task_id": id })).await);
    assert_eq!(pooled["status"], "cancelled");
    server.close().await;
}

#[tokio::test]
async fn a_chain_as_a_task_reads_the_current_step_and_ends_with_the_chain_report() {
    let server = extension_server(1).await;
    let steps = json!([
        { "name": "first", "prompt": "MOCK_SLEEP:1 MOCK_TEXT: alpha" },
        { "name": "second", "prompt": "MOCK_TEXT: got {previous_output}" },
    ]);
    let id = start(&server, "pool_chain", json!({ "steps": steps })).await;
    assert!(id.starts_with("chain-"), "{id}");
    let working = get(&server, &id).await;
    assert_eq!(working.status(), TaskStatus::Working);
    assert!(working.task.status_message.is_some(), "{working:?}");
    let done = until_terminal(&server, &id).await;
    let report = completed_result(&done).structured_content.unwrap();
    assert_eq!(report["status"], "completed", "{report}");
    assert_eq!(report["final_output"], "got alpha");
    let pooled = content(
        &server
            .call("pool_chain_result", json!({ "chain_id": id }))
            .await,
    );
    assert_eq!(pooled["final_output"], "got alpha");
    server.close().await;
}

#[tokio::test]
async fn an_unknown_task_id_is_invalid_params_and_the_server_keeps_serving() {
    let server = extension_server(1).await;
    let e = server
        .client()
        .get_task(GetTaskParams::new("task-000000000000".to_owned()))
        .await
        .expect_err("an unknown task");
    let text = e.to_string();
    assert!(text.contains("unknown task: task-000000000000"), "{text}");
    // The extension client gets every pool_run as a task; pool_submit answers as always.
    let ok = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_TEXT: still serving" }),
        )
        .await;
    assert_eq!(
        server.wait_task(ok["task_id"].as_str().unwrap()).await["output"],
        "still serving"
    );
    server.close().await;
}

#[tokio::test]
async fn a_client_without_the_extension_gets_the_blocking_call() {
    let server = Server::start(ServerOptions::fake(1)).await;
    match server
        .client()
        .call_tool_once(call("pool_run", json!({ "prompt": "MOCK_TEXT: blocking" })))
        .await
    {
        Ok(CallToolResponse::Complete(r)) => {
            assert_eq!(r.structured_content.unwrap()["output"], "blocking");
        }
        other => panic!("expected the blocking result: {other:?}"),
    }
    server.close().await;
}

#[tokio::test]
async fn a_2026_07_28_session_gets_exactly_the_extensions_methods() {
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    // A client of the 2026-07-28 revision: server/discover, no initialize.
    let scratch = claude_pool_tests::Scratch::new("discover");
    let mut cmd = tokio::process::Command::new(claude_pool_tests::server_bin());
    cmd.args(["--no-db", "--slots", "1", "--claude-bin"])
        .arg(claude_pool_tests::fake_claude_bin())
        .env("HOME", scratch.path())
        .env_remove("CLAUDE_MCP_DEPTH")
        .stderr(std::process::Stdio::null());
    let transport = rmcp::transport::TokioChildProcess::new(cmd).expect("spawn the server");
    let client = within(
        Duration::from_secs(30),
        "a 2026-07-28 handshake",
        ().serve_with_lifecycle(
            transport,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![rmcp::model::ProtocolVersion::V_2026_07_28],
            },
        ),
    )
    .await
    .expect("server/discover");
    // `tasks/result` and `tasks/list` belong to 2025-11-25 tasks, not to the extension.
    for method in ["tasks/result", "tasks/list"] {
        let request = rmcp::model::ClientRequest::CustomRequest(rmcp::model::CustomRequest::new(
            method,
            Some(json!({ "taskId": "task-000000000000" })),
        ));
        match client.send_request(request).await {
            Err(rmcp::ServiceError::McpError(e)) => {
                assert_eq!(
                    e.code,
                    rmcp::model::ErrorCode::METHOD_NOT_FOUND,
                    "{method}: {e:?}"
                );
            }
            other => panic!("{method} was answered in a 2026-07-28 session: {other:?}"),
        }
    }
    // The session still serves its own methods.
    let tools = client.list_all_tools().await.expect("tools/list");
    assert!(tools.iter().any(|t| t.name == "pool_run"));
    let _ = client.cancel().await;
}
