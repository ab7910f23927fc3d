//! HTTP safe by default (issue 18): a token even when none is given, kept in a private
//! file; bounds on slow and numerous connections; depth tokens for the children, which never
//! see the server's own token; status documents that carry output heads.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use claude_pool_tests::http::{HttpClient, HttpServer, Setup};
use claude_pool_tests::server::{Server, ServerOptions, Transport, start_refused};
use claude_pool_tests::{Scratch, within};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads `stream` until the server closes it (EOF or reset); fails after `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration, what: &str) {
    within(limit, what, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
}

/// `GET /health` on an open keep-alive connection; its status code.
async fn health_on(stream: &mut TcpStream, addr: &str) -> u16 {
    get_on(stream, addr, "/health", None).await.0
}

/// `GET path` (with `token` as the bearer) on an open keep-alive connection; its status code
/// and body.
async fn get_on(
    stream: &mut TcpStream,
    addr: &str,
    path: &str,
    token: Option<&str>,
) -> (u16, String) {
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}\r\n");
    stream.write_all(req.as_bytes()).await.expect("send");
    within(
        Duration::from_secs(30),
        "an answer on the kept connection",
        async {
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "the kept connection was closed: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                let Some(end) = text.find("\r\n\r\n") else {
                    continue;
                };
                let length: usize = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().to_owned())
                    })
                    .and_then(|v| v.parse().ok())
                    .expect("a content-length");
                if got.len() >= end + 4 + length {
                    let status = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse().ok())
                        .expect("a status code");
                    let body = String::from_utf8_lossy(&got[end + 4..end + 4 + length]);
                    return (status, body.into_owned());
                }
            }
        },
    )
    .await
}

/// The environment of process `pid`, as `(name, value)` pairs.
fn environ(pid: u32) -> Vec<(String, String)> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("read the child's environ");
    raw.split(|b| *b == 0)
        .filter_map(|kv| {
            let kv = String::from_utf8_lossy(kv).into_owned();
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
        })
        .collect()
}

/// The pid of the first slot's process, from `pool_status` over `client`'s `session`.
async fn slot_pid(client: &HttpClient, session: &str) -> u32 {
    let s = client
        .call(session, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let pids = Server::slot_pids(&s["result"]["structuredContent"]);
    *pids.first().unwrap_or_else(|| panic!("no slot pid in {s}"))
}

#[tokio::test]
async fn without_a_token_every_request_but_health_is_refused() {
    let server = HttpServer::start(1, &[]).await;
    let session = server.session(&[]).await;
    server
        .call(&session, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let anon = server.anonymous();
    for (method, path) in [
        ("POST", "/mcp"),
        ("GET", "/mcp"),
        ("GET", "/metrics"),
        ("GET", "/status.json"),
        ("GET", "/transcripts/some-task"),
    ] {
        let r = anon.request(method, path, &[], "{}").await;
        assert_eq!(r.status, 401, "{method} {path} without a token: {r:?}");
    }
    let health = anon.request("GET", "/health", &[], "").await;
    assert_eq!(
        health.status, 200,
        "/health must answer without a token: {health:?}"
    );
    for path in ["/metrics", "/status.json"] {
        let r = server.request("GET", path, &[], "").await;
        assert_eq!(r.status, 200, "{path} with the token: {r:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn the_token_file_is_private_under_umask_022_and_a_second_start_reuses_it() {
    let runtime = Scratch::new("runtime");
    let setup = || Setup {
        runtime: Some(runtime.path().to_path_buf()),
        umask: Some(0o022),
        ..Setup::default()
    };
    let first = HttpServer::start_with(1, &[], setup()).await;
    let file = runtime.join("claude-pool/http-token");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "the token file's mode");
    assert_eq!(
        mode(&runtime.join("claude-pool")),
        0o700,
        "its directory's mode"
    );
    let token = first
        .token
        .clone()
        .expect("the harness read the token file");
    assert_eq!(token.len(), 64, "32 random bytes in hex: {}", token.len());
    let log = std::fs::read_to_string(&first.log).expect("the log");
    assert!(
        log.contains(&file.display().to_string()),
        "the log must name the token file: {log}"
    );
    assert!(!log.contains(&token), "the token was logged");
    first.stop().await;

    let second = HttpServer::start_with(1, &[], setup()).await;
    assert_eq!(
        second.token.as_deref(),
        Some(token.as_str()),
        "the second start must reuse the file's token"
    );
    let r = second.request("GET", "/metrics", &[], "").await;
    assert_eq!(
        r.status, 200,
        "the first start's token on the second: {r:?}"
    );
    second.stop().await;
}

#[tokio::test]
async fn help_names_the_token_file_and_the_opt_out() {
    let out = tokio::process::Command::new(claude_pool_tests::server_bin())
        .arg("--help")
        .output()
        .await
        .expect("run claude-pool-server --help");
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "$XDG_RUNTIME_DIR/claude-pool/http-token",
        "~/.local/state/claude-pool/http-token",
        "--http-no-auth",
        "--http-header-timeout",
        "--http-max-connections",
    ] {
        assert!(
            help.contains(needle),
            "--help does not name {needle}: {help}"
        );
    }
}

#[tokio::test]
async fn a_token_file_readable_by_others_is_refused_with_the_fix() {
    let scratch = Scratch::new("loose-token");
    let given = scratch.join("token");
    std::fs::write(&given, "s3cret\n").expect("write the token");
    std::fs::set_permissions(&given, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let fake = claude_pool_tests::fake_claude_bin();
    let base = [
        "--http",
        "--port",
        "0",
        "--claude-bin",
        fake.to_str().expect("utf-8 path"),
    ];
    let mut args = base.to_vec();
    args.extend(["--http-token-file", given.to_str().expect("utf-8 path")]);
    let err = start_refused(&args, &[]).await;
    assert!(
        err.contains(&format!("chmod 600 {}", given.display())),
        "the refusal must say how to fix it: {err}"
    );
    assert!(!err.contains("s3cret"), "the token was printed: {err}");
    // The same for a token file found in the default place.
    let runtime = scratch.join("run");
    let found = runtime.join("claude-pool/http-token");
    std::fs::create_dir_all(found.parent().expect("a directory")).expect("mkdir");
    std::fs::write(&found, "s3cret\n").expect("write the token");
    std::fs::set_permissions(&found, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let runtime = runtime.to_str().expect("utf-8 path");
    let err = start_refused(&base, &[("XDG_RUNTIME_DIR", runtime)]).await;
    assert!(
        err.contains(&format!("chmod 600 {}", found.display())),
        "the refusal must say how to fix it: {err}"
    );
}

#[tokio::test]
async fn a_client_slow_to_send_its_headers_is_cut_off_within_the_header_timeout() {
    let timeout = Duration::from_secs(1);
    let server = HttpServer::start(1, &["--http-header-timeout", "1s"]).await;
    let mut slow = TcpStream::connect(&server.addr).await.expect("connect");
    slow.write_all(b"GET /health HT")
        .await
        .expect("send half a request line");
    let began = Instant::now();
    // Well under the default (10 s): only the flag's 1 s can close it in time.
    closed_within(
        &mut slow,
        timeout * 5,
        "the server closing a half-sent request",
    )
    .await;
    assert!(
        began.elapsed() >= timeout / 2,
        "closed after {:?}, before the header timeout of {timeout:?}",
        began.elapsed()
    );
    // The server still serves everyone else.
    let r = server.request("GET", "/health", &[], "").await;
    assert!(r.status == 200 || r.status == 503, "{r:?}");
    server.stop().await;
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once_while_health_still_answers() {
    let cap = 3;
    let server = HttpServer::start(
        1,
        &[
            "--http-max-connections",
            &cap.to_string(),
            "--http-header-timeout",
            "120s",
        ],
    )
    .await;
    let session = server.session(&[]).await;
    server
        .call(&session, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    // cap - 1 connections that send nothing, and one kept alive for /health.
    let mut held = Vec::new();
    for _ in 0..cap - 1 {
        held.push(TcpStream::connect(&server.addr).await.expect("connect"));
    }
    let mut kept = TcpStream::connect(&server.addr).await.expect("connect");
    assert_eq!(
        health_on(&mut kept, &server.addr).await,
        200,
        "/health within the cap"
    );
    // One more: closed at once, long before the 120 s header timeout.
    let mut over = TcpStream::connect(&server.addr).await.expect("connect");
    let _ = over.write_all(b"GET /health HTTP/1.1\r\n").await;
    closed_within(
        &mut over,
        Duration::from_secs(10),
        "the connection past the cap closing",
    )
    .await;
    assert_eq!(
        health_on(&mut kept, &server.addr).await,
        200,
        "/health on a connection within the cap, with the cap reached"
    );
    let (status, metrics) =
        get_on(&mut kept, &server.addr, "/metrics", server.token.as_deref()).await;
    assert_eq!(status, 200, "{metrics}");
    assert!(
        metrics.contains("claude_pool_http_connections_refused_total 1\n"),
        "the one connection past the cap must be counted: {metrics}"
    );
    drop(held);
    server.stop().await;
}

#[tokio::test]
async fn a_childs_environment_holds_no_server_secret() {
    let main = "main-token-of-the-server-0123456789";
    let server = Server::start(
        ServerOptions::fake(1)
            .transport(Transport::Http)
            .env("CLAUDE_POOL_HTTP_TOKEN", main)
            // A user who exported the main token for their own client, too.
            .env("CLAUDE_POOL_TOKEN", main),
    )
    .await;
    assert_eq!(
        server.token.as_deref(),
        Some(main),
        "the harness uses the given token"
    );
    let (_call, _, _id) = server.start_run("MOCK_SLEEP:30").await;
    let status = server.status().await;
    let pid = *Server::slot_pids(&status).first().expect("a slot pid");
    let env = environ(pid);
    let leaked: Vec<&String> = env
        .iter()
        .filter(|(_, v)| v.contains(main))
        .map(|(k, _)| k)
        .collect();
    assert!(
        leaked.is_empty(),
        "the main token is in the child's {leaked:?}"
    );
    let depth_token = env
        .iter()
        .find(|(k, _)| k == "CLAUDE_POOL_TOKEN")
        .map(|(_, v)| v.clone())
        .expect("the child has a CLAUDE_POOL_TOKEN");
    assert!(
        !depth_token.is_empty() && depth_token != main,
        "{depth_token}"
    );
    assert!(
        !env.iter().any(|(k, _)| k == "CLAUDE_POOL_HTTP_TOKEN"),
        "the child inherited CLAUDE_POOL_HTTP_TOKEN"
    );
    server.close().await;
}

#[tokio::test]
async fn a_depth_token_at_the_max_depth_is_refused_work_while_the_main_token_works() {
    let server = HttpServer::start(1, &["--max-depth", "1"]).await;
    let session = server.session(&[]).await;
    let pid = slot_pid(&server, &session).await;
    let child_token = environ(pid)
        .into_iter()
        .find(|(k, _)| k == "CLAUDE_POOL_TOKEN")
        .map(|(_, v)| v)
        .expect("the slot's process has a depth token");
    // The child (depth 1, the max) calling back, even claiming depth 0 in the header.
    let child = server.with_token(&child_token);
    for claimed in [&[][..], &[("x-mcp-depth", "0")][..]] {
        let s = child.session(claimed).await;
        let r = child
            .call(
                &s,
                claimed,
                "pool_run",
                json!({ "prompt": "MOCK_TEXT: deeper" }),
            )
            .await;
        assert_eq!(r["result"]["isError"], true, "{claimed:?}: {r}");
        assert_eq!(
            r["result"]["structuredContent"]["error"], "recursion_limit_exceeded",
            "{claimed:?}: {r}"
        );
        assert_eq!(
            r["result"]["structuredContent"]["depth"], 1,
            "{claimed:?}: {r}"
        );
    }
    let r = server
        .call(
            &session,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: top" }),
        )
        .await;
    assert_eq!(r["result"]["structuredContent"]["output"], "top", "{r}");
    // A token never issued is no depth token.
    let forged = server.with_token(&format!("{child_token}0"));
    let r = forged.request("GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 401, "{r:?}");
    server.stop().await;
}

#[tokio::test]
async fn status_json_carries_the_head_of_a_large_output_not_the_whole() {
    let server = HttpServer::start(1, &[]).await;
    let session = server.session(&[]).await;
    let size = 3_000_000usize;
    let prompt = format!("MOCK_SHELL:head -c {size} /dev/zero | tr '\\0' a");
    let r = server
        .call(&session, &[], "pool_run", json!({ "prompt": prompt }))
        .await;
    let output = r["result"]["structuredContent"]["output"]
        .as_str()
        .unwrap_or_else(|| {
            panic!(
                "no output: {}",
                r.to_string().chars().take(500).collect::<String>()
            )
        });
    let want = format!("shell rc=0 out={}", "a".repeat(size));
    assert_eq!(
        output.len(),
        want.len(),
        "the call itself gets the whole output"
    );
    let status = server.request("GET", "/status.json", &[], "").await;
    assert_eq!(status.status, 200);
    assert!(
        status.body.len() < 64 * 1024,
        "status.json is {} bytes for one {}-byte output",
        status.body.len(),
        want.len()
    );
    let v: Value = serde_json::from_str(&status.body).expect("status JSON");
    let task = &v["tasks"][0];
    assert_eq!(task["output_truncated"], true, "{task}");
    assert_eq!(task["output_bytes"], want.len(), "{task}");
    let head = task["output"].as_str().expect("an output head");
    assert!(
        !head.is_empty() && head.len() <= 2048 && want.starts_with(head),
        "the head must be the output's first bytes: {} bytes",
        head.len()
    );
    server.stop().await;
}

#[tokio::test]
async fn wrong_tokens_from_one_address_get_429_while_the_right_token_still_passes() {
    // The documented default: 10 failures a minute.
    const LIMIT: usize = 10;
    let server = HttpServer::start(1, &[]).await;
    let guess = server.with_token("a-guess-at-the-token");
    for i in 0..LIMIT {
        let r = guess.request("GET", "/metrics", &[], "").await;
        assert_eq!(r.status, 401, "wrong token {} of {LIMIT}: {r:?}", i + 1);
    }
    let r = guess.request("GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 429, "wrong token {}: {r:?}", LIMIT + 1);
    assert!(r.header("retry-after").is_some(), "{r:?}");
    let r = server.request("GET", "/metrics", &[], "").await;
    assert_eq!(
        r.status, 200,
        "the right token while the address is limited: {r:?}"
    );
    let r = guess.request("GET", "/metrics", &[], "").await;
    assert_eq!(r.status, 429, "still limited: {r:?}");
    let log = std::fs::read_to_string(&server.log).expect("the log");
    assert!(
        log.contains("wrong bearer token"),
        "the failures must be logged: {log}"
    );
    assert!(
        !log.contains("a-guess-at-the-token"),
        "a presented token was logged"
    );
    server.stop().await;
}

/// Opens `GET /mcp` (an event stream) of `session`; returns the connection once the
/// stream's headers came, and their status code.
async fn open_stream(client: &HttpClient, session: &str) -> (TcpStream, u16) {
    let mut s = TcpStream::connect(&client.addr).await.expect("connect");
    let token = client.token.clone().expect("a token");
    let req = format!(
        "GET /mcp HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: text/event-stream\r\nMcp-Session-Id: {session}\r\nMCP-Protocol-Version: 2025-06-18\r\nAuthorization: Bearer {token}\r\n\r\n",
        client.addr
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let status = within(
        Duration::from_secs(30),
        "the event stream's headers",
        async {
            let mut got = Vec::new();
            let mut buf = [0u8; 1024];
            loop {
                let n = s.read(&mut buf).await.expect("read");
                assert!(
                    n > 0,
                    "closed before headers: {:?}",
                    String::from_utf8_lossy(&got)
                );
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if text.contains("\r\n\r\n") {
                    return text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|c| c.parse::<u16>().ok())
                        .expect("a status code");
                }
            }
        },
    )
    .await;
    (s, status)
}

#[tokio::test]
async fn a_session_holding_an_event_stream_still_expires_when_idle() {
    let server = HttpServer::start(1, &["--http-session-idle", "1s"]).await;
    let session = server.session(&[]).await;
    let (mut stream, status) = open_stream(&server, &session).await;
    assert_eq!(status, 200, "the event stream");
    // Idle 1 s, swept a few times a second: the stream ends with its session.
    closed_within(
        &mut stream,
        Duration::from_secs(15),
        "the idle session's stream ending",
    )
    .await;
    let ping = json!({ "jsonrpc": "2.0", "id": 9, "method": "ping" });
    let gone = server.post(Some(&session), &[], &ping).await;
    assert_eq!(
        gone.status, 404,
        "the idle session must be closed: {gone:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn event_streams_past_the_cap_of_a_session_get_429() {
    let cap = 2;
    let server = HttpServer::start(1, &["--http-max-streams", &cap.to_string()]).await;
    let session = server.session(&[]).await;
    let mut open = Vec::new();
    for i in 0..cap {
        let (s, status) = open_stream(&server, &session).await;
        assert_eq!(status, 200, "stream {} of {cap}", i + 1);
        open.push(s);
    }
    let (_s, status) = open_stream(&server, &session).await;
    assert_eq!(status, 429, "stream {} past the cap of {cap}", cap + 1);
    let other = server.session(&[]).await;
    let (_o, status) = open_stream(&server, &other).await;
    assert_eq!(status, 200, "another session's stream");
    drop(open);
    server.stop().await;
}

#[tokio::test]
async fn a_client_trickling_its_body_is_cut_off_within_the_body_timeout() {
    let timeout = Duration::from_secs(1);
    let server = HttpServer::start(1, &["--http-body-timeout", "1s"]).await;
    let token = server.token.clone().expect("a token");
    let mut slow = TcpStream::connect(&server.addr).await.expect("connect");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: 100\r\n\r\n{{\"jsonrpc\":",
        server.addr
    );
    slow.write_all(head.as_bytes())
        .await
        .expect("send the head and a tenth of the body");
    let began = Instant::now();
    // Well under the default (30 s): only the flag's 1 s can end it in time.
    closed_within(&mut slow, timeout * 10, "the server ending a trickled body").await;
    assert!(
        began.elapsed() >= timeout / 2,
        "ended after {:?}, before the body timeout of {timeout:?}",
        began.elapsed()
    );
    server.stop().await;
}
