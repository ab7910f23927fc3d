//! `--max-depth` over HTTP, proven with the pinned real Claude CLI (2.1.329) against the
//! project's mock of the Messages API: a slot's Claude loads the project's `.mcp.json`
//! exactly as the README gives it (`Authorization: Bearer ${CLAUDE_POOL_TOKEN}`), expands
//! the depth token the pool put in its environment, and calls `pool_run` back into the
//! same server. The plain-client test (`http_defaults`) shows the server honours a depth
//! token; this one shows the token reaches the server the way a real nested Claude sends it.
//!
//! What the real CLI needs for that, measured with 2.1.329 under `-p` / stream-json:
//! - nothing to load the project's `.mcp.json`: it connects project MCP servers without the
//!   approval an interactive session asks for (no `enableAllProjectMcpServers`);
//! - an allow rule for `mcp__claude-pool__pool_run` in the *user* settings
//!   (`$HOME/.claude/settings.json`): the project's `.claude/settings.json` allow rules are
//!   ignored in a workspace never trusted interactively (the CLI says so on stderr);
//! - a permission mode that lets an allowed tool run: the pool's default `plan` answers
//!   "Cannot call mcp__claude-pool__pool_run while in plan mode", so the outer task asks
//!   for `permission_mode: "default"` (the nested task keeps the server's `plan`).

use std::path::Path;

use claude_pool_tests::mock_anthropic::{MockServer, hermetic_cli_env};
use claude_pool_tests::server::{Server, ServerOptions, Transport};
use claude_pool_tests::{Scratch, real_claude_bin};
use serde_json::{Value, json};

/// The nested task's prompt: what the slot's Claude asks the pool to run.
const NESTED: &str = "MOCK_TEXT: nested";
/// The name the slot's Claude knows the pool's `pool_run` by: `mcp__<server>__<tool>`, the
/// server named as in the README's `.mcp.json`.
const TOOL: &str = "mcp__claude-pool__pool_run";
/// How the mock prefixes the answer it gives after the scripted tool calls.
const RESULTS: &str = "MOCK: tool results: ";
/// The depth the main token stands for; a slot runs one deeper.
const SERVER_DEPTH: u32 = 0;

/// A server over HTTP whose slots run the real CLI in a project that points back at it.
struct CallingBack {
    server: Server,
    mock: MockServer,
    /// Holds the project, the hermetic HOME and the mock's scratch until the test ends.
    _scratch: Scratch,
}

/// A loopback port nobody listens on right now: the `.mcp.json` must name the server's
/// port before the server starts, so the test picks it (and the server binds it at once).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// The project's `.mcp.json`, verbatim from the README's "Over HTTP" section but for the
/// port: the header is left for the CLI to expand from its own environment.
fn project_mcp_json(port: u16) -> Value {
    json!({ "mcpServers": { "claude-pool": {
        "type": "http",
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "headers": { "Authorization": "Bearer ${CLAUDE_POOL_TOKEN}" },
    }}})
}

fn write_json(path: &Path, v: &Value) {
    std::fs::create_dir_all(path.parent().expect("a parent")).unwrap();
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap())
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Two slots (a nested task that is let through needs a slot the outer one does not hold),
/// default HTTP authentication (the harness reads the server's own token file), `--cwd` the
/// project holding the `.mcp.json`.
async fn pool_calling_back(max_depth: u32) -> Option<CallingBack> {
    let claude = real_claude_bin()?;
    let mock = MockServer::start().expect("mock API");
    let scratch = Scratch::new("real-depth");
    let port = free_port();
    let project = scratch.join("project");
    write_json(&project.join(".mcp.json"), &project_mcp_json(port));
    let env = hermetic_cli_env(&mock.url(), scratch.path());
    let home = &env.iter().find(|(k, _)| k == "HOME").expect("a HOME").1;
    write_json(
        &Path::new(home).join(".claude/settings.json"),
        &json!({ "permissions": { "allow": [TOOL] } }),
    );
    let mut opts = ServerOptions {
        claude_bin: claude,
        slots: 2,
        args: Vec::new(),
        env: Vec::new(),
        state: None,
        transport: Transport::Http,
        tasks_extension: false,
        elicitation: false,
        umask: None,
    }
    .args(&["--port", &port.to_string()])
    .args(&["--max-depth", &max_depth.to_string()])
    .args(&["--cwd", project.to_str().unwrap()]);
    for (k, v) in &env {
        opts = opts.env(k, v);
    }
    // Slots connect to the project's server as they start; give it as long as a busy
    // machine needs rather than the CLI's default.
    opts = opts.env("MCP_TIMEOUT", "60000");
    let server = Server::start(opts).await;
    assert_eq!(
        server.url.as_deref(),
        Some(format!("http://127.0.0.1:{port}/mcp").as_str()),
        "the server must listen where the project's .mcp.json points"
    );
    server.wait_ready().await;
    Some(CallingBack {
        server,
        mock,
        _scratch: scratch,
    })
}

