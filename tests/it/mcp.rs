//! The server over stdio with a real MCP client, slots running the fake CLI.

use std::time::Duration;

use claude_pool_tests::procs::{self, assert_gone, assert_group_gone};
use claude_pool_tests::server::{Server, ServerOptions, content, finish_call, first_text};
use claude_pool_tests::{fnv1a64, within};
use serde_json::{Value, json};

const GONE: Duration = Duration::from_secs(10);

async fn fake_server(slots: usize) -> Server {
    Server::start(ServerOptions::fake(slots)).await
}

/// Pid of the slot running `task_id`, from pool_status.
async fn pid_running(server: &Server, task_id: &str) -> u32 {
    let s = server.status().await;
    s["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["task_id"] == task_id)
        .and_then(|x| x["pid"].as_u64())
        .unwrap_or_else(|| panic!("no slot runs {task_id}: {s}")) as u32
}

fn task_id_of(progress_message: &str) -> String {
    progress_message
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .trim_end_matches(':')
        .to_owned()
}

#[tokio::test]
async fn server_reports_its_own_name_and_version_and_every_tool() {
    let server = fake_server(1).await;
    let info = server.client().peer_info().expect("server info");
    let implementation = info.server_info.clone().expect("server_info");
    assert_eq!(implementation.name, "claude-pool");
    assert_eq!(implementation.version, env!("CARGO_PKG_VERSION"));
    let tools = server.client().list_all_tools().await.unwrap();
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "claude_build",
            "claude_cancel",
            "claude_job_status",
            "claude_list_jobs",
            "claude_list_projects",
            "claude_run",
            "context_delete",
            "context_get",
            "context_list",
            "context_set",
            "pool_approvals",
            "pool_approve",
            "pool_cancel",
            "pool_chain",
            "pool_chain_result",
            "pool_drain",
            "pool_fan_out",
            "pool_result",
            "pool_run",
            "pool_scale_down",
            "pool_scale_up",
            "pool_set_target_slots",
            "pool_skill_get",
            "pool_skill_list",
            "pool_skill_run",
            "pool_status",
            "pool_submit",
            "pool_submit_chain",
            "pool_transcript",
        ]
    );
    let instructions = info.instructions.clone().unwrap_or_default();
    for tool in [
        "pool_run",
        "pool_submit",
        "pool_fan_out",
        "pool_chain",
        "budget",
    ] {
        assert!(
            instructions.contains(tool),
            "the instructions do not mention {tool}: {instructions}"
        );
    }
    server.close().await;
}

#[tokio::test]
async fn pool_status_shows_n_idle_slots_with_the_documented_fields() {
    let server = fake_server(3).await;
    let s = server.wait_ready().await;
    let slots = s["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 3);
    for (i, slot) in slots.iter().enumerate() {
        assert_eq!(slot["id"], format!("slot-{i}"));
        assert_eq!(slot["status"], "idle");
        assert_eq!(slot["active_tasks"], 0);
        assert_eq!(slot["restarts"], 0);
        assert!(slot["pid"].as_u64().is_some());
    }
    assert_eq!(s["active_tasks"], 0);
    assert_eq!(s["pending_tasks"], 0);
    assert_eq!(s["spend_usd"], 0.0);
    assert_eq!(s["budget_usd"], Value::Null);
    assert_eq!(s["budget_remaining"], Value::Null);
    server.close().await;
}

#[tokio::test]
async fn pool_run_returns_the_answer_with_its_own_spend_and_tokens() {
    let server = fake_server(1).await;
    // Default model claude-opus-5-5 at $4/$20 per million: 1000 in + 500 out = $0.014.
    for round in 0..3 {
        let r = server
            .call_ok(
                "pool_run",
                json!({ "prompt": "say hi MOCK_USAGE:1000,500" }),
            )
            .await;
        assert_eq!(r["status"], "completed");
        assert_eq!(r["output"], "MOCK: say hi MOCK_USAGE:1000,500");
        let spend = r["spend_usd"].as_f64().unwrap();
        assert!(
            (spend - 0.014).abs() < 1e-9,
            "round {round}: spend {spend} is not this turn's own cost"
        );
        assert_eq!(r["tokens_used"]["input"], 1000);
        assert_eq!(r["tokens_used"]["output"], 500);
        assert!(r["session_id"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(r["duration_ms"].as_u64().is_some());
    }
    let s = server.status().await;
    assert!(
        (s["spend_usd"].as_f64().unwrap() - 0.042).abs() < 1e-9,
        "pool spend: {s}"
    );
    server.close().await;
}

#[tokio::test]
async fn submit_then_result_returns_the_finished_task() {
    let server = fake_server(1).await;
    let sub = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "background MOCK_SLEEP:0.2" }),
        )
        .await;
    let id = sub["task_id"].as_str().unwrap().to_owned();
    assert_eq!(sub["status"], "pending");
    let now = server
        .call_ok("pool_result", json!({ "task_id": id }))
        .await;
    assert!(
        ["pending", "running"].contains(&now["status"].as_str().unwrap()),
        "{now}"
    );
    let done = server
        .call_ok("pool_result", json!({ "task_id": id, "wait": "30s" }))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], "MOCK: background MOCK_SLEEP:0.2");
    server.close().await;
}

