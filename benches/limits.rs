//! Sixteen slots against an API that takes four calls at once: what the admission gate and
//! the requeue buy, side by side in one run. Run with `scripts/bench.sh` (release build).
//!
//! The real CLI (pinned) against the mock of the Messages API, limited to 4 answers in
//! flight (one more is refused at once: `429`, `retry-after: 1`), each answer taking
//! `BENCH_LIMITS_DELAY` seconds (default 0.5). One `pool_fan_out` of `BENCH_LIMITS_TASKS`
//! prompts (default 64) on 16 slots, three ways:
//!
//! - **floor**: 4 slots and no limit: the 4-wide API with no refusals, this machine's
//!   CLI overhead included — the best any scheduler could do here.
//! - **on**: 16 slots, the server's defaults (gate on, refused turns queued again, each
//!   CLI's own retries cut to two).
//! - **off**: 16 slots, `--api-adapt off`: every CLI retries by itself (its default, ten
//!   times, honouring `retry-after`) and a turn still refused fails.
//!
//! Reported: wall time against the ideal (tasks ÷ 4 × delay), tasks failed, and the
//! requests the mock refused (its own count).
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use claude_pool_tests::bench::RealCli;
use claude_pool_tests::mock_anthropic::Limits;
use claude_pool_tests::server::Server;
use serde_json::json;

struct Outcome {
    wall: Duration,
    completed: usize,
    failed: usize,
    refused: u64,
    answered: u64,
}

async fn run(
    slots: usize,
    width: Option<u64>,
    args: &[&str],
    tasks: usize,
    delay: f64,
) -> Option<Outcome> {
    let mut cli = RealCli::start("bench-limits")?;
    // The pool's default for the CLI's retries (two), or the CLI's own (ten) with
    // `--api-adapt off`: never the harness's zero.
    cli.env.retain(|(k, _)| k != "CLAUDE_CODE_MAX_RETRIES");
    let server = Server::start(cli.server(slots).args(args)).await;
    server.wait_ready().await;
    cli.mock().set_limits(Limits {
        max_in_flight: width,
        ..Limits::default()
    });
    cli.mock().configure(&json!({ "delay": delay }));
    let before = cli.mock().stats();
    let prompts: Vec<String> = (0..tasks).map(|i| format!("MOCK_TEXT: item {i}")).collect();
    let began = Instant::now();
    let fan = server
        .call_ok(
            "pool_fan_out",
            json!({ "prompts": prompts, "timeout": "30m" }),
        )
        .await;
    let wall = began.elapsed();
    let after = cli.mock().stats();
    let results = fan["results"].as_array().unwrap();
    let completed = results
        .iter()
        .filter(|r| r["status"] == "completed")
        .count();
    let outcome = Outcome {
        wall,
        completed,
        failed: results.len() - completed,
        refused: after.rejected() - before.rejected(),
        answered: after.ok - before.ok,
    };
    server.close().await;
    Some(outcome)
}

fn main() {
    let tasks: usize = std::env::var("BENCH_LIMITS_TASKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    let delay: f64 = std::env::var("BENCH_LIMITS_DELAY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0.5);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let ideal = tasks as f64 / 4.0 * delay;
        println!(
            "limits: {tasks} tasks, an API 4 wide, {delay} s per answer (ideal {ideal:.1} s), real CLI"
        );
        let runs = [
            ("floor: 4 slots, no limit", 4, None, &[][..]),
            ("on: 16 slots, defaults", 16, Some(4), &[][..]),
            ("off: 16 slots, --api-adapt off", 16, Some(4), &["--api-adapt", "off"][..]),
        ];
        for (name, slots, width, args) in runs {
            let Some(o) = run(slots, width, args, tasks, delay).await else {
                return;
            };
            println!(
                "  {name:<34} wall {:>6.1} s ({:.2}× ideal)   completed {:>3}   failed {:>3}   refused by the API {:>4}   answered {:>4}",
                o.wall.as_secs_f64(),
                o.wall.as_secs_f64() / ideal,
                o.completed,
                o.failed,
                o.refused,
                o.answered
            );
        }
    });
}
