//! A harness that runs `claude-pool-server` as a child process and talks to it with rmcp's
//! client, the way an MCP host does: over its stdin/stdout, or over Streamable HTTP when
//! `CLAUDE_POOL_TEST_TRANSPORT=http` (or [`ServerOptions::transport`]) says so. The same
//! tests then run against both transports.
//!
//! Over stdio, every byte the server writes to stdout passes a relay that checks it is a
//! JSON-RPC 2.0 message before handing it to the client; anything else is recorded and fails
//! [`Server::assert_stdout_clean`]. Over HTTP the server must write nothing to stdout at all.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, ProgressNotificationParam, ProgressToken,
    Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestHandle, RunningService};
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::{Scratch, within};

/// How a test server is started.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The CLI the slots run.
    pub claude_bin: PathBuf,
    /// Number of slots.
    pub slots: usize,
    /// More flags.
    pub args: Vec<String>,
    /// More environment for the server (and so for its slots).
    pub env: Vec<(String, String)>,
    /// Where HOME (and so the default store) and the fake CLI's sessions live; a later
    /// server given the same directory restarts on the same store. Default: the server's
    /// own scratch directory.
    pub state: Option<PathBuf>,
    /// How the client talks to it.
    pub transport: Transport,
    /// Whether the client declares the `io.modelcontextprotocol/tasks` extension.
    pub tasks_extension: bool,
    /// Whether the client declares form elicitation; its requests reach
    /// [`Server::next_elicitation`].
    pub elicitation: bool,
    /// The server runs under this umask (set by a `sh` that then execs it, since a umask
    /// set in the test binary would change every test's); `None`: the test binary's.
    pub umask: Option<u32>,
}

/// How a test client talks to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// stdin/stdout.
    Stdio,
    /// Streamable HTTP on a loopback port the OS picks (`--http --port 0`).
    Http,
}

impl Transport {
    /// The suite's default: `CLAUDE_POOL_TEST_TRANSPORT` (`stdio` or `http`), else stdio.
    pub fn from_env() -> Transport {
        match std::env::var("CLAUDE_POOL_TEST_TRANSPORT").as_deref() {
            Ok("http") => Transport::Http,
            Ok("stdio") | Ok("") | Err(_) => Transport::Stdio,
            Ok(other) => panic!("CLAUDE_POOL_TEST_TRANSPORT={other}: expected stdio or http"),
        }
    }
}

impl ServerOptions {
    /// `slots` slots running the fake CLI.
    pub fn fake(slots: usize) -> Self {
        ServerOptions {
            claude_bin: crate::fake_claude_bin(),
            slots,
            args: Vec::new(),
            env: Vec::new(),
            state: None,
            transport: Transport::from_env(),
            tasks_extension: false,
            elicitation: false,
            umask: None,
        }
    }

    /// The client declares form elicitation and hands each request to the test.
    pub fn elicitation(mut self) -> Self {
        self.elicitation = true;
        self
    }

    /// Runs the server under `mask` (e.g. `0o022`).
    pub fn umask(mut self, mask: u32) -> Self {
        self.umask = Some(mask);
        self
    }

    /// The client declares the `io.modelcontextprotocol/tasks` extension.
    pub fn tasks_extension(mut self) -> Self {
        self.tasks_extension = true;
        self
    }

    /// Talks to the server over `t` whatever the suite's default.
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }

    /// Keeps HOME, the store and the fake CLI's sessions in `dir`.
    pub fn state(mut self, dir: &Path) -> Self {
        self.state = Some(dir.to_path_buf());
        self
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }

    pub fn args(mut self, a: &[&str]) -> Self {
        self.args.extend(a.iter().map(|s| (*s).to_owned()));
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_owned(), v.to_owned()));
        self
    }
}

/// The MCP client side: forwards progress and resource notifications to the test.
#[derive(Debug, Clone)]
pub struct TestClient {
    progress: mpsc::UnboundedSender<ProgressNotificationParam>,
    resources: mpsc::UnboundedSender<ResourceNote>,
    tasks_extension: bool,
    /// With elicitation: where the server's requests go, each with the way to answer it.
    elicitations: Option<mpsc::UnboundedSender<Elicitation>>,
    /// Where `notifications/message` go, as JSON (`level`, `logger`, `data`).
    logs: mpsc::UnboundedSender<Value>,
    /// Where notifications of other methods go, as `{method, params}`.
    notices: mpsc::UnboundedSender<Value>,
}

