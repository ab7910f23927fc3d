//! Approvals with the fake CLI (which asks `can_use_tool` as the real one does): a worker's
//! question waits at the desk until `pool_approve`, the timeout, or the end of its task;
//! every way leaves an audit record and no request or process behind.

use std::time::Duration;

use claude_pool_tests::procs::assert_group_gone;
use claude_pool_tests::server::{Server, ServerOptions, content, finish_call};
use rmcp::model::ProgressToken;
use serde_json::{Value, json};

const GONE: Duration = Duration::from_secs(15);

async fn asking_server(extra: &[&str]) -> Server {
    let server = Server::start(
        ServerOptions::fake(1)
            .args(&["--permission-mode", "default"])
            .args(extra),
    )
    .await;
    server.wait_ready().await;
    server
}

/// The approval id in a "waiting for approval: … (apr-…)" progress line.
fn approval_id(line: &str) -> String {
    let start = line.rfind("(apr-").expect("an approval id in the line") + 1;
    line[start..].trim_end_matches(')').to_owned()
}

/// Starts a `pool_run` whose Claude asks to `touch` a file in the scratch directory; returns
/// the call, its progress token, the task id and the approval id once the question waits.
async fn asked(
    server: &Server,
    name: &str,
    extra: Value,
) -> (
    rmcp::service::RequestHandle<rmcp::RoleClient>,
    ProgressToken,
    String,
    String,
) {
    let file = server.scratch().join(name);
    let mut args = json!({ "prompt": format!("MOCK_TOOL:touch {}", file.display()) });
    if let (Some(a), Some(e)) = (args.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    let call = server.start_call("pool_run", args).await;
    let token = call.progress_token.clone();
    let started = server
        .progress_until(&token, "the task to start", |m| m.contains("started on"))
        .await;
    let task = started.split_whitespace().next().unwrap().to_owned();
    let line = server
        .progress_until(&token, "the permission question", |m| {
            m.contains("waiting for approval")
        })
        .await;
    assert!(
        line.contains("Bash") && line.contains(&format!("touch {}", file.display())),
        "the progress line names the tool and the command: {line}"
    );
    (call, token, task, approval_id(&line))
}

#[tokio::test]
async fn a_question_waits_for_pool_approve_and_shows_in_the_result_status_and_resource() {
    let server = asking_server(&[]).await;
    let file = server.scratch().join("approved");
    let (call, _, task, apr) = asked(&server, "approved", json!({})).await;

    let r = server
        .call_ok("pool_result", json!({ "task_id": task }))
        .await;
    assert_eq!(r["status"], "running", "{r}");
    assert_eq!(r["waiting_for_approval"]["request_id"], apr.as_str(), "{r}");
    assert_eq!(r["waiting_for_approval"]["tool"], "Bash");
    assert_eq!(r["waiting_for_approval"]["kind"], "tool");
    let listed = server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"][0]["request_id"], apr.as_str(), "{listed}");
    assert_eq!(listed["pending"][0]["task_id"], task.as_str());
    let other = server
        .call_ok("pool_approvals", json!({ "task_id": "task-000000000000" }))
        .await;
    assert_eq!(other["pending"], json!([]), "filtered by task: {other}");
    let status = server.status().await;
    assert_eq!(
        status["approvals"]["pending"][0]["request_id"],
        apr.as_str()
    );
    let read = server
        .client()
        .read_resource(rmcp::model::ReadResourceRequestParams::new(
            "pool://approvals",
        ))
        .await
        .unwrap();
    let text = match &read.contents[0] {
        rmcp::model::ResourceContents::TextResourceContents { text, .. } => text.clone(),
        other => panic!("{other:?}"),
    };
    assert!(text.contains(&apr), "{text}");
    assert!(!file.exists(), "nothing runs before the answer");

    let answer = server
        .call_ok(
            "pool_approve",
            json!({ "request_id": apr, "decision": "allow", "scope": "task" }),
        )
        .await;
    assert_eq!(answer["outcome"], "allow");
    assert_eq!(answer["task_id"], task.as_str());
    let done = content(&finish_call(call, "the approved task").await);
    assert_eq!(done["status"], "completed", "{done}");
    assert!(file.exists(), "the allowed command ran");
    let record = &done["approvals"][0];
    assert_eq!(record["request_id"], apr.as_str());
    assert_eq!(record["outcome"], "allow");
    assert_eq!(record["by"], "tool:pool_approve");
    assert_eq!(record["scope"], "task");
    // The first answer wins; a second finds nothing to answer.
    server
        .expect_argument_error(
            "pool_approve",
            json!({ "request_id": apr, "decision": "deny" }),
            "no pending approval request",
        )
        .await;
    // The trail is kept with the task.
    let again = server
        .call_ok("pool_result", json!({ "task_id": task }))
        .await;
    assert_eq!(again["approvals"][0]["request_id"], apr.as_str());
    assert!(again.get("waiting_for_approval").is_none(), "{again}");
}

#[tokio::test]
async fn a_deny_with_a_message_reaches_claude() {
    let server = asking_server(&[]).await;
    let (call, _, _, apr) = asked(&server, "denied", json!({})).await;
    server
        .call_ok(
            "pool_approve",
            json!({ "request_id": apr, "decision": "deny", "message": "use the sandbox" }),
        )
        .await;
    let done = content(&finish_call(call, "the denied task").await);
    assert_eq!(done["output"], "MOCK: tool said: use the sandbox", "{done}");
    assert!(!server.scratch().join("denied").exists());
    assert_eq!(done["approvals"][0]["outcome"], "deny");
    assert_eq!(done["approvals"][0]["message"], "use the sandbox");
}

#[tokio::test]
async fn with_no_answer_the_question_is_denied_at_the_timeout_and_the_task_goes_on() {
    let server = asking_server(&["--approval-timeout", "1s"]).await;
    let (call, _, _, apr) = asked(&server, "late", json!({})).await;
    let done = content(&finish_call(call, "the task after its timeout").await);
    assert_eq!(
        done["status"], "completed",
        "Claude decides what follows: {done}"
    );
    assert!(!server.scratch().join("late").exists());
    let record = &done["approvals"][0];
    assert_eq!(record["request_id"], apr.as_str());
    assert_eq!(record["outcome"], "deny");
    assert_eq!(record["by"], "timeout");
    assert!(
        record["message"].as_str().unwrap().contains("within 1s"),
        "the message says why: {record}"
    );
    // What Claude read back is the timeout's message (its first 40 characters).
    let said = "denied: nobody answered this permission request within 1s";
    assert_eq!(done["output"], format!("MOCK: tool said: {}", &said[..40]));
    let listed = server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"], json!([]));
    // A task's own timeout wins over the server's.
    let (call, _, _, _) = asked(&server, "own", json!({ "approval_timeout": "300ms" })).await;
    let done = content(&finish_call(call, "the task with its own timeout").await);
    assert!(
        done["approvals"][0]["message"]
            .as_str()
            .unwrap()
            .contains("within 300ms"),
        "{done}"
    );
}

/// The pid of the process running `task`.
async fn pid_of(server: &Server, task: &str) -> u32 {
    let s = server.status().await;
    s["slots"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["task_id"] == task)
        .and_then(|x| x["pid"].as_u64())
        .unwrap_or_else(|| panic!("no slot runs {task}: {s}")) as u32
}

#[tokio::test]
async fn the_deadline_cancel_and_drain_end_a_waiting_question_and_its_process() {
    let server = asking_server(&[]).await;

    // The task's deadline still holds while it waits.
    let (call, _, task, _) = asked(&server, "deadline", json!({ "timeout": 2 })).await;
    let pid = pid_of(&server, &task).await;
    let done = content(&finish_call(call, "the task at its deadline").await);
    assert_eq!(done["status"], "timed_out", "{done}");
    assert_eq!(done["approvals"][0]["outcome"], "unanswered", "{done}");
    assert_group_gone(pid, GONE, "the waiting task's process group").await;
    let listed = server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"], json!([]), "no request outlives its task");

    // Cancel.
    server.wait_ready().await;
    let (call, _, task, _) = asked(&server, "cancel", json!({})).await;
    let pid = pid_of(&server, &task).await;
    let c = server
        .call_ok("pool_cancel", json!({ "task_id": task }))
        .await;
    assert_eq!(c["status"], "cancelled", "{c}");
    let done = content(&finish_call(call, "the cancelled task").await);
    assert_eq!(done["status"], "cancelled");
    assert_group_gone(pid, GONE, "the cancelled task's process group").await;
    let listed = server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"], json!([]));

    // Drain: the waiting task is cut at the drain's deadline.
    server.wait_ready().await;
    let (call, _, task, _) = asked(&server, "drain", json!({})).await;
    let pid = pid_of(&server, &task).await;
    let drained = server.call_ok("pool_drain", json!({ "timeout": 1 })).await;
    let done = content(&finish_call(call, "the drained task").await);
    assert_ne!(done["status"], "completed", "{done} {drained}");
    assert_eq!(done["approvals"][0]["outcome"], "unanswered", "{done}");
    assert_group_gone(pid, GONE, "the drained task's process group").await;
    let listed = server.call_ok("pool_approvals", json!({})).await;
    assert_eq!(listed["pending"], json!([]));
}

#[tokio::test]
async fn an_allow_rule_runs_without_asking_and_a_deny_rule_refuses_without_asking() {
    let server = asking_server(&["--allow", "Bash(touch:*)", "--deny", "Bash(rm:*)"]).await;
    let made = server.scratch().join("ruled");
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", made.display()) }),
        )
        .await;
    assert!(made.exists(), "{r}");
    assert_eq!(r["approvals"][0]["by"], "rule:Bash(touch:*)", "{r}");
    assert_eq!(r["approvals"][0]["outcome"], "allow");

    let keep = server.scratch().join("keep");
    std::fs::write(&keep, "x").unwrap();
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:rm {}", keep.display()) }),
        )
        .await;
    assert!(keep.exists(), "{r}");
    assert_eq!(r["approvals"][0]["outcome"], "deny", "{r}");

    // A task's own deny rule narrows the server's allow rule.
    let spared = server.scratch().join("spared");
    let r = server
        .call_ok(
            "pool_run",
            json!({
                "prompt": format!("MOCK_TOOL:touch {}", spared.display()),
                "deny": [format!("Bash(touch {}:*)", spared.display())],
            }),
        )
        .await;
    assert!(!spared.exists(), "{r}");
    assert_eq!(
        r["approvals"][0]["by"],
        format!("rule:Bash(touch {}:*)", spared.display()),
        "{r}"
    );
    // … and may not widen it.
    server
        .expect_argument_error(
            "pool_run",
            json!({ "prompt": "MOCK_TOOL:true", "allow": ["Bash"] }),
            "wider than this server's allow rules",
        )
        .await;
    server
        .expect_argument_error(
            "pool_run",
            json!({ "prompt": "MOCK_TOOL:true", "deny": ["Bash("] }),
            "Bash(",
        )
        .await;
    let status = server.status().await;
    assert_eq!(status["approvals"]["allow"], json!(["Bash(touch:*)"]));
    assert_eq!(status["approvals"]["deny"], json!(["Bash(rm:*)"]));
}

