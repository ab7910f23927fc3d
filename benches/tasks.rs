//! MCP tasks, each figure beside its baseline in the same run, on the same server and
//! session. Run with `scripts/bench.sh` (release build); `BENCH_ITERS` sets the sample count.
//!
//! 1. The 2026-07-28 extension (rmcp's client, stdio and HTTP): the time to the task
//!    handle of a task-augmented `pool_run` beside `pool_submit`'s answer; `tasks/get`
//!    beside `pool_result` for the same queued task.
//! 2. 2025-11-25 tasks (the official MCP Python SDK over HTTP, timed inside the client):
//!    the same pairs.
//!
//! The slots are kept busy, so every task stays queued: what is timed is the front-end,
//! the scheduler and the store's commit (the server runs on a file store), not Claude.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use claude_pool_tests::bench::{median, ms, pct};
use claude_pool_tests::python::{PyClient, mcp_python};
use claude_pool_tests::server::{Server, ServerOptions, Transport};
use rmcp::model::{CallToolRequestParams, CallToolResponse, GetTaskParams};
use serde_json::{Value, json};

fn iters() -> usize {
    std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

fn p50_p99(name: &str, v: &[Duration]) {
    println!(
        "  {name:<52} p50 {:>7.3} ms   p99 {:>7.3} ms   (n={})",
        ms(median(v)),
        ms(pct(v, 0.99)),
        v.len()
    );
}

fn call(tool: &str, args: Value) -> CallToolRequestParams {
    let Value::Object(map) = args else { panic!() };
    CallToolRequestParams::new(tool.to_owned()).with_arguments(map)
}

/// A server whose two slots are busy for the whole run.
async fn busy_server(transport: Transport, extension: bool) -> Server {
    let mut opts = ServerOptions::fake(2)
        .transport(transport)
        .args(&["--log-level", "info"]);
    if extension {
        opts = opts.tasks_extension();
    }
    let server = Server::start(opts).await;
    server.wait_ready().await;
    for _ in 0..2 {
        server
            .call_ok("pool_submit", json!({ "prompt": "MOCK_SLEEP:3600 busy" }))
            .await;
    }
    server
}

async fn extension(transport: Transport, n: usize) {
    let server = busy_server(transport, true).await;
    let client = server.client();
    let (mut task_handle, mut submit) = (Vec::new(), Vec::new());
    let mut last_task = String::new();
    for i in 0..n + 5 {
        let prompt = json!({ "prompt": format!("MOCK_TEXT: queued {i}") });
        let t = Instant::now();
        let created = client
            .call_tool_once(call("pool_run", prompt.clone()))
            .await
            .unwrap();
        let a = t.elapsed();
        let CallToolResponse::Task(created) = created else {
            panic!("no task: {created:?}")
        };
        last_task = created.task.task_id;
        let t = Instant::now();
        let r = client.call_tool(call("pool_submit", prompt)).await.unwrap();
        let b = t.elapsed();
        assert_ne!(r.is_error, Some(true));
        if i >= 5 {
            task_handle.push(a);
            submit.push(b);
        }
    }
    let (mut get, mut result) = (Vec::new(), Vec::new());
    for i in 0..n + 5 {
        let t = Instant::now();
        client
            .get_task(GetTaskParams::new(last_task.clone()))
            .await
            .unwrap();
        let a = t.elapsed();
        let t = Instant::now();
        client
            .call_tool(call("pool_result", json!({ "task_id": last_task })))
            .await
            .unwrap();
        let b = t.elapsed();
        if i >= 5 {
            get.push(a);
            result.push(b);
        }
    }
    p50_p99(
        "tools/call pool_run as a task (to the handle)",
        &task_handle,
    );
    p50_p99("  baseline: pool_submit", &submit);
    p50_p99("tasks/get of a queued task", &get);
    p50_p99("  baseline: pool_result of it", &result);
    server.close().await;
}

async fn python_sdk(n: usize) {
    let Some(python) = mcp_python() else {
        println!("  (skipped: the MCP Python SDK is not installed)");
        return;
    };
    let server = busy_server(Transport::Http, false).await;
    let mut py = PyClient::http(
        &python,
        server.url.as_deref().unwrap(),
        server.token.as_deref(),
    )
    .await;
    let inner = |v: &Value| Duration::from_secs_f64(v["ms"].as_f64().unwrap() / 1000.0);
    let (mut task_handle, mut submit) = (Vec::new(), Vec::new());
    let mut last = String::new();
    for i in 0..n + 5 {
        let prompt = json!({ "prompt": format!("MOCK_TEXT: queued {i}") });
        let a = py
            .op(json!({ "op": "call_task", "tool": "pool_run", "arguments": prompt }))
            .await;
        last = a["task"]["taskId"].as_str().unwrap().to_owned();
        let b = py
            .op(json!({ "op": "call", "tool": "pool_submit", "arguments": prompt }))
            .await;
        if i >= 5 {
            task_handle.push(inner(&a));
            submit.push(inner(&b));
        }
    }
    let (mut get, mut result) = (Vec::new(), Vec::new());
    for i in 0..n + 5 {
        let a = py.op(json!({ "op": "get", "id": last })).await;
        let b = py
            .op(json!({ "op": "call", "tool": "pool_result", "arguments": { "task_id": last } }))
            .await;
        if i >= 5 {
            get.push(inner(&a));
            result.push(inner(&b));
        }
    }
    p50_p99(
        "task-augmented tools/call pool_run (to the handle)",
        &task_handle,
    );
    p50_p99("  baseline: pool_submit", &submit);
    p50_p99("tasks/get of a queued task", &get);
    p50_p99("  baseline: pool_result of it", &result);
    py.quit().await;
    server.close().await;
}

#[tokio::main]
async fn main() {
    let n = iters();
    println!("claude-pool MCP tasks");
    println!("1. the 2026-07-28 extension, rmcp's client, over stdio");
    extension(Transport::Stdio, n).await;
    println!("   over Streamable HTTP");
    extension(Transport::Http, n).await;
    println!(
        "2. 2025-11-25 tasks, the MCP Python SDK {} over HTTP (timed in the client)",
        claude_pool_tests::python::MCP_PYTHON_VERSION
    );
    python_sdk(n).await;
}
