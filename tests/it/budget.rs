//! The budget ledger over stdio with the fake CLI: exact spend, the cap reached mid-turn,
//! refusal, and per-task caps.

use claude_pool_tests::server::{Server, ServerOptions, content, finish_call, first_text};
use serde_json::{Value, json};

/// Dollars of one API call at the fake's default model (claude-opus-5-5, $4 / $20 per
/// million tokens), from the test's own usage numbers.
fn call_usd(input: u64, output: u64) -> f64 {
    (input as f64 * 4.0 + output as f64 * 20.0) / 1e6
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Each API call of the fake takes this long, so a two-call turn has a gap in which the
/// ledger sees the first call's cost and can stop the second.
const CALL_MS: &str = "800";

/// A two-slot server with `cap_args`, given three tasks of two API calls each (a tool loop),
/// 2000 in / 100 out per call: two run, one waits for a slot. Returns the server and the
/// three final reports, in submission order.
async fn three_two_call_tasks(cap_args: &[&str]) -> (Server, Vec<Value>) {
    let server = Server::start(
        ServerOptions::fake(2)
            .args(cap_args)
            .env("FAKE_CLAUDE_TURN_MS", CALL_MS),
    )
    .await;
    server.wait_ready().await;
    let prompt = "MOCK_TOOL:true MOCK_USAGE:2000,100";
    let mut ids = Vec::new();
    for _ in 0..3 {
        let s = server
            .call_ok("pool_submit", json!({ "prompt": prompt }))
            .await;
        ids.push(s["task_id"].as_str().unwrap().to_owned());
    }
    let mut reports = Vec::new();
    for id in &ids {
        reports.push(server.wait_task(id).await);
    }
    (server, reports)
}

#[tokio::test]
async fn reaching_the_budget_mid_turn_stops_running_work_and_refuses_new_work() {
    let cap = 0.012;
    // After both first calls the pool has spent 2 × (2000 × $4/M input) — already over
    // the cap — so the second calls never happen.
    let (server, reports) = three_two_call_tasks(&["--budget-usd", &cap.to_string()]).await;
    for r in &reports[..2] {
        assert_eq!(r["status"], "failed", "{r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains("budget is exhausted"), "{e}");
        // Billed for the one call that ran, exactly; the second call never started.
        assert_eq!(r["tokens_used"]["input"], 2000, "{r}");
        assert!(
            close(r["spend_usd"].as_f64().unwrap(), call_usd(2000, 100)),
            "{r}"
        );
    }
    assert_eq!(reports[2]["status"], "failed");
    assert!(
        reports[2]["error"]
            .as_str()
            .unwrap()
            .contains("never started")
    );
    assert_eq!(reports[2]["spend_usd"], 0.0);
    assert_eq!(
        server.turns_started(),
        2,
        "the queued task never reached Claude"
    );

    let spend = 2.0 * call_usd(2000, 100);
    let status = server.status().await;
    assert!(
        close(status["spend_usd"].as_f64().unwrap(), spend),
        "{status}"
    );
    assert_eq!(status["budget_usd"], json!(cap));
    assert_eq!(status["budget_remaining"], json!(0.0));
    // The overshoot is bounded by one call per running slot.
    assert!(spend <= cap + 2.0 * call_usd(2000, 100));
    let budget = server.read_resource("pool://budget").await.unwrap();
    assert_eq!(budget["exhausted"], true, "{budget}");
    assert!(close(budget["spend_usd"].as_f64().unwrap(), spend));

    // New work is refused with the spend and the cap, and starts no process.
    let processes = server.processes_started();
    let r = server
        .call("pool_run", json!({ "prompt": "one more" }))
        .await;
    assert_eq!(r.is_error, Some(true));
    let text = first_text(&r);
    assert!(
        text.contains("budget is exhausted: $0.02 spent of the $0.012 cap"),
        "{text}"
    );
    let r = server
        .call("pool_fan_out", json!({ "prompts": ["a", "b"] }))
        .await;
    assert_eq!(r.is_error, Some(true), "{:?}", r.content);
    assert_eq!(server.turns_started(), 2);
    assert_eq!(server.processes_started(), processes);
    server.close().await;
}

#[tokio::test]
async fn a_task_over_its_own_max_budget_is_stopped_and_the_pool_goes_on() {
    let server = Server::start(ServerOptions::fake(1).env("FAKE_CLAUDE_TURN_MS", CALL_MS)).await;
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_TOOL:true MOCK_USAGE:2000,100", "max_budget_usd": 0.005 }),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    let c = content(&r);
    assert_eq!(c["status"], "failed", "{c}");
    assert!(
        c["error"].as_str().unwrap().contains("max_budget_usd"),
        "{c}"
    );
    assert!(
        close(c["spend_usd"].as_f64().unwrap(), call_usd(2000, 100)),
        "{c}"
    );
    let ok = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_TOOL:true MOCK_USAGE:10,1" }),
        )
        .await;
    assert_eq!(ok["status"], "completed");
    assert_eq!(
        ok["tokens_used"]["input"], 20,
        "both calls of the tool loop ran"
    );
    let s = server.status().await;
    assert_eq!(s["budget_usd"], Value::Null);
    assert_eq!(s["refusing"], Value::Null);
    server.close().await;
}

#[tokio::test]
async fn pool_spend_is_exactly_the_sum_of_every_tasks_spend_whatever_their_end() {
    let server = Server::start(ServerOptions::fake(1).env("FAKE_CLAUDE_TURN_MS", CALL_MS)).await;
    // completed: one call
    let a = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:1000,10 MOCK_TEXT: a" }),
        )
        .await;
    // failed: an API error (no call is paid)
    let b = content(
        &server
            .call("pool_run", json!({ "prompt": "MOCK_STATUS:500" }))
            .await,
    );
    // cancelled after its first call
    let (call, token, c_id) = server.start_run("MOCK_TOOL:true MOCK_USAGE:2000,100").await;
    server
        .progress_until(&token, "the first API call of the cancelled task", |m| {
            m.contains("calling Bash")
        })
        .await;
    let cancel = server
        .call_ok("pool_cancel", json!({ "task_id": c_id }))
        .await;
    assert_eq!(cancel["status"], "cancelled");
    let c = content(&finish_call(call, "the cancelled pool_run").await);
    // timed out after its first call
    let d = content(
        &server
            .call(
                "pool_run",
                // The first call ends at 0.8 s, the second would at 1.6 s: the deadline
                // falls between them.
                json!({ "prompt": "MOCK_TOOL:true MOCK_USAGE:3000,100", "timeout": 1.2 }),
            )
            .await,
    );
    // failed: the process crashed mid-turn (no result, nothing reported to bill)
    let e = content(
        &server
            .call("pool_run", json!({ "prompt": "MOCK_CRASH_MID:3" }))
            .await,
    );

    let statuses: Vec<&str> = [&a, &b, &c, &d, &e]
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["completed", "failed", "cancelled", "timed_out", "failed"]
    );
    let expected = [
        call_usd(1000, 10),
        0.0,
        call_usd(2000, 100),
        call_usd(3000, 100),
        0.0,
    ];
    let spends: Vec<f64> = [&a, &b, &c, &d, &e]
        .iter()
        .map(|r| r["spend_usd"].as_f64().unwrap())
        .collect();
    for (i, (got, want)) in spends.iter().zip(expected).enumerate() {
        assert!(close(*got, want), "task {i}: spend {got} != {want}");
    }
    let pool = server.status().await["spend_usd"].as_f64().unwrap();
    let sum: f64 = spends.iter().sum();
    assert!(
        close(pool, sum),
        "pool spend {pool} != sum of task spends {sum}"
    );
    assert!(close(pool, expected.iter().sum()), "pool spend {pool}");
    server.close().await;
}

