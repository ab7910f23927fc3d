//! `claude_build` over stdio with the fake CLI (whose `MOCK_SHELL` really runs git in the
//! build's worktree): a commit on a new branch reported as the branch head, the project's
//! own checkout untouched, and the clear errors.

use std::path::Path;

use claude_pool_tests::Scratch;
use claude_pool_tests::git::{git, init_repo};
use claude_pool_tests::server::{Server, ServerOptions};
use serde_json::{Value, json};

/// A repository on `main` with one commit and an uncommitted change of the user's own.
fn repo(scratch: &Scratch) -> std::path::PathBuf {
    let dir = scratch.join("repo");
    init_repo(&dir);
    std::fs::write(dir.join("README"), "the user's own edit\n").unwrap();
    dir
}

struct Checkout {
    branch: String,
    head: String,
    status: String,
}

fn checkout(dir: &Path) -> Checkout {
    Checkout {
        branch: git(dir, &["rev-parse", "--abbrev-ref", "HEAD"]),
        head: git(dir, &["rev-parse", "HEAD"]),
        status: git(dir, &["status", "--porcelain"]),
    }
}

async fn server_for(scratch: &Scratch, dir: &Path) -> Server {
    let file = scratch.join("projects.json");
    std::fs::write(
        &file,
        json!({ "app": { "path": dir, "defaultBranch": "main" } }).to_string(),
    )
    .unwrap();
    Server::start(ServerOptions::fake(1).args(&["--projects", file.to_str().unwrap()])).await
}

const COMMIT_SPEC: &str = "MOCK_SHELL:echo built > BUILT && git add BUILT && git commit -qm build && echo done && echo \"FINAL COMMIT: $(git rev-parse HEAD)\"";

#[tokio::test]
async fn a_build_commits_on_its_branch_and_reports_the_head_without_touching_the_checkout() {
    let scratch = Scratch::new("build");
    let dir = repo(&scratch);
    let before = checkout(&dir);
    let server = server_for(&scratch, &dir).await;
    let r = server
        .call_ok(
            "claude_build",
            json!({ "project": "app", "spec": COMMIT_SPEC, "branch": "feat/built", "runTests": false }),
        )
        .await;
    assert_eq!(r["state"], "queued");
    let id = r["jobId"].as_str().unwrap().to_owned();
    server.wait_task(&id).await;
    let job: Value = server
        .call_ok("claude_job_status", json!({ "jobId": id }))
        .await;
    assert_eq!(job["state"], "done", "{job}");
    assert_eq!(job["kind"], "build");
    assert_eq!(job["branch"], "feat/built");
    let head = git(&dir, &["rev-parse", "refs/heads/feat/built"]);
    assert_eq!(job["commitSha"], head.as_str(), "{job}");
    assert!(
        job["output"]
            .as_str()
            .unwrap()
            .contains(&format!("FINAL COMMIT: {head}"))
    );
    assert_eq!(git(&dir, &["show", "feat/built:BUILT"]), "built");
    assert_eq!(
        git(&dir, &["rev-parse", "feat/built~1"]),
        before.head,
        "the branch starts at main"
    );
    let after = checkout(&dir);
    assert_eq!(after.branch, before.branch);
    assert_eq!(after.head, before.head);
    assert_eq!(
        after.status, before.status,
        "the user's own edit is untouched"
    );
    // The worktree is gone; the branch and its commit stay.
    let worktrees = git(&dir, &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 1, "{worktrees}");

    // The same branch again, a missing base: clear errors, nothing started.
    let turns = server.turns_started();
    server
        .expect_argument_error(
            "claude_build",
            json!({ "project": "app", "spec": COMMIT_SPEC, "branch": "feat/built" }),
            "branch \"feat/built\" already exists",
        )
        .await;
    server
        .expect_argument_error(
            "claude_build",
            json!({ "project": "app", "spec": COMMIT_SPEC, "branch": "feat/x", "baseBranch": "nope" }),
            "base branch \"nope\" does not exist",
        )
        .await;
    assert_eq!(server.turns_started(), turns);
    assert_eq!(checkout(&dir).head, before.head);
    server.close().await;
}

#[tokio::test]
async fn a_build_that_commits_nothing_fails_and_says_so() {
    let scratch = Scratch::new("build-none");
    let dir = repo(&scratch);
    let server = server_for(&scratch, &dir).await;
    let r = server
        .call_ok(
            "claude_build",
            json!({ "project": "app", "spec": "MOCK_SHELL:echo nothing > LEFT", "branch": "feat/none" }),
        )
        .await;
    let id = r["jobId"].as_str().unwrap().to_owned();
    server.wait_task(&id).await;
    let job = server
        .call_ok("claude_job_status", json!({ "jobId": id }))
        .await;
    assert_eq!(job["state"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("the build made no commit on \"feat/none\""),
        "{error}"
    );
    assert!(error.contains("uncommitted changes"), "{error}");
    server.close().await;
}
