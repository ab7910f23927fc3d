//! Shared state, the accept loop, one task per connection, and the routes.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

use crate::http::{self, Head, HttpError};
use crate::limits::{Limiter, Limits, Refusal, Stats};
use crate::pyjson::{approx_tokens, dumps};
use crate::reply;

/// Header values never logged in clear.
const REDACT: &[&str] = &[
    "x-api-key",
    "authorization",
    "cookie",
    "proxy-authorization",
];

/// Runtime knobs (`POST /_mock/config`, or the binary's flags).
#[derive(Debug, Clone, Default)]
pub(crate) struct Config {
    /// Answer the next `fail_count` `/v1/messages` with this status (0 = off).
    pub fail_status: i64,
    /// How many requests `fail_status` applies to; -1 = forever.
    pub fail_count: i64,
    /// Seconds to sleep before every `/v1/messages` answer.
    pub delay: f64,
    /// `retry-after` header value on 429/529 answers.
    pub retry_after: Option<String>,
    /// Only fail requests whose model contains this.
    pub fail_model: Option<String>,
    /// Keep the full request body in the log (`full_body`).
    pub log_bodies: bool,
}

impl Config {
    pub(crate) fn to_json(&self) -> Value {
        json!({
            "fail_status": self.fail_status,
            "fail_count": self.fail_count,
            "delay": self.delay,
            "retry_after": self.retry_after,
            "fail_model": self.fail_model,
            "log_bodies": self.log_bodies,
        })
    }

    /// Update the known keys present in `patch` (unknown keys and bad types are ignored).
    pub(crate) fn update(&mut self, patch: &Value) {
        let Some(p) = patch.as_object() else { return };
        let int = |v: &Value| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64));
        let opt_str = |v: &Value| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        };
        if let Some(v) = p.get("fail_status").and_then(int) {
            self.fail_status = v;
        }
        if let Some(v) = p.get("fail_count").and_then(int) {
            self.fail_count = v;
        }
        if let Some(v) = p.get("delay").and_then(Value::as_f64) {
            self.delay = v.max(0.0);
        }
        if let Some(v) = p.get("retry_after") {
            self.retry_after = opt_str(v);
        }
        if let Some(v) = p.get("fail_model") {
            self.fail_model = opt_str(v).filter(|s| !s.is_empty());
        }
        if let Some(v) = p.get("log_bodies").and_then(Value::as_bool) {
            self.log_bodies = v;
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: Vec<Value>,
    counter: u64,
    message_requests: usize,
    fail_first: HashMap<String, u64>,
    config: Config,
    /// The limits in force (see [`crate::limits`]).
    limits: Limits,
    /// What the limits remember: windows, answers in progress, the overload's end.
    limiter: Limiter,
    /// The `/v1/messages` counters; every change is also published on `Shared::stats_seen`.
    stats: Stats,
}

/// State shared by the server thread and the [`crate::MockServer`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    inner: Mutex<Inner>,
    /// The `POST /v1/messages` count, for waiters.
    messages_seen: watch::Sender<usize>,
    /// The counters, for waiters ([`crate::MockServer::wait_for_stats`]).
    stats_seen: watch::Sender<Stats>,
}

impl Default for Shared {
    fn default() -> Self {
        Shared {
            inner: Mutex::default(),
            messages_seen: watch::channel(0).0,
            stats_seen: watch::channel(Stats::default()).0,
        }
    }
}

/// Extra response headers (rate-limit headers, say).
type Headers = Vec<(&'static str, String)>;

/// An admitted `/v1/messages` answer in progress: it leaves the in-flight count when dropped,
/// however the answer ends (written, client gone, connection error).
pub(crate) struct InFlight<'a>(&'a Shared);

impl InFlight<'_> {
    /// The answer is decided and its last bytes are about to be written: count it with
    /// `status` and leave the in-flight count in one step, so a client that has read the
    /// answer always finds it counted.
    fn done(self, status: u16) {
        self.0.update_stats(|g| {
            g.stats.count_answer(status);
            g.limiter.finish();
            g.stats.in_flight = g.limiter.in_flight;
        });
        std::mem::forget(self);
    }
}

