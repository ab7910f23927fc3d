//! MCP tasks as protocol 2025-11-25 defines them, driven by the official MCP Python SDK
//! (`tests/py/mcp_driver.py`): task-augmented calls, `tasks/get`, `tasks/result`,
//! `tasks/cancel`, `tasks/list`, ttl, other sessions and server restarts. The tests pick
//! their transports themselves (the HTTP pass of the suite skips them).

use std::time::Duration;

use claude_pool_tests::procs::{self, assert_group_gone};
use claude_pool_tests::python::{PyClient, mcp_python};
use claude_pool_tests::server::{Server, ServerOptions, Transport, content};
use claude_pool_tests::{Scratch, fake_claude_bin, server_bin, within};
use serde_json::{Value, json};

const GONE: Duration = Duration::from_secs(10);

/// The tools that start work, and so may run as tasks.
const WORK_TOOLS: [&str; 6] = [
    "pool_run",
    "pool_fan_out",
    "pool_chain",
    "pool_skill_run",
    "claude_run",
    "claude_build",
];

fn http_server(slots: usize) -> ServerOptions {
    ServerOptions::fake(slots).transport(Transport::Http)
}

fn url(server: &Server) -> &str {
    server.url.as_deref().expect("an HTTP server has a URL")
}

/// An HTTP server with `slots` fake slots and a Python SDK session on it; `None` (a skip)
/// without the SDK.
async fn session(opts: ServerOptions) -> Option<(Server, PyClient)> {
    let python = mcp_python()?;
    let server = Server::start(opts).await;
    let py = PyClient::http(&python, url(&server), server.token.as_deref()).await;
    Some((server, py))
}

/// A task-augmented call of `tool`; returns the task's id.
async fn create(py: &mut PyClient, tool: &str, arguments: Value) -> String {
    let created = py
        .op(json!({ "op": "call_task", "tool": tool, "arguments": arguments }))
        .await;
    created["task"]["taskId"]
        .as_str()
        .unwrap_or_else(|| panic!("{tool} gave no task: {created}"))
        .to_owned()
}

/// Polls the task to its end; returns the last status it read.
async fn poll_to_end(py: &mut PyClient, id: &str) -> Value {
    let polled = py.op(json!({ "op": "poll", "id": id })).await;
    polled["seen"]
        .as_array()
        .and_then(|s| s.last())
        .cloned()
        .unwrap_or_else(|| panic!("no status polled: {polled}"))
}

/// The ids of a `tasks/list` page, in order.
fn listed_ids(page: &Value) -> Vec<String> {
    page["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page}"))
        .iter()
        .map(|t| t["taskId"].as_str().unwrap().to_owned())
        .collect()
}

/// The fields of a task report that depend on the run, not on the prompt.
const PER_RUN: [&str; 9] = [
    "task_id",
    "session_id",
    "duration_ms",
    "queued_ms",
    "slot_id",
    "enqueued_at",
    "started_at",
    "finished_at",
    "spend_usd",
];

fn without_per_run(report: &Value) -> Value {
    let mut r = report.clone();
    for k in PER_RUN {
        r.as_object_mut().unwrap().remove(k);
    }
    r
}