/// An elicitation the server sent, and the way to answer it.
pub type Elicitation = (
    rmcp::model::ElicitRequestParams,
    tokio::sync::oneshot::Sender<rmcp::model::ElicitResult>,
);

/// A resource notification the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceNote {
    /// `notifications/resources/updated` for this URI.
    Updated(String),
    /// `notifications/resources/list_changed`.
    ListChanged,
}

impl ClientHandler for TestClient {
    fn get_info(&self) -> rmcp::model::ClientConfig {
        let mut info = rmcp::model::ClientConfig::default();
        if self.tasks_extension {
            info.capabilities = rmcp::model::ClientCapabilities::builder()
                .enable_tasks()
                .build();
        }
        if self.elicitations.is_some() {
            let mut e = rmcp::model::ElicitationCapability::new();
            e.form = Some(rmcp::model::FormElicitationCapability::new());
            info.capabilities.elicitation = Some(e);
        }
        info
    }

    async fn create_elicitation(
        &self,
        request: rmcp::model::ElicitRequestParams,
        _context: rmcp::service::RequestContext<RoleClient>,
    ) -> Result<rmcp::model::ElicitResult, rmcp::ErrorData> {
        let cancel = || rmcp::model::ElicitResult::new(rmcp::model::ElicitationAction::Cancel);
        let Some(tx) = &self.elicitations else {
            return Ok(cancel());
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        if tx.send((request, answer)).is_err() {
            return Ok(cancel());
        }
        Ok(answered.await.unwrap_or_else(|_| cancel()))
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(params);
    }

    async fn on_resource_updated(
        &self,
        params: rmcp::model::ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.resources.send(ResourceNote::Updated(params.uri));
    }

    async fn on_resource_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        let _ = self.resources.send(ResourceNote::ListChanged);
    }

    #[allow(deprecated)] // logging: the 2025-11-25 revision's
    async fn on_logging_message(
        &self,
        params: rmcp::model::LoggingMessageNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self
            .logs
            .send(serde_json::to_value(&params).unwrap_or_default());
    }

    async fn on_custom_notification(
        &self,
        notification: rmcp::model::CustomNotification,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.notices.send(serde_json::json!({
            "method": notification.method,
            "params": notification.params,
        }));
    }
}