impl Drop for InFlight<'_> {
    /// The answer ended early (client gone, connection error): not counted as an answer.
    fn drop(&mut self) {
        self.0.update_stats(|g| {
            g.limiter.finish();
            g.stats.in_flight = g.limiter.in_flight;
        });
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn requests(&self) -> Vec<Value> {
        self.lock().requests.clone()
    }

    pub(crate) fn message_requests(&self) -> usize {
        self.lock().message_requests
    }

    pub(crate) fn reset(&self) {
        let mut g = self.lock();
        g.requests.clear();
        g.counter = 0;
        g.message_requests = 0;
        g.fail_first.clear();
        g.limiter.reset();
        let in_flight = g.limiter.in_flight;
        g.stats = Stats {
            in_flight,
            peak_in_flight: in_flight,
            ..Stats::default()
        };
        self.messages_seen.send_replace(0);
        self.stats_seen.send_replace(g.stats);
    }

    /// Change the counters (and anything else in `Inner`) and publish them.
    fn update_stats(&self, f: impl FnOnce(&mut Inner)) {
        let mut g = self.lock();
        f(&mut g);
        self.stats_seen.send_replace(g.stats);
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats
    }

    pub(crate) fn watch_stats(&self) -> watch::Receiver<Stats> {
        self.stats_seen.subscribe()
    }

    pub(crate) fn limits(&self) -> Limits {
        self.lock().limits.clone()
    }

    pub(crate) fn set_limits(&self, limits: Limits) {
        let mut g = self.lock();
        g.limiter.overloaded_until = limits.overloaded_for.map(|d| Instant::now() + d);
        g.limits = limits;
    }

    /// Admit a `/v1/messages` request that would cost `tokens`, or say why not (counted).
    fn admit(&self, tokens: u64) -> Result<(Headers, InFlight<'_>), Refusal> {
        let mut g = self.lock();
        let g = &mut *g;
        let r = g
            .limiter
            .admit(&g.limits, tokens, Instant::now(), SystemTime::now());
        match &r {
            Ok(_) => {
                g.stats.in_flight = g.limiter.in_flight;
                g.stats.peak_in_flight = g.stats.peak_in_flight.max(g.stats.in_flight);
            }
            Err(refusal) => g.stats.count_refusal(refusal.why),
        }
        self.stats_seen.send_replace(g.stats);
        r.map(|h| (h, InFlight(self)))
    }

    /// Count an answer the limiter let through.
    fn count_answer(&self, status: u16) {
        self.update_stats(|g| g.stats.count_answer(status));
    }

    pub(crate) fn watch_message_requests(&self) -> watch::Receiver<usize> {
        self.messages_seen.subscribe()
    }

    pub(crate) fn configure(&self, patch: &Value) -> Value {
        let mut g = self.lock();
        g.config.update(patch);
        if g.limits.update(patch) {
            g.limiter.overloaded_until = g.limits.overloaded_for.map(|d| Instant::now() + d);
        }
        let mut out = g.config.to_json();
        let left = g
            .limiter
            .overloaded_until
            .map(|t| t.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero());
        if let (Value::Object(o), Value::Object(l)) = (&mut out, g.limits.to_json(left)) {
            o.extend(l);
        }
        out
    }

    fn config(&self) -> Config {
        self.lock().config.clone()
    }

    /// Log one request like the reference mock and return its number `n`.
    fn log(&self, head: &Head, raw: &[u8], body: Option<&Value>, extra: Value) -> u64 {
        let mut headers = Map::new();
        for (k, v) in &head.headers {
            let k = k.to_ascii_lowercase();
            let v = if REDACT.contains(&k.as_str()) {
                format!("<redacted {} chars>", v.chars().count())
            } else {
                v.clone()
            };
            headers.insert(k, Value::String(v));
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as f64 / 1000.0)
            .unwrap_or(0.0);
        let mut rec = Map::new();
        rec.insert("ts".into(), json!(ts));
        rec.insert("method".into(), json!(head.method));
        rec.insert("path".into(), json!(head.target));
        rec.insert("headers".into(), Value::Object(headers));
        rec.insert("body_bytes".into(), json!(raw.len()));
        match body {
            Some(b) if b.get("messages").is_some() => {
                rec.insert("summary".into(), reply::summarize(b));
            }
            Some(b) => {
                let v = if raw.len() < 4000 {
                    b.clone()
                } else {
                    json!(format!("<{} bytes>", raw.len()))
                };
                rec.insert("body".into(), v);
            }
            None => {}
        }
        if let Value::Object(extra) = extra {
            rec.extend(extra);
        }
        let is_message =
            head.method == "POST" && head.path().trim_end_matches('/') == "/v1/messages";
        let mut g = self.lock();
        if g.config.log_bodies
            && let Some(b) = body
        {
            rec.insert("full_body".into(), b.clone());
        }
        g.counter += 1;
        let n = g.counter;
        rec.insert("n".into(), json!(n));
        if is_message {
            g.message_requests += 1;
            g.stats.received += 1;
            self.messages_seen.send_replace(g.message_requests);
            self.stats_seen.send_replace(g.stats);
        }
        g.requests.push(Value::Object(rec));
        n
    }
}

