//! `pool_fan_out` over stdio with the fake CLI.

use claude_pool_tests::server::{Server, ServerOptions, content, finish_call};
use serde_json::{Value, json};

/// Dollars of `input`/`output` tokens at the fake CLI's default model (claude-opus-5-5:
/// $4 / $20 per million), computed here from the test's own numbers.
fn opus_usd(input: u64, output: u64) -> f64 {
    (input as f64 * 4.0 + output as f64 * 20.0) / 1e6
}

#[tokio::test]
async fn fan_out_returns_one_result_per_prompt_in_order_and_one_failure_fails_only_itself() {
    let server = Server::start(ServerOptions::fake(2)).await;
    server.wait_ready().await;
    let prompts = [
        "MOCK_TEXT: one",
        "MOCK_STATUS:500 two",
        "MOCK_SLEEP:0.2 MOCK_TEXT: three",
        "MOCK_TEXT: four",
        "MOCK_USAGE:1000,100 MOCK_TEXT: five",
    ];
    let call = server
        .start_call("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    let token = call.progress_token.clone();
    let r = finish_call(call, "pool_fan_out").await;
    assert_ne!(
        r.is_error,
        Some(true),
        "a fan-out with one failed prompt is not a tool error"
    );
    let c = content(&r);
    assert_eq!(c["summary"], "4 of 5 completed; 1 failed", "{c}");
    let results = c["results"].as_array().expect("results");
    let statuses: Vec<&str> = results
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["completed", "failed", "completed", "completed", "completed"]
    );
    let outputs: Vec<Value> = results.iter().map(|r| r["output"].clone()).collect();
    assert_eq!(
        outputs,
        [
            json!("one"),
            Value::Null,
            json!("three"),
            json!("four"),
            json!("five")
        ]
    );
    assert!(
        results[1]["error"]
            .as_str()
            .unwrap()
            .contains("API Error: 500"),
        "{}",
        results[1]
    );
    let spend = results[4]["spend_usd"].as_f64().unwrap();
    assert!((spend - opus_usd(1000, 100)).abs() < 1e-12, "{spend}");
    assert_eq!(results[4]["tokens_used"]["input"], 1000);
    assert_eq!(results[4]["tokens_used"]["output"], 100);
    let ids: std::collections::BTreeSet<&str> = results
        .iter()
        .map(|r| r["task_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 5, "every prompt is its own task");
    assert_eq!(c["total"], 5);
    assert_eq!(c["completed"], 4);
    assert_eq!(c["failed"], 1);
    let sum: f64 = results
        .iter()
        .map(|r| r["spend_usd"].as_f64().unwrap())
        .sum();
    assert!((c["total_spend"].as_f64().unwrap() - sum).abs() < 1e-12);
    let progress = server.drain_progress(&token).await;
    for k in 1..=5 {
        assert!(
            progress
                .iter()
                .any(|m| m.starts_with(&format!("{k} of 5 done"))),
            "no `{k} of 5 done` progress in {progress:?}"
        );
    }
    assert!(
        server.max_concurrent_turns() <= 2,
        "more turns at once than slots"
    );
    server.close().await;
}

#[tokio::test]
async fn more_prompts_than_slots_queue_and_the_task_options_apply_to_every_prompt() {
    let server = Server::start(ServerOptions::fake(2)).await;
    let prompts: Vec<String> = (0..7)
        .map(|_| "MOCK_SLEEP:0.1 MOCK_SHOW_CONFIG".to_owned())
        .collect();
    let c = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": prompts, "model": "sonnet", "effort": "high", "timeout": 30 }),
        )
        .await;
    let results = c["results"].as_array().unwrap();
    assert_eq!(results.len(), 7);
    for r in results {
        let out = r["output"].as_str().unwrap();
        assert!(
            out.contains("sonnet") && out.contains("effort=high"),
            "{out}"
        );
    }
    assert_eq!(
        server.max_concurrent_turns(),
        2,
        "7 prompts on 2 slots: 2 at a time"
    );
    server.close().await;
}

#[tokio::test]
async fn a_fan_out_is_bounded_and_bad_prompts_are_refused_before_anything_runs() {
    let server = Server::start(ServerOptions::fake(1)).await;
    server.wait_ready().await;
    let too_many: Vec<String> = (0..1001).map(|i| format!("p{i}")).collect();
    let cases = [
        (json!({ "prompts": too_many }), "at most 1000 prompts"),
        (json!({ "prompts": [] }), "at least one prompt"),
        (json!({ "prompts": ["fine", "  "] }), "prompts[1]"),
        (json!({ "prompts": "one" }), "prompts"),
        (json!({ "prompts": [1, 2] }), "prompts[0]"),
    ];
    for (args, needle) in cases {
        server
            .expect_argument_error("pool_fan_out", args, needle)
            .await;
    }
    assert_eq!(server.turns_started(), 0, "nothing ran");
    assert_eq!(
        server.status().await["tasks"]["total"],
        0,
        "no task was created"
    );
    server.close().await;
}
