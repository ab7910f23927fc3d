//! Warm when it pays, with the real CLI against an instant mock of the Messages API, each
//! figure beside its baseline in the same run. Run with `scripts/bench.sh` (release build).
//!
//! 1. The memory held by 16 idle slots (the RSS of every slot's process group) before and
//!    after the idle timeout, beside one slot's (the floor's worth).
//! 2. `pool_run` on a warm slot, on a cold pool (the cost of a wake), and a bare cold
//!    `claude -p`.
//! 3. Wall time of a 16-prompt `pool_fan_out` on a cold pool beside the same on a warm one.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use claude_pool_tests::bench::{RealCli, cold_cli_runs, median, ms, row};
use claude_pool_tests::server::Server;
use serde_json::{Value, json};

/// Polls pool_status (every 100 ms) until `pred` holds; returns it.
async fn until(server: &Server, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = server.status().await;
        if pred(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what} did not happen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn released(s: &Value) -> usize {
    s["slots"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["status"] == "cold" && x["pid"].is_null())
        .count()
}

fn all_idle(s: &Value) -> bool {
    s["slots"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["status"] == "idle")
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn fan_out(server: &Server, n: usize) -> Duration {
    let prompts: Vec<String> = (0..n).map(|i| format!("MOCK_TEXT: item {i}")).collect();
    let t = Instant::now();
    let r = server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    let d = t.elapsed();
    assert_eq!(r["completed"], n, "{r}");
    d
}

#[tokio::main]
async fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    println!("claude-pool idle release and wake-ahead, real CLI against an instant mock\n");
    let Some(real) = RealCli::start("bench-idle") else {
        return;
    };

    println!("1. memory of 16 idle slots (RSS of every slot's process group), --warm 1");
    let server = Server::start(
        real.server(16)
            .args(&["--idle-timeout", "20s", "--warm", "1"]),
    )
    .await;
    server.wait_ready().await;
    let before = until(&server, "16 warm idle slots", all_idle).await;
    // The reading is at most a second old: take one made now.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = {
        let s = server.status().await;
        if all_idle(&s) { s } else { before }
    };
    let one = before["slots"][0]["rss_bytes"].as_u64().unwrap();
    let all = before["slots_rss_bytes"].as_u64().unwrap();
    let t = Instant::now();
    let after = until(&server, "15 slots released", |s| released(s) == 15).await;
    let released_in = t.elapsed();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let after = {
        let s = server.status().await;
        if released(&s) == 15 { s } else { after }
    };
    let left = after["slots_rss_bytes"].as_u64().unwrap();
    println!(
        "  baseline: one warm slot (the floor's worth)   {:>8.1} MiB",
        mib(one)
    );
    println!(
        "  16 warm idle slots                            {:>8.1} MiB",
        mib(all)
    );
    println!(
        "  after the idle timeout (1 warm, 15 cold)      {:>8.1} MiB   (released {:.1} s after all were idle, timeout 20 s)",
        mib(left),
        released_in.as_secs_f64()
    );
    println!(
        "  => after / floor: {:.2}; after / before: {:.3}\n",
        left as f64 / one as f64,
        left as f64 / all as f64
    );

    println!("2. pool_run: warm slot, cold pool (a wake), bare cold `claude -p`");
    let mut warm = Vec::new();
    for i in 0..iters + 2 {
        let t = Instant::now();
        server
            .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: warm" }))
            .await;
        if i >= 2 {
            warm.push(t.elapsed());
        }
    }
    server.close().await;
    let cold_server = Server::start(
        real.server(1)
            .args(&["--idle-timeout", "1s", "--warm", "0"]),
    )
    .await;
    cold_server.wait_ready().await;
    let mut woken = Vec::new();
    for _ in 0..iters.min(6) {
        until(&cold_server, "the slot released", |s| released(s) == 1).await;
        let t = Instant::now();
        cold_server
            .call_ok("pool_run", json!({ "prompt": "MOCK_TEXT: cold" }))
            .await;
        woken.push(t.elapsed());
    }
    cold_server.close().await;
    let bare = cold_cli_runs(&real.claude, &real.env, iters.min(6), &real.scratch).await;
    row("pool_run on a warm slot", &warm);
    row("pool_run on a cold pool (wake + task)", &woken);
    row("baseline: a bare cold `claude -p`", &bare);
    let wake = ms(median(&woken)) - ms(median(&warm));
    println!(
        "  => a wake costs {wake:.0} ms; cold pool / bare cold: {:.2}; warm / bare cold: {:.3}\n",
        ms(median(&woken)) / ms(median(&bare)),
        ms(median(&warm)) / ms(median(&bare))
    );

    println!("3. pool_fan_out of 16 prompts on 16 slots: cold pool vs warm pool (--warm 0)");
    let t = Instant::now();
    let fan = Server::start(
        real.server(16)
            .args(&["--idle-timeout", "3s", "--warm", "0"]),
    )
    .await;
    fan.wait_ready().await;
    let warm_up_16 = t.elapsed();
    let (mut cold_walls, mut warm_walls) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        until(&fan, "every slot released", |s| released(s) == 16).await;
        cold_walls.push(fan_out(&fan, 16).await);
        warm_walls.push(fan_out(&fan, 16).await);
    }
    fan.close().await;
    row("fan-out on a warm pool", &warm_walls);
    row("fan-out on a cold pool (16 wakes at once)", &cold_walls);
    println!(
        "  baseline: one warm-up of 16 slots at once (server start to all ready) {:>9.1} ms",
        ms(warm_up_16)
    );
    println!(
        "  => cold - warm: {:.0} ms; a warm-up of 16 at once: {:.0} ms; of one slot alone: {wake:.0} ms",
        ms(median(&cold_walls)) - ms(median(&warm_walls)),
        ms(warm_up_16)
    );
}