#[tokio::test]
async fn unknown_task_ids_and_malformed_arguments_are_tool_errors_the_model_reads() {
    let server = fake_server(1).await;
    let cases = [
        (
            "pool_result",
            json!({ "task_id": "task-nope" }),
            "not found",
        ),
        (
            "pool_cancel",
            json!({ "task_id": "task-nope" }),
            "not found",
        ),
        ("pool_run", json!({}), "prompt"),
        ("pool_run", json!({ "prompt": 5 }), "prompt: invalid type"),
        (
            "pool_run",
            json!({ "prompt": "  " }),
            "prompt must not be empty",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "timeout": "soon" }),
            "invalid duration",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "timeout": -5 }),
            "positive number of seconds",
        ),
        (
            "pool_run",
            json!({ "prompt": "x", "permission_mode": "yolo" }),
            "yolo",
        ),
        (
            "pool_submit",
            json!({ "prompt": "x", "surprise": 1 }),
            "surprise",
        ),
        (
            "pool_result",
            json!({ "task_id": 42 }),
            "task_id: invalid type",
        ),
    ];
    for (tool, args, needle) in cases {
        server.expect_argument_error(tool, args, needle).await;
    }
    assert_eq!(
        server.turns_started(),
        0,
        "a call with wrong arguments started work"
    );
    // An unknown tool is still a protocol error.
    match server.try_call("pool_nope", json!({})).await {
        Err(rmcp::ServiceError::McpError(e)) => {
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{e:?}");
        }
        other => panic!("an unknown tool was answered: {other:?}"),
    }
    // ...and the server keeps serving.
    let r = server
        .call_ok("pool_run", json!({ "prompt": "still here" }))
        .await;
    assert_eq!(r["status"], "completed");
    server.close().await;
}

#[tokio::test]
async fn a_failed_task_is_a_tool_error_with_the_reason_and_is_never_left_running() {
    let server = fake_server(1).await;
    let r = server
        .call("pool_run", json!({ "prompt": "MOCK_STATUS:500" }))
        .await;
    assert_eq!(r.is_error, Some(true));
    assert!(
        first_text(&r).contains("failed") && first_text(&r).contains("API Error: 500"),
        "{}",
        first_text(&r)
    );
    assert_eq!(content(&r)["status"], "failed");

    let r = server
        .call("pool_run", json!({ "prompt": "MOCK_CRASH:3" }))
        .await;
    assert_eq!(r.is_error, Some(true));
    let text = first_text(&r);
    assert!(text.contains("exited with code 3"), "{text}");

    let s = server.status().await;
    let t = &s["tasks"];
    assert_eq!(t["running"], 0, "{s}");
    assert_eq!(s["active_tasks"], 0);
    assert_eq!(t["failed"], 2);
    let sum: u64 = [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timed_out",
    ]
    .iter()
    .map(|k| t[*k].as_u64().unwrap())
    .sum();
    assert_eq!(sum, t["total"].as_u64().unwrap(), "counts must add up: {s}");
    server.close().await;
}

#[tokio::test]
async fn an_api_error_result_keeps_the_process_but_a_crash_restarts_the_slot() {
    let server = fake_server(1).await;
    let before = Server::slot_pids(&server.wait_ready().await);
    server
        .call("pool_run", json!({ "prompt": "MOCK_STATUS:529" }))
        .await;
    let after_error = server.wait_ready().await;
    assert_eq!(
        Server::slot_pids(&after_error),
        before,
        "an error result must not cost the warm process"
    );
    assert_eq!(after_error["slots"][0]["restarts"], 0);

    server
        .call("pool_run", json!({ "prompt": "MOCK_CRASH_MID:7" }))
        .await;
    let after_crash = server.wait_ready().await;
    assert_eq!(after_crash["slots"][0]["restarts"], 1, "{after_crash}");
    assert!(
        after_crash["slots"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("exited with code 7")
    );
    assert_gone(before[0], GONE, "the crashed process").await;
    server.close().await;
}

#[tokio::test]
async fn the_server_answers_status_ping_and_a_second_run_while_a_long_run_is_in_flight() {
    let server = fake_server(2).await;
    server.wait_ready().await;
    let (long, _, id) = server.start_run("MOCK_SLEEP:30").await;

    let s = server.status().await;
    assert_eq!(s["active_tasks"], 1);
    within(
        Duration::from_secs(5),
        "a ping answer",
        server
            .client()
            .send_request(rmcp::model::ClientRequest::PingRequest(Default::default())),
    )
    .await
    .expect("ping");
    let quick = server
        .call_ok("pool_run", json!({ "prompt": "quick one" }))
        .await;
    assert_eq!(quick["status"], "completed");

    let c = server
        .call_ok("pool_cancel", json!({ "task_id": id }))
        .await;
    assert_eq!(c["status"], "cancelled");
    let long = finish_call(long, "the long run's answer").await;
    assert_eq!(long.is_error, Some(true));
    assert_eq!(content(&long)["status"], "cancelled");
    server.close().await;
}

#[tokio::test]
async fn pool_run_sends_progress_on_each_assistant_event() {
    let server = fake_server(1).await;
    let call = server
        .start_call("pool_run", json!({ "prompt": "MOCK_STREAM:3:20" }))
        .await;
    let token = call.progress_token.clone();
    let r = finish_call(call, "the streaming run").await;
    assert_eq!(content(&r)["status"], "completed");
    let msgs = server.drain_progress(&token).await;
    assert!(
        msgs.iter().any(|m| m.contains("started on slot-0")),
        "{msgs:?}"
    );
    for i in 1..=3 {
        assert!(
            msgs.iter().any(|m| m.contains(&format!("chunk {i}"))),
            "no progress for chunk {i}: {msgs:?}"
        );
    }
    server.close().await;
}

#[tokio::test]
async fn cancel_kills_the_process_group_and_leaves_no_process_behind() {
    let server = fake_server(1).await;
    server.wait_ready().await;
    let call = server
        .start_call("pool_run", json!({ "prompt": "MOCK_CHILD:60" }))
        .await;
    let token = call.progress_token.clone();
    let child_msg = server
        .progress_until(&token, "the grandchild's announcement", |m| {
            m.contains("child ")
        })
        .await;
    let id = task_id_of(&child_msg);
    let grandchild: u32 = child_msg
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .expect("child pid");
    let pid = pid_running(&server, &id).await;
    assert!(procs::exists(grandchild));

    let c = server
        .call_ok("pool_cancel", json!({ "task_id": id }))
        .await;
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["cancelled"], true);
    // The terminal state is published only after the reaper swept the group.
    assert!(
        !procs::exists(pid),
        "the cancelled task's process {pid} is still there"
    );
    assert_group_gone(pid, GONE, "the cancelled task's process group").await;
    procs::wait_exit(grandchild, GONE, "the grandchild's exit").await;

    let r = finish_call(call, "the cancelled run").await;
    assert_eq!(content(&r)["status"], "cancelled");
    // The slot comes back with a fresh process and serves the next task.
    let next = server
        .call_ok("pool_run", json!({ "prompt": "after cancel" }))
        .await;
    assert_eq!(next["status"], "completed");
    assert_ne!(pid_of_slot(&server.status().await, 0), Some(pid));
    server.close().await;
}

