//! Throughput and overheads of the coordinator's toolkit, each beside its baseline in the
//! same run. Run with `scripts/bench.sh` (release build); `BENCH_ITERS` sets the sample count.
//!
//! 1. `pool_fan_out` of 128 instant prompts on 16 slots, end to end over MCP stdio, against
//!    the same 128 prompts as bare one-shot CLI spawns, 16 at a time.
//! 2. `pool_fan_out` of 0.5 s prompts (32 on 4 slots, 128 on 16) against the ideal
//!    `ceil(n / slots) × 0.5 s`.
//! 3. A chain step's overhead: a one-step and a five-step `pool_chain` against lone
//!    `pool_run`s of the same prompt.
//! 4. What the budget ledger's reservation adds to a `pool_run`, and what the shared context
//!    costs per task (fake CLI: time; real CLI: time and input tokens) against no context.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use claude_pool_tests::bench::{RealCli, median, ms, pool_runs};
use claude_pool_tests::server::{Server, ServerOptions};
use claude_pool_tests::{Scratch, fake_claude_bin};
use serde_json::{Value, json};

fn quiet(opts: ServerOptions) -> ServerOptions {
    opts.args(&["--log-level", "warn", "--max-slots", "16"])
        .env("FAKE_CLAUDE_TURN_MS", "0")
}

async fn fan_out(server: &Server, prompts: &[String]) -> Duration {
    let t = Instant::now();
    let r = server
        .call_ok("pool_fan_out", json!({ "prompts": prompts }))
        .await;
    let d = t.elapsed();
    assert_eq!(r["completed"], prompts.len(), "{r}");
    d
}

/// The same prompts as one-shot `fake-claude -p` processes, `parallel` at a time.
async fn bare_spawns(prompts: &[String], parallel: usize) -> Duration {
    let scratch = Scratch::new("bench-spawn");
    let gate = Arc::new(tokio::sync::Semaphore::new(parallel));
    let t = Instant::now();
    let mut all = tokio::task::JoinSet::new();
    for p in prompts {
        let gate = gate.clone();
        let p = p.clone();
        let home = scratch.path().to_path_buf();
        all.spawn(async move {
            let _permit = gate.acquire().await.unwrap();
            let o = tokio::process::Command::new(fake_claude_bin())
                .args(["-p", &p, "--output-format", "json"])
                .env("HOME", &home)
                .env("FAKE_CLAUDE_TURN_MS", "0")
                .stdin(Stdio::null())
                .output()
                .await
                .unwrap();
            assert!(o.status.success());
        });
    }
    while all.join_next().await.is_some() {}
    t.elapsed()
}

async fn chains(server: &Server, iters: usize, steps: usize, prompt: &str) -> Vec<Duration> {
    let steps: Vec<Value> = (0..steps).map(|_| json!({ "prompt": prompt })).collect();
    let mut out = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let r = server
            .call_ok("pool_chain", json!({ "steps": steps }))
            .await;
        if i >= 3 {
            out.push(t.elapsed());
        }
        assert_eq!(r["status"], "completed");
    }
    out
}

async fn set_context(server: &Server, keys: usize) {
    for i in 0..keys {
        server
            .call_ok(
                "context_set",
                json!({ "key": format!("note-{i}"), "value": "prefer small, well-tested changes; explain each one briefly" }),
            )
            .await;
    }
}

fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("claude-pool toolkit throughput and overheads ({iters} samples where sampled)\n");

        println!("1. 128 instant prompts, 16 at a time");
        let prompts: Vec<String> = (0..128).map(|i| format!("instant {i}")).collect();
        let server = Server::start(quiet(ServerOptions::fake(16))).await;
        server.wait_ready().await;
        fan_out(&server, &prompts).await; // warm-up
        let mut fan = Vec::new();
        let mut bare = Vec::new();
        for _ in 0..5 {
            fan.push(fan_out(&server, &prompts).await);
            bare.push(bare_spawns(&prompts, 16).await);
        }
        server.close().await;
        let rate = |d: Duration| 128.0 / d.as_secs_f64();
        println!(
            "  baseline: 128 bare `fake-claude -p` spawns   median {:>8.1} ms  = {:>7.0} tasks/s",
            ms(median(&bare)),
            rate(median(&bare))
        );
        println!(
            "  pool_fan_out over MCP stdio, 16 warm slots  median {:>8.1} ms  = {:>7.0} tasks/s  (best {:.0} tasks/s)\n",
            ms(median(&fan)),
            rate(median(&fan)),
            rate(*fan.iter().min().unwrap())
        );

        println!("2. 0.5 s prompts against the ideal ceil(n/slots) x 0.5 s");
        for (n, slots) in [(32usize, 4usize), (128, 16)] {
            let server = Server::start(quiet(ServerOptions::fake(slots))).await;
            server.wait_ready().await;
            let prompts: Vec<String> = (0..n).map(|i| format!("MOCK_SLEEP:0.5 p{i}")).collect();
            let mut walls = Vec::new();
            for _ in 0..3 {
                walls.push(fan_out(&server, &prompts).await);
            }
            server.close().await;
            let ideal = n.div_ceil(slots) as f64 * 0.5;
            let wall = median(&walls).as_secs_f64();
            println!(
                "  {n:>3} prompts on {slots:>2} slots: ideal {ideal:.3} s, median wall {wall:.3} s  => {:+.1}% over ideal",
                (wall / ideal - 1.0) * 100.0
            );
        }
        println!();

        println!("3. chain steps against lone pool_runs (fake CLI, 2 slots)");
        let server = Server::start(quiet(ServerOptions::fake(2))).await;
        server.wait_ready().await;
        let lone = pool_runs(&server, iters, "step").await;
        let one = chains(&server, iters, 1, "step").await;
        let five = chains(&server, iters / 2, 5, "step").await;
        println!("  baseline: pool_run                          median {:>8.3} ms", ms(median(&lone)));
        println!("  pool_chain, 1 step                          median {:>8.3} ms  => {:+.3} ms per step", ms(median(&one)), ms(median(&one)) - ms(median(&lone)));
        println!(
            "  pool_chain, 5 sequential steps              median {:>8.3} ms  => {:.3} ms per step (steps run inside the server: no MCP round trip each)",
            ms(median(&five)),
            ms(median(&five)) / 5.0
        );
        server.close().await;
        // The same inside the library, without the MCP round trip: what the chain actor
        // itself adds to a task.
        let scratch = Scratch::new("bench-embedded");
        let pool = claude_pool::Pool::builder()
            .slots(2)
            .claude_bin(fake_claude_bin())
            .env("HOME", scratch.path())
            .env("FAKE_CLAUDE_TURN_MS", "0")
            .build()
            .await
            .unwrap();
        pool.wait_ready().await.unwrap();
        let step = || claude_pool_protocol::tools::ChainStepParams {
            prompt: "step".into(),
            ..Default::default()
        };
        let mut lib_run = Vec::new();
        let mut lib_chain = Vec::new();
        for i in 0..iters + 3 {
            let t = Instant::now();
            pool.run(claude_pool::TaskSpec::new("step")).await.unwrap();
            let a = t.elapsed();
            let t = Instant::now();
            let params = claude_pool_protocol::tools::ChainParams {
                steps: vec![step()],
                ..Default::default()
            };
            pool.run_chain(params, None).await.unwrap();
            if i >= 3 {
                lib_run.push(a);
                lib_chain.push(t.elapsed());
            }
        }
        pool.shutdown().await;
        println!("  baseline: Pool::run (library)               median {:>8.3} ms", ms(median(&lib_run)));
        println!(
            "  Pool::run_chain, 1 step (library)           median {:>8.3} ms  => {:+.3} ms for the chain actor",
            ms(median(&lib_chain)),
            ms(median(&lib_chain)) - ms(median(&lib_run))
        );
        println!();

        println!("4. budget reservation and shared context per pool_run (fake CLI, 1 slot)");
        let plain = Server::start(quiet(ServerOptions::fake(1))).await;
        plain.wait_ready().await;
        let base = pool_runs(&plain, iters, "plain").await;
        set_context(&plain, 10).await;
        let ctx = pool_runs(&plain, iters, "plain").await;
        plain.close().await;
        let capped = Server::start(quiet(ServerOptions::fake(1)).args(&["--budget-usd", "1000"])).await;
        capped.wait_ready().await;
        let budget = pool_runs(&capped, iters, "plain").await;
        capped.close().await;
        println!("  baseline: pool_run, no cap, empty context   median {:>8.3} ms", ms(median(&base)));
        println!("  with --budget-usd (a reservation per task)  median {:>8.3} ms  => {:+.3} ms", ms(median(&budget)), ms(median(&budget)) - ms(median(&base)));
        println!("  with a 10-entry context table               median {:>8.3} ms  => {:+.3} ms", ms(median(&ctx)), ms(median(&ctx)) - ms(median(&base)));

        let Some(real) = RealCli::start("bench-real-ctx") else {
            return;
        };
        let opts = real.server(1);
        let server = Server::start(opts).await;
        server.wait_ready().await;
        let n = iters.min(20);
        let tokens = |r: &Value| r["tokens_used"]["input"].as_u64().unwrap();
        let before = server.call_ok("pool_run", json!({ "prompt": "real" })).await;
        let base = pool_runs(&server, n, "real").await;
        set_context(&server, 10).await;
        let after = server.call_ok("pool_run", json!({ "prompt": "real" })).await;
        let ctx = pool_runs(&server, n, "real").await;
        server.close().await;
        println!("  real CLI: pool_run, empty context           median {:>8.3} ms, {} input tokens", ms(median(&base)), tokens(&before));
        println!(
            "  real CLI: with a 10-entry context table     median {:>8.3} ms, {} input tokens  => {:+.3} ms, {:+} tokens per task",
            ms(median(&ctx)),
            tokens(&after),
            ms(median(&ctx)) - ms(median(&base)),
            tokens(&after) as i64 - tokens(&before) as i64
        );
    });
}
