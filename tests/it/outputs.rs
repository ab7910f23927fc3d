//! Every tool's result against the `outputSchema` it lists, checked by the official MCP
//! Python SDK: its client validates each successful result's `structuredContent` against
//! the tool's schema, as a user's client would. Every tool with the fake CLI; the tools
//! whose results the CLI shapes with the real one. The tests pick their transport (HTTP)
//! themselves.

use std::collections::BTreeSet;

use claude_pool_tests::Scratch;
use claude_pool_tests::git::init_repo;
use claude_pool_tests::python::{PyClient, mcp_python};
use claude_pool_tests::server::{Server, ServerOptions, Transport};
use serde_json::{Value, json};

use crate::real_cli::real_pool_over;

/// A Python SDK session over HTTP with a server started from `opts`; `None` (a skip)
/// without the SDK.
async fn session(opts: ServerOptions) -> Option<(Server, PyClient)> {
    let python = mcp_python()?;
    let server = Server::start(opts.transport(Transport::Http)).await;
    server.wait_ready().await;
    let url = server.url.clone().expect("an HTTP server has a URL");
    let py = PyClient::http(&python, &url, server.token.as_deref()).await;
    Some((server, py))
}

/// The tools the server lists, each of which must declare an output schema.
async fn listed(py: &mut PyClient) -> BTreeSet<String> {
    let tools = py.op(json!({ "op": "tools" })).await;
    tools["tools"]
        .as_array()
        .expect("a tool list")
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap().to_owned();
            assert_eq!(
                t["outputSchema"]["type"], "object",
                "{name} lists no output schema: {t}"
            );
            name
        })
        .collect()
}

/// Calls `tool`; the SDK has checked the result against the tool's output schema.
/// Returns its structured content.
async fn call(py: &mut PyClient, called: &mut BTreeSet<String>, tool: &str, args: Value) -> Value {
    let r = py
        .op(json!({ "op": "call", "tool": tool, "arguments": args }))
        .await;
    assert!(
        r.get("invalid").is_none(),
        "{tool}'s result does not match its output schema: {r}"
    );
    assert!(r.get("error").is_none(), "{tool}: {r}");
    assert_ne!(r["isError"], true, "{tool} failed: {r}");
    called.insert(tool.to_owned());
    r["structuredContent"].clone()
}

#[tokio::test]
async fn every_tools_result_matches_its_output_schema() {
    let scratch = Scratch::new("outputs");
    let project = scratch.join("p");
    init_repo(&project);
    let projects = scratch.join("projects.json");
    std::fs::write(
        &projects,
        json!({ "p": { "path": project, "defaultBranch": "main" } }).to_string(),
    )
    .unwrap();
    let opts = ServerOptions::fake(1).args(&[
        "--permission-mode",
        "default",
        "--projects",
        projects.to_str().unwrap(),
    ]);
    let Some((server, mut client)) = session(opts).await else {
        return;
    };
    let tools = listed(&mut client).await;
    assert_eq!(tools.len(), 29, "{tools:?}");
    let mut called = BTreeSet::new();
    let py = &mut client;
    let c = &mut called;

    let s = call(py, c, "pool_status", json!({})).await;
    assert_eq!(s["slots"].as_array().map(Vec::len), Some(1), "{s}");

    let r = call(py, c, "pool_run", json!({ "prompt": "MOCK_TEXT: one" })).await;
    assert_eq!(r["output"], "one");
    let first = r["task_id"].as_str().unwrap().to_owned();
    let r = call(py, c, "pool_submit", json!({ "prompt": "MOCK_TEXT: two" })).await;
    let second = r["task_id"].as_str().unwrap().to_owned();
    let r = call(
        py,
        c,
        "pool_result",
        json!({ "task_id": second, "wait": 30 }),
    )
    .await;
    assert_eq!(r["output"], "two");
    let r = call(py, c, "pool_cancel", json!({ "task_id": second })).await;
    assert_eq!(r["cancelled"], false, "an ended task is not cancelled: {r}");
    let r = call(
        py,
        c,
        "pool_fan_out",
        json!({ "prompts": ["MOCK_TEXT: a", "MOCK_TEXT: b"] }),
    )
    .await;
    assert_eq!(r["results"][1]["output"], "b");
    let steps =
        json!([{ "prompt": "MOCK_TEXT: x" }, { "prompt": "MOCK_TEXT: {previous_output}y" }]);
    let r = call(py, c, "pool_chain", json!({ "steps": steps })).await;
    assert_eq!(r["final_output"], "xy");
    let r = call(py, c, "pool_submit_chain", json!({ "steps": steps })).await;
    let chain = r["chain_id"].as_str().unwrap().to_owned();
    let r = call(
        py,
        c,
        "pool_chain_result",
        json!({ "chain_id": chain, "wait": 30 }),
    )
    .await;
    assert_eq!(r["final_output"], "xy");

    call(py, c, "context_set", json!({ "key": "k", "value": "v" })).await;
    let r = call(py, c, "context_get", json!({ "key": "k" })).await;
    assert_eq!(r["value"], "v");
    let r = call(py, c, "context_list", json!({})).await;
    assert_eq!(r, json!({ "k": "v" }));
    let r = call(py, c, "context_delete", json!({ "key": "k" })).await;
    assert_eq!(r["deleted"], true);

    let r = call(py, c, "pool_scale_up", json!({ "count": 1 })).await;
    assert_eq!(r["new_slot_count"], 2);
    let r = call(py, c, "pool_scale_down", json!({ "count": 1 })).await;
    assert_eq!(r["new_slot_count"], 1);
    let r = call(py, c, "pool_set_target_slots", json!({ "target": 1 })).await;
    assert_eq!(r["new_slot_count"], 1);

    let r = call(py, c, "pool_skill_list", json!({})).await;
    assert!(r["skills"].as_array().is_some_and(|s| !s.is_empty()), "{r}");
    call(py, c, "pool_skill_get", json!({ "skill": "summarize" })).await;
    let r = call(
        py,
        c,
        "pool_skill_run",
        json!({ "skill": "summarize", "arguments": { "target": "README" } }),
    )
    .await;
    assert_eq!(r["status"], "completed", "{r}");
    let r = call(py, c, "pool_transcript", json!({ "task_id": first })).await;
    assert!(
        r["ndjson"].as_str().is_some_and(|d| d.contains("one")),
        "{r}"
    );

    // A worker's question, answered through the tools.
    let file = scratch.join("approved");
    let r = call(
        py,
        c,
        "pool_submit",
        json!({ "prompt": format!("MOCK_TOOL:touch {}", file.display()) }),
    )
    .await;
    let asking = r["task_id"].as_str().unwrap().to_owned();
    let r = call(py, c, "pool_approvals", json!({ "wait": 30 })).await;
    let request = r["pending"][0]["request_id"].as_str().unwrap().to_owned();
    let r = call(
        py,
        c,
        "pool_approve",
        json!({ "request_id": request, "decision": "allow" }),
    )
    .await;
    assert_eq!(r["task_id"], asking);
    let r = call(
        py,
        c,
        "pool_result",
        json!({ "task_id": asking, "wait": 30 }),
    )
    .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert!(file.exists(), "the approved command ran");

    let r = call(py, c, "claude_list_projects", json!({})).await;
    assert_eq!(r["projects"][0]["name"], "p");
    let r = call(
        py,
        c,
        "claude_run",
        json!({ "project": "p", "prompt": "MOCK_TEXT: job" }),
    )
    .await;
    let job = r["jobId"].as_str().unwrap().to_owned();
    call(py, c, "pool_result", json!({ "task_id": job, "wait": 30 })).await;
    let r = call(py, c, "claude_job_status", json!({ "jobId": job })).await;
    assert_eq!(r["output"], "job");
    let r = call(py, c, "claude_list_jobs", json!({})).await;
    assert_eq!(r["jobs"][0]["jobId"], job);
    let r = call(
        py,
        c,
        "claude_build",
        json!({ "project": "p", "spec": "MOCK_TEXT: built", "branch": "feature/x" }),
    )
    .await;
    let build = r["jobId"].as_str().unwrap().to_owned();
    call(py, c, "claude_cancel", json!({ "jobId": build })).await;

    call(py, c, "pool_drain", json!({})).await;
    assert_eq!(called, tools, "every listed tool was called");
    client.quit().await;
    server.close().await;
}

