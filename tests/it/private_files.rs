//! What the server creates outside its store is private whatever the umask: under umask 022
//! (which would make files 0644 and directories 0755) the `--log-file` is 0600, the
//! directory of build worktrees and of slot worktrees is 0700, and so are the store's
//! directories; its files (database, WAL, shared memory, lock) are 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use claude_pool_tests::Scratch;
use claude_pool_tests::git::init_repo;
use claude_pool_tests::server::{Server, ServerOptions, Transport};
use serde_json::json;

/// The permission bits of `path`.
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

const COMMIT_SPEC: &str = "MOCK_SHELL:echo built > BUILT && git add BUILT && git commit -qm build && echo \"FINAL COMMIT: $(git rev-parse HEAD)\"";

#[tokio::test]
async fn the_log_file_and_the_worktrees_parents_are_private_under_umask_022() {
    let scratch = Scratch::new("private");
    let repo = scratch.join("repo");
    init_repo(&repo);
    let projects = scratch.join("projects.json");
    std::fs::write(
        &projects,
        json!({ "app": { "path": repo, "defaultBranch": "main" } }).to_string(),
    )
    .unwrap();
    let log = scratch.join("pool.log");
    // The log goes to the file, so the HTTP transport (which reads the address from the
    // server's stderr) cannot be used.
    let server = Server::start(
        ServerOptions::fake(1)
            .transport(Transport::Stdio)
            .umask(0o022)
            .args(&[
                "--log-file",
                log.to_str().unwrap(),
                "--projects",
                projects.to_str().unwrap(),
                "--worktree",
                "--cwd",
                repo.to_str().unwrap(),
            ]),
    )
    .await;
    server.wait_ready().await;
    assert_eq!(mode(&log), 0o600, "--log-file");
    let slot_worktrees = repo.join(".git/claude-pool/worktrees");
    assert_eq!(mode(&slot_worktrees), 0o700, "{}", slot_worktrees.display());
    let r = server
        .call_ok(
            "claude_build",
            json!({ "project": "app", "spec": COMMIT_SPEC, "branch": "feat/private", "runTests": false }),
        )
        .await;
    let id = r["jobId"].as_str().unwrap().to_owned();
    let done = server.wait_task(&id).await;
    assert_eq!(done["status"], "completed", "{done}");
    // The project's store (the server's --cwd is the repository) and what is beside it.
    let db = claude_pool::StoreLocation::project_store_in(
        &server.home().join(".local/state/claude-pool"),
        &repo,
    );
    let builds = db.with_file_name("pool-builds");
    assert_eq!(mode(&builds), 0o700, "{}", builds.display());
    let beside = |suffix: &str| {
        let mut s = db.clone().into_os_string();
        s.push(suffix);
        std::path::PathBuf::from(s)
    };
    for dir in [
        db.parent().unwrap().to_path_buf(),
        db.with_file_name("pool-transcripts"),
        beside(".servers"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    for file in [db.clone(), beside("-wal"), beside("-shm"), beside(".lock")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    // The umask did reach the server and its children: the fake CLI's own log, which it
    // creates with the default mode, is 0644.
    assert_eq!(
        mode(&server.fake_log),
        0o644,
        "the server did not run under umask 022"
    );
    server.close().await;
}