/// A running server and a connected client.
pub struct Server {
    child: Child,
    /// The server's pid.
    pub pid: u32,
    client: Option<RunningService<RoleClient, TestClient>>,
    /// Where it serves MCP, over HTTP (`http://127.0.0.1:<port>/mcp`).
    pub url: Option<String>,
    /// Over HTTP, the token its client sends (the one in the server's token file unless
    /// the test gave one); `None` over stdio or with `--http-no-auth`.
    pub token: Option<String>,
    progress: tokio::sync::Mutex<mpsc::UnboundedReceiver<ProgressNotificationParam>>,
    resources: tokio::sync::Mutex<mpsc::UnboundedReceiver<ResourceNote>>,
    elicitations: tokio::sync::Mutex<mpsc::UnboundedReceiver<Elicitation>>,
    logs: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    notices: tokio::sync::Mutex<mpsc::UnboundedReceiver<Value>>,
    stdout_problems: Arc<Mutex<Vec<String>>>,
    transport: Transport,
    /// Where the server's stderr (its log) goes.
    pub stderr_path: PathBuf,
    /// The fake CLI's event log.
    pub fake_log: PathBuf,
    scratch: Scratch,
    home: PathBuf,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Starts the server and completes the MCP handshake.
    pub async fn start(opts: ServerOptions) -> Server {
        let scratch = Scratch::new("server");
        let base = opts
            .state
            .clone()
            .unwrap_or_else(|| scratch.path().to_path_buf());
        let home = base.join("home");
        std::fs::create_dir_all(&home).unwrap();
        // The runtime directory (where an HTTP server keeps its token file) exists before
        // the server runs, as a session's does.
        std::fs::create_dir_all(base.join("run")).unwrap();
        let stderr_path = scratch.join("server.log");
        let fake_log = scratch.join("fake.log");
        let mut cmd = match opts.umask {
            Some(mask) => {
                // `exec` keeps the pid: the server is still this child.
                let mut sh = Command::new("/bin/sh");
                sh.arg("-c")
                    .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
                    .arg(crate::server_bin());
                sh
            }
            None => Command::new(crate::server_bin()),
        };
        cmd.arg("--slots")
            .arg(opts.slots.to_string())
            .arg("--claude-bin")
            .arg(&opts.claude_bin)
            .arg("--log-level")
            .arg("debug")
            .args(&opts.args)
            .env("HOME", &home)
            .env("XDG_RUNTIME_DIR", base.join("run"))
            .env("FAKE_CLAUDE_LOG", &fake_log)
            .env("FAKE_CLAUDE_STATE", base.join("fake-state"))
            .env_remove("XDG_STATE_HOME")
            .env_remove("CLAUDE_MCP_DEPTH")
            .env_remove("CLAUDE_MCP_DB_PATH")
            .env_remove("CLAUDE_MCP_PORT")
            .env_remove("CLAUDE_POOL_HTTP_TOKEN")
            .env("FAKE_CLAUDE_TURN_MS", "5")
            .env_remove("CLAUDE_POOL_LOG")
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (res_tx, res_rx) = mpsc::unbounded_channel();
        let (el_tx, el_rx) = mpsc::unbounded_channel();
        let (log_tx, log_rx) = mpsc::unbounded_channel();
        let (notice_tx, notice_rx) = mpsc::unbounded_channel();
        let handler = TestClient {
            progress: tx,
            resources: res_tx,
            tasks_extension: opts.tasks_extension,
            elicitations: opts.elicitation.then_some(el_tx),
            logs: log_tx,
            notices: notice_tx,
        };
        let problems = Arc::new(Mutex::new(Vec::new()));
        let (child, client, url, token) = match opts.transport {
            Transport::Stdio => {
                cmd.stdin(Stdio::piped())
                    .stderr(std::fs::File::create(&stderr_path).unwrap());
                let (child, client) = stdio_client(cmd, handler, problems.clone()).await;
                (child, client, None, None)
            }
            Transport::Http => {
                cmd.arg("--http");
                // A test that must know the port before the server starts (to write it into
                // a client's config the server's children read) gives its own `--port`.
                if !opts.args.iter().any(|a| a == "--port") {
                    cmd.args(["--port", "0"]);
                }
                cmd.stdin(Stdio::null()).stderr(Stdio::piped());
                let runtime = base.join("run");
                let token = move || crate::http::token_of(&opts.args, &opts.env, &runtime);
                let (child, client, url, token) =
                    http_client(cmd, handler, &stderr_path, problems.clone(), token).await;
                (child, client, url, token)
            }
        };
        let pid = child.id().expect("pid");
        Server {
            child,
            pid,
            client: Some(client),
            url,
            token,
            progress: tokio::sync::Mutex::new(rx),
            resources: tokio::sync::Mutex::new(res_rx),
            elicitations: tokio::sync::Mutex::new(el_rx),
            logs: tokio::sync::Mutex::new(log_rx),
            notices: tokio::sync::Mutex::new(notice_rx),
            stdout_problems: problems,
            transport: opts.transport,
            stderr_path,
            fake_log,
            scratch,
            home,
        }
    }

    /// How this server's client talks to it.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The store a server started with these options (in this process's directory) uses
    /// by default: its project's store under the state's HOME.
    pub fn default_db(state: &Path) -> PathBuf {
        claude_pool::StoreLocation::project_store_in(
            &state.join("home/.local/state/claude-pool"),
            &std::env::current_dir().expect("cwd"),
        )
    }