/// The lifecycle every client relies on, over whichever transport `py` uses.
async fn a_task_runs_and_reads_as_the_blocking_call(py: &mut PyClient) {
    let tasks = &py.initialize["capabilities"]["tasks"];
    assert_eq!(tasks["requests"]["tools"]["call"], json!({}), "{tasks}");
    assert!(
        tasks["list"].is_object() && tasks["cancel"].is_object(),
        "{tasks}"
    );
    let tools = py.op(json!({ "op": "tools" })).await;
    for tool in tools["tools"].as_array().unwrap() {
        let name = tool["name"].as_str().unwrap();
        let support = tool["execution"]["taskSupport"].as_str();
        let expected = WORK_TOOLS.contains(&name).then_some("optional");
        assert_eq!(support, expected, "{name}'s task support");
    }

    let prompt = "MOCK_SLEEP:2 MOCK_TEXT: the answer is 42";
    let created = py
        .op(json!({ "op": "call_task", "tool": "pool_run",
                    "arguments": { "prompt": prompt }, "ttl": 120_000 }))
        .await;
    let task = &created["task"];
    let id = task["taskId"].as_str().expect("a task id").to_owned();
    assert!(id.starts_with("task-"), "{created}");
    assert_eq!(task["status"], "working", "{created}");
    assert_eq!(task["ttl"], 120_000, "{created}");
    assert_eq!(task["pollInterval"], 500, "{created}");
    let first = py.op(json!({ "op": "get", "id": id })).await;
    assert_eq!(first["status"], "working", "{first}");

    let polled = py.op(json!({ "op": "poll", "id": id })).await;
    let seen: Vec<&str> = polled["seen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(seen.last(), Some(&"completed"), "{polled}");
    assert!(
        seen[..seen.len() - 1].iter().all(|s| *s == "working"),
        "{seen:?}"
    );

    let result = py.op(json!({ "op": "result", "id": id })).await;
    assert_ne!(result["isError"], true, "{result}");
    let report = &result["structuredContent"];
    assert_eq!(report["output"], "the answer is 42", "{result}");
    assert_eq!(report["task_id"], id.as_str());
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/related-task"]["taskId"],
        id.as_str()
    );
    let blocking = py
        .op(json!({ "op": "call", "tool": "pool_run", "arguments": { "prompt": prompt } }))
        .await;
    assert_ne!(blocking["isError"], true, "{blocking}");
    assert_eq!(
        without_per_run(report),
        without_per_run(&blocking["structuredContent"]),
        "the task's result and the blocking call's differ beyond the run's own fields"
    );

    let listed = py.op(json!({ "op": "list" })).await;
    let entry = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskId"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} is not listed: {listed}"));
    assert_eq!(entry["status"], "completed");
}

