//! What the durable store costs and what it survives, each figure beside its baseline in
//! the same run. Run with `scripts/bench.sh` (release build).
//!
//! 1. `pool_submit` latency over MCP stdio, p50/p99, with a store file, beside the same
//!    server keeping its store in memory (`--no-db`); and `Pool::submit` embedded with a
//!    store file beside a pool without any store.
//! 2. Server RSS after 10,000 tasks ran (all kept, in memory and in the store), beside the
//!    same server idle before them; and after a restart on that store.
//! 3. Start to serving (spawn to the first answered `pool_status`) on a store holding
//!    100,000 finished tasks, beside an empty store.
//! 4. A crash run: 500 tasks, the server SIGKILLed 10 times at random moments and restarted
//!    on the same store; every invariant checked.
//! 5. `pool_fan_out` throughput with a store file beside the same server in memory.
//! 6. The project store: `pool_submit` and `pool_run` with the project's shared store (the
//!    default), two servers sharing it, an explicit `--db` and memory, side by side; store
//!    and WAL bytes after 10,000 tasks; start to serving with 3 servers of one project
//!    started at once beside one alone.
//! 7. 2,000 tasks with 1 MB prompts under the default retention: the store's and the
//!    transcripts' bytes while serving and after a clean stop, beside their caps.
#![allow(clippy::unwrap_used, missing_docs)]

use std::time::{Duration, Instant};

use claude_pool::store::db::{Db, Finish, TaskRow, Write};
use claude_pool::{Pool, TaskSpec};
use claude_pool_tests::bench::{median, ms, pct, rss_kib};
use claude_pool_tests::crash::{CrashPlan, crash_run};
use claude_pool_tests::server::{Server, ServerOptions};
use claude_pool_tests::{Scratch, fake_claude_bin};
use serde_json::json;

const SUBMITS: usize = 2000;

fn quiet(opts: ServerOptions) -> ServerOptions {
    opts.args(&["--log-level", "warn"])
        .env("FAKE_CLAUDE_TURN_MS", "0")
}

fn p50_p99(name: &str, v: &[Duration]) {
    println!(
        "  {name:<52} p50 {:>7.3} ms   p99 {:>7.3} ms   max {:>7.3} ms   (n={})",
        ms(median(v)),
        ms(pct(v, 0.99)),
        ms(*v.iter().max().unwrap()),
        v.len()
    );
}

async fn mcp_submits(server: &Server) -> Vec<Duration> {
    submits(server, "MOCK_TEXT:").await
}

/// Submissions that only queue: both slots are busy for the whole measurement, so nothing
/// but the submission itself (and its insert) is measured.
async fn mcp_queued_submits(server: &Server) -> Vec<Duration> {
    for _ in 0..2 {
        server
            .call_ok("pool_submit", json!({ "prompt": "MOCK_SLEEP:600" }))
            .await;
    }
    submits(server, "MOCK_SLEEP:600").await
}

async fn submits(server: &Server, prompt: &str) -> Vec<Duration> {
    let mut out = Vec::with_capacity(SUBMITS);
    for i in 0..SUBMITS + 50 {
        let t = Instant::now();
        let r = server
            .call_ok("pool_submit", json!({ "prompt": format!("{prompt} {i}") }))
            .await;
        if i >= 50 {
            out.push(t.elapsed());
        }
        assert!(r["task_id"].is_string());
    }
    out
}

async fn embedded_submits(pool: &Pool) -> Vec<Duration> {
    let mut out = Vec::with_capacity(SUBMITS);
    for i in 0..SUBMITS + 50 {
        let t = Instant::now();
        pool.submit(TaskSpec::new(format!("MOCK_TEXT: {i}")))
            .await
            .unwrap();
        if i >= 50 {
            out.push(t.elapsed());
        }
    }
    out
}

async fn embedded(scratch: &Scratch, store: bool) -> Pool {
    let mut b = Pool::builder()
        .slots(2)
        .claude_bin(fake_claude_bin())
        .env("HOME", scratch.path())
        .env("FAKE_CLAUDE_TURN_MS", "0");
    if store {
        b = b.store(scratch.join("embedded.db"));
    }
    let pool = b.build().await.unwrap();
    pool.wait_ready().await.unwrap();
    pool
}