    /// This server's HOME.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The connected client.
    /// Over HTTP: one more client of this server, in a session of its own, declaring form
    /// elicitation; its elicitations arrive on the receiver.
    pub async fn other_client(
        &self,
    ) -> (
        RunningService<RoleClient, TestClient>,
        mpsc::UnboundedReceiver<Elicitation>,
    ) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (logs, _) = mpsc::unbounded_channel();
        (self.second_client(Some(tx), logs).await, rx)
    }

    /// Over HTTP: one more client of this server, with the log notifications it receives.
    pub async fn log_client(
        &self,
    ) -> (
        RunningService<RoleClient, TestClient>,
        mpsc::UnboundedReceiver<Value>,
    ) {
        let (logs, rx) = mpsc::unbounded_channel();
        (self.second_client(None, logs).await, rx)
    }

    /// A client of this HTTP server in a session of its own.
    async fn second_client(
        &self,
        elicitations: Option<mpsc::UnboundedSender<Elicitation>>,
        logs: mpsc::UnboundedSender<Value>,
    ) -> RunningService<RoleClient, TestClient> {
        let url = self.url.clone().expect("an HTTP server");
        let (progress, _) = mpsc::unbounded_channel();
        let (resources, _) = mpsc::unbounded_channel();
        let (notices, _) = mpsc::unbounded_channel();
        let handler = TestClient {
            progress,
            resources,
            tasks_extension: false,
            elicitations,
            logs,
            notices,
        };
        let mut config =
            rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
                url,
            );
        if let Some(t) = &self.token {
            config = config.auth_header(t.clone());
        }
        let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
        within(
            Duration::from_secs(30),
            "a second client's handshake",
            handler.serve(transport),
        )
        .await
        .expect("a second client")
    }

    /// Waits for the next log notification matching `pred`.
    pub async fn log_until(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let mut rx = self.logs.lock().await;
        within(Duration::from_secs(30), what, async {
            loop {
                let m = rx.recv().await.expect("log channel open");
                if pred(&m) {
                    return m;
                }
            }
        })
        .await
    }

    /// Collects the notifications of other methods than log, progress and resource ones
    /// (each as `{method, params}`) until those collected satisfy `done`; returns them all.
    pub async fn notices_until(&self, what: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let mut rx = self.notices.lock().await;
        let mut seen = Vec::new();
        within(Duration::from_secs(30), what, async {
            while !done(&seen) {
                seen.push(rx.recv().await.expect("notice channel open"));
            }
        })
        .await;
        seen
    }

    /// Every other notification received so far, as `{method, params}` (drains them).
    pub async fn drain_notices(&self) -> Vec<Value> {
        let mut rx = self.notices.lock().await;
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// Every log notification received so far (drains them).
    pub async fn drain_logs(&self) -> Vec<Value> {
        let mut rx = self.logs.lock().await;
        let mut out = Vec::new();
        while let Ok(m) = rx.try_recv() {
            out.push(m);
        }
        out
    }

    /// The next elicitation the server sends this client (the client must have been
    /// started with [`ServerOptions::elicitation`]), within `limit`.
    pub async fn next_elicitation(&self, limit: Duration, what: &str) -> Elicitation {
        let mut rx = self.elicitations.lock().await;
        within(limit, what, async {
            rx.recv().await.expect("elicitation channel open")
        })
        .await
    }

    pub fn client(&self) -> &RunningService<RoleClient, TestClient> {
        self.client.as_ref().expect("client connected")
    }

    /// Calls a tool; a protocol error is returned as `Err`.
    pub async fn try_call(
        &self,
        tool: &str,
        args: Value,
    ) -> Result<CallToolResult, rmcp::ServiceError> {
        let Value::Object(map) = args else {
            panic!("tool arguments must be an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(map);
        self.client().call_tool(params).await
    }

    /// Calls a tool whose arguments are wrong: it must answer a tool result with `isError`
    /// (for the model to read and correct) whose text contains `needle` (the field or the
    /// bound it names), structured as `{"error": "invalid_arguments", "message"}`.
    pub async fn expect_argument_error(&self, tool: &str, args: Value, needle: &str) {
        match self.try_call(tool, args.clone()).await {
            Ok(r) => {
                assert_eq!(r.is_error, Some(true), "{tool} {args}: {r:?}");
                let text = first_text(&r);
                assert!(
                    text.contains(needle),
                    "{tool} {args}: {text:?} lacks {needle:?}"
                );
                let s = r.structured_content.clone().unwrap_or_default();
                assert_eq!(s["error"], "invalid_arguments", "{tool} {args}: {s}");
            }
            other => panic!("{tool} {args}: expected an isError tool result, got {other:?}"),
        }
    }

    /// Calls a tool and returns its result (tool errors included); panics on protocol errors.
    pub async fn call(&self, tool: &str, args: Value) -> CallToolResult {
        within(
            Duration::from_secs(60),
            &format!("an answer to {tool}"),
            self.try_call(tool, args),
        )
        .await
        .unwrap_or_else(|e| panic!("{tool} failed at the protocol level: {e}"))
    }

    /// Calls a tool whose result must be a success, and returns its structured content.
    pub async fn call_ok(&self, tool: &str, args: Value) -> Value {
        let r = self.call(tool, args).await;
        assert_ne!(
            r.is_error,
            Some(true),
            "{tool} returned a tool error: {:?}",
            r.content
        );
        r.structured_content
            .unwrap_or_else(|| panic!("{tool} returned no structured content"))
    }

    /// Starts a tool call that reports progress; returns the pending request.
    pub async fn start_call(&self, tool: &str, args: Value) -> RequestHandle<RoleClient> {
        let Value::Object(map) = args else {
            panic!("tool arguments must be an object")
        };
        let params = CallToolRequestParams::new(tool.to_owned()).with_arguments(map);
        self.client()
            .send_cancellable_request(
                ClientRequest::CallToolRequest(Request::new(params)),
                PeerRequestOptions::no_options(),
            )
            .await
            .expect("send request")
    }

    /// Starts `pool_run` with `prompt` and waits for its "started" progress; returns the
    /// pending call, its progress token and the task id.
    pub async fn start_run(
        &self,
        prompt: &str,
    ) -> (RequestHandle<RoleClient>, ProgressToken, String) {
        let call = self
            .start_call("pool_run", json!({ "prompt": prompt }))
            .await;
        let token = call.progress_token.clone();
        let started = self
            .progress_until(&token, "the task's start on a slot", |m| {
                m.contains("started")
            })
            .await;
        let id = started
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        (call, token, id)
    }

    /// Waits for the next progress notification of `token` matching `pred`.
    pub async fn progress_until(
        &self,
        token: &ProgressToken,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut rx = self.progress.lock().await;
        within(Duration::from_secs(30), what, async {
            loop {
                let p = rx.recv().await.expect("progress channel open");
                if &p.progress_token == token {
                    let msg = p.message.unwrap_or_default();
                    if pred(&msg) {
                        return msg;
                    }
                }
            }
        })
        .await
    }

    /// Waits for the next resource notification matching `pred`.
    pub async fn resource_note_until(
        &self,
        what: &str,
        pred: impl Fn(&ResourceNote) -> bool,
    ) -> ResourceNote {
        let mut rx = self.resources.lock().await;
        within(Duration::from_secs(30), what, async {
            loop {
                let n = rx.recv().await.expect("resource channel open");
                if pred(&n) {
                    return n;
                }
            }
        })
        .await
    }

    /// Every resource notification received so far (drains them).
    pub async fn drain_resource_notes(&self) -> Vec<ResourceNote> {
        let mut rx = self.resources.lock().await;
        let mut out = Vec::new();
        while let Ok(n) = rx.try_recv() {
            out.push(n);
        }
        out
    }

    /// Every progress message received for `token` so far (drains them).
    pub async fn drain_progress(&self, token: &ProgressToken) -> Vec<String> {
        let mut rx = self.progress.lock().await;
        let mut out = Vec::new();
        while let Ok(p) = rx.try_recv() {
            if &p.progress_token == token {
                out.push(p.message.unwrap_or_default());
            }
        }
        out
    }

    /// `pool_status`.
    pub async fn status(&self) -> Value {
        self.call_ok("pool_status", json!({})).await
    }

    /// `pool_status` once every slot has warmed up.
    pub async fn wait_ready(&self) -> Value {
        let s = self
            .call_ok("pool_status", json!({ "wait_ready": "30s" }))
            .await;
        let slots = s["slots"].as_array().expect("slots");
        assert!(
            slots.iter().all(|x| x["status"] == "idle"),
            "slots did not all become idle within 30s: {s}"
        );
        s
    }

    /// Pids of the slots' processes, from a status.
    pub fn slot_pids(status: &Value) -> Vec<u32> {
        status["slots"]
            .as_array()
            .expect("slots")
            .iter()
            .filter_map(|s| s["pid"].as_u64().map(|p| p as u32))
            .collect()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The fake CLI's events so far.
    pub fn fake_events(&self) -> Vec<Value> {
        crate::read_fake_log(&self.fake_log)
    }

    /// Turns (user prompts other than `/clear`) the fake CLI began, across all processes.
    pub fn turns_started(&self) -> usize {
        self.fake_events()
            .iter()
            .filter(|e| e["event"] == "turn_start")
            .count()
    }

    /// Claude processes the server started so far.
    pub fn processes_started(&self) -> usize {
        self.fake_events()
            .iter()
            .filter(|e| e["event"] == "start")
            .count()
    }

    /// The most turns that ran at the same moment, from the fake's own log.
    pub fn max_concurrent_turns(&self) -> i32 {
        self.max_concurrent_turns_since(0)
    }

    /// The most turns that ran at the same moment among turns that began after `since`
    /// (CLOCK_MONOTONIC nanoseconds, see [`crate::mono_ns`]).
    pub fn max_concurrent_turns_since(&self, since: u64) -> i32 {
        let mut edges: Vec<(u64, i32)> = Vec::new();
        let mut open: std::collections::HashMap<u64, bool> = Default::default();
        for e in self.fake_events() {
            let t = e["mono_ns"].as_u64().unwrap_or(0);
            let pid = e["pid"].as_u64().unwrap_or(0);
            match e["event"].as_str() {
                Some("turn_start") => {
                    let counted = t >= since;
                    open.insert(pid, counted);
                    if counted {
                        edges.push((t, 1));
                    }
                }
                Some("turn_end") => {
                    if open.remove(&pid) == Some(true) {
                        edges.push((t, -1));
                    }
                }
                _ => {}
            }
        }
        // An end and a start at the same instant do not overlap.
        edges.sort();
        let (mut now, mut max) = (0, 0);
        for (_, d) in edges {
            now += d;
            max = max.max(now);
        }
        max
    }

    /// Subscribes to a resource (`resources/subscribe`, the model Claude Code speaks).
    #[allow(deprecated)]
    pub async fn subscribe(&self, uri: &str) -> Result<(), rmcp::ServiceError> {
        self.client()
            .subscribe(rmcp::model::SubscribeRequestParams::new(uri))
            .await
    }

    /// Reads a resource and parses its JSON text.
    pub async fn read_resource(&self, uri: &str) -> Result<Value, rmcp::ServiceError> {
        let r = self
            .client()
            .read_resource(rmcp::model::ReadResourceRequestParams::new(uri))
            .await?;
        let text = match r.contents.first() {
            Some(rmcp::model::ResourceContents::TextResourceContents { text, .. }) => text.clone(),
            other => panic!("{uri}: expected one text content, got {other:?}"),
        };
        Ok(serde_json::from_str(&text).unwrap_or_else(|e| panic!("{uri} is not JSON: {e}")))
    }

    /// Polls nothing: waits on pool_result's long-poll until the task is terminal.
    pub async fn wait_task(&self, task_id: &str) -> Value {
        let r = self
            .call("pool_result", json!({ "task_id": task_id, "wait": 60 }))
            .await;
        let v = content(&r);
        assert!(
            !matches!(v["status"].as_str(), Some("pending" | "running")),
            "task {task_id} did not end within 60 s: {v}"
        );
        v
    }

    /// Waits (on resource updates, read after subscribing) until the task's status
    /// satisfies `pred`; returns its report.
    pub async fn wait_status(
        &self,
        task_id: &str,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Value {
        self.wait_report(task_id, what, |r| {
            pred(r["status"].as_str().unwrap_or_default())
        })
        .await
    }

    /// Waits until the task's prompt was written to Claude and the store has recorded it
    /// (a job list reads through the store after every write queued before it).
    pub async fn wait_started(&self, task_id: &str) -> Value {
        let r = self
            .wait_report(task_id, "the task's start", |r| r["started_at"].is_string())
            .await;
        self.call_ok("claude_list_jobs", json!({ "limit": 1 }))
            .await;
        r
    }

    /// Waits (on resource updates, read after subscribing) until the task's report
    /// satisfies `pred`.
    pub async fn wait_report(
        &self,
        task_id: &str,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let uri = format!("pool://results/{task_id}");
        self.subscribe(&uri).await.expect("subscribe to the task");
        loop {
            let r = self.read_resource(&uri).await.expect("read the task");
            if pred(&r) {
                return r;
            }
            let want = ResourceNote::Updated(uri.clone());
            self.resource_note_until(what, |n| *n == want).await;
        }
    }

    /// The scratch directory of this server.
    pub fn scratch(&self) -> &Path {
        self.scratch.path()
    }

    /// Fails if the server wrote anything but JSON-RPC on stdout.
    pub fn assert_stdout_clean(&self) {
        let problems = self.stdout_problems.lock().unwrap();
        assert!(
            problems.is_empty(),
            "stdout carried non-JSON-RPC output: {problems:?}"
        );
    }

    /// Closes the client (EOF on the server's stdin; over HTTP, then SIGTERM), waits for the
    /// server to exit, and
    /// checks that no process it started is left (see [`Server::audit_processes`]).
    pub async fn close(mut self) -> ExitStatus {
        self.assert_stdout_clean();
        let current = self.audit_replaced_processes().await;
        if let Some(client) = self.client.take() {
            let _ = client.cancel().await;
        }
        // Over HTTP a client leaving ends nothing: the daemon's way to stop is SIGTERM.
        if self.transport == Transport::Http {
            crate::procs::kill(self.pid, libc::SIGTERM);
        }
        let log = self.stderr_path.clone();
        let status = within(
            Duration::from_secs(20),
            "the server's exit after stdin EOF (stdio) or SIGTERM (HTTP)",
            self.child.wait(),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "wait: {e}; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        });
        self.audit_after_exit(current).await;
        status
    }

    /// Sends `signal` to the server, waits for it to exit, and checks that no process it
    /// started is left.
    /// SIGKILLs the server and waits for its exit, checking nothing of what it leaves
    /// behind: that is the caller's to check.
    pub async fn crash(mut self) -> ExitStatus {
        self.assert_stdout_clean();
        crate::procs::kill(self.pid, libc::SIGKILL);
        let status = within(
            Duration::from_secs(20),
            "the server's exit after SIGKILL",
            self.child.wait(),
        )
        .await
        .expect("wait");
        drop(self.client.take());
        status
    }

    pub async fn signal_and_wait(mut self, signal: i32) -> ExitStatus {
        self.assert_stdout_clean();
        let current = self.audit_replaced_processes().await;
        crate::procs::kill(self.pid, signal);
        let status = within(
            Duration::from_secs(20),
            "the server's exit after a signal",
            self.child.wait(),
        )
        .await
        .expect("wait");
        drop(self.client.take());
        self.audit_after_exit(current).await;
        status
    }

    /// Every Claude process this server started (from the fake CLI's log) plus the current
    /// slots' processes.
    fn started_pids(&self) -> BTreeSet<u32> {
        self.fake_events()
            .iter()
            .filter(|e| e["event"] == "start")
            .filter_map(|e| e["pid"].as_u64().map(|p| p as u32))
            .collect()
    }

    /// While the server still runs: every process it replaced must already be reaped (a
    /// zombie fails). Returns the current slots' pids.
    async fn audit_replaced_processes(&self) -> BTreeSet<u32> {
        // A process that replaces one (after a cancel) may exist before the status names
        // it: let the slots settle first (not for long: a test may close with a task still
        // running, and then the slots never all settle).
        let settled = tokio::time::timeout(
            Duration::from_secs(6),
            self.try_call("pool_status", json!({ "wait_ready": "5s" })),
        )
        .await;
        let status = match settled {
            Ok(Ok(r)) if r.is_error != Some(true) => Ok(r),
            _ => self.try_call("pool_status", json!({})).await,
        };
        let current: BTreeSet<u32> = match status {
            Ok(r) => r
                .structured_content
                .map(|s| Server::slot_pids(&s).into_iter().collect())
                .unwrap_or_default(),
            // A server whose --tools leave pool_status out still serves pool://status.
            Err(_) => self
                .read_resource("pool://status")
                .await
                .map(|s| Server::slot_pids(&s).into_iter().collect())
                .unwrap_or_default(),
        };
        for pid in self.started_pids().difference(&current) {
            crate::procs::assert_gone(
                *pid,
                Duration::from_secs(10),
                "a replaced Claude process (reaped by the server)",
            )
            .await;
        }
        current
    }

    /// After the server exited: no process it started, no member of their groups, and no
    /// grandchild a task spawned is left.
    async fn audit_after_exit(&self, current: BTreeSet<u32>) {
        let limit = Duration::from_secs(10);
        for pid in self.started_pids().union(&current) {
            crate::procs::wait_exit(*pid, limit, "a slot process after the server exited").await;
            crate::procs::assert_group_gone(
                *pid,
                limit,
                "a slot's process group after the server exited",
            )
            .await;
        }
        for e in self.fake_events().iter().filter(|e| e["event"] == "child") {
            if let Some(child) = e["child_pid"].as_u64() {
                crate::procs::wait_exit(
                    child as u32,
                    limit,
                    "a task's grandchild after the server exited",
                )
                .await;
            }
        }
    }
}

/// Spawns the server on stdio behind the stdout relay and completes the MCP handshake.
async fn stdio_client(
    mut cmd: Command,
    handler: TestClient,
    problems: Arc<Mutex<Vec<String>>>,
) -> (Child, RunningService<RoleClient, TestClient>) {
    let mut child = cmd.spawn().expect("spawn claude-pool-server");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();

    // The relay: check every stdout line, then pass it on to the client.
    let (relay_out, client_in) = tokio::io::duplex(1 << 20);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stdout);
        let mut writer = relay_out;
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match lines.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let ok = serde_json::from_slice::<Value>(&buf)
                .ok()
                .is_some_and(|v| v.get("jsonrpc") == Some(&json!("2.0")));
            if !ok {
                problems
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf[..buf.len().min(300)]).into_owned());
                continue;
            }
            if writer.write_all(&buf).await.is_err() {
                break;
            }
        }
    });
    let client = within(
        Duration::from_secs(30),
        "the MCP handshake with claude-pool-server",
        handler.serve((client_in, stdin)),
    )
    .await
    .expect("MCP initialize");
    (child, client)
}

