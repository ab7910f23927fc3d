//! Conformance: the project's Rust fake CLI (`fake-claude`) must look, to a driver, like the
//! real Claude Code CLI talking to this crate's mock.
//!
//! Every scenario runs against both, each run with a hermetic environment
//! ([`mock_anthropic::hermetic_cli_env`]), its own mock server and a fresh scratch directory under
//! `std::env::temp_dir()`. What is compared (like the project's `conformance.py`): exit code,
//! stdout kind, the sequence of event types (system events with their subtype), per result its
//! key set (timing-only keys ignored), subtype, `is_error`, presence of `result`, `num_turns`,
//! how session ids change, the model and permission mode of every `system/init`, the exact
//! `control_response` lines, result texts, and — in the cost scenarios — `total_cost_usd`,
//! usage and per-model costs, exactly.
//!
//! Binaries: the real CLI from `CLAUDE_POOL_REAL_CLI`, else the pinned install
//! `<workspace>/.cache/claude-cli-2.1.329/...` made by `scripts/install-claude.sh`; the fake from
//! `CLAUDE_POOL_FAKE_CLI`, else `target/debug/fake-claude` (`cargo build -p fake-claude`).
//! Without the real CLI the test is skipped, except with `CI=true`, where it fails.
//! `CLAUDE_POOL_CONFORMANCE_ONLY=<substring>` runs only the matching scenarios.
//!
//! Run: `cargo build -p fake-claude && cargo test -p mock-anthropic --test conformance -- --nocapture`
//! (prints the comparison table and what was measured on the real CLI).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mock_anthropic::{MockServer, hermetic_cli_env};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The pinned CLI version `scripts/install-claude.sh` installs.
const CLI_VERSION: &str = "2.1.329";
/// Deadline for any single wait (a cold start of the real CLI takes ~0.4 s, 3-4 s under load).
const WAIT: Duration = Duration::from_secs(30);
/// Result keys whose presence depends on timing only: not compared.
const TIMING_KEYS: &[&str] = &[
    "ttft_ms",
    "ttft_stream_ms",
    "time_to_request_ms",
    "first_content_frame_ms",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Impl {
    Real,
    Fake,
}

impl Impl {
    fn name(self) -> &'static str {
        match self {
            Impl::Real => "real",
            Impl::Fake => "fake",
        }
    }
}