fn pid_of_slot(status: &Value, i: usize) -> Option<u32> {
    status["slots"][i]["pid"].as_u64().map(|p| p as u32)
}

#[tokio::test]
async fn a_cancelled_task_never_later_completes_and_is_billed_only_for_what_ran() {
    let server = fake_server(1).await;
    let sub = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:30 MOCK_USAGE:1000,500" }),
        )
        .await;
    let id = sub["task_id"].as_str().unwrap().to_owned();
    let c = server
        .call_ok("pool_cancel", json!({ "task_id": id }))
        .await;
    assert_eq!(c["status"], "cancelled");
    // The interrupted turn produced no tokens: nothing is billed.
    let r = server
        .call_ok("pool_result", json!({ "task_id": id, "wait": "10s" }))
        .await;
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["spend_usd"], 0.0);
    assert_eq!(r["output"], Value::Null);
    // A later task on the same slot completes; the cancelled one stays cancelled.
    server
        .call_ok("pool_run", json!({ "prompt": "next" }))
        .await;
    let again = server
        .call_ok("pool_result", json!({ "task_id": id }))
        .await;
    assert_eq!(again["status"], "cancelled");
    let c2 = server
        .call_ok("pool_cancel", json!({ "task_id": id }))
        .await;
    assert_eq!(c2["cancelled"], false);
    assert_eq!(server.status().await["spend_usd"].as_f64().unwrap(), {
        // only "next" was billed
        let n = server
            .call_ok("pool_result", json!({ "task_id": id }))
            .await;
        assert_eq!(n["spend_usd"], 0.0);
        server.status().await["spend_usd"].as_f64().unwrap()
    });
    server.close().await;
}

#[tokio::test]
async fn a_task_cancelled_while_queued_never_starts() {
    let server = fake_server(1).await;
    server.wait_ready().await;
    let first = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_SLEEP:30 first" }))
        .await;
    let queued = server
        .call_ok("pool_submit", json!({ "prompt": "QUEUED-MARKER" }))
        .await;
    let qid = queued["task_id"].as_str().unwrap();
    let c = server
        .call_ok("pool_cancel", json!({ "task_id": qid }))
        .await;
    assert_eq!(c["status"], "cancelled");
    assert!(
        c["message"].as_str().unwrap().contains("never started"),
        "{c}"
    );
    server
        .call_ok("pool_cancel", json!({ "task_id": first["task_id"] }))
        .await;
    let after = server
        .call_ok("pool_run", json!({ "prompt": "third" }))
        .await;
    assert_eq!(after["status"], "completed");
    let starts: Vec<Value> = server
        .fake_events()
        .into_iter()
        .filter(|e| e["event"] == "turn_start")
        .collect();
    assert_eq!(
        starts.len(),
        2,
        "exactly the first and the third task ran: {starts:?}"
    );
    let r = server
        .call_ok("pool_result", json!({ "task_id": qid }))
        .await;
    assert_eq!(r["status"], "cancelled");
    assert_eq!(r["slot_id"], Value::Null);
    server.close().await;
}

