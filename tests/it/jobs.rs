//! The job API over stdio with the fake CLI: projects and their queues, cancel and
//! deadlines, exact listing, sessions, builds on a branch, unknown names, SIGHUP reloads and
//! the recursion guard.

use std::path::{Path, PathBuf};
use std::time::Duration;

use claude_pool_tests::Scratch;
use claude_pool_tests::server::{Server, ServerOptions, content, first_text};
use serde_json::{Value, json};

fn write_projects(file: &Path, projects: &Value) {
    std::fs::write(file, projects.to_string()).unwrap();
}

struct Setup {
    scratch: Scratch,
    file: PathBuf,
    p: PathBuf,
    q: PathBuf,
}

/// Two project directories `p` and `q`, and a projects file naming both.
fn two_projects() -> Setup {
    let scratch = Scratch::new("jobs");
    let p = scratch.join("p");
    let q = scratch.join("q");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::create_dir_all(&q).unwrap();
    let file = scratch.join("projects.json");
    write_projects(
        &file,
        &json!({ "p": { "path": p, "defaultBranch": "main" }, "q": { "path": q } }),
    );
    Setup {
        scratch,
        file,
        p,
        q,
    }
}

async fn server_with(setup: &Setup, slots: usize, args: &[&str]) -> Server {
    let mut opts = ServerOptions::fake(slots).args(&["--projects", setup.file.to_str().unwrap()]);
    opts = opts.args(args);
    Server::start(opts).await
}

async fn submit(server: &Server, project: &str, prompt: &str) -> String {
    let r = server
        .call_ok(
            "claude_run",
            json!({ "project": project, "prompt": prompt }),
        )
        .await;
    assert_eq!(r["state"], "queued", "{r}");
    r["jobId"].as_str().unwrap().to_owned()
}

async fn job(server: &Server, id: &str) -> Value {
    server
        .call_ok("claude_job_status", json!({ "jobId": id }))
        .await
}

#[tokio::test]
async fn a_project_runs_one_job_at_a_time_in_its_own_directory_and_projects_run_in_parallel() {
    let setup = two_projects();
    let server = server_with(&setup, 2, &[]).await;
    server.wait_ready().await;
    let first = submit(&server, "p", "MOCK_SLEEP:60").await;
    let second = submit(&server, "p", "MOCK_SHELL:pwd").await;
    server
        .wait_status(&first, "p's first job running", |s| s == "running")
        .await;
    // q is not held back by p's queue, and runs in q's directory.
    let other = submit(&server, "q", "MOCK_SHELL:pwd").await;
    let q_done = server.wait_task(&other).await;
    assert_eq!(q_done["status"], "completed", "{q_done}");
    assert_eq!(
        q_done["output"],
        format!("shell rc=0 out={}", setup.q.display())
    );
    let waiting = job(&server, &second).await;
    assert_eq!(
        waiting["state"], "queued",
        "p runs one job at a time: {waiting}"
    );
    let cancelled = server
        .call_ok("claude_cancel", json!({ "jobId": first }))
        .await;
    assert_eq!(
        cancelled,
        json!({ "ok": true, "state": "cancelled", "message": cancelled["message"] })
    );
    let p_done = server.wait_task(&second).await;
    assert_eq!(
        p_done["output"],
        format!("shell rc=0 out={}", setup.p.display())
    );
    let status = job(&server, &second).await;
    assert_eq!(status["kind"], "run");
    assert_eq!(status["project"], "p");
    assert_eq!(status["state"], "done");
    for field in ["enqueuedAt", "startedAt", "finishedAt", "sessionId"] {
        assert!(status[field].is_string(), "{field} missing: {status}");
    }
    // Three claude_run jobs: two done, one cancelled; no other kind of work ran.
    let pool = server.status().await;
    let by_kind = &pool["tasks_by_kind"];
    assert_eq!(
        (
            by_kind["run"]["total"].as_u64(),
            by_kind["run"]["completed"].as_u64(),
            by_kind["run"]["cancelled"].as_u64(),
            by_kind["task"]["total"].as_u64(),
            by_kind["build"]["total"].as_u64(),
        ),
        (Some(3), Some(2), Some(1), Some(0), Some(0)),
        "{pool}"
    );
    server.close().await;
}