/// One thing the driver does.
#[derive(Clone, Debug)]
enum Step {
    /// Write one JSON line to stdin.
    Send(Value),
    /// Wait for the next stdout event matching the predicate (named for the error message).
    Until(&'static str, fn(&Value) -> bool),
    /// Wait until the current turn is in flight: its `system/init` was printed and, for the
    /// real CLI, the mock holds at least this many API requests.
    InFlight(usize),
    /// Send SIGTERM to the CLI.
    Sigterm,
    /// Close stdin (EOF: the CLI finishes its work and exits).
    CloseStdin,
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    args: Vec<String>,
    /// stdin is a pipe (persistent stream-json mode); otherwise /dev/null.
    piped: bool,
    steps: Vec<Step>,
    /// Compare cost and usage numbers too.
    costs: bool,
    /// Compare result texts too.
    texts: bool,
    /// Run against the real CLI only, to measure facts (not compared).
    probe: bool,
}

fn is_result(e: &Value) -> bool {
    e["type"] == "result"
}

fn is_control_response(e: &Value) -> bool {
    e["type"] == "control_response"
}

fn is_partial_message_start(e: &Value) -> bool {
    e["type"] == "stream_event" && e["event"]["type"] == "message_start"
}

fn user(text: &str) -> Step {
    Step::Send(json!({"type": "user", "message": {"role": "user", "content": text}}))
}

fn control(id: &str, request: Value) -> Step {
    Step::Send(json!({"type": "control_request", "request_id": id, "request": request}))
}

fn result() -> Step {
    Step::Until("a result event", is_result)
}

fn control_response() -> Step {
    Step::Until("a control_response", is_control_response)
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

const STREAM: [&str; 3] = ["--output-format", "stream-json", "--verbose"];
/// The pool's own persistent-mode arguments: conformance is checked for exactly those.
const PERSISTENT: [&str; 6] = claude_pool_protocol::stream::PERSISTENT_ARGS;

fn one_shot(name: &'static str, prompt: &str, extra: &[&str]) -> Scenario {
    let mut a = args(&["-p", prompt]);
    a.extend(args(extra));
    Scenario {
        name,
        args: a,
        piped: false,
        steps: Vec::new(),
        costs: false,
        texts: true,
        probe: false,
    }
}

fn persistent(name: &'static str, extra: &[&str], steps: Vec<Step>) -> Scenario {
    let mut a = args(&PERSISTENT);
    a.extend(args(extra));
    Scenario {
        name,
        args: a,
        piped: true,
        steps,
        costs: false,
        texts: true,
        probe: false,
    }
}

fn scenarios() -> Vec<Scenario> {
    vec![
        one_shot("one-shot json", "say hello", &["--output-format", "json"]),
        one_shot("one-shot stream-json", "say hello", &STREAM),
        persistent(
            "persistent: 2 prompts, /clear, 3rd",
            &[],
            vec![
                user("first prompt"),
                result(),
                user("second prompt"),
                result(),
                user("/clear"),
                result(),
                user("MOCK_COUNT third prompt"),
                result(),
                Step::CloseStdin,
            ],
        ),
        persistent(
            "persistent: /clear as 1st message",
            &[],
            vec![
                user("/clear"),
                result(),
                user("MOCK_COUNT after clear"),
                result(),
                Step::CloseStdin,
            ],
        ),
        persistent(
            "interrupt during MOCK_SLEEP:5",
            &[],
            vec![
                user("MOCK_SLEEP:5 slow"),
                Step::InFlight(1),
                control("i1", json!({"subtype": "interrupt"})),
                result(),
                user("after the interrupt"),
                result(),
                Step::CloseStdin,
            ],
        ),
        persistent(
            "set_model sonnet, then prompt",
            &[],
            vec![
                control("m1", json!({"subtype": "set_model", "model": "sonnet"})),
                control_response(),
                user("hi"),
                result(),
                Step::CloseStdin,
            ],
        ),
        persistent(
            "set_permission_mode, then prompt",
            &[],
            vec![
                control(
                    "p1",
                    json!({"subtype": "set_permission_mode", "mode": "acceptEdits"}),
                ),
                control_response(),
                user("hi"),
                result(),
                Step::CloseStdin,
            ],
        ),
        persistent(
            "end_session while idle",
            &[],
            vec![
                user("quick"),
                result(),
                control(
                    "e1",
                    json!({"subtype": "end_session", "reason": "conformance"}),
                ),
            ],
        ),
        one_shot("MOCK_STATUS:500 (stream)", "MOCK_STATUS:500 x", &STREAM),
        Scenario {
            costs: true,
            ..one_shot(
                "MOCK_USAGE json --model sonnet",
                "MOCK_USAGE:1000,500 x",
                &["--model", "sonnet", "--output-format", "json"],
            )
        },
        Scenario {
            costs: true,
            ..persistent(
                "MOCK_USAGE x2 persistent sonnet",
                &["--model", "sonnet"],
                vec![
                    user("MOCK_USAGE:1000,500 one"),
                    result(),
                    user("MOCK_USAGE:2000,300,400,100 two"),
                    result(),
                    Step::CloseStdin,
                ],
            )
        },
        // Texts not compared: the real CLI really runs the command (reply "MOCK: tool said: hi"),
        // a fake may not.
        Scenario {
            texts: false,
            ..one_shot("MOCK_TOOL:echo hi (stream)", "MOCK_TOOL:echo hi", &STREAM)
        },
        Scenario {
            steps: vec![Step::InFlight(1), Step::Sigterm],
            ..one_shot("SIGTERM during MOCK_SLEEP:5", "MOCK_SLEEP:5 x", &STREAM)
        },
        // Probe (real CLI only): an interrupt after the response has started, to see whether
        // the partial turn is paid for.
        Scenario {
            probe: true,
            ..persistent(
                "probe: interrupt after message_start",
                &["--include-partial-messages"],
                vec![
                    user("MOCK_USAGE:1000,500 one"),
                    result(),
                    user("MOCK_USAGE:2000,700 MOCK_STALL:5 slow"),
                    Step::Until("a stream_event message_start", is_partial_message_start),
                    control("i1", json!({"subtype": "interrupt"})),
                    result(),
                    Step::CloseStdin,
                ],
            )
        },
    ]
}

// ------------------------------------------------------------------ running a CLI

/// Everything one run produced.
#[derive(Debug, Default)]
struct RunResult {
    /// Exit code (128 + signal when killed by a signal); `None` if it never exited.
    rc: Option<i32>,
    /// stdout lines with their arrival time since spawn.
    lines: Vec<(Duration, String)>,
    /// What the driver wrote, with the time since spawn.
    sent: Vec<(Duration, String)>,
    stderr: String,
    /// The wait that failed, if any.
    error: Option<String>,
    /// `127.0.0.1:<port>` of this run's mock (the CLI quotes it in API error texts).
    mock_addr: String,
}

impl RunResult {
    fn events(&self) -> Vec<(Duration, Value)> {
        let mut out = Vec::new();
        for (t, l) in &self.lines {
            match serde_json::from_str::<Value>(l) {
                Ok(Value::Array(items)) => out.extend(items.into_iter().map(|v| (*t, v))),
                Ok(v) => out.push((*t, v)),
                Err(_) => {}
            }
        }
        out
    }

    fn sent_at(&self, needle: &str) -> Option<Duration> {
        self.sent
            .iter()
            .find(|(_, s)| s.contains(needle))
            .map(|(t, _)| *t)
    }
}

struct Running {
    which: Impl,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<(Duration, String)>,
    t0: Instant,
    out: RunResult,
}

impl Running {
    /// Read stdout until an event matches `pred`.
    async fn until(&mut self, what: &str, pred: fn(&Value) -> bool) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Err(_) => return Err(format!("{}: no {what} within {WAIT:?}", self.which.name())),
                Ok(None) => {
                    return Err(format!(
                        "{}: stdout closed before {what}",
                        self.which.name()
                    ));
                }
                Ok(Some((t, line))) => {
                    let hit = serde_json::from_str::<Value>(&line).is_ok_and(|v| pred(&v));
                    self.out.lines.push((t, line));
                    if hit {
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn step(&mut self, step: &Step, mock: &MockServer) -> Result<(), String> {
        match step {
            Step::Send(v) => {
                let stdin = self
                    .stdin
                    .as_mut()
                    .ok_or("stdin is not a pipe (or already closed)")?;
                let mut line = v.to_string();
                line.push('\n');
                stdin
                    .write_all(line.as_bytes())
                    .await
                    .map_err(|e| format!("write to stdin: {e}"))?;
                stdin
                    .flush()
                    .await
                    .map_err(|e| format!("flush stdin: {e}"))?;
                let what = v["message"]["content"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| v["request"].to_string());
                self.out.sent.push((self.t0.elapsed(), what));
                Ok(())
            }
            Step::Until(what, pred) => self.until(what, *pred).await,
            Step::InFlight(n) => {
                self.until("the turn's system/init event", |e| {
                    e["type"] == "system" && e["subtype"] == "init"
                })
                .await?;
                if self.which == Impl::Real && !mock.wait_for_message_requests(*n, WAIT).await {
                    return Err(format!("real: the mock never received API request #{n}"));
                }
                Ok(())
            }
            Step::Sigterm => {
                let pid = self
                    .child
                    .id()
                    .ok_or("the CLI already exited before SIGTERM")?;
                sigterm(pid)
            }
            Step::CloseStdin => {
                self.stdin = None;
                Ok(())
            }
        }
    }
}

#[allow(unsafe_code)]
fn sigterm(pid: u32) -> Result<(), String> {
    let pid = libc::pid_t::try_from(pid).map_err(|e| e.to_string())?;
    // SAFETY: kill(2) only sends a signal; `pid` is our own child, not yet reaped.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    if rc == 0 {
        Ok(())
    } else {
        Err(format!(
            "kill(SIGTERM): {}",
            std::io::Error::last_os_error()
        ))
    }
}

static RUN_SEQ: AtomicUsize = AtomicUsize::new(0);

async fn execute(which: Impl, bin: &Path, sc: &Scenario) -> RunResult {
    let mock = MockServer::start().expect("start the mock server");
    let seq = RUN_SEQ.fetch_add(1, Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!(
        "claude-pool-conformance-{}-{seq}-{}",
        std::process::id(),
        which.name()
    ));
    let work = scratch.join("work");
    std::fs::create_dir_all(&work).expect("create the scratch dir");
    let mut cmd = Command::new(bin);
    cmd.args(&sc.args)
        .current_dir(&work)
        .env_clear()
        .envs(hermetic_cli_env(&mock.url(), &scratch))
        .stdin(if sc.piped {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let t0 = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&scratch);
            return RunResult {
                error: Some(format!("{}: spawn {}: {e}", which.name(), bin.display())),
                ..RunResult::default()
            };
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(async move {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\n', '\r'])
                            .to_string();
                        if tx.send((t0.elapsed(), line)).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    let stderr_task = child.stderr.take().map(|mut e| {
        tokio::spawn(async move {
            let mut s = String::new();
            let _ = e.read_to_string(&mut s).await;
            s
        })
    });
    let stdin = child.stdin.take();
    let mock_addr = format!("127.0.0.1:{}", mock.port());
    let mut run = Running {
        which,
        child,
        stdin,
        lines: rx,
        t0,
        out: RunResult {
            mock_addr,
            ..RunResult::default()
        },
    };
    for step in &sc.steps {
        if let Err(e) = run.step(step, &mock).await {
            run.out.error = Some(e);
            break;
        }
    }
    if run.out.error.is_some() {
        let _ = run.child.start_kill();
    }
    match tokio::time::timeout(WAIT, run.child.wait()).await {
        Ok(Ok(status)) => run.out.rc = status.code().or_else(|| status.signal().map(|s| 128 + s)),
        Ok(Err(e)) => {
            run.out
                .error
                .get_or_insert(format!("{}: wait: {e}", which.name()));
        }
        Err(_) => {
            run.out
                .error
                .get_or_insert(format!("{}: never exited within {WAIT:?}", which.name()));
            let _ = run.child.start_kill();
            let _ = run.child.wait().await;
        }
    }
    drop(run.stdin.take());
    // The rest of stdout (EOF comes with the exit; the deadline only guards against a
    // grandchild holding the pipe open).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(l)) = tokio::time::timeout_at(deadline, run.lines.recv()).await {
        run.out.lines.push(l);
    }
    if let Some(task) = stderr_task
        && let Ok(Ok(s)) = tokio::time::timeout(Duration::from_secs(5), task).await
    {
        run.out.stderr = s;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    run.out
}

// ------------------------------------------------------------------ observing a run

/// What a driver observes, as comparable strings.
fn observe(sc: &Scenario, r: &RunResult) -> BTreeMap<&'static str, String> {
    let mut o = BTreeMap::new();
    if let Some(e) = &r.error {
        o.insert("error", e.trim().to_string());
    }
    o.insert(
        "rc",
        r.rc.map(|c| c.to_string()).unwrap_or_else(|| "none".into()),
    );
    let lines: Vec<&str> = r
        .lines
        .iter()
        .map(|(_, l)| l.as_str())
        .filter(|l| !l.trim().is_empty())
        .collect();
    let non_json = lines
        .iter()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .count();
    let kind = match (lines.len(), non_json) {
        (0, _) => "empty".to_string(),
        (1, 0) => "json".to_string(),
        (_, 0) => "jsonl".to_string(),
        (n, k) if n == k => "text".to_string(),
        (_, k) => format!("jsonl+{k} non-json"),
    };
    o.insert("stdout", kind);
    let events: Vec<Value> = r.events().into_iter().map(|(_, v)| v).collect();
    let seq: Vec<String> = events
        .iter()
        .map(|e| {
            let t = e["type"].as_str().unwrap_or("?").to_string();
            if t == "system" {
                format!("system/{}", e["subtype"].as_str().unwrap_or(""))
            } else {
                t
            }
        })
        .collect();
    o.insert("events", seq.join(" "));
    let results: Vec<&Value> = events.iter().filter(|e| is_result(e)).collect();
    let r_addr = if r.mock_addr.is_empty() {
        "\u{0}".to_string()
    } else {
        r.mock_addr.clone()
    };
    let join =
        |f: &dyn Fn(&Value) -> String| results.iter().map(|r| f(r)).collect::<Vec<_>>().join(" | ");
    if !results.is_empty() {
        o.insert(
            "results",
            join(&|r| {
                format!(
                    "{} is_error={} result={} turns={}",
                    r["subtype"].as_str().unwrap_or("?"),
                    r["is_error"],
                    if r.get("result").is_some_and(|v| !v.is_null()) {
                        "yes"
                    } else {
                        "no"
                    },
                    r["num_turns"]
                )
            }),
        );
        o.insert(
            "result.keys",
            join(&|r| {
                let keys: Vec<&str> = r
                    .as_object()
                    .map(|m| {
                        m.keys()
                            .map(String::as_str)
                            .filter(|k| !TIMING_KEYS.contains(k))
                            .collect()
                    })
                    .unwrap_or_default();
                keys.join(",")
            }),
        );
        // Session ids as letters in order of first appearance: "A A B B" = a /clear in between.
        let mut seen: Vec<&str> = Vec::new();
        let mut letters = Vec::new();
        for r in &results {
            let sid = r["session_id"].as_str().unwrap_or("");
            let idx = seen.iter().position(|s| *s == sid).unwrap_or_else(|| {
                seen.push(sid);
                seen.len() - 1
            });
            letters.push(char::from(b'A' + (idx % 26) as u8).to_string());
        }
        o.insert("sessions", letters.join(" | "));
        if sc.texts {
            let text = |r: &Value| {
                r.get("result")
                    .map(|v| v.to_string().replace(&r_addr, "<mock>"))
                    .unwrap_or_else(|| "-".into())
            };
            o.insert("result.text", join(&text));
        }
        if sc.costs {
            o.insert("cost.total", join(&|r| r["total_cost_usd"].to_string()));
            o.insert(
                "cost.usage",
                join(&|r| {
                    let u = &r["usage"];
                    format!(
                        "{}/{}/{}/{}",
                        u["input_tokens"],
                        u["output_tokens"],
                        u["cache_read_input_tokens"],
                        u["cache_creation_input_tokens"]
                    )
                }),
            );
            let per_model = |v: &Value| -> String {
                v.as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(model, u)| {
                                format!(
                                    "{model}:{}/{}/{}/{}=${}",
                                    u["inputTokens"],
                                    u["outputTokens"],
                                    u["cacheReadInputTokens"],
                                    u["cacheCreationInputTokens"],
                                    u["costUSD"]
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .unwrap_or_else(|| "-".into())
            };
            o.insert("cost.modelUsage", join(&|r| per_model(&r["modelUsage"])));
            o.insert(
                "cost.since_last",
                join(&|r| per_model(&r["model_usage_since_last_result"])),
            );
        }
    }
    let inits: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "system" && e["subtype"] == "init")
        .map(|e| {
            format!(
                "{}/{}",
                e["model"].as_str().unwrap_or("?"),
                e["permissionMode"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !inits.is_empty() {
        o.insert("init", inits.join(" | "));
    }
    let controls: Vec<String> = events
        .iter()
        .filter(|e| is_control_response(e))
        .map(|e| e.to_string())
        .collect();
    if !controls.is_empty() {
        o.insert("control", controls.join(" | "));
    }
    o
}

// ------------------------------------------------------------------ locating binaries

fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The real CLI, or `None` (skip) when it is not installed outside CI.
fn real_cli() -> Option<PathBuf> {
    let path = std::env::var_os("CLAUDE_POOL_REAL_CLI").map(PathBuf::from).unwrap_or_else(|| {
        workspace_dir().join(format!(
            ".cache/claude-cli-{CLI_VERSION}/node_modules/@anthropic-ai/claude-code-linux-x64/claude"
        ))
    });
    if path.is_file() {
        return Some(path);
    }
    let msg = format!(
        "the real Claude CLI is not installed at {}: run scripts/install-claude.sh \
         (or point CLAUDE_POOL_REAL_CLI at a `claude` binary)",
        path.display()
    );
    if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1") {
        panic!("{msg}");
    }
    println!("SKIPPED conformance test: {msg}");
    None
}

fn fake_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("CLAUDE_POOL_FAKE_CLI") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "CLAUDE_POOL_FAKE_CLI={} does not exist (build the fake with `cargo build -p fake-claude`)",
            p.display()
        );
        return p;
    }
    // Next to this test binary's profile dir (honours CARGO_TARGET_DIR), else <workspace>/target.
    let mut candidates = Vec::new();
    if let Ok(exe) = std::env::current_exe()
        && let Some(profile_dir) = exe.parent().and_then(Path::parent)
    {
        candidates.push(profile_dir.join("fake-claude"));
    }
    candidates.push(workspace_dir().join("target/debug/fake-claude"));
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the fake CLI is not built (looked at {}): run `cargo build -p fake-claude` \
             (or set CLAUDE_POOL_FAKE_CLI)",
                candidates
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

// ------------------------------------------------------------------ the test

struct Outcome {
    name: &'static str,
    probe: bool,
    real: RunResult,
    real_obs: BTreeMap<&'static str, String>,
    diffs: Vec<(&'static str, String, String)>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_cli_conforms_to_real_cli() {
    let Some(real_bin) = real_cli() else { return };
    let fake_bin = fake_cli();
    let only = std::env::var("CLAUDE_POOL_CONFORMANCE_ONLY").ok();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for sc in scenarios() {
        if only.as_deref().is_some_and(|o| !sc.name.contains(o)) {
            continue;
        }
        let real = execute(Impl::Real, &real_bin, &sc).await;
        let real_obs = observe(&sc, &real);
        let mut diffs = Vec::new();
        if !sc.probe {
            let fake = execute(Impl::Fake, &fake_bin, &sc).await;
            let fake_obs = observe(&sc, &fake);
            let keys: std::collections::BTreeSet<&str> =
                real_obs.keys().chain(fake_obs.keys()).copied().collect();
            for k in keys {
                let (a, b) = (
                    real_obs.get(k).cloned().unwrap_or_default(),
                    fake_obs.get(k).cloned().unwrap_or_default(),
                );
                if a != b {
                    let (a, b) = if k == "result.keys" {
                        key_set_diff(&a, &b)
                    } else {
                        (a, b)
                    };
                    diffs.push((k, a, b));
                }
            }
            if !diffs.is_empty() && !fake.stderr.trim().is_empty() {
                diffs.push((
                    "(fake stderr)",
                    String::new(),
                    fake.stderr.lines().next().unwrap_or("").to_string(),
                ));
            }
        }
        outcomes.push(Outcome {
            name: sc.name,
            probe: sc.probe,
            real,
            real_obs,
            diffs,
        });
    }

    let mut table = String::new();
    let _ = writeln!(
        table,
        "\nconformance: fake-claude vs real claude {CLI_VERSION} + mock-anthropic ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(
        table,
        "{:<5} {:<36} {:<4} events (real)",
        "", "scenario", "rc"
    );
    for o in &outcomes {
        let status = if o.probe {
            "PROBE"
        } else if o.diffs.is_empty() {
            "OK"
        } else {
            "DIFF"
        };
        let _ = writeln!(
            table,
            "{:<5} {:<36} {:<4} {}",
            status,
            o.name,
            o.real_obs.get("rc").map(String::as_str).unwrap_or("?"),
            o.real_obs.get("events").map(String::as_str).unwrap_or("")
        );
        if let Some(e) = o.real_obs.get("error") {
            let _ = writeln!(table, "        real run error: {e}");
        }
        for (k, a, b) in &o.diffs {
            let _ = writeln!(
                table,
                "        {k}:\n          real: {a}\n          fake: {b}"
            );
        }
    }
    println!("{table}");
    println!("{}", facts(&outcomes));

    let broken: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| o.real_obs.contains_key("error"))
        .collect();
    let differing: Vec<&Outcome> = outcomes.iter().filter(|o| !o.diffs.is_empty()).collect();
    let mut msg = String::new();
    for o in &broken {
        let _ = writeln!(
            msg,
            "real CLI run failed in '{}': {}",
            o.name, o.real_obs["error"]
        );
    }
    for o in &differing {
        let _ = writeln!(msg, "'{}' differs:", o.name);
        for (k, a, b) in &o.diffs {
            let _ = writeln!(
                msg,
                "  {k}: real={a}\n  {:width$}  fake={b}",
                "",
                width = k.len()
            );
        }
    }
    assert!(
        msg.is_empty(),
        "{} scenario(s) differ, {} real run(s) failed:\n{msg}",
        differing.len(),
        broken.len()
    );
}

/// Per result, only the keys one side has and the other lacks.
fn key_set_diff(real: &str, fake: &str) -> (String, String) {
    let split = |s: &str| -> Vec<Vec<String>> {
        s.split(" | ")
            .map(|r| {
                r.split(',')
                    .filter(|k| !k.is_empty())
                    .map(String::from)
                    .collect()
            })
            .collect()
    };
    let (ra, fa) = (split(real), split(fake));
    if ra.len() != fa.len() {
        return (
            format!("{} results", ra.len()),
            format!("{} results", fa.len()),
        );
    }
    let (mut only_real, mut only_fake) = (Vec::new(), Vec::new());
    for (i, (r, f)) in ra.iter().zip(&fa).enumerate() {
        let a: Vec<&String> = r.iter().filter(|k| !f.contains(k)).collect();
        let b: Vec<&String> = f.iter().filter(|k| !r.contains(k)).collect();
        if !a.is_empty() || !b.is_empty() {
            only_real.push(format!("result #{}: only real has {a:?}", i + 1));
            only_fake.push(format!("result #{}: only fake has {b:?}", i + 1));
        }
    }
    (only_real.join("; "), only_fake.join("; "))
}

// ------------------------------------------------------------------ facts for the pool's design

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Measured facts about the real CLI, from the real runs above.
fn facts(outcomes: &[Outcome]) -> String {
    let get = |name: &str| outcomes.iter().find(|o| o.name == name).map(|o| &o.real);
    let mut f = String::from("facts measured on the real CLI:\n");
    let first_after = |r: &RunResult, sent: Duration, pred: fn(&Value) -> bool| {
        r.events().into_iter().find(|(t, e)| *t >= sent && pred(e))
    };
    // (a) /clear first
    if let Some(r) = get("persistent: /clear as 1st message")
        && let Some(sent) = r.sent_at("/clear")
        && let Some((t, res)) = first_after(r, sent, is_result)
    {
        let _ = writeln!(
            f,
            "(a) /clear as the FIRST message of a fresh process: works = {} (subtype {}, num_turns {}, cost {}); \
             result {} after spawn, {} after the write; the next prompt then answered {}",
            res["subtype"] == "success" && res["is_error"] == false,
            res["subtype"],
            res["num_turns"],
            res["total_cost_usd"],
            ms(t),
            ms(t - sent),
            r.events()
                .iter()
                .filter(|(_, e)| is_result(e))
                .nth(1)
                .map(|(_, e)| e["result"].to_string())
                .unwrap_or_default()
        );
    }
    if let Some(r) = get("persistent: 2 prompts, /clear, 3rd")
        && let Some(sent) = r.sent_at("/clear")
        && let Some((t, _)) = first_after(r, sent, is_result)
    {
        let _ = writeln!(
            f,
            "    /clear on a warm process (after 2 turns): result {} after the write",
            ms(t - sent)
        );
    }
    // (b) control requests before any user message
    if let Some(r) = get("set_model sonnet, then prompt")
        && let Some(sent) = r.sent.first().map(|(t, _)| *t)
        && let Some((t, e)) = first_after(r, Duration::ZERO, is_control_response)
    {
        let _ = writeln!(
            f,
            "(b) set_model sent before any user message: answered = {} ({} after spawn, {} after the write)",
            e["response"]["subtype"] == "success",
            ms(t),
            ms(t.saturating_sub(sent))
        );
    }
    // (c) control_response shapes
    let _ = writeln!(f, "(c) control_response lines:");
    for (name, label) in [
        ("interrupt during MOCK_SLEEP:5", "interrupt"),
        ("set_model sonnet, then prompt", "set_model"),
        ("set_permission_mode, then prompt", "set_permission_mode"),
        ("end_session while idle", "end_session"),
    ] {
        if let Some(r) = get(name) {
            for (_, e) in r.events().iter().filter(|(_, e)| is_control_response(e)) {
                let _ = writeln!(f, "    {label:<20} {e}");
            }
            if label == "set_permission_mode" {
                for (_, e) in r
                    .events()
                    .iter()
                    .filter(|(_, e)| e["type"] == "system" && e["subtype"] == "status")
                {
                    let _ = writeln!(f, "    {:<20} followed by {}", "", e);
                }
            }
        }
    }
    // (d) interrupted turn
    let summary = |e: &Value| {
        json!({
            "subtype": e["subtype"], "is_error": e["is_error"], "result": e.get("result"),
            "num_turns": e["num_turns"], "stop_reason": e["stop_reason"],
            "terminal_reason": e["terminal_reason"], "errors": e["errors"],
            "total_cost_usd": e["total_cost_usd"],
            "usage.in/out": format!("{}/{}", e["usage"]["input_tokens"], e["usage"]["output_tokens"]),
            "since_last": e["model_usage_since_last_result"].as_object().map(|m| m.iter().map(|(k, u)| format!("{k}: {}/{} ${}", u["inputTokens"], u["outputTokens"], u["costUSD"])).collect::<Vec<_>>()),
        })
    };
    for (name, label) in [
        (
            "interrupt during MOCK_SLEEP:5",
            "interrupted while the API request was pending",
        ),
        (
            "probe: interrupt after message_start",
            "interrupted after message_start (MOCK_STALL)",
        ),
    ] {
        if let Some(r) = get(name) {
            let results: Vec<Value> = r
                .events()
                .into_iter()
                .filter(|(_, e)| is_result(e))
                .map(|(_, e)| e)
                .collect();
            let _ = writeln!(f, "(d) {label}:");
            for e in &results {
                let _ = writeln!(f, "    {}", summary(e));
            }
            if let Some(sent) = r.sent_at("interrupt")
                && let Some((t, _)) = first_after(r, sent, is_result)
            {
                let _ = writeln!(
                    f,
                    "    result {} after the interrupt was written",
                    ms(t - sent)
                );
            }
        }
    }
    // (e) a normal persistent turn
    if let Some(r) = get("persistent: 2 prompts, /clear, 3rd")
        && let (Some(a), Some(b)) = (r.sent_at("first prompt"), r.sent_at("second prompt"))
    {
        let turn = |from: Duration, to: Duration| {
            r.events()
                .iter()
                .filter(|(t, _)| *t >= from && *t < to)
                .map(|(_, e)| {
                    let t = e["type"].as_str().unwrap_or("?");
                    if t == "system" {
                        format!("system/{}", e["subtype"].as_str().unwrap_or(""))
                    } else {
                        t.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let c = r.sent_at("/clear").unwrap_or(Duration::MAX);
        let _ = writeln!(
            f,
            "(e) normal persistent turn: 1st: {} | 2nd: {}",
            turn(a, b),
            turn(b, c)
        );
        let d = r.sent_at("MOCK_COUNT").unwrap_or(Duration::MAX);
        let _ = writeln!(f, "    /clear: {}", turn(c, d));
        if let Some((t, _)) = first_after(r, b, is_result) {
            let _ = writeln!(f, "    warm turn latency (write -> result): {}", ms(t - b));
        }
    }
    // (f) non-JSON stdout lines
    let mut non_json = Vec::new();
    for o in outcomes {
        for (_, l) in &o.real.lines {
            if !l.trim().is_empty() && serde_json::from_str::<Value>(l).is_err() {
                non_json.push(format!("{}: {l:?}", o.name));
            }
        }
    }
    let total: usize = outcomes.iter().map(|o| o.real.lines.len()).sum();
    let _ = writeln!(
        f,
        "(f) non-JSON stdout lines: {} of {total} lines in {} runs {:?}",
        non_json.len(),
        outcomes.len(),
        non_json
    );
    let stderr: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.real.stderr.trim().is_empty())
        .map(|o| {
            format!(
                "{}: {:?}",
                o.name,
                o.real.stderr.lines().next().unwrap_or("")
            )
        })
        .collect();
    let _ = writeln!(
        f,
        "    runs with stderr output: {} {stderr:?}",
        stderr.len()
    );
    f
}
