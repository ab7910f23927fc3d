//! Quick answers in one piece. rmcp answers every POST of a legacy MCP session as a
//! `text/event-stream`: headers first, then a priming event, then the JSON-RPC response, each
//! a write of its own and a wake-up of the client. For the many calls that answer at once
//! (`pool_status`, `pool_submit`, `pool_result`, `ping`) that costs more than the work. This
//! layer holds the headers until the stream's first message: when it is the final response
//! (a result or an error, the stream's last message by the transport's rules), the answer
//! goes out as one `application/json` body, which the transport allows for any POST; when it
//! is a notification (progress of a long call), or nothing came within [`HOLD`], the stream
//! goes on as usual with what was held in front.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::inflight::{InFlight, Ticket};
use super::sessions::{Activity, Open, Stream};
use http_body::Frame;

/// The longest the headers are held for a first message.
pub const HOLD: Duration = Duration::from_millis(20);

/// The middleware: see the module's documentation. It also admits each POST as one request
/// in flight ([`InFlight`]), until its answer is done, and each GET (an event stream) as one
/// of its session's at most `max_streams` ([`Activity::stream`]).
pub async fn layer(
    State((inflight, activity, max_streams)): State<(InFlight, Arc<Activity>, usize)>,
    req: Request,
    next: Next,
) -> Response {
    let post = req.method() == Method::POST;
    let session = req
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok());
    let mut stream: Option<Stream> = None;
    if req.method() == Method::GET
        && let Some(id) = session
    {
        match activity.stream(id, max_streams) {
            Some(s) => stream = Some(s),
            None => {
                return (
                    axum::http::StatusCode::TOO_MANY_REQUESTS,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    "Too Many Requests: this session has as many event streams open as it may; close one first\n",
                )
                    .into_response();
            }
        }
    }
    // The session is busy while this request is open (see `sessions`); a stream is not.
    let mut open = session
        .filter(|_| req.method() != Method::GET)
        .map(|id| activity.open(id));
    let ticket = if post {
        match inflight.admit() {
            Ok(t) => Some(t),
            Err((status, text)) => {
                return (
                    status,
                    [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                    text,
                )
                    .into_response();
            }
        }
    } else {
        None
    };
    let res = next.run(req).await;
    if open.is_none()
        && stream.is_none()
        && let Some(id) = res
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
    {
        open = Some(activity.open(id)); // a session just made
    }
    let sse = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
    if !sse {
        return res;
    }
    if !post {
        // A standalone notification stream: counted against its session's cap while open.
        let (parts, body) = res.into_parts();
        return Response::from_parts(
            parts,
            Body::new(Prefixed {
                prefix: None,
                rest: body,
                _ticket: None,
                _open: open,
                _stream: stream,
            }),
        );
    }
    let (mut parts, mut body) = res.into_parts();
    let mut held: Vec<u8> = Vec::new();
    let deadline = tokio::time::Instant::now() + HOLD;
    loop {
        let next = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx));
        match tokio::time::timeout_at(deadline, next).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    held.extend_from_slice(&data);
                }
                match first_message(&held) {
                    Some(Message::Final(json)) => {
                        parts.headers.insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        parts.headers.remove(header::CACHE_CONTROL);
                        parts.headers.remove("x-accel-buffering");
                        // The stream has nothing after its final response; dropping it only
                        // releases it.
                        return Response::from_parts(
                            parts,
                            Body::new(Prefixed {
                                prefix: Some(Bytes::from(json)),
                                rest: Body::empty(),
                                _ticket: ticket,
                                _open: open,
                                _stream: None,
                            }),
                        );
                    }
                    Some(Message::Other) => break,
                    None => {}
                }
            }
            // The stream ended or failed before any message: pass on what there was.
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    Response::from_parts(
        parts,
        Body::new(Prefixed {
            prefix: (!held.is_empty()).then(|| Bytes::from(held)),
            rest: body,
            _ticket: ticket,
            _open: open,
            _stream: None,
        }),
    )
}

enum Message {
    /// A JSON-RPC response or error: the last message of a POST's stream.
    Final(String),
    /// A notification or a request of the server's: more may follow.
    Other,
}

/// The first complete SSE event of `held` that carries data, if any.
fn first_message(held: &[u8]) -> Option<Message> {
    let text = std::str::from_utf8(held).ok()?;
    // rmcp ends lines with `\n`; anything else is read the long way.
    let normalized;
    let text = if text.contains('\r') {
        normalized = text.replace("\r\n", "\n");
        normalized.as_str()
    } else {
        text
    };
    // Only whole events: the part after the last blank line may still be arriving.
    let complete = &text[..text.rfind("\n\n")?];
    for event in complete.split("\n\n") {
        let mut lines = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d));
        let Some(first) = lines.next() else {
            continue;
        };
        let joined;
        let data = match lines.next() {
            None => first,
            Some(second) => {
                joined = [first, second]
                    .into_iter()
                    .chain(lines)
                    .collect::<Vec<_>>()
                    .join("\n");
                joined.as_str()
            }
        };
        if data.trim().is_empty() {
            continue; // a priming event or a keep-alive
        }
        let last = match is_response(data) {
            Some(last) => last,
            None => match serde_json::from_str::<Shape>(data) {
                Ok(shape) => {
                    shape.id.is_some()
                        && shape.method.is_none()
                        && (shape.result.is_some() || shape.error.is_some())
                }
                Err(_) => false,
            },
        };
        return Some(if last {
            Message::Final(data.to_owned())
        } else {
            Message::Other
        });
    }
    None
}

