//! Several sessions, as a user has them: servers started with default flags (the README's
//! `.mcp.json`), two in one project and others in other projects, all at once; a server
//! started while another is stopping; a task's own cap; a bounded store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_pool_tests::server::{Server, ServerOptions};
use claude_pool_tests::{Scratch, within};
use serde_json::json;

/// A server with default flags whose HOME is under `state` and whose project is `dir`.
async fn in_project(state: &Path, dir: &Path) -> Server {
    let dir = dir.display().to_string();
    Server::start(ServerOptions::fake(1).state(state).args(&["--cwd", &dir])).await
}

fn project(scratch: &Scratch, name: &str) -> PathBuf {
    let dir = scratch.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn two_servers_in_one_project_both_serve_and_answer_for_each_others_tasks() {
    let scratch = Scratch::new("sessions-one-project");
    let state = scratch.join("state");
    let dir = project(&scratch, "app");
    let first = in_project(&state, &dir).await;
    let second = in_project(&state, &dir).await;
    let a = first
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: from the first" }))
        .await;
    let b = second
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: from the second" }),
        )
        .await;
    let (s1, s2) = (first.status().await, second.status().await);
    assert_eq!(
        s1["store"]["path"], s2["store"]["path"],
        "one project, one store"
    );
    assert_eq!(s1["store"]["mode"], "project");
    assert_ne!(
        s1["run"]["id"], s2["run"]["id"],
        "each session is a run of its own"
    );
    // Each counts only its own run.
    assert_eq!(s1["tasks"]["total"], 1, "{s1}");
    assert_eq!(s2["tasks"]["total"], 1, "{s2}");
    // A task id from either server is answered by the other.
    let seen = second
        .call_ok("pool_result", json!({ "task_id": a["task_id"] }))
        .await;
    assert_eq!(seen["status"], "completed", "{seen}");
    assert_eq!(seen["output"], "from the first");
    let seen = first
        .call_ok("pool_result", json!({ "task_id": b["task_id"] }))
        .await;
    assert_eq!(seen["output"], "from the second", "{seen}");
    first.close().await;
    second.close().await;
}

