//! `--worktree`: one git worktree per slot, over stdio with the fake CLI (whose
//! `MOCK_SHELL` really runs a command in the slot's working directory).

use std::path::Path;
use std::process::Command;

use claude_pool_tests::Scratch;
use claude_pool_tests::server::{Server, ServerOptions, finish_call};
use serde_json::{Value, json};

const IDENTITY: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "pool test"),
    ("GIT_AUTHOR_EMAIL", "pool@example.invalid"),
    ("GIT_COMMITTER_NAME", "pool test"),
    ("GIT_COMMITTER_EMAIL", "pool@example.invalid"),
];

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .envs(IDENTITY)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn repo() -> Scratch {
    let s = Scratch::new("repo");
    git(s.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(s.join("README"), "hello\n").unwrap();
    git(s.path(), &["add", "README"]);
    git(s.path(), &["commit", "-qm", "first"]);
    s
}

fn options(repo: &Path, slots: usize) -> ServerOptions {
    let mut o = ServerOptions::fake(slots).args(&["--worktree", "--cwd", &repo.to_string_lossy()]);
    for (k, v) in IDENTITY {
        o = o.env(k, v);
    }
    o
}

#[tokio::test]
async fn outside_a_git_repository_the_server_refuses_to_start() {
    let dir = Scratch::new("not-a-repo");
    let fake = claude_pool_tests::fake_claude_bin();
    let cwd = dir.path().to_string_lossy().into_owned();
    let ceiling = dir.path().parent().unwrap().to_string_lossy().into_owned();
    let stderr = claude_pool_tests::server::start_refused(
        &[
            "--claude-bin",
            &fake.to_string_lossy(),
            "--worktree",
            "--cwd",
            &cwd,
        ],
        &[("GIT_CEILING_DIRECTORIES", &ceiling)],
    )
    .await;
    assert!(stderr.contains("needs a git repository"), "{stderr}");
}

#[tokio::test]
async fn each_slot_works_in_its_own_worktree_and_what_a_task_commits_outlives_the_server() {
    let repo = repo();
    let server = Server::start(options(repo.path(), 2)).await;
    let status = server.wait_ready().await;
    let trees: Vec<&str> = status["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["worktree"].as_str().unwrap())
        .collect();
    assert_ne!(trees[0], trees[1]);
    // A commits a file while B, on the other slot at the same time, looks for it.
    let (a_call, _, _) = server
        .start_run("MOCK_SLEEP:0.3 MOCK_SHELL: echo a > a.txt && git add a.txt && git commit -qm from-a && git rev-parse HEAD")
        .await;
    let b = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_SHELL: ls; git status --porcelain" }),
        )
        .await;
    let a = claude_pool_tests::server::content(&finish_call(a_call, "task A").await);
    assert_eq!(a["status"], "completed", "{a}");
    let b_out = b["output"].as_str().unwrap();
    assert!(!b_out.contains("a.txt"), "B saw A's file: {b_out}");
    assert!(
        b_out.contains("README"),
        "B works in a checkout of the repository: {b_out}"
    );
    assert_ne!(a["worktree"], b["worktree"]);
    let a_out = a["output"].as_str().unwrap();
    let sha = a_out.rsplit("out=").next().unwrap().trim();
    assert_eq!(
        a["commit"].as_str(),
        Some(sha),
        "the result names the head commit: {a}"
    );
    let branch = a["branch"].as_str().unwrap().to_owned();
    assert!(branch.starts_with("claude-pool/slot-"), "{branch}");
    // The main checkout is untouched.
    assert_eq!(git(repo.path(), &["status", "--porcelain"]), "");
    assert!(!repo.join("a.txt").exists());
    server.close().await;
    // The branch and its commit outlive the server.
    assert_eq!(git(repo.path(), &["rev-parse", &branch]), sha);
    assert_eq!(
        git(repo.path(), &["log", "-1", "--format=%s", &branch]),
        "from-a"
    );
}

#[tokio::test]
async fn stale_worktrees_are_removed_on_start_only_when_they_hold_nothing_uncommitted() {
    let repo = repo();
    let server = Server::start(options(repo.path(), 3)).await;
    let status = server.wait_ready().await;
    let tree = |i: usize| status["slots"][i]["worktree"].as_str().unwrap().to_owned();
    let (clean, dirty) = (tree(1), tree(2));
    server.close().await;
    std::fs::write(Path::new(&dirty).join("unsaved.txt"), "work in progress\n").unwrap();
    // A new server with one slot: slot-1's and slot-2's worktrees are stale.
    let server = Server::start(options(repo.path(), 1)).await;
    server.wait_ready().await;
    assert!(
        !Path::new(&clean).exists(),
        "a clean stale worktree is removed"
    );
    assert!(
        Path::new(&dirty).join("unsaved.txt").exists(),
        "a worktree with uncommitted changes is kept"
    );
    let listed = git(repo.path(), &["worktree", "list"]);
    assert!(
        listed.contains(&dirty) && !listed.contains(&clean),
        "{listed}"
    );
    let branches = git(repo.path(), &["branch", "--list", "claude-pool/*"]);
    for slot in ["slot-0", "slot-1", "slot-2"] {
        assert!(branches.contains(slot), "branch of {slot} kept: {branches}");
    }
    let s: Value = server.status().await;
    assert_eq!(s["slots"].as_array().unwrap().len(), 1);
    server.close().await;
}