#[tokio::test]
async fn a_cancelled_queued_job_never_reaches_claude_and_a_running_one_is_killed_within_7s() {
    let setup = two_projects();
    let server = server_with(&setup, 1, &[]).await;
    server.wait_ready().await;
    let running = submit(&server, "p", "MOCK_IGNORE_TERM").await;
    let queued = submit(&server, "p", "MOCK_TEXT: this never reaches claude").await;
    let r = server
        .wait_status(&running, "the stubborn job running", |s| s == "running")
        .await;
    let c = server
        .call_ok("claude_cancel", json!({ "jobId": queued }))
        .await;
    assert_eq!(c["state"], "cancelled");
    let pid = server.status().await["slots"][0]["pid"].as_u64().unwrap() as u32;
    let started = std::time::Instant::now();
    let c = server
        .call_ok("claude_cancel", json!({ "jobId": running }))
        .await;
    assert_eq!(c["state"], "cancelled", "{c} {r}");
    claude_pool_tests::procs::assert_group_gone(
        pid,
        Duration::from_secs(7).saturating_sub(started.elapsed()),
        "the cancelled job's process group",
    )
    .await;
    let never_len = "MOCK_TEXT: this never reaches claude".len() as u64;
    let reached = server
        .fake_events()
        .iter()
        .filter(|e| e["event"] == "turn_start" && e["prompt_len"] == never_len)
        .count();
    assert_eq!(reached, 0, "the queued job reached Claude");
    let never = job(&server, &queued).await;
    assert_eq!(never["state"], "cancelled");
    assert!(never.get("startedAt").is_none(), "{never}");
    server.close().await;
}

#[tokio::test]
async fn a_job_past_its_timeout_fails_with_the_reason() {
    let setup = two_projects();
    let server = server_with(&setup, 1, &[]).await;
    let r = server
        .call_ok(
            "claude_run",
            json!({ "project": "p", "prompt": "MOCK_SLEEP:60", "timeoutMs": 1500 }),
        )
        .await;
    let id = r["jobId"].as_str().unwrap();
    server.wait_task(id).await;
    let j = job(&server, id).await;
    assert_eq!(j["state"], "failed", "{j}");
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .contains("timed out: no result within 1s 500ms"),
        "{j}"
    );
    server
        .expect_argument_error(
            "claude_run",
            json!({ "project": "p", "prompt": "x", "timeoutMs": 21_600_001u64 }),
            "timeoutMs must be between 1 and 21600000",
        )
        .await;
    server.close().await;
}

