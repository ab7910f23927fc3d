//! The permission ceiling (`--max-permission-mode`) through the real server and an MCP
//! client: a mode above it is refused on every tool that takes one, before any process
//! starts or anything is queued; the operator's own `--permission-mode` is always allowed;
//! `bypassPermissions` only when the operator allows it; `claude_build` only when the
//! server's ceiling and `--allowed-tools` let it edit and commit.

use std::path::Path;

use claude_pool_tests::Scratch;
use claude_pool_tests::git::{git, init_repo};
use claude_pool_tests::server::{Server, ServerOptions};
use serde_json::{Value, json};

/// What `MOCK_SHOW_CONFIG` prints for the mode a turn ran in.
fn ran_in(report: &Value, mode: &str) -> bool {
    report["output"]
        .as_str()
        .is_some_and(|o| o.contains(&format!("permission_mode={mode}")))
}

/// Asserts that nothing ran since `processes` were started: no turn, no new process, no
/// task or chain queued.
async fn assert_nothing_ran(server: &Server, processes: usize) {
    assert_eq!(server.turns_started(), 0, "a refused call reached Claude");
    assert_eq!(
        server.processes_started(),
        processes,
        "a refused call started a process"
    );
    let s = server.status().await;
    assert_eq!(s["tasks"]["total"], 0, "a refused call queued a task: {s}");
    assert_eq!(
        s["chains"]["total"], 0,
        "a refused call queued a chain: {s}"
    );
}

#[tokio::test]
async fn modes_above_the_ceiling_are_refused_on_every_tool_before_anything_starts() {
    // The server's defaults: plan, under a ceiling of acceptEdits.
    let server = Server::start(ServerOptions::fake(1).env("IS_SANDBOX", "1")).await;
    let ready = server.wait_ready().await;
    assert_eq!(ready["max_permission_mode"], "acceptEdits", "{ready}");
    let processes = server.processes_started();
    let needle = "permission ceiling \"acceptEdits\"";
    let steps = json!([{ "prompt": "a" }, { "prompt": "b" }]);
    for mode in ["bypassPermissions", "auto"] {
        let cases = [
            (
                "pool_run",
                json!({ "prompt": "x", "permission_mode": mode }),
            ),
            (
                "pool_submit",
                json!({ "prompt": "x", "permission_mode": mode }),
            ),
            (
                "pool_fan_out",
                json!({ "prompts": ["a", "b"], "permission_mode": mode }),
            ),
            (
                "pool_chain",
                json!({ "steps": steps, "permission_mode": mode }),
            ),
            (
                "pool_submit_chain",
                json!({ "steps": steps, "permission_mode": mode }),
            ),
            (
                "pool_skill_run",
                json!({ "skill": "summarize", "arguments": { "target": "x" }, "permission_mode": mode }),
            ),
        ];
        for (tool, args) in cases {
            server.expect_argument_error(tool, args, needle).await;
        }
    }
    // claude_run has no mode to ask for: trying to slip one in is an unknown field.
    server
        .expect_argument_error(
            "claude_run",
            json!({ "project": "app", "prompt": "x", "permissionMode": "bypassPermissions" }),
            "permissionMode",
        )
        .await;
    assert_nothing_ran(&server, processes).await;
    // At the ceiling a task runs, in the mode it asked for.
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_SHOW_CONFIG", "permission_mode": "acceptEdits" }),
        )
        .await;
    assert!(ran_in(&r, "acceptEdits"), "{r}");
    server.close().await;
}

#[tokio::test]
async fn the_servers_own_mode_is_allowed_whatever_the_ceiling() {
    let server = Server::start(ServerOptions::fake(1).args(&[
        "--permission-mode",
        "acceptEdits",
        "--max-permission-mode",
        "plan",
    ]))
    .await;
    let ready = server.wait_ready().await;
    assert_eq!(ready["max_permission_mode"], "acceptEdits", "{ready}");
    let processes = server.processes_started();
    server
        .expect_argument_error(
            "pool_run",
            json!({ "prompt": "x", "permission_mode": "auto" }),
            "permission ceiling \"acceptEdits\"",
        )
        .await;
    assert_nothing_ran(&server, processes).await;
    for mode in ["acceptEdits", "default", "plan"] {
        let r = server
            .call_ok(
                "pool_run",
                json!({ "prompt": "MOCK_SHOW_CONFIG", "permission_mode": mode }),
            )
            .await;
        assert!(ran_in(&r, mode), "{mode}: {r}");
    }
    server.close().await;
}

