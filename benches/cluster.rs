//! Slots on other machines (feature `cluster`), beside a slot on the scheduler's own machine
//! in the same run: median `pool_run` (fake CLI answering at once) on a local slot, then on
//! a slot host's slot over loopback (plaintext, then mutual TLS), the local slot kept busy
//! so every measured task goes to the host. Run with
//! `cargo bench --features cluster --bench cluster`; `BENCH_ITERS` sets the sample count.
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::time::{Duration, Instant};

use claude_pool_tests::bench::{median, ms, row};
use claude_pool_tests::server::{Server, ServerOptions};
use claude_pool_tests::{Scratch, fake_claude_bin, server_bin};
use serde_json::json;

fn iters() -> usize {
    std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(40)
}

fn quiet(opts: ServerOptions) -> ServerOptions {
    opts.args(&["--log-level", "warn"])
        .env("FAKE_CLAUDE_TURN_MS", "0")
}

/// `iters` timed `pool_run`s (after three untimed), each checked to have run on `on`.
async fn runs_on(server: &Server, iters: usize, on: &str) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let r = server
            .call_ok(
                "pool_run",
                json!({ "prompt": format!("MOCK_TEXT: bench {i}") }),
            )
            .await;
        if i >= 3 {
            out.push(t.elapsed());
        }
        assert_eq!(r["status"], "completed");
        assert!(r["slot_id"].as_str().unwrap().starts_with(on), "{r}");
    }
    out
}

async fn until_slots(server: &Server, n: usize) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let s = server.status().await;
        let slots = s["slots"].as_array().cloned().unwrap_or_default();
        if slots.len() == n && slots.iter().all(|x| x["status"] == "idle") {
            return;
        }
        assert!(Instant::now() < until, "the host never joined: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The scheduler with one local slot kept busy and host h1 joined; `tls` names the
/// certificates' directory.
async fn remote(scratch: &Path, tls: Option<&Path>, iters: usize) -> Vec<Duration> {
    std::fs::create_dir_all(scratch).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cookie = scratch.join("cookie");
    std::fs::write(&cookie, "bench-cookie").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cookie, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let listen = format!("127.0.0.1:{port}");
    let mut args = vec![
        "--listen-hosts".to_owned(),
        listen.clone(),
        "--cluster-cookie-file".into(),
        cookie.display().to_string(),
    ];
    let mut host_args = args[2..].to_vec();
    if let Some(dir) = tls {
        args.extend([
            "--cluster-tls-dir".into(),
            dir.join("scheduler").display().to_string(),
        ]);
        host_args.extend([
            "--cluster-tls-dir".into(),
            dir.join("h1").display().to_string(),
        ]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(quiet(ServerOptions::fake(1)).args(&args)).await;
    let _host = tokio::process::Command::new(server_bin())
        .args([
            "host",
            "--join",
            &listen,
            "--host-name",
            "h1",
            "--slots",
            "1",
            "--no-db",
        ])
        .args(["--log-level", "warn"])
        .args(&host_args)
        .arg("--claude-bin")
        .arg(fake_claude_bin())
        .env("HOME", scratch)
        .env("FAKE_CLAUDE_TURN_MS", "0")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    until_slots(&server, 2).await;
    // The local slot is busy for the whole measurement: every task goes to the host.
    server
        .call_ok(
            "pool_submit",
            json!({ "prompt": "MOCK_SLEEP:600 MOCK_TEXT: busy" }),
        )
        .await;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let s = server.status().await;
        if s["slots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == "slot-0" && x["status"] == "busy")
        {
            break;
        }
        assert!(Instant::now() < until, "the local slot never got busy");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let out = runs_on(&server, iters, "h1/").await;
    server.close().await;
    out
}

#[tokio::main]
async fn main() {
    let iters = iters();
    println!("claude-pool across machines ({iters} samples each)\n");
    println!("pool_run over MCP stdio, fake CLI answering at once");
    let scratch = Scratch::new("bench-cluster");
    let local = {
        let server = Server::start(quiet(ServerOptions::fake(1))).await;
        server.wait_ready().await;
        let out = runs_on(&server, iters, "slot-").await;
        server.close().await;
        out
    };
    row("baseline: a slot on the scheduler's machine", &local);
    let plain = remote(&scratch.join("plain"), None, iters).await;
    row("a slot host's slot, loopback, cookie only", &plain);
    let certs = scratch.join("certs");
    let made = std::process::Command::new(server_bin())
        .arg("cluster-certs")
        .arg(&certs)
        .args(["scheduler", "h1"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let tls = remote(&scratch.join("tls"), Some(&certs), iters).await;
    row("a slot host's slot, loopback, mutual TLS", &tls);
    let base = ms(median(&local));
    for (name, v) in [("plaintext", &plain), ("mutual TLS", &tls)] {
        let m = ms(median(v));
        println!(
            "  => remote ({name}) / local, median: {:.2} ({:+.3} ms per task)",
            m / base,
            m - base
        );
    }
}