#[tokio::test]
async fn a_client_that_can_elicit_is_asked_and_its_answer_decides() {
    let server = Server::start(
        ServerOptions::fake(1)
            .elicitation()
            .args(&["--permission-mode", "default"]),
    )
    .await;
    server.wait_ready().await;
    let file = server.scratch().join("elicited");
    let call = server
        .start_call(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", file.display()) }),
        )
        .await;
    let (request, reply) = server
        .next_elicitation(Duration::from_secs(30), "the form")
        .await;
    let rmcp::model::ElicitRequestParams::FormElicitationParams {
        message,
        requested_schema,
        ..
    } = request
    else {
        panic!("a form");
    };
    assert!(
        message.contains(&format!("touch {}", file.display())),
        "{message}"
    );
    let schema = serde_json::to_value(&requested_schema).unwrap();
    assert_eq!(
        schema["properties"]["decision"]["enum"],
        json!(["allow_once", "allow_task", "deny"])
    );
    // Declining the form leaves the question to the other ways.
    let _ = reply.send(rmcp::model::ElicitResult::new(
        rmcp::model::ElicitationAction::Decline,
    ));
    let listed = server.call_ok("pool_approvals", json!({})).await;
    let apr = listed["pending"][0]["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("still pending after a declined form: {listed}"))
        .to_owned();
    server
        .call_ok(
            "pool_approve",
            json!({ "request_id": apr, "decision": "allow" }),
        )
        .await;
    let done = content(&finish_call(call, "the task").await);
    assert!(file.exists(), "{done}");
    assert_eq!(done["approvals"][0]["by"], "tool:pool_approve");

    // A worker's MCP server asks its user: the client sees the form and its answer goes
    // back through both hops.
    let call = server
        .start_call(
            "pool_run",
            json!({ "prompt": r#"MOCK_ELICIT:{"type":"object","description":"Which colour?","properties":{"colour":{"type":"string"}},"required":["colour"]}"# }),
        )
        .await;
    let (request, reply) = server
        .next_elicitation(Duration::from_secs(30), "the MCP server's form")
        .await;
    let rmcp::model::ElicitRequestParams::FormElicitationParams { message, .. } = request else {
        panic!("a form");
    };
    assert!(
        message.contains("mock") && message.contains("Which colour?"),
        "{message}"
    );
    let _ = reply.send(
        rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Accept)
            .with_content(json!({ "colour": "teal" })),
    );
    let done = content(&finish_call(call, "the eliciting task").await);
    assert_eq!(
        done["output"], r#"MOCK: elicitation accept {"colour":"teal"}"#,
        "{done}"
    );
    assert_eq!(done["approvals"][0]["kind"], "elicitation");
    assert_eq!(done["approvals"][0]["outcome"], "accept");
}

#[tokio::test]
async fn an_mcp_servers_question_with_no_client_to_ask_is_cancelled_at_once() {
    let server = asking_server(&[]).await;
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": r#"MOCK_ELICIT:{"type":"object","description":"Name?","properties":{"n":{"type":"string"}}}"# }),
        )
        .await;
    assert_eq!(r["output"], "MOCK: elicitation cancel", "{r}");
    assert_eq!(r["approvals"][0]["outcome"], "cancel");
}

#[tokio::test]
async fn the_audit_trail_is_in_the_transcript_and_outlives_the_server() {
    let scratch = claude_pool_tests::Scratch::new("approvals-store");
    let state = scratch.join("state");
    let opts = || {
        ServerOptions::fake(1).state(&state).args(&[
            "--permission-mode",
            "default",
            "--allow",
            "Bash(touch:*)",
        ])
    };
    let server = Server::start(opts()).await;
    server.wait_ready().await;
    let made = scratch.join("made");
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", made.display()) }),
        )
        .await;
    let task = r["task_id"].as_str().unwrap().to_owned();
    let record = r["approvals"][0].clone();
    assert_eq!(record["by"], "rule:Bash(touch:*)", "{r}");
    let transcript = server
        .call_ok("pool_transcript", json!({ "task_id": task }))
        .await;
    let line: Value = transcript["ndjson"]
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["type"] == "pool_approval")
        .unwrap_or_else(|| panic!("no pool_approval line: {transcript}"));
    assert_eq!(line["request_id"], record["request_id"]);
    assert_eq!(line["by"], "rule:Bash(touch:*)");
    server.close().await;

    // The next server reads the task, and its trail, from the store.
    let server = Server::start(opts()).await;
    let again = server
        .call_ok("pool_result", json!({ "task_id": task }))
        .await;
    assert_eq!(again["approvals"], json!([record]), "{again}");
    server.close().await;
}
