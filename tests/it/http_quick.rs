//! The quick lane (`actors/src/http/quick.rs`): `pool_status` and `pool_result` without a
//! wait are answered without the session's handler — with the answer the handler gives.
//! A `_meta` in the call's params keeps a call off the lane, so each read is made both ways.

use claude_pool_tests::http::{HttpServer, Reply};
use serde_json::{Value, json};

/// `tools/call tool(args)` in `session`, with `_meta` (through the handler) or without.
async fn call(server: &HttpServer, session: &str, tool: &str, args: &Value, meta: bool) -> Reply {
    let mut params = json!({ "name": tool, "arguments": args });
    if meta {
        params["_meta"] = json!({});
    }
    let msg = json!({ "jsonrpc": "2.0", "id": "q-7", "method": "tools/call", "params": params });
    server.post(Some(session), &[], &msg).await
}

/// The JSON-RPC answer of a one-piece JSON reply.
fn answer(r: &Reply, what: &str) -> Value {
    assert_eq!(r.status, 200, "{what}: {r:?}");
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{what}: not one JSON body: {r:?}"
    );
    let v: Value = serde_json::from_str(&r.body).expect("a JSON body");
    assert_eq!(v["id"], "q-7", "{what}: the request's id is echoed");
    v
}

fn lane_lines(log: &str) -> usize {
    log.matches("answered from the pool").count()
}

#[tokio::test]
async fn quick_reads_answer_what_the_sessions_handler_answers() {
    // Default flags (the store included), with the log at debug to see the lane taken.
    let server = HttpServer::start(1, &["--log-level", "debug"]).await;
    let s = server.session(&[]).await;
    let run = server
        .call(
            &s,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: from the lane" }),
        )
        .await;
    let id = run["result"]["structuredContent"]["task_id"]
        .as_str()
        .expect("a task id")
        .to_owned();

    // A finished task, a task that does not exist, and the pool's status.
    let reads = [
        ("pool_result", json!({ "task_id": id })),
        ("pool_result", json!({ "task_id": "t-no-such-task" })),
        ("pool_status", json!({})),
    ];
    let mut quick_calls = 0;
    for (tool, args) in &reads {
        let quick = answer(&call(&server, &s, tool, args, false).await, tool);
        let handled = answer(&call(&server, &s, tool, args, true).await, tool);
        quick_calls += 1;
        if *tool == "pool_status" {
            // Readings that move between two calls (memory, store size) aside, the same
            // report, every field present both ways.
            let (q, h) = (&quick["result"], &handled["result"]);
            assert_eq!(q["isError"], false, "{quick}");
            assert_eq!(h["isError"], false, "{handled}");
            let keys = |v: &Value| {
                v["structuredContent"]
                    .as_object()
                    .expect("a report")
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            };
            assert_eq!(keys(q), keys(h));
            assert_eq!(
                q["structuredContent"]["tasks"],
                h["structuredContent"]["tasks"]
            );
            assert_eq!(q["structuredContent"]["tasks"]["completed"], 1);
            assert_eq!(
                q["structuredContent"]["slots"].as_array().map(Vec::len),
                Some(1)
            );
        } else {
            assert_eq!(quick, handled, "{tool} {args}: the lane's answer differs");
        }
    }
    let finished = answer(
        &call(&server, &s, "pool_result", &json!({ "task_id": id }), false).await,
        "pool_result",
    );
    quick_calls += 1;
    assert_eq!(
        finished["result"]["structuredContent"]["status"],
        "completed"
    );
    assert_eq!(
        finished["result"]["structuredContent"]["output"],
        "from the lane"
    );
    let missing = answer(
        &call(
            &server,
            &s,
            "pool_result",
            &json!({ "task_id": "t-no-such-task" }),
            false,
        )
        .await,
        "pool_result",
    );
    assert_eq!(missing["result"]["isError"], true, "{missing}");
    quick_calls += 1;

    // What the lane does not take goes on to rmcp unchanged: a wait, bad arguments, an
    // unknown session.
    let waited = answer(
        &call(
            &server,
            &s,
            "pool_result",
            &json!({ "task_id": id, "wait": 1 }),
            false,
        )
        .await,
        "a wait",
    );
    assert_eq!(
        waited["result"]["structuredContent"]["output"],
        "from the lane"
    );
    let bad = answer(
        &call(&server, &s, "pool_result", &json!({ "task_id": 5 }), false).await,
        "bad arguments",
    );
    assert_eq!(bad["result"]["isError"], true, "{bad}");
    assert!(
        bad["result"]["content"][0]["text"]
            .as_str()
            .is_some_and(|t| t.contains("task_id")),
        "the argument error names the field: {bad}"
    );
    let stranger = call(&server, "no-such-session", "pool_status", &json!({}), false).await;
    assert_eq!(stranger.status, 404, "an unknown session: {stranger:?}");
    // The lane answered each call above without `_meta`, and no other.
    let (_, log) = server.stop_with_log().await;
    assert_eq!(
        lane_lines(&log),
        quick_calls,
        "the calls the lane answered, by its log lines"
    );
}
