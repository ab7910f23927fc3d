//! The HTTP front-end's cost, each figure beside its baseline in the same run. Run with
//! `scripts/bench.sh` (release build).
//!
//! 1. `pool_status`, `pool_submit` and `pool_result` over Streamable HTTP, p50/p99, beside a
//!    bare HTTP round trip to `/health` on the same server (every request on a fresh
//!    connection, as the baseline), with 1 client and with 16 at once; and beside a request
//!    the server answers with no work at all (a 404), the wire's own floor.
//! 2. Throughput of 1,000 `pool_submit`s from 16 clients.
//! 3. Server RSS with 100 idle MCP sessions, beside the same server with none.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use claude_pool_tests::bench::{median, ms, pct, rss_kib};
use claude_pool_tests::http::{HttpClient, HttpServer};
use serde_json::json;

const N: usize = 400;

fn p50_p99(name: &str, v: &[Duration]) {
    println!(
        "  {name:<46} p50 {:>7.3} ms   p99 {:>7.3} ms   (n={})",
        ms(median(v)),
        ms(pct(v, 0.99)),
        v.len()
    );
}

/// `n` timed calls of `what` from each of `clients` clients at once.
async fn timed(
    client: &HttpClient,
    clients: usize,
    n: usize,
    what: &'static str,
    task: &str,
) -> Vec<Duration> {
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let c = client.clone();
        let task = task.to_owned();
        tasks.push(tokio::spawn(async move {
            let session = if what == "health" || what == "bare" {
                String::new()
            } else {
                c.session(&[]).await
            };
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let t = Instant::now();
                match what {
                    "bare" => {
                        let r = c.request("GET", "/no-such-page", &[], "").await;
                        assert_eq!(r.status, 404);
                    }
                    "health" => {
                        let r = c.request("GET", "/health", &[], "").await;
                        assert_eq!(r.status, 200);
                    }
                    "status" => {
                        c.call(&session, &[], "pool_status", json!({})).await;
                    }
                    "result" => {
                        c.call(&session, &[], "pool_result", json!({ "task_id": task }))
                            .await;
                    }
                    _ => {
                        c.call(
                            &session,
                            &[],
                            "pool_submit",
                            json!({ "prompt": format!("MOCK_SLEEP:600 {i}") }),
                        )
                        .await;
                    }
                }
                out.push(t.elapsed());
            }
            out
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[tokio::main]
async fn main() {
    println!("claude-pool over HTTP");
    println!("1. latency: tool calls beside a bare /health round trip (fresh connection each)");
    // Both slots stay busy so submissions only queue, and the store is in memory.
    let server = HttpServer::start(2, &["--no-db"]).await;
    let s = server.session(&[]).await;
    server
        .call(&s, &[], "pool_status", json!({ "wait_ready": 30 }))
        .await;
    let mut queued = String::new();
    for _ in 0..3 {
        let r = server
            .call(
                &s,
                &[],
                "pool_submit",
                json!({ "prompt": "MOCK_SLEEP:600" }),
            )
            .await;
        queued = r["result"]["structuredContent"]["task_id"]
            .as_str()
            .expect("a task id")
            .to_owned();
    }
    for clients in [1usize, 16] {
        let per = (N / clients).max(25);
        let bare = timed(&server.client, clients, per, "bare", "").await;
        let health = timed(&server.client, clients, per, "health", "").await;
        let status = timed(&server.client, clients, per, "status", "").await;
        let submit = timed(&server.client, clients, per, "submit", "").await;
        let result = timed(&server.client, clients, per, "result", &queued).await;
        println!("  {clients} client(s):");
        p50_p99("GET of a page that is not there (404)", &bare);
        p50_p99("GET /health (baseline)", &health);
        p50_p99("tools/call pool_status", &status);
        p50_p99("tools/call pool_submit (queued)", &submit);
        p50_p99("tools/call pool_result (a queued task)", &result);
        let h = ms(median(&health));
        println!(
            "  ratio p50 to health: pool_status {:.2}   pool_submit {:.2}   pool_result {:.2}",
            ms(median(&status)) / h,
            ms(median(&submit)) / h,
            ms(median(&result)) / h
        );
        let b = ms(median(&bare));
        println!(
            "  ratio p50 to the 404:  pool_status {:.2}   pool_submit {:.2}   pool_result {:.2}   health {:.2}",
            ms(median(&status)) / b,
            ms(median(&submit)) / b,
            ms(median(&result)) / b,
            h / b
        );
    }

    println!("2. throughput: 1,000 pool_submits from 16 clients");
    let t = Instant::now();
    let got = timed(&server.client, 16, 1000 / 16 + 1, "submit", "").await;
    let wall = t.elapsed();
    println!(
        "  {} submits in {:.2} s = {:.0} submits/s",
        got.len(),
        wall.as_secs_f64(),
        got.len() as f64 / wall.as_secs_f64()
    );

    println!("3. server RSS with 100 idle MCP sessions");
    let idle = rss_kib(server.pid);
    let mut sessions = Vec::new();
    for _ in 0..100 {
        sessions.push(server.session(&[]).await);
    }
    let with = rss_kib(server.pid);
    println!(
        "  before {:.2} MiB   with 100 idle sessions {:.2} MiB   (+{:.1} KiB per session)",
        idle as f64 / 1024.0,
        with as f64 / 1024.0,
        (with as f64 - idle as f64) / 100.0
    );
    server.stop().await;
}
