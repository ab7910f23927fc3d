//! An external `claude-pool-server` the harness starts, talks MCP to (over stdio or
//! Streamable HTTP, with rmcp's client), SIGKILLs and restarts on the same store.
//!
//! Calls that start or stop work (`pool_submit`, `pool_cancel`) pass a gate that a kill
//! closes, so none is ever lost half-way through a kill: each either ran on the old server
//! or runs on the new one. Waits and status reads are repeated on the next server when a
//! kill cuts them off.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use claude_pool::protocol::TaskId;
use claude_pool::protocol::tools::{PoolStatusReport, TaskReport};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{RwLock, watch};

/// How the harness reaches the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Wire {
    /// MCP over the server's stdin / stdout.
    Stdio,
    /// Streamable HTTP on a loopback port the OS picks.
    Http,
}

/// How to start the server.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The `claude-pool-server` binary.
    pub bin: PathBuf,
    /// Its arguments (slots, CLI, store), without the transport's.
    pub args: Vec<OsString>,
    /// Variables set for it (and so for its slots).
    pub env: Vec<(OsString, OsString)>,
    /// Variables of the harness's environment it must not see.
    pub remove: Vec<&'static str>,
    /// The transport.
    pub wire: Wire,
    /// Where each server's log goes (`server-<n>.log`).
    pub logs: PathBuf,
}

/// One running server and the client connected to it.
struct Conn {
    child: tokio::sync::Mutex<Child>,
    pid: u32,
    client: RunningService<RoleClient, ()>,
    /// The sum of its slots' restarts at its last status read.
    restarts: AtomicU64,
}

/// A call that did not get a tool's answer.
#[derive(Debug)]
pub enum CallError {
    /// The connection is gone (the server died, or was killed).
    Gone(String),
    /// The server refused it at the protocol level (bad params, unknown tool).
    Refused(String),
}

/// The external server.
pub struct External {
    launch: Launch,
    conn: RwLock<Arc<Conn>>,
    generation: watch::Sender<u64>,
    gate: RwLock<()>,
    /// Restarts counted by servers that were killed since.
    restarts_before: AtomicU64,
    /// Lines the servers wrote on stdout that were not JSON-RPC.
    pub stdout_problems: Arc<Mutex<Vec<String>>>,
}

impl External {
    /// Starts the first server.
    pub async fn start(launch: Launch) -> anyhow::Result<External> {
        let problems = Arc::new(Mutex::new(Vec::new()));
        let conn = spawn(&launch, 0, problems.clone()).await?;
        Ok(External {
            launch,
            conn: RwLock::new(Arc::new(conn)),
            generation: watch::channel(0).0,
            gate: RwLock::new(()),
            restarts_before: AtomicU64::new(0),
            stdout_problems: problems,
        })
    }

    /// Servers started so far.
    pub fn servers(&self) -> u64 {
        *self.generation.borrow() + 1
    }

    async fn current(&self) -> Arc<Conn> {
        self.conn.read().await.clone()
    }

