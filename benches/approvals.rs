//! What approvals cost, each figure beside its baseline in the same run (samples of the two
//! interleaved, so drift hits both alike). Run with `scripts/bench.sh` (release build);
//! `BENCH_ITERS` sets the sample count (default 20), medians are reported.
//!
//! 1. The round trip of an approval through elicitation over MCP stdio: `pool_run` of
//!    `MOCK_TOOL:touch <fresh file>` whose permission question reaches the client as an
//!    `elicitation/create` it answers at once (`allow_once`), beside the same `pool_run` on
//!    a server whose rule `--allow 'Bash(touch:*)'` answers without asking anyone. The
//!    asked run is split: call start → form at the client, answer sent → result at the
//!    client. With the fake CLI (`FAKE_CLAUDE_TURN_MS=0`), then with the real CLI against
//!    an instantly answering mock of the Messages API.
//! 2. The same over Streamable HTTP.
//! 3. What `--permission-prompt-tool stdio` costs a turn that asks for nothing: one warm CLI
//!    process driven directly with the flag, one without, turns interleaved: `MOCK_TEXT: hi`
//!    (no tool) and `MOCK_TOOL:echo hi` (a read-only command run without asking). The real
//!    CLI against the mock when installed, else the fake (said in the output).
#![allow(clippy::unwrap_used, missing_docs)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use claude_pool_tests::bench::{RealCli, median, ms, row};
use claude_pool_tests::procs;
use claude_pool_tests::server::{Server, ServerOptions, Transport, content, finish_call};
use claude_pool_tests::{Scratch, fake_claude_bin, within};
use rmcp::model::{ElicitRequestParams, ElicitResult, ElicitationAction};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

/// Untimed runs before the timed ones.
const WARMUP: usize = 3;
const LIMIT: Duration = Duration::from_secs(60);
const RULE: &str = "Bash(touch:*)";

/// The samples of one configuration: asked (with its split) against allowed by rule.
#[derive(Default)]
struct RoundTrips {
    /// `pool_run`s allowed by the server's rule (no question).
    rule: Vec<Duration>,
    /// `pool_run`s whose question the client answered at once.
    asked: Vec<Duration>,
    /// Of those: from the call's start to the form reaching the client.
    form: Vec<Duration>,
    /// Of those: from the answer leaving the client to the call's result.
    after: Vec<Duration>,
}

/// The asking server (from `asking`) and the one whose rule answers (from `ruled`), both
/// in `default` mode, over `transport`, their slots warm.
async fn servers(
    asking: ServerOptions,
    ruled: ServerOptions,
    transport: Transport,
) -> (Server, Server) {
    // Over HTTP the harness reads the "listening on" line, logged at info.
    let level = match transport {
        Transport::Stdio => "warn",
        Transport::Http => "info",
    };
    let mode = ["--permission-mode", "default", "--log-level", level];
    let asking = Server::start(asking.transport(transport).elicitation().args(&mode)).await;
    let ruled = Server::start(
        ruled
            .transport(transport)
            .elicitation()
            .args(&mode)
            .args(&["--allow", RULE]),
    )
    .await;
    asking.wait_ready().await;
    ruled.wait_ready().await;
    (asking, ruled)
}

/// One `pool_run` answered by the client at once: (total, start → form, answer → result).
async fn asked_run(server: &Server, i: usize) -> (Duration, Duration, Duration) {
    let file = server.scratch().join(format!("asked-{i}"));
    let command = format!("touch {}", file.display());
    let t0 = Instant::now();
    let call = server
        .start_call(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:{command}") }),
        )
        .await;
    let (request, reply) = server.next_elicitation(LIMIT, "the permission form").await;
    let t_form = t0.elapsed();
    let ElicitRequestParams::FormElicitationParams { message, .. } = &request else {
        panic!("expected a form, got {request:?}");
    };
    assert!(
        message.contains(&command),
        "the form names the command: {message}"
    );
    let t_answer = Instant::now();
    let _ = reply.send(
        ElicitResult::new(ElicitationAction::Accept)
            .with_content(json!({ "decision": "allow_once" })),
    );
    let done = content(&finish_call(call, "the asked pool_run").await);
    let total = t0.elapsed();
    let after = t_answer.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    assert!(file.exists(), "the allowed command ran: {done}");
    assert_eq!(done["approvals"][0]["outcome"], "allow", "{done}");
    assert!(
        done["approvals"][0]["by"]
            .as_str()
            .is_some_and(|b| b.starts_with("client:")),
        "the client's answer decided: {done}"
    );
    (total, t_form, after)
}