#[tokio::test]
async fn the_python_sdk_runs_pool_run_as_a_task_over_stdio() {
    let Some(python) = mcp_python() else { return };
    let home = Scratch::new("py-stdio");
    let args: Vec<String> = [
        "--slots",
        "2",
        "--no-db",
        "--claude-bin",
        &fake_claude_bin().display().to_string(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let env = vec![
        ("HOME".to_owned(), home.path().display().to_string()),
        ("FAKE_CLAUDE_TURN_MS".to_owned(), "5".to_owned()),
    ];
    let mut py = PyClient::stdio(&python, &server_bin(), &args, &env).await;
    a_task_runs_and_reads_as_the_blocking_call(&mut py).await;
    py.quit().await;
}

#[tokio::test]
async fn the_python_sdk_runs_pool_run_as_a_task_over_http() {
    let Some((server, mut py)) = session(http_server(2)).await else {
        return;
    };
    a_task_runs_and_reads_as_the_blocking_call(&mut py).await;
    py.quit().await;
    server.close().await;
}

#[tokio::test]
async fn tasks_cancel_stops_the_claude_process_and_the_task_reads_cancelled_everywhere() {
    let Some((server, mut py)) = session(http_server(1)).await else {
        return;
    };
    let id = create(&mut py, "pool_run", json!({ "prompt": "MOCK_CHILD:60" })).await;
    server.wait_started(&id).await;
    let status = server.status().await;
    let pid = status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["task_id"] == id.as_str())
        .and_then(|s| s["pid"].as_u64())
        .unwrap_or_else(|| panic!("no slot runs {id}: {status}")) as u32;

    let cancelled = py.op(json!({ "op": "cancel", "id": id })).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    // The pool's cancel answers once the process group is swept.
    assert!(
        !procs::exists(pid),
        "the cancelled task's process {pid} is still there"
    );
    assert_group_gone(pid, GONE, "the cancelled task's process group").await;

    assert_eq!(
        py.op(json!({ "op": "get", "id": id })).await["status"],
        "cancelled"
    );
    let result = py.op(json!({ "op": "result", "id": id })).await;
    assert_eq!(result["isError"], true, "{result}");
    assert_eq!(result["structuredContent"]["status"], "cancelled");
    let report = content(&server.call("pool_result", json!({ "task_id": id })).await);
    assert_eq!(
        report["status"], "cancelled",
        "pool_result in another session: {report}"
    );
    let listed = py.op(json!({ "op": "list" })).await;
    let i = listed_ids(&listed)
        .iter()
        .position(|t| *t == id)
        .expect("listed");
    assert_eq!(listed["tasks"][i]["status"], "cancelled", "{listed}");
    let again = py.op(json!({ "op": "cancel", "id": id })).await;
    assert_eq!(again["error"]["code"], -32602, "{again}");
    assert!(
        again["error"]["message"]
            .as_str()
            .unwrap()
            .contains("already cancelled"),
        "{again}"
    );
    py.quit().await;
    server.close().await;
}

#[tokio::test]
async fn a_task_is_read_from_another_session_and_after_a_crash_and_a_graceful_restart() {
    let Some(python) = mcp_python() else { return };
    let state = Scratch::new("py-restart");
    let first = Server::start(http_server(2).state(state.path())).await;
    let mut py = PyClient::http(&python, url(&first), first.token.as_deref()).await;
    let quick = py
        .op(json!({ "op": "call_task", "tool": "pool_run",
                    "arguments": { "prompt": "MOCK_TEXT: kept across restarts" } }))
        .await["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let long = py
        .op(json!({ "op": "call_task", "tool": "pool_run",
                    "arguments": { "prompt": "MOCK_SLEEP:60 MOCK_TEXT: never" } }))
        .await["task"]["taskId"]
        .as_str()
        .unwrap()
        .to_owned();
    let polled = py.op(json!({ "op": "poll", "id": quick })).await;
    assert_eq!(
        polled["seen"].as_array().unwrap().last().unwrap()["status"],
        "completed"
    );
    first.wait_started(&long).await;

    let mut other = PyClient::http(&python, url(&first), first.token.as_deref()).await;
    assert_eq!(
        other.op(json!({ "op": "get", "id": quick })).await["status"],
        "completed"
    );
    let read = other.op(json!({ "op": "result", "id": quick })).await;
    assert_eq!(read["structuredContent"]["output"], "kept across restarts");
    assert_eq!(
        other.op(json!({ "op": "get", "id": long })).await["status"],
        "working"
    );
    py.quit().await;
    other.quit().await;
    first.crash().await;

    let second = Server::start(http_server(2).state(state.path())).await;
    let mut py = PyClient::http(&python, url(&second), second.token.as_deref()).await;
    let q = py.op(json!({ "op": "get", "id": quick })).await;
    assert_eq!(q["status"], "completed", "{q}");
    let read = py.op(json!({ "op": "result", "id": quick })).await;
    assert_eq!(read["structuredContent"]["output"], "kept across restarts");
    let l = py.op(json!({ "op": "get", "id": long })).await;
    assert_eq!(l["status"], "failed", "the task running at the crash: {l}");
    assert!(
        l["statusMessage"].as_str().unwrap().contains("interrupted"),
        "{l}"
    );
    let listed = py.op(json!({ "op": "list" })).await;
    let ids: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [long.as_str(), quick.as_str()],
        "newest first: {listed}"
    );
    py.quit().await;
    second.close().await;

    let third = Server::start(http_server(1).state(state.path())).await;
    let mut py = PyClient::http(&python, url(&third), third.token.as_deref()).await;
    let read = py.op(json!({ "op": "result", "id": quick })).await;
    assert_eq!(read["structuredContent"]["output"], "kept across restarts");
    py.quit().await;
    third.close().await;
}

#[tokio::test]
async fn a_fan_out_as_a_task_holds_every_result_in_prompt_order() {
    let Some((server, mut py)) = session(http_server(2)).await else {
        return;
    };
    let texts = ["one", "two", "three", "four", "five"];
    // The first prompt ends last: order in the result is the prompts', not the finish's.
    let prompts: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if i == 0 {
                format!("MOCK_SLEEP:1 MOCK_TEXT: {t}")
            } else {
                format!("MOCK_TEXT: {t}")
            }
        })
        .collect();
    let id = create(&mut py, "pool_fan_out", json!({ "prompts": prompts })).await;
    assert!(id.starts_with("fanout-"), "{id}");
    let last = poll_to_end(&mut py, &id).await;
    assert_eq!(last["status"], "completed", "{last}");
    assert_eq!(last["statusMessage"], "5 of 5 done");
    let result = py.op(json!({ "op": "result", "id": id })).await;
    let report = &result["structuredContent"];
    let outputs: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["output"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(outputs, texts, "{result}");
    assert_eq!(
        (report["total"].as_u64(), report["completed"].as_u64()),
        (Some(5), Some(5))
    );
    // Each item is a pool task of its own.
    for item in report["results"].as_array().unwrap() {
        let r = content(
            &server
                .call("pool_result", json!({ "task_id": item["task_id"] }))
                .await,
        );
        assert_eq!(r["output"], item["output"]);
    }
    py.quit().await;
    server.close().await;
}

