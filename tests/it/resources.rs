//! The pool as MCP resources over stdio, and their change notifications.

use claude_pool_tests::server::{ResourceNote, Server, ServerOptions};
use serde_json::json;

#[tokio::test]
async fn the_resources_and_templates_are_listed_and_read() {
    let server = Server::start(ServerOptions::fake(2)).await;
    server.wait_ready().await;
    let listed = server.client().list_all_resources().await.unwrap();
    let mut uris: Vec<String> = listed.iter().map(|r| r.uri.clone()).collect();
    uris.sort();
    assert_eq!(
        uris,
        [
            "pool://approvals",
            "pool://budget",
            "pool://context",
            "pool://projects",
            "pool://slots",
            "pool://status"
        ]
    );
    assert!(
        listed
            .iter()
            .all(|r| r.mime_type.as_deref() == Some("application/json"))
    );
    let templates = server.client().list_all_resource_templates().await.unwrap();
    let mut t: Vec<String> = templates.iter().map(|r| r.uri_template.clone()).collect();
    t.sort();
    assert_eq!(
        t,
        [
            "pool://chains/{chain_id}",
            "pool://results/{task_id}",
            "pool://slots/{id}",
            "pool://transcripts/{task_id}"
        ]
    );

    server
        .call_ok("context_set", json!({ "key": "style", "value": "terse" }))
        .await;
    let run = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: hello" }))
        .await;
    let chain = server
        .call_ok(
            "pool_chain",
            json!({ "steps": [{ "prompt": "MOCK_TEXT: step" }] }),
        )
        .await;

    let status = server.read_resource("pool://status").await.unwrap();
    assert_eq!(status["slots"].as_array().unwrap().len(), 2);
    assert_eq!(status["tasks"]["completed"], 2, "{status}");
    assert_eq!(status["chains"]["completed"], 1, "{status}");
    let slots = server.read_resource("pool://slots").await.unwrap();
    assert_eq!(slots.as_array().unwrap().len(), 2);
    let slot = server.read_resource("pool://slots/slot-1").await.unwrap();
    assert_eq!(slot["id"], "slot-1");
    let budget = server.read_resource("pool://budget").await.unwrap();
    assert_eq!(budget["budget_usd"], serde_json::Value::Null);
    let sum = run["spend_usd"].as_f64().unwrap() + chain["total_spend"].as_f64().unwrap();
    assert!(
        (budget["spend_usd"].as_f64().unwrap() - sum).abs() < 1e-12,
        "{budget}"
    );
    let context = server.read_resource("pool://context").await.unwrap();
    assert_eq!(context, json!({ "style": "terse" }));
    let id = run["task_id"].as_str().unwrap();
    let result = server
        .read_resource(&format!("pool://results/{id}"))
        .await
        .unwrap();
    assert_eq!(result["output"], "hello");
    let cid = chain["chain_id"].as_str().unwrap();
    let c = server
        .read_resource(&format!("pool://chains/{cid}"))
        .await
        .unwrap();
    assert_eq!(c["final_output"], "step");

    for uri in [
        "pool://nope",
        "file:///etc/passwd",
        "pool://results/task-nope",
        "pool://slots/slot-9",
    ] {
        match server.read_resource(uri).await {
            Err(rmcp::ServiceError::McpError(e)) => {
                assert_eq!(e.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND, "{uri}");
                assert!(
                    e.message.contains("unknown resource") || e.message.contains("not found"),
                    "{uri}: {e:?}"
                );
                let data = e.data.clone().unwrap_or_default();
                assert_eq!(data["uri"], uri, "the error names the URI: {e:?}");
            }
            other => panic!("{uri}: expected resource not found, got {other:?}"),
        }
    }
    server.close().await;
}

#[tokio::test]
async fn a_subscribed_client_hears_when_its_task_changes_and_when_slots_come_and_go() {
    let server = Server::start(ServerOptions::fake(1).args(&["--max-slots", "3"])).await;
    server.wait_ready().await;
    let s = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:1 MOCK_TEXT: watched" }),
        )
        .await;
    let id = s["task_id"].as_str().unwrap().to_owned();
    let uri = format!("pool://results/{id}");
    server.subscribe(&uri).await.expect("subscribe to the task");
    server
        .subscribe("pool://slots")
        .await
        .expect("subscribe to slots");
    // Read after subscribing, then on every notification: no change can slip between.
    let mut heard = 0;
    loop {
        let r = server.read_resource(&uri).await.unwrap();
        if r["status"] == "completed" {
            assert_eq!(r["output"], "watched");
            assert!(
                heard > 0,
                "the task ended without a notification to its subscriber"
            );
            break;
        }
        heard += 1;
        server
            .resource_note_until("an update of the subscribed task", |n| {
                *n == ResourceNote::Updated(uri.clone())
            })
            .await;
    }
    server.drain_resource_notes().await;
    server.call_ok("pool_scale_up", json!({ "count": 1 })).await;
    server
        .resource_note_until("resources/list_changed after a scale-up", |n| {
            *n == ResourceNote::ListChanged
        })
        .await;
    server
        .resource_note_until("an update of pool://slots", |n| {
            *n == ResourceNote::Updated("pool://slots".into())
        })
        .await;
    // A client not subscribed to a URI hears nothing about it.
    let other = server
        .call_ok("pool_run", json!({ "prompt": "unwatched" }))
        .await;
    let notes = server.drain_resource_notes().await;
    let unwatched = format!("pool://results/{}", other["task_id"].as_str().unwrap());
    assert!(
        !notes.contains(&ResourceNote::Updated(unwatched)),
        "{notes:?}"
    );
    match server.subscribe("pool://results/task-nope").await {
        Err(rmcp::ServiceError::McpError(e)) => {
            assert_eq!(e.code, rmcp::model::ErrorCode::RESOURCE_NOT_FOUND);
        }
        other => panic!("subscribing to an unknown task was accepted: {other:?}"),
    }
    server.close().await;
}
