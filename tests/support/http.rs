//! The server in HTTP mode, and a minimal HTTP/1.1 client for it: raw requests (to check
//! status codes a real client library would hide), and MCP sessions over Streamable HTTP
//! (JSON-RPC posted to `/mcp`, answers read from the SSE stream of each POST).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{Scratch, within};

/// A server started with `--http --port 0`. Derefs to a client of it.
#[derive(Debug)]
pub struct HttpServer {
    child: Child,
    /// Its pid.
    pub pid: u32,
    /// A client of it.
    pub client: HttpClient,
    /// Where its log goes.
    pub log: PathBuf,
    /// Its `XDG_RUNTIME_DIR`, where it keeps its token file unless told otherwise.
    pub runtime: PathBuf,
    /// Its HOME (and so the default store's state directory).
    pub home: PathBuf,
    /// Lines of its log written to [`HttpServer::log`] so far.
    log_lines: tokio::sync::watch::Receiver<usize>,
    _scratch: Scratch,
}

/// How to start an [`HttpServer`] besides its flags.
#[derive(Debug, Default)]
pub struct Setup {
    /// More environment for the server.
    pub env: Vec<(String, String)>,
    /// Its `XDG_RUNTIME_DIR` (default: a fresh one in its scratch directory), so that two
    /// servers can share a token file.
    pub runtime: Option<PathBuf>,
    /// The umask it starts under (default: the test's).
    pub umask: Option<u32>,
}

/// The token a test's client must send to a server started with `args` and `env`: the one
/// given (`--http-token`, `--http-token-file`, `CLAUDE_POOL_HTTP_TOKEN`), none with
/// `--http-no-auth`, else the one the server wrote to `runtime`'s token file.
pub fn token_of<A: AsRef<str>>(
    args: &[A],
    env: &[(String, String)],
    runtime: &Path,
) -> Option<String> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let after = |flag: &str| {
        args.iter()
            .position(|a| *a == flag)
            .and_then(|i| args.get(i + 1).map(|v| (*v).to_owned()))
    };
    let first_line = |p: &Path| {
        let text = std::fs::read_to_string(p)
            .unwrap_or_else(|e| panic!("read the token file {}: {e}", p.display()));
        text.lines().next().unwrap_or_default().trim().to_owned()
    };
    if args.contains(&"--http-no-auth") {
        return None;
    }
    if let Some(t) = after("--http-token") {
        return Some(t);
    }
    if let Some(f) = after("--http-token-file") {
        return Some(first_line(Path::new(&f)));
    }
    if let Some((_, t)) = env.iter().find(|(k, _)| k == "CLAUDE_POOL_HTTP_TOKEN") {
        return Some(t.clone());
    }
    Some(first_line(&runtime.join("claude-pool/http-token")))
}

/// A client of an HTTP server: cheap to clone into other tasks.
#[derive(Debug, Clone)]
pub struct HttpClient {
    /// `127.0.0.1:<port>`.
    pub addr: String,
    /// The bearer token every request carries unless it sets `Authorization` itself.
    pub token: Option<String>,
}

impl std::ops::Deref for HttpServer {
    type Target = HttpClient;