#[tokio::test]
async fn ttl_is_granted_as_asked_up_to_a_cap_and_an_expired_task_is_gone() {
    let Some((server, mut py)) = session(http_server(1)).await else {
        return;
    };
    let huge = py
        .op(json!({ "op": "call_task", "tool": "pool_run",
                    "arguments": { "prompt": "MOCK_TEXT: kept long" }, "ttl": 1_000_000_000_000u64 }))
        .await;
    assert_eq!(
        huge["task"]["ttl"],
        30 * 24 * 3600 * 1000u64,
        "cut to 30 days: {huge}"
    );
    let ttl_ms = 1500;
    let short = py
        .op(json!({ "op": "call_task", "tool": "pool_run",
                    "arguments": { "prompt": "MOCK_TEXT: kept briefly" }, "ttl": ttl_ms }))
        .await;
    let id = short["task"]["taskId"].as_str().unwrap().to_owned();
    assert_eq!(short["task"]["ttl"], ttl_ms, "{short}");
    let created = humantime::parse_rfc3339(short["task"]["createdAt"].as_str().unwrap())
        .expect("createdAt is RFC 3339");
    let polled = py.op(json!({ "op": "poll", "id": id })).await;
    assert_eq!(
        polled["seen"].as_array().unwrap().last().unwrap()["status"],
        "completed"
    );
    // The expiry is a point in time: wait for it, not for an event.
    let expires = created + Duration::from_millis(ttl_ms + 50);
    if let Ok(left) = expires.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
    let gone = py.op(json!({ "op": "get", "id": id })).await;
    assert_eq!(gone["error"]["code"], -32602, "{gone}");
    assert!(
        gone["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{gone}"
    );
    let listed = py.op(json!({ "op": "list" })).await;
    let ids: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["taskId"].as_str().unwrap())
        .collect();
    assert!(
        !ids.contains(&id.as_str()),
        "an expired task is listed: {listed}"
    );
    assert!(
        ids.contains(&huge["task"]["taskId"].as_str().unwrap()),
        "{listed}"
    );
    py.quit().await;
    server.close().await;
}

#[tokio::test]
async fn tasks_list_pages_through_every_task_newest_first() {
    let Some((server, mut py)) = session(http_server(2)).await else {
        return;
    };
    let n = 60; // more than a page (50)
    let prompts: Vec<String> = (0..n).map(|i| format!("MOCK_TEXT: item {i}")).collect();
    let mut created = Vec::new();
    for p in &prompts {
        created.push(create(&mut py, "pool_run", json!({ "prompt": p })).await);
    }
    let mut listed = Vec::new();
    let mut cursor = Value::Null;
    let mut pages = 0;
    loop {
        let page = py.op(json!({ "op": "list", "cursor": cursor })).await;
        pages += 1;
        listed.extend(listed_ids(&page));
        match page.get("nextCursor") {
            Some(c) if !c.is_null() => cursor = c.clone(),
            _ => break,
        }
        assert!(pages < 10, "tasks/list does not end");
    }
    created.reverse();
    assert_eq!(listed, created, "every task once, newest first");
    assert_eq!(pages, 2);
    py.quit().await;
    server.close().await;
}

#[tokio::test]
async fn a_client_that_asks_for_no_task_gets_the_blocking_call_and_unknown_ids_are_refused() {
    let Some((server, mut py)) = session(http_server(1)).await else {
        return;
    };
    let r = py
        .op(json!({ "op": "call", "tool": "pool_run", "arguments": { "prompt": "MOCK_TEXT: plain" } }))
        .await;
    assert_eq!(r["structuredContent"]["output"], "plain", "{r}");
    assert!(r.get("task").is_none());
    // One id space: a task started by pool_submit is a protocol task too.
    let submitted = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_TEXT: submitted" }))
        .await;
    let id = submitted["task_id"].as_str().unwrap();
    let polled = py.op(json!({ "op": "poll", "id": id })).await;
    assert_eq!(
        polled["seen"].as_array().unwrap().last().unwrap()["status"],
        "completed"
    );
    let read = py.op(json!({ "op": "result", "id": id })).await;
    assert_eq!(read["structuredContent"]["output"], "submitted");
    for op in ["get", "result", "cancel"] {
        let e = py.op(json!({ "op": op, "id": "task-nosuchtask" })).await;
        assert_eq!(e["error"]["code"], -32602, "{op}: {e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("task-nosuchtask"),
            "{op}: {e}"
        );
    }
    within(GONE, "the server's answer after bad ids", server.status()).await;
    py.quit().await;
    server.close().await;
}