#[tokio::test]
async fn killing_a_slots_process_mid_task_fails_the_task_and_the_slot_recovers() {
    let server = fake_server(1).await;
    server.wait_ready().await;
    let (call, _, id) = server.start_run("MOCK_SLEEP:30").await;
    let pid = pid_running(&server, &id).await;
    procs::kill(pid, libc::SIGKILL);

    let r = finish_call(call, "the killed task's answer").await;
    assert_eq!(r.is_error, Some(true));
    let c = content(&r);
    assert_eq!(c["status"], "failed");
    assert!(c["error"].as_str().unwrap().contains("SIGKILL"), "{c}");
    assert_gone(pid, GONE, "the killed process").await;

    let s = server.wait_ready().await;
    assert_eq!(s["slots"][0]["restarts"], 1);
    assert_eq!(s["tasks"]["running"], 0);
    let next = server
        .call_ok("pool_run", json!({ "prompt": "next task" }))
        .await;
    assert_eq!(next["status"], "completed");
    server.close().await;
}

#[tokio::test]
async fn a_task_past_its_deadline_times_out_and_the_slot_restarts() {
    let server = fake_server(1).await;
    server.wait_ready().await;
    let pid = Server::slot_pids(&server.status().await)[0];
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_HANG", "timeout": "300ms" }),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    let c = content(&r);
    assert_eq!(c["status"], "timed_out", "{c}");
    assert!(c["error"].as_str().unwrap().contains("300ms"), "{c}");
    assert_gone(pid, GONE, "the hung process").await;
    let s = server.wait_ready().await;
    assert_eq!(s["slots"][0]["restarts"], 1, "{s}");
    assert_eq!(
        server
            .call_ok("pool_run", json!({ "prompt": "next", "timeout": 30 }))
            .await["status"],
        "completed"
    );
    server.close().await;
}

#[tokio::test]
async fn a_process_that_ignores_sigterm_is_killed_with_sigkill() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    let pid = Server::slot_pids(&server.status().await)[0];
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_IGNORE_TERM", "timeout": "200ms" }),
        )
        .await;
    assert_eq!(content(&r)["status"], "timed_out");
    assert!(
        !procs::exists(pid),
        "the process that ignored SIGTERM is still there"
    );
    assert!(
        server.log().contains("ignored SIGTERM"),
        "the escalation to SIGKILL is logged"
    );
    server.close().await;
}

#[tokio::test]
async fn garbage_on_claudes_stdout_fails_the_task_and_restarts_the_slot() {
    let server = fake_server(1).await;
    let r = server
        .call("pool_run", json!({ "prompt": "MOCK_GARBAGE" }))
        .await;
    let c = content(&r);
    assert_eq!(c["status"], "failed");
    assert!(
        c["error"].as_str().unwrap().contains("not stream-json"),
        "{c}"
    );
    let s = server.wait_ready().await;
    assert_eq!(s["slots"][0]["restarts"], 1);
    server.close().await;
}

#[tokio::test]
async fn queued_tasks_time_out_when_no_slot_frees_up() {
    let server = fake_server(1).await;
    let busy = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_SLEEP:30" }))
        .await;
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "waiting", "timeout": "200ms" }),
        )
        .await;
    let c = content(&r);
    assert_eq!(c["status"], "timed_out");
    assert!(
        c["error"]
            .as_str()
            .unwrap()
            .contains("waiting for a free slot"),
        "{c}"
    );
    server
        .call_ok("pool_cancel", json!({ "task_id": busy["task_id"] }))
        .await;
    server.close().await;
}

#[tokio::test]
async fn a_megabyte_prompt_reaches_claude_intact() {
    let server = fake_server(1).await;
    let mut prompt = String::from("MOCK_ECHO_STATS\n");
    let mut i = 0u64;
    while prompt.len() < 1_500_000 {
        prompt.push_str(&format!(
            "line {i}: \"quotes\", tabs\t, unicode é✓, backslash \\ end\n"
        ));
        i += 1;
    }
    let r = server
        .call_ok("pool_run", json!({ "prompt": prompt }))
        .await;
    let want = format!(
        "len={} fnv={:016x}",
        prompt.len(),
        fnv1a64(prompt.as_bytes())
    );
    assert_eq!(r["output"], want);
    // It travelled on stdin: no process got it on its command line.
    for e in server
        .fake_events()
        .iter()
        .filter(|e| e["event"] == "start")
    {
        let args = e["args"].to_string();
        assert!(
            args.len() < 10_000,
            "a command line carried the prompt: {} bytes",
            args.len()
        );
    }
    server.close().await;
}

#[tokio::test]
async fn unrelated_tasks_never_see_each_others_conversation() {
    let server = fake_server(1).await;
    for _ in 0..4 {
        let r = server
            .call_ok("pool_run", json!({ "prompt": "MOCK_HISTORY" }))
            .await;
        assert_eq!(
            r["output"], "history=1",
            "a task saw an earlier task's conversation"
        );
    }
    server.close().await;
}

#[tokio::test]
async fn the_pool_never_runs_more_claude_processes_than_slots() {
    let server = fake_server(2).await;
    let mut ids = Vec::new();
    for i in 0..8 {
        let s = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("job {i} MOCK_SLEEP:0.1") }),
            )
            .await;
        ids.push(s["task_id"].as_str().unwrap().to_owned());
    }
    let s = server.status().await;
    assert!(s["active_tasks"].as_u64().unwrap() <= 2, "{s}");
    for id in &ids {
        let r = server
            .call_ok("pool_result", json!({ "task_id": id, "wait": "30s" }))
            .await;
        assert_eq!(r["status"], "completed");
    }
    // From the fake's own log: turns that overlap in time, across all processes.
    let mut edges: Vec<(u64, i32)> = Vec::new();
    let mut pids = std::collections::BTreeSet::new();
    for e in server.fake_events() {
        match e["event"].as_str() {
            Some("turn_start") => {
                edges.push((e["mono_ns"].as_u64().unwrap(), 1));
                pids.insert(e["pid"].as_u64().unwrap());
            }
            Some("turn_end") => edges.push((e["mono_ns"].as_u64().unwrap(), -1)),
            _ => {}
        }
    }
    edges.sort();
    let (mut now, mut max) = (0, 0);
    for (_, d) in edges {
        now += d;
        max = max.max(now);
    }
    assert_eq!(
        max, 2,
        "at most (and, with 8 queued tasks, exactly) 2 turns at once"
    );
    assert!(pids.len() <= 2, "work ran on {} processes", pids.len());
    server.close().await;
}