#[tokio::test]
async fn claude_list_jobs_filters_by_project_state_and_limit_exactly() {
    let setup = two_projects();
    let server = server_with(&setup, 2, &[]).await;
    // (project, prompt, state it ends in), submitted and finished one after the other.
    let plan = [
        ("p", "MOCK_TEXT: 1", "done"),
        ("q", "MOCK_TEXT: 2", "done"),
        ("p", "MOCK_STATUS:500", "failed"),
        ("p", "MOCK_TEXT: 4", "done"),
        ("q", "MOCK_STATUS:500", "failed"),
        ("p", "MOCK_TEXT: 6", "done"),
    ];
    let mut ids = Vec::new();
    for (project, prompt, _) in plan {
        let id = submit(&server, project, prompt).await;
        server.wait_task(&id).await;
        ids.push(id);
    }
    // A pool task is not a job.
    server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: t" }))
        .await;
    let expect =
        |project: Option<&str>, state: Option<&str>, limit: Option<usize>| -> Vec<String> {
            let mut v: Vec<String> = plan
                .iter()
                .zip(&ids)
                .filter(|((p, _, s), _)| {
                    project.is_none_or(|x| x == *p) && state.is_none_or(|x| x == *s)
                })
                .map(|(_, id)| id.clone())
                .rev()
                .collect();
            if let Some(n) = limit {
                v.truncate(n);
            }
            v
        };
    for (project, state, limit) in [
        (None, None, None),
        (Some("p"), None, None),
        (Some("q"), Some("failed"), None),
        (None, Some("done"), Some(3)),
        (Some("p"), Some("done"), Some(2)),
        (None, Some("running"), None),
        (Some("p"), None, Some(1)),
    ] {
        let mut args = json!({});
        if let Some(p) = project {
            args["project"] = json!(p);
        }
        if let Some(s) = state {
            args["state"] = json!(s);
        }
        if let Some(n) = limit {
            args["limit"] = json!(n);
        }
        let r = server.call_ok("claude_list_jobs", args.clone()).await;
        let got: Vec<String> = r["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["jobId"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, expect(project, state, limit), "{args}");
    }
    server
        .expect_argument_error("claude_list_jobs", json!({ "state": "finished" }), "state")
        .await;
    server.close().await;
}

#[tokio::test]
async fn unknown_projects_jobs_and_sessions_are_clear_errors_and_start_nothing() {
    let setup = two_projects();
    let server = server_with(&setup, 1, &[]).await;
    server.wait_ready().await;
    let processes = server.processes_started();
    server
        .expect_argument_error(
            "claude_run",
            json!({ "project": "nope", "prompt": "MOCK_TEXT: x" }),
            "unknown project \"nope\": the projects are p, q",
        )
        .await;
    server
        .expect_argument_error(
            "claude_job_status",
            json!({ "jobId": "task-123456789abc" }),
            "unknown job \"task-123456789abc\"",
        )
        .await;
    server
        .expect_argument_error(
            "claude_cancel",
            json!({ "jobId": "task-123456789abc" }),
            "unknown job \"task-123456789abc\"",
        )
        .await;
    server
        .expect_argument_error(
            "claude_run",
            json!({ "project": "p", "prompt": "MOCK_TEXT: x", "sessionId": "0b6c3f5e-8a37-4c1e-9d39-000000000000" }),
            "unknown session \"0b6c3f5e-8a37-4c1e-9d39-000000000000\"",
        )
        .await;
    server
        .expect_argument_error(
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: x", "session_id": "../../etc/passwd" }),
            "unknown session",
        )
        .await;
    assert_eq!(server.turns_started(), 0);
    assert_eq!(server.processes_started(), processes);
    server.close().await;
}

#[tokio::test]
async fn a_session_continues_its_conversation_one_call_at_a_time() {
    let server = Server::start(ServerOptions::fake(2)).await;
    let first = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_HISTORY" }))
        .await;
    assert_eq!(first["output"], "history=1");
    let session = first["session_id"].as_str().unwrap().to_owned();
    let second = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_HISTORY", "session_id": session }),
        )
        .await;
    assert_eq!(second["output"], "history=2", "{second}");
    assert_eq!(second["session_id"], session.as_str());
    // Without a session id a task never sees another task's conversation.
    let fresh = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_HISTORY" }))
        .await;
    assert_eq!(fresh["output"], "history=1");
    assert_ne!(fresh["session_id"], session.as_str());
    // Two calls on one session: serialized, both see the whole conversation in order.
    let since = claude_pool_tests::mono_ns();
    let a = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:0.5 MOCK_HISTORY", "session_id": session }),
        )
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:0.5 MOCK_HISTORY", "session_id": session }),
        )
        .await["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (ra, rb) = (server.wait_task(&a).await, server.wait_task(&b).await);
    assert_eq!(ra["output"], "history=3", "{ra}");
    assert_eq!(rb["output"], "history=4", "{rb}");
    assert_eq!(server.max_concurrent_turns_since(since), 1);
    server.close().await;
}

#[tokio::test]
async fn a_session_that_cannot_be_resumed_fails_fast_and_the_slot_goes_on() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let first = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: hello" }))
        .await;
    let session = first["session_id"].as_str().unwrap().to_owned();
    // Claude's own data for the session is gone (a wipe): the pool still knows the id.
    let state = server.scratch().join("fake-state");
    let mut removed = 0;
    for entry in std::fs::read_dir(&state).unwrap().flatten() {
        if entry.file_name().to_string_lossy().contains(&session) {
            std::fs::remove_file(entry.path()).unwrap();
            removed += 1;
        }
    }
    assert!(
        removed > 0,
        "no session file of {session} in {}",
        state.display()
    );
    let started = std::time::Instant::now();
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: again", "session_id": session }),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    let text = first_text(&r);
    assert!(
        text.contains(&format!("session {session} cannot be resumed")),
        "{text}"
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    let after = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: fine" }))
        .await;
    assert_eq!(after["output"], "fine");
    let s = server.status().await;
    assert_eq!(
        s["slots"][0]["restarts"], 0,
        "a bad session is not the slot's failure: {s}"
    );
    let _ = content;
    server.close().await;
}