/// Accept connections until `stop` fires (or its sender is dropped).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    tokio::spawn(serve_conn(stream, shared.clone()));
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    eprintln!("mock-anthropic: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

type Conn = BufReader<TcpStream>;

/// Serve requests on one connection until it closes (HTTP/1.1 keep-alive).
async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut conn: Conn = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let head = match http::read_head(&mut conn).await {
            Ok(Some(h)) => h,
            Ok(None) | Err(HttpError::Closed) | Err(HttpError::Io) => return,
            Err(HttpError::Bad(status, msg)) => return reject(conn, status, &msg).await,
        };
        if head.expects_continue()
            && conn
                .get_mut()
                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .await
                .is_err()
        {
            return;
        }
        let raw = match http::read_body(&mut conn, &head).await {
            Ok(b) => b,
            Err(HttpError::Closed) | Err(HttpError::Io) => return,
            Err(HttpError::Bad(status, msg)) => return reject(conn, status, &msg).await,
        };
        let close = !head.keep_alive();
        let outcome = handle(&mut conn, &shared, &head, raw, close).await;
        let _ = conn.get_mut().flush().await;
        if close || outcome.is_err() {
            let _ = conn.get_mut().shutdown().await;
            return;
        }
    }
}

/// Answer a malformed request with an Anthropic-style error, then close (lingering briefly
/// so the client can read the answer before any unread input turns into a reset).
async fn reject(mut conn: Conn, status: u16, msg: &str) {
    let body = error_body(
        status,
        &format!("mock-anthropic: malformed HTTP request: {msg}"),
    );
    let mut out = http::response_head(
        status,
        &[
            ("Content-Type", "application/json".into()),
            ("Content-Length", body.len().to_string()),
        ],
        true,
    );
    out.extend_from_slice(body.as_bytes());
    if conn.get_mut().write_all(&out).await.is_err() {
        return;
    }
    let _ = conn.get_mut().shutdown().await;
    let mut sink = [0u8; 8192];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n) = conn.get_mut().read(&mut sink).await {
            total += n;
            if n == 0 || total > (1 << 20) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
}

fn error_body(status: u16, message: &str) -> String {
    dumps(
        &json!({"type": "error", "error": {"type": reply::error_type(status), "message": message}}),
    )
}

fn request_id() -> String {
    format!("req_mock_{}", reply::rand_hex(16))
}

async fn send_json(
    conn: &mut Conn,
    status: u16,
    obj: &Value,
    extra: &[(&str, String)],
    close: bool,
) -> io::Result<()> {
    let data = dumps(obj);
    let mut headers = vec![
        ("Content-Type", "application/json".to_string()),
        ("Content-Length", data.len().to_string()),
        ("request-id", request_id()),
    ];
    headers.extend(extra.iter().cloned());
    let mut out = http::response_head(status, &headers, close);
    out.extend_from_slice(data.as_bytes());
    conn.get_mut().write_all(&out).await
}

async fn send_error(
    conn: &mut Conn,
    shared: &Shared,
    status: u16,
    message: Option<&str>,
    close: bool,
) -> io::Result<()> {
    send_error_with(conn, shared, status, message, Vec::new(), close).await
}

/// An Anthropic-style error answer with `extra` headers (rate-limit headers, say).
async fn send_error_with(
    conn: &mut Conn,
    shared: &Shared,
    status: u16,
    message: Option<&str>,
    mut extra: Vec<(&str, String)>,
    close: bool,
) -> io::Result<()> {
    let etype = reply::error_type(status);
    if (status == 429 || status == 529)
        && !extra.iter().any(|(k, _)| *k == "retry-after")
        && let Some(ra) = shared.config().retry_after
    {
        extra.push(("retry-after", ra));
    }
    let message = message
        .map(String::from)
        .unwrap_or_else(|| format!("mock {status} {etype}"));
    let obj = json!({"type": "error", "error": {"type": etype, "message": message}});
    send_json(conn, status, &obj, &extra, close).await
}