    fn deref(&self) -> &HttpClient {
        &self.client
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Reply {
    /// The status code.
    pub status: u16,
    /// Header lines, lowercased names.
    pub headers: Vec<(String, String)>,
    /// The body (chunked encoding undone).
    pub body: String,
}

impl Reply {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The JSON-RPC messages of the body: the body itself, or each SSE `data:` line.
    pub fn messages(&self) -> Vec<Value> {
        if let Ok(v) = serde_json::from_str::<Value>(&self.body) {
            return vec![v];
        }
        self.body
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .filter_map(|d| serde_json::from_str(d.trim()).ok())
            .collect()
    }
}

impl HttpServer {
    /// Starts the server over HTTP with the fake CLI and `slots` slots; waits (reading its
    /// log line by line) until it says where it listens.
    pub async fn start(slots: usize, args: &[&str]) -> HttpServer {
        HttpServer::start_with(slots, args, Setup::default()).await
    }

    /// [`HttpServer::start`], with more environment, a given runtime directory or umask.
    pub async fn start_with(slots: usize, args: &[&str], setup: Setup) -> HttpServer {
        let scratch = Scratch::new("http");
        let log = scratch.join("server.log");
        let runtime = setup.runtime.clone().unwrap_or_else(|| scratch.join("run"));
        // A session's runtime directory exists before any program runs in it.
        std::fs::create_dir_all(&runtime).expect("create the runtime directory");
        let mut cmd = match setup.umask {
            // The shell sets the umask, then becomes the server (same pid).
            Some(mask) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("umask {mask:03o} && exec \"$0\" \"$@\""))
                    .arg(crate::server_bin());
                c
            }
            None => Command::new(crate::server_bin()),
        };
        let mut child = cmd
            .args(["--http", "--port", "0", "--slots", &slots.to_string()])
            .arg("--claude-bin")
            .arg(crate::fake_claude_bin())
            .args(["--log-level", "info"])
            .args(args)
            .env("HOME", scratch.path())
            .env("XDG_RUNTIME_DIR", &runtime)
            .env_remove("XDG_STATE_HOME")
            .env("FAKE_CLAUDE_TURN_MS", "5")
            .env("FAKE_CLAUDE_STATE", scratch.join("fake-state"))
            .env_remove("CLAUDE_MCP_PORT")
            .env_remove("CLAUDE_POOL_HTTP_TOKEN")
            .env_remove("CLAUDE_POOL_TOKEN")
            .envs(setup.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn claude-pool-server --http");
        let pid = child.id().expect("pid");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        // The log up to the listening line is kept too: it says where the token is.
        let mut out = String::new();
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
                    out.push_str(&line);
                    out.push('\n');
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        return rest.trim_end_matches("/mcp").to_owned();
                    }
                }
            },
        )
        .await;
        let file = log.clone();
        let _ = std::fs::write(&file, &out);
        let (written, log_lines) = tokio::sync::watch::channel(0usize);
        tokio::spawn(async move {
            while let Ok(Some(l)) = lines.next_line().await {
                out.push_str(&l);
                out.push('\n');
                let _ = std::fs::write(&file, &out);
                written.send_modify(|n| *n += 1);
            }
        });
        let token = token_of(args, &setup.env, &runtime);
        HttpServer {
            child,
            pid,
            client: HttpClient { addr, token },
            log,
            runtime,
            home: scratch.path().to_path_buf(),
            log_lines,
            _scratch: scratch,
        }
    }

    /// Waits (up to 30 s, reading each line as the server writes it) until `pred` holds
    /// for its log; returns the log. `what` names what never came.
    pub async fn log_until(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let mut lines = self.log_lines.clone();
        within(Duration::from_secs(30), what, async {
            loop {
                lines.borrow_and_update();
                let text = std::fs::read_to_string(&self.log).unwrap_or_default();
                if pred(&text) {
                    return text;
                }
                lines.changed().await.expect("the log's reader ended");
            }
        })
        .await
    }

    /// [`HttpServer::stop`], then its whole log, once every line it wrote has been read.
    pub async fn stop_with_log(mut self) -> (std::process::ExitStatus, String) {
        let status = self.terminate().await;
        let mut lines = self.log_lines.clone();
        within(
            Duration::from_secs(10),
            "the end of the server's log",
            async { while lines.changed().await.is_ok() {} },
        )
        .await;
        (
            status,
            std::fs::read_to_string(&self.log).unwrap_or_default(),
        )
    }

    /// SIGTERMs the server and waits for its exit.
    pub async fn stop(mut self) -> std::process::ExitStatus {
        self.terminate().await
    }

    async fn terminate(&mut self) -> std::process::ExitStatus {
        crate::procs::kill(self.pid, libc::SIGTERM);
        within(
            Duration::from_secs(20),
            "the server's exit",
            self.child.wait(),
        )
        .await
        .expect("wait")
    }
}

