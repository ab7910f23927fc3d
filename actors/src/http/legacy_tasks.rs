//! 2025-11-25 task messages over HTTP: each POST's body passes through
//! [`wire::inbound`], and the answers that need it through [`wire::outbound`], whether
//! they come as one JSON body or as an event stream. A session uses 2025-11-25 tasks when
//! its `MCP-Protocol-Version` header names a protocol before 2026-07-28, unless its
//! `initialize` declared the tasks extension (those sessions are remembered by id).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::MAX_BODY_BYTES;
use crate::mcp::protocol_tasks::wire::{self, Augment};

/// Most sessions remembered as having declared the extension; past it the oldest are
/// forgotten all at once (the session limit keeps far fewer open).
const MAX_REMEMBERED: usize = 10_000;

/// The sessions whose `initialize` declared the tasks extension.
pub type ExtensionSessions = Arc<Mutex<HashSet<String>>>;

/// The middleware: see the module's documentation.
pub async fn layer(
    State(extension): State<ExtensionSessions>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let declared = session
        .as_ref()
        .is_some_and(|s| lock(&extension).contains(s));
    let legacy_session = !declared
        && req
            .headers()
            .get("mcp-protocol-version")
            .and_then(|v| v.to_str().ok())
            .is_none_or(wire::is_legacy_version);
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a request body is at most {MAX_BODY_BYTES} bytes"),
            )
                .into_response();
        }
    };
    let seen = wire::inbound(&bytes, legacy_session);
    let body = match seen.rewritten {
        Some(b) => {
            if let Ok(len) = HeaderValue::from_str(&b.len().to_string()) {
                parts.headers.insert(header::CONTENT_LENGTH, len);
            }
            Bytes::from(b)
        }
        None => bytes,
    };
    let res = next.run(Request::from_parts(parts, Body::from(body))).await;
    if seen.opens == Some(false)
        && let Some(id) = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        let mut remembered = lock(&extension);
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(id.to_owned());
    }
    let Some((_, augment)) = seen.augment else {
        return res;
    };
    // `initialize` and `tools/list` answer at once: the whole answer is read and rewritten.
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let sse = parts
        .headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    let out = if sse {
        events(&bytes, augment)
    } else if parts.status.is_success() {
        wire::outbound_bytes(&bytes, augment)
    } else {
        bytes.to_vec()
    };
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An event stream with each answer's data rewritten.
fn events(stream: &[u8], augment: Augment) -> Vec<u8> {
    let mut out = Vec::with_capacity(stream.len() + 128);
    for line in stream.split_inclusive(|b| *b == b'\n') {
        let body = line.trim_ascii_end();
        match body.strip_prefix(b"data:") {
            Some(data) if wire::answer_id(data.trim_ascii()).is_some() => {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&wire::outbound_bytes(data.trim_ascii(), augment));
                out.extend_from_slice(&line[body.len()..]);
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_answer_in_an_event_stream_changes() {
        let stream = b"data: \nid: 0\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"pool_run\"}]}}\nid: 1\n\n";
        let out = String::from_utf8(events(stream, Augment::ToolsList)).unwrap();
        assert!(out.starts_with("data: \nid: 0\n\ndata: {"), "{out}");
        assert!(out.contains("\"taskSupport\":\"optional\""), "{out}");
        assert!(out.ends_with("\nid: 1\n\n"), "{out}");
    }
}
