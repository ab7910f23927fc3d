//! The stdio transport with JSON-RPC's error answers. rmcp reads one message per line and
//! answers what it cannot decode with a bare `Invalid request` (no `id` member, and a parse
//! error is not told apart). In front of it, every stdin line is checked first: a message rmcp
//! decodes passes untouched; anything else is answered here as the JSON-RPC 2.0
//! specification says — `-32700` (id null) for what is not JSON, `-32600` for what is not a
//! request (a batch, a wrong `jsonrpc`, a bad `id`, a line over [`MAX_LINE`]), `-32602` (with
//! the request's id) for a known method with malformed params — and nothing for a
//! notification or a response, which get no answer. The answers and rmcp's own output share
//! stdout one whole line at a time, so stdout carries nothing but JSON-RPC messages.
//!
//! The same two tasks carry a 2025-11-25 session's task messages to and from the server
//! ([`wire`]): whether the session uses them is what its `initialize` said.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use rmcp::model::ClientJsonRpcMessage;
use serde_json::{Value, json};

use crate::mcp::protocol_tasks::wire::{self, Augment};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

/// The longest stdin line read as a message (a 1.5 MB prompt fits many times).
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// What to do with one stdin line.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// A message rmcp decodes: pass it on.
    Pass,
    /// Nothing to answer (blank, a malformed notification or response).
    Drop,
    /// Answer with this error message.
    Reply(Value),
}

fn error(id: Value, code: i64, message: String) -> Verdict {
    Verdict::Reply(
        json!({ "jsonrpc": "2.0", "id": id, "error": { "code": code, "message": message } }),
    )
}

/// Judges one line (without its newline).
pub fn classify(line: &[u8]) -> Verdict {
    let line = line.trim_ascii();
    if line.is_empty() {
        return Verdict::Drop;
    }
    if serde_json::from_slice::<ClientJsonRpcMessage>(line).is_ok() {
        return Verdict::Pass;
    }
    let value: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return error(Value::Null, -32700, format!("Parse error: {e}")),
    };
    let Value::Object(obj) = value else {
        let why = if value.is_array() {
            "batches are not supported"
        } else {
            "a message is a JSON object"
        };
        return error(Value::Null, -32600, format!("Invalid request: {why}"));
    };
    let id = match obj.get("id") {
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => {
            return error(
                Value::Null,
                -32600,
                "Invalid request: id must be a string or a number".into(),
            );
        }
        None => None,
    };
    if obj.get("jsonrpc") != Some(&json!("2.0")) {
        return error(
            id.unwrap_or(Value::Null),
            -32600,
            "Invalid request: jsonrpc must be \"2.0\"".into(),
        );
    }
    match (obj.get("method"), id) {
        // A notification gets no answer, even a malformed one.
        (Some(Value::String(_)), None) => Verdict::Drop,
        (Some(Value::String(method)), Some(id)) => {
            let why = serde_json::from_slice::<ClientJsonRpcMessage>(line)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            error(id, -32602, format!("Invalid params for {method}: {why}"))
        }
        (Some(_), id) => error(
            id.unwrap_or(Value::Null),
            -32600,
            "Invalid request: method must be a string".into(),
        ),
        // A response of the client's that does not decode: no answer is possible.
        (None, _) if obj.contains_key("result") || obj.contains_key("error") => Verdict::Drop,
        (None, id) => error(
            id.unwrap_or(Value::Null),
            -32600,
            "Invalid request: no method".into(),
        ),
    }
}

