//! The server over Streamable HTTP: DNS-rebinding protection, the bearer token, loopback by
//! default, `/health`, and MCP sessions of several clients on one pool.

use claude_pool_tests::http::HttpServer;
use claude_pool_tests::server::{
    Server, ServerOptions, Transport, finish_call, first_text, start_refused,
};
use serde_json::json;

#[tokio::test]
async fn a_foreign_host_or_origin_is_refused_and_a_loopback_host_is_served() {
    let server = HttpServer::start(1, &[]).await;
    // Ready (200) once a slot is warm; until then /health answers 503.
    let session = server.session(&[]).await;
    server
        .call(&session, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let health = server.request("GET", "/health", &[], "").await;
    assert_eq!(health.status, 200, "{health:?}");
    let h: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(h["ok"], true);
    assert_eq!(h["slots_total"], 1);
    assert_eq!(h["store"]["open"], true);
    // The store it names is this directory's project store under the server's HOME.
    let expected = claude_pool::StoreLocation::project_store_in(
        &server.home.join(".local/state/claude-pool"),
        &std::env::current_dir().unwrap(),
    );
    assert_eq!(h["store_path"], expected.display().to_string(), "{h}");
    assert_eq!(h["store_mode"], "project", "{h}");
    let local = server
        .request("GET", "/health", &[("Host", "localhost")], "")
        .await;
    assert_eq!(local.status, 200);
    let evil = server
        .request("GET", "/health", &[("Host", "evil.example")], "")
        .await;
    assert_eq!(evil.status, 403, "{evil:?}");
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } } });
    let r = server.post(None, &[("Host", "evil.example")], &init).await;
    assert_eq!(r.status, 403, "{r:?}");
    let r = server
        .post(None, &[("Origin", "http://evil.example")], &init)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let own = format!("http://{}", server.addr);
    let r = server.post(None, &[("Origin", own.as_str())], &init).await;
    assert_eq!(r.status, 200, "{r:?}");
    server.stop().await;
}

#[tokio::test]
async fn the_listener_is_bound_to_loopback_by_default() {
    let server = HttpServer::start(1, &[]).await;
    let port = format!("{:04X}", server.port());
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    // Listening sockets (state 0A) on our port: the local address must be 127.0.0.1.
    let ours: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[1].ends_with(&format!(":{port}")) && f[3] == "0A"
        })
        .collect();
    assert_eq!(ours.len(), 1, "{ours:?}");
    assert!(
        ours[0]
            .split_whitespace()
            .nth(1)
            .unwrap()
            .starts_with("0100007F:"),
        "{ours:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn no_auth_on_a_non_loopback_bind_is_refused() {
    let err = start_refused(
        &[
            "--http",
            "--http-no-auth",
            "--bind",
            "0.0.0.0",
            "--port",
            "0",
            "--claude-bin",
            claude_pool_tests::fake_claude_bin().to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert!(
        err.contains("--http-no-auth") && err.contains("0.0.0.0"),
        "the refusal must name the flag and the address: {err}"
    );
}

#[tokio::test]
async fn with_a_token_every_request_needs_it_as_a_bearer() {
    let server = HttpServer::start(1, &["--http-token", "s3cret-token"]).await;
    let anon = server.anonymous();
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } } });
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret-token"),
        Some("Basic s3cret-token"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("Authorization", a)).into_iter().collect();
        let r = anon.post(None, &headers, &init).await;
        assert_eq!(r.status, 401, "{auth:?}: {r:?}");
        assert!(
            !server_log_has(&server, "s3cret-token"),
            "the token was logged"
        );
    }
    let auth = [("Authorization", "Bearer s3cret-token")];
    let session = server.session(&auth).await;
    let r = server
        .call(
            &session,
            &auth,
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: over http" }),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["output"], "over http",
        "{r}"
    );
    // Liveness needs no token: an answer (ready or, with the slot between tasks, not yet),
    // never a refusal.
    let health = anon.request("GET", "/health", &[], "").await;
    assert!(health.status == 200 || health.status == 503, "{health:?}");
    let h: serde_json::Value = serde_json::from_str(&health.body).expect("the health JSON");
    assert_eq!(h["slots_total"], 1, "{h}");
    server.stop().await;
}

