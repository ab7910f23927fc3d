//! A soak run: 10,000 tasks on 64 slots of the fake CLI over stdio while a slot process is
//! SIGKILLed every 200 ms. Reported beside their idle baselines from the same run:
//! `pool_status` p50/p99 with about 10,000 tasks queued (vs. the idle pool), server RSS per
//! queued task, and server RSS after the run (vs. idle; finished tasks are bounded by
//! `--keep-finished`). Run with `cargo bench --bench soak` after a release build.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use claude_pool_tests::bench::{anon_kib, median, ms, pct, rss_kib};
use claude_pool_tests::server::{Server, ServerOptions, Transport};
use serde_json::json;

const TASKS: usize = 10_000;
const SLOTS: usize = 64;

async fn status_times(server: &Server, n: usize) -> Vec<Duration> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        server.call_ok("pool_status", json!({})).await;
        v.push(t.elapsed());
    }
    v
}

fn line(name: &str, v: &[Duration]) {
    println!(
        "  {name:<44} p50 {:>7.3} ms   p99 {:>7.3} ms   (n={})",
        ms(median(v)),
        ms(pct(v, 0.99)),
        v.len()
    );
}

#[tokio::main]
async fn main() {
    println!(
        "claude-pool soak: {TASKS} tasks on {SLOTS} slots, a slot process SIGKILLed every 200 ms"
    );
    // Finished tasks kept for `pool_result`: the retention the memory after the run is
    // bounded by (`SOAK_KEEP_FINISHED`, default 1000).
    let keep = std::env::var("SOAK_KEEP_FINISHED").unwrap_or_else(|_| "1000".into());
    let opts = ServerOptions::fake(SLOTS)
        .transport(Transport::Stdio)
        .args(&[
            "--no-db",
            "--max-slots",
            "64",
            "--keep-finished",
            &keep,
            "--log-level",
            "warn",
        ])
        .env("FAKE_CLAUDE_TURN_MS", "300");
    let server = Server::start(opts).await;
    server.wait_ready().await;
    let idle_status = status_times(&server, 200).await;
    let idle = (rss_kib(server.pid), anon_kib(server.pid));

    // Queue everything at once.
    let t = Instant::now();
    let mut last = String::new();
    for i in 0..TASKS {
        let r = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("MOCK_TEXT: soak {i}") }),
            )
            .await;
        last = r["task_id"].as_str().unwrap().to_owned();
    }
    let submit_s = t.elapsed().as_secs_f64();
    let queued_status = server.call_ok("pool_status", json!({})).await;
    let queued = queued_status["pending_tasks"].as_u64().unwrap_or(0);
    let queued_mem = (rss_kib(server.pid), anon_kib(server.pid));
    let busy_status = status_times(&server, 200).await;

    // Kills every 200 ms until the queue is empty.
    let stop = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU64::new(0));
    let killer = {
        let (stop, kills) = (stop.clone(), kills.clone());
        // The victims are read fresh from /proc each time: the server's children.
        let server_pid = server.pid;
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let kids = children(server_pid);
                if kids.is_empty() {
                    continue;
                }
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let victim = kids[(n >> 33) as usize % kids.len()];
                claude_pool_tests::procs::kill(victim, libc::SIGKILL);
                kills.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    let done = server
        .call_ok("pool_result", json!({ "task_id": last, "wait": "600s" }))
        .await;
    stop.store(true, Ordering::Relaxed);
    let _ = killer.await;
    let drain_s = t.elapsed().as_secs_f64();
    server.wait_ready().await;
    let end = server.call_ok("pool_status", json!({})).await;
    let after = (rss_kib(server.pid), anon_kib(server.pid));

    line("pool_status, idle pool (baseline)", &idle_status);
    line(&format!("pool_status, {queued} tasks queued"), &busy_status);
    println!(
        "  submitted {TASKS} in {submit_s:.1} s; all done after {drain_s:.1} s; last task {}; {} kills",
        done["status"],
        kills.load(Ordering::Relaxed)
    );
    println!("  tasks by state at the end: {}", end["tasks"]);
    let mib = |k: u64| k as f64 / 1024.0;
    for (what, i, q, a) in [
        ("RSS", idle.0, queued_mem.0, after.0),
        (
            "anonymous RSS (heap, no code pages)",
            idle.1,
            queued_mem.1,
            after.1,
        ),
    ] {
        println!(
            "  server {what}: idle {:.1} MiB, with {queued} queued {:.1} MiB ({:.2} KiB per queued task), after the run (keeping {keep} finished) {:.1} MiB ({:+.1}% of idle)",
            mib(i),
            mib(q),
            (q as f64 - i as f64) / queued.max(1) as f64,
            mib(a),
            (a as f64 - i as f64) / i as f64 * 100.0
        );
    }
    server.close().await;
}

/// The server's child processes (its slots' CLIs).
fn children(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    s.rsplit_once(") ")?
                        .1
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
                == Some(ppid)
        })
        .collect()
}
