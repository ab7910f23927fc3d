//! `completion/complete`: skill arguments, and the ids in the resource templates, matched by
//! what was typed; unknown prompts and arguments are errors.

use claude_pool_tests::server::{Server, ServerOptions};
use rmcp::model::{ArgumentInfo, CompleteRequestParams, Reference};
use serde_json::json;

async fn complete(server: &Server, r: Reference, name: &str, value: &str) -> Vec<String> {
    server
        .client()
        .complete(CompleteRequestParams::new(
            r,
            ArgumentInfo::new(name, value),
        ))
        .await
        .unwrap_or_else(|e| panic!("completion of {name}={value:?}: {e}"))
        .completion
        .values
}

#[tokio::test]
async fn completions_offer_recent_task_and_chain_ids_slots_and_skill_arguments() {
    let server = Server::start(ServerOptions::fake(2)).await;
    server.wait_ready().await;
    let info = server.client().peer_info().expect("server info");
    assert!(info.capabilities.completions.is_some(), "declared");
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = server
            .call_ok("pool_run", json!({ "prompt": format!("MOCK_TEXT: {i}") }))
            .await;
        ids.push(r["task_id"].as_str().unwrap().to_owned());
    }
    let chain = server
        .call_ok(
            "pool_chain",
            json!({ "steps": [{ "prompt": "MOCK_TEXT: one" }] }),
        )
        .await;
    let chain_id = chain["chain_id"].as_str().unwrap().to_owned();
    // Task ids: the newest first, narrowed by what was typed.
    let results = Reference::for_resource("pool://results/{task_id}");
    let all = complete(&server, results.clone(), "task_id", "task-").await;
    for id in &ids {
        assert!(all.contains(id), "{id} missing from {all:?}");
    }
    let pos = |id: &String| all.iter().position(|x| x == id).unwrap();
    assert!(pos(&ids[2]) < pos(&ids[0]), "newest first: {all:?}");
    let one = complete(&server, results, "task_id", &ids[1]).await;
    assert_eq!(one, vec![ids[1].clone()]);
    let transcripts = Reference::for_resource("pool://transcripts/{task_id}");
    assert!(
        complete(&server, transcripts, "task_id", "")
            .await
            .contains(&ids[0])
    );
    let chains = complete(
        &server,
        Reference::for_resource("pool://chains/{chain_id}"),
        "chain_id",
        "chain-",
    )
    .await;
    assert_eq!(chains, vec![chain_id]);
    let slots = complete(
        &server,
        Reference::for_resource("pool://slots/{id}"),
        "id",
        "slot-",
    )
    .await;
    assert_eq!(slots, vec!["slot-0".to_owned(), "slot-1".to_owned()]);
    // A skill's argument: its default, when it matches what was typed (the built-in
    // code_review's `criteria` defaults to "bugs, style and clarity").
    let review = Reference::for_prompt("code_review");
    assert_eq!(
        complete(&server, review.clone(), "criteria", "bugs").await,
        vec!["bugs, style and clarity".to_owned()]
    );
    assert!(
        complete(&server, review, "criteria", "speed")
            .await
            .is_empty()
    );
    // An unknown prompt is an error, not an empty answer.
    let err = server
        .client()
        .complete(CompleteRequestParams::new(
            Reference::for_prompt("no_such_skill"),
            ArgumentInfo::new("x", ""),
        ))
        .await
        .expect_err("an unknown prompt");
    assert!(err.to_string().contains("no_such_skill"), "{err}");
    server.close().await;
}