#[tokio::test]
async fn behind_a_token_the_page_asks_for_it_and_its_cookie_opens_only_the_page() {
    let server = HttpServer::start(1, &["--http-token", "s3cret+token"]).await;
    // A browser: no bearer token.
    let browser = server.anonymous();
    let page = browser.request("GET", "/", &[], "").await;
    assert_eq!(page.status, 401, "{page:?}");
    assert!(
        page.body.contains("<form") && page.body.contains("action=\"/login\""),
        "a browser must get a form to present the token: {}",
        page.body
    );
    let form = [("Content-Type", "application/x-www-form-urlencoded")];
    let wrong = browser
        .request("POST", "/login", &form, "token=guess")
        .await;
    assert_eq!(wrong.status, 401, "{wrong:?}");
    assert!(
        wrong.header("set-cookie").is_none(),
        "a wrong token got a cookie"
    );
    // `+` is a space in a form body: the token's own plus sign arrives escaped.
    let right = browser
        .request("POST", "/login", &form, "token=s3cret%2Btoken")
        .await;
    assert_eq!(right.status, 303, "{right:?}");
    assert_eq!(right.header("location"), Some("/"));
    let set = right.header("set-cookie").expect("a cookie for the page");
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && !set.contains("s3cret"),
        "the cookie must be HttpOnly, SameSite=Strict and not the token: {set}"
    );
    let pair = set.split(';').next().expect("name=value").to_owned();
    let cookie = [("Cookie", pair.as_str())];
    for path in ["/", "/status.json"] {
        let r = browser.request("GET", path, &cookie, "").await;
        assert_eq!(r.status, 200, "{path} with the cookie: {r:?}");
    }
    let status = browser.request("GET", "/status.json", &cookie, "").await;
    let v: serde_json::Value = serde_json::from_str(&status.body).expect("status JSON");
    assert_eq!(
        v["status"]["slots"].as_array().map(Vec::len),
        Some(1),
        "{v}"
    );
    // The cookie acts on nothing: MCP and metrics still need the bearer token.
    for (method, path) in [("POST", "/mcp"), ("GET", "/metrics")] {
        let r = browser.request(method, path, &cookie, "{}").await;
        assert_eq!(r.status, 401, "{method} {path} with only the cookie: {r:?}");
    }
    let forged = [("Cookie", "claude_pool_page=0000")];
    assert_eq!(
        browser
            .request("GET", "/status.json", &forged, "")
            .await
            .status,
        401
    );
    assert!(!server_log_has(&server, "s3cret"), "the token was logged");
    server.stop().await;
}

fn server_log_has(server: &HttpServer, needle: &str) -> bool {
    std::fs::read_to_string(&server.log)
        .unwrap_or_default()
        .contains(needle)
}