/// Spawns the server with `--http`, reads its log until it says where it listens (the rest
/// of the log goes on to `log`, line by line), and connects rmcp's Streamable HTTP client.
/// Any byte on stdout is recorded in `problems`.
async fn http_client(
    mut cmd: Command,
    handler: TestClient,
    log: &Path,
    problems: Arc<Mutex<Vec<String>>>,
    token: impl FnOnce() -> Option<String>,
) -> (
    Child,
    RunningService<RoleClient, TestClient>,
    Option<String>,
    Option<String>,
) {
    use std::io::Write;
    use tokio::io::AsyncReadExt;

    let mut child = cmd.spawn().expect("spawn claude-pool-server --http");
    let mut stdout = child.stdout.take().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            problems
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buf[..n.min(300)]).into_owned());
        }
    });
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut file = std::fs::File::create(log).unwrap();
    let addr = within(
        Duration::from_secs(30),
        "the server's listening line",
        async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .expect("read the log")
                    .expect("the server exited before listening");
                let _ = writeln!(file, "{line}");
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    return rest.trim().to_owned();
                }
            }
        },
    )
    .await;
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            let _ = writeln!(file, "{l}");
        }
    });
    let url = format!("http://{addr}");
    // Listening, so the token file exists.
    let token = token();
    let mut config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            url.clone(),
        );
    if let Some(t) = &token {
        config = config.auth_header(t.clone());
    }
    let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
    let client = within(
        Duration::from_secs(30),
        "the MCP handshake with claude-pool-server over HTTP",
        handler.serve(transport),
    )
    .await
    .expect("MCP initialize over HTTP");
    (child, client, Some(url), token)
}

/// Runs the server binary with `args` (and `env`) expecting it to refuse to start: it must
/// exit non-zero with nothing on stdout. Returns its stderr, for the message.
pub async fn start_refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(crate::server_bin())
        .args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .await
        .expect("run claude-pool-server");
    assert!(!out.status.success(), "{args:?} was accepted");
    assert!(out.stdout.is_empty(), "{args:?}: stdout must stay empty");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The structured content of a tool result (success or tool error).
pub fn content(r: &CallToolResult) -> Value {
    r.structured_content
        .clone()
        .unwrap_or_else(|| panic!("no structured content in {:?}", r.content))
}

/// The text of a tool result's first content block.
pub fn first_text(r: &CallToolResult) -> String {
    r.content
        .first()
        .and_then(|c| c.as_text().map(|t| t.text.clone()))
        .unwrap_or_default()
}

/// Awaits a pending tool call's result.
pub async fn finish_call(handle: RequestHandle<RoleClient>, what: &str) -> CallToolResult {
    match within(Duration::from_secs(60), what, handle.await_response()).await {
        Ok(ServerResult::CallToolResult(r)) => r,
        Ok(other) => panic!("{what}: unexpected answer {other:?}"),
        Err(e) => panic!("{what}: {e}"),
    }
}