#[tokio::test]
async fn a_token_cap_stops_running_work_and_refuses_new_work_like_the_dollar_cap() {
    let cap: u64 = 4000;
    // After both first calls the pool has used 2 × 2100 tokens — over the cap — so the
    // second calls never happen and the third task never starts.
    let (server, reports) = three_two_call_tasks(&["--budget-tokens", &cap.to_string()]).await;
    for r in &reports[..2] {
        assert_eq!(r["status"], "failed", "{r}");
        let e = r["error"].as_str().unwrap();
        assert!(e.contains("token budget is exhausted"), "{e}");
        assert_eq!(r["tokens_used"]["input"], 2000, "{r}");
    }
    assert_eq!(reports[2]["status"], "failed");
    assert_eq!(
        server.turns_started(),
        2,
        "the queued task never reached Claude"
    );
    let used = 2 * (2000 + 100);
    let budget = server.read_resource("pool://budget").await.unwrap();
    assert_eq!(budget["budget_tokens"], cap, "{budget}");
    assert_eq!(budget["tokens_used"], used, "{budget}");
    assert_eq!(budget["exhausted"], true, "{budget}");
    let r = server
        .call("pool_run", json!({ "prompt": "one more" }))
        .await;
    assert_eq!(r.is_error, Some(true));
    let text = first_text(&r);
    assert!(
        text.contains(&format!(
            "{used} tokens used of the {cap} cap (--budget-tokens)"
        )),
        "{text}"
    );
    assert_eq!(server.turns_started(), 2);
    server.close().await;
}
