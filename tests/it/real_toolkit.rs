//! The coordinator's toolkit end to end with the pinned real Claude CLI against the
//! project's mock of the Messages API: fan-out, chains, context, budget, drain, skills,
//! resources — and the real CLI as the coordinator, calling this server over MCP.

use std::process::Stdio;
use std::time::Duration;

use claude_pool_tests::mock_anthropic::hermetic_cli_env;
use claude_pool_tests::server::{content, first_text};
use claude_pool_tests::{real_claude_bin, within};
use serde_json::{Value, json};

use crate::real_cli::real_pool;

/// Dollars of tokens at sonnet's price ($2 / $10 per million), from the test's own numbers.
fn sonnet_usd(input: u64, output: u64) -> f64 {
    (input as f64 * 2.0 + output as f64 * 10.0) / 1e6
}

#[tokio::test]
async fn real_cli_fans_out_and_chains() {
    let Some(p) = real_pool(2, &["--model", "sonnet"]).await else {
        return;
    };
    let f = p
        .server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": ["MOCK_TEXT: alpha", "MOCK_STATUS:500 broken", "MOCK_TEXT: gamma MOCK_USAGE:1000,10"] }),
        )
        .await;
    let results = f["results"].as_array().unwrap();
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "failed", "completed"], "{f}");
    assert_eq!(results[0]["output"], "alpha");
    assert!(
        results[1]["error"].as_str().unwrap().contains("500"),
        "{}",
        results[1]
    );
    assert!((results[2]["spend_usd"].as_f64().unwrap() - sonnet_usd(1000, 10)).abs() < 1e-9);

    let c = p
        .server
        .call_ok(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_TEXT: plan-42", "name": "plan" },
                { "prompt": "MOCK_TEXT: built from {previous_output}" },
            ]}),
        )
        .await;
    assert_eq!(c["status"], "completed", "{c}");
    assert_eq!(c["final_output"], "built from plan-42");
    assert_eq!(c["completed_steps"], 2);
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_tasks_carry_the_context_without_touching_claude_codes_system_prompt() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    p.mock.configure(&json!({ "log_bodies": true }));
    p.server
        .call_ok("context_set", json!({ "key": "language", "value": "rust" }))
        .await;
    let r = p
        .server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: noted" }))
        .await;
    assert_eq!(r["output"], "noted");
    let request = p
        .mock
        .requests()
        .into_iter()
        .rev()
        .find(|r| r["path"].as_str().unwrap_or("").starts_with("/v1/messages"))
        .expect("a request reached the mock");
    let body = &request["full_body"];
    let user = body["messages"].to_string();
    assert!(
        user.contains("- language: rust"),
        "the context reached Claude: {user}"
    );
    let system = body["system"].to_string();
    assert!(
        !system.contains("language: rust"),
        "the context is not in the system prompt"
    );
    assert!(
        system.contains("Claude Code"),
        "Claude Code's own system prompt is kept: {system}"
    );
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_budget_stops_running_turns_and_refuses_new_work() {
    let cap = 0.01;
    let Some(p) = real_pool(2, &["--model", "sonnet", "--budget-usd", "0.01"]).await else {
        return;
    };
    // Two turns of two API calls each (a tool loop), 3000 in / 100 out per call: after both
    // first calls 2 × 3000 × $2/M input is already over the cap.
    let prompt = "MOCK_USAGE:3000,100 MOCK_SLEEP:1.5 MOCK_TOOL:true";
    let a = p
        .server
        .call_ok("pool_submit", json!({ "prompt": prompt }))
        .await;
    let b = p
        .server
        .call_ok("pool_submit", json!({ "prompt": prompt }))
        .await;
    let mut spent = 0.0;
    for s in [&a, &b] {
        let r = p.server.wait_task(s["task_id"].as_str().unwrap()).await;
        assert_eq!(r["status"], "failed", "{r}");
        assert!(
            r["error"].as_str().unwrap().contains("budget is exhausted"),
            "{r}"
        );
        spent += r["spend_usd"].as_f64().unwrap();
    }
    let status = p.server.status().await;
    let pool = status["spend_usd"].as_f64().unwrap();
    assert!((pool - spent).abs() < 1e-9, "pool {pool} != tasks {spent}");
    assert!(pool >= cap, "{status}");
    // At most one API call in flight per running slot beyond the cap.
    assert!(
        pool <= cap + 2.0 * sonnet_usd(3000, 100) + 1e-9,
        "overshoot: {pool}"
    );
    let requests = p.mock.message_requests();
    let r = p.server.call("pool_run", json!({ "prompt": "more" })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        first_text(&r).contains("budget is exhausted"),
        "{}",
        first_text(&r)
    );
    assert_eq!(
        p.mock.message_requests(),
        requests,
        "refused work reached the API"
    );
    p.server.close().await;
}

