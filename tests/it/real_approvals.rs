//! Approvals with the pinned real Claude CLI (2.1.329) in the slots, against the mock API:
//! the CLI's own permission question (`can_use_tool`) reaches the MCP client as an
//! elicitation, and the client's answer decides whether the command runs. With `CI=true` a
//! missing CLI fails these tests instead of skipping them.

use std::time::Duration;

use claude_pool_tests::mock_anthropic::{MockServer, hermetic_cli_env};
use claude_pool_tests::server::{Server, ServerOptions, content, first_text};
use claude_pool_tests::{Scratch, real_claude_bin};
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::json;

const ASKED: Duration = Duration::from_secs(60);

struct Pool {
    server: Server,
    _mock: MockServer,
    scratch: Scratch,
}

async fn real_pool(args: &[&str]) -> Option<Pool> {
    let claude = real_claude_bin()?;
    let mock = MockServer::start().expect("mock API");
    let scratch = Scratch::new("real-approvals");
    let mut opts = ServerOptions::fake(1).elicitation().args(args);
    opts.claude_bin = claude;
    for (k, v) in hermetic_cli_env(&mock.url(), scratch.path()) {
        opts = opts.env(&k, &v);
    }
    let server = Server::start(opts).await;
    server.wait_ready().await;
    Some(Pool {
        server,
        _mock: mock,
        scratch,
    })
}

/// The message of a form elicitation.
fn message_of(p: &ElicitRequestParams) -> String {
    match p {
        ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
        other => panic!("expected a form elicitation, got {other:?}"),
    }
}

#[tokio::test]
async fn a_bash_command_runs_once_the_client_allows_it_and_not_when_it_denies() {
    let Some(p) = real_pool(&["--permission-mode", "default"]).await else {
        return;
    };
    let allowed = p.scratch.join("allowed");
    let denied = p.scratch.join("denied");

    // Allowed: the file is created, and the answer says the tool ran.
    let prompt = format!("MOCK_TOOL:touch {}", allowed.display());
    let run = {
        let server = &p.server;
        let prompt = prompt.clone();
        async move { server.call("pool_run", json!({ "prompt": prompt })).await }
    };
    let answer = async {
        let (request, reply) = p.server.next_elicitation(ASKED, "the allow question").await;
        let message = message_of(&request);
        assert!(
            message.contains("Bash") && message.contains(&format!("touch {}", allowed.display())),
            "the form names the tool and the command: {message}"
        );
        assert!(!allowed.exists(), "nothing ran before the answer was given");
        let _ = reply.send(
            ElicitResult::new(ElicitationAction::Accept)
                .with_content(json!({ "decision": "allow_once" })),
        );
    };
    let (r, ()) = tokio::join!(run, answer);
    assert_ne!(r.is_error, Some(true), "{:?}", r.content);
    let report = content(&r);
    assert!(allowed.exists(), "the allowed command ran: {report}");
    assert_eq!(
        report["output"], "MOCK: tool said: (Bash completed with no output)",
        "{report}"
    );
    let trail = report["approvals"].as_array().expect("an audit trail");
    assert_eq!(trail.len(), 1, "{report}");
    assert_eq!(trail[0]["outcome"], "allow");
    assert_eq!(trail[0]["tool"], "Bash");
    assert!(
        trail[0]["by"].as_str().unwrap().starts_with("client:"),
        "{report}"
    );

    // Denied with a message: nothing runs, and Claude reads the message.
    let prompt = format!("MOCK_TOOL:touch {}", denied.display());
    let run = {
        let server = &p.server;
        async move { server.call("pool_run", json!({ "prompt": prompt })).await }
    };
    let answer = async {
        let (_, reply) = p.server.next_elicitation(ASKED, "the deny question").await;
        let _ = reply.send(
            ElicitResult::new(ElicitationAction::Accept)
                .with_content(json!({ "decision": "deny", "message": "no files today, thanks" })),
        );
    };
    let (r, ()) = tokio::join!(run, answer);
    let report = content(&r);
    assert!(!denied.exists(), "a denied command never runs: {report}");
    // The mock echoes the first 40 characters of the tool result Claude got back.
    assert_eq!(
        report["output"],
        "MOCK: tool said: no files today, thanks",
        "{}",
        first_text(&r)
    );
    assert_eq!(report["approvals"][0]["outcome"], "deny");
    assert_eq!(report["approvals"][0]["message"], "no files today, thanks");
}