    /// Calls `tool` on the current server; a tool error is an answer like any other.
    async fn call_on(conn: &Conn, tool: &str, args: Value) -> Result<(bool, Value), CallError> {
        let Value::Object(map) = args else {
            return Err(CallError::Refused("arguments must be an object".into()));
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(map);
        match conn.client.call_tool(params).await {
            Ok(r) => Ok((
                r.is_error == Some(true),
                r.structured_content.unwrap_or(Value::Null),
            )),
            Err(rmcp::ServiceError::McpError(e)) => Err(CallError::Refused(e.message.into())),
            Err(e) => Err(CallError::Gone(e.to_string())),
        }
    }

    /// A call that must not be cut by a kill: on a gone connection it fails the run.
    async fn gated(&self, tool: &str, args: Value) -> anyhow::Result<(bool, Value)> {
        let _open = self.gate.read().await;
        let conn = self.current().await;
        Self::call_on(&conn, tool, args)
            .await
            .map_err(|e| anyhow!("{tool}: {e:?}"))
    }

    /// A call repeated on the next server when a kill cuts it off.
    async fn repeated(&self, tool: &str, args: Value) -> anyhow::Result<Value> {
        loop {
            let mut generation = self.generation.subscribe();
            let seen = *generation.borrow_and_update();
            let conn = self.current().await;
            // A call on a killed server may never fail (an HTTP client retries): a new
            // server cuts it off as well.
            let replaced = async {
                while generation.changed().await.is_ok() {
                    if *generation.borrow_and_update() != seen {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            };
            let outcome = tokio::select! {
                r = Self::call_on(&conn, tool, args.clone()) => r,
                () = replaced => continue,
            };
            let mut generation = self.generation.subscribe();
            match outcome {
                Ok((_, v)) => return Ok(v),
                Err(CallError::Refused(e)) => bail!("{tool} refused: {e}"),
                Err(CallError::Gone(e)) => {
                    // Cut off: wait for the next server (bounded: a server that dies by
                    // itself is not restarted, and the run ends with the error).
                    let next = tokio::time::timeout(Duration::from_secs(60), async {
                        while *generation.borrow_and_update() == seen {
                            if generation.changed().await.is_err() {
                                return;
                            }
                        }
                    })
                    .await;
                    if next.is_err() {
                        bail!("{tool}: the server is gone ({e}) and no other came");
                    }
                }
            }
        }
    }

    /// `pool_submit`.
    pub async fn submit(&self, prompt: String, timeout: Duration) -> anyhow::Result<TaskId> {
        let (failed, v) = self
            .gated(
                "pool_submit",
                json!({ "prompt": prompt, "timeout": timeout.as_secs_f64() }),
            )
            .await?;
        if failed {
            bail!("pool_submit refused: {v}");
        }
        serde_json::from_value(v["task_id"].clone()).context("pool_submit's task_id")
    }

    /// `pool_cancel`.
    pub async fn cancel(&self, id: &TaskId) -> anyhow::Result<()> {
        self.gated("pool_cancel", json!({ "task_id": id })).await?;
        Ok(())
    }

    /// The task's report now, or with `wait` once it is terminal if that comes in time.
    pub async fn result(&self, id: &TaskId, wait: Option<Duration>) -> anyhow::Result<TaskReport> {
        let args = match wait {
            Some(w) => json!({ "task_id": id, "wait": w.as_secs_f64() }),
            None => json!({ "task_id": id }),
        };
        let v = self.repeated("pool_result", args).await?;
        serde_json::from_value(v).context("pool_result's report")
    }

    /// `pool_status`, with the slots' restarts noted.
    pub async fn status(&self) -> anyhow::Result<PoolStatusReport> {
        let v = self.repeated("pool_status", json!({})).await?;
        let status: PoolStatusReport = serde_json::from_value(v).context("pool_status's report")?;
        let restarts = status.slots.iter().map(|s| u64::from(s.restarts)).sum();
        self.current()
            .await
            .restarts
            .store(restarts, Ordering::Relaxed);
        Ok(status)
    }

    /// Slot restarts over every server of the run.
    pub async fn restarts(&self) -> u64 {
        self.restarts_before.load(Ordering::Relaxed)
            + self.current().await.restarts.load(Ordering::Relaxed)
    }

    /// SIGKILLs the server, waits for its exit, and starts the next one on the same store.
    /// Returns when the next one answers.
    pub async fn kill_and_restart(&self) -> anyhow::Result<()> {
        let _closed = self.gate.write().await;
        let old = self.current().await;
        signal(old.pid, libc::SIGKILL);
        let _ = old.child.lock().await.wait().await;
        self.restarts_before
            .fetch_add(old.restarts.load(Ordering::Relaxed), Ordering::Relaxed);
        let n = *self.generation.borrow() + 1;
        let next = spawn(&self.launch, n, self.stdout_problems.clone()).await?;
        *self.conn.write().await = Arc::new(next);
        self.generation.send_replace(n);
        Ok(())
    }

    /// Graceful stop: stdin closed (stdio) or SIGTERM (HTTP); waits for the exit.
    pub async fn shutdown(&self) -> anyhow::Result<()> {
        let _closed = self.gate.write().await;
        let conn = self.current().await;
        if self.launch.wire == Wire::Http {
            signal(conn.pid, libc::SIGTERM);
        }
        conn.client.cancellation_token().cancel();
        let exited =
            tokio::time::timeout(Duration::from_secs(60), conn.child.lock().await.wait()).await;
        match exited {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => bail!("the server exited with {status} on shutdown"),
            Ok(Err(e)) => bail!("cannot wait for the server: {e}"),
            Err(_) => {
                signal(conn.pid, libc::SIGKILL);
                bail!("the server did not exit within 60 s of its shutdown")
            }
        }
    }
}

/// Signals a server this harness started; an error means it is gone already.
fn signal(pid: u32, sig: i32) {
    let _ = claude_pool::process::signal_process(pid, sig);
}

/// Starts server number `n` and connects to it.
async fn spawn(launch: &Launch, n: u64, problems: Arc<Mutex<Vec<String>>>) -> anyhow::Result<Conn> {
    let log_path = launch.logs.join(format!("server-{n}.log"));
    let mut cmd = Command::new(&launch.bin);
    cmd.args(&launch.args)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true);
    for k in &launch.remove {
        cmd.env_remove(k);
    }
    let began = Instant::now();
    let (child, client) = match launch.wire {
        Wire::Stdio => {
            let log = std::fs::File::create(&log_path)
                .with_context(|| format!("cannot create {}", log_path.display()))?;
            cmd.stdin(Stdio::piped()).stderr(log);
            let mut child = cmd
                .spawn()
                .with_context(|| format!("cannot start {}", launch.bin.display()))?;
            let stdin = child.stdin.take().context("the server's stdin")?;
            let stdout = child.stdout.take().context("the server's stdout")?;
            let (relay, client_in) = tokio::io::duplex(1 << 20);
            tokio::spawn(relay_stdout(stdout, relay, problems));
            let client =
                tokio::time::timeout(Duration::from_secs(60), ().serve((client_in, stdin)))
                    .await
                    .map_err(|_| anyhow!("no MCP handshake with the server within 60 s"))?
                    .context("the MCP handshake over stdio")?;
            (child, client)
        }
        Wire::Http => {
            // Every server of the run shares one token, in a file only we can read, as a
            // user's own setup would (never --http-no-auth: the defaults are the product).
            let (token_file, token) = http_token(&launch.logs)?;
            cmd.arg("--http-token-file").arg(&token_file);
            cmd.args(["--http", "--port", "0"])
                .stdin(Stdio::null())
                .stderr(Stdio::piped());
            let mut child = cmd
                .spawn()
                .with_context(|| format!("cannot start {}", launch.bin.display()))?;
            let stdout = child.stdout.take().context("the server's stdout")?;
            tokio::spawn(relay_stdout(stdout, tokio::io::sink(), problems));
            let stderr = child.stderr.take().context("the server's stderr")?;
            let addr = listening(stderr, &log_path).await?;
            let config = rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(format!("http://{addr}"))
                .auth_header(token);
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
            let client = tokio::time::timeout(Duration::from_secs(60), ().serve(transport))
                .await
                .map_err(|_| anyhow!("no MCP handshake with the server within 60 s"))?
                .context("the MCP handshake over HTTP")?;
            (child, client)
        }
    };
    let pid = child.id().context("the server's pid")?;
    tracing_line(n, pid, began.elapsed());
    Ok(Conn {
        child: tokio::sync::Mutex::new(child),
        pid,
        client,
        restarts: AtomicU64::new(0),
    })
}

/// The run's HTTP token and its file (`<logs>/http-token`, mode 0600), made on first use.
fn http_token(logs: &std::path::Path) -> anyhow::Result<(std::path::PathBuf, String)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = logs.join("http-token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok((path, text.trim().to_owned()));
    }
    let token = claude_pool::credentials::random_hex(32).context("random bytes for a token")?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(token.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok((path, token))
}

fn tracing_line(n: u64, pid: u32, took: Duration) {
    if n > 0 {
        eprintln!(
            "claude-pool-chaos: server {n} (pid {pid}) answering {:.0} ms after its start",
            took.as_secs_f64() * 1000.0
        );
    }
}

/// Passes each stdout line on to the client if it is JSON-RPC; notes it otherwise.
async fn relay_stdout<W>(
    stdout: tokio::process::ChildStdout,
    mut to: W,
    problems: Arc<Mutex<Vec<String>>>,
) where
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut lines = BufReader::new(stdout);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match lines.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let ok = serde_json::from_slice::<Value>(&buf)
            .ok()
            .is_some_and(|v| v.get("jsonrpc") == Some(&json!("2.0")));
        if !ok {
            if let Ok(mut p) = problems.lock() {
                p.push(String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned());
            }
            continue;
        }
        if to.write_all(&buf).await.is_err() {
            return;
        }
    }
}

/// Copies the server's log to `path` and returns the address it listens on.
async fn listening(stderr: tokio::process::ChildStderr, path: &Path) -> anyhow::Result<String> {
    use std::io::Write;
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut lines = BufReader::new(stderr).lines();
    let found = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(file, "{line}");
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return Some(rest.trim().to_owned());
            }
        }
        None
    })
    .await;
    let addr = match found {
        Ok(Some(addr)) => addr,
        Ok(None) => bail!(
            "the server exited before listening (its log: {})",
            path.display()
        ),
        Err(_) => bail!("the server did not listen within 60 s"),
    };
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = writeln!(file, "{line}");
        }
    });
    Ok(addr)
}
