//! `pool_drain` over stdio with the fake CLI.

use std::time::Duration;

use claude_pool_tests::procs::assert_gone;
use claude_pool_tests::server::{Server, ServerOptions, finish_call, first_text};
use claude_pool_tests::within;
use serde_json::json;

#[tokio::test]
async fn drain_cancels_pending_work_lets_running_work_finish_and_refuses_new_work() {
    let server = Server::start(ServerOptions::fake(1)).await;
    let pid = Server::slot_pids(&server.wait_ready().await)[0];
    let (running, _, _) = server
        .start_run("MOCK_SLEEP:0.5 MOCK_USAGE:1000,10 MOCK_TEXT: done")
        .await;
    let mut queued = Vec::new();
    for i in 0..2 {
        let s = server
            .call_ok("pool_submit", json!({ "prompt": format!("queued {i}") }))
            .await;
        queued.push(s["task_id"].as_str().unwrap().to_owned());
    }
    let d = server.call_ok("pool_drain", json!({})).await;
    let r = finish_call(running, "the running task").await;
    let r = claude_pool_tests::server::content(&r);
    assert_eq!(r["status"], "completed", "the running task finished: {r}");
    assert_eq!(r["output"], "done");
    assert_eq!(d["total_tasks"], 3, "{d}");
    assert_eq!(d["completed"], 1, "{d}");
    assert_eq!(d["cancelled"], 2, "{d}");
    assert_eq!(d["errors"], 0, "{d}");
    let spend = (1000.0 * 4.0 + 10.0 * 20.0) / 1e6;
    assert!(
        (d["total_spend"].as_f64().unwrap() - spend).abs() < 1e-12,
        "{d}"
    );
    for id in &queued {
        let q = server.wait_task(id).await;
        assert_eq!(q["status"], "cancelled");
        assert!(
            q["error"].as_str().unwrap().contains("never started")
                || q["error"].as_str().unwrap().contains("before it started"),
            "{q}"
        );
    }
    assert_eq!(
        server.turns_started(),
        1,
        "the queued tasks never reached Claude"
    );
    let refused = server
        .call("pool_submit", json!({ "prompt": "late" }))
        .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        first_text(&refused).contains("drained"),
        "{}",
        first_text(&refused)
    );
    let s = server.status().await;
    assert_eq!(s["running"], false, "{s}");
    assert_eq!(s["slots"][0]["status"], "stopped", "{s}");
    assert_gone(pid, Duration::from_secs(10), "the drained slot's process").await;
    let again = server.call_ok("pool_drain", json!({})).await;
    assert_eq!(
        again["total_tasks"], 3,
        "a second drain answers the same summary"
    );
    server.close().await;
}

#[tokio::test]
async fn drain_returns_promptly_with_failed_and_hung_tasks() {
    let server = Server::start(ServerOptions::fake(3)).await;
    server.wait_ready().await;
    let crash = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:0.2 MOCK_CRASH_MID:3" }),
        )
        .await;
    let hang = server
        .call_ok("pool_submit", json!({ "prompt": "MOCK_HANG" }))
        .await;
    let fine = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:0.2 MOCK_TEXT: ok" }),
        )
        .await;
    let d = within(
        Duration::from_secs(15),
        "pool_drain's answer",
        server.call_ok("pool_drain", json!({ "timeout": 1 })),
    )
    .await;
    assert_eq!(d["total_tasks"], 3, "{d}");
    assert_eq!(d["completed"], 1, "{d}");
    assert_eq!(d["errors"], 1, "{d}");
    assert_eq!(d["cancelled"], 1, "{d}");
    assert_eq!(
        d["cancelled_running"], 1,
        "the hung task was cancelled at the timeout: {d}"
    );
    let statuses: Vec<String> = [&crash, &hang, &fine]
        .iter()
        .map(|s| s["task_id"].as_str().unwrap().to_owned())
        .collect();
    let crash = server.wait_task(&statuses[0]).await;
    assert_eq!(crash["status"], "failed");
    let hang = server.wait_task(&statuses[1]).await;
    assert_eq!(hang["status"], "cancelled");
    assert!(
        hang["error"].as_str().unwrap().contains("pool_drain"),
        "{hang}"
    );
    server.close().await;
}