/// Puts the checks between `reader`/`writer` (the process's stdio) and rmcp: returns the
/// pair rmcp serves on. Two tasks do the work; they end with stdin's EOF and rmcp's exit.
/// `eof` is cancelled when stdin ends, before rmcp is told.
pub fn checked<R, W>(
    reader: R,
    writer: W,
    eof: tokio_util::sync::CancellationToken,
) -> (DuplexStream, DuplexStream)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (mut to_rmcp, rmcp_in) = tokio::io::duplex(1 << 20);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 20);
    let (replies, mut replies_rx) = mpsc::unbounded_channel::<Vec<u8>>();
    // Answers that need more for a 2025-11-25 client, by request id.
    let pending: Arc<Mutex<HashMap<String, Augment>>> = Arc::default();
    let pending_out = pending.clone();
    let legacy_session = AtomicBool::new(true);
    tokio::spawn(async move {
        let mut input = BufReader::with_capacity(1 << 16, reader);
        let mut line = Vec::new();
        loop {
            line.clear();
            match read_line(&mut input, &mut line).await {
                Ok(Line::Eof) | Err(_) => break,
                Ok(Line::TooLong) => {
                    tracing::warn!("dropped a stdin line over {MAX_LINE} bytes");
                    if let Verdict::Reply(v) = error(
                        Value::Null,
                        -32600,
                        format!("Invalid request: a message over {MAX_LINE} bytes"),
                    ) {
                        let _ = replies.send(v.to_string().into_bytes());
                    }
                }
                Ok(Line::Whole) => match classify(&line) {
                    Verdict::Pass => {
                        let seen = wire::inbound(&line, legacy_session.load(Ordering::Relaxed));
                        if let Some(legacy) = seen.opens {
                            legacy_session.store(legacy, Ordering::Relaxed);
                        }
                        if let Some((id, augment)) = seen.augment {
                            lock(&pending).insert(id, augment);
                        }
                        if let Some(rewritten) = seen.rewritten {
                            line = rewritten;
                        }
                        line.push(b'\n');
                        if to_rmcp.write_all(&line).await.is_err() {
                            break;
                        }
                    }
                    Verdict::Drop => {
                        tracing::debug!(
                            line = %String::from_utf8_lossy(&line[..line.len().min(200)]),
                            "dropped a stdin line that needs no answer"
                        );
                    }
                    Verdict::Reply(v) => {
                        tracing::debug!(answer = %v, "answered a malformed stdin line");
                        let _ = replies.send(v.to_string().into_bytes());
                    }
                },
            }
        }
        // EOF for rmcp: the server ends as it always did when stdin closes.
        eof.cancel();
        let _ = to_rmcp.shutdown().await;
    });
    tokio::spawn(async move {
        let mut out = writer;
        let mut from_rmcp = BufReader::new(from_rmcp);
        let mut line = Vec::new();
        let (mut rmcp_open, mut replies_open) = (true, true);
        // Ends with rmcp's output: once the server is gone, nothing is answered any more.
        while rmcp_open {
            let next = tokio::select! {
                // An answer made here goes before rmcp's answers to later lines.
                biased;
                reply = replies_rx.recv(), if replies_open => match reply {
                    Some(mut r) => { r.push(b'\n'); Some(r) }
                    None => { replies_open = false; None }
                },
                // Partial reads stay in `line` (read_until is cancel-safe that way).
                read = from_rmcp.read_until(b'\n', &mut line) => match read {
                    Ok(0) | Err(_) => { rmcp_open = false; None }
                    Ok(_) => Some(augmented(std::mem::take(&mut line), &pending_out)),
                },
            };
            if let Some(bytes) = next
                && (out.write_all(&bytes).await.is_err() || out.flush().await.is_err())
            {
                break;
            }
        }
    });
    (rmcp_in, rmcp_out)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// rmcp's output line, with what a 2025-11-25 client reads added when it answers a request
/// that needs it.
fn augmented(line: Vec<u8>, pending: &Mutex<HashMap<String, Augment>>) -> Vec<u8> {
    let augment = {
        let mut pending = lock(pending);
        if pending.is_empty() {
            return line;
        }
        match wire::answer_id(line.trim_ascii_end()).and_then(|id| pending.remove(&id)) {
            Some(a) => a,
            None => return line,
        }
    };
    let mut out = wire::outbound_bytes(line.trim_ascii_end(), augment);
    out.push(b'\n');
    out
}

enum Line {
    Whole,
    TooLong,
    Eof,
}

/// Reads one line into `buf` (without the newline), at most [`MAX_LINE`] bytes of it; the
/// rest of a longer line is skipped.
async fn read_line<R: AsyncRead + Unpin>(
    input: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    let mut too_long = false;
    loop {
        let chunk = input.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Whole
            });
        }
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        input.consume(if done { take + 1 } else { take });
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Whole });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(v: &Verdict) -> Option<(i64, Value)> {
        match v {
            Verdict::Reply(r) => Some((r["error"]["code"].as_i64()?, r["id"].clone())),
            _ => None,
        }
    }

    #[test]
    fn each_kind_of_bad_line_gets_the_specs_answer() {
        let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert_eq!(classify(ping), Verdict::Pass);
        assert_eq!(classify(b"   "), Verdict::Drop);
        assert_eq!(
            code(&classify(b"{\"jsonrpc\":")),
            Some((-32700, Value::Null))
        );
        assert_eq!(code(&classify(b"\xff\xfe")), Some((-32700, Value::Null)));
        assert_eq!(code(&classify(b"[1,2]")), Some((-32600, Value::Null)));
        assert_eq!(code(&classify(b"7")), Some((-32600, Value::Null)));
        assert_eq!(
            code(&classify(br#"{"jsonrpc":"1.0","id":4,"method":"ping"}"#)),
            Some((-32600, json!(4)))
        );
        assert_eq!(
            code(&classify(br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#)),
            Some((-32600, Value::Null))
        );
        assert_eq!(
            code(&classify(
                br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":5}"#
            )),
            Some((-32602, json!("a")))
        );
        assert_eq!(
            code(&classify(br#"{"jsonrpc":"2.0","id":9}"#)),
            Some((-32600, json!(9)))
        );
        assert_eq!(
            classify(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":1}"#),
            Verdict::Drop
        );
    }

    #[tokio::test]
    async fn a_line_over_the_limit_is_skipped_whole_and_the_next_one_read() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nnext\n");
        let mut input = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut input, &mut buf).await,
            Ok(Line::TooLong)
        ));
        buf.clear();
        assert!(matches!(
            read_line(&mut input, &mut buf).await,
            Ok(Line::Whole)
        ));
        assert_eq!(buf, b"next");
        buf.clear();
        assert!(matches!(
            read_line(&mut input, &mut buf).await,
            Ok(Line::Eof)
        ));
    }
}
