//! The API's refusals with the pinned real CLI (2.1.329) in the slots, against the mock:
//! a turn refused for rate or load runs again; one refused for good fails at once even
//! though the CLI would retry it for minutes. With `CI=true` a missing CLI fails these tests
//! instead of skipping them.

use claude_pool_tests::mock_anthropic::{MockServer, hermetic_cli_env};
use claude_pool_tests::server::{Server, ServerOptions, content};
use claude_pool_tests::{Scratch, real_claude_bin};
use serde_json::json;

async fn real_pool(env: &[(&str, &str)]) -> Option<(Server, MockServer, Scratch)> {
    let claude = real_claude_bin()?;
    let mock = MockServer::start().expect("mock API");
    let scratch = Scratch::new("real-limits");
    let mut opts = ServerOptions::fake(1).args(&["--requeue-backoff", "50ms"]);
    opts.claude_bin = claude;
    for (k, v) in hermetic_cli_env(&mock.url(), scratch.path()) {
        opts = opts.env(&k, &v);
    }
    for (k, v) in env {
        opts = opts.env(k, v);
    }
    let server = Server::start(opts).await;
    server.wait_ready().await;
    Some((server, mock, scratch))
}

#[tokio::test]
async fn a_turn_the_api_refuses_for_rate_runs_again_and_completes() {
    let Some((server, mock, _scratch)) = real_pool(&[]).await else {
        return;
    };
    // The next three requests are refused (429), whichever turn makes them.
    mock.configure(&json!({ "fail_status": 429, "fail_count": 3, "retry_after": "0" }));
    let before = mock.message_requests();
    let r = server
        .call_ok(
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: through at last" }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert_eq!(r["output"], "through at last");
    assert_eq!(r["rate_limited"], 3, "{r}");
    // Three refused requests and the one answered: nothing else was sent.
    assert_eq!(mock.message_requests() - before, 4);
    let s = server.status().await;
    assert_eq!(s["api"]["retries_last_minute"], 3, "{s}");
}

#[tokio::test]
async fn a_refusal_no_retry_mends_fails_at_once_with_the_apis_message() {
    // The CLI's own budget as high as its default: it would retry a 401 for minutes.
    let Some((server, mock, _scratch)) = real_pool(&[("CLAUDE_CODE_MAX_RETRIES", "10")]).await
    else {
        return;
    };
    let before = mock.message_requests();
    let r = server
        .call("pool_run", json!({ "prompt": "MOCK_STATUS:401 hello" }))
        .await;
    assert_eq!(r.is_error, Some(true));
    let report = content(&r);
    assert_eq!(report["status"], "failed", "{report}");
    let error = report["error"].as_str().unwrap();
    assert!(
        error.contains("401") && error.contains("not retried"),
        "{error}"
    );
    let sent = mock.message_requests() - before;
    assert!(
        sent <= 3,
        "the turn was stopped after {sent} requests, not retried on"
    );
    // The slot serves the next task.
    let ok = server
        .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: fine" }))
        .await;
    assert_eq!(ok["output"], "fine");
}