#[tokio::test]
async fn per_task_model_and_permission_mode_go_through_control_requests() {
    let server = fake_server(1).await;
    let pid = Server::slot_pids(&server.wait_ready().await)[0];
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_SHOW_CONFIG", "model": "sonnet", "permission_mode": "acceptEdits" }))
        .await;
    let out = r["output"].as_str().unwrap();
    assert!(
        out.contains("model=claude-sonnet-5-5") && out.contains("permission_mode=acceptEdits"),
        "{out}"
    );
    assert_eq!(
        Server::slot_pids(&server.status().await)[0],
        pid,
        "no respawn for a control-request change"
    );
    // The next task gets the server's defaults back.
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_SHOW_CONFIG" }))
        .await;
    let out = r["output"].as_str().unwrap();
    assert!(
        out.contains("model=claude-opus-5-5") && out.contains("permission_mode=plan"),
        "{out}"
    );
    // Effort is fixed per process: a new one is spawned for it.
    let before = Server::slot_pids(&server.wait_ready().await)[0];
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_SHOW_CONFIG", "effort": "high" }),
        )
        .await;
    assert!(r["output"].as_str().unwrap().contains("effort=high"), "{r}");
    assert_ne!(Server::slot_pids(&server.wait_ready().await)[0], before);
    server.close().await;
}

#[tokio::test]
async fn the_system_prompt_is_appended_and_flags_reach_the_cli() {
    let server = Server::start(ServerOptions::fake(1).args(&[
        "--system-prompt",
        "house-rules",
        "--model",
        "haiku",
        "--effort",
        "min",
        "--permission-mode",
        "default",
    ]))
    .await;
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_SHOW_CONFIG" }))
        .await;
    let out = r["output"].as_str().unwrap();
    for want in [
        "append_system_prompt=house-rules",
        "system_prompt=none",
        "model=claude-haiku-5-5",
        "effort=low",
        "permission_mode=default",
    ] {
        assert!(out.contains(want), "{want} missing from {out}");
    }
    server.close().await;
}

#[tokio::test]
async fn a_process_is_recycled_after_its_quota_of_tasks() {
    let server = Server::start(ServerOptions::fake(1).args(&["--recycle-after", "2"])).await;
    let first = Server::slot_pids(&server.wait_ready().await)[0];
    server.call_ok("pool_run", json!({ "prompt": "one" })).await;
    assert_eq!(Server::slot_pids(&server.wait_ready().await)[0], first);
    server.call_ok("pool_run", json!({ "prompt": "two" })).await;
    let s = server.wait_ready().await;
    assert_ne!(
        Server::slot_pids(&s)[0],
        first,
        "the process was not replaced after 2 tasks"
    );
    assert_eq!(s["slots"][0]["restarts"], 0, "recycling is not a restart");
    assert_gone(first, GONE, "the recycled process").await;
    server.close().await;
}

#[tokio::test]
async fn children_never_inherit_the_claude_code_parent_markers() {
    let server = Server::start(
        ServerOptions::fake(1)
            .env("CLAUDECODE", "1")
            .env("CLAUDE_CODE_ENTRYPOINT", "cli"),
    )
    .await;
    server.wait_ready().await;
    let start = server
        .fake_events()
        .into_iter()
        .find(|e| e["event"] == "start")
        .expect("a start event");
    assert_eq!(start["env"]["CLAUDECODE"], Value::Null);
    assert_eq!(start["env"]["CLAUDE_CODE_ENTRYPOINT"], Value::Null);
    assert_eq!(
        start["pgid"], start["pid"],
        "each Claude process leads its own process group"
    );
    let args: Vec<String> = serde_json::from_value(start["args"].clone()).unwrap();
    for want in ["-p", "--input-format", "--output-format", "--verbose"] {
        assert!(
            args.iter().any(|a| a == want),
            "{want} missing from {args:?}"
        );
    }
    server.close().await;
}

#[tokio::test]
async fn shutdown_on_stdin_eof_leaves_no_process_behind() {
    let server = fake_server(3).await;
    let pids = Server::slot_pids(&server.wait_ready().await);
    let busy = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_CHILD:60" }))
        .await;
    let _ = server
        .call_ok(
            "pool_result",
            json!({ "task_id": busy["task_id"], "wait": "200ms" }),
        )
        .await;
    let status = server.close().await;
    assert!(status.success(), "exit status {status:?}");
    for pid in pids {
        assert_gone(pid, GONE, "a slot process after stdin EOF").await;
        assert_group_gone(pid, GONE, "a slot's group after stdin EOF").await;
    }
}