impl HttpClient {
    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("port")
    }

    /// The same server without a token: its requests carry no `Authorization`.
    pub fn anonymous(&self) -> HttpClient {
        HttpClient {
            addr: self.addr.clone(),
            token: None,
        }
    }

    /// The same server with `token` as the bearer.
    pub fn with_token(&self, token: &str) -> HttpClient {
        HttpClient {
            addr: self.addr.clone(),
            token: Some(token.to_owned()),
        }
    }

    /// Sends one request (`Connection: close`) and reads the whole response; with the
    /// client's token unless `headers` has an `Authorization` of its own.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Reply {
        within(Duration::from_secs(60), "an HTTP response", async {
            let mut s = TcpStream::connect(&self.addr).await.expect("connect");
            let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
            if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
                req.push_str(&format!("Host: {}\r\n", self.addr));
            }
            for (k, v) in headers {
                req.push_str(&format!("{k}: {v}\r\n"));
            }
            if let Some(t) = &self.token
                && !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            {
                req.push_str(&format!("Authorization: Bearer {t}\r\n"));
            }
            req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
            s.write_all(req.as_bytes()).await.expect("send");
            let mut raw = Vec::new();
            s.read_to_end(&mut raw).await.expect("read");
            parse(&raw)
        })
        .await
    }

    /// Sends raw bytes (anything, HTTP or not) and reads until the server closes; `None`
    /// when it closed without a status line.
    pub async fn raw(&self, bytes: &[u8]) -> Option<u16> {
        within(
            Duration::from_secs(60),
            "the server's answer to raw bytes",
            async {
                let mut s = TcpStream::connect(&self.addr).await.expect("connect");
                let _ = s.write_all(bytes).await;
                let _ = s.shutdown().await;
                let mut out = Vec::new();
                let _ = s.read_to_end(&mut out).await;
                let r = parse(&out);
                (r.status != 0).then_some(r.status)
            },
        )
        .await
    }

    /// Posts a JSON-RPC message to `/mcp` with the MCP headers (and `extra`).
    pub async fn post(&self, session: Option<&str>, extra: &[(&str, &str)], msg: &Value) -> Reply {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", "application/json, text/event-stream"),
        ];
        if let Some(s) = session {
            headers.push(("Mcp-Session-Id", s));
            headers.push(("MCP-Protocol-Version", "2025-06-18"));
        }
        headers.extend_from_slice(extra);
        self.request("POST", "/mcp", &headers, &msg.to_string())
            .await
    }

    /// Opens an MCP session (initialize, then `notifications/initialized`); returns its id.
    pub async fn session(&self, extra: &[(&str, &str)]) -> String {
        let init = json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": { "protocolVersion": "2025-06-18", "capabilities": {},
                        "clientInfo": { "name": "claude-pool-tests", "version": "1" } }
        });
        let r = self.post(None, extra, &init).await;
        assert_eq!(r.status, 200, "initialize: {r:?}");
        let id = r.header("mcp-session-id").expect("a session id").to_owned();
        let done = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let r = self.post(Some(&id), extra, &done).await;
        assert!(r.status == 202 || r.status == 200, "initialized: {r:?}");
        id
    }

    /// Calls a tool in `session`; returns the JSON-RPC result.
    pub async fn call(
        &self,
        session: &str,
        extra: &[(&str, &str)],
        tool: &str,
        args: Value,
    ) -> Value {
        let msg = json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/call",
                          "params": { "name": tool, "arguments": args } });
        let r = self.post(Some(session), extra, &msg).await;
        assert_eq!(r.status, 200, "{tool}: {r:?}");
        r.messages()
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(2)))
            .unwrap_or_else(|| panic!("{tool}: no answer in {r:?}"))
    }
}

fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = raw.get(split + 4..).unwrap_or_default();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut s: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = s.windows(2).position(|w| w == b"\r\n") {
        let size = String::from_utf8_lossy(&s[..end]);
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        let rest = &s[end + 2..];
        if n == 0 || rest.len() < n {
            break;
        }
        out.extend_from_slice(&rest[..n]);
        s = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
    }
    out
}
