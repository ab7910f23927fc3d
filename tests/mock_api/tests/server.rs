//! HTTP-level tests of the mock (no CLI needed): routes, framing, keep-alive, directives,
//! concurrency, malformed input and shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mock_anthropic::{MockServer, hermetic_cli_env};
use serde_json::{Value, json};

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed response.
#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A tiny blocking HTTP/1.1 client over one connection.
struct Client {
    r: BufReader<TcpStream>,
}

impl Client {
    fn connect(mock: &MockServer) -> Client {
        let s = TcpStream::connect(("127.0.0.1", mock.port())).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Client {
            r: BufReader::new(s),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.r.get_mut().write_all(bytes).expect("write");
    }

    fn request(&mut self, method: &str, path: &str, body: Option<&Value>) -> Resp {
        let data = body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        self.send_raw(head.as_bytes());
        self.send_raw(data.as_bytes());
        self.read_response()
    }

    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("read line");
        l.trim_end_matches(['\r', '\n']).to_string()
    }

    fn read_response(&mut self) -> Resp {
        let status_line = self.line();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let mut headers = Vec::new();
        loop {
            let l = self.line();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').expect("header");
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let size = usize::from_str_radix(&self.line(), 16).expect("chunk size");
                if size == 0 {
                    assert_eq!(self.line(), "");
                    break;
                }
                let mut chunk = vec![0; size];
                self.r.read_exact(&mut chunk).expect("chunk");
                resp.body.extend_from_slice(&chunk);
                assert_eq!(self.line(), "");
            }
        } else if let Some(n) = resp
            .header("content-length")
            .and_then(|v| v.parse::<usize>().ok())
        {
            resp.body = vec![0; n];
            self.r.read_exact(&mut resp.body).expect("body");
        }
        resp
    }

    /// True when the server closed the connection (EOF), false on a timeout.
    fn closed(&mut self) -> bool {
        let mut buf = [0u8; 64];
        matches!(self.r.read(&mut buf), Ok(0))
    }
}

fn messages_body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-test", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

/// The SSE events of a streamed body: `(event name, data)`.
fn sse(body: &str) -> Vec<(String, Value)> {
    body.split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|f| {
            let mut ev = String::new();
            let mut data = Value::Null;
            for l in f.lines() {
                if let Some(e) = l.strip_prefix("event: ") {
                    ev = e.to_string();
                } else if let Some(d) = l.strip_prefix("data: ") {
                    data = serde_json::from_str(d).expect("data json");
                }
            }
            (ev, data)
        })
        .collect()
}

#[test]
fn routes_and_keep_alive() {
    let mock = MockServer::start().expect("start");
    assert!(mock.url().starts_with("http://127.0.0.1:"));
    let mut c = Client::connect(&mock);
    // all on one connection
    assert_eq!(
        c.request("GET", "/_mock/health", None).json(),
        json!({"ok": true})
    );
    let head = {
        c.send_raw(b"HEAD /api/hello HTTP/1.1\r\nHost: x\r\n\r\n");
        c.read_response()
    };
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("0"))
    );
    let models = c.request("GET", "/v1/models", None).json();
    assert_eq!(models["data"][0]["id"], "claude-opus-5-5");
    assert_eq!(
        c.request("GET", "/v1/models/claude-x", None).json()["id"],
        "claude-x"
    );
    let count = c.request(
        "POST",
        "/v1/messages/count_tokens",
        Some(&json!({"messages": [{"role": "user", "content": "hi"}]})),
    );
    assert_eq!(count.json(), json!({"input_tokens": 9}));
    let nf = c.request("GET", "/nope", None);
    assert_eq!(nf.status, 404);
    assert_eq!(nf.json()["error"]["type"], "not_found_error");
    let r = c.request(
        "POST",
        "/v1/messages?beta=true",
        Some(&messages_body("hello there", false)),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.header("request-id")
            .is_some_and(|v| v.starts_with("req_mock_"))
    );
    let msg = r.json();
    assert_eq!(msg["content"][0]["text"], "MOCK: hello there");
    assert_eq!(msg["model"], "claude-test");
    assert_eq!(msg["stop_reason"], "end_turn");
    assert_eq!(mock.message_requests(), 1);
    let log = mock.requests();
    assert_eq!(log.len(), 6, "admin requests are not logged: {log:?}");
    let last = &log[5];
    assert_eq!(last["path"], "/v1/messages?beta=true");
    assert_eq!(last["summary"]["last_user_text"], "hello there");
    assert_eq!(last["status"], 200);
    let reqs = c.request("GET", "/_mock/requests", None).json();
    assert_eq!(reqs.as_array().map(Vec::len), Some(6));
    assert_eq!(
        c.request("POST", "/_mock/reset", None).json(),
        json!({"ok": true})
    );
    assert_eq!((mock.requests().len(), mock.message_requests()), (0, 0));
}