#[tokio::test]
async fn sighup_reloads_the_projects_and_a_broken_file_keeps_the_old_ones() {
    let setup = two_projects();
    let server = server_with(&setup, 1, &[]).await;
    let names = |v: &Value| -> Vec<String> {
        v["projects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let r = setup.scratch.join("r");
    std::fs::create_dir_all(&r).unwrap();
    write_projects(
        &setup.file,
        &json!({ "q": { "path": setup.q }, "r": { "path": r, "maxConcurrent": 2 } }),
    );
    server.subscribe("pool://projects").await.unwrap();
    let note = claude_pool_tests::server::ResourceNote::Updated("pool://projects".into());
    claude_pool_tests::procs::kill(server.pid, libc::SIGHUP);
    server
        .resource_note_until("the reload after SIGHUP", |n| *n == note)
        .await;
    let want = vec!["q".to_owned(), "r".to_owned()];
    let listed = server.call_ok("claude_list_projects", json!({})).await;
    assert_eq!(names(&listed), want, "{listed}");
    server
        .expect_argument_error(
            "claude_run",
            json!({ "project": "p", "prompt": "MOCK_TEXT: x" }),
            "unknown project \"p\"",
        )
        .await;
    std::fs::write(&setup.file, "{ not json").unwrap();
    claude_pool_tests::procs::kill(server.pid, libc::SIGHUP);
    server
        .resource_note_until("the refused reload", |n| *n == note)
        .await;
    let report = server.read_resource("pool://projects").await.unwrap();
    assert!(
        report["last_reload_error"]
            .as_str()
            .is_some_and(|e| e.contains("projects.json")),
        "{report}"
    );
    let still = server.call_ok("claude_list_projects", json!({})).await;
    assert_eq!(names(&still), want, "{still}");
    let ok = submit(&server, "r", "MOCK_TEXT: r works").await;
    assert_eq!(server.wait_task(&ok).await["output"], "r works");
    server.close().await;
}

#[tokio::test]
async fn work_at_the_depth_limit_is_refused_and_children_run_one_level_deeper() {
    let setup = two_projects();
    let deep = Server::start(
        ServerOptions::fake(1)
            .args(&["--projects", setup.file.to_str().unwrap()])
            .env("CLAUDE_MCP_DEPTH", "2"),
    )
    .await;
    for (tool, args) in [
        ("pool_run", json!({ "prompt": "MOCK_TEXT: x" })),
        ("pool_submit", json!({ "prompt": "MOCK_TEXT: x" })),
        ("pool_fan_out", json!({ "prompts": ["a", "b"] })),
        ("pool_chain", json!({ "steps": [{ "prompt": "a" }] })),
        ("pool_submit_chain", json!({ "steps": [{ "prompt": "a" }] })),
        (
            "pool_skill_run",
            json!({ "skill": "summarize", "arguments": { "target": "x" } }),
        ),
        ("claude_run", json!({ "project": "p", "prompt": "x" })),
        (
            "claude_build",
            json!({ "project": "p", "spec": "x", "branch": "b" }),
        ),
    ] {
        let r = deep.call(tool, args).await;
        assert_eq!(r.is_error, Some(true), "{tool}: {r:?}");
        assert!(
            first_text(&r).starts_with("recursion_limit_exceeded"),
            "{tool}: {}",
            first_text(&r)
        );
        assert_eq!(
            r.structured_content.as_ref().unwrap()["error"],
            "recursion_limit_exceeded"
        );
    }
    assert_eq!(deep.turns_started(), 0);
    deep.close().await;

    let shallow = Server::start(
        ServerOptions::fake(1)
            .env("CLAUDE_MCP_DEPTH", "1")
            .env("CLAUDECODE", "1"),
    )
    .await;
    let r = shallow
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_SHELL:echo depth=$CLAUDE_MCP_DEPTH code=${CLAUDECODE:-unset}" }),
        )
        .await;
    assert_eq!(r["output"], "shell rc=0 out=depth=2 code=unset");
    shallow.close().await;
}
