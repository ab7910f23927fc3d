//! The durable store over stdio with the fake CLI: a server killed mid-job and restarted on
//! the same store, a graceful restart, startup errors for files that cannot be a store, a
//! second server on one store, and transcripts.

use std::path::Path;
use std::time::Duration;

use claude_pool_tests::server::{Server, ServerOptions, start_refused};
use claude_pool_tests::{Scratch, procs, within};
use serde_json::{Value, json};

/// Dollars of one API call at the fake's default model ($4 / $20 per million tokens).
fn call_usd(input: u64, output: u64) -> f64 {
    (input as f64 * 4.0 + output as f64 * 20.0) / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// A projects file with one project `p` in `dir`.
fn projects_file(scratch: &Scratch, dir: &Path) -> String {
    let file = scratch.join("projects.json");
    std::fs::write(
        &file,
        json!({ "p": { "path": dir, "defaultBranch": "main" } }).to_string(),
    )
    .unwrap();
    file.display().to_string()
}

async fn start(state: &Path, slots: usize, args: &[&str]) -> Server {
    Server::start(ServerOptions::fake(slots).state(state).args(args)).await
}

#[tokio::test]
async fn a_server_killed_mid_job_reads_interrupted_after_a_restart_and_the_queued_job_runs() {
    let scratch = Scratch::new("store-kill");
    let state = scratch.join("state");
    let work = scratch.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let projects = projects_file(&scratch, &work);
    let args = ["--projects", projects.as_str(), "--budget-usd", "10"];

    let server = start(&state, 2, &args).await;
    let done = server
        .call_ok(
            "claude_run",
            json!({ "project": "p", "prompt": "MOCK_USAGE:1000,100 MOCK_TEXT: kept" }),
        )
        .await;
    let done_id = done["jobId"].as_str().unwrap().to_owned();
    let finished = server.wait_task(&done_id).await;
    assert_eq!(finished["status"], "completed", "{finished}");
    let long = server
        .call_ok(
            "claude_run",
            json!({ "project": "p", "prompt": "MOCK_SLEEP:60" }),
        )
        .await["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    let queued = server
        .call_ok(
            "claude_run",
            json!({ "project": "p", "prompt": "MOCK_TEXT: after the crash" }),
        )
        .await["jobId"]
        .as_str()
        .unwrap()
        .to_owned();
    server.wait_started(&long).await;
    // One job per project: the second waits behind the first.
    let q = server
        .call_ok("claude_job_status", json!({ "jobId": queued }))
        .await;
    assert_eq!(q["state"], "queued", "{q}");
    server.signal_and_wait(libc::SIGKILL).await;

    let server = start(&state, 2, &args).await;
    let interrupted = server
        .call_ok("claude_job_status", json!({ "jobId": long }))
        .await;
    assert_eq!(interrupted["state"], "interrupted", "{interrupted}");
    assert!(
        interrupted["error"]
            .as_str()
            .unwrap_or_default()
            .contains("server stopped while the task was running"),
        "{interrupted}"
    );
    let kept = server
        .call_ok("claude_job_status", json!({ "jobId": done_id }))
        .await;
    assert_eq!(kept["state"], "done");
    assert_eq!(kept["output"], "kept");
    let after = server.wait_task(&queued).await;
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(after["output"], "after the crash");
    let spend = server.status().await["spend_usd"].as_f64().unwrap();
    let first = call_usd(1000, 100);
    let last = after["spend_usd"].as_f64().unwrap();
    assert!(
        close(spend, first + last),
        "ledger {spend} != {first} + {last}"
    );
    let budget = server
        .read_resource("pool://budget")
        .await
        .expect("pool://budget");
    assert!(
        close(budget["budget_remaining"].as_f64().unwrap(), 10.0 - spend),
        "{budget}"
    );
    server.close().await;
}

#[tokio::test]
async fn what_a_killed_server_left_running_is_killed_by_the_next_server_on_its_store() {
    let scratch = Scratch::new("store-leftovers");
    let state = scratch.join("state");
    let server = start(&state, 1, &[]).await;
    // The task's progress announces the grandchild it started ("<task>: child <pid>").
    let call = server
        .start_call("pool_run", json!({ "prompt": "MOCK_CHILD:60" }))
        .await;
    let announced = server
        .progress_until(&call.progress_token, "the fake's child announcement", |m| {
            m.contains("child ")
        })
        .await;
    let task = announced
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':')
        .to_owned();
    let grandchild: u32 = announced
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {announced:?}"));
    server.wait_started(&task).await;
    server.crash().await;
    // The kernel killed the CLI (its parent died), not the CLI's own child: it is an orphan
    // now, still in the dead slot's process group.
    assert!(
        procs::exists(grandchild) && procs::state(grandchild) != Some('Z'),
        "the grandchild {grandchild} should outlive a SIGKILLed server"
    );

    let server = start(&state, 1, &[]).await;
    procs::wait_exit(
        grandchild,
        Duration::from_secs(10),
        "the grandchild a killed server left, after the next server started on its store",
    )
    .await;
    let r = server
        .call_ok("pool_result", json!({ "task_id": task }))
        .await;
    assert_eq!(r["status"], "interrupted", "{r}");
    assert!(
        server
            .log()
            .contains("killed what a previous server on this store left running"),
        "the sweep is logged"
    );
    server.close().await;
}

#[tokio::test]
async fn after_a_graceful_restart_results_read_the_same_and_a_new_run_starts_from_zero() {
    let scratch = Scratch::new("store-restart");
    let state = scratch.join("state");
    let server = start(&state, 1, &["--budget-usd", "5"]).await;
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:3000,200 MOCK_TEXT: before the restart" }),
        )
        .await;
    let id = r["task_id"].as_str().unwrap().to_owned();
    server
        .call_ok(
            "context_set",
            json!({ "key": "lang", "value": "rust-context-value" }),
        )
        .await;
    let chain = server
        .call_ok(
            "pool_chain",
            json!({ "steps": [{ "prompt": "MOCK_TEXT: one" }, { "prompt": "MOCK_ECHO_PROMPT {previous_output}" }] }),
        )
        .await;
    let chain_id = chain["chain_id"].as_str().unwrap().to_owned();
    let chain_spend = chain["total_spend"].as_f64().unwrap();
    let first_run = server.status().await["run"]["id"].clone();
    server.close().await;

    let server = start(&state, 1, &["--budget-usd", "5"]).await;
    let again = server
        .call_ok("pool_result", json!({ "task_id": id }))
        .await;
    assert_eq!(again["status"], "completed");
    assert_eq!(again["output"], "before the restart");
    assert!(close(
        again["spend_usd"].as_f64().unwrap(),
        call_usd(3000, 200)
    ));
    assert_eq!(again["tokens_used"]["input"], 3000);
    let c = server
        .call_ok("pool_chain_result", json!({ "chain_id": chain_id }))
        .await;
    assert_eq!(c["status"], chain["status"], "{c}");
    assert_eq!(c["final_output"], chain["final_output"]);

    // A new run: nothing spent, nothing counted, the whole budget left; the earlier run's
    // totals apart.
    let status = server.status().await;
    assert_ne!(status["run"]["id"], first_run, "{status}");
    assert_eq!(status["run"]["continued"], false);
    assert_eq!(status["spend_usd"], 0.0, "{status}");
    assert_eq!(status["budget_remaining"], 5.0, "{status}");
    assert_eq!(status["tasks"]["total"], 0, "{status}");
    let earlier = call_usd(3000, 200) + chain_spend;
    assert!(
        close(status["lifetime"]["spend_usd"].as_f64().unwrap(), earlier),
        "{status}"
    );
    assert_eq!(status["lifetime"]["tasks"]["completed"], 3, "{status}");
    let budget = server
        .read_resource("pool://budget")
        .await
        .expect("pool://budget");
    assert_eq!(budget["period"], "run", "{budget}");
    assert_eq!(budget["spend_usd"], 0.0, "{budget}");
    assert!(
        close(budget["lifetime_spend_usd"].as_f64().unwrap(), earlier),
        "{budget}"
    );
    // The earlier run's context is gone, and never reaches a prompt of this one.
    server
        .expect_argument_error("context_get", json!({ "key": "lang" }), "not found")
        .await;
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_ECHO_PROMPT" }))
        .await;
    let out = r["output"].as_str().unwrap();
    assert!(!out.contains("rust-context-value"), "{out}");
    assert!(!out.contains("pool_context"), "{out}");
    server.close().await;
}