#[tokio::test]
async fn real_cli_drain_skills_and_resources() {
    let Some(p) = real_pool(1, &[]).await else {
        return;
    };
    let r = p
        .server
        .call_ok(
            "pool_skill_run",
            json!({ "skill": "summarize", "arguments": { "target": "MOCK_TEXT: summary done" } }),
        )
        .await;
    assert_eq!(r["output"], "summary done", "{r}");
    let id = r["task_id"].as_str().unwrap();
    let res = p
        .server
        .read_resource(&format!("pool://results/{id}"))
        .await
        .unwrap();
    assert_eq!(res["output"], "summary done");
    let budget = p.server.read_resource("pool://budget").await.unwrap();
    assert!(
        (budget["spend_usd"].as_f64().unwrap() - r["spend_usd"].as_f64().unwrap()).abs() < 1e-12
    );

    let (running, _, _) = p.server.start_run("MOCK_SLEEP:1 MOCK_TEXT: last one").await;
    let queued = p
        .server
        .call_ok("pool_submit", json!({ "prompt": "never" }))
        .await;
    let d = p.server.call_ok("pool_drain", json!({})).await;
    assert_eq!(d["total_tasks"], 3, "{d}");
    assert_eq!(d["completed"], 2, "{d}");
    assert_eq!(d["cancelled"], 1, "{d}");
    let done = claude_pool_tests::server::finish_call(running, "the running task").await;
    assert_eq!(content(&done)["output"], "last one");
    let q = p
        .server
        .wait_task(queued["task_id"].as_str().unwrap())
        .await;
    assert_eq!(q["status"], "cancelled");
    let s = p.server.status().await;
    assert_eq!(s["slots"][0]["status"], "stopped", "{s}");
    p.server.close().await;
}

/// The real CLI is the coordinator: it loads this server from an `--mcp-config`, and the
/// mock makes its model call `pool_run`, `pool_fan_out` and `pool_chain`; the slots (real
/// CLIs too) answer through both hops into the coordinator's final result.
#[tokio::test]
async fn real_claude_code_as_the_coordinator_drives_the_pool_over_mcp() {
    let Some(claude) = real_claude_bin() else {
        return;
    };
    let mock = claude_pool_tests::mock_anthropic::MockServer::start().expect("mock");
    let scratch = claude_pool_tests::Scratch::new("coordinator");
    let server_log = scratch.join("server.log");
    let config = json!({ "mcpServers": { "pool": {
        "command": claude_pool_tests::server_bin(),
        "args": ["--slots", "2", "--claude-bin", claude, "--log-file", server_log, "--log-level", "debug"],
    }}});
    let config_path = scratch.join("mcp.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let calls = json!([
        { "name": "mcp__pool__pool_run", "input": { "prompt": "MOCK_TEXT: hop-one" } },
        { "name": "mcp__pool__pool_fan_out", "input": { "prompts": ["MOCK_TEXT: fan-a", "MOCK_TEXT: fan-b"] } },
        { "name": "mcp__pool__pool_chain", "input": { "steps": [
            { "prompt": "MOCK_TEXT: link-1" },
            { "prompt": "MOCK_TEXT: after {previous_output}" },
        ] } },
    ]);
    let prompt = format!("MOCK_CALLS:{calls}\n");
    let mut cmd = tokio::process::Command::new(&claude);
    cmd.args(["-p", "--output-format", "json", "--mcp-config"])
        .arg(&config_path)
        .args(["--strict-mcp-config", "--allowedTools"])
        .args([
            "mcp__pool__pool_run",
            "mcp__pool__pool_fan_out",
            "mcp__pool__pool_chain",
        ])
        .env_clear()
        .envs(hermetic_cli_env(&mock.url(), scratch.path()))
        .env("MCP_TIMEOUT", "60000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn the coordinator CLI");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(prompt.as_bytes()).await.unwrap();
    }
    let out = within(
        Duration::from_secs(180),
        "the coordinator's result",
        child.wait_with_output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(&server_log).unwrap_or_default();
    assert!(
        out.status.success(),
        "coordinator failed: {stdout}\nstderr: {}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_str(stdout.trim()).expect("one JSON result");
    let text = result["result"].as_str().unwrap_or_default();
    for expected in ["hop-one", "fan-a", "fan-b", "after link-1"] {
        assert!(
            text.contains(expected),
            "{expected:?} did not come back through both hops: {text}"
        );
    }
    // The three tools really ran on this server.
    for tool in ["pool_run", "pool_fan_out", "pool_chain"] {
        assert!(
            log.contains(&format!("\"{tool}\"")),
            "the server never saw {tool}"
        );
    }
}