#[tokio::test]
async fn the_real_clis_results_match_their_output_schemas() {
    let Some(python) = mcp_python() else {
        return;
    };
    let Some(p) = real_pool_over(Transport::Http, 2, &["--model", "sonnet"]).await else {
        return;
    };
    let url = p.server.url.clone().expect("an HTTP server has a URL");
    let mut client = PyClient::http(&python, &url, p.server.token.as_deref()).await;
    let mut called = BTreeSet::new();
    let (py, c) = (&mut client, &mut called);
    let r = call(
        py,
        c,
        "pool_run",
        json!({ "prompt": "real MOCK_USAGE:1000,500" }),
    )
    .await;
    assert_eq!(r["output"], "MOCK: real MOCK_USAGE:1000,500");
    // sonnet at $2 / $10 per million tokens.
    let expected = (1000.0 * 2.0 + 500.0 * 10.0) / 1e6;
    assert!(
        (r["spend_usd"].as_f64().unwrap() - expected).abs() < 1e-9,
        "{r}"
    );
    let task = r["task_id"].as_str().unwrap().to_owned();
    let r = call(
        py,
        c,
        "pool_submit",
        json!({ "prompt": "MOCK_TEXT: later" }),
    )
    .await;
    let later = r["task_id"].as_str().unwrap().to_owned();
    let r = call(
        py,
        c,
        "pool_result",
        json!({ "task_id": later, "wait": 60 }),
    )
    .await;
    assert_eq!(r["output"], "later");
    let r = call(
        py,
        c,
        "pool_fan_out",
        json!({ "prompts": ["MOCK_TEXT: a", "MOCK_STATUS:500 broken"] }),
    )
    .await;
    assert_eq!(r["results"][0]["output"], "a");
    assert_eq!(r["results"][1]["status"], "failed", "{r}");
    let r = call(
        py,
        c,
        "pool_chain",
        json!({ "steps": [{ "prompt": "MOCK_TEXT: x" }, { "prompt": "MOCK_TEXT: {previous_output}y" }] }),
    )
    .await;
    assert_eq!(r["final_output"], "xy");
    let r = call(py, c, "pool_transcript", json!({ "task_id": task })).await;
    assert!(
        r["ndjson"].as_str().is_some_and(|d| d.contains("real")),
        "{r}"
    );
    let r = call(py, c, "pool_status", json!({})).await;
    assert_eq!(r["slots"].as_array().map(Vec::len), Some(2), "{r}");
    client.quit().await;
    p.server.close().await;
}