#[test]
fn streams_text_and_tool_use() {
    let mock = MockServer::start().expect("start");
    let mut c = Client::connect(&mock);
    let r = c.request(
        "POST",
        "/v1/messages",
        Some(&messages_body("MOCK_TEXT:one two three four five", true)),
    );
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream; charset=utf-8")
    );
    let evs = sse(&r.text());
    let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "ping",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let text: String = evs
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "one two three four five");
    assert_eq!(evs[0].1["message"]["usage"]["output_tokens"], 1);

    // a tool loop: tool_use first, then the tool result is echoed
    let r = c.request(
        "POST",
        "/v1/messages",
        Some(&messages_body("MOCK_TOOL:echo hi", true)),
    );
    let evs = sse(&r.text());
    assert_eq!(evs[2].1["content_block"]["name"], "Bash");
    let input: String = evs
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    let input: Value = serde_json::from_str(&input).expect("tool input");
    assert_eq!(
        input,
        json!({"command": "echo hi", "description": "mock tool call"})
    );
    let id = evs[2].1["content_block"]["id"].clone();
    let follow_up = json!({"model": "m", "messages": [
        {"role": "user", "content": "MOCK_TOOL:echo hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": id, "name": "Bash", "input": input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": id, "content": "hi\n"}]}]});
    let msg = c.request("POST", "/v1/messages", Some(&follow_up)).json();
    assert_eq!(msg["content"][0]["text"], "MOCK: tool said: hi");
}

#[test]
fn directives() {
    let mock = MockServer::start().expect("start");
    let mut c = Client::connect(&mock);
    let ask = |c: &mut Client, body: Value| c.request("POST", "/v1/messages", Some(&body));

    let r = ask(&mut c, messages_body("MOCK_STATUS:529 busy", false));
    assert_eq!(
        (r.status, r.json()["error"]["type"].as_str()),
        (529, Some("overloaded_error"))
    );

    let u =
        ask(&mut c, messages_body("MOCK_USAGE:1000,500,20,30 x", false)).json()["usage"].clone();
    assert_eq!(
        (
            &u["input_tokens"],
            &u["output_tokens"],
            &u["cache_read_input_tokens"],
            &u["cache_creation_input_tokens"]
        ),
        (&json!(1000), &json!(500), &json!(20), &json!(30))
    );

    assert_eq!(
        ask(
            &mut c,
            messages_body("MOCK_REPLY_MODEL:claude-other x", false)
        )
        .json()["model"],
        "claude-other"
    );

    for expect in [500, 500, 200] {
        assert_eq!(
            ask(&mut c, messages_body("MOCK_FAIL_FIRST:2:k1 x", false)).status,
            expect
        );
    }

    // /clear proof: counts messages and real user texts (system reminders do not count)
    let body = json!({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>x</system-reminder>"},
                                     {"type": "text", "text": "first"}]},
        {"role": "assistant", "content": "MOCK: first"},
        {"role": "user", "content": [{"type": "text", "text": "<system-reminder>only a reminder"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "MOCK_COUNT"}]});
    assert_eq!(
        ask(&mut c, body).json()["content"][0]["text"],
        "messages=5 users=2"
    );

    // --json-schema: the StructuredOutput tool is called with MOCK_JSON, or a sampled object
    let so = |text: &str| {
        json!({"model": "m", "messages": [{"role": "user", "content": text}], "tools": [
            {"name": "StructuredOutput", "input_schema": {"type": "object",
             "properties": {"name": {"type": "string"}, "n": {"type": "integer"}}, "required": ["name", "n"]}}]})
    };
    let m = ask(&mut c, so(r#"MOCK_JSON:{"name":"Ada","n":3}"#)).json();
    assert_eq!(
        (&m["content"][0]["name"], &m["content"][0]["input"]),
        (&json!("StructuredOutput"), &json!({"name": "Ada", "n": 3}))
    );
    assert_eq!(
        ask(&mut c, so("anything")).json()["content"][0]["input"],
        json!({"name": "mock", "n": 0})
    );

    // runtime knobs
    let cfg = mock.configure(&json!({"fail_status": 429, "fail_count": 1, "retry_after": "7"}));
    assert_eq!(cfg["fail_status"], 429);
    let r = ask(&mut c, messages_body("x", false));
    assert_eq!((r.status, r.header("retry-after")), (429, Some("7")));
    assert_eq!(ask(&mut c, messages_body("x", false)).status, 200);
}

#[test]
fn chunked_and_continue_request_bodies() {
    let mock = MockServer::start().expect("start");
    let mut c = Client::connect(&mock);
    let body = messages_body("MOCK_TEXT:chunked ok", false).to_string();
    let (a, b) = body.split_at(10);
    c.send_raw(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send_raw(
        format!(
            "{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\nTrailer: x\r\n\r\n",
            a.len(),
            b.len()
        )
        .as_bytes(),
    );
    assert_eq!(c.read_response().json()["content"][0]["text"], "chunked ok");

    c.send_raw(format!("POST /v1/messages HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    assert_eq!(c.read_response().status, 100);
    c.send_raw(body.as_bytes());
    assert_eq!(c.read_response().json()["content"][0]["text"], "chunked ok");

    c.send_raw(b"POST /v1/messages HTTP/1.1\r\nHost: x\r\nContent-Encoding: gzip\r\nContent-Length: 2\r\n\r\nxx");
    let r = c.read_response();
    assert_eq!(r.status, 415);
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Content-Encoding"))
    );
    // the connection is still usable after a 415
    assert_eq!(c.request("GET", "/_mock/health", None).status, 200);
}

#[test]
fn malformed_http_gets_400_and_close() {
    let mock = MockServer::start().expect("start");
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"\x00\x01\xff binary",
        b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nContent-Length: ten\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n",
        b"POST /v1/messages HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    ] {
        let mut c = Client::connect(&mock);
        c.send_raw(junk);
        let r = c.read_response();
        assert_eq!(r.status, 400, "{junk:?}: {}", r.text());
        assert_eq!(r.header("connection"), Some("close"));
        assert!(c.closed(), "{junk:?}: connection should be closed");
    }
    // invalid JSON body on /v1/messages: a 400 from the API layer, connection kept
    let mut c = Client::connect(&mock);
    c.send_raw(b"POST /v1/messages HTTP/1.1\r\nContent-Length: 3\r\n\r\n{x}");
    assert_eq!(c.read_response().status, 400);
    assert_eq!(c.request("GET", "/_mock/health", None).status, 200);
}

#[test]
fn slow_and_stalled_clients_do_not_block_others() {
    let mock = MockServer::start().expect("start");
    // a client that sends half a request head and stalls
    let mut stalled = Client::connect(&mock);
    stalled.send_raw(b"POST /v1/messages HTTP/1.1\r\nContent-Len");
    // a request sleeping server-side
    let mut sleeper = Client::connect(&mock);
    let body = messages_body("MOCK_SLEEP:60 zz", false).to_string();
    sleeper.send_raw(
        format!(
            "POST /v1/messages HTTP/1.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    // a slow client writing a byte at a time still gets its answer, meanwhile
    let mut slow = Client::connect(&mock);
    for b in b"GET /_mock/health HTTP/1.1\r\nHost: x\r\n\r\n" {
        slow.send_raw(&[*b]);
    }
    assert_eq!(slow.read_response().json(), json!({"ok": true}));
    assert_eq!(
        Client::connect(&mock)
            .request("GET", "/_mock/health", None)
            .status,
        200
    );
    // the stalled client can still finish its request later
    stalled.send_raw(b"gth: 0\r\n\r\n");
    assert_eq!(
        stalled.read_response().status,
        400,
        "empty body on /v1/messages"
    );
}

#[test]
fn dropping_the_server_stops_it() {
    let mock = MockServer::start().expect("start");
    let port = mock.port();
    let mut open = Client::connect(&mock);
    assert_eq!(open.request("GET", "/_mock/health", None).status, 200);
    drop(mock);
    assert!(open.closed(), "open connections are dropped");
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "listener closed"
    );
}

#[tokio::test]
async fn works_from_async_code_and_waits_for_requests() {
    let mock = MockServer::start().expect("start");
    assert!(
        !mock
            .wait_for_message_requests(1, Duration::from_millis(50))
            .await
    );
    let port = mock.port();
    let client = tokio::task::spawn_blocking(move || {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut c = Client {
            r: BufReader::new(s),
        };
        c.request("POST", "/v1/messages", Some(&messages_body("hi", false)))
            .status
    });
    assert!(mock.wait_for_message_requests(1, IO_TIMEOUT).await);
    assert_eq!(client.await.expect("join"), 200);
}

#[test]
fn hermetic_env_has_everything_the_cli_needs() {
    let scratch = std::env::temp_dir().join(format!("mock-anthropic-env-{}", std::process::id()));
    let env = hermetic_cli_env("http://127.0.0.1:1", &scratch);
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(
        get("ANTHROPIC_BASE_URL").as_deref(),
        Some("http://127.0.0.1:1")
    );
    for k in [
        "DISABLE_TELEMETRY",
        "DISABLE_AUTOUPDATER",
        "DISABLE_ERROR_REPORTING",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
    ] {
        assert_eq!(get(k).as_deref(), Some("1"), "{k}");
    }
    assert_eq!(get("CLAUDE_CODE_MAX_RETRIES").as_deref(), Some("0"));
    assert!(get("ANTHROPIC_API_KEY").is_some() && get("PATH").is_some());
    let home = get("HOME").expect("HOME");
    assert!(home.starts_with(&*scratch.to_string_lossy()) && std::path::Path::new(&home).is_dir());
    assert_eq!(get("TMPDIR"), get("CLAUDE_CODE_TMPDIR"));
    assert!(get("CLAUDECODE").is_none() && get("CLAUDE_CODE_ENTRYPOINT").is_none());
    let _ = std::fs::remove_dir_all(&scratch);
}