/// One `pool_run` the server's rule allows without asking.
async fn ruled_run(server: &Server, i: usize) -> Duration {
    let file = server.scratch().join(format!("ruled-{i}"));
    let t0 = Instant::now();
    let done = server
        .call_ok(
            "pool_run",
            json!({ "prompt": format!("MOCK_TOOL:touch {}", file.display()) }),
        )
        .await;
    let total = t0.elapsed();
    assert_eq!(done["status"], "completed", "{done}");
    assert!(file.exists(), "the allowed command ran: {done}");
    assert_eq!(done["approvals"][0]["by"], format!("rule:{RULE}"), "{done}");
    total
}

/// `iters` interleaved samples of each (after `WARMUP` untimed pairs), alternating which
/// goes first.
async fn round_trips(asking: &Server, ruled: &Server, iters: usize) -> RoundTrips {
    let mut out = RoundTrips::default();
    for i in 0..iters + WARMUP {
        let (asked, rule) = if i % 2 == 0 {
            let a = asked_run(asking, i).await;
            (a, ruled_run(ruled, i).await)
        } else {
            let r = ruled_run(ruled, i).await;
            (asked_run(asking, i).await, r)
        };
        if i >= WARMUP {
            out.asked.push(asked.0);
            out.form.push(asked.1);
            out.after.push(asked.2);
            out.rule.push(rule);
        }
    }
    out
}

fn report_round_trips(r: &RoundTrips) {
    row(&format!("baseline: allowed by --allow '{RULE}'"), &r.rule);
    row("asked by elicitation, answered at once", &r.asked);
    row("  call start -> form at the client", &r.form);
    row("  answer sent -> result at the client", &r.after);
    println!(
        "  => approval cost: median asked - median rule {:.3} ms; median of paired differences {:.3} ms\n",
        ms(median(&r.asked)) - ms(median(&r.rule)),
        paired(&r.asked, &r.rule)
    );
}

/// The median of `a[i] - b[i]` in milliseconds: the samples of a pair ran back to back, so
/// their difference is less touched by drift and by other load than a difference of medians.
fn paired(a: &[Duration], b: &[Duration]) -> f64 {
    let mut d: Vec<f64> = a.iter().zip(b).map(|(x, y)| ms(*x) - ms(*y)).collect();
    d.sort_by(f64::total_cmp);
    d[d.len() / 2]
}

/// The 1-minute load average against the cores, said so a reader knows how much else ran.
fn load(when: &str) {
    let avg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let one = avg.split_whitespace().next().unwrap_or("?");
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("  (load average {one} on {cores} cores {when})");
}

/// Sections 1 and 2 for one CLI and transport; both servers are closed (and audited for
/// leftover processes) before the figures are printed.
async fn section(asking: ServerOptions, ruled: ServerOptions, transport: Transport, iters: usize) {
    let (asking, ruled) = servers(asking, ruled, transport).await;
    let r = round_trips(&asking, &ruled, iters).await;
    asking.close().await;
    ruled.close().await;
    report_round_trips(&r);
}

fn fake_options() -> ServerOptions {
    ServerOptions::fake(1).env("FAKE_CLAUDE_TURN_MS", "0")
}

/// One warm CLI process driven directly over stream-json, as a slot drives it.
struct Direct {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    pid: u32,
}

impl Direct {
    /// Spawns `claude` (its own process group) in `cwd` with `env` only, in `default` mode,
    /// with `--permission-prompt-tool stdio` when `prompt_tool`; waits for its first `/clear`.
    async fn spawn(
        claude: &Path,
        env: &[(String, String)],
        cwd: &Path,
        prompt_tool: bool,
    ) -> Direct {
        let mut cmd = tokio::process::Command::new(claude);
        cmd.args(claude_pool::protocol::stream::PERSISTENT_ARGS)
            .args(["--permission-mode", "default"]);
        if prompt_tool {
            cmd.args(["--permission-prompt-tool", "stdio"]);
        }
        let mut child = cmd
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut d = Direct {
            child,
            stdin,
            lines,
            pid,
        };
        d.turn("/clear").await;
        d
    }

    /// Writes `prompt` and reads until its result: the time taken and the result's text.
    async fn turn(&mut self, prompt: &str) -> (Duration, String) {
        let line = claude_pool::protocol::stream::user_message_line(prompt);
        let t = Instant::now();
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let lines = &mut self.lines;
        let result = within(LIMIT, "the CLI's result", async {
            loop {
                let l = lines
                    .next_line()
                    .await
                    .unwrap()
                    .expect("the CLI exited mid-turn");
                assert!(
                    !l.contains("\"type\":\"control_request\""),
                    "the CLI asked about a turn that needs no question: {l}"
                );
                if l.contains("\"type\":\"result\"") {
                    return l;
                }
            }
        })
        .await;
        let d = t.elapsed();
        let v: Value = serde_json::from_str(&result).unwrap();
        (d, v["result"].as_str().unwrap_or_default().to_owned())
    }