#[tokio::test]
async fn after_kill_9_the_next_server_continues_the_run_with_its_spend_budget_and_context() {
    let scratch = Scratch::new("store-continue");
    let state = scratch.join("state");
    let server = start(&state, 1, &["--budget-usd", "5"]).await;
    server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:5000,100 MOCK_TEXT: spent" }),
        )
        .await;
    server
        .call_ok(
            "context_set",
            json!({ "key": "lang", "value": "kept-context" }),
        )
        .await;
    let before = server.status().await;
    server.crash().await;

    let server = start(&state, 1, &["--budget-usd", "5"]).await;
    let status = server.status().await;
    assert_eq!(status["run"]["id"], before["run"]["id"], "{status}");
    assert_eq!(status["run"]["continued"], true, "{status}");
    let spent = call_usd(5000, 100);
    assert!(
        close(status["spend_usd"].as_f64().unwrap(), spent),
        "{status}"
    );
    assert!(
        close(status["budget_remaining"].as_f64().unwrap(), 5.0 - spent),
        "{status}"
    );
    assert_eq!(status["tasks"]["completed"], 1, "{status}");
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_ECHO_PROMPT" }))
        .await;
    assert!(
        r["output"].as_str().unwrap().contains("kept-context"),
        "{r}"
    );
    server.close().await;
}