#[tokio::test]
async fn bypass_permissions_is_reachable_only_when_the_operator_allows_it() {
    for flags in [
        ["--max-permission-mode", "bypassPermissions"],
        ["--permission-mode", "bypassPermissions"],
    ] {
        let server =
            Server::start(ServerOptions::fake(1).env("IS_SANDBOX", "1").args(&flags)).await;
        let ready = server.wait_ready().await;
        assert_eq!(
            ready["max_permission_mode"], "bypassPermissions",
            "{flags:?}: {ready}"
        );
        let r = server
            .call_ok(
                "pool_run",
                json!({ "prompt": "MOCK_SHOW_CONFIG", "permission_mode": "bypassPermissions" }),
            )
            .await;
        assert!(ran_in(&r, "bypassPermissions"), "{flags:?}: {r}");
        server.close().await;
    }
}

/// A projects file naming `repo` as `app`, and the server's flags to use it.
fn projects(scratch: &Scratch, repo: &Path) -> String {
    let file = scratch.join("projects.json");
    std::fs::write(
        &file,
        json!({ "app": { "path": repo, "defaultBranch": "main" } }).to_string(),
    )
    .unwrap();
    file.to_string_lossy().into_owned()
}

/// The worktrees git knows for `repo` (its own checkout is one).
fn worktrees(repo: &Path) -> usize {
    git(repo, &["worktree", "list", "--porcelain"])
        .lines()
        .filter(|l| l.starts_with("worktree "))
        .count()
}

const COMMIT_SPEC: &str = "MOCK_SHELL:echo built > BUILT && git add BUILT && git commit -qm build && echo \"FINAL COMMIT: $(git rev-parse HEAD)\"";

#[tokio::test]
async fn a_build_the_server_does_not_allow_is_refused_before_a_worktree_or_process_exists() {
    let scratch = Scratch::new("build-ceiling");
    let repo = scratch.join("repo");
    init_repo(&repo);
    let file = projects(&scratch, &repo);
    let cases = [
        (
            vec!["--allowed-tools", "Read,Grep"],
            "--allowed-tools (Read,Grep) does not allow",
        ),
        (
            vec!["--max-permission-mode", "default"],
            "permission ceiling \"default\"",
        ),
    ];
    for (flags, needle) in cases {
        let server = Server::start(
            ServerOptions::fake(1)
                .args(&["--projects", &file])
                .args(&flags),
        )
        .await;
        server.wait_ready().await;
        let processes = server.processes_started();
        server
            .expect_argument_error(
                "claude_build",
                json!({ "project": "app", "spec": COMMIT_SPEC, "branch": "feat/refused", "runTests": false }),
                needle,
            )
            .await;
        assert_nothing_ran(&server, processes).await;
        assert_eq!(worktrees(&repo), 1, "{flags:?}: a worktree was added");
        assert_eq!(
            git(&repo, &["branch", "--list", "feat/refused"]),
            "",
            "{flags:?}: the branch was created"
        );
        let builds = server.home().join(".local/state/claude-pool/pool-builds");
        let made = std::fs::read_dir(&builds).map(|d| d.count()).unwrap_or(0);
        assert_eq!(
            made,
            0,
            "{flags:?}: something was made in {}",
            builds.display()
        );
        server.close().await;
    }
}

#[tokio::test]
async fn a_build_gets_the_shell_rules_of_allowed_tools_and_nothing_more() {
    let scratch = Scratch::new("build-tools");
    let repo = scratch.join("repo");
    init_repo(&repo);
    let file = projects(&scratch, &repo);
    let server = Server::start(ServerOptions::fake(1).args(&[
        "--projects",
        &file,
        "--allowed-tools",
        "Read,Bash(git:*)",
    ]))
    .await;
    let r = server
        .call_ok(
            "claude_build",
            json!({ "project": "app", "spec": COMMIT_SPEC, "branch": "feat/tools", "runTests": false }),
        )
        .await;
    let id = r["jobId"].as_str().unwrap().to_owned();
    server.wait_task(&id).await;
    let job = server
        .call_ok("claude_job_status", json!({ "jobId": id }))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    let tools: Vec<String> = server
        .fake_events()
        .iter()
        .filter(|e| e["event"] == "start")
        .filter_map(|e| {
            let args: Vec<&str> = e["args"]
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let i = args.iter().position(|a| *a == "--allowedTools")?;
            args.get(i + 1).map(|t| (*t).to_owned())
        })
        .collect();
    assert_eq!(
        tools,
        ["Bash(git:*)"],
        "the build's process ran with other tools"
    );
    server.close().await;
}

