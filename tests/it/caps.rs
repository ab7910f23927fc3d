//! Bounded amplification and checked values, through the real server and an MCP client: a
//! skill whose template repeats its arguments is refused once its rendering would pass the
//! 1 MiB cap (as a tool call and as `prompts/get`) without the server ever holding it; every
//! client value that reaches a command line (model, session id, branch, project, allowed
//! tools) is refused by field when malformed, and nothing runs.

use claude_pool_tests::Scratch;
use claude_pool_tests::server::{Server, ServerOptions};
use serde_json::json;

/// The cap on a rendered prompt, as the README documents it.
const CAP: usize = 1024 * 1024;
/// How often the test skill's template repeats its argument.
const REPEATS: usize = 3200;
/// The argument's size: rendered, it would be `REPEATS` times this (200 MiB).
const ARG_BYTES: usize = 64 * 1024;

/// A skills directory with `echo_many`, whose template is its argument `x` `REPEATS` times.
fn repeating_skill() -> Scratch {
    let dir = Scratch::new("big-skill");
    let template = "{x}".repeat(REPEATS);
    let file = format!(
        "---\nname: echo_many\ndescription: repeats its argument\narguments:\n  - name: x\n    description: anything\n    required: true\n---\nMOCK_TEXT: {template}\n"
    );
    std::fs::write(dir.join("echo_many.md"), file).unwrap();
    dir
}

/// The most resident memory the process `pid` has had, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb * 1024
}

#[tokio::test]
async fn a_skill_rendering_past_the_cap_is_refused_without_being_built() {
    let dir = repeating_skill();
    let server = Server::start(
        ServerOptions::fake(1).args(&["--skills-dir", &dir.path().to_string_lossy()]),
    )
    .await;
    server.wait_ready().await;
    let processes = server.processes_started();
    let big = "v".repeat(ARG_BYTES);
    let would_be = REPEATS * ARG_BYTES;
    assert!(
        would_be > 100 * CAP,
        "the test must ask for far more than the cap"
    );
    server
        .expect_argument_error(
            "pool_skill_run",
            json!({ "skill": "echo_many", "arguments": { "x": big } }),
            &format!("over the cap of {CAP} bytes"),
        )
        .await;
    let mut args = serde_json::Map::new();
    args.insert("x".into(), json!(big));
    match server
        .client()
        .get_prompt(rmcp::model::GetPromptRequestParams::new("echo_many").with_arguments(args))
        .await
    {
        Err(rmcp::ServiceError::McpError(e)) => {
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{e:?}");
            assert!(e.message.contains(&CAP.to_string()), "{e:?}");
        }
        other => panic!("prompts/get served a rendering past the cap: {other:?}"),
    }
    let peak = peak_rss(server.pid);
    assert!(
        peak < (would_be / 2) as u64,
        "the server's memory peaked at {peak} bytes: a {would_be}-byte rendering was built"
    );
    assert_eq!(server.turns_started(), 0, "a refused skill reached Claude");
    assert_eq!(server.processes_started(), processes);
    // Under the cap the same skill runs, rendered in full.
    let small = "w".repeat(CAP / REPEATS / 2);
    let r = server
        .call_ok(
            "pool_skill_run",
            json!({ "skill": "echo_many", "arguments": { "x": small } }),
        )
        .await;
    assert_eq!(
        r["output"].as_str().map(str::len),
        Some(small.len() * REPEATS),
        "{}",
        r["status"]
    );
    server.close().await;
}

#[tokio::test]
async fn values_that_reach_a_command_line_are_refused_by_field() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    let processes = server.processes_started();
    let uuid = "0b6c3f5e-8a37-4c1e-9d39-1f0a2b3c4d5e";
    let cases = [
        (
            "pool_run",
            json!({ "prompt": "x", "model": "--dangerously-skip-permissions" }),
            "model",
        ),
        (
            "pool_submit",
            json!({ "prompt": "x", "model": "a b" }),
            "model",
        ),
        (
            "pool_fan_out",
            json!({ "prompts": ["a"], "model": "x".repeat(129) }),
            "model",
        ),
        (
            "pool_chain",
            json!({ "steps": [{ "prompt": "a" }, { "prompt": "b", "model": "-m" }] }),
            "steps[1].model",
        ),
        (
            "pool_skill_run",
            json!({ "skill": "summarize", "arguments": { "target": "x" }, "model": "x;y" }),
            "model",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "session_id": "--fork-session" }),
            "session_id",
        ),
        (
            "claude_run",
            json!({ "project": "app", "prompt": "x", "sessionId": "../../etc/passwd" }),
            "sessionId",
        ),
        (
            "claude_run",
            json!({ "project": "app", "prompt": "x", "allowedTools": ["Read,Bash"] }),
            "allowedTools",
        ),
        (
            "claude_run",
            json!({ "project": "../app", "prompt": "x", "sessionId": uuid }),
            "project",
        ),
        (
            "claude_build",
            json!({ "project": "app", "spec": "x", "branch": "--force" }),
            "branch",
        ),
        (
            "claude_build",
            json!({ "project": "app", "spec": "x", "branch": "a..b" }),
            "branch",
        ),
        (
            "claude_build",
            json!({ "project": "app", "spec": "x", "branch": "ok", "baseBranch": "-x" }),
            "baseBranch",
        ),
    ];
    for (tool, args, field) in cases {
        server
            .expect_argument_error(tool, args, &format!("invalid arguments: {field}:"))
            .await;
    }
    assert_eq!(server.turns_started(), 0, "a bad value reached Claude");
    assert_eq!(
        server.processes_started(),
        processes,
        "a bad value started a process"
    );
    server.close().await;
}

#[tokio::test]
async fn the_operators_own_values_are_checked_like_a_clients() {
    let cases: [(&[&str], &str); 4] = [
        (&["--model=-x"], "not a model name"),
        (&["--model", "sonnet;rm"], "not a model name"),
        (
            &["--allowed-tools", "Read,Bash(rm (x))"],
            "not a tool entry",
        ),
        (&["--max-permission-mode", "yolo"], "yolo"),
    ];
    for (args, needle) in cases {
        let stderr = claude_pool_tests::server::start_refused(args, &[]).await;
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {stderr}"
        );
    }
}