#[tokio::test]
async fn a_rule_allows_or_denies_without_asking_and_a_task_cannot_widen_the_rules() {
    let Some(p) = real_pool(&[
        "--permission-mode",
        "default",
        "--allow",
        "Bash(touch:*)",
        "--deny",
        "Bash(rm:*)",
    ])
    .await
    else {
        return;
    };
    let made = p.scratch.join("by-rule");
    let r = p
        .server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", made.display()) }),
        )
        .await;
    assert!(made.exists(), "the allow rule let it run: {r}");
    assert_eq!(r["approvals"][0]["by"], "rule:Bash(touch:*)", "{r}");

    let keep = p.scratch.join("keep");
    std::fs::write(&keep, "x").unwrap();
    let r = p
        .server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:rm {}", keep.display()) }),
        )
        .await;
    assert!(keep.exists(), "the deny rule kept the file: {r}");
    // Deny rules also go to the CLI (--disallowedTools), which refuses by itself; the
    // refusal is still in the audit trail.
    assert_eq!(r["approvals"][0]["outcome"], "deny", "{r}");
    assert!(
        r["approvals"][0]["by"]
            .as_str()
            .unwrap()
            .starts_with("cli:"),
        "{r}"
    );

    // A task's allow rule wider than the server's is refused before anything runs.
    p.server
        .expect_argument_error(
            "pool_run",
            json!({ "prompt": "MOCK_TOOL:true", "allow": ["Bash(curl:*)"] }),
            "wider than this server's allow rules",
        )
        .await;
}

/// Real Claude Code is the coordinator: its model calls `pool_run`; the slot's Claude (a
/// real CLI too) asks to run a command; the question reaches the coordinator as a form,
/// its headless `Elicitation` hook allows it, the command runs, and the slot's answer
/// comes back through both hops into the coordinator's result.
#[tokio::test]
async fn real_claude_code_as_the_coordinator_answers_a_workers_question_with_its_hook() {
    let Some(claude) = real_claude_bin() else {
        return;
    };
    let mock = MockServer::start().expect("mock");
    let scratch = Scratch::new("coordinator-approvals");
    let server_log = scratch.join("server.log");
    let made = scratch.join("made-by-the-worker");
    let seen = scratch.join("hook-input.json");
    let hook = scratch.join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\ncat > '{}'\nprintf '%s' '{}'\n",
            seen.display(),
            json!({ "hookSpecificOutput": {
                "hookEventName": "Elicitation",
                "action": "accept",
                "content": { "decision": "allow_once" },
            }})
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let settings = scratch.join("settings.json");
    std::fs::write(
        &settings,
        json!({ "hooks": { "Elicitation": [
            { "matcher": "pool", "hooks": [ { "type": "command", "command": hook } ] }
        ] } })
        .to_string(),
    )
    .unwrap();
    let config = json!({ "mcpServers": { "pool": {
        "command": claude_pool_tests::server_bin(),
        "args": ["--slots", "1", "--claude-bin", claude, "--permission-mode", "default",
                 "--log-file", server_log, "--log-level", "debug"],
    }}});
    let config_path = scratch.join("mcp.json");
    std::fs::write(&config_path, config.to_string()).unwrap();
    let calls = json!([
        { "name": "mcp__pool__pool_run",
          "input": { "prompt": format!("MOCK_TOOL:touch {}", made.display()) } },
    ]);
    let mut cmd = tokio::process::Command::new(&claude);
    cmd.args(["-p", "--output-format", "json", "--settings"])
        .arg(&settings)
        .arg("--mcp-config")
        .arg(&config_path)
        .args([
            "--strict-mcp-config",
            "--allowedTools",
            "mcp__pool__pool_run",
        ])
        .env_clear()
        .envs(hermetic_cli_env(&mock.url(), scratch.path()))
        .env("MCP_TIMEOUT", "60000")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn the coordinator CLI");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("MOCK_CALLS:{calls}\n").as_bytes())
            .await
            .unwrap();
    }
    let out = claude_pool_tests::within(
        Duration::from_secs(180),
        "the coordinator's result",
        child.wait_with_output(),
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let log = std::fs::read_to_string(&server_log).unwrap_or_default();
    let why = format!(
        "{stdout}\nstderr: {}\nserver log:\n{log}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "coordinator failed: {why}");
    // Claude Code 2.1.329 negotiates 2026-07-28 with this server, where a server cannot
    // send it a request: the question went out as the call's `input_required` result.
    assert!(
        log.contains("input_required"),
        "the question went out as an InputRequiredResult: {why}"
    );
    assert!(made.exists(), "the worker's command never ran: {why}");
    let asked = std::fs::read_to_string(&seen).unwrap_or_default();
    assert!(
        asked.contains(&format!("touch {}", made.display())),
        "the hook saw the command: {asked}"
    );
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON result");
    let text = result["result"].as_str().unwrap_or_default();
    assert!(
        text.contains("MOCK: tool said: (Bash completed with no output)"),
        "the worker's answer came back through both hops: {text}"
    );
}

/// In the default `plan` mode a worker that tries to leave plan mode is refused at once by
/// the pool (a task keeps the mode it was given); nobody is asked, nothing waits.
#[tokio::test]
async fn leaving_plan_mode_is_refused_at_once_and_asks_nobody() {
    let Some(p) = real_pool(&[]).await else {
        return;
    };
    let calls = json!([{ "name": "ExitPlanMode", "input": { "plan": "1. edit 2. test" } }]);
    let r = p
        .server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_CALLS:{calls}") }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    let trail = r["approvals"].as_array().expect("an audit trail");
    assert_eq!(trail.len(), 1, "{r}");
    assert_eq!(trail[0]["tool"], "ExitPlanMode");
    assert_eq!(trail[0]["outcome"], "deny");
    assert_eq!(trail[0]["by"], "pool:mode");
    let listed = p.server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"], json!([]));
}