#[tokio::test]
async fn shutdown_on_sigterm_leaves_no_process_behind() {
    let server = fake_server(2).await;
    let pids = Server::slot_pids(&server.wait_ready().await);
    let _busy = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_IGNORE_TERM" }))
        .await;
    let status = server.signal_and_wait(libc::SIGTERM).await;
    assert!(status.success(), "exit status {status:?}");
    for pid in pids {
        assert_gone(pid, GONE, "a slot process after SIGTERM").await;
        assert_group_gone(pid, GONE, "a slot's group after SIGTERM").await;
    }
}

#[tokio::test]
async fn a_cli_that_cannot_start_is_given_up_and_queued_tasks_fail_with_its_error() {
    let scratch = claude_pool_tests::Scratch::new("broken-cli");
    let broken = scratch.join("broken-claude");
    std::fs::write(
        &broken,
        "#!/bin/sh\necho 'broken install: missing runtime' >&2\nexit 9\n",
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&broken, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let opts = ServerOptions {
        claude_bin: broken,
        slots: 1,
        args: vec!["--max-restarts".into(), "1".into()],
        env: vec![],
        state: None,
        transport: claude_pool_tests::server::Transport::from_env(),
        tasks_extension: false,
        elicitation: false,
        umask: None,
    };
    let server = Server::start(opts).await;
    // The task waits in the queue while the slot crash-loops; once the slot exceeds its limit
    // and the root has restarted the slot supervisor as often as it may, the pool halts and
    // the task fails with the CLI's own complaint.
    let r = server
        .call("pool_run", json!({ "prompt": "anyone there?" }))
        .await;
    assert_eq!(r.is_error, Some(true));
    let c = content(&r);
    assert_eq!(c["status"], "failed", "{c}");
    let err = c["error"].as_str().unwrap();
    assert!(
        err.contains("the pool stopped") && err.contains("broken install"),
        "{err}"
    );
    let s = server.status().await;
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(s["slots"][0]["status"], "failed", "{s}");
    assert!(
        s["slots"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("restart limit"),
        "{s}"
    );
    // While no slot can start, new work is refused with the CLI's own error.
    let late = server
        .call("pool_submit", json!({ "prompt": "late" }))
        .await;
    assert_eq!(
        late.is_error,
        Some(true),
        "a halted pool accepted a task: {late:?}"
    );
    let text = first_text(&late);
    assert!(
        text.contains("no slot can start") && text.contains("broken install"),
        "{text}"
    );
    server.close().await;
}

#[tokio::test]
async fn invalid_utf8_and_malformed_json_on_stdin_get_parse_errors_and_serving_goes_on() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let scratch = claude_pool_tests::Scratch::new("raw");
    let log = scratch.join("server.log");
    let mut child = tokio::process::Command::new(claude_pool_tests::server_bin())
        .args(["--slots", "1", "--claude-bin"])
        .arg(claude_pool_tests::fake_claude_bin())
        .env("HOME", scratch.path())
        .env_remove("CLAUDE_POOL_LOG")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}"#;
    stdin
        .write_all(format!("{init}\n").as_bytes())
        .await
        .unwrap();
    let first = within(
        Duration::from_secs(10),
        "the initialize answer",
        lines.next_line(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(first.contains("claude-pool"));
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}\n")
        .await
        .unwrap();
    stdin
        .write_all(b"\xff\xfe\xfd not utf-8 at all\n")
        .await
        .unwrap();
    stdin
        .write_all(b"{\"jsonrpc\": \"2.0\", \"id\": 2, \"method\": \n")
        .await
        .unwrap();
    stdin.write_all(b"[1, 2, 3\n").await.unwrap();
    stdin
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{\"name\":\"pool_status\",\"arguments\":{}}}\n")
        .await
        .unwrap();
    // Each garbage line is answered as JSON-RPC says: a parse error with id null.
    for what in ["invalid UTF-8", "a truncated object", "a truncated array"] {
        let line = within(
            Duration::from_secs(10),
            &format!("the parse error for {what}"),
            lines.next_line(),
        )
        .await
        .unwrap()
        .unwrap();
        let v: Value = serde_json::from_str(&line).expect("stdout line is JSON");
        assert_eq!(
            (
                v["jsonrpc"].as_str(),
                v["error"]["code"].as_i64(),
                v.get("id")
            ),
            (Some("2.0"), Some(-32700), Some(&Value::Null)),
            "{what}: {v}"
        );
    }
    let answer = within(
        Duration::from_secs(10),
        "the pool_status answer after garbage",
        lines.next_line(),
    )
    .await
    .unwrap()
    .unwrap();
    let v: Value = serde_json::from_str(&answer).expect("stdout line is JSON");
    assert_eq!(v["jsonrpc"], "2.0");
    assert_eq!(v["id"], 3, "{v}");
    assert!(v["result"]["structuredContent"]["slots"].is_array(), "{v}");
    drop(stdin);
    let status = within(
        Duration::from_secs(10),
        "the raw server's exit",
        child.wait(),
    )
    .await
    .unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn a_client_cancelling_pool_run_cancels_the_task() {
    let server = fake_server(1).await;
    let (call, _, id) = server.start_run("MOCK_SLEEP:30").await;
    call.cancel(Some("the user pressed escape".into()))
        .await
        .expect("send cancellation");
    let r = server
        .call_ok("pool_result", json!({ "task_id": id, "wait": "10s" }))
        .await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(server.status().await["active_tasks"], 0);
    server.close().await;
}

#[tokio::test]
async fn invalid_flags_exit_nonzero_with_a_clear_message() {
    let cases: [(&[&str], &str); 5] = [
        (&["--slots", "0"], "--slots"),
        (&["--permission-mode", "yolo"], "yolo"),
        (&["--timeout", "soon"], "invalid duration"),
        (
            &["--claude-bin", "/nonexistent/claude"],
            "not an executable",
        ),
        (&["--no-such-flag"], "--no-such-flag"),
    ];
    for (args, needle) in cases {
        let stderr = claude_pool_tests::server::start_refused(args, &[]).await;
        assert!(
            stderr.contains(needle),
            "{args:?}: stderr lacks {needle:?}: {stderr}"
        );
    }
}

#[tokio::test]
async fn a_task_asking_for_bypass_permissions_gets_a_process_started_in_that_mode() {
    // The CLI refuses to switch into bypassPermissions by control request (and, as root,
    // refuses it without IS_SANDBOX=1): such a task gets a fresh process started in it.
    // The operator allows it (the default ceiling is acceptEdits).
    let server = Server::start(
        ServerOptions::fake(1)
            .env("IS_SANDBOX", "1")
            .args(&["--max-permission-mode", "bypassPermissions"]),
    )
    .await;
    let before = Server::slot_pids(&server.wait_ready().await)[0];
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_SHOW_CONFIG", "permission_mode": "bypassPermissions" }),
        )
        .await;
    assert!(
        r["output"]
            .as_str()
            .unwrap()
            .contains("permission_mode=bypassPermissions"),
        "{r}"
    );
    let after = Server::slot_pids(&server.wait_ready().await)[0];
    assert_ne!(
        after, before,
        "bypassPermissions needs a process started in that mode"
    );
    // Back to the default mode for the next task, by control request.
    let r = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_SHOW_CONFIG" }))
        .await;
    assert!(
        r["output"]
            .as_str()
            .unwrap()
            .contains("permission_mode=plan"),
        "{r}"
    );
    server.close().await;
}

#[tokio::test]
async fn a_warming_slot_shows_its_live_process() {
    // A slow cold start (2 s) keeps the slot warming while the status is read.
    let server = Server::start(ServerOptions::fake(1).env("FAKE_CLAUDE_STARTUP_MS", "2000")).await;
    let s = server.status().await;
    let slot = &s["slots"][0];
    assert_eq!(slot["status"], "starting", "{s}");
    let pid = slot["pid"]
        .as_u64()
        .expect("a warming slot reports its pid") as u32;
    assert!(procs::exists(pid));
    let ready = server.wait_ready().await;
    assert_eq!(
        Server::slot_pids(&ready),
        vec![pid],
        "the warmed process is the one reported"
    );
    server.close().await;
}

#[tokio::test]
async fn a_task_handed_to_a_slot_whose_idle_process_just_died_still_runs() {
    // A tiny restart window keeps the backoff at its base: each kill is a first failure.
    let server = Server::start(ServerOptions::fake(1).args(&["--restart-window", "1ms"])).await;
    for round in 0..10 {
        let pid = Server::slot_pids(&server.wait_ready().await)[0];
        procs::kill(pid, libc::SIGKILL);
        // Submitted while the slot may still look idle: the task must not be lost with it.
        let r = server
            .call_ok("pool_run", json!({ "prompt": format!("round {round}") }))
            .await;
        assert_eq!(r["status"], "completed", "round {round}: {r}");
    }
    let s = server.wait_ready().await;
    assert_eq!(s["slots"][0]["restarts"], 10, "{s}");
    assert_eq!(s["tasks"]["completed"], 10);
    server.close().await;
}

#[tokio::test]
async fn a_task_waiting_for_a_respawn_keeps_its_deadline() {
    // Another effort needs a fresh process; the deadline set at submission still holds.
    let server = fake_server(1).await;
    server.wait_ready().await;
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_SLEEP:30", "effort": "high", "timeout": "1s" }),
        )
        .await;
    let c = content(&r);
    assert_eq!(c["status"], "timed_out", "{c}");
    let s = server.wait_ready().await;
    assert_eq!(s["tasks"]["running"], 0, "{s}");
    server.close().await;
}

