//! The live status page (`GET /`): one self-contained HTML file (no external asset) that
//! polls `status.json` every second — slots with their state, task and restarts; the queue;
//! running and recent tasks with duration, spend and error, each linked to its transcript
//! (`transcripts/{id}`); chains; spend against budget. Tables with captions and header
//! scopes, an `aria-live` summary, and focus outlines keep it usable by keyboard and screen
//! reader. The same guard as `/mcp` applies.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::App;

const PAGE: &str = include_str!("page.html");

/// Tasks the page lists.
const RECENT: usize = 50;

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

/// `GET /status.json`: what the page shows.
pub(super) async fn status(State(app): State<App>) -> Response {
    let status = match app.pool.status().await {
        Ok(s) => s,
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    let tasks = app.pool.recent_tasks(RECENT).await.unwrap_or_default();
    axum::Json(serde_json::json!({ "status": status, "tasks": tasks })).into_response()
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