    /// One timed turn of `prompt` whose result must be `want`, then an untimed `/clear`.
    async fn sample(&mut self, prompt: &str, want: &str) -> Duration {
        let (d, got) = self.turn(prompt).await;
        assert_eq!(got, want, "the result of {prompt:?}");
        self.turn("/clear").await;
        d
    }

    /// EOF on stdin, the exit awaited, and nothing left in its process group.
    async fn close(self) {
        let Direct {
            mut child,
            stdin,
            pid,
            ..
        } = self;
        drop(stdin);
        if tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .is_err()
        {
            procs::kill(pid, libc::SIGKILL);
            child.wait().await.unwrap();
        }
        for p in procs::live_group_members(pid) {
            procs::kill(p, libc::SIGKILL);
        }
        procs::assert_group_gone(pid, Duration::from_secs(10), "a directly driven CLI").await;
    }
}

/// Section 3 for one prompt: interleaved timed turns on the process with the flag and the
/// one without (alternating which goes first).
async fn flag_cost(
    with: &mut Direct,
    without: &mut Direct,
    iters: usize,
    prompt: &str,
    want: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..iters + WARMUP {
        let (x, y) = if i % 2 == 0 {
            let x = with.sample(prompt, want).await;
            (x, without.sample(prompt, want).await)
        } else {
            let y = without.sample(prompt, want).await;
            (with.sample(prompt, want).await, y)
        };
        if i >= WARMUP {
            a.push(x);
            b.push(y);
        }
    }
    (a, b)
}

async fn prompt_tool_cost(iters: usize) {
    let real = RealCli::start("bench-approvals-direct");
    let fake_scratch = Scratch::new("bench-approvals-fake");
    let fake_env: Vec<(String, String)> = vec![
        ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
        ("HOME".into(), fake_scratch.path().display().to_string()),
        ("FAKE_CLAUDE_TURN_MS".into(), "0".into()),
    ];
    let (claude, env, cwd, which) = match &real {
        Some(r) => (
            r.claude.clone(),
            r.env.clone(),
            r.scratch.path().to_path_buf(),
            "the real CLI against the mock",
        ),
        None => (
            fake_claude_bin(),
            fake_env,
            fake_scratch.path().to_path_buf(),
            "the FAKE CLI (the real one is not installed)",
        ),
    };
    println!(
        "3. --permission-prompt-tool stdio on turns that ask nothing, {which}, one warm process each"
    );
    let mut with = Direct::spawn(&claude, &env, &cwd, true).await;
    let mut without = Direct::spawn(&claude, &env, &cwd, false).await;
    let cases = [
        ("MOCK_TEXT: hi", "hi", "no tool"),
        ("MOCK_TOOL:echo hi", "MOCK: tool said: hi", "`echo hi`"),
    ];
    let mut results = Vec::new();
    for (prompt, want, label) in cases {
        let (a, b) = flag_cost(&mut with, &mut without, iters, prompt, want).await;
        results.push((label, a, b));
    }
    with.close().await;
    without.close().await;
    for (label, a, b) in &results {
        row(&format!("baseline: {label}, without the flag"), b);
        row(&format!("{label}, with the flag"), a);
        println!(
            "  => flag cost, {label}: median with - median without {:.3} ms; median of paired differences {:.3} ms",
            ms(median(a)) - ms(median(b)),
            paired(a, b)
        );
    }
}

fn main() {
    let iters: usize = std::env::var("BENCH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("claude-pool approvals ({iters} samples each, medians; 1 slot per server)");
        load("at the start");
        println!();

        for (n, transport, over) in [
            (1, Transport::Stdio, "MCP stdio"),
            (2, Transport::Http, "Streamable HTTP"),
        ] {
            println!("{n}a. approval round trip over {over}, fake CLI (FAKE_CLAUDE_TURN_MS=0)");
            section(fake_options(), fake_options(), transport, iters).await;
            println!("{n}b. approval round trip over {over}, real CLI against the mock");
            // Each server's CLI has a mock and a HOME (so a store) of its own.
            let Some(a) = RealCli::start("bench-approvals-asking") else {
                println!();
                continue;
            };
            let b = RealCli::start("bench-approvals-ruled").unwrap();
            section(a.server(1), b.server(1), transport, iters).await;
        }

        prompt_tool_cost(iters).await;
        load("at the end");
    });
}