/// Sleep `secs`, but give up early (returning an error) if the client hangs up meanwhile.
async fn sleep_unless_hangup(conn: &mut Conn, secs: f64) -> io::Result<()> {
    if secs.is_nan() || secs <= 0.0 {
        return Ok(());
    }
    let dur = Duration::try_from_secs_f64(secs).unwrap_or(Duration::from_secs(86_400 * 365));
    let sleep = tokio::time::sleep(dur);
    tokio::pin!(sleep);
    tokio::select! {
        _ = &mut sleep => Ok(()),
        r = async { conn.fill_buf().await.map(|b| b.is_empty()) } => match r {
            Ok(false) => {
                // the client sent more (a pipelined request): it stays buffered; keep waiting
                sleep.await;
                Ok(())
            }
            Ok(true) => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "client hung up")),
            Err(e) => Err(e),
        },
    }
}

/// Route one request and write its answer.
async fn handle(
    conn: &mut Conn,
    shared: &Shared,
    head: &Head,
    raw: Vec<u8>,
    close: bool,
) -> io::Result<()> {
    if head.method == "HEAD" {
        shared.log(head, b"", None, json!({}));
        let out = http::response_head(200, &[("Content-Length", "0".into())], close);
        return conn.get_mut().write_all(&out).await;
    }
    let encoding = head
        .header("content-encoding")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if !encoding.is_empty() && encoding != "identity" {
        shared.log(head, &raw, None, json!({"status": 415}));
        let msg = format!(
            "mock-anthropic does not decode request bodies with Content-Encoding '{encoding}'; \
             send identity bodies (unset CLAUDE_CODE_GZIP_REQUEST_BODY_LEVEL)"
        );
        return send_error(conn, shared, 415, Some(&msg), close).await;
    }
    let body: Option<Value> = if raw.is_empty() {
        None
    } else {
        Some(serde_json::from_slice(&raw).unwrap_or_else(|_| {
            Value::String(String::from_utf8_lossy(&raw[..raw.len().min(200)]).into_owned())
        }))
    };
    let path = head.path().trim_end_matches('/');
    let method = head.method.as_str();
    match (method, path) {
        ("POST", "/v1/messages") => messages(conn, shared, head, &raw, body, close).await,
        ("POST", "/v1/messages/count_tokens") => {
            shared.log(head, &raw, body.as_ref(), json!({"status": 200}));
            let b = body.as_ref().filter(|b| b.is_object());
            let n = approx_tokens(b.and_then(|b| b.get("messages")))
                + approx_tokens(b.and_then(|b| b.get("system")));
            send_json(conn, 200, &json!({"input_tokens": n}), &[], close).await
        }
        ("GET", "/v1/models") => {
            shared.log(head, &raw, body.as_ref(), json!({"status": 200}));
            let data: Vec<Value> = reply::MODELS
                .iter()
                .map(|(id, name)| json!({"type": "model", "id": id, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}))
                .collect();
            let first = reply::MODELS.first().map(|m| m.0);
            let last = reply::MODELS.last().map(|m| m.0);
            let obj = json!({"data": data, "has_more": false, "first_id": first, "last_id": last});
            send_json(conn, 200, &obj, &[], close).await
        }
        ("GET", p) if p.starts_with("/v1/models/") => {
            let id = p.rsplit('/').next().unwrap_or("");
            shared.log(head, &raw, body.as_ref(), json!({"status": 200}));
            let obj = json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"});
            send_json(conn, 200, &obj, &[], close).await
        }
        (_, p) if p.starts_with("/_mock/") => {
            admin(conn, shared, method, p, body.as_ref(), close).await
        }
        _ => {
            shared.log(
                head,
                &raw,
                body.as_ref(),
                json!({"status": 404, "unknown": true}),
            );
            let msg = format!("mock: no route for {method} {path}");
            send_error(conn, shared, 404, Some(&msg), close).await
        }
    }
}

async fn admin(
    conn: &mut Conn,
    shared: &Shared,
    method: &str,
    path: &str,
    body: Option<&Value>,
    close: bool,
) -> io::Result<()> {
    match (path, method) {
        ("/_mock/health", _) => send_json(conn, 200, &json!({"ok": true}), &[], close).await,
        ("/_mock/requests", _) => {
            send_json(conn, 200, &Value::Array(shared.requests()), &[], close).await
        }
        ("/_mock/config", "POST") => {
            let cfg = shared.configure(body.unwrap_or(&Value::Null));
            send_json(conn, 200, &cfg, &[], close).await
        }
        ("/_mock/stats", _) => send_json(conn, 200, &shared.stats().to_json(), &[], close).await,
        ("/_mock/reset", "POST") => {
            shared.reset();
            send_json(conn, 200, &json!({"ok": true}), &[], close).await
        }
        _ => send_error(conn, shared, 404, None, close).await,
    }
}