/// Whether `data` is a JSON-RPC response or error, read from the way rmcp writes messages
/// (`{"jsonrpc":"2.0","id":…,"result"|"error"|"method":…`) without parsing the rest;
/// `None` when it is not written that way.
fn is_response(data: &str) -> Option<bool> {
    let rest = data.strip_prefix(r#"{"jsonrpc":"2.0","id":"#)?;
    let after_id = match rest.as_bytes().first()? {
        b'"' => {
            let end = rest[1..].find(['"', '\\'])? + 1;
            if rest.as_bytes()[end] != b'"' {
                return None; // an escape in the id: the long way
            }
            &rest[end + 1..]
        }
        _ => rest.trim_start_matches(|c: char| c.is_ascii_digit() || c == '-'),
    };
    if after_id.starts_with(r#","result":"#) || after_id.starts_with(r#","error":"#) {
        Some(true)
    } else if after_id.starts_with(r#","method":"#) {
        Some(false)
    } else {
        None
    }
}

/// What tells a JSON-RPC message's kind; the rest is skipped without being kept.
#[derive(serde::Deserialize)]
struct Shape {
    id: Option<serde::de::IgnoredAny>,
    method: Option<serde::de::IgnoredAny>,
    result: Option<serde::de::IgnoredAny>,
    error: Option<serde::de::IgnoredAny>,
}

/// A body that yields `prefix` and then whatever `rest` yields.
struct Prefixed {
    prefix: Option<Bytes>,
    rest: Body,
    /// Counts the request as in flight until the body is done or dropped.
    _ticket: Option<Ticket>,
    /// Keeps the session busy until the body is done or dropped.
    _open: Option<Open>,
    /// Counts a standalone event stream against its session's cap until it is dropped.
    _stream: Option<Stream>,
}

impl HttpBody for Prefixed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(Ok(Frame::data(p))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.is_none() && self.rest.is_end_stream()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_final_response_after_a_priming_event_is_found_whole() {
        let held = b"data: \nid: 0/1\nretry: 3000\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\nid: 0/2\n\n";
        match first_message(held) {
            Some(Message::Final(json)) => {
                assert_eq!(json, r#"{"jsonrpc":"2.0","id":2,"result":{}}"#)
            }
            _ => panic!("the result was not taken as final"),
        }
    }

    #[test]
    fn a_progress_notification_first_keeps_the_stream_and_a_partial_event_waits() {
        let progress =
            b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
        assert!(matches!(first_message(progress), Some(Message::Other)));
        let partial = b"data: \n\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"res";
        assert!(first_message(partial).is_none());
        let server_request = b"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n\n";
        assert!(matches!(
            first_message(server_request),
            Some(Message::Other)
        ));
    }

    #[test]
    fn responses_are_told_from_requests_quickly_and_the_long_way_alike() {
        let cases: [(&str, bool); 7] = [
            (r#"{"jsonrpc":"2.0","id":2,"result":{"x":1}}"#, true),
            (r#"{"jsonrpc":"2.0","id":"a-1","error":{"code":1}}"#, true),
            (r#"{"jsonrpc":"2.0","id":-3,"result":{}}"#, true),
            (r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#, false),
            (
                r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#,
                false,
            ),
            // Written another way: parsed.
            (r#"{"id":2,"jsonrpc":"2.0","result":{}}"#, true),
            (r#"{"jsonrpc":"2.0","id":"a\"b","result":{}}"#, true),
        ];
        for (json, want) in cases {
            let held = format!("data: {json}\nid: 0/1\n\n");
            let got = match first_message(held.as_bytes()) {
                Some(Message::Final(j)) => {
                    assert_eq!(j, json, "the response is passed on whole");
                    true
                }
                Some(Message::Other) => false,
                None => panic!("{json}: not read as a complete event"),
            };
            assert_eq!(got, want, "{json}");
        }
        // CRLF line ends and a message over two data lines.
        let crlf = "data: {\"jsonrpc\":\"2.0\",\r\ndata: \"id\":1,\"result\":{}}\r\n\r\n";
        match first_message(crlf.as_bytes()) {
            Some(Message::Final(j)) => {
                assert_eq!(j, "{\"jsonrpc\":\"2.0\",\n\"id\":1,\"result\":{}}")
            }
            _ => panic!("a two-line response over CRLF was not taken as final"),
        }
    }
}