#[tokio::test]
async fn the_embedding_api_holds_the_same_ceiling() {
    use claude_pool::protocol::PermissionMode;
    use claude_pool::protocol::tools::{ChainParams, ChainStepParams};
    use claude_pool::{Pool, PoolError, TaskSpec};

    let scratch = Scratch::new("embedded-ceiling");
    let log = scratch.join("fake.log");
    let pool = Pool::builder()
        .slots(1)
        .claude_bin(claude_pool_tests::fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_LOG", &log)
        .build()
        .await
        .expect("pool starts");
    let refused = |r: Result<(), PoolError>, what: &str, needle: &str| match r {
        Err(PoolError::InvalidArgument(e)) => assert!(e.contains(needle), "{what}: {e}"),
        Err(other) => panic!("{what}: expected an invalid argument, got {other}"),
        Ok(_) => panic!("{what} was accepted"),
    };
    let ceiling = "permission ceiling \"acceptEdits\"";
    let bypass = TaskSpec::new("x").permission_mode(PermissionMode::BypassPermissions);
    refused(pool.submit(bypass).await.map(|_| ()), "submit", ceiling);
    let batch = vec![
        TaskSpec::new("a"),
        TaskSpec::new("b").permission_mode(PermissionMode::Auto),
    ];
    refused(
        pool.submit_many(batch).await.map(|_| ()),
        "submit_many",
        ceiling,
    );
    let chain = ChainParams {
        steps: vec![ChainStepParams {
            prompt: "a".into(),
            ..ChainStepParams::default()
        }],
        permission_mode: Some(PermissionMode::BypassPermissions),
        ..ChainParams::default()
    };
    refused(
        pool.submit_chain(chain, None).await.map(|_| ()),
        "submit_chain",
        ceiling,
    );
    refused(
        pool.submit(TaskSpec::new("x").model("--settings"))
            .await
            .map(|_| ()),
        "a model starting with -",
        "model",
    );
    let status = pool.status().await.expect("status");
    assert_eq!(status.max_permission_mode, PermissionMode::AcceptEdits);
    assert_eq!(status.tasks.total, 0, "a refused task was queued");
    assert_eq!(status.chains.total, 0, "a refused chain was queued");
    let turns = claude_pool_tests::read_fake_log(&log)
        .iter()
        .filter(|e| e["event"] == "turn_start")
        .count();
    assert_eq!(turns, 0, "a refused task reached Claude");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_task_augmented_call_above_the_ceiling_is_refused_too() {
    let server = Server::start(ServerOptions::fake(1).tasks_extension()).await;
    server.wait_ready().await;
    let processes = server.processes_started();
    let cases = [
        (
            "pool_run",
            json!({ "prompt": "x", "permission_mode": "bypassPermissions" }),
        ),
        (
            "pool_fan_out",
            json!({ "prompts": ["a"], "permission_mode": "auto" }),
        ),
        (
            "pool_chain",
            json!({ "steps": [{ "prompt": "a" }], "permission_mode": "bypassPermissions" }),
        ),
    ];
    for (tool, args) in cases {
        let Value::Object(map) = args else {
            unreachable!("the arguments are objects")
        };
        let params = rmcp::model::CallToolRequestParams::new(tool.to_owned()).with_arguments(map);
        match server.client().call_tool_once(params).await {
            Err(rmcp::ServiceError::McpError(e)) => {
                assert_eq!(
                    e.code,
                    rmcp::model::ErrorCode::INVALID_PARAMS,
                    "{tool}: {e:?}"
                );
                assert!(
                    e.message.contains("permission ceiling \"acceptEdits\""),
                    "{tool}: {e:?}"
                );
            }
            other => panic!("{tool} above the ceiling was accepted as a task: {other:?}"),
        }
    }
    assert_nothing_ran(&server, processes).await;
    server.close().await;
}