async fn mcp_server(args: &[&str]) -> (Server, Scratch) {
    let state = Scratch::new("bench-store");
    let server = Server::start(quiet(ServerOptions::fake(2)).state(state.path()).args(args)).await;
    server.wait_ready().await;
    (server, state)
}

async fn latency() {
    println!(
        "1. pool_submit latency, store file vs store in memory (MCP) and vs no store (embedded)"
    );
    let (server, _s) = mcp_server(&[]).await;
    let with_file = mcp_submits(&server).await;
    server.close().await;
    let (server, _s) = mcp_server(&["--keep-transcripts", "0"]).await;
    let no_transcripts = mcp_submits(&server).await;
    server.close().await;
    let (server, _s) = mcp_server(&["--no-db"]).await;
    let in_memory = mcp_submits(&server).await;
    server.close().await;
    let (server, _s) = mcp_server(&[]).await;
    let queued_file = mcp_queued_submits(&server).await;
    server.close().await;
    let (server, _s) = mcp_server(&["--no-db"]).await;
    let queued_memory = mcp_queued_submits(&server).await;
    server.close().await;
    p50_p99("MCP pool_submit into busy slots, store file", &queued_file);
    p50_p99("MCP pool_submit into busy slots, in memory", &queued_memory);
    println!(
        "  ratio p99 file / memory (queued): {:.2}",
        ms(pct(&queued_file, 0.99)) / ms(pct(&queued_memory, 0.99))
    );
    p50_p99("MCP pool_submit, store file + transcripts", &with_file);
    p50_p99(
        "MCP pool_submit, store file, no transcripts",
        &no_transcripts,
    );
    p50_p99("MCP pool_submit, store in memory (--no-db)", &in_memory);
    println!(
        "  ratio p99 file / memory: {:.2}",
        ms(pct(&with_file, 0.99)) / ms(pct(&in_memory, 0.99))
    );

    let scratch = Scratch::new("bench-embedded");
    let pool = embedded(&scratch, true).await;
    let e_file = embedded_submits(&pool).await;
    pool.shutdown().await;
    let pool = embedded(&scratch, false).await;
    let e_none = embedded_submits(&pool).await;
    pool.shutdown().await;
    p50_p99("Pool::submit, store file", &e_file);
    p50_p99("Pool::submit, no store at all", &e_none);
    println!(
        "  ratio p99 file / none: {:.2}",
        ms(pct(&e_file, 0.99)) / ms(pct(&e_none, 0.99))
    );
}

async fn memory() {
    println!("2. server RSS with 10,000 finished tasks");
    let state = Scratch::new("bench-rss");
    let server = Server::start(quiet(ServerOptions::fake(4)).state(state.path())).await;
    server.wait_ready().await;
    let idle = rss_kib(server.pid);
    for batch in 0..10 {
        let prompts: Vec<String> = (0..1000)
            .map(|i| format!("MOCK_TEXT: result {batch}-{i} {}", "x".repeat(200)))
            .collect();
        let r = server
            .call_ok("pool_fan_out", json!({ "prompts": prompts }))
            .await;
        assert_eq!(r["results"].as_array().unwrap().len(), 1000);
    }
    let after = rss_kib(server.pid);
    server.close().await;
    let server = Server::start(quiet(ServerOptions::fake(4)).state(state.path())).await;
    server.wait_ready().await;
    let restarted = rss_kib(server.pid);
    let s = server.status().await;
    assert_eq!(s["lifetime"]["tasks"]["completed"], 10_000);
    println!(
        "  store after 10,000 tasks: db {:.2} MiB, WAL {:.2} MiB (restarted: the first server's clean stop emptied it)",
        s["store"]["db_bytes"].as_f64().unwrap() / 1048576.0,
        s["store"]["wal_bytes"].as_f64().unwrap() / 1048576.0
    );
    server.close().await;
    println!(
        "  idle, empty store                       {:>8.2} MiB",
        idle as f64 / 1024.0
    );
    println!(
        "  after 10,000 tasks (kept in memory too) {:>8.2} MiB",
        after as f64 / 1024.0
    );
    println!(
        "  restarted on that store                 {:>8.2} MiB",
        restarted as f64 / 1024.0
    );
}

