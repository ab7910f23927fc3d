//! Measuring helpers shared by the benches.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::server::Server;

/// The middle sample.
pub fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

/// The sample at quantile `p` (0.0..=1.0).
pub fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[((s.len() - 1) as f64 * p).round() as usize]
}

/// Prints one line of figures: median, p90, min.
pub fn row(name: &str, v: &[Duration]) {
    println!(
        "  {name:<50} median {:>8.3} ms   p90 {:>8.3} ms   min {:>8.3} ms   (n={})",
        ms(median(v)),
        ms(pct(v, 0.9)),
        ms(*v.iter().min().unwrap()),
        v.len()
    );
}

/// Resident memory of a process, in KiB (children excluded).
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:")
}

/// The anonymous part of a process's resident set in KiB: its heap and stacks, without the
/// pages of its executable and libraries (which grow as more of its code has run).
pub fn anon_kib(pid: u32) -> u64 {
    status_kib(pid, "RssAnon:")
}

fn status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Milliseconds, for printing.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `iters` timed `pool_run`s of `prompt`, after three untimed ones.
pub async fn pool_runs(server: &Server, iters: usize, prompt: &str) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..iters + 3 {
        let t = Instant::now();
        let r = server
            .call_ok("pool_run", json!({ "prompt": prompt }))
            .await;
        if i >= 3 {
            out.push(t.elapsed());
        }
        assert_eq!(r["status"], "completed");
    }
    out
}

/// `iters` timed cold `claude -p` runs (after one untimed), each a fresh process.
pub async fn cold_cli_runs(
    claude: &std::path::Path,
    env: &[(String, String)],
    iters: usize,
    scratch: &crate::Scratch,
) -> Vec<Duration> {
    let mut out = Vec::new();
    for i in 0..iters + 1 {
        let t = Instant::now();
        let o = tokio::process::Command::new(claude)
            .args(["-p", "cold start", "--output-format", "json"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(scratch.path())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap();
        let d = t.elapsed();
        assert!(
            o.status.success(),
            "cold claude -p failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        if i > 0 {
            out.push(d);
        }
    }
    out
}

/// The pinned real CLI against a mock of the Messages API of its own: the CLI, a scratch
/// HOME, and the hermetic environment it runs in.
pub struct RealCli {
    /// The CLI.
    pub claude: std::path::PathBuf,
    /// Its environment (`mock_anthropic::hermetic_cli_env`).
    pub env: Vec<(String, String)>,
    /// Its HOME and temporary files.
    pub scratch: crate::Scratch,
    _mock: crate::mock_anthropic::MockServer,
}

impl std::fmt::Debug for RealCli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealCli")
            .field("claude", &self.claude)
            .finish_non_exhaustive()
    }
}

impl RealCli {
    /// The CLI and a fresh mock; `None` (said on stdout) when the CLI is not installed.
    pub fn start(label: &str) -> Option<RealCli> {
        let Some(claude) = crate::real_claude_bin() else {
            println!("  skipped: the real CLI is not installed (scripts/install-claude.sh)");
            return None;
        };
        let mock = crate::mock_anthropic::MockServer::start().expect("start the mock");
        let scratch = crate::Scratch::new(label);
        let env = crate::mock_anthropic::hermetic_cli_env(&mock.url(), scratch.path());
        Some(RealCli {
            claude,
            env,
            scratch,
            _mock: mock,
        })
    }

    /// The mock the CLI talks to.
    pub fn mock(&self) -> &crate::mock_anthropic::MockServer {
        &self._mock
    }

    /// A server of `slots` slots running this CLI over stdio, logging warnings only.
    pub fn server(&self, slots: usize) -> crate::server::ServerOptions {
        let mut opts = crate::server::ServerOptions::fake(slots)
            .transport(crate::server::Transport::Stdio)
            .args(&["--log-level", "warn"]);
        opts.claude_bin = self.claude.clone();
        for (k, v) in &self.env {
            opts = opts.env(k, v);
        }
        opts
    }
}

/// One warm real CLI process (`program` with a slot's persistent arguments and `env`),
/// driven by hand the way a slot drives it.
struct HandCli {
    _child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
    /// A `/clear` written whose result has not been read yet.
    clearing: bool,
}

impl HandCli {
    async fn start(
        program: &std::path::Path,
        env: &[(String, String)],
        cwd: &std::path::Path,
    ) -> HandCli {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(program)
            .args(claude_pool_protocol::stream::PERSISTENT_ARGS)
            .args([
                "--permission-prompt-tool",
                "stdio",
                "--permission-mode",
                "plan",
            ])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(cwd)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start the CLI");
        let stdin = child.stdin.take().expect("stdin");
        let lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut cli = HandCli {
            _child: child,
            stdin,
            lines,
            clearing: false,
        };
        // The slot's warm-up: a /clear answered before the first task.
        cli.clear().await;
        cli.settle().await;
        cli
    }

    /// Writes one user message and reads up to its result.
    async fn turn(&mut self, prompt: &str) -> Duration {
        self.settle().await;
        let t = Instant::now();
        self.write(prompt).await;
        self.result().await;
        t.elapsed()
    }

    /// Writes `/clear` without waiting for its result.
    async fn clear(&mut self) {
        self.write("/clear").await;
        self.clearing = true;
    }

    /// Reads the result of a `/clear` written before, if any.
    async fn settle(&mut self) {
        if std::mem::take(&mut self.clearing) {
            self.result().await;
        }
    }

    async fn write(&mut self, text: &str) {
        use tokio::io::AsyncWriteExt;
        let line = claude_pool_protocol::stream::user_message_line(text);
        self.stdin.write_all(line.as_bytes()).await.expect("write");
    }

    async fn result(&mut self) {
        loop {
            let l = self
                .lines
                .next_line()
                .await
                .expect("read")
                .expect("the CLI exited");
            if l.contains("\"type\":\"result\"") {
                return;
            }
        }
    }
}

/// One warm CLI process driven by hand the way a slot drives it: a prompt, its result, then
/// `/clear` and its result before the next. Returns the timed turns and the timed clears
/// (`iters` each, after three untimed rounds).
pub async fn hand_driven_turns(
    program: &std::path::Path,
    env: &[(String, String)],
    cwd: &std::path::Path,
    iters: usize,
    prompt: &str,
) -> (Vec<Duration>, Vec<Duration>) {
    let mut cli = HandCli::start(program, env, cwd).await;
    let (mut turns, mut clears) = (Vec::new(), Vec::new());
    for i in 0..iters + 3 {
        let turn = cli.turn(prompt).await;
        let t = Instant::now();
        cli.clear().await;
        cli.settle().await;
        if i >= 3 {
            turns.push(turn);
            clears.push(t.elapsed());
        }
    }
    (turns, clears)
}

/// Two warm CLI processes driven by hand the way two slots serve back-to-back calls: each
/// turn goes to the process that is clear, while the other runs the `/clear` after its own
/// last turn. Returns `iters` timed turns (after three untimed).
pub async fn hand_driven_alternating(
    program: &std::path::Path,
    env: &[(String, String)],
    cwd: &std::path::Path,
    iters: usize,
    prompt: &str,
) -> Vec<Duration> {
    let mut clis = [
        HandCli::start(program, env, cwd).await,
        HandCli::start(program, env, cwd).await,
    ];
    let mut turns = Vec::new();
    for i in 0..iters + 3 {
        let cli = &mut clis[i % 2];
        let turn = cli.turn(prompt).await;
        cli.clear().await;
        if i >= 3 {
            turns.push(turn);
        }
    }
    turns
}