#[tokio::test]
async fn clients_get_their_own_sessions_on_one_pool_and_a_long_call_delays_no_other() {
    let server = HttpServer::start(2, &[]).await;
    let a = server.session(&[]).await;
    let b = server.session(&[]).await;
    assert_ne!(a, b);
    // A's long task runs while B runs, asks and reads.
    let submitted = server
        .call(&a, &[], "pool_submit", json!({ "prompt": "MOCK_SLEEP:30" }))
        .await;
    let long_id = submitted["result"]["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = server
        .call(
            &b,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: b's answer" }),
        )
        .await;
    assert_eq!(r["result"]["structuredContent"]["output"], "b's answer");
    // B sees A's task: one pool.
    let seen = server
        .call(&b, &[], "pool_result", json!({ "task_id": long_id }))
        .await;
    assert_eq!(
        seen["result"]["structuredContent"]["status"], "running",
        "{seen}"
    );
    let c = server
        .call(&a, &[], "pool_cancel", json!({ "task_id": long_id }))
        .await;
    assert_eq!(c["result"]["structuredContent"]["status"], "cancelled");
    let status = server.stop().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn the_depth_header_sets_the_requests_depth_for_the_recursion_guard() {
    let server = HttpServer::start(1, &[]).await;
    let deep = [("x-mcp-depth", "2")];
    let session = server.session(&deep).await;
    for (tool, args) in [
        ("pool_run", json!({ "prompt": "MOCK_TEXT: x" })),
        ("pool_submit", json!({ "prompt": "MOCK_TEXT: x" })),
        ("pool_fan_out", json!({ "prompts": ["a"] })),
        ("pool_submit_chain", json!({ "steps": [{ "prompt": "a" }] })),
    ] {
        let r = server.call(&session, &deep, tool, args).await;
        assert_eq!(r["result"]["isError"], true, "{tool}: {r}");
        assert_eq!(
            r["result"]["structuredContent"]["error"], "recursion_limit_exceeded",
            "{tool}: {r}"
        );
    }
    // One level up: allowed, and the child runs one deeper than the request.
    let one = [("x-mcp-depth", "1")];
    let session = server.session(&one).await;
    let r = server
        .call(
            &session,
            &one,
            "pool_run",
            json!({ "prompt": "MOCK_SHELL:echo depth=$CLAUDE_MCP_DEPTH" }),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["output"], "shell rc=0 out=depth=2",
        "{r}"
    );
    // A chain's steps, too, run one deeper than the request that started the chain.
    let r = server
        .call(
            &session,
            &one,
            "pool_chain",
            json!({ "steps": [{ "prompt": "MOCK_SHELL:echo depth=$CLAUDE_MCP_DEPTH" }] }),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["final_output"], "shell rc=0 out=depth=2",
        "{r}"
    );
    // Without the header the server's own depth (0) holds.
    let plain = server.session(&[]).await;
    let r = server
        .call(
            &plain,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_SHELL:echo depth=$CLAUDE_MCP_DEPTH" }),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["output"], "shell rc=0 out=depth=1",
        "{r}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_idle_session_expires_but_one_with_a_long_call_in_flight_does_not() {
    let server = HttpServer::start(1, &["--http-session-idle", "1s"]).await;
    let idle = server.session(&[]).await;
    let busy = server.session(&[]).await;
    let ping = json!({ "jsonrpc": "2.0", "id": 9, "method": "ping" });
    assert_eq!(server.post(Some(&idle), &[], &ping).await.status, 200);
    // Three times the idle limit, with no message on the call's stream meanwhile (no
    // progress was asked for): the call keeps its session open.
    let r = server
        .call(
            &busy,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_SLEEP:3 MOCK_TEXT: still here" }),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["output"], "still here",
        "{r}"
    );
    assert_eq!(
        server.post(Some(&busy), &[], &ping).await.status,
        200,
        "the session of the long call must still be open"
    );
    let gone = server.post(Some(&idle), &[], &ping).await;
    assert_eq!(
        gone.status, 404,
        "a session idle for 3 s with a 1 s limit must be closed: {gone:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn sessions_are_bounded_and_one_more_gets_503() {
    let server = HttpServer::start(1, &["--http-max-sessions", "2"]).await;
    let a = server.session(&[]).await;
    let _b = server.session(&[]).await;
    let init = json!({ "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                    "clientInfo": { "name": "t", "version": "1" } } });
    let r = server.post(None, &[], &init).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("too many MCP sessions"), "{r:?}");
    // The open sessions keep working.
    let s = server.call(&a, &[], "pool_status", json!({})).await;
    assert!(s["result"]["structuredContent"]["slots"].is_array(), "{s}");
    server.stop().await;
}

#[tokio::test]
async fn three_clients_under_slot_kills_each_get_every_task_resolved_once() {
    let server = HttpServer::start(3, &[]).await;
    let admin = server.session(&[]).await;
    server
        .call(&admin, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let mut clients = Vec::new();
    for c in 0..3 {
        let client = server.client.clone();
        clients.push(tokio::spawn(async move {
            let session = client.session(&[]).await;
            let mut ids = Vec::new();
            for i in 0..12 {
                let r = client
                    .call(
                        &session,
                        &[],
                        "pool_submit",
                        json!({ "prompt": format!("MOCK_SLEEP:0.2 MOCK_TEXT: c{c}-{i}") }),
                    )
                    .await;
                ids.push((
                    i,
                    r["result"]["structuredContent"]["task_id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                ));
            }
            let mut out = Vec::new();
            for (i, id) in ids {
                let r = client
                    .call(
                        &session,
                        &[],
                        "pool_result",
                        json!({ "task_id": id, "wait": 60 }),
                    )
                    .await;
                out.push((c, i, r["result"]["structuredContent"].clone()));
            }
            out
        }));
    }
    // Kill a busy slot's process a few times while the clients work.
    let mut killed = Vec::new();
    for _ in 0..2000 {
        if killed.len() == 4 {
            break;
        }
        let status = server.call(&admin, &[], "pool_status", json!({})).await;
        let busy = status["result"]["structuredContent"]["slots"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["status"] == "busy" && s["pid"].is_u64())
            .and_then(|s| s["pid"].as_u64());
        if let Some(pid) = busy {
            claude_pool_tests::procs::kill(pid as u32, libc::SIGKILL);
            claude_pool_tests::procs::wait_exit(
                pid as u32,
                std::time::Duration::from_secs(10),
                "a killed slot process",
            )
            .await;
            killed.push(pid as u32);
        }
    }
    assert_eq!(killed.len(), 4, "no busy slot to kill");
    let mut completed = 0;
    for c in clients {
        for (client, i, r) in c.await.unwrap() {
            let status = r["status"].as_str().unwrap_or("missing");
            assert!(
                matches!(status, "completed" | "failed"),
                "c{client}-{i} did not resolve: {r}"
            );
            if status == "completed" {
                assert_eq!(r["output"], format!("c{client}-{i}"));
                completed += 1;
            } else {
                assert!(r["error"].as_str().unwrap().contains("SIGKILL"), "{r}");
            }
        }
    }
    assert!(
        completed >= 36 - killed.len(),
        "{completed} completed, {} kills",
        killed.len()
    );
    // The pool recovers: every slot idle again.
    let s = server
        .call(&admin, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let slots = s["result"]["structuredContent"]["slots"]
        .as_array()
        .unwrap()
        .clone();
    assert!(slots.iter().all(|x| x["status"] == "idle"), "{s}");
    let pids: Vec<u32> = slots
        .iter()
        .filter_map(|x| x["pid"].as_u64().map(|p| p as u32))
        .collect();
    assert!(server.stop().await.success());
    for pid in pids.into_iter().chain(killed) {
        claude_pool_tests::procs::assert_gone(
            pid,
            std::time::Duration::from_secs(10),
            "a slot process",
        )
        .await;
        claude_pool_tests::procs::assert_group_gone(
            pid,
            std::time::Duration::from_secs(10),
            "a slot's group",
        )
        .await;
    }
}

/// The value of one sample of a Prometheus text exposition.
fn sample(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

#[tokio::test]
async fn metrics_agree_with_pool_status_and_the_tasks_own_numbers() {
    let server = HttpServer::start(1, &[]).await;
    let s = server.session(&[]).await;
    server
        .call(
            &s,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:1000,100 MOCK_TEXT: ok" }),
        )
        .await;
    server
        .call(
            &s,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:2000,10 MOCK_TEXT: ok" }),
        )
        .await;
    server
        .call(&s, &[], "pool_run", json!({ "prompt": "MOCK_STATUS:500" }))
        .await;
    let forbidden = server
        .request("GET", "/metrics", &[("Host", "evil.example")], "")
        .await;
    assert_eq!(forbidden.status, 403);
    let status =
        server.call(&s, &[], "pool_status", json!({})).await["result"]["structuredContent"].clone();
    let m = server.request("GET", "/metrics", &[], "").await;
    assert_eq!(m.status, 200, "{m:?}");
    let text = &m.body;
    // Two pool tasks completed and one failed; no job ran.
    let expected = |kind: &str, state: &str| match (kind, state) {
        ("task", "completed") => 2.0,
        ("task", "failed") => 1.0,
        _ => 0.0,
    };
    for kind in ["task", "run", "build"] {
        for state in [
            "completed",
            "failed",
            "cancelled",
            "timed_out",
            "interrupted",
        ] {
            let got = sample(
                text,
                &format!("claude_pool_tasks_total{{kind=\"{kind}\",state=\"{state}\"}}"),
            );
            assert_eq!(got, Some(expected(kind, state)), "{kind} {state}: {text}");
            assert_eq!(
                got,
                status["tasks_by_kind"][kind][state].as_f64(),
                "{kind} {state} must agree with pool_status: {text}"
            );
        }
    }
    assert_eq!(
        sample(text, "claude_pool_queue_length"),
        Some(0.0),
        "{text}"
    );
    // The store's files: a database holding three tasks is more than empty pages.
    let db = sample(text, "claude_pool_store_bytes{file=\"db\"}").expect("store bytes");
    assert!(db >= 4096.0, "{text}");
    assert!(
        sample(text, "claude_pool_store_bytes{file=\"wal\"}").is_some(),
        "{text}"
    );
    assert_eq!(
        sample(text, "claude_pool_slots{status=\"idle\"}"),
        Some(1.0),
        "{text}"
    );
    // $4 / $20 per million tokens at the fake's default model.
    let usd = (1000.0 * 4.0 + 100.0 * 20.0 + 2000.0 * 4.0 + 10.0 * 20.0) / 1e6;
    let spend = sample(
        text,
        "claude_pool_spend_usd_total{model=\"claude-opus-5-5\",project=\"\"}",
    )
    .unwrap_or_else(|| panic!("no spend in {text}"));
    assert!((spend - usd).abs() < 1e-9, "{spend} vs {usd}");
    assert_eq!(
        sample(
            text,
            "claude_pool_tokens_total{model=\"claude-opus-5-5\",project=\"\",type=\"output\"}"
        ),
        Some(110.0),
        "{text}"
    );
    assert_eq!(
        sample(text, "claude_pool_api_errors_total"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(text, "claude_pool_http_requests_total{status=\"403\"}"),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(text, "claude_pool_task_duration_seconds_count") >= Some(2.0),
        "{text}"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_status_page_is_self_contained_and_shows_tasks_with_their_transcripts() {
    let server = HttpServer::start(1, &[]).await;
    let page = server.request("GET", "/", &[], "").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    for external in ["http://", "https://", "//cdn", "<link"] {
        assert!(
            !page.body.contains(external),
            "the page loads {external}: an external asset"
        );
    }
    assert!(page.body.contains("aria-live"));
    assert!(page.body.contains("<caption>"));
    let s = server.session(&[]).await;
    let r = server
        .call(
            &s,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_USAGE:1000,100 MOCK_TEXT: shown" }),
        )
        .await;
    let id = r["result"]["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let data = server.request("GET", "/status.json", &[], "").await;
    assert_eq!(data.status, 200, "{data:?}");
    let d: serde_json::Value = serde_json::from_str(&data.body).unwrap();
    assert_eq!(d["status"]["slots"].as_array().unwrap().len(), 1);
    let task = d["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task_id"] == id.as_str())
        .unwrap_or_else(|| panic!("{id} not listed: {d}"))
        .clone();
    assert_eq!(task["status"], "completed");
    let usd = (1000.0 * 4.0 + 100.0 * 20.0) / 1e6;
    assert!(
        (task["spend_usd"].as_f64().unwrap() - usd).abs() < 1e-9,
        "{task}"
    );
    let t = server
        .request("GET", &format!("/transcripts/{id}"), &[], "")
        .await;
    assert_eq!(t.status, 200, "{t:?}");
    assert!(
        t.body
            .lines()
            .any(|l| l.contains("\"type\":\"result\"") && l.contains("shown")),
        "{}",
        t.body
    );
    let evil = server
        .request("GET", "/", &[("Host", "evil.example")], "")
        .await;
    assert_eq!(evil.status, 403);
    server.stop().await;
}

/// Debian's Chromium, as the test command installs it; `None` (a skip) only outside CI.
fn chromium() -> Option<std::path::PathBuf> {
    let path = std::path::PathBuf::from("/usr/bin/chromium");
    if path.is_file() {
        return Some(path);
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "CI=true but Chromium is not installed: scripts/test.sh installs it"
    );
    eprintln!("skipping: no /usr/bin/chromium (scripts/test.sh installs it)");
    None
}

/// The page as headless Chromium renders it, after its script has run and polled.
async fn rendered(browser: &std::path::Path, url: &str, profile: &std::path::Path) -> String {
    let out = claude_pool_tests::within(
        std::time::Duration::from_secs(60),
        "headless Chromium rendering the status page",
        tokio::process::Command::new(browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=2500",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output(),
    )
    .await
    .expect("run chromium");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_status_page_in_a_real_browser_shows_slots_a_running_task_then_its_spend() {
    let Some(browser) = chromium() else { return };
    // With default flags a browser first meets the sign-in form, which says where the
    // token is (the form's own flow is `behind_a_token_the_page_asks_for_it_...`).
    let guarded = HttpServer::start(1, &[]).await;
    let profile = claude_pool_tests::Scratch::new("chromium-guarded");
    let dom = rendered(
        &browser,
        &format!("http://{}/", guarded.addr),
        profile.path(),
    )
    .await;
    assert!(
        dom.contains("action=\"/login\"") && dom.contains("http-token"),
        "no sign-in form: {dom}"
    );
    assert!(
        !dom.contains("slot-0"),
        "the pool shown without its token: {dom}"
    );
    guarded.stop().await;
    // The page itself, on a server whose operator opted out of the token on loopback (a
    // browser cannot send a bearer header).
    let server = HttpServer::start(2, &["--http-no-auth"]).await;
    let s = server.session(&[]).await;
    server
        .call(&s, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let r = server
        .call(
            &s,
            &[],
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:4 MOCK_USAGE:2500,120 MOCK_TEXT: slow one" }),
        )
        .await;
    let id = r["result"]["structuredContent"]["task_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let profile = claude_pool_tests::Scratch::new("chromium");
    let url = format!("http://{}/", server.addr);
    let dom = rendered(&browser, &url, profile.path()).await;
    for slot in ["slot-0", "slot-1"] {
        assert!(dom.contains(slot), "{slot} not shown: {dom}");
    }
    assert!(dom.contains(&id), "the task is not shown: {dom}");
    assert!(dom.contains(">running<"), "no running task shown: {dom}");
    let done = server
        .call(&s, &[], "pool_result", json!({ "task_id": id, "wait": 30 }))
        .await;
    assert_eq!(done["result"]["structuredContent"]["status"], "completed");
    let dom = rendered(&browser, &url, profile.path()).await;
    // $4 / $20 per million tokens: 2500 in, 120 out.
    let spend = format!("${:.4}", (2500.0 * 4.0 + 120.0 * 20.0) / 1e6);
    assert!(
        dom.contains(">completed<"),
        "the completion is not shown: {dom}"
    );
    assert!(dom.contains(&spend), "{spend} not shown: {dom}");
    server.stop().await;
}

/// A small deterministic generator for the fuzz run.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[(self.next() % xs.len() as u64) as usize]
    }
}

#[tokio::test]
async fn a_thousand_malformed_http_requests_crash_nothing_and_the_server_keeps_serving() {
    let server = HttpServer::start(1, &[]).await;
    let session = server.session(&[]).await;
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    let bodies = [
        "",
        "{",
        "not json at all",
        "[]",
        "null",
        "{\"jsonrpc\":\"2.0\"}",
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"tools/list\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"pool_run\",\"arguments\":{\"prompt\":7}}}",
        "{\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"initialize\"}",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"no/such/method\"}",
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
    ];
    let content_types = [
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "application/json; charset=latin1",
    ];
    let accepts = [
        "application/json, text/event-stream",
        "text/html",
        "",
        "*/*",
    ];
    let sessions = [
        "",
        "nope",
        "00000000-0000-0000-0000-000000000000",
        session.as_str(),
    ];
    let paths = [
        "/mcp",
        "/mcp/",
        "/mcp?x=1",
        "/health",
        "/metrics",
        "/",
        "/nope",
        "/transcripts/..%2f..%2fetc",
        "/status.json",
    ];
    let methods = ["POST", "GET", "DELETE", "PUT", "PATCH", "OPTIONS"];
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..1000u32 {
        let code = match i % 10 {
            // Not HTTP at all, or broken HTTP.
            0 => {
                let junk: Vec<u8> = (0..(g.next() % 300))
                    .map(|_| (g.next() % 256) as u8)
                    .collect();
                server.raw(&junk).await
            }
            1 => {
                server
                    .raw(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 99999\r\n\r\n{")
                    .await
            }
            2 => {
                let big = format!(
                    "POST /mcp HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    server.addr,
                    17 * 1024 * 1024
                );
                server.raw(big.as_bytes()).await
            }
            _ => {
                let mut headers = Vec::new();
                let ct = g.pick(&content_types);
                if !ct.is_empty() {
                    headers.push(("Content-Type", ct));
                }
                let ac = g.pick(&accepts);
                if !ac.is_empty() {
                    headers.push(("Accept", ac));
                }
                let sid = g.pick(&sessions);
                if !sid.is_empty() {
                    headers.push(("Mcp-Session-Id", sid));
                }
                if g.next() % 5 == 0 {
                    headers.push((
                        "MCP-Protocol-Version",
                        g.pick(&["1999-01-01", "2025-06-18", "garbage"]),
                    ));
                }
                if g.next() % 7 == 0 {
                    headers.push(("x-mcp-depth", g.pick(&["-1", "99999999999", "1", "abc"])));
                }
                let r = server
                    .request(g.pick(&methods), g.pick(&paths), &headers, g.pick(&bodies))
                    .await;
                Some(r.status)
            }
        };
        *codes.entry(code).or_insert(0u32) += 1;
        if let Some(c) = code {
            assert!(c < 500 || c == 503, "request {i}: a server error {c}");
        }
    }
    eprintln!("status codes of 1000 malformed requests: {codes:?}");
    assert!(
        claude_pool_tests::procs::exists(server.pid),
        "the server died"
    );
    // Still serving. (The run may have closed the session it was given — a DELETE with its
    // id is a valid request — so a new one is opened.)
    let again = server.session(&[]).await;
    let r = server
        .call(
            &again,
            &[],
            "pool_run",
            json!({ "prompt": "MOCK_TEXT: still here" }),
        )
        .await;
    assert_eq!(
        r["result"]["structuredContent"]["output"], "still here",
        "{r}"
    );
    assert!(server.stop().await.success());
}

#[tokio::test]
async fn sigterm_lets_the_call_in_flight_answer_then_stops_leaving_no_process() {
    let server = Server::start(ServerOptions::fake(1).transport(Transport::Http)).await;
    server.wait_ready().await;
    // The task's "started" progress came back over the call's own stream: the call is in
    // flight on the server, its turn running on the slot.
    let (call, _, id) = server.start_run("MOCK_SLEEP:30").await;
    let answer = tokio::spawn(finish_call(
        call,
        "the answer to the call in flight at SIGTERM",
    ));
    let status = server.signal_and_wait(libc::SIGTERM).await;
    assert!(
        status.success(),
        "the server's exit after SIGTERM: {status:?}"
    );
    let r = answer.await.expect("the call's answer");
    let text = first_text(&r);
    assert_eq!(
        r.is_error,
        Some(true),
        "the call ended early, so it must fail: {text}"
    );
    assert!(
        text.contains(&id) && text.contains("interrupted"),
        "the call's error must name its task and say why it ended: {text}"
    );
}
