//! The API's limits with the fake CLI (which answers `MOCK_LIMITED_FIRST` as the real one
//! reports a 429 once its retries are spent): a refused turn goes back to the queue and
//! runs again, the pool runs fewer turns at once while the API refuses them, and it opens
//! again by itself once the API calms down.

use claude_pool_tests::server::{ResourceNote, Server, ServerOptions};
use serde_json::json;

#[tokio::test]
async fn a_rate_limited_turn_is_queued_again_and_completes_billed_once() {
    let server = Server::start(ServerOptions::fake(1).args(&["--requeue-backoff", "50ms"])).await;
    server.wait_ready().await;
    let plain = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: done" }))
        .await;
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_LIMITED_FIRST:2:once MOCK_TEXT: done" }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "done");
    assert_eq!(r["rate_limited"], 2, "the attempts are recorded: {r}");
    // The refused turns cost nothing: the task is billed for its one real turn, as much as
    // the same task that was never refused.
    assert_eq!(r["spend_usd"], plain["spend_usd"], "{r} {plain}");
    let s = server.status().await;
    assert_eq!(s["api"]["retries_last_minute"], 2, "{s}");
    assert_eq!(
        s["spend_usd"].as_f64().unwrap(),
        2.0 * plain["spend_usd"].as_f64().unwrap()
    );
}

#[tokio::test]
async fn a_task_refused_over_and_over_fails_with_the_apis_words() {
    let server = Server::start(ServerOptions::fake(1).args(&["--requeue-backoff", "10ms"])).await;
    server.wait_ready().await;
    let r = server
        .call(
            "pool_run",
            json!({ "prompt": "MOCK_LIMITED_FIRST:50:always MOCK_TEXT: never" }),
        )
        .await;
    assert_eq!(r.is_error, Some(true));
    let report = claude_pool_tests::server::content(&r);
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("refused it 5 times") && error.contains("429"),
        "{error}"
    );
}

#[tokio::test]
async fn refusals_narrow_the_pool_and_calm_opens_it_again() {
    let server = Server::start(ServerOptions::fake(2).args(&["--requeue-backoff", "50ms"])).await;
    server.wait_ready().await;
    server.subscribe("pool://status").await.expect("subscribe");
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_LIMITED_FIRST:1:narrow MOCK_TEXT: ok" }),
        )
        .await;
    assert_eq!(r["status"], "completed");
    let s = server.status().await;
    assert_eq!(s["api"]["state"], "limited", "{s}");
    assert_eq!(
        s["api"]["ceiling"], 1,
        "half of what ran, never below one: {s}"
    );
    // Work still runs while limited, one turn at a time.
    let fan = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": ["MOCK_TEXT: a", "MOCK_TEXT: b", "MOCK_TEXT: c"] }),
        )
        .await;
    assert_eq!(fan["completed"], 3, "{fan}");
    // With no more refusals the gate opens again by itself (one turn per 5 s of calm: here
    // one step), and says so on pool://status.
    loop {
        server
            .resource_note_until("a pool://status update", |n| {
                *n == ResourceNote::Updated("pool://status".into())
            })
            .await;
        let s = server.status().await;
        if s["api"]["state"] == "ok" {
            assert_eq!(s["api"]["ceiling"], 2, "{s}");
            break;
        }
    }
}

#[tokio::test]
async fn refused_items_fail_alone_a_fan_out_keeps_the_rest_and_a_chain_skips_past_them() {
    let server = Server::start(ServerOptions::fake(2).args(&["--requeue-backoff", "10ms"])).await;
    server.wait_ready().await;
    // One item the API refuses every time: it fails after its requeues; the others keep
    // their outputs.
    let fan = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": [
                "MOCK_TEXT: first",
                "MOCK_LIMITED_FIRST:50:fan MOCK_TEXT: never",
                "MOCK_TEXT: third",
            ] }),
        )
        .await;
    assert_eq!(fan["summary"], "2 of 3 completed; 1 failed", "{fan}");
    let results = fan["results"].as_array().unwrap();
    assert_eq!(results[0]["output"], "first");
    assert_eq!(results[2]["output"], "third");
    assert_eq!(results[1]["status"], "failed");
    assert_eq!(results[1]["rate_limited"], 6, "{}", results[1]);
    // A chain step refused every time, with `skip`: the chain goes on without it.
    let c = server
        .call_ok(
            "pool_chain",
            json!({ "steps": [
                { "prompt": "MOCK_LIMITED_FIRST:50:chain MOCK_TEXT: never", "name": "refused", "failure_policy": "skip" },
                { "prompt": "MOCK_ECHO_PROMPT after [{previous_output}]" },
            ]}),
        )
        .await;
    assert_eq!(c["status"], "completed", "{c}");
    let steps = c["steps"].as_array().unwrap();
    assert_eq!(steps[0]["status"], "skipped", "{c}");
    assert!(
        steps[0]["error"]
            .as_str()
            .unwrap()
            .contains("refused it 5 times"),
        "{c}"
    );
    assert_eq!(steps[1]["output"], "prompt=<<MOCK_ECHO_PROMPT after []>>");
}

#[tokio::test]
async fn one_models_refusals_hold_back_only_that_models_turns() {
    let server = Server::start(
        ServerOptions::fake(2)
            .args(&["--requeue-backoff", "50ms"])
            .env("FAKE_CLAUDE_TURN_MS", "300"),
    )
    .await;
    server.wait_ready().await;
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_LIMITED_FIRST:1:opus MOCK_TEXT: ok", "model": "opus" }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    let s = server.status().await;
    assert_eq!(s["api"]["state"], "limited", "{s}");
    assert_eq!(
        s["api"]["models"],
        json!([{ "model": "opus", "ceiling": 1 }]),
        "{s}"
    );
    // Another model's turns run side by side as before…
    let since = claude_pool_tests::mono_ns();
    let fan = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": ["MOCK_TEXT: a", "MOCK_TEXT: b"], "model": "haiku" }),
        )
        .await;
    assert_eq!(fan["completed"], 2, "{fan}");
    assert_eq!(server.max_concurrent_turns_since(since), 2);
    // …while the refused model's run one at a time.
    let since = claude_pool_tests::mono_ns();
    let fan = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": ["MOCK_TEXT: c", "MOCK_TEXT: d"], "model": "opus" }),
        )
        .await;
    assert_eq!(fan["completed"], 2, "{fan}");
    assert_eq!(server.max_concurrent_turns_since(since), 1);
}