impl CallingBack {
    /// Runs the outer task (main token, depth 0): its Claude calls `pool_run` with
    /// [`NESTED`] once, then answers with the tool's result. Returns the outer report and
    /// the tool result the slot's Claude got back.
    async fn run_outer(&self) -> (Value, String) {
        let calls = json!([{ "name": TOOL, "input": { "prompt": NESTED } }]);
        let report = self
            .server
            .call_ok(
                "pool_run",
                json!({ "prompt": format!("MOCK_CALLS:{calls}"), "permission_mode": "default" }),
            )
            .await;
        assert_eq!(report["status"], "completed", "the outer task: {report}");
        let output = report["output"].as_str().unwrap_or_default();
        let tool_result = output
            .strip_prefix(RESULTS)
            .unwrap_or_else(|| {
                panic!(
                    "the outer Claude never answered after its tool call: {report}\nserver log:\n{}",
                    self.server.log()
                )
            })
            .to_owned();
        (report, tool_result)
    }

    /// Whether a Claude turn ever ran the nested prompt: a request to the mock whose user
    /// text is exactly [`NESTED`] (the outer conversation carries it only inside the
    /// `MOCK_CALLS` JSON).
    fn nested_prompt_reached_the_api(&self) -> bool {
        self.mock
            .requests()
            .iter()
            .filter(|r| r["path"].as_str().unwrap_or("").starts_with("/v1/messages"))
            .any(|r| r["summary"]["last_user_text"].as_str().map(str::trim) == Some(NESTED))
    }

    async fn tasks_seen(&self) -> u64 {
        let s = self.server.status().await;
        s["tasks"]["total"]
            .as_u64()
            .unwrap_or_else(|| panic!("pool_status has no tasks.total: {s}"))
    }
}

/// The slot runs at depth 1 = `--max-depth`: its call back, authenticated by nothing but
/// the depth token its CLI expanded into the header, is refused as over stdio, and nothing
/// runs. The refusal names depth 1, which only the depth token can say: the CLI sends no
/// `x-mcp-depth`, the main token would mean depth 0, and an unexpanded header gets 401 (no
/// tool at all).
#[tokio::test]
async fn a_real_claude_calling_back_over_http_at_the_max_depth_is_refused_and_nothing_runs() {
    let max_depth = SERVER_DEPTH + 1;
    let Some(p) = pool_calling_back(max_depth).await else {
        return;
    };
    let (report, tool_result) = p.run_outer().await;
    let refusal = format!(
        "recursion_limit_exceeded: this request is at depth {} and the server refuses work at depth {max_depth} or deeper",
        SERVER_DEPTH + 1
    );
    assert!(
        tool_result.starts_with(&refusal),
        "the nested call's answer should be the depth refusal {refusal:?}: {report}\nserver log:\n{}",
        p.server.log()
    );
    assert_eq!(p.tasks_seen().await, 1, "only the outer task may exist");
    assert!(
        !p.nested_prompt_reached_the_api(),
        "the refused prompt {NESTED:?} reached the API"
    );
    p.server.close().await;
}

/// The control: one level more of `--max-depth` lets the same call back through, and the
/// nested task's own report (its output, on the other slot) comes back to the outer Claude.
#[tokio::test]
async fn below_the_max_depth_a_real_claude_calling_back_over_http_runs_the_nested_task() {
    let max_depth = SERVER_DEPTH + 2;
    let Some(p) = pool_calling_back(max_depth).await else {
        return;
    };
    let (report, tool_result) = p.run_outer().await;
    let nested: Value = serde_json::Deserializer::from_str(&tool_result)
        .into_iter()
        .next()
        .and_then(Result::ok)
        .unwrap_or_else(|| {
            panic!(
                "the nested call's answer is no task report: {report}\nserver log:\n{}",
                p.server.log()
            )
        });
    assert_eq!(nested["status"], "completed", "{nested}");
    assert_eq!(
        nested["output"],
        NESTED.strip_prefix("MOCK_TEXT: ").unwrap(),
        "{nested}"
    );
    assert_ne!(
        nested["slot_id"], report["slot_id"],
        "the nested task runs on the slot the outer one does not hold"
    );
    assert_eq!(p.tasks_seen().await, 2, "the outer and the nested task");
    assert!(
        p.nested_prompt_reached_the_api(),
        "the nested prompt {NESTED:?} never reached the API"
    );
    p.server.close().await;
}
