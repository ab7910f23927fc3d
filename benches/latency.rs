//! Latency and memory of claude-pool, each measured side by side with its baseline in the
//! same run. Run with `scripts/bench.sh` (release build); `BENCH_ITERS` sets the sample count.
//!
//! 1. Pool overhead: median `pool_run` over MCP stdio (fake CLI answering at once) against
//!    the fake's own turn time, measured by driving one warm fake process directly.
//! 2. Idle server RSS (children excluded) with 16 slots, beside the same server with 1 slot.
//! 3. Warm slots against cold starts: median `pool_run` with the real CLI against an
//!    instantly answering mock of the Messages API, beside a bare `claude -p` cold start.
//! 4. The warm path at its limit: `pool_run` on warm slots of the real CLI (two, the
//!    default; one with the default store; one with `--no-db`), beside one warm real CLI
//!    process driven by hand the way a slot drives it (prompt, result, `/clear`), all in
//!    the same directory against the same mock.
#![allow(clippy::unwrap_used, missing_docs)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use claude_pool_tests::bench::{
    RealCli, cold_cli_runs, hand_driven_alternating, hand_driven_turns, median, ms, pool_runs, row,
    rss_kib,
};
use claude_pool_tests::server::{Server, ServerOptions};
use claude_pool_tests::{Scratch, fake_claude_bin};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

fn quiet(opts: ServerOptions) -> ServerOptions {
    opts.args(&["--log-level", "warn"])
        .env("FAKE_CLAUDE_TURN_MS", "0")
}

/// One warm fake process driven directly: the time from writing a prompt to reading its result.
async fn fake_turn_baseline(iters: usize) -> Vec<Duration> {
    let scratch = Scratch::new("bench-fake");
    let mut child = tokio::process::Command::new(fake_claude_bin())
        .args(claude_pool::protocol::stream::PERSISTENT_ARGS)
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = Vec::new();
    for i in 0..iters + 3 {
        let prompt = if i % 2 == 0 {
            format!("bench {i}")
        } else {
            "/clear".to_owned()
        };
        let line = claude_pool::protocol::stream::user_message_line(&prompt);
        let t = Instant::now();
        stdin.write_all(line.as_bytes()).await.unwrap();
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("\"type\":\"result\"") {
                break;
            }
        }
        if i % 2 == 0 && i >= 3 {
            out.push(t.elapsed());
        }
    }
    // Pair every measured turn with a clear, as the pool does; keep `iters` turn samples.
    while out.len() < iters {
        let t = Instant::now();
        stdin
            .write_all(claude_pool::protocol::stream::user_message_line("bench").as_bytes())
            .await
            .unwrap();
        while let Some(l) = lines.next_line().await.unwrap() {
            if l.contains("\"type\":\"result\"") {
                break;
            }
        }
        out.push(t.elapsed());
    }
    out
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
        println!("claude-pool latency and memory ({iters} samples each)\n");

        println!("1. pool overhead, fake CLI answering at once (2 slots)");
        let base = fake_turn_baseline(iters).await;
        let server = Server::start(quiet(ServerOptions::fake(2))).await;
        server.wait_ready().await;
        let pool = pool_runs(&server, iters, "bench").await;
        server.close().await;
        row("baseline: one warm fake process, direct", &base);
        row("pool_run over MCP stdio", &pool);
        let overhead = ms(median(&pool)) - ms(median(&base));
        println!("  => pool overhead (median pool_run - median fake turn): {overhead:.3} ms\n");

        println!("2. idle server RSS, children excluded");
        for slots in [1usize, 16] {
            let server = Server::start(quiet(ServerOptions::fake(slots))).await;
            server.wait_ready().await;
            let kib = rss_kib(server.pid);
            println!("  {slots:>2} slot(s): {:>7.2} MiB", kib as f64 / 1024.0);
            server.close().await;
        }
        println!();

        println!("3. warm slots vs a bare cold `claude -p`, real CLI against an instant mock");
        let Some(real) = RealCli::start("bench-real") else {
            return;
        };
        let cold = cold_cli_runs(&real.claude, &real.env, iters.min(20), &real.scratch).await;
        let opts = real.server(2);
        let server = Server::start(opts).await;
        server.wait_ready().await;
        let warm = pool_runs(&server, iters, "warm start").await;
        server.close().await;
        row("baseline: cold `claude -p --output-format json`", &cold);
        row("pool_run on a warm slot", &warm);
        let ratio = ms(median(&warm)) / ms(median(&cold));
        println!("  => warm / cold median ratio: {ratio:.3}\n");

        println!("4. the warm path: pool_run on warm slots vs one warm CLI driven by hand");
        let (hand, clears) = hand_driven_turns(
            &real.claude,
            &real.env,
            real.scratch.path(),
            iters,
            "warm start",
        )
        .await;
        let alternating = hand_driven_alternating(
            &real.claude,
            &real.env,
            real.scratch.path(),
            iters,
            "warm start",
        )
        .await;
        let hand_and_clear: Vec<Duration> =
            hand.iter().zip(&clears).map(|(t, c)| *t + *c).collect();
        // The slots work in the directory the hand-driven process worked in: the CLI's own
        // work per turn (reading the directory, git) depends on where it runs.
        let cwd = real.scratch.path().to_str().unwrap().to_owned();
        let mut runs = Vec::new();
        for (name, slots, no_db) in [
            ("2 slots (the default), default store", 2, false),
            ("1 slot, default store", 1, false),
            ("1 slot, --no-db", 1, true),
        ] {
            let mut args = vec!["--cwd", cwd.as_str()];
            if no_db {
                args.push("--no-db");
            }
            let server = Server::start(real.server(slots).args(&args)).await;
            server.wait_ready().await;
            runs.push((name, slots, pool_runs(&server, iters, "warm start").await));
            server.close().await;
        }
        row("baseline: warm CLI by hand, one turn", &hand);
        row("  its /clear between turns", &clears);
        row("  one turn and its /clear", &hand_and_clear);
        row(
            "  two by hand, alternating (one clears meanwhile)",
            &alternating,
        );
        for (name, _, v) in &runs {
            row(&format!("pool_run, {name}"), v);
        }
        // Back to back on one slot, each call waits for the last one's /clear; with two,
        // the next call goes to the slot that is already clear while the other clears.
        for (name, slots, v) in &runs {
            let (base, what) = if *slots > 1 {
                (&alternating, "two alternating")
            } else {
                (&hand_and_clear, "one turn and its /clear")
            };
            println!(
                "  => pool_run ({name}) / hand-driven {what}, median: {:.3} ({:+.2} ms)",
                ms(median(v)) / ms(median(base)),
                ms(median(v)) - ms(median(base))
            );
        }
    });
}