#[tokio::test]
async fn a_day_window_keeps_its_spend_across_a_graceful_restart() {
    let scratch = Scratch::new("store-window");
    let state = scratch.join("state");
    let args = ["--budget-usd", "5", "--budget-period", "day"];
    let server = start(&state, 1, &args).await;
    server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:2000,100 MOCK_TEXT: spent today" }),
        )
        .await;
    server.close().await;

    let server = start(&state, 1, &args).await;
    let budget = server
        .read_resource("pool://budget")
        .await
        .expect("pool://budget");
    let spent = call_usd(2000, 100);
    assert_eq!(budget["period"], "day", "{budget}");
    assert!(
        close(budget["spend_usd"].as_f64().unwrap(), spent),
        "{budget}"
    );
    assert!(
        close(budget["budget_remaining"].as_f64().unwrap(), 5.0 - spent),
        "{budget}"
    );
    assert_eq!(budget["run_spend_usd"], 0.0, "a new run: {budget}");
    // Today's window, from midnight UTC, computed here from the clock.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let midnight = std::time::UNIX_EPOCH + Duration::from_secs(now - now % 86_400);
    let tomorrow = midnight + Duration::from_secs(86_400);
    assert_eq!(
        budget["window_started_at"],
        humantime::format_rfc3339_seconds(midnight).to_string(),
        "{budget}"
    );
    assert_eq!(
        budget["window_ends_at"],
        humantime::format_rfc3339_seconds(tomorrow).to_string(),
        "{budget}"
    );
    server.close().await;
}

#[tokio::test]
async fn queued_tasks_survive_a_graceful_restart_and_run_on_the_next_server() {
    let scratch = Scratch::new("store-queued");
    let state = scratch.join("state");
    let server = start(&state, 1, &[]).await;
    let (call, _token, running) = server.start_run("MOCK_SLEEP:60").await;
    server.wait_started(&running).await;
    let waiting = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_TEXT: my turn" }))
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    drop(call);
    server.close().await;

    let server = start(&state, 1, &[]).await;
    let was_running = server
        .call_ok("pool_result", json!({ "task_id": running }))
        .await;
    assert_eq!(was_running["status"], "interrupted", "{was_running}");
    let r = server.wait_task(&waiting).await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "my turn");
    server.close().await;
}

