//! Chains over stdio with the fake CLI: placeholders, DAGs, failure policies, cancel.

use claude_pool_tests::server::{ResourceNote, Server, ServerOptions, content, finish_call};
use serde_json::{Value, json};

fn steps_of(c: &Value) -> &Vec<Value> {
    c["steps"].as_array().expect("steps")
}

#[tokio::test]
async fn a_chain_runs_its_steps_in_order_and_fills_in_earlier_outputs() {
    let server = Server::start(ServerOptions::fake(2)).await;
    let call = server
        .start_call(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_TEXT: plan-A", "name": "plan" },
                { "prompt": "MOCK_ECHO_PROMPT code for {previous_output}" },
                { "prompt": "MOCK_ECHO_PROMPT test {output:plan}" },
            ]}),
        )
        .await;
    let token = call.progress_token.clone();
    let r = finish_call(call, "pool_chain").await;
    assert_ne!(r.is_error, Some(true), "{:?}", r.content);
    let c = content(&r);
    assert_eq!(c["status"], "completed", "{c}");
    assert_eq!(c["completed_steps"], 3);
    assert_eq!(c["total_steps"], 3);
    let steps = steps_of(&c);
    let names: Vec<&str> = steps.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["plan", "step-2", "step-3"]);
    assert_eq!(steps[0]["output"], "plan-A");
    assert_eq!(
        steps[1]["output"],
        "prompt=<<MOCK_ECHO_PROMPT code for plan-A>>"
    );
    assert_eq!(c["final_output"], "prompt=<<MOCK_ECHO_PROMPT test plan-A>>");
    let spend: f64 = steps.iter().map(|s| s["spend_usd"].as_f64().unwrap()).sum();
    assert!(spend > 0.0);
    assert!((c["total_spend"].as_f64().unwrap() - spend).abs() < 1e-12);
    for s in steps {
        assert_eq!(s["attempts"].as_array().unwrap().len(), 1, "{s}");
    }
    let progress = server.drain_progress(&token).await;
    for name in ["plan", "step-2", "step-3"] {
        assert!(
            progress
                .iter()
                .any(|m| m.contains(&format!("step {name:?} completed"))),
            "no progress for {name} in {progress:?}"
        );
    }
    assert_eq!(
        server.max_concurrent_turns(),
        1,
        "a plain list is sequential"
    );
    server.close().await;
}

#[tokio::test]
async fn steps_whose_dependencies_are_done_run_in_parallel() {
    let server = Server::start(ServerOptions::fake(2)).await;
    let c = server
        .call_ok(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_SLEEP:0.4 MOCK_TEXT: left", "name": "a", "depends_on": [] },
                { "prompt": "MOCK_SLEEP:0.4 MOCK_TEXT: right", "name": "b", "depends_on": [] },
                { "prompt": "MOCK_ECHO_PROMPT {output:a}+{output:b}", "name": "join", "depends_on": ["a", "b"] },
            ]}),
        )
        .await;
    assert_eq!(c["status"], "completed", "{c}");
    assert_eq!(c["final_output"], "prompt=<<MOCK_ECHO_PROMPT left+right>>");
    assert_eq!(steps_of(&c)[2]["depends_on"], json!(["a", "b"]));
    assert_eq!(
        server.max_concurrent_turns(),
        2,
        "a and b depend on nothing and must have run at the same time"
    );
    server.close().await;
}

#[tokio::test]
async fn abort_stops_the_chain_and_later_steps_never_run() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let r = server
        .call(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_TEXT: fine" },
                { "prompt": "MOCK_STATUS:500 broken" },
                { "prompt": "MOCK_TEXT: never" },
            ]}),
        )
        .await;
    assert_eq!(r.is_error, Some(true), "a failed chain is a tool error");
    let c = content(&r);
    assert_eq!(c["status"], "failed", "{c}");
    let statuses: Vec<&str> = steps_of(&c)
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["completed", "failed", "cancelled"]);
    assert!(c["error"].as_str().unwrap().contains("step-2"), "{c}");
    assert!(
        steps_of(&c)[2]["error"]
            .as_str()
            .unwrap()
            .contains("not run")
    );
    assert_eq!(c["current_step"]["name"], "step-2");
    assert_eq!(c["final_output"], Value::Null);
    assert_eq!(
        server.turns_started(),
        2,
        "the third step never reached Claude"
    );
    server.close().await;
}

