//! Approvals over Streamable HTTP: each client is asked only about its own tasks, the
//! status page's buttons answer (behind the cookie and the page's CSRF value), and
//! `/metrics` counts what was decided.

use std::time::Duration;

use claude_pool_tests::http::HttpServer;
use claude_pool_tests::server::{Server, ServerOptions, Transport, content, finish_call};
use claude_pool_tests::within;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, ElicitRequestParams, ElicitResult, ElicitationAction,
    Request, ServerResult,
};
use rmcp::service::PeerRequestOptions;
use serde_json::{Value, json};

const ASKED: Duration = Duration::from_secs(30);

fn message_of(p: &ElicitRequestParams) -> String {
    match p {
        ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
        other => panic!("expected a form, got {other:?}"),
    }
}

fn allow_once() -> ElicitResult {
    ElicitResult::new(ElicitationAction::Accept).with_content(json!({ "decision": "allow_once" }))
}

#[tokio::test]
async fn two_clients_on_one_server_are_each_asked_only_about_their_own_tasks() {
    let server = Server::start(
        ServerOptions::fake(2)
            .transport(Transport::Http)
            .elicitation()
            .args(&["--permission-mode", "default"]),
    )
    .await;
    server.wait_ready().await;
    let (other, mut other_asked) = server.other_client().await;
    let mine = server.scratch().join("mine");
    let theirs = server.scratch().join("theirs");

    let a = server
        .start_call(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", mine.display()) }),
        )
        .await;
    let Value::Object(args) = json!({ "prompt": format!("MOCK_TOOL:touch {}", theirs.display()) })
    else {
        unreachable!()
    };
    let b = other
        .send_cancellable_request(
            ClientRequest::CallToolRequest(Request::new(
                CallToolRequestParams::new("pool_run").with_arguments(args),
            )),
            PeerRequestOptions::no_options(),
        )
        .await
        .expect("the other client's call");

    // Each client's form names its own command, never the other's.
    let (req, reply) = server
        .next_elicitation(ASKED, "the first client's form")
        .await;
    let text = message_of(&req);
    assert!(
        text.contains(&format!("touch {}", mine.display())) && !text.contains("theirs"),
        "{text}"
    );
    let _ = reply.send(allow_once());
    let (req, reply) = within(ASKED, "the second client's form", other_asked.recv())
        .await
        .expect("a form for the second client");
    let text = message_of(&req);
    assert!(
        text.contains(&format!("touch {}", theirs.display())) && !text.contains("mine"),
        "{text}"
    );
    let _ = reply.send(allow_once());

    let done_a = content(&finish_call(a, "the first client's task").await);
    let done_b = match within(ASKED, "the second client's task", b.await_response()).await {
        Ok(ServerResult::CallToolResult(r)) => content(&r),
        other => panic!("{other:?}"),
    };
    assert!(mine.exists() && theirs.exists(), "{done_a} {done_b}");
    assert_ne!(
        done_a["approvals"][0]["by"], done_b["approvals"][0]["by"],
        "each answer is recorded as its own client's"
    );
    // Nobody else was asked anything.
    assert!(other_asked.try_recv().is_err());

    // A task submitted without waiting is put to the session that submitted it.
    let later = server.scratch().join("later");
    let submitted = server
        .call_ok(
            "pool_submit",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", later.display()) }),
        )
        .await;
    let (req, reply) = server.next_elicitation(ASKED, "the submitter's form").await;
    assert!(message_of(&req).contains("later"));
    let _ = reply.send(allow_once());
    let r = server
        .call_ok(
            "pool_result",
            json!({ "task_id": submitted["task_id"], "wait": 30 }),
        )
        .await;
    assert_eq!(r["status"], "completed", "{r}");
    assert!(later.exists());
    assert!(
        other_asked.try_recv().is_err(),
        "the other client was not asked"
    );
    let _ = other.cancel().await;
}

#[tokio::test]
async fn the_page_answers_with_its_cookie_and_csrf_value_and_metrics_count_it() {
    let server = HttpServer::start(
        1,
        &["--http-token", "tok3n", "--permission-mode", "default"],
    )
    .await;
    let session = server.session(&[]).await;
    let file = server.home.join("from-the-page");
    let submitted = server
        .call(
            &session,
            &[],
            "pool_submit",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", file.display()) }),
        )
        .await;
    let task = submitted["result"]["structuredContent"]["task_id"]
        .as_str()
        .expect("a task id")
        .to_owned();
    let pending = server
        .call(
            &session,
            &[],
            "pool_approvals",
            json!({ "task_id": task, "wait": 30 }),
        )
        .await;
    let apr = pending["result"]["structuredContent"]["pending"][0]["request_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a pending request: {pending}"))
        .to_owned();

    let browser = server.anonymous();
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let signed = browser
        .request("POST", "/login", &form, "token=tok3n")
        .await;
    let cookie = signed
        .header("set-cookie")
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = browser
        .request("GET", "/status.json", &[("Cookie", &cookie)], "")
        .await;
    let page: Value = serde_json::from_str(&page.body).expect("status JSON");
    let csrf = page["csrf"]
        .as_str()
        .expect("the page's CSRF value")
        .to_owned();
    assert_eq!(
        page["status"]["approvals"]["pending"][0]["request_id"],
        apr.as_str(),
        "the page shows the question"
    );
    let path = format!("/approvals/{apr}");
    let body = json!({ "decision": "allow" }).to_string();
    let json_type = ("Content-Type", "application/json");
    // Without a credential: refused.
    let r = browser.request("POST", &path, &[json_type], &body).await;
    assert_eq!(r.status, 401, "{r:?}");
    // With the cookie but no CSRF value (what another site could make a browser send):
    // refused.
    let r = browser
        .request("POST", &path, &[json_type, ("Cookie", &cookie)], &body)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = browser
        .request(
            "POST",
            &path,
            &[
                json_type,
                ("Cookie", &cookie),
                ("X-Claude-Pool-CSRF", "not-the-value"),
            ],
            &body,
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert!(!file.exists(), "no refused answer ran anything");
    // With both: answered, as the page.
    let r = browser
        .request(
            "POST",
            &path,
            &[
                json_type,
                ("Cookie", &cookie),
                ("X-Claude-Pool-CSRF", &csrf),
            ],
            &body,
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    let done = server
        .call(
            &session,
            &[],
            "pool_result",
            json!({ "task_id": task, "wait": 30 }),
        )
        .await;
    let done = &done["result"]["structuredContent"];
    assert_eq!(done["status"], "completed", "{done}");
    assert!(file.exists());
    assert_eq!(done["approvals"][0]["by"], "page", "{done}");
    // A second answer finds nothing to answer.
    let r = browser
        .request(
            "POST",
            &path,
            &[
                json_type,
                ("Cookie", &cookie),
                ("X-Claude-Pool-CSRF", &csrf),
            ],
            &json!({ "decision": "deny" }).to_string(),
        )
        .await;
    assert_eq!(r.status, 409, "{r:?}");

    let metrics = server.request("GET", "/metrics", &[], "").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("claude_pool_approvals_total{outcome=\"allow\",by=\"page\"} 1"),
        "{}",
        metrics.body
    );
    assert!(
        metrics.body.contains("claude_pool_approvals_pending 0"),
        "{}",
        metrics.body
    );
    server.stop().await;
}