#[tokio::test]
async fn tool_profiles_list_and_serve_only_their_tools() {
    let names = |tools: Vec<rmcp::model::Tool>| -> std::collections::BTreeSet<String> {
        tools.into_iter().map(|t| t.name.to_string()).collect()
    };
    let jobs = Server::start(ServerOptions::fake(1).args(&["--tools", "jobs"])).await;
    let listed = names(jobs.client().list_all_tools().await.expect("tools/list"));
    let want: std::collections::BTreeSet<String> = [
        "claude_run",
        "claude_build",
        "claude_job_status",
        "claude_list_jobs",
        "claude_cancel",
        "claude_list_projects",
        "pool_approvals",
        "pool_approve",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(listed, want);
    // A tool outside the profile is not there at all.
    match jobs.try_call("pool_run", json!({ "prompt": "x" })).await {
        Err(rmcp::ServiceError::McpError(e)) => {
            assert_eq!(e.code, rmcp::model::ErrorCode::INVALID_PARAMS, "{e:?}");
        }
        other => panic!("pool_run answered under --tools jobs: {other:?}"),
    }
    assert_eq!(jobs.turns_started(), 0);
    jobs.call_ok("claude_list_projects", json!({})).await;
    jobs.close().await;

    let core = Server::start(ServerOptions::fake(1).args(&["--tools", "core"])).await;
    let listed = names(core.client().list_all_tools().await.expect("tools/list"));
    for t in [
        "pool_run",
        "pool_chain",
        "context_set",
        "pool_status",
        "pool_skill_run",
        "pool_approve",
    ] {
        assert!(listed.contains(t), "{t} missing from core: {listed:?}");
    }
    assert!(
        !listed.iter().any(|t| t.starts_with("claude_")),
        "{listed:?}"
    );
    let r = core
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: core" }))
        .await;
    assert_eq!(r["output"], "core");
    core.close().await;

    // The default serves both.
    let all = fake_server(1).await;
    let listed = names(all.client().list_all_tools().await.expect("tools/list"));
    assert!(listed.contains("pool_run") && listed.contains("claude_run"));
    assert!(listed.is_superset(&want));
    all.close().await;
}

#[tokio::test]
async fn every_tool_has_a_title_and_annotations_that_say_what_it_does() {
    let server = fake_server(1).await;
    let tools = server.client().list_all_tools().await.expect("tools/list");
    assert_eq!(tools.len(), 29);
    let starts_work = [
        "pool_run",
        "pool_submit",
        "pool_fan_out",
        "pool_chain",
        "pool_submit_chain",
        "pool_skill_run",
        "claude_run",
        "claude_build",
    ];
    let removes = [
        "pool_cancel",
        "claude_cancel",
        "pool_drain",
        "pool_scale_down",
        "context_delete",
        "context_set",
        "pool_set_target_slots",
    ];
    for t in &tools {
        let name = t.name.as_ref();
        assert!(
            t.title.as_deref().is_some_and(|s| !s.is_empty()),
            "{name}: no title"
        );
        let a = t
            .annotations
            .as_ref()
            .unwrap_or_else(|| panic!("{name}: no annotations"));
        // An absent hint means the protocol's default.
        let read_only = a.read_only_hint.unwrap_or(false);
        let destructive = a.destructive_hint.unwrap_or(true);
        let open_world = a.open_world_hint.unwrap_or(true);
        assert_eq!(
            open_world,
            starts_work.contains(&name),
            "{name}: openWorldHint"
        );
        assert_eq!(
            read_only,
            !starts_work.contains(&name)
                && !removes.contains(&name)
                && !["pool_scale_up", "pool_approve"].contains(&name),
            "{name}: readOnlyHint"
        );
        if !read_only {
            assert_eq!(
                destructive,
                removes.contains(&name),
                "{name}: destructiveHint"
            );
        }
    }
    let status = tools.iter().find(|t| t.name == "pool_status").unwrap();
    assert_eq!(
        status.annotations.as_ref().unwrap().read_only_hint,
        Some(true)
    );
    server.close().await;
}

/// The raw `tools/list` response of a server started with `--tools profile` (and otherwise
/// the defaults), as the bytes a client receives.
async fn tools_list_bytes(profile: &str) -> (usize, Value) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let home = claude_pool_tests::Scratch::new("tools-list");
    let mut child = tokio::process::Command::new(claude_pool_tests::server_bin())
        .args(["--slots", "1", "--tools", profile, "--claude-bin"])
        .arg(claude_pool_tests::fake_claude_bin())
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.join("run"))
        .env("FAKE_CLAUDE_STATE", home.join("fake-state"))
        .env_remove("XDG_STATE_HOME")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start the server");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-11-25", "capabilities": {},
                    "clientInfo": { "name": "bytes", "version": "1" } } });
    let list = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
    let send = format!(
        "{init}\n{{\"jsonrpc\":\"2.0\",\"method\":\"notifications/initialized\"}}\n{list}\n"
    );
    stdin.write_all(send.as_bytes()).await.unwrap();
    let line = within(Duration::from_secs(20), "the tools/list answer", async {
        loop {
            let line = lines.next_line().await.unwrap().expect("an answer");
            let v: Value = serde_json::from_str(&line).unwrap();
            if v["id"] == 2 {
                return line;
            }
        }
    })
    .await;
    drop(stdin);
    within(
        Duration::from_secs(20),
        "the server's exit on EOF",
        child.wait(),
    )
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    (line.len(), v)
}

/// What a coordinator pays for the tool list in every conversation.
const TOOLS_LIST_BUDGET: usize = 13_000;

#[tokio::test]
async fn the_tool_list_fits_its_byte_budget_with_every_tool() {
    let (all, listed) = tools_list_bytes("all").await;
    eprintln!("tools/list: {all} bytes");
    let tools = listed["result"]["tools"].as_array().expect("tools");
    assert_eq!(tools.len(), 29, "every tool is listed");
    assert!(
        all <= TOOLS_LIST_BUDGET,
        "tools/list is {all} bytes, over its budget of {TOOLS_LIST_BUDGET}"
    );
    for t in tools {
        assert!(t["outputSchema"].is_object(), "{}", t["name"]);
    }
    let (core, _) = tools_list_bytes("core").await;
    let (jobs, _) = tools_list_bytes("jobs").await;
    assert!(
        core < all && jobs < core,
        "core {core}, jobs {jobs}, all {all}"
    );
}