#[tokio::test]
async fn skip_goes_on_with_an_empty_output_and_retry_records_every_attempt() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let c = server
        .call_ok(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_STATUS:500 flaky", "name": "optional", "failure_policy": "skip" },
                { "prompt": "MOCK_ECHO_PROMPT after [{previous_output}]" },
                { "prompt": "MOCK_FAIL_FIRST:1:retry-key MOCK_TEXT: finally", "name": "flaky", "failure_policy": "retry" },
            ]}),
        )
        .await;
    assert_eq!(c["status"], "completed", "{c}");
    let steps = steps_of(&c);
    assert_eq!(steps[0]["status"], "skipped");
    assert!(
        steps[0]["error"]
            .as_str()
            .unwrap()
            .contains("API Error: 500")
    );
    assert_eq!(steps[1]["output"], "prompt=<<MOCK_ECHO_PROMPT after []>>");
    let attempts = steps[2]["attempts"].as_array().unwrap();
    let statuses: Vec<&str> = attempts
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["failed", "completed"]);
    assert_ne!(attempts[0]["task_id"], attempts[1]["task_id"]);
    assert_eq!(steps[2]["output"], "finally");
    assert_eq!(c["final_output"], "finally");

    // Retries run out: the chain fails after 1 + 2 attempts.
    let r = server
        .call(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_STATUS:500 always", "failure_policy": "retry", "retries": 2 },
            ]}),
        )
        .await;
    let c = content(&r);
    assert_eq!(c["status"], "failed", "{c}");
    assert_eq!(steps_of(&c)[0]["attempts"].as_array().unwrap().len(), 3);
    server.close().await;
}

#[tokio::test]
async fn a_bad_chain_is_refused_before_anything_runs() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    let cases = [
        (
            json!({ "steps": [
                { "prompt": "a", "name": "a", "depends_on": ["b"] },
                { "prompt": "b", "name": "b", "depends_on": ["a"] },
            ]}),
            "cycle",
        ),
        (
            json!({ "steps": [{ "prompt": "a", "depends_on": ["tset"] }] }),
            "\"tset\", which is not a step",
        ),
        (
            json!({ "steps": [{ "prompt": "{output:nope}" }] }),
            "no step is named \"nope\"",
        ),
        (json!({ "steps": [] }), "at least one step"),
        (
            json!({ "steps": [{ "prompt": "a", "failure_policy": "maybe" }] }),
            "failure_policy",
        ),
    ];
    for tool in ["pool_chain", "pool_submit_chain"] {
        for (args, needle) in &cases {
            server
                .expect_argument_error(tool, args.clone(), needle)
                .await;
        }
    }
    assert_eq!(server.turns_started(), 0);
    let s = server.status().await;
    assert_eq!(s["chains"]["total"], 0, "{s}");
    assert_eq!(s["tasks"]["total"], 0, "{s}");
    server.close().await;
}

#[tokio::test]
async fn cancelling_a_chain_cancels_its_running_step_and_the_rest() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let pid = Server::slot_pids(&server.wait_ready().await)[0];
    let s = server
        .call_ok(
            "pool_submit_chain",
            json!({ "steps": [
                { "prompt": "MOCK_SLEEP:30 long" },
                { "prompt": "never" },
            ]}),
        )
        .await;
    assert_eq!(s["status"], "in_progress");
    assert_eq!(s["total_steps"], 2);
    let id = s["chain_id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("chain-"), "{id}");
    let uri = format!("pool://chains/{id}");
    server.subscribe(&uri).await.expect("subscribe");
    // Wait, on the chain's own notifications, until its first step runs ...
    let task = loop {
        let c = server
            .call_ok("pool_chain_result", json!({ "chain_id": id }))
            .await;
        if c["running_steps"] == json!(["step-1"]) {
            assert_eq!(
                c["current_step"],
                json!({ "name": "step-1", "status": "running" })
            );
            break steps_of(&c)[0]["task_id"].as_str().unwrap().to_owned();
        }
        server
            .resource_note_until("an update of the chain", |n| {
                *n == ResourceNote::Updated(uri.clone())
            })
            .await;
    };
    // ... and, on its task's, until the slot has written its prompt to Claude.
    let task_uri = format!("pool://results/{task}");
    server
        .subscribe(&task_uri)
        .await
        .expect("subscribe to the step's task");
    while server.read_resource(&task_uri).await.unwrap()["duration_ms"].is_null() {
        server
            .resource_note_until("the step's task to start", |n| {
                *n == ResourceNote::Updated(task_uri.clone())
            })
            .await;
    }
    let status = server.status().await;
    assert_eq!(status["chains"]["in_progress"], 1, "{status}");
    let r = server
        .call_ok("pool_cancel", json!({ "chain_id": id }))
        .await;
    assert_eq!(r["status"], "cancelled", "{r}");
    assert_eq!(r["cancelled"], true);
    let c = server
        .call_ok("pool_chain_result", json!({ "chain_id": id }))
        .await;
    let statuses: Vec<&str> = steps_of(&c)
        .iter()
        .map(|s| s["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["cancelled", "cancelled"]);
    assert_eq!(steps_of(&c)[0]["task_id"], task.as_str());
    let t = server.wait_task(&task).await;
    assert_eq!(t["status"], "cancelled", "{t}");
    claude_pool_tests::procs::assert_gone(
        pid,
        std::time::Duration::from_secs(10),
        "the cancelled step's process",
    )
    .await;
    assert!(server.turns_started() <= 1, "the second step never ran");
    // A chain id also works in task_id, and an unknown one is "not found".
    let again = server
        .call_ok("pool_cancel", json!({ "task_id": id }))
        .await;
    assert_eq!(again["cancelled"], false);
    server
        .expect_argument_error(
            "pool_cancel",
            json!({ "chain_id": "chain-nope" }),
            "not found",
        )
        .await;
    let status = server.status().await;
    assert_eq!(status["chains"]["cancelled"], 1, "{status}");
    server.close().await;
}