/// Fills a store with `n` finished tasks through the store's own writer.
fn fill(path: &std::path::Path, n: usize) {
    let (mut db, _) = Db::open(path, std::process::id()).unwrap();
    let now = 1_780_000_000_000i64;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut batch = Vec::new();
        for &i in chunk {
            let id = format!("task-{i:012x}");
            batch.push(Write::InsertTask(TaskRow::pending(
                id.clone(),
                "task",
                format!("prompt {i}"),
                json!({ "timeout_ms": 1_800_000 }),
                now + i as i64,
            )));
            batch.push(Write::Finished(Finish {
                id,
                state: "completed".into(),
                finished_at_ms: now + i as i64 + 50,
                output: Some(format!("answer {i} {}", "y".repeat(200))),
                error: None,
                session_id: Some(format!("session-{i}")),
                spend_usd: 0.001,
                tokens: [1000, 100, 0, 0],
                model: Some("claude-opus-5-5".into()),
                branch: None,
                commit_sha: None,
                worktree: None,
                approvals: None,
                started_at_ms: Some(now + i as i64 + 1),
                slot: Some("slot-0".into()),
            }));
        }
        db.apply(&batch).unwrap();
    }
}

async fn startup() {
    println!("3. start to serving, store with 100,000 finished tasks vs empty");
    let big = Scratch::new("bench-startup-big");
    let db = Server::default_db(big.path());
    let t = Instant::now();
    fill(&db, 100_000);
    println!(
        "  (filled 100,000 rows in {:.1} s)",
        t.elapsed().as_secs_f64()
    );
    let mut figures = Vec::new();
    for (name, state) in [
        ("empty store", None),
        ("100,000 finished tasks", Some(big.path())),
    ] {
        let mut samples = Vec::new();
        for _ in 0..5 {
            let empty = Scratch::new("bench-startup-empty");
            let dir = state.unwrap_or(empty.path());
            let t = Instant::now();
            let server = Server::start(quiet(ServerOptions::fake(1)).state(dir)).await;
            server.status().await;
            samples.push(t.elapsed());
            server.close().await;
        }
        figures.push((name, samples));
    }
    for (name, samples) in &figures {
        println!(
            "  {name:<26} median {:>7.1} ms   max {:>7.1} ms",
            ms(median(samples)),
            ms(*samples.iter().max().unwrap())
        );
    }
}

async fn crashes() {
    println!("4. crash run: 500 tasks, 10 SIGKILLs of the server, restarted on the same store");
    let scratch = Scratch::new("bench-crash");
    let report = crash_run(
        CrashPlan {
            tasks: 500,
            kills: 10,
            slots: 4,
            seed: 0xC0FFEE,
        },
        scratch.path(),
    )
    .await;
    let mut restarts = report.restart_ms.clone();
    restarts.sort_by(f64::total_cmp);
    println!(
        "  submitted {}   final states {:?}   servers {}",
        report.submitted, report.states, report.servers
    );
    println!(
        "  ledger ${:.6} vs sum of task spends ${:.6}   restart to serving p50 {:.0} ms max {:.0} ms   wall {:.1} s",
        report.ledger_usd,
        report.sum_usd,
        restarts[restarts.len() / 2],
        restarts.last().copied().unwrap_or(0.0),
        report.wall.as_secs_f64()
    );
    println!("  violations: {}", report.violations.len());
    for v in &report.violations {
        println!("    {v}");
    }
}

