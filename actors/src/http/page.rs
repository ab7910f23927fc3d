//! The live status page (`GET /`): one self-contained HTML file (no external asset) that
//! polls `status.json` every second — slots with their state, task and restarts; the queue;
//! running and recent tasks with duration, spend and error, each linked to its transcript
//! (`transcripts/{id}`); workers' permission questions waiting for an answer, with Allow
//! and Deny buttons (`POST /approvals/{id}`, guarded against cross-site requests); chains;
//! spend against budget. Tables with captions and header
//! scopes, an `aria-live` summary, and focus outlines keep it usable by keyboard and screen
//! reader. The same guard as `/mcp` applies.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::App;

const PAGE: &str = include_str!("page.html");

/// Tasks the page lists.
const RECENT: usize = 50;

/// The most of a task's output (and error) `status.json` carries: the page polls it every
/// second, and fifty 10 MB outputs would make each poll a 500 MB document. The transcript
/// link gives the whole.
pub const HEAD_BYTES: usize = 2048;

/// `text` cut to at most `max` bytes at a character boundary, and whether it was cut.
fn head(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

/// A task as the page gets it: its output and error cut to [`HEAD_BYTES`], with
/// `output_truncated` and the whole output's size in `output_bytes`.
fn task_head(task: &claude_pool_protocol::tools::TaskReport) -> serde_json::Value {
    let mut short = task.clone();
    let bytes = task.output.as_ref().map(String::len);
    if let Some(out) = &task.output {
        let (h, cut) = head(out, HEAD_BYTES);
        if cut {
            short.output = Some(h.to_owned());
            short.output_truncated = true;
        }
    }
    if let Some(err) = &task.error {
        short.error = Some(head(err, HEAD_BYTES).0.to_owned());
    }
    let mut v = serde_json::to_value(&short).unwrap_or(serde_json::Value::Null);
    if let (Some(obj), Some(n)) = (v.as_object_mut(), bytes) {
        obj.insert("output_bytes".into(), n.into());
    }
    v
}

/// `GET /`.
pub(super) async fn index() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'",
            ),
        ],
        PAGE,
    )
        .into_response()
}

/// `GET /status.json`: what the page shows, with each task's output cut to its head.
pub(super) async fn status(State(app): State<App>) -> Response {
    let status = match app.pool.status().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let tasks: Vec<serde_json::Value> = app
        .pool
        .recent_tasks(RECENT)
        .await
        .unwrap_or_default()
        .iter()
        .map(task_head)
        .collect();
    axum::Json(serde_json::json!({ "status": status, "tasks": tasks, "csrf": &*app.csrf }))
        .into_response()
}

/// Where the page posts an answer: `/approvals/{request id}`.
pub const ANSWER_PREFIX: &str = "/approvals/";

/// The header an answer from the page carries, holding `status.json`'s `csrf`.
pub const CSRF_HEADER: &str = "x-claude-pool-csrf";

/// `POST /approvals/{id}` with `{"decision": "allow"|"deny", "message"?, "scope"?}`: the
/// page's Approve and Deny buttons. The audit trail says `page`.
pub(super) async fn answer(
    State(app): State<App>,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        decision: claude_pool_protocol::approvals::Decision,
        #[serde(default)]
        message: Option<String>,
        #[serde(default)]
        scope: Option<claude_pool_protocol::approvals::Scope>,
    }
    let body: Body = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("invalid answer: {e}\n")).into_response();
        }
    };
    let params = claude_pool_protocol::approvals::ApproveParams {
        request_id: id,
        decision: body.decision,
        message: body.message.filter(|m| !m.trim().is_empty()),
        scope: body.scope,
        content: None,
    };
    let answer = match claude_pool_protocol::approvals::Answer::from_params(&params) {
        Ok(a) => a,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    match app
        .pool
        .approve_as(&params.request_id, answer, "page")
        .await
    {
        Ok(r) => axum::Json(r).into_response(),
        Err(crate::PoolError::InvalidArgument(e)) => {
            (StatusCode::CONFLICT, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    }
}

/// `GET /transcripts/{id}`: a task's transcript (its first 4 MiB), as NDJSON.
pub(super) async fn transcript(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.pool.transcript(&id, 0, Some(4 * 1024 * 1024)).await {
        Ok(page) => (
            [(header::CONTENT_TYPE, "application/x-ndjson; charset=utf-8")],
            page.ndjson,
        )
            .into_response(),
        Err(e) => (StatusCode::NOT_FOUND, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_cut_at_a_character_boundary_within_the_limit() {
        assert_eq!(head("short", 10), ("short", false));
        let text = "é".repeat(10); // 2 bytes each
        let (h, cut) = head(&text, 5);
        assert!(cut);
        assert_eq!(h, "éé", "5 bytes hold two whole characters");
    }
}