#[tokio::test]
async fn an_explicit_db_is_refused_while_servers_use_it_naming_one() {
    let scratch = Scratch::new("store-twice");
    let state = scratch.join("state");
    let server = start(&state, 1, &[]).await;
    let db = Server::default_db(&state);
    assert_eq!(
        server.status().await["store"]["path"],
        db.display().to_string()
    );
    let home = state.join("home");
    let err = start_refused(
        &[
            "--claude-bin",
            claude_pool_tests::fake_claude_bin().to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        &[("HOME", home.to_str().unwrap())],
    )
    .await;
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {}", server.pid)), "{err}");
    // The first server is unharmed.
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: still here" }))
        .await;
    assert_eq!(r["output"], "still here");
    server.close().await;
}

#[tokio::test]
async fn a_second_server_on_an_explicit_db_is_refused_naming_the_first() {
    let scratch = Scratch::new("store-twice-db");
    let db = scratch.join("mine.db");
    let db_arg = db.display().to_string();
    let server = Server::start(ServerOptions::fake(1).args(&["--db", &db_arg])).await;
    assert_eq!(server.status().await["store"]["mode"], "exclusive");
    let err = start_refused(
        &[
            "--claude-bin",
            claude_pool_tests::fake_claude_bin().to_str().unwrap(),
            "--db",
            &db_arg,
        ],
        &[],
    )
    .await;
    assert!(err.contains(&db_arg), "{err}");
    assert!(err.contains(&format!("pid {}", server.pid)), "{err}");
    server.close().await;
}

async fn refused_store(contents: Option<&[u8]>, needle: &str) {
    let scratch = Scratch::new("store-bad");
    let db = scratch.join("pool.db");
    if let Some(bytes) = contents {
        std::fs::write(&db, bytes).unwrap();
    }
    let started = std::time::Instant::now();
    let err = start_refused(
        &[
            "--claude-bin",
            claude_pool_tests::fake_claude_bin().to_str().unwrap(),
            "--db",
            db.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    assert!(err.contains(&db.display().to_string()), "{err}");
    assert!(err.contains(needle), "{needle:?} not in {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    if let Some(bytes) = contents {
        assert_eq!(std::fs::read(&db).unwrap(), bytes, "the file was changed");
    }
}

#[tokio::test]
async fn a_corrupt_store_file_is_refused_and_left_untouched() {
    let junk: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    refused_store(Some(&junk), "not a claude-pool store").await;
}

#[tokio::test]
async fn a_foreign_sqlite_file_is_refused_and_left_untouched() {
    // Another program's database, e.g. a ClaudeMCP jobs.db.
    let scratch = Scratch::new("store-foreign");
    let path = scratch.join("jobs.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE jobs (id TEXT PRIMARY KEY, state TEXT); INSERT INTO jobs VALUES ('a', 'done');")
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    refused_store(Some(&bytes), "jobs").await;
}

#[tokio::test]
async fn a_store_path_that_is_a_directory_is_refused() {
    let scratch = Scratch::new("store-dir");
    let dir = scratch.join("pool.db");
    std::fs::create_dir_all(&dir).unwrap();
    let err = start_refused(
        &[
            "--claude-bin",
            claude_pool_tests::fake_claude_bin().to_str().unwrap(),
            "--db",
            dir.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(err.contains(&dir.display().to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn a_tasks_transcript_holds_every_event_and_the_whole_output() {
    let server = Server::start(ServerOptions::fake(1)).await;
    // An answer longer than the 50 KiB the store's column keeps.
    let big = "x".repeat(60 * 1024);
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TEXT: {big}\nend") }),
        )
        .await;
    let id = r["task_id"].as_str().unwrap().to_owned();
    let mut text = String::new();
    let mut offset = 0u64;
    loop {
        let page = server
            .call_ok(
                "pool_transcript",
                json!({ "task_id": id, "offset": offset, "max_bytes": 32768 }),
            )
            .await;
        text.push_str(page["ndjson"].as_str().unwrap());
        match page["next_offset"].as_u64() {
            Some(n) => offset = n,
            None => break,
        }
    }
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:.200}")))
        .collect();
    assert_eq!(
        events.first().unwrap()["type"],
        "user",
        "the prompt comes first"
    );
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "system" && e["subtype"] == "init")
    );
    let result = events.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["result"].as_str().unwrap(), big);
    // The stored answer is the last 50 KiB, marked as truncated, once the scheduler has
    // forgotten the task; the live one is whole.
    assert_eq!(r["output"].as_str().unwrap(), big);
    server
        .expect_argument_error(
            "pool_transcript",
            json!({ "task_id": "task-000000000000" }),
            "no transcript for \"task-000000000000\"",
        )
        .await;
    server.close().await;
}

/// Holds the write lock of the SQLite file at `argv[1]` until stdin closes.
const HOLD_WRITE_LOCK: &str = "import sqlite3, sys
c = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
c.execute('BEGIN EXCLUSIVE')
print('locked', flush=True)
sys.stdin.read()
c.execute('ROLLBACK')
";

#[tokio::test]
async fn no_prompt_reaches_claude_while_the_store_cannot_record_its_start() {
    use tokio::io::AsyncBufReadExt;
    let scratch = Scratch::new("store-held");
    let state = scratch.join("state");
    let server = start(&state, 1, &[]).await;
    server.wait_ready().await;
    let db = Server::default_db(&state);
    // Another connection takes the store's write lock: every commit of the server waits
    // out its busy timeout (5 s) and fails.
    let mut locker = tokio::process::Command::new("python3")
        .args(["-c", HOLD_WRITE_LOCK])
        .arg(&db)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let mut out = tokio::io::BufReader::new(locker.stdout.take().unwrap()).lines();
    let line = within(
        Duration::from_secs(30),
        "the locker's `locked`",
        out.next_line(),
    )
    .await;
    assert_eq!(line.unwrap().as_deref(), Some("locked"));

    let r = server
        .call("pool_submit", json!({ "prompt": "MOCK_TEXT: held back" }))
        .await;
    assert_eq!(
        r.is_error,
        Some(true),
        "a task the store cannot record is refused: {r:?}"
    );
    // The task was dispatched at once; its slot is free again only once it ended there.
    server.wait_ready().await;
    assert_eq!(
        server.turns_started(),
        0,
        "a prompt reached the CLI though its start was never committed: {:?}",
        server.fake_events()
    );

    drop(locker.stdin.take());
    within(Duration::from_secs(30), "the locker's exit", locker.wait())
        .await
        .unwrap();
    let after = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: after the lock" }))
        .await;
    assert_eq!(after["status"], "completed", "{after}");
    assert_eq!(after["output"], "after the lock", "{after}");
    assert_eq!(server.turns_started(), 1, "{:?}", server.fake_events());
    server.close().await;
}