async fn fan_out() {
    println!("5. pool_fan_out of 128 instant prompts on 16 slots, the three servers taking turns");
    let runs: [(&str, &[&str]); 3] = [
        ("store file + transcripts", &[]),
        ("store file, no transcripts", &["--keep-transcripts", "0"]),
        ("store in memory (--no-db)", &["--no-db"]),
    ];
    let mut servers = Vec::new();
    for (name, args) in runs {
        let state = Scratch::new("bench-fanout");
        let server = Server::start(
            quiet(ServerOptions::fake(16))
                .state(state.path())
                .args(args),
        )
        .await;
        server.wait_ready().await;
        servers.push((name, server, state, Vec::new()));
    }
    for round in 0..12 {
        for (_, server, _, walls) in servers.iter_mut() {
            let prompts: Vec<String> = (0..128)
                .map(|i| format!("MOCK_TEXT: {round}-{i}"))
                .collect();
            let t = Instant::now();
            let r = server
                .call_ok("pool_fan_out", json!({ "prompts": prompts }))
                .await;
            if round >= 2 {
                walls.push(t.elapsed());
            }
            assert_eq!(r["completed"], 128);
        }
    }
    for (name, server, _state, walls) in servers {
        server.close().await;
        let m = median(&walls);
        println!(
            "  {name:<28} median {:>7.1} ms = {:>6.0} tasks/s",
            ms(m),
            128.0 / m.as_secs_f64()
        );
    }
}

#[tokio::main]
async fn main() {
    // DURABILITY_PARTS=1,5 runs only those parts.
    let parts = std::env::var("DURABILITY_PARTS").unwrap_or_else(|_| "1,2,3,4,5".into());
    let on = |n: &str| parts.split(',').any(|p| p.trim() == n);
    if on("1") {
        latency().await;
    }
    if on("2") {
        memory().await;
    }
    if on("3") {
        startup().await;
    }
    if on("4") {
        crashes().await;
    }
    if on("5") {
        fan_out().await;
    }
    if on("6") {
        project_store().await;
    }
    if on("7") {
        big_prompts().await;
    }
}

/// Bytes of the regular files directly in `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

async fn big_prompts() {
    println!(
        "7. 2,000 tasks with 1 MB prompts, default retention (256 MiB of rows, 1 GiB of transcripts)"
    );
    let state = Scratch::new("bench-big");
    let server = Server::start(quiet(ServerOptions::fake(4)).state(state.path())).await;
    server.wait_ready().await;
    let db = Server::default_db(state.path());
    let transcripts = db.with_file_name("pool-transcripts");
    let body = "x".repeat(1 << 20);
    let t = Instant::now();
    let mut peak_db = 0u64;
    let mut peak_wal = 0u64;
    let mut last = String::new();
    for i in 0..2000 {
        last = server
            .call_ok(
                "pool_submit",
                json!({ "prompt": format!("MOCK_ECHO_STATS {i} {body}") }),
            )
            .await["task_id"]
            .as_str()
            .unwrap()
            .to_owned();
        if i % 50 == 49 {
            let s = server.status().await;
            peak_db = peak_db.max(s["store"]["db_bytes"].as_u64().unwrap());
            peak_wal = peak_wal.max(s["store"]["wal_bytes"].as_u64().unwrap());
        }
    }
    let r = server.wait_task(&last).await;
    assert_eq!(r["status"], "completed", "{r}");
    let wall = t.elapsed();
    let s = server.status().await;
    let t_bytes = dir_bytes(&transcripts);
    server.close().await;
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    let mib = |b: u64| b as f64 / 1048576.0;
    println!(
        "  {:.0} s for 2,000 tasks ({} completed this run); peak while serving: db {:.1} MiB, WAL {:.1} MiB",
        wall.as_secs_f64(),
        s["tasks"]["completed"],
        mib(peak_db),
        mib(peak_wal)
    );
    println!(
        "  after a clean stop: db {:.1} MiB (cap 256 MiB of rows), WAL {} bytes, transcripts {:.1} MiB (cap 1024 MiB)",
        mib(std::fs::metadata(&db).map_or(0, |m| m.len())),
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
        mib(t_bytes)
    );
}

async fn runs(server: &Server, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let r = server
            .call_ok("pool_run", json!({ "prompt": format!("MOCK_TEXT: {i}") }))
            .await;
        if i >= 20 {
            out.push(t.elapsed());
        }
        assert_eq!(r["status"], "completed");
    }
    out
}