#[tokio::test]
async fn servers_in_two_projects_share_nothing_queued_set_or_spent() {
    let scratch = Scratch::new("sessions-two-projects");
    let state = scratch.join("state");
    let (dir_a, dir_b) = (project(&scratch, "a"), project(&scratch, "b"));
    // Both at once, as two Claude Code windows on two projects.
    let a = in_project(&state, &dir_a).await;
    let b = in_project(&state, &dir_b).await;
    a.call_ok(
        "context_set",
        json!({ "key": "secret-plan", "value": "context-of-project-a" }),
    )
    .await;
    let spent = a
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:1000,10 MOCK_TEXT: a" }),
        )
        .await;
    // Queued in project a when its server stops: it belongs to project a.
    let (call, _token, running) = a.start_run("MOCK_SLEEP:60").await;
    a.wait_started(&running).await;
    let queued = a
        .call_ok("pool_submit", json!({ "prompt": "MOCK_TEXT: queued in a" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(call);
    a.close().await;

    let status = b.status().await;
    assert_ne!(
        status["store"]["path"],
        Server::default_db(&state).display().to_string()
    );
    assert_eq!(status["spend_usd"], 0.0, "{status}");
    assert_eq!(status["lifetime"]["spend_usd"], 0.0, "{status}");
    assert_eq!(
        status["tasks"]["total"], 0,
        "nothing of a runs in b: {status}"
    );
    let echo = b
        .call_ok("pool_run", json!({ "prompt": "MOCK_ECHO_PROMPT" }))
        .await;
    let out = echo["output"].as_str().unwrap();
    assert!(!out.contains("context-of-project-a"), "{out}");
    b.expect_argument_error(
        "pool_result",
        json!({ "task_id": spent["task_id"] }),
        "task not found",
    )
    .await;
    b.close().await;

    // Project a's next server runs what was queued there.
    let a = in_project(&state, &dir_a).await;
    let r = a.wait_task(&queued).await;
    assert_eq!(r["output"], "queued in a", "{r}");
    a.close().await;
}

#[tokio::test]
async fn a_server_started_while_another_is_stopping_serves() {
    let scratch = Scratch::new("sessions-reconnect");
    let state = scratch.join("state");
    let dir = project(&scratch, "app");
    let old = in_project(&state, &dir).await;
    // A task runs, so the old server's stop takes a while (it interrupts and reaps it).
    let (_call, _token, running) = old.start_run("MOCK_SLEEP:60").await;
    old.wait_started(&running).await;
    claude_pool_tests::procs::kill(old.pid, libc::SIGTERM);
    let new = in_project(&state, &dir).await;
    let r = new
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: reconnected" }))
        .await;
    assert_eq!(r["output"], "reconnected");
    old.signal_and_wait(libc::SIGTERM).await;
    new.close().await;
}

#[tokio::test]
async fn a_task_that_spent_past_its_own_cap_reads_failed_naming_it() {
    let scratch = Scratch::new("sessions-task-cap");
    let server = Server::start(ServerOptions::fake(1).state(&scratch.join("state"))).await;
    // One API call of $0.42 against a $0.01 cap.
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:100000,1000 MOCK_TEXT: pricey", "max_budget_usd": 0.01 }),
        )
        .await;
    let body = claude_pool_tests::server::content(&r);
    assert_eq!(body["status"], "failed", "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap_or_default()
            .contains("max_budget_usd"),
        "{body}"
    );
    server.close().await;
}

/// Bytes of every regular file under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[tokio::test]
async fn megabyte_prompts_leave_the_store_and_transcripts_within_their_caps() {
    let scratch = Scratch::new("sessions-caps");
    let state = scratch.join("state");
    const MB: usize = 1 << 20;
    let (store_cap, transcripts_cap) = (8 * MB as u64, 12 * MB as u64);
    let server = Server::start(ServerOptions::fake(2).state(&state).args(&[
        "--store-max-bytes",
        &store_cap.to_string(),
        "--transcripts-max-bytes",
        &transcripts_cap.to_string(),
    ]))
    .await;
    let db = Server::default_db(&state);
    let prompt = format!("MOCK_ECHO_STATS {}", "x".repeat(MB));
    let mut ids = Vec::new();
    for _ in 0..30 {
        let id = server
            .call_ok("pool_submit", json!({ "prompt": prompt }))
            .await["task_id"]
            .as_str()
            .unwrap()
            .to_owned();
        ids.push(id);
    }
    for id in &ids {
        let r = server.wait_task(id).await;
        assert_eq!(r["status"], "completed", "{r}");
    }
    let last = server
        .call_ok("pool_result", json!({ "task_id": ids.last().unwrap() }))
        .await;
    assert_eq!(last["status"], "completed", "{last}");
    let status = server.status().await;
    assert_eq!(status["tasks"]["completed"], 30, "{status}");
    let transcripts = db.with_file_name("pool-transcripts");
    let t_bytes = dir_bytes(&transcripts);
    assert!(
        t_bytes <= transcripts_cap,
        "transcripts {t_bytes} > {transcripts_cap}"
    );
    assert!(t_bytes > 0, "the newest transcripts stay");
    server.close().await;
    // The 30 MB of prompts went through; the file holds the cap's worth of rows (with
    // retention's step of an eighth of it, and a MiB of pages, as slack).
    let db_bytes = std::fs::metadata(&db).unwrap().len();
    let slack = store_cap / 8 + MB as u64 * 2;
    assert!(
        db_bytes <= store_cap + slack,
        "store {db_bytes} > {store_cap}"
    );
    // A clean shutdown leaves the WAL empty: pool.db alone is the whole store.
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(wal_bytes, 0, "{}", PathBuf::from(wal).display());
}

#[tokio::test]
async fn every_file_and_directory_of_the_store_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let scratch = Scratch::new("sessions-modes");
    let state = scratch.join("state");
    let server = Server::start(ServerOptions::fake(1).state(&state)).await;
    server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: hello" }))
        .await;
    let db = Server::default_db(&state);
    let mode = |p: &Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let beside = |suffix: &str| {
        let mut s = db.clone().into_os_string();
        s.push(suffix);
        PathBuf::from(s)
    };
    let store_dir = db.parent().unwrap();
    for dir in [
        store_dir.to_path_buf(),
        store_dir.parent().unwrap().to_path_buf(),
        beside(".servers"),
        db.with_file_name("pool-transcripts"),
    ] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
    let transcripts: Vec<PathBuf> = std::fs::read_dir(db.with_file_name("pool-transcripts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!transcripts.is_empty());
    for file in [db.clone(), beside("-wal"), beside("-shm"), beside(".lock")]
        .into_iter()
        .chain(transcripts)
    {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    within(
        Duration::from_secs(30),
        "the server's close",
        server.close(),
    )
    .await;
}

#[tokio::test]
async fn a_live_server_runs_the_queue_of_a_server_of_its_project_that_was_killed() {
    let scratch = Scratch::new("sessions-adopt");
    let state = scratch.join("state");
    let dir = project(&scratch, "app");
    let doomed = in_project(&state, &dir).await;
    let survivor = in_project(&state, &dir).await;
    let (_call, _token, running) = doomed.start_run("MOCK_SLEEP:60").await;
    doomed.wait_started(&running).await;
    let queued = doomed
        .call_ok("pool_submit", json!({ "prompt": "MOCK_TEXT: adopted" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    doomed.crash().await;
    // The survivor finds the dead server's lease free (it looks every 10 s), runs what it
    // had queued, and reads what it ran as interrupted.
    let r = survivor
        .wait_status(&queued, "the adopted task's end", |s| {
            !matches!(s, "pending" | "running")
        })
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "adopted");
    let was = survivor
        .call_ok("pool_result", json!({ "task_id": running }))
        .await;
    assert_eq!(was["status"], "interrupted", "{was}");
    survivor.close().await;
}

#[tokio::test]
async fn a_live_server_runs_what_a_stopped_one_left_queued_within_its_own_limits() {
    let scratch = Scratch::new("sessions-stopped");
    let state = scratch.join("state");
    let dir = project(&scratch, "app");
    let d = dir.display().to_string();
    let generous = Server::start(ServerOptions::fake(1).state(&state).args(&[
        "--cwd",
        &d,
        "--max-permission-mode",
        "bypassPermissions",
    ]))
    .await;
    let strict = in_project(&state, &dir).await;
    let (_call, _token, running) = generous.start_run("MOCK_SLEEP:60").await;
    generous.wait_started(&running).await;
    let submit = |prompt: &str, mode: Option<&str>| {
        let mut args = json!({ "prompt": prompt });
        if let Some(m) = mode {
            args["permission_mode"] = json!(m);
        }
        args
    };
    let plain = generous
        .call_ok("pool_submit", submit("MOCK_TEXT: left by the first", None))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bypass = generous
        .call_ok(
            "pool_submit",
            submit("MOCK_TEXT: never here", Some("bypassPermissions")),
        )
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    generous.close().await;
    // The stopped server's queue is nobody's now: the live server takes it (every 10 s) and
    // runs it, but only within its own ceiling (acceptEdits by default).
    let r = strict
        .wait_status(&plain, "the left task's end", |s| {
            !matches!(s, "pending" | "running")
        })
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "left by the first");
    let r = strict
        .wait_status(&bypass, "the over-ceiling task's end", |s| {
            !matches!(s, "pending" | "running")
        })
        .await;
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("ceiling"),
        "{r}"
    );
    strict.close().await;
}
