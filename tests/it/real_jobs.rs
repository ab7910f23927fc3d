//! The job API and the store end to end with the pinned real Claude CLI against the mock of
//! the Messages API: run, status, resume by session id, a build committed by Claude's own
//! Bash tool, cancel, and a server killed mid-job then restarted on the same store.

use std::time::Duration;

use claude_pool_tests::git::{git, init_repo};
use claude_pool_tests::mock_anthropic::{MockServer, hermetic_cli_env};
use claude_pool_tests::procs::assert_group_gone;
use claude_pool_tests::server::{Server, ServerOptions};
use claude_pool_tests::{Scratch, real_claude_bin};
use serde_json::{Value, json};

struct Real {
    claude: std::path::PathBuf,
    mock: MockServer,
    scratch: Scratch,
    projects: String,
    db: String,
    repo: std::path::PathBuf,
}

impl Real {
    fn new() -> Option<Real> {
        let claude = real_claude_bin()?;
        let mock = MockServer::start().expect("mock API");
        let scratch = Scratch::new("real-jobs");
        let repo = scratch.join("repo");
        init_repo(&repo);
        let projects = scratch.join("projects.json");
        std::fs::write(
            &projects,
            json!({ "app": { "path": repo, "defaultBranch": "main" } }).to_string(),
        )
        .unwrap();
        let db = scratch.join("pool.db");
        Some(Real {
            claude,
            mock,
            projects: projects.display().to_string(),
            db: db.display().to_string(),
            repo,
            scratch,
        })
    }

    async fn server(&self) -> Server {
        let mut opts = ServerOptions {
            claude_bin: self.claude.clone(),
            slots: 1,
            args: Vec::new(),
            env: Vec::new(),
            state: None,
            transport: claude_pool_tests::server::Transport::from_env(),
            tasks_extension: false,
            elicitation: false,
            umask: None,
        }
        .args(&["--projects", &self.projects, "--db", &self.db]);
        for (k, v) in hermetic_cli_env(&self.mock.url(), self.scratch.path()) {
            opts = opts.env(&k, &v);
        }
        let server = Server::start(opts).await;
        server.wait_ready().await;
        server
    }
}

async fn run(server: &Server, args: Value) -> String {
    let r = server.call_ok("claude_run", args).await;
    r["jobId"].as_str().unwrap().to_owned()
}

async fn status(server: &Server, id: &str) -> Value {
    server
        .call_ok("claude_job_status", json!({ "jobId": id }))
        .await
}

#[tokio::test]
async fn real_cli_runs_resumes_cancels_and_survives_a_killed_server() {
    let Some(real) = Real::new() else { return };
    let server = real.server().await;
    let first = run(&server, json!({ "project": "app", "prompt": "MOCK_COUNT" })).await;
    server.wait_task(&first).await;
    let done = status(&server, &first).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["output"], "messages=2 users=1");
    let session = done["sessionId"].as_str().unwrap().to_owned();
    // The same conversation, continued with --resume: the API sees the earlier turn.
    let second = run(
        &server,
        json!({ "project": "app", "prompt": "MOCK_COUNT", "sessionId": session }),
    )
    .await;
    server.wait_task(&second).await;
    let resumed = status(&server, &second).await;
    assert_eq!(resumed["state"], "done", "{resumed}");
    assert_eq!(resumed["output"], "messages=4 users=2", "{resumed}");
    assert_eq!(resumed["sessionId"], session.as_str());

    // Cancel of a running job: its process group is gone.
    let slow = run(
        &server,
        json!({ "project": "app", "prompt": "MOCK_SLEEP:60 slow" }),
    )
    .await;
    server
        .wait_status(&slow, "the slow job running", |s| s == "running")
        .await;
    assert!(
        real.mock
            .wait_for_message_requests(3, Duration::from_secs(30))
            .await
    );
    let pid = server.status().await["slots"][0]["pid"].as_u64().unwrap() as u32;
    let c = server
        .call_ok("claude_cancel", json!({ "jobId": slow }))
        .await;
    assert_eq!(c["state"], "cancelled");
    assert_group_gone(pid, Duration::from_secs(7), "the cancelled job's group").await;

    // kill -9 mid-job, restart on the same store.
    let doomed = run(
        &server,
        json!({ "project": "app", "prompt": "MOCK_SLEEP:60 doomed" }),
    )
    .await;
    server.wait_started(&doomed).await;
    server.signal_and_wait(libc::SIGKILL).await;
    let server = real.server().await;
    let after = status(&server, &doomed).await;
    assert_eq!(after["state"], "interrupted", "{after}");
    assert_eq!(
        status(&server, &first).await["output"],
        "messages=2 users=1"
    );
    // The session still resumes after the restart.
    let third = run(
        &server,
        json!({ "project": "app", "prompt": "MOCK_COUNT", "sessionId": session }),
    )
    .await;
    server.wait_task(&third).await;
    assert_eq!(
        status(&server, &third).await["output"],
        "messages=6 users=3"
    );
    server.close().await;
}

#[tokio::test]
async fn real_cli_builds_on_a_branch_with_its_own_bash_tool() {
    let Some(real) = Real::new() else { return };
    let server = real.server().await;
    let before = git(&real.repo, &["rev-parse", "HEAD"]);
    let calls = json!([{ "name": "Bash", "input": {
        "command": "echo built > BUILT && git add BUILT && git commit -qm build && echo && echo \"FINAL COMMIT: $(git rev-parse HEAD)\"",
        "description": "commit the build"
    }}]);
    let spec = format!("Create BUILT. MOCK_CALLS:{calls}");
    let r = server
        .call_ok(
            "claude_build",
            json!({ "project": "app", "spec": spec, "branch": "feat/real", "runTests": false }),
        )
        .await;
    let id = r["jobId"].as_str().unwrap().to_owned();
    server.wait_task(&id).await;
    let job = status(&server, &id).await;
    assert_eq!(job["state"], "done", "{job}");
    let head = git(&real.repo, &["rev-parse", "refs/heads/feat/real"]);
    assert_eq!(job["commitSha"], head.as_str(), "{job}");
    assert_eq!(git(&real.repo, &["show", "feat/real:BUILT"]), "built");
    assert_eq!(git(&real.repo, &["rev-parse", "HEAD"]), before);
    assert_eq!(
        git(&real.repo, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "main"
    );
    server.close().await;
}