async fn project_store() {
    println!(
        "6. the project store (shared by the project's servers) beside an explicit --db and memory"
    );
    // An explicit store per phase: the queued submissions' tasks stay queued in theirs.
    let explicit = Scratch::new("bench-explicit");
    let db_submit = explicit.join("submit.db").display().to_string();
    let db_run = explicit.join("run.db").display().to_string();
    let kinds: [(&str, Vec<&str>, Vec<&str>); 3] = [
        ("project store (default)", vec![], vec![]),
        (
            "explicit --db",
            vec!["--db", db_submit.as_str()],
            vec!["--db", db_run.as_str()],
        ),
        ("in memory (--no-db)", vec!["--no-db"], vec!["--no-db"]),
    ];
    let mut submit = Vec::new();
    let mut run = Vec::new();
    for (name, submit_args, run_args) in &kinds {
        let (server, _s) = mcp_server(submit_args).await;
        submit.push((*name, mcp_queued_submits(&server).await));
        server.close().await;
        let (server, _s) = mcp_server(run_args).await;
        run.push((*name, runs(&server, 500).await));
        server.close().await;
    }
    // Two servers of one project submitting at once into one store.
    let state = Scratch::new("bench-two");
    let a = Server::start(quiet(ServerOptions::fake(2)).state(state.path())).await;
    let b = Server::start(quiet(ServerOptions::fake(2)).state(state.path())).await;
    a.wait_ready().await;
    b.wait_ready().await;
    let (sa, sb) = tokio::join!(mcp_queued_submits(&a), mcp_queued_submits(&b));
    a.close().await;
    b.close().await;
    let mut both = sa;
    both.extend(sb);
    for (name, v) in &submit {
        p50_p99(&format!("pool_submit into busy slots, {name}"), v);
    }
    p50_p99("pool_submit, two servers of one project at once", &both);
    for (name, v) in &run {
        p50_p99(&format!("pool_run (instant turn), {name}"), v);
    }

    let mut alone = Vec::new();
    let mut three = Vec::new();
    for _ in 0..5 {
        let state = Scratch::new("bench-start-one");
        let t = Instant::now();
        let s = Server::start(quiet(ServerOptions::fake(1)).state(state.path())).await;
        s.status().await;
        alone.push(t.elapsed());
        s.close().await;
        let state = Scratch::new("bench-start-three");
        let p = state.path().to_path_buf();
        let t = Instant::now();
        let start = |p: std::path::PathBuf| async move {
            let s = Server::start(quiet(ServerOptions::fake(1)).state(&p)).await;
            s.status().await;
            (s, t.elapsed())
        };
        let (x, y, z) = tokio::join!(start(p.clone()), start(p.clone()), start(p));
        three.extend([x.1, y.1, z.1]);
        for (s, _) in [x, y, z] {
            s.close().await;
        }
    }
    for (name, v) in [
        ("one server alone", &alone),
        ("3 servers of one project at once (each)", &three),
    ] {
        println!(
            "  start to serving, {name:<40} median {:>7.1} ms   max {:>7.1} ms",
            ms(median(v)),
            ms(*v.iter().max().unwrap())
        );
    }

    // 10,000 tasks through the project store, then its files.
    let state = Scratch::new("bench-bytes");
    let server = Server::start(quiet(ServerOptions::fake(4)).state(state.path())).await;
    server.wait_ready().await;
    for batch in 0..10 {
        let prompts: Vec<String> = (0..1000)
            .map(|i| format!("MOCK_TEXT: result {batch}-{i} {}", "x".repeat(200)))
            .collect();
        server
            .call_ok("pool_fan_out", json!({ "prompts": prompts }))
            .await;
    }
    let s = server.status().await;
    server.close().await;
    let db = Server::default_db(state.path());
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    println!(
        "  10,000 tasks: while serving db {:.2} MiB + WAL {:.2} MiB; after a clean stop db {:.2} MiB + WAL {} bytes",
        s["store"]["db_bytes"].as_f64().unwrap() / 1048576.0,
        s["store"]["wal_bytes"].as_f64().unwrap() / 1048576.0,
        std::fs::metadata(&db).map_or(0, |m| m.len()) as f64 / 1048576.0,
        std::fs::metadata(&wal).map_or(0, |m| m.len()),
    );
}
