//! The quick lane: `pool_status` and `pool_result` without a wait, answered here rather
//! than by the session's handler.
//!
//! Through rmcp a call of a legacy session crosses its session worker, a request-wise
//! channel, the session's service loop and a handler task, and comes back as an event
//! stream: measured, that path costs as much of the front-end's time as the whole bare
//! request, twice what these two reads need. They need nothing of the session (no peer to
//! notify, no elicitation, no progress), so once everything rmcp would check is known to
//! pass — a live session of a legacy revision, a plain `tools/call` with arguments and
//! nothing else, both media types accepted, no session listening to the log — they are
//! answered from the pool by the same functions the handler uses ([`crate::mcp::quick`]),
//! as one JSON body. Anything else, or anything unusual, goes on to rmcp untouched.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rmcp::model::{JsonObject, RequestId, ServerJsonRpcMessage, ServerResult};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde::Deserialize;

use super::MAX_BODY_BYTES;
use crate::mcp::protocol_tasks::wire::is_legacy_version;
use crate::pool::Pool;

/// What the lane needs: the pool, and the sessions rmcp holds.
pub type Lane = (Pool, Arc<LocalSessionManager>);

/// A `tools/call` with nothing but a name and arguments.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Call {
    jsonrpc: String,
    id: RequestId,
    method: String,
    params: Params,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    name: String,
    arguments: JsonObject,
}

/// The middleware: see the module's documentation.
pub async fn layer(State((pool, sessions)): State<Lane>, req: Request, next: Next) -> Response {
    let Some(session) = candidate(&req) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    // Bounded before: the layer in front read it whole.
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return axum::http::StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    // Most calls are not these reads: a look for the names, before any parsing, lets them
    // by for the price of a scan. (A name written with escapes is not seen, and goes to
    // rmcp like any other call.)
    let named = crate::mcp::quick::TOOLS
        .iter()
        .any(|t| bytes.windows(t.len()).any(|w| w == t.as_bytes()));
    if !named {
        return next
            .run(Request::from_parts(parts, Body::from(bytes)))
            .await;
    }
    let call = serde_json::from_slice::<Call>(&bytes).ok().filter(|c| {
        c.jsonrpc == "2.0"
            && c.method == "tools/call"
            && crate::mcp::quick::TOOLS.contains(&c.params.name.as_str())
    });
    let live = match &call {
        Some(_) => sessions.has_session(&session.into()).await.unwrap_or(false),
        None => false,
    };
    if let (Some(call), true) = (call, live)
        && let Some(answer) =
            crate::mcp::quick::call(&pool, &call.params.name, call.params.arguments).await
    {
        let message = match answer {
            Ok(result) => {
                let mut result = ServerResult::CallToolResult(result);
                result.strip_result_type_for_legacy_peer();
                ServerJsonRpcMessage::response(result, call.id)
            }
            Err(error) => ServerJsonRpcMessage::error(error, Some(call.id)),
        };
        if let Ok(json) = serde_json::to_vec(&message) {
            return (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                json,
            )
                .into_response();
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// The request's session, when it is a POST the lane might answer: a session of a legacy
/// revision, JSON in, both media types accepted, and no session listening to the log.
fn candidate(req: &Request) -> Option<String> {
    if req.method() != Method::POST || crate::mcp::logging::any_session_listening() {
        return None;
    }
    let headers = req.headers();
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    text("mcp-protocol-version").filter(|v| is_legacy_version(v))?;
    let json = text(header::CONTENT_TYPE.as_str())?
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    (json && accepts_both(headers)).then_some(())?;
    text("mcp-session-id").map(str::to_owned)
}

fn accepts_both(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        for t in value.to_str().unwrap_or_default().split(',') {
            let t = t.split(';').next().unwrap_or_default().trim();
            json |= t.eq_ignore_ascii_case("application/json");
            sse |= t.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}