/// `POST /v1/messages`: directives, then a JSON message or an SSE stream.
async fn messages(
    conn: &mut Conn,
    shared: &Shared,
    head: &Head,
    raw: &[u8],
    body: Option<Value>,
    close: bool,
) -> io::Result<()> {
    let Some(body) = body.filter(Value::is_object) else {
        shared.log(head, raw, None, json!({"status": 400}));
        shared.count_answer(400);
        return send_error(conn, shared, 400, Some("body must be JSON"), close).await;
    };
    // the answer is known up front, so the token limit can weigh it before admission
    let msg = reply::make_message(&body, &reply::plan_reply(&body));
    let usage = |k: &str| msg["usage"][k].as_u64().unwrap_or(0);
    let (limit_headers, in_flight) =
        match shared.admit(usage("input_tokens") + usage("output_tokens")) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                shared.log(
                    head,
                    raw,
                    Some(&body),
                    json!({"status": refusal.status, "refused": format!("{:?}", refusal.why)}),
                );
                return send_error_with(
                    conn,
                    shared,
                    refusal.status,
                    Some(&refusal.message),
                    refusal.headers,
                    close,
                )
                .await;
            }
        };
    let text = reply::directive_text(&body);
    let after_tool = reply::last_is_tool_result(&body);
    let mut status: u16 = 0;
    let cfg = {
        let mut g = shared.lock();
        let c = &mut g.config;
        let model = match body.get("model") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => "None".into(),
        };
        if c.fail_status != 0
            && c.fail_count != 0
            && c.fail_model.as_deref().is_none_or(|fm| model.contains(fm))
        {
            status = c.fail_status.clamp(200, 999) as u16;
            if c.fail_count > 0 {
                c.fail_count -= 1;
            }
        }
        c.clone()
    };
    if let Some(d) = reply::num_directive(&text, "MOCK_STATUS")
        && d >= 1.0
        && !after_tool
    {
        // 1xx would read as an interim response and hang the client
        status = (d as u64).clamp(200, 999) as u16;
    }
    if let Some((n, key)) = reply::fail_first(&text)
        && status == 0
        && !after_tool
    {
        let mut g = shared.lock();
        let seen = g.fail_first.entry(key).or_insert(0);
        if *seen < n {
            *seen += 1;
            status = 500;
        }
    }
    let delay = cfg.delay + reply::num_directive(&text, "MOCK_SLEEP").unwrap_or(0.0);
    shared.log(
        head,
        raw,
        Some(&body),
        json!({"status": if status != 0 { status } else { 200 }, "delay": delay}),
    );
    sleep_unless_hangup(conn, delay).await?;
    if status != 0 {
        in_flight.done(status);
        return send_error_with(conn, shared, status, None, limit_headers, close).await;
    }
    if body.get("stream").and_then(Value::as_bool) != Some(true) {
        in_flight.done(200);
        return send_json(conn, 200, &msg, &limit_headers, close).await;
    }
    // SSE over chunked transfer encoding (keeps the connection reusable); an HTTP/1.0
    // client gets the raw stream and a close instead.
    let chunked = head.minor >= 1;
    let mut headers = vec![
        (
            "Content-Type",
            "text/event-stream; charset=utf-8".to_string(),
        ),
        ("Cache-Control", "no-cache".to_string()),
    ];
    if chunked {
        headers.push(("Transfer-Encoding", "chunked".to_string()));
    }
    headers.push(("request-id", request_id()));
    headers.extend(limit_headers);
    let out = http::response_head(200, &headers, close || !chunked);
    conn.get_mut().write_all(&out).await?;
    conn.get_mut().flush().await?;
    let mut stall = reply::num_directive(&text, "MOCK_STALL").unwrap_or(0.0);
    for (event, data) in reply::sse_events(&msg) {
        if stall > 0.0 && event == "content_block_start" {
            sleep_unless_hangup(conn, stall).await?;
            stall = 0.0;
        }
        let frame = reply::sse_frame(event, &data);
        let mut bytes = Vec::with_capacity(frame.len() + 16);
        if chunked {
            bytes.extend_from_slice(format!("{:x}\r\n", frame.len()).as_bytes());
            bytes.extend_from_slice(frame.as_bytes());
            bytes.extend_from_slice(b"\r\n");
        } else {
            bytes.extend_from_slice(frame.as_bytes());
        }
        conn.get_mut().write_all(&bytes).await?;
        conn.get_mut().flush().await?;
    }
    in_flight.done(200);
    if chunked {
        conn.get_mut().write_all(b"0\r\n\r\n").await?;
        conn.get_mut().flush().await
    } else {
        Err(io::Error::other("HTTP/1.0 stream ends with a close"))
    }
}
